-- ---------------------------------------------------------------------------------------------
-- Logical replication: a publication FOR ALL TABLES includes pg_sync's internal tables (the
-- endpoints with their headers and secrets, the queue). A subscriber that runs pg_sync too
-- ignores what is replicated into them (src/pg/replicated_changes.cpp): each system delivers
-- only the events it captured itself, and the publisher's deletes never touch the subscriber's
-- rows. The triggers fire only in replica-role sessions (ENABLE REPLICA), and skip only changes
-- applied by a logical replication worker.

CREATE OR REPLACE FUNCTION pg_sync._ignore_replicated() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pg_sync_ignore_replicated';
COMMENT ON FUNCTION pg_sync._ignore_replicated() IS
    'Internal: trigger function on pg_sync''s tables that skips changes a logical replication '
    'worker applies to them (fires in replica-role sessions only): each server delivers only the '
    'events it captured itself.';

-- Created where missing, so that an update (which runs this file again) adds them to new tables
-- and takes no lock on the tables that have them.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['_endpoints', '_tracked', '_queue', '_queue_0', '_queue_1', '_queue_2',
                             '_queue_rotation', '_dead_letters', '_endpoint_state',
                             '_attempts', '_backfills'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = format('pg_sync.%I', t)::regclass
                                                           AND tgname = 'pg_sync_ignore_replicated') THEN
            EXECUTE format('CREATE TRIGGER pg_sync_ignore_replicated BEFORE INSERT OR UPDATE OR DELETE ON pg_sync.%I'
                           ' FOR EACH ROW EXECUTE FUNCTION pg_sync._ignore_replicated()', t);
            EXECUTE format('ALTER TABLE pg_sync.%I ENABLE REPLICA TRIGGER pg_sync_ignore_replicated', t);
        END IF;
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_trigger WHERE tgrelid = format('pg_sync.%I', t)::regclass
                                                           AND tgname = 'pg_sync_ignore_replicated_truncate') THEN
            EXECUTE format('CREATE TRIGGER pg_sync_ignore_replicated_truncate BEFORE TRUNCATE ON pg_sync.%I'
                           ' FOR EACH STATEMENT EXECUTE FUNCTION pg_sync._ignore_replicated()', t);
            EXECUTE format('ALTER TABLE pg_sync.%I ENABLE REPLICA TRIGGER pg_sync_ignore_replicated_truncate', t);
        END IF;
    END LOOP;
END
$$;
