-- pg_sync 0.2.0 -> 0.3.0. Run by ALTER EXTENSION pg_sync UPDATE (after installing the 0.3.0
-- build and restarting the server). test/180_upgrade.sh checks that the result equals a fresh
-- 0.3.0 install, object by object, and that queued events and dead letters survive it.
--
-- 0.3.0 (security and correctness, docs/security.md): filters run with the rights of the role
-- that wrote them under the session settings recorded with them (_tracked.filter_role,
-- filter_settings); backfill renders rows in C like the capture trigger; a URL change needs the
-- caller to read every tracked table and, to another origin, the credentials again; resuming a
-- backfill makes the caller its requester; monitors see no row data; the capture-trigger guard
-- is open only while pg_sync changes its triggers; event names are case-mapped in the C
-- collation; replicated changes to pg_sync's tables are ignored; health() reports filter
-- authors and publications/subscriptions of pg_sync's tables.
\echo Use "ALTER EXTENSION pg_sync UPDATE TO '0.3.0'" to load this file. \quit

-- Filters written before 0.3.0 have no recorded author (filter_role NULL): they keep running as
-- the writer, as in 0.2.0, backfill refuses them, and health() asks for track() to be called
-- again, which records the author.
ALTER TABLE pg_sync._tracked ADD COLUMN filter_role regrole, ADD COLUMN filter_settings text[];

DROP FUNCTION pg_sync._check_filter(regclass, text);
DROP FUNCTION pg_sync._track(regclass, text, text[], text[], text[], text);
DROP FUNCTION pg_sync._backfill_page(bigint);

-- A filter is checked (and run) as the role that wrote it, under the session settings recorded
-- when it was written (_session_settings(): DateStyle, IntervalStyle, TimeZone,
-- standard_conforming_strings, extra_float_digits, bytea_output, xmloption, lc_monetary,
-- lc_numeric, as 'name=value').
-- role NULL: parsed as the caller without the author check (_reconcile after DDL: the author's
-- rights are checked before every run, and an author who lost them must not block the owner's DDL).
CREATE OR REPLACE FUNCTION pg_sync._check_filter(tbl regclass, filter text, role regrole, settings text[]) RETURNS void
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_check_filter';

CREATE OR REPLACE FUNCTION pg_sync._session_settings() RETURNS text[]
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'pg_sync_session_settings';

-- The origin of an http(s) URL: lower-case scheme and host, and the port (the scheme's default
-- when none is given), e.g. 'https://example.com:443'. NULL for a URL that is not valid.
CREATE OR REPLACE FUNCTION pg_sync._url_origin(url text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'pg_sync_url_origin';

-- Whether the calling role (current_user) may see row data and full URLs: members of
-- pgsync_admin (and superusers). The views use it to show monitors metadata only.
CREATE OR REPLACE FUNCTION pg_sync._sees_data() RETURNS bool
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS
$$ SELECT pg_catalog.pg_has_role(current_user, 'pgsync_admin', 'MEMBER') $$;

-- What monitors see of an error message: its class, the text before the first ': ' ("HTTP 500",
-- "timeout", "invalid input syntax for type integer"); the rest can quote row data (a receiver's
-- answer echoing the payload, a value that failed to convert).
CREATE OR REPLACE FUNCTION pg_sync._error_class(message text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS
$$ SELECT split_part(message, ': ', 1) $$;

-- An error message as the caller may see it (views): whole for admins, its class for monitors.
CREATE OR REPLACE FUNCTION pg_sync._shown_error(message text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS
$$ SELECT CASE WHEN pg_sync._sees_data() THEN message ELSE pg_sync._error_class(message) END $$;

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

-- NULL leaves a setting unchanged; secret => '' removes the secret, headers => '{}' removes
-- all headers. Credentials never follow a URL to another origin: a url of another origin
-- (scheme, host, port) is refused unless the same call gives headers (when the endpoint has
-- any) and secret (when it has one) again, so that no admin can point another admin's endpoint
-- at a host of their choosing and receive its Authorization header or signed payloads.
-- A url change sends the rows of every table tracked for the endpoint somewhere else: the caller
-- must be able to read them all (the same right track() asks for).
-- pg_sync.alter_endpoint() is C (pg_sync_with_caller, src/pg/sql_api.cpp): it runs this as the
-- extension's owner with the real caller (current_user) as the last argument.
CREATE OR REPLACE FUNCTION pg_sync._alter_endpoint(
    name text, url text, headers jsonb, secret text, batch_size int, max_attempts int, timeout_ms int,
    max_in_flight int, retry_base_ms int, retry_max_ms int, caller regrole)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ep pg_sync._endpoints;
    unreadable regclass;
BEGIN
    SELECT * INTO ep FROM pg_sync._endpoints e
     WHERE e.id = pg_sync._endpoint_id(_alter_endpoint.name, 'no key update');
    PERFORM pg_sync._check_endpoint(NULL, _alter_endpoint.url, _alter_endpoint.headers,
        nullif(_alter_endpoint.secret, ''), _alter_endpoint.batch_size, _alter_endpoint.max_attempts,
        _alter_endpoint.timeout_ms, _alter_endpoint.max_in_flight,
        coalesce(_alter_endpoint.retry_base_ms, ep.retry_base_ms),
        coalesce(_alter_endpoint.retry_max_ms, ep.retry_max_ms));
    IF _alter_endpoint.url IS NOT NULL AND _alter_endpoint.url IS DISTINCT FROM ep.url THEN
        SELECT t.tbl INTO unreadable FROM pg_sync._tracked t
         WHERE t.endpoint_id = ep.id AND NOT has_table_privilege(caller, t.tbl, 'SELECT')
         ORDER BY t.tbl::oid LIMIT 1;
        IF unreadable IS NOT NULL THEN
            RAISE EXCEPTION 'permission denied to change the URL of endpoint %', pg_sync._quote(_alter_endpoint.name)
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = format('Role %s may not read table %s, which is tracked for the endpoint: its rows would go to the new URL.',
                                      caller, unreadable),
                      HINT = 'Ask a role that may read every table tracked for the endpoint.';
        END IF;
    END IF;
    IF _alter_endpoint.url IS NOT NULL
       AND pg_sync._url_origin(_alter_endpoint.url) IS DISTINCT FROM pg_sync._url_origin(ep.url)
       AND (ep.headers <> '{}' AND _alter_endpoint.headers IS NULL
            OR ep.secret IS NOT NULL AND _alter_endpoint.secret IS NULL) THEN
        RAISE EXCEPTION 'the new URL of endpoint % is on another origin: its % must be given again',
                        pg_sync._quote(_alter_endpoint.name),
                        CASE WHEN ep.headers <> '{}' AND _alter_endpoint.headers IS NULL
                                  AND ep.secret IS NOT NULL AND _alter_endpoint.secret IS NULL THEN 'headers and secret'
                             WHEN ep.secret IS NOT NULL AND _alter_endpoint.secret IS NULL THEN 'secret'
                             ELSE 'headers' END
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('The endpoint''s headers and secret were given for %s; they are not sent to %s unless the same call gives them.',
                                  pg_sync._url_origin(ep.url), pg_sync._url_origin(_alter_endpoint.url)),
                  HINT = 'Pass headers => ... and secret => ... with the new url (headers => ''{}'' and secret => '''' drop them).';
    END IF;
    UPDATE pg_sync._endpoints e SET
        url           = coalesce(_alter_endpoint.url, e.url),
        headers       = coalesce(_alter_endpoint.headers, e.headers),
        secret        = CASE WHEN _alter_endpoint.secret IS NULL THEN e.secret
                             ELSE nullif(_alter_endpoint.secret, '') END,
        batch_size    = coalesce(_alter_endpoint.batch_size, e.batch_size),
        max_attempts  = coalesce(_alter_endpoint.max_attempts, e.max_attempts),
        timeout_ms    = coalesce(_alter_endpoint.timeout_ms, e.timeout_ms),
        max_in_flight = coalesce(_alter_endpoint.max_in_flight, e.max_in_flight),
        retry_base_ms = coalesce(_alter_endpoint.retry_base_ms, e.retry_base_ms),
        retry_max_ms  = coalesce(_alter_endpoint.retry_max_ms, e.retry_max_ms)
     WHERE e.id = ep.id;
    PERFORM pg_sync._wake(true);
END
$$;

CREATE OR REPLACE FUNCTION pg_sync.alter_endpoint(
    name text, url text DEFAULT NULL, headers jsonb DEFAULT NULL, secret text DEFAULT NULL,
    batch_size int DEFAULT NULL, max_attempts int DEFAULT NULL, timeout_ms int DEFAULT NULL,
    max_in_flight int DEFAULT NULL, retry_base_ms int DEFAULT NULL, retry_max_ms int DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_with_caller';

-- Re-reads a tracked table's configuration against its current columns: follows RENAME
-- COLUMN (by attribute number), forgets dropped payload columns, and refuses (aborting the
-- DDL) a change that would leave tracking broken: a dropped key column, no primary key, a
-- filter that no longer compiles.
CREATE OR REPLACE FUNCTION pg_sync._reconcile(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
    new_cols text[];
    new_col_nums int2[];
    new_keys text[];
    new_key_nums int2[];
    i int;
    cur text;
    ep text;
BEGIN
    FOR r IN SELECT t.*, e.name AS endpoint FROM pg_sync._tracked t
               JOIN pg_sync._endpoints e ON e.id = t.endpoint_id
              WHERE t.tbl = _reconcile.tbl FOR UPDATE OF t LOOP
        ep := r.endpoint;
        new_cols := NULL; new_col_nums := NULL; new_keys := NULL; new_key_nums := NULL;
        IF r.columns IS NOT NULL THEN
            new_cols := '{}'; new_col_nums := '{}';
            FOR i IN 1 .. cardinality(r.columns) LOOP
                cur := pg_sync._current_name(r.tbl, r.columns[i],
                           CASE WHEN r.attnums_of = r.tbl::oid THEN r.column_attnums[i] END);
                IF cur IS NOT NULL THEN
                    new_cols := new_cols || cur;
                    new_col_nums := new_col_nums || (SELECT a.attnum FROM pg_attribute a
                                     WHERE a.attrelid = r.tbl AND a.attname = cur);
                END IF;
            END LOOP;
            IF cardinality(new_cols) = 0 THEN
                RAISE EXCEPTION 'this would drop every column that pg_sync sends for table % to endpoint "%"', r.tbl, ep
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = format('Call pg_sync.untrack(%L, %L) first, or track other columns.', r.tbl::text, ep);
            END IF;
        END IF;
        IF r.key_columns IS NOT NULL THEN
            new_keys := '{}'; new_key_nums := '{}';
            FOR i IN 1 .. cardinality(r.key_columns) LOOP
                cur := pg_sync._current_name(r.tbl, r.key_columns[i],
                           CASE WHEN r.attnums_of = r.tbl::oid THEN r.key_attnums[i] END);
                IF cur IS NULL THEN
                    RAISE EXCEPTION 'column "%" is a key column of pg_sync tracking of table % for endpoint "%"',
                                    r.key_columns[i], r.tbl, ep
                        USING ERRCODE = 'dependent_objects_still_exist',
                              HINT = 'Call pg_sync.track() again with other key_columns, or pg_sync.untrack() first.';
                END IF;
                new_keys := new_keys || cur;
                new_key_nums := new_key_nums || (SELECT a.attnum FROM pg_attribute a
                                 WHERE a.attrelid = r.tbl AND a.attname = cur);
            END LOOP;
        ELSIF pg_sync._primary_key(r.tbl) IS NULL THEN
            RAISE EXCEPTION 'table % is tracked by pg_sync for endpoint "%" and needs a primary key', r.tbl, ep
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'Call pg_sync.track() again with key_columns, or pg_sync.untrack() first.';
        END IF;
        IF r.filter IS NOT NULL THEN
            BEGIN
                PERFORM pg_sync._check_filter(r.tbl, r.filter, NULL, r.filter_settings);
            EXCEPTION WHEN OTHERS THEN
                RAISE EXCEPTION 'the pg_sync filter of table % for endpoint "%" would no longer be valid: %',
                                r.tbl, ep, SQLERRM
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = 'Call pg_sync.track() again with an updated filter, or pg_sync.untrack() first.';
            END;
        END IF;
        UPDATE pg_sync._tracked t SET columns = new_cols, column_attnums = new_col_nums,
               key_columns = new_keys, key_attnums = new_key_nums, attnums_of = r.tbl::oid
         WHERE t.tbl = r.tbl AND t.endpoint_id = r.endpoint_id;
    END LOOP;
    PERFORM pg_sync._config_changed();
END
$$;

-- pg_sync.track() is C (src/pg/sql_api.cpp): it checks the caller's rights on the table, then
-- runs this as the extension's owner, passing the caller as `caller`: a filter runs with the
-- rights of the role that wrote it, under the settings of the session that wrote it. Nobody
-- else may execute _track.
CREATE OR REPLACE FUNCTION pg_sync._track(
    tbl regclass, endpoint text, events text[], columns text[], key_columns text[], filter text,
    caller regrole)
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
    settings text[] := CASE WHEN filter IS NOT NULL THEN pg_sync._session_settings() END;
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
    -- (COLLATE "C": event names are keywords, never case-mapped by the database's collation.)
    SELECT e INTO bad FROM unnest(events) e
     WHERE lower(e COLLATE "C") NOT IN ('insert', 'update', 'delete', 'truncate') LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown event %', pg_sync._quote(bad) USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Events are insert, update, delete and truncate.';
    END IF;
    SELECT array_agg(DISTINCT lower(e COLLATE "C") ORDER BY lower(e COLLATE "C")) INTO evs FROM unnest(events) e;

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
        PERFORM pg_sync._check_filter(tbl, filter, caller, settings);
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
                                       filter_role, filter_settings,
                                       column_attnums, key_attnums, attnums_of)
    VALUES (tbl, ep_id, evs, col_names, key_names, filter,
            CASE WHEN filter IS NOT NULL THEN caller END, settings,
            col_nums, key_nums, tbl::oid)
    ON CONFLICT ON CONSTRAINT _tracked_pkey DO UPDATE
       SET events = EXCLUDED.events, columns = EXCLUDED.columns,
           key_columns = EXCLUDED.key_columns, filter = EXCLUDED.filter,
           filter_role = EXCLUDED.filter_role, filter_settings = EXCLUDED.filter_settings,
           column_attnums = EXCLUDED.column_attnums, key_attnums = EXCLUDED.key_attnums,
           attnums_of = EXCLUDED.attnums_of;
    PERFORM pg_sync._sync_triggers(tbl);
    PERFORM pg_sync._config_changed();
END
$$;

-- Everything one page needs: the page query (run by the worker as the table's owner,
-- security-restricted, with search_path = pg_catalog; parameters $1 = last key text[], $2 = page
-- size; it returns each row whole, locked FOR SHARE, and its page key as text[]), the owner, the
-- event's table name, the table and endpoint, and whether the job must wait for delivery to
-- catch up first. The worker renders each row as the capture trigger does, in C (canonical key,
-- the filter run as the role that wrote it): src/pg/capture_trigger.cpp, render_snapshot().
-- Raises when the job cannot go on (the worker then marks it failed).
CREATE OR REPLACE FUNCTION pg_sync._backfill_page(job bigint, OUT query text, OUT owner oid, OUT table_name text,
                                       OUT throttled bool, OUT tbl oid, OUT endpoint_id int)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b pg_sync._backfills;
    t pg_sync._tracked;
    pk record;
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
    tbl := b.tbl;
    endpoint_id := b.endpoint_id;
    -- Keep the endpoint (drop_endpoint waits for this page) and the tracking as they are.
    PERFORM FROM pg_sync._endpoints e WHERE e.id = b.endpoint_id FOR KEY SHARE;
    SELECT * INTO t FROM pg_sync._tracked x WHERE x.tbl = b.tbl AND x.endpoint_id = b.endpoint_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'table % is no longer tracked for this endpoint', b.tbl
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM pg_sync._check_backfill_reader(b.requested_by, b.tbl);
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
    qname := b.tbl::oid::regclass::text; -- search_path is pg_catalog here: schema-qualified
    cmp := format('(%s) OPERATOR(%I.>) (%s)',
                  (SELECT string_agg(format('new.%I', c), ', ' ORDER BY o) FROM unnest(pk.columns) WITH ORDINALITY u(c, o)),
                  pk.op_schema,
                  (SELECT string_agg(format('$1[%s]::%s', o, ty), ', ' ORDER BY o)
                     FROM unnest(pk.types) WITH ORDINALITY u(ty, o)));
    -- (CAST(new.* AS ...): the whole row, also when the table has a column named "new".)
    query := format(
        'SELECT CAST(new.* AS %s) AS row, ARRAY[%s] AS page_key'
        '  FROM %s AS new'
        ' WHERE $1 IS NULL OR %s'
        ' ORDER BY %s'
        ' LIMIT $2 FOR SHARE OF new',
        qname,
        (SELECT string_agg(format('new.%I::pg_catalog.text', c), ', ' ORDER BY o)
           FROM unnest(pk.columns) WITH ORDINALITY u(c, o)),
        qname, cmp,
        (SELECT string_agg(format('new.%I USING OPERATOR(%I.<)', c, pk.op_schema), ', ' ORDER BY o)
           FROM unnest(pk.columns) WITH ORDINALITY u(c, o)));
END
$$;

-- The role that asked for a backfill must still be able to read every row of the table: SELECT
-- on it, and no row-level security that hides rows from it (the pages are read as the table's
-- owner). Raises otherwise (the job then fails).
CREATE OR REPLACE FUNCTION pg_sync._check_backfill_reader(reader oid, tbl regclass) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = reader) THEN
        RAISE EXCEPTION 'the role that started the backfill no longer exists'
            USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT has_table_privilege(reader, tbl, 'SELECT') THEN
        RAISE EXCEPTION 'role % may no longer read table %', reader::regrole, tbl
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT x.relrowsecurity, x.relforcerowsecurity, x.relowner INTO c FROM pg_class x WHERE x.oid = tbl;
    IF c.relrowsecurity
       AND (c.relowner <> reader OR c.relforcerowsecurity)
       AND NOT EXISTS (SELECT FROM pg_roles r WHERE r.oid = reader AND (r.rolsuper OR r.rolbypassrls)) THEN
        RAISE EXCEPTION 'role % may not read every row of table %: it has row-level security', reader::regrole, tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A backfill sends every row of the table, which would include rows that row-level security hides from that role.',
                  HINT = 'Run the backfill as a role that bypasses row-level security (BYPASSRLS) or owns the table.';
    END IF;
END
$$;

-- Called by pg_sync.backfill() (C, which checked that the caller may read the table) as the
-- extension owner.
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
    PERFORM pg_sync._check_backfill_reader(requested_by, tbl);
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

-- Continues a cancelled or failed backfill from the last page it committed. Returns false when
-- it was running already; a finished one cannot be resumed (start a new one).
-- The caller becomes the backfill's requester: it must be able to read every row of the table
-- (another admin's backfill would otherwise send a table the caller may not read).
-- pg_sync.resume_backfill() is C (pg_sync_with_caller): it runs this as the extension's owner.
CREATE OR REPLACE FUNCTION pg_sync._resume_backfill(id bigint, caller regrole) RETURNS bool
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    b pg_sync._backfills;
BEGIN
    PERFORM pg_sync._require(id, 'id');
    SELECT * INTO b FROM pg_sync._backfills x WHERE x.id = _resume_backfill.id FOR UPDATE;
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
    PERFORM pg_sync._check_backfill_reader(caller, b.tbl);
    UPDATE pg_sync._backfills x
       SET state = 'running', finished_at = NULL, last_error = NULL, waiting_for = NULL, retry_at = NULL,
           updated_at = now(), requested_by = caller
     WHERE x.id = _resume_backfill.id;
    PERFORM pg_sync._wake(true);
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION pg_sync.resume_backfill(id bigint) RETURNS bool
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_with_caller';

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
                  coalesce(pg_sync._error_class(s.last_error), '?'), coalesce(s.next_attempt_at::text, '?'))
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
                  a.failed, a.total, round((max_rate * 100)::numeric, 1), pg_sync._error_class(a.last_error))
      FROM (SELECT a.endpoint_id, count(*) AS total,
                   count(*) FILTER (WHERE a.status IS NULL OR a.status NOT BETWEEN 200 AND 299) AS failed,
                   (array_agg(a.error ORDER BY a.finished_at DESC) FILTER (WHERE a.error IS NOT NULL))[1] AS last_error
              FROM pg_sync._attempts a GROUP BY a.endpoint_id) a
      JOIN pg_sync._endpoints e ON e.id = a.endpoint_id
     WHERE a.total >= 10 AND a.failed::float8 / a.total > max_rate
    UNION ALL
    SELECT 'warning', e.name, 'backfill failed',
           format('backfill %s of %s failed after %s rows: %s (pg_sync.resume_backfill(%s) continues it)',
                  b.id, b.tbl, b.rows_scanned, pg_sync._error_class(b.last_error), b.id)
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
    UNION ALL
    -- A filter runs with the rights of the role that wrote it: when that role is gone or may no
    -- longer read the table, writes to the table fail until track() is called again.
    SELECT 'critical', e.name, 'filter role invalid',
           format('the filter of table %s was written by %s, which %s: writes to the table fail until '
                  'pg_sync.track() is called for it again', t.tbl,
                  coalesce(r.rolname::text, 'a role'),
                  CASE WHEN r.oid IS NULL THEN 'no longer exists' ELSE 'may no longer read the table' END)
      FROM pg_sync._tracked t JOIN pg_sync._endpoints e ON e.id = t.endpoint_id
      LEFT JOIN pg_roles r ON r.oid = t.filter_role
     WHERE t.filter IS NOT NULL AND t.filter_role IS NOT NULL
       AND (r.oid IS NULL OR NOT has_table_privilege(r.oid, t.tbl, 'SELECT'))
    UNION ALL
    -- Filters from before 0.3.0 have no recorded author: they run as the writer (as in 0.2.0),
    -- and backfill refuses them.
    SELECT 'warning', e.name, 'filter author unknown',
           format('the filter of table %s was written before pg_sync 0.3.0 and runs with the rights of '
                  'each writer; backfill refuses it: call pg_sync.track() for the table again as its author',
                  t.tbl)
      FROM pg_sync._tracked t JOIN pg_sync._endpoints e ON e.id = t.endpoint_id
     WHERE t.filter IS NOT NULL AND t.filter_role IS NULL
    UNION ALL
    -- Logical replication (see pg_sync._ignore_replicated()).
    SELECT 'warning', NULL, 'published pg_sync tables',
           format('publication %s publishes pg_sync''s internal tables (%s): its subscribers receive the '
                  'endpoints with their headers and secrets and every queued event; publish the '
                  'application''s tables or schemas instead of FOR ALL TABLES',
                  quote_ident(p.pubname), string_agg(p.tablename::text, ', ' ORDER BY p.tablename))
      FROM pg_publication_tables p WHERE p.schemaname = 'pg_sync' GROUP BY p.pubname
    UNION ALL
    SELECT 'warning', NULL, 'replicated pg_sync tables',
           format('subscription %s replicates pg_sync''s internal tables from another server (%s): pg_sync '
                  'ignores those changes and delivers only the events captured here',
                  quote_ident(s.subname), string_agg(c.relname::text, ', ' ORDER BY c.relname))
      FROM pg_subscription_rel sr JOIN pg_subscription s ON s.oid = sr.srsubid
      JOIN pg_class c ON c.oid = sr.srrelid
     WHERE c.relnamespace = 'pg_sync'::regnamespace GROUP BY s.subname
     ORDER BY 1, 2, 3, 4;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Logical replication: a publication FOR ALL TABLES includes pg_sync's internal tables (the
-- endpoints with their headers and secrets, the queue). A subscriber that runs pg_sync too
-- ignores what is replicated into them (src/pg/replicated_changes.cpp): each system delivers
-- only the events it captured itself, and the publisher's deletes never touch the subscriber's
-- rows. The triggers fire only in replica-role sessions (ENABLE REPLICA), and skip only changes
-- applied by a logical replication worker.

CREATE FUNCTION pg_sync._ignore_replicated() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pg_sync_ignore_replicated';

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['_endpoints', '_tracked', '_queue', '_dead_letters', '_endpoint_state',
                             '_attempts', '_backfills'] LOOP
        EXECUTE format('CREATE TRIGGER pg_sync_ignore_replicated BEFORE INSERT OR UPDATE OR DELETE ON pg_sync.%I'
                       ' FOR EACH ROW EXECUTE FUNCTION pg_sync._ignore_replicated()', t);
        EXECUTE format('CREATE TRIGGER pg_sync_ignore_replicated_truncate BEFORE TRUNCATE ON pg_sync.%I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION pg_sync._ignore_replicated()', t);
        EXECUTE format('ALTER TABLE pg_sync.%I ENABLE REPLICA TRIGGER pg_sync_ignore_replicated', t);
        EXECUTE format('ALTER TABLE pg_sync.%I ENABLE REPLICA TRIGGER pg_sync_ignore_replicated_truncate', t);
    END LOOP;
END
$$;

-- Monitors (pgsync_monitor without pgsync_admin) see metadata only (pg_sync._sees_data()):
-- no row data (keys are data too), and of a URL only its origin, since a URL's path or query
-- can be a credential (Slack-style webhook URLs).
CREATE OR REPLACE VIEW pg_sync.endpoints AS
SELECT e.name,
       CASE WHEN pg_sync._sees_data() THEN e.url
            ELSE pg_sync._url_origin(e.url) || '/...' END AS url,
       ARRAY(SELECT k FROM jsonb_object_keys(e.headers) k ORDER BY k) AS header_names,
       e.secret IS NOT NULL AS has_secret,
       e.batch_size, e.max_attempts, e.timeout_ms, e.max_in_flight, e.retry_base_ms,
       e.retry_max_ms, e.paused, e.paused_reason, e.created_at
  FROM pg_sync._endpoints e;

CREATE OR REPLACE VIEW pg_sync.tracked_tables AS
SELECT t.tbl AS "table", e.name AS endpoint, t.events, t.columns,
       coalesce(t.key_columns,
                (SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_index i
                  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = t.tbl AND i.indisprimary AND k.ord <= i.indnkeyatts)) AS key_columns,
       t.key_columns IS NULL AS key_is_primary_key,
       CASE WHEN pg_sync._sees_data() THEN t.filter END AS filter
  FROM pg_sync._tracked t JOIN pg_sync._endpoints e ON e.id = t.endpoint_id;

-- pending = captured and not yet delivered nor dead (in flight and waiting to retry included).
-- Delivery figures come from the worker (pg_sync._endpoint_state).
CREATE OR REPLACE VIEW pg_sync.endpoint_status AS
SELECT e.name AS endpoint,
       CASE WHEN e.paused THEN 'paused'
            WHEN s.circuit IN ('open', 'half_open') THEN 'circuit_open'
            WHEN s.consecutive_failures > 0 OR q.retrying > 0 THEN 'retrying'
            ELSE 'active' END AS state,
       coalesce(q.pending, 0) AS pending,
       coalesce(s.in_flight, 0) AS in_flight,
       coalesce(d.dead, 0) AS dead,
       now() - q.oldest AS oldest_pending_age,
       coalesce(s.delivered_total, 0) AS delivered_total,
       coalesce(s.failed_attempts_total, 0) AS failed_attempts_total,
       s.last_success_at, s.last_failure_at, pg_sync._shown_error(s.last_error) AS last_error, s.last_status,
       coalesce(s.consecutive_failures, 0) AS consecutive_failures,
       CASE WHEN s.circuit = 'open' THEN s.next_attempt_at ELSE q.next_attempt_at END AS next_attempt_at,
       e.paused_reason,
       l.lag_p50, l.lag_p99
  FROM pg_sync._endpoints e
  LEFT JOIN pg_sync._endpoint_state s ON s.endpoint_id = e.id
  LEFT JOIN (SELECT endpoint_id, count(*) AS pending, min(captured_at) AS oldest,
                    count(*) FILTER (WHERE attempts > 0) AS retrying,
                    min(next_attempt_at) FILTER (WHERE next_attempt_at > now()) AS next_attempt_at
               FROM pg_sync._queue GROUP BY endpoint_id) q ON q.endpoint_id = e.id
  LEFT JOIN (SELECT endpoint_id, count(*) AS dead FROM pg_sync._dead_letters GROUP BY endpoint_id) d
         ON d.endpoint_id = e.id
  -- Lag of recent deliveries (pg_sync.recent_attempts): capture of a request's oldest event to its 2xx.
  LEFT JOIN (SELECT endpoint_id,
                    make_interval(secs => percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms) / 1000) AS lag_p50,
                    make_interval(secs => percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms) / 1000) AS lag_p99
               FROM pg_sync._attempts WHERE status BETWEEN 200 AND 299 GROUP BY endpoint_id) l
         ON l.endpoint_id = e.id;

-- The last pg_sync.recent_attempts_size HTTP requests of every endpoint, newest first.
CREATE OR REPLACE VIEW pg_sync.recent_attempts AS
SELECT e.name AS endpoint, a.started_at, a.events, a.status,
       a.finished_at - a.started_at AS duration, pg_sync._shown_error(a.error) AS error,
       make_interval(secs => a.lag_ms / 1000) AS lag
  FROM pg_sync._attempts a JOIN pg_sync._endpoints e ON e.id = a.endpoint_id
 ORDER BY a.finished_at DESC;

CREATE OR REPLACE VIEW pg_sync.dead_letters AS
SELECT d.id, e.name AS endpoint, d.tbl AS "table", d.op,
       CASE WHEN v.sees_data THEN d.key END AS key,
       d.attempts, d.last_status, pg_sync._shown_error(d.last_error) AS last_error, d.first_attempt_at, d.dead_at,
       CASE WHEN NOT v.sees_data THEN NULL
            WHEN d.op = 'emit' THEN json_build_object('type', d.emit_type, 'payload', d.new_row)
            ELSE json_build_object('new', d.new_row, 'old', d.old_row) END AS payload
  FROM pg_sync._dead_letters d JOIN pg_sync._endpoints e ON e.id = d.endpoint_id
 -- Row data for admins, and of a table only for those who may read it (emit events have none).
 CROSS JOIN LATERAL (SELECT pg_sync._sees_data()
                            AND (d.tbl IS NULL
                                 OR coalesce(has_table_privilege(to_regclass(d.tbl), 'SELECT'), false))
                            AS sees_data) v;

-- Backfills (pg_sync.backfill), running and finished, with their progress.
CREATE OR REPLACE VIEW pg_sync.backfills AS
SELECT b.id, b.tbl AS "table", e.name AS endpoint, b.state,
       b.rows_scanned, b.rows_enqueued, t.estimate AS rows_estimated,
       CASE WHEN b.state = 'done' THEN 100.0
            WHEN t.estimate > 0 THEN least(99.9, round(100.0 * b.rows_scanned / t.estimate, 1)) END AS percent_done,
       b.batch_rows, b.batches, CASE WHEN pg_sync._sees_data() THEN b.last_key END AS last_key,
       b.waiting_for, pg_sync._shown_error(b.last_error) AS last_error,
       b.requested_by::regrole AS requested_by, b.started_at, b.updated_at, b.finished_at
  FROM pg_sync._backfills b JOIN pg_sync._endpoints e ON e.id = b.endpoint_id
  -- Planner estimate of the row count (of every partition for a partitioned table); NULL
  -- until the table was analyzed.
  LEFT JOIN LATERAL (SELECT CASE WHEN bool_or(c.reltuples >= 0) THEN sum(greatest(c.reltuples, 0))::bigint END
                              AS estimate
                       FROM pg_class c
                      WHERE c.oid = b.tbl AND c.relkind = 'r'
                         OR c.oid IN (SELECT p.relid FROM pg_partition_tree(b.tbl) p WHERE p.isleaf)) t ON true;

-- pg_sync.workers shows each worker's last failed delivery pass (last_error).
DROP VIEW pg_sync.workers;
DROP FUNCTION pg_sync._workers();
CREATE FUNCTION pg_sync._workers(OUT database text, OUT pid int, OUT started_at timestamptz,
                                 OUT last_active_at timestamptz, OUT state text, OUT last_error text)
    RETURNS SETOF record LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_workers';
CREATE VIEW pg_sync.workers AS SELECT * FROM pg_sync._workers();
REVOKE EXECUTE ON FUNCTION pg_sync._workers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_sync._workers() TO pgsync_monitor;
GRANT SELECT ON pg_sync.workers TO pgsync_monitor;

REVOKE EXECUTE ON FUNCTION pg_sync._check_filter(regclass, text, regrole, text[]), pg_sync._session_settings(),
    pg_sync._url_origin(text), pg_sync._sees_data(), pg_sync._error_class(text), pg_sync._shown_error(text),
    pg_sync._alter_endpoint(text, text, jsonb, text, int, int, int, int, int, int, regrole),
    pg_sync.alter_endpoint(text, text, jsonb, text, int, int, int, int, int, int),
    pg_sync._track(regclass, text, text[], text[], text[], text, regrole),
    pg_sync._backfill_page(bigint), pg_sync._check_backfill_reader(oid, regclass),
    pg_sync._resume_backfill(bigint, regrole), pg_sync.resume_backfill(bigint), pg_sync._ignore_replicated()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_sync.alter_endpoint(text, text, jsonb, text, int, int, int, int, int, int),
    pg_sync.resume_backfill(bigint) TO pgsync_admin;
-- The views call these as the reader.
GRANT EXECUTE ON FUNCTION pg_sync._sees_data(), pg_sync._url_origin(text), pg_sync._error_class(text),
    pg_sync._shown_error(text) TO pgsync_monitor;
