#!/usr/bin/env bash
# The pg_sync demo: installs what is missing, builds, starts a throwaway PostgreSQL with
# pg_sync preloaded and a webhook receiver on loopback, syncs a small e-commerce schema live with
# a progress display (after a backfill of the existing product catalog), breaks the receiver for a moment to show retries and recovery, shows the
# status views, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
# Servers run as the OS user postgres (initdb refuses root), which needs root to arrange.
[ "$(id -u)" -eq 0 ] || exec sudo -E bash "$0" "$@"
scripts/setup.sh
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh

echo "== starting a throwaway PostgreSQL 15 (as OS user postgres, loopback only)"
pg_start demo
trap 'receiver_stop_all; pg_stop' EXIT
echo "   port $PGPORT, data directory $PG_DIR, postmaster PID $PG_PID"
secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
receiver_start RECV --secret "$secret"
echo "== webhook receiver on $RECV_URL (checks every signature; test/lib/receiver.py)"

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE EXTENSION pg_sync;
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer text NOT NULL, status text NOT NULL DEFAULT 'new',
    total numeric(12, 2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE payments (id bigint PRIMARY KEY, order_id bigint NOT NULL, amount numeric(12, 2), method text);
CREATE TABLE inventory (sku text PRIMARY KEY, on_hand int NOT NULL, reserved int NOT NULL DEFAULT 0);
INSERT INTO inventory SELECT 'sku-' || g, 1000, 0 FROM generate_series(1, 20) g;
-- The catalog existed before pg_sync: backfill sends its rows.
CREATE TABLE products (sku text PRIMARY KEY, name text NOT NULL, price numeric(10, 2) NOT NULL);
INSERT INTO products SELECT 'sku-' || g, 'Product ' || g, 5 + g % 50 FROM generate_series(1, 500) g;

-- Where changes go, and what is sent.
SELECT pg_sync.create_endpoint('warehouse', '$RECV_URL',
                               headers => '{"Authorization": "Bearer demo-token"}',
                               secret => '$secret', batch_size => 50,
                               retry_base_ms => 200, retry_max_ms => 2000);
SELECT pg_sync.track('orders', 'warehouse');
SELECT pg_sync.track('payments', 'warehouse', events => '{insert}');
SELECT pg_sync.track('products', 'warehouse');
SELECT pg_sync.track('inventory', 'warehouse', columns => '{on_hand}',
                     filter => 'NEW.on_hand < 990');   -- only low-stock changes
SQL
wait_for "the delivery worker" 30 bash -c '[ "$(psql -XAtc "SELECT count(*) FROM pg_sync.workers WHERE database = current_database()")" = 1 ]'
echo "== delivery worker running: $(psql -XAtc "SELECT 'pid ' || pid || ', ' || state FROM pg_sync.workers")"

echo "== the catalog already holds 500 products: pg_sync.backfill() sends them as op \"snapshot\" events"
echo "   (in the background, pages of 100 rows, each its own short transaction, consistent with writers)"
psql -XAtq -c "SELECT pg_sync.backfill('products', 'warehouse', 100)" >/dev/null 2>&1
wait_for "the backfill" 60 bash -c '[ "$(psql -XAtc "SELECT state FROM pg_sync.backfills")" = done ]'
psql -X -P pager=off -c "SELECT id, \"table\", endpoint, state, rows_scanned, batches, percent_done, finished_at - started_at AS took FROM pg_sync.backfills"

echo "== placing orders (each a transaction: order + payment + stock reservation); events arrive live"
total=400
# The figures, each what its label says:
#   captured  events pg_sync queued: every captured event (row change, backfilled row) takes the
#             next id of the queue's sequence at once (nothing in this demo rolls back, which would
#             skip ids). Not delivered_total + pending + dead of endpoint_status: pending drops the
#             moment events are delivered, delivered_total only when the worker next writes its
#             counters (every 200 ms), so that sum fell behind what the receiver had.
#   received  distinct events the receiver accepted (in requests it answered 2xx); a redelivered
#             event (at least once) counts once here and as a duplicate at the end.
captured() { psql -XAtc "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pg_sync._queue_id_seq"; }
received() { # distinct events accepted, events accepted with duplicates
    /usr/bin/python3 - "$RECV_OUT" <<'PY'
import json, sys
ids = [e["id"] for l in map(json.loads, open(sys.argv[1]))
       if l["status"] and 200 <= l["status"] < 300 for e in l["events"]]
print(len(set(ids)), len(ids))
PY
}
bar() {
    local done=$1 width=30 got
    local filled=$((done * width / total))
    read -r got _ < <(received)
    printf '\r   [%s%s] %3d/%d orders | events captured %5s, received %5s' \
        "$(printf '#%.0s' $(seq 1 $filled) 2>/dev/null)" "$(printf ' %.0s' $(seq 1 $((width - filled))) 2>/dev/null)" \
        "$done" "$total" "$(captured)" "$got"
}
place_orders() { # from to
    psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$
DECLARE i int;
BEGIN
  FOR i IN $1 .. $2 LOOP
    INSERT INTO orders (id, customer, total) VALUES (i, 'customer-' || (i % 37), round((random() * 200)::numeric, 2));
    INSERT INTO payments VALUES (i, i, (SELECT total FROM orders WHERE id = i), CASE WHEN i % 3 = 0 THEN 'card' ELSE 'iban' END);
    UPDATE orders SET status = 'paid' WHERE id = i;
    UPDATE inventory SET on_hand = on_hand - 1 WHERE sku = 'sku-' || (1 + i % 20);
    COMMIT;
  END LOOP;
END
\$\$;
SQL
}
for ((batch = 0; batch < 200; batch += 20)); do
    place_orders $((batch + 1)) $((batch + 20))
    bar $((batch + 20))
done
echo
echo "== the receiver fails (HTTP 500) while orders keep coming: events wait and are retried"
receiver_mode RECV '{"mode": "status", "status": 500}'
for ((batch = 200; batch < 300; batch += 20)); do
    place_orders $((batch + 1)) $((batch + 20))
    bar $((batch + 20))
done
echo
wait_for "retries to show" 20 bash -c '[ "$(psql -XAtc "SELECT failed_attempts_total > 0 FROM pg_sync.endpoint_status")" = t ]'
psql -X -P pager=off -c "SELECT endpoint, state, pending, consecutive_failures, failed_attempts_total, last_error, next_attempt_at FROM pg_sync.endpoint_status"
echo "== the receiver recovers: the backlog drains by itself, in order"
receiver_mode RECV '{"mode": "ok"}'
for ((batch = 300; batch < total; batch += 20)); do
    place_orders $((batch + 1)) $((batch + 20))
    bar $((batch + 20))
done
echo
psql -X -q -c "UPDATE orders SET status = 'shipped' WHERE id <= 50" -c "DELETE FROM orders WHERE id = 400"

wait_for "every event to be delivered" 60 bash -c '[ "$(psql -XAtc "SELECT pending FROM pg_sync.endpoint_status")" = 0 ]'
bar $total
echo
# The demo checks its own figures: the receiver cannot have more distinct events than were
# captured, and once nothing is pending it has every one of them.
n_captured=$(captured)
read -r n_distinct n_received < <(received)
[ "$n_captured" -ge "$n_distinct" ] || fail "received $n_distinct distinct events, more than the $n_captured captured"
assert_eq "$n_distinct" "$n_captured" "distinct events received once nothing is pending"
echo "   every captured event was received: $n_captured captured, $n_received received ($((n_received - n_distinct)) duplicates)"
echo
echo "== what the receiver got (every request signature-checked; first events shown)"
receiver_events RECV >"$RECV_DIR/events.jsonl"
head -n 4 "$RECV_DIR/events.jsonl" | cut -c1-150
/usr/bin/python3 - "$RECV_OUT" <<'PY'
import collections, json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
ok = [l for l in lines if l["status"] and 200 <= l["status"] < 300]
failed = collections.Counter(l["status"] for l in lines if l not in ok)
events = {e["id"]: e for l in ok for e in l["events"]}  # distinct events, by id
by_op = collections.Counter((e.get("table") or "emit", e["op"]) for e in events.values())
outage = ", ".join(f"{n} answered {s}" for s, n in sorted(failed.items(), key=str))
print(f"   {len(lines)} requests ({outage + ' during the outage' if outage else 'all answered 2xx'}), "
      f"{len(events)} distinct events received, signatures verified: {all(l['verified'] for l in lines)}")
for (table, op), n in sorted(by_op.items()):
    print(f"   {table:18} {op:8} {n}")
PY
echo "== pg_sync.tracked_tables"
psql -X -P pager=off -c "SELECT * FROM pg_sync.tracked_tables"
echo "== pg_sync.endpoints (header names only; values and secrets are never shown)"
psql -X -P pager=off -c "SELECT name, url, header_names, has_secret, batch_size, max_in_flight, paused FROM pg_sync.endpoints"
echo "== pg_sync.workers"
psql -X -P pager=off -c "SELECT * FROM pg_sync.workers"
echo "== pg_sync.recent_attempts (newest first)"
psql -X -P pager=off -c "SELECT endpoint, started_at, events, status, duration, lag, left(error, 40) AS error FROM pg_sync.recent_attempts LIMIT 5"
echo "== pg_sync.endpoint_status"
psql -X -P pager=off -x -c "SELECT * FROM pg_sync.endpoint_status"
echo "== pg_sync.health() (no rows: nothing to fix)"
psql -X -P pager=off -c "SELECT * FROM pg_sync.health()"
echo "== stopping the server (PID $PG_PID)"
