#!/usr/bin/env bash
# pg_dump / pg_restore keeps endpoints (with headers and secret), tracking (columns, key
# columns, filter, events) and undelivered events; capture works in the restored database
# and follows later schema changes there.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
pg_start dump
trap pg_stop EXIT

q -d postgres -c "CREATE DATABASE src"
q -d src >/dev/null <<'SQL'
CREATE EXTENSION pg_sync;
CREATE TABLE shop_orders (id int PRIMARY KEY, status text, amount numeric, note text);
CREATE TABLE "Line Items" (order_id int, line int, sku text);
SELECT pg_sync.create_endpoint('wh', 'https://example.com/hook', headers => '{"Authorization": "Bearer t0k"}',
                               secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', batch_size => 50);
SELECT pg_sync.create_endpoint('search', 'http://127.0.0.1:9/s');
SELECT pg_sync.pause_endpoint('search');
SELECT pg_sync.track('shop_orders', 'wh', columns => '{status,amount}', filter => $$NEW.status <> 'draft'$$);
SELECT pg_sync.track('shop_orders', 'search', events => '{insert,truncate}');
SELECT pg_sync.track('"Line Items"', 'wh', key_columns => '{order_id,line}');
-- Drop a column first so that attribute numbers differ after the restore.
ALTER TABLE shop_orders ADD COLUMN tmp int;
ALTER TABLE shop_orders DROP COLUMN tmp;
INSERT INTO shop_orders VALUES (1, 'new', 10, 'a'), (2, 'draft', 5, 'b');
INSERT INTO "Line Items" VALUES (1, 1, 'sku');
SQL

config_sql="SELECT e.name, e.url, e.headers::text, e.secret, e.batch_size, e.paused,
                   t.tbl::text, t.events, t.columns, t.key_columns, t.filter
              FROM pg_sync._endpoints e LEFT JOIN pg_sync._tracked t ON t.endpoint_id = e.id
             ORDER BY 1, 7"
queue_sql="SELECT e.name, q.op, q.tbl, q.key::text, q.new_row::text FROM pg_sync._queue q
             JOIN pg_sync._endpoints e ON e.id = q.endpoint_id ORDER BY q.id"
before_config=$(q -d src -c "$config_sql")
before_queue=$(q -d src -c "$queue_sql")
assert_eq "$(echo "$before_queue" | wc -l)" "4" "events queued before the dump"

pg_dump -Fc -d src -f "$PG_DIR/src.dump"
chmod 644 "$PG_DIR/src.dump"
q -d postgres -c "CREATE DATABASE dst"
pg_restore -d dst --exit-on-error "$PG_DIR/src.dump"

assert_eq "$(q -d dst -c "$config_sql")" "$before_config" "configuration after restore"
assert_eq "$(q -d dst -c "$queue_sql")" "$before_queue" "pending events after restore"

# Capture works in the restored database, with the restored configuration.
q -d dst -c "INSERT INTO shop_orders VALUES (3, 'paid', 30, 'c'), (4, 'draft', 1, 'd')"
got=$(q -d dst -c "SELECT e.name || ' ' || q.new_row::text FROM pg_sync._queue q
                    JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE q.key->>'id' IN ('3', '4') ORDER BY q.id")
assert_eq "$got" $'wh {"status":"paid","amount":30}\nsearch {"id":3,"status":"paid","amount":30,"note":"c"}\nsearch {"id":4,"status":"draft","amount":1,"note":"d"}' "capture after restore"

# Schema changes in the restored database are followed by name (attnums were rebuilt).
q -d dst -c "ALTER TABLE shop_orders RENAME COLUMN amount TO total"
assert_eq "$(q -d dst -c "SELECT columns FROM pg_sync.tracked_tables WHERE endpoint = 'wh' AND \"table\" = 'shop_orders'::regclass")" \
    "{status,total}" "columns follow a rename after restore"
q -d dst -c "INSERT INTO shop_orders VALUES (5, 'paid', 50, 'e')"
assert_eq "$(q -d dst -c "SELECT q.new_row::text FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id
                          WHERE e.name = 'wh' AND q.key->>'id' = '5'")" '{"status":"paid","total":50}' "payload after rename"
# New endpoints get fresh ids (the identity sequence was restored too).
q -d dst -c "SELECT pg_sync.create_endpoint('third', 'http://127.0.0.1:9/t')"
assert_eq "$(q -d dst -c "SELECT count(DISTINCT id) FROM pg_sync._endpoints")" "3" "endpoint ids unique"
echo "ok: dump and restore keep configuration, tracking and pending events"
