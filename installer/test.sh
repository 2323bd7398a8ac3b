#!/usr/bin/env bash
# Install everything, then run the whole test suite (GUI tests on a virtual screen).
set -euo pipefail
cd "$(dirname "$0")/.."
bash installer/setup.sh test
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
.venv/bin/lint-imports
status=0
xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest -q --durations=15 "$@" || status=$?
# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
exit $status
