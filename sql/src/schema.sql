-- The schema is pg_sync (the contract). Names starting with pg_ are reserved, so the control
-- file cannot name it; the script creates it (as an extension member) with the superuser-only
-- allow_system_table_mods, which CREATE EXTENSION resets when the script ends.
SET allow_system_table_mods = on;
CREATE SCHEMA pg_sync;
COMMENT ON SCHEMA pg_sync IS
    'pg_sync: change data capture from tables to webhooks and Kafka. Functions to configure it '
    '(executable by pgsync_admin), views and pg_sync.health() to watch it (readable by '
    'pgsync_monitor); names starting with an underscore are internal.';
RESET allow_system_table_mods;

-- ---------------------------------------------------------------------------------------------
-- Roles (cluster-wide; created once, kept when the extension is dropped): pgsync_admin and
-- pgsync_monitor, not pg_sync_admin / pg_sync_monitor, because PostgreSQL refuses role names
-- starting with pg_ even to superusers (they are reserved for built-in roles).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgsync_monitor') THEN
        CREATE ROLE pgsync_monitor NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgsync_admin') THEN
        CREATE ROLE pgsync_admin NOLOGIN;
    END IF;
    -- Admins see everything monitors see.
    IF NOT pg_catalog.pg_has_role('pgsync_admin', 'pgsync_monitor', 'MEMBER') THEN
        GRANT pgsync_monitor TO pgsync_admin;
    END IF;
END
$$;
