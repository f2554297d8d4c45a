#!/usr/bin/env bash
# One command from a fresh clone to a running maxcore on the embedded defaults:
# creates .venv, installs maxcore, validates config/ and serves on 0.0.0.0:3005.
# Open http://127.0.0.1:3005/chat and type as a WhatsApp user would.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
.venv/bin/maxcore check --config "${MAXCORE_CONFIG:-config}"
exec .venv/bin/maxcore serve --config "${MAXCORE_CONFIG:-config}" "$@"
