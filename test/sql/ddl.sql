-- Schema changes on tracked tables.
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('e', 'http://127.0.0.1:9/e');
SELECT pg_sync.create_endpoint('f', 'http://127.0.0.1:9/f');
CREATE TABLE items (id int PRIMARY KEY, name text, price numeric, stock int);
SELECT pg_sync.track('items', 'e');
SELECT pg_sync.track('items', 'f', columns => '{name,price}', filter => 'NEW.stock > 0');

-- ADD COLUMN shows up in full payloads at once (the plan cache follows relcache invalidation).
INSERT INTO items VALUES (1, 'pen', 1.5, 10);
ALTER TABLE items ADD COLUMN color text DEFAULT 'blue';
INSERT INTO items VALUES (2, 'ink', 3, 5);
-- DROP COLUMN of an untracked column of f, and of a column in f's list.
ALTER TABLE items DROP COLUMN color;
INSERT INTO items VALUES (3, 'pad', 2, 1);
ALTER TABLE items DROP COLUMN price;
SELECT "table", endpoint, columns FROM pg_sync.tracked_tables ORDER BY endpoint;
INSERT INTO items VALUES (4, 'cap', 7);
-- RENAME COLUMN: the payload and the tracked column list follow the new name.
ALTER TABLE items RENAME COLUMN name TO title;
SELECT "table", endpoint, columns FROM pg_sync.tracked_tables ORDER BY endpoint;
INSERT INTO items VALUES (5, 'mug', 3);
SELECT e.name AS ep, q.op, q.new_row::text AS new
  FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id ORDER BY q.id;

-- Changes that would break tracking are refused and roll back.
ALTER TABLE items DROP COLUMN title;                  -- the last column f sends
ALTER TABLE items RENAME COLUMN stock TO qty;         -- f's filter uses NEW.stock
ALTER TABLE items DROP CONSTRAINT items_pkey;         -- no key left
SELECT attname FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;

-- A key column given explicitly follows a rename and cannot be dropped.
CREATE TABLE logs (tenant int, seq int, msg text);
SELECT pg_sync.track('logs', 'e', key_columns => '{tenant,seq}');
ALTER TABLE logs RENAME COLUMN seq TO position;
SELECT "table", key_columns FROM pg_sync.tracked_tables WHERE "table" = 'logs'::regclass;
ALTER TABLE logs DROP COLUMN position;
TRUNCATE pg_sync._queue;
INSERT INTO logs VALUES (1, 2, 'hello');
SELECT q.key::text FROM pg_sync._queue q;

-- Renaming or moving a table: events carry the new name.
CREATE SCHEMA archive;
ALTER TABLE logs RENAME TO logbook;
ALTER TABLE logbook SET SCHEMA archive;
TRUNCATE pg_sync._queue;
INSERT INTO archive.logbook VALUES (1, 3, 'moved');
SELECT q.tbl FROM pg_sync._queue q;

-- A dropped table leaves no tracking behind; DROP EXTENSION needs CASCADE while triggers use it.
DROP TABLE archive.logbook;
SELECT "table", endpoint FROM pg_sync.tracked_tables ORDER BY 1, 2;
-- Capture keeps nothing open between statements: the queue can be truncated or pg_sync dropped
-- later in the same transaction (after INSERT, after COPY, after TRUNCATE).
BEGIN;
INSERT INTO items VALUES (7, 'x', 1);
TRUNCATE pg_sync._queue;
COPY items FROM stdin;
8	y	2
\.
SET LOCAL client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
ROLLBACK;
SELECT count(*) AS items_tracked FROM pg_sync.tracked_tables WHERE "table" = 'items'::regclass;
DROP EXTENSION pg_sync;
DROP EXTENSION pg_sync CASCADE;
SELECT count(*) AS capture_triggers_left FROM pg_trigger WHERE tgname LIKE 'pg_sync%';
INSERT INTO items VALUES (6, 'still works', 1);
-- Reinstall works.
CREATE EXTENSION pg_sync;
SELECT count(*) FROM pg_sync.endpoints;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA public CASCADE;
DROP SCHEMA IF EXISTS "Sales Dept", archive CASCADE;
DROP TYPE IF EXISTS mood, pair CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
