#!/usr/bin/env bash
# Set up (first time only: a minute or two) and launch the studio on http://localhost:8000
# with the embedded default model. Extra arguments go to the app: --port 9000, --host 0.0.0.0, ...
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m app "$@"
