#!/usr/bin/env bash
# Delivery edge cases, each one a bug found in review (the test fails with the fix reverted):
#   a) a role that may not run DROP DATABASE / ALTER DATABASE ... RENAME / CREATE DATABASE ...
#      TEMPLATE cannot use them to stop another database's worker: the commands fail with a
#      permission error, the worker keeps its pid and keeps delivering;
#   d) emit orders writers of one key: a second transaction emitting the same key waits for the
#      first one (an advisory lock), another key does not wait; ids and delivery follow commit order;
#   e) pg_sync.circuit_failure_threshold follows a reload: 0 keeps the circuit closed through any
#      number of failures, back to the default it opens again;
#   b) no busy loop once every event is a dead letter and the circuit was open: the idle worker
#      uses next to no CPU (a hang check with a very generous bound, not a performance test);
#   c) DROP EXTENSION + CREATE EXTENSION in one transaction, while delivering: a worker runs again
#      for the database and a new endpoint delivers;
#   f) database-level settings (ALTER DATABASE ... SET) cannot redirect the worker: a search_path
#      that shadows now() is not used by its queries; default_transaction_read_only = on and
#      role = <an unprivileged role> do not stop delivery.
# Sections run in this order on one server (c drops what the earlier ones created; f changes
# database settings, so it comes last). Retries use small retry_base_ms / retry_max_ms.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/session.sh
. test/lib/receiver.sh
. test/lib/status.sh
pg_start edges "max_connections = 50"
trap delivery_test_exit EXIT
T0=$SECONDS
section_t0=$SECONDS
# took: seconds since the previous section ended (call it directly: it resets the clock).
took() { took=$((SECONDS - section_t0))s; section_t0=$SECONDS; }

# --- helpers --------------------------------------------------------------------------------------
worker_pid() { q -c "SELECT pid FROM pg_sync.workers WHERE database = 'postgres'"; }
has_worker() { [ -n "$(worker_pid)" ]; }
# A worker for postgres is listed and it is not process $1.
new_worker_since() { local p; p=$(worker_pid); [ -n "$p" ] && [ "$p" != "$1" ]; }
# Terminates postgres' worker and waits for the launcher to start another one (it connects anew,
# with the database's current settings). A new worker that fails (and may never be seen listed)
# ends the wait at once with its error.
restart_worker() {
    local old log_from; old=$(worker_pid)
    [ -n "$old" ] || fail "no worker for postgres to restart"
    log_from=$(($(stat -c %s "$PG_DIR/server.log") + 1))
    assert_eq "$(q -c "SELECT pg_terminate_backend($old)")" t "pg_terminate_backend($old)"
    worker_failure=
    new_worker_or_failure() {
        worker_failure=$(tail -c +"$log_from" "$PG_DIR/server.log" | grep -E "ERROR|FATAL" | grep -v "\[$old\]" | head -n 2)
        [ -z "$worker_failure" ] || return 0
        new_worker_since "$old"
    }
    wait_for "a new worker for postgres after terminating $old" 30 new_worker_or_failure
    [ -z "$worker_failure" ] || fail "the worker started after terminating $old failed:"$'\n'"$worker_failure"
}

q -c "CREATE EXTENSION pg_sync"
wait_for "a delivery worker for postgres" 15 has_worker

# --- a) an unprivileged role cannot stop postgres' worker -----------------------------------------
receiver_start ra
new_case a "$ra_URL" "retry_base_ms => 50, retry_max_ms => 500"
q -c "INSERT INTO t_a VALUES (1)"
receiver_wait_events ra 1 15
q >/dev/null <<'SQL'
CREATE ROLE mallory LOGIN;   -- NOSUPERUSER NOCREATEDB, owns nothing
CREATE DATABASE mallory_home;
SQL
pid_a=$(worker_pid)
[ -n "$pid_a" ] || fail "a: no worker for postgres"
as_mallory() { psql -X -q -At -v VERBOSITY=verbose -U mallory -d mallory_home -c "$1" 2>&1; }
for stmt in "DROP DATABASE postgres" "ALTER DATABASE postgres RENAME TO x" "CREATE DATABASE m TEMPLATE postgres"; do
    if out=$(as_mallory "$stmt"); then
        fail "a: mallory's [$stmt] succeeded: $out"
    fi
    assert_contains "$out" "ERROR:  42501:" # insufficient_privilege
    # The command itself is refused, and postgres' worker is the same process as before.
    assert_eq "$(worker_pid)" "$pid_a" "a: postgres' worker pid after mallory's [$stmt]"
    echo "a) mallory: $stmt -> $(head -n 1 <<<"$out")"
done
assert_eq "$(q -c "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname IN ('postgres', 'x', 'm')")" \
    postgres "a: databases after mallory's attempts"
q -c "INSERT INTO t_a VALUES (2)"
receiver_wait_events ra 2 15
assert_eq "$(delivered_keys ra)" "1,2" "a: delivered keys"
assert_eq "$(worker_pid)" "$pid_a" "a: postgres' worker pid after a delivery"
took
echo "ok a: worker $pid_a kept its pid through mallory's three refused commands and delivered ($took)"

# --- d) emit: writers of one key take turns ----------------------------------------------------------
receiver_start rd
q -c "SELECT pg_sync.create_endpoint('ord', '$rd_URL', retry_base_ms => 50, retry_max_ms => 500)" >/dev/null
session_open
session "BEGIN; SELECT pg_sync.emit('ord', 't', '{\"s\": \"A\"}', key => 'k');"
# B emits the same key: it must wait for A's transaction (an advisory lock of emit's).
PGAPPNAME=edges_b q -c "SELECT pg_sync.emit('ord', 't', '{\"s\": \"B\"}', key => 'k')" >"$PG_DIR/b.out" 2>&1 &
b_pid=$!
b_waits() {
    [ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'edges_b'
                 AND wait_event_type = 'Lock' AND wait_event = 'advisory'")" == 1 ]
}
wait_for "d: B (same key) waiting on an advisory lock while A is open" 10 b_waits
# Another key does not wait (lock_timeout turns a wait into an error).
other_id=$(PGOPTIONS="-c lock_timeout=5s" q -c "SELECT pg_sync.emit('ord', 't', '{\"s\": \"other\"}', key => 'other')") ||
    fail "d: emit with key 'other' did not go through while A held key 'k': $other_id"
kill -0 "$b_pid" 2>/dev/null || fail "d: B finished while A was still open: $(cat "$PG_DIR/b.out")"
b_waits || fail "d: B no longer waiting on the advisory lock after the 'other' emit"
session "COMMIT;"
b_done() { ! kill -0 "$b_pid" 2>/dev/null; }
wait_for "d: B to finish once A committed" 10 b_done
wait "$b_pid" || fail "d: B's emit failed: $(cat "$PG_DIR/b.out")"
b_id=$(cat "$PG_DIR/b.out")
[[ "$b_id" =~ ^[0-9]+$ ]] || fail "d: B's emit returned [$b_id]"
receiver_wait_events rd 3 15
# Each event as received: id, payload's s, key; in the order the receiver saw them.
got=$(rq rd '";".join("%s:%s:%s" % (e["id"], e["payload"]["s"], e["key"]) for r in ok for e in r["events"])')
a_id=$(rq rd '[e["id"] for r in ok for e in r["events"] if e["payload"]["s"] == "A"]')
[[ "$a_id" =~ ^\[([0-9]+)\]$ ]] || fail "d: A's event delivered other than once: $got"
a_id=${BASH_REMATCH[1]}
[ "$b_id" -gt "$a_id" ] || fail "d: B's id $b_id is not after A's $a_id"
# Key k in delivery order: A then B.
assert_eq "$(rq rd '",".join(e["payload"]["s"] for r in ok for e in r["events"] if e["key"] == "k")')" "A,B" \
    "d: key k in delivery order ($got)"
assert_eq "$(rq rd '",".join(str(e["id"]) for r in ok for e in r["events"] if e["key"] == "k")')" "$a_id,$b_id" \
    "d: key k ids in delivery order"
assert_eq "$(rq rd 'len([1 for r in ok for e in r["events"]])')" 3 "d: events delivered"
took
echo "ok d: B (key k) waited on the advisory lock until A committed, key 'other' ($other_id) did not; A $a_id then B $b_id delivered in order ($took)"

# --- e) pg_sync.circuit_failure_threshold follows a reload ---------------------------------------------
receiver_start re --mode status --status 500
new_case cb "$re_URL" "max_attempts => 1000, retry_base_ms => 20, retry_max_ms => 100"
# The worker must have the endpoint before the setting changes (a breaker made later would read it anew).
wait_for "e: the worker's state row for endpoint cb" 15 \
    cond "(SELECT count(*) = 1 FROM pg_sync._endpoint_state s JOIN pg_sync._endpoints e ON e.id = s.endpoint_id WHERE e.name = 'cb')"
# A fresh backend showing the value proves that the postmaster has re-read the file and signalled
# every process, the worker included (it applies a pending reload before its next pass).
threshold_is() { [ "$(q -c "SHOW pg_sync.circuit_failure_threshold")" == "$1" ]; }
q >/dev/null <<'SQL'
ALTER SYSTEM SET pg_sync.circuit_failure_threshold = 0;
SELECT pg_reload_conf();
SQL
wait_for "e: pg_sync.circuit_failure_threshold = 0 in a new session" 10 threshold_is 0
q -c "INSERT INTO t_cb VALUES (1)"
# Sample the state until the failure streak passes the default threshold (5) by 2; the sample that
# ends the loop is checked too.
samples=0
deadline=$((SECONDS + 20))
while :; do
    IFS='|' read -r s_state s_consecutive < <(q -c "SELECT state, consecutive_failures FROM pg_sync.endpoint_status WHERE endpoint = 'cb'")
    samples=$((samples + 1))
    [ "$s_state" != circuit_open ] || fail "e: circuit opened with pg_sync.circuit_failure_threshold = 0 ($(status_line cb))"
    [ "$s_consecutive" -lt 7 ] || break
    [ $SECONDS -lt $deadline ] || fail "e: consecutive_failures did not reach 7 ($(status_line cb))"
    sleep 0.05 # poll interval
done
# A little further: still closed (the breaker does not open late either).
target=$((s_consecutive + 3))
while :; do
    IFS='|' read -r s_state s_consecutive < <(q -c "SELECT state, consecutive_failures FROM pg_sync.endpoint_status WHERE endpoint = 'cb'")
    samples=$((samples + 1))
    [ "$s_state" != circuit_open ] || fail "e: circuit opened with pg_sync.circuit_failure_threshold = 0 ($(status_line cb))"
    [ "$s_consecutive" -lt "$target" ] || break
    [ $SECONDS -lt $deadline ] || fail "e: consecutive_failures did not reach $target ($(status_line cb))"
    sleep 0.05 # poll interval
done
echo "e) threshold 0: $samples samples, none circuit_open, consecutive_failures reached $s_consecutive"
q >/dev/null <<'SQL'
ALTER SYSTEM RESET pg_sync.circuit_failure_threshold;
SELECT pg_reload_conf();
SQL
wait_for "e: pg_sync.circuit_failure_threshold back to 5 in a new session" 10 threshold_is 5
wait_status cb 15 "state = 'circuit_open'" "the circuit to open with the default threshold"
assert_eq "$(st cb "pending")" 1 "e: pending"
receiver_mode re '{"mode":"ok"}'
wait_status cb 20 "pending = 0 AND state = 'active' AND delivered_total = 1" "e: recovery"
took
echo "ok e: threshold 0 after a reload kept the circuit closed through $s_consecutive failures; after RESET it opened ($took)"

# --- b) no busy loop after dead letters with an open circuit -------------------------------------------
# The worker must not keep waking up for a circuit re-opening time that no pass advances any more.
# That needs the last events to die while the circuit is open: 3 requests are held by a stalling
# receiver (they time out after timeout_ms); then 5 events, answered 500 one at a time through the
# one free request slot, open the circuit (5 consecutive failures) while those 3 are still out;
# their timeouts then leave the queue empty with the circuit open (open for 100 * 2^4 = 1,600 ms,
# long after the timeouts).
receiver_start rb --mode stall --seconds 60
new_case b "$rb_URL" "batch_size => 1, max_in_flight => 4, max_attempts => 1, timeout_ms => 1000,
                      retry_base_ms => 100, retry_max_ms => 2000"
receiver_in_flight_is() {
    [ "$("$RECEIVER_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["in_flight"])' <<<"$(receiver_stats "$1")")" == "$2" ]
}
q -c "INSERT INTO t_b SELECT g FROM generate_series(1, 3) g"
wait_for "b: 3 requests held by the receiver" 10 receiver_in_flight_is rb 3
receiver_mode rb '{"mode":"status","status":500}'
q -c "INSERT INTO t_b SELECT g FROM generate_series(4, 8) g"
wait_status b 20 "pending = 0 AND dead = 8 AND in_flight = 0" "b: every event a dead letter"
# One request per event (max_attempts 1); the receiver logs a timed-out request when it notices
# the hang-up (it looks every 50 ms), so wait for it.
requests_are() { [ "$(rq "$1" 'len(recs)')" == "$2" ]; }
wait_for "b: the receiver to have logged 8 requests" 10 requests_are rb 8
# The order the scenario needs: the five 500s (the circuit opened at the fifth), then the timeouts.
assert_eq "$(q -c "SELECT format('%s %s %s', count(*) FILTER (WHERE last_status = 500),
                                     count(*) FILTER (WHERE last_error LIKE 'timeout%'),
                                     max(dead_at) FILTER (WHERE last_status = 500) < min(dead_at) FILTER (WHERE last_error LIKE 'timeout%'))
                    FROM pg_sync.dead_letters WHERE endpoint = 'b'")" "5 3 t" \
    "b: dead letters (500s, timeouts, 500s before the timeouts)"
assert_eq "$(st b "format('%s %s %s', state, consecutive_failures, failed_attempts_total)")" "circuit_open 8 8" \
    "b: circuit after the last failure ($(status_line b))"
wait_status b 10 "next_attempt_at IS NULL OR next_attempt_at < now() - interval '200 ms'" \
    "b: the circuit's re-opening time to pass"
pid_b=$(worker_pid)
[ -n "$pid_b" ] || fail "b: no worker"
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; } # utime + stime
# How often it blocked (in its wait for the latch, sockets or a timeout): about once per loop.
sleeps() { awk '/^voluntary_ctxt_switches:/ { print $2 }' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
c0=$(cpu_ticks "$pid_b") s0=$(sleeps "$pid_b") w0=$(date +%s%N)
# Measurement window: the idle worker's CPU time and wake-ups over three of its sweeps (each pass
# moves pg_sync.workers.last_active_at; polled with a deadline, not a fixed sleep).
active_at() { q -c "SELECT last_active_at FROM pg_sync.workers WHERE pid = $pid_b"; }
last=$(active_at) passes=0 deadline=$((SECONDS + 20))
while [ "$passes" -lt 3 ]; do
    [ $SECONDS -lt $deadline ] || fail "b: the idle worker did not sweep 3 times within 20 s ($(status_line b))"
    sleep 0.05 # poll interval
    now=$(active_at)
    [ "$now" == "$last" ] || { passes=$((passes + 1)); last=$now; }
done
c1=$(cpu_ticks "$pid_b") s1=$(sleeps "$pid_b") w1=$(date +%s%N)
assert_eq "$(worker_pid)" "$pid_b" "b: worker pid across the measurement"
cpu_ms=$(((c1 - c0) * 1000 / hz)) wall_ms=$(((w1 - w0) / 1000000)) wakeups=$((s1 - s0))
# Very generous bounds (an idle worker wakes about once per sweep_interval, 1 s, and uses next to
# no CPU): a loop that never sleeps burns ~3 s of CPU; one that sleeps 1 ms at a time wakes
# ~1000 times a second.
[ "$cpu_ms" -lt 1000 ] ||
    fail "b: the idle worker used ${cpu_ms} ms of CPU in ${wall_ms} ms (busy loop?) ($(status_line b))"
[ "$wakeups" -lt 300 ] ||
    fail "b: the idle worker woke $wakeups times in ${wall_ms} ms (a pass every few ms?) ($(status_line b))"
assert_eq "$(rq rb 'len(recs)')" 8 "b: requests after the idle period"
took
echo "ok b: 8 dead letters (5 x 500, then 3 timeouts with the circuit open); the idle worker then used ${cpu_ms} ms CPU and woke $wakeups times in ${wall_ms} ms ($took)"

# --- g) every endpoint paused: commits do not wake the worker -----------------------------------------
# A commit that queued events wakes the worker (its latch), and every wake-up starts a pass; with
# every endpoint paused nothing could be sent, so those commits leave it asleep
# (docs/delivery.md, "Wake-ups"): 500 single-row commits, each its own transaction, must not wake
# it 500 times. With pg_sync.sweep_interval = 1 h for this case, only wake-ups can then make it
# deliver: a new endpoint (a configuration change) gets its events at once while the paused one
# waits, resume_endpoint brings the paused one's events, and a commit after that wakes it again.
# (A new worker: its first pass schedules the next sweep an hour on.)
q -c "ALTER SYSTEM SET pg_sync.sweep_interval = '1h'" -c "SELECT pg_reload_conf()" >/dev/null
restart_worker
receiver_start rg
new_case g "$rg_URL"
pid_g=$(worker_pid)
[ -n "$pid_g" ] || fail "g: no worker"
# The pause's own wake-up: wait for a pass after it (last_active_at, read before the pause, moves;
# with no sweep for an hour, nothing else moves it), then measure.
before_g=$(q -c "SELECT last_active_at FROM pg_sync.workers WHERE pid = $pid_g")
q -c "SELECT count(pg_sync.pause_endpoint(name)) FROM pg_sync.endpoints" >/dev/null
moved_g() { [ "$(q -c "SELECT last_active_at FROM pg_sync.workers WHERE pid = $pid_g")" != "$before_g" ]; }
wait_for "g: a pass after the pause" 10 moved_g
s0=$(sleeps "$pid_g") w0=$(date +%s%N)
for i in $(seq 1 500); do echo "INSERT INTO t_g VALUES ($i);"; done | q >/dev/null
s1=$(sleeps "$pid_g") w1=$(date +%s%N)
assert_eq "$(worker_pid)" "$pid_g" "g: worker pid across the measurement"
wall_ms=$(((w1 - w0) / 1000000)) wakeups=$((s1 - s0))
assert_eq "$(st g pending)" 500 "g: events queued while paused"
# What each wake-up's loop blocks on, and a sweep already scheduled: a few per second at most. A
# worker woken by each commit blocks at least once per commit (500).
limit=$((20 + 10 * wall_ms / 1000))
[ "$wakeups" -lt "$limit" ] ||
    fail "g: 500 commits with every endpoint paused woke the worker $wakeups times in ${wall_ms} ms (limit $limit)"
assert_eq "$(rq rg 'len(recs)')" 0 "g: nothing sent while paused"
# An endpoint that may send, beside the paused one: its commits wake the worker again.
receiver_start rg2
new_case g2 "$rg2_URL"
q -c "INSERT INTO t_g2 VALUES (1)"
receiver_wait_events rg2 1 10
q -c "INSERT INTO t_g2 VALUES (2)"
receiver_wait_events rg2 2 10
assert_eq "$(rq rg 'len(recs)')" 0 "g: still nothing sent for the paused endpoint"
q -c "SELECT pg_sync.resume_endpoint('g')" >/dev/null
wait_status g 10 "pending = 0 AND in_flight = 0" "g: delivered after resume_endpoint (no sweep: its wake-up)"
q -c "INSERT INTO t_g VALUES (501)"
wait_status g 10 "pending = 0 AND in_flight = 0" "g: a commit after resume_endpoint delivered (no sweep: its wake-up)"
assert_eq "$(rq rg 'len({e["key"]["id"] for r in ok for e in (r["events"] or [])})')" 501 "g: every event delivered"
q -c "ALTER SYSTEM RESET pg_sync.sweep_interval" -c "SELECT pg_reload_conf()" >/dev/null
restart_worker
took
echo "ok g: 500 commits with every endpoint paused woke the worker $wakeups times in ${wall_ms} ms; an endpoint created meanwhile, resume_endpoint and a later commit were each served by their wake-up alone ($took)"

# --- c) DROP + CREATE EXTENSION in one transaction, while delivering -----------------------------------
receiver_start rc
new_case c "$rc_URL" "retry_base_ms => 50, retry_max_ms => 500"
q -c "INSERT INTO t_c SELECT g FROM generate_series(1, 20) g"
receiver_wait_events rc 20 15
pid_c=$(worker_pid)
[ -n "$pid_c" ] || fail "c: no worker"
# More events: the worker is busy with them when the extension goes.
q -c "INSERT INTO t_c SELECT g FROM generate_series(21, 120) g"
q >/dev/null <<'SQL'
BEGIN;
SET LOCAL client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
CREATE EXTENSION pg_sync;
COMMIT;
SQL
t_c=$SECONDS
# The old worker leaves (its extension is gone); a new one must serve the new extension.
wait_for "c: a worker for postgres other than $pid_c after DROP + CREATE EXTENSION" 15 new_worker_since "$pid_c"
echo "c) worker $pid_c replaced by $(worker_pid) within $((SECONDS - t_c))s"
receiver_start rc2
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('c2', '$rc2_URL', retry_base_ms => 50, retry_max_ms => 500);
SELECT pg_sync.track('t_c', 'c2');
INSERT INTO t_c VALUES (1000);
SQL
receiver_wait_events rc2 1 15
assert_eq "$(delivered_keys rc2)" 1000 "c: delivered keys after the re-creation"
took
echo "ok c: after DROP + CREATE EXTENSION in one transaction a new worker delivered ($took)"

# --- f) database-level settings cannot redirect the worker ----------------------------------------------
# This test's own sessions keep a harmless search_path and may write (the database's settings
# below are for the worker).
export PGOPTIONS="-c search_path=public,pg_catalog -c default_transaction_read_only=off -c role=postgres"
q >/dev/null <<'SQL'
CREATE SCHEMA evil;
CREATE TABLE evil.calls (at timestamptz NOT NULL DEFAULT clock_timestamp(),
                         who text NOT NULL DEFAULT current_setting('application_name'));
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evil.calls DEFAULT VALUES;
    RETURN '2000-01-01 00:00:00+00';
END $$;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
GRANT INSERT ON evil.calls TO PUBLIC;
ALTER DATABASE postgres SET search_path = evil, pg_catalog;
SQL
# The trap works: a session that takes the database's search_path calls evil.now().
assert_eq "$(PGOPTIONS='' q -c "SELECT now() = '2000-01-01 00:00:00+00'")" t "f: now() in a session with the database's search_path"
assert_eq "$(q -c "SELECT count(*) FROM evil.calls")" 1 "f: evil.calls after the control"
q -c "TRUNCATE evil.calls"
receiver_start rf --mode status --status 500
new_case f "$rf_URL" "max_attempts => 2, retry_base_ms => 20, retry_max_ms => 100"
restart_worker
pid_f=$(worker_pid)
# Failures, a dead letter and deliveries: the worker's queries that call now() (dead letters,
# endpoint state) all run.
q -c "INSERT INTO t_f VALUES (1)"
wait_status f 15 "dead = 1 AND pending = 0 AND failed_attempts_total = 2" "f: a dead letter after 2 failures"
receiver_mode rf '{"mode":"ok"}'
q -c "INSERT INTO t_f VALUES (2), (3)"
wait_status f 15 "pending = 0 AND delivered_total = 2" "f: deliveries"
assert_eq "$(delivered_keys rf)" "2,3" "f: delivered keys"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._dead_letters WHERE dead_at > '2001-01-01'")" 1 \
    "f: dead letters stamped by pg_catalog.now()"
assert_eq "$(q -c "SELECT count(*) || ' ' || coalesce(string_agg(DISTINCT who, ','), '') FROM evil.calls")" "0 " \
    "f: calls of evil.now() (by application_name)"
assert_eq "$(worker_pid)" "$pid_f" "f: worker pid (it must not have failed and restarted)"
echo "f) search_path = evil, pg_catalog: worker $pid_f delivered, recorded failures and a dead letter; evil.now() never called"

# default_transaction_read_only = on, role = an unprivileged role: the worker still writes.
q >/dev/null <<'SQL'
ALTER DATABASE postgres RESET search_path;
ALTER DATABASE postgres SET default_transaction_read_only = on;
ALTER DATABASE postgres SET role = mallory;
SQL
assert_eq "$(PGOPTIONS='' q -c "SELECT current_setting('default_transaction_read_only') || ' ' || current_user")" \
    "on mallory" "f: a session that takes the database's settings"
restart_worker
pid_f2=$(worker_pid)
q -c "INSERT INTO t_f VALUES (4)"
receiver_wait_events rf 3 15
wait_status f 15 "pending = 0 AND delivered_total = 3" "f: delivery with read-only and role settings"
assert_eq "$(delivered_keys rf)" "2,3,4" "f: delivered keys"
assert_eq "$(worker_pid)" "$pid_f2" "f: worker pid (it must not have failed and restarted)"
q >/dev/null <<'SQL'
ALTER DATABASE postgres RESET default_transaction_read_only;
ALTER DATABASE postgres RESET role;
SQL
assert_eq "$(q -c "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'postgres'")" 0 \
    "f: database settings left on postgres"
took
echo "ok f: database-level search_path, default_transaction_read_only and role did not redirect or stop the worker ($took)"
unset PGOPTIONS

# --- the server log: no crash, no error but mallory's refused commands ------------------------------
if grep -E "PANIC|TRAP:|terminated by signal" "$PG_DIR/server.log"; then
    fail "the server log shows a crash"
fi
unexpected=$(grep -E "ERROR|FATAL|WARNING" "$PG_DIR/server.log" |
    grep -vE "must be owner of database postgres|permission denied to create database" |
    grep -vE "terminating background worker \"pg_sync worker\" due to administrator command" || true)
[ -z "$unexpected" ] || fail "unexpected errors in the server log:"$'\n'"$unexpected"
echo "ok: delivery edges ($((SECONDS - T0))s)"
