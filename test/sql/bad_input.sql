-- Bad input: every configuration function must reject bad arguments with a clear error
-- (ERROR + DETAIL/HINT where useful; never a crash, an internal error or a success) and must
-- change nothing. The configuration state is snapshotted before the bad calls and compared
-- after them, so a partial write shows up as a difference at the end.
-- CONTEXT lines only show which internal helper raised the error; they are hidden so that
-- the expected output does not depend on the install script's internals.
\set SHOW_CONTEXT never
-- Tests share one database: start from a clean slate if an earlier test left the extension.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_sync CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_sync;

-- ------------------------------------------------------------------------------------------
-- Fixtures

CREATE TABLE bi_pk (id int PRIMARY KEY, status text, amount numeric);
CREATE TABLE bi_nopk (a int, b text);
CREATE VIEW bi_view AS SELECT * FROM bi_pk;
CREATE MATERIALIZED VIEW bi_matview AS SELECT * FROM bi_pk;
CREATE SEQUENCE bi_seq;
CREATE TEMP TABLE bi_temp (id int PRIMARY KEY);
CREATE TABLE bi_part (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE bi_part_eu PARTITION OF bi_part FOR VALUES IN ('eu');
CREATE TABLE bi_part2 (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE bi_part2_eu PARTITION OF bi_part2 FOR VALUES IN ('eu');
-- A quoted, mixed-case name and hostile column names.
CREATE TABLE "Bi ""Odd"" Table" (id int PRIMARY KEY, "a""b" text, "x; drop table t" text,
                                  "Mixed" int);
-- The victim of the SQL-injection attempts below.
CREATE TABLE bi_victim (id int);
INSERT INTO bi_victim VALUES (1);

-- One valid endpoint (with a header and a secret) and a second one, valid trackings.
SELECT pg_sync.create_endpoint('good', 'https://example.com/hooks/good',
                               headers => '{"Authorization": "Bearer t0ken"}',
                               secret => 'whsec_' || encode(convert_to(repeat('k', 32), 'UTF8'), 'base64'));
SELECT pg_sync.create_endpoint('other', 'http://example.com:8080/other?x=1');
SELECT pg_sync.track('bi_pk', 'good');
SELECT pg_sync.track('bi_part', 'good');
SELECT pg_sync.track('bi_part2_eu', 'other');
-- Hostile names are fine as long as they exist: this one is valid.
SELECT pg_sync.track('"Bi ""Odd"" Table"', 'good', columns => '{id,"a\"b","x; drop table t"}',
                     filter => 'NEW."x; drop table t" IS DISTINCT FROM ''skip''');
-- Something pending, so that drop_endpoint without force has something to refuse.
INSERT INTO bi_pk VALUES (1, 'new', 10);
INSERT INTO "Bi ""Odd"" Table" VALUES (1, 'q"uote', 'semi;colon', 7);
SELECT e.name, q.op, q.tbl, q.key::text, q.new_row::text
  FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id ORDER BY q.id;
SELECT "table", endpoint, events, columns, key_columns, filter
  FROM pg_sync.tracked_tables ORDER BY "table"::text COLLATE "C", endpoint COLLATE "C";

-- ------------------------------------------------------------------------------------------
-- Snapshot of the whole configuration state: endpoints, tracking, queue, the triggers and
-- relations of this test (so a successful injection would show) and everything in pg_sync
-- with its privileges. (Other tests may have left objects in this database: they are left out.)

CREATE TEMP VIEW bi_state AS
SELECT 'endpoint' AS kind, to_jsonb(e) AS item FROM pg_sync._endpoints e
UNION ALL
SELECT 'tracked', to_jsonb(t) || jsonb_build_object('tbl', t.tbl::text) FROM pg_sync._tracked t
UNION ALL
SELECT 'queue', to_jsonb(q) FROM pg_sync._queue q
UNION ALL
SELECT 'trigger', jsonb_build_object('table', tg.tgrelid::regclass::text, 'name', tg.tgname,
                                     'type', tg.tgtype, 'enabled', tg.tgenabled,
                                     'function', tg.tgfoid::regprocedure::text)
  FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
 WHERE NOT tg.tgisinternal AND c.relname ~ '^(bi_|Bi )'
UNION ALL
SELECT 'relation', jsonb_build_object('name', c.oid::regclass::text, 'kind', c.relkind,
                                      'acl', c.relacl::text)
  FROM pg_class c
 WHERE c.relnamespace = 'pg_sync'::regnamespace
    OR (c.relnamespace = 'public'::regnamespace AND c.relname ~ '^(bi_|Bi )')
UNION ALL
SELECT 'function', jsonb_build_object('name', p.oid::regprocedure::text, 'acl', p.proacl::text)
  FROM pg_proc p WHERE p.pronamespace = 'pg_sync'::regnamespace
UNION ALL
SELECT 'victim', to_jsonb(v) FROM bi_victim v;

CREATE TEMP TABLE bi_before AS SELECT * FROM bi_state;
-- (pg_sync's own functions and relations are in the snapshot but not counted here, so that
-- this output does not change whenever the install script grows.)
SELECT kind, count(*) FROM bi_before WHERE kind NOT IN ('function', 'relation')
 GROUP BY kind ORDER BY kind COLLATE "C";

-- ------------------------------------------------------------------------------------------
-- create_endpoint: NULL arguments

SELECT pg_sync.create_endpoint(NULL, 'https://example.com/a');
SELECT pg_sync.create_endpoint('n1', NULL);
SELECT pg_sync.create_endpoint('n1', 'https://example.com/a', headers => NULL);
SELECT pg_sync.create_endpoint('n1', 'https://example.com/a', batch_size => NULL);
SELECT pg_sync.create_endpoint('n1', 'https://example.com/a', max_attempts => NULL);
SELECT pg_sync.create_endpoint('n1', 'https://example.com/a', timeout_ms => NULL);
-- (max_in_flight => NULL picks its default, 4 or for Kafka 16: test/sql/kafka.sql)
SELECT pg_sync.create_endpoint('n1', 'https://example.com/a', retry_base_ms => NULL);
SELECT pg_sync.create_endpoint('n1', 'https://example.com/a', retry_max_ms => NULL);
SELECT pg_sync.create_endpoint('n1', 'https://example.com/a', max_rate => NULL);
SELECT pg_sync.create_endpoint('n1', 'https://example.com/a', max_request_bytes => NULL);
SELECT pg_sync.create_endpoint('n1', 'https://example.com/a', permanent_statuses => NULL);

-- create_endpoint: names
SELECT pg_sync.create_endpoint('good', 'https://example.com/again');
SELECT pg_sync.create_endpoint('', 'https://example.com/a');
SELECT pg_sync.create_endpoint(repeat('n', 64), 'https://example.com/a');
SELECT pg_sync.create_endpoint('my hook', 'https://example.com/a');
SELECT pg_sync.create_endpoint('it''s', 'https://example.com/a');
SELECT pg_sync.create_endpoint('say"hi"', 'https://example.com/a');
SELECT pg_sync.create_endpoint('café', 'https://example.com/a');
SELECT pg_sync.create_endpoint(E'nl\nname', 'https://example.com/a');

-- create_endpoint: URLs
SELECT pg_sync.create_endpoint('u1', '');
SELECT pg_sync.create_endpoint('u1', 'not-a-url');
SELECT pg_sync.create_endpoint('u1', 'example.com/hook');
SELECT pg_sync.create_endpoint('u1', 'file:///etc/passwd');
SELECT pg_sync.create_endpoint('u1', 'gopher://example.com/');
SELECT pg_sync.create_endpoint('u1', 'ftp://example.com/upload');
SELECT pg_sync.create_endpoint('u1', 'javascript:alert(1)');
SELECT pg_sync.create_endpoint('u1', 'http://');
-- An empty authority: libcurl would take "path-only" as the host name.
SELECT pg_sync.create_endpoint('u_nohost', 'https:///path-only');
SELECT pg_sync.create_endpoint('u1', 'http://exa mple.com/');
SELECT pg_sync.create_endpoint('u1', E'http://example.com/\r\nX-Injected: 1');
SELECT pg_sync.create_endpoint('u1', E'http://example.com/a\tb');
SELECT pg_sync.create_endpoint('u1', 'http://bücher.example/');
SELECT pg_sync.create_endpoint('u1', 'http://user@example.com/');
SELECT pg_sync.create_endpoint('u1', 'http://u:p@example.com/');
SELECT pg_sync.create_endpoint('u1', 'https://example.com/hook#frag');
SELECT pg_sync.create_endpoint('u1', 'https://example.com/' || repeat('a', 2048));

-- create_endpoint: headers
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '[]');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '["Authorization", "x"]');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '"Authorization: x"');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '42');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => 'null');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"X-Num": 1}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"X-Obj": {"a": "b"}}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"X-Null": null}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"Bad Name": "x"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"": "x"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"X-A:b": "x"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"X-A\r\nX-B": "x"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"X-A": "v\r\nX-Injected: 1"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"X-A": "v\nX-Injected: 1"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"X-A": "café"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"X-A": "a\u0000b"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => jsonb_build_object('X-A', repeat('v', 8193)));
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"Content-Type": "text/plain"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"content-length": "1"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"HOST": "evil.example"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"Webhook-Signature": "v1,x"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"WEBHOOK-ID": "1"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"Transfer-Encoding": "chunked"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a', headers => '{"X-Api-Key": "1", "x-api-key": "2"}');
SELECT pg_sync.create_endpoint('h1', 'https://example.com/a',
       headers => (SELECT jsonb_object_agg('X-H' || i, 'v') FROM generate_series(1, 65) i));

-- create_endpoint: secrets
SELECT pg_sync.create_endpoint('s1', 'https://example.com/a', secret => '');
SELECT pg_sync.create_endpoint('s1', 'https://example.com/a', secret => 'hunter2hunter2hunter2hunter2hunter2');
SELECT pg_sync.create_endpoint('s1', 'https://example.com/a', secret => 'WHSEC_' || encode(convert_to(repeat('k', 32), 'UTF8'), 'base64'));
SELECT pg_sync.create_endpoint('s1', 'https://example.com/a', secret => 'whsec_!!!not-base64!!!');
SELECT pg_sync.create_endpoint('s1', 'https://example.com/a', secret => 'whsec_' || encode(convert_to('short', 'UTF8'), 'base64'));
SELECT pg_sync.create_endpoint('s1', 'https://example.com/a', secret => 'whsec_');
SELECT pg_sync.create_endpoint('s1', 'https://example.com/a', secret => 'whsec_' || replace(encode(convert_to(repeat('k', 65), 'UTF8'), 'base64'), E'\n', ''));

-- create_endpoint: numeric limits
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', batch_size => 0);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', batch_size => -1);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', batch_size => 10001);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', max_attempts => 0);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', timeout_ms => 0);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', timeout_ms => 2147483647);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', max_in_flight => 0);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', max_in_flight => 257);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', retry_base_ms => 0);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', retry_base_ms => 5000, retry_max_ms => 1000);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', batch_size => 10000000000);
-- max_rate (0: no limit), max_request_bytes, permanent_statuses
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', max_rate => -1);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', max_rate => 0.0001);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', max_rate => 100001);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', max_rate => 'NaN');
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', max_rate => 'Infinity');
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', max_request_bytes => 1023);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', max_request_bytes => 67108865);
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', permanent_statuses => '{400,200}');
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', permanent_statuses => '{99}');
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', permanent_statuses => '{600}');
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', permanent_statuses => '{{400,404}}');
SELECT pg_sync.create_endpoint('l1', 'https://example.com/a', permanent_statuses => '{404,NULL}');
SELECT count(*) FROM pg_sync.endpoints WHERE name = 'l1';

-- ------------------------------------------------------------------------------------------
-- alter_endpoint

SELECT pg_sync.alter_endpoint('nope', batch_size => 10);
SELECT pg_sync.alter_endpoint(NULL, batch_size => 10);
SELECT pg_sync.alter_endpoint('good', url => '');
SELECT pg_sync.alter_endpoint('good', url => 'ftp://example.com/');
SELECT pg_sync.alter_endpoint('good', url => 'http://u:p@example.com/');
SELECT pg_sync.alter_endpoint('good', headers => '{"Host": "evil.example"}');
SELECT pg_sync.alter_endpoint('good', headers => '{"X-A": "v\r\nX-Injected: 1"}');
SELECT pg_sync.alter_endpoint('good', headers => '[]');
SELECT pg_sync.alter_endpoint('good', secret => 'not-a-secret');
SELECT pg_sync.alter_endpoint('good', batch_size => 0);
SELECT pg_sync.alter_endpoint('good', max_attempts => -5);
SELECT pg_sync.alter_endpoint('good', timeout_ms => 0);
SELECT pg_sync.alter_endpoint('good', max_in_flight => 257);
SELECT pg_sync.alter_endpoint('good', retry_base_ms => 5000, retry_max_ms => 1000);
-- Against the stored values (retry_base_ms 1000, retry_max_ms 3600000):
SELECT pg_sync.alter_endpoint('good', retry_max_ms => 500);
SELECT pg_sync.alter_endpoint('good', retry_base_ms => 3600001);
-- A valid change together with a bad one changes nothing either.
SELECT pg_sync.alter_endpoint('good', url => 'https://example.com/new', batch_size => 0);
SELECT pg_sync.alter_endpoint('good', max_rate => -0.5);
SELECT pg_sync.alter_endpoint('good', max_request_bytes => 0);
SELECT pg_sync.alter_endpoint('good', permanent_statuses => '{204}');
SELECT pg_sync.alter_endpoint('good', max_rate => 5, permanent_statuses => '{1000}');
SELECT max_rate, max_request_bytes, permanent_statuses FROM pg_sync.endpoints WHERE name = 'good';

-- ------------------------------------------------------------------------------------------
-- drop / pause / resume

SELECT pg_sync.drop_endpoint('nope');
SELECT pg_sync.drop_endpoint(NULL);
SELECT pg_sync.drop_endpoint('good');
SELECT pg_sync.drop_endpoint('good', force => false);
SELECT pg_sync.drop_endpoint('good', force => NULL);
SELECT pg_sync.pause_endpoint('nope');
SELECT pg_sync.pause_endpoint(NULL);
SELECT pg_sync.resume_endpoint('nope');
SELECT pg_sync.resume_endpoint(NULL);
-- Endpoint names are case-sensitive.
SELECT pg_sync.pause_endpoint('GOOD');

-- ------------------------------------------------------------------------------------------
-- track

SELECT pg_sync.track('bi_pk', 'nope');
SELECT pg_sync.track('bi_pk', NULL);
SELECT pg_sync.track(NULL, 'good');
SELECT pg_sync.track('nope', 'good');
SELECT pg_sync.track('bi_view', 'good');
SELECT pg_sync.track('bi_matview', 'good');
SELECT pg_sync.track('bi_seq', 'good');
SELECT pg_sync.track('bi_temp', 'good');
SELECT pg_sync.track('pg_sync._queue', 'good');
SELECT pg_sync.track('pg_sync._endpoints', 'good');
SELECT pg_sync.track('pg_class', 'good');
SELECT pg_sync.track('information_schema.sql_features', 'good');
SELECT pg_sync.track('bi_pk_pkey', 'good');
SELECT pg_sync.track('bi_nopk', 'good');
-- columns / key_columns
SELECT pg_sync.track('bi_pk', 'other', columns => '{id,nope}');
SELECT pg_sync.track('bi_pk', 'other', columns => '{ID}');
SELECT pg_sync.track('bi_pk', 'other', key_columns => '{nope}');
SELECT pg_sync.track('bi_pk', 'other', columns => '{}');
SELECT pg_sync.track('bi_pk', 'other', key_columns => '{}');
SELECT pg_sync.track('bi_pk', 'other', columns => '{id,NULL}');
SELECT pg_sync.track('bi_pk', 'other', key_columns => ARRAY[NULL]::text[]);
SELECT pg_sync.track('bi_pk', 'other', columns => '{id,status,id}');
SELECT pg_sync.track('bi_pk', 'other', columns => '{ctid}');
SELECT pg_sync.track('bi_nopk', 'other', key_columns => '{a,a}');
SELECT pg_sync.track('"Bi ""Odd"" Table"', 'other', columns => '{"x; drop table t)"}');
SELECT pg_sync.track('"Bi ""Odd"" Table"', 'other', columns => ARRAY['a"b', 'id) FROM pg_class --']);
SELECT pg_sync.track('"Bi ""Odd"" Table"', 'other', key_columns => '{mixed}');
-- events
SELECT pg_sync.track('bi_pk', 'other', events => '{}');
SELECT pg_sync.track('bi_pk', 'other', events => '{insert,upsert}');
SELECT pg_sync.track('bi_pk', 'other', events => '{insert,NULL}');
SELECT pg_sync.track('bi_pk', 'other', events => NULL);
SELECT pg_sync.track('bi_pk', 'other', events => '{" insert"}');
-- filters
SELECT pg_sync.track('bi_pk', 'other', filter => 'NEW.id + 1');
SELECT pg_sync.track('bi_pk', 'other', filter => '''yes''');
SELECT pg_sync.track('bi_pk', 'other', filter => 'NEW.id =');
SELECT pg_sync.track('bi_pk', 'other', filter => 'true; DROP TABLE bi_victim');
SELECT pg_sync.track('bi_pk', 'other', filter => 'true); DROP TABLE bi_victim; SELECT (true');
SELECT pg_sync.track('bi_pk', 'other', filter => 'true) FROM pg_class WHERE (true');
SELECT pg_sync.track('bi_pk', 'other', filter => 'true --');
SELECT pg_sync.track('bi_pk', 'other', filter => 'true /*');
SELECT pg_sync.track('bi_pk', 'other', filter => '1) , (2');
-- Filters look only at the row: no aggregates, window functions, set-returning functions,
-- subqueries (they would run as every writer) or parameters.
SELECT pg_sync.track('bi_pk', 'other', filter => 'count(*) > 0');
SELECT pg_sync.track('bi_pk', 'other', filter => 'row_number() OVER () > 0');
SELECT pg_sync.track('bi_pk', 'other', filter => 'generate_series(1, 2) > 0');
SELECT pg_sync.track('bi_pk', 'other', filter => '(SELECT true FROM pg_authid LIMIT 1)');
SELECT pg_sync.track('bi_pk', 'other', filter => 'EXISTS (SELECT 1 FROM bi_victim)');
SELECT pg_sync.track('bi_pk', 'other', filter => '$1 IS NOT NULL');
SELECT pg_sync.track('bi_pk', 'other', filter => 'random() > 0.5');
SELECT pg_sync.track('bi_pk', 'other', filter => $$nextval('pg_sync._queue_id_seq') > 0$$);
SELECT pg_sync.track('bi_pk', 'other', filter => 'true) UNION SELECT (false');
SELECT pg_sync.track('bi_pk', 'other', filter => 'NEW.nope = 1');
SELECT pg_sync.track('bi_pk', 'other', filter => 'nope.id = 1');
SELECT pg_sync.track('bi_pk', 'other', filter => '');
SELECT pg_sync.track('bi_pk', 'other', filter => '   ');
-- A partition of a tracked parent, and the parent of a tracked partition, for one endpoint.
SELECT pg_sync.track('bi_part_eu', 'good');
SELECT pg_sync.track('bi_part2', 'other');
-- The regclass argument itself.
SELECT pg_sync.track('nope'::regclass, 'good');
SELECT pg_sync.track(0::regclass, 'good');
SELECT pg_sync.track(4294967295::oid::regclass, 'good');

-- ------------------------------------------------------------------------------------------
-- untrack

SELECT pg_sync.untrack('bi_nopk');
SELECT pg_sync.untrack('bi_nopk', 'good');
SELECT pg_sync.untrack('bi_pk', 'nope');
SELECT pg_sync.untrack('bi_pk', 'other');
SELECT pg_sync.untrack(NULL);
SELECT pg_sync.untrack('nope');
SELECT pg_sync.untrack(4294967295::oid::regclass);

-- ------------------------------------------------------------------------------------------
-- emit

SELECT pg_sync.emit('nope', 'order.paid', '{"id": 1}');
SELECT pg_sync.emit(NULL, 'order.paid', '{"id": 1}');
SELECT pg_sync.emit('good', 'order.paid', NULL);
SELECT pg_sync.emit('good', NULL, '{"id": 1}');
SELECT pg_sync.emit('good', '', '{"id": 1}');
SELECT pg_sync.emit('good', '   ', '{"id": 1}');
SELECT pg_sync.emit('good', repeat('t', 201), '{"id": 1}');

-- ------------------------------------------------------------------------------------------
-- Nothing changed: every difference between the snapshot and the current state is listed.

CREATE TEMP VIEW bi_diff AS
SELECT 'missing' AS diff, * FROM (SELECT * FROM bi_before EXCEPT ALL SELECT * FROM bi_state) gone
UNION ALL
SELECT 'added', * FROM (SELECT * FROM bi_state EXCEPT ALL SELECT * FROM bi_before) added;
SELECT * FROM bi_diff ORDER BY diff, kind, item::text COLLATE "C";
SELECT NOT EXISTS (SELECT FROM bi_diff) AS unchanged;

-- The valid configuration still works after all that.
INSERT INTO bi_pk VALUES (2, 'new', 20);
SELECT e.name, q.op, q.tbl, q.key::text FROM pg_sync._queue q
  JOIN pg_sync._endpoints e ON e.id = q.endpoint_id ORDER BY q.id;

-- ------------------------------------------------------------------------------------------
-- Clean up (tests share one database).
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
RESET client_min_messages;
DROP TABLE bi_pk, bi_nopk, bi_part, bi_part2, "Bi ""Odd"" Table", bi_victim CASCADE;
DROP SEQUENCE bi_seq;
