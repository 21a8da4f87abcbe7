#!/usr/bin/env bash
# "A truncate is a barrier for its table" (README, Delivery; the scheduler's rule in
# docs/delivery.md), with a real receiver: nothing crosses it in either direction.
#   a) 6 writers insert / update (upsert) / delete rows of t on 6 keys and update t2 on 4 keys for
#      8 s while t is truncated 5 times in the middle (alone, twice in a row, and followed by
#      re-inserts of the same keys, in the same transaction or not); the receiver fails 20 % of
#      requests; the endpoint sends up to 4 requests of up to 4 events at once and retries after
#      20-200 ms.
#   b) the barrier is per table: a row of t becomes a dead letter, t is truncated (the truncate
#      must wait behind it), a row of t is inserted after it; t2's events are delivered meanwhile
#      while the truncate and the later row of t stay unsent (deterministic: the dead letter holds
#      the barrier as long as the test wants); redeliver releases all three.
# Then, over every request in the order the receiver logged it (any status), given the events
# answered 2xx by the requests logged before it:
#   - a request carrying a truncate of t carries no event of t captured before it (lower id)
#     that is not yet acknowledged, unless that event rides ahead of it in the same request;
#   - a row event of t goes in a request only when every truncate of t with a lower id is
#     acknowledged already or rides ahead of it in the same request;
#   - per (table, key) the same holds for earlier events of that key, and requests are in id order;
#   - nothing is lost or acknowledged twice: the 2xx events per table and op equal what an audit
#     trigger counted, their number equals endpoint_status.delivered_total, and replaying them in
#     arrival order (checking every update's and delete's "old" against the replayed row) ends
#     with exactly the tables' contents;
#   - the run was not vacuous: several truncates, non-2xx answers, requests of several events,
#     and t2 events acknowledged while a lower-id truncate of t was not.
# (The receiver logs a request just before answering it, so a request that depends on another's
# 2xx is always logged after it; two requests out at the same moment may be logged either way.)
# The analyser checks itself first on small hand-made logs, and then on two copies of this run's
# log in which one request was moved across a truncate's: both must be reported.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
pg_start truncate_barrier "max_connections = 50"
bench_pid=
on_exit() {
    local rc=$?
    set +e # (under set -e, the "exit $rc" below would end the trap before the cleanup)
    [ -z "$bench_pid" ] || kill "$bench_pid" 2>/dev/null
    (exit $rc) # delivery_test_exit reads the test's status from $?
    delivery_test_exit
}
trap on_exit EXIT
PY=/usr/bin/python3

receiver_start hook --mode fail_rate --p 0.2 --status 500 --seed 95
q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('e', '$hook_URL', batch_size => 4, max_in_flight => 4,
                               max_attempts => 1000, retry_base_ms => 20, retry_max_ms => 200);
CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE t2 (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO t2 SELECT g, 0 FROM generate_series(1, 4) g;
-- What was captured, counted independently of pg_sync: one row per row change and per TRUNCATE.
CREATE TABLE audit (tbl text NOT NULL, op text NOT NULL);
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
    INSERT INTO audit VALUES (format('%s.%s', TG_TABLE_SCHEMA, TG_TABLE_NAME), lower(TG_OP));
    RETURN NULL;
END \$\$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION audit();
CREATE TRIGGER audit_truncate AFTER TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION audit();
CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON t2 FOR EACH ROW EXECUTE FUNCTION audit();
SELECT pg_sync.track('t', 'e', events => '{insert,update,delete,truncate}');
SELECT pg_sync.track('t2', 'e');
SQL
pending_zero() { cond "(SELECT pending = 0 FROM pg_sync.endpoint_status WHERE endpoint = 'e')"; }

# --- a) concurrent writers, truncates in the middle, 20 % failures --------------------------------
cat >"$PG_DIR/t.sql" <<'EOF'
\set k random(1, 6)
\set op random(1, 10)
\if :op <= 7
INSERT INTO t VALUES (:k, 1) ON CONFLICT (id) DO UPDATE SET v = t.v + 1;
\else
DELETE FROM t WHERE id = :k;
\endif
EOF
cat >"$PG_DIR/t2.sql" <<'EOF'
\set k random(1, 4)
UPDATE t2 SET v = v + 1 WHERE id = :k;
EOF
chmod 644 "$PG_DIR/t.sql" "$PG_DIR/t2.sql"
# -R caps the rate so that the backlog drains in seconds (each truncate waits for every earlier
# event of t, and the rows after it wait for it); the point is interleaving, not volume.
pgbench -n -c 6 -j 2 -T 8 -R 200 -f "$PG_DIR/t.sql@8" -f "$PG_DIR/t2.sql@2" >"$PG_DIR/pgbench.log" 2>&1 &
bench_pid=$!
# The truncates are paced by captured events (queue ids), so that each one has row events of t
# before and after it, whatever the machine's speed.
truncate_after() { # N SQL: once N more queue ids were taken, run SQL
    local target
    target=$(($(q -c "SELECT last_value FROM pg_sync._queue_id_seq") + $1))
    wait_for "$1 more captured events before a truncate" 20 cond "(SELECT last_value >= $target FROM pg_sync._queue_id_seq)"
    q -c "$2" >/dev/null
}
truncate_after 150 "TRUNCATE t"
truncate_after 150 "BEGIN; TRUNCATE t; INSERT INTO t SELECT g, 0 FROM generate_series(1, 6) g; COMMIT;"
truncate_after 150 "TRUNCATE t"
q -c "TRUNCATE t" # two barriers in a row
truncate_after 150 "TRUNCATE t"
q -c "INSERT INTO t SELECT g, 0 FROM generate_series(1, 6) g ON CONFLICT DO NOTHING"
wait "$bench_pid" || { cat "$PG_DIR/pgbench.log"; fail "pgbench failed"; }
bench_pid=
grep -q "number of failed transactions: 0" "$PG_DIR/pgbench.log" || { cat "$PG_DIR/pgbench.log"; fail "some writes failed"; }
t0=$SECONDS
wait_for "the queue to drain after the writers (a)" 30 pending_zero
drain=$((SECONDS - t0))
assert_eq "$(st e dead)" 0 "a: dead letters"
echo "ok a: 5 truncates among $(q -c "SELECT count(*) FROM audit") captured changes, queue drained ${drain} s after the writers stopped"

# --- b) the barrier holds only its own table -------------------------------------------------------
queue_ops() {
    q -c "SELECT string_agg(format('%s %s:%s', q.tbl, q.op, q.attempts), ', ' ORDER BY q.id)
            FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE e.name = 'e'"
}
q -c "SELECT pg_sync.alter_endpoint('e', max_attempts => 2)" >/dev/null
receiver_mode hook '{"mode":"status","status":500}'
q -c "INSERT INTO t VALUES (100, 0)"
wait_status e 20 "dead = 1 AND pending = 0" "b: the row before the truncate to become a dead letter"
q -c "TRUNCATE t"
q -c "INSERT INTO t VALUES (101, 0)"
tb=$(q -c "SELECT max(id) FROM pg_sync._queue WHERE op = 'truncate'")
receiver_mode hook '{"mode":"ok"}'
base=$(rq hook 'sum(len(ids(r)) for r in ok)')
# Committed after the truncate and the row behind it: the pass that sends it has both in its input.
q -c "UPDATE t2 SET v = v + 1 WHERE id = 1"
receiver_wait_events hook $((base + 1)) 20
# A sweep interval later, another one: the truncate is still held, never attempted.
sweep_after=$(q -c "SELECT now() + interval '1100 ms'")
wait_for "b: a sweep interval passed" 10 cond "now() > '$sweep_after'"
q -c "UPDATE t2 SET v = v + 1 WHERE id = 2"
receiver_wait_events hook $((base + 2)) 20
assert_eq "$(queue_ops)" "public.t truncate:0, public.t insert:0" "b: queue while the dead letter holds the barrier"
assert_eq "$(st e dead)" 1 "b: dead letters"
q -c "SELECT pg_sync.alter_endpoint('e', max_attempts => 1000)" >/dev/null
assert_eq "$(q -c "SELECT pg_sync.redeliver('e')")" 1 "b: redelivered"
wait_status e 20 "pending = 0 AND dead = 0" "b: the dead letter, the truncate and the row after it delivered"
# endpoint_status's counters are written every few hundred ms, not with each delivery.
captured=$(q -c "SELECT count(*) FROM audit")
wait_status e 10 "delivered_total = $captured" "delivered_total to reach the $captured captured changes"
echo "ok b: t2 delivered while truncate $tb of t waited behind a dead letter; delivered after redeliver"

# --- analysis of every request ---------------------------------------------------------------------
facts=$(q <<'SQL'
SELECT json_build_object(
    'captured', (SELECT json_object_agg(tbl || ' ' || op, n) FROM (SELECT tbl, op, count(*) AS n FROM audit GROUP BY 1, 2) a),
    'final', json_build_object('public.t',  (SELECT coalesce(json_object_agg(id, v), '{}') FROM t),
                               'public.t2', (SELECT coalesce(json_object_agg(id, v), '{}') FROM t2)),
    'delivered_total', (SELECT delivered_total FROM pg_sync.endpoint_status WHERE endpoint = 'e'))
SQL
)
$PY - "$hook_OUT" "$facts" "$tb" <<'PY'
import json, sys
from collections import Counter, defaultdict
from datetime import datetime

T, T2 = "public.t", "public.t2"


def is_ok(r):
    return r["status"] is not None and 200 <= r["status"] < 300


def keyof(e):
    return (e["table"], json.dumps(e["key"], sort_keys=True))


def analyse(recs):
    """Order checks over requests in log order. Returns (errors as (kind, text), counters)."""
    errors = []
    events = {}
    for r in recs:
        for e in r["events"] or []:
            events.setdefault(e["id"], e)
    t_ids = sorted(i for i, e in events.items() if e.get("table") == T)
    truncs = [i for i in t_ids if events[i]["op"] == "truncate"]
    by_key = defaultdict(list)  # (table, key) -> ids, ascending
    for i in sorted(events):
        if events[i]["op"] != "truncate":
            by_key[keyof(events[i])].append(i)
    acked = set()
    c = Counter()
    for r in recs:
        evs = r["events"] or []
        ids = [e["id"] for e in evs]
        where = f"request {r['n']} (status {r['status']})"
        if ids != sorted(set(ids)):
            errors.append(("order", f"{where}: events not in ascending id order: {ids}"))
        ahead = set()  # ids of this request ahead of the current event
        for e in evs:
            i = e["id"]
            if e.get("table") == T and e["op"] == "truncate":
                early = [x for x in t_ids if x < i and x not in acked and x not in ahead]
                if early:
                    errors.append(("barrier-before", f"{where}: truncate {i} of {T} sent while earlier events "
                                   f"of {T} were not acknowledged: {early[:8]}"))
            elif e.get("table") == T:
                early = [x for x in truncs if x < i and x not in acked and x not in ahead]
                if early:
                    errors.append(("barrier-after", f"{where}: {e['op']} {i} of {T} key {e['key']} sent before "
                                   f"truncate {early} was acknowledged"))
            if e["op"] != "truncate":
                early = []
                for x in by_key[keyof(e)]:
                    if x >= i:
                        break
                    if x not in acked and x not in ahead:
                        early.append(x)
                if early:
                    errors.append(("key-order", f"{where}: {e['table']} key {e['key']} event {i} sent before "
                                   f"{early[:8]} were acknowledged"))
            ahead.add(i)
        c["requests"] += 1
        c["multi"] += len(evs) > 1
        c["max_events"] = max(c["max_events"], len(evs))
        if any(e["op"] == "truncate" for e in evs):
            c["truncate_requests"] += 1
            c["truncate_with_rows"] += len(evs) > 1
        if is_ok(r):
            waiting = [x for x in truncs if x not in acked]
            c["t2_past_truncate"] += sum(1 for e in evs if e.get("table") == T2 and any(x < e["id"] for x in waiting))
            acked.update(ids)
        else:
            c["failed"] += 1
            c["failed_truncate"] += any(e["op"] == "truncate" for e in evs)
    c["truncates"] = len(truncs)
    return errors, c


def kinds(recs):
    return {k for k, _ in analyse(recs)[0]}


# --- the analyser on hand-made logs --------------------------------------------------------------
def ev(i, op, k=None, table=T):
    return {"id": i, "op": op, "table": table, "key": None if op == "truncate" else {"id": k}}


def log(*reqs):
    return [{"n": n, "status": s, "events": list(es)} for n, (s, es) in enumerate(reqs, 1)]


r1, tr, r3, u1 = ev(1, "insert", 1), ev(2, "truncate"), ev(3, "insert", 1), ev(4, "update", 1, T2)
selftest = [
    ("good", log((204, [r1]), (500, [tr]), (204, [u1]), (204, [tr]), (204, [r3])), set()),
    ("good, one request", log((500, [r1, tr, r3]), (204, [r1, tr, r3])), set()),
    ("truncate while an earlier row waits to retry", log((500, [r1]), (500, [tr]), (204, [r1]), (204, [tr, r3])),
     {"barrier-before"}),
    ("row after the truncate before its 2xx", log((204, [r1]), (500, [tr]), (204, [r3]), (204, [tr])),
     {"barrier-after"}),
    ("request out of id order", log((204, [r1, r3, tr])), {"order", "barrier-after"}),
]
for name, recs, want in selftest:
    got = kinds(recs)
    if got != want:
        sys.exit(f"FAIL: analyser self-test '{name}': reported {sorted(got)}, expected {sorted(want)}")

# --- this run -------------------------------------------------------------------------------------
path, facts, tb = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
recs = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
errors, c = analyse(recs)
problems = [text for _, text in errors]

# Completeness: every captured change answered 2xx exactly once; replaying the 2xx events in
# arrival order gives the tables' contents, each update and delete finding the row it expects.
times = Counter(e["id"] for r in recs if is_ok(r) for e in r["events"] or [])
twice = sorted(i for i, n in times.items() if n > 1)
if twice:
    problems.append(f"events answered 2xx more than once (no crash in this test): {twice[:10]}")
first, pos = {}, {}  # id -> the event, the index of its 2xx request
for j, r in enumerate(recs):
    if is_ok(r):
        for e in r["events"] or []:
            first.setdefault(e["id"], e)
            pos.setdefault(e["id"], j)
got = Counter(f"{e['table']} {e['op']}" for e in first.values())
if got != Counter(facts["captured"]):
    problems.append(f"2xx events per table and op {dict(sorted(got.items()))} != captured (audit) "
                    f"{dict(sorted(facts['captured'].items()))}")
if len(first) != facts["delivered_total"]:
    problems.append(f"{len(first)} distinct events answered 2xx, endpoint_status.delivered_total = {facts['delivered_total']}")
state = {T: {}, T2: {k: 0 for k in range(1, 5)}}  # t2's rows existed before it was tracked
replay_errors = []
for r in recs:
    if not is_ok(r):
        continue
    for e in r["events"] or []:
        rows = state[e["table"]]
        k = e["key"] and e["key"]["id"]
        bad, had = None, rows.get(k)
        if e["op"] == "truncate":
            rows.clear()
        elif e["op"] == "insert":
            bad = k in rows
            rows[k] = e["new"]["v"]
        elif e["op"] == "update":
            bad = rows.get(k) != e["old"]["v"]
            rows[k] = e["new"]["v"]
        elif e["op"] == "delete":
            bad = rows.get(k) != e["old"]["v"]
            rows.pop(k, None)
        if bad:
            replay_errors.append(f"request {r['n']}: {e['op']} {e['id']} of {e['table']} key {k} "
                                 f"does not follow the replayed row {had!r}")
problems += replay_errors[:10]
for table in (T, T2):
    want = {int(k): v for k, v in facts["final"][table].items()}
    if state[table] != want:
        problems.append(f"replaying the 2xx events of {table} gives {state[table]}, the table holds {want}")

# b): the t2 events after truncate tb were acknowledged before any request carried tb.
first_tb = next((j for j, r in enumerate(recs) if tb in [e["id"] for e in r["events"] or []]), None)
if first_tb is None:
    problems.append(f"truncate {tb} (b) never sent")
else:
    overtook = [e["id"] for r in recs[:first_tb] if is_ok(r) for e in r["events"] or []
                if e.get("table") == T2 and e["id"] > tb]
    if len(overtook) < 2:
        problems.append(f"b: t2 events acknowledged before truncate {tb} of t was first sent: {overtook}, expected 2")

# How much the barrier held back, from the events' captured_at and the receiver's arrival times
# (one clock): per truncate, earlier events of t not yet delivered when it was captured, and later
# rows of t captured before it was delivered (b guarantees at least one of each).
def at(e):
    return datetime.fromisoformat(e["captured_at"].replace("Z", "+00:00")).timestamp()


arrived = {i: recs[j]["t"] for i, j in pos.items()}
t_first = sorted((i, e) for i, e in first.items() if e["table"] == T)
held_before = held_after = 0
for x, tx in ((i, e) for i, e in t_first if e["op"] == "truncate"):
    held_before += sum(1 for i, e in t_first if i < x and arrived[i] > at(tx))
    held_after += sum(1 for i, e in t_first if i > x and e["op"] != "truncate" and at(e) < arrived[x] and pos[i] != pos[x])
if held_before < 1 or held_after < 1:
    problems.append(f"the barrier never held anything back: {held_before} earlier events outstanding at a truncate, "
                    f"{held_after} later rows captured before a truncate was delivered")

# Not vacuous.
if c["truncates"] < 6:
    problems.append(f"only {c['truncates']} truncates")
if c["failed"] < 10 or c["multi"] < 10 or c["t2_past_truncate"] < 2:
    problems.append(f"too little happened: {dict(c)}")

# The analyser on this run's log with one request moved across a truncate: both directions must
# be reported. (a: the 2xx request of a truncate moved before the last 2xx request of an earlier
# event of t; b: the first 2xx request of a later row of t moved before the truncate's 2xx.)
moved = {}
for x in sorted(i for i, e in first.items() if e["op"] == "truncate"):
    a = pos[x]
    in_a = {e["id"] for e in recs[a]["events"]}
    before = [j for j in range(a) if is_ok(recs[j]) and any(
        e.get("table") == T and e["id"] < x and e["id"] not in in_a for e in recs[j]["events"])]
    after = [j for j in range(a + 1, len(recs)) if is_ok(recs[j]) and any(
        e.get("table") == T and e["op"] != "truncate" and e["id"] > x and e["id"] not in in_a for e in recs[j]["events"])]
    if before and "barrier-before" not in moved:
        b = before[-1]
        moved["barrier-before"] = (recs[:b] + [recs[a]] + recs[b:a] + recs[a + 1:], recs[a]["n"], recs[b]["n"])
    if after and "barrier-after" not in moved:
        b = after[0]
        moved["barrier-after"] = (recs[:a] + [recs[b]] + recs[a:b] + recs[b + 1:], recs[b]["n"], recs[a]["n"])
for kind in ("barrier-before", "barrier-after"):
    if kind not in moved:
        problems.append(f"self-check: no truncate in this run's log allows a {kind} mutation")
    elif kind not in kinds(moved[kind][0]):
        problems.append(f"self-check: moving request {moved[kind][1]} before request {moved[kind][2]} "
                        f"was not reported as {kind}")

if problems:
    sys.exit("FAIL:\n  " + "\n  ".join(p[:400] for p in problems[:20]))
status = Counter(str(r["status"]) for r in recs)
print(f"{c['requests']} requests {dict(sorted(status.items()))}, {len(first)} events "
      f"({', '.join(f'{k}: {v}' for k, v in sorted(got.items()))}) all delivered once; "
      f"{c['truncates']} truncates in {c['truncate_requests']} requests ({c['failed_truncate']} failed, "
      f"{c['truncate_with_rows']} shared with rows), none crossed; {c['multi']} requests of 2-{c['max_events']} events; "
      f"{held_before} earlier events of t outstanding when a truncate was captured, {held_after} later rows of t "
      f"captured before it was delivered; {c['t2_past_truncate']} t2 events delivered while a truncate of t waited; "
      f"analyser caught both moved-request copies")
PY
if grep -E "PANIC|TRAP:|was terminated by signal|exited with exit code|ERROR" "$PG_DIR/server.log"; then
    fail "unexpected errors in the server log (above)"
fi
echo "ok: truncate barrier"
