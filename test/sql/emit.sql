-- pg_sync.emit(): application events, atomic with the caller's transaction.
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('app', 'http://127.0.0.1:9/app');

SELECT pg_sync.emit('app', 'order.shipped', '{"order": 7, "carrier": "ups"}', 'order-7') > 0 AS got_id;
SELECT pg_sync.emit('app', 'cache.flush', '{}') > 0 AS got_id;
BEGIN;
SELECT pg_sync.emit('app', 'never.sent', '{"x": 1}') > 0 AS got_id;
ROLLBACK;
SELECT op, tbl, key::text, new_row::text AS payload, emit_type, old_row, attempts,
       txid IS NOT NULL AS has_txid
  FROM pg_sync._queue ORDER BY id;
-- Ids increase in emit order and are shared with captured changes.
CREATE TABLE t (id int PRIMARY KEY);
SELECT pg_sync.track('t', 'app');
INSERT INTO t VALUES (1);
SELECT pg_sync.emit('app', 'after.insert', '[1, 2, 3]', 'k') IS NOT NULL AS ok;
SELECT op, coalesce(emit_type, tbl) AS what FROM pg_sync._queue ORDER BY id;
-- Bad input: clear errors, nothing queued.
SELECT pg_sync.emit('nope', 'x', '{}');
SELECT pg_sync.emit('app', NULL, '{}');
SELECT pg_sync.emit('app', '  ', '{}');
SELECT pg_sync.emit('app', 'x', NULL);
SELECT count(*) AS queued FROM pg_sync._queue;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
