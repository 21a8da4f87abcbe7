-- Monitoring views (first version): endpoints, tracked_tables, endpoint_status.
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('a', 'http://127.0.0.1:9/a', headers => '{"Authorization": "Bearer x", "X-B": "y"}',
                               secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT pg_sync.create_endpoint('b', 'http://127.0.0.1:9/b');
CREATE TABLE orders (id int PRIMARY KEY, status text);
CREATE TABLE lines (order_id int, line int, sku text);
SELECT pg_sync.track('orders', 'a', filter => $$NEW.status <> 'draft'$$);
SELECT pg_sync.track('orders', 'b', columns => '{status}', events => '{update}');
SELECT pg_sync.track('lines', 'a', key_columns => '{order_id,line}', events => '{insert,truncate}');

-- Column sets are part of the contract.
SELECT table_name, string_agg(column_name, ', ' ORDER BY ordinal_position) AS columns
  FROM information_schema.columns WHERE table_schema = 'pg_sync'
   AND table_name IN ('endpoints', 'tracked_tables', 'endpoint_status')
 GROUP BY table_name ORDER BY table_name;

-- No view shows a header value or a secret.
SELECT name, header_names, has_secret FROM pg_sync.endpoints ORDER BY name;
SELECT count(*) AS leaks FROM pg_sync.endpoints e
 WHERE e::text LIKE '%Bearer%' OR e::text LIKE '%whsec%';

SELECT "table", endpoint, events, columns, key_columns, key_is_primary_key, filter
  FROM pg_sync.tracked_tables ORDER BY 1, 2;

-- endpoint_status: pending counts per endpoint, age of the oldest pending event, state.
SELECT endpoint, state, pending, oldest_pending_age IS NULL AS no_age FROM pg_sync.endpoint_status ORDER BY 1;
INSERT INTO orders VALUES (1, 'new'), (2, 'draft');
UPDATE orders SET status = 'paid';
INSERT INTO lines VALUES (1, 1, 'sku-1');
SELECT pg_sync.pause_endpoint('b');
SELECT endpoint, state, pending, oldest_pending_age >= interval '0' AS has_age
  FROM pg_sync.endpoint_status ORDER BY 1;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
