-- Schema for bench/delivery, loaded once into a fresh server. @NGINX_PORT@ and @RECEIVER_PORT@
-- are filled in by bench/delivery.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION pg_sync;

-- The row every variant captures (as in bench/capture: about 300 bytes of JSON per event).
CREATE TABLE orders_seed (
    id          bigint PRIMARY KEY,
    customer_id int NOT NULL,
    status      text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    note        text
);

-- pg_sync drains: orders is tracked for endpoint "bench" (nginx).
CREATE TABLE orders (LIKE orders_seed INCLUDING ALL);
SELECT pg_sync.create_endpoint('bench', 'http://127.0.0.1:@NGINX_PORT@/hook',
                               batch_size => 100, max_in_flight => 16);
SELECT pg_sync.pause_endpoint('bench');
SELECT pg_sync.track('public.orders', 'bench');

-- pg_sync latency: orders_lat is tracked for endpoint "lat" (bench/delivery.d/receiver.py),
-- which keeps the defaults of create_endpoint.
CREATE TABLE orders_lat (LIKE orders_seed INCLUDING ALL);
SELECT pg_sync.create_endpoint('lat', 'http://127.0.0.1:@RECEIVER_PORT@/hook');
SELECT pg_sync.pause_endpoint('lat');
SELECT pg_sync.track('public.orders_lat', 'lat');

-- The classic outbox: a plpgsql AFTER ROW trigger writes row_to_json of the row into a queue
-- table with a bigserial id, in the writer's transaction; bench/delivery.d/outbox_consumer.py
-- drains it.
CREATE TABLE orders_outbox (LIKE orders_seed INCLUDING ALL);
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    tbl        text NOT NULL,
    op         text NOT NULL,
    key        json NOT NULL,
    payload    json,
    old        json,
    txid       bigint NOT NULL DEFAULT txid_current(),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION outbox_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO outbox (tbl, op, key, old)
        VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, lower(TG_OP),
                json_build_object('id', OLD.id), row_to_json(OLD));
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO outbox (tbl, op, key, payload, old)
        VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, lower(TG_OP),
                json_build_object('id', NEW.id), row_to_json(NEW), row_to_json(OLD));
    ELSE
        INSERT INTO outbox (tbl, op, key, payload)
        VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, lower(TG_OP),
                json_build_object('id', NEW.id), row_to_json(NEW));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_capture AFTER INSERT OR UPDATE OR DELETE ON orders_outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_capture();
