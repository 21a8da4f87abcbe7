#!/usr/bin/env bash
# The pg_sync demo: installs what is missing, builds, starts a throwaway PostgreSQL with
# pg_sync preloaded, tracks a small e-commerce schema, generates changes with a progress
# display, shows what was captured and the status views, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
# Servers run as the OS user postgres (initdb refuses root), which needs root to arrange.
[ "$(id -u)" -eq 0 ] || exec sudo -E bash "$0" "$@"
scripts/setup.sh
. test/lib/pg.sh

echo "== starting a throwaway PostgreSQL 15 (as OS user postgres, loopback only)"
pg_start demo
trap pg_stop EXIT
echo "   port $PGPORT, data directory $PG_DIR, postmaster PID $PG_PID"

psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE EXTENSION pg_sync;
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer text NOT NULL, status text NOT NULL DEFAULT 'new',
    total numeric(12, 2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE payments (id bigint PRIMARY KEY, order_id bigint NOT NULL, amount numeric(12, 2), method text);
CREATE TABLE inventory (sku text PRIMARY KEY, on_hand int NOT NULL, reserved int NOT NULL DEFAULT 0);
INSERT INTO inventory SELECT 'sku-' || g, 1000, 0 FROM generate_series(1, 20) g;

-- Where changes go (delivery over HTTP arrives with the delivery workers), and what is sent.
SELECT pg_sync.create_endpoint('warehouse', 'http://127.0.0.1:8080/events',
                               headers => '{"Authorization": "Bearer demo-token"}');
SELECT pg_sync.track('orders', 'warehouse');
SELECT pg_sync.track('payments', 'warehouse', events => '{insert}');
SELECT pg_sync.track('inventory', 'warehouse', columns => '{on_hand}',
                     filter => 'NEW.on_hand < 990');   -- only low-stock changes
SQL

echo "== placing orders (each a transaction: order + payment + stock reservation)"
total=400
bar() {
    local done=$1 width=40
    local filled=$((done * width / total))
    printf '\r   [%s%s] %d/%d orders' "$(printf '#%.0s' $(seq 1 $filled) 2>/dev/null)" \
        "$(printf ' %.0s' $(seq 1 $((width - filled))) 2>/dev/null)" "$done" "$total"
}
for ((batch = 0; batch < total; batch += 20)); do
    psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$
DECLARE i int;
BEGIN
  FOR i IN $((batch + 1)) .. $((batch + 20)) LOOP
    INSERT INTO orders (id, customer, total) VALUES (i, 'customer-' || (i % 37), round((random() * 200)::numeric, 2));
    INSERT INTO payments VALUES (i, i, (SELECT total FROM orders WHERE id = i), CASE WHEN i % 3 = 0 THEN 'card' ELSE 'iban' END);
    UPDATE orders SET status = 'paid' WHERE id = i;
    UPDATE inventory SET on_hand = on_hand - 1 WHERE sku = 'sku-' || (1 + i % 20);
    COMMIT;
  END LOOP;
END
\$\$;
SQL
    bar $((batch + 20))
done
echo
psql -X -q -c "UPDATE orders SET status = 'shipped' WHERE id <= 50" -c "DELETE FROM orders WHERE id = 400"

echo
echo "== a few captured events (pg_sync._queue, in capture order)"
psql -X -P pager=off -c "SELECT id, op, tbl AS table, key, left(coalesce(new_row, old_row)::text, 70) AS row
                           FROM pg_sync._queue ORDER BY id LIMIT 6"
psql -X -P pager=off -c "SELECT op, tbl AS table, count(*) AS events FROM pg_sync._queue GROUP BY 1, 2 ORDER BY 2, 1"
echo "== pg_sync.tracked_tables"
psql -X -P pager=off -c "SELECT * FROM pg_sync.tracked_tables"
echo "== pg_sync.endpoints (header names only; values and secrets are never shown)"
psql -X -P pager=off -c "SELECT name, url, header_names, has_secret, batch_size, max_in_flight, paused FROM pg_sync.endpoints"
echo "== pg_sync.endpoint_status"
psql -X -P pager=off -c "SELECT * FROM pg_sync.endpoint_status"
echo "== stopping the server (PID $PG_PID)"
