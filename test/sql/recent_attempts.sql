-- pg_sync.recent_attempts (the ring of the last HTTP requests) and what is computed from it:
-- endpoint_status.lag_p50 / lag_p99 and health()'s error rate. No worker runs here
-- (pg_sync.max_workers = 0): the ring is filled by hand as the worker fills it (slot = position
-- in the ring); test/080 (case l) checks the real worker keeps it at pg_sync.recent_attempts_size.
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('a', 'http://127.0.0.1:9/a');
SELECT pg_sync.create_endpoint('b', 'http://127.0.0.1:9/b');

-- Column set (contract).
SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position) AS columns
  FROM information_schema.columns WHERE table_schema = 'pg_sync' AND table_name = 'recent_attempts';

-- Empty ring: no rows, no lag, no error rate.
SELECT count(*) FROM pg_sync.recent_attempts;
SELECT endpoint, lag_p50, lag_p99 FROM pg_sync.endpoint_status ORDER BY 1;

-- 20 requests of a: 2xx with lags 10..100 ms and 10 failures; 3 of b, all 2xx.
INSERT INTO pg_sync._attempts (slot, endpoint_id, started_at, finished_at, events, status, error, lag_ms)
SELECT g, (SELECT id FROM pg_sync._endpoints WHERE name = 'a'),
       timestamptz '2026-11-30 10:00:00+00' + g * interval '1 s',
       timestamptz '2026-11-30 10:00:00+00' + g * interval '1 s' + interval '25 ms',
       g, CASE WHEN g <= 10 THEN 200 WHEN g <= 15 THEN 500 END,
       CASE WHEN g > 15 THEN 'timeout: no answer within 10000 ms' WHEN g > 10 THEN 'HTTP 500' END,
       CASE WHEN g <= 10 THEN g * 10 END
  FROM generate_series(1, 20) g;
INSERT INTO pg_sync._attempts (slot, endpoint_id, started_at, finished_at, events, status, error, lag_ms)
SELECT 20 + g, (SELECT id FROM pg_sync._endpoints WHERE name = 'b'),
       timestamptz '2026-11-30 11:00:00+00' + g * interval '1 s',
       timestamptz '2026-11-30 11:00:00+00' + g * interval '1 s' + interval '1.5 ms', 1, 204, NULL, 1500
  FROM generate_series(1, 3) g;

-- Newest first; duration and lag are intervals.
SELECT endpoint, started_at AT TIME ZONE 'UTC' AS started_utc, events, status, duration, error, lag
  FROM pg_sync.recent_attempts LIMIT 6;
SELECT endpoint, count(*), count(*) FILTER (WHERE status BETWEEN 200 AND 299) AS ok
  FROM pg_sync.recent_attempts GROUP BY 1 ORDER BY 1;

-- Lag percentiles come from the 2xx requests only (failures have no lag).
SELECT endpoint, lag_p50, lag_p99 FROM pg_sync.endpoint_status ORDER BY 1;

-- health(): a failed half of the last requests is over the 0.2 default; b is fine.
SELECT severity, endpoint, problem, detail FROM pg_sync.health() WHERE problem = 'error rate';
SET pg_sync.health_max_error_rate = 0.6;
SELECT count(*) AS error_rate_rows FROM pg_sync.health() WHERE problem = 'error rate';
RESET pg_sync.health_max_error_rate;

-- A dropped endpoint's requests leave the view with it.
SELECT pg_sync.drop_endpoint('b');
SELECT DISTINCT endpoint FROM pg_sync.recent_attempts;

-- Monitors read it; other roles do not; nobody but the worker writes the ring.
CREATE ROLE ra_monitor IN ROLE pgsync_monitor;
CREATE ROLE ra_nobody;
SET ROLE ra_monitor;
SELECT count(*) FROM pg_sync.recent_attempts;
DELETE FROM pg_sync._attempts;
RESET ROLE;
SET ROLE ra_nobody;
SELECT count(*) FROM pg_sync.recent_attempts;
RESET ROLE;

-- The ring's size is a setting (reload); 0 keeps none.
SELECT name, setting, context FROM pg_settings WHERE name = 'pg_sync.recent_attempts_size';

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
DROP ROLE ra_monitor, ra_nobody;
RESET client_min_messages;
