-- Two statements of the delivery worker, in psql, on a queue of :rows events
-- (bench/sustained.d/plan_probe.sh runs this in a fresh database of a throwaway server). The
-- endpoint is paused, so the worker reads nothing; autovacuum is off for the queue, so its dead
-- tuples stay until we vacuum. The worker prepares its statements once (SPI_prepare +
-- SPI_keepplan) and runs them with plan_cache_mode = force_generic_plan and enable_seqscan = off
-- (src/pg/delivery_worker.cpp). A generic plan is made from the queue's size at the time it is
-- made, and stays until a relcache invalidation of the queue (a VACUUM or ANALYZE of it).
--   (i)  plans: the head read (ORDER BY id LIMIT $2, estimated as 10 % of the rows) and the delete
--        of delivered events (id = ANY ($2), an array of unknown length) prepared for an empty,
--        vacuumed queue (0 pages, as after a drain and a vacuum) and for a full one; each plan
--        made for the empty queue is then run on the full queue.
--   (ii) dead index entries at the head: the first :deleted events are deleted (delivered), then
--        the head read runs twice (the first run visits the heap and marks the index entries
--        dead; the second is what every later pass pays), then once more after VACUUM.
\set ON_ERROR_STOP 1
\pset pager off
SET client_min_messages = warning;
CREATE EXTENSION pg_sync;
CREATE EXTENSION pgstattuple;
SELECT pg_sync.create_endpoint('probe', 'http://127.0.0.1:9/hook');
SELECT pg_sync.pause_endpoint('probe');
ALTER TABLE pg_sync._queue SET (autovacuum_enabled = false);
CREATE TABLE probe (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false);
SELECT pg_sync.track('probe', 'probe');
SELECT id AS ep FROM pg_sync._endpoints WHERE name = 'probe' \gset
VACUUM pg_sync._queue;

-- The worker's statements (src/pg/queue_store.cpp: S_READ_HEAD, S_DELETE_DELIVERED) and settings.
\set head_sql 'SELECT id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at, attempts, next_attempt_at FROM pg_sync._queue WHERE endpoint_id = $1 ORDER BY id LIMIT $2'
\set delete_sql 'DELETE FROM pg_sync._queue WHERE endpoint_id = $1 AND id = ANY ($2)'
SET plan_cache_mode = force_generic_plan;
SET enable_seqscan = off;
-- The head read `runs` times through one prepared statement (generic plan, as in the worker):
-- median and max ms per read.
CREATE FUNCTION head_read_ms(ep int, runs int, OUT median_ms numeric, OUT max_ms numeric)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $$
DECLARE
    t0 timestamptz;
    ms float8[] := '{}';
BEGIN
    FOR i IN 1 .. runs LOOP
        t0 := clock_timestamp();
        PERFORM count(*) FROM (SELECT id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at,
                                      attempts, next_attempt_at
                                 FROM pg_sync._queue WHERE endpoint_id = ep ORDER BY id LIMIT 800) h;
        ms := ms || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY m)::numeric, 2), round(max(m)::numeric, 2)
      INTO median_ms, max_ms FROM unnest(ms) m;
END
$$;

PREPARE head_empty(int, bigint) AS :head_sql;
PREPARE delete_empty(int, bigint[]) AS :delete_sql;
SET enable_seqscan = on;
PREPARE head_empty_seqscan(int, bigint) AS :head_sql;
\echo '=== (i) plans made for the empty queue: head read with enable_seqscan on; head read and delete as in the worker (enable_seqscan off)'
EXPLAIN EXECUTE head_empty_seqscan(:ep, 800);
SET enable_seqscan = off;
EXPLAIN EXECUTE head_empty(:ep, 800);
EXPLAIN EXECUTE delete_empty(:ep, '{1,2,3}');

INSERT INTO probe SELECT g, repeat('x', 200) FROM generate_series(1, :rows) g;
SELECT count(*) AS queued, pg_size_pretty(pg_relation_size('pg_sync._queue')) AS heap, min(id) AS first_id
  FROM pg_sync._queue \gset
\echo :queued events queued, heap :heap

PREPARE head(int, bigint) AS :head_sql;
PREPARE delete_full(int, bigint[]) AS :delete_sql;
\echo '=== (i) plans made for the full queue (enable_seqscan off)'
EXPLAIN EXECUTE head(:ep, 800);
EXPLAIN EXECUTE delete_full(:ep, '{1,2,3}');

\echo '=== (i) the plans made for the empty queue, run on the full queue: head read (enable_seqscan on)'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE head_empty_seqscan(:ep, 800);
SELECT array_agg(g)::text AS ids FROM generate_series(:first_id + 1000, :first_id + 1099) g \gset
\echo '=== (i) delete of 100 delivered events with the plan made for the empty queue (rolled back)'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE delete_empty(:ep, :'ids');
ROLLBACK;
\echo '=== (i) the same delete with the plan made for the full queue (rolled back)'
BEGIN;
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE delete_full(:ep, :'ids');
ROLLBACK;

\echo '=== (ii) head read, nothing deleted (as in the worker)'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE head(:ep, 800);
DELETE FROM pg_sync._queue WHERE endpoint_id = :ep AND id < :first_id + :deleted;
\echo '=== (ii) head read after deleting the first' :deleted 'events: first run (heap visits, marks index entries dead)'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE head(:ep, 800);
\echo '=== (ii) second run (what every later pass pays until a vacuum), then the time of 20 more'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE head(:ep, 800);
SELECT * FROM head_read_ms(:ep, 20);
SELECT leaf_pages, deleted_pages, avg_leaf_density FROM pgstatindex('pg_sync._queue_pkey');

VACUUM pg_sync._queue;
\echo '=== (ii) after VACUUM, then the time of 20 more'
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) EXECUTE head(:ep, 800);
SELECT * FROM head_read_ms(:ep, 20);
