-- Endpoint configuration: create, alter, pause/resume, drop.
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('orders-hook', 'https://example.com/hooks/orders');
SELECT name, url, header_names, has_secret, batch_size, max_attempts, timeout_ms, max_in_flight,
       retry_base_ms, retry_max_ms, paused FROM pg_sync.endpoints;
