#!/usr/bin/env bash
# A redeliver() that commits in the middle of a delivery pass cannot reorder a key (README,
# Delivery: per-key order across dead letters and redelivery).
#
# Each pass reads an endpoint's head of queue (pending events, lowest ids first) and then the dead
# letters of that id range, which block the later events of their keys. Both reads must see the
# same snapshot: with two snapshots, a redeliver() committing between them moves a dead letter
# into the queue after the head was read and before the dead letters are, so the redelivered
# event is in neither read and a later event of its key goes out first.
# pg_sync.debug_pass_pause (superuser, tests only) forces that interleaving: a pass that read a
# non-empty head waits there until the worker's latch is set (redeliver() sets it) or the time
# is up, showing 'pg_sync delivery pass: paused between head and dead-letter reads' in
# pg_stat_activity.
#
# Scenario (endpoint with max_attempts 1, so one failure makes a dead letter):
#   - key 1 updated to v=1 (event A) while the receiver answers 500: A is a dead letter;
#   - the receiver answers 2xx again; key 1 updated to v=2 (event B): B stays pending behind A,
#     across several worker passes, and never reaches the receiver; key 2 (the control) is
#     updated meanwhile and delivered;
#   - debug_pass_pause = 10 s; once the worker is paused after reading a head that holds B and
#     not A, redeliver() commits (and wakes it); the setting is reset; everything is delivered.
# Then, over every request in the order the receiver logged it (any status): a request carries an
# event of a key only when every earlier event of that key (lower id) was acknowledged by an
# earlier request or rides ahead of it in the same request; the 2xx events of key 1 are v=0
# (insert), 1, 2 and those of key 2 v=0, 1, 2, each once. The analyser checks itself on this
# run's log rewritten into what two snapshots produce (B acknowledged, then A): it must fail.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
# Short sweeps: the "several passes" below take a second, not five.
pg_start redeliver_race "pg_sync.sweep_interval = 200ms"
trap delivery_test_exit EXIT
PY=/usr/bin/python3
PAUSE_TEXT='pg_sync delivery pass: paused between head and dead-letter reads'

receiver_start hook
q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('e', '$hook_URL', max_attempts => 1, retry_base_ms => 20, retry_max_ms => 100);
CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
SELECT pg_sync.track('t', 'e');
INSERT INTO t VALUES (1, 0), (2, 0);
SQL
wait_status e 20 "pending = 0 AND dead = 0 AND delivered_total = 2" "the two inserts delivered"
WPID=$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")
[ -n "$WPID" ] || fail "no worker in pg_sync.workers"

# --- A: a dead letter ------------------------------------------------------------------------------
receiver_mode hook '{"mode":"status","status":500}'
q -c "UPDATE t SET v = 1 WHERE id = 1"
wait_status e 20 "dead = 1 AND pending = 0 AND last_status = 500" "A to become a dead letter"
A=$(q -c "SELECT id FROM pg_sync.dead_letters WHERE endpoint = 'e' AND key->>'id' = '1'")
[ -n "$A" ] || fail "A is not among the dead letters"

# --- B: pending behind A, across several passes; key 2 flows ---------------------------------------
receiver_mode hook '{"mode":"ok"}'
q -c "UPDATE t SET v = 2 WHERE id = 1"
B=$(q -c "SELECT q.id FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id
           WHERE e.name = 'e' AND q.key->>'id' = '1'")
if [ -z "$B" ] || [ "$B" -le "$A" ]; then fail "B (id [$B]) is not queued after A ($A)"; fi
# Committed after B: the pass that sends it read a head that holds B.
q -c "UPDATE t SET v = 1 WHERE id = 2"
receiver_wait_events hook 3 20
# Several more passes (pg_sync.workers.last_active_at moves at the end of every pass) over at
# least three sweep intervals (each sweep is a full pass that reads the head).
passes=0 last_active=
hold_until=$(q -c "SELECT clock_timestamp() + interval '650 ms'")
passes_done() {
    local now
    now=$(q -c "SELECT last_active_at FROM pg_sync.workers WHERE pid = $WPID")
    if [ "$now" != "$last_active" ]; then
        passes=$((passes + 1)) last_active=$now
    fi
    [ "$passes" -ge 6 ] && cond "clock_timestamp() > '$hold_until'"
}
wait_for "several worker passes while B is held" 20 passes_done
wait_status e 5 "pending = 1 AND dead = 1 AND in_flight = 0" "B still pending behind A"
assert_eq "$(rq hook "sum(1 for r in recs for i in ids(r) if i == $B)")" 0 "requests that carried B while A is dead"
assert_eq "$(q -c "SELECT attempts FROM pg_sync._queue WHERE id = $B")" 0 "B's attempts while A is dead"
echo "ok: A ($A) dead, B ($B) held behind it over $((passes - 1)) worker passes; key 2 delivered meanwhile"

# --- redeliver() between the head read and the dead-letter read --------------------------------------
q >/dev/null <<'SQL'
ALTER SYSTEM SET pg_sync.debug_pass_pause = '10s';
SELECT pg_reload_conf();
SQL
paused() {
    PAUSED_SINCE=$(q -c "SELECT query_start FROM pg_stat_activity
                          WHERE pid = $WPID AND state = 'active' AND query = '$PAUSE_TEXT'")
    [ -n "$PAUSED_SINCE" ]
}
wait_for "the worker to pause between its two reads" 20 paused
# What pg_stat_activity shows for the worker (query_start is the start of the paused pass).
assert_eq "$(q -c "SELECT backend_type || '|' || wait_event_type || '|' || (query_start > now() - interval '3 s')
                    FROM pg_stat_activity WHERE pid = $WPID")" "pg_sync worker|Extension|true" \
    "the paused worker in pg_stat_activity (backend_type, wait_event_type, a young pass)"
# Its head was read before A came back: it holds B alone (A is still a dead letter right now).
assert_eq "$(st e "pending || ':' || dead")" "1:1" "pending:dead when redeliver() is called"
moved=$(q -c "SELECT pg_sync.redeliver('e')")
assert_eq "$moved" 1 "redeliver() count"
# Premise: redeliver() committed while that pass was still paused (it pauses at most 10 s from
# shortly after its start), and its commit ended the pause (the latch): the pass finished.
assert_eq "$(q -c "SELECT clock_timestamp() < '$PAUSED_SINCE'::timestamptz + interval '9 s'")" t \
    "redeliver() committed within the pause (test premise)"
pass_over() { ! cond "EXISTS (SELECT FROM pg_stat_activity WHERE pid = $WPID AND query_start = '$PAUSED_SINCE')"; }
wait_for "the paused pass to end once redeliver() committed" 5 pass_over
q >/dev/null <<'SQL'
ALTER SYSTEM RESET pg_sync.debug_pass_pause;
SELECT pg_reload_conf();
SQL
wait_status e 30 "pending = 0 AND dead = 0 AND in_flight = 0" "A and B delivered after the redelivery"
q -c "UPDATE t SET v = 2 WHERE id = 2"
wait_status e 20 "pending = 0 AND dead = 0 AND delivered_total = 6" "the last update of key 2 delivered"

# --- the receiver's log ----------------------------------------------------------------------------
# check_order LOG: per-key order over every request in log order; exits non-zero with the reasons.
check_order() {
    $PY - "$1" "$A" "$B" <<'PY'
import json, sys
from collections import defaultdict
path, A, B = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
recs = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
problems = []
every = defaultdict(set)          # key -> every event id of it seen in any request
for r in recs:
    for e in r["events"] or []:
        every[e["key"]["id"]].add(e["id"])
acked = defaultdict(set)          # key -> ids answered 2xx by the requests logged so far
versions = defaultdict(list)      # key -> new.v of its 2xx events, in log order
b_sent_before_a_acked = []
for r in recs:
    ok = r["status"] is not None and 200 <= r["status"] < 300
    ahead = defaultdict(set)      # key -> ids earlier in this request
    for e in r["events"] or []:
        k, i = e["key"]["id"], e["id"]
        early = sorted(y for y in every[k] if y < i and y not in acked[k] and y not in ahead[k])
        if early:
            problems.append(f"request {r['n']} (status {r['status']}): key {k} event {i} (v={e['new']['v']}) "
                            f"sent while earlier events {early} were not acknowledged")
        if i == B and A not in acked[k] and A not in ahead[k]:
            b_sent_before_a_acked.append(r["n"])
        ahead[k].add(i)
    if ok:
        for e in r["events"] or []:
            acked[e["key"]["id"]].add(e["id"])
            versions[e["key"]["id"]].append(e["new"]["v"])
if b_sent_before_a_acked:
    problems.append(f"B ({B}) went out before A ({A}) was acknowledged, in request(s) {b_sent_before_a_acked}")
for k in (1, 2):
    if versions[k] != [0, 1, 2]:
        problems.append(f"key {k}: 2xx versions in arrival order {versions[k]}, expected [0, 1, 2]")
a_reqs = [(r["n"], r["status"]) for r in recs if A in [e["id"] for e in r["events"] or []]]
if [s for _, s in a_reqs] != [500, 204]:
    problems.append(f"A ({A}) was carried by (request, status) {a_reqs}, expected one 500 then one 204")
for p in problems[:10]:
    print(p[:500], file=sys.stderr)
if problems:
    sys.exit(1)
together = any(A in [e["id"] for e in r["events"] or []] and B in [e["id"] for e in r["events"] or []] for r in recs)
print(f"{len(recs)} requests; key 1: 2xx v={versions[1]}, A and B {'in one request, A first' if together else 'in separate requests, A acknowledged first'}; "
      f"key 2: 2xx v={versions[2]}")
PY
}
summary=$(check_order "$hook_OUT") || fail "per-key order (above)"
echo "ok: $summary"

# The analyser must see what two snapshots produce: B acknowledged in a request before A's (this
# run's log, with the requests that carried A and B after the redelivery replaced by one with B
# and then one with A). It must fail on that log and on one where B went out, unanswered, first.
for variant in b_acked_first b_unanswered_first; do
    $PY - "$hook_OUT" "$PG_DIR/$variant.jsonl" "$A" "$B" "$variant" <<'PY'
import json, sys
src, dst, A, B, variant = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
recs = [json.loads(l) for l in open(src, encoding="utf-8") if l.strip()]
i = next(n for n, r in enumerate(recs) if r["status"] == 204 and A in [e["id"] for e in r["events"] or []])
ev = {e["id"]: e for r in recs for e in r["events"] or []}
rest = []
for r in recs[i:]:
    r = dict(r, events=[e for e in r["events"] or [] if e["id"] not in (A, B)])
    if r["events"]:
        rest.append(r)
b_first = [dict(recs[i], events=[ev[B]], status=204 if variant == "b_acked_first" else None)]
if variant == "b_unanswered_first":
    b_first.append(dict(recs[i], events=[ev[A]], status=204))
    b_first.append(dict(recs[i], events=[ev[B]], status=204))
else:
    b_first.append(dict(recs[i], events=[ev[A]], status=204))
out = recs[:i] + b_first + rest
with open(dst, "w", encoding="utf-8") as f:
    for n, r in enumerate(out, 1):
        f.write(json.dumps(dict(r, n=n)) + "\n")
PY
    if why=$(check_order "$PG_DIR/$variant.jsonl" 2>&1); then
        fail "the analyser accepted a log in which B went out before A was acknowledged ($variant)"
    fi
    assert_contains "$why" "B ($B) went out before A ($A) was acknowledged"
done
echo "ok: the analyser rejects this run's log rewritten with B before A (acknowledged, or unanswered)"

if grep -E "PANIC|TRAP:|was terminated by signal|exited with exit code|delivery worker failed|ERROR" "$PG_DIR/server.log"; then
    fail "worker trouble in the server log"
fi
echo "ok: redeliver() between a pass's head and dead-letter reads keeps per-key order"
