-- ---------------------------------------------------------------------------------------------
-- Internal helpers. All SECURITY DEFINER functions pin search_path.

-- A name given by the caller, quoted for a message: in double quotes, with quotes, backslashes
-- and control characters escaped as in a JSON string, so that a message never echoes a newline
-- or a quote raw. (quote_ident and quote_literal keep newlines as they are.) An ordinary name
-- reads as before: "name".
CREATE OR REPLACE FUNCTION pg_sync._quote(name text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$ SELECT to_json(name)::text $$;
COMMENT ON FUNCTION pg_sync._quote(text) IS
    'Internal: a caller''s name quoted for a message, in double quotes with quotes, backslashes and '
    'control characters escaped as in a JSON string.';

-- The id of an endpoint, locked in the given mode:
--   'key share'     (the default) for whatever queues events for it or tracks it (emit, track,
--                   untrack, redeliver, backfill): drop_endpoint waits for them;
--   'no key update' for configuration changes (alter, pause, resume): what their UPDATE of
--                   other columns takes anyway; it does not conflict with KEY SHARE, so a
--                   configuration change never holds an application's emit back, nor waits for it;
--   'none'          (drop_endpoint, which takes its locks in its own order).
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
COMMENT ON FUNCTION pg_sync._endpoint_id(text, text) IS
    'Internal: the id of an endpoint by name, its row locked in the given mode (''key share'', ''no '
    'key update'' or ''none''); raises when it does not exist.';

CREATE OR REPLACE FUNCTION pg_sync._no_endpoint(endpoint text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'endpoint % does not exist', pg_sync._quote(endpoint)
        USING ERRCODE = 'undefined_object',
              HINT = 'See SELECT name FROM pg_sync.endpoints; create one with pg_sync.create_endpoint().';
END
$$;
COMMENT ON FUNCTION pg_sync._no_endpoint(text) IS
    'Internal: raises "endpoint ... does not exist" with a hint.';

CREATE OR REPLACE FUNCTION pg_sync._require(value anyelement, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF value IS NULL THEN
        RAISE EXCEPTION '% must not be null', what USING ERRCODE = 'null_value_not_allowed';
    END IF;
END
$$;
COMMENT ON FUNCTION pg_sync._require(anyelement, text) IS
    'Internal: raises "... must not be null" when the value is NULL.';

-- The columns of a table by name, with attribute numbers; errors name the offending column.
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
COMMENT ON FUNCTION pg_sync._resolve_columns(regclass, text[], text) IS
    'Internal: the named columns of a table with their attribute numbers; raises naming a column '
    'that does not exist or is given twice.';

-- Primary key columns of a table, in key order; NULL when it has none.
CREATE OR REPLACE FUNCTION pg_sync._primary_key(tbl regclass) RETURNS text[]
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT array_agg(a.attname::text ORDER BY k.ord)
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = tbl AND i.indisprimary AND k.ord <= i.indnkeyatts
$$;
COMMENT ON FUNCTION pg_sync._primary_key(regclass) IS
    'Internal: a table''s primary key columns in key order; NULL when it has none.';

-- (Re)creates the capture triggers of a table from the union of its endpoints' events. Does
-- nothing when the triggers already fire on those events, so that tracking a table for one
-- more endpoint takes no lock that would wait for the table's writers. Re-enables a capture
-- trigger that is disabled (on the table or one of its partitions). Refuses to take over a
-- trigger of pg_sync's name that is not pg_sync's (one that does not execute pg_sync._capture()),
-- and never drops one.
-- The DDL event triggers refuse changes to capture triggers of tracked tables except while
-- pg_sync.internal_trigger_change is on: superuser-only, and set by the SET clause below for
-- this function's run only (a set_config(..., true) would stay on for the rest of the
-- transaction, letting the caller's next statement disable the trigger it just made).
-- Event names are SQL keywords: never case-mapped through the database's collation (under a
-- Turkish collation upper('insert') is 'İNSERT'), hence COLLATE "C".
CREATE OR REPLACE FUNCTION pg_sync._sync_triggers(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET pg_sync.internal_trigger_change = on AS $$
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
                           (SELECT string_agg(upper(e COLLATE "C"), ' OR ' ORDER BY e COLLATE "C") FROM unnest(evs) e
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
COMMENT ON FUNCTION pg_sync._sync_triggers(regclass) IS
    'Internal: creates, changes or re-enables a table''s capture triggers so that they fire on the '
    'union of its endpoints'' events, drops them when none is left; does nothing (and takes no '
    'lock) when they are right already.';

-- What keeps a tracked table's changes from being captured, as a phrase (NULL: nothing): a
-- capture trigger of the table or of one of its partitions that is disabled (tgenabled D, or R:
-- replica sessions only), that executes pg_sync._capture() under another name, or that has
-- pg_sync's name but not its function; and, when events are given, a trigger those events need
-- that does not exist. (events NULL: every capture trigger counts, none is required: the DDL
-- checks use that, since a restore creates the triggers after the tracking.)
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
COMMENT ON FUNCTION pg_sync._capture_problem(regclass, text[]) IS
    'Internal: what keeps a tracked table''s changes from being captured (a capture trigger '
    'disabled, replica-only, misnamed or missing, on the table or a partition), as a phrase; NULL '
    'when nothing does. Used by pg_sync.health() and the DDL checks.';
