#!/usr/bin/env bash
# A Python environment the test user can run jobs with: a venv of the system
# python with jobflow, and a copy of jfr_lib and the test job modules.
# Writes STATE/worker.env. The venv is made once; the sources are copied anew.
# Usage: worker-env.sh STATE_DIR REPO   (as root)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
STATE=${1:?state folder}
REPO=${2:?repository}
W=${JFR_TEST_WORKER_DIR:-/opt/jfr-test-worker}
install_missing python3-venv
if ! "$W/venv/bin/python" -c "import jobflow, maggma" 2>/dev/null; then
  log "creating $W/venv (jobflow for the test user)"
  rm -rf "$W/venv"
  /usr/bin/python3 -m venv "$W/venv"
  "$W/venv/bin/pip" install -q --disable-pip-version-check jobflow >&2
fi
rm -rf "$W/src.new" && mkdir -p "$W/src.new"
cp -r "$REPO/jfr_lib" "$REPO/tests/testjobs.py" "$REPO/examples/quickstart_jobs.py" "$W/src.new/"
find "$W/src.new" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$W/src" && mv "$W/src.new" "$W/src"
chmod -R a+rX "$W"
printf 'TEST_WORKER_PYTHON=%s\nTEST_WORKER_PYTHONPATH=%s\n' "$W/venv/bin/python" "$W/src" > "$STATE/worker.env"
