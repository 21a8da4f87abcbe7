-- Schema for bench/soak, loaded once into a fresh server. @FLAKY_URL@, @HEALTHY_URL@, @SECRET@ and
-- @ENDPOINT_OPTS@ are filled in by bench/soak.
--
-- A small shop: customers, products, orders, order_items. Every row carries a version v: 1 when
-- inserted, +1 at every UPDATE, so a key's committed versions are exactly 1..v of its row. A DELETE
-- writes the row's last version into tombstones (not tracked) in the same transaction, so deleted
-- keys can be checked too: versions 1..v plus one delete event whose old.v is v. Keys are never
-- reused (bigserial).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION pg_sync;

CREATE TABLE customers (
    id         bigserial PRIMARY KEY,
    v          int NOT NULL DEFAULT 1,
    name       text NOT NULL,
    email      text NOT NULL,
    city       text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
    id         bigserial PRIMARY KEY,
    v          int NOT NULL DEFAULT 1,
    sku        text NOT NULL,
    name       text NOT NULL,
    price      numeric(10,2) NOT NULL,
    stock      int NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    v           int NOT NULL DEFAULT 1,
    customer_id bigint NOT NULL,
    status      text NOT NULL,
    total       numeric(12,2) NOT NULL,
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE order_items (
    id         bigserial PRIMARY KEY,
    v          int NOT NULL DEFAULT 1,
    order_id   bigint NOT NULL,
    product_id bigint NOT NULL,
    qty        int NOT NULL,
    price      numeric(10,2) NOT NULL
);
CREATE INDEX order_items_order_id ON order_items (order_id);
CREATE TABLE tombstones (
    tbl text NOT NULL,
    id  bigint NOT NULL,
    v   int NOT NULL,
    PRIMARY KEY (tbl, id)
);

-- Two endpoints with create_endpoint's defaults (plus ENDPOINT_OPTS): "flaky" (a receiver that
-- fails a fraction of requests and is restarted every few minutes) and "healthy" (always 204).
SELECT pg_sync.create_endpoint('flaky', '@FLAKY_URL@', secret => '@SECRET@' @ENDPOINT_OPTS@);
SELECT pg_sync.create_endpoint('healthy', '@HEALTHY_URL@', secret => '@SECRET@' @ENDPOINT_OPTS@);
SELECT pg_sync.track(t, e)
  FROM unnest(ARRAY['customers', 'products', 'orders', 'order_items']) t,
       unnest(ARRAY['flaky', 'healthy']) e;
