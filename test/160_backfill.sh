#!/usr/bin/env bash
# pg_sync.backfill() with a real server, worker and receiver (test/lib/receiver.py):
#   a) content: every existing row arrives once as op "snapshot", rendered exactly as the
#      capture trigger renders it (columns, key_columns, filter applied);
#   b) consistency under concurrent writers: pgbench updates, deletes and inserts rows of the
#      table (two rows per transaction, in random order) while a backfill in small pages runs;
#      a receiver that applies events in arrival order ends up with exactly the table's rows;
#   c) a writer holding a row lock: the backfill waits ("row lock"), can be cancelled there and
#      resumed later; every row is sent exactly once;
#   d) kill -9 of the backfill worker in the middle (the server restarts): the job continues from
#      its last committed page, every row exactly once;
#   e) throttle: with the endpoint paused, the backfill stops at ten pages of pending events and
#      continues when they drain;
#   f) untracking the table fails the running backfill: seen in pg_sync.backfills and health();
#      tracking it again and resume_backfill() finish it;
#   g) a partitioned table with hostile names: the event's table name is the capture trigger's.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
. test/lib/session.sh
pg_start backfill
pgbench_pid=
bf_exit() {
    local rc=$?
    set +e
    [ -z "$pgbench_pid" ] || kill "$pgbench_pid" 2>/dev/null || true
    [ $rc -eq 0 ] || cat "$PG_DIR/pgbench.log" 2>/dev/null | tail -n 20 >&2
    (exit $rc)
    delivery_test_exit
}
trap bf_exit EXIT

receiver_start hook
q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('hook', '$hook_URL', batch_size => 50, max_in_flight => 4);
SQL

# bf_wait ID STATE SECS: wait until backfill ID is in STATE.
bf_wait() {
    local id=$1 state=$2 secs=$3
    wait_for "backfill $id $state ($(q -c "SELECT format('%s scanned=%s enqueued=%s waiting_for=%s error=%s', state, rows_scanned, rows_enqueued, waiting_for, last_error) FROM pg_sync.backfills WHERE id = $id"))" \
        "$secs" cond "(SELECT state = '$state' FROM pg_sync.backfills WHERE id = $id)"
}
# bf_events TABLE: the snapshot events the receiver got for TABLE (event's table name), one JSON per line.
bf_events() { receiver_events hook | /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e["table"] == sys.argv[1] and e["op"] == "snapshot":
        print(json.dumps(e, separators=(",", ":")))' "$1"; }
# bf_key_counts TABLE: "<distinct keys> <most events of one key> <smallest id key> <largest>" of
# TABLE's snapshot events (keys {"id": n}).
bf_key_counts() { bf_events "$1" | /usr/bin/python3 -c '
import json, sys, collections
c = collections.Counter(json.loads(l)["key"]["id"] for l in sys.stdin)
print(len(c), max(c.values()), min(c), max(c))'; }
drained() { cond "(SELECT pending = 0 AND in_flight = 0 FROM pg_sync.endpoint_status WHERE endpoint = 'hook')"; }

# --- a) content ---------------------------------------------------------------------------------
q >/dev/null <<'SQL'
CREATE TABLE items (id int PRIMARY KEY, sku text NOT NULL, name text, price numeric(10,2), tags text[],
                    secret text, made timestamptz);
INSERT INTO items SELECT g, 'sku-' || g, CASE WHEN g % 11 = 0 THEN NULL ELSE E'n\u00e4me "' || g || E'"\n' END,
                         g * 1.25, ARRAY['a', g::text], 'hidden', timestamptz '2026-01-01 00:00+00' + g * interval '1 min'
  FROM generate_series(1, 3000) g;
SELECT pg_sync.track('items', 'hook', columns => '{id,name,price,tags,made}', key_columns => '{sku}',
                     filter => 'NEW.id % 7 <> 0');
SQL
id=$(q -c "SELECT pg_sync.backfill('items', 'hook', 500)" 2>/dev/null)
bf_wait "$id" done 60
assert_eq "$(q -c "SELECT rows_scanned || '/' || rows_enqueued || '/' || batches FROM pg_sync.backfills WHERE id = $id")" \
    "3000/2572/7" "items: rows scanned/enqueued/pages"
receiver_wait_events hook 2572 60
# Expected: what row_to_json gives for the tracked columns (the capture trigger's rendering).
q -c "SELECT json_build_object('key', (SELECT row_to_json(k) FROM (SELECT i.sku) k),
                                'new', (SELECT row_to_json(r) FROM (SELECT i.id, i.name, i.price, i.tags, i.made) r))
        FROM items i WHERE i.id % 7 <> 0" >"$PG_DIR/items.expected"
bf_events public.items | /usr/bin/python3 -c '
import json, sys
expected = sorted(json.dumps(json.loads(l), sort_keys=True) for l in open(sys.argv[1]))
got = []
for line in sys.stdin:
    e = json.loads(line)
    assert e["old"] is None, e
    got.append(json.dumps({"key": e["key"], "new": e["new"]}, sort_keys=True))
got.sort()
if got != expected:
    missing = set(expected) - set(got); extra = set(got) - set(expected)
    sys.exit(f"items: {len(got)} events, {len(expected)} expected; missing e.g. {sorted(missing)[:2]}; unexpected e.g. {sorted(extra)[:2]}")
' "$PG_DIR/items.expected" || fail "items: snapshot events differ from the table"
echo "ok a: 3000 rows, 2572 snapshot events equal to the table's rows (columns, key_columns, filter)"

# --- b) consistency under concurrent writers -----------------------------------------------------
q >/dev/null <<'SQL'
CREATE TABLE acct (id int PRIMARY KEY, version int NOT NULL, balance int NOT NULL);
INSERT INTO acct SELECT g, 0, 100 FROM generate_series(1, 20000) g;
SELECT pg_sync.track('acct', 'hook');
SQL
cat >"$PG_DIR/writers.sql" <<'SQL'
\set a random(1, 24000)
\set b random(1, 24000)
\set c random(1, 24000)
\set d random(1, 24000)
BEGIN;
UPDATE acct SET version = version + 1, balance = balance - 1 WHERE id = :a;
UPDATE acct SET version = version + 1, balance = balance + 1 WHERE id = :b;
DELETE FROM acct WHERE id = :c AND :c % 5 = 0;
INSERT INTO acct VALUES (:d, 0, 100) ON CONFLICT (id) DO UPDATE SET version = acct.version + 1;
END;
SQL
chmod 644 "$PG_DIR/writers.sql"
pgbench -n -c 4 -j 2 -T 120 -R 400 --max-tries=100 -f "$PG_DIR/writers.sql" >"$PG_DIR/pgbench.log" 2>&1 &
pgbench_pid=$!
# Writers are running before the backfill starts and go on after it ends.
writes_sql="(SELECT n_tup_upd + n_tup_ins + n_tup_del FROM pg_stat_user_tables WHERE relid = 'acct'::regclass)"
wait_for "writers running" 30 cond "(SELECT n_tup_upd > 300 FROM pg_stat_user_tables WHERE relid = 'acct'::regclass)"
id=$(q -c "SELECT pg_sync.backfill('acct', 'hook', 100)" 2>/dev/null)
bf_wait "$id" done 240
after=$(q -c "SELECT $writes_sql")
wait_for "more writes after the backfill" 30 cond "$writes_sql > $after + 300"
kill -TERM "$pgbench_pid" 2>/dev/null || true
wait "$pgbench_pid" || true
pgbench_pid=
wait_for "acct events delivered" 180 drained
receiver_events hook | /usr/bin/python3 -c '
import json, sys, subprocess
state, last_id, snapshots, changes, log = {}, {}, 0, 0, []
for line in sys.stdin:
    e = json.loads(line)
    if e["table"] != "public.acct":
        continue
    k = e["key"]["id"]
    if e["id"] <= last_id.get(k, 0):
        if e["id"] == last_id.get(k):
            continue  # a resend (at-least-once): the receiver dedupes by id
        sys.exit(f"key {k}: event {e['"'"'id'"'"']} after {last_id[k]}: order broken")
    last_id[k] = e["id"]
    log.append((e["id"], e["op"]))
    if e["op"] == "delete":
        state.pop(k, None); changes += 1
    else:
        state[k] = (e["new"]["version"], e["new"]["balance"])
        if e["op"] == "snapshot": snapshots += 1
        else: changes += 1
table = {}
for line in open(sys.argv[1]):
    i, v, b = map(int, line.split("|"))
    table[i] = (v, b)
stale = [k for k in table if state.get(k) != table[k]]
extra = [k for k in state if k not in table]
snap_ids = [i for i, op in log if op == "snapshot"]
during = sum(1 for i, op in log if op != "snapshot" and min(snap_ids) < i < max(snap_ids))
print(f"{snapshots} snapshots, {changes} changes applied ({during} of them between the first and last snapshot event); {len(table)} rows; stale {len(stale)}, extra {len(extra)}")
if during < 100:
    sys.exit(f"only {during} changes were captured while the backfill ran: the test did not test concurrency")
if stale or extra:
    sys.exit(f"receiver differs from the table: stale e.g. {[(k, state.get(k), table[k]) for k in stale[:3]]}, extra e.g. {extra[:3]}")
' <(q -c "SELECT id, version, balance FROM acct") >"$PG_DIR/acct.result" 2>&1 || { cat "$PG_DIR/acct.result"; fail "acct: receiver state differs"; }
echo "ok b: $(cat "$PG_DIR/acct.result")"

# --- c) a row lock: wait, cancel, resume ----------------------------------------------------------
q >/dev/null <<'SQL'
CREATE TABLE big (id int PRIMARY KEY, v text);
INSERT INTO big SELECT g, 'v' || g FROM generate_series(1, 3000) g;
SELECT pg_sync.track('big', 'hook');
SQL
session_open
session "BEGIN; SELECT * FROM big WHERE id = 1550 FOR UPDATE;"
id=$(q -c "SELECT pg_sync.backfill('big', 'hook', 100)" 2>/dev/null)
wait_for "backfill waits for the row lock" 60 cond "(SELECT waiting_for = 'row lock' FROM pg_sync.backfills WHERE id = $id)"
assert_eq "$(q -c "SELECT rows_scanned FROM pg_sync.backfills WHERE id = $id")" 1500 "big: pages before the locked row"
assert_eq "$(q -c "SELECT pg_sync.cancel_backfill($id)")" t "cancel_backfill"
assert_eq "$(q -c "SELECT state || ' ' || (finished_at IS NOT NULL) FROM pg_sync.backfills WHERE id = $id")" "cancelled true" "after cancel"
assert_eq "$(q -c "SELECT pg_sync.cancel_backfill($id)")" f "cancel_backfill twice"
session "COMMIT;"
scanned=$(q -c "SELECT rows_scanned FROM pg_sync.backfills WHERE id = $id")
assert_eq "$scanned" 1500 "a cancelled backfill does not go on"
assert_eq "$(q -c "SELECT pg_sync.resume_backfill($id)")" t "resume_backfill"
bf_wait "$id" done 60
wait_for "big delivered" 60 drained
assert_eq "$(bf_key_counts public.big)" "3000 1 1 3000" "big: every row exactly once (keys, max count, min, max)"
echo "ok c: waited at a row lock, cancelled at 1500 rows, resumed, 3000 rows exactly once"

# --- d) kill -9 of the backfill worker ----------------------------------------------------------------
q >/dev/null <<'SQL'
CREATE TABLE crash (id int PRIMARY KEY, v text);
INSERT INTO crash SELECT g, 'v' || g FROM generate_series(1, 3000) g;
SELECT pg_sync.track('crash', 'hook');
SQL
session "BEGIN; SELECT * FROM crash WHERE id = 2050 FOR UPDATE;"
id=$(q -c "SELECT pg_sync.backfill('crash', 'hook', 100)" 2>/dev/null)
wait_for "backfill at the row lock" 60 cond "(SELECT waiting_for = 'row lock' FROM pg_sync.backfills WHERE id = $id)"
bpid=$(q -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_sync backfill'")
[ -n "$bpid" ] || fail "no backfill worker in pg_stat_activity"
kill -9 "$bpid"
# The postmaster restarts everything (a child died by a signal); the session's lock goes too.
wait_for "backfill finishes after the crash" 120 cond "(SELECT state = 'done' FROM pg_sync.backfills WHERE id = $id)"
wait_for "crash delivered" 60 drained
assert_eq "$(bf_key_counts public.crash)" "3000 1 1 3000" "crash: every row exactly once after kill -9 (keys, max count, min, max)"
echo "ok d: kill -9 of the backfill worker at 2000 rows; it went on after the restart, 3000 rows exactly once"

# --- e) throttle ---------------------------------------------------------------------------------------
# held_backfill TABLE ROWS BATCH: a new table of ROWS rows, tracked, the endpoint paused, and a
# backfill in pages of BATCH rows that the throttle holds back; sets id.
held_backfill() {
    q >/dev/null <<SQL
CREATE TABLE $1 (id int PRIMARY KEY);
INSERT INTO $1 SELECT generate_series(1, $2);
SELECT pg_sync.track('$1', 'hook');
SELECT pg_sync.pause_endpoint('hook');
SQL
    id=$(q -c "SELECT pg_sync.backfill('$1', 'hook', $3)" 2>/dev/null)
    wait_for "$1: throttled" 60 cond "(SELECT waiting_for = 'delivery' FROM pg_sync.backfills WHERE id = $id)"
}
held_backfill slow 5000 50
assert_eq "$(q -c "SELECT rows_enqueued FROM pg_sync.backfills WHERE id = $id")" 500 "slow: ten pages, then wait"
q -c "SELECT pg_sync.resume_endpoint('hook')" >/dev/null
bf_wait "$id" done 120
wait_for "slow delivered" 60 drained
assert_eq "$(bf_events public.slow | wc -l)" 5000 "slow: snapshot events"
echo "ok e: paused endpoint: stopped at 500 pending events, finished after resume"

# --- f) untracked while running: failed, health(), resume ---------------------------------------------
held_backfill gone 2000 100
q -c "SELECT pg_sync.untrack('gone', 'hook'); SELECT pg_sync.resume_endpoint('hook')" >/dev/null
bf_wait "$id" failed 60
assert_contains "$(q -c "SELECT last_error FROM pg_sync.backfills WHERE id = $id")" "no longer tracked"
assert_contains "$(q -c "SELECT string_agg(problem || ': ' || detail, '; ') FROM pg_sync.health()")" "backfill failed: backfill $id of public.gone failed after 1000 rows"
q -c "SELECT pg_sync.track('gone', 'hook')" >/dev/null
assert_eq "$(q -c "SELECT pg_sync.resume_backfill($id)")" t "resume a failed backfill"
bf_wait "$id" done 60
assert_eq "$(q -c "SELECT count(*) FROM pg_sync.health() WHERE problem = 'backfill failed'")" 0 "health after resume"
wait_for "gone delivered" 60 drained
assert_eq "$(bf_events public.gone | wc -l)" 2000 "gone: snapshot events"
echo "ok f: untrack failed the backfill (visible in health()), track + resume_backfill finished it"

# --- g) partitioned table, hostile names --------------------------------------------------------------
q >/dev/null <<'SQL'
CREATE SCHEMA "Sch ""x""";
CREATE TABLE "Sch ""x"""."Part Tbl" ("Key Col" text, n int, PRIMARY KEY ("Key Col", n)) PARTITION BY RANGE (n);
CREATE TABLE "Sch ""x""".p1 PARTITION OF "Sch ""x"""."Part Tbl" FOR VALUES FROM (0) TO (500);
CREATE TABLE "Sch ""x""".p2 PARTITION OF "Sch ""x"""."Part Tbl" FOR VALUES FROM (500) TO (1000);
INSERT INTO "Sch ""x"""."Part Tbl" SELECT 'k ''' || (g % 3), g FROM generate_series(0, 999) g;
SELECT pg_sync.track('"Sch ""x"""."Part Tbl"', 'hook');
SQL
id=$(q -c "SELECT pg_sync.backfill('\"Sch \"\"x\"\"\".\"Part Tbl\"', 'hook', 64)" 2>/dev/null)
bf_wait "$id" done 60
q -c "INSERT INTO \"Sch \"\"x\"\"\".\"Part Tbl\" VALUES ('after', 5)" >/dev/null
wait_for "part delivered" 60 drained
name=$(receiver_events hook | /usr/bin/python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e["op"] == "insert" and e["key"] == {"Key Col": "after", "n": 5}:
        print(e["table"])')
assert_eq "$name" '"Sch ""x"""."Part Tbl"' "capture's table name"
assert_eq "$(bf_events "$name" | wc -l)" 1000 "partitioned: snapshot events under the capture's table name"
echo "ok g: partitioned table with hostile names: 1000 snapshot events named $name"

echo "PASS 160_backfill"
