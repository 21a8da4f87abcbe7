-- ---------------------------------------------------------------------------------------------
-- Pending counts: each endpoint's number of committed, undelivered events is kept in shared
-- memory (src/pg/queue_counters.cpp), so that pg_sync.endpoint_status and health() never count
-- the queue. The capture path and the delivery worker update the counts themselves; these
-- triggers cover every other writer of the queue.

-- AFTER INSERT FOR EACH ROW: counts the rows SQL inserts (emit, redeliver, backfill pages, COPY
-- of a restore), published when the transaction commits. AFTER UPDATE OR DELETE OR TRUNCATE FOR
-- EACH STATEMENT (no per-row cost): a change made by anyone but the delivery worker (a DBA,
-- drop_endpoint) makes the worker recount once it commits.
CREATE OR REPLACE FUNCTION pg_sync._count_queue() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pg_sync_count_queue';
COMMENT ON FUNCTION pg_sync._count_queue() IS
    'Internal: trigger function on the queue that keeps the pending counts in shared memory right: '
    'counts rows SQL inserts (emit, redeliver, backfill, a restore) at commit, and makes the worker '
    'recount after any other UPDATE, DELETE or TRUNCATE.';

-- The endpoint's pending events, from shared memory. While the counts of this database are not
-- exact (no worker yet, a recount asked for or running) it counts the endpoint's queue instead
-- (as the queue's owner, under the caller's snapshot), or with count_if_unknown => false returns
-- NULL. (Counting inside the function, not in the view: a count subquery in the view, even never
-- executed, made the planner's cost estimate of the view high enough for JIT to compile it on
-- every call, 0.4 to 1.7 s with a million events queued.)
CREATE OR REPLACE FUNCTION pg_sync._pending(endpoint_id int, count_if_unknown bool DEFAULT true) RETURNS bigint
    LANGUAGE c STABLE STRICT AS 'MODULE_PATHNAME', 'pg_sync_pending';
COMMENT ON FUNCTION pg_sync._pending(integer, boolean) IS
    'Internal: an endpoint''s pending events (committed, not yet delivered nor dead) from shared '
    'memory; while those counts are not exact it counts the endpoint''s queue instead, or returns '
    'NULL with count_if_unknown => false.';

-- Created where missing (an update runs this file again). ENABLE ALWAYS: replica-role sessions
-- (a data-only restore with session_replication_role = replica) are counted too; changes that
-- logical replication applies never reach the queue (pg_sync._ignore_replicated()). The row
-- trigger on the queue is cloned onto its partitions; statement triggers are not, so each
-- partition gets its own (a DELETE or TRUNCATE of a partition by hand asks for a recount too).
DO $$
DECLARE
    p regclass;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = 'pg_sync._queue'::regclass
                                                       AND tgname = 'pg_sync_count_insert') THEN
        CREATE TRIGGER pg_sync_count_insert AFTER INSERT ON pg_sync._queue
            FOR EACH ROW EXECUTE FUNCTION pg_sync._count_queue();
        ALTER TABLE pg_sync._queue ENABLE ALWAYS TRIGGER pg_sync_count_insert;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = 'pg_sync._queue'::regclass
                                                       AND tgname = 'pg_sync_count_change') THEN
        CREATE TRIGGER pg_sync_count_change AFTER UPDATE OR DELETE OR TRUNCATE ON pg_sync._queue
            FOR EACH STATEMENT EXECUTE FUNCTION pg_sync._count_queue();
        ALTER TABLE pg_sync._queue ENABLE ALWAYS TRIGGER pg_sync_count_change;
    END IF;
    FOR p IN SELECT t.relid FROM pg_catalog.pg_partition_tree('pg_sync._queue') t
              WHERE t.relid <> 'pg_sync._queue'::regclass ORDER BY t.relid::oid LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = p AND tgname = 'pg_sync_count_change') THEN
            EXECUTE format('CREATE TRIGGER pg_sync_count_change AFTER UPDATE OR DELETE OR TRUNCATE ON %s'
                           ' FOR EACH STATEMENT EXECUTE FUNCTION pg_sync._count_queue()', p);
            EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER pg_sync_count_change', p);
        END IF;
    END LOOP;
END
$$;
