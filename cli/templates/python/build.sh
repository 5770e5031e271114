#!/usr/bin/env bash
# Builds {{name}}.wasm (a WebAssembly component) from app.py with
# componentize-py (install it with `pip install componentize-py==0.25.1`).
set -euo pipefail
cd "$(dirname "$0")"
command -v componentize-py >/dev/null || {
    echo "error: componentize-py is not installed: pip install componentize-py==0.25.1" >&2
    exit 1
}
componentize-py -d wit -w {{world_name}} componentize app -o {{name}}.wasm
echo "built {{name}}.wasm"
