-- Delivery starts as soon as CREATE EXTENSION commits.
SELECT pg_sync._request_worker();
