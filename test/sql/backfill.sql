-- pg_sync.backfill(), cancel_backfill(), resume_backfill() and the pg_sync.backfills view: what is
-- checked when a backfill is asked for (no worker runs here: pg_sync.max_workers = 0, so jobs
-- stay 'running'; test/160_backfill.sh runs them).
\set SHOW_CONTEXT never
\set VERBOSITY terse
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('a', 'http://127.0.0.1:9/a');
SELECT pg_sync.create_endpoint('b', 'http://127.0.0.1:9/b');
CREATE TABLE orders (id int PRIMARY KEY, status text);
INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 10) g;
CREATE TABLE nokey (sku text, n int);
CREATE TABLE uniq (sku text NOT NULL UNIQUE, n int);
CREATE TABLE nullable_uniq (sku text UNIQUE, n int);
SELECT pg_sync.track('orders', 'a');
SELECT pg_sync.track('nokey', 'a', key_columns => '{sku}');
SELECT pg_sync.track('uniq', 'a', key_columns => '{sku}');
SELECT pg_sync.track('nullable_uniq', 'a', key_columns => '{sku}');

-- Bad input: a clear error, nothing recorded.
SELECT pg_sync.backfill(NULL, 'a');
SELECT pg_sync.backfill('orders', NULL);
SELECT pg_sync.backfill('orders', 'nope');
SELECT pg_sync.backfill('orders', 'b');                      -- not tracked for b
SELECT pg_sync.backfill('orders', 'a', 0);
SELECT pg_sync.backfill('orders', 'a', -5);
SELECT pg_sync.backfill('orders', 'a', 100001);
SELECT pg_sync.backfill('orders', 'a', NULL);
SELECT pg_sync.backfill('nokey', 'a');                       -- no key to page by
SELECT pg_sync.backfill('nullable_uniq', 'a');               -- unique, but NULLs allowed
SELECT pg_sync.backfill(12345::oid::regclass, 'a');          -- no such relation
SELECT pg_sync.backfill('pg_class', 'a');
SELECT count(*) AS jobs FROM pg_sync._backfills;

-- Good input: a job per call, one running per (table, endpoint).
SELECT pg_sync.backfill('orders', 'a', 2) AS id \gset
SELECT pg_sync.backfill('orders', 'a');                      -- already running
SELECT pg_sync.backfill('uniq', 'a') > :id AS uniq_key_ok;
SELECT "table", endpoint, state, rows_scanned, rows_enqueued, batch_rows, batches, last_key, waiting_for,
       last_error, requested_by, finished_at IS NULL AS unfinished
  FROM pg_sync.backfills ORDER BY id;

-- Cancel and resume.
SELECT pg_sync.cancel_backfill(NULL);
SELECT pg_sync.cancel_backfill(-1);
SELECT pg_sync.resume_backfill(-1);
SELECT pg_sync.resume_backfill(:id);                         -- running already: false
SELECT pg_sync.cancel_backfill(:id);
SELECT pg_sync.cancel_backfill(:id);                         -- not running any more: false
SELECT state, finished_at IS NOT NULL AS finished FROM pg_sync.backfills WHERE id = :id;
SELECT pg_sync.backfill('orders', 'a') AS id2 \gset
SELECT pg_sync.resume_backfill(:id);                         -- another one runs for orders/a
SELECT pg_sync.cancel_backfill(:id2);
SELECT pg_sync.resume_backfill(:id);
SELECT state FROM pg_sync.backfills WHERE id = :id;
UPDATE pg_sync._backfills SET state = 'done', finished_at = now() WHERE id = :id;
SELECT pg_sync.resume_backfill(:id);                         -- done: start a new one instead
SELECT id = :id2 AS is_id2, state FROM pg_sync.backfills WHERE state <> 'running' ORDER BY id;

-- The page query the worker runs (as the table's owner, search_path = pg_catalog).
SELECT query, owner::regrole, table_name, throttled FROM pg_sync._backfill_page(:id2);
SELECT pg_sync.track('orders', 'a', columns => '{status}', key_columns => '{id}', filter => $$NEW.status <> 'x'$$);
SELECT query FROM pg_sync._backfill_page(:id2);
-- Columns named like the page query's aliases must not confuse it.
CREATE TABLE "we""ird" ("a b" text, "C" int, k text, r int, new text, old text, PRIMARY KEY ("C", "a b"));
SELECT pg_sync.track('"we""ird"', 'b');
SELECT pg_sync.backfill('"we""ird"', 'b') AS id3 \gset
SELECT query, table_name FROM pg_sync._backfill_page(:id3);
-- Run it here as the worker would, from the start and after a key.
INSERT INTO "we""ird" VALUES ('x', 1, 'one', 1, 'n', 'o'), ('y', 1, 'two', 2, NULL, NULL), ('a', 2, 'three', 3, '', '');
DO $$
DECLARE
    q text := (SELECT query FROM pg_sync._backfill_page((SELECT max(id) FROM pg_sync._backfills)));
    r record;
BEGIN
    FOR r IN EXECUTE q USING NULL::text[], 10 LOOP
        RAISE NOTICE 'from start: row % page_key %', r.row, r.page_key;
    END LOOP;
    FOR r IN EXECUTE q USING '{1,x}'::text[], 10 LOOP
        RAISE NOTICE 'after (1,x): row % page_key %', r.row, r.page_key;
    END LOOP;
END
$$;

-- Privileges: admins may backfill tables they can read; monitors only watch.
GRANT USAGE ON SCHEMA public TO PUBLIC; -- earlier files may have re-created it without
CREATE ROLE bf_admin IN ROLE pgsync_admin;
CREATE ROLE bf_monitor IN ROLE pgsync_monitor;
CREATE ROLE bf_nobody;
SET ROLE bf_nobody;
SELECT pg_sync.backfill('orders', 'a');
SELECT * FROM pg_sync.backfills;
SELECT pg_sync.cancel_backfill(1);
RESET ROLE;
SET ROLE bf_admin;
SELECT pg_sync.backfill('"we""ird"', 'a');                   -- may not read it
RESET ROLE;
GRANT SELECT ON "we""ird" TO bf_admin;
SELECT pg_sync.track('"we""ird"', 'a');
SET ROLE bf_admin;
SELECT pg_sync.backfill('"we""ird"', 'a') > 0 AS admin_ok;
SELECT requested_by FROM pg_sync.backfills WHERE endpoint = 'a' AND "table" = '"we""ird"'::regclass;
RESET ROLE;
SET ROLE bf_monitor;
SELECT count(*) > 0 AS monitor_sees FROM pg_sync.backfills;
SELECT pg_sync.backfill('orders', 'b');
SELECT pg_sync.cancel_backfill(1);
SELECT pg_sync.resume_backfill(1);
RESET ROLE;

-- Column set of the view (contract).
SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) AS columns
  FROM information_schema.columns WHERE table_schema = 'pg_sync' AND table_name = 'backfills';

-- Dropping the endpoint drops its backfills.
SELECT pg_sync.drop_endpoint('b', force => true);
SELECT count(*) AS left_for_b FROM pg_sync._backfills b WHERE NOT EXISTS (SELECT FROM pg_sync._endpoints e WHERE e.id = b.endpoint_id);

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
DROP ROLE bf_admin, bf_monitor, bf_nobody;
RESET client_min_messages;
