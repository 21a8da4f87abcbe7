#!/usr/bin/env bash
# pg_sync.max_worker_memory bounds what a delivery worker holds in memory for events (README,
# Settings): each pass reads an endpoint's head of queue only up to its share of the setting
# (at least one event), and request bodies are built from those events, so the worker's memory
# for events stays within about twice the setting. (0.2.0 read up to 100,000 full payloads per
# endpoint and pass and could hold 256 requests of up to 8 MB in flight.)
#
# With max_worker_memory = 16MB: 3,000 events of ~20 kB (~60 MB) are queued while the endpoint
# (batch_size 10000, max_in_flight 256) is paused; the receiver holds every request without
# answering (stall) when the endpoint is resumed. While requests are held, the worker's private
# memory (RssAnon in /proc/PID/status) is sampled every 100 ms: its peak may exceed its value
# before the resume by less than 3 x 16 MB (heads + bodies + slack), and the events in flight
# fit in the 16 MB share. Then the receiver answers 2xx and everything is delivered, every event
# exactly once: the bound holds delivery back, it does not stall it.
# The same with max_worker_memory = 256MB (reloaded) and 3,000 new events: the peak growth must
# be larger than with 16MB, evidence that the setting is what bounds the worker's memory.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
pg_start worker_memory "pg_sync.max_worker_memory = '16MB'"
trap delivery_test_exit EXIT
PY=/usr/bin/python3
EVENTS=3000          # per run
CHARS=20000          # characters of the text column of each row
LIMIT_KB=$((3 * 16 * 1024))
STALL_S=12           # how long the receiver holds each request (sampling takes about 5 s)

receiver_start hook
q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('e', '$hook_URL', batch_size => 10000, max_in_flight => 256,
                               timeout_ms => 120000, max_attempts => 1000);
CREATE TABLE big (id int PRIMARY KEY, body text NOT NULL);
SELECT pg_sync.track('big', 'e');
SQL
assert_eq "$(q -c "SHOW pg_sync.max_worker_memory")" 16MB "max_worker_memory from postgresql.conf"
WPID=$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")
[ -n "$WPID" ] || fail "no worker in pg_sync.workers"
anon_kb() { awk '$1 == "RssAnon:" { print $2 }' "/proc/$WPID/status"; }
receiver_in_flight() { $PY -c 'import json,sys; print(json.load(sys.stdin)["in_flight"])' <<<"$(receiver_stats hook)"; }
receiver_2xx() { $PY -c 'import json,sys; print(json.load(sys.stdin)["events_2xx"])' <<<"$(receiver_stats hook)"; }

# Warm-up: one large event through the whole path (read, body, HTTP), so that the baseline
# already holds what any delivery needs.
q -c "INSERT INTO big VALUES (0, repeat('w', $CHARS))"
wait_status e 20 "pending = 0 AND delivered_total = 1" "the warm-up event delivered"
: >"$PG_DIR/captured.ids"
rq hook 'ids(ok[0])[0]' >>"$PG_DIR/captured.ids" # the warm-up event's id

# run NAME FIRST_ROW: queues $EVENTS rows of ~20 kB from FIRST_ROW on with the endpoint paused,
# resumes it against a stalling receiver, samples the worker's RssAnon while requests are held,
# lets everything be delivered. Sets BASE_KB, PEAK_KB, HELD_REQUESTS, HELD_EVENTS.
run() {
    local name=$1 first=$2 last=$(($2 + EVENTS - 1)) from to
    q -c "SELECT pg_sync.pause_endpoint('e')" >/dev/null
    wait_status e 10 "state = 'paused' AND pending = 0 AND in_flight = 0" "$name: endpoint paused and idle"
    # Random-ish text (md5 hex) that TOAST cannot compress: ~20 kB of payload per event.
    for ((from = first; from <= last; from += 1000)); do
        to=$((from + 999 < last ? from + 999 : last))
        q -c "INSERT INTO big SELECT i, (SELECT string_agg(md5(i || ':' || j || ':' || random()), '')
                                         FROM generate_series(1, $((CHARS / 32))) j)
              FROM generate_series($from, $to) i"
    done
    q -c "SELECT q.id FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE e.name = 'e'" \
        >>"$PG_DIR/captured.ids"
    assert_eq "$(st e pending)" "$EVENTS" "$name: pending while paused"
    local mb
    mb=$(q -c "SELECT round(sum(octet_length(new_row::text)) / 1048576.0, 1) FROM pg_sync._queue q
                JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE e.name = 'e'")
    receiver_mode hook "{\"mode\":\"stall\",\"seconds\":$STALL_S}"
    local acked_before; acked_before=$(receiver_2xx)
    BASE_KB=$(anon_kb)
    q -c "SELECT pg_sync.resume_endpoint('e')" >/dev/null
    # Every 100 ms for 5 s, from the resume on (the first pass reads heads and builds bodies).
    local samples
    samples=$($PY - "$WPID" <<'PY'
import sys, time
pid, peak, n = sys.argv[1], 0, 0
t_end = time.monotonic() + 5.0
while time.monotonic() < t_end:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                peak, n = max(peak, int(line.split()[1])), n + 1
    time.sleep(0.1)  # sampling interval
print(n, peak)
PY
)
    read -r NSAMPLES PEAK_KB <<<"$samples"
    # The samples were taken while requests were held: nothing has been answered yet, and the
    # receiver and the worker both still have requests out.
    HELD_REQUESTS=$(receiver_in_flight)
    HELD_EVENTS=$(st e in_flight)
    assert_eq "$(receiver_2xx)" "$acked_before" "$name: events answered during the sampling (receiver stall too short?)"
    if [ "$HELD_REQUESTS" -lt 1 ] || [ "$HELD_EVENTS" -lt 1 ]; then
        fail "$name: no request in flight at the end of the sampling ($(status_line e))"
    fi
    [ "$NSAMPLES" -ge 30 ] || fail "$name: only $NSAMPLES memory samples"
    echo "$name: $EVENTS events (${mb} MB of rows) queued; worker RssAnon ${BASE_KB} kB before the resume," \
         "peak ${PEAK_KB} kB over $NSAMPLES samples (+$((PEAK_KB - BASE_KB)) kB) with $HELD_REQUESTS requests" \
         "($HELD_EVENTS events) held by the receiver"
    receiver_mode hook '{"mode":"ok"}'
    wait_status e $((STALL_S + 90)) "pending = 0 AND in_flight = 0 AND dead = 0" "$name: everything delivered"
}

# --- max_worker_memory = 16MB ------------------------------------------------------------------------
run "16MB" 1
BASE16=$BASE_KB PEAK16=$PEAK_KB GROWTH16=$((PEAK_KB - BASE_KB)) HELD16=$HELD_EVENTS
# The head read stops once it holds its share (16 MB for the only endpoint), and only what was
# read can be in flight: at most 16 MiB / 20,000 bytes of payload, plus the event that crossed.
[ "$HELD16" -le $((16 * 1048576 / CHARS + 1)) ] ||
    fail "16MB: $HELD16 events of ~$CHARS bytes in flight at once, more than the 16 MB share holds"
# The memory bound is checked at the end, so that a failure comes with every figure of the run.
# (Under AddressSanitizer, scripts/sanitize.sh, freed memory is kept in quarantine: no bound.)
echo "16MB: baseline $BASE16 kB, peak $PEAK16 kB, growth $GROWTH16 kB, limit $LIMIT_KB kB; $HELD16 events in flight"

# --- max_worker_memory = 256MB -----------------------------------------------------------------------
q >/dev/null <<'SQL'
ALTER SYSTEM SET pg_sync.max_worker_memory = '256MB';
SELECT pg_reload_conf();
SQL
# New sessions see it once the postmaster has reloaded; it signalled the worker then too, which
# rereads its settings at the top of its loop (the inserts below wake it before the resume).
wait_for "the reload of max_worker_memory" 10 cond "current_setting('pg_sync.max_worker_memory') = '256MB'"
run "256MB" $((EVENTS + 1))
BASE256=$BASE_KB PEAK256=$PEAK_KB GROWTH256=$((PEAK_KB - BASE_KB)) HELD256=$HELD_EVENTS
echo "256MB: baseline $BASE256 kB, peak $PEAK256 kB, growth $GROWTH256 kB; $HELD256 events in flight"
[ "$HELD256" -gt "$HELD16" ] || fail "no more events in flight with 256MB ($HELD256) than with 16MB ($HELD16)"

# --- every event exactly once ------------------------------------------------------------------------
$PY - "$hook_OUT" "$PG_DIR/captured.ids" <<'PY' || fail "delivery not exactly once (above)"
import json, sys
from collections import Counter
captured = [int(l) for l in open(sys.argv[2]) if l.strip()]
acked = Counter()
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    if r["status"] is not None and 200 <= r["status"] < 300:
        acked.update(e["id"] for e in r["events"] or [])
problems = []
if len(set(captured)) != len(captured):
    problems.append("an id was captured twice (test bug)")
missing = sorted(set(captured) - set(acked))
extra = sorted(set(acked) - set(captured))
twice = sorted(i for i, c in acked.items() if c > 1)
if missing: problems.append(f"{len(missing)} captured events never answered 2xx: {missing[:10]}")
if extra: problems.append(f"{len(extra)} events answered 2xx that were not captured: {extra[:10]}")
if twice: problems.append(f"{len(twice)} events answered 2xx more than once: {twice[:10]}")
for p in problems:
    print(p, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"ok: {len(captured)} events captured, {sum(acked.values())} answered 2xx, {len(acked)} distinct: each exactly once")
PY
assert_eq "$(st e delivered_total)" $((2 * EVENTS + 1)) "delivered_total"

if grep -E "PANIC|TRAP:|was terminated by signal|exited with exit code|delivery worker failed|ERROR" "$PG_DIR/server.log"; then
    fail "worker trouble in the server log"
fi
echo "worker RssAnon growth while requests were held: 16MB -> +$GROWTH16 kB (limit $LIMIT_KB kB), 256MB -> +$GROWTH256 kB"
if [ -z "${PG_SYNC_SANITIZED:-}" ]; then
    [ "$GROWTH16" -lt "$LIMIT_KB" ] ||
        fail "16MB: worker RssAnon grew by $GROWTH16 kB (from $BASE16 to $PEAK16 kB), limit $LIMIT_KB kB (3 x 16 MB)"
    [ "$GROWTH256" -gt "$GROWTH16" ] ||
        fail "the worker's memory grew no more with 256MB ($GROWTH256 kB) than with 16MB ($GROWTH16 kB)"
fi
echo "ok: worker memory bounded by pg_sync.max_worker_memory; every event delivered once"

# --- The bound does not bring back head-of-line blocking ---------------------------------------------
# max_worker_memory = 1MB: key 1 has a dead letter and 120 later events of ~20 kB (2.4 MB, all
# blocked behind it), then key 2 gets one event. The head read keeps reading past the blocked
# events without their payloads, so key 2 goes; the first cut of the bound stopped at the memory
# limit, inside the blocked events, and key 2 waited for ever.
receiver_start hol --mode status --status 500
q >/dev/null <<SQL
ALTER SYSTEM SET pg_sync.max_worker_memory = '1MB';
SELECT pg_reload_conf();
SELECT pg_sync.create_endpoint('hol', '$hol_URL', batch_size => 10, max_attempts => 1);
CREATE TABLE hol (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO hol VALUES (1, 'first');
SELECT pg_sync.track('hol', 'hol');
SQL
wait_for "the worker to see max_worker_memory = 1MB" 20 cond "(SELECT setting = '1024' FROM pg_settings WHERE name = 'pg_sync.max_worker_memory')"
q -c "UPDATE hol SET body = 'dies' WHERE id = 1" >/dev/null
wait_status hol 30 "dead = 1 AND pending = 0" "key 1's first event to become a dead letter"
receiver_mode hol '{"mode":"ok"}'
for i in $(seq 1 120); do echo "UPDATE hol SET body = repeat(md5('$i'), $((CHARS / 32))) WHERE id = 1;"; done | q >/dev/null
q -c "INSERT INTO hol VALUES (2, 'goes')" >/dev/null
wait_status hol 30 "pending = 120 AND delivered_total = 1" "key 2 to be delivered past 120 blocked events of key 1"
assert_eq "$(receiver_events hol | $PY -c 'import json,sys; print([json.loads(l)["key"]["id"] for l in sys.stdin])')" "[2]" "only key 2 went"
q -c "SELECT pg_sync.redeliver('hol')" >/dev/null
wait_status hol 60 "pending = 0 AND dead = 0 AND delivered_total = 122" "key 1's events after the redelivery"
echo "ok: with 1MB, key 2 went past 120 blocked events of key 1 (2.4 MB); all 122 delivered after redeliver"
