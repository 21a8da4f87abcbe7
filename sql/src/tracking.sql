-- ---------------------------------------------------------------------------------------------
-- Tracking

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
COMMENT ON FUNCTION pg_sync._reconcile(regclass) IS
    'Internal: after DDL, re-reads a tracked table''s configuration against its columns: follows '
    'RENAME COLUMN, forgets dropped payload columns, and refuses (aborting the DDL) a change that '
    'would break tracking (a dropped key column, no primary key, a filter that no longer compiles).';

-- The current name of a tracked column: the same name if it still exists, else the column
-- now at its attribute number (a rename), else NULL (dropped).
CREATE OR REPLACE FUNCTION pg_sync._current_name(tbl regclass, old_name text, old_attnum int2) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(
        (SELECT a.attname::text FROM pg_attribute a
          WHERE a.attrelid = tbl AND a.attname = old_name AND a.attnum > 0 AND NOT a.attisdropped),
        (SELECT a.attname::text FROM pg_attribute a
          WHERE a.attrelid = tbl AND a.attnum = old_attnum AND a.attnum > 0 AND NOT a.attisdropped))
$$;
COMMENT ON FUNCTION pg_sync._current_name(regclass, text, smallint) IS
    'Internal: the current name of a tracked column: the same name if it still exists, else the '
    'column now at its attribute number (a rename), else NULL (dropped).';

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
COMMENT ON FUNCTION pg_sync._track(regclass, text, text[], text[], text[], text, regrole) IS
    'Internal: the body of pg_sync.track(), run as the extension''s owner with the caller, who '
    'becomes the filter''s author, as its last argument.';

CREATE OR REPLACE FUNCTION pg_sync.track(
    tbl regclass, endpoint text, events text[] DEFAULT '{insert,update,delete}',
    columns text[] DEFAULT NULL, key_columns text[] DEFAULT NULL, filter text DEFAULT NULL)
RETURNS void LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_track';
COMMENT ON FUNCTION pg_sync.track(regclass, text, text[], text[], text[], text) IS
    'Starts (or reconfigures) capture of a table for an endpoint: events (insert, update, delete, '
    'truncate), columns sent (NULL: all), key_columns (NULL: the primary key), and a filter (a '
    'boolean SQL expression over NEW and OLD, run with the rights of the role that wrote it). The '
    'caller needs SELECT on the table. For pgsync_admin.';

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
COMMENT ON FUNCTION pg_sync.untrack(regclass, text) IS
    'Stops capture of a table for one endpoint, or for all when endpoint is NULL, after waiting for '
    'open transactions that wrote to it; events already queued stay queued. For pgsync_admin.';
