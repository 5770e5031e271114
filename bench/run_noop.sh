#!/usr/bin/env bash
# Orchestration overhead of `adeploy run` on N no-op local services under the
# aggressive strategy, and peak RSS.
#
#   bench/run_noop.sh [N]          (default 1000; builds the release binary)
#
# overhead per step = (wall time − ideal critical path) / steps, where the
# ideal critical path is the sum of the steps' own durations divided by the
# concurrency (8): what a perfect scheduler would take for the same commands.
set -euo pipefail
n=${1:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -p adeploy-cli --manifest-path "$root/Cargo.toml" >&2
bin="$root/target/release/adeploy"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  echo "resource_limits: {aggressive: {cpu_limit: 1.0, memory_limit: 1.0, concurrency: 8}}"
  echo "thresholds: {high_cpu: 101.0, critical_memory: 100.0, min_free_disk_percent: 0.0}"
  echo "services:"
  for i in $(seq 1 "$n"); do echo "  s$i: {deploy: [\"true\"]}"; done
} > "$work/config.yaml"
services=$(seq -f 's%g' 1 "$n" | tr '\n' ' ')
export ADEPLOY_STATE_DIR="$work/state"
# Warm the component cache so the run measures orchestration, not compilation.
"$bin" plugins list > /dev/null
start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/rss" "$bin" run --config "$work/config.yaml" --strategy aggressive \
  --environment development --json --services $services > "$work/out.json"
end=$(date +%s.%N)
python3 - "$work/out.json" "$start" "$end" "$(cat "$work/rss")" "$n" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
start, end, rss_kb, n = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
steps = out["report"]["steps"]
assert out["report"]["deployment_summary"]["success"], "deployment failed"
wall = end - start
ideal = sum(s["seconds"] for s in steps) / 8
print(f"services: {n}")
print(f"wall time: {wall:.2f} s (process start to exit)")
print(f"sum of step durations: {sum(s['seconds'] for s in steps):.2f} s, ideal critical path at concurrency 8: {ideal:.2f} s")
print(f"orchestration overhead per step: {(wall - ideal) / len(steps) * 1000:.2f} ms")
print(f"peak RSS: {rss_kb / 1024:.1f} MiB")
PY
