#!/usr/bin/env bash
# Install medlabeler for the current user: its own environment under the home folder, a launcher
# in the desktop menu (Linux: a .desktop entry with an icon; macOS: an app in ~/Applications) and
# the `medlabeler` command in ~/.local/bin. Nothing outside the home folder is touched.
#
#   bash installer/install.sh                   # build the wheel from this checkout, install it
#   bash installer/install.sh --wheel FILE.whl  # install a wheel built elsewhere
#   bash installer/install.sh --uninstall       # remove the environment and the launchers
#                                               # (projects and labels are never removed)
# Options: --python PY (default python3, needs >= 3.10), --extras LIST (default app,demo,dicom-codecs),
# --system-site-packages (reuse the packages PY already has, e.g. a cluster's torch).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
prefix="$data/medlabeler"
venv="$prefix/venv"
desktop_file="$data/applications/medlabeler.desktop"
icon_file="$data/icons/hicolor/256x256/apps/medlabeler.png"
bin_link="$HOME/.local/bin/medlabeler"
mac_app="$HOME/Applications/medlabeler.app"
python="${PYTHON:-python3}"
extras="app,demo,dicom-codecs"
wheel=""
venv_args=()
action=install

while [ $# -gt 0 ]; do
  case "$1" in
    --uninstall) action=uninstall ;;
    --wheel) wheel="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift ;;
    --python) python="$2"; shift ;;
    --extras) extras="$2"; shift ;;
    --system-site-packages) venv_args+=(--system-site-packages) ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "medlabeler: $*"; }

uninstall() {
  rm -rf "$prefix" "$mac_app"
  rm -f "$desktop_file" "$icon_file"
  # only our own link: a medlabeler command the user installed otherwise stays
  if [ -L "$bin_link" ] && [ "$(readlink "$bin_link")" = "$venv/bin/medlabeler" ]; then rm -f "$bin_link"; fi
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$data/applications" || true
  say "removed the app and its launchers (your projects and labels are kept)"
}

if [ "$action" = uninstall ]; then uninstall; exit 0; fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "medlabeler needs Python 3.10 or newer: '$python' is missing or older (use --python PY)" >&2
  exit 2
fi
started=$(date +%s)
say "installing into $venv"
mkdir -p "$prefix"
[ -x "$venv/bin/python" ] || "$python" -m venv ${venv_args[@]+"${venv_args[@]}"} "$venv"
pip=("$venv/bin/python" -m pip install -q)
if [ -z "$wheel" ]; then
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  "$venv/bin/python" -m pip wheel -q --no-deps -w "$build" "$here"
  wheel="$(ls "$build"/medlabeler-*.whl)"
fi
[ -f "$wheel" ] || { echo "no wheel at $wheel" >&2; exit 2; }
# Pinned as installer/setup.sh does (the wheels lie on this machine's disk); an environment that
# already has a torch (--system-site-packages) keeps it.
if ! "$venv/bin/python" -c 'import torch, torchvision' 2>/dev/null; then
  "${pip[@]}" torch==2.14.1 torchvision==0.29.1
fi
"${pip[@]}" "$wheel[$extras]"
"${pip[@]}" --force-reinstall --no-deps "$wheel"  # a rerun replaces a same-numbered build
version="$("$venv/bin/medlabeler" --version)"

# the command on PATH
mkdir -p "$(dirname "$bin_link")"
if [ ! -e "$bin_link" ] || [ -L "$bin_link" ]; then ln -sfn "$venv/bin/medlabeler" "$bin_link"; fi

# the launcher
if [ "$(uname -s)" = Darwin ]; then
  mkdir -p "$mac_app/Contents/MacOS" "$mac_app/Contents/Resources"
  cp "$here/resources/medlabeler.png" "$mac_app/Contents/Resources/medlabeler.png"
  printf '#!/bin/sh\nexec "%s" app "$@"\n' "$venv/bin/medlabeler" > "$mac_app/Contents/MacOS/medlabeler"
  chmod +x "$mac_app/Contents/MacOS/medlabeler"
  cat > "$mac_app/Contents/Info.plist" <<PLIST
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>CFBundleName</key><string>medlabeler</string>
  <key>CFBundleIdentifier</key><string>org.medlabeler.app</string>
  <key>CFBundleExecutable</key><string>medlabeler</string>
  <key>CFBundleIconFile</key><string>medlabeler.png</string>
  <key>CFBundlePackageType</key><string>APPL</string>
  <key>CFBundleShortVersionString</key><string>${version#medlabeler }</string>
</dict></plist>
PLIST
  say "launcher: $mac_app"
else
  mkdir -p "$(dirname "$desktop_file")" "$(dirname "$icon_file")"
  cp "$here/resources/medlabeler.png" "$icon_file"
  cat > "$desktop_file" <<DESKTOP
[Desktop Entry]
Type=Application
Name=medlabeler
GenericName=Medical image labeling
Comment=Label a few medical images while the model learns from all of them
Exec="$venv/bin/medlabeler" app %f
Icon=$icon_file
Terminal=false
Categories=Science;MedicalSoftware;Graphics;
Keywords=DICOM;NIfTI;segmentation;labeling;napari;
DESKTOP
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$data/applications" || true
  say "launcher: $desktop_file (in the desktop menu under Science / Graphics)"
fi
say "installed $version in $(( $(date +%s) - started )) s; start it from the menu or with: $bin_link app"
