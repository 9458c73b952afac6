#!/usr/bin/env bash
# Set up and run the whole test suite: installs the test tools, Debian's chromium (for the browser
# tests) and redis-server (the tests of remote workers start their own) when missing, then runs pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
MISSING=""
[ -x /usr/bin/chromium ] || MISSING="$MISSING chromium"
[ -x /usr/bin/redis-server ] || MISSING="$MISSING redis-server"
if [ -n "$MISSING" ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq $MISSING >/dev/null
fi
exec .venv/bin/python -m pytest -q "$@"
