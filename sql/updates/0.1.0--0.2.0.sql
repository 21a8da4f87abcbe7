-- Delta 0.1.0 -> 0.2.0 (what the definitions in sql/src/ cannot do; rules: sql/updates/README.md).
--
-- 0.2.0: backfill (pg_sync._backfills, backfill/cancel_backfill/resume_backfill, the
-- pg_sync.backfills view, a health() row), protection of the capture triggers (the DDL event
-- trigger also fires on CREATE/ALTER TRIGGER), locking fixes in the configuration functions,
-- clearer errors, vacuum_index_cleanup on the queue.

ALTER TABLE pg_sync._queue SET (vacuum_index_cleanup = on);

-- _endpoint_id(endpoint, for_update bool) became _endpoint_id(endpoint, mode text).
DROP FUNCTION IF EXISTS pg_sync._endpoint_id(text, bool);

CREATE TABLE pg_sync._backfills (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tbl           regclass NOT NULL,
    endpoint_id   int NOT NULL REFERENCES pg_sync._endpoints (id) ON DELETE CASCADE,
    batch_rows    int NOT NULL,
    requested_by  oid NOT NULL,
    state         text NOT NULL DEFAULT 'running'
                  CHECK (state IN ('running', 'done', 'cancelled', 'failed')),
    last_key      text[],            -- page key of the last row read; NULL: from the start
    rows_scanned  bigint NOT NULL DEFAULT 0,
    rows_enqueued bigint NOT NULL DEFAULT 0,
    batches       bigint NOT NULL DEFAULT 0,
    first_id      bigint,            -- first queue id this job enqueued (for its throttle)
    waiting_for   text,              -- why the last attempt did not advance
    last_error    text,
    retry_at      timestamptz,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE UNIQUE INDEX _backfills_one_running ON pg_sync._backfills (tbl, endpoint_id) WHERE state = 'running';

-- The DDL event trigger also follows CREATE TRIGGER / ALTER TRIGGER now (its function exists
-- since 0.1.0; sql/src/ddl.sql replaces its body afterwards).
DROP EVENT TRIGGER pg_sync_ddl_end;
CREATE EVENT TRIGGER pg_sync_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER')
    EXECUTE FUNCTION pg_sync._on_ddl_end();
