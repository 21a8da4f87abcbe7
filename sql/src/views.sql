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
       l.lag_p50, l.lag_p99
  FROM pg_sync._endpoints e
  LEFT JOIN pg_sync._endpoint_state s ON s.endpoint_id = e.id
  -- Lag of recent deliveries (pg_sync.recent_attempts): capture of a request's oldest event to its 2xx.
  LEFT JOIN (SELECT endpoint_id,
                    make_interval(secs => percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_ms) / 1000) AS lag_p50,
                    make_interval(secs => percentile_cont(0.99) WITHIN GROUP (ORDER BY lag_ms) / 1000) AS lag_p99
               FROM pg_sync._attempts WHERE status BETWEEN 200 AND 299 GROUP BY endpoint_id) l
         ON l.endpoint_id = e.id;

-- The last pg_sync.recent_attempts_size HTTP requests of every endpoint, newest first.
CREATE OR REPLACE VIEW pg_sync.recent_attempts AS
SELECT e.name AS endpoint, a.started_at, a.events, a.status,
       a.finished_at - a.started_at AS duration, pg_sync._shown_error(a.error) AS error,
       make_interval(secs => a.lag_ms / 1000) AS lag
  FROM pg_sync._attempts a JOIN pg_sync._endpoints e ON e.id = a.endpoint_id
 ORDER BY a.finished_at DESC;

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

-- Delivery workers of every database (like pg_stat_activity, the server's view).
-- last_error: the worker's last failed pass (its class only, for monitors).
CREATE OR REPLACE VIEW pg_sync.workers AS
SELECT w.database, w.pid, w.started_at, w.last_active_at, w.state,
       pg_sync._shown_error(w.last_error) AS last_error
  FROM pg_sync._worker_status() w;
