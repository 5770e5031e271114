#!/usr/bin/env bash
# Builds {{name}}.wasm (a WebAssembly component) from {{name}}.js with jco,
# installing the pinned jco into node_modules on the first run.
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -x node_modules/.bin/jco ]]; then
    npm install --no-audit --no-fund
fi
npm run --silent build
echo "built {{name}}.wasm"
