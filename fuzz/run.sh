#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, one after the other.
#
#   fuzz/run.sh [SECONDS]        # default 60 seconds per target
#   TARGETS="manifest" fuzz/run.sh 300
#
# Needs the nightly toolchain (`rustup toolchain install nightly`); installs
# cargo-fuzz (pinned) if it is missing. New inputs that add coverage go to
# fuzz/work/<target>/ (not committed; the seeds in fuzz/corpus/ are).
# Exits 1 if any target found a crash, after running all of them, and prints
# where the crashing inputs are. Other environment knobs:
#   SANITIZER=address|none   (default address: serde_yaml's parser is unsafe code)
#   JOBS=N                   cargo build jobs (default: cargo's)
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
CARGO_FUZZ_VERSION="0.13.2"
TARGETS="${TARGETS:-config_yaml manifest history_record plugin_answers}"
SANITIZER="${SANITIZER:-address}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."   # cargo fuzz runs from the directory that holds fuzz/

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -eq 0 ]; then
    echo "usage: fuzz/run.sh [SECONDS]  (a whole number of seconds per target, > 0)" >&2
    exit 2
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "error: the nightly toolchain is missing: rustup toolchain install nightly" >&2
    exit 2
fi
if [ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# The built-in plugins (wasm32-wasip2 guests, built by host/build.rs) are
# built with the pinned toolchain, which has the wasm target; the nightly
# that builds the fuzz targets may not (and cannot fetch it offline).
export ADEPLOY_GUEST_TOOLCHAIN="${ADEPLOY_GUEST_TOOLCHAIN:-$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)}"

build_args=(--sanitizer "$SANITIZER")
if [ -n "${JOBS:-}" ]; then build_args+=(--jobs "$JOBS"); fi
cargo +nightly fuzz build "${build_args[@]}"

failed=()
for target in $TARGETS; do
    artifacts="fuzz/artifacts/$target"
    # New inputs go to fuzz/work/<target> (ignored by git); the committed
    # seeds in fuzz/corpus/<target> are read, never written.
    mkdir -p "$artifacts" "fuzz/work/$target"
    marker="fuzz/artifacts/.$target.start"
    touch "$marker"
    log="fuzz/artifacts/$target.log"
    echo "== $target: ${SECONDS_PER_TARGET}s (log $log)"
    # -max_total_time bounds the run; the timeout (s) and rss limit (MB) turn
    # a hang or a memory blow-up on one input into a reported crash.
    set +e
    cargo +nightly fuzz run "${build_args[@]}" "$target" \
        "fuzz/work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::number_of_executed_units|^stat::peak_rss_mb|panicked at|^SUMMARY' "$log" || true
    if [ "$status" -ne 0 ] || [ -n "$(find "$artifacts" -type f -newer "$marker" | head -1)" ]; then
        failed+=("$target")
    fi
done

echo
if [ "${#failed[@]}" -gt 0 ]; then
    echo "CRASHES in: ${failed[*]}"
    for target in "${failed[@]}"; do
        echo "  $target: inputs in fuzz/artifacts/$target/, log fuzz/artifacts/$target.log"
        echo "    reproduce: cargo +nightly fuzz run $target fuzz/artifacts/$target/<file>"
    done
    exit 1
fi
echo "no crashes (${SECONDS_PER_TARGET}s per target: $TARGETS); logs in fuzz/artifacts/<target>.log"
