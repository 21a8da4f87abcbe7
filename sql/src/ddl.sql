-- ---------------------------------------------------------------------------------------------
-- DDL follow-up: a dropped table leaves no tracking behind; ALTER TABLE is reconciled.

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
COMMENT ON FUNCTION pg_sync._on_sql_drop() IS
    'Internal: event trigger function (sql_drop): forgets the tracking of dropped tables, '
    'reconciles tables that lost columns, and refuses to drop a capture trigger of a tracked table '
    'other than through pg_sync.';

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
COMMENT ON FUNCTION pg_sync._on_ddl_end() IS
    'Internal: event trigger function (ddl_command_end of ALTER TABLE, CREATE TRIGGER, ALTER '
    'TRIGGER): reconciles altered tracked tables (pg_sync._reconcile()) and refuses changes that '
    'would disable their capture triggers.';
