-- Bulk capture: a statement's queue rows are buffered and written together (heap_multi_insert)
-- at the end of the statement or when the buffer holds 1,000 rows or 1 MB. Multi-row statements
-- give the same events, in the same order, as the same rows one by one; rolled back savepoints,
-- exception blocks and subtransactions inside triggers drop exactly their own rows; statements
-- above the bound, COPY, TRUNCATE and partitioned tables are captured whole and in order.
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('a', 'http://127.0.0.1:9/a');
SELECT pg_sync.create_endpoint('b', 'http://127.0.0.1:9/b');
CREATE VIEW q AS
SELECT q.id, e.name AS ep, q.op, q.tbl, q.key::text AS key, q.new_row::text AS new, q.old_row::text AS old
  FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id;

-- Two identical tables, tracked alike (b: only paid rows, only two columns).
CREATE TABLE t_multi (id int PRIMARY KEY, status text, amount numeric, at timestamptz DEFAULT '2026-01-01 10:00+00');
CREATE TABLE t_single (LIKE t_multi INCLUDING ALL);
SELECT pg_sync.track(t, 'a', events => '{insert,update,delete,truncate}') FROM unnest('{t_multi,t_single}'::regclass[]) t;
SELECT pg_sync.track(t, 'b', columns => '{id,amount}', filter => $$NEW.status = 'paid' OR OLD.status = 'paid'$$)
  FROM unnest('{t_multi,t_single}'::regclass[]) t;

-- The same changes as multi-row statements and row by row (an UPDATE that changes the key too).
INSERT INTO t_multi (id, status, amount) SELECT g, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'new' END, g FROM generate_series(1, 6) g;
UPDATE t_multi SET status = 'paid', amount = amount * 10 WHERE id <= 3;
UPDATE t_multi SET id = id + 100 WHERE id IN (5, 6);
DELETE FROM t_multi WHERE id IN (1, 4);
DO $$
BEGIN
    FOR g IN 1..6 LOOP
        INSERT INTO t_single (id, status, amount) VALUES (g, CASE WHEN g % 2 = 0 THEN 'paid' ELSE 'new' END, g);
    END LOOP;
    FOR g IN 1..3 LOOP
        UPDATE t_single SET status = 'paid', amount = amount * 10 WHERE id = g;
    END LOOP;
    UPDATE t_single SET id = id + 100 WHERE id = 5;
    UPDATE t_single SET id = id + 100 WHERE id = 6;
    DELETE FROM t_single WHERE id = 1;
    DELETE FROM t_single WHERE id = 4;
END
$$;
SELECT ep, op, key, new, old FROM q WHERE tbl = 'public.t_multi' ORDER BY id;
SELECT (SELECT array_agg(ROW(ep, op, key, new, old) ORDER BY id) FROM q WHERE tbl = 'public.t_multi') =
       (SELECT array_agg(ROW(ep, op, key, new, old) ORDER BY id) FROM q WHERE tbl = 'public.t_single')
       AS same_events_in_same_order;

-- Rows of a rolled back savepoint are not captured, also when they were written at the bound
-- (2,500 rows) before the rollback; the rows around it are.
CREATE TABLE t (id int PRIMARY KEY, body text);
SELECT pg_sync.track('t', 'a', events => '{insert,update,delete,truncate}');
TRUNCATE pg_sync._queue;
BEGIN;
INSERT INTO t SELECT g, 'before' FROM generate_series(1, 3) g;
SAVEPOINT s;
INSERT INTO t SELECT g, 'rolled back' FROM generate_series(4, 2503) g;
ROLLBACK TO SAVEPOINT s;
INSERT INTO t SELECT g, 'after' FROM generate_series(10, 12) g;
SAVEPOINT s2;
INSERT INTO t SELECT g, 'released' FROM generate_series(20, 21) g;
RELEASE SAVEPOINT s2;
COMMIT;
SELECT string_agg(key::json->>'id', ' ' ORDER BY id) AS captured FROM q;

-- The same inside plpgsql: an exception block that fails drops only its own rows.
TRUNCATE pg_sync._queue;
DO $$
BEGIN
    INSERT INTO t SELECT g, 'outer' FROM generate_series(30, 31) g;
    BEGIN
        INSERT INTO t SELECT g, 'inner' FROM generate_series(32, 1500) g;
        RAISE EXCEPTION 'undo';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    BEGIN
        INSERT INTO t SELECT g, 'kept' FROM generate_series(40, 41) g;
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    INSERT INTO t VALUES (50, 'outer');
END
$$;
SELECT string_agg(key::json->>'id', ' ' ORDER BY id) AS captured FROM q;

-- A trigger that writes to another tracked table while the statement's rows are buffered: in
-- the same (sub)transaction, and inside an exception block that fails for even ids. Ids follow
-- capture order: each parent row, then what its trigger wrote.
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent_id int, how text);
SELECT pg_sync.track('parent', 'a');
SELECT pg_sync.track('child', 'a');
CREATE FUNCTION write_children() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO child VALUES (NEW.id * 10, NEW.id, 'same');
    BEGIN
        INSERT INTO child VALUES (NEW.id * 10 + 1, NEW.id, 'sub');
        IF NEW.id % 2 = 0 THEN
            RAISE EXCEPTION 'even';
        END IF;
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    RETURN NULL;
END
$$;
-- (Named after pg_sync_capture, so it fires after it for each row.)
CREATE TRIGGER z_children AFTER INSERT ON parent FOR EACH ROW EXECUTE FUNCTION write_children();
TRUNCATE pg_sync._queue;
INSERT INTO parent SELECT generate_series(1, 4);
SELECT string_agg(tbl || ':' || (key::json->>'id'), ' ' ORDER BY id) AS capture_order FROM q;
-- The same with the parent rows above the bound: all there, none twice.
TRUNCATE pg_sync._queue;
INSERT INTO parent SELECT generate_series(101, 1600);
SELECT tbl, count(*), count(DISTINCT key::text) AS distinct_keys FROM q GROUP BY tbl ORDER BY tbl;
SELECT count(*) AS out_of_order
  FROM (SELECT id, tbl, (key::json->>'id')::int AS k, lag((key::json->>'id')::int) OVER (PARTITION BY tbl ORDER BY id) AS prev
          FROM q) s
 WHERE k < prev;
DROP TRIGGER z_children ON parent;

-- A statement above the buffer bound (5,000 rows, two endpoints) is captured whole, in order;
-- so are rows above the byte bound (300 rows of 10 kB, and one TOASTed value of 2 MB).
SELECT pg_sync.track('t', 'b', events => '{insert}');
TRUNCATE t;
TRUNCATE pg_sync._queue;
INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 5000) g;
SELECT ep, count(*), min(key::json->>'id') AS first, max((key::json->>'id')::int) AS last FROM q GROUP BY ep ORDER BY ep;
SELECT count(*) AS out_of_order
  FROM (SELECT ep, (key::json->>'id')::int AS k, row_number() OVER (PARTITION BY ep ORDER BY id) AS rn FROM q) s
 WHERE k <> rn;
SELECT count(*) AS not_interleaved
  FROM (SELECT ep, lag(ep) OVER (ORDER BY id) AS prev FROM q) s WHERE ep = prev;
TRUNCATE t;
TRUNCATE pg_sync._queue;
INSERT INTO t SELECT g, repeat(chr(65 + g % 26), 10000) FROM generate_series(1, 300) g;
INSERT INTO t VALUES (301, repeat('z', 2000000));
SELECT e.name AS ep, count(*), sum(length(q.new_row->>'body')) AS body_bytes
  FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id GROUP BY e.name ORDER BY e.name;
SELECT pg_sync.untrack('t', 'b');

-- COPY is captured like INSERT, also above the bound; TRUNCATE goes between the rows around it.
TRUNCATE t;
TRUNCATE pg_sync._queue;
COPY t FROM stdin;
1	copied
2	copied
\.
COPY t (id) FROM PROGRAM 'seq 3 2600';
SELECT count(*), min((key::json->>'id')::int), max((key::json->>'id')::int) FROM q;
TRUNCATE pg_sync._queue;
BEGIN;
INSERT INTO t SELECT g FROM generate_series(3001, 3002) g;
TRUNCATE t;
INSERT INTO t SELECT g FROM generate_series(3003, 3004) g;
COMMIT;
SELECT op, key FROM q ORDER BY id;

-- Partitioned table: rows routed to several partitions in one statement, in capture order,
-- named after the parent.
CREATE TABLE m (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE m_eu PARTITION OF m FOR VALUES IN ('eu');
CREATE TABLE m_us PARTITION OF m FOR VALUES IN ('us');
SELECT pg_sync.track('m', 'a');
TRUNCATE pg_sync._queue;
INSERT INTO m SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 6) g;
UPDATE m SET region = 'eu' WHERE id = 1;
SELECT tbl, op, key FROM q ORDER BY id;

-- Rows captured by a statement are in the queue for the next statement of the transaction,
-- which may then truncate the queue (the writer is closed).
BEGIN;
INSERT INTO t VALUES (4000);
SELECT count(*) AS visible FROM pg_sync._queue WHERE key->>'id' = '4000';
TRUNCATE pg_sync._queue;
COMMIT;

SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
