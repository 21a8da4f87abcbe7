-- Schema for bench/growth and bench/scale, loaded into each fresh database they use. @NGINX_PORT@
-- is filled in by the benchmark; :endpoint, :batch_size and :max_in_flight come from psql -v.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION pg_sync;
CREATE EXTENSION pgstattuple;   -- pgstatindex / pgstattuple_approx, to look inside the relations

-- The captured table (as in bench/capture and bench/delivery: about 300 bytes of JSON per event).
CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    customer_id int NOT NULL,
    status      text NOT NULL,
    amount      numeric(12,2) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    note        text
);
-- The source table is not what this benchmark measures: keep its own autovacuum out of the way.
ALTER TABLE orders SET (autovacuum_enabled = off);

SELECT pg_sync.create_endpoint(:'endpoint', 'http://127.0.0.1:@NGINX_PORT@/hook',
                               batch_size => :batch_size, max_in_flight => :max_in_flight);
SELECT pg_sync.track('public.orders', :'endpoint');
