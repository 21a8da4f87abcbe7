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
trap kafka_test_exit EXIT

kafka_start kc
kafka_items 5000
# Every acknowledgement takes 200 ms: records are in flight at the crashes.
for b in 1 2 3; do kafka_cmd kc rtt "$b" 200; done
now_ms() { /usr/bin/python3 -c 'import time; print(int(time.time() * 1000))'; }
server_up() { q -c "SELECT 1" >/dev/null 2>&1; }
in_flight() { cond "(SELECT in_flight > 0 FROM pg_sync.endpoint_status WHERE endpoint = 'k')"; }
# Duplicates: at most max_in_flight * batch_size per crash so far, each first written before the
# last crash (kafka_verify). The crash's time is read right after kill -9: read before it, the
# records the worker handed to librdkafka between that reading and the kill (a whole request, on
# a loaded machine) counted as first written after the crash.
per_crash=$(q -c "SELECT max_in_flight * batch_size FROM pg_sync.endpoints WHERE name = 'k'")
[ -n "$per_crash" ] || fail "no endpoint k"

# --- a) kill -9 of the delivery worker --------------------------------------------------------------
wait_status k 30 "pending = 0" "a: the first rows delivered"
kafka_writers 8
wait_for "a: records in flight" 20 in_flight
old_pid=$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")
[ -n "$old_pid" ] || fail "a: no worker in pg_sync.workers"
kill -9 "$old_pid"
t_kill=$(now_ms) # after the kill: the worker produces until the signal lands
wait_for "a: the worker gone" 30 bash -c "! kill -0 $old_pid 2>/dev/null"
wait "$WRITERS_PID" || true # the crash recovery ends their sessions too
wait_for "a: server back after crash recovery" 60 server_up
wait_for "a: a new worker" 60 cond "(SELECT count(*) = 1 AND min(pid) <> $old_pid FROM pg_sync.workers)"
grep -q "background worker \"pg_sync worker\" (PID $old_pid) was terminated by signal 9" "$PG_DIR/server.log" \
    || fail "a: no crash of the worker in the server log"
kafka_verify a "$per_crash" "$t_kill"
echo "ok a: nothing lost, per-key order kept across kill -9 of the worker"

# --- b) kill -9 of the whole server -------------------------------------------------------------
kafka_writers 30
wait_for "b: records in flight" 20 in_flight
children=$(server_pids | grep -vx "$PG_PID" || true)
kill -9 "$PG_PID" $children 2>/dev/null || true
t_kill=$(now_ms)
wait_for "b: every server process gone" 30 no_server_left
postmaster_gone() { ! kill -0 "$PG_PID" 2>/dev/null; }
wait_for "b: the killed postmaster reaped" 60 postmaster_gone
wait "$WRITERS_PID" && fail "b: pgbench did not notice the crash" || true
pg_restart_after_crash
kafka_verify b $((2 * per_crash)) "$t_kill"
echo "ok b: nothing lost, per-key order kept across kill -9 of the server"

if grep -E "PANIC|TRAP:|delivery worker failed" "$PG_DIR/server.log"; then
    fail "worker trouble in the server log"
fi
echo "ok: kafka crash recovery"
