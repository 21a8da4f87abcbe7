#!/usr/bin/env bash
# Queue rotation (docs/delivery.md, "Queue rotation"), with pg_sync.queue_rotation_interval at
# 300 ms so that many rotations happen in a few seconds:
#   a) steady writes with delivery: the partitions take turns and each is truncated (a new file),
#      every event arrives exactly once, and once the writes stop every partition returns to its
#      empty size (heap 0 bytes) without vacuum;
#   b) a writer that inserted into a partition and has not committed yet keeps it from being
#      truncated (its lock is refused) long after rotation moved on; after it commits, its events
#      are delivered: truncation loses nothing;
#   c) stragglers: events of a paused endpoint left in a partition that is no longer current are
#      carried over into the current one (ids unchanged) and the old partition is truncated;
#      after resume they arrive once each, in id order;
#   d) a session holding a lock on a partition delays its truncation only.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
pg_start rotation "pg_sync.queue_rotation_interval = '300ms'"
trap delivery_test_exit EXIT
receiver_start main
receiver_start held

q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
CREATE TABLE t (id int PRIMARY KEY, v text);
CREATE TABLE u (id int PRIMARY KEY, v text);
CREATE SEQUENCE filler START 10000000;
SELECT pg_sync.create_endpoint('main', '$main_URL', batch_size => 50);
SELECT pg_sync.create_endpoint('held', '$held_URL');
SELECT pg_sync.track('t', 'main');
SELECT pg_sync.track('u', 'held');
SQL

filenodes() { q -c "SELECT string_agg(pg_relation_filenode(format('pg_sync._queue_%s', p)::regclass)::text, ',' ORDER BY p) FROM generate_series(0, 2) p"; }
current() { q -c "SELECT current_part FROM pg_sync._queue_rotation"; }
# One more event, so that rotation has something to rotate for.
fill() { q -c "INSERT INTO t VALUES (nextval('filler'), 'v')" >/dev/null; }
heap_sizes() { q -c "SELECT string_agg(pg_relation_size(format('pg_sync._queue_%s', p)::regclass)::text, ',' ORDER BY p) FROM generate_series(0, 2) p"; }

# --- a) steady writes ---------------------------------------------------------------------------
start_nodes=$(filenodes)
seen_parts=$(current)
n=0
# Writes 100 rows per call until the writers have used all three partitions (and at least 4,000
# rows are written), so that every partition has been current, retired and emptied at least once.
write_batch() {
    local i=$((n / 100 + 1))
    q -c "INSERT INTO t SELECT g, 'v' FROM generate_series($((i * 100)), $((i * 100 + 99))) g"
    n=$((n + 100))
    local c; c=$(current)
    [[ ",$seen_parts," == *",$c,"* ]] || seen_parts="$seen_parts,$c"
    [ "$(tr ',' '\n' <<<"$seen_parts" | sort -u | wc -l)" -eq 3 ] && [ "$n" -ge 4000 ]
}
wait_for "writers to use all three partitions" 60 write_batch
receiver_wait_events main "$n" 60
all_empty() { [ "$(heap_sizes)" == "0,0,0" ] && [ "$(q -c "SELECT count(*) FROM pg_sync._queue")" == 0 ]; }
wait_for "every partition truncated after the drain" 30 all_empty
end_nodes=$(filenodes)
IFS=, read -r -a a0 <<<"$start_nodes"
IFS=, read -r -a a1 <<<"$end_nodes"
for p in 0 1 2; do
    [ "${a0[$p]}" != "${a1[$p]}" ] || fail "partition $p was never truncated (filenode ${a0[$p]})"
done
[ "$(tr ',' '\n' <<<"$seen_parts" | sort -u | wc -l)" -eq 3 ] || fail "writers saw only partitions $seen_parts"
assert_eq "$(rq main 'len(set(e["id"] for r in ok for e in r["events"]))')" "$n" "distinct events delivered"
assert_eq "$(rq main 'sum(len(r["events"]) for r in ok)')" "$n" "events delivered (no duplicates)"
echo "a) $n events delivered once each; writers used partitions $seen_parts; every partition truncated; queue back to 0 bytes"

# --- b) an uncommitted writer keeps its partition --------------------------------------------------
# The writer inserts, then waits (holding its transaction open) until the test says commit.
wpart=$(current)
mkfifo "$PG_DIR/writer_in"
chmod 666 "$PG_DIR/writer_in"
psql -X -q -v ON_ERROR_STOP=1 <"$PG_DIR/writer_in" >"$PG_DIR/writer.out" 2>&1 &
writer_pid=$!
exec 7>"$PG_DIR/writer_in"
echo "BEGIN; INSERT INTO t SELECT g, 'late' FROM generate_series(100001, 100020) g; SELECT 'inserted';" >&7
wait_for "the writer to insert" 20 grep -q inserted "$PG_DIR/writer.out"
wrote_to=$(q -c "SELECT l.relation::regclass FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE a.pid <> pg_backend_pid() AND l.mode = 'RowExclusiveLock' AND l.relation::regclass::text LIKE 'pg_sync._queue\__' LIMIT 1")
[ -n "$wrote_to" ] || fail "could not find the partition the open writer wrote to"
node_before=$(q -c "SELECT pg_relation_filenode('$wrote_to')")
# Keep rotating with other writes until the writer's partition has been non-current for many
# check intervals (the worker tried to truncate it and was refused).
moved_away() {
    fill
    [ "$(current)" != "${wrote_to#pg_sync._queue_}" ]
}
wait_for "rotation to move away from $wrote_to" 20 moved_away
t0=$SECONDS
tried() { fill; [ $((SECONDS - t0)) -ge 3 ]; }
wait_for "3 s of rotations" 10 tried
assert_eq "$(q -c "SELECT pg_relation_filenode('$wrote_to')")" "$node_before" "partition of an uncommitted writer truncated"
echo "COMMIT;" >&7
exec 7>&-
wait "$writer_pid"
late_arrived() { [ "$(rq main 'len([e for r in ok for e in r["events"] if e["new"] and e["new"]["v"] == "late"])')" -ge 20 ]; }
wait_for "the late writer's 20 events" 30 late_arrived
truncated_now() { [ "$(q -c "SELECT pg_relation_filenode('$wrote_to')")" != "$node_before" ]; }
wait_for "$wrote_to truncated after the writer committed" 30 truncated_now
echo "b) $wrote_to kept while a writer had rows in it uncommitted (3 s of rotations); its 20 events arrived after COMMIT; then truncated"

# --- c) stragglers are carried over --------------------------------------------------------------
q -c "SELECT pg_sync.pause_endpoint('held')" >/dev/null
q -c "INSERT INTO u SELECT g, 'held' FROM generate_series(1, 500) g"
spart=$(q -c "SELECT DISTINCT part FROM pg_sync._queue WHERE endpoint_id = (SELECT id FROM pg_sync._endpoints WHERE name = 'held')")
assert_eq "$(wc -l <<<"$spart")" "1" "held events in one partition"
ids_before=$(q -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM pg_sync._queue WHERE part = $spart AND endpoint_id = (SELECT id FROM pg_sync._endpoints WHERE name = 'held')")
carried() {
    fill
    [ "$(q -c "SELECT count(*) FROM pg_sync._queue WHERE part = $spart")" == 0 ] &&
        [ "$(q -c "SELECT count(*) FROM pg_sync._queue WHERE endpoint_id = (SELECT id FROM pg_sync._endpoints WHERE name = 'held')")" == 500 ]
}
wait_for "the 500 held events to leave partition $spart" 30 carried
assert_eq "$(q -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM pg_sync._queue WHERE endpoint_id = (SELECT id FROM pg_sync._endpoints WHERE name = 'held')")" "$ids_before" "ids of the carried events"
q -c "SELECT pg_sync.resume_endpoint('held')" >/dev/null
receiver_wait_events held 500 30
assert_eq "$(rq held 'sum(len(r["events"]) for r in ok)')" "500" "held events delivered once"
assert_eq "$(rq held '",".join(str(i) for i in sorted(e["id"] for r in ok for e in r["events"]))')" "$ids_before" "ids delivered"
echo "c) 500 events of a paused endpoint carried out of partition $spart with their ids; after resume delivered once each"

# --- d) a session holding a lock on a partition ------------------------------------------------------
lpart=$(current)
mkfifo "$PG_DIR/locker_in"
chmod 666 "$PG_DIR/locker_in"
psql -X -q -v ON_ERROR_STOP=1 <"$PG_DIR/locker_in" >"$PG_DIR/locker.out" 2>&1 &
locker_pid=$!
exec 8>"$PG_DIR/locker_in"
echo "BEGIN; SELECT count(*) FROM pg_sync._queue_$lpart; SELECT 'locked';" >&8
wait_for "the locker" 20 grep -q locked "$PG_DIR/locker.out"
lnode=$(q -c "SELECT pg_relation_filenode('pg_sync._queue_$lpart')")
q -c "INSERT INTO t SELECT g, 'd' FROM generate_series(3000001, 3000100) g"
moved_on() { fill; [ "$(current)" != "$lpart" ]; }
wait_for "rotation away from partition $lpart" 20 moved_on
t0=$SECONDS
wait_for "3 s of rotations" 10 tried
assert_eq "$(q -c "SELECT pg_relation_filenode('pg_sync._queue_$lpart')")" "$lnode" "partition truncated under a reader's lock"
echo "COMMIT;" >&8
exec 8>&-
wait "$locker_pid"
wait_for "partition $lpart truncated after the reader ended" 30 bash -c "[ \"\$(psql -X -At -c \"SELECT pg_relation_filenode('pg_sync._queue_$lpart')\")\" != '$lnode' ]"
echo "d) a reader's lock on partition $lpart delayed its truncation until the reader ended"
assert_eq "$(grep -cE "ERROR|FATAL|PANIC" "$PG_DIR/server.log" || true)" "0" "errors in the server log"
echo "ok: queue rotation"
