#!/usr/bin/env bash
# A slow endpoint must not hold up another one at the connection cap (README: "a slow endpoint
# never holds up another one"). Hostile-receiver finding: with pg_sync.max_connections = 4 and a
# silent receiver holding 4 requests (max_in_flight 4, timeout_ms 8 s), a healthy endpoint's
# event took 8.1 s; with the healthy endpoint at timeout_ms 2 s it got failures "timeout: Failed
# to resolve host '127.0.0.1' with timeout after 0 ms", because libcurl's timeout already ran
# while its request waited in libcurl's queue for a connection.
#
# Setup: pg_sync.max_connections = 4; endpoint "slow" (batch_size 1, max_in_flight 4,
# timeout_ms 8000) pointing at test/lib/hostile_receiver.py in mode silent (reads each request,
# never answers), with 8 events of distinct keys, so it always wants 4 requests out; endpoint
# "healthy" pointing at test/lib/receiver.py. The circuit breaker is off
# (pg_sync.circuit_failure_threshold = 0) and slow retries at once, so that it keeps 4 requests
# wanted all along.
#   1. healthy with timeout_ms 10000: 5 events, one at a time; each must arrive in under 1 s
#      while the silent receiver holds 3 requests (the 4th connection is the reserve that the
#      HTTP client keeps for the other endpoint: src/core/http_client.hpp, next_group_to_start);
#   2. healthy with timeout_ms 2000: 6 events, one every 0.5 s: the same, and no failure at all is
#      charged to healthy (failed_attempts_total, consecutive_failures, recent_attempts);
#   3. the slow endpoint's failures are all real timeouts of about 8 s (every held request was
#      cut by the worker after 7.5 s or more; no "after 0 ms", no "resolve"): its 4th request
#      waited in the client without its timeout running;
#   4. the silent receiver never held more than 3 requests at once, and the worker never had more
#      than 4 TCP connections to the two receivers (ss, sampled every 50 ms);
#   5. once the receiver answers, every event is delivered exactly once.
# Prints the healthy endpoint's latencies and the slow requests' hold times.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh

PY=/usr/bin/python3
HX_PID='' HX_DIR='' SAMPLER_PID=''

conncap_exit() {
    local rc=$?
    set +e
    local pid
    for pid in $SAMPLER_PID $HX_PID; do
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    [ -z "$HX_DIR" ] || [ -n "${RECEIVER_KEEP:-}" ] || rm -rf "$HX_DIR"
    (exit $rc)
    delivery_test_exit
    exit $rc
}
trap conncap_exit EXIT

# The circuit breaker is off, so that the slow endpoint keeps wanting 4 requests out all along
# (with it, a streak of timeouts would leave it one probe at a time).
pg_start conncap "pg_sync.max_connections = 4" "pg_sync.circuit_failure_threshold = 0"
q -c "CREATE EXTENSION pg_sync" >/dev/null
assert_eq "$(q -c "SHOW pg_sync.max_connections")" 4 "pg_sync.max_connections"

# --- the silent receiver ----------------------------------------------------------------------
HX_DIR=$(mktemp -d /tmp/pg_sync_conncap.XXXXXX)
HX_OUT=$HX_DIR/out.jsonl
$PY test/lib/hostile_receiver.py --port-file "$HX_DIR/port" --out "$HX_OUT" --mode-file "$HX_DIR/mode.json" \
    --mode silent --exit-with-pid $$ </dev/null >"$HX_DIR/log" 2>&1 &
HX_PID=$!
hx_up() { [ -s "$HX_DIR/port" ] || { kill -0 "$HX_PID" 2>/dev/null || { cat "$HX_DIR/log" >&2; fail "hostile receiver died"; }; false; }; }
wait_for "the silent receiver listening" 15 hx_up
HX_PORT=$(<"$HX_DIR/port")
hx_mode() { printf '%s\n' "$1" >"$HX_DIR/mode.json.tmp" && mv -f "$HX_DIR/mode.json.tmp" "$HX_DIR/mode.json"; }
hx_mode '{"mode":"silent"}'
# hxq 'python expression' over the silent receiver's log: reqs() = [(begin, end or None)] of the
# requests to /slow; held_at(t) = how many of them were being held at time t; max_held(); now.
hxq() {
    $PY - "$HX_OUT" "$1" <<'PY'
import json, sys, time
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
ends = {(r["conn"], r["req"]): r for r in recs if r["ev"] == "end"}
def reqs():
    return [(b, ends.get((b["conn"], b["req"]))) for b in recs if b["ev"] == "begin" and b["path"] == "/slow"]
def held_at(t, slack=0.0):
    return sum(1 for b, e in reqs() if b["t"] <= t and (e is None or e["t"] > t + slack))
def max_held():
    # The server notices a hang-up up to 50 ms late (it polls): a request the worker has just
    # cut may still look held when its successor begins. Slack of 0.1 s.
    points = sorted({b["t"] for b, _ in reqs()})
    return max((held_at(t, 0.1) for t in points), default=0)
now = time.time()
print(eval(sys.argv[2]))
PY
}

# --- endpoints -----------------------------------------------------------------------------------
receiver_start healthy
new_case healthy "$healthy_URL" "timeout_ms => 10000"
new_case slow "http://127.0.0.1:$HX_PORT/slow" \
    "timeout_ms => 8000, max_in_flight => 4, batch_size => 1, retry_base_ms => 1, retry_max_ms => 1, max_attempts => 1000"
q -c "INSERT INTO t_healthy VALUES (0)"
receiver_wait_events healthy 1 20
WPID=$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")
[ -n "$WPID" ] || fail "no worker in pg_sync.workers"

# The worker's TCP connections to the two receivers, every 50 ms, for the whole run.
SAMPLES=$HX_DIR/sockets.samples
$PY - "$WPID" "$SAMPLES" "$$" "$HX_PORT" "$healthy_PORT" <<'PY' &
import os, subprocess, sys, time
pid, out, parent, ports = sys.argv[1], sys.argv[2], int(sys.argv[3]), {sys.argv[4], sys.argv[5]}
with open(out, "a") as f:
    while True:
        try:
            os.kill(parent, 0)
        except OSError:
            break
        lines = subprocess.run(["ss", "-Htnp"], capture_output=True, text=True).stdout.splitlines()
        n = sum(1 for l in lines if f"pid={pid}," in l and l.split()[4].rsplit(":", 1)[-1] in ports)
        f.write(f"{time.time():.3f} {n}\n")
        f.flush()
        time.sleep(0.05)  # sampling interval
PY
SAMPLER_PID=$!

# --- the slow endpoint takes what it can ------------------------------------------------------------
q -c "INSERT INTO t_slow SELECT g FROM generate_series(1, 8) g"
hx_held() { [ "$(hxq "held_at(now)")" -ge "$1" ]; }
wait_for "the silent receiver holding 3 requests" 20 hx_held 3
wait_status slow 10 "in_flight = 4" "4 requests out (the 4th waiting in the client for a connection)"
sleep 0.3 # a 4th request, if the client let it go, would reach the silent receiver by now
echo "silent receiver holds $(hxq "held_at(now)") requests of slow; slow has $(st slow in_flight) events in flight"

healthy_has() { [ "$(rq healthy 'sum(len(ids(r)) for r in ok)')" -ge "$1" ]; }
PROBLEMS=()
LATENCIES=()
N=1
# probe PHASE: one new event for healthy; it must arrive in under 1 s, while the silent
# receiver holds at least 3 requests.
probe() {
    local phase=$1 t_ins arrival latency held
    N=$((N + 1))
    t_ins=$(date +%s.%N)
    q -c "INSERT INTO t_healthy VALUES ($((N - 1)))"
    local deadline=$((SECONDS + 12))
    until healthy_has "$N" || [ $SECONDS -ge $deadline ]; do sleep 0.02; done
    if ! healthy_has "$N"; then
        PROBLEMS+=("$phase: healthy event $((N - 1)) not delivered after 12 s: $(status_line healthy)")
        return 0
    fi
    arrival=$(rq healthy "max(r['t'] for r in ok if any(e['key']['id'] == $((N - 1)) for e in r['events']))")
    latency=$($PY -c "print(f'{$arrival - $t_ins:.3f}')")
    # At the insert, half way and at the arrival: a timeout of the slow requests (every 8 s)
    # leaves a gap of a few ms before their retries are held again.
    held=$(hxq "max(held_at(t) for t in ($t_ins, ($t_ins + $arrival) / 2, $arrival))")
    LATENCIES+=("$latency")
    $PY -c "import sys; sys.exit(0 if $latency < 1.0 else 1)" \
        || PROBLEMS+=("$phase: healthy event $((N - 1)) took ${latency}s (the silent receiver's timeout is 8 s)")
    [ "$held" -ge 3 ] || PROBLEMS+=("$phase: healthy event $((N - 1)) arrived while the silent receiver held only $held requests")
}

# 1. healthy at timeout_ms 10000
for _ in 1 2 3 4 5; do probe "timeout_ms 10000"; done
echo "phase 1 (healthy timeout_ms 10000): latencies ${LATENCIES[*]} s"

# 2. healthy at timeout_ms 2000, events spread over 3 s
q -c "SELECT pg_sync.alter_endpoint('healthy', timeout_ms => 2000)" >/dev/null
P1=${#LATENCIES[@]}
for _ in 1 2 3 4 5 6; do
    probe "timeout_ms 2000"
    sleep 0.5
done
sleep 2.2 # a request stuck behind the silent ones would have failed by now (timeout_ms 2000)
echo "phase 2 (healthy timeout_ms 2000): latencies ${LATENCIES[*]:$P1} s"
failed=$(st healthy failed_attempts_total) consec=$(st healthy consecutive_failures)
errors=$(q -c "SELECT count(*) FROM pg_sync.recent_attempts WHERE endpoint = 'healthy' AND error IS NOT NULL")
[ "$failed" = 0 ] && [ "$consec" = 0 ] && [ "$errors" = 0 ] \
    || PROBLEMS+=("healthy was charged failures: failed_attempts_total $failed, consecutive_failures $consec, recent_attempts errors: $(q -c "SELECT string_agg(DISTINCT error, ' | ') FROM pg_sync.recent_attempts WHERE endpoint = 'healthy'")")

# 3. the slow endpoint's failures: real timeouts, of about 8 s each
wait_status slow 20 "failed_attempts_total >= 4" "the first round of slow timeouts"
SLOW_ERRORS=$(q -c "SELECT string_agg(DISTINCT regexp_replace(error, '[0-9]+', 'N', 'g'), ' | ') FROM pg_sync.recent_attempts WHERE endpoint = 'slow'")
echo "slow errors: $SLOW_ERRORS"
[ "$(q -c "SELECT count(*) FROM pg_sync.recent_attempts WHERE endpoint = 'slow'
            AND (error NOT LIKE 'timeout: Operation timed out after %' OR error ~ 'after 0 ms|resolve')")" = 0 ] \
    || PROBLEMS+=("slow failures that are not real timeouts: $SLOW_ERRORS")
HOLDS=$(hxq "sorted(round(e['t'] - b['t'], 2) for b, e in reqs() if e)")
echo "slow requests held by the silent receiver until the worker hung up (s): $HOLDS"
hxq "all(e['t'] - b['t'] >= 7.5 for b, e in reqs() if e) and any(e for b, e in reqs())" | grep -qx True \
    || PROBLEMS+=("slow requests cut before their 8 s timeout: $HOLDS")

# 4. connections
MAX_HELD=$(hxq "max_held()")
MAX_SOCK=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$SAMPLES")
NSAMP=$(wc -l <"$SAMPLES")
echo "the silent receiver held at most $MAX_HELD requests at once; the worker had at most $MAX_SOCK connections to the receivers ($NSAMP samples)"
[ "$MAX_HELD" -le 3 ] || PROBLEMS+=("the silent receiver held $MAX_HELD requests at once: no connection was kept for healthy")
[ "$MAX_SOCK" -le 4 ] || PROBLEMS+=("the worker had $MAX_SOCK connections (pg_sync.max_connections = 4)")
[ "$NSAMP" -ge 50 ] || PROBLEMS+=("only $NSAMP socket samples")

if [ ${#PROBLEMS[@]} -gt 0 ]; then
    printf 'FAIL: %s\n' "${PROBLEMS[@]}" >&2
    exit 1
fi

# 5. the receiver recovers: everything delivered, exactly once
hx_mode '{"mode":"ok","close":true}'
wait_status slow 40 "pending = 0 AND dead = 0 AND delivered_total = 8" "slow delivered once the receiver answers"
ok_ids=$(hxq "sorted(i for b, e in reqs() if e and e['mode'] == 'ok' and e['outcome'] == 'answered' for i in (b['ids'] or []))")
[ "$(hxq "len([i for b, e in reqs() if e and e['mode'] == 'ok' and e['outcome'] == 'answered' for i in (b['ids'] or [])])")" = 8 ] \
    || fail "slow: events answered 2xx: $ok_ids (expected 8, each once)"
[ "$(hxq "len(set(i for b, e in reqs() if e and e['mode'] == 'ok' and e['outcome'] == 'answered' for i in (b['ids'] or [])))")" = 8 ] \
    || fail "slow: duplicate 2xx deliveries: $ok_ids"
assert_eq "$(delivered_keys healthy)" "$(seq -s, 0 $((N - 1)))" "healthy: delivered keys"
assert_eq "$(rq healthy 'sum(len(ids(r)) for r in ok)')" "$N" "healthy: events answered 2xx (no duplicates)"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue")" 0 "events left in the queue"
assert_eq "$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")" "$WPID" "worker pid (never restarted)"
if grep -E "PANIC|TRAP:|was terminated by signal|exited with exit code|delivery worker failed|ERROR" "$PG_DIR/server.log"; then
    fail "worker trouble in the server log"
fi
echo "ok: connection cap (healthy latencies ${LATENCIES[*]} s; max held by the silent receiver $MAX_HELD; max connections $MAX_SOCK)"
