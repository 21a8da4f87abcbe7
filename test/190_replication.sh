#!/usr/bin/env bash
# pg_sync next to PostgreSQL replication, with three real servers on loopback at once:
#   a) logical replication FOR ALL TABLES from a publisher P to a subscriber S that runs pg_sync
#      too. The publication includes pg_sync's internal tables; S's pg_sync_ignore_replicated*
#      triggers must skip whatever the apply and table-sync workers bring into them. Both sides
#      track the same table, each with its own endpoint named 'hook' (same endpoint id 1), and
#      both queue events whose ids collide: P's pending rows reach S in the initial copy and by
#      apply, and P's deletes of its delivered events reach S while S's endpoint is paused with
#      its own events (same endpoint id and event ids) still queued. Then, precisely:
#        - P's receiver got each of P's events exactly once, as queued on P (ids, content);
#        - S's queue was not touched by replication (every row byte for byte as before), S's
#          receiver got exactly S's own events, each once, as queued on S: none of P's;
#        - the replicated rows of the app table are on S but produced no capture on S (S's queue
#          sequence moved only for S's own writes);
#        - S's configuration is still its own (one endpoint, its URL, secret, headers, paused
#          flag, counters, no attempts while paused): P's URL, secret and header value are in no
#          row of S's pg_sync tables and in no file of S's data directory (they are in P's);
#        - health() warns 'published pg_sync tables' on P and 'replicated pg_sync tables' on S.
#   b) TRUNCATE pg_sync._attempts on P: S's apply worker refuses it ("pg_sync does not apply a
#      replicated TRUNCATE"), again at each retry, S's pg_sync tables keep every row, later
#      changes of P stop arriving; the subscription can then be disabled and dropped (its slot
#      on P goes with it).
#   c) physical standby: a primary C whose receiver answers 500 keeps its events queued; a
#      standby from pg_basebackup -R replays them; while it is in recovery, no pg_sync process
#      runs for it (its postmaster's children, pg_stat_activity, pg_sync.workers), checked at
#      every poll until it has replayed past C's last event and failed attempts; C stops (fast),
#      the receiver is fixed, the standby is promoted, and its worker delivers every event
#      queued on C exactly once, as committed there (ids, txid, captured_at, content).
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/pg_sync_190.XXXXXX)

# --- several servers --------------------------------------------------------------------------------
# pg.sh keeps one server in PGPORT / PG_DIR / PG_PID; these arrays keep each one's, by name.
declare -A SRV_DIR=() SRV_PID=() SRV_PORT=()
SERVERS=()
srv_start() {
    local name=$1; shift
    pg_start "$name" "$@"
    SRV_DIR[$name]=$PG_DIR SRV_PID[$name]=$PG_PID SRV_PORT[$name]=$PGPORT
    SERVERS+=("$name")
}
# srv_stop NAME: pg_stop on that server (fast shutdown by PID, then removes its directory).
srv_stop() {
    [ -n "${SRV_DIR[$1]:-}" ] || return 0
    PG_DIR=${SRV_DIR[$1]} PG_PID=${SRV_PID[$1]:-} pg_stop
    SRV_DIR[$1]='' SRV_PID[$1]=''
}
# on NAME COMMAND...: run COMMAND (q, cond, ...) against server NAME.
on() { local n=$1; shift; PGPORT=${SRV_PORT[$n]} PG_DIR=${SRV_DIR[$n]} PG_PID=${SRV_PID[$n]} "$@"; }
on_exit() {
    local rc=$? n i
    set +e
    if [ $rc -ne 0 ]; then
        for n in "${SERVERS[@]}"; do
            if [ -z "${SRV_DIR[$n]:-}" ] || [ ! -f "${SRV_DIR[$n]}/server.log" ]; then continue; fi
            echo "--- server $n log (errors and pg_sync lines):" >&2
            grep -E "ERROR|FATAL|PANIC|TRAP|terminated|exited|pg_sync" "${SRV_DIR[$n]}/server.log" | tail -n 25 >&2
        done
    fi
    receiver_stop_all
    for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do srv_stop "${SERVERS[$i]}"; done
    rm -rf "$WORK"
}
trap on_exit EXIT
START=$SECONDS

# The PIDs and titles of a postmaster's children that are pg_sync processes ("postgres: pg_sync
# launcher", "postgres: pg_sync worker for database N", "postgres: pg_sync backfill ...").
pg_sync_children() { pgrep -a -f -P "$1" 'pg_sync' || true; }

# The events a queue holds, as the receiver must get them: id, op, key, new/old (table) or
# type/payload (emit), txid and captured_at.
QUEUE_EVENTS="SELECT coalesce(json_agg(json_build_object(
        'id', id, 'op', op, 'table', tbl, 'key', key, 'new', new_row, 'old', old_row, 'type', emit_type,
        'txid', txid::text, 'captured_at', to_char(captured_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
        ORDER BY id), '[]') FROM pg_sync._queue"
# Every column of every queue row (to prove that nothing touched them).
QUEUE_ROWS="SELECT coalesce(json_agg(q ORDER BY endpoint_id, id), '[]') FROM pg_sync._queue q"

# check_delivered RECEIVER SNAPSHOT LABEL: the events the receiver answered 2xx are exactly those
# of SNAPSHOT (a QUEUE_EVENTS result), each once and unchanged, every request verified with the
# receiver's secret (when it has one); prints the counts.
check_delivered() {
    local out_var="${1}_OUT"
    "$PY" - "${!out_var}" "$2" "$3" <<'PY'
import collections, json, sys
out, snap_path, label = sys.argv[1:4]
snap = {q["id"]: q for q in json.load(open(snap_path))}
seen, reqs, unverified, non2xx = collections.defaultdict(list), 0, 0, 0
for line in open(out, encoding="utf-8"):
    r = json.loads(line)
    if r["status"] is None or not 200 <= r["status"] < 300:
        non2xx += 1
        continue
    reqs += 1
    unverified += r["verified"] is False
    for e in r["events"] or []:
        seen[e["id"]].append(e)
def expected(q):
    d = {"id": q["id"], "op": q["op"], "key": q["key"], "txid": int(q["txid"]), "captured_at": q["captured_at"]}
    if q["op"] == "emit":
        d.update(type=q["type"], payload=q["new"])
    else:
        d.update(table=q["table"], new=q["new"], old=q["old"])
    return d
dups = sorted(i for i, es in seen.items() if len(es) > 1)
foreign = sorted(set(seen) - set(snap))
missing = sorted(set(snap) - set(seen))
differ = []
for i, es in sorted(seen.items()):
    if i in snap:
        want = expected(snap[i])
        for e in es:
            got = {k: e.get(k) for k in want}
            if got != want:
                differ.append((i, got, want))
ops = collections.Counter(snap[i]["op"] for i in seen if i in snap)
print(f"{label}: {sum(map(len, seen.values()))} events in {reqs} 2xx requests ({non2xx} other answers), "
      f"{len(snap)} queued, {len(dups)} duplicated, {len(foreign)} foreign, {len(missing)} missing, "
      f"{len(differ)} differing, {unverified} unverified; ops {dict(sorted(ops.items()))}")
bad = []
if dups: bad.append(f"delivered more than once: {dups[:20]}")
if foreign: bad.append(f"not in the queue snapshot: {foreign[:20]} e.g. {seen[foreign[0]][0]}")
if missing: bad.append(f"never delivered: {missing[:20]}")
if differ: bad.append(f"content differs from the queue: {differ[:3]}")
if unverified: bad.append(f"{unverified} requests failed signature verification")
if bad:
    sys.exit(f"FAIL: {label}: " + "; ".join(bad))
PY
}

SECRET_P="whsec_$($PY -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
SECRET_S="whsec_$($PY -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"
TOKEN_P="p-token-$($PY -c 'import secrets; print(secrets.token_hex(16))')"

# =================================================================================================
# a) logical replication FOR ALL TABLES, pg_sync on both sides
# =================================================================================================
srv_start pub "wal_level = logical"
srv_start sub "max_worker_processes = 16" "max_logical_replication_workers = 8" "max_sync_workers_per_subscription = 4" \
    "wal_retrieve_retry_interval = '1s'"
receiver_start RP --secret "$SECRET_P"
receiver_start RS --secret "$SECRET_S"
APP_TABLE="CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, note text);"

# S first: its endpoint 'hook' (id 1, paused) and 85 events of its own (queue ids 1..85).
on sub q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('hook', '$RS_URL', headers => '{"X-Side": "subscriber"}', secret => '$SECRET_S',
                               batch_size => 25);
SELECT pg_sync.pause_endpoint('hook');
$APP_TABLE
SELECT pg_sync.track('items', 'hook');
INSERT INTO items SELECT g, 0, 's' FROM generate_series(1000001, 1000060) g;
UPDATE items SET v = 1 WHERE id <= 1000020;
SELECT pg_sync.emit('hook', 's.note', jsonb_build_object('n', g), key => 's' || g) FROM generate_series(1, 5) g;
SQL

# P: endpoint 'hook' (id 1 too) with a secret and a header value, paused; 110 events (ids 1..110);
# then the publication.
on pub q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('hook', '$RP_URL', headers => '{"X-Token": "$TOKEN_P"}', secret => '$SECRET_P',
                               batch_size => 25);
SELECT pg_sync.pause_endpoint('hook');
$APP_TABLE
SELECT pg_sync.track('items', 'hook');
INSERT INTO items SELECT g, 0, 'p' FROM generate_series(1, 100) g;
SELECT pg_sync.emit('hook', 'p.note', jsonb_build_object('n', g), key => 'p' || g) FROM generate_series(1, 10) g;
CREATE PUBLICATION pub FOR ALL TABLES;
SQL
published=$(on pub q -c "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pub'")
published_sync=$(on pub q -c "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pub' AND schemaname = 'pg_sync'")
[ "$published_sync" -ge 7 ] || fail "a: publication pub holds $published_sync of pg_sync's tables, expected all 7"

# The initial copy brings P's 110 pending queue rows (ids 1..110, endpoint 1) and P's endpoint row
# (id 1, name 'hook'): both collide with S's own rows if they are not skipped.
created=$(on sub q -c "CREATE SUBSCRIPTION sub CONNECTION 'host=127.0.0.1 port=${SRV_PORT[pub]} dbname=postgres user=postgres'
                       PUBLICATION pub WITH (copy_data = true)" 2>&1) || fail "a: CREATE SUBSCRIPTION: $created"
assert_contains "$created" 'created replication slot "sub" on publisher'
on sub wait_for "subscription sub: every table synchronised" 30 \
    cond "(SELECT count(*) = $published AND bool_and(srsubstate = 'r') FROM pg_subscription_rel)"
echo "a) subscription synchronised $published tables ($published_sync of them pg_sync's) after $((SECONDS - START)) s"

# S's second round (ids 86..180) before P's second round (ids 111..520) arrives by apply.
on sub q >/dev/null <<'SQL'
INSERT INTO items SELECT g, 0, 's' FROM generate_series(1000061, 1000100) g;
UPDATE items SET v = 2 WHERE id BETWEEN 1000021 AND 1000040;
DELETE FROM items WHERE id BETWEEN 1000041 AND 1000070;
SELECT pg_sync.emit('hook', 's.note', jsonb_build_object('n', g), key => 's' || g) FROM generate_series(6, 10) g;
SQL
on pub q >/dev/null <<'SQL'
INSERT INTO items SELECT g, 0, 'p' FROM generate_series(101, 300) g;
SELECT pg_sync.emit('hook', 'p.note', jsonb_build_object('n', g), key => 'p' || g) FROM generate_series(11, 20) g;
DELETE FROM items WHERE id BETWEEN 251 AND 300;
SQL
for i in $(seq 0 14); do # 15 transactions of 10 updates
    on pub q -c "UPDATE items SET v = v + 1, note = 'p$i' WHERE id BETWEEN $((i * 10 + 1)) AND $((i * 10 + 10))" >/dev/null
done

on pub q -c "$QUEUE_EVENTS" >"$WORK/p_events.json"
on sub q -c "$QUEUE_EVENTS" >"$WORK/s_events.json"
on sub q -c "$QUEUE_ROWS" >"$WORK/s_rows_before.json"
assert_eq "$(on pub q -c "SELECT count(*) || ' ' || min(id) || '..' || max(id) FROM pg_sync._queue")" "520 1..520" "a: P's queue"
assert_eq "$(on sub q -c "SELECT count(*) || ' ' || min(id) || '..' || max(id) FROM pg_sync._queue")" "180 1..180" "a: S's queue"
assert_eq "$(on sub q -c "SELECT count(DISTINCT endpoint_id) || ' ' || min(endpoint_id) FROM pg_sync._queue")" "1 1" \
    "a: S's events are for its endpoint id 1, as P's are for P's"

# P delivers its 520 events and deletes them from its queue; the deletes reach S (same endpoint id
# and event ids as S's 180 queued rows) while S's endpoint stays paused.
on pub q -c "SELECT pg_sync.resume_endpoint('hook')" >/dev/null
receiver_wait_events RP 520 30
on pub wait_for "P's queue empty" 30 cond "NOT EXISTS (SELECT FROM pg_sync._queue)"
lsn=$(on pub q -c "SELECT pg_current_wal_lsn()")
on pub wait_for "S caught up with P (slot sub confirmed $lsn)" 30 \
    cond "(SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = 'sub')"
app() { q -c "SELECT count(*) || ' ' || md5(string_agg(format('%s:%s:%s', id, v, note), ',' ORDER BY id)) FROM items WHERE id < 1000000"; }
p_app=$(on pub app)
assert_eq "$(on sub app)" "$p_app" "a: P's rows of items on S (count md5)"
assert_eq "${p_app%% *}" 250 "a: rows of items on P"
echo "a) P's 520 events delivered to RP, P's queue empty, S caught up (items identical: ${p_app%% *} rows) after $((SECONDS - START)) s"

# S's queue is untouched: same rows, every column, as before P's deliveries and deletes.
on sub q -c "$QUEUE_ROWS" >"$WORK/s_rows_after.json"
cmp -s "$WORK/s_rows_before.json" "$WORK/s_rows_after.json" \
    || fail "a: S's queue changed while P delivered and deleted its events: $(on sub q -c "SELECT count(*) FROM pg_sync._queue") rows left of 180; diff: $(diff <($PY -m json.tool "$WORK/s_rows_before.json") <($PY -m json.tool "$WORK/s_rows_after.json") | head -12)"
# The replicated app rows produced no capture on S: the queue holds only S's keys and emits, and
# S's sequence moved only for S's 180 events (P wrote 410 row changes to items after the copy).
assert_eq "$(on sub q -c "SELECT count(*) FROM pg_sync._queue WHERE op <> 'emit' AND (key->>'id')::int < 1000000")" 0 \
    "a: S's queued events for P's keys (capture of replicated rows)"
assert_eq "$(on sub q -c "SELECT last_value FROM pg_sync._queue_id_seq")" 180 "a: S's queue sequence"
assert_eq "$(on sub q -c "SELECT count(*) FROM items WHERE id < 1000000")" 250 "a: replicated rows of items on S"

# S's configuration and state are its own.
assert_eq "$(on sub q -c "SELECT string_agg(format('%s|%s|%s|%s|%s', id, name, url, secret = '$SECRET_S', headers::text), ';') FROM pg_sync._endpoints")" \
    "1|hook|$RS_URL|t|{\"X-Side\": \"subscriber\"}" "a: S's _endpoints"
assert_eq "$(on sub q -c "SELECT paused FROM pg_sync.endpoints")" t "a: S's endpoint still paused (P's resume not applied)"
assert_eq "$(on sub q -c "SELECT count(*) || ' ' || string_agg(tbl::text, ',') FROM pg_sync._tracked")" "1 items" "a: S's _tracked"
assert_eq "$(on sub q -c "SELECT count(*) FROM pg_sync._attempts")" 0 "a: S's _attempts (S sent nothing yet; P made $(on pub q -c "SELECT count(*) FROM pg_sync._attempts") attempts)"
assert_eq "$(on sub q -c "SELECT coalesce(sum(delivered_total), 0) FROM pg_sync.endpoint_status")" 0 "a: S's delivered_total"
assert_eq "$(on sub q -c "SELECT count(*) FROM pg_sync._dead_letters") $(on sub q -c "SELECT count(*) FROM pg_sync._backfills")" "0 0" \
    "a: S's dead letters and backfills"
# Rows of every pg_sync table holding P's URL, secret or header value: none on S, some on P.
leaks="SELECT coalesce(sum((xpath('/row/n/text()', query_to_xml(format(
            'SELECT count(*) AS n FROM pg_sync.%I t WHERE strpos(t::text, %L) > 0 OR strpos(t::text, %L) > 0 OR strpos(t::text, %L) > 0',
            c.relname, '$SECRET_P', '$TOKEN_P', '$RP_URL'), false, true, '')))[1]::text::int), 0)
         FROM pg_class c WHERE c.relnamespace = 'pg_sync'::regnamespace AND c.relkind = 'r'"
p_rows=$(on pub q -c "$leaks")
[ "$p_rows" -ge 1 ] || fail "a: the leak query finds P's endpoint on P itself: $p_rows rows"
assert_eq "$(on sub q -c "$leaks")" 0 "a: rows of S's pg_sync tables holding P's URL, secret or header value"
on pub q -c "CHECKPOINT" >/dev/null
on sub q -c "CHECKPOINT" >/dev/null
p_files=$(grep -rlaF -e "$SECRET_P" -e "$TOKEN_P" "${SRV_DIR[pub]}/data" | wc -l)
s_files=$(grep -rlaF -e "$SECRET_P" -e "$TOKEN_P" "${SRV_DIR[sub]}/data" || true)
[ "$p_files" -ge 1 ] || fail "a: P's secret is in no file of P's data directory (the grep proves nothing)"
[ -z "$s_files" ] || fail "a: P's secret or header value is in S's data directory: $s_files"
echo "a) S's queue untouched (180 rows), its configuration its own; P's URL/secret/token in $p_rows row(s) and $p_files file(s) on P, none on S"

# health(): the publication on P, the subscription on S.
assert_eq "$(on pub q -c "SELECT severity || ' ' || (detail LIKE 'publication pub publishes pg_sync''s internal tables%') FROM pg_sync.health() WHERE problem = 'published pg_sync tables'")" \
    "warning true" "a: health() on P"
assert_eq "$(on sub q -c "SELECT severity || ' ' || (detail LIKE 'subscription sub replicates pg_sync''s internal tables%') FROM pg_sync.health() WHERE problem = 'replicated pg_sync tables'")" \
    "warning true" "a: health() on S"
assert_eq "$(on pub q -c "SELECT count(*) FROM pg_sync.health() WHERE problem = 'replicated pg_sync tables'")" 0 "a: P has no subscription"
assert_eq "$(on sub q -c "SELECT count(*) FROM pg_sync.health() WHERE problem = 'published pg_sync tables'")" 0 "a: S has no publication"

# S delivers its own 180 events, and only those.
on sub q -c "SELECT pg_sync.resume_endpoint('hook')" >/dev/null
receiver_wait_events RS 180 30
on sub wait_for "S's queue empty" 30 cond "NOT EXISTS (SELECT FROM pg_sync._queue)"
on sub wait_for "S's delivered_total 180" 10 cond "(SELECT delivered_total = 180 FROM pg_sync.endpoint_status)"
on pub wait_for "P's delivered_total 520" 10 cond "(SELECT delivered_total = 520 FROM pg_sync.endpoint_status)"
check_delivered RP "$WORK/p_events.json" "a) RP (P's receiver)"
check_delivered RS "$WORK/s_events.json" "a) RS (S's receiver)"
assert_eq "$(rq RP 'sorted({r["headers"].get("x-token") == "'"$TOKEN_P"'" and "x-side" not in r["headers"] for r in recs})')" "[True]" \
    "a: RP's requests carry P's header only"
assert_eq "$(rq RS 'sorted({r["headers"].get("x-side") == "subscriber" and "x-token" not in r["headers"] for r in recs})')" "[True]" \
    "a: RS's requests carry S's header only"
# One more write on P after the resume on S: still not captured on S, still delivered by P.
on pub q -c "INSERT INTO items VALUES (5000, 0, 'late')" >/dev/null
receiver_wait_events RP 521 15
on sub wait_for "row 5000 on S" 15 cond "EXISTS (SELECT FROM items WHERE id = 5000)"
assert_eq "$(on sub q -c "SELECT last_value || ' ' || (SELECT count(*) FROM pg_sync._queue) FROM pg_sync._queue_id_seq")" "180 0" \
    "a: S captured nothing for the replicated row 5000"
assert_eq "$(rq RS 'sum(len(r["events"] or []) for r in ok)')" 180 "a: RS events after row 5000"
echo "a) done after $((SECONDS - START)) s"

# =================================================================================================
# b) a replicated TRUNCATE of a pg_sync table is refused, and S keeps its rows
# =================================================================================================
counts="SELECT string_agg(format('%s=%s', c.relname, (xpath('/row/n/text()', query_to_xml(
            format('SELECT count(*) AS n FROM pg_sync.%I', c.relname), false, true, '')))[1]), ' ' ORDER BY c.relname)
          FROM pg_class c WHERE c.relnamespace = 'pg_sync'::regnamespace AND c.relkind = 'r'"
s_counts=$(on sub q -c "$counts")
s_attempts=$(on sub q -c "SELECT count(*) FROM pg_sync._attempts")
[ "$s_attempts" -ge 1 ] || fail "b: S has no attempts to lose ($s_counts)"
p_attempts=$(on pub q -c "SELECT count(*) FROM pg_sync._attempts")
s_log_lines() { grep -c 'pg_sync does not apply a replicated TRUNCATE of its table _attempts' "${SRV_DIR[sub]}/server.log" || true; }
errors_before=$(s_log_lines)
assert_eq "$errors_before" 0 "b: truncate errors on S before the TRUNCATE"
on pub q -c "TRUNCATE pg_sync._attempts" >/dev/null
assert_eq "$(on pub q -c "SELECT count(*) FROM pg_sync._attempts")" 0 "b: P's _attempts after TRUNCATE (had $p_attempts)"
# Until the apply worker refused it twice (a retry), or S's _attempts changed (applied: a failure).
refused_twice() { [ "$(s_log_lines)" -ge 2 ] || [ "$(on sub q -c "SELECT count(*) FROM pg_sync._attempts")" != "$s_attempts" ]; }
wait_for "S's apply worker refusing the TRUNCATE twice" 30 refused_twice
assert_eq "$(on sub q -c "$counts")" "$s_counts" "b: S's pg_sync tables (row counts) after the replicated TRUNCATE"
on sub wait_for "apply_error_count in pg_stat_subscription_stats" 15 \
    cond "(SELECT apply_error_count >= 1 FROM pg_stat_subscription_stats WHERE subname = 'sub')"
grep -q 'during message type "TRUNCATE"' "${SRV_DIR[sub]}/server.log" \
    || fail "b: S's log has no apply context for the TRUNCATE: $(grep -A3 'replicated TRUNCATE' "${SRV_DIR[sub]}/server.log" | head -8)"
# The subscription is stuck at the TRUNCATE: a change P made after it has not arrived after two
# apply attempts (both reached the TRUNCATE first).
assert_eq "$(on sub q -c "SELECT count(*) FROM items WHERE id = 5001")" 0 "b: (precondition)"
on pub q -c "INSERT INTO items VALUES (5001, 0, 'after truncate')" >/dev/null
n=$(s_log_lines)
more_errors() { [ "$(s_log_lines)" -ge $((n + 1)) ]; }
wait_for "another refused TRUNCATE on S" 30 more_errors
assert_eq "$(on sub q -c "SELECT count(*) FROM items WHERE id = 5001")" 0 "b: P's row written after the TRUNCATE on S"
echo "b) S refused the replicated TRUNCATE $(s_log_lines) times; S's tables kept their rows ($s_counts); later changes held back"
grep -m1 'pg_sync does not apply a replicated TRUNCATE' "${SRV_DIR[sub]}/server.log" | sed 's/^/   S log: /'
on sub q -c "ALTER SUBSCRIPTION sub DISABLE" >/dev/null
dropped=$(on sub q -c "DROP SUBSCRIPTION sub" 2>&1)
assert_contains "$dropped" 'dropped replication slot "sub" on publisher'
assert_eq "$(on pub q -c "SELECT count(*) FROM pg_replication_slots")" 0 "b: slots left on P after DROP SUBSCRIPTION"
assert_eq "$(on sub q -c "SELECT count(*) FROM pg_sync.health() WHERE problem = 'replicated pg_sync tables'")" 0 \
    "b: health() on S after DROP SUBSCRIPTION"
assert_eq "$(on sub q -c "$counts")" "$s_counts" "b: S's pg_sync tables after DROP SUBSCRIPTION"
assert_eq "$(on sub q -c "SELECT count(*) FROM pg_sync.workers")" 1 "b: S's delivery worker"
echo "b) subscription disabled and dropped, its slot gone from P, after $((SECONDS - START)) s"
srv_stop sub
srv_stop pub

# =================================================================================================
# c) physical standby: no worker during recovery, delivery after promotion
# =================================================================================================
receiver_start RC --mode status --status 500
srv_start primary
primary_up_ms=$(date +%s%3N)
launcher_up() { [ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_sync launcher'")" == 1 ]; }
on primary wait_for "the primary's pg_sync launcher" 15 launcher_up
launcher_ms=$(($(date +%s%3N) - primary_up_ms))
on primary q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('hook', '$RC_URL', batch_size => 40, max_attempts => 1000,
                               retry_base_ms => 50, retry_max_ms => 300);
$APP_TABLE
SELECT pg_sync.track('items', 'hook');
SQL
has_worker() { [ "$(q -c "SELECT count(*) FROM pg_sync.workers")" == 1 ]; }
on primary wait_for "the primary's delivery worker" 15 has_worker
# The process check sees pg_sync's processes where they run.
primary_procs=$(pg_sync_children "${SRV_PID[primary]}")
[ "$(grep -c 'pg_sync worker' <<<"$primary_procs")" == 1 ] || fail "c: pg_sync processes of the primary: [$primary_procs]"
assert_eq "$(on primary q -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_sync worker'")" 1 \
    "c: pg_sync worker in the primary's pg_stat_activity"

SB_DIR=$(mktemp -d /tmp/pg_sync_standby.XXXXXX)
chown "$PG_OS_USER" "$SB_DIR"
chmod 755 "$SB_DIR"
SRV_DIR[standby]=$SB_DIR SRV_PORT[standby]=$(pg_free_port)
SERVERS+=(standby)
pg_as_user "'$PG_BIN/pg_basebackup' -h 127.0.0.1 -p ${SRV_PORT[primary]} -U postgres -D '$SB_DIR/data' -R -X stream -c fast >'$SB_DIR/basebackup.log' 2>&1" \
    || fail "c: pg_basebackup: $(cat "$SB_DIR/basebackup.log")"
cat >>"$SB_DIR/data/postgresql.conf" <<CONF
port = ${SRV_PORT[standby]}
unix_socket_directories = '$SB_DIR'
CONF
pg_as_user "'$PG_BIN/pg_ctl' -D '$SB_DIR/data' -l '$SB_DIR/server.log' -w -t 60 start >/dev/null" \
    || fail "c: standby did not start: $(tail -n 20 "$SB_DIR/server.log")"
SRV_PID[standby]=$(head -n 1 "$SB_DIR/data/postmaster.pid")
standby_up_ms=$(date +%s%3N)
assert_eq "$(on standby q -c "SELECT pg_is_in_recovery()")" t "c: standby in recovery"

# standby_clean: fails the test if any pg_sync process runs for the standby; counts the checks.
checks=0
standby_clean() {
    local procs n
    procs=$(pg_sync_children "${SRV_PID[standby]}")
    [ -z "$procs" ] || fail "c: pg_sync process of the standby during recovery: $procs"
    n=$(on standby q -c "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_sync%')
                              + (SELECT count(*) FROM pg_sync.workers) || ' ' || pg_is_in_recovery()")
    assert_eq "$n" "0 true" "c: pg_sync backends or workers on the standby in recovery"
    checks=$((checks + 1))
}

# 305 events on the primary, while the standby streams; the receiver answers 500, so they stay.
on primary q >/dev/null <<'SQL'
INSERT INTO items SELECT g, 0, 'c' FROM generate_series(1, 200) g;
UPDATE items SET v = 1, note = 'c1' WHERE id <= 50;
DELETE FROM items WHERE id BETWEEN 151 AND 200;
SELECT pg_sync.emit('hook', 'c.note', jsonb_build_object('n', g), key => 'c' || g) FROM generate_series(1, 5) g;
SQL
# The window lasts until the primary's worker has kept failing for two sweep intervals (2 s) and
# the standby has replayed all of it: on the primary the launcher is up within milliseconds of the
# start (printed below) and a database's worker follows at once, so a standby that started them
# would be caught at many of the checks.
primary_failing_2s() { standby_clean; [ "$(rq RC 'len(recs) >= 5 and recs[-1]["t"] - recs[0]["t"] >= 2')" == True ]; }
wait_for "the primary's worker failing for 2 s" 30 primary_failing_2s
on primary q -c "$QUEUE_EVENTS" >"$WORK/c_events.json"
assert_eq "$(on primary q -c "SELECT count(*) || ' ' || min(id) || '..' || max(id) FROM pg_sync._queue")" "305 1..305" "c: primary's queue"
assert_eq "$(rq RC 'len(ok)')" 0 "c: 2xx answers before promotion"
marker=$(on primary q -c "SELECT pg_current_wal_lsn()")
replayed() { standby_clean; on standby cond "pg_last_wal_replay_lsn() >= '$marker'"; }
wait_for "standby replayed past $marker" 30 replayed
window_ms=$(($(date +%s%3N) - standby_up_ms))
on standby q -c "$QUEUE_EVENTS" >"$WORK/c_standby_events.json"
cmp -s "$WORK/c_events.json" "$WORK/c_standby_events.json" || fail "c: the standby's queue differs from the primary's"
primary_failures=$(rq RC 'len(recs)')
echo "c) standby watched in recovery for ${window_ms} ms: $checks checks, never a pg_sync process, backend or worker (the primary's launcher was up ${launcher_ms} ms after pg_ctl start returned); the primary's worker failed $primary_failures requests meanwhile"

srv_stop primary
standby_clean
on standby q -c "$QUEUE_EVENTS" >"$WORK/c_standby_events.json"
cmp -s "$WORK/c_events.json" "$WORK/c_standby_events.json" || fail "c: the standby's queue differs from the primary's after its stop"
assert_eq "$(rq RC 'len(ok)')" 0 "c: 2xx answers before promotion"
receiver_mode RC '{"mode": "ok"}'
promoted_ms=$(date +%s%3N)
pg_as_user "'$PG_BIN/pg_ctl' -D '$SB_DIR/data' -w -t 60 promote >/dev/null" || fail "c: promote failed"
assert_eq "$(on standby q -c "SELECT pg_is_in_recovery()")" f "c: promoted"
on standby wait_for "a delivery worker on the promoted standby" 30 has_worker
receiver_wait_events RC 305 30
on standby wait_for "the promoted standby's queue empty" 30 cond "NOT EXISTS (SELECT FROM pg_sync._queue)"
check_delivered RC "$WORK/c_events.json" "c) RC after promotion"
on standby wait_for "delivered_total 305 on the promoted standby" 10 cond "(SELECT delivered_total = 305 FROM pg_sync.endpoint_status)"
assert_eq "$(pg_sync_children "${SRV_PID[standby]}" | grep -c 'pg_sync worker')" 1 "c: pg_sync worker processes of the promoted standby"
echo "c) promoted standby delivered all 305 events $(($(date +%s%3N) - promoted_ms)) ms after pg_ctl promote was started"

echo "ok: 190_replication in $((SECONDS - START)) s"
