#!/usr/bin/env bash
# Set up medlabeler on a fresh Debian/Ubuntu machine: system libraries napari needs (Xvfb, Mesa
# OpenGL, the xcb/xkb libraries Qt loads), a virtual environment in .venv, and the package.
# Usage: bash installer/setup.sh [extras]   (default extras: app,demo,dicom-codecs)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-app,demo,dicom-codecs}"
python="${PYTHON:-python3}"

apt_packages="xvfb xauth libgl1 libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
 libxcb-keysyms1 libxcb-shape0 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-image0
 libdbus-1-3 libfontconfig1 x11-utils"
if command -v apt-get >/dev/null 2>&1; then
  missing=$(for p in $apt_packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  # Debian's own Python makes no virtual environment without python3-venv (no ensurepip)
  [ -x .venv/bin/python ] || "$python" -c "import ensurepip, venv" 2>/dev/null || missing="$missing $(
    "$python" -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])')"
  if [ -n "$missing" ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing system packages: $(echo $missing)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
  fi
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pinned for this machine (the wheels lie on its disk); pyproject keeps torch>=2.4 open for users.
.venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -e ".[$extras]"
# The example plugins (entry points: a method and a strategy); their tests run with the suite.
if [[ ",$extras," == *",test,"* ]]; then
  .venv/bin/python -m pip install -q -e plugins/medlabeler-diverse-margin
  .venv/bin/python -m pip install -q -e plugins/medlabeler-cps
fi
echo "medlabeler installed in .venv ($(.venv/bin/medlabeler --version))"
