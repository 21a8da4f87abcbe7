-- Delta 0.2.0 -> 0.3.0 (what the definitions in sql/src/ cannot do; rules: sql/updates/README.md).
--
-- 0.3.0 (security and correctness, docs/security.md): filters run with the rights of the role
-- that wrote them under the session settings recorded with them (_tracked.filter_role,
-- filter_settings); backfill renders rows in C like the capture trigger; a URL change needs the
-- caller to read every tracked table and, to another origin, the credentials again; resuming a
-- backfill makes the caller its requester; monitors see no row data; the capture-trigger guard
-- is open only while pg_sync changes its triggers; event names are case-mapped in the C
-- collation; replicated changes to pg_sync's tables are ignored (the triggers of
-- sql/src/replication.sql); health() reports filter authors and publications/subscriptions of
-- pg_sync's tables.

-- Filters written before 0.3.0 have no recorded author (filter_role NULL): they keep running as
-- the writer, as in 0.2.0, backfill refuses them, and health() asks for track() to be called
-- again, which records the author.
ALTER TABLE pg_sync._tracked ADD COLUMN filter_role regrole, ADD COLUMN filter_settings text[];

-- Kafka endpoints (kafka:// URLs): their librdkafka settings, a new last parameter of
-- create_endpoint, alter_endpoint and the functions behind them.
ALTER TABLE pg_sync._endpoints ADD COLUMN kafka_settings jsonb NOT NULL DEFAULT '{}';
DROP FUNCTION IF EXISTS pg_sync.create_endpoint(text, text, jsonb, text, int, int, int, int, int, int);
DROP FUNCTION IF EXISTS pg_sync.alter_endpoint(text, text, jsonb, text, int, int, int, int, int, int);
DROP FUNCTION IF EXISTS pg_sync._alter_endpoint(text, text, jsonb, text, int, int, int, int, int, int, regrole);
DROP FUNCTION IF EXISTS pg_sync._check_endpoint(text, text, jsonb, text, int, int, int, int, int, int);

-- Rate limit, request size and permanent statuses per endpoint (new last parameters of
-- create_endpoint and alter_endpoint), and the worker's view of them.
ALTER TABLE pg_sync._endpoints
    ADD COLUMN IF NOT EXISTS max_rate float8 NOT NULL DEFAULT @default:max_rate@,
    ADD COLUMN IF NOT EXISTS max_request_bytes int NOT NULL DEFAULT @default:max_request_bytes@,
    ADD COLUMN IF NOT EXISTS permanent_statuses int[] NOT NULL DEFAULT '{}';
ALTER TABLE pg_sync._endpoint_state
    ADD COLUMN IF NOT EXISTS rate_limited bool NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS request_bytes_limit int;

-- New signatures or OUT parameters (CREATE OR REPLACE cannot change them).
DROP FUNCTION IF EXISTS pg_sync._check_filter(regclass, text);
DROP FUNCTION IF EXISTS pg_sync._track(regclass, text, text[], text[], text[], text);
DROP FUNCTION IF EXISTS pg_sync._backfill_page(bigint);

-- The queue becomes three partitions that take turns (sql/src/queue.sql creates them after this
-- delta and moves the events of the old queue in, keeping their ids).
ALTER SEQUENCE pg_sync._queue_id_seq OWNED BY NONE;
ALTER TABLE pg_sync._queue RENAME TO _queue_before_0_3_0;
ALTER INDEX pg_sync._queue_pkey RENAME TO _queue_before_0_3_0_pkey;

-- Endpoints: the request format (CloudEvents) and secret rotation (pg_sync.rotate_secret), new
-- columns and a new last parameter `format` of create_endpoint, alter_endpoint and
-- _alter_endpoint. Dead letters keep the writer's traceparent, as the queue (sql/src/queue.sql).
ALTER TABLE pg_sync._endpoints ADD COLUMN IF NOT EXISTS format text NOT NULL DEFAULT 'webhook',
                               ADD COLUMN IF NOT EXISTS previous_secret text,
                               ADD COLUMN IF NOT EXISTS previous_secret_until timestamptz;

-- TLS client certificates and private CAs, OAuth2 client credentials: new last parameters of
-- create_endpoint, alter_endpoint and _alter_endpoint (after format).
ALTER TABLE pg_sync._endpoints ADD COLUMN IF NOT EXISTS tls_client_cert text,
                               ADD COLUMN IF NOT EXISTS tls_client_key text,
                               ADD COLUMN IF NOT EXISTS tls_ca text,
                               ADD COLUMN IF NOT EXISTS oauth2 jsonb NOT NULL DEFAULT '{}';
ALTER TABLE pg_sync._dead_letters ADD COLUMN IF NOT EXISTS traceparent text;
