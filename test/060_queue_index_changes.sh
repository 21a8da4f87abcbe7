#!/usr/bin/env bash
# Indexes of the queue's partitions created and rebuilt CONCURRENTLY while writers capture: every
# capture succeeds, and amcheck finds every queue row in every index (the trigger maintains
# indexes by hand, so it must see new indexes as soon as they are ready for inserts, and skip them
# before). The partitions rotate every 2 s meanwhile (sql/src/queue.sql), so writers move from one
# partition to the next while indexes change.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
pg_start qindex "pg_sync.queue_rotation_interval = '2s'"
trap pg_stop EXIT

q >/dev/null <<'SQL'
CREATE EXTENSION pg_sync;
CREATE EXTENSION amcheck;
SELECT pg_sync.create_endpoint('e', 'http://127.0.0.1:9/e');
CREATE TABLE t (id bigserial PRIMARY KEY, v int);
SELECT pg_sync.track('t', 'e');
SQL
echo "INSERT INTO t (v) SELECT g FROM generate_series(1, 10) g;" >"$PG_DIR/ins.sql"
chmod 644 "$PG_DIR/ins.sql"
pgbench -n -c 4 -j 2 -T 12 -f "$PG_DIR/ins.sql" >"$PG_DIR/pgbench.log" 2>&1 &
bench_pid=$!
has_rows() { [ "$(q -c "SELECT count(*) > 0 FROM pg_sync._queue")" == "t" ]; }
wait_for "writers to start" 30 has_rows
for p in 0 1 2; do
    q -c "CREATE INDEX CONCURRENTLY queue_${p}_ep_idx ON pg_sync._queue_$p (endpoint_id, id)"
    q -c "REINDEX INDEX CONCURRENTLY pg_sync._queue_${p}_pkey"
    q -c "CREATE INDEX CONCURRENTLY queue_${p}_captured_idx ON pg_sync._queue_$p (captured_at)"
done
wait "$bench_pid" || { cat "$PG_DIR/pgbench.log"; fail "writers failed while the queue's indexes changed"; }
grep -q "number of failed transactions: 0" "$PG_DIR/pgbench.log" || { cat "$PG_DIR/pgbench.log"; fail "some captures failed"; }

assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue")" "$(q -c "SELECT count(*) FROM t")" "one event per row"
parts="'pg_sync._queue_0'::regclass, 'pg_sync._queue_1'::regclass, 'pg_sync._queue_2'::regclass"
for idx in $(q -c "SELECT indexrelid::regclass FROM pg_index WHERE indrelid IN ($parts)"); do
    q -c "SELECT bt_index_check('$idx', true)" >/dev/null || fail "amcheck: $idx misses rows"
done
assert_eq "$(q -c "SELECT count(*) FROM pg_index WHERE indrelid IN ($parts)")" "9" "indexes on the queue's partitions"
assert_eq "$(q -c "SELECT count(DISTINCT part) > 1 FROM pg_sync._queue")" "t" "writers used more than one partition"
echo "ok: $(q -c "SELECT count(*) FROM t") rows captured while queue indexes were built concurrently; amcheck clean"
