#!/usr/bin/env bash
# One service on N fleet hosts over ssh (aggressive, concurrency 8), with and
# without connection reuse. The N inventory entries all point at one sshd on
# a loopback port (started here, with keys generated here); each step runs
# two commands on its host: the deploy and a remote health check.
#
#   bench/ssh_fleet.sh [N]          (default 50; builds the release binary;
#                                    needs sshd: apt-get install openssh-server)
set -euo pipefail
n=${1:-50}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -p adeploy-cli --manifest-path "$root/Cargo.toml" >&2
bin="$root/target/release/adeploy"
work=$(mktemp -d)
sshd_pid=
cleanup() { [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxStartups 200
MaxSessions 200
LogLevel ERROR
CONF
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2> "$work/sshd.log" &
sshd_pid=$!
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
echo "[127.0.0.1]:$port $(cat "$work/host_key.pub")" > "$work/known_hosts"
user=${USER:-$(id -un)}

config() { # $1 = reuse_connections
  echo "resource_limits: {aggressive: {cpu_limit: 1.0, memory_limit: 1.0, concurrency: 8}}"
  echo "thresholds: {high_cpu: 101.0, critical_memory: 100.0, min_free_disk_percent: 0.0}"
  echo "plugins: {aggressive: {config: {samples: 1}}}"
  echo "inventory:"
  echo "  ssh: {known_hosts: $work/known_hosts, reuse_connections: $1}"
  echo "  hosts:"
  for i in $(seq 1 "$n"); do
    echo "    h$i: {address: 127.0.0.1, port: $port, user: $user, identity_file: $work/client_key, labels: [fleet]}"
  done
  echo "services:"
  echo "  app: {target: ssh, host_labels: [fleet], deploy: 'true', health: {command: 'true', from: remote}, timeout_s: 60}"
}

run() { # $1 = label, $2 = config file, $3 = state dir
  local start end
  start=$(date +%s.%N)
  ADEPLOY_STATE_DIR="$3" "$bin" run --config "$2" --strategy aggressive --environment development \
    --json --services app > "$work/out.json"
  end=$(date +%s.%N)
  python3 - "$work/out.json" "$start" "$end" "$1" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
start, end, label = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
steps = out["report"]["steps"]
assert out["report"]["deployment_summary"]["success"], out["report"]["deployment_summary"]
wall = end - start
mean = sum(s["seconds"] for s in steps) / len(steps)
print(f"{label:<34} {len(steps)} steps, wall {wall:6.2f} s, {wall / len(steps) * 1000:7.1f} ms wall per step, "
      f"{mean * 1000:7.1f} ms per step (deploy + health, 2 ssh commands)")
PY
}

"$bin" plugins list > /dev/null   # warm the component cache
config false > "$work/off.yaml"
config true > "$work/on.yaml"
run "no reuse (ControlMaster=no)" "$work/off.yaml" "$work/state-off"
run "reuse, first run (new masters)" "$work/on.yaml" "$work/state-on"
run "reuse, second run (warm masters)" "$work/on.yaml" "$work/state-on"
