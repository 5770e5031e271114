#!/usr/bin/env bash
# The history at 100,000 deployments on redb and on PostgreSQL: list,
# report, the window a deployment reads at its start, bytes per deployment.
#
#   bench/history.sh [criterion args...]
#
# Starts a PostgreSQL 15 (Debian postgresql-15; as the postgres user when
# run as root) in a temporary directory on a free loopback port, runs
# `cargo bench -p adeploy --bench history` against it, and stops it.
# ADEPLOY_BENCH_DEPLOYMENTS=N changes the number of deployments.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ADEPLOY_TEST_PG_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$bin/initdb" ] || { echo "PostgreSQL 15 not found in $bin (apt-get install postgresql-15)" >&2; exit 2; }
work=$(mktemp -d)
as_pg=()
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$work"
    as_pg=(runuser -u postgres --)
fi
stop() {
    "${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap stop EXIT
"${as_pg[@]}" "$bin/initdb" -D "$work/data" -U postgres --auth=trust --locale=C --no-sync >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" -l "$work/log" -w \
    -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c shared_buffers=256MB" start >/dev/null
for db in adeploy_bench adeploy_bench_live; do
    "${as_pg[@]}" "$bin/psql" -X -q -h "$work" -p "$port" -U postgres -d postgres -c "CREATE DATABASE $db"
done
cd "$root"
ADEPLOY_BENCH_PG_URL="postgres://postgres@127.0.0.1:$port" cargo bench -p adeploy --bench history -- "$@"
