-- pg_sync.health(): one row per current problem, none when healthy. The regression instance runs
-- no delivery worker (pg_sync.max_workers = 0), so "no delivery worker" is always reported here;
-- test/110 checks a healthy system returns no rows. Problems are staged by hand, the way the
-- worker records them.
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
SELECT * FROM pg_sync.health();
SELECT pg_sync.create_endpoint('a', 'http://127.0.0.1:9/a');
SELECT pg_sync.create_endpoint('b', 'http://127.0.0.1:9/b');
SELECT pg_sync.create_endpoint('c', 'http://127.0.0.1:9/c');
SELECT count(*) AS problems FROM pg_sync.health() WHERE endpoint IS NOT NULL;

-- a: circuit open and an old pending event; b: a dead letter; c: most recent requests failed.
SELECT pg_sync.emit('a', 't', '{}') \gset
UPDATE pg_sync._queue SET captured_at = now() - interval '1 hour';
INSERT INTO pg_sync._endpoint_state (endpoint_id, consecutive_failures, last_error, circuit, next_attempt_at)
SELECT id, 6, 'HTTP 503', 'open', '2030-01-01 00:00+00' FROM pg_sync._endpoints WHERE name = 'a';
INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, txid, captured_at, attempts)
SELECT 9999, id, 'emit', '1', now(), 10 FROM pg_sync._endpoints WHERE name = 'b';
INSERT INTO pg_sync._attempts (slot, endpoint_id, started_at, finished_at, events, status, error)
SELECT g, e.id, now(), now() + g * interval '1 ms', 1, CASE WHEN g <= 3 THEN 204 ELSE 500 END,
       CASE WHEN g <= 3 THEN NULL ELSE 'HTTP 500 #' || g END
  FROM pg_sync._endpoints e, generate_series(1, 12) g WHERE e.name = 'c';
SET timezone = 'UTC';
SELECT * FROM pg_sync.health();

-- Thresholds are settings; any role may set them for its own check.
SET pg_sync.health_max_pending_age = '2h';
SET pg_sync.health_max_error_rate = 0.9;
SELECT severity, endpoint, problem FROM pg_sync.health();
SET pg_sync.health_max_error_rate = 2;
SET pg_sync.health_max_pending_age = 0;
RESET pg_sync.health_max_pending_age;
RESET pg_sync.health_max_error_rate;

-- The monitor role may call it (it is what an alert rule runs), and sees no secrets through it.
SET ROLE pgsync_monitor;
SELECT severity, endpoint, problem FROM pg_sync.health();
RESET ROLE;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
