#!/usr/bin/env bash
# The delivery worker against hostile receivers (test/lib/hostile_receiver.py, raw sockets), one
# endpoint and table per case, all on one hostile server whose behaviour is switched per case:
#   endless body (500: cut at the 1 MiB cap, long before timeout_ms; 200: the status counts, as
#   documented), a huge body (8 MiB), an endless header block (cut at pg_sync's 64 KiB cap on
#   response headers), a response dripped one byte per 200 ms, garbage instead of HTTP (binary,
#   a malformed status line, status 999), Retry-After
#   values that are negative, overflowing, garbage, far in the past or far in the future (429/503),
#   a reset (RST) in the middle of the headers and in the middle of a 200's body, and a server
#   that accepts and never answers (with and without reading the request); then "Retry-After: 0"
#   with the circuit breaker off (no hot loop: the wait is max(Retry-After, backoff)).
# (The connection cap, a slow receiver holding every connection, is test/155_connection_cap.sh.)
# For each case:
#   - the failure is recorded: endpoint_status.last_error, recent_attempts.error and every queued
#     event's last_error match what happened, and the events stay pending (none dead);
#   - the worker stays responsive: a second, healthy endpoint delivers new events during the case
#     (for the cases that hold a request open: while that request is still held), latency printed;
#   - once the receiver turns healthy, the events are retried and delivered exactly once each;
# and over the whole run the worker's memory stays flat (VmRSS / RssAnon of the pid in
# pg_sync.workers, sampled every 50 ms), the worker is never restarted, and nothing is lost.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh

PY=/usr/bin/python3
HX_PID='' HX_DIR='' SAMPLER_PID=''

hostile_exit() {
    local rc=$?
    set +e
    local pid
    for pid in $SAMPLER_PID $HX_PID; do
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    [ -z "$HX_DIR" ] || [ -n "${RECEIVER_KEEP:-}" ] || rm -rf "$HX_DIR"
    (exit $rc)
    delivery_test_exit # reads $?: on failure it prints the server's errors; stops receivers and server
    exit $rc
}
trap hostile_exit EXIT

pg_start hostile
q -c "CREATE EXTENSION pg_sync" >/dev/null

# --- the hostile server and its log ---------------------------------------------------------------
HX_DIR=$(mktemp -d /tmp/pg_sync_hostile.XXXXXX)
HX_OUT=$HX_DIR/out.jsonl
$PY test/lib/hostile_receiver.py --port-file "$HX_DIR/port" --out "$HX_OUT" --mode-file "$HX_DIR/mode.json" \
    --mode ok --exit-with-pid $$ </dev/null >"$HX_DIR/log" 2>&1 &
HX_PID=$!
hx_up() { [ -s "$HX_DIR/port" ] || { kill -0 "$HX_PID" 2>/dev/null || { cat "$HX_DIR/log" >&2; fail "hostile receiver died"; }; false; }; }
wait_for "the hostile receiver listening" 15 hx_up
HX_PORT=$(<"$HX_DIR/port")
# hx_mode 'JSON': the behaviour for the next requests (the server re-reads the file per request).
# Healthy phases answer with Connection: close, so that each case starts on a new connection.
hx_mode() { printf '%s\n' "$1" >"$HX_DIR/mode.json.tmp" && mv -f "$HX_DIR/mode.json.tmp" "$HX_DIR/mode.json"; }
# hxq 'python expression' over the hostile server's log. reqs(path): [(begin, end or None)] of the
# requests to path (None: requests whose path was never read; a tuple: any of these paths); the
# server can leave a request unread only on a new connection; ok_ids(path): event ids of
# requests answered 2xx in mode ok; now: the current time.
hxq() {
    $PY - "$HX_OUT" "$1" <<'PY'
import json, sys, time
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
ends = {(r["conn"], r["req"]): r for r in recs if r["ev"] == "end"}
def reqs(path):
    paths = path if isinstance(path, tuple) else (path,)
    return [(b, ends.get((b["conn"], b["req"]))) for b in recs if b["ev"] == "begin" and b["path"] in paths]
def ok_ids(path):
    return sorted(i for b, e in reqs(path) if e and e["mode"] == "ok" and e["outcome"] == "answered"
                  and 200 <= (e["status"] or 0) < 300 for i in (b["ids"] or []))
now = time.time()
print(eval(sys.argv[2]))
PY
}

# --- the healthy endpoint, the worker and its memory --------------------------------------------------
receiver_start healthy
new_case healthy "$healthy_URL"
q -c "INSERT INTO t_healthy SELECT g FROM generate_series(1, 5) g"
receiver_wait_events healthy 5 20
HEALTHY_N=5
WPID=$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")
[ -n "$WPID" ] || fail "no worker in pg_sync.workers"
mem() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; } # kB
# Warm up the HTTP side too (a first failure and a first success of a hostile-server endpoint),
# so that the baseline includes what every later case needs anyway.
new_case warmup "http://127.0.0.1:$HX_PORT/warmup" "retry_base_ms => 20, retry_max_ms => 100, max_attempts => 1000"
hx_mode '{"mode":"status","status":500}'
q -c "INSERT INTO t_warmup VALUES (1)"
wait_status warmup 20 "failed_attempts_total >= 2" "warm-up failures"
hx_mode '{"mode":"ok","close":true}'
wait_status warmup 20 "pending = 0 AND delivered_total = 1" "warm-up delivery"
RSS0=$(mem "$WPID" VmRSS) ANON0=$(mem "$WPID" RssAnon)
# Sampled every 50 ms for the whole run, so that a transient balloon is seen too.
SAMPLES=$HX_DIR/mem.samples
$PY - "$WPID" "$SAMPLES" "$$" <<'PY' &
import os, sys, time
pid, out, parent = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(out, "a") as f:
    while True:
        try:
            os.kill(parent, 0)
            with open(f"/proc/{pid}/status") as s:
                fields = dict(l.split(":", 1) for l in s if ":" in l)
        except (OSError, ProcessLookupError):
            break
        f.write(f"{time.time():.3f} {int(fields['VmRSS'].split()[0])} {int(fields['RssAnon'].split()[0])}\n")
        f.flush()
        time.sleep(0.05)  # sampling interval
PY
SAMPLER_PID=$!
echo "worker $WPID: VmRSS ${RSS0} kB, RssAnon ${ANON0} kB after warm-up"

# --- one case ------------------------------------------------------------------------------------------
# healthy_probe SEL HELD: 5 new events for the healthy endpoint must arrive while the hostile case
# goes on; with HELD, a hostile request that began less than 1 s before (of timeout_ms 2.5 s) must
# still be held open by the hostile server when they arrive.
HOLD=
hx_young_open() {
    HOLD=$(hxq "next((f'{b[\"conn\"]}:{b[\"req\"]}' for b, e in reqs($1) if e is None and now - b['t'] < 1.0), '')")
    [ -n "$HOLD" ]
}
LATENCIES=()
healthy_probe() {
    local sel=$1 held=$2 base=$HEALTHY_N t_ins arrival latency
    [ -z "$held" ] || wait_for "a young request held open by the hostile server" 20 hx_young_open "$sel"
    HEALTHY_N=$((HEALTHY_N + 5))
    t_ins=$(date +%s.%N)
    q -c "INSERT INTO t_healthy SELECT g FROM generate_series($base + 1, $base + 5) g"
    receiver_wait_events healthy "$HEALTHY_N" 10
    arrival=$(rq healthy "max(r['t'] for r in ok if any(e['key']['id'] > $base for e in r['events']))")
    latency=$($PY -c "print(f'{$arrival - $t_ins:.3f}')")
    LATENCIES+=("$latency")
    $PY -c "import sys; sys.exit(0 if $latency < 3.0 else 1)" || fail "healthy endpoint: events took ${latency}s during a hostile case"
    if [ -n "$held" ]; then
        local c=${HOLD%%:*} r=${HOLD##*:}
        hxq "next((e is None or e['t'] > $arrival) for b, e in reqs($sel) if b['conn'] == $c and b['req'] == $r)" | grep -qx True \
            || fail "the healthy endpoint's events arrived only after the held hostile request ($HOLD) had ended"
        PROBE_NOTE=" (arrived $(hxq "next(round($arrival - b['t'], 3) for b, e in reqs($sel) if b['conn'] == $c and b['req'] == $r)")s after a held request began, which was still held)"
    fi
}
PROBE_NOTE=

CASES=0
# hostile_case EP 'BEHAVIOUR' 'LIKE pattern of last_error' [timeout_ms] [held] [path selector]
# Runs one case; CASE_CHECK, when set, names a function called (with EP) before the receiver
# turns healthy.
CASE_CHECK=
hostile_case() {
    local ep=$1 mode=$2 pattern=$3 timeout=${4:-3000} held=${5:-} sel=${6:-"'/$1'"} min_fail=2 ids
    [ -z "$held" ] || min_fail=1
    CASES=$((CASES + 1))
    new_case "$ep" "http://127.0.0.1:$HX_PORT/$ep" \
        "timeout_ms => $timeout, retry_base_ms => 50, retry_max_ms => 400, max_attempts => 1000"
    hx_mode "$mode"
    q -c "INSERT INTO t_$ep SELECT g FROM generate_series(1, 3) g"
    ids=$(q -c "SELECT string_agg(q.id::text, ', ' ORDER BY q.id) FROM pg_sync._queue q
                  JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE e.name = '$ep'")
    PROBE_NOTE=
    [ -z "$held" ] || healthy_probe "$sel" "$held" # while the first request is held
    wait_status "$ep" 30 "failed_attempts_total >= $min_fail AND consecutive_failures >= 1 AND last_error LIKE '$pattern'
                          AND pending = 3 AND dead = 0 AND delivered_total = 0" "$ep: failures recorded"
    assert_eq "$(q -c "SELECT error LIKE '$pattern' FROM pg_sync.recent_attempts WHERE endpoint = '$ep'
                        ORDER BY started_at DESC LIMIT 1")" t "$ep: newest recent_attempts error ($(q -c "SELECT error FROM pg_sync.recent_attempts WHERE endpoint = '$ep' ORDER BY started_at DESC LIMIT 1"))"
    assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id
                        WHERE e.name = '$ep' AND q.attempts >= $min_fail AND q.last_error LIKE '$pattern'")" 3 \
        "$ep: queued events with their attempts and error"
    [ -n "$held" ] || healthy_probe "$sel" "$held"
    [ -z "$CASE_CHECK" ] || "$CASE_CHECK" "$ep"
    local failed; failed=$(st "$ep" failed_attempts_total)
    hx_mode '{"mode":"ok","close":true}'
    wait_status "$ep" 30 "pending = 0 AND dead = 0 AND delivered_total = 3" "$ep: delivery once the receiver is healthy"
    assert_eq "$(hxq "ok_ids('/$ep')")" "[$ids]" "$ep: events answered 2xx (each exactly once)"
    echo "ok $ep: $(st "$ep" last_error | cut -c1-110) ($failed failed attempts); healthy latency ${LATENCIES[-1]}s$PROBE_NOTE; delivered"
    CASE_CHECK=
}

# The transfers of EP were cut by the worker (the client hung up) and never took more than
# $CUT_MAX_S seconds nor more than 64 MiB from the server (the server sends about 2 GB/s).
CUT_MAX_S=2.0
check_cut() {
    hxq "all(e is not None and e['outcome'] == 'cut' for b, e in reqs('/$1'))" | grep -qx True \
        || fail "$1: transfers not cut by the client: $(hxq "[(e or {}).get('outcome') for b, e in reqs('/$1')]")"
    # (Retries go on meanwhile: a transfer begun since the check above has no end yet.)
    hxq "all(e['t'] - b['t'] < $CUT_MAX_S and e['sent'] < 64 << 20 for b, e in reqs('/$1') if e is not None)" | grep -qx True \
        || fail "$1: transfers (seconds, bytes): $(hxq "[(round(e['t'] - b['t'], 3), e['sent']) for b, e in reqs('/$1') if e is not None]")"
}
# Every request of EP was (or is, if still open) held no longer than timeout_ms (2.5 s) plus
# 1.5 s, and at least one has ended.
check_timeout() {
    hxq "any(e for b, e in reqs($2)) and all((e or {'t': now})['t'] - b['t'] < 4.0 for b, e in reqs($2))" | grep -qx True \
        || fail "$1: held requests (seconds): $(hxq "[round((e or {'t': now})['t'] - b['t'], 3) for b, e in reqs($2)]")"
}
check_timeout_path() { check_timeout "$1" "'/$1'"; }
# check_cut, and prints how much the server wrote before the cut (more than the 64 KiB the client
# read: loopback socket buffers take several hundred KiB).
check_headers_cut() {
    check_cut "$1"
    HEADER_SENT=$(hxq "[e['sent'] for b, e in reqs('/$1') if e is not None]") # (a retry may have begun since)
    echo "  $1: header bytes sent per transfer before the cut: $HEADER_SENT"
}
check_timeout_unread() {
    check_timeout "$1" "('/$1', None)"
    [ "$(hxq 'len(reqs(None))')" -ge 1 ] || fail "$1: no request left unread"
}
# At least 4 requests under the Retry-After, and no gap between them above retry_max_ms (400 ms)
# plus 1.1 s: the value did not hold the endpoint longer than retry_max_ms.
check_retry_after() {
    wait_for "$1: 4 requests under the Retry-After" 10 hx_at_least "'/$1'" 4
    local gaps; gaps=$(hxq "[round(b2['t'] - b1['t'], 3) for (b1, _), (b2, _) in zip(reqs('/$1'), reqs('/$1')[1:])]")
    hxq "max(b2['t'] - b1['t'] for (b1, _), (b2, _) in zip(reqs('/$1'), reqs('/$1')[1:])) < 1.5" | grep -qx True \
        || fail "$1: gaps between requests after Retry-After: $gaps"
    RA_GAPS+=("$1: $gaps")
}
hx_at_least() { hxq "len(reqs($1)) >= $2" | grep -qx True; }
RA_GAPS=()

# --- the cases ---------------------------------------------------------------------------------------
CASE_CHECK=check_cut hostile_case endless_500 '{"mode":"endless","status":500}' 'HTTP 500: xxxx%' 5000
CASE_CHECK=check_cut hostile_case huge_500 '{"mode":"huge","status":500,"bytes":8388608}' 'HTTP 500: yyyy%' 5000
# Cut by pg_sync's own cap on response headers (64 KiB; libcurl before 8.3 has none, Debian's
# 7.88 backport stops at 300 KiB), with an error that says so.
CASE_CHECK=check_headers_cut hostile_case endless_headers '{"mode":"headers"}' \
    'transport error: response headers larger than 65536 bytes, transfer aborted%' 5000
CASE_CHECK=check_timeout_path hostile_case drip '{"mode":"drip","interval":0.2}' 'timeout: %' 2500 held
CASE_CHECK=check_timeout_path hostile_case silent '{"mode":"silent"}' 'timeout: %' 2500 held
CASE_CHECK=check_timeout_unread hostile_case silent_unread '{"mode":"silent","read":false}' 'timeout: %' 2500 held "('/silent_unread', None)"
hostile_case garbage_binary '{"mode":"garbage","raw":"\u0000\u0001\u00ff\u00fe\u001b[2J not http\r\n\r\n"}' \
    'transport error: Received HTTP/0.9 when not allowed%'
hostile_case garbage_status '{"mode":"garbage","raw":"HTTP/1.1 2x4 Weird\r\nContent-Length: 0\r\n\r\n"}' \
    'transport error: Unsupported response code%'
hostile_case status_999 '{"mode":"garbage","raw":"HTTP/1.1 999 Nope\r\nContent-Length: 0\r\n\r\n","hold":1}' \
    'invalid HTTP status 999%'
CASE_CHECK=check_retry_after hostile_case ra_negative '{"mode":"status","status":429,"retry_after":"-5"}' 'HTTP 429%'
CASE_CHECK=check_retry_after hostile_case ra_overflow '{"mode":"status","status":503,"retry_after":"99999999999999999999999"}' 'HTTP 503%'
CASE_CHECK=check_retry_after hostile_case ra_garbage '{"mode":"status","status":429,"retry_after":"soon, maybe \u00e9"}' 'HTTP 429%'
CASE_CHECK=check_retry_after hostile_case ra_past '{"mode":"status","status":503,"retry_after":"Thu, 01 Jan 1970 00:00:00 GMT"}' 'HTTP 503%'
CASE_CHECK=check_retry_after hostile_case ra_huge '{"mode":"status","status":429,"retry_after":"9999999999"}' 'HTTP 429%'
hostile_case reset_headers '{"mode":"reset","at":"headers"}' 'connection lost: Recv failure: Connection reset by peer%'
hostile_case reset_body '{"mode":"reset","at":"body"}' 'connection lost: Recv failure: Connection reset by peer%'
printf '  Retry-After gaps (s): %s\n' "${RA_GAPS[@]}"

# "Retry-After: 0" with the circuit breaker off (hostile-receiver finding: 1000 requests in 5 s,
# the event dead-lettered despite retry_base_ms 1000). The wait is max(Retry-After, backoff): every
# gap between attempts is at least half the backoff (equal jitter, doubling from 1 s), so four
# attempts are at least 0.5 s apart; the event stays pending and is delivered once the receiver
# recovers. (Counted by attempts, not over a fixed time: a loaded machine changes neither.)
q -c "ALTER SYSTEM SET pg_sync.circuit_failure_threshold = 0" -c "SELECT pg_reload_conf()" >/dev/null
# The worker reads a reload at the top of its loop, before a pass: a pass that ends after the
# postmaster forwarded the SIGHUP (a few ms; 200 ms allowed) ran with the new setting.
reloaded_at=$(q -c "SELECT clock_timestamp() + interval '200 ms'")
wait_for "the worker's next pass after the reload" 30 \
    cond "(SELECT last_active_at > '$reloaded_at' FROM pg_sync.workers WHERE database = current_database())"
CASES=$((CASES + 1))
new_case ra_zero "http://127.0.0.1:$HX_PORT/ra_zero" "retry_base_ms => 1000, retry_max_ms => 60000, max_attempts => 10, timeout_ms => 3000"
hx_mode '{"mode":"status","status":429,"retry_after":"0"}'
q -c "INSERT INTO t_ra_zero VALUES (1)"
wait_for "ra_zero: four attempts" 60 hx_at_least "'/ra_zero'" 4
RA0_N=$(hxq "len(reqs('/ra_zero'))")
RA0_GAPS=$(hxq "[round(b2['t'] - b1['t'], 3) for (b1, _), (b2, _) in zip(reqs('/ra_zero')[:4], reqs('/ra_zero')[1:4])]")
hxq "min(b2['t'] - b1['t'] for (b1, _), (b2, _) in zip(reqs('/ra_zero')[:4], reqs('/ra_zero')[1:4])) >= 0.45" | grep -qx True \
    || fail "ra_zero: attempts $RA0_GAPS s apart: Retry-After 0 made a hot loop"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._dead_letters")" 0 "ra_zero: dead letters"
assert_eq "$(q -c "SELECT attempts >= 1 AND last_error LIKE 'HTTP 429%' FROM pg_sync._queue q
                   JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE e.name = 'ra_zero'")" t "ra_zero: the queued event"
q -c "ALTER SYSTEM RESET pg_sync.circuit_failure_threshold" -c "SELECT pg_reload_conf()" >/dev/null
hx_mode '{"mode":"ok","close":true}'
wait_status ra_zero 90 "pending = 0 AND dead = 0 AND delivered_total = 1" "ra_zero: delivery once the receiver is healthy"
echo "ok ra_zero: Retry-After 0 with the breaker off: the first attempts $RA0_GAPS s apart ($RA0_N requests by then), not dead; delivered"

# A 200 with an endless body: the status decides (README: bodies are read up to 1 MB, the status
# still counts), so the events are delivered at once, and the body is cut at the cap.
new_case endless_200 "http://127.0.0.1:$HX_PORT/endless_200" "timeout_ms => 5000, max_attempts => 1000"
hx_mode '{"mode":"endless","status":200}'
q -c "INSERT INTO t_endless_200 SELECT g FROM generate_series(1, 3) g"
wait_status endless_200 20 "pending = 0 AND dead = 0 AND delivered_total = 3 AND failed_attempts_total = 0" "endless_200 delivered"
check_cut endless_200
hx_mode '{"mode":"ok","close":true}'
echo "ok endless_200: a 2xx with an endless body counts as delivered; cut after $(hxq "[e['sent'] for b, e in reqs('/endless_200')]") bytes sent"

# --- nothing lost, worker alive, memory flat ---------------------------------------------------------------
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue")" 0 "events left in the queue"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._dead_letters")" 0 "dead letters"
assert_eq "$(delivered_keys healthy)" "$(seq -s, 1 "$HEALTHY_N")" "healthy endpoint: delivered keys"
assert_eq "$(rq healthy 'sum(len(ids(r)) for r in ok)')" "$HEALTHY_N" "healthy endpoint: events answered 2xx (no duplicates)"
assert_eq "$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")" "$WPID" "worker pid (never restarted)"
kill -TERM "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
read -r nsamples max_rss max_anon < <(awk '{ n++; if ($2 > r) r = $2; if ($3 > a) a = $3 } END { print n + 0, r + 0, a + 0 }' "$SAMPLES")
RSS1=$(mem "$WPID" VmRSS) ANON1=$(mem "$WPID" RssAnon)
echo "worker memory over $nsamples samples: VmRSS ${RSS0} -> max ${max_rss} -> ${RSS1} kB; RssAnon ${ANON0} -> max ${max_anon} -> ${ANON1} kB"
[ "$nsamples" -ge 100 ] || fail "only $nsamples memory samples"
# RssAnon is the worker's own heap; VmRSS also counts the shared buffers it touches.
# Under AddressSanitizer (scripts/sanitize.sh) freed memory is kept in quarantine (64 MB): the
# growth limits mean nothing there.
if [ -z "${PG_SYNC_SANITIZED:-}" ]; then
    [ $((max_anon - ANON0)) -le 16384 ] || fail "worker RssAnon grew by $((max_anon - ANON0)) kB (more than 16 MiB)"
    [ $((max_rss - RSS0)) -le 32768 ] || fail "worker VmRSS grew by $((max_rss - RSS0)) kB (more than 32 MiB)"
fi
echo "healthy endpoint latencies during the $CASES hostile cases (s): ${LATENCIES[*]}"

if grep -E "PANIC|TRAP:|was terminated by signal|exited with exit code|delivery worker failed|ERROR" "$PG_DIR/server.log"; then
    fail "worker trouble in the server log"
fi
echo "ok: hostile receivers"
