-- ---------------------------------------------------------------------------------------------
-- DDL event triggers (their functions: sql/src/ddl.sql). Created once, by CREATE EXTENSION; an
-- update that changes their events drops and re-creates them in its delta (sql/updates/).

CREATE EVENT TRIGGER pg_sync_sql_drop ON sql_drop EXECUTE FUNCTION pg_sync._on_sql_drop();
CREATE EVENT TRIGGER pg_sync_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER')
    EXECUTE FUNCTION pg_sync._on_ddl_end();
