#!/usr/bin/env bash
# Indexes of the queue created and rebuilt CONCURRENTLY while writers capture: every capture
# succeeds, and amcheck finds every queue row in every index (the trigger maintains indexes by
# hand, so it must see new indexes as soon as they are ready for inserts, and skip them before).
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
pg_start qindex
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
q -c "CREATE INDEX CONCURRENTLY queue_ep_idx ON pg_sync._queue (endpoint_id, id)"
q -c "REINDEX INDEX CONCURRENTLY pg_sync._queue_pkey"
q -c "CREATE INDEX CONCURRENTLY queue_captured_idx ON pg_sync._queue (captured_at)"
wait "$bench_pid" || { cat "$PG_DIR/pgbench.log"; fail "writers failed while the queue's indexes changed"; }
grep -q "number of failed transactions: 0" "$PG_DIR/pgbench.log" || { cat "$PG_DIR/pgbench.log"; fail "some captures failed"; }

assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue")" "$(q -c "SELECT count(*) FROM t")" "one event per row"
for idx in $(q -c "SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'pg_sync._queue'::regclass"); do
    q -c "SELECT bt_index_check('$idx', true)" >/dev/null || fail "amcheck: $idx misses rows"
done
assert_eq "$(q -c "SELECT count(*) FROM pg_index WHERE indrelid = 'pg_sync._queue'::regclass")" "3" "indexes on the queue"
echo "ok: $(q -c "SELECT count(*) FROM t") rows captured while queue indexes were built concurrently; amcheck clean"
