-- ---------------------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC but the schema's name space; admins configure, monitors read.

-- PUBLIC loses what PostgreSQL gives it by default, on the objects that still have their default
-- privileges: all of them at CREATE EXTENSION, the new ones at an update (this file runs then
-- too), so that an update never takes back a grant a DBA made on purpose.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'pg_sync'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
                AND c.relacl IS NULL ORDER BY c.oid LOOP
        EXECUTE format('REVOKE ALL ON %s %s FROM PUBLIC',
                       CASE WHEN r.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.rel);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pg_sync'::regnamespace AND p.proacl IS NULL ORDER BY p.oid LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', r.fn);
    END LOOP;
END
$$;
GRANT USAGE ON SCHEMA pg_sync TO PUBLIC;

GRANT SELECT ON pg_sync.endpoints, pg_sync.tracked_tables, pg_sync.endpoint_status,
                pg_sync.dead_letters, pg_sync.workers, pg_sync.recent_attempts, pg_sync.backfills
    TO pgsync_monitor;

GRANT EXECUTE ON FUNCTION
    pg_sync.create_endpoint(text, text, jsonb, text, int, int, int, int, int, int, jsonb, float8, int, int[], text, text, text, text, jsonb),
    pg_sync.alter_endpoint(text, text, jsonb, text, int, int, int, int, int, int, jsonb, float8, int, int[], text, text, text, text, jsonb),
    pg_sync.rotate_secret(text, text, interval),
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
GRANT EXECUTE ON FUNCTION pg_sync._workers(), pg_sync._worker_status() TO pgsync_monitor; -- pg_sync.workers and health() call them as the reader
GRANT EXECUTE ON FUNCTION pg_sync._sees_data(), pg_sync._url_origin(text), pg_sync._error_class(text),
    pg_sync._shown_error(text), pg_sync._pending(int, bool), pg_sync._cert_not_after(text) TO pgsync_monitor; -- the views call them as the reader
GRANT EXECUTE ON FUNCTION pg_sync.health() TO pgsync_monitor;
-- Admins may pass emit() on to application roles.
GRANT EXECUTE ON FUNCTION pg_sync.emit(text, text, jsonb, text) TO pgsync_admin WITH GRANT OPTION;
