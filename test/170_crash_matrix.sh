#!/usr/bin/env bash
# Crash matrix (issue 5, item 1): kill -9 at each point of an event's life that matters, once as
# kill -9 of the whole server (postmaster and every process of its data directory: "s") and once
# as kill -9 of one pg_sync worker alone, after which the postmaster runs crash recovery itself
# ("w"). Every case has its own endpoint, table t_<endpoint> (id, v: every change bumps v, so a
# key's committed versions are exactly 1..v) and receiver (test/lib/receiver.py).
#   1  after capture commit, before the worker claims the events: the delivery worker is frozen
#      (SIGSTOP), rows are committed, then the kill;
#   2  requests in flight: the receiver holds 4 requests (stall), then the kill;
#   3  between the receiver's 2xx and the worker's commit of that outcome: the receiver itself
#      sends SIGKILL to the worker (w) or to the worker, the postmaster and all its children (s)
#      right after writing the 2xx of the 3rd request (receiver.py "kill_pids"); per variant one
#      round that freezes them (SIGSTOP) before writing that 2xx, which hits the window every
#      time, and two rounds without, which hit it only when the kill outruns the worker's commit
#      (measured and printed);
#   4  a backfill mid-page: a writer holds a row of the 9th page (an update it never commits);
#      a DO block waits until the backfill worker's page transaction waits for that row and
#      kills it (w) or the server (s) through COPY TO PROGRAM, with 8 pages committed; after the
#      restart the job finishes with every row sent exactly once (the cut page redone, no page
#      skipped, none queued twice, rows_scanned exact), updates made during the backfill keep
#      their per-key order, the writer's uncommitted update is not sent;
#   5  redelivery: a) kill while redeliver() has moved the dead letters but not committed: they
#      stay dead; b) kill after the redeliver commit while the redelivered events are held by
#      the receiver;
#   6  pg_ctl stop -m immediate with 200,000 events pending and delivery running;
#   7  answered but not yet recorded (pipelining, docs/delivery.md): with pg_sync.ack_delay = 5 s
#      the worker records answers in groups and keeps sending meanwhile; a commit wakes it (its
#      pass records every answer so far; a synchronous commit of the test then makes that
#      asynchronous commit durable), then the receiver kills the worker (w) or the whole
#      server (s) right after 60 more 2xx, with those answers not yet recorded.
#   8  recorded by a group of 2xx committed asynchronously, not yet written to the WAL: the worker
#      (w only) killed as soon as a drain is recorded, with wal_writer_delay = 2 s (below).
# Cases 3 and 4 run with pg_sync.ack_delay = 0 (every round of answers committed before the next
# requests go out, as in 0.3.0): their windows are exact. The others run with the default (10 ms),
# and case 7 with 5 s.
# After each restart: every committed version delivered, none that was not committed; per key,
# first deliveries in id order and in version order; an event id answered 2xx twice only if it
# was in flight (or answered but not recorded) at the kill, checked exactly where the case allows
# (1, 2, 5: no duplicate at all; 3: only the ids of the request whose 2xx preceded the kill, and
# resent in the freeze round, which proves the kill hit the window; 4: only the last request of the
# killed server, with max_in_flight 1; 6: only events whose first request arrived within the
# acknowledgement window before the kill; 7: only events first sent after the pass that recorded
# the earlier answers, and more of them than the requests in flight could carry, which proves the
# kill hit answers that were not recorded; 8: only events of the drain after the last flush, and
# some, though nothing was in flight; 6, 7 and 8: all first delivered by the killed server and,
# per key, the last ones delivered before the kill, sent again in id order).
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
# syncfs: the fsync of the whole data directory at each of the 17 crash restarts cost ~1.7 s
# each here (it guards against OS crashes, which this test does not simulate).
pg_start crashmx "max_connections = 50" "recovery_init_sync_method = syncfs"
# No statement of the test may hang (e.g. behind a frozen worker): it fails instead.
export PGOPTIONS="-c statement_timeout=120s"
T0=$SECONDS
bg_pid= frozen_pid=
cm_exit() {
    local rc=$?
    set +e
    [ -z "$bg_pid" ] || kill "$bg_pid" 2>/dev/null
    [ -z "$frozen_pid" ] || kill -CONT "$frozen_pid" 2>/dev/null # else it would outlive the server
    (exit $rc)
    delivery_test_exit
}
trap cm_exit EXIT
PY=/usr/bin/python3

# --- helpers --------------------------------------------------------------------------------------

postmaster_gone() { ! kill -0 "$PG_PID" 2>/dev/null; }
server_up() { q -c "SELECT 1" >/dev/null 2>&1; }
# After a kill -9 of the postmaster: kill what is left of the server, wait until the postmaster
# is reaped (a zombie still holds postmaster.pid), start the server again, wait for the worker.
finish_server_kill() {
    wait_for "every server process gone" 30 no_server_left
    wait_for "the killed postmaster reaped" 60 postmaster_gone
    pg_restart_after_crash
    wait_for "a delivery worker after the restart" 60 cond "(SELECT count(*) = 1 FROM pg_sync.workers)"
}
# kill -9 of the postmaster and every child at once (the PIDs given first), then finish_server_kill.
kill_server() {
    local pids; pids=$(kill_list "$@" | tr -d '[],')
    kill -9 $pids 2>/dev/null || true
    finish_server_kill
}
# kill_list PID...: JSON list of the given PIDs, then the postmaster, then its other processes.
kill_list() {
    { printf '%s\n' "$@" "$PG_PID"; server_pids; } | awk 'NF && !seen[$1]++' | paste -sd, | sed 's/.*/[&]/'
}
worker_pid() { q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()"; }
recoveries() { grep -c "all server processes terminated; reinitializing" "$PG_DIR/server.log" || true; }
# After a kill -9 of one pg_sync worker (PID, whose death was announced with NAME): the postmaster
# notices, restarts every process (crash recovery), then a new delivery worker comes.
await_crash_recovery() {
    local pid=$1 name=$2 before=$3
    wait_for "the killed worker gone" 30 bash -c "! kill -0 $pid 2>/dev/null"
    wait_for "crash recovery in the server log" 60 bash -c "[ \$(grep -c 'all server processes terminated; reinitializing' '$PG_DIR/server.log') -gt $before ]"
    grep -q "background worker \"$name\" (PID $pid) was terminated by signal 9" "$PG_DIR/server.log" \
        || fail "no kill -9 of $name (PID $pid) in the server log"
    wait_for "server back after crash recovery" 60 server_up
    wait_for "a new delivery worker" 60 cond "(SELECT count(*) = 1 AND min(pid) <> $pid FROM pg_sync.workers)"
}
# kill_worker_or_server VARIANT: kill -9 of the delivery worker alone (w) or of the whole server (s).
kill_worker_or_server() {
    local variant=$1 wpid; wpid=$(worker_pid)
    [ -n "$wpid" ] || fail "no delivery worker"
    if [ "$variant" == w ]; then
        local before; before=$(recoveries)
        kill -9 "$wpid"
        await_crash_recovery "$wpid" "pg_sync worker" "$before"
    else
        kill_server "$wpid"
    fi
}
# Unix time at which the current delivery worker started: every request the receiver logged
# before it came from a killed worker.
worker_started() { q -c "SELECT extract(epoch FROM started_at) FROM pg_sync.workers WHERE database = current_database()"; }
# worker_settings 'NAME = VALUE, ...': the delivery worker's pg_sync settings for the next cases
# (ALTER SYSTEM, so that they also hold after the crash restarts), read by a new worker: the old
# one is terminated and the launcher starts another.
worker_settings() {
    local old setting; old=$(worker_pid)
    while read -r setting; do
        q -c "ALTER SYSTEM SET $setting" >/dev/null # (not in a transaction block: one at a time)
    done < <(tr ',' '\n' <<<"$1")
    q -c "SELECT pg_reload_conf()" -c "SELECT pg_terminate_backend($old)" >/dev/null
    wait_for "a delivery worker with $1" 60 cond "(SELECT count(*) = 1 AND min(pid) <> $old FROM pg_sync.workers)"
}
rx_stat() { $PY -c "import json,sys; print(json.load(sys.stdin)$2)" <<<"$(receiver_stats "$1")"; }
rx_held() { [ "$(rx_stat "$1" "['in_flight']")" -ge "$2" ]; }
rx_none_held() { [ "$(rx_stat "$1" "['in_flight']")" -eq 0 ]; }
rx_idle() { [ "$(rx_stat "$1" "['in_flight']")" == 0 ]; }
rx_kills() { [ "$(rx_stat "$1" "['kills'].__len__()")" -ge "$2" ]; }
drained() { wait_status "$1" 90 "pending = 0 AND in_flight = 0 AND dead = 0" "$2"; }
bg_done() { ! kill -0 "$bg_pid" 2>/dev/null; } # the background psql session has ended

# check LABEL EP RECEIVER [options]: the events of public.t_EP answered 2xx by RECEIVER against the
# table. Per key: versions 1..v all delivered (nothing lost), none other (nothing uncommitted),
# each version in one event id, first deliveries in id order and in version order, a resend
# identical to the first delivery. Duplicates (event ids answered 2xx more than once):
#   --no-dups                 none at all
#   --dups-in IDS             only these ids (comma-separated)
#   --requests-before T       events first delivered before T (by the killed server)
#   --window T S              events first delivered by requests that arrived at most S seconds
#                             before T (the kill, or the pass that recorded what came before):
#                             answered within the acknowledgement group (pg_sync.ack_delay), or
#                             in flight
#   --resent-in-order T       the restart at T: per key, the events sent again are the last ones
#                             first delivered before T (a suffix), and what came from T on is in
#                             id order (never an earlier event after a later one)
#   --need-cut                some request was cut off unanswered (the case had one in flight)
check() {
    local label=$1 ep=$2 rx=$3; shift 3
    local out_var="${rx}_OUT"
    q -c "COPY (SELECT id, v FROM t_$ep ORDER BY id) TO STDOUT" >"$PG_DIR/t_$ep.rows"
    $PY - "${!out_var}" "$PG_DIR/t_$ep.rows" "public.t_$ep" "$@" <<'PY' || fail "$label: delivery does not match the table (above)"
import json, sys, argparse
from collections import defaultdict
ap = argparse.ArgumentParser()
ap.add_argument("log"); ap.add_argument("rows"); ap.add_argument("table")
ap.add_argument("--no-dups", action="store_true")
ap.add_argument("--dups-in")
ap.add_argument("--requests-before", type=float)
ap.add_argument("--window", nargs=2, type=float)
ap.add_argument("--resent-in-order", type=float)
ap.add_argument("--need-cut", action="store_true")
a = ap.parse_args()
rows = {}
for line in open(a.rows):
    k, v = line.split("\t")
    rows[int(k)] = int(v)
recs = [json.loads(l) for l in open(a.log, encoding="utf-8") if l.strip()]
first, first_req, count, order = {}, {}, defaultdict(int), defaultdict(list)
problems, cut = [], 0
for r in recs:
    if r["status"] is None:
        cut += 1
        continue
    if not 200 <= r["status"] < 300 or not r["events"]:
        continue
    for e in r["events"]:
        if e.get("table") != a.table:
            continue
        count[e["id"]] += 1
        if e["id"] in first:
            if first[e["id"]] != e:
                problems.append(f"event {e['id']} differs between its deliveries")
            continue
        first[e["id"]], first_req[e["id"]] = e, r
        order[e["key"]["id"]].append(e["id"])
versions = defaultdict(list)
for i in sorted(first):
    e = first[i]
    if e["op"] not in ("insert", "update"):
        problems.append(f"unexpected event {e}")
        continue
    versions[e["key"]["id"]].append(e["new"]["v"])
lost, phantom = [], []
for k, v in rows.items():
    got = versions.get(k, [])
    lost += [(k, x) for x in range(1, v + 1) if x not in got]
    phantom += [(k, x) for x in got if not 1 <= x <= v]
    if len(got) != len(set(got)):
        problems.append(f"key {k}: a version in two events: {sorted(got)}")
    elif got != sorted(got):
        problems.append(f"key {k}: versions out of order by id: {got}")
phantom += [(k, x) for k in versions if k not in rows for x in versions[k]]
if lost:
    problems.append(f"{len(lost)} committed versions never delivered, e.g. (key, v) {lost[:10]}")
if phantom:
    problems.append(f"{len(phantom)} delivered versions that were never committed, e.g. {phantom[:10]}")
for k, ids in order.items():
    if ids != sorted(ids):
        problems.append(f"key {k}: first deliveries out of id order: {ids}")
        break
dups = sorted(i for i, c in count.items() if c > 1)
allowed_note = ""
if a.no_dups and dups:
    problems.append(f"{len(dups)} events delivered twice, none was in flight: {dups[:20]}")
if a.dups_in is not None:
    allowed = {int(x) for x in a.dups_in.split(",") if x}
    bad = [i for i in dups if i not in allowed]
    if bad:
        problems.append(f"events delivered twice that were not in the request answered at the kill: {bad[:20]}")
    allowed_note = f"; {len(set(dups) & allowed)} of the {len(allowed)} events answered at the kills were sent again"
if a.requests_before is not None:
    reqs = {first_req[i]["n"] for i in dups}
    late = [i for i in dups if first_req[i]["t"] >= a.requests_before]
    if late:
        problems.append(f"events first delivered by the restarted server and delivered twice: {late[:20]}")
    allowed_note = f"; the duplicates come from {len(reqs)} requests of the killed server"
if a.window is not None:
    t_kill, span = a.window
    old = sorted({first_req[i]["n"] for i in dups if first_req[i]["t"] < t_kill - span})
    if old:
        problems.append(f"events sent again whose first request arrived more than {span:.2f} s before the "
                        f"window's end (requests {old[:10]}): their answers were recorded")
    if dups:
        allowed_note += (f"; the earliest first send of a duplicate arrived "
                         f"{min(first_req[i]['t'] for i in dups) - t_kill:+.3f} s from the window's end "
                         f"(allowed from -{span:.2f} s)")
if a.resent_in_order is not None:
    t_restart = a.resent_in_order
    before, after = defaultdict(list), defaultdict(list)
    for r in recs:
        if r["status"] is None or not 200 <= r["status"] < 300 or not r["events"]:
            continue
        for e in r["events"]:
            if e.get("table") == a.table:
                (before if r["t"] < t_restart else after)[e["key"]["id"]].append(e["id"])
    for k, ids in after.items():
        if ids != sorted(ids):
            problems.append(f"key {k}: sent out of id order after the restart: {ids}")
            break
    for k, ids in before.items():
        again = set(after.get(k, ())) & set(ids)
        firsts = list(dict.fromkeys(ids))  # first deliveries before the restart, in order
        if again and set(firsts[len(firsts) - len(again):]) != again:
            problems.append(f"key {k}: the events sent again {sorted(again)} are not the last ones delivered "
                            f"before the restart {firsts}")
            break
if a.need_cut and cut == 0:
    problems.append("no request was cut off at the kill: nothing was in flight")
print(f"  {a.table}: {len(rows)} keys, {sum(rows.values())} committed versions, {len(first)} events delivered, "
      f"{len(dups)} delivered twice, {cut} requests cut off unanswered{allowed_note}")
for p in problems[:20]:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

q -c "CREATE EXTENSION pg_sync" >/dev/null
EP_ARGS="retry_base_ms => 100, retry_max_ms => 1000, timeout_ms => 120000"

# --- 1) after capture commit, before the worker claims the events ----------------------------------
case1() {
    local v=$1 ep=c1$1 rx=r1$1 url
    receiver_start "$rx"
    url="${rx}_URL"
    new_case "$ep" "${!url}" "batch_size => 20, $EP_ARGS"
    q -c "INSERT INTO t_$ep SELECT g, 1 FROM generate_series(1, 50) g"
    drained "$ep" "1$v: first rows delivered"
    local wpid; wpid=$(worker_pid)
    frozen_pid=$wpid
    kill -STOP "$wpid"
    q -c "INSERT INTO t_$ep SELECT g, 1 FROM generate_series(51, 150) g"
    q -c "UPDATE t_$ep SET v = v + 1 WHERE id <= 100"
    q -c "UPDATE t_$ep SET v = v + 1 WHERE id % 3 = 0"
    assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE e.name = '$ep'")" 250 "1$v: events committed while the worker is frozen"
    assert_eq "$(rx_stat "$rx" "['events_2xx']")" 50 "1$v: nothing sent while the worker is frozen"
    if [ "$v" == w ]; then
        local before; before=$(recoveries)
        kill -9 "$wpid" # SIGKILL ends a stopped process too
        await_crash_recovery "$wpid" "pg_sync worker" "$before"
    else
        kill_server "$wpid"
    fi
    frozen_pid=
    drained "$ep" "1$v: everything delivered after the restart"
    check "1$v" "$ep" "$rx" --no-dups
    echo "ok 1$v: 250 events committed while the worker was frozen, kill -9 of the $([ "$v" == w ] && echo worker || echo server): all delivered once"
}
case1 w
case1 s
echo "[case 1: $((SECONDS - T0))s]"

# --- 2) requests in flight --------------------------------------------------------------------------
case2() {
    local v=$1 ep=c2$1 rx=r2$1 url
    receiver_start "$rx"
    url="${rx}_URL"
    new_case "$ep" "${!url}" "batch_size => 10, max_in_flight => 4, $EP_ARGS"
    q -c "INSERT INTO t_$ep SELECT g, 1 FROM generate_series(1, 50) g"
    drained "$ep" "2$v: first rows delivered"
    receiver_mode "$rx" '{"mode": "stall", "seconds": 120}'
    q -c "INSERT INTO t_$ep SELECT g, 1 FROM generate_series(51, 150) g"
    q -c "UPDATE t_$ep SET v = v + 1 WHERE id % 2 = 0"
    wait_for "2$v: 4 requests held by the receiver" 30 rx_held "$rx" 4
    # Requests already held keep being held; whatever comes after the restart is answered at once.
    receiver_mode "$rx" '{"mode": "ok"}'
    kill_worker_or_server "$v"
    wait_for "2$v: the held requests cut off" 30 rx_none_held "$rx"
    drained "$ep" "2$v: everything delivered after the restart"
    check "2$v" "$ep" "$rx" --no-dups --need-cut
    echo "ok 2$v: kill -9 with 4 requests in flight: all delivered once"
}
case2 w
case2 s
echo "[cases 1-2: $((SECONDS - T0))s]"

# --- 3) between the receiver's 2xx and the worker's commit of the outcome ---------------------------
# The receiver kills (receiver.py kill_pids), right after its 2xx has been written to the socket:
#   freeze round: it sends SIGSTOP to the processes before writing the 2xx and SIGKILL after, so
#     the answer sits in the worker's socket and the worker dies without having acted on it: the
#     database is exactly as at any kill between the answer and the commit of its outcome (the
#     worker writes nothing durable in between; its pass's changes vanish uncommitted). Every
#     event of that request must be sent again: deterministic.
#   plain rounds: no SIGSTOP. Whether the worker has read the answer, is inside the pass that
#     records it, or has already committed it when the SIGKILL lands is up to the scheduler
#     (the pass takes about a millisecond; measured here: a resend in some rounds, not all). A
#     round without a resend is no failure (the outcome was committed in time); the count is
#     printed. Each variant needs at least one round with a resend (the freeze round).
# With max_in_flight 1 the request answered at the kill, and any the old worker still sent and got
# answered before the SIGKILL reached it, are the only ones whose outcome can be unrecorded:
# duplicates are allowed for their events only, and a resend carries the first webhook-id.
case3() {
    local v=$1 ep=c3$1 rx=r3$1 url round hits=0 plain_hits=0 all_ids=
    receiver_start "$rx"
    url="${rx}_URL"
    new_case "$ep" "${!url}" "batch_size => 10, max_in_flight => 1, $EP_ARGS"
    for round in 1 2 3; do
        local base=$(((round - 1) * 40)) freeze=false
        [ "$round" != 1 ] || freeze=true
        q -c "SELECT pg_sync.pause_endpoint('$ep')" >/dev/null
        q -c "INSERT INTO t_$ep SELECT g, 1 FROM generate_series($base + 1, $base + 40) g"
        q -c "UPDATE t_$ep SET v = v + 1 WHERE id > $base AND id % 2 = 0"
        q -c "UPDATE t_$ep SET v = v + 1 WHERE id % 4 = 0"
        local wpid pids before; wpid=$(worker_pid)
        if [ "$v" == w ]; then pids="[$wpid]"; else pids=$(kill_list "$wpid"); fi
        before=$(recoveries)
        receiver_mode "$rx" "{\"mode\": \"ok\", \"kill_pids\": $pids, \"kill_after\": 3, \"kill_freeze\": $freeze}"
        q -c "SELECT pg_sync.resume_endpoint('$ep')" >/dev/null
        wait_for "3$v: the receiver's kill" 30 rx_kills "$rx" "$round"
        local ids errors
        ids=$(rx_stat "$rx" "['kills'][-1]['ids']" | tr -d '[] ')
        errors=$(rx_stat "$rx" "['kills'][-1]['errors']")
        [[ "$errors" != *"'$wpid:"* && "$errors" != *"'$PG_PID:"* ]] || fail "3$v: the receiver could not kill: $errors"
        # Once the killed processes are gone and the receiver has finished every request it got,
        # the requests logged so far are all the old server's.
        if [ "$v" == w ]; then
            wait_for "3$v: the killed worker gone" 30 bash -c "! kill -0 $wpid 2>/dev/null"
        else
            wait_for "3$v: every server process gone" 30 no_server_left
        fi
        wait_for "3$v: the receiver idle" 30 rx_idle "$rx"
        local old_last; old_last=$(rx_stat "$rx" "['requests']")
        if [ "$v" == w ]; then
            await_crash_recovery "$wpid" "pg_sync worker" "$before"
        else
            finish_server_kill
        fi
        drained "$ep" "3$v round $round: everything delivered after the restart"
        # Besides the request answered at the kill, the old worker may have recorded that answer,
        # sent the next request and got its 2xx too before the SIGKILL reached it (under load the
        # receiver's thread can lose the CPU between its answer and the kill): duplicates are
        # allowed for the events of every request the old server sent from the kill on.
        local kn; kn=$(rx_stat "$rx" "['kills'][-1]['n']")
        all_ids="$all_ids,$(rq "$rx" "','.join(str(i) for r in recs if $kn <= r['n'] <= $old_last for i in ids(r))")"
        check "3$v round $round" "$ep" "$rx" --dups-in "$all_ids"
        # The round hit the window when the events of the request answered at the kill came again.
        local resent
        resent=$(rq "$rx" "sum(1 for i in [$ids] if sum(1 for r in ok for e in ids(r) if e == i) > 1)")
        if [ "$freeze" == true ]; then
            assert_eq "$resent" "$(tr , '\n' <<<"$ids" | grep -c .)" "3$v freeze round: events of the request answered at the kill sent again"
        elif [ "$resent" -gt 0 ]; then
            plain_hits=$((plain_hits + 1))
        fi
        [ "$resent" == 0 ] || hits=$((hits + 1))
        if [ "$resent" != 0 ]; then
            # A resend carries the webhook-id of the first send (README, Delivery semantics).
            assert_eq "$(rq "$rx" "sorted({r['headers']['webhook-id'] for r in ok if set(ids(r)) & {$ids}})")" \
                "$(rq "$rx" "[r['headers']['webhook-id'] for r in recs if r['n'] == $(rx_stat "$rx" "['kills'][-1]['n']")]")" \
                "3$v round $round: webhook-ids of the requests that carried the events answered at the kill"
        fi
    done
    echo "3$v: the kill hit the window (the events answered 2xx at the kill sent again) in the freeze round and in $plain_hits of 2 plain rounds"
    [ "$hits" -ge 1 ] || fail "3$v: no round hit the window between the 2xx and the worker's commit"
    echo "ok 3$v: kill -9 of the $([ "$v" == w ] && echo worker || echo server) right after a 2xx: its events sent again, nothing else twice"
}
# Cases 3 and 4 check the window of 0.3.0 exactly: every round of answers recorded before the
# next requests go out (pg_sync.ack_delay = 0).
worker_settings "pg_sync.ack_delay = 0"
case3 w
case3 s
echo "[cases 1-3: $((SECONDS - T0))s]"

# --- 4) a backfill, killed in the middle of a page ---------------------------------------------------
# check_backfill LABEL EP RECEIVER T: the table's rows (inserted before tracking, v = 1; every 50th
# updated once during the backfill; row 17001's update never committed) against the receiver: every key exactly one snapshot event id,
# snapshot ids increasing with the key (pages in key order, a redone page after the earlier
# ones), the update of each updated key delivered once; applying the events in id order gives the
# table; duplicates only of the last request the killed server sent (max_in_flight 1).
check_backfill() {
    local label=$1 ep=$2 rx=$3 t=$4
    local out_var="${rx}_OUT"
    q -c "COPY (SELECT id, v FROM t_$ep ORDER BY id) TO STDOUT" >"$PG_DIR/t_$ep.rows"
    $PY - "${!out_var}" "$PG_DIR/t_$ep.rows" "public.t_$ep" "$t" <<'PY' || fail "$label: backfill delivery does not match the table (above)"
import json, sys
from collections import defaultdict
log, rows_file, table, t_restart = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
rows = {}
for line in open(rows_file):
    k, v = line.split("\t")
    rows[int(k)] = int(v)
recs = [json.loads(l) for l in open(log, encoding="utf-8") if l.strip()]
first, count, problems = {}, defaultdict(int), []
for r in recs:
    if r["status"] is None or not 200 <= r["status"] < 300:
        continue
    for e in r["events"] or []:
        if e.get("table") != table:
            continue
        count[e["id"]] += 1
        if e["id"] in first and first[e["id"]] != e:
            problems.append(f"event {e['id']} differs between its deliveries")
        first.setdefault(e["id"], e)
snap, upd, state = defaultdict(list), defaultdict(list), {}
for i in sorted(first):
    e = first[i]
    k = e["key"]["id"]
    if e["op"] == "snapshot":
        snap[k].append(i)
    elif e["op"] == "update":
        upd[k].append(e["new"]["v"])
    else:
        problems.append(f"unexpected event {e}")
    state[k] = e["new"]["v"]
missing = [k for k in rows if not snap.get(k)]
twice = [k for k in snap if len(snap[k]) > 1]
if missing:
    problems.append(f"{len(missing)} rows never sent as snapshot, e.g. {missing[:10]}")
if twice:
    problems.append(f"{len(twice)} rows queued more than once (a page sent twice), e.g. {[(k, snap[k]) for k in twice[:5]]}")
extra = [k for k in snap if k not in rows]
if extra:
    problems.append(f"snapshots of keys not in the table: {extra[:10]}")
ids = [snap[k][0] for k in sorted(snap)]
if ids != sorted(ids):
    problems.append("snapshot ids do not increase with the key")
bad_upd = [k for k in rows if upd.get(k, []) != ([2] if rows[k] == 2 else [])]
if bad_upd:
    problems.append(f"{len(bad_upd)} keys whose updates were not delivered exactly once, e.g. {[(k, upd.get(k)) for k in bad_upd[:5]]}")
stale = [k for k in rows if state.get(k) != rows[k]]
if stale:
    problems.append(f"{len(stale)} keys where applying the events in id order does not give the table, e.g. {stale[:5]}")
dups = sorted(i for i, c in count.items() if c > 1)
before = [r for r in recs if r["t"] < t_restart]
allowed = {e["id"] for e in (before[-1]["events"] or [])} if before else set()
bad = [i for i in dups if i not in allowed]
if bad:
    problems.append(f"events delivered twice outside the last request of the killed server: {bad[:20]}")
print(f"  {table}: {len(rows)} rows, {sum(len(s) for s in snap.values())} snapshot events, "
      f"{sum(len(u) for u in upd.values())} updates, {len(dups)} events delivered twice "
      f"({len(set(dups) & allowed)} of the {len(allowed)} of the last request before the kill)")
for p in problems[:20]:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}
case4() {
    local v=$1 ep=c4$1 rx=r4$1 url n=30000
    receiver_start "$rx"
    url="${rx}_URL"
    q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('$ep', '${!url}', batch_size => 200, max_in_flight => 1, $EP_ARGS);
CREATE TABLE t_$ep (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO t_$ep SELECT g, 1 FROM generate_series(1, $n) g;
SELECT pg_sync.track('t_$ep', '$ep');
SQL
    # A writer holds row 17001 (in the 9th page of 2000 rows) with an update it never commits:
    # the page that reaches it waits for its lock, inside its transaction.
    psql -X -q -At -c "BEGIN" -c "UPDATE t_$ep SET v = v + 1 WHERE id = 17001" -c "SELECT pg_sleep(300)" -c "COMMIT" \
        >"$PG_DIR/writer4$v.log" 2>&1 &
    bg_pid=$!
    wait_for "4$v: the writer holding row 17001" 30 cond "(SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(300)' AND wait_event = 'PgSleep')"
    local others job before prog
    others=$(kill_list | tr -d '[]' | tr , ' ')
    job=$(q -c "SELECT pg_sync.backfill('t_$ep', '$ep', 2000)" 2>/dev/null)
    wait_for "4$v: backfill under way" 60 cond "(SELECT rows_scanned >= 2000 FROM pg_sync._backfills WHERE id = $job)"
    # Committed updates while the backfill runs (they wait for the pages that hold their rows).
    q -c "UPDATE t_$ep SET v = v + 1 WHERE id % 50 = 0"
    before=$(recoveries)
    # Run by the server (as the postgres OS user) once the backfill worker is seen inside the page
    # transaction that waits for row 17001 (it has an xid and has locked the page's rows before
    # it; its lock wait began less than 0.5 s ago, so lock_timeout (1 s) does not end it first):
    # note its PID and the job's committed progress, then kill -9 of it (w) or of the whole server
    # and it (s, the postmaster first). (In that order: the postmaster's reaction to a kill may end
    # this shell, a child of a backend, before it gets further.) That page cannot commit before
    # the kill: the writer keeps the row until the crash ends its session.
    prog="read p x r; echo \"\$p \$x \$r\" >'$PG_DIR/kill4$v'; kill -9"
    [ "$v" == w ] || prog="$prog $others"
    prog="$prog \$p"
    q -v prog="$prog" >"$PG_DIR/do4$v.log" 2>&1 <<'SQL' || true # the server goes down under it
SELECT set_config('crash_matrix.prog', :'prog', false);
DO $$
DECLARE
    p int;
    x xid;
    r bigint;
    deadline timestamptz := clock_timestamp() + interval '60 s';
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        SELECT a.pid, a.backend_xid INTO p, x FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
         WHERE a.backend_type = 'pg_sync backfill' AND a.backend_xid IS NOT NULL
           AND NOT l.granted AND l.waitstart > clock_timestamp() - interval '0.5 s';
        EXIT WHEN p IS NOT NULL;
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'the backfill did not wait for the locked row within 60 s';
        END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
    SELECT rows_scanned INTO r FROM pg_sync._backfills WHERE state = 'running';
    EXECUTE format('COPY (SELECT %s, %s, %s) TO PROGRAM %L', p, x, r, current_setting('crash_matrix.prog'));
END
$$;
SQL
    [ -s "$PG_DIR/kill4$v" ] || { cat "$PG_DIR/do4$v.log"; fail "4$v: the backfill worker was not killed"; }
    local bpid xid at_kill
    read -r bpid xid at_kill <"$PG_DIR/kill4$v"
    if [ "$v" == w ]; then
        await_crash_recovery "$bpid" "pg_sync backfill" "$before"
    else
        finish_server_kill
    fi
    wait_for "4$v: the writer's session ended by the crash" 30 bg_done
    wait "$bg_pid" && fail "4$v: the writer's transaction survived the crash" || true
    bg_pid=
    local t_restart; t_restart=$(worker_started)
    # Pages 1-8 were committed, the 9th (rows 16001-18000) was cut: it must be redone, whole.
    # (Not checked with pg_xact_status: an xid whose WAL was not flushed before the crash may be
    # handed out again after it.)
    assert_eq "$at_kill" 16000 "4$v: rows committed by the backfill when its page was cut"
    echo "4$v: the backfill worker (PID $bpid) was killed inside the page transaction (xid $xid) after rows 16001..17000; $at_kill rows committed before"
    wait_for "4$v: backfill done after the restart ($(q -c "SELECT format('%s scanned=%s error=%s', state, rows_scanned, last_error) FROM pg_sync._backfills WHERE id = $job" 2>&1))" \
        120 cond "(SELECT state = 'done' FROM pg_sync._backfills WHERE id = $job)"
    drained "$ep" "4$v: backfill delivered"
    assert_eq "$(q -c "SELECT rows_scanned || '/' || rows_enqueued FROM pg_sync._backfills WHERE id = $job")" "$n/$n" \
        "4$v: rows scanned/enqueued (the cut page counted once)"
    assert_eq "$(q -c "SELECT v FROM t_$ep WHERE id = 17001")" 1 "4$v: the writer's uncommitted update"
    check_backfill "4$v" "$ep" "$rx" "$t_restart"
    echo "ok 4$v: backfill killed mid-page ($([ "$v" == w ] && echo "kill -9 of the backfill worker" || echo "kill -9 of the server")): continued, every row exactly once"
}
case4 w
case4 s
worker_settings "pg_sync.ack_delay = default"
echo "[cases 1-4: $((SECONDS - T0))s]"

# --- 5) redelivery ------------------------------------------------------------------------------------
case5() {
    local v=$1 ep=c5$1 rx=r5$1 url
    receiver_start "$rx" --mode status --status 500
    url="${rx}_URL"
    new_case "$ep" "${!url}" "batch_size => 100, max_in_flight => 2, max_attempts => 1, $EP_ARGS"
    q -c "INSERT INTO t_$ep SELECT g, 1 FROM generate_series(1, 40) g"
    wait_status "$ep" 30 "dead = 40 AND pending = 0" "5$v: 40 dead letters"
    receiver_mode "$rx" '{"mode": "stall", "seconds": 120}'
    q -c "UPDATE t_$ep SET v = v + 1"
    q -c "UPDATE t_$ep SET v = v + 1 WHERE id % 2 = 0"
    wait_status "$ep" 30 "dead = 40 AND pending = 60" "5$v: later events of the keys wait behind the dead letters"
    local dead; dead=$(q -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM pg_sync.dead_letters WHERE endpoint = '$ep'")

    # a) redeliver() has moved the dead letters into the queue; its transaction is still open.
    psql -X -q -At -c "BEGIN" -c "SELECT pg_sync.redeliver('$ep')" -c "SELECT pg_sleep(300)" -c "COMMIT" \
        >"$PG_DIR/redeliver5$v.log" 2>&1 &
    bg_pid=$!
    wait_for "5$v: redeliver() done, its transaction open" 30 cond "(SELECT count(*) = 1 FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
        WHERE a.query = 'SELECT pg_sleep(300)' AND a.wait_event = 'PgSleep'
          AND l.relation = 'pg_sync._queue'::regclass AND l.mode = 'RowExclusiveLock')"
    kill_worker_or_server "$v"
    wait_for "5$v: the redeliver session ended" 30 bg_done
    wait "$bg_pid" && fail "5$v: the redeliver transaction survived the crash" || true
    bg_pid=
    assert_eq "$(q -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM pg_sync.dead_letters WHERE endpoint = '$ep'")" "$dead" \
        "5$v a: dead letters after a kill in the middle of redeliver()"
    assert_eq "$(q -c "SELECT pending FROM pg_sync.endpoint_status WHERE endpoint = '$ep'")" 60 "5$v a: pending after the kill"
    assert_eq "$(rx_stat "$rx" "['events_2xx']")" 0 "5$v a: nothing delivered"
    echo "ok 5$v a: kill -9 of the $([ "$v" == w ] && echo worker || echo server) during redeliver(): the 40 dead letters are still dead"

    # b) redeliver() committed; the redelivered events (and the later ones of their keys, which
    #    may share the request) are held by the receiver.
    assert_eq "$(q -c "SELECT pg_sync.redeliver('$ep')")" 40 "5$v b: redeliver"
    wait_for "5$v b: redelivered events held by the receiver" 30 rx_held "$rx" 1
    receiver_mode "$rx" '{"mode": "ok"}'
    kill_worker_or_server "$v"
    wait_for "5$v b: the held requests cut off" 30 rx_none_held "$rx"
    drained "$ep" "5$v b: everything delivered after the restart"
    check "5$v" "$ep" "$rx" --no-dups --need-cut
    echo "ok 5$v b: kill -9 of the $([ "$v" == w ] && echo worker || echo server) with redelivered events in flight: all delivered once, in order"
}
case5 w
case5 s
echo "[cases 1-5: $((SECONDS - T0))s]"

# --- 6) pg_ctl stop -m immediate with a large backlog, delivery running --------------------------------
receiver_start r6
new_case c6 "$r6_URL" "batch_size => 1000, max_in_flight => 4, $EP_ARGS"
q -c "SELECT pg_sync.pause_endpoint('c6')" >/dev/null
q -c "INSERT INTO t_c6 SELECT g, 1 FROM generate_series(1, 100000) g"
q -c "UPDATE t_c6 SET v = 2"
assert_eq "$(q -c "SELECT pending FROM pg_sync.endpoint_status WHERE endpoint = 'c6'")" 200000 "6: backlog"
q -c "SELECT pg_sync.resume_endpoint('c6')" >/dev/null
receiver_wait_events r6 5000 60
t_stop=$($PY -c 'import time; print(time.time())')
pg_as_user "'$PG_BIN/pg_ctl' -D '$PG_DIR/data' -m immediate -w -t 60 stop >/dev/null"
at_stop=$(rx_stat r6 "['events_2xx']")
[ "$at_stop" -lt 150000 ] || fail "6: $at_stop of 200000 events delivered before the stop: the backlog was not large"
wait_for "6: the stopped postmaster reaped" 60 postmaster_gone
[ -z "$(server_pids)" ] || fail "6: server processes left after pg_ctl stop -m immediate: $(server_pids)"
pg_restart_after_crash
wait_for "6: a delivery worker after the restart" 60 cond "(SELECT count(*) = 1 FROM pg_sync.workers)"
t_restart=$(worker_started)
drained c6 "6: the backlog delivered after the restart"
# The window: the default pg_sync.ack_delay (10 ms), plus the requests in flight (the receiver
# takes a few hundred ms for 1,000 events under load) and the pass that records: 3 s.
check 6 c6 r6 --requests-before "$t_restart" --window "$t_stop" 3 --resent-in-order "$t_restart"
echo "ok 6: pg_ctl stop -m immediate with $((200000 - at_stop)) of 200000 events pending: nothing lost after the restart"

# --- 7) answered, not yet recorded: kill inside a wide acknowledgement group --------------------------
# pg_sync.ack_delay = 5 s: the worker keeps sending while answers wait up to 5 s to be recorded
# (no sweep in between: sweep_interval 1 h). 200 keys, 5 versions each (1,000 events), batch_size
# 2, max_in_flight 2; the receiver answers each request after 25 ms (at most about 80 a second).
# Once 100 requests are answered, an emit() commit wakes the worker: that pass records every
# answer so far, and a new group starts. The receiver then kills after 60 more 2xx (under a second
# at full speed, well inside the 5 s): those answers are not recorded, the earlier ones are.
ACK_S=5
worker_settings "pg_sync.ack_delay = '${ACK_S}s', pg_sync.sweep_interval = '1h'"
rx_answered() { [ "$(rx_stat "$1" "['by_status'].get('204', 0)")" -ge "$2" ]; }
case7() {
    local v=$1 ep=c7$1 rx=r7$1 url
    receiver_start "$rx"
    url="${rx}_URL"
    new_case "$ep" "${!url}" "batch_size => 2, max_in_flight => 2, $EP_ARGS"
    q -c "SELECT pg_sync.pause_endpoint('$ep')" >/dev/null
    q -c "INSERT INTO t_$ep SELECT g, 1 FROM generate_series(1, 200) g"
    for _ in 2 3 4 5; do q -c "UPDATE t_$ep SET v = v + 1"; done
    local wpid pids before t_wake; wpid=$(worker_pid)
    if [ "$v" == w ]; then pids="[$wpid]"; else pids=$(kill_list "$wpid"); fi
    before=$(recoveries)
    receiver_mode "$rx" '{"mode": "stall", "seconds": 0.025}'
    q -c "SELECT pg_sync.resume_endpoint('$ep')" >/dev/null
    wait_for "7$v: 100 requests answered" 60 rx_answered "$rx" 100
    t_wake=$($PY -c 'import time; print(time.time())')
    q -c "SELECT pg_sync.emit('$ep', 'wake', '{}')" >/dev/null
    # The wake-up's pass recorded the 200 or more events answered so far (1,000 events and the
    # emit were pending). A group of 2xx commits without waiting for the WAL flush
    # (docs/design.md, Guarantee 3: a crash may forget the groups of the last 3 * wal_writer_delay);
    # this case checks the bound for recorded answers, so make that pass durable: a synchronous
    # commit (with an xid) flushes the WAL up to it.
    wait_status "$ep" 30 "pending <= 801" "7$v: the wake-up's pass recorded the answers"
    q -c "SELECT pg_current_xact_id()" >/dev/null
    receiver_mode "$rx" "{\"mode\": \"stall\", \"seconds\": 0.025, \"kill_pids\": $pids, \"kill_after\": 60}"
    wait_for "7$v: the receiver's kill" 60 rx_kills "$rx" 1
    local errors t_kill
    errors=$(rx_stat "$rx" "['kills'][-1]['errors']")
    [[ "$errors" != *"'$wpid:"* && "$errors" != *"'$PG_PID:"* ]] || fail "7$v: the receiver could not kill: $errors"
    t_kill=$(rx_stat "$rx" "['kills'][-1]['t']")
    $PY -c "import sys; sys.exit(0 if $t_kill - $t_wake < $ACK_S - 1 else 1)" \
        || fail "7$v: the kill came $($PY -c "print(round($t_kill - $t_wake, 3))") s after the wake-up, not well inside the ${ACK_S} s group"
    if [ "$v" == w ]; then
        wait_for "7$v: the killed worker gone" 30 bash -c "! kill -0 $wpid 2>/dev/null"
    else
        wait_for "7$v: every server process gone" 30 no_server_left
    fi
    wait_for "7$v: the receiver idle" 30 rx_idle "$rx"
    receiver_mode "$rx" '{"mode": "ok"}'
    if [ "$v" == w ]; then
        await_crash_recovery "$wpid" "pg_sync worker" "$before"
    else
        finish_server_kill
    fi
    local t_restart; t_restart=$(worker_started)
    drained "$ep" "7$v: everything delivered after the restart"
    # Sent again: only events first sent after the wake-up's pass (0.2 s of slack for the request
    # in flight then); none of the answers that pass recorded.
    check "7$v" "$ep" "$rx" --requests-before "$t_restart" --window "$t_wake" 0.2 --resent-in-order "$t_restart"
    # The kill hit answers that were not recorded: more events came again than the requests in
    # flight at the kill (2 requests of 2 events) could carry.
    local resent; resent=$(rq "$rx" "len({i for r in ok if r['t'] >= $t_restart for i in ids(r)} & {i for r in ok if r['t'] < $t_restart for i in ids(r)})")
    [ "$resent" -gt 4 ] || fail "7$v: only $resent events sent again: the kill did not hit answers waiting to be recorded"
    echo "ok 7$v: kill -9 of the $([ "$v" == w ] && echo worker || echo server) with $resent answered events not yet recorded: sent again in order, nothing lost, nothing recorded sent twice"
}
case7 w
case7 s
worker_settings "pg_sync.ack_delay = default, pg_sync.sweep_interval = default"

# --- 8) recorded, not yet on disk: a group of 2xx committed asynchronously ----------------------------
# A pass that records only 2xx commits with synchronous_commit = off (docs/delivery.md, "Asynchronous
# commit of 2xx groups"): a kill -9, which makes the postmaster reset shared memory, forgets the WAL
# the WAL writer had not written yet, and those events are sent again (Guarantee 3, point 3). With
# wal_writer_delay = 2 s, and autovacuum off (its commits would flush the WAL early), per try:
# 200 keys get one more version (the test's UPDATE commits synchronously: everything before it is
# on disk, t_b is taken just before it), the worker delivers them, and it is killed as soon as
# nothing is pending or in flight, while the WAL writer has most likely not written its last
# commits yet (printed: pg_current_wal_lsn(), the write position, behind
# pg_current_wal_insert_lsn()). After the restart: nothing lost; only events first sent after t_b
# come again (none from before the UPDATE's flush, of earlier tries either), per key the last ones
# and in id order; and some did come again, though nothing was in flight at the kill: that proves
# the kill hit committed groups not yet on disk. The WAL writer (or a queue rotation's synchronous
# TRUNCATE) may write between the drain and the kill: then the next try (at most 5).
WWD_S=2
worker_settings "wal_writer_delay = '${WWD_S}s', autovacuum = off"
receiver_start r8
new_case c8 "$r8_URL" "batch_size => 10, max_in_flight => 4, $EP_ARGS"
q -c "INSERT INTO t_c8 SELECT g, 1 FROM generate_series(1, 200) g"
drained c8 "8: first versions delivered"
resent=0 tries=0
while [ "$resent" -eq 0 ]; do
    tries=$((tries + 1))
    [ "$tries" -le 5 ] || fail "8: in 5 tries no event was sent again: the kills never hit a group that was not on disk"
    t_b=$($PY -c 'import time; print(time.time())')
    q -c "UPDATE t_c8 SET v = v + 1"
    drained c8 "8 try $tries: delivered"
    unwritten=$(q -c "SELECT pg_current_wal_lsn() < pg_current_wal_insert_lsn()")
    t_kill=$($PY -c 'import time; print(time.time())')
    wpid=$(worker_pid)
    before=$(recoveries)
    kill -9 "$wpid"
    await_crash_recovery "$wpid" "pg_sync worker" "$before"
    t_restart=$(worker_started)
    drained c8 "8 try $tries: everything delivered after the restart"
    check "8 try $tries" c8 r8 --requests-before "$t_restart" --window "$t_kill" "$($PY -c "print($t_kill - $t_b)")" \
        --resent-in-order "$t_restart"
    resent=$(rq r8 "len({i for r in ok if r['t'] >= $t_restart for i in ids(r)} & {i for r in ok if r['t'] < $t_restart for i in ids(r)})")
    echo "  8 try $tries: WAL not yet written at the kill: $unwritten; events sent again: $resent"
done
echo "ok 8: kill -9 of the worker $($PY -c "print(round($t_kill - $t_b, 2))") s after an UPDATE of 200 keys, with groups of 2xx not yet on disk: $resent events sent again, only from after the UPDATE, in order, nothing lost"
worker_settings "wal_writer_delay = default, autovacuum = default"
echo "[cases 1-8: $((SECONDS - T0))s]"

if grep -E "PANIC|TRAP:|delivery worker failed" "$PG_DIR/server.log"; then
    fail "worker trouble in the server log"
fi
echo "PASS 170_crash_matrix ($((SECONDS - T0))s)"
