-- Security and correctness of 0.3.0 (docs/security.md): code a role wrote runs with that role's
-- rights only; a URL change does not carry credentials to another origin; monitors see no row
-- data; the capture-trigger guard closes when pg_sync is done with its triggers; keys are one
-- text per row value whatever the session; filters mean the same in every session; event names
-- are not case-mapped through the database's collation; health() names publications of
-- pg_sync's tables. (No worker runs here; test/165_security.sh covers backfill and delivery.)
\set SHOW_CONTEXT never
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_sync CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_sync;
CREATE SCHEMA sec;
GRANT USAGE ON SCHEMA sec TO PUBLIC;
SET search_path = sec;
CREATE VIEW q AS SELECT e.name AS endpoint, q.op, q.key::text, q.new_row::text
                   FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id;

-- ==========================================================================================
-- 1. A filter runs with the rights of the role that wrote it, never the writer's. An admin with
-- only SELECT and TRIGGER on a superuser's table writes a STABLE filter function that PERFORMs
-- a VOLATILE one making itself superuser when it runs as someone else; a superuser then writes
-- to the table. (0.2.0 ran the filter as the writer: the admin became superuser.)
CREATE ROLE regress_sec_admin LOGIN IN ROLE pgsync_admin;
CREATE ROLE regress_sec_monitor LOGIN IN ROLE pgsync_monitor;
CREATE TABLE payroll (id int PRIMARY KEY, salary numeric);
GRANT SELECT, TRIGGER ON payroll TO regress_sec_admin;
CREATE TABLE seen (who text, rows_ok bool);
GRANT INSERT ON seen TO regress_sec_admin;
GRANT CREATE ON SCHEMA sec TO regress_sec_admin;
SELECT pg_sync.create_endpoint('e', 'https://example.com/e');
SET SESSION AUTHORIZATION regress_sec_admin;
CREATE FUNCTION sec.escalate() RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO sec.seen VALUES (current_user, true);
    IF current_user <> 'regress_sec_admin' THEN
        ALTER ROLE regress_sec_admin SUPERUSER;
    END IF;
    RETURN true;
END $$;
CREATE FUNCTION sec.f() RETURNS bool LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM sec.escalate();
    RETURN true;
END $$;
SELECT pg_sync.track('sec.payroll', 'e', filter => 'sec.f()');
RESET SESSION AUTHORIZATION;
SELECT filter_role, filter_settings IS NOT NULL AS has_settings FROM pg_sync._tracked;
INSERT INTO payroll VALUES (1, 100);                 -- the superuser writes
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_sec_admin';
SELECT who FROM seen;                                -- the filter ran as its author
SELECT op, key FROM q;                               -- and the change was captured
-- The filter runs security-restricted: it cannot change session state for the writer.
SET SESSION AUTHORIZATION regress_sec_admin;
CREATE FUNCTION sec.sets() RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('work_mem', '1MB', false);
    CREATE TEMP TABLE x (a int);
    RETURN true;
END $$;
CREATE FUNCTION sec.g() RETURNS bool LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN sec.sets(); END $$;
SELECT pg_sync.track('sec.payroll', 'e', filter => 'sec.g()');
RESET SESSION AUTHORIZATION;
INSERT INTO payroll VALUES (2, 100);
SELECT count(*) AS captured FROM q;
-- Nor can it leave a setting behind (set_config(..., false) is undone when the filter returns):
-- a search_path left to the author would run the author's functions in the writer's session.
SET SESSION AUTHORIZATION regress_sec_admin;
CREATE FUNCTION sec.setpath() RETURNS text LANGUAGE sql VOLATILE AS
$$ SELECT set_config('search_path', 'sec_evil, pg_catalog', false) $$;
CREATE FUNCTION sec.h() RETURNS bool LANGUAGE plpgsql STABLE AS $$ BEGIN PERFORM sec.setpath(); RETURN true; END $$;
SELECT pg_sync.track('sec.payroll', 'e', filter => 'sec.h()');
RESET SESSION AUTHORIZATION;
SHOW search_path;
INSERT INTO payroll VALUES (2, 100);
SHOW search_path;
SELECT count(*) AS captured FROM q;
-- The author loses SELECT on the table: writes fail with a clear error (nothing is captured
-- unfiltered or skipped), health() says why, and track() again as another role repairs it.
SET SESSION AUTHORIZATION regress_sec_admin;
SELECT pg_sync.track('sec.payroll', 'e', filter => 'NEW.salary > 0');
RESET SESSION AUTHORIZATION;
REVOKE SELECT ON payroll FROM regress_sec_admin;
INSERT INTO payroll VALUES (3, 100);
SELECT severity, endpoint, problem, detail FROM pg_sync.health() WHERE problem = 'filter role invalid';
GRANT SELECT ON payroll TO regress_sec_admin;
INSERT INTO payroll VALUES (3, 100);
-- The owner's DDL is not blocked by the author's lost rights (the filter is re-parsed after
-- ALTER TABLE, without the author check; its author is checked before it runs).
REVOKE SELECT ON payroll FROM regress_sec_admin;
ALTER TABLE payroll ADD COLUMN note text;
GRANT SELECT ON payroll TO regress_sec_admin;
-- A filter from before 0.3.0 (no recorded author) runs as the writer, as it did then; health()
-- asks for track() again.
UPDATE pg_sync._tracked SET filter_role = NULL, filter_settings = NULL, filter = 'sec.logs_writer()'
 WHERE tbl = 'payroll'::regclass;
CREATE FUNCTION sec.logs_writer() RETURNS bool LANGUAGE plpgsql STABLE AS
$$ BEGIN PERFORM sec.log_writer(); RETURN true; END $$;
CREATE FUNCTION sec.log_writer() RETURNS void LANGUAGE sql VOLATILE AS $$ INSERT INTO sec.seen VALUES (current_user, true) $$;
SELECT pg_sync._config_changed();
DELETE FROM seen;
INSERT INTO payroll VALUES (5, 100);
SELECT who FROM seen;
SELECT severity, problem, detail FROM pg_sync.health() WHERE problem LIKE 'filter%';
DROP FUNCTION logs_writer(), log_writer();
SET SESSION AUTHORIZATION regress_sec_admin;
SELECT pg_sync.track('sec.payroll', 'e', filter => 'NEW.salary > 0');
RESET SESSION AUTHORIZATION;
-- The author is dropped: the same, until track() is called again.
REVOKE ALL ON payroll FROM regress_sec_admin;
DROP FUNCTION f(), g(), h(), escalate(), sets(), setpath();
REVOKE ALL ON seen FROM regress_sec_admin;
REVOKE ALL ON SCHEMA sec FROM regress_sec_admin;
DROP ROLE regress_sec_admin;
INSERT INTO payroll VALUES (4, 100);
SELECT severity, problem, detail FROM pg_sync.health() WHERE problem = 'filter role invalid';
SELECT pg_sync.track('sec.payroll', 'e', filter => 'NEW.salary > 0');
INSERT INTO payroll VALUES (4, 100);
SELECT count(*) AS problems FROM pg_sync.health() WHERE problem = 'filter role invalid';

-- ==========================================================================================
-- 2. Credentials do not follow a URL to another origin.
CREATE ROLE regress_sec_admin2 LOGIN IN ROLE pgsync_admin;
SELECT pg_sync.create_endpoint('cred', 'https://hooks.example.com/a',
                               headers => '{"Authorization": "Bearer s3cret"}',
                               secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SET SESSION AUTHORIZATION regress_sec_admin2;
-- Another host, another scheme, another port: refused, nothing changed.
SELECT pg_sync.alter_endpoint('cred', url => 'https://attacker.example.net/a');
SELECT pg_sync.alter_endpoint('cred', url => 'http://hooks.example.com/a');
SELECT pg_sync.alter_endpoint('cred', url => 'https://hooks.example.com:8443/a');
SELECT pg_sync.alter_endpoint('cred', url => 'https://attacker.example.net/a', headers => '{}');
SELECT pg_sync.alter_endpoint('cred', url => 'https://attacker.example.net/a', secret => '');
RESET SESSION AUTHORIZATION;
SELECT url, headers, secret IS NOT NULL AS has_secret FROM pg_sync._endpoints WHERE name = 'cred';
SET SESSION AUTHORIZATION regress_sec_admin2;
-- The same origin (another path, letter case, the default port written out) keeps them.
SELECT pg_sync.alter_endpoint('cred', url => 'HTTPS://Hooks.Example.com:443/b?x=1');
-- Another origin with the credentials given again (or dropped explicitly) is allowed.
SELECT pg_sync.alter_endpoint('cred', url => 'https://new.example.org/c',
                              headers => '{"Authorization": "Bearer other"}', secret => '');
RESET SESSION AUTHORIZATION;
SELECT url, headers, secret IS NOT NULL AS has_secret FROM pg_sync._endpoints WHERE name = 'cred';
-- An endpoint without credentials may move freely.
SELECT pg_sync.create_endpoint('bare', 'https://a.example.com/x');
SELECT pg_sync.alter_endpoint('bare', url => 'https://b.example.com/y');
SELECT url FROM pg_sync._endpoints WHERE name = 'bare';
-- Any URL change sends the rows of the endpoint's tables elsewhere: the caller must be able to
-- read every table tracked for it.
SELECT pg_sync.track('sec.payroll', 'bare');
SET SESSION AUTHORIZATION regress_sec_admin2;
SELECT pg_sync.alter_endpoint('bare', url => 'https://b.example.com/other');
RESET SESSION AUTHORIZATION;
GRANT SELECT ON payroll TO regress_sec_admin2;
SET SESSION AUTHORIZATION regress_sec_admin2;
SELECT pg_sync.alter_endpoint('bare', url => 'https://b.example.com/other');
SELECT pg_sync.alter_endpoint('bare', batch_size => 7);  -- other settings need no table rights
RESET SESSION AUTHORIZATION;
SELECT url, batch_size FROM pg_sync._endpoints WHERE name = 'bare';
SELECT pg_sync.untrack('sec.payroll', 'bare');
REVOKE SELECT ON payroll FROM regress_sec_admin2;
-- Resuming another admin's backfill makes the caller its requester: it must read the table.
INSERT INTO pg_sync._backfills (tbl, endpoint_id, batch_rows, requested_by, state)
SELECT 'sec.payroll', id, 10, 10, 'cancelled' FROM pg_sync._endpoints WHERE name = 'e';
SELECT max(id) AS bid FROM pg_sync._backfills \gset
SET SESSION AUTHORIZATION regress_sec_admin2;
SELECT pg_sync.resume_backfill(:bid);
RESET SESSION AUTHORIZATION;
GRANT SELECT ON payroll TO regress_sec_admin2;
SET SESSION AUTHORIZATION regress_sec_admin2;
SELECT pg_sync.resume_backfill(:bid);
RESET SESSION AUTHORIZATION;
SELECT state, requested_by FROM pg_sync.backfills;
DELETE FROM pg_sync._backfills;
REVOKE SELECT ON payroll FROM regress_sec_admin2;
DROP ROLE regress_sec_admin2;

-- ==========================================================================================
-- 3. Monitors see metadata only: no keys or rows of dead letters, no backfill page keys, and
-- of a URL only its origin (a path can be a credential). Admins see them.
INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, tbl, key, new_row, old_row, txid, captured_at, attempts)
SELECT 999, id, 'update', 'sec.payroll', '{"id":"alice@example.com"}', '{"salary":1}', '{"salary":0}',
       '1'::xid8, now(), 10 FROM pg_sync._endpoints WHERE name = 'e';
INSERT INTO pg_sync._backfills (tbl, endpoint_id, batch_rows, requested_by, last_key, state)
SELECT 'sec.payroll', id, 10, 10, '{alice@example.com}', 'cancelled' FROM pg_sync._endpoints WHERE name = 'e';
SET ROLE regress_sec_monitor;
SELECT id, endpoint, "table", op, key, payload, attempts FROM pg_sync.dead_letters;
SELECT last_key FROM pg_sync.backfills;
SELECT name, url FROM pg_sync.endpoints ORDER BY name COLLATE "C";
SELECT count(*) AS leaks FROM pg_sync.dead_letters v WHERE v::text ~ 'alice|salary';
RESET ROLE;
CREATE ROLE regress_sec_admin3 LOGIN IN ROLE pgsync_admin;
-- An admin sees row data only of tables it may read.
SET ROLE regress_sec_admin3;
SELECT id, key, payload FROM pg_sync.dead_letters;
RESET ROLE;
GRANT SELECT ON payroll TO regress_sec_admin3;
SET ROLE regress_sec_admin3;
SELECT id, key, payload FROM pg_sync.dead_letters;
SELECT last_key FROM pg_sync.backfills;
SELECT name, url FROM pg_sync.endpoints ORDER BY name COLLATE "C";
RESET ROLE;
REVOKE SELECT ON payroll FROM regress_sec_admin3;
DROP ROLE regress_sec_admin3;
-- Error messages: monitors see their class only (the rest can quote a receiver's answer).
UPDATE pg_sync._endpoint_state SET last_error = 'HTTP 422: {"rejected": {"email": "alice@example.com"}}';
INSERT INTO pg_sync._endpoint_state (endpoint_id, last_error)
SELECT id, 'HTTP 422: {"rejected": {"email": "alice@example.com"}}' FROM pg_sync._endpoints WHERE name = 'e'
ON CONFLICT (endpoint_id) DO UPDATE SET last_error = excluded.last_error;
SET ROLE regress_sec_monitor;
SELECT endpoint, last_error FROM pg_sync.endpoint_status WHERE endpoint = 'e';
SELECT "table", filter FROM pg_sync.tracked_tables;
RESET ROLE;
SELECT endpoint, last_error FROM pg_sync.endpoint_status WHERE endpoint = 'e';
DELETE FROM pg_sync._endpoint_state;
DELETE FROM pg_sync._dead_letters;
DELETE FROM pg_sync._backfills;

-- ==========================================================================================
-- 4. The guard on capture triggers is open only while pg_sync changes them: in the same
-- transaction as track / untrack / drop_endpoint, disabling the trigger is still refused.
CREATE TABLE guarded (id int PRIMARY KEY);
SELECT pg_sync.create_endpoint('g1', 'https://example.com/g1');
SELECT pg_sync.create_endpoint('g2', 'https://example.com/g2');
BEGIN;
SELECT pg_sync.track('guarded', 'g1');
ALTER TABLE guarded DISABLE TRIGGER pg_sync_capture;
ROLLBACK;
SELECT pg_sync.track('guarded', 'g1');
SELECT pg_sync.track('guarded', 'g2', events => '{insert,update,delete,truncate}');
BEGIN;
SELECT pg_sync.untrack('guarded', 'g2');
ALTER TABLE guarded DISABLE TRIGGER ALL;
ROLLBACK;
BEGIN;
SELECT pg_sync.drop_endpoint('g2');
DROP TRIGGER pg_sync_capture ON guarded;
ROLLBACK;
BEGIN;
SELECT pg_sync.drop_endpoint('g2');
ALTER TRIGGER pg_sync_capture ON guarded RENAME TO other;
ROLLBACK;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'guarded'::regclass ORDER BY tgname;
SELECT current_setting('pg_sync.internal_trigger_change') AS guard_open_after_track;

-- ==========================================================================================
-- 5. Keys: one text per row value, whatever the writer's TimeZone, extra_float_digits,
-- IntervalStyle, DateStyle or bytea_output. (new/old follow the writer's session.)
CREATE TABLE k_ts (at timestamptz, f float8, r real, d date, iv interval, b bytea, n int,
                   PRIMARY KEY (at, f, r, d, iv, b));
SELECT pg_sync.track('k_ts', 'g1');
SET TimeZone = 'Asia/Tokyo';
SET extra_float_digits = 0;
SET IntervalStyle = 'sql_standard';
SET DateStyle = 'SQL, DMY';
SET bytea_output = 'escape';
INSERT INTO k_ts VALUES ('2026-01-01 00:00:00+00', 0.1, 0.1, '2026-01-02', '1 day 2 hours', '\x00ff', 1);
SET TimeZone = 'America/New_York';
SET extra_float_digits = 3;
SET IntervalStyle = 'iso_8601';
SET DateStyle = 'German';
SET bytea_output = 'hex';
UPDATE k_ts SET n = 2;
RESET TimeZone; RESET extra_float_digits; RESET IntervalStyle; RESET DateStyle; RESET bytea_output;
UPDATE k_ts SET n = 3;
SELECT op, key FROM q WHERE endpoint = 'g1' AND key LIKE '{"at"%';
SELECT count(DISTINCT key) AS distinct_keys FROM q WHERE endpoint = 'g1' AND key LIKE '{"at"%';
-- Special float values and negative zero.
CREATE TABLE k_float (f float8 PRIMARY KEY, v int);
SELECT pg_sync.track('k_float', 'g1');
SET extra_float_digits = -15;
INSERT INTO k_float VALUES ('NaN', 1), ('Infinity', 1), ('-Infinity', 1), (1e300, 1), (1.0/3, 1), (-0.0, 1);
RESET extra_float_digits;
UPDATE k_float SET v = 2;
SELECT key, count(*) FROM q WHERE endpoint = 'g1' AND key LIKE '{"f"%' GROUP BY key ORDER BY key COLLATE "C";
-- The event's table name is part of its identity too: quote_all_identifiers changes nothing.
CREATE TABLE k_quote (id int PRIMARY KEY);
SELECT pg_sync.track('k_quote', 'g1');
SET quote_all_identifiers = on;
INSERT INTO k_quote VALUES (1);
RESET quote_all_identifiers;
INSERT INTO k_quote VALUES (2);
SELECT q.tbl, q.key FROM pg_sync._queue q WHERE q.tbl LIKE '%k_quote%' ORDER BY q.id;
-- reg* key columns print names relative to search_path: keys are rendered with pg_catalog only.
CREATE SCHEMA sec_other;
CREATE TABLE sec_other.thing (id int);
CREATE TABLE k_reg (c regclass PRIMARY KEY, v int);
SELECT pg_sync.track('k_reg', 'g1');
INSERT INTO k_reg VALUES ('sec_other.thing', 1);
SET search_path = sec, sec_other;
UPDATE k_reg SET v = 2;
SET search_path = sec;
SELECT op, key FROM q WHERE key LIKE '{"c"%' ORDER BY op;
-- The test-only pause setting is superuser-only.
CREATE ROLE regress_sec_plain;
SET ROLE regress_sec_plain;
SET pg_sync.debug_pass_pause = '1s';
RESET ROLE;
DROP ROLE regress_sec_plain;

-- ==========================================================================================
-- 6. A filter means what it meant to the session that wrote it: standard_conforming_strings,
-- DateStyle and TimeZone of the writer change nothing.
CREATE TABLE f_names (id int PRIMARY KEY, name text, d date, at timestamptz);
SET DateStyle = 'ISO, DMY';
SET TimeZone = 'UTC';
SELECT pg_sync.track('f_names', 'g1', filter => $$NEW.name LIKE 'tmp\_%' AND NEW.d < '01/02/2026' AND NEW.at::date = '2026-01-01'$$);
RESET DateStyle; RESET TimeZone;
SELECT filter_settings @> ARRAY['DateStyle=ISO, DMY', 'TimeZone=UTC', 'standard_conforming_strings=on'] AS recorded
  FROM pg_sync._tracked WHERE tbl = 'f_names'::regclass;
-- Row 1 passes (d = 15 Jan < 1 Feb in DMY); row 2's name does not match tmp\_% (tmpAx), row 3's
-- date is after 1 Feb, row 4's timestamp is 2 Jan in UTC.
SET standard_conforming_strings = off;
SET DateStyle = 'ISO, MDY';
SET TimeZone = 'Asia/Tokyo';
SET escape_string_warning = off;
INSERT INTO f_names VALUES (1, 'tmp_x', '2026-01-15', '2026-01-01 23:00+00'),
                           (2, 'tmpAx', '2026-01-15', '2026-01-01 23:00+00'),
                           (3, 'tmp_y', '2026-03-01', '2026-01-01 23:00+00'),
                           (4, 'tmp_z', '2026-01-15', '2026-01-02 01:00+00');
RESET standard_conforming_strings; RESET DateStyle; RESET TimeZone; RESET escape_string_warning;
INSERT INTO f_names VALUES (5, 'tmp_x', '2026-01-15', '2026-01-01 23:00+00'),
                           (6, 'tmpAx', '2026-01-15', '2026-01-01 23:00+00');
SELECT key FROM q WHERE key LIKE '{"id"%' AND endpoint = 'g1' AND new_row LIKE '%"tmp%' ORDER BY key COLLATE "C";

-- ==========================================================================================
-- 7. health() names publications that expose pg_sync's tables (endpoints with secrets, queue).
SET client_min_messages = error; -- (wal_level is not logical here: a warning)
CREATE PUBLICATION regress_sec_all FOR ALL TABLES;
RESET client_min_messages;
SELECT severity, endpoint, problem, detail FROM pg_sync.health() WHERE problem = 'published pg_sync tables';
DROP PUBLICATION regress_sec_all;
CREATE PUBLICATION regress_sec_app FOR TABLES IN SCHEMA sec;
SELECT count(*) AS problems FROM pg_sync.health() WHERE problem = 'published pg_sync tables';
DROP PUBLICATION regress_sec_app;

-- ==========================================================================================
-- 8. Event names are keywords: a Turkish collation must not turn 'insert' into 'İNSERT'.
SELECT current_database() AS orig_db \gset
CREATE DATABASE regress_sec_tr TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8'
    LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR';
\c regress_sec_tr
SELECT upper('insert') AS upper_in_turkish, lower('INSERT') AS lower_in_turkish;
CREATE EXTENSION pg_sync;
CREATE TABLE t (id int PRIMARY KEY);
SELECT pg_sync.create_endpoint('e', 'https://example.com/e');
SELECT pg_sync.track('t', 'e', events => '{INSERT,update,Delete,truncate}');
SELECT events FROM pg_sync.tracked_tables;
SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 't'::regclass ORDER BY tgname;
SELECT pg_sync.track('t', 'e', events => '{İNSERT}');  -- not an event name
\c :orig_db
DROP DATABASE regress_sec_tr;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA sec CASCADE;
DROP SCHEMA sec_other CASCADE;
DROP ROLE regress_sec_monitor;
RESET client_min_messages;
