-- Hostile input: a catalogue of malformed and malicious arguments for every configuration
-- function (create_endpoint, alter_endpoint, drop_endpoint, pause/resume_endpoint, track,
-- untrack, emit, redeliver, purge_dead). Each must be refused with a clear error and change
-- nothing; hostile but legitimate names (quotes, spaces, unicode, SQL fragments, 63-byte
-- identifiers) must work. (bad_input holds the everyday mistakes; this file is the attacker.)
--
-- Layout:
--   A. fixtures                 B. hostile names that are legitimate and must work
--   C. legitimate edge values   D. snapshot of the whole state
--   1-15. the catalogue, one numbered case per bad input
--   E. nothing changed, and the tally of the cases     F. clean up
--
-- Every case goes through hi.bad(case id, statement): it runs the statement in a subtransaction
-- and prints one line: "<id> refused [SQLSTATE] message | DETAIL: ... | HINT: ..." or
-- "<id> ACCEPTED". An accepted case keeps its effect (so the state comparison in E shows it)
-- unless it is a known defect, marked "-- DEFECT:", which is run with keep => false and rolled
-- back ("ACCEPTED (rolled back)"), so that E still checks everything else. Each case is recorded
-- in hi.cases (its id and its statement are unique there: the cases are distinct inputs).

-- Tests share one database: start from a clean slate if an earlier test left the extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_sync CASCADE;
DROP SCHEMA IF EXISTS hi, "Evil ""Schema""; --" CASCADE;
DROP SERVER IF EXISTS hi_server CASCADE;
DROP FOREIGN DATA WRAPPER IF EXISTS hi_fdw CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_sync;

-- ==========================================================================================
-- A. Fixtures

CREATE SCHEMA hi;
SET search_path = hi, public;

CREATE TABLE hi.orders (id int PRIMARY KEY, status text, amount numeric, note text);
CREATE TABLE hi.nopk (a int, b text);
CREATE TABLE hi.dropped_col (id int PRIMARY KEY, gone text, kept text);
ALTER TABLE hi.dropped_col DROP COLUMN gone;
CREATE TABLE hi.parted (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE hi.parted_eu PARTITION OF hi.parted FOR VALUES IN ('eu');
CREATE VIEW hi.orders_view AS SELECT * FROM hi.orders;
CREATE TYPE hi.composite AS (a int, b text);
CREATE FOREIGN DATA WRAPPER hi_fdw;
CREATE SERVER hi_server FOREIGN DATA WRAPPER hi_fdw;
CREATE FOREIGN TABLE hi.foreign_orders (id int) SERVER hi_server;
-- A table whose owner planted a trigger of its own under pg_sync's trigger name.
CREATE TABLE hi.decoy (id int PRIMARY KEY);
CREATE FUNCTION hi.decoy_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER pg_sync_capture AFTER INSERT OR UPDATE OR DELETE ON hi.decoy
    FOR EACH ROW EXECUTE FUNCTION hi.decoy_fn();
-- Functions a filter might try to call: volatile, stable and unqualified.
CREATE FUNCTION hi.vol(int) RETURNS bool LANGUAGE sql VOLATILE AS 'SELECT true';
CREATE FUNCTION hi.stab(int) RETURNS bool LANGUAGE sql STABLE AS 'SELECT true';
-- The victim of the injection attempts: it must still hold its one row at the end.
CREATE TABLE hi.victim (id int);
INSERT INTO hi.victim VALUES (1);

-- The endpoints: 'good' (header and secret), 'other', and 'dl' which only has a dead letter.
SELECT pg_sync.create_endpoint('good', 'https://example.com/hooks/good',
                               headers => '{"Authorization": "Bearer t0ken"}',
                               secret => 'whsec_' || encode(convert_to(repeat('k', 32), 'UTF8'), 'base64'));
SELECT pg_sync.create_endpoint('other', 'http://example.com:8080/other?x=1');
SELECT pg_sync.create_endpoint('dl', 'https://example.com/hooks/dl');
SELECT pg_sync.track('hi.orders', 'good');
SELECT pg_sync.track('hi.parted', 'other', events => '{insert}');
INSERT INTO hi.orders VALUES (1, 'new', 10, NULL);
-- A dead letter of 'good' and one of 'dl', as the delivery worker would have left them.
INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, tbl, key, new_row, txid, captured_at,
                                   attempts, last_status, last_error, dead_at)
SELECT -e.id, e.id, 'insert', 'hi.orders', '{"id": 0}', '{"id": 0}', '1', '2026-01-01 00:00:00+00',
       10, 500, 'HTTP 500', '2026-01-02 00:00:00+00'
  FROM pg_sync._endpoints e WHERE e.name IN ('good', 'dl');

-- The helper that runs one case.
CREATE TABLE hi.cases (
    id       text PRIMARY KEY,
    fn       text NOT NULL,        -- the pg_sync function the case calls
    stmt     text NOT NULL UNIQUE,
    outcome  text NOT NULL,
    sqlstate text,
    message  text
);
CREATE FUNCTION hi.bad(case_id text, stmt text, keep bool DEFAULT true) RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
    st text;
    msg text;
    det text;
    hnt text;
    outcome text;
BEGIN
    BEGIN
        BEGIN
            EXECUTE stmt;
            outcome := 'ACCEPTED';
            IF NOT keep THEN
                RAISE EXCEPTION 'undo' USING ERRCODE = 'HI001';
            END IF;
        EXCEPTION WHEN SQLSTATE 'HI001' THEN
            outcome := 'ACCEPTED (rolled back)';
        END;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                                det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
        outcome := 'refused';
    END;
    INSERT INTO hi.cases VALUES (case_id, coalesce(substring(stmt FROM 'pg_sync\.([a-z_]+)\s*\('), '?'),
                                 stmt, outcome, st, msg);
    RETURN case_id || ' ' || outcome || coalesce(' [' || st || '] ' || msg, '')
        || coalesce(' | DETAIL: ' || nullif(det, ''), '') || coalesce(' | HINT: ' || nullif(hnt, ''), '');
END
$fn$;

-- ==========================================================================================
-- B. Hostile names that are legitimate: they must work, and be captured exactly.

CREATE SCHEMA "Evil ""Schema""; --";
CREATE TABLE "Evil ""Schema""; --"."Robert'); DROP TABLE hi.victim;--" (
    id int PRIMARY KEY, "col""quote" text, "col space" text, "col;drop" text, "ünï 🚀" text,
    "SELECT" text, "NEW" text, "old" text, "$1" text, "--c" text, "a)b" text,
    "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc" text);
CREATE TABLE hi."Ünïcödé 表 🚀" ("ключ" int PRIMARY KEY, "値" text);
-- 70 characters: PostgreSQL truncates it to 63 (NOTICE), and so does the regclass input.
CREATE TABLE hi."tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt" (id int PRIMARY KEY);
CREATE TABLE hi."no pk ""hostile""" ("k""1" int, "k 2" text, v text);

SELECT pg_sync.track('"Evil ""Schema""; --"."Robert''); DROP TABLE hi.victim;--"', 'good',
       columns => ARRAY['id', 'col"quote', 'col space', 'col;drop', 'ünï 🚀', 'SELECT', 'NEW', 'old',
                        '$1', '--c', 'a)b', repeat('c', 63)],
       filter => $$NEW."col;drop" IS DISTINCT FROM 'skip' AND (NEW."NEW" IS DISTINCT FROM NEW."old" OR NEW."$1" = 'x')$$);
SELECT pg_sync.track('hi."Ünïcödé 表 🚀"', 'good', filter => $$NEW."値" <> '捨てる'$$);
SELECT pg_sync.track('hi.' || repeat('t', 70), 'good');
SELECT pg_sync.track('hi."no pk ""hostile"""', 'good', key_columns => ARRAY['k"1', 'k 2']);
-- Filters with comments and dollar quotes are fine as long as they are one expression.
SELECT pg_sync.track('hi.orders', 'other', filter => $$NEW.status <> $q$it's -- not a comment$q$ /* a comment */$$);

INSERT INTO "Evil ""Schema""; --"."Robert'); DROP TABLE hi.victim;--"
VALUES (1, 'q"', 's p', ';', 'ü', 'sel', 'n', 'o', '$', '--', ')', 'long'),
       (2, 'x', 'x', 'skip', 'x', 'x', 'x', 'x', 'x', 'x', 'x', 'filtered out');
INSERT INTO hi."Ünïcödé 表 🚀" VALUES (1, 'はい'), (2, '捨てる');
INSERT INTO hi."tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt" VALUES (1);
INSERT INTO hi."no pk ""hostile""" VALUES (1, 'a', 'v');
SELECT e.name, q.op, q.tbl, q.key::text, q.new_row::text
  FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id ORDER BY q.id;
-- A rename of a hostile column is followed.
ALTER TABLE "Evil ""Schema""; --"."Robert'); DROP TABLE hi.victim;--" RENAME COLUMN "col space" TO "col  two spaces";
SELECT "table", endpoint, events, columns, key_columns, filter
  FROM pg_sync.tracked_tables ORDER BY "table"::text COLLATE "C", endpoint COLLATE "C";

-- ==========================================================================================
-- C. Legitimate edge values (rolled back): at the limits, odd but valid.

BEGIN;
SELECT pg_sync.create_endpoint(repeat('n', 63), 'https://example.com/' || repeat('p', 2028),
       headers => (SELECT jsonb_object_agg('X-H' || i, repeat('v', 8192)) FROM generate_series(1, 64) i),
       secret => 'whsec_' || encode(convert_to(repeat('k', 24), 'UTF8'), 'base64'),
       batch_size => 10000, max_attempts => 1000, timeout_ms => 600000, max_in_flight => 256,
       retry_base_ms => 86400000, retry_max_ms => 604800000);
SELECT pg_sync.create_endpoint('edge-1.a_b', 'HtTpS://[::1]:65535/%00/%0D%0A?q=%22&r=<>');
SELECT pg_sync.create_endpoint('edge-2', 'http://xn--bcher-kva.example:1/',
       headers => '{"User-Agent": "custom", "X-Tab": "a\tb", "!#$%&''*+-.^_`|~": "token chars"}',
       retry_base_ms => 1, retry_max_ms => 1);
SELECT name, length(url) AS url_length, cardinality(header_names) AS headers, batch_size,
       max_in_flight, retry_base_ms, retry_max_ms
  FROM pg_sync.endpoints WHERE name NOT IN ('good', 'other', 'dl') ORDER BY name COLLATE "C";
-- emit: any JSON value is a payload, however big or deep (PostgreSQL limits jsonb itself).
SELECT pg_sync.emit('good', repeat('é', 200), 'null') IS NOT NULL AS emitted_json_null;
SELECT pg_sync.emit('good', 'deep', (repeat('[', 5000) || repeat(']', 5000))::jsonb) IS NOT NULL AS emitted_deep;
SELECT pg_sync.emit('good', 'big', jsonb_build_object('big', repeat('x', 20000000)), key => repeat('k', 100000)) IS NOT NULL AS emitted_20mb;
SELECT pg_sync.emit('good', 'quotes', '{"a\"b": "\u00e9\ud83d\ude80\n"}', key => E'k\'"\\') IS NOT NULL AS emitted_escapes;
SELECT left(emit_type, 10) AS type, length(emit_type) AS type_length,
       length(new_row::text) AS payload_length, length(key::text) AS key_length
  FROM pg_sync._queue WHERE op = 'emit' ORDER BY id;
ROLLBACK;

-- ==========================================================================================
-- D. Snapshot of the whole state: configuration, queue, dead letters, delivery state, triggers
-- and event triggers, pg_sync's relations and functions with their privileges, this test's
-- relations, and the victim. Its checksum is compared at the end. (Not the sequences: they are
-- not transactional, and an id skipped by a refused or rolled-back call is harmless.)

CREATE VIEW hi.state AS
SELECT 'endpoint' AS kind, to_jsonb(e) AS item FROM pg_sync._endpoints e
UNION ALL
SELECT 'tracked', to_jsonb(t) || jsonb_build_object('tbl', t.tbl::text) FROM pg_sync._tracked t
UNION ALL
SELECT 'queue', to_jsonb(q) FROM pg_sync._queue q
UNION ALL
SELECT 'dead letter', to_jsonb(d) FROM pg_sync._dead_letters d
UNION ALL
SELECT 'endpoint state', to_jsonb(s) FROM pg_sync._endpoint_state s
UNION ALL
SELECT 'trigger', jsonb_build_object('table', tg.tgrelid::regclass::text, 'name', tg.tgname,
                                     'type', tg.tgtype, 'enabled', tg.tgenabled,
                                     'function', tg.tgfoid::regprocedure::text)
  FROM pg_trigger tg WHERE NOT tg.tgisinternal
UNION ALL
SELECT 'event trigger', jsonb_build_object('name', evtname, 'event', evtevent, 'enabled', evtenabled)
  FROM pg_event_trigger
UNION ALL
SELECT 'relation', jsonb_build_object('name', c.oid::regclass::text, 'kind', c.relkind,
                                      'owner', c.relowner::regrole::text, 'acl', c.relacl::text,
                                      'columns', (SELECT count(*) FROM pg_attribute a
                                                   WHERE a.attrelid = c.oid AND a.attnum > 0))
  FROM pg_class c
 WHERE c.relnamespace IN ('pg_sync'::regnamespace, 'hi'::regnamespace, '"Evil ""Schema""; --"'::regnamespace)
UNION ALL
SELECT 'function', jsonb_build_object('name', p.oid::regprocedure::text, 'acl', p.proacl::text,
                                      'secdef', p.prosecdef, 'config', p.proconfig, 'src', md5(p.prosrc))
  FROM pg_proc p WHERE p.pronamespace IN ('pg_sync'::regnamespace, 'hi'::regnamespace)
UNION ALL
SELECT 'victim', to_jsonb(v) FROM hi.victim v;

CREATE TABLE hi.before (kind text, item jsonb);
CREATE VIEW hi.diff AS
SELECT 'missing' AS diff, * FROM (SELECT * FROM hi.before EXCEPT ALL SELECT * FROM hi.state) gone
UNION ALL
SELECT 'added', * FROM (SELECT * FROM hi.state EXCEPT ALL SELECT * FROM hi.before) added;
INSERT INTO hi.before SELECT * FROM hi.state;
SELECT md5(string_agg(kind || ' ' || item::text, E'\n' ORDER BY kind COLLATE "C", item::text COLLATE "C"))
       AS hi_checksum_before FROM hi.state \gset
SELECT kind, count(*) FROM hi.before WHERE kind IN ('endpoint', 'tracked', 'queue', 'dead letter', 'victim')
 GROUP BY kind ORDER BY kind COLLATE "C";

-- From here on, one line per case.
\pset tuples_only on
\pset format unaligned

-- ==========================================================================================
-- 1. create_endpoint: malformed and hostile URLs

-- Schemes other than http and https, and no scheme at all.
SELECT hi.bad('1.01', $$SELECT pg_sync.create_endpoint('u', 'file:///etc/passwd')$$);
SELECT hi.bad('1.02', $$SELECT pg_sync.create_endpoint('u', 'file://localhost/etc/passwd')$$);
SELECT hi.bad('1.03', $$SELECT pg_sync.create_endpoint('u', 'gopher://example.com:70/_GET%20/')$$);
SELECT hi.bad('1.04', $$SELECT pg_sync.create_endpoint('u', 'ftp://example.com/upload')$$);
SELECT hi.bad('1.05', $$SELECT pg_sync.create_endpoint('u', 'dict://example.com:11211/stat')$$);
SELECT hi.bad('1.06', $$SELECT pg_sync.create_endpoint('u', 'ldap://example.com/')$$);
SELECT hi.bad('1.07', $$SELECT pg_sync.create_endpoint('u', 'wss://example.com/socket')$$);
SELECT hi.bad('1.08', $$SELECT pg_sync.create_endpoint('u', 'javascript:alert(1)')$$);
SELECT hi.bad('1.09', $$SELECT pg_sync.create_endpoint('u', 'javascript://example.com/%0Aalert(1)')$$);
SELECT hi.bad('1.10', $$SELECT pg_sync.create_endpoint('u', 'data:text/plain;base64,SGk=')$$);
SELECT hi.bad('1.11', $$SELECT pg_sync.create_endpoint('u', 'http+unix://%2Fvar%2Frun%2Fdocker.sock/')$$);
SELECT hi.bad('1.12', $$SELECT pg_sync.create_endpoint('u', '//example.com/hook')$$);
SELECT hi.bad('1.13', $$SELECT pg_sync.create_endpoint('u', 'https:/example.com/hook')$$);
SELECT hi.bad('1.14', $$SELECT pg_sync.create_endpoint('u', 'http:\\example.com\hook')$$);
SELECT hi.bad('1.15', $$SELECT pg_sync.create_endpoint('u', 'http ://example.com/')$$);
-- Credentials, also disguised.
SELECT hi.bad('1.16', $$SELECT pg_sync.create_endpoint('u', 'http://user@example.com/')$$);
SELECT hi.bad('1.17', $$SELECT pg_sync.create_endpoint('u', 'http://user:pw@example.com/')$$);
SELECT hi.bad('1.18', $$SELECT pg_sync.create_endpoint('u', 'https://:pw@example.com/')$$);
SELECT hi.bad('1.19', $$SELECT pg_sync.create_endpoint('u', 'http://@example.com/')$$);
SELECT hi.bad('1.20', $$SELECT pg_sync.create_endpoint('u', 'https://example.com:443@evil.example/')$$);
SELECT hi.bad('1.21', $$SELECT pg_sync.create_endpoint('u', 'http://example.com\@evil.example/')$$);
SELECT hi.bad('1.22', $$SELECT pg_sync.create_endpoint('u', 'http://example.com%2F@evil.example/')$$);
-- NUL (impossible in text: PostgreSQL refuses chr(0) itself), %00, spaces, control characters.
SELECT hi.bad('1.23', $$SELECT pg_sync.create_endpoint('u', 'https://example.com/' || chr(0))$$);
SELECT hi.bad('1.24', $$SELECT pg_sync.create_endpoint('u', 'http://example.com%00.evil.example/')$$);
SELECT hi.bad('1.25', $$SELECT pg_sync.create_endpoint('u', 'http://exa%20mple.com/')$$);
SELECT hi.bad('1.26', $$SELECT pg_sync.create_endpoint('u', ' https://example.com/')$$);
SELECT hi.bad('1.27', $$SELECT pg_sync.create_endpoint('u', 'https://example.com/ ')$$);
SELECT hi.bad('1.28', $$SELECT pg_sync.create_endpoint('u', 'https://example.com/a b')$$);
SELECT hi.bad('1.29', $$SELECT pg_sync.create_endpoint('u', E'https://example.com/\n')$$);
SELECT hi.bad('1.30', $$SELECT pg_sync.create_endpoint('u', E'https://example.com/\rHost: evil.example')$$);
SELECT hi.bad('1.31', $$SELECT pg_sync.create_endpoint('u', E'https://example.com/\t')$$);
SELECT hi.bad('1.32', $$SELECT pg_sync.create_endpoint('u', E'https://example.com/\x0b')$$);
SELECT hi.bad('1.33', $$SELECT pg_sync.create_endpoint('u', E'https://example.com/\x7f')$$);
-- Over-long.
SELECT hi.bad('1.34', $$SELECT pg_sync.create_endpoint('u', 'https://example.com/' || repeat('p', 2029))$$);
SELECT hi.bad('1.35', $$SELECT pg_sync.create_endpoint('u', 'https://example.com/' || repeat('p', 1000000))$$);
-- IPv6 garbage.
SELECT hi.bad('1.36', $$SELECT pg_sync.create_endpoint('u', 'http://[::1/')$$);
SELECT hi.bad('1.37', $$SELECT pg_sync.create_endpoint('u', 'http://[::1]]/')$$);
SELECT hi.bad('1.38', $$SELECT pg_sync.create_endpoint('u', 'http://[zzzz::1]/')$$);
SELECT hi.bad('1.39', $$SELECT pg_sync.create_endpoint('u', 'http://[1:2:3:4:5:6:7:8:9]/')$$);
SELECT hi.bad('1.40', $$SELECT pg_sync.create_endpoint('u', 'http://::1/')$$);
SELECT hi.bad('1.41', $$SELECT pg_sync.create_endpoint('u', 'http://[]/')$$);
-- No host.
SELECT hi.bad('1.42', $$SELECT pg_sync.create_endpoint('u', 'http://')$$);
SELECT hi.bad('1.43', $$SELECT pg_sync.create_endpoint('u', 'http:///hook')$$);
SELECT hi.bad('1.44', $$SELECT pg_sync.create_endpoint('u', 'https://?q=1')$$);
SELECT hi.bad('1.45', $$SELECT pg_sync.create_endpoint('u', 'https://#frag')$$);
SELECT hi.bad('1.46', $$SELECT pg_sync.create_endpoint('u', 'http://:8080/')$$);
-- Ports.
SELECT hi.bad('1.47', $$SELECT pg_sync.create_endpoint('u', 'http://example.com:0/')$$);
SELECT hi.bad('1.48', $$SELECT pg_sync.create_endpoint('u', 'http://example.com:00/')$$);
SELECT hi.bad('1.49', $$SELECT pg_sync.create_endpoint('u', 'http://example.com:65536/')$$);
SELECT hi.bad('1.50', $$SELECT pg_sync.create_endpoint('u', 'http://example.com:99999999999999999999/')$$);
SELECT hi.bad('1.51', $$SELECT pg_sync.create_endpoint('u', 'http://example.com:-1/')$$);
SELECT hi.bad('1.52', $$SELECT pg_sync.create_endpoint('u', 'http://example.com:http/')$$);
SELECT hi.bad('1.53', $$SELECT pg_sync.create_endpoint('u', 'http://example.com:80:80/')$$);
-- Unicode hosts and invisible characters (punycode is the way: see C).
SELECT hi.bad('1.54', $$SELECT pg_sync.create_endpoint('u', 'http://例え.テスト/')$$);
SELECT hi.bad('1.55', $$SELECT pg_sync.create_endpoint('u', 'https://exаmple.com/')$$); -- Cyrillic а
SELECT hi.bad('1.56', $$SELECT pg_sync.create_endpoint('u', 'https://ｅｘａｍｐｌｅ.com/')$$);
SELECT hi.bad('1.57', $$SELECT pg_sync.create_endpoint('u', E'https://exa\u200bmple.com/')$$);
SELECT hi.bad('1.58', $$SELECT pg_sync.create_endpoint('u', E'https://example.com/\u202egnp.exe')$$);
-- A fragment, even an empty one.
SELECT hi.bad('1.59', $$SELECT pg_sync.create_endpoint('u', 'https://example.com/#')$$);

-- ==========================================================================================
-- 2. create_endpoint: headers

-- Not an object of strings.
SELECT hi.bad('2.01', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '[{"X-A": "b"}]')$$);
SELECT hi.bad('2.02', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => 'true')$$);
SELECT hi.bad('2.03', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '"{}"')$$);
SELECT hi.bad('2.04', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": ["a", "b"]}')$$);
SELECT hi.bad('2.05', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": true}')$$);
SELECT hi.bad('2.06', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": 1.5}')$$);
SELECT hi.bad('2.07', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{X-A: "b"}')$$);
-- CR / LF / NUL-ish / control / non-ASCII in names and values.
SELECT hi.bad('2.08', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": "v\rX-B: 1"}')$$);
SELECT hi.bad('2.09', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": "v\r\n\r\nGET / HTTP/1.1"}')$$);
SELECT hi.bad('2.10', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": "\u0000"}')$$);
SELECT hi.bad('2.11', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": "a\u0001b"}')$$);
SELECT hi.bad('2.12', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": "a\u007fb"}')$$);
SELECT hi.bad('2.13', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": "a\u0085b"}')$$);
SELECT hi.bad('2.14', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": "a\u2028b"}')$$);
SELECT hi.bad('2.15', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A": "🚀"}')$$);
SELECT hi.bad('2.16', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Ümlaut": "x"}')$$);
SELECT hi.bad('2.17', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A\nX-B": "x"}')$$);
SELECT hi.bad('2.18', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A\t": "x"}')$$);
SELECT hi.bad('2.19', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X A": "x"}')$$);
SELECT hi.bad('2.20', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{":authority": "evil.example"}')$$);
-- "Name;" is libcurl's syntax for an empty header, "Name:" removes one.
SELECT hi.bad('2.21', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"X-A;": ""}')$$);
SELECT hi.bad('2.22', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Accept:": ""}')$$);
-- Headers pg_sync sets itself, in any case, and hop-by-hop / proxy headers.
SELECT hi.bad('2.23', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"webhook-id": "msg_1"}')$$);
SELECT hi.bad('2.24', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"wEbHoOk-SiGnAtUrE": "v1,forged"}')$$);
SELECT hi.bad('2.25', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Webhook-Timestamp": "0"}')$$);
SELECT hi.bad('2.26', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"webhook-anything": "x"}')$$);
SELECT hi.bad('2.27', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Content-Length": "0"}')$$);
SELECT hi.bad('2.28', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"hOsT": "evil.example"}')$$);
SELECT hi.bad('2.29', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"transfer-encoding": "chunked"}')$$);
SELECT hi.bad('2.30', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"CONTENT-TYPE": "text/plain"}')$$);
SELECT hi.bad('2.31', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Connection": "close"}')$$);
SELECT hi.bad('2.32', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Keep-Alive": "timeout=5"}')$$);
SELECT hi.bad('2.33', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Upgrade": "h2c"}')$$);
SELECT hi.bad('2.34', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"TE": "trailers"}')$$);
SELECT hi.bad('2.35', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Trailer": "X-A"}')$$);
SELECT hi.bad('2.36', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Expect": "100-continue"}')$$);
SELECT hi.bad('2.37', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Proxy-Authorization": "Basic eDp5"}')$$);
SELECT hi.bad('2.38', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Proxy-Connection": "keep-alive"}')$$);
-- Look-alikes of reserved names are not tokens.
SELECT hi.bad('2.39', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Connectıon": "close"}')$$); -- dotless ı
SELECT hi.bad('2.40', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Host ": "evil.example"}')$$);
-- Sizes.
-- A 257-character name made of valid token characters: refused as too long (the limit is 256),
-- not as a bad token.
SELECT hi.bad('2.41', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => jsonb_build_object(repeat('X', 257), 'v'))$$);
SELECT hi.bad('2.42', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => jsonb_build_object('X-A', repeat('v', 100000)))$$);
SELECT hi.bad('2.43', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => (SELECT jsonb_object_agg('X-' || i, 'v') FROM generate_series(1, 1000) i))$$);
SELECT hi.bad('2.44', $$SELECT pg_sync.create_endpoint('h', 'https://example.com/', headers => '{"Authorization": "a", "AUTHORIZATION": "b"}')$$);

-- ==========================================================================================
-- 3. create_endpoint: secrets

SELECT hi.bad('3.01', $$SELECT pg_sync.create_endpoint('s', 'https://example.com/', secret => 'Whsec_' || encode(convert_to(repeat('k', 32), 'UTF8'), 'base64'))$$);
SELECT hi.bad('3.02', $$SELECT pg_sync.create_endpoint('s', 'https://example.com/', secret => ' whsec_' || encode(convert_to(repeat('k', 32), 'UTF8'), 'base64'))$$);
SELECT hi.bad('3.03', $$SELECT pg_sync.create_endpoint('s', 'https://example.com/', secret => 'whsec_' || encode(convert_to(repeat('k', 32), 'UTF8'), 'base64') || ' ')$$);
SELECT hi.bad('3.04', $$SELECT pg_sync.create_endpoint('s', 'https://example.com/', secret => 'whsec_' || encode(convert_to(repeat('k', 32), 'UTF8'), 'base64') || E'\r\nX-Injected: 1')$$);
SELECT hi.bad('3.05', $$SELECT pg_sync.create_endpoint('s', 'https://example.com/', secret => 'whsec_' || translate(encode(convert_to(repeat('k?', 16), 'UTF8'), 'base64'), '+/', '-_'))$$);
SELECT hi.bad('3.06', $$SELECT pg_sync.create_endpoint('s', 'https://example.com/', secret => 'whsec_ä' || encode(convert_to(repeat('k', 32), 'UTF8'), 'base64'))$$);
SELECT hi.bad('3.07', $$SELECT pg_sync.create_endpoint('s', 'https://example.com/', secret => 'whsec_====')$$);
SELECT hi.bad('3.08', $$SELECT pg_sync.create_endpoint('s', 'https://example.com/', secret => 'whsec_' || repeat('A', 100000))$$);
SELECT hi.bad('3.09', $$SELECT pg_sync.create_endpoint('s', 'https://example.com/', secret => 'whsec_'' OR ''1''=''1')$$);

-- ==========================================================================================
-- 4. create_endpoint: names, with SQL injection

SELECT hi.bad('4.01', $$SELECT pg_sync.create_endpoint('x''); DROP TABLE hi.victim; --', 'https://example.com/')$$);
SELECT hi.bad('4.02', $$SELECT pg_sync.create_endpoint('x"; DROP TABLE hi.victim; --', 'https://example.com/')$$);
SELECT hi.bad('4.03', $q$SELECT pg_sync.create_endpoint('$$; DROP TABLE hi.victim; $$', 'https://example.com/')$q$);
SELECT hi.bad('4.04', $$SELECT pg_sync.create_endpoint('a/*', 'https://example.com/')$$);
SELECT hi.bad('4.05', $$SELECT pg_sync.create_endpoint('good; DROP TABLE hi.victim', 'https://example.com/')$$);
SELECT hi.bad('4.06', $$SELECT pg_sync.create_endpoint('-lead', 'https://example.com/')$$);
SELECT hi.bad('4.07', $$SELECT pg_sync.create_endpoint('.lead', 'https://example.com/')$$);
SELECT hi.bad('4.08', $$SELECT pg_sync.create_endpoint('_lead', 'https://example.com/')$$);
SELECT hi.bad('4.09', $$SELECT pg_sync.create_endpoint('../../etc/passwd', 'https://example.com/')$$);
SELECT hi.bad('4.10', $$SELECT pg_sync.create_endpoint('a%', 'https://example.com/')$$);
SELECT hi.bad('4.11', $$SELECT pg_sync.create_endpoint('gооd', 'https://example.com/')$$); -- Cyrillic о
SELECT hi.bad('4.12', $$SELECT pg_sync.create_endpoint(E'good\u200b', 'https://example.com/')$$);
SELECT hi.bad('4.13', $$SELECT pg_sync.create_endpoint('good ', 'https://example.com/')$$);
SELECT hi.bad('4.14', $$SELECT pg_sync.create_endpoint(E'a\tb', 'https://example.com/')$$);
SELECT hi.bad('4.15', $$SELECT pg_sync.create_endpoint(repeat('a', 1000000), 'https://example.com/')$$);
SELECT hi.bad('4.16', $$SELECT pg_sync.create_endpoint(E'a\\b', 'https://example.com/')$$);

-- ==========================================================================================
-- 5. create_endpoint: absurd numbers

SELECT hi.bad('5.01', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', batch_size => -2147483648)$$);
SELECT hi.bad('5.02', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', batch_size => 2147483647)$$);
SELECT hi.bad('5.03', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', batch_size => 2147483648)$$);
SELECT hi.bad('5.04', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', batch_size => 1.5)$$);
SELECT hi.bad('5.05', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', batch_size => '1e3')$$);
SELECT hi.bad('5.06', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', batch_size => 'NaN')$$);
SELECT hi.bad('5.07', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', max_attempts => -1)$$);
SELECT hi.bad('5.08', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', max_attempts => 2147483647)$$);
SELECT hi.bad('5.09', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', timeout_ms => 99)$$);
SELECT hi.bad('5.10', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', timeout_ms => -1)$$);
SELECT hi.bad('5.11', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', max_in_flight => -1)$$);
SELECT hi.bad('5.12', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', max_in_flight => 2147483647)$$);
SELECT hi.bad('5.13', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', retry_base_ms => -1)$$);
SELECT hi.bad('5.14', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', retry_base_ms => 86400001, retry_max_ms => 604800000)$$);
SELECT hi.bad('5.15', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', retry_max_ms => 0)$$);
SELECT hi.bad('5.16', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', retry_max_ms => 604800001)$$);
SELECT hi.bad('5.17', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', retry_max_ms => -2147483648)$$);
SELECT hi.bad('5.18', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', retry_base_ms => 2, retry_max_ms => 1)$$);
-- Every argument valid but one: nothing is created.
SELECT hi.bad('5.19', $$SELECT pg_sync.create_endpoint('n', 'https://example.com/', headers => '{"X-A": "b"}', batch_size => 10, max_in_flight => 0)$$);

-- ==========================================================================================
-- 6. alter_endpoint (a valid change next to a bad one changes nothing either)

SELECT hi.bad('6.01', $$SELECT pg_sync.alter_endpoint('good'' OR ''1''=''1', batch_size => 1)$$);
SELECT hi.bad('6.02', $$SELECT pg_sync.alter_endpoint('%', batch_size => 1)$$);
SELECT hi.bad('6.03', $$SELECT pg_sync.alter_endpoint('good', url => 'file:///etc/shadow')$$);
SELECT hi.bad('6.04', $$SELECT pg_sync.alter_endpoint('good', url => 'https://evil.example/', headers => '{"Host": "example.com"}')$$);
SELECT hi.bad('6.05', $$SELECT pg_sync.alter_endpoint('good', url => 'https://user:pw@evil.example/')$$);
SELECT hi.bad('6.06', $$SELECT pg_sync.alter_endpoint('good', url => ' ')$$);
SELECT hi.bad('6.07', $$SELECT pg_sync.alter_endpoint('good', headers => 'null')$$);
SELECT hi.bad('6.08', $$SELECT pg_sync.alter_endpoint('good', headers => '{"Authorization": "Bearer x\r\nX-Admin: 1"}')$$);
SELECT hi.bad('6.09', $$SELECT pg_sync.alter_endpoint('good', headers => '{"webhook-signature": "v1,forged"}')$$);
SELECT hi.bad('6.10', $$SELECT pg_sync.alter_endpoint('good', secret => ' ')$$);
SELECT hi.bad('6.11', $$SELECT pg_sync.alter_endpoint('good', secret => 'whsec_')$$);
SELECT hi.bad('6.12', $$SELECT pg_sync.alter_endpoint('good', batch_size => -2147483648)$$);
SELECT hi.bad('6.13', $$SELECT pg_sync.alter_endpoint('good', max_attempts => 1001)$$);
SELECT hi.bad('6.14', $$SELECT pg_sync.alter_endpoint('good', timeout_ms => 600001)$$);
SELECT hi.bad('6.15', $$SELECT pg_sync.alter_endpoint('good', max_in_flight => 0)$$);
SELECT hi.bad('6.16', $$SELECT pg_sync.alter_endpoint('good', retry_base_ms => 86400001)$$);
SELECT hi.bad('6.17', $$SELECT pg_sync.alter_endpoint('good', retry_max_ms => 999)$$);
SELECT hi.bad('6.18', $$SELECT pg_sync.alter_endpoint('good', url => 'https://evil.example/', secret => 'whsec_x', batch_size => 1)$$);

-- ==========================================================================================
-- 7. drop_endpoint, pause_endpoint, resume_endpoint

SELECT hi.bad('7.01', $$SELECT pg_sync.drop_endpoint('good; DROP TABLE hi.victim')$$);
SELECT hi.bad('7.02', $$SELECT pg_sync.drop_endpoint('')$$);
SELECT hi.bad('7.03', $$SELECT pg_sync.drop_endpoint('good')$$);
SELECT hi.bad('7.04', $$SELECT pg_sync.drop_endpoint('dl')$$);
SELECT hi.bad('7.05', $$SELECT pg_sync.drop_endpoint('*', force => true)$$);
SELECT hi.bad('7.06', $$SELECT pg_sync.pause_endpoint(E'good\n')$$);
SELECT hi.bad('7.07', $$SELECT pg_sync.pause_endpoint('good'' OR true --')$$);
SELECT hi.bad('7.08', $$SELECT pg_sync.resume_endpoint(' good')$$);
SELECT hi.bad('7.09', $$SELECT pg_sync.resume_endpoint('goo_')$$);

-- ==========================================================================================
-- 8. track: the table argument

SELECT hi.bad('8.01', $$SELECT pg_sync.track('hi.orders; DROP TABLE hi.victim', 'other')$$);
SELECT hi.bad('8.02', $$SELECT pg_sync.track('hi.orders) --', 'other')$$);
SELECT hi.bad('8.03', $$SELECT pg_sync.track('"hi.orders', 'other')$$);
SELECT hi.bad('8.04', $$SELECT pg_sync.track('hi.composite', 'other')$$);
SELECT hi.bad('8.05', $$SELECT pg_sync.track('hi.foreign_orders', 'other')$$);
SELECT hi.bad('8.06', $$SELECT pg_sync.track('hi.orders_view', 'other')$$);
SELECT hi.bad('8.07', $$SELECT pg_sync.track('pg_authid', 'other')$$);
SELECT hi.bad('8.08', $$SELECT pg_sync.track('pg_toast.pg_toast_1262', 'other')$$);
SELECT hi.bad('8.09', $$SELECT pg_sync.track('pg_sync._dead_letters', 'other')$$);
SELECT hi.bad('8.10', $$SELECT pg_sync.track('hi.parted_eu', 'other')$$);
SELECT hi.bad('8.11', $$SELECT pg_sync.track('hi.orders', 'good; DROP TABLE hi.victim')$$);
-- The table already has a trigger named pg_sync_capture that is not pg_sync's (its owner's
-- hi.decoy_fn): track() refuses it, rather than keeping it as if it captured (same events) or
-- dropping the owner's trigger (other events).
SELECT hi.bad('8.12', $$SELECT pg_sync.track('hi.decoy', 'other')$$);
SELECT hi.bad('8.13', $$SELECT pg_sync.track('hi.decoy', 'other', events => '{insert}')$$);

-- ==========================================================================================
-- 9. track: columns and key_columns that do not exist, or are not what they seem

SELECT hi.bad('9.01', $$SELECT pg_sync.track('hi.orders', 'other', columns => '{"id\""}')$$);
SELECT hi.bad('9.02', $$SELECT pg_sync.track('hi.orders', 'other', columns => '{" id"}')$$);
SELECT hi.bad('9.03', $$SELECT pg_sync.track('hi.orders', 'other', columns => '{""}')$$);
SELECT hi.bad('9.04', $$SELECT pg_sync.track('hi.orders', 'other', columns => '{xmin}')$$);
SELECT hi.bad('9.05', $$SELECT pg_sync.track('hi.orders', 'other', columns => '{tableoid}')$$);
SELECT hi.bad('9.06', $$SELECT pg_sync.track('hi.dropped_col', 'other', columns => '{"........pg.dropped.2........"}')$$);
SELECT hi.bad('9.07', $$SELECT pg_sync.track('hi.orders', 'other', columns => '{"*"}')$$);
SELECT hi.bad('9.08', $$SELECT pg_sync.track('hi.orders', 'other', columns => '{"orders.id"}')$$);
SELECT hi.bad('9.09', $$SELECT pg_sync.track('hi.orders', 'other', columns => ARRAY['id', 'status) FROM pg_authid --'])$$);
SELECT hi.bad('9.10', $$SELECT pg_sync.track('hi.orders', 'other', columns => ARRAY['id', 'status"; DROP TABLE hi.victim; --'])$$);
-- The 63-character column exists; its 64-character spelling does not (no truncation here).
SELECT hi.bad('9.11', $$SELECT pg_sync.track('"Evil ""Schema""; --"."Robert''); DROP TABLE hi.victim;--"', 'other', columns => ARRAY[repeat('c', 64)])$$);
SELECT hi.bad('9.12', $$SELECT pg_sync.track('"Evil ""Schema""; --"."Robert''); DROP TABLE hi.victim;--"', 'other', columns => ARRAY['COL"QUOTE'])$$);
SELECT hi.bad('9.13', $$SELECT pg_sync.track('hi.orders', 'other', key_columns => '{"id; DROP TABLE hi.victim"}')$$);
SELECT hi.bad('9.14', $$SELECT pg_sync.track('hi.nopk', 'other', key_columns => '{ctid}')$$);
SELECT hi.bad('9.15', $$SELECT pg_sync.track('hi."no pk ""hostile"""', 'other', key_columns => ARRAY['"k""1"'])$$);
SELECT hi.bad('9.16', $$SELECT pg_sync.track('hi."no pk ""hostile"""', 'other', key_columns => '{"k 2 "}')$$);
SELECT hi.bad('9.17', $$SELECT pg_sync.track('hi.nopk', 'other', columns => '{a}')$$);
-- Two-dimensional arrays are refused, not flattened into a column list.
SELECT hi.bad('9.18', $$SELECT pg_sync.track('hi.orders', 'other', columns => '{{id},{status}}')$$);
SELECT hi.bad('9.19', $$SELECT pg_sync.track('hi.nopk', 'other', key_columns => '{{a},{b}}')$$);

-- ==========================================================================================
-- 10. track: events

SELECT hi.bad('10.01', $$SELECT pg_sync.track('hi.orders', 'other', events => '{"insert; DROP TABLE hi.victim"}')$$);
SELECT hi.bad('10.02', $$SELECT pg_sync.track('hi.orders', 'other', events => '{*}')$$);
SELECT hi.bad('10.03', $$SELECT pg_sync.track('hi.orders', 'other', events => '{select}')$$);
SELECT hi.bad('10.04', $$SELECT pg_sync.track('hi.orders', 'other', events => '{"insert,update"}')$$);
SELECT hi.bad('10.05', $$SELECT pg_sync.track('hi.orders', 'other', events => '{"insert "}')$$);
-- A two-dimensional array: the message names the argument.
SELECT hi.bad('10.06', $$SELECT pg_sync.track('hi.orders', 'other', events => '{{insert},{update}}')$$);

-- ==========================================================================================
-- 11. track: filters that try to escape their expression, run SQL or have side effects.
-- (The valid tracking of hi.orders for 'other' has a filter and three events: a refused
-- call must leave it as it is.)

SELECT hi.bad('11.01', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'true) OR (SELECT count(*) FROM pg_authid) > 0 OR (true')$$);
SELECT hi.bad('11.02', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.id > 0 ); SELECT ( true')$$);
SELECT hi.bad('11.03', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.id > 0); DROP TABLE hi.victim; --')$$);
SELECT hi.bad('11.04', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'true), (false')$$);
SELECT hi.bad('11.05', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'true)) UNION ((SELECT true')$$);
SELECT hi.bad('11.06', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'true) FROM hi.victim --')$$);
SELECT hi.bad('11.07', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.id > 0 -- the rest is gone')$$);
SELECT hi.bad('11.08', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.id > 0 /* unclosed')$$);
SELECT hi.bad('11.09', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.status = $x$unterminated')$$);
SELECT hi.bad('11.10', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.status = $x$a$x$) FROM pg_authid; --$x$')$$);
SELECT hi.bad('11.11', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.id > 0 \; DROP TABLE hi.victim')$$);
SELECT hi.bad('11.12', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'true ORDER BY 1')$$);
SELECT hi.bad('11.13', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'true AS x')$$);
SELECT hi.bad('11.14', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.id > 0 FOR UPDATE')$$);
-- Subqueries, in every disguise.
SELECT hi.bad('11.15', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.id IN (SELECT id FROM hi.victim)')$$);
SELECT hi.bad('11.16', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.id = ANY (ARRAY(SELECT 1))')$$);
SELECT hi.bad('11.17', $$SELECT pg_sync.track('hi.orders', 'other', filter => '(WITH x AS (SELECT 1) SELECT true)')$$);
SELECT hi.bad('11.18', $$SELECT pg_sync.track('hi.orders', 'other', filter => $f$'x' = ALL (SELECT secret FROM pg_sync._endpoints)$f$)$$);
-- Set-returning, aggregate and volatile functions.
SELECT hi.bad('11.19', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'unnest(ARRAY[true])')$$);
SELECT hi.bad('11.20', $$SELECT pg_sync.track('hi.orders', 'other', filter => $f$jsonb_array_elements('[true]')::text::bool$f$)$$);
SELECT hi.bad('11.21', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'bool_and(NEW.id > 0)')$$);
SELECT hi.bad('11.22', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'pg_sleep(10) IS NULL')$$);
SELECT hi.bad('11.23', $$SELECT pg_sync.track('hi.orders', 'other', filter => $f$pg_read_file('/etc/passwd') IS NOT NULL$f$)$$);
SELECT hi.bad('11.24', $$SELECT pg_sync.track('hi.orders', 'other', filter => $f$lo_import('/etc/passwd') > 0$f$)$$);
SELECT hi.bad('11.25', $$SELECT pg_sync.track('hi.orders', 'other', filter => $f$set_config('search_path', 'hi', false) IS NOT NULL$f$)$$);
SELECT hi.bad('11.26', $$SELECT pg_sync.track('hi.orders', 'other', filter => $f$pg_notify('leak', NEW.status) IS NOT NULL$f$)$$);
SELECT hi.bad('11.27', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'pg_advisory_xact_lock(1) IS NOT NULL')$$);
SELECT hi.bad('11.28', $$SELECT pg_sync.track('hi.orders', 'other', filter => $f$nextval('pg_sync._queue_id_seq') > 0$f$)$$);
SELECT hi.bad('11.29', $$SELECT pg_sync.track('hi.orders', 'other', filter => $f$query_to_xml('DELETE FROM hi.victim RETURNING 1', true, true, '') IS NOT NULL$f$)$$);
SELECT hi.bad('11.30', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'hi.vol(NEW.id)')$$);
-- Names resolve in pg_catalog only: an unqualified function of the caller's schema is not found.
SELECT hi.bad('11.31', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'stab(NEW.id)')$$);
SELECT hi.bad('11.32', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW.id IN (1, 2) AND victim.id = 1')$$);
-- Not boolean, parameters, absurd nesting.
SELECT hi.bad('11.33', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NULL')$$);
SELECT hi.bad('11.34', $$SELECT pg_sync.track('hi.orders', 'other', filter => 'NEW')$$);
SELECT hi.bad('11.35', $$SELECT pg_sync.track('hi.orders', 'other', filter => '$2 = $2')$$);
SELECT hi.bad('11.36', $$SELECT pg_sync.track('hi.orders', 'other', filter => repeat('(', 100000) || 'true' || repeat(')', 100000))$$);
-- A valid change together with a bad filter: the existing tracking stays as it is.
SELECT hi.bad('11.37', $$SELECT pg_sync.track('hi.orders', 'other', events => '{insert}', columns => '{id}', filter => 'NEW.nope')$$);
-- Only whitespace, of any kind, is an empty filter.
SELECT hi.bad('11.40', $$SELECT pg_sync.track('hi.orders', 'other', filter => E'\t\n ')$$);
-- DEFECT: (low) table_to_xml / database_to_xml are STABLE built-ins that run a query over a
-- whole table / every table as the writer: they pass every filter check, so "no subqueries" and
-- "filters look only at the row" do not hold. (A qualified STABLE function of one's own can do
-- the same, as README allows; neither goes beyond what the TRIGGER privilege grants.)
SELECT hi.bad('11.38', $$SELECT pg_sync.track('hi.orders', 'other', filter => $f$table_to_xml('hi.victim', true, true, '') IS NOT NULL$f$)$$, keep => false);
SELECT hi.bad('11.39', $$SELECT pg_sync.track('hi.orders', 'other', filter => $f$database_to_xml(true, true, '')::text LIKE '%secret%'$f$)$$, keep => false);

-- ==========================================================================================
-- 12. untrack

SELECT hi.bad('12.01', $$SELECT pg_sync.untrack('hi.orders; DROP TABLE hi.victim')$$);
SELECT hi.bad('12.02', $$SELECT pg_sync.untrack('hi.orders', '')$$);
SELECT hi.bad('12.03', $$SELECT pg_sync.untrack('hi.orders', 'good'' OR ''1''=''1')$$);
SELECT hi.bad('12.04', $$SELECT pg_sync.untrack('pg_sync._queue')$$);
SELECT hi.bad('12.05', $$SELECT pg_sync.untrack('hi.parted_eu', 'other')$$);
SELECT hi.bad('12.06', $$SELECT pg_sync.untrack('hi.orders', 'dl')$$);

-- ==========================================================================================
-- 13. emit: endpoint, type, key, payload

SELECT hi.bad('13.01', $$SELECT pg_sync.emit('good''); DELETE FROM pg_sync._queue; --', 't', '{}')$$);
SELECT hi.bad('13.02', $$SELECT pg_sync.emit('GOOD', 't', '{}')$$);
SELECT hi.bad('13.03', $$SELECT pg_sync.emit('good', repeat('é', 201), '{}')$$);
-- Only whitespace, of any kind, is an empty type.
SELECT hi.bad('13.04', $$SELECT pg_sync.emit('good', E'\t\n', '{}')$$);
SELECT hi.bad('13.14', $$SELECT pg_sync.emit('good', E' \r\f\x0b ', '{}')$$);
-- Payloads that are not JSON, or that jsonb cannot hold.
SELECT hi.bad('13.05', $$SELECT pg_sync.emit('good', 't', '{"a": "\u0000"}')$$);
SELECT hi.bad('13.06', $$SELECT pg_sync.emit('good', 't', 'NaN')$$);
SELECT hi.bad('13.07', $$SELECT pg_sync.emit('good', 't', '{"a": Infinity}')$$);
SELECT hi.bad('13.08', $$SELECT pg_sync.emit('good', 't', '{"a": 1e1000000}')$$);
SELECT hi.bad('13.09', $$SELECT pg_sync.emit('good', 't', '{"a": 1')$$);
SELECT hi.bad('13.10', $$SELECT pg_sync.emit('good', 't', '{"a": 1}{"b": 2}')$$);
SELECT hi.bad('13.11', $$SELECT pg_sync.emit('good', 't', '{"a": "\ud800"}')$$);
SELECT hi.bad('13.12', $$SELECT pg_sync.emit('good', 't', (repeat('[', 1000000) || repeat(']', 1000000))::jsonb)$$);
SELECT hi.bad('13.13', $$SELECT pg_sync.emit('good', 't', '"\x41"')$$);

-- ==========================================================================================
-- 14. redeliver

SELECT hi.bad('14.01', $$SELECT pg_sync.redeliver('good'' OR true --')$$);
SELECT hi.bad('14.02', $$SELECT pg_sync.redeliver('', ids => '{-1}')$$);
SELECT hi.bad('14.03', $$SELECT pg_sync.redeliver('good', ids => ARRAY[NULL]::bigint[])$$);
SELECT hi.bad('14.04', $$SELECT pg_sync.redeliver(ids => '{-1,NULL}')$$);
-- A two-dimensional array: the message names the argument.
SELECT hi.bad('14.05', $$SELECT pg_sync.redeliver(ids => '{{-1},{-2}}')$$);
SELECT hi.bad('14.06', $$SELECT pg_sync.redeliver(ids => '{1,two}')$$);

-- ==========================================================================================
-- 15. purge_dead

SELECT hi.bad('15.01', $$SELECT pg_sync.purge_dead('good; TRUNCATE pg_sync._dead_letters')$$);
SELECT hi.bad('15.02', $$SELECT pg_sync.purge_dead('good', older_than => '-1 day')$$);
SELECT hi.bad('15.03', $$SELECT pg_sync.purge_dead(older_than => '1 day ago')$$);
SELECT hi.bad('15.04', $$SELECT pg_sync.purge_dead(older_than => '-1 microsecond')$$);
SELECT hi.bad('15.05', $$SELECT pg_sync.purge_dead(older_than => '1 mon -31 days')$$);
SELECT hi.bad('15.06', $$SELECT pg_sync.purge_dead(older_than => 'forever')$$);
-- Too large to subtract from now(): the message says so.
SELECT hi.bad('15.07', $$SELECT pg_sync.purge_dead(older_than => '178000000 years')$$);

\pset format aligned
\pset tuples_only off

-- ==========================================================================================
-- E. Nothing changed, and the tally.

-- Every difference between the snapshot and now (none), and the checksum.
SELECT diff, kind, item FROM hi.diff ORDER BY diff, kind COLLATE "C", item::text COLLATE "C";
SELECT md5(string_agg(kind || ' ' || item::text, E'\n' ORDER BY kind COLLATE "C", item::text COLLATE "C"))
       = :'hi_checksum_before' AS unchanged
  FROM hi.state;

-- Cases per function and outcome. Every refusal is a proper error (no internal error, a message).
SELECT coalesce(fn, 'all functions') AS function, count(*) AS cases,
       count(*) FILTER (WHERE outcome = 'refused') AS refused,
       count(*) FILTER (WHERE outcome <> 'refused') AS accepted
  FROM hi.cases GROUP BY ROLLUP (fn) ORDER BY fn IS NULL, fn COLLATE "C";
SELECT count(*) >= 100 AS at_least_100_cases,
       count(DISTINCT stmt) = count(*) AS all_distinct,
       bool_and(sqlstate IS NULL OR (sqlstate NOT LIKE 'XX%' AND sqlstate <> '58000')) AS no_internal_errors,
       bool_and(outcome <> 'refused' OR coalesce(message, '') <> '') AS every_refusal_has_a_message
  FROM hi.cases;
-- The accepted cases (each one a DEFECT above).
SELECT id, outcome FROM hi.cases WHERE outcome <> 'refused' ORDER BY string_to_array(id, '.')::int[];

-- The valid configuration still works after all that.
INSERT INTO hi.orders VALUES (2, 'paid', 20, NULL);
SELECT e.name, q.op, q.tbl, q.key::text FROM pg_sync._queue q
  JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE q.tbl = 'hi.orders' ORDER BY q.id;
SELECT count(*) AS victim_rows FROM hi.victim;

-- ==========================================================================================
-- F. Clean up (tests share one database).
RESET search_path;
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA hi, "Evil ""Schema""; --" CASCADE;
DROP SERVER hi_server;
DROP FOREIGN DATA WRAPPER hi_fdw;
RESET client_min_messages;
