-- Privileges: only admins configure, monitors read views that never show secrets or header
-- values, writers of tracked tables need no rights on pg_sync and can neither read nor forge
-- queue rows, and nobody else can do anything. SECURITY DEFINER functions cannot be hijacked
-- through search_path.
\set SHOW_CONTEXT never
-- Tests share one database: start from a clean slate if an earlier test left the extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_sync CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_sync;

-- ------------------------------------------------------------------------------------------
-- Roles and tables

CREATE ROLE regress_writer LOGIN;
CREATE ROLE regress_monitor LOGIN IN ROLE pgsync_monitor;
CREATE ROLE regress_admin LOGIN IN ROLE pgsync_admin;
CREATE ROLE regress_outsider LOGIN;
SELECT rolname, rolsuper, pg_has_role(rolname, 'pgsync_admin', 'MEMBER') AS is_admin,
       pg_has_role(rolname, 'pgsync_monitor', 'MEMBER') AS is_monitor
  FROM pg_roles
 WHERE rolname IN ('regress_writer', 'regress_monitor', 'regress_admin', 'regress_outsider')
 ORDER BY rolname COLLATE "C";

-- The tables live in a schema of their own (other tests may recreate public without its
-- default privileges); everybody may look up names in it.
CREATE SCHEMA pv;
GRANT USAGE ON SCHEMA pv TO PUBLIC;
SET search_path = pv;
-- The tracked table: the writer may only read and write its rows.
CREATE TABLE pv_orders (id int PRIMARY KEY, status text, amount numeric);
GRANT SELECT, INSERT, UPDATE, DELETE ON pv_orders TO regress_writer;
-- Owned by postgres, no grants at all.
CREATE TABLE pv_payroll (id int PRIMARY KEY, salary numeric);
-- Owned by postgres, the admin may read it but not put triggers on it.
CREATE TABLE pv_notes (id int PRIMARY KEY, body text);
GRANT SELECT ON pv_notes TO regress_admin;
-- The admin's own table; the writer may insert into it.
CREATE TABLE pv_admin_items (id int PRIMARY KEY, name text);
ALTER TABLE pv_admin_items OWNER TO regress_admin;
GRANT SELECT, INSERT ON pv_admin_items TO regress_writer;
-- Schemas where the admin and the writer may create functions (used for search_path attacks).
CREATE SCHEMA pv_admin_fns AUTHORIZATION regress_admin;
CREATE SCHEMA pv_writer_fns AUTHORIZATION regress_writer;

-- The endpoint has header values and a secret that no view may show.
SELECT pg_sync.create_endpoint('orders-hook', 'https://example.com/hooks/orders',
       headers => '{"Authorization": "Bearer s3cret", "X-Tenant": "acme-tenant"}',
       secret => 'whsec_' || encode(convert_to('0123456789abcdef0123456789abcdef', 'UTF8'), 'base64'));
SELECT pg_sync.track('pv_orders', 'orders-hook');

-- What the queue holds, as superuser (nobody else can read it).
CREATE VIEW pv_queue AS
SELECT q.id, e.name AS endpoint, q.op, q.tbl, q.key::text AS key, q.emit_type,
       q.new_row::text AS new_row
  FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id;

-- ------------------------------------------------------------------------------------------
-- Writer: its changes are captured, although it has no rights on pg_sync.

SET ROLE regress_writer;
INSERT INTO pv_orders VALUES (1, 'new', 10), (2, 'new', 20);
UPDATE pv_orders SET status = 'paid' WHERE id = 1;
DELETE FROM pv_orders WHERE id = 2;
RESET ROLE;
SELECT endpoint, op, tbl, key, new_row FROM pv_queue ORDER BY id;

-- Writer: no access to the queue, the configuration or the views.
SET ROLE regress_writer;
SELECT count(*) FROM pg_sync._queue;
INSERT INTO pg_sync._queue (endpoint_id, op, tbl, key, new_row)
VALUES (1, 'insert', 'pv.pv_orders', '{"id": 99}', '{"id": 99, "status": "forged"}');
UPDATE pg_sync._queue SET new_row = '{"id": 1, "status": "forged"}';
DELETE FROM pg_sync._queue;
TRUNCATE pg_sync._queue;
COPY pg_sync._queue TO stdout;
SELECT nextval('pg_sync._queue_id_seq');
SELECT * FROM pg_sync._endpoints;
INSERT INTO pg_sync._endpoints (name, url, batch_size, max_attempts, timeout_ms, max_in_flight,
                                retry_base_ms, retry_max_ms)
VALUES ('evil', 'https://evil.example/', 1, 1, 1000, 1, 1, 1);
UPDATE pg_sync._endpoints SET url = 'https://evil.example/';
DELETE FROM pg_sync._endpoints;
TRUNCATE pg_sync._endpoints;
SELECT * FROM pg_sync._tracked;
INSERT INTO pg_sync._tracked (tbl, endpoint_id, events) VALUES ('pv_orders', 1, '{insert}');
UPDATE pg_sync._tracked SET filter = 'false';
DELETE FROM pg_sync._tracked;
TRUNCATE pg_sync._tracked;
SELECT * FROM pg_sync.endpoints;
SELECT * FROM pg_sync.tracked_tables;
SELECT * FROM pg_sync.endpoint_status;
-- Writer: no configuration function, no internal function.
SELECT pg_sync.create_endpoint('writer-hook', 'https://example.com/w');
SELECT pg_sync.alter_endpoint('orders-hook', url => 'https://evil.example/');
SELECT pg_sync.drop_endpoint('orders-hook', force => true);
SELECT pg_sync.pause_endpoint('orders-hook');
SELECT pg_sync.resume_endpoint('orders-hook');
SELECT pg_sync.track('pv_orders', 'orders-hook', events => '{insert}');
SELECT pg_sync.untrack('pv_orders');
SELECT pg_sync.emit('orders-hook', 'forged', '{"id": 1}');
SELECT pg_sync._capture();
SELECT pg_sync._config_changed();
SELECT pg_sync._check_filter('pv_orders', 'true', current_user::regrole, '{}');
SELECT pg_sync._sync_triggers('pv_orders');
SELECT pg_sync._endpoint_id('orders-hook');
-- Writer: cannot add triggers to the queue, use the capture function on a table of its own,
-- nor switch capture off.
CREATE TRIGGER forge AFTER INSERT ON pg_sync._queue FOR EACH ROW EXECUTE FUNCTION pg_sync._capture();
CREATE TEMP TABLE pv_mine (id int PRIMARY KEY);
CREATE TRIGGER forge AFTER INSERT ON pv_mine FOR EACH ROW EXECUTE FUNCTION pg_sync._capture();
ALTER TABLE pv_orders DISABLE TRIGGER pg_sync_capture;
DROP TRIGGER pg_sync_capture ON pv_orders;
SET session_replication_role = replica;
RESET ROLE;
-- Nothing was forged or lost.
SELECT endpoint, op, key FROM pv_queue ORDER BY id;
SELECT count(*) AS endpoints FROM pg_sync._endpoints;
SELECT tbl, events, filter FROM pg_sync._tracked;

-- ------------------------------------------------------------------------------------------
-- Monitor: reads the views, which show header names but no header value and no secret.

SET ROLE regress_monitor;
SELECT name, url, header_names, has_secret, batch_size, max_attempts, timeout_ms, max_in_flight,
       paused FROM pg_sync.endpoints ORDER BY name COLLATE "C";
SELECT "table", endpoint, events, columns, key_columns, filter FROM pg_sync.tracked_tables;
SELECT endpoint, state, pending, oldest_pending_age IS NOT NULL AS has_oldest_age
  FROM pg_sync.endpoint_status;
-- No column of any view holds a header value or the secret.
SELECT 'endpoints' AS view, count(*) AS leaks FROM pg_sync.endpoints v
 WHERE v::text ~ '(s3cret|acme-tenant|whsec_|MDEyMzQ1)'
UNION ALL
SELECT 'tracked_tables', count(*) FROM pg_sync.tracked_tables v
 WHERE v::text ~ '(s3cret|acme-tenant|whsec_|MDEyMzQ1)'
UNION ALL
SELECT 'endpoint_status', count(*) FROM pg_sync.endpoint_status v
 WHERE v::text ~ '(s3cret|acme-tenant|whsec_|MDEyMzQ1)';
-- But not the tables, nor any function.
SELECT secret FROM pg_sync._endpoints;
SELECT headers FROM pg_sync._endpoints;
SELECT count(*) FROM pg_sync._queue;
SELECT count(*) FROM pg_sync._tracked;
SELECT pg_sync.create_endpoint('monitor-hook', 'https://example.com/m');
SELECT pg_sync.alter_endpoint('orders-hook', batch_size => 1);
SELECT pg_sync.pause_endpoint('orders-hook');
SELECT pg_sync.drop_endpoint('orders-hook', force => true);
SELECT pg_sync.track('pv_orders', 'orders-hook');
SELECT pg_sync.untrack('pv_orders');
SELECT pg_sync.emit('orders-hook', 'x', '{}');
RESET ROLE;
-- Column statistics do not leak the secret either.
ANALYZE pg_sync._endpoints;
SET ROLE regress_monitor;
SELECT count(*) AS visible_stats FROM pg_stats WHERE schemaname = 'pg_sync';
RESET ROLE;

-- ------------------------------------------------------------------------------------------
-- Admin (a member of pgsync_admin, not a superuser). track() checks the privileges of
-- session_user on the table (inside the SECURITY DEFINER function current_user is the
-- extension owner). In pg_regress the session user is the superuser and SET ROLE does not
-- change session_user, so the admin's session is entered with SET SESSION AUTHORIZATION,
-- as if the admin had logged in.

SET SESSION AUTHORIZATION regress_admin;
SELECT session_user, current_user;
SELECT pg_sync.create_endpoint('admin-hook', 'https://example.com/hooks/admin',
                               headers => '{"X-Team": "blue"}');
SELECT pg_sync.track('pv_admin_items', 'admin-hook');
INSERT INTO pv_admin_items VALUES (1, 'one');
SELECT pg_sync.alter_endpoint('admin-hook', batch_size => 50);
SELECT pg_sync.pause_endpoint('admin-hook');
SELECT name, batch_size, paused, paused_reason FROM pg_sync.endpoints ORDER BY name COLLATE "C";
SELECT pg_sync.resume_endpoint('admin-hook');
SELECT name, batch_size, paused, paused_reason FROM pg_sync.endpoints ORDER BY name COLLATE "C";
SELECT pg_sync.emit('admin-hook', 'item.checked', '{"id": 1}', key => '1') IS NOT NULL AS emitted;
SELECT "table", endpoint FROM pg_sync.tracked_tables ORDER BY "table"::text COLLATE "C", endpoint COLLATE "C";
-- An admin configures, but does not read secrets or the queue back.
SELECT secret FROM pg_sync._endpoints;
SELECT count(*) FROM pg_sync._queue;
-- Tracking sends rows elsewhere: the admin must be able to read the table and put triggers
-- on it.
SELECT pg_sync.track('pv_payroll', 'admin-hook');
SELECT pg_sync.track('pv_notes', 'admin-hook');
-- An admin may pass emit() on to an application role.
GRANT EXECUTE ON FUNCTION pg_sync.emit(text, text, jsonb, text) TO regress_writer;
-- ... but not the configuration functions.
GRANT EXECUTE ON FUNCTION pg_sync.track(regclass, text, text[], text[], text[], text) TO regress_writer;
RESET SESSION AUTHORIZATION;

SET ROLE regress_writer;
SELECT pg_sync.emit('orders-hook', 'order.note', '{"note": "hi"}', key => '1') IS NOT NULL AS emitted;
SELECT pg_sync.track('pv_orders', 'orders-hook', events => '{insert}');
SELECT count(*) FROM pg_sync._queue;
RESET ROLE;

-- A SECURITY DEFINER function of the admin must not borrow the privileges of whoever calls
-- it: here the table's owner (postgres) calls it, and track() must still refuse, because the
-- role calling track() is the admin, who cannot read pv_payroll.
SET SESSION AUTHORIZATION regress_admin;
CREATE FUNCTION pv_admin_fns.track_payroll() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
AS $$ SELECT pg_sync.track('pv.pv_payroll', 'admin-hook') $$;
RESET SESSION AUTHORIZATION;
SELECT pv_admin_fns.track_payroll();
SELECT "table", endpoint FROM pg_sync.tracked_tables ORDER BY "table"::text COLLATE "C", endpoint COLLATE "C";

-- ------------------------------------------------------------------------------------------
-- search_path cannot hijack the SECURITY DEFINER functions: shadows of the catalog functions
-- and operators they use, first in search_path, are never called (each one would leave a
-- NOTICE and return a value that changes the outcome).

SET SESSION AUTHORIZATION regress_admin;
CREATE FUNCTION pv_admin_fns.lower(text) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: lower(%)', $1; RETURN 'insert'; END $$;
CREATE FUNCTION pv_admin_fns.upper(text) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: upper(%)', $1; RETURN 'INSERT'; END $$;
CREATE FUNCTION pv_admin_fns.btrim(text) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: btrim(%)', $1; RETURN 'x'; END $$;
CREATE FUNCTION pv_admin_fns.cardinality(text[]) RETURNS int LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: cardinality'; RETURN 1; END $$;
CREATE FUNCTION pv_admin_fns.format(text, regclass) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: format(%)', $1; RETURN 'SELECT 1'; END $$;
CREATE FUNCTION pv_admin_fns.format(text, text, regclass) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: format(%)', $1; RETURN 'SELECT 1'; END $$;
CREATE FUNCTION pv_admin_fns.format(text, name, regclass) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: format(%)', $1; RETURN 'SELECT 1'; END $$;
CREATE FUNCTION pv_admin_fns.has_table_privilege(name, regclass, text) RETURNS bool LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: has_table_privilege'; RETURN true; END $$;
CREATE FUNCTION pv_admin_fns.pg_has_role(name, oid, text) RETURNS bool LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: pg_has_role'; RETURN true; END $$;
CREATE FUNCTION pv_admin_fns.text_eq(text, text) RETURNS bool LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: text = text'; RETURN true; END $$;
CREATE OPERATOR pv_admin_fns.= (LEFTARG = text, RIGHTARG = text, FUNCTION = pv_admin_fns.text_eq);
SET search_path = pv_admin_fns, pg_catalog, pv;
SELECT pg_sync.create_endpoint('hijack-hook', 'https://example.com/hooks/hijack',
                               headers => '{"X-A": "b"}');
SELECT pg_sync.alter_endpoint('hijack-hook', batch_size => 7);
SELECT pg_sync.pause_endpoint('hijack-hook');
SELECT pg_sync.resume_endpoint('hijack-hook');
SELECT pg_sync.track('pv_admin_items', 'hijack-hook', events => '{INSERT,update}',
                     filter => 'lower(NEW.name) <> ''skip''');
SELECT pg_sync.emit('hijack-hook', 'hijack.test', '{}') IS NOT NULL AS emitted;
-- The privilege check is not fooled by the shadows of has_table_privilege / pg_has_role.
SELECT pg_sync.track('pv_payroll', 'hijack-hook');
-- The bad-input checks are not fooled by the shadows of lower / btrim / cardinality / =.
SELECT pg_sync.track('pv_admin_items', 'hijack-hook', events => '{upsert}');
SELECT pg_sync.track('pv_admin_items', 'hijack-hook', events => '{}');
SELECT pg_sync.track('pv_admin_items', 'hijack-hook', filter => ' ');
SELECT pg_sync.create_endpoint('hijack-hook', 'https://example.com/again');
SELECT pg_sync.drop_endpoint('no-such-hook');
SET search_path = pv;
SELECT name, url, header_names, batch_size, paused FROM pg_sync.endpoints
 WHERE name = 'hijack-hook';
SELECT "table", endpoint, events, filter FROM pg_sync.tracked_tables
 WHERE endpoint = 'hijack-hook';
RESET SESSION AUTHORIZATION;
SELECT tgrelid::regclass, tgname, tgenabled FROM pg_trigger
 WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'pv\_%' ORDER BY tgrelid::regclass::text COLLATE "C", tgname COLLATE "C";

-- The capture filter is bound when track() runs: a writer whose search_path starts with its
-- own lower() neither runs that function nor changes what is captured.
SET ROLE regress_writer;
CREATE FUNCTION pv_writer_fns.lower(text) RETURNS text LANGUAGE plpgsql
AS $$ BEGIN RAISE NOTICE 'HIJACKED: filter called lower(%)', $1; RETURN 'skip'; END $$;
SET search_path = pv_writer_fns, pg_catalog, pv;
INSERT INTO pv_admin_items VALUES (10, 'ten');
SET search_path = pv;
INSERT INTO pv_admin_items VALUES (11, 'skip');
RESET ROLE;
SELECT endpoint, op, key FROM pv_queue WHERE endpoint = 'hijack-hook' ORDER BY id;

-- ------------------------------------------------------------------------------------------
-- Outsider: nothing at all.

SET ROLE regress_outsider;
SELECT pg_sync.create_endpoint('outsider-hook', 'https://example.com/o');
SELECT pg_sync.alter_endpoint('orders-hook', batch_size => 1);
SELECT pg_sync.drop_endpoint('orders-hook', force => true);
SELECT pg_sync.pause_endpoint('orders-hook');
SELECT pg_sync.resume_endpoint('orders-hook');
SELECT pg_sync.track('pv_orders', 'orders-hook');
SELECT pg_sync.untrack('pv_orders');
SELECT pg_sync.emit('orders-hook', 'x', '{}');
SELECT pg_sync._config_changed();
SELECT * FROM pg_sync.endpoints;
SELECT * FROM pg_sync.tracked_tables;
SELECT * FROM pg_sync.endpoint_status;
SELECT * FROM pg_sync._endpoints;
SELECT * FROM pg_sync._queue;
SELECT * FROM pg_sync._tracked;
INSERT INTO pg_sync._queue (endpoint_id, op) VALUES (1, 'emit');
RESET ROLE;

-- The final queue: only what the allowed calls produced.
SELECT endpoint, op, tbl, key, emit_type FROM pv_queue ORDER BY endpoint COLLATE "C", id;

-- ------------------------------------------------------------------------------------------
-- Clean up (roles are cluster-wide; tests share one database).
RESET ROLE;
RESET SESSION AUTHORIZATION;
SET client_min_messages = warning;
DROP VIEW pv_queue;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA pv CASCADE;
DROP OWNED BY regress_writer, regress_monitor, regress_admin, regress_outsider CASCADE;
DROP ROLE regress_writer, regress_monitor, regress_admin, regress_outsider;
RESET client_min_messages;
RESET search_path;
SELECT count(*) AS roles_left FROM pg_roles
 WHERE rolname IN ('regress_writer', 'regress_monitor', 'regress_admin', 'regress_outsider');
