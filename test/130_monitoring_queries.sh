#!/usr/bin/env bash
# docs/monitoring/: the postgres_exporter query file and the sql_exporter collector run every
# query, as a member of pgsync_monitor, against a real server with delivery going on; each file's
# columns are what its metrics map (types, NULLs: test/lib/monitoring_files.py), both produce the
# same metrics, and every alert rule and every query of the Grafana dashboard uses only those.
# Then, when installed (Debian 12: prometheus-postgres-exporter), the real postgres_exporter runs
# with the query file and exports every metric; sql_exporter and Grafana are not in Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
PY=/usr/bin/python3
trap delivery_test_exit EXIT
pg_start monitoring
receiver_start R --mode fail_first --n 2 --status 500
q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
CREATE ROLE exporter LOGIN IN ROLE pgsync_monitor;
CREATE TABLE t (id int PRIMARY KEY);
SELECT pg_sync.create_endpoint('r', '$R_URL', retry_base_ms => 20, retry_max_ms => 100);
SELECT pg_sync.track('t', 'r');
INSERT INTO t SELECT generate_series(1, 5);
SQL
drained() { [ "$(q -c "SELECT pending FROM pg_sync.endpoint_status WHERE endpoint = 'r'")" == 0 ]; }
wait_for "delivery" 30 drained
# One problem for pg_sync.health() to report (it returns nothing when all is well): a paused
# endpoint with a pending event, and a threshold of 1 ms for the exporter's role.
q >/dev/null <<'SQL'
SELECT pg_sync.create_endpoint('p', 'http://127.0.0.1:9/p');
SELECT pg_sync.pause_endpoint('p');
SELECT pg_sync.emit('p', 't', '{}');
ALTER ROLE exporter SET pg_sync.health_max_pending_age = '1ms';
-- A running backfill (held back by the paused endpoint) for pg_sync_backfill.
CREATE TABLE b (id int PRIMARY KEY);
INSERT INTO b SELECT generate_series(1, 1000);
ANALYZE b;
SELECT pg_sync.track('b', 'p');
SELECT pg_sync.backfill('b', 'p', 10);
SQL
wait_for "a backfill in progress" 30 \
    bash -c "[ \"\$(psql -XAtc \"SELECT rows_scanned > 0 FROM pg_sync.backfills\")\" == t ]"

"$PY" test/lib/monitoring_files.py docs/monitoring/postgres_exporter.yml docs/monitoring/pg_sync.collector.yml \
    docs/monitoring/alerts.yml docs/monitoring/grafana-dashboard.json
echo "ok: both exporter files run as pgsync_monitor and match their metrics; alert rules and dashboard use them"

# The real postgres_exporter (Debian 12: prometheus-postgres-exporter) with the query file, when
# installed: every metric of the file is in its /metrics. (sql_exporter and Grafana are not in
# Debian: their files are checked above only.)
exporter=$(command -v prometheus-postgres-exporter || command -v postgres_exporter || true)
if [ -z "$exporter" ]; then
    echo "skipped: postgres_exporter not installed (apt-get install prometheus-postgres-exporter)"
else
    port=$(pg_free_port)
    DATA_SOURCE_NAME="postgresql://exporter@127.0.0.1:$PGPORT/postgres?sslmode=disable" \
        "$exporter" --web.listen-address="127.0.0.1:$port" --extend.query-path=docs/monitoring/postgres_exporter.yml \
        --disable-default-metrics --disable-settings-metrics >"$PG_DIR/exporter.log" 2>&1 &
    exporter_pid=$!
    trap 'kill $exporter_pid 2>/dev/null || true; delivery_test_exit' EXIT
    scrape() { curl -sf --noproxy '*' "http://127.0.0.1:$port/metrics" >"$PG_DIR/metrics.txt" &&
               grep -q '^pg_sync_endpoint_pending' "$PG_DIR/metrics.txt"; }
    wait_for "postgres_exporter to export pg_sync metrics (log: $PG_DIR/exporter.log)" 30 scrape
    "$PY" test/lib/monitoring_files.py --scrape docs/monitoring/postgres_exporter.yml "$PG_DIR/metrics.txt"
    echo "ok: $("$exporter" --version 2>&1 | head -n 1): every metric of the query file exported"
fi
