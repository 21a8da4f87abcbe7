-- Endpoint configuration: create, alter, pause/resume, drop.
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
CREATE VIEW ep AS
SELECT name, url, header_names, has_secret, batch_size, max_attempts, timeout_ms, max_in_flight,
       retry_base_ms, retry_max_ms, paused, paused_reason IS NOT NULL AS has_reason
  FROM pg_sync.endpoints ORDER BY name;

-- Defaults, then every argument by name.
SELECT pg_sync.create_endpoint('orders-hook', 'https://example.com/hooks/orders');
SELECT pg_sync.create_endpoint(
    name => 'search.index', url => 'http://127.0.0.1:8080/ingest?src=pg',
    headers => '{"Authorization": "Bearer s3cret", "X-Team": "search"}',
    secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', batch_size => 500, max_attempts => 3,
    timeout_ms => 2000, max_in_flight => 16, retry_base_ms => 50, retry_max_ms => 60000);
SELECT * FROM ep;
-- Stored as given (only admins can read the table; views never show values or secrets).
SELECT name, headers, secret FROM pg_sync._endpoints ORDER BY name;

-- alter_endpoint: NULL (the default) leaves a setting alone.
SELECT pg_sync.alter_endpoint('orders-hook', batch_size => 250, headers => '{"X-Env": "test"}');
SELECT pg_sync.alter_endpoint('orders-hook', url => 'https://hooks.example.com/v2',
                              secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', headers => '{"X-Env": "test"}');
SELECT pg_sync.alter_endpoint('orders-hook', retry_base_ms => 10, retry_max_ms => 20);
SELECT * FROM ep WHERE name = 'orders-hook';
-- secret => '' removes the secret, headers => '{}' removes the headers.
SELECT pg_sync.alter_endpoint('orders-hook', secret => '', headers => '{}');
SELECT name, has_secret, header_names FROM ep WHERE name = 'orders-hook';
-- max_rate, max_request_bytes, permanent_statuses: defaults, set, changed, removed.
SELECT name, max_rate, max_request_bytes, permanent_statuses FROM pg_sync.endpoints ORDER BY name;
SELECT pg_sync.alter_endpoint('orders-hook', max_rate => 0.5, max_request_bytes => 4096,
                              permanent_statuses => '{400,401,403,404,422}');
SELECT name, max_rate, max_request_bytes, permanent_statuses FROM pg_sync.endpoints WHERE name = 'orders-hook';
SELECT pg_sync.alter_endpoint('orders-hook', max_rate => 0, permanent_statuses => '{}');
SELECT name, max_rate, max_request_bytes, permanent_statuses FROM pg_sync.endpoints WHERE name = 'orders-hook';
SELECT endpoint, rate_limited, request_bytes_limit FROM pg_sync.endpoint_status ORDER BY endpoint;

-- pause / resume are idempotent.
SELECT pg_sync.pause_endpoint('orders-hook');
SELECT pg_sync.pause_endpoint('orders-hook');
SELECT name, paused, has_reason FROM ep;
SELECT pg_sync.resume_endpoint('orders-hook');
SELECT pg_sync.resume_endpoint('orders-hook');
SELECT name, paused, has_reason FROM ep;

-- drop_endpoint refuses while events are pending, unless forced; tracking goes with it.
CREATE TABLE t (id int PRIMARY KEY);
SELECT pg_sync.track('t', 'orders-hook');
SELECT pg_sync.track('t', 'search.index');
INSERT INTO t VALUES (1);
SELECT pg_sync.drop_endpoint('orders-hook');
SELECT name FROM ep;
SELECT pg_sync.drop_endpoint('orders-hook', force => true);
SELECT name FROM ep;
SELECT endpoint FROM pg_sync.tracked_tables;
SELECT count(*) AS pending_left FROM pg_sync._queue;
SELECT tgname FROM pg_trigger WHERE tgrelid = 't'::regclass;
SELECT pg_sync.drop_endpoint('search.index', true);
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 't'::regclass;
-- A name can be reused after a drop.
SELECT pg_sync.create_endpoint('orders-hook', 'http://[::1]:9000/hook');
SELECT name, url FROM ep;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
