-- Schema for bench/capture: five identical tables, one per capture variant, and the baselines'
-- queue tables and trigger functions. Loaded once into a fresh server.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION pg_sync;
CREATE EXTENSION pgq;

CREATE TABLE orders_seed (
    id          bigint PRIMARY KEY,
    customer_id int NOT NULL,
    status      text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    note        text
);
INSERT INTO orders_seed
SELECT g, g % 1000, 'new', (g % 100000) / 100.0, '2026-01-01'::timestamptz + g * interval '1 second',
       'order note ' || g
  FROM generate_series(1, 100000) g;

CREATE TABLE orders_plain         (LIKE orders_seed INCLUDING ALL);
CREATE TABLE orders_outbox        (LIKE orders_seed INCLUDING ALL);
CREATE TABLE orders_outbox_notify (LIKE orders_seed INCLUDING ALL);
CREATE TABLE orders_pgq           (LIKE orders_seed INCLUDING ALL);
CREATE TABLE orders_pgsync        (LIKE orders_seed INCLUDING ALL);

-- The classic outbox: AFTER ROW, row_to_json of the row into a queue table with a bigserial id.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    tbl        text NOT NULL,
    op         text NOT NULL,
    payload    json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE outbox_notify (LIKE outbox INCLUDING ALL);
ALTER TABLE outbox_notify ALTER COLUMN id SET DEFAULT nextval('outbox_id_seq');

CREATE FUNCTION outbox_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO outbox (tbl, op, payload)
        VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, row_to_json(OLD));
    ELSE
        INSERT INTO outbox (tbl, op, payload)
        VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, row_to_json(NEW));
    END IF;
    RETURN NULL;
END
$$;

-- The same, plus the usual wake-up of the relay: pg_notify with the outbox id.
CREATE FUNCTION outbox_notify_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO outbox_notify (tbl, op, payload)
        VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, row_to_json(OLD))
        RETURNING id INTO new_id;
    ELSE
        INSERT INTO outbox_notify (tbl, op, payload)
        VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, row_to_json(NEW))
        RETURNING id INTO new_id;
    END IF;
    PERFORM pg_notify('outbox', new_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_capture AFTER INSERT OR UPDATE OR DELETE ON orders_outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_capture();
CREATE TRIGGER outbox_notify_capture AFTER INSERT OR UPDATE OR DELETE ON orders_outbox_notify
    FOR EACH ROW EXECUTE FUNCTION outbox_notify_capture();

-- PgQ: its C trigger, row data urlencoded into the queue's current event table. No ticker runs,
-- so the queue never rotates during a run.
SELECT pgq.create_queue('bench');
CREATE TRIGGER pgq_capture AFTER INSERT OR UPDATE OR DELETE ON orders_pgq
    FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('bench');

-- pg_sync: nothing delivers; the endpoint is paused so that a delivery worker, where there is
-- one, stays idle and capture alone is measured.
SELECT pg_sync.create_endpoint('bench', 'http://127.0.0.1:9/x');
SELECT pg_sync.pause_endpoint('bench');
SELECT pg_sync.track('orders_pgsync', 'bench');
