-- Capture payloads: every value must render exactly as PostgreSQL's to_json renders it.
-- The checks compare the captured JSON text with row_to_json() of the same row, so any
-- difference in escaping, number or date format shows up as "f".
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('e', 'http://127.0.0.1:9/hook');

CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN email AS text CHECK (VALUE LIKE '%@%');
CREATE DOMAIN stamps AS timestamptz[];
CREATE TYPE pair AS (a int, b text);

CREATE TABLE alltypes (
    id int PRIMARY KEY,
    b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric, n2 numeric(10, 2),
    t text, vc varchar(10), c char(5), nm name, u uuid,
    j json, jb jsonb, d date, ts timestamp, tstz timestamptz, tm time, tmtz timetz, iv interval,
    ba bytea, arr int[], tarr text[], arr2 int[], jarr jsonb[], e mood, dom posint, dom2 email,
    doma stamps, comp pair, compa pair[], ip inet, cid cidr, mac macaddr, bits bit(4),
    vb varbit, pt point, rng int4range, mon money, x xml, o oid, tsv tsvector, big text
);
SELECT pg_sync.track('alltypes', 'e', events => '{insert,update,delete,truncate}');

SET extra_float_digits = 1;
INSERT INTO alltypes VALUES (
    1, true, -32768, 2147483647, -9223372036854775808, 1.5, 3.141592653589793, 12.50, 12.5,
    E'tab\there "quoted" back\\slash \u00e9 \u2603 \U0001F600 nl\n cr\r ff\f bs\b ctl\x01\x1f del\x7f',
    'short', 'ab', 'a name', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    '{"k": [1, 2.50, "x"],  "sp" :  null}', '{"b": 1, "a": [true, null, "é"]}',
    '2026-11-23', '2026-11-23 10:15:02.123456', '2026-11-23 10:15:02.123456+00', '10:15:02',
    '10:15:02+02', '1 year 2 mons 3 days 04:05:06.5', '\x00ff10', '{1,NULL,3}',
    E'{"a","b c","quote\\"d",NULL}', '{{1,2},{3,4}}', ARRAY['{"x":1}'::jsonb, 'null'], 'happy',
    42, 'me@example.com', ARRAY['2026-01-01 00:00:00+00'::timestamptz, NULL], ROW(7, 'seven'),
    ARRAY[ROW(1, 'one')::pair, ROW(2, NULL)::pair], '192.168.0.1/24', '10.0.0.0/8',
    '08:00:2b:01:02:03', B'1010', B'101', '(1.5,2)', '[1,10)', 12.34, '<a>x &amp; y</a>', 4242,
    'fat cat', NULL);
-- Floating point and numeric specials, infinities of dates, NULLs everywhere else.
INSERT INTO alltypes (id, f4, f8, n, d, ts, tstz, t)
VALUES (2, 'NaN', 'Infinity', 'NaN', 'infinity', '-infinity', 'infinity', ''),
       (3, '-Infinity', '-0', 'Infinity', '-infinity', 'infinity', '-infinity', NULL),
       (4, 1e-38, 1e308, '-Infinity', '4713-01-01 BC', '294276-12-31 23:59:59', '2000-01-01', ' '),
       (5, 0.1, 5e-324, 0.000000000000000000000000000001, '2000-02-29', NULL, NULL, '\');
-- A large value that is compressed and stored out of line (TOAST), and one that does not compress.
INSERT INTO alltypes (id, big) VALUES (6, repeat('large value ', 20000));
INSERT INTO alltypes (id, big)
SELECT 7, string_agg(md5(g::text), '') FROM generate_series(1, 3000) g;

-- Every captured row equals row_to_json() of the table row, byte for byte.
SELECT a.id, q.op, q.new_row::text = row_to_json(a)::text AS same_as_row_to_json,
       q.old_row IS NULL AS no_old, q.key::text
  FROM pg_sync._queue q JOIN alltypes a ON a.id = (q.key->>'id')::int
 ORDER BY q.id;

-- Show a few rendered values literally.
SELECT q.new_row->'t' AS t, q.new_row->'f4' AS f4, q.new_row->'n' AS n, q.new_row->'tstz' AS tstz,
       q.new_row->'ba' AS ba, q.new_row->'comp' AS comp, q.new_row->'e' AS e, q.new_row->'dom' AS dom
  FROM pg_sync._queue q WHERE q.key->>'id' IN ('1', '2', '3') ORDER BY q.id;
SELECT length(q.new_row->>'big') AS big_length FROM pg_sync._queue q WHERE q.key->>'id' IN ('6', '7') ORDER BY q.id;
-- The queue's JSON is valid JSON (jsonb accepts it).
SELECT count(*) AS rows, count(q.new_row::jsonb) AS valid_json FROM pg_sync._queue q;

-- UPDATE carries new and old; DELETE carries old only; both equal row_to_json.
TRUNCATE pg_sync._queue;
CREATE TEMP TABLE before_update AS SELECT * FROM alltypes WHERE id = 1;
UPDATE alltypes SET t = 'changed', arr = '{}' WHERE id = 1;
SELECT q.op, q.new_row::text = (SELECT row_to_json(a)::text FROM alltypes a WHERE id = 1) AS new_ok,
       q.old_row::text = (SELECT row_to_json(bu)::text FROM before_update bu) AS old_ok
  FROM pg_sync._queue q;
TRUNCATE pg_sync._queue;
CREATE TEMP TABLE before_delete AS SELECT * FROM alltypes WHERE id = 1;
DELETE FROM alltypes WHERE id = 1;
SELECT q.op, q.new_row IS NULL AS no_new,
       q.old_row::text = (SELECT row_to_json(bd)::text FROM before_delete bd) AS old_ok,
       q.old_row->>'t' AS old_t, q.key::text
  FROM pg_sync._queue q;

-- Output of the session's settings is what to_json gives in the same session.
TRUNCATE pg_sync._queue;
SET TimeZone = 'Asia/Kolkata';
SET DateStyle = 'SQL, DMY';
SET extra_float_digits = 0;
INSERT INTO alltypes (id, tstz, ts, f8) VALUES (10, '2026-11-23 10:15:02+00', '2026-11-23 10:15:02', 0.1);
SELECT q.new_row->'tstz' AS tstz, q.new_row->'ts' AS ts, q.new_row->'f8' AS f8,
       q.new_row::text = (SELECT row_to_json(a)::text FROM alltypes a WHERE id = 10) AS same
  FROM pg_sync._queue q;
RESET TimeZone;
RESET DateStyle;
RESET extra_float_digits;

-- TRUNCATE is captured as one event with no key and no rows.
TRUNCATE pg_sync._queue;
TRUNCATE alltypes;
SELECT op, tbl, key, new_row, old_row FROM pg_sync._queue;

-- Quoted, mixed-case schema, table and column names.
CREATE SCHEMA "Sales Dept";
CREATE TABLE "Sales Dept"."Order Items" ("Item ID" int PRIMARY KEY, "Qty""x" int, "select" text);
SELECT pg_sync.track('"Sales Dept"."Order Items"', 'e');
TRUNCATE pg_sync._queue;
INSERT INTO "Sales Dept"."Order Items" VALUES (1, 2, 'from');
SELECT tbl, key::text, new_row::text FROM pg_sync._queue;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA public CASCADE;
DROP SCHEMA IF EXISTS "Sales Dept", archive CASCADE;
DROP TYPE IF EXISTS mood, pair CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
