-- pg_sync 0.1.0 -> 0.2.0. Run by ALTER EXTENSION pg_sync UPDATE (after installing the 0.2.0
-- build and restarting the server). test/180_upgrade.sh checks that the result equals a fresh
-- 0.2.0 install, object by object, and that queued events and dead letters survive it.
--
-- 0.2.0: backfill (pg_sync._backfills, backfill/cancel_backfill/resume_backfill, the
-- pg_sync.backfills view, a health() row), protection of the capture triggers (the DDL event
-- trigger also fires on CREATE/ALTER TRIGGER), locking fixes in the configuration functions,
-- clearer errors, vacuum_index_cleanup on the queue.
\echo Use "ALTER EXTENSION pg_sync UPDATE TO '0.2.0'" to load this file. \quit

ALTER TABLE pg_sync._queue SET (vacuum_index_cleanup = on);

-- _endpoint_id(endpoint, for_update bool) became _endpoint_id(endpoint, mode text).
DROP FUNCTION pg_sync._endpoint_id(text, bool);

CREATE TABLE pg_sync._backfills (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tbl           regclass NOT NULL,
    endpoint_id   int NOT NULL REFERENCES pg_sync._endpoints (id) ON DELETE CASCADE,
    batch_rows    int NOT NULL,
    requested_by  oid NOT NULL,
    state         text NOT NULL DEFAULT 'running'
                  CHECK (state IN ('running', 'done', 'cancelled', 'failed')),
    last_key      text[],            -- page key of the last row read; NULL: from the start
    rows_scanned  bigint NOT NULL DEFAULT 0,
    rows_enqueued bigint NOT NULL DEFAULT 0,
    batches       bigint NOT NULL DEFAULT 0,
    first_id      bigint,            -- first queue id this job enqueued (for its throttle)
    waiting_for   text,              -- why the last attempt did not advance
    last_error    text,
    retry_at      timestamptz,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE UNIQUE INDEX _backfills_one_running ON pg_sync._backfills (tbl, endpoint_id) WHERE state = 'running';

-- New and changed functions, as in pg_sync--0.2.0.sql.

CREATE OR REPLACE FUNCTION pg_sync._quote(name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$ SELECT to_json(name)::text $$;

CREATE OR REPLACE FUNCTION pg_sync._endpoint_id(endpoint text, mode text DEFAULT 'key share') RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    result int;
BEGIN
    IF endpoint IS NULL THEN
        RAISE EXCEPTION 'endpoint name must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF mode = 'key share' THEN
        SELECT e.id INTO result FROM pg_sync._endpoints e WHERE e.name = endpoint FOR KEY SHARE;
    ELSIF mode = 'no key update' THEN
        SELECT e.id INTO result FROM pg_sync._endpoints e WHERE e.name = endpoint FOR NO KEY UPDATE;
    ELSIF mode = 'none' THEN
        SELECT e.id INTO result FROM pg_sync._endpoints e WHERE e.name = endpoint;
    ELSE
        RAISE EXCEPTION 'unknown lock mode %', mode;
    END IF;
    IF result IS NULL THEN
        PERFORM pg_sync._no_endpoint(endpoint);
    END IF;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION pg_sync._no_endpoint(endpoint text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'endpoint % does not exist', pg_sync._quote(endpoint)
        USING ERRCODE = 'undefined_object',
              HINT = 'See SELECT name FROM pg_sync.endpoints; create one with pg_sync.create_endpoint().';
END
$$;

CREATE OR REPLACE FUNCTION pg_sync._resolve_columns(tbl regclass, names text[], what text)
RETURNS TABLE (name text, attnum int2)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n text;
    a int2;
    seen text[] := '{}';
BEGIN
    IF names IS NULL THEN
        RETURN;
    END IF;
    IF array_ndims(names) > 1 THEN
        RAISE EXCEPTION '% must be a one-dimensional array', what
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''{id,status}''.';
    END IF;
    IF cardinality(names) = 0 THEN
        RAISE EXCEPTION '% must not be empty', what
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL to use the default.';
    END IF;
    FOREACH n IN ARRAY names LOOP
        IF n IS NULL THEN
            RAISE EXCEPTION '% must not contain nulls', what USING ERRCODE = 'null_value_not_allowed';
        END IF;
        IF n = ANY (seen) THEN
            RAISE EXCEPTION 'column % appears twice in %', pg_sync._quote(n), what USING ERRCODE = 'duplicate_column';
        END IF;
        seen := seen || n;
        SELECT att.attnum INTO a FROM pg_attribute att
         WHERE att.attrelid = tbl AND att.attname = n AND att.attnum > 0 AND NOT att.attisdropped;
        IF a IS NULL THEN
            RAISE EXCEPTION 'column % of % does not exist in table %', pg_sync._quote(n), what, tbl
                USING ERRCODE = 'undefined_column';
        END IF;
        name := n;
        attnum := a;
        RETURN NEXT;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION pg_sync._sync_triggers(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    capture regprocedure := 'pg_sync._capture()'::regprocedure;
    evs text[];
    -- pg_trigger.tgtype bits: ROW 1, INSERT 4, DELETE 8, UPDATE 16, TRUNCATE 32
    want_row int2;
    want_truncate int2;
    have_row int2;
    have_truncate int2;
    r record;
BEGIN
    -- The DDL event triggers refuse changes to capture triggers of tracked tables except these
    -- (the setting is superuser-only, and goes back to off when this function returns).
    PERFORM set_config('pg_sync.internal_trigger_change', 'on', true);
    SELECT array_agg(DISTINCT e) INTO evs
      FROM pg_sync._tracked t, unnest(t.events) e WHERE t.tbl = _sync_triggers.tbl;
    want_row := nullif((CASE WHEN 'insert' = ANY (evs) THEN 4 ELSE 0 END)
                     | (CASE WHEN 'delete' = ANY (evs) THEN 8 ELSE 0 END)
                     | (CASE WHEN 'update' = ANY (evs) THEN 16 ELSE 0 END), 0) | 1;
    want_truncate := CASE WHEN 'truncate' = ANY (evs) THEN 32 END;

    -- A trigger of that name that pg_sync did not make (its table's owner can create one) would
    -- be kept as if it captured, or dropped: refuse instead.
    SELECT tg.tgname, tg.tgrelid::regclass AS rel, tg.tgfoid::regprocedure AS fn INTO r
      FROM pg_trigger tg
     WHERE tg.tgrelid = tbl AND tg.tgfoid <> capture
       AND (tg.tgname = 'pg_sync_capture' AND want_row IS NOT NULL
            OR tg.tgname = 'pg_sync_capture_truncate' AND want_truncate IS NOT NULL)
     ORDER BY tg.tgname LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'table % already has a trigger named % that is not pg_sync''s', tbl, r.tgname
            USING ERRCODE = 'duplicate_object',
                  DETAIL = format('It executes %s, not pg_sync._capture().', r.fn),
                  HINT = 'pg_sync needs that trigger name: rename or drop that trigger, then track the table.';
    END IF;

    SELECT tg.tgtype INTO have_row FROM pg_trigger tg
     WHERE tg.tgrelid = tbl AND tg.tgname = 'pg_sync_capture' AND tg.tgparentid = 0 AND tg.tgfoid = capture;
    SELECT tg.tgtype INTO have_truncate FROM pg_trigger tg
     WHERE tg.tgrelid = tbl AND tg.tgname = 'pg_sync_capture_truncate' AND tg.tgparentid = 0 AND tg.tgfoid = capture;

    IF have_row IS DISTINCT FROM want_row THEN
        IF have_row IS NOT NULL THEN
            EXECUTE format('DROP TRIGGER pg_sync_capture ON %s', tbl);
        END IF;
        IF want_row IS NOT NULL THEN
            EXECUTE format('CREATE TRIGGER pg_sync_capture AFTER %s ON %s FOR EACH ROW '
                           'EXECUTE FUNCTION pg_sync._capture()',
                           (SELECT string_agg(upper(e), ' OR ' ORDER BY e) FROM unnest(evs) e
                             WHERE e IN ('insert', 'update', 'delete')), tbl);
        END IF;
    END IF;
    IF have_truncate IS DISTINCT FROM want_truncate THEN
        IF have_truncate IS NOT NULL THEN
            EXECUTE format('DROP TRIGGER pg_sync_capture_truncate ON %s', tbl);
        END IF;
        IF want_truncate IS NOT NULL THEN
            EXECUTE format('CREATE TRIGGER pg_sync_capture_truncate AFTER TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION pg_sync._capture()', tbl);
        END IF;
    END IF;
    -- Disabled capture triggers (DISABLE TRIGGER, or ENABLE REPLICA TRIGGER: replica sessions
    -- only) of the table and its partitions fire again. (ENABLE ALWAYS is left as it is.)
    FOR r IN SELECT tg.tgrelid::regclass AS rel, tg.tgname FROM pg_trigger tg
              WHERE tg.tgfoid = capture AND tg.tgenabled IN ('D', 'R')
                AND tg.tgrelid IN (SELECT tbl UNION SELECT p.relid FROM pg_partition_tree(tbl) p)
              ORDER BY tg.tgrelid, tg.tgname LOOP
        EXECUTE format('ALTER TABLE %s ENABLE TRIGGER %I', r.rel, r.tgname);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION pg_sync._capture_problem(tbl regclass, events text[]) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH trig AS (
        SELECT tg.tgrelid::regclass AS rel, tg.tgname::text AS name, tg.tgenabled AS enabled,
               tg.tgfoid = 'pg_sync._capture()'::regprocedure AS ours
          FROM pg_trigger tg
         WHERE tg.tgrelid IN (SELECT tbl UNION SELECT p.relid FROM pg_partition_tree(tbl) p)),
    need(name) AS (
        SELECT 'pg_sync_capture'
         WHERE events IS NULL OR events && ARRAY['insert', 'update', 'delete']
        UNION ALL
        SELECT 'pg_sync_capture_truncate' WHERE events IS NULL OR 'truncate' = ANY (events))
    SELECT coalesce(
        (SELECT format('trigger %s on %s does not execute pg_sync._capture()', g.name, g.rel)
           FROM trig g WHERE NOT g.ours AND g.name IN (SELECT name FROM need)
          ORDER BY g.rel::oid, g.name LIMIT 1),
        (SELECT format('trigger %I on %s executes pg_sync._capture() under another name', g.name, g.rel)
           FROM trig g WHERE g.ours AND g.name NOT IN ('pg_sync_capture', 'pg_sync_capture_truncate')
          ORDER BY g.rel::oid, g.name LIMIT 1),
        (SELECT format('trigger %s on %s is %s', g.name, g.rel,
                       CASE g.enabled WHEN 'D' THEN 'disabled'
                                      ELSE 'enabled for replica sessions only (ENABLE REPLICA)' END)
           FROM trig g WHERE g.ours AND g.enabled IN ('D', 'R') AND g.name IN (SELECT name FROM need)
          ORDER BY g.rel::oid, g.name LIMIT 1),
        (SELECT format('trigger %s on %s is missing', n.name, tbl)
           FROM need n
          WHERE events IS NOT NULL
            AND NOT EXISTS (SELECT FROM trig g WHERE g.rel = tbl AND g.name = n.name AND g.ours)
          ORDER BY n.name LIMIT 1))
$$;

CREATE OR REPLACE FUNCTION pg_sync.alter_endpoint(
    name text, url text DEFAULT NULL, headers jsonb DEFAULT NULL, secret text DEFAULT NULL,
    batch_size int DEFAULT NULL, max_attempts int DEFAULT NULL, timeout_ms int DEFAULT NULL,
    max_in_flight int DEFAULT NULL, retry_base_ms int DEFAULT NULL, retry_max_ms int DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep pg_sync._endpoints;
BEGIN
    SELECT * INTO ep FROM pg_sync._endpoints e
     WHERE e.id = pg_sync._endpoint_id(alter_endpoint.name, 'no key update');
    PERFORM pg_sync._check_endpoint(NULL, alter_endpoint.url, alter_endpoint.headers,
        nullif(alter_endpoint.secret, ''), alter_endpoint.batch_size, alter_endpoint.max_attempts,
        alter_endpoint.timeout_ms, alter_endpoint.max_in_flight,
        coalesce(alter_endpoint.retry_base_ms, ep.retry_base_ms),
        coalesce(alter_endpoint.retry_max_ms, ep.retry_max_ms));
    UPDATE pg_sync._endpoints e SET
        url           = coalesce(alter_endpoint.url, e.url),
        headers       = coalesce(alter_endpoint.headers, e.headers),
        secret        = CASE WHEN alter_endpoint.secret IS NULL THEN e.secret
                             ELSE nullif(alter_endpoint.secret, '') END,
        batch_size    = coalesce(alter_endpoint.batch_size, e.batch_size),
        max_attempts  = coalesce(alter_endpoint.max_attempts, e.max_attempts),
        timeout_ms    = coalesce(alter_endpoint.timeout_ms, e.timeout_ms),
        max_in_flight = coalesce(alter_endpoint.max_in_flight, e.max_in_flight),
        retry_base_ms = coalesce(alter_endpoint.retry_base_ms, e.retry_base_ms),
        retry_max_ms  = coalesce(alter_endpoint.retry_max_ms, e.retry_max_ms)
     WHERE e.id = ep.id;
    PERFORM pg_sync._wake(true);
END
$$;

CREATE OR REPLACE FUNCTION pg_sync.drop_endpoint(name text, force bool DEFAULT false) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int;
    tables regclass[];
    attempt int := 0;
    pending bigint;
    t regclass;
BEGIN
    PERFORM pg_sync._require(force, 'force');
    ep_id := pg_sync._endpoint_id(drop_endpoint.name, 'none');
    -- Wait for the transactions that may have queued events for the endpoint and not committed
    -- yet, so that the count below sees their events and nothing arrives for a deleted endpoint
    -- afterwards, and hold new ones back until this transaction ends:
    --   1. the tables tracked for it, in SHARE mode (writers that captured; untrack waits for
    --      the writers of a table too, so a table untracked earlier has none left);
    --   2. its row FOR UPDATE (emit, track, untrack, redeliver, backfill hold KEY SHARE on it;
    --      alter, pause, resume NO KEY UPDATE).
    -- Writers take these in either order (a transaction may write a tracked table, then emit,
    -- or emit, then write), so holding one while waiting for the other could deadlock with
    -- them. The row is therefore only tried (NOWAIT) while the tables are held; when it is
    -- busy, the table locks are given back (a subtransaction is rolled back), its holders are
    -- waited for while holding nothing, and everything is tried again. (After 100 tries, the
    -- row is waited for while the tables are held: a deadlock is then detected and reported.)
    LOOP
        attempt := attempt + 1;
        tables := ARRAY(SELECT tr.tbl FROM pg_sync._tracked tr WHERE tr.endpoint_id = ep_id ORDER BY tr.tbl::oid);
        BEGIN
            FOREACH t IN ARRAY tables LOOP
                EXECUTE format('LOCK TABLE %s IN SHARE MODE', t);
            END LOOP;
            BEGIN
                IF attempt < 100 THEN
                    PERFORM FROM pg_sync._endpoints e WHERE e.id = ep_id FOR UPDATE NOWAIT;
                ELSE
                    PERFORM FROM pg_sync._endpoints e WHERE e.id = ep_id FOR UPDATE;
                END IF;
            EXCEPTION WHEN lock_not_available THEN
                RAISE SQLSTATE 'PSRTY'; -- give the table locks back too
            END;
            IF NOT FOUND THEN
                PERFORM pg_sync._no_endpoint(drop_endpoint.name); -- dropped meanwhile
            END IF;
            -- While the row is locked, nobody can track a table for the endpoint; if one was
            -- tracked before, lock it too: try again.
            IF tables = ARRAY(SELECT tr.tbl FROM pg_sync._tracked tr WHERE tr.endpoint_id = ep_id
                               ORDER BY tr.tbl::oid) THEN
                EXIT;
            END IF;
            RAISE SQLSTATE 'PSRTY';
        EXCEPTION WHEN SQLSTATE 'PSRTY' THEN
            NULL;
        END;
        -- Wait for the row's current holders, holding nothing.
        BEGIN
            PERFORM FROM pg_sync._endpoints e WHERE e.id = ep_id FOR UPDATE;
            RAISE SQLSTATE 'PSRTY';
        EXCEPTION WHEN SQLSTATE 'PSRTY' THEN
            NULL;
        END;
    END LOOP;

    SELECT count(*) INTO pending FROM pg_sync._queue q WHERE q.endpoint_id = ep_id;
    IF pending > 0 AND NOT force THEN
        RAISE EXCEPTION 'endpoint "%" has % pending event%', drop_endpoint.name, pending,
                        CASE WHEN pending = 1 THEN '' ELSE 's' END
            USING ERRCODE = 'object_in_use',
                  HINT = 'Wait until they are delivered, or call pg_sync.drop_endpoint(name, force => true) to discard them.';
    END IF;
    SELECT count(*) INTO pending FROM pg_sync._dead_letters d WHERE d.endpoint_id = ep_id;
    IF pending > 0 AND NOT force THEN
        RAISE EXCEPTION 'endpoint "%" has % dead letter%', drop_endpoint.name, pending,
                        CASE WHEN pending = 1 THEN '' ELSE 's' END
            USING ERRCODE = 'object_in_use',
                  HINT = 'Look at pg_sync.dead_letters first, or call pg_sync.drop_endpoint(name, force => true) to discard them.';
    END IF;
    -- Queue first, then dead letters: the worker moves events from the queue to the dead
    -- letters (without an endpoint lock); one it moves meanwhile is then found in the second.
    DELETE FROM pg_sync._queue q WHERE q.endpoint_id = ep_id;
    DELETE FROM pg_sync._dead_letters d WHERE d.endpoint_id = ep_id;
    DELETE FROM pg_sync._endpoint_state s WHERE s.endpoint_id = ep_id;
    DELETE FROM pg_sync._attempts a WHERE a.endpoint_id = ep_id;
    FOR t IN DELETE FROM pg_sync._tracked tr WHERE tr.endpoint_id = ep_id RETURNING tr.tbl LOOP
        PERFORM pg_sync._sync_triggers(t);
    END LOOP;
    DELETE FROM pg_sync._endpoints e WHERE e.id = ep_id;
    PERFORM pg_sync._config_changed();
END
$$;

CREATE OR REPLACE FUNCTION pg_sync.pause_endpoint(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int;
BEGIN
    ep_id := pg_sync._endpoint_id(pause_endpoint.name, 'no key update');
    UPDATE pg_sync._endpoints e SET paused = true, paused_reason = 'paused by ' || session_user
     WHERE e.id = ep_id AND NOT e.paused;
    PERFORM pg_sync._wake(true);
END
$$;

CREATE OR REPLACE FUNCTION pg_sync.resume_endpoint(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int;
BEGIN
    ep_id := pg_sync._endpoint_id(resume_endpoint.name, 'no key update');
    UPDATE pg_sync._endpoints e SET paused = false, paused_reason = NULL WHERE e.id = ep_id;
    PERFORM pg_sync._wake(true);
END
$$;

CREATE OR REPLACE FUNCTION pg_sync._track(
    tbl regclass, endpoint text, events text[], columns text[], key_columns text[], filter text)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int;
    rel record;
    evs text[];
    bad text;
    col_names text[];
    col_nums int2[];
    key_names text[];
    key_nums int2[];
    other regclass;
BEGIN
    ep_id := pg_sync._endpoint_id(endpoint);
    SELECT c.relkind, c.relpersistence, c.relowner, n.nspname, c.relispartition INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', tbl
            USING ERRCODE = 'wrong_object_type', HINT = 'Only ordinary and partitioned tables can be tracked.';
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'cannot track temporary table %', tbl USING ERRCODE = 'wrong_object_type';
    END IF;
    IF rel.nspname IN ('pg_sync', 'pg_catalog', 'information_schema') OR rel.nspname LIKE 'pg_toast%' THEN
        RAISE EXCEPTION 'cannot track %: it is a system or pg_sync table', tbl
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM pg_sync._require(events, 'events');
    IF array_ndims(events) > 1 THEN
        RAISE EXCEPTION 'events must be a one-dimensional array' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'For example ''{insert,update}''.';
    END IF;
    IF cardinality(events) = 0 THEN
        RAISE EXCEPTION 'events must not be empty' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give any of insert, update, delete, truncate.';
    END IF;
    IF array_position(events, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'events must not contain nulls' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT e INTO bad FROM unnest(events) e
     WHERE lower(e) NOT IN ('insert', 'update', 'delete', 'truncate') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown event %', pg_sync._quote(bad) USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Events are insert, update, delete and truncate.';
    END IF;
    SELECT array_agg(DISTINCT lower(e) ORDER BY lower(e)) INTO evs FROM unnest(events) e;

    SELECT array_agg(c.name ORDER BY c.ord), array_agg(c.attnum ORDER BY c.ord)
      INTO col_names, col_nums
      FROM (SELECT r.*, row_number() OVER () AS ord
              FROM pg_sync._resolve_columns(tbl, columns, 'columns') r) c;
    SELECT array_agg(c.name ORDER BY c.ord), array_agg(c.attnum ORDER BY c.ord)
      INTO key_names, key_nums
      FROM (SELECT r.*, row_number() OVER () AS ord
              FROM pg_sync._resolve_columns(tbl, key_columns, 'key_columns') r) c;
    IF key_columns IS NULL AND pg_sync._primary_key(tbl) IS NULL THEN
        RAISE EXCEPTION 'table % has no primary key', tbl
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'Add a primary key, or pass key_columns to identify rows.';
    END IF;
    IF filter IS NOT NULL THEN
        IF filter !~ '[^[:space:]]' THEN
            RAISE EXCEPTION 'filter must not be empty' USING ERRCODE = 'invalid_parameter_value',
                HINT = 'Pass NULL to send every change.';
        END IF;
        PERFORM pg_sync._check_filter(tbl, filter);
    END IF;

    -- A table and its partitioned ancestor (or a partition) cannot both be tracked: the capture
    -- trigger of the parent is cloned onto its partitions under the same name.
    SELECT t.tbl INTO other FROM pg_sync._tracked t
     WHERE t.tbl <> _track.tbl
       AND (t.tbl IN (SELECT relid FROM pg_partition_ancestors(_track.tbl))
            OR t.tbl IN (SELECT relid FROM pg_partition_tree(_track.tbl)))
     LIMIT 1;
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'table % is in the same partition hierarchy as tracked table %', tbl, other
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Track either the partitioned table or its partitions, not both.';
    END IF;

    INSERT INTO pg_sync._tracked AS t (tbl, endpoint_id, events, columns, key_columns, filter,
                                       column_attnums, key_attnums, attnums_of)
    VALUES (tbl, ep_id, evs, col_names, key_names, filter, col_nums, key_nums, tbl::oid)
    ON CONFLICT ON CONSTRAINT _tracked_pkey DO UPDATE
       SET events = EXCLUDED.events, columns = EXCLUDED.columns,
           key_columns = EXCLUDED.key_columns, filter = EXCLUDED.filter,
           column_attnums = EXCLUDED.column_attnums, key_attnums = EXCLUDED.key_attnums,
           attnums_of = EXCLUDED.attnums_of;
    PERFORM pg_sync._sync_triggers(tbl);
    PERFORM pg_sync._config_changed();
END
$$;

CREATE OR REPLACE FUNCTION pg_sync.untrack(tbl regclass, endpoint text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int;
BEGIN
    PERFORM pg_sync._require(tbl, 'tbl');
    IF endpoint IS NOT NULL THEN
        ep_id := pg_sync._endpoint_id(endpoint);
    END IF;
    DELETE FROM pg_sync._tracked t
     WHERE t.tbl = untrack.tbl AND (ep_id IS NULL OR t.endpoint_id = ep_id);
    IF NOT FOUND THEN
        IF endpoint IS NULL THEN
            RAISE EXCEPTION 'table % is not tracked', tbl USING ERRCODE = 'undefined_object';
        ELSE
            RAISE EXCEPTION 'table % is not tracked for endpoint "%"', tbl, endpoint
                USING ERRCODE = 'undefined_object';
        END IF;
    END IF;
    -- Wait for the transactions that wrote to the table (and hold new ones back), as a change of
    -- its triggers would, also when they stay: what those transactions captured for the
    -- endpoint is then committed before its tracking goes, so a later drop_endpoint(), which
    -- waits only for the writers of the tables still tracked for it, finds and counts it.
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);
    PERFORM pg_sync._sync_triggers(tbl);
    PERFORM pg_sync._config_changed();
END
$$;

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
                                captured_at, attempts)
    SELECT g.id, g.endpoint_id, g.op, g.tbl, g.key, g.new_row, g.old_row, g.emit_type, g.txid,
           g.captured_at, 0
      FROM gone g;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved > 0 THEN
        PERFORM pg_sync._wake(true); -- the worker re-reads heads and dead letters
    END IF;
    RETURN moved;
END
$$;

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

CREATE OR REPLACE FUNCTION pg_sync._page_key(tbl regclass, OUT columns text[], OUT types text[], OUT op_schema text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    idx oid;
    schemas text[];
BEGIN
    SELECT i.indexrelid INTO idx FROM pg_index i
     WHERE i.indrelid = tbl AND i.indisunique AND i.indisvalid AND i.indimmediate
       AND i.indpred IS NULL AND i.indexprs IS NULL
       AND NOT EXISTS (SELECT FROM unnest(i.indkey) WITH ORDINALITY k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = tbl AND a.attnum = k.attnum
                        WHERE k.ord <= i.indnkeyatts AND NOT a.attnotnull)
     ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid LIMIT 1;
    IF idx IS NULL THEN
        RAISE EXCEPTION 'table % has no primary key or unique index over NOT NULL columns', tbl
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'Backfill reads the table in pages ordered by such a key.';
    END IF;
    SELECT array_agg(a.attname::text ORDER BY k.ord),
           array_agg(format_type(a.atttypid, NULL) ORDER BY k.ord),
           array_agg(DISTINCT n.nspname::text)
      INTO columns, types, schemas
      FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey, i.indclass::oid[]) WITH ORDINALITY AS k(attnum, opclass, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      JOIN pg_opclass c ON c.oid = k.opclass
      JOIN pg_amop o ON o.amopfamily = c.opcfamily AND o.amopstrategy = 5
                    AND o.amoplefttype = c.opcintype AND o.amoprighttype = c.opcintype
      JOIN pg_operator op ON op.oid = o.amopopr
      JOIN pg_namespace n ON n.oid = op.oprnamespace
     WHERE i.indexrelid = idx AND k.ord <= i.indnkeyatts;
    IF cardinality(schemas) <> 1 THEN
        RAISE EXCEPTION 'cannot backfill %: its key columns compare with operators from different schemas (%)',
            tbl, array_to_string(schemas, ', ') USING ERRCODE = 'feature_not_supported';
    END IF;
    op_schema := schemas[1];
END
$$;

CREATE OR REPLACE FUNCTION pg_sync._backfill_page(job bigint, OUT query text, OUT owner oid, OUT table_name text,
                                       OUT throttled bool)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b pg_sync._backfills;
    t pg_sync._tracked;
    pk record;
    cols text[];
    keys text[];
    qname text;
    cmp text;
    pending bigint;
BEGIN
    SELECT * INTO b FROM pg_sync._backfills WHERE id = job;
    SELECT c.relowner, quote_ident(n.nspname) || '.' || quote_ident(c.relname)
      INTO owner, table_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = b.tbl;
    IF owner IS NULL THEN
        RAISE EXCEPTION 'the table was dropped' USING ERRCODE = 'undefined_table';
    END IF;
    -- Keep the endpoint (drop_endpoint waits for this page) and the tracking as they are.
    PERFORM FROM pg_sync._endpoints WHERE id = b.endpoint_id FOR KEY SHARE;
    SELECT * INTO t FROM pg_sync._tracked WHERE tbl = b.tbl AND endpoint_id = b.endpoint_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is no longer tracked for this endpoint', b.tbl
            USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT has_table_privilege(b.requested_by, b.tbl, 'SELECT') THEN
        RAISE EXCEPTION 'role % may no longer read table %', b.requested_by::regrole, b.tbl
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Throttle: no new page while ten pages' worth of this endpoint's events since the job
    -- started are still waiting (the queue stays small however large the table).
    IF b.first_id IS NOT NULL THEN
        SELECT count(*) INTO pending
          FROM (SELECT FROM pg_sync._queue q WHERE q.endpoint_id = b.endpoint_id AND q.id >= b.first_id
                LIMIT 10 * b.batch_rows) s;
        throttled := pending >= 10 * b.batch_rows;
    ELSE
        throttled := false;
    END IF;

    SELECT * INTO pk FROM pg_sync._page_key(b.tbl);
    IF b.last_key IS NOT NULL AND cardinality(b.last_key) <> cardinality(pk.columns) THEN
        RAISE EXCEPTION 'the key of table % changed during the backfill', b.tbl
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Start a new backfill.';
    END IF;
    cols := coalesce(t.columns,
                     ARRAY(SELECT a.attname::text FROM pg_attribute a
                            WHERE a.attrelid = b.tbl AND a.attnum > 0 AND NOT a.attisdropped
                            ORDER BY a.attnum));
    keys := coalesce(t.key_columns, pg_sync._primary_key(b.tbl));
    qname := b.tbl::oid::regclass::text; -- search_path is pg_catalog here: schema-qualified
    cmp := format('(%s) OPERATOR(%I.>) (%s)',
                  (SELECT string_agg(format('new.%I', c), ', ' ORDER BY o) FROM unnest(pk.columns) WITH ORDINALITY u(c, o)),
                  pk.op_schema,
                  (SELECT string_agg(format('$1[%s]::%s', o, ty), ', ' ORDER BY o)
                     FROM unnest(pk.types) WITH ORDINALITY u(ty, o)));
    query := format(
        'SELECT (SELECT pg_catalog.row_to_json(k.*) FROM (SELECT %s) k) AS key,'
        '       (SELECT pg_catalog.row_to_json(r.*) FROM (SELECT %s) r) AS new_row,'
        '       %s AS pass,'
        '       ARRAY[%s] AS page_key'
        '  FROM %s AS new CROSS JOIN LATERAL (SELECT (NULL::%s).*) AS old'
        ' WHERE $1 IS NULL OR %s'
        ' ORDER BY %s'
        ' LIMIT $2 FOR SHARE OF new',
        (SELECT string_agg(format('new.%I', c), ', ' ORDER BY o) FROM unnest(keys) WITH ORDINALITY u(c, o)),
        (SELECT string_agg(format('new.%I', c), ', ' ORDER BY o) FROM unnest(cols) WITH ORDINALITY u(c, o)),
        CASE WHEN t.filter IS NULL THEN 'true' ELSE format('((%s) IS TRUE)', t.filter) END,
        (SELECT string_agg(format('new.%I::pg_catalog.text', c), ', ' ORDER BY o)
           FROM unnest(pk.columns) WITH ORDINALITY u(c, o)),
        qname, qname, cmp,
        (SELECT string_agg(format('new.%I USING OPERATOR(%I.<)', c, pk.op_schema), ', ' ORDER BY o)
           FROM unnest(pk.columns) WITH ORDINALITY u(c, o)));
END
$$;

CREATE OR REPLACE FUNCTION pg_sync._backfill_record(job bigint, table_name text, keys json[], rows json[],
                                         last_key text[], scanned int) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b pg_sync._backfills;
    first bigint;
    n bigint;
BEGIN
    SELECT * INTO b FROM pg_sync._backfills WHERE id = job;
    WITH ins AS (
        INSERT INTO pg_sync._queue (endpoint_id, op, tbl, key, new_row)
        SELECT b.endpoint_id, 'snapshot', table_name, u.k, u.r
          FROM unnest(keys, rows) WITH ORDINALITY AS u(k, r, ord) ORDER BY u.ord
        RETURNING id)
    SELECT min(id), count(*) INTO first, n FROM ins;
    UPDATE pg_sync._backfills
       SET last_key = coalesce(_backfill_record.last_key, _backfills.last_key),
           rows_scanned = rows_scanned + scanned, rows_enqueued = rows_enqueued + n,
           batches = batches + 1, first_id = coalesce(first_id, first),
           waiting_for = NULL, last_error = NULL, retry_at = NULL, updated_at = now(),
           state = CASE WHEN scanned < b.batch_rows THEN 'done' ELSE state END,
           finished_at = CASE WHEN scanned < b.batch_rows THEN now() END
     WHERE id = job;
    IF n > 0 THEN
        PERFORM pg_sync._wake();
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION pg_sync._backfill(tbl regclass, endpoint text, batch_rows int, requested_by oid)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep_id int := pg_sync._endpoint_id(endpoint);
    running bigint;
    result bigint;
BEGIN
    PERFORM pg_sync._require(batch_rows, 'batch_rows');
    IF batch_rows NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'batch_rows must be between 1 and 100000, not %', batch_rows
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_sync._tracked t WHERE t.tbl = _backfill.tbl AND t.endpoint_id = ep_id) THEN
        RAISE EXCEPTION 'table % is not tracked for endpoint "%"', tbl, endpoint
            USING ERRCODE = 'undefined_object',
                  HINT = 'Call pg_sync.track() first: backfill sends rows as tracking configures them.';
    END IF;
    PERFORM pg_sync._page_key(tbl); -- fails early when the table has no usable key
    SELECT b.id INTO running FROM pg_sync._backfills b
     WHERE b.tbl = _backfill.tbl AND b.endpoint_id = ep_id AND b.state = 'running';
    IF running IS NOT NULL THEN
        RAISE EXCEPTION 'a backfill of % for endpoint "%" is already running (id %)', tbl, endpoint, running
            USING ERRCODE = 'object_in_use',
                  HINT = 'Follow it in pg_sync.backfills, or stop it with pg_sync.cancel_backfill().';
    END IF;
    INSERT INTO pg_sync._backfills (tbl, endpoint_id, batch_rows, requested_by)
    VALUES (tbl, ep_id, batch_rows, requested_by)
    RETURNING id INTO result;
    PERFORM pg_sync._wake(true); -- the delivery worker starts the backfill worker
    RAISE NOTICE 'backfill % of % for endpoint "%" will start when this transaction commits', result, tbl, endpoint
        USING HINT = 'Follow it in pg_sync.backfills.';
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION pg_sync.backfill(tbl regclass, endpoint text, batch_rows int DEFAULT 1000) RETURNS bigint
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_backfill';

CREATE OR REPLACE FUNCTION pg_sync.cancel_backfill(id bigint) RETURNS bool
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    st text;
BEGIN
    PERFORM pg_sync._require(id, 'id');
    SELECT b.state INTO st FROM pg_sync._backfills b WHERE b.id = cancel_backfill.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'backfill % does not exist', id USING ERRCODE = 'undefined_object';
    END IF;
    IF st <> 'running' THEN
        RETURN false;
    END IF;
    UPDATE pg_sync._backfills b SET state = 'cancelled', finished_at = now(), updated_at = now(),
                                    waiting_for = NULL
     WHERE b.id = cancel_backfill.id;
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION pg_sync.resume_backfill(id bigint) RETURNS bool
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b pg_sync._backfills;
BEGIN
    PERFORM pg_sync._require(id, 'id');
    SELECT * INTO b FROM pg_sync._backfills x WHERE x.id = resume_backfill.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'backfill % does not exist', id USING ERRCODE = 'undefined_object';
    END IF;
    IF b.state = 'running' THEN
        RETURN false;
    ELSIF b.state = 'done' THEN
        RAISE EXCEPTION 'backfill % is done', id USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Start a new one with pg_sync.backfill().';
    END IF;
    IF EXISTS (SELECT FROM pg_sync._backfills x
                WHERE x.tbl = b.tbl AND x.endpoint_id = b.endpoint_id AND x.state = 'running') THEN
        RAISE EXCEPTION 'another backfill of % for this endpoint is running', b.tbl
            USING ERRCODE = 'object_in_use';
    END IF;
    UPDATE pg_sync._backfills x
       SET state = 'running', finished_at = NULL, last_error = NULL, waiting_for = NULL, retry_at = NULL,
           updated_at = now()
     WHERE x.id = resume_backfill.id;
    PERFORM pg_sync._wake(true);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION pg_sync.health()
RETURNS TABLE (severity text, endpoint text, problem text, detail text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    max_age interval := current_setting('pg_sync.health_max_pending_age')::interval;
    max_rate float8 := current_setting('pg_sync.health_max_error_rate')::float8;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_sync._workers() w WHERE w.database = current_database()) THEN
        RETURN QUERY SELECT 'critical'::text, NULL::text, 'no delivery worker'::text,
            'no pg_sync worker runs for this database: check shared_preload_libraries, '
            'pg_sync.max_workers, max_worker_processes and the server log'::text;
    END IF;
    RETURN QUERY
    SELECT 'critical'::text, s.endpoint, 'circuit open'::text,
           format('%s consecutive failed request%s, last error: %s; next attempt at %s',
                  s.consecutive_failures, CASE WHEN s.consecutive_failures = 1 THEN '' ELSE 's' END,
                  coalesce(s.last_error, '?'), coalesce(s.next_attempt_at::text, '?'))
      FROM pg_sync.endpoint_status s WHERE s.state = 'circuit_open'
    UNION ALL
    SELECT 'warning', s.endpoint, 'dead letters',
           format('%s dead letter%s (see pg_sync.dead_letters; then pg_sync.redeliver() or pg_sync.purge_dead())',
                  s.dead, CASE WHEN s.dead = 1 THEN '' ELSE 's' END)
      FROM pg_sync.endpoint_status s WHERE s.dead > 0
    UNION ALL
    SELECT 'warning', s.endpoint, 'lagging',
           format('oldest pending event is %s old (threshold %s); %s pending, state %s%s',
                  date_trunc('second', s.oldest_pending_age), max_age, s.pending, s.state,
                  CASE WHEN s.paused_reason IS NOT NULL THEN ' (' || s.paused_reason || ')' ELSE '' END)
      FROM pg_sync.endpoint_status s WHERE s.oldest_pending_age > max_age
    UNION ALL
    SELECT 'warning', e.name, 'error rate',
           format('%s of the last %s requests failed (threshold %s%%), last error: %s',
                  a.failed, a.total, round((max_rate * 100)::numeric, 1), a.last_error)
      FROM (SELECT a.endpoint_id, count(*) AS total,
                   count(*) FILTER (WHERE a.status IS NULL OR a.status NOT BETWEEN 200 AND 299) AS failed,
                   (array_agg(a.error ORDER BY a.finished_at DESC) FILTER (WHERE a.error IS NOT NULL))[1] AS last_error
              FROM pg_sync._attempts a GROUP BY a.endpoint_id) a
      JOIN pg_sync._endpoints e ON e.id = a.endpoint_id
     WHERE a.total >= 10 AND a.failed::float8 / a.total > max_rate
    UNION ALL
    SELECT 'warning', e.name, 'backfill failed',
           format('backfill %s of %s failed after %s rows: %s (pg_sync.resume_backfill(%s) continues it)',
                  b.id, b.tbl, b.rows_scanned, b.last_error, b.id)
      FROM pg_sync._backfills b JOIN pg_sync._endpoints e ON e.id = b.endpoint_id
     WHERE b.state = 'failed'
    UNION ALL
    -- A capture trigger that is missing or disabled (pg_sync refuses DDL that would do that,
    -- but the event triggers do not run with session_replication_role = replica, and a restore
    -- may leave one out): the table's changes are lost until track() is called again.
    SELECT 'critical', e.name, 'capture disabled',
           format('table %s is tracked, but %s: its changes are not captured; calling pg_sync.track() '
                  'for it again (with its settings from pg_sync.tracked_tables) restores the trigger',
                  t.tbl, p.problem)
      FROM pg_sync._tracked t JOIN pg_sync._endpoints e ON e.id = t.endpoint_id
     CROSS JOIN LATERAL (SELECT pg_sync._capture_problem(t.tbl, t.events) AS problem) p
     WHERE p.problem IS NOT NULL
     ORDER BY 1, 2, 3, 4;
END
$$;

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
    INSERT INTO pg_sync._queue (endpoint_id, op, key, new_row, emit_type)
    VALUES (ep_id, 'emit', to_json(key), payload::json, type)
    RETURNING id INTO result;
    PERFORM pg_sync._wake();
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION pg_sync._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t regclass;
    r record;
BEGIN
    DELETE FROM pg_sync._tracked t USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid = t.tbl::oid;
    IF FOUND THEN
        PERFORM pg_sync._config_changed();
    END IF;
    -- Columns can also go without an ALTER TABLE on the tracked table (DROP TYPE ... CASCADE).
    FOR t IN SELECT DISTINCT tr.tbl FROM pg_event_trigger_dropped_objects() d
               JOIN pg_sync._tracked tr ON tr.tbl::oid = d.objid
              WHERE d.classid = 'pg_class'::regclass AND d.objsubid > 0 LOOP
        PERFORM pg_sync._reconcile(t);
    END LOOP;
    -- A capture trigger goes with its table (whose tracking was deleted above) or through
    -- pg_sync (untrack, drop_endpoint, track: _sync_triggers). DROP TRIGGER of one while its
    -- table is tracked (or DROP FUNCTION pg_sync._capture() CASCADE) is refused.
    IF current_setting('pg_sync.internal_trigger_change', true) = 'on' THEN
        RETURN;
    END IF;
    FOR r IN SELECT d.address_names AS names FROM pg_event_trigger_dropped_objects() d
              WHERE d.object_type = 'trigger'
                AND d.address_names[3] IN ('pg_sync_capture', 'pg_sync_capture_truncate') LOOP
        t := to_regclass(format('%I.%I', r.names[1], r.names[2]));
        IF EXISTS (SELECT FROM pg_sync._tracked tr WHERE tr.tbl = t) THEN
            RAISE EXCEPTION 'this would stop pg_sync from capturing changes of table %', t
                USING ERRCODE = 'dependent_objects_still_exist',
                      DETAIL = format('It drops trigger %s on %s, which pg_sync needs while the table is tracked.',
                                      r.names[3], t),
                      HINT = format('Call pg_sync.untrack(%L) first to stop tracking the table.', t::text);
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION pg_sync._on_ddl_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t regclass;
    problem text;
BEGIN
    -- The altered tables and everything that inherits from them (ALTER TABLE on a parent
    -- renames or drops the column in its partitions and children too).
    FOR t IN WITH RECURSIVE altered(relid) AS (
                 SELECT c.objid FROM pg_event_trigger_ddl_commands() c
                  WHERE c.classid = 'pg_class'::regclass
                 UNION
                 SELECT i.inhrelid FROM pg_inherits i JOIN altered a ON i.inhparent = a.relid)
             SELECT DISTINCT tr.tbl FROM altered a JOIN pg_sync._tracked tr ON tr.tbl::oid = a.relid LOOP
        PERFORM pg_sync._reconcile(t);
    END LOOP;
    -- The capture triggers of a tracked table stay as pg_sync made them: DDL that disables one
    -- (ALTER TABLE ... DISABLE TRIGGER pg_sync_capture, ... ALL or ... USER, ENABLE REPLICA
    -- TRIGGER), renames it (ALTER TRIGGER) or replaces it (CREATE OR REPLACE TRIGGER), on the
    -- table, a partitioned ancestor or a partition, is refused (which rolls it back). pg_sync's
    -- own changes (_sync_triggers) are let through.
    IF current_setting('pg_sync.internal_trigger_change', true) = 'on' THEN
        RETURN;
    END IF;
    FOR t IN WITH cmd(relid) AS (
                 SELECT c.objid FROM pg_event_trigger_ddl_commands() c WHERE c.classid = 'pg_class'::regclass
                 UNION
                 SELECT tg.tgrelid FROM pg_event_trigger_ddl_commands() c
                   JOIN pg_trigger tg ON tg.oid = c.objid
                  WHERE c.classid = 'pg_trigger'::regclass),
             related(relid) AS (
                 SELECT relid FROM cmd
                 UNION
                 SELECT a.relid FROM cmd, pg_partition_ancestors(cmd.relid::regclass) a
                 UNION
                 SELECT p.relid FROM cmd, pg_partition_tree(cmd.relid::regclass) p)
             SELECT DISTINCT tr.tbl FROM pg_sync._tracked tr
              WHERE tr.tbl::oid IN (SELECT relid FROM related) ORDER BY 1 LOOP
        problem := pg_sync._capture_problem(t, NULL);
        IF problem IS NOT NULL THEN
            RAISE EXCEPTION 'this would stop pg_sync from capturing changes of table %', t
                USING ERRCODE = 'dependent_objects_still_exist',
                      DETAIL = format('After this command, %s; pg_sync needs its trigger enabled and unchanged while the table is tracked.', problem),
                      HINT = format('Call pg_sync.untrack(%L) first to stop tracking the table.', t::text);
        END IF;
    END LOOP;
END
$$;

-- The DDL event trigger also follows CREATE TRIGGER / ALTER TRIGGER now.
DROP EVENT TRIGGER pg_sync_ddl_end;
CREATE EVENT TRIGGER pg_sync_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER')
    EXECUTE FUNCTION pg_sync._on_ddl_end();

CREATE VIEW pg_sync.backfills AS
SELECT b.id, b.tbl AS "table", e.name AS endpoint, b.state,
       b.rows_scanned, b.rows_enqueued, t.estimate AS rows_estimated,
       CASE WHEN b.state = 'done' THEN 100.0
            WHEN t.estimate > 0 THEN least(99.9, round(100.0 * b.rows_scanned / t.estimate, 1)) END AS percent_done,
       b.batch_rows, b.batches, b.last_key, b.waiting_for, b.last_error,
       b.requested_by::regrole AS requested_by, b.started_at, b.updated_at, b.finished_at
  FROM pg_sync._backfills b JOIN pg_sync._endpoints e ON e.id = b.endpoint_id
  -- Planner estimate of the row count (of every partition for a partitioned table); NULL
  -- until the table was analyzed.
  LEFT JOIN LATERAL (SELECT CASE WHEN bool_or(c.reltuples >= 0) THEN sum(greatest(c.reltuples, 0))::bigint END
                              AS estimate
                       FROM pg_class c
                      WHERE c.oid = b.tbl AND c.relkind = 'r'
                         OR c.oid IN (SELECT p.relid FROM pg_partition_tree(b.tbl) p WHERE p.isleaf)) t ON true;

-- Privileges, as a fresh install sets them (new functions are not executable by PUBLIC).
REVOKE ALL ON ALL TABLES IN SCHEMA pg_sync FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pg_sync FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pg_sync FROM PUBLIC;
GRANT USAGE ON SCHEMA pg_sync TO PUBLIC;

GRANT SELECT ON pg_sync.endpoints, pg_sync.tracked_tables, pg_sync.endpoint_status,
                pg_sync.dead_letters, pg_sync.workers, pg_sync.recent_attempts, pg_sync.backfills
    TO pgsync_monitor;

GRANT EXECUTE ON FUNCTION
    pg_sync.create_endpoint(text, text, jsonb, text, int, int, int, int, int, int),
    pg_sync.alter_endpoint(text, text, jsonb, text, int, int, int, int, int, int),
    pg_sync.drop_endpoint(text, bool),
    pg_sync.pause_endpoint(text),
    pg_sync.resume_endpoint(text),
    pg_sync.track(regclass, text, text[], text[], text[], text),
    pg_sync.untrack(regclass, text),
    pg_sync.redeliver(text, bigint[]),
    pg_sync.purge_dead(text, interval),
    pg_sync.backfill(regclass, text, int),
    pg_sync.cancel_backfill(bigint),
    pg_sync.resume_backfill(bigint)
    TO pgsync_admin;
GRANT EXECUTE ON FUNCTION pg_sync._workers() TO pgsync_monitor; -- pg_sync.workers calls it as the reader
GRANT EXECUTE ON FUNCTION pg_sync.health() TO pgsync_monitor;
-- Admins may pass emit() on to application roles.
GRANT EXECUTE ON FUNCTION pg_sync.emit(text, text, jsonb, text) TO pgsync_admin WITH GRANT OPTION;
