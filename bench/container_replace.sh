#!/usr/bin/env bash
# What adeploy adds to a container replacement: N replacements through
# `adeploy run` (target: container, replace mode) against the same
# replacement done by hand with the runtime (stop the old container, run the
# new one, wait until its health page answers with the new version, remove
# the old one). Images are built here from busybox-static (no registry);
# rootful podman with runc and the host network, as the tests use it.
#
#   bench/container_replace.sh [N] [BINARY]   (default 10; builds the release
#                                              binary when none is given;
#                                              needs podman, runc, busybox-static)
set -euo pipefail
n=${1:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${2:-}
if [ -z "$bin" ]; then
  cargo build --release -p adeploy-cli --manifest-path "$root/Cargo.toml" >&2
  bin="$root/target/release/adeploy"
fi
work=$(mktemp -d)
svc="bench$(printf '%04x' $$)"
repo="localhost/adeploy-bench-$svc"
rt=(podman --runtime runc)
run_opts=(--network host --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
cleanup() {
  for id in $("${rt[@]}" ps -aq --filter "name=adeploy-$svc-") $("${rt[@]}" ps -aq --filter "name=hand-$svc-"); do
    "${rt[@]}" rm -f -t 0 "$id" >/dev/null 2>&1 || true
  done
  "${rt[@]}" rmi -f "$repo:1" "$repo:2" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

for v in 1 2; do
  r="$work/root$v"
  mkdir -p "$r/bin" "$r/www"
  cp /bin/busybox "$r/bin/busybox"
  ln -s busybox "$r/bin/sh"
  echo "v$v" > "$r/www/health"
  tar -C "$r" -cf "$work/img$v.tar" .
  "${rt[@]}" import -q "$work/img$v.tar" "$repo:$v" >/dev/null
done

cat > "$work/config.yaml" <<CONF
resource_limits: {conservative: {cpu_limit: 1.0, memory_limit: 1.0, concurrency: 1}}
thresholds: {high_cpu: 101.0, critical_memory: 100.0, min_free_disk_percent: 0.0}
plugins: {conservative: {config: {samples: 1, interval_ms: 20, soak_s: 0}}}
services:
  $svc:
    target: container
    image: $repo
    version: "1"
    runtime: podman
    runtime_options: ["--runtime", "runc"]
    run_options: ["--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
    args: ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:$port", "-h", "/www"]
    stop_timeout_s: 0
    health: {http: "http://127.0.0.1:$port/health", expect_body: "v\${ADEPLOY_VERSION}", timeout_ms: 500}
CONF

now() { date +%s.%N; }
wait_for() { # $1 = expected body
  for _ in $(seq 500); do
    [ "$(curl -fsS "http://127.0.0.1:$port/health" 2>/dev/null)" = "$1" ] && return 0
    sleep 0.01
  done
  echo "health never answered $1" >&2; return 1
}
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }

export ADEPLOY_STATE_DIR="$work/state"
"$bin" run --config "$work/config.yaml" --services "$svc" --strategy conservative \
  --environment development >/dev/null 2>"$work/first.err" || { cat "$work/first.err" >&2; exit 1; }
adeploy_times=()
for i in $(seq 1 "$n"); do
  v=$(( (i % 2) + 1 ))
  s=$(now)
  "$bin" run --config "$work/config.yaml" --services "$svc" --strategy conservative \
    --environment development --set-version "$svc=$v" >/dev/null 2>"$work/run.err" \
    || { cat "$work/run.err" >&2; exit 1; }
  e=$(now)
  [ "$(curl -fsS "http://127.0.0.1:$port/health")" = "v$v" ]
  adeploy_times+=("$(echo "$e - $s" | bc)")
done
for id in $("${rt[@]}" ps -aq --filter "name=adeploy-$svc-"); do "${rt[@]}" rm -f -t 0 "$id" >/dev/null; done

# By hand: the runtime's own stop + run (+ waiting for health, + rm).
"${rt[@]}" run -d --name "hand-$svc-0" "${run_opts[@]}" "$repo:1" \
  /bin/busybox httpd -f -p "127.0.0.1:$port" -h /www >/dev/null
wait_for v1
old="hand-$svc-0"
hand_times=()
for i in $(seq 1 "$n"); do
  v=$(( (i % 2) + 1 ))
  s=$(now)
  "${rt[@]}" stop -t 0 "$old" >/dev/null
  "${rt[@]}" run -d --name "hand-$svc-$i" "${run_opts[@]}" "$repo:$v" \
    /bin/busybox httpd -f -p "127.0.0.1:$port" -h /www >/dev/null
  wait_for "v$v"
  "${rt[@]}" rm "$old" >/dev/null
  e=$(now)
  hand_times+=("$(echo "$e - $s" | bc)")
  old="hand-$svc-$i"
done

a=$(printf '%s\n' "${adeploy_times[@]}" | median)
h=$(printf '%s\n' "${hand_times[@]}" | median)
echo "replacements: $n"
echo "adeploy run (median): ${a} s"
echo "by hand: stop + run + health + rm (median): ${h} s"
echo "adeploy's overhead (median difference): $(echo "$a - $h" | bc) s"
