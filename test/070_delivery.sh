#!/usr/bin/env bash
# Delivery end to end, against real receivers on loopback (test/lib/receiver.py):
#   a) zero config: CREATE EXTENSION starts this database's worker;
#   b) commit-to-receipt: every single-row commit arrives (latencies are printed, not asserted);
#   c) the request: signature verified independently, the contract's fields in order with the
#      right values (insert, update, delete, emit), content type, user agent, custom header,
#      webhook-id;
#   d) batching: one 23-row transaction with batch_size 5, requests in parallel, no duplicates;
#   e) pause/resume: nothing is sent while paused (checked after the worker has run passes),
#      everything is sent after resume, and the counters follow;
#   f) two databases delivering at once, each to its own receiver;
#   g) DROP EXTENSION while events flow stops that worker; DROP DATABASE of a database whose
#      worker is delivering succeeds without FORCE;
#   h) a terminated worker is restarted by the launcher and delivery continues.
# Finally the server log must show no crash and no error but the expected worker terminations.
# Problems that do not stop the remaining sections (g, log) are collected and reported at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
pg_start delivery "max_connections = 50"
trap 'receiver_stop_all; pg_stop' EXIT

PY=/usr/bin/python3
SECRET="whsec_$($PY -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
receiver_start main --secret "$SECRET"

now_ms() { date +%s%3N; }
problems=() # found along the way, reported at the end so that every section still runs
worker_pid() { q -d "${1:-postgres}" -c "SELECT pid FROM pg_sync.workers WHERE database = '${1:-postgres}'"; }
has_worker() { [ -n "$(q -c "SELECT 1 FROM pg_sync.workers WHERE database = '$1'")" ]; }
no_worker() { [ -z "$(q -c "SELECT 1 FROM pg_sync.workers WHERE database = '$1'")" ]; }
events_2xx() { receiver_stats "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["events_2xx"])'; }
requests() { receiver_stats "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }
pending_is() { [ "$(q -d "${3:-postgres}" -c "SELECT pending FROM pg_sync.endpoint_status WHERE endpoint = '$1'")" == "$2" ]; }

# --- a) zero config ---------------------------------------------------------------------------
t0=$(now_ms)
q -c "CREATE EXTENSION pg_sync"
wait_for "a delivery worker for database postgres" 15 has_worker postgres
echo "a) worker for postgres listed $(($(now_ms) - t0)) ms after CREATE EXTENSION was sent"

q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('main', '$main_URL', headers => '{"X-Env": "test"}', secret => '$SECRET',
                               batch_size => 5, max_in_flight => 4);
CREATE TABLE items (id int PRIMARY KEY, name text, qty int, tags text[]);
SELECT pg_sync.track('items', 'main');
SQL

# --- b) commit-to-receipt -------------------------------------------------------------------------
n=20
for i in $(seq 1 $n); do
    q -c "INSERT INTO items VALUES ($i, 'n$i', $i, '{a,b}')"
    receiver_wait_events main "$i" 10
done
$PY - "$main_OUT" "$n" <<'PY'
import json, sys
from datetime import datetime
path, n = sys.argv[1], int(sys.argv[2])
lat = {}
for line in open(path):
    r = json.loads(line)
    if r["status"] is None or not 200 <= r["status"] < 300:
        continue
    for e in r["events"]:
        if e.get("table") == "public.items" and e["op"] == "insert" and e["new"]["id"] <= n:
            cap = datetime.strptime(e["captured_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
            cap = (cap - datetime(1970, 1, 1)).total_seconds()
            lat.setdefault(e["new"]["id"], (r["t"] - cap) * 1000)
missing = sorted(set(range(1, n + 1)) - set(lat))
if missing:
    sys.exit(f"FAIL: b) single-row commits never arrived: {missing}")
v = sorted(lat.values())
print(f"b) {n} single-row commits all arrived; capture-to-receipt latency p50 {v[len(v) // 2]:.1f} ms, "
      f"max {v[-1]:.1f} ms")
PY

# --- c) body format and signature -----------------------------------------------------------------
epoch='extract(epoch FROM clock_timestamp())'
ins=$(q <<SQL
BEGIN;
SELECT $epoch;
INSERT INTO items VALUES (1001, 'widget', 3, '{x,"y z"}');
SELECT currval('pg_sync._queue_id_seq'), pg_current_xact_id(), $epoch;
COMMIT;
SQL
)
upd=$(q <<SQL
BEGIN;
SELECT $epoch;
UPDATE items SET name = 'gadget', qty = 4 WHERE id = 1001;
SELECT currval('pg_sync._queue_id_seq'), pg_current_xact_id(), $epoch;
COMMIT;
SQL
)
del=$(q <<SQL
BEGIN;
SELECT $epoch;
DELETE FROM items WHERE id = 1001;
SELECT currval('pg_sync._queue_id_seq'), pg_current_xact_id(), $epoch;
COMMIT;
SQL
)
emit1=$(q <<SQL
BEGIN;
SELECT $epoch;
SELECT pg_sync.emit('main', 'order.shipped', '{"order": 7, "carrier": "ups", "items": [1, 2]}', key => 'order-7'),
       pg_current_xact_id(), $epoch;
COMMIT;
SQL
)
emit2=$(q <<SQL
BEGIN;
SELECT $epoch;
SELECT pg_sync.emit('main', 'ping', '{}'), pg_current_xact_id(), $epoch;
COMMIT;
SQL
)
receiver_wait_events main $((n + 5)) 15
$PY - "$main_OUT" "$ins" "$upd" "$del" "$emit1" "$emit2" <<'PY'
import json, re, sys
from datetime import datetime
path = sys.argv[1]
def parse(s):
    lines = s.split("\n")
    ident, txid, after = lines[1].split("|")
    return int(ident), int(txid), float(lines[0]), float(after)
ins, upd, dele, em1, em2 = (parse(s) for s in sys.argv[2:7])
recs = [json.loads(line) for line in open(path)]
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)

# Every request so far: verified, headers, webhook-id.
for r in recs:
    h = r["headers"]
    check(r["verified"] is True, f"request {r['n']}: not verified ({r['verify_error']})")
    check(r["method"] == "POST", f"request {r['n']}: method {r['method']}")
    check(h.get("content-type", "").split(";")[0].strip() == "application/json",
          f"request {r['n']}: content-type {h.get('content-type')}")
    check(h.get("user-agent", "").startswith("pg_sync/"), f"request {r['n']}: user-agent {h.get('user-agent')}")
    check(h.get("x-env") == "test", f"request {r['n']}: X-Env header {h.get('x-env')}")
    check(bool(h.get("webhook-timestamp")), f"request {r['n']}: no webhook-timestamp")
    check(r["body_ok"], f"request {r['n']}: body is not {{\"events\": [...]}}")
    if r["body_ok"] and r["events"]:
        m = re.fullmatch(r"msg_(\d+)_(\d+)_[0-9a-f]{16}", h.get("webhook-id", ""))
        check(m is not None, f"request {r['n']}: webhook-id {h.get('webhook-id')}")
        if m:
            check(int(m.group(1)) == r["events"][0]["id"] and int(m.group(2)) == len(r["events"]),
                  f"request {r['n']}: webhook-id {h['webhook-id']} vs first id {r['events'][0]['id']}, "
                  f"{len(r['events'])} events")

by_id = {}
for r in recs:
    if r["status"] is not None and 200 <= r["status"] < 300:
        for e in r["events"]:
            by_id.setdefault(e["id"], e)

ROW = ["id", "op", "table", "key", "new", "old", "txid", "captured_at"]
EMIT = ["id", "op", "type", "key", "payload", "txid", "captured_at"]
def ts(s):
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", s) is not None, f"captured_at format {s}")
    return (datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ") - datetime(1970, 1, 1)).total_seconds()

def expect(what, meta, fields, values):
    ident, txid, before, after = meta
    e = by_id.get(ident)
    if e is None:
        errors.append(f"{what}: event {ident} not received")
        return
    check(list(e) == fields, f"{what}: fields {list(e)}, expected {fields}")
    for k, v in values.items():
        check(e.get(k) == v, f"{what}: {k} = {json.dumps(e.get(k))}, expected {json.dumps(v)}")
    check(e.get("txid") == txid, f"{what}: txid {e.get('txid')}, expected {txid}")
    cap = ts(e.get("captured_at", ""))
    check(before - 0.001 <= cap <= after + 0.001,
          f"{what}: captured_at {e.get('captured_at')} not within the transaction [{before}, {after}]")

row1 = {"id": 1001, "name": "widget", "qty": 3, "tags": ["x", "y z"]}
row2 = {"id": 1001, "name": "gadget", "qty": 4, "tags": ["x", "y z"]}
expect("insert", ins, ROW, {"op": "insert", "table": "public.items", "key": {"id": 1001}, "new": row1, "old": None})
expect("update", upd, ROW, {"op": "update", "table": "public.items", "key": {"id": 1001}, "new": row2, "old": row1})
expect("delete", dele, ROW, {"op": "delete", "table": "public.items", "key": {"id": 1001}, "new": None, "old": row2})
expect("emit", em1, EMIT, {"op": "emit", "type": "order.shipped", "key": "order-7",
                           "payload": {"order": 7, "carrier": "ups", "items": [1, 2]}})
expect("emit without key", em2, EMIT, {"op": "emit", "type": "ping", "key": None, "payload": {}})
check(ins[0] < upd[0] < dele[0] < em1[0] < em2[0], "ids do not increase in capture order")
if errors:
    sys.exit("FAIL: c) " + "\n  ".join(errors))
print(f"c) {len(recs)} requests verified (Standard Webhooks), headers and webhook-id as specified; "
      "insert/update/delete/emit events carry the contract's fields in order with the right values")
PY

# --- d) batching ----------------------------------------------------------------------------------
before=$(events_2xx main)
q -c "INSERT INTO items SELECT g, 'b' || g, g, NULL FROM generate_series(2001, 2023) g"
receiver_wait_events main $((before + 23)) 15
$PY - "$main_OUT" <<'PY'
import json, sys
recs = [json.loads(line) for line in open(sys.argv[1])]
errors, seen, batch_reqs = [], {}, 0
for r in recs:
    ev = r["events"] or []
    if len(ev) > 5:
        errors.append(f"request {r['n']} carries {len(ev)} events (batch_size 5)")
    ids = [e["id"] for e in ev]
    if ids != sorted(set(ids)):
        errors.append(f"request {r['n']}: ids not increasing: {ids}")
    if not (r["status"] is not None and 200 <= r["status"] < 300):
        continue
    if any(e.get("table") == "public.items" and (e["new"] or {}).get("id", 0) > 2000 for e in ev):
        batch_reqs += 1
    for e in ev:
        if e["id"] in seen:
            errors.append(f"event {e['id']} delivered twice (requests {seen[e['id']]} and {r['n']})")
        seen[e["id"]] = r["n"]
got = sorted(e["new"]["id"] for r in recs if r["status"] and 200 <= r["status"] < 300
             for e in r["events"] if e.get("table") == "public.items" and e["op"] == "insert"
             and e["new"]["id"] > 2000)
if got != list(range(2001, 2024)):
    errors.append(f"rows of the 23-row transaction received: {got}")
if errors:
    sys.exit("FAIL: d) " + "\n  ".join(errors))
print(f"d) 23-row transaction arrived in {batch_reqs} requests of <= 5 events, ids increasing, no duplicates")
PY

# --- e) pause / resume ----------------------------------------------------------------------------
wait_for "main's queue to drain before pausing" 15 pending_is main 0
# delivered_total is written by the worker at most every 200 ms: wait for it to settle at what
# the receiver acknowledged (only endpoint main posts to receiver main).
delivered_is() { [ "$(q -c "SELECT delivered_total FROM pg_sync.endpoint_status WHERE endpoint = 'main'")" == "$1" ]; }
acked=$(receiver_stats main | $PY -c 'import json, sys; print(json.load(sys.stdin)["events_2xx"])')
wait_for "delivered_total to count every acknowledged event" 15 delivered_is "$acked"
delivered0=$acked
q -c "SELECT pg_sync.pause_endpoint('main')" >/dev/null
req0=$(requests main)
for i in $(seq 3001 3010); do q -c "INSERT INTO items VALUES ($i, 'p', 0, NULL)"; done
mark=$(q -c "SELECT clock_timestamp()")
active_after() { [ "$(q -c "SELECT last_active_at > '$1' FROM pg_sync.workers WHERE database = 'postgres'")" == t ]; }
# Two passes that began after the inserts had committed (the second one began after the first
# one ended, which was after the mark).
wait_for "a worker pass after the paused writes" 15 active_after "$mark"
mark2=$(q -c "SELECT last_active_at FROM pg_sync.workers WHERE database = 'postgres'")
wait_for "a second worker pass after the paused writes" 15 active_after "$mark2"
assert_eq "$(requests main)" "$req0" "requests sent while the endpoint was paused"
assert_eq "$(q -c "SELECT state || ' ' || pending FROM pg_sync.endpoint_status WHERE endpoint = 'main'")" \
    "paused 10" "endpoint_status while paused"
q -c "SELECT pg_sync.resume_endpoint('main')" >/dev/null
receiver_wait_events main $((before + 23 + 10)) 15
wait_for "pending 0 after resume" 15 pending_is main 0
wait_for "delivered_total to count the resumed events" 15 delivered_is $((delivered0 + 10))
# Everything delivered, a worker running, nothing failing: pg_sync.health() has nothing to say.
assert_eq "$(q -c "SELECT count(*) FROM pg_sync.health()")" 0 "health() of a healthy database"
assert_eq "$(q -c "SELECT state || ' ' || delivered_total FROM pg_sync.endpoint_status WHERE endpoint = 'main'")" \
    "active $((delivered0 + 10))" "endpoint_status after resume"
got=$(receiver_events main | $PY -c '
import json, sys
print(sorted(e["new"]["id"] for e in map(json.loads, sys.stdin) if e.get("table") == "public.items"
      and e["op"] == "insert" and 3000 < e["new"]["id"] <= 3010) == list(range(3001, 3011)))')
assert_eq "$got" "True" "the 10 rows written while paused, after resume"
echo "e) paused: no request through two worker passes, pending 10; resumed: all 10 delivered, delivered_total +10"

# --- f) two databases at once ---------------------------------------------------------------------
receiver_start r2
q -c "CREATE DATABASE db2"
q -d db2 >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('second', '$r2_URL', batch_size => 10);
CREATE TABLE t_db2 (id serial PRIMARY KEY, v int);
SELECT pg_sync.track('t_db2', 'second');
SQL
q >/dev/null <<SQL
CREATE TABLE t_main (id int PRIMARY KEY);
SELECT pg_sync.track('t_main', 'main');
SQL
wait_for "a delivery worker for db2" 15 has_worker db2
base_main=$(events_2xx main)
rows=150
(for i in $(seq 1 $rows); do echo "INSERT INTO t_main VALUES ($i);"; done | q -d postgres) &
w1=$!
(for i in $(seq 1 $rows); do echo "INSERT INTO t_db2 (v) VALUES ($i);"; done | q -d db2) &
w2=$!
wait $w1 || fail "writer in postgres failed"
wait $w2 || fail "writer in db2 failed"
assert_eq "$(q -c "SELECT string_agg(database, ',' ORDER BY database) FROM pg_sync.workers")" "db2,postgres" \
    "pg_sync.workers with two databases"
receiver_wait_events main $((base_main + rows)) 20
receiver_wait_events r2 $rows 20
check_split() { # NAME TABLE N: the receiver got exactly rows 1..N of TABLE and no other table's rows
    local out
    out=$(receiver_events "$1" | $PY -c '
import json, sys
want, n = sys.argv[1], int(sys.argv[2])
ev = [json.loads(l) for l in sys.stdin]
tables = {e.get("table") for e in ev if e["op"] != "emit"}
mine = sorted(e["new"]["id"] if want == "public.t_main" else e["new"]["v"] for e in ev if e.get("table") == want)
ids = [e["id"] for e in ev]
if want == "public.t_main":
    tables -= {"public.items"}
print("ok" if tables == {want} and mine == list(range(1, n + 1)) and len(ids) == len(set(ids))
      else f"tables {sorted(map(str, tables))}, {len(mine)} rows of {want}, {len(ids) - len(set(ids))} duplicates")
' "$2" "$3")
    assert_eq "$out" ok "receiver $1"
}
check_split main public.t_main $rows
check_split r2 public.t_db2 $rows
echo "f) postgres and db2 delivered $rows rows each, concurrently, each to its own receiver only"

# --- g) DROP EXTENSION while events flow; DROP DATABASE with a delivering worker -----------------
cat >"$PG_DIR/flow.sql" <<'EOF'
INSERT INTO t_db2 (v) VALUES (0);
EOF
chmod 644 "$PG_DIR/flow.sql"
base_r2=$(events_2xx r2)
pgbench -n -d db2 -c 2 -j 2 -T 4 -f "$PG_DIR/flow.sql" >"$PG_DIR/flow.log" 2>&1 &
flow=$!
receiver_wait_events r2 $((base_r2 + 20)) 10
db2_pid=$(worker_pid db2)
t0=$(now_ms)
if ! q -d db2 -c "DROP EXTENSION pg_sync CASCADE" 2>"$PG_DIR/dropext.err"; then
    problems+=("g) DROP EXTENSION pg_sync CASCADE in db2, with writers on the tracked table, failed:"$'\n'"$(
        cat "$PG_DIR/dropext.err")")
    wait $flow || { cat "$PG_DIR/flow.log"; fail "pgbench in db2 failed"; }
    flow=
    q -d db2 -c "DROP EXTENSION pg_sync CASCADE" 2>"$PG_DIR/dropext.err" ||
        fail "DROP EXTENSION in db2 failed again without writers: $(cat "$PG_DIR/dropext.err")"
fi
echo "g) DROP EXTENSION pg_sync CASCADE in db2 took $(($(now_ms) - t0)) ms while $(($(events_2xx r2) - base_r2)) events had arrived"
[ -z "$flow" ] || wait $flow || { cat "$PG_DIR/flow.log"; fail "pgbench in db2 failed during DROP EXTENSION"; }
# pgbench counts a failed statement (e.g. a deadlock) as a failed transaction and goes on.
failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$PG_DIR/flow.log")
[ "${failed:-0}" == 0 ] ||
    problems+=("g) $failed writer transactions in db2 failed during DROP EXTENSION pg_sync CASCADE (server log: $(
        grep -c 'deadlock detected' "$PG_DIR/server.log") 'deadlock detected')")
wait_for "db2's worker to leave pg_sync.workers" 15 no_worker db2
has_worker postgres || fail "postgres' worker went away with db2's extension"
# It should see the extension gone and leave (LOG "extension dropped ..."), not fail.
if grep -E "\[$db2_pid\] .*(ERROR|FATAL)" "$PG_DIR/server.log" >"$PG_DIR/db2_worker.err"; then
    problems+=("g) db2's worker (pid $db2_pid) failed instead of leaving cleanly at DROP EXTENSION:"$'\n'"$(
        grep -A1 -E "\[$db2_pid\] .*(ERROR|FATAL)" "$PG_DIR/server.log")")
fi

receiver_start r3
q -c "CREATE DATABASE db3"
q -d db3 >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('third', '$r3_URL', timeout_ms => 30000);
CREATE TABLE t3 (id int PRIMARY KEY);
SELECT pg_sync.track('t3', 'third');
INSERT INTO t3 SELECT generate_series(1, 5);
SQL
receiver_wait_events r3 5 15
receiver_mode r3 '{"mode":"stall","seconds":20}'
q -d db3 -c "INSERT INTO t3 SELECT generate_series(6, 10)"
r3_in_flight() { [ "$(receiver_stats r3 | $PY -c 'import json,sys; print(json.load(sys.stdin)["in_flight"])')" -ge 1 ]; }
wait_for "db3's worker to have a request in flight" 15 r3_in_flight
has_worker db3 || fail "db3 has no worker listed"
db3_oid=$(q -c "SELECT oid FROM pg_database WHERE datname = 'db3'")
t0=$(now_ms)
q -c "DROP DATABASE db3" 2>"$PG_DIR/dropdb.err" || fail "DROP DATABASE db3 failed: $(cat "$PG_DIR/dropdb.err")"
echo "g) DROP DATABASE db3 (worker with a request in flight) succeeded in $(($(now_ms) - t0)) ms"
assert_eq "$(q -c "SELECT count(*) FROM pg_database WHERE datname = 'db3'")" 0 "db3 still exists"
wait_for "db3's worker to leave pg_sync.workers" 15 no_worker db3

# --- h) a terminated worker is restarted ----------------------------------------------------------
for round in 1 2; do
    old=$(worker_pid postgres)
    [ -n "$old" ] || fail "no worker for postgres before terminating it"
    base_main=$(events_2xx main)
    t0=$(now_ms)
    assert_eq "$(q -c "SELECT pg_terminate_backend($old)")" t "pg_terminate_backend"
    # Written while the worker may be gone: the new worker must deliver them.
    q -c "INSERT INTO t_main SELECT g FROM generate_series($((round * 1000)), $((round * 1000 + 9))) g"
    new_worker() { local p; p=$(worker_pid postgres); [ -n "$p" ] && [ "$p" != "$old" ]; }
    wait_for "a new worker for postgres after pg_terminate_backend($old)" 40 new_worker
    echo "h) round $round: worker $old terminated, new worker $(worker_pid postgres) listed after $(($(now_ms) - t0)) ms"
    receiver_wait_events main $((base_main + 10)) 20
done
q -c "INSERT INTO t_main VALUES (99999)"
wait_for "pending 0 after the restarts" 15 pending_is main 0
dups=$(receiver_events main | $PY -c '
import json, sys
ids = [json.loads(l)["id"] for l in sys.stdin]
print(len(ids) - len(set(ids)))')
echo "h) delivery continued after two restarts ($dups duplicate deliveries in all, allowed only around a kill)"

# The launcher must forget a dropped database, not start workers for it (the sections since
# DROP DATABASE took longer than its first restart backoff).
if grep -q "database $db3_oid does not exist" "$PG_DIR/server.log"; then
    problems+=("g) after DROP DATABASE db3 the launcher started worker(s) for it: $(
        grep -c "database $db3_oid does not exist" "$PG_DIR/server.log") x 'FATAL: database $db3_oid does not exist'")
fi

# --- every request to main: signed and verified -----------------------------------------------
unverified=$(receiver_stats main | $PY -c 'import json,sys; print(json.load(sys.stdin)["verify_failures"])')
assert_eq "$unverified" 0 "requests to main that failed signature verification"

# --- the server log: no crash, no error but the expected terminations ----------------------------
if grep -E "PANIC|terminated by signal|TRAP:" "$PG_DIR/server.log"; then
    fail "the server log shows a crash"
fi
unexpected=$(grep -E "ERROR|FATAL|WARNING" "$PG_DIR/server.log" |
    grep -vE "terminating background worker \"pg_sync worker\" due to administrator command" |
    grep -vE "deadlock detected|\[$db2_pid\] |database $db3_oid does not exist" || true) # reported above
[ -z "$unexpected" ] || problems+=("unexpected errors in the server log:"$'\n'"$unexpected")
if [ ${#problems[@]} -gt 0 ]; then
    printf '%s\n' "${problems[@]}" >&2
    fail "${#problems[@]} problem(s), above"
fi
echo "ok: delivery (zero config, latency, format, signatures, batching, pause/resume, two databases, drops, restart)"
