#!/usr/bin/env bash
# A delivery pass that fails does not end the worker (README, Delivery; docs/delivery.md).
#
# A pass is one transaction; an ERROR in it (here: a CHECK (false) NOT VALID constraint that a
# superuser adds to pg_sync._endpoint_state, which every pass with statistics to write upserts)
# is caught at the C++/PostgreSQL border (src/pg/guard.cpp): the transaction is aborted, the
# error logged and shown in pg_sync.workers (state 'retrying', last_error), and the pass tried
# again with a backoff. Requests in flight carry on; their outcomes are recorded by the first
# pass that succeeds.
#
# Scenario: 5 events delivered; the receiver stalls (3 s) and 5 more events go out and are held
# there (in flight); the constraint is added; 10 more events are queued. The worker must show the
# error while the held requests complete (their outcomes wait in memory: the queue still has
# their events); then the constraint goes. Checked: the worker kept its PID, all 20 events were
# answered 2xx, the queue and the dead letters are empty, delivered_total = 20, no event was
# answered 2xx twice except one of those in flight when the constraint came, and the error is in
# pg_sync.workers and in the server log.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
pg_start failed_pass "pg_sync.sweep_interval = 500ms"
trap delivery_test_exit EXIT

receiver_start hook
q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('e', '$hook_URL', batch_size => 5);
CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
SELECT pg_sync.track('t', 'e');
INSERT INTO t SELECT g FROM generate_series(1, 5) g;
SQL
wait_status e 20 "pending = 0 AND delivered_total = 5" "the first 5 events delivered"
WPID=$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")
[ -n "$WPID" ] || fail "no worker in pg_sync.workers"
assert_eq "$(q -c "SELECT last_error IS NULL FROM pg_sync.workers WHERE pid = $WPID")" t "last_error before any failure"

# --- requests in flight, then the pass fails ---------------------------------------------------------
receiver_mode hook '{"mode":"stall","seconds":3}'
q -c "INSERT INTO t SELECT g FROM generate_series(6, 10) g"
held() { [ "$(receiver_stats hook | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["in_flight"])')" -ge 1 ]; }
wait_for "a request held by the receiver" 10 held
IN_FLIGHT=$(q -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM pg_sync._queue")
q -c "ALTER TABLE pg_sync._endpoint_state ADD CONSTRAINT pass_fails CHECK (false) NOT VALID"
receiver_mode hook '{"mode":"ok"}'
q -c "INSERT INTO t SELECT g FROM generate_series(11, 20) g"

failing() {
    cond "EXISTS (SELECT FROM pg_sync.workers WHERE pid = $WPID AND state = 'retrying'
                   AND last_error LIKE '%pass_fails%')"
}
wait_for "pg_sync.workers to show the failed pass" 20 failing
# The held requests complete while passes fail: their events are answered, not yet recorded.
answered_held() { [ "$(rq hook "len([e for r in ok for e in (r['events'] or []) if e['id'] in {$IN_FLIGHT}])")" -ge 5 ]; }
wait_for "the held requests to be answered" 20 answered_held
sleep_passes_until=$(q -c "SELECT clock_timestamp() + interval '1 s'")
# Passes keep failing (with a backoff) while the constraint is there: the answered events stay
# queued, the worker stays.
still_failing() { cond "clock_timestamp() > '$sleep_passes_until'" && failing; }
wait_for "a second of failing passes" 10 still_failing
assert_eq "$(q -c "SELECT count(*) >= 5 FROM pg_sync._queue WHERE id IN ($IN_FLIGHT)")" t \
    "outcomes of a failed pass must not be recorded"
assert_eq "$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")" "$WPID" "worker PID while failing"
grep -q 'violates check constraint "pass_fails"' "$PG_DIR/server.log" || fail "the error is not in the server log"
grep -q 'pg_sync: delivery pass failed' "$PG_DIR/server.log" || fail "the retry is not in the server log"

# --- the cause goes: everything is recorded, once ----------------------------------------------------
q -c "ALTER TABLE pg_sync._endpoint_state DROP CONSTRAINT pass_fails"
wait_status e 20 "pending = 0 AND dead = 0 AND in_flight = 0 AND delivered_total = 20" "all 20 events recorded"
recovered() { cond "EXISTS (SELECT FROM pg_sync.workers WHERE pid = $WPID AND state IN ('idle', 'delivering'))"; }
wait_for "the worker to leave state 'retrying'" 10 recovered
assert_eq "$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")" "$WPID" "worker PID after recovery"
assert_eq "$(q -c "SELECT last_error LIKE '%pass_fails%' FROM pg_sync.workers WHERE pid = $WPID")" t "last_error kept"
assert_eq "$(rq hook "sorted({e['id'] for r in ok for e in (r['events'] or [])}) == sorted(set(range(min(ids(ok[0])), min(ids(ok[0])) + 20)))")" True \
    "every one of the 20 events answered 2xx"
DUPS=$(rq hook "','.join(str(i) for i in sorted({e['id'] for r in ok for e in (r['events'] or [])}) if sum(1 for r in ok for e in (r['events'] or []) if e['id'] == i) > 1)")
for d in ${DUPS//,/ }; do
    [[ ",$IN_FLIGHT," == *",$d,"* ]] || fail "event $d sent twice but was not in flight when the pass failed (dups: $DUPS)"
done
echo "events in flight when the pass failed: $IN_FLIGHT; answered 2xx twice: ${DUPS:-none}"
echo "ok: failed pass (worker $WPID kept, error shown and logged, nothing lost, nothing re-sent)"
