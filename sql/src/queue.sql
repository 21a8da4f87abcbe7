-- ---------------------------------------------------------------------------------------------
-- The queue: one row per (captured change, endpoint), in three partitions that take turns
-- (docs/delivery.md, "Queue rotation"). New rows go into the current partition (`part`, which
-- the delivery worker publishes in shared memory: pg_sync._queue_part()). Every
-- pg_sync.queue_rotation_interval the worker makes the next, empty partition current, and it
-- truncates a partition that is no longer current once every event in it has left (delivered or
-- dead), under an exclusive lock that no writer still adding to it can hold. Delivered events
-- thus leave no dead tuples behind for vacuum, and the whole queue, heap and indexes, returns to
-- its idle size after a backlog drains. Which partition an event is in means nothing: order is
-- by id across the three.
--
-- The capture trigger writes a partition with heap_insert (src/pg/queue_writer.cpp checks the
-- columns it fills by name and type; any other column must be nullable). SQL inserts (emit,
-- redeliver) go through the parent and use the defaults.
--
-- Created here, where missing, rather than in tables.sql: an update from before 0.3.0 set the
-- old, unpartitioned queue aside (sql/updates/0.2.0--0.3.0.sql); its rows move in once the views
-- no longer depend on it (sql/src/queue_migration.sql).

-- The current partition of this database's queue as the worker published it (0 until one did).
-- Any partition is correct for a new row; the current one is what lets the others be truncated.
CREATE OR REPLACE FUNCTION pg_sync._queue_part() RETURNS smallint
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_queue_part';
COMMENT ON FUNCTION pg_sync._queue_part() IS
    'Internal: the queue partition (0 to 2) new events go into, as this database''s delivery worker '
    'published it (queue rotation); 0 until a worker did.';

DO $$
BEGIN
    IF to_regclass('pg_sync._queue') IS NULL THEN
        CREATE TABLE pg_sync._queue (
            id              bigint NOT NULL DEFAULT nextval('pg_sync._queue_id_seq'),
            endpoint_id     int NOT NULL,
            op              text NOT NULL,
            tbl             text,
            key             json,
            new_row         json,
            old_row         json,
            emit_type       text,
            txid            xid8 NOT NULL DEFAULT pg_current_xact_id(),
            captured_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
            attempts        int NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            last_error      text,
            last_status     int,
            first_attempt_at timestamptz,
            part            smallint NOT NULL DEFAULT pg_sync._queue_part(),
            -- The writer's pg_sync.traceparent (W3C, validated when set); NULL: none.
            traceparent     text
        ) PARTITION BY LIST (part);
        ALTER SEQUENCE pg_sync._queue_id_seq OWNED BY pg_sync._queue.id;
        -- Each partition's primary key leads with endpoint_id: the worker reads each endpoint's
        -- queue in id order (a merge of the three), and it is the only index the capture trigger
        -- maintains. Vacuum is the fallback for a partition that cannot be truncated for long
        -- (a backlog larger than a partition can carry over, events held for hours): after 1% dead
        -- rows, not PostgreSQL's 20%, and vacuum_index_cleanup = on, since with the default (auto)
        -- a vacuum that finds few dead index entries leaves dead line pointers behind.
        FOR p IN 0..2 LOOP
            EXECUTE format('CREATE TABLE pg_sync._queue_%s PARTITION OF pg_sync._queue'
                           ' (PRIMARY KEY (endpoint_id, id)) FOR VALUES IN (%s)'
                           ' WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,'
                           '       autovacuum_vacuum_insert_scale_factor = 0.05, vacuum_index_cleanup = on)', p, p);
            PERFORM pg_catalog.pg_extension_config_dump(format('pg_sync._queue_%s', p)::regclass, '');
        END LOOP;
    END IF;
    -- Where the rotation stands (one row, written by the delivery worker): the current partition,
    -- when it became current, and the queue sequence's position then.
    IF to_regclass('pg_sync._queue_rotation') IS NULL THEN
        CREATE TABLE pg_sync._queue_rotation (
            current_part smallint NOT NULL CHECK (current_part BETWEEN 0 AND 2),
            rotated_at   timestamptz NOT NULL,
            rotated_seq  bigint NOT NULL
        );
        INSERT INTO pg_sync._queue_rotation VALUES (0, now(), 0);
    END IF;
END
$$;
-- (Commented here, not in the DO block: an update comments the tables it finds too.)
COMMENT ON TABLE pg_sync._queue IS
    'Internal: the queue, one row per captured change and endpoint, until it is delivered or dead, '
    'partitioned in three partitions that take turns (pg_sync.queue_rotation_interval). Read '
    'through the view pg_sync.endpoint_status (pending, oldest_pending_age). Kept by pg_dump.';
DO $$
BEGIN
    FOR p IN 0..2 LOOP
        EXECUTE format('COMMENT ON TABLE pg_sync._queue_%s IS %L', p,
                       format('Internal: partition %s of the queue pg_sync._queue (queue rotation: '
                              'truncated once it is no longer current and its events left).', p));
    END LOOP;
END
$$;
COMMENT ON TABLE pg_sync._queue_rotation IS
    'Internal: where the queue rotation stands (one row, written by the delivery worker): the '
    'current partition, when it became current, and the queue sequence''s position then.';
