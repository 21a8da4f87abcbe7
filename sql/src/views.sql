-- ---------------------------------------------------------------------------------------------
-- Views. They run with the owner's rights, so monitors need no access to the tables; none
-- shows a secret, a header value or a Kafka setting's value.

-- Monitors (pgsync_monitor without pgsync_admin) see metadata only (pg_sync._sees_data()):
-- no row data (keys are data too), and of a URL only its origin, since a URL's path or query
-- can be a credential (Slack-style webhook URLs).
CREATE OR REPLACE VIEW pg_sync.endpoints AS
SELECT e.name,
       CASE WHEN pg_sync._sees_data() THEN e.url
            ELSE pg_sync._url_origin(e.url) || '/...' END AS url,
       ARRAY(SELECT k FROM jsonb_object_keys(e.headers) k ORDER BY k) AS header_names,
       e.secret IS NOT NULL AS has_secret,
       e.batch_size, e.max_attempts, e.timeout_ms, e.max_in_flight, e.retry_base_ms,
       e.retry_max_ms, e.paused, e.paused_reason, e.created_at,
       ARRAY(SELECT k FROM jsonb_object_keys(e.kafka_settings) k ORDER BY k) AS kafka_setting_names,
       e.max_rate, e.max_request_bytes, e.permanent_statuses,
       e.format,
       -- A secret rotation in progress (pg_sync.rotate_secret): until when the previous secret
       -- signs too; NULL when none is.
       CASE WHEN e.previous_secret IS NOT NULL AND e.previous_secret_until > now()
            THEN e.previous_secret_until END AS secret_rotation_until,
       -- TLS: whether a client key is set (never the key), when the client certificate expires,
       -- whether a CA bundle replaces the system's.
       e.tls_client_key IS NOT NULL AS has_tls_client_key,
       pg_sync._cert_not_after(e.tls_client_cert) AS tls_client_cert_expires,
       e.tls_ca IS NOT NULL AS has_tls_ca,
       -- OAuth2 without client_secret; for monitors, of token_url only its origin (like url).
       CASE WHEN e.oauth2 <> '{}' THEN
           (e.oauth2 - 'client_secret')
           || CASE WHEN pg_sync._sees_data() THEN '{}'::jsonb
                   ELSE jsonb_build_object('token_url', pg_sync._url_origin(e.oauth2 ->> 'token_url') || '/...') END
       END AS oauth2
  FROM pg_sync._endpoints e;
COMMENT ON VIEW pg_sync.endpoints IS
    'The endpoints and their settings, without secrets or header values (for monitors, of a URL '
    'only its origin). Readable by pgsync_monitor.';
COMMENT ON COLUMN pg_sync.endpoints.name IS 'The endpoint''s name';
COMMENT ON COLUMN pg_sync.endpoints.url IS
    'Its URL: webhook (http, https) or kafka://brokers/topic; for monitors only its origin followed '
    'by /...';
COMMENT ON COLUMN pg_sync.endpoints.header_names IS
    'Names of the HTTP headers sent with each request (their values are never shown)';
COMMENT ON COLUMN pg_sync.endpoints.has_secret IS
    'Whether requests are signed (Standard Webhooks: webhook-id, webhook-timestamp, '
    'webhook-signature)';
COMMENT ON COLUMN pg_sync.endpoints.batch_size IS 'Events per request at most';
COMMENT ON COLUMN pg_sync.endpoints.max_attempts IS
    'Failed attempts after which an event becomes a dead letter';
COMMENT ON COLUMN pg_sync.endpoints.timeout_ms IS
    'Timeout of one request, in milliseconds (Kafka: message.timeout.ms)';
COMMENT ON COLUMN pg_sync.endpoints.max_in_flight IS 'Requests sent at once at most';
COMMENT ON COLUMN pg_sync.endpoints.retry_base_ms IS
    'Retry delay base, in milliseconds: the n-th retry waits between half of and all of '
    'min(retry_base_ms * 2^(n-1), retry_max_ms) (equal jitter)';
COMMENT ON COLUMN pg_sync.endpoints.retry_max_ms IS 'Longest retry delay, in milliseconds';
COMMENT ON COLUMN pg_sync.endpoints.paused IS
    'Whether sending is paused (pg_sync.pause_endpoint(), or by pg_sync: see paused_reason)';
COMMENT ON COLUMN pg_sync.endpoints.paused_reason IS
    'Why pg_sync paused the endpoint itself; NULL when paused by hand or not paused';
COMMENT ON COLUMN pg_sync.endpoints.created_at IS 'When the endpoint was created';
COMMENT ON COLUMN pg_sync.endpoints.kafka_setting_names IS
    'Names of the librdkafka settings of a kafka:// endpoint (their values are never shown)';
COMMENT ON COLUMN pg_sync.endpoints.max_rate IS
    'Requests per second at most (a token bucket per endpoint); 0: no limit';
COMMENT ON COLUMN pg_sync.endpoints.max_request_bytes IS
    'Largest request body in bytes: batches are cut to fit; an event larger alone is a dead letter';
COMMENT ON COLUMN pg_sync.endpoints.permanent_statuses IS
    'HTTP statuses that make dead letters at once, without retries';
COMMENT ON COLUMN pg_sync.endpoints.format IS
    'Request body format: webhook ({"events": [...]}) or cloudevents (CloudEvents 1.0 JSON batch)';
COMMENT ON COLUMN pg_sync.endpoints.secret_rotation_until IS
    'While a secret rotation is in progress (pg_sync.rotate_secret): until when the previous '
    'secret signs too; NULL otherwise';
COMMENT ON COLUMN pg_sync.endpoints.has_tls_client_key IS
    'Whether requests present a TLS client certificate (tls_client_cert with tls_client_key; the '
    'key is never shown)';
COMMENT ON COLUMN pg_sync.endpoints.tls_client_cert_expires IS
    'When the TLS client certificate expires; NULL without one';
COMMENT ON COLUMN pg_sync.endpoints.has_tls_ca IS
    'Whether the endpoint trusts its own CA bundle (tls_ca) instead of the system''s';
COMMENT ON COLUMN pg_sync.endpoints.oauth2 IS
    'OAuth2 client credentials setting without client_secret (for monitors, of token_url only its '
    'origin followed by /...); NULL without OAuth2';

CREATE OR REPLACE VIEW pg_sync.tracked_tables AS
SELECT t.tbl AS "table", e.name AS endpoint, t.events, t.columns,
       coalesce(t.key_columns,
                (SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_index i
                  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  WHERE i.indrelid = t.tbl AND i.indisprimary AND k.ord <= i.indnkeyatts)) AS key_columns,
       t.key_columns IS NULL AS key_is_primary_key,
       CASE WHEN pg_sync._sees_data() THEN t.filter END AS filter
  FROM pg_sync._tracked t JOIN pg_sync._endpoints e ON e.id = t.endpoint_id;
COMMENT ON VIEW pg_sync.tracked_tables IS
    'Tracked tables, one row per table and endpoint, as pg_sync.track() configured them. Readable '
    'by pgsync_monitor.';
COMMENT ON COLUMN pg_sync.tracked_tables."table" IS 'The tracked table';
COMMENT ON COLUMN pg_sync.tracked_tables.endpoint IS 'The endpoint its changes go to';
COMMENT ON COLUMN pg_sync.tracked_tables.events IS
    'Captured operations: insert, update, delete, truncate';
COMMENT ON COLUMN pg_sync.tracked_tables.columns IS 'Columns sent in new and old; NULL: all';
COMMENT ON COLUMN pg_sync.tracked_tables.key_columns IS
    'Columns of the event key (the primary key unless key_columns was given)';
COMMENT ON COLUMN pg_sync.tracked_tables.key_is_primary_key IS
    'Whether the key is the table''s primary key';
COMMENT ON COLUMN pg_sync.tracked_tables.filter IS
    'The filter expression (over NEW and OLD); NULL for monitors and when there is none';

-- pending = captured and not yet delivered nor dead (in flight and waiting to retry included).
-- Nothing here scans the queue (docs/delivery.md, "Monitoring in constant time"):
--   pending             exact, from shared memory (pg_sync._pending(), src/pg/queue_counters.cpp);
--                       counted only while those counts are not exact (no worker yet, a recount
--                       running or asked for)
--   oldest_pending_age  captured_at of the endpoint's lowest id: one index lookup
--   dead                counted in the dead letters (their primary key): O(dead letters)
--   state, next_attempt_at, in_flight and the delivery figures come from the worker
--                       (pg_sync._endpoint_state, written at most every 200 ms, failures at
--                       once): 'retrying' is its view of its requests (the last one failed, or a
--                       retry is due later), next_attempt_at its earliest retry or the circuit's
--                       reopening
--   lag_p50/p99         over the ring of recent attempts (bounded)
--   rate_limited        the worker's: a request waits for max_rate's next token
--   request_bytes_limit the worker's: the request size it learned from 413 answers, when smaller
--                       than max_request_bytes (NULL: none)
CREATE OR REPLACE VIEW pg_sync.endpoint_status AS
SELECT e.name AS endpoint,
       CASE WHEN e.paused THEN 'paused'
            WHEN s.circuit IN ('open', 'half_open') THEN 'circuit_open'
            WHEN s.consecutive_failures > 0 OR s.next_attempt_at > now() THEN 'retrying'
            ELSE 'active' END AS state,
       pg_sync._pending(e.id) AS pending,
       coalesce(s.in_flight, 0) AS in_flight,
       (SELECT count(*) FROM pg_sync._dead_letters d WHERE d.endpoint_id = e.id) AS dead,
       now() - (SELECT q.captured_at FROM pg_sync._queue q WHERE q.endpoint_id = e.id
                 ORDER BY q.id LIMIT 1) AS oldest_pending_age,
       coalesce(s.delivered_total, 0) AS delivered_total,
       coalesce(s.failed_attempts_total, 0) AS failed_attempts_total,
       s.last_success_at, s.last_failure_at, pg_sync._shown_error(s.last_error) AS last_error, s.last_status,
       coalesce(s.consecutive_failures, 0) AS consecutive_failures,
       CASE WHEN s.circuit = 'open' OR s.next_attempt_at > now() THEN s.next_attempt_at END AS next_attempt_at,
       e.paused_reason,
       l.lag_p50, l.lag_p99,
       coalesce(s.rate_limited, false) AND NOT e.paused AS rate_limited,
       s.request_bytes_limit
  FROM pg_sync._endpoints e
  LEFT JOIN pg_sync._endpoint_state s ON s.endpoint_id = e.id
  -- Lag of recent deliveries (pg_sync.recent_attempts): capture of a request's oldest event to its 2xx.
  LEFT JOIN (SELECT endpoint_id,
                    make_interval(secs => percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms) / 1000) AS lag_p50,
                    make_interval(secs => percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms) / 1000) AS lag_p99
               FROM pg_sync._attempts WHERE status BETWEEN 200 AND 299 GROUP BY endpoint_id) l
         ON l.endpoint_id = e.id;
COMMENT ON VIEW pg_sync.endpoint_status IS
    'Delivery state of every endpoint: pending events, dead letters, lag, counters, circuit. Never '
    'scans the queue (pending comes from counts in shared memory). Readable by pgsync_monitor.';
COMMENT ON COLUMN pg_sync.endpoint_status.endpoint IS 'The endpoint''s name';
COMMENT ON COLUMN pg_sync.endpoint_status.state IS
    'active, retrying (the last request failed or a retry is due later), circuit_open, or paused';
COMMENT ON COLUMN pg_sync.endpoint_status.pending IS
    'Events captured (committed) and not yet delivered nor dead, in flight and waiting to retry '
    'included; exact';
COMMENT ON COLUMN pg_sync.endpoint_status.in_flight IS 'Events in requests awaiting an answer';
COMMENT ON COLUMN pg_sync.endpoint_status.dead IS
    'Dead letters of the endpoint (see pg_sync.dead_letters)';
COMMENT ON COLUMN pg_sync.endpoint_status.oldest_pending_age IS
    'Age of the oldest pending event (since its capture); NULL when none is pending';
COMMENT ON COLUMN pg_sync.endpoint_status.delivered_total IS
    'Events delivered (2xx, or Kafka records written) since the endpoint was created; written by '
    'the worker at most every 200 ms';
COMMENT ON COLUMN pg_sync.endpoint_status.failed_attempts_total IS
    'Requests that failed since the endpoint was created';
COMMENT ON COLUMN pg_sync.endpoint_status.last_success_at IS 'When a request last succeeded';
COMMENT ON COLUMN pg_sync.endpoint_status.last_failure_at IS 'When a request last failed';
COMMENT ON COLUMN pg_sync.endpoint_status.last_error IS
    'The last failure''s error (for monitors its class only, such as HTTP 500 or timeout)';
COMMENT ON COLUMN pg_sync.endpoint_status.last_status IS
    'HTTP status of the last failed request; NULL when it got no answer';
COMMENT ON COLUMN pg_sync.endpoint_status.consecutive_failures IS
    'Failed requests in a row (pg_sync.circuit_failure_threshold opens the circuit)';
COMMENT ON COLUMN pg_sync.endpoint_status.next_attempt_at IS
    'The earliest scheduled retry or the circuit''s reopening; NULL when none is due later';
COMMENT ON COLUMN pg_sync.endpoint_status.paused_reason IS
    'Why pg_sync paused the endpoint itself; NULL otherwise';
COMMENT ON COLUMN pg_sync.endpoint_status.lag_p50 IS
    'Median time from capture to a 2xx answer, over the endpoint''s recent successful attempts '
    '(pg_sync.recent_attempts)';
COMMENT ON COLUMN pg_sync.endpoint_status.lag_p99 IS
    '99th percentile of the time from capture to a 2xx answer, over the endpoint''s recent '
    'successful attempts';
COMMENT ON COLUMN pg_sync.endpoint_status.rate_limited IS
    'Whether a request waits for the next token of max_rate (the worker''s view, written every '
    '200 ms)';
COMMENT ON COLUMN pg_sync.endpoint_status.request_bytes_limit IS
    'A request size smaller than max_request_bytes that the worker learned from 413 answers; NULL '
    'when none';

-- The last pg_sync.recent_attempts_size HTTP requests of every endpoint, newest first.
CREATE OR REPLACE VIEW pg_sync.recent_attempts AS
SELECT e.name AS endpoint, a.started_at, a.events, a.status,
       a.finished_at - a.started_at AS duration, pg_sync._shown_error(a.error) AS error,
       make_interval(secs => a.lag_ms / 1000) AS lag
  FROM pg_sync._attempts a JOIN pg_sync._endpoints e ON e.id = a.endpoint_id
 ORDER BY a.finished_at DESC;
COMMENT ON VIEW pg_sync.recent_attempts IS
    'The last pg_sync.recent_attempts_size requests of this database (HTTP requests, or sets of '
    'Kafka records), newest first; a ring that never grows. Readable by pgsync_monitor.';
COMMENT ON COLUMN pg_sync.recent_attempts.endpoint IS 'The endpoint''s name';
COMMENT ON COLUMN pg_sync.recent_attempts.started_at IS 'When the request was sent';
COMMENT ON COLUMN pg_sync.recent_attempts.events IS 'Events in the request';
COMMENT ON COLUMN pg_sync.recent_attempts.status IS
    'HTTP status; NULL without an answer, and for Kafka';
COMMENT ON COLUMN pg_sync.recent_attempts.duration IS 'From sending to the answer (or the failure)';
COMMENT ON COLUMN pg_sync.recent_attempts.error IS
    'Why it failed; NULL on success (for monitors its class only)';
COMMENT ON COLUMN pg_sync.recent_attempts.lag IS
    'From the capture of the request''s oldest event to the answer';

CREATE OR REPLACE VIEW pg_sync.dead_letters AS
SELECT d.id, e.name AS endpoint, d.tbl AS "table", d.op,
       CASE WHEN v.sees_data THEN d.key END AS key,
       d.attempts, d.last_status, pg_sync._shown_error(d.last_error) AS last_error, d.first_attempt_at, d.dead_at,
       CASE WHEN NOT v.sees_data THEN NULL
            WHEN d.op = 'emit' THEN json_build_object('type', d.emit_type, 'payload', d.new_row)
            ELSE json_build_object('new', d.new_row, 'old', d.old_row) END AS payload
  FROM pg_sync._dead_letters d JOIN pg_sync._endpoints e ON e.id = d.endpoint_id
 -- Row data for admins, and of a table only for those who may read it (emit events have none).
 CROSS JOIN LATERAL (SELECT pg_sync._sees_data()
                            AND (d.tbl IS NULL
                                 OR coalesce(has_table_privilege(to_regclass(d.tbl), 'SELECT'), false))
                            AS sees_data) v;
COMMENT ON VIEW pg_sync.dead_letters IS
    'Events that failed max_attempts times, with their last error; later events of their key wait '
    'behind them until pg_sync.redeliver() or pg_sync.purge_dead(). Key and payload only for admins '
    'who may read the table. Readable by pgsync_monitor.';
COMMENT ON COLUMN pg_sync.dead_letters.id IS
    'The event''s id (kept through redeliver(), so order per key holds)';
COMMENT ON COLUMN pg_sync.dead_letters.endpoint IS 'The endpoint''s name';
COMMENT ON COLUMN pg_sync.dead_letters."table" IS
    'The table the change was captured from; NULL for emitted events';
COMMENT ON COLUMN pg_sync.dead_letters.op IS
    'insert, update, delete, truncate, snapshot (backfill) or emit';
COMMENT ON COLUMN pg_sync.dead_letters.key IS
    'The event key; NULL for monitors and for those who may not read the table';
COMMENT ON COLUMN pg_sync.dead_letters.attempts IS 'Attempts made';
COMMENT ON COLUMN pg_sync.dead_letters.last_status IS
    'HTTP status of the last attempt; NULL when it got no answer';
COMMENT ON COLUMN pg_sync.dead_letters.last_error IS
    'The last attempt''s error (for monitors its class only)';
COMMENT ON COLUMN pg_sync.dead_letters.first_attempt_at IS 'When the event was first sent';
COMMENT ON COLUMN pg_sync.dead_letters.dead_at IS 'When it became a dead letter';
COMMENT ON COLUMN pg_sync.dead_letters.payload IS
    '{"new", "old"} rows, or {"type", "payload"} for emit; NULL for monitors and for those who may '
    'not read the table';

-- Backfills (pg_sync.backfill), running and finished, with their progress.
CREATE OR REPLACE VIEW pg_sync.backfills AS
SELECT b.id, b.tbl AS "table", e.name AS endpoint, b.state,
       b.rows_scanned, b.rows_enqueued, t.estimate AS rows_estimated,
       CASE WHEN b.state = 'done' THEN 100.0
            WHEN t.estimate > 0 THEN least(99.9, round(100.0 * b.rows_scanned / t.estimate, 1)) END AS percent_done,
       b.batch_rows, b.batches, CASE WHEN pg_sync._sees_data() THEN b.last_key END AS last_key,
       b.waiting_for, pg_sync._shown_error(b.last_error) AS last_error,
       b.requested_by::regrole AS requested_by, b.started_at, b.updated_at, b.finished_at
  FROM pg_sync._backfills b JOIN pg_sync._endpoints e ON e.id = b.endpoint_id
  -- Planner estimate of the row count (of every partition for a partitioned table); NULL
  -- until the table was analyzed.
  LEFT JOIN LATERAL (SELECT CASE WHEN bool_or(c.reltuples >= 0) THEN sum(greatest(c.reltuples, 0))::bigint END
                              AS estimate
                       FROM pg_class c
                      WHERE c.oid = b.tbl AND c.relkind = 'r'
                         OR c.oid IN (SELECT p.relid FROM pg_partition_tree(b.tbl) p WHERE p.isleaf)) t ON true;
COMMENT ON VIEW pg_sync.backfills IS
    'Backfills (pg_sync.backfill()), running and finished, with their progress. Readable by '
    'pgsync_monitor.';
COMMENT ON COLUMN pg_sync.backfills.id IS
    'The backfill''s id (for cancel_backfill() and resume_backfill())';
COMMENT ON COLUMN pg_sync.backfills."table" IS 'The table being sent';
COMMENT ON COLUMN pg_sync.backfills.endpoint IS 'The endpoint''s name';
COMMENT ON COLUMN pg_sync.backfills.state IS 'running, done, cancelled or failed';
COMMENT ON COLUMN pg_sync.backfills.rows_scanned IS 'Rows read so far';
COMMENT ON COLUMN pg_sync.backfills.rows_enqueued IS
    'Rows queued as snapshot events so far (those the filter let through)';
COMMENT ON COLUMN pg_sync.backfills.rows_estimated IS
    'The planner''s estimate of the table''s rows; NULL before the table was analyzed';
COMMENT ON COLUMN pg_sync.backfills.percent_done IS
    'rows_scanned against rows_estimated (at most 99.9 until done); NULL when unknown';
COMMENT ON COLUMN pg_sync.backfills.batch_rows IS 'Rows per page';
COMMENT ON COLUMN pg_sync.backfills.batches IS 'Pages committed';
COMMENT ON COLUMN pg_sync.backfills.last_key IS
    'Page key of the last row read (NULL: from the start; NULL for monitors)';
COMMENT ON COLUMN pg_sync.backfills.waiting_for IS
    'Why the last attempt did not advance: delivery, row lock, retry; NULL when it did';
COMMENT ON COLUMN pg_sync.backfills.last_error IS 'Why it failed (for monitors its class only)';
COMMENT ON COLUMN pg_sync.backfills.requested_by IS 'The role that started or last resumed it';
COMMENT ON COLUMN pg_sync.backfills.started_at IS 'When it started';
COMMENT ON COLUMN pg_sync.backfills.updated_at IS 'When its progress last changed';
COMMENT ON COLUMN pg_sync.backfills.finished_at IS 'When it finished, was cancelled or failed';

-- Delivery workers of every database (like pg_stat_activity, the server's view).
-- last_error: the worker's last failed pass (its class only, for monitors).
CREATE OR REPLACE VIEW pg_sync.workers AS
SELECT w.database, w.pid, w.started_at, w.last_active_at, w.state,
       pg_sync._shown_error(w.last_error) AS last_error
  FROM pg_sync._worker_status() w;
COMMENT ON VIEW pg_sync.workers IS
    'The delivery workers of every database (like pg_stat_activity). Readable by pgsync_monitor.';
COMMENT ON COLUMN pg_sync.workers.database IS 'The database the worker delivers for';
COMMENT ON COLUMN pg_sync.workers.pid IS 'Its process id';
COMMENT ON COLUMN pg_sync.workers.started_at IS 'When it started';
COMMENT ON COLUMN pg_sync.workers.last_active_at IS 'When it last did something';
COMMENT ON COLUMN pg_sync.workers.state IS
    'starting, idle, delivering, or retrying (its last pass failed and is tried again)';
COMMENT ON COLUMN pg_sync.workers.last_error IS
    'The worker''s last failed pass (for monitors its class only); NULL when none';
