-- ---------------------------------------------------------------------------------------------
-- Update from before 0.3.0: the events of the old, unpartitioned queue (set aside by
-- sql/updates/0.2.0--0.3.0.sql) move into the partitioned one (sql/src/queue.sql), with their
-- ids; then the old table goes. Runs after the views were redefined on the new queue.
DO $$
BEGIN
    IF to_regclass('pg_sync._queue_before_0_3_0') IS NOT NULL THEN
        INSERT INTO pg_sync._queue (id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at,
                                    attempts, next_attempt_at, last_error, last_status, first_attempt_at, part)
        SELECT id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at,
               attempts, next_attempt_at, last_error, last_status, first_attempt_at, 0
          FROM pg_sync._queue_before_0_3_0;
        ALTER EXTENSION pg_sync DROP TABLE pg_sync._queue_before_0_3_0; -- and from pg_dump's list
        DROP TABLE pg_sync._queue_before_0_3_0;
    END IF;
END
$$;
