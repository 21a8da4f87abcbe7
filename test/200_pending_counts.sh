#!/usr/bin/env bash
# Pending counts in shared memory (src/pg/queue_counters.cpp) are exact, and monitoring does not
# scan the queue.
#   a) After each of: commit, rollback, savepoint rollback (SQL and a plpgsql exception block),
#      emit, one statement captured for two endpoints, 2PC prepared then committed (and one rolled
#      back), events going dead and redeliver(), delivery, queue rotation carrying a paused
#      endpoint's events into another partition (every 300 ms here), a DBA's DELETE and TRUNCATE
#      of the queue, and kill -9 of the delivery worker (crash recovery empties shared memory),
#      pg_sync._pending(endpoint) - what endpoint_status shows - is not NULL (the shared counts
#      are in use, not the fallback count) and equals count(*) of the endpoint's queue. The
#      server log has one line per recount: the steps the counts follow by themselves (writes,
#      emit, redeliver, delivery, rotation) must cause none; the others (COMMIT PREPARED, DELETE, TRUNCATE,
#      the restart) one each.
#   b) Concurrent writers (savepoints rolled back in every transaction) and delivery, while a
#      session keeps asking for recounts: exact at the end, and the worker's subtractions neither
#      drift below nor above (after the drain, k new events show as exactly k).
#   c) Plan shapes with 50,000 events queued and analyzed: no Seq Scan of pg_sync._queue in
#      endpoint_status, in any statement health() runs (auto_explain, nested statements), in
#      workers or recent_attempts; endpoint_status is not JIT-compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
PY=/usr/bin/python3
# Queue rotation every 300 ms: the worker carries the paused endpoints' events from partition to
# partition (DELETE ... RETURNING into INSERT, then TRUNCATE), which must change no count.
pg_start pending "max_prepared_transactions = 5" "max_connections = 40" "pg_sync.queue_rotation_interval = '300ms'"
trap delivery_test_exit EXIT

# --- helpers --------------------------------------------------------------------------------------

# Every endpoint: shared count present and equal to the queue's count.
exact_now() {
    cond "(SELECT bool_and(pg_sync._pending(e.id, false) IS NOT DISTINCT FROM
                           (SELECT count(*) FROM pg_sync._queue q WHERE q.endpoint_id = e.id))
             FROM pg_sync._endpoints e)"
}
counts() {
    q -c "SELECT string_agg(format('%s=%s/%s', e.name, coalesce(pg_sync._pending(e.id, false)::text, 'NULL'),
                                   (SELECT count(*) FROM pg_sync._queue q WHERE q.endpoint_id = e.id)), ' '
                            ORDER BY e.name)
            FROM pg_sync._endpoints e" 2>&1
}
recounts() { grep -c 'pending events of database "postgres" recounted' "$PG_DIR/server.log" || true; }
more_recounts() { [ "$(recounts)" -gt "$last_recounts" ]; }
pending_of() { q -c "SELECT pending FROM pg_sync.endpoint_status WHERE endpoint = '$1'"; }
# check LABEL ENDPOINT EXPECTED [recount|any]: counts exact; ENDPOINT's pending is EXPECTED; a
# recount happened since the last check with "recount", none without ("any": not checked).
last_recounts=0
check() {
    local label=$1 ep=$2 want=$3 recount=${4:-}
    if [ "$recount" = recount ]; then
        wait_for "$label: a recount" 30 more_recounts
    fi
    local deadline=$((SECONDS + 30))
    until exact_now; do
        [ $SECONDS -lt $deadline ] || fail "$label: counts not exact after 30 s: $(counts) (name=shared/count)"
        sleep 0.05 # poll interval
    done
    assert_eq "$(pending_of "$ep")" "$want" "$label: pending of $ep"
    local n; n=$(recounts)
    [ -n "$recount" ] || assert_eq "$n" "$last_recounts" "$label: recounts (none expected)"
    last_recounts=$n
    echo "ok: $label ($(counts))"
}

receiver_start ok
receiver_start bad --mode status --status 500
q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('h', 'http://127.0.0.1:9/h');
SELECT pg_sync.pause_endpoint('h');
SELECT pg_sync.create_endpoint('h2', 'http://127.0.0.1:9/h2');
SELECT pg_sync.pause_endpoint('h2');
SELECT pg_sync.create_endpoint('live', '$ok_URL', retry_base_ms => 20, retry_max_ms => 100);
SELECT pg_sync.create_endpoint('dl', '$bad_URL', max_attempts => 1);
CREATE TABLE th (id int PRIMARY KEY);
SELECT pg_sync.track('th', 'h');
CREATE TABLE tboth (id int PRIMARY KEY);
SELECT pg_sync.track('tboth', 'h');
SELECT pg_sync.track('tboth', 'h2');
CREATE TABLE tl (id int PRIMARY KEY);
SELECT pg_sync.track('tl', 'live');
CREATE TABLE td (id int PRIMARY KEY);
CREATE SEQUENCE s_fill START 100000;
SELECT pg_sync.track('td', 'dl');
CREATE ROLE mon LOGIN IN ROLE pgsync_monitor;
SQL

# --- a) each kind of change -------------------------------------------------------------------------
wait_for "the worker's first recount" 30 more_recounts
check "start (the worker's first recount)" h 0 recount

q -c "INSERT INTO th SELECT generate_series(1, 10)"
check "commit of 10 rows" h 10
q -c "BEGIN; INSERT INTO th SELECT generate_series(11, 15); ROLLBACK;"
check "rollback" h 10
q >/dev/null <<'SQL'
BEGIN;
INSERT INTO th VALUES (100), (101), (102);
SAVEPOINT a;
INSERT INTO th VALUES (103), (104), (105), (106);
SAVEPOINT b;
INSERT INTO th VALUES (107);
RELEASE b;
ROLLBACK TO a;
SAVEPOINT c;
INSERT INTO th VALUES (108), (109);
RELEASE c;
COMMIT;
SQL
check "savepoints: one released, one rolled back with a released child" h 15
q >/dev/null <<'SQL'
DO $$
BEGIN
    INSERT INTO th VALUES (200);
    BEGIN
        INSERT INTO th VALUES (201), (202);
        PERFORM pg_sync.emit('h', 'inside', '{}');
        RAISE EXCEPTION 'roll the block back';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    INSERT INTO th VALUES (203);
END
$$;
SQL
check "plpgsql exception block" h 17
q >/dev/null <<'SQL'
SELECT pg_sync.emit('h', 'a', '{}');
SELECT pg_sync.emit('h', 'b', '{}', key => 'k');
BEGIN; SELECT pg_sync.emit('h', 'c', '{}'); ROLLBACK;
SQL
check "emit (SQL inserts, the row trigger), one rolled back" h 19
q -c "INSERT INTO tboth SELECT generate_series(1, 6)"
check "one statement for two endpoints" h 25
assert_eq "$(pending_of h2)" 6 "h2 after the two-endpoint statement"

q >/dev/null <<'SQL'
BEGIN; INSERT INTO th SELECT generate_series(300, 306); PREPARE TRANSACTION 'p1';
BEGIN; INSERT INTO th SELECT generate_series(400, 402); PREPARE TRANSACTION 'p2';
SQL
check "two transactions prepared (not committed: not pending)" h 25
q -c "ROLLBACK PREPARED 'p2'"
check "ROLLBACK PREPARED" h 25
q -c "COMMIT PREPARED 'p1'"
check "COMMIT PREPARED" h 32 recount

q -c "INSERT INTO td SELECT generate_series(1, 8)"
wait_status dl 30 "dead = 8 AND pending = 0" "8 dead letters"
check "8 events of dl dead (the worker's move to the dead letters)" dl 0
q -c "SELECT pg_sync.pause_endpoint('dl')" >/dev/null
assert_eq "$(q -c "SELECT pg_sync.redeliver('dl')")" 8 "redelivered"
check "redeliver() (SQL insert of 8 into the queue)" dl 8

q -c "INSERT INTO tl SELECT generate_series(1, 50)"
receiver_wait_events ok 50 30
wait_status live 30 "pending = 0" "the 50 recorded as delivered"
check "50 events delivered" live 0
q -c "SELECT pg_sync.pause_endpoint('live')" >/dev/null
q -c "INSERT INTO tl SELECT generate_series(51, 53)"
check "3 more after the delivery: no drift from the worker's deletes" live 3
q -c "SELECT pg_sync.resume_endpoint('live')" >/dev/null
wait_status live 30 "pending = 0" "live drained again"

# Rotation carries h's events out of their partition once it is old enough (events must keep
# coming for the partitions to rotate: one more for live each poll).
hpart() { q -c "SELECT string_agg(DISTINCT q.part::text, ',') FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE e.name = 'h'"; }
h_before=$(hpart)
carried() { q -c "INSERT INTO tl VALUES (nextval('s_fill'))" >/dev/null; [ "$(hpart)" != "$h_before" ]; }
wait_for "h's events carried out of partition $h_before" 30 carried
wait_status live 30 "pending = 0" "live drained after the fill"
check "queue rotation carried h's events from partition $h_before to $(hpart)" h 32

q -c "DELETE FROM pg_sync._queue WHERE id IN (SELECT q.id FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE e.name = 'h' ORDER BY q.id LIMIT 4)"
check "a DBA's DELETE of 4 queued events" h 28 recount
q >/dev/null <<'SQL'
BEGIN;
DELETE FROM pg_sync._queue WHERE id IN (SELECT id FROM pg_sync._queue ORDER BY id LIMIT 1);
ROLLBACK;
SQL
check "a DELETE rolled back" h 28

old_pid=$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")
[ -n "$old_pid" ] || fail "no worker in pg_sync.workers"
kill -9 "$old_pid"
wait_for "the worker gone" 30 bash -c "! kill -0 $old_pid 2>/dev/null"
server_up() { q -c "SELECT 1" >/dev/null 2>&1; }
wait_for "server back after crash recovery" 60 server_up
wait_for "a new worker" 60 cond "(SELECT count(*) = 1 AND min(pid) <> $old_pid FROM pg_sync.workers)"
check "kill -9 of the worker, crash recovery, a new worker" h 28 recount
q -c "INSERT INTO th SELECT generate_series(500, 504)"
check "a commit after the restart" h 33

q -c "TRUNCATE pg_sync._queue"
check "TRUNCATE of the queue" h 0 recount
q -c "INSERT INTO th SELECT generate_series(600, 601)"
check "a commit after the TRUNCATE" h 2

# --- b) concurrency --------------------------------------------------------------------------------
q >/dev/null <<'SQL'
CREATE SEQUENCE s_th START 10000;
CREATE SEQUENCE s_tl START 10000;
SQL
cat >"$PG_DIR/writers.sql" <<'SQL'
BEGIN;
INSERT INTO th VALUES (nextval('s_th'));
SAVEPOINT a;
INSERT INTO th VALUES (nextval('s_th'));
ROLLBACK TO a;
INSERT INTO tl VALUES (nextval('s_tl')), (nextval('s_tl'));
SELECT pg_sync.emit('h', 'x', '{}');
END;
SQL
# Recounts asked for all along (a DELETE of nothing still asks), while 4 writers and the worker run.
(
    end=$((SECONDS + 6))
    while [ $SECONDS -lt $end ]; do
        q -c "DELETE FROM pg_sync._queue WHERE false" >/dev/null
        sleep 0.1 # pacing of the recount requests, not a wait for a condition
    done
) &
asker=$!
recounts_before=$(recounts)
pgbench -n -c 4 -j 2 -T 5 -f "$PG_DIR/writers.sql" postgres >"$PG_DIR/pgbench.log" 2>&1 ||
    { cat "$PG_DIR/pgbench.log"; fail "pgbench"; }
wait "$asker"
during=$(( $(recounts) - recounts_before ))
[ "$during" -ge 3 ] || fail "b: only $during recounts ran during the writes"
tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$PG_DIR/pgbench.log")
echo "  $tx transactions of 4 writers, $during recounts meanwhile"
wait_status live 60 "pending = 0" "b: live drained"
check "b: 4 writers, delivery and recounts at once" h $((2 + 2 * tx)) any
q -c "SELECT pg_sync.pause_endpoint('live')" >/dev/null
q -c "INSERT INTO tl VALUES (1000001), (1000002), (1000003), (1000004)"
check "b: 4 more after the concurrent drain" live 4

# --- c) plan shapes -------------------------------------------------------------------------------
q >/dev/null <<'SQL'
INSERT INTO th SELECT generate_series(1000000, 1049999);
ANALYZE pg_sync._queue;
SQL
check "c: 50,000 more queued" h $((2 + 2 * tx + 50000))
# check_plans LABEL [must-see-queue] < EXPLAIN or auto_explain output (JSON): fails on any Seq
# Scan of pg_sync._queue or one of its partitions (any kind, executed or not) and on JIT compilation (the estimated cost
# of a plan above jit_above_cost: a count of the queue in endpoint_status, even never executed,
# cost 0.4 to 1.7 s of JIT per call with 60,000 events).
cat >"$PG_DIR/check_plans.py" <<'PY'
import json, re, sys
text, label = sys.stdin.read(), sys.argv[1]
dec, plans, i = json.JSONDecoder(), [], 0
while (i := text.find("{", i)) >= 0:
    try:
        obj, i = dec.raw_decode(text, i)
        plans.append(obj)
    except ValueError:
        i += 1
def nodes(n):
    yield n
    for c in n.get("Plans", []):
        yield from nodes(c)
seen = 0
for p in plans:
    for top in (p if isinstance(p, list) else [p]):
        if "JIT" in top:
            sys.exit(f"{label}: JIT-compiled (estimated cost {top['Plan']['Total Cost']:.0f}): {top['JIT']}")
        for n in nodes(top.get("Plan", top)):
            if re.fullmatch(r"_queue(_[0-9]+)?", n.get("Relation Name", "")):  # the queue or a partition
                seen += 1
                if "Seq Scan" in n["Node Type"]:
                    sys.exit(f"{label}: {n['Node Type']} of pg_sync._queue:\n{json.dumps(top, indent=1)[:3000]}")
if len(sys.argv) > 2 and seen == 0:
    sys.exit(f"{label}: no plan touched pg_sync._queue: nothing was checked")
print(f"ok: {label}: {len(plans)} plan(s), {seen} node(s) on pg_sync._queue, no sequential scan, no JIT")
PY
check_plans() { "$PY" "$PG_DIR/check_plans.py" "$@"; }
q -c "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM pg_sync.endpoint_status" | check_plans endpoint_status must-see-queue
for v in workers recent_attempts; do
    q -c "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM pg_sync.$v" | check_plans "$v"
done
# health() is plpgsql: auto_explain shows the plans of the statements it runs.
psql -X -q -At 2>&1 >/dev/null <<'SQL' | check_plans "health()" must-see-queue
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on;
SET auto_explain.log_format = json;
SET client_min_messages = log;
SELECT * FROM pg_sync.health();
SQL
# As a monitor (pg_sync._pending() runs as the reader).
assert_eq "$(q -U mon -c "SELECT pending FROM pg_sync.endpoint_status WHERE endpoint = 'h'")" \
    "$((2 + 2 * tx + 50000))" "pending as pgsync_monitor"
echo "ok: pending counts exact throughout; monitoring reads no queue sequentially"
