-- Schema for bench/sustained, loaded once into the database that pgbench -i has just filled.
-- @NGINX_PORT@ is filled in by bench/sustained. The four pgbench tables are tracked and untracked
-- per run by track.sql and untrack.sql.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION pg_sync;
-- Every setting of the endpoint is create_endpoint's default (batch_size, max_in_flight, ...).
SELECT pg_sync.create_endpoint('sink', 'http://127.0.0.1:@NGINX_PORT@/hook');
