-- ---------------------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC but the schema's name space; admins configure, monitors read.

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
GRANT EXECUTE ON FUNCTION pg_sync._sees_data(), pg_sync._url_origin(text), pg_sync._error_class(text),
    pg_sync._shown_error(text) TO pgsync_monitor; -- the views call them as the reader
GRANT EXECUTE ON FUNCTION pg_sync.health() TO pgsync_monitor;
-- Admins may pass emit() on to application roles.
GRANT EXECUTE ON FUNCTION pg_sync.emit(text, text, jsonb, text) TO pgsync_admin WITH GRANT OPTION;
