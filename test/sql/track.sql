-- Tracking and capture rules: events, columns, key_columns, filter, several endpoints, transactions,
-- partitioned tables, COPY.
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('a', 'http://127.0.0.1:9/a');
SELECT pg_sync.create_endpoint('b', 'http://127.0.0.1:9/b');
CREATE VIEW q AS
SELECT e.name AS ep, q.op, q.tbl, q.key::text AS key, q.new_row::text AS new, q.old_row::text AS old
  FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id ORDER BY q.id;

CREATE TABLE orders (id int PRIMARY KEY, customer text, status text, amount numeric, note text);

-- Endpoint a: inserts and deletes only. Endpoint b: updates of status/amount only, and only
-- when the order is paid or was paid.
SELECT pg_sync.track('orders', 'a', events => '{INSERT,delete}');
SELECT pg_sync.track('orders', 'b', events => '{update}', columns => '{status,amount}',
                     filter => $$NEW.status = 'paid' OR OLD.status = 'paid'$$);
SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE tgrelid = 'orders'::regclass ORDER BY tgname;

INSERT INTO orders VALUES (1, 'ann', 'new', 10, 'x'), (2, 'bob', 'new', 20, 'y');
UPDATE orders SET note = 'only note' WHERE id = 1;     -- b: no tracked column changed
UPDATE orders SET status = 'packed' WHERE id = 1;      -- b: filter false
UPDATE orders SET status = 'paid' WHERE id = 1;        -- b: sent
UPDATE orders SET amount = 11 WHERE id = 1;            -- b: sent (OLD.status = 'paid')
UPDATE orders SET amount = amount WHERE id = 2;        -- b: nothing changed
DELETE FROM orders WHERE id = 2;                       -- a
SELECT * FROM q;

-- Rolled back work is never captured; a rolled back savepoint drops only its part.
TRUNCATE pg_sync._queue;
BEGIN;
INSERT INTO orders VALUES (3, 'cy', 'new', 1, NULL);
ROLLBACK;
BEGIN;
INSERT INTO orders VALUES (4, 'di', 'new', 1, NULL);
SAVEPOINT s;
INSERT INTO orders VALUES (5, 'ed', 'new', 1, NULL);
ROLLBACK TO SAVEPOINT s;
INSERT INTO orders VALUES (6, 'fa', 'new', 1, NULL);
COMMIT;
SELECT ep, op, key FROM q;

-- All events of one transaction carry its txid; ids increase in capture order.
SELECT count(DISTINCT txid) AS txids, bool_and(txid = (SELECT max(txid) FROM pg_sync._queue)) AS same_txid,
       array_agg(key->>'id' ORDER BY id) AS ids_in_capture_order
  FROM pg_sync._queue;
SELECT captured_at <= now() + interval '1 minute' AND captured_at > now() - interval '1 hour' AS recent
  FROM pg_sync._queue LIMIT 1;

-- COPY is captured like INSERT.
TRUNCATE pg_sync._queue;
COPY orders FROM stdin;
7	gus	new	5	\N
8	hal	new	6	copy
\.
SELECT ep, op, key, new FROM q;

-- key_columns: a table without primary key, identified by a chosen key.
CREATE TABLE events_log (tenant int, seq int, body text);
SELECT pg_sync.track('events_log', 'a', key_columns => '{tenant,seq}');
TRUNCATE pg_sync._queue;
INSERT INTO events_log VALUES (1, 1, 'one');
UPDATE events_log SET body = 'uno';
SELECT ep, op, key, new, old FROM q;

-- Re-tracking replaces the configuration; untrack for one endpoint keeps the other.
SELECT pg_sync.track('orders', 'a', events => '{update}', columns => '{customer}');
TRUNCATE pg_sync._queue;
UPDATE orders SET customer = 'ANN', status = 'paid' WHERE id = 1;
SELECT ep, op, key, new, old FROM q;
SELECT pg_sync.untrack('orders', 'b');
TRUNCATE pg_sync._queue;
UPDATE orders SET customer = 'Ann', status = 'done' WHERE id = 1;
SELECT ep, op, key, new FROM q;
SELECT pg_sync.untrack('orders');
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'orders'::regclass;
TRUNCATE pg_sync._queue;
INSERT INTO orders VALUES (9, 'ida', 'new', 1, NULL);
SELECT count(*) AS captured_after_untrack FROM pg_sync._queue;

-- Partitioned tables: track the parent; rows land in partitions (also ones created later
-- and ones whose columns are in another order); events name the parent.
CREATE TABLE measurements (id int, region text, v numeric, PRIMARY KEY (id, region))
    PARTITION BY LIST (region);
CREATE TABLE measurements_eu PARTITION OF measurements FOR VALUES IN ('eu');
SELECT pg_sync.track('measurements', 'a', events => '{insert,update,delete,truncate}');
CREATE TABLE measurements_us PARTITION OF measurements FOR VALUES IN ('us');
CREATE TABLE measurements_ap (v numeric, region text, id int, PRIMARY KEY (id, region));
ALTER TABLE measurements ATTACH PARTITION measurements_ap FOR VALUES IN ('ap');
TRUNCATE pg_sync._queue;
INSERT INTO measurements VALUES (1, 'eu', 1.5), (2, 'us', 2.5), (3, 'ap', 3.5);
UPDATE measurements SET region = 'us' WHERE id = 1;   -- moves between partitions
TRUNCATE measurements;
SELECT ep, op, tbl, key, new, old FROM q;
-- A partition of a tracked parent cannot be tracked again for the same endpoint.
SELECT pg_sync.track('measurements_eu', 'a');

-- A filter that fails makes the write fail (nothing is silently skipped); after a savepoint
-- rollback the same transaction goes on capturing, also after a schema change.
CREATE TABLE ratios (id int PRIMARY KEY, a int, b int);
SELECT pg_sync.track('ratios', 'b', filter => 'NEW.a / NEW.b > 0');
TRUNCATE pg_sync._queue;
BEGIN;
SAVEPOINT s;
INSERT INTO ratios VALUES (1, 1, 0);
ROLLBACK TO SAVEPOINT s;
ALTER TABLE ratios ADD COLUMN note text DEFAULT 'added';
INSERT INTO ratios VALUES (2, 4, 2);
COMMIT;
SELECT ep, op, key, new FROM q;

-- An UPDATE that changes the key is sent as delete (old key) + insert (new key), also when
-- `columns` does not include the key.
CREATE TABLE accounts (id int PRIMARY KEY, owner text, tier text);
INSERT INTO accounts VALUES (7, 'ann', 'gold');
SELECT pg_sync.track('accounts', 'a');
SELECT pg_sync.track('accounts', 'b', events => '{update}', columns => '{tier}');
TRUNCATE pg_sync._queue;
UPDATE accounts SET id = 8 WHERE id = 7;
UPDATE accounts SET owner = 'ANN' WHERE id = 8;   -- b: no tracked column changed
SELECT ep, op, key, new, old FROM q;

-- A schema rename changes the table name in later events.
CREATE SCHEMA s1;
CREATE TABLE s1.things (id int PRIMARY KEY);
SELECT pg_sync.track('s1.things', 'a');
ALTER SCHEMA s1 RENAME TO s2;
TRUNCATE pg_sync._queue;
INSERT INTO s2.things VALUES (1);
SELECT ep, op, tbl FROM q;

-- A tracked partition follows a column rename made on its (untracked) parent, and a column
-- dropped by DROP TYPE ... CASCADE leaves its columns list.
CREATE TABLE readings (id int, region text, val numeric, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE readings_eu PARTITION OF readings FOR VALUES IN ('eu');
SELECT pg_sync.track('readings_eu', 'a', columns => '{id,val}');
SELECT pg_sync.track('readings', 'b');   -- same hierarchy: refused
ALTER TABLE readings RENAME COLUMN val TO value;
SELECT "table", columns FROM pg_sync.tracked_tables WHERE "table" = 'readings_eu'::regclass;
CREATE DOMAIN grade AS text;
ALTER TABLE readings ADD COLUMN g grade;
SELECT pg_sync.track('readings_eu', 'a', columns => '{id,value,g}');
DROP DOMAIN grade CASCADE;
SELECT "table", columns FROM pg_sync.tracked_tables WHERE "table" = 'readings_eu'::regclass;
TRUNCATE pg_sync._queue;
INSERT INTO readings VALUES (1, 'eu', 2.5);
SELECT ep, op, tbl, key, new FROM q;

-- Dropping and re-creating the extension in one session leaves nothing stale behind.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('a', 'http://127.0.0.1:9/a');
SELECT pg_sync.track('accounts', 'a');
INSERT INTO accounts VALUES (9, 'cy', 'basic');
SELECT op, key::text FROM pg_sync._queue;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA public CASCADE;
DROP SCHEMA IF EXISTS s2 CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
