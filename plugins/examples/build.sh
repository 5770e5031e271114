#!/usr/bin/env bash
# Builds every example plugin into one directory, ready for
# `adeploy run --plugins DIR`: NAME.wasm beside its NAME.toml manifest.
#
#   plugins/examples/build.sh [OUT_DIR]     (default: <target>/plugin-examples)
#
# canary-rust  strategy  Rust (adeploy-sdk), cargo for wasm32-wasip2
# canary-js    strategy  JavaScript, jco componentize
# canary-py    strategy  Python, componentize-py
# env-file     detector  JavaScript, jco componentize
# freeze-hook  hook      Python, componentize-py
# json-metrics metric-provider  Python, componentize-py
#
# The pinned tools come from plugins/examples/install-tools.sh, which this
# script runs itself when one is missing (CI also runs it from .ci/run); a
# tool that still cannot be found fails the script with a message naming it.
# A component is rebuilt only when its sources or wit/ are newer than it, so
# a re-run with nothing changed takes about a second.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${ADEPLOY_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}}
out=${1:-$target/plugin-examples}
mkdir -p "$out"
out=$(cd "$out" && pwd)
wit=$root/wit

fail() { echo "error: $*" >&2; exit 1; }

jco=$here/node_modules/.bin/jco
want_py=0.25.1
check_tools() {
    command -v node >/dev/null || fail "node is not installed (needed by jco); install Node.js 20"
    # The pinned npm/PyPI tools install themselves on first use (idempotent).
    if [[ ! -x $jco ]] || ! command -v componentize-py >/dev/null ||
        [[ $(componentize-py --version | awk '{print $2}') != "$want_py" ]]; then
        "$here/install-tools.sh" >&2
        hash -r
    fi
    [[ -x $jco ]] || fail "jco is not installed in $here/node_modules; run plugins/examples/install-tools.sh"
    command -v componentize-py >/dev/null ||
        fail "componentize-py is not on PATH; run plugins/examples/install-tools.sh"
    local v
    v=$(componentize-py --version | awk '{print $2}')
    [[ $v == "$want_py" ]] ||
        fail "componentize-py is $v, the examples pin $want_py; run plugins/examples/install-tools.sh"
}

# stale OUTPUT INPUT...: true when OUTPUT is missing or older than any input file.
stale() {
    local output=$1
    shift
    [[ -f $output ]] || return 0
    [[ -n $(find "$@" -type f -newer "$output" -not -path '*/__pycache__/*' 2>/dev/null | head -1) ]]
}

# install NAME SRC_DIR: copies the manifest beside the component.
manifest() { cp "$2/$1.toml" "$out/$1.toml"; }

js() { # NAME SRC_DIR ENTRY WORLD
    local name=$1 dir=$here/$2 entry=$3 world=$4
    if stale "$out/$name.wasm" "$dir" "$wit"; then
        echo "building $name (JavaScript, jco componentize)"
        "$jco" componentize "$dir/$entry" --wit "$wit" --world-name "$world" \
            -d http -d fetch-event --out "$out/.$name.wasm.tmp" >/dev/null
        mv "$out/.$name.wasm.tmp" "$out/$name.wasm"
    fi
    manifest "$name" "$dir"
}

py() { # NAME SRC_DIR WORLD
    local name=$1 dir=$here/$2 world=$3
    if stale "$out/$name.wasm" "$dir" "$wit"; then
        echo "building $name (Python, componentize-py)"
        (cd "$dir" && componentize-py -d "$wit" -w "$world" componentize app \
            -o "$out/.$name.wasm.tmp" >/dev/null)
        mv "$out/.$name.wasm.tmp" "$out/$name.wasm"
    fi
    manifest "$name" "$dir"
}

check_tools

# Rust: the workspace's guest profile and target dir (shared with host/build.rs,
# so the canary built in as `canary` is the same file). Cargo is incremental.
echo "building canary-rust (Rust, cargo)"
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER \
    -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET \
    cargo build --quiet --manifest-path "$root/Cargo.toml" -p adeploy-plugin-canary \
    --target wasm32-wasip2 --profile guest --target-dir "$target/guests"
cp "$target/guests/wasm32-wasip2/guest/adeploy_plugin_canary.wasm" "$out/canary-rust.wasm"
manifest canary-rust "$here/canary-rust"

js canary-js canary-js canary.js strategy-plugin
py canary-py canary-py strategy-plugin
js env-file env-file-js env-file.js detector-plugin
py freeze-hook freeze-hook-py hook-plugin
py json-metrics json-metrics-py metric-provider-plugin

echo "example plugins in $out"
