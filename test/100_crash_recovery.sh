#!/usr/bin/env bash
# Nothing is lost across crashes (docs/design.md, Guarantees 2-4):
#   a) kill -9 of the whole server (postmaster and every process of its data directory) while
#      4 writers insert and update: after restart every committed row version is delivered,
#      nothing uncommitted or rolled back is, per-key order holds; duplicates are counted;
#   b) kill -9 of the delivery worker alone while requests are in flight (receiver holds them
#      1 s): the postmaster's crash recovery, then everything delivered, and only events that
#      were in flight at the kill may arrive twice;
#   c) receiver down while the backlog grows, then up again: everything delivered.
# Every change bumps v by one, so a key's committed versions are exactly 1..v of its row; the
# receivers' logs (test/lib/receiver.py) say what was answered 2xx.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
pg_start crash "max_connections = 50"
trap delivery_test_exit EXIT

# --- helpers --------------------------------------------------------------------------------------

now_s() { "$RECEIVER_PYTHON" -c 'import time; print(time.time())'; }

crash_server() {
    local children; children=$(server_pids | grep -vx "$PG_PID" || true)
    kill -9 "$PG_PID" $children 2>/dev/null || true
    wait_for "every server process gone" 30 no_server_left
    # Until its parent (init here) reaps it, the dead postmaster is a zombie that kill -0 still
    # finds, and a new postmaster would refuse to start over its postmaster.pid.
    wait_for "the killed postmaster reaped" 60 postmaster_gone
}
postmaster_gone() { ! kill -0 "$PG_PID" 2>/dev/null; }
# only_in_flight_dups RECEIVER T MAX [cut]: events answered 2xx more than once were first answered
# before the crash at T (they were in flight then, or answered but not yet recorded), at most MAX
# of them (max_in_flight * batch_size); nothing first delivered after the restart arrives twice.
# With "cut": some request was in flight at the crash (cut off unanswered, or answered twice).
only_in_flight_dups() {
    local out_var="${1}_OUT"
    "$RECEIVER_PYTHON" - "${!out_var}" "$2" "$3" "${4:-}" <<'PY' || fail "$1: duplicates of events that were not in flight at the crash, or none in flight"
import json, sys
from collections import defaultdict
t_crash, most, need_cut = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "cut"
first, n, cut = {}, defaultdict(int), 0
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    if r["status"] is None:
        cut += 1
    elif 200 <= r["status"] < 300:
        for e in r["events"] or []:
            n[e["id"]] += 1
            first.setdefault(e["id"], r["t"])
dups = [i for i, c in n.items() if c > 1]
late = sorted(i for i in dups if first[i] >= t_crash)
print(f"  first deliveries of the duplicates, seconds before the crash: {sorted(round(t_crash - first[i], 3) for i in dups)[:20]}")
print(f"  {len(dups)} events delivered twice (at most {most} can be in flight); {cut} requests cut off unanswered")
if need_cut and cut == 0 and not dups:
    print("  no request was in flight at the crash: the case tested nothing", file=sys.stderr)
    sys.exit(1)
if late or len(dups) > most:
    print(f"  duplicates first delivered after the crash: {late[:20]}; {len(dups)} in all", file=sys.stderr)
    sys.exit(1)
PY
}
server_up() { q -c "SELECT 1" >/dev/null 2>&1; }

# verify TABLE RECEIVER: the events of public.TABLE answered 2xx by RECEIVER against the table.
# Per key: versions 1..v all delivered (no loss), none other (nothing uncommitted or rolled back),
# each version in one event only, first deliveries in id order (per-key order), a duplicate of an
# event id identical to its first delivery. Prints a summary with the duplicates.
verify() {
    local table=$1 out_var="${2}_OUT"
    q -c "COPY (SELECT id, v FROM $table ORDER BY id) TO STDOUT" >"$PG_DIR/$table.rows"
    "$RECEIVER_PYTHON" - "${!out_var}" "$PG_DIR/$table.rows" "public.$table" <<'PY' || fail "$table: delivery does not match the table"
import json, sys
from collections import defaultdict
log, rows_file, table = sys.argv[1:4]
rows = {}
with open(rows_file) as f:
    for line in f:
        k, v = line.split("\t")
        rows[int(k)] = int(v)
first, count, order = {}, defaultdict(int), defaultdict(list)
problems = []
with open(log, encoding="utf-8") as f:
    for line in f:
        r = json.loads(line)
        if r["status"] is None or not 200 <= r["status"] < 300 or not r["events"]:
            continue
        for e in r["events"]:
            if e.get("table") != table:
                continue
            count[e["id"]] += 1
            if e["id"] in first:
                if first[e["id"]] != e:
                    problems.append(f"event {e['id']} differs between its deliveries")
                continue
            first[e["id"]] = e
            order[e["key"]["id"]].append(e["id"])
versions = defaultdict(list)
for e in first.values():
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
phantom += [(k, x) for k in versions if k not in rows for x in versions[k]]
if lost:
    problems.append(f"{len(lost)} committed versions never delivered, e.g. (key, v) {lost[:10]}")
if phantom:
    problems.append(f"{len(phantom)} delivered versions that were never committed, e.g. {phantom[:10]}")
for k, ids in order.items():
    if ids != sorted(ids):
        problems.append(f"key {k}: first deliveries out of id order: {ids}")
        break
dups = {i: c for i, c in count.items() if c > 1}
print(f"{table}: {len(rows)} keys, {sum(rows.values())} committed versions, {len(first)} events delivered, "
      f"{sum(c - 1 for c in dups.values())} duplicate deliveries of {len(dups)} events"
      + (f" (ids {sorted(dups)[:20]}{'...' if len(dups) > 20 else ''})" if dups else ""))
for p in problems[:20]:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}

# --- setup ---------------------------------------------------------------------------------------
receiver_start rx
q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('sink', '$rx_URL', retry_base_ms => 100, retry_max_ms => 1000);
CREATE SEQUENCE item_ids START 1001;
CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL);
SELECT pg_sync.track('items', 'sink');
INSERT INTO items SELECT g, 1 FROM generate_series(1, 200) g;
SQL

# --- a) kill -9 of the whole server under write load --------------------------------------------
cat >"$PG_DIR/update.sql" <<'EOF'
\set k random(1, 200)
UPDATE items SET v = v + 1 WHERE id = :k;
EOF
cat >"$PG_DIR/insert.sql" <<'EOF'
INSERT INTO items VALUES (nextval('item_ids'), 1);
EOF
cat >"$PG_DIR/multi.sql" <<'EOF'
\set k random(1, 200)
BEGIN;
UPDATE items SET v = v + 1 WHERE id = :k;
INSERT INTO items VALUES (nextval('item_ids'), 1);
UPDATE items SET v = v + 1 WHERE id = currval('item_ids');
COMMIT;
EOF
cat >"$PG_DIR/rollback.sql" <<'EOF'
\set k random(1, 200)
BEGIN;
UPDATE items SET v = v + 1000000 WHERE id = :k;
INSERT INTO items VALUES (nextval('item_ids') + 1000000, 1000000);
ROLLBACK;
EOF
chmod 644 "$PG_DIR"/*.sql
writers() { # writers SECONDS LOG: 4 clients in the background; sets WRITERS_PID
    pgbench -n -c 4 -j 2 -T "$1" -f "$PG_DIR/update.sql@5" -f "$PG_DIR/insert.sql@2" \
        -f "$PG_DIR/multi.sql@2" -f "$PG_DIR/rollback.sql@1" >"$2" 2>&1 &
    WRITERS_PID=$!
}

receiver_wait_events rx 200 30
writers 60 "$PG_DIR/pgbench1.log"
# Crash in the middle: writers running, deliveries flowing.
receiver_wait_events rx 1000 30
kill -0 "$WRITERS_PID" 2>/dev/null || { cat "$PG_DIR/pgbench1.log"; fail "a: writers ended before the crash"; }
crash_server
t_crash=$(now_s) # every server process is gone: whatever arrives later comes from the new server
wait "$WRITERS_PID" && fail "a: pgbench did not notice the crash" || true
echo "a: server killed; pgbench: $(grep -c -i -E 'error|abort|terminat|lost' "$PG_DIR/pgbench1.log" || true) error lines"
pg_restart_after_crash
# Write a little more after the restart, then wait for the backlog to drain.
writers 2 "$PG_DIR/pgbench2.log"
wait "$WRITERS_PID" || { cat "$PG_DIR/pgbench2.log"; fail "a: writers after restart failed"; }
wait_status sink 60 "pending = 0 AND dead = 0 AND in_flight = 0" "a: backlog delivered after the crash"
verify items rx
only_in_flight_dups rx "$t_crash" 400
assert_eq "$(q -c "SELECT count(*) FROM items WHERE v >= 1000000 OR id > 1000000")" 0 "a: rolled-back rows in the table"
echo "ok a: nothing lost across kill -9 of the server"

# --- b) kill -9 of the delivery worker with requests in flight ----------------------------------
receiver_start ry --mode stall --seconds 1
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('slow', '$ry_URL', batch_size => 25, max_in_flight => 4, timeout_ms => 60000,
                               retry_base_ms => 100, retry_max_ms => 1000);
CREATE TABLE items_b (id bigint PRIMARY KEY, v int NOT NULL);
SELECT pg_sync.track('items_b', 'slow');
SQL
for i in $(seq 0 19); do
    q -c "INSERT INTO items_b SELECT g, 1 FROM generate_series($((i * 20 + 1)), $((i * 20 + 20))) g"
done
# Some answered, some held by the receiver right now.
receiver_wait_events ry 100 30
holding() { "$RECEIVER_PYTHON" -c "import json,sys; sys.exit(json.load(sys.stdin)['in_flight'] < 1)" <<<"$(receiver_stats "$1")"; }
wait_for "b: requests held by the receiver" 10 holding ry
old_pid=$(q -c "SELECT pid FROM pg_sync.workers WHERE database = current_database()")
[ -n "$old_pid" ] || fail "b: no worker in pg_sync.workers"
kill -9 "$old_pid"
# The postmaster restarts every process (crash recovery) and then the worker.
wait_for "b: the worker gone" 30 bash -c "! kill -0 $old_pid 2>/dev/null"
t_kill=$(now_s)
wait_for "b: server back after crash recovery" 60 server_up
wait_for "b: a new worker" 60 cond "(SELECT count(*) = 1 AND min(pid) <> $old_pid FROM pg_sync.workers)"
wait_status slow 60 "pending = 0 AND dead = 0" "b: everything delivered after the worker crash"
verify items_b ry
only_in_flight_dups ry "$t_kill" 100 cut
grep -q "background worker \"pg_sync worker\" (PID $old_pid) was terminated by signal 9" "$PG_DIR/server.log" \
    || fail "b: no crash of the worker in the server log"
grep -q "all server processes terminated; reinitializing" "$PG_DIR/server.log" || fail "b: no crash recovery in the server log"
echo "ok b: nothing lost across kill -9 of the delivery worker"

# --- c) receiver down while the backlog grows -------------------------------------------------------
receiver_start rz
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('later', '$rz_URL', retry_base_ms => 100, retry_max_ms => 1000);
CREATE TABLE items_c (id bigint PRIMARY KEY, v int NOT NULL);
SELECT pg_sync.track('items_c', 'later');
INSERT INTO items_c SELECT g, 1 FROM generate_series(1, 50) g;
SQL
receiver_wait_events rz 50 30
receiver_stop rz
backlog() { q -c "SELECT pending FROM pg_sync.endpoint_status WHERE endpoint = 'later'"; }
for round in 1 2 3; do
    q >/dev/null <<SQL
UPDATE items_c SET v = v + 1 WHERE id % 3 = $((round % 3));
INSERT INTO items_c SELECT g, 1 FROM generate_series($((round * 100 + 1)), $((round * 100 + 50))) g;
SQL
    [ "$round" != 1 ] || wait_status later 20 "last_error LIKE 'connection failed%' AND pending > 0" "c: failures while the receiver is down"
    p=$(backlog)
    [ "$round" == 1 ] || [ "$p" -gt "$prev" ] || fail "c: backlog did not grow: $prev then $p"
    prev=$p
done
wait_status later 20 "state IN ('retrying', 'circuit_open') AND delivered_total = 50" "c: still failing"
echo "c: backlog $(backlog) while the receiver is down ($(q -c "SELECT state || ', ' || last_error FROM pg_sync.endpoint_status WHERE endpoint = 'later'" | cut -c1-80))"
receiver_restart rz
wait_status later 30 "pending = 0 AND dead = 0 AND state = 'active'" "c: backlog delivered once the receiver is back"
verify items_c rz
echo "ok c: backlog delivered after the receiver came back"

if grep -E "PANIC|TRAP:|delivery worker failed" "$PG_DIR/server.log"; then
    fail "worker trouble in the server log"
fi
echo "ok: crash recovery"
