#!/usr/bin/env bash
# Installs the pinned tools that build the JavaScript and Python example
# plugins: jco 1.35.0 + componentize-js 0.23.0 (npm ci from package-lock.json,
# into plugins/examples/node_modules) and componentize-py 0.25.1 (pip).
# Idempotent and quick on a re-run: it skips what is already installed at
# the pinned version. Needs node >= 20 with npm, and python3 with pip.
set -euo pipefail
cd "$(dirname "$0")"

COMPONENTIZE_PY=0.25.1

need() {
    command -v "$1" >/dev/null || { echo "error: $1 is not installed; $2" >&2; exit 1; }
}
need node "install Node.js 20 (e.g. apt-get install nodejs npm)"
need npm "install npm (e.g. apt-get install npm)"
need python3 "install Python 3.11+ with pip"

# npm: a stamp holds the sha256 of the lock file npm ci last installed.
stamp=node_modules/.adeploy-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -x node_modules/.bin/jco && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    echo "jco: $(node_modules/.bin/jco --version) (up to date)"
else
    npm ci --no-audit --no-fund
    echo "$want" >"$stamp"
    echo "jco: $(node_modules/.bin/jco --version) (installed)"
fi

# pip: componentize-py at the pinned version, wherever python3's scripts go.
have=$(python3 -m pip show componentize-py 2>/dev/null | sed -n 's/^Version: //p' || true)
if [[ "$have" == "$COMPONENTIZE_PY" ]]; then
    echo "componentize-py: $have (up to date)"
else
    python3 -m pip install --quiet "componentize-py==$COMPONENTIZE_PY"
    echo "componentize-py: $COMPONENTIZE_PY (installed)"
fi
