-- ---------------------------------------------------------------------------------------------
-- Health: one row per current problem, none when all is well (what an alert rule calls).
-- Thresholds: pg_sync.health_max_pending_age, pg_sync.health_max_error_rate (over the endpoint's
-- attempts in pg_sync.recent_attempts, once there are at least 10).

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
    -- endpoint_status once (it reads shared memory and a few index entries per endpoint; nothing
    -- here scans the queue), only the columns used here (the lag percentiles are not computed).
    WITH st AS MATERIALIZED (SELECT s.endpoint, s.state, s.pending, s.dead, s.oldest_pending_age, s.last_error,
                                    s.consecutive_failures, s.next_attempt_at, s.paused_reason
                               FROM pg_sync.endpoint_status s)
    SELECT 'critical'::text, s.endpoint, 'circuit open'::text,
           format('%s consecutive failed request%s, last error: %s; next attempt at %s',
                  s.consecutive_failures, CASE WHEN s.consecutive_failures = 1 THEN '' ELSE 's' END,
                  coalesce(pg_sync._error_class(s.last_error), '?'), coalesce(s.next_attempt_at::text, '?'))
      FROM st s WHERE s.state = 'circuit_open'
    UNION ALL
    SELECT 'warning', s.endpoint, 'dead letters',
           format('%s dead letter%s (see pg_sync.dead_letters; then pg_sync.redeliver() or pg_sync.purge_dead())',
                  s.dead, CASE WHEN s.dead = 1 THEN '' ELSE 's' END)
      FROM st s WHERE s.dead > 0
    UNION ALL
    SELECT 'warning', s.endpoint, 'lagging',
           format('oldest pending event is %s old (threshold %s); %s pending, state %s%s',
                  date_trunc('second', s.oldest_pending_age), max_age, s.pending, s.state,
                  CASE WHEN s.paused_reason IS NOT NULL THEN ' (' || s.paused_reason || ')' ELSE '' END)
      FROM st s WHERE s.oldest_pending_age > max_age
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
      -- once per table and set of events, not per endpoint (a catalog query each)
      JOIN (SELECT x.tbl, x.events, pg_sync._capture_problem(x.tbl, x.events) AS problem
              FROM (SELECT DISTINCT y.tbl, y.events FROM pg_sync._tracked y) x) p
        ON p.tbl = t.tbl AND p.events = t.events
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
COMMENT ON FUNCTION pg_sync.health() IS
    'One row per current problem (severity critical or warning, endpoint, problem, detail), none '
    'when all is well: no delivery worker, circuit open, capture disabled, filter role invalid, '
    'dead letters, lagging (pg_sync.health_max_pending_age), error rate '
    '(pg_sync.health_max_error_rate), backfill failed, pg_sync tables published or replicated. '
    'Never scans the queue. For pgsync_monitor.';
