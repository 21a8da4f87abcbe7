#!/usr/bin/env bash
# Runs the pg_regress inputs, then real deliveries (a loopback receiver that succeeds, fails,
# drops connections; pause, resume, DROP EXTENSION, DROP DATABASE), against a server under
# valgrind memcheck (the launcher and delivery workers included), and fails on any error report
# whose stack touches pg_sync, or on invalid reads/writes anywhere. PostgreSQL's own known false
# positives (uninitialised padding written to WAL/data files) are ignored.
# Slow (a few minutes); not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${SKIP_SETUP:-}" ] || scripts/setup.sh
command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
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
# The regression inputs name endpoints such as https://example.com: route every request through
# a closed loopback "proxy" so that nothing leaves the machine (reset before the delivery part).
pg_sync.http_proxy = 'http://127.0.0.1:9'
CONF
pg_as_user "valgrind --quiet --trace-children=yes --log-file='$dir/vg.%p.log' '$PG_BIN/postgres' -D '$dir/data' >'$dir/server.log' 2>&1 &"
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
stop() {
    local pid
    pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null) && kill -INT "$pid" 2>/dev/null || true
}
trap 'receiver_stop_all; stop' EXIT
deadline=$((SECONDS + 180))
until pg_isready -q; do
    [ $SECONDS -lt $deadline ] || { echo "server under valgrind did not start"; exit 1; }
    sleep 0.5
done
psql -X -q -c "CREATE DATABASE valgrind_check"
for f in endpoints track capture_types ddl emit views bad_input; do
    psql -X -q -d valgrind_check -f "test/sql/$f.sql" >"$dir/$f.out" 2>&1 || true
    echo "ran test/sql/$f.sql"
done
psql -X -q -c "DROP DATABASE valgrind_check"

# Real deliveries, with the worker under valgrind too.
sed -i "/^pg_sync.http_proxy/d" "$dir/data/postgresql.conf"
psql -X -q -c "SELECT pg_reload_conf()" >/dev/null
receiver_start VG
psql -X -q -c "CREATE DATABASE valgrind_delivery"
export PGDATABASE=valgrind_delivery
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION pg_sync;
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT pg_sync.create_endpoint('vg', '$VG_URL', secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                               batch_size => 7, max_in_flight => 3, retry_base_ms => 20,
                               retry_max_ms => 200, max_attempts => 1000, timeout_ms => 2000);
SELECT pg_sync.track('t', 'vg');
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 200) g;
SQL
pending() { [ "$(psql -XAtc "SELECT pending FROM pg_sync.endpoint_status")" = 0 ]; }
wait_for "first deliveries under valgrind" 300 pending
receiver_mode VG '{"mode": "fail_rate", "p": 0.5}'
psql -X -q -c "UPDATE t SET v = v || 'x'" -c "SELECT pg_sync.emit('vg', 'x', '{\"a\": 1}', 'k')" >/dev/null
wait_for "deliveries with failures under valgrind" 300 pending
receiver_mode VG '{"mode": "drop"}'
psql -X -q -c "DELETE FROM t WHERE id <= 50" >/dev/null
sleep 2 # let a few dropped connections happen (nothing to poll for: they are failures)
receiver_mode VG '{"mode": "ok"}'
psql -X -q -c "SELECT pg_sync.pause_endpoint('vg')" -c "SELECT pg_sync.resume_endpoint('vg')" >/dev/null
wait_for "deliveries after dropped connections under valgrind" 300 pending
psql -X -q -c "SELECT pg_sync.alter_endpoint('vg', batch_size => 1)" -c "TRUNCATE t" >/dev/null
psql -X -q -c "DROP EXTENSION pg_sync CASCADE" >/dev/null
psql -X -q -c "CREATE EXTENSION pg_sync" >/dev/null
PGDATABASE=postgres psql -X -q -c "DROP DATABASE valgrind_delivery"
echo "ran deliveries: $(receiver_stats VG)"
stop
trap - EXIT
bad=0
for log in "$dir"/vg.*.log; do
    # One record per blank-line-separated block; keep those that matter.
    # Writes of uninitialised padding (WAL records, the relcache init file) are PostgreSQL's own,
    # known and suppressed in its src/tools/valgrind.supp; they show pg_sync only as the caller.
    if awk 'BEGIN{RS=""} /Syscall param (write|pwrite64)\(buf\) points to uninitialised/ {next}
            /Invalid (read|write|free)|pg_sync/ {print; found=1} END{exit !found}' "$log"; then
        bad=1
    fi
done
if [ $bad -ne 0 ]; then
    echo "valgrind reported errors (logs in $dir)"
    exit 1
fi
echo "valgrind: no errors in pg_sync code or invalid accesses (logs in $dir)"
