#!/usr/bin/env bash
# How the delivery worker handles every kind of failing receiver (docs/design.md, Guarantees 2, 4, 5
# and 8), each case with its own endpoint, table and receiver (test/lib/receiver.py):
#   a) 500: retried, visible in endpoint_status, recovers when the receiver does;
#   b) 429 / 503 with Retry-After (seconds, HTTP date): the wait is honored;
#   c) 410: endpoint paused, events kept, nothing sent until resumed;
#   d) 302: a failure; the redirect is not followed;
#   e) a stalled receiver: timeout_ms; and it does not hold up other endpoints;
#   f) a dropped connection; g) nothing listening, then a receiver appears;
#   h) max_attempts: dead letters, their key blocked, other keys flow;
#   i) circuit breaker: after 5 consecutive failures, one probe (of one event) at a time, seen
#      in endpoint_status and, with failures that are timeouts, at the receiver;
#   k) per-key order under 30 % random failures (batches retried whole, no key overtaking);
#   j) pg_sync.allow_private_targets = off refuses loopback targets (via 127.0.0.1, localhost and
#      a connection kept alive from before the change), and on again delivers.
# Retries use small retry_base_ms / retry_max_ms so that the whole file runs in well under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
pg_start failures
trap delivery_test_exit EXIT

q >/dev/null <<'SQL'
CREATE EXTENSION pg_sync;
SQL

# --- helpers --------------------------------------------------------------------------------------

# new_case with max_attempts 1000 unless given: events must not become dead letters while a case
# waits.
new_case_080() {
    local args=${3:-}
    [[ "$args" == *max_attempts* ]] || args="${args:+$args, }max_attempts => 1000"
    new_case "$1" "$2" "$args"
}
requests() { rq "$1" 'len(recs)'; }
receiver_in_flight() { "$RECEIVER_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["in_flight"])' <<<"$(receiver_stats "$1")"; }
test_in_flight_le() { [ "$(receiver_in_flight "$1")" -le "$2" ]; }

# --- a) 500, then recovery -------------------------------------------------------------------------
receiver_start ra --mode status --status 500
new_case_080 a "$ra_URL" "retry_base_ms => 50, retry_max_ms => 1000"
q -c "INSERT INTO t_a SELECT g FROM generate_series(1, 5) g"
wait_for "a: events retried (attempts >= 2 in _queue)" 20 \
    cond "(SELECT max(q.attempts) >= 2 FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE e.name = 'a')"
wait_status a 10 "failed_attempts_total >= 2 AND last_error LIKE 'HTTP 500%' AND last_status = 500
                  AND state IN ('retrying', 'circuit_open') AND consecutive_failures >= 2 AND pending = 5
                  AND delivered_total = 0" "failures recorded"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id
                    WHERE e.name = 'a' AND q.attempts >= 1 AND q.last_status = 500 AND q.last_error LIKE 'HTTP 500%'
                      AND q.next_attempt_at IS NOT NULL AND q.first_attempt_at IS NOT NULL")" 5 "a: every queued event records its failure"
assert_eq "$(rq ra 'len(ok)')" 0 "a: no 2xx while failing"
receiver_mode ra '{"mode":"ok"}'
wait_status a 20 "pending = 0 AND state = 'active' AND consecutive_failures = 0 AND delivered_total = 5
                  AND in_flight = 0 AND last_success_at >= last_failure_at" "recovery"
assert_eq "$(delivered_keys ra)" "1,2,3,4,5" "a: delivered keys"
echo "ok a: 500 retried ($(st a failed_attempts_total) failed attempts), then delivered after recovery"

# --- b) 429 / 503 with Retry-After -----------------------------------------------------------------
# retry_base_ms 10: without Retry-After the retry would come within 10 ms.
receiver_start rb --mode fail_first --n 1 --status 429 --retry-after 2
new_case_080 b "$rb_URL" "retry_base_ms => 10, retry_max_ms => 60000"
q -c "INSERT INTO t_b VALUES (1)"
receiver_wait_events rb 1 20
assert_eq "$(rq rb '[r["status"] for r in recs]')" "[429, 204]" "b: requests"
gap=$(rq rb 'round(recs[1]["t"] - recs[0]["t"], 3)')
rq rb 'recs[1]["t"] - recs[0]["t"] >= 1.9' | grep -qx True || fail "b: retry came ${gap}s after a 429 with Retry-After: 2"
assert_contains "$(st b last_error)" "HTTP 429"
echo "ok b1: Retry-After: 2 honored (retry ${gap}s after the 429)"

# HTTP-date form, on a 503: the retry must not come before that date.
date_s=$("$RECEIVER_PYTHON" -c 'import time; print(int(time.time()) + 3)')
http_date=$("$RECEIVER_PYTHON" -c "import email.utils; print(email.utils.formatdate($date_s, usegmt=True))")
receiver_mode rb "{\"mode\":\"fail_first\",\"n\":1,\"status\":503,\"retry_after\":\"$http_date\"}"
q -c "INSERT INTO t_b VALUES (2)"
receiver_wait_events rb 2 20
assert_eq "$(rq rb '[r["status"] for r in recs[2:]]')" "[503, 204]" "b: requests after the HTTP-date"
early=$(rq rb "round($date_s - recs[3]['t'], 3)")
rq rb "recs[3]['t'] >= $date_s - 0.05" | grep -qx True \
    || fail "b: retry came ${early}s before the Retry-After date [$http_date]"
wait_status b 10 "pending = 0 AND delivered_total = 2" "b delivered"
echo "ok b2: Retry-After: $http_date honored (503)"

# retry_max_ms bounds a receiver's Retry-After too: an hour becomes 300 ms.
q -c "SELECT pg_sync.alter_endpoint('b', retry_max_ms => 300)" >/dev/null
receiver_mode rb '{"mode":"fail_first","n":1,"status":429,"retry_after":"3600"}'
q -c "INSERT INTO t_b VALUES (3)"
receiver_wait_events rb 3 20
assert_eq "$(rq rb '[r["status"] for r in recs[4:]]')" "[429, 204]" "b: requests after Retry-After: 3600"
echo "ok b3: Retry-After: 3600 capped by retry_max_ms 300"

# --- c) 410: paused, kept, resumed ------------------------------------------------------------------
receiver_start rc --mode status --status 410
receiver_start rbar # a healthy endpoint: its delivery shows the worker has passed over c
new_case_080 c "$rc_URL" "retry_base_ms => 50, retry_max_ms => 1000"
new_case_080 bar "$rbar_URL"
q -c "INSERT INTO t_c SELECT g FROM generate_series(1, 3) g"
wait_status c 20 "state = 'paused' AND paused_reason LIKE '%410%' AND pending = 3 AND dead = 0 AND last_status = 410" "pause on 410"
assert_eq "$(q -c "SELECT paused FROM pg_sync.endpoints WHERE name = 'c'")" t "c: endpoints.paused"
n410=$(requests rc)
assert_eq "$n410" 1 "c: requests before the pause (one 410 is enough)"
# More changes while paused; a later commit for another endpoint, once delivered, proves that the
# worker has planned every endpoint after them (a full pass), and a sweep interval has passed.
q -c "INSERT INTO t_c VALUES (4)"
sweep_after=$(q -c "SELECT now() + interval '1100 ms'")
q -c "INSERT INTO t_bar VALUES (1)"
receiver_wait_events rbar 1 20
wait_for "c: a sweep interval passed" 10 cond "now() > '$sweep_after'"
q -c "INSERT INTO t_bar VALUES (2)"
receiver_wait_events rbar 2 20
assert_eq "$(requests rc)" "$n410" "c: requests while paused"
assert_eq "$(st c pending)" 4 "c: pending while paused"
receiver_mode rc '{"mode":"ok"}'
q -c "SELECT pg_sync.resume_endpoint('c')" >/dev/null
wait_status c 20 "pending = 0 AND state = 'active' AND delivered_total = 4 AND paused_reason IS NULL" "delivery after resume"
assert_eq "$(delivered_keys rc)" "1,2,3,4" "c: delivered keys"
echo "ok c: 410 paused the endpoint, nothing sent while paused, resume delivered"

# --- d) 302: failure, not followed -----------------------------------------------------------------
receiver_start rd --mode status --status 302
new_case_080 d "$rd_URL" "retry_base_ms => 50, retry_max_ms => 500"
q -c "INSERT INTO t_d VALUES (1)"
wait_status d 20 "failed_attempts_total >= 2 AND last_status = 302 AND last_error LIKE '%302%' AND last_error LIKE '%redirect%'
                  AND pending = 1 AND delivered_total = 0" "302 failures"
assert_eq "$(rq rd 'sum(1 for r in recs if r["path"] != "/hook")')" 0 "d: requests not to /hook (a followed redirect)"
receiver_mode rd '{"mode":"ok"}'
wait_status d 20 "pending = 0 AND delivered_total = 1" "d delivered"
assert_eq "$(rq rd 'sum(1 for r in recs if r["path"] == "/redirected")')" 0 "d: /redirected requests"
echo "ok d: 302 is a failure ($(st d last_error)), redirect not followed"

# --- e) stall: timeout_ms, and a slow endpoint does not hold up others ------------------------------
receiver_start rs --mode stall --seconds 8
receiver_start rf
new_case_080 e "$rs_URL" "timeout_ms => 500, retry_base_ms => 50, retry_max_ms => 500"
new_case_080 slow "$rs_URL" "timeout_ms => 60000"
new_case_080 fast "$rf_URL"
q -c "INSERT INTO t_e VALUES (1)"
q -c "INSERT INTO t_slow VALUES (1)"
wait_status e 20 "last_error LIKE 'timeout%' AND failed_attempts_total >= 1 AND pending = 1 AND delivered_total = 0" "timeout"
wait_status slow 10 "in_flight = 1" "slow's request in flight"
q -c "INSERT INTO t_fast SELECT g FROM generate_series(1, 3) g"
q -c "INSERT INTO t_fast VALUES (4)"
receiver_wait_events rf 4 20
# Had the worker waited for the stalled request (8 s), slow would have been answered first.
assert_eq "$(st slow "format('delivered=%s in_flight=%s', delivered_total, in_flight)")" "delivered=0 in_flight=1" "slow: still in flight when fast was delivered"
assert_eq "$(rq rs 'sum(1 for r in ok)')" 0 "rs: no stalled request answered yet"
receiver_mode rs '{"mode":"ok"}'
wait_status e 20 "pending = 0 AND delivered_total = 1" "e delivered once the receiver answers"
wait_status slow 20 "pending = 0 AND delivered_total = 1" "slow delivered after its stall"
echo "ok e: timeout_ms cuts a stalled request ($(st e last_error)); another endpoint delivered meanwhile"

# --- f) connection dropped -------------------------------------------------------------------------
receiver_start rdrop --mode drop
new_case_080 f "$rdrop_URL" "retry_base_ms => 50, retry_max_ms => 500"
q -c "INSERT INTO t_f VALUES (1)"
wait_status f 20 "failed_attempts_total >= 2 AND last_error ILIKE '%connection%' AND last_status IS NULL AND pending = 1" "drop failures"
receiver_mode rdrop '{"mode":"ok"}'
wait_status f 20 "pending = 0 AND delivered_total = 1" "f delivered"
echo "ok f: dropped connection is a failure ($(st f last_error)), recovery delivered"

# --- g) nothing listening, then a receiver on that port ---------------------------------------------
gport=$(pg_free_port)
new_case_080 g "http://127.0.0.1:$gport/hook" "retry_base_ms => 50, retry_max_ms => 500"
q -c "INSERT INTO t_g VALUES (1), (2)"
wait_status g 20 "failed_attempts_total >= 2 AND last_error LIKE 'connection failed%' AND pending = 2" "connection refused"
receiver_start rg --port "$gport"
assert_eq "$rg_PORT" "$gport" "g: receiver port"
wait_status g 20 "pending = 0 AND delivered_total = 2 AND state = 'active'" "g delivered"
assert_eq "$(delivered_keys rg)" "1,2" "g: delivered keys"
echo "ok g: closed port ($(st g last_error | cut -c1-60)...), delivered once a receiver listens"

# --- h) dead letters block their key, other keys flow -----------------------------------------------
receiver_start rh --mode status --status 500
new_case_080 h "$rh_URL" "max_attempts => 3, retry_base_ms => 20, retry_max_ms => 200"
q -c "INSERT INTO t_h VALUES (1), (2)"
wait_status h 20 "dead = 2 AND pending = 0" "dead letters"
assert_eq "$(q -c "SELECT string_agg(format('%s:%s:%s:%s:%s', \"table\", op, key->>'id', attempts, last_status), ' ' ORDER BY id)
                    FROM pg_sync.dead_letters WHERE endpoint = 'h'")" \
    "public.t_h:insert:1:3:500 public.t_h:insert:2:3:500" "h: dead letters"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync.dead_letters WHERE endpoint = 'h' AND last_error LIKE 'HTTP 500%'
                      AND first_attempt_at IS NOT NULL AND dead_at >= first_attempt_at AND payload->'new'->>'id' IS NOT NULL")" 2 \
    "h: dead letter details"
# Exactly max_attempts attempts per event reached the receiver.
assert_eq "$(rq rh 'sorted(__import__("collections").Counter(i for r in recs for i in ids(r)).values())')" "[3, 3]" \
    "h: attempts per event seen by the receiver"
receiver_mode rh '{"mode":"ok"}'
q >/dev/null <<'SQL'
BEGIN;
UPDATE t_h SET v = 1 WHERE id = 1;   -- same key as a dead letter: must wait behind it
INSERT INTO t_h VALUES (3);          -- another key: flows
COMMIT;
SQL
receiver_wait_events rh 1 20
# Both were committed together, so the pass that sent key 3 saw key 1's event and held it.
assert_eq "$(delivered_keys rh)" "3" "h: delivered keys"
wait_status h 10 "pending = 1 AND dead = 2 AND delivered_total = 1" "h: key 1 still pending"
assert_eq "$(q -c "SELECT q.key->>'id' || ':' || q.attempts FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE e.name = 'h'")" \
    "1:0" "h: the blocked event was never attempted"
# A sweep later it is still held.
sweep_after=$(q -c "SELECT now() + interval '1100 ms'")
wait_for "h: a sweep interval passed" 10 cond "now() > '$sweep_after'"
q -c "INSERT INTO t_h VALUES (4)"
receiver_wait_events rh 2 20
assert_eq "$(delivered_keys rh)" "3,4" "h: delivered keys after a sweep"
assert_eq "$(st h pending)" 1 "h: key 1 still pending"
echo "ok h: 2 dead letters after 3 attempts each; their key waits, other keys flow"

# --- h2) redeliver puts a dead letter back first in its key; purge_dead releases a key -------------
assert_eq "$(q -c "SELECT pg_sync.redeliver('h', ARRAY(SELECT id FROM pg_sync.dead_letters
                                                       WHERE endpoint = 'h' AND key->>'id' = '1'))")" 1 "h2: redeliver count"
wait_status h 20 "pending = 0 AND dead = 1" "h2: key 1 delivered after redelivery"
# Key 1: the redelivered insert, then the update that waited behind it, in this order.
assert_eq "$(rq rh '[(e["op"], e["new"]["v"]) for r in ok for e in r["events"] if e["key"]["id"] == 1]')" \
    "[('insert', 0), ('update', 1)]" "h2: key 1 in order after redelivery"
q -c "UPDATE t_h SET v = 5 WHERE id = 2" >/dev/null # waits behind key 2's dead letter
wait_status h 10 "pending = 1" "h2: key 2 held"
assert_eq "$(q -c "SELECT pg_sync.purge_dead('h', older_than => interval '1 hour')")" 0 "h2: nothing that old"
assert_eq "$(q -c "SELECT pg_sync.purge_dead('h')")" 1 "h2: purge count"
wait_status h 20 "pending = 0 AND dead = 0" "h2: key 2 released by the purge"
assert_eq "$(rq rh '[(e["op"], e["new"]["v"]) for r in ok for e in r["events"] if e["key"]["id"] == 2]')" \
    "[('update', 5)]" "h2: key 2 after the purge"
echo "ok h2: redeliver sent the dead letter before the event behind it; purge_dead released the other key"

# --- i) circuit breaker ------------------------------------------------------------------------------
receiver_start ri --mode status --status 500
new_case_080 i "$ri_URL" "batch_size => 5, max_in_flight => 4, retry_base_ms => 100, retry_max_ms => 1000"
q -c "INSERT INTO t_i SELECT g FROM generate_series(1, 40) g"
wait_status i 20 "state = 'circuit_open'" "circuit open"
assert_eq "$(cond "(SELECT consecutive_failures >= 5 FROM pg_sync.endpoint_status WHERE endpoint = 'i')" && echo y)" y \
    "i: consecutive_failures at circuit_open ($(status_line i))"
# Requests sent before the circuit opened may still be out for a moment; once they are back,
# only probes go.
wait_status i 10 "in_flight <= 1" "i: requests from before the circuit opened answered"
t_open=$("$RECEIVER_PYTHON" -c 'import time; print(time.time())')
# Sample the status while the worker sends three probes (the window is counted in probes, not
# seconds, so a slow machine lengthens it): while the circuit is open, at most one probe (of one
# event) is out.
samples=0 open_samples=0 max_in_flight=0
deadline=$((SECONDS + 60))
until [ "$(rq ri "sum(1 for r in recs if r['t'] > $t_open)")" -ge 3 ]; do
    [ $SECONDS -lt $deadline ] || fail "i: no three probes within 60 s ($(status_line i))"
    IFS='|' read -r s_state s_in_flight < <(q -c "SELECT state, in_flight FROM pg_sync.endpoint_status WHERE endpoint = 'i'")
    samples=$((samples + 1))
    if [ "$s_state" == circuit_open ]; then
        open_samples=$((open_samples + 1))
        [ "$s_in_flight" -le "$max_in_flight" ] || max_in_flight=$s_in_flight
    fi
    sleep 0.02 # poll interval
done
[ "$open_samples" -gt 0 ] || fail "i: circuit never seen open while sampling"
[ "$max_in_flight" -le 1 ] || fail "i: $max_in_flight events in flight while circuit_open"
probes=$(rq ri "[len(ids(r)) for r in recs if r['t'] > $t_open]")
rq ri "all(len(ids(r)) == 1 for r in recs if r['t'] > $t_open)" | grep -qx True \
    || fail "i: requests after the circuit opened carry more than one event: $probes"
total_before=$(rq ri "sum(1 for r in recs if r['t'] <= $t_open)")
receiver_mode ri '{"mode":"ok"}'
wait_status i 20 "pending = 0 AND state = 'active' AND consecutive_failures = 0 AND delivered_total = 40" "i recovery"
assert_eq "$(delivered_keys ri)" "$(seq -s, 1 40)" "i: delivered keys"
echo "ok i: circuit opened ($total_before requests before), then probes of one event: $probes; $open_samples/$samples samples open, max in_flight $max_in_flight"

# i2) the same with slow failures (timeouts), where concurrency shows at the receiver: once the
# circuit is open, the receiver never holds more than one request of this endpoint.
receiver_start ri2 --mode stall --seconds 30
new_case_080 i2 "$ri2_URL" "batch_size => 1, max_in_flight => 4, timeout_ms => 300, retry_base_ms => 100, retry_max_ms => 1000"
q -c "INSERT INTO t_i2 SELECT g FROM generate_series(1, 20) g"
wait_status i2 20 "state = 'circuit_open' AND consecutive_failures >= 5 AND last_error LIKE 'timeout%'" "i2 circuit open"
# Requests sent before it opened time out within timeout_ms (300 ms).
wait_for "i2: requests from before the circuit opened timed out" 5 test_in_flight_le ri2 1
# Sampled while the worker sends three more requests (probes), however long that takes.
t_open2=$("$RECEIVER_PYTHON" -c 'import time; print(time.time())')
held_max=0 held_samples=0
deadline=$((SECONDS + 60))
until [ "$(rq ri2 "sum(1 for r in recs if r['t'] > $t_open2)")" -ge 3 ]; do
    [ $SECONDS -lt $deadline ] || fail "i2: no three probes within 60 s ($(status_line i2))"
    h=$(receiver_in_flight ri2)
    [ "$h" -le "$held_max" ] || held_max=$h
    held_samples=$((held_samples + 1))
    sleep 0.02 # poll interval
done
[ "$held_max" -le 1 ] || fail "i2: $held_max requests held at once while the circuit is open ($(status_line i2))"
[ "$(rq ri2 'max(len(ids(r)) for r in recs)')" == 1 ] || fail "i2: a request with more than one event"
receiver_mode ri2 '{"mode":"ok"}'
wait_status i2 30 "pending = 0 AND state = 'active' AND delivered_total = 20" "i2 recovery"
echo "ok i2: circuit open on timeouts: at most $held_max request held by the receiver ($held_samples samples)"

# --- k) per-key order under random failures -----------------------------------------------------------
# 30 % of requests fail (batches are retried whole): a request carries a key's event only when
# every earlier event of that key was answered 2xx before or rides ahead of it in the same request;
# every version arrives, and without a crash nothing is answered 2xx twice.
receiver_start rk --mode fail_rate --p 0.3 --seed 7
new_case_080 k "$rk_URL" "batch_size => 3, max_in_flight => 4, max_attempts => 1000, retry_base_ms => 20, retry_max_ms => 200"
q -c "INSERT INTO t_k SELECT g FROM generate_series(1, 5) g"
q -c "DO \$\$ BEGIN FOR i IN 1..150 LOOP UPDATE t_k SET v = v + 1 WHERE id = 1 + i % 5; COMMIT; END LOOP; END \$\$"
wait_status k 60 "pending = 0 AND dead = 0" "k delivered"
assert_eq "$(rq rk 'any(r["status"] == 500 for r in recs)')" True "k: some requests failed"
"$RECEIVER_PYTHON" - "$rk_OUT" <<'PY' || fail "k: per-key order or completeness"
import json, sys
from collections import defaultdict
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
all_ids, acked, ok_count, delivered, problems = defaultdict(set), defaultdict(set), defaultdict(int), defaultdict(set), []
for r in recs:
    for e in r["events"] or []:
        all_ids[e["key"]["id"]].add(e["id"])
# A request may carry a key's event only when every earlier event of that key was answered 2xx
# before, or rides in the same request ahead of it.
for n, r in enumerate(recs):
    mine = defaultdict(list)
    for e in r["events"] or []:
        mine[e["key"]["id"]].append(e["id"])
    for k, ids in mine.items():
        if ids != sorted(ids):
            problems.append(f"request {n}: key {k} events out of order: {ids}")
        early = sorted(y for y in all_ids[k] if y < max(ids) and y not in ids and y not in acked[k])
        if early:
            problems.append(f"request {n} (status {r['status']}): key {k} events {ids} sent before {early} were delivered")
    if r["status"] == 204:
        for e in r["events"]:
            acked[e["key"]["id"]].add(e["id"])
            ok_count[e["id"]] += 1
            delivered[e["key"]["id"]].add(e["new"]["v"])
for k in range(1, 6):
    if sorted(delivered[k]) != list(range(0, 31)):
        problems.append(f"key {k}: delivered versions {sorted(delivered[k])}")
twice = [i for i, c in ok_count.items() if c > 1]
if twice:
    problems.append(f"events answered 2xx more than once without a crash: {twice[:20]}")
for p in problems[:10]:
    print(p[:600], file=sys.stderr)
sys.exit(1 if problems else 0)
PY
echo "ok k: per-key order kept under 30% failures ($(st k failed_attempts_total) failed attempts, $(st k delivered_total) delivered)"

# --- l) recent_attempts is a bounded ring; lag percentiles come from it ---------------------------
q -c "ALTER SYSTEM SET pg_sync.recent_attempts_size = 5" -c "SELECT pg_reload_conf()" >/dev/null
receiver_start rl --mode fail_first --n 3 --status 503
new_case_080 l "$rl_URL" "batch_size => 1, max_in_flight => 1, retry_base_ms => 20, retry_max_ms => 100"
q -c "INSERT INTO t_l SELECT g FROM generate_series(1, 8) g"
wait_status l 30 "pending = 0 AND delivered_total = 8" "l: all delivered"
# 3 failed + 8 successful requests went out; the ring keeps the newest 5 (all successes).
wait_for "l: the ring to hold the newest attempts" 10 cond "(SELECT count(*) = 5 AND bool_and(status = 204) FROM pg_sync.recent_attempts)"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._attempts")" 5 "l: ring size"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync.recent_attempts WHERE endpoint = 'l' AND events = 1 AND lag > interval '0' AND duration >= interval '0'")" 5 "l: attempt rows"
assert_eq "$(st l "lag_p50 IS NOT NULL AND lag_p99 >= lag_p50")" t "l: lag percentiles"
q -c "ALTER SYSTEM RESET pg_sync.recent_attempts_size" -c "SELECT pg_reload_conf()" >/dev/null
echo "ok l: recent_attempts kept the newest 5 of 11 attempts; lag p50 $(st l lag_p50), p99 $(st l lag_p99)"

# --- j) allow_private_targets = off -------------------------------------------------------------------
receiver_start rj1
receiver_start rj2
new_case_080 j1 "$rj1_URL" "retry_base_ms => 50, retry_max_ms => 300"
q -c "INSERT INTO t_j1 VALUES (1)"
receiver_wait_events rj1 1 20 # the worker now has a kept-alive connection to rj1
# A canary on a closed port tells when the worker has the new setting: its error changes from
# "connection failed" to "not allowed".
cport=$(pg_free_port)
new_case_080 canary "http://127.0.0.1:$cport/" "retry_base_ms => 20, retry_max_ms => 100"
q -c "INSERT INTO t_canary VALUES (1)"
wait_status canary 20 "last_error LIKE 'connection failed%'" "canary failing"
q >/dev/null <<'SQL'
ALTER SYSTEM SET pg_sync.allow_private_targets = off;
SELECT pg_reload_conf();
SQL
wait_status canary 20 "last_error LIKE 'target address not allowed%'" "the worker applying allow_private_targets = off"
new_case_080 j2 "$rj2_URL" "retry_base_ms => 50, retry_max_ms => 300"
new_case_080 j3 "http://localhost:$rj2_PORT/hook" "retry_base_ms => 50, retry_max_ms => 300"
q -c "INSERT INTO t_j2 VALUES (1)"
q -c "INSERT INTO t_j3 VALUES (1)"
for ep in j2 j3; do
    wait_status $ep 20 "failed_attempts_total >= 2 AND last_error LIKE '%not allowed%' AND pending = 1" "$ep refused"
done
assert_eq "$(requests rj2)" 0 "j: requests reaching rj2 (127.0.0.1 and localhost) while refused"
# rj1 was reached before the change: the worker may hold a kept-alive connection to it, which
# must not be used either (the check is on the address actually connected to, for every request).
j1_before=$(requests rj1)
q -c "INSERT INTO t_j1 VALUES (2)"
wait_status j1 20 "(failed_attempts_total >= 2 AND last_error LIKE '%not allowed%' AND pending = 1) OR delivered_total > 1" "j1 refused"
assert_eq "$(requests rj1)" "$j1_before" "j: requests reaching rj1 over a connection opened before allow_private_targets = off"
q >/dev/null <<'SQL'
ALTER SYSTEM SET pg_sync.allow_private_targets = on;
SELECT pg_reload_conf();
SQL
for ep in j1 j2 j3; do
    wait_status $ep 20 "pending = 0 AND state = 'active'" "$ep delivered once allowed"
done
assert_eq "$(delivered_keys rj1)" "1,2" "j: rj1 keys"
assert_eq "$(rq rj2 'len(ok)')" 2 "j: rj2 requests (j2 and j3 via localhost)"
echo "ok j: private targets refused (127.0.0.1, localhost, kept-alive connection), delivered once allowed"

# No worker crash or error in the whole run.
if grep -E "PANIC|TRAP:|was terminated by signal|exited with exit code|delivery worker failed|ERROR" "$PG_DIR/server.log"; then
    fail "worker trouble in the server log"
fi
echo "ok: delivery failures"
