#!/usr/bin/env bash
# Runs the pg_regress inputs against a server under valgrind memcheck and fails on any error
# report whose stack touches pg_sync, or on invalid reads/writes anywhere. PostgreSQL's own
# known false positives (uninitialised padding written to WAL/data files) are ignored.
# Slow (a few minutes); not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SKIP_SETUP:-}" ] || scripts/setup.sh
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
. test/lib/pg.sh
dir=$(mktemp -d /tmp/pg_sync_valgrind.XXXXXX)
chown postgres "$dir"
pg_as_user "'$PG_BIN/initdb' -D '$dir/data' -U postgres --auth=trust >/dev/null"
port=$(pg_free_port)
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_sync'
max_connections = 10
CONF
pg_as_user "valgrind --quiet --trace-children=yes --log-file='$dir/vg.%p.log' '$PG_BIN/postgres' -D '$dir/data' >'$dir/server.log' 2>&1 &"
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
stop() {
    local pid
    pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null) && kill -INT "$pid" 2>/dev/null || true
}
trap stop EXIT
deadline=$((SECONDS + 180))
until pg_isready -q; do
    [ $SECONDS -lt $deadline ] || { echo "server under valgrind did not start"; exit 1; }
    sleep 0.5
done
psql -X -q -c "CREATE DATABASE valgrind_check"
for f in endpoints track capture_types ddl emit views bad_input; do
    psql -X -q -d valgrind_check -f "sql/$f.sql" >"$dir/$f.out" 2>&1 || true
    echo "ran sql/$f.sql"
done
stop
trap - EXIT
bad=0
for log in "$dir"/vg.*.log; do
    # One record per blank-line-separated block; keep those that matter.
    if awk 'BEGIN{RS=""} /Invalid (read|write|free)|pg_sync/ {print; found=1} END{exit !found}' "$log"; then
        bad=1
    fi
done
if [ $bad -ne 0 ]; then
    echo "valgrind reported errors (logs in $dir)"
    exit 1
fi
echo "valgrind: no errors in pg_sync code or invalid accesses (logs in $dir)"
