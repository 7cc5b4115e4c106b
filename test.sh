#!/usr/bin/env bash
# Run the tests: installs the test requirements into .venv and the Node.js
# packages of tests/js (the guide's example, a client SDK), then runs pytest
# (extra args go to pytest).
# Browser tests need Debian's chromium (/usr/bin/chromium); .ci/run installs it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
# Open WebUI's ComfyUI client (tests/test_real_clients.py): the wheel alone, its
# few imports are in requirements-test.txt. Pinned: the module's path is not an API.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "open-webui==0.12.4"
(cd tests/js && npm ci --no-audit --no-fund --silent)
exec "$venv/bin/python" -m pytest "$@"
