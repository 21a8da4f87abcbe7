#!/usr/bin/env bash
# Nothing is lost and per-key order holds for a Kafka endpoint across crashes (docs/design.md,
# Guarantees 2-4), against librdkafka's mock cluster (test/lib/kafka_mock.c), read back by kcat:
#   a) kill -9 of the delivery worker while 4 writers insert and update and records are in flight
#      (the brokers answer after 200 ms): crash recovery, a new worker, everything delivered;
#   b) kill -9 of the whole server (postmaster and every process of its data directory) under the
#      same load: after restart everything committed is delivered, nothing rolled back is.
# Each time: every committed version in the topic, in id order per key in its partition, and
# only records that were in flight at the crash written twice (their first copy's timestamp is
# before the crash).
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/status.sh
. test/lib/kafka.sh
pg_start kcrash "max_connections = 50"
trap 'rc=$?; [ $rc -eq 0 ] || grep -E "ERROR|FATAL|PANIC|TRAP|terminated|pg_sync" "$PG_DIR/server.log" | tail -n 30 >&2; kafka_stop_all; pg_stop' EXIT

kafka_start kc
q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('k', '$kc_URL', retry_base_ms => 100, retry_max_ms => 1000, timeout_ms => 5000,
                               max_attempts => 1000);
CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL);
CREATE SEQUENCE item_ids START 1001;
SELECT pg_sync.track('items', 'k');
INSERT INTO items SELECT g, 1 FROM generate_series(1, 200) g;
SQL
for b in 1 2 3; do kafka_cmd kc rtt "$b" 200; done

cat >"$PG_DIR/update.sql" <<'EOF2'
\set k random(1, 200)
UPDATE items SET v = v + 1 WHERE id = :k;
EOF2
cat >"$PG_DIR/insert.sql" <<'EOF2'
INSERT INTO items VALUES (nextval('item_ids'), 1);
EOF2
cat >"$PG_DIR/rollback.sql" <<'EOF2'
\set k random(1, 200)
BEGIN;
UPDATE items SET v = v + 1000000 WHERE id = :k;
INSERT INTO items VALUES (nextval('item_ids') + 1000000, 1000000);
ROLLBACK;
EOF2
chmod 644 "$PG_DIR"/*.sql
writers() { # writers SECONDS LOG: 4 clients in the background; sets WRITERS_PID
    pgbench -n -c 4 -j 2 -T "$1" -f "$PG_DIR/update.sql@6" -f "$PG_DIR/insert.sql@3" \
        -f "$PG_DIR/rollback.sql@1" >"$2" 2>&1 &
    WRITERS_PID=$!
}
now_ms() { /usr/bin/python3 -c 'import time; print(int(time.time() * 1000))'; }
server_up() { q -c "SELECT 1" >/dev/null 2>&1; }
# verify CASE CRASH_MS MAX: the topic against the table; at most MAX duplicates (max_in_flight *
# batch_size per crash so far), each first written before the crash.
verify() {
    wait_status k 90 "pending = 0 AND dead = 0" "$1: everything delivered after the crash"
    kafka_read kc >"$PG_DIR/records.jsonl"
    q -c "COPY (SELECT id, v FROM items ORDER BY id) TO STDOUT" >"$PG_DIR/items.rows"
    /usr/bin/python3 test/lib/kafka_verify.py "$PG_DIR/records.jsonl" "$PG_DIR/items.rows" public.items 6 "$3" "$2" \
        || fail "$1: the topic does not match the table"
}
in_flight() { cond "(SELECT in_flight > 0 FROM pg_sync.endpoint_status WHERE endpoint = 'k')"; }

# --- a) kill -9 of the delivery worker --------------------------------------------------------------
wait_status k 30 "pending = 0" "a: the first rows delivered"
writers 8 "$PG_DIR/pgbench_a.log"
wait_for "a: records in flight" 20 in_flight
old_pid=$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")
[ -n "$old_pid" ] || fail "a: no worker in pg_sync.workers"
t_kill=$(now_ms)
kill -9 "$old_pid"
wait_for "a: the worker gone" 30 bash -c "! kill -0 $old_pid 2>/dev/null"
wait "$WRITERS_PID" || true # the crash recovery ends their sessions too
wait_for "a: server back after crash recovery" 60 server_up
wait_for "a: a new worker" 60 cond "(SELECT count(*) = 1 AND min(pid) <> $old_pid FROM pg_sync.workers)"
grep -q "background worker \"pg_sync worker\" (PID $old_pid) was terminated by signal 9" "$PG_DIR/server.log" \
    || fail "a: no crash of the worker in the server log"
verify a "$t_kill" 400
echo "ok a: nothing lost, per-key order kept across kill -9 of the worker"

# --- b) kill -9 of the whole server -------------------------------------------------------------
writers 30 "$PG_DIR/pgbench_b.log"
wait_for "b: records in flight" 20 in_flight
children=$(server_pids | grep -vx "$PG_PID" || true)
t_kill=$(now_ms)
kill -9 "$PG_PID" $children 2>/dev/null || true
wait_for "b: every server process gone" 30 no_server_left
postmaster_gone() { ! kill -0 "$PG_PID" 2>/dev/null; }
wait_for "b: the killed postmaster reaped" 60 postmaster_gone
wait "$WRITERS_PID" && fail "b: pgbench did not notice the crash" || true
pg_restart_after_crash
verify b "$t_kill" 800
assert_eq "$(q -c "SELECT count(*) FROM items WHERE v >= 1000000 OR id > 1000000")" 0 "b: rolled-back rows in the table"
echo "ok b: nothing lost, per-key order kept across kill -9 of the server"

if grep -E "PANIC|TRAP:|delivery worker failed" "$PG_DIR/server.log"; then
    fail "worker trouble in the server log"
fi
echo "ok: kafka crash recovery"
