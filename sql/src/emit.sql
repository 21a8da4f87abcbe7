-- An application event, atomic with the caller's transaction.
CREATE OR REPLACE FUNCTION pg_sync.emit(endpoint text, type text, payload jsonb, key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    result bigint;
    ep_id int;
BEGIN
    PERFORM pg_sync._require(type, 'type');
    PERFORM pg_sync._require(payload, 'payload');
    IF type !~ '[^[:space:]]' OR length(type) > 200 THEN
        RAISE EXCEPTION 'type must be a non-empty text of at most 200 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    ep_id := pg_sync._endpoint_id(endpoint);
    -- Events of one key must get their ids in commit order (the worker sends them in id order):
    -- writers of the same key take turns, as row locks make writers of the same row do.
    IF key IS NOT NULL THEN
        PERFORM pg_catalog.pg_advisory_xact_lock(1885827961, -- 'pgsy'
                                                 pg_catalog.hashtext(ep_id::text || '/' || key));
    END IF;
    -- The caller's trace (SET LOCAL pg_sync.traceparent, validated when it was set) goes with it.
    INSERT INTO pg_sync._queue (endpoint_id, op, key, new_row, emit_type, traceparent)
    VALUES (ep_id, 'emit', to_json(key), payload::json, type,
            nullif(current_setting('pg_sync.traceparent', true), ''))
    RETURNING id INTO result;
    PERFORM pg_sync._wake();
    RETURN result;
END
$$;
COMMENT ON FUNCTION pg_sync.emit(text, text, jsonb, text) IS
    'Queues an application event (op "emit", with its type, payload and optional key) for an '
    'endpoint in the caller''s transaction: sent only if the transaction commits. Returns its id. '
    'For pgsync_admin.';
