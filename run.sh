#!/usr/bin/env bash
# Set up and run the product.
#
#   ./run.sh /path/to/ComfyUI [ComfyUI args...]   (or COMFYUI_DIR=/path/to/ComfyUI ./run.sh)
#       installs requirements.txt into that ComfyUI's Python, links this folder
#       into its custom_nodes/ and starts ComfyUI.
#   ./run.sh [--flag ...]
#       no ComfyUI here: starts the package on its bundled minimal host (the
#       ComfyUI stand-in the tests use) at http://127.0.0.1:8188
#       (PORT and LISTEN change the port and the address).
# A first argument that does not start with "-" is the ComfyUI folder: if it
# is not one, nothing is installed or started.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
comfy="${COMFYUI_DIR:-}"
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
  comfy="$1"; shift
  [ -n "$comfy" ] || { echo "not a ComfyUI checkout: (an empty argument)" >&2; exit 2; }
fi
if [ -n "$comfy" ] && { [ ! -f "$comfy/main.py" ] || [ ! -d "$comfy/custom_nodes" ]; }; then
  echo "not a ComfyUI checkout: $comfy (no main.py and custom_nodes/ there)" >&2
  exit 2
fi

if [ -n "$comfy" ]; then
  comfy="$(cd "$comfy" && pwd)"
  py="${COMFYUI_PYTHON:-}"
  if [ -z "$py" ]; then
    for candidate in "$comfy/venv/bin/python" "$comfy/.venv/bin/python" "$comfy/../python_embeded/python"; do
      if [ -x "$candidate" ]; then py="$candidate"; break; fi
    done
  fi
  py="${py:-python3}"
  echo "[run.sh] ComfyUI at $comfy, Python: $py"
  # line by line, as ComfyUI-Manager installs requirements
  grep -vE '^\s*(#|$)' "$here/requirements.txt" | while read -r requirement; do
    "$py" -m pip install --quiet "$requirement"
  done
  case "$here" in
    "$comfy/custom_nodes/"*) ;;  # already cloned into custom_nodes
    *) link="$comfy/custom_nodes/comfyui-api-auth"
       if [ ! -e "$link" ]; then ln -s "$here" "$link"; echo "[run.sh] linked $link -> $here"; fi ;;
  esac
  cd "$comfy"
  exec "$py" main.py "$@"
fi

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
demo="$here/.demo"
mkdir -p "$demo/user" "$demo/input" "$demo/output"
echo "[run.sh] no ComfyUI given: starting the bundled ComfyUI stand-in with the package"
exec "$venv/bin/python" "$here/tests/comfyui_host/main.py" --custom-node "$here" \
  --listen "${LISTEN:-127.0.0.1}" --port "${PORT:-8188}" \
  --user-directory "$demo/user" --input-directory "$demo/input" --output-directory "$demo/output" "$@"
