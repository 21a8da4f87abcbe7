-- ---------------------------------------------------------------------------------------------
-- Dead letters

-- Moves dead letters back into the queue (all of them, of one endpoint, or the given ids) with
-- fresh attempts. They keep their ids, so each goes out before the later events of its key that
-- waited behind it. Returns how many moved.
CREATE OR REPLACE FUNCTION pg_sync.redeliver(endpoint text DEFAULT NULL, ids bigint[] DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int := CASE WHEN redeliver.endpoint IS NULL THEN NULL
                      ELSE pg_sync._endpoint_id(redeliver.endpoint) END;
    eps int[];
    moved bigint;
BEGIN
    IF array_ndims(ids) > 1 THEN
        RAISE EXCEPTION 'ids must be a one-dimensional array' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'For example ''{1042,1043}''.';
    END IF;
    IF ids IS NOT NULL AND array_position(ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'ids must not contain NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- The endpoints of the letters that move, locked KEY SHARE (as emit does), in id order:
    -- a drop_endpoint() then waits until they are back in the queue, where it deletes them, or,
    -- when it came first, they are gone with their endpoint. Only their letters move.
    eps := ARRAY(SELECT e.id FROM pg_sync._endpoints e
                  WHERE e.id IN (SELECT d.endpoint_id FROM pg_sync._dead_letters d
                                  WHERE (ep_id IS NULL OR d.endpoint_id = ep_id)
                                    AND (redeliver.ids IS NULL OR d.id = ANY (redeliver.ids)))
                  ORDER BY e.id FOR KEY SHARE OF e);
    WITH gone AS (
        DELETE FROM pg_sync._dead_letters d
         WHERE d.endpoint_id = ANY (eps)
           AND (redeliver.ids IS NULL OR d.id = ANY (redeliver.ids))
        RETURNING d.*)
    INSERT INTO pg_sync._queue (id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid,
                                captured_at, attempts, traceparent)
    SELECT g.id, g.endpoint_id, g.op, g.tbl, g.key, g.new_row, g.old_row, g.emit_type, g.txid,
           g.captured_at, 0, g.traceparent -- (the trace of the write it came from)
      FROM gone g;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        PERFORM pg_sync._wake(true); -- the worker re-reads heads and dead letters
    END IF;
    RETURN moved;
END
$$;
COMMENT ON FUNCTION pg_sync.redeliver(text, bigint[]) IS
    'Moves dead letters (all, one endpoint''s, or the given ids) back into the queue with fresh '
    'attempts and their original ids, so each goes out before the later events of its key; returns '
    'how many moved. For pgsync_admin.';

-- Drops dead letters (all, of one endpoint, or older than an age), releasing the later events of
-- their keys. Returns how many were dropped.
CREATE OR REPLACE FUNCTION pg_sync.purge_dead(endpoint text DEFAULT NULL, older_than interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int := CASE WHEN purge_dead.endpoint IS NULL THEN NULL
                      ELSE pg_sync._endpoint_id(purge_dead.endpoint) END;
    cutoff timestamptz;
    dropped bigint;
BEGIN
    IF older_than < interval '0' THEN
        RAISE EXCEPTION 'older_than must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF older_than IS NOT NULL THEN
        BEGIN
            cutoff := now() - older_than;
        EXCEPTION WHEN datetime_field_overflow THEN
            RAISE EXCEPTION 'older_than is too large: %', older_than
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'now() - older_than is before the earliest timestamp (4713 BC).',
                      HINT = 'Pass NULL to drop dead letters of any age.';
        END;
    END IF;
    DELETE FROM pg_sync._dead_letters d
     WHERE (ep_id IS NULL OR d.endpoint_id = ep_id)
       AND (cutoff IS NULL OR d.dead_at < cutoff);
    GET DIAGNOSTICS dropped = ROW_COUNT;
    IF dropped > 0 THEN
        PERFORM pg_sync._wake(true);
    END IF;
    RETURN dropped;
END
$$;
COMMENT ON FUNCTION pg_sync.purge_dead(text, interval) IS
    'Drops dead letters (all, one endpoint''s, or those dead longer than older_than), releasing the '
    'later events of their keys that waited behind them; returns how many were dropped. For '
    'pgsync_admin.';
