#!/usr/bin/env bash
# drop_endpoint() waits for writers that captured events for the endpoint and have not
# committed yet: it then sees their events (refusing without force), and no event is left
# behind for an endpoint that no longer exists. The same for emit().
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/session.sh
pg_start dropwait
trap pg_stop EXIT

q >/dev/null <<'SQL'
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('e', 'http://127.0.0.1:9/e');
CREATE TABLE t (id int PRIMARY KEY);
SELECT pg_sync.track('t', 'e');
SQL

# The writer: one long-lived session (test/lib/session.sh).
session_open
waiting_on_lock() {
    [ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%drop_endpoint%'")" == "1" ]
}

# 1. Without force: the drop waits for the open transaction, then refuses.
session "BEGIN; INSERT INTO t VALUES (1);"
psql -X -q -At -c "SELECT pg_sync.drop_endpoint('e')" >"$PG_DIR/drop1.out" 2>&1 &
drop_pid=$!
wait_for "drop_endpoint to wait for the writer's lock" 30 waiting_on_lock
session "COMMIT;"
wait "$drop_pid" && fail "drop_endpoint succeeded although an event was pending"
assert_contains "$(cat "$PG_DIR/drop1.out")" 'endpoint "e" has 1 pending event'

# 2. With force, while another transaction emits to it: it waits, then removes everything.
session "BEGIN; SELECT pg_sync.emit('e', 'late', '{}'); INSERT INTO t VALUES (2);"
psql -X -q -At -c "SELECT pg_sync.drop_endpoint('e', force => true)" >"$PG_DIR/drop2.out" 2>&1 &
drop_pid=$!
wait_for "forced drop_endpoint to wait" 30 waiting_on_lock
session "COMMIT;"
wait "$drop_pid" || { cat "$PG_DIR/drop2.out"; fail "forced drop_endpoint failed"; }
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue")" "0" "events left behind for a dropped endpoint"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync.tracked_tables")" "0" "tracking left behind"
session "INSERT INTO t VALUES (3);"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue")" "0" "capture after the endpoint was dropped"
echo "ok: drop_endpoint waits for uncommitted captures and emits, and leaves nothing behind"
