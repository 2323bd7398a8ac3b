#!/usr/bin/env bash
# Install everything, then open the demo (a real brain MRI from nilearn) in the app.
# bash installer/demo.sh --headless   runs the same labeling loop without a display.
set -euo pipefail
cd "$(dirname "$0")/.."
bash installer/setup.sh app,demo,dicom-codecs
if [ "${1:-}" = "--headless" ]; then
  exec .venv/bin/medlabeler demo --headless "${@:2}"
elif [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "no display found: starting the app on a virtual screen (xvfb-run)"
  exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/medlabeler demo "$@"
else
  exec .venv/bin/medlabeler demo "$@"
fi
