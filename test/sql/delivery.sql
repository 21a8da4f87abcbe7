-- Delivery's SQL surface: settings, the workers view, dead letters, endpoint state in
-- endpoint_status, and what configuration changes do to the queue. The regression instance runs
-- no delivery worker (pg_sync.max_workers = 0, test/regress.conf): this file checks the SQL side
-- only; test/070..100 check real delivery.
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;

-- Settings exist with their documented defaults (max_workers is set by the test config).
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'pg_sync.%' ORDER BY name;
-- Only superusers may allow or forbid private targets; unknown pg_sync.* names are refused;
-- worker settings change in postgresql.conf (reload), not per session.
CREATE ROLE delivery_user;
SET ROLE delivery_user;
SET pg_sync.allow_private_targets = off;
SET pg_sync.no_such_setting = 1;
RESET ROLE;
SET pg_sync.sweep_interval = '5ms';
SET pg_sync.circuit_failure_threshold = -1;

-- No worker runs here; the view still answers, with its columns.
SELECT * FROM pg_sync.workers;
SELECT column_name FROM information_schema.columns
 WHERE table_schema = 'pg_sync' AND table_name IN ('workers', 'dead_letters')
 ORDER BY table_name, ordinal_position;

-- endpoint_status reflects the worker's state table and the dead letters.
SELECT pg_sync.create_endpoint('d', 'http://127.0.0.1:9/d');
SELECT pg_sync.emit('d', 'order.paid', '{"order": 1}', key => 'order-1') AS first_id \gset
SELECT pg_sync.emit('d', 'order.paid', '{"order": 2}', key => 'order-2') AS second_id \gset
SELECT endpoint, state, pending, in_flight, dead, delivered_total, failed_attempts_total,
       consecutive_failures, last_error FROM pg_sync.endpoint_status;
-- What the worker does after a failed attempt and after max_attempts (by hand, as the worker).
UPDATE pg_sync._queue SET attempts = 1, next_attempt_at = now() + interval '1 hour',
       last_error = 'HTTP 500', last_status = 500 WHERE id = :second_id;
-- (The worker publishes its earliest retry in _endpoint_state.next_attempt_at: endpoint_status
-- reads it there, not from the queue.)
INSERT INTO pg_sync._endpoint_state (endpoint_id, failed_attempts_total, consecutive_failures,
                                     last_error, last_status, circuit, next_attempt_at)
SELECT id, 3, 3, 'HTTP 500', 500, 'closed', now() + interval '1 hour' FROM pg_sync._endpoints WHERE name = 'd';
SELECT endpoint, state, pending, dead, failed_attempts_total, consecutive_failures, last_error,
       next_attempt_at > now() AS retry_scheduled FROM pg_sync.endpoint_status;
UPDATE pg_sync._endpoint_state SET circuit = 'open';
SELECT endpoint, state FROM pg_sync.endpoint_status;
WITH moved AS (DELETE FROM pg_sync._queue WHERE id = :first_id RETURNING *)
INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid,
                                   captured_at, attempts, last_status, last_error)
SELECT id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at, 10, 500, 'HTTP 500'
  FROM moved;
SELECT endpoint, pending, dead FROM pg_sync.endpoint_status;
SELECT endpoint, "table", op, key, attempts, last_status, last_error, payload
  FROM pg_sync.dead_letters;
-- The monitor role reads the views; with no worker here, pending is counted (as the queue's
-- owner: monitors may not read the queue).
SET ROLE pgsync_monitor;
SELECT count(*) FROM pg_sync.dead_letters;
SELECT endpoint, pending, dead FROM pg_sync.endpoint_status;
SELECT count(*) >= 0 AS readable FROM pg_sync.workers;
RESET ROLE;

-- drop_endpoint refuses while dead letters exist, and force removes them with the state row.
DELETE FROM pg_sync._queue;
SELECT pg_sync.drop_endpoint('d');
SELECT pg_sync.drop_endpoint('d', force => true);
SELECT (SELECT count(*) FROM pg_sync._dead_letters) AS dead_left,
       (SELECT count(*) FROM pg_sync._endpoint_state) AS state_left;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP ROLE delivery_user;
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
