-- ---------------------------------------------------------------------------------------------
-- Backfill: every existing row of a tracked table as an op = 'snapshot' event, in keyset pages.
-- pg_sync.backfill() only records the job; a background worker of the database (src/pg/
-- backfill_worker.cpp, started by the delivery worker) runs it one page per short transaction:
--   1. lock the job row, check the table is still tracked and the requester may still read it;
--   2. as the table's owner (security-restricted), read the next page
--        SELECT ... FROM tbl WHERE (page key) > (last key) ORDER BY page key LIMIT n FOR SHARE
--      rendering key and row as the capture trigger does (row_to_json), and the filter;
--   3. as the worker, queue the page's rows in page order and advance the job; commit.
-- Consistency with concurrent writers comes from the FOR SHARE row locks: a writer that changed
-- a row before the page read it committed first, so its event has the smaller id; a writer that
-- changes it afterwards waits for the page's commit, so its event gets a larger id. Per key, a
-- receiver that applies events in id order never ends up older than the table.


-- The page key: the primary key, else a unique, total, non-partial index over NOT NULL plain
-- columns. Returns the columns and the schema of the btree operators their comparisons use.
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
COMMENT ON FUNCTION pg_sync._page_key(regclass) IS
    'Internal: the columns a backfill pages a table by (its primary key, else a unique, total, '
    'non-partial index over NOT NULL plain columns), their types, and the schema of the btree '
    'operators they compare with.';

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
COMMENT ON FUNCTION pg_sync._backfill_page(bigint) IS
    'Internal: what the backfill worker needs for a job''s next page: the page query (run as the '
    'table''s owner, security-restricted), the owner, the event''s table name, the table, the '
    'endpoint, and whether to wait for delivery to catch up. Raises when the job cannot go on.';

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
COMMENT ON FUNCTION pg_sync._check_backfill_reader(oid, regclass) IS
    'Internal: raises unless the role that asked for a backfill may still read every row of the '
    'table (SELECT on it, no row-level security hiding rows from it).';

-- Queues one page's rows (in page order, so ids follow the key order) and advances the job.
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
COMMENT ON FUNCTION pg_sync._backfill_record(bigint, text, json[], json[], text[], integer) IS
    'Internal: queues one backfill page''s rows as snapshot events in page order and advances the '
    'job.';

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
COMMENT ON FUNCTION pg_sync._backfill(regclass, text, integer, oid) IS
    'Internal: the body of pg_sync.backfill(), run as the extension''s owner after the caller''s '
    'right to read the table was checked: records the job, which starts in the background when the '
    'transaction commits.';

CREATE OR REPLACE FUNCTION pg_sync.backfill(tbl regclass, endpoint text, batch_rows int DEFAULT 1000) RETURNS bigint
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_backfill';
COMMENT ON FUNCTION pg_sync.backfill(regclass, text, integer) IS
    'Sends every existing row of a table tracked for the endpoint as an op "snapshot" event, in '
    'keyset pages of batch_rows rows run in the background, consistent with concurrent writers; '
    'returns the backfill''s id (see pg_sync.backfills). The caller needs SELECT on the table and '
    'no row-level security hiding rows. For pgsync_admin.';

-- Stops a running backfill after its current page. Returns false when it was not running.
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
COMMENT ON FUNCTION pg_sync.cancel_backfill(bigint) IS
    'Stops a running backfill after its current page; false if it was not running. For '
    'pgsync_admin.';

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
COMMENT ON FUNCTION pg_sync._resume_backfill(bigint, regrole) IS
    'Internal: the body of pg_sync.resume_backfill(), run as the extension''s owner with the '
    'caller, who becomes the backfill''s requester, as its last argument.';

CREATE OR REPLACE FUNCTION pg_sync.resume_backfill(id bigint) RETURNS bool
LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'pg_sync_with_caller';
COMMENT ON FUNCTION pg_sync.resume_backfill(bigint) IS
    'Continues a cancelled or failed backfill from its last committed page, with the caller as its '
    'requester; false if it is running already, an error for a finished one. For pgsync_admin.';
