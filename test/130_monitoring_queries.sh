#!/usr/bin/env bash
# docs/monitoring/postgres_exporter.yml and alerts.yml: every query runs, as a member of
# pgsync_monitor, against a real server with delivery going on, and returns exactly the columns
# its metrics declare; every alert expression uses a metric the queries produce.
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

"$PY" - docs/monitoring/postgres_exporter.yml docs/monitoring/alerts.yml <<'PY'
import json, re, subprocess, sys, yaml
queries = yaml.safe_load(open(sys.argv[1]))
alerts = yaml.safe_load(open(sys.argv[2]))
metric_names = set()
for group, spec in queries.items():
    declared = [next(iter(m)) for m in spec["metrics"]]
    sql = "SELECT json_agg(x) FROM (" + spec["query"].rstrip().rstrip(";") + ") x"
    out = subprocess.run(["psql", "-X", "-At", "-U", "exporter", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True)
    assert out.returncode == 0, f"{group}: {out.stderr}"
    rows = json.loads(out.stdout.strip() or "null") or []
    assert rows, f"{group}: no rows"
    assert list(rows[0]) == declared, f"{group}: columns {list(rows[0])} != metrics {declared}"
    for m in spec["metrics"]:
        name, info = next(iter(m.items()))
        if info["usage"] != "LABEL":
            metric_names.add(f"{group}_{name}")
    print(f"{group}: {len(rows)} row(s): {rows[0]}")
for rule in alerts["groups"][0]["rules"]:
    used = set(re.findall(r"\bpg_sync_[a-z0-9_]+", rule["expr"]))
    assert used and used <= metric_names, f"{rule['alert']}: unknown metric in {rule['expr']}"
print(f"{len(alerts['groups'][0]['rules'])} alert rules use known metrics")
PY
echo "ok: monitoring queries run as pgsync_monitor and match their metrics; alert rules use them"
