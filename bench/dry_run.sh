#!/usr/bin/env bash
# Start-up cost of `adeploy run --dry-run` with a warm plugin cache: the
# whole decision flow (config, plugins, detection, metrics, history, plan)
# and nothing executed.
#
#   bench/dry_run.sh [BINARY]      (default: builds and uses the release binary)
#
# Needs hyperfine (`apt-get install hyperfine`). Prints hyperfine's summary
# and the CPU figure's basis from the decision log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --release -p adeploy-cli --manifest-path "$root/Cargo.toml" >&2
  bin="$root/target/release/adeploy"
fi
command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install hyperfine" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ADEPLOY_STATE_DIR="$work/state" ADEPLOY_CACHE_DIR="$work/cache"
cd "$work"
# Warm the component cache (the first run compiles the built-in plugins).
"$bin" run --services api-service --dry-run > /dev/null 2>&1
hyperfine -N --warmup 5 --runs 50 "$bin run --services api-service --dry-run"
# What the CPU figure of the system_metrics decision is (counter and window).
"$bin" run --services api-service --dry-run --json 2>/dev/null | python3 -c '
import json, sys
for d in json.load(sys.stdin)["report"]["decision_process"]:
    if d["decision_type"] == "system_metrics":
        print("cpu_basis:", json.dumps(d["details"].get("cpu_basis")))
'
