#!/usr/bin/env bash
# Run the tests: installs the test requirements into .venv and the guide's
# Node.js example dependency, then runs pytest (extra args go to pytest).
# Browser tests need Debian's chromium (/usr/bin/chromium); .ci/run installs it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
(cd tests/js && npm ci --no-audit --no-fund --silent)
exec "$venv/bin/python" -m pytest "$@"
