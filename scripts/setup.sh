#!/usr/bin/env bash
# Create .venv and install AI Artist into it. `setup.sh test` also installs the test tools.
# torch: 2.13.0 when available (a CPU build that lies on disk on our dev/CI machines; PyPI's build
# elsewhere), otherwise the newest torch pip finds for this Python.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install --quiet "torch==2.13.0" || .venv/bin/pip install --quiet torch
fi
if [ "${1:-}" = "test" ]; then
    .venv/bin/pip install --quiet -e ".[test]"
else
    .venv/bin/pip install --quiet -e .
fi
