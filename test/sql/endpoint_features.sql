-- Secret rotation (pg_sync.rotate_secret), the request format (format => 'cloudevents') and trace
-- context (pg_sync.traceparent): the SQL surface, bad input (refused, nothing changed), what the
-- views show, privileges. Delivery itself: test/220_endpoint_features.sh.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_sync CASCADE;
RESET client_min_messages;
CREATE EXTENSION pg_sync;

-- ------------------------------------------------------------------------------------------
-- 1. Secret rotation
SELECT pg_sync.create_endpoint('signed', 'https://example.com/h', secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT pg_sync.create_endpoint('unsigned', 'https://example.com/u');
SELECT pg_sync.create_endpoint('stream', 'kafka://broker.example.com/orders');
CREATE TEMP VIEW secrets AS
SELECT name, secret, previous_secret, previous_secret_until IS NOT NULL AS has_until FROM pg_sync._endpoints ORDER BY name;

-- Bad input: refused with a clear error, nothing changed.
SELECT pg_sync.rotate_secret('nope', 'whsec_dGhpcnR5LXR3by1ieXRlcy1vZi1yYW5kb21uZXNzISE=');
SELECT pg_sync.rotate_secret('signed', NULL);
SELECT pg_sync.rotate_secret('signed', '');
SELECT pg_sync.rotate_secret('signed', 'whsec_c2hvcnQ=');
SELECT pg_sync.rotate_secret('signed', 'not-a-secret');
SELECT pg_sync.rotate_secret('signed', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT pg_sync.rotate_secret('signed', 'whsec_dGhpcnR5LXR3by1ieXRlcy1vZi1yYW5kb21uZXNzISE=', overlap => '-1 hour');
SELECT pg_sync.rotate_secret('signed', 'whsec_dGhpcnR5LXR3by1ieXRlcy1vZi1yYW5kb21uZXNzISE=', overlap => NULL);
-- No secret to rotate from: refused (the first secret is set with alter_endpoint).
SELECT pg_sync.rotate_secret('unsigned', 'whsec_dGhpcnR5LXR3by1ieXRlcy1vZi1yYW5kb21uZXNzISE=');
-- Kafka records are not signed.
SELECT pg_sync.rotate_secret('stream', 'whsec_dGhpcnR5LXR3by1ieXRlcy1vZi1yYW5kb21uZXNzISE=');
SELECT * FROM secrets;
SELECT name, has_secret, secret_rotation_until FROM pg_sync.endpoints ORDER BY name;

-- A rotation: the new secret is current, the old one signs too until the returned time.
SELECT r.until = now() + interval '2 hours' AS ends_in_two_hours
  FROM (SELECT pg_sync.rotate_secret('signed', 'whsec_dGhpcnR5LXR3by1ieXRlcy1vZi1yYW5kb21uZXNzISE=', overlap => '2 hours')
               AS until) r;
SELECT * FROM secrets;
SELECT name, has_secret, secret_rotation_until = (SELECT previous_secret_until FROM pg_sync._endpoints WHERE name = 'signed')
       AS rotation_shown
  FROM pg_sync.endpoints WHERE name = 'signed';
-- No view shows either secret.
SELECT count(*) AS shown FROM pg_sync.endpoints e
 WHERE e::text LIKE '%MfKQ9r8%' OR e::text LIKE '%dGhpcnR5%';
-- Rotating again keeps only the secret current until then as the previous one.
SELECT pg_sync.rotate_secret('signed', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') IS NOT NULL AS rotated;
SELECT * FROM secrets;
-- alter_endpoint(secret => ...) ends the rotation; so does secret => '' (which removes both).
SELECT pg_sync.alter_endpoint('signed', secret => 'whsec_dGhpcnR5LXR3by1ieXRlcy1vZi1yYW5kb21uZXNzISE=');
SELECT * FROM secrets;
SELECT pg_sync.rotate_secret('signed', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') IS NOT NULL AS rotated;
SELECT pg_sync.alter_endpoint('signed', batch_size => 10); -- other settings keep it
SELECT name, previous_secret IS NOT NULL AS rotating FROM pg_sync._endpoints WHERE name = 'signed';
SELECT pg_sync.alter_endpoint('signed', secret => '');
SELECT * FROM secrets;
-- overlap => '0': replaced at once, nothing to show.
SELECT pg_sync.alter_endpoint('signed', secret => 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT pg_sync.rotate_secret('signed', 'whsec_dGhpcnR5LXR3by1ieXRlcy1vZi1yYW5kb21uZXNzISE=', overlap => '0') = now() AS at_once;
SELECT * FROM secrets;
-- An overlap that is over (the worker erases it at its next pass) is not shown as a rotation.
UPDATE pg_sync._endpoints SET previous_secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
                              previous_secret_until = now() - interval '1 second' WHERE name = 'signed';
SELECT name, secret_rotation_until FROM pg_sync.endpoints WHERE name = 'signed';

-- ------------------------------------------------------------------------------------------
-- 2. format
SELECT pg_sync.create_endpoint('ce', 'https://example.com/ce', format => 'cloudevents');
SELECT name, format FROM pg_sync.endpoints ORDER BY name;
SELECT pg_sync.create_endpoint('bad', 'https://example.com/b', format => 'CloudEvents');
SELECT pg_sync.create_endpoint('bad', 'https://example.com/b', format => '');
SELECT pg_sync.create_endpoint('bad', 'https://example.com/b', format => NULL);
-- Kafka: one record per event, no request body: the format is refused.
SELECT pg_sync.create_endpoint('bad', 'kafka://broker.example.com/t', format => 'cloudevents');
SELECT pg_sync.alter_endpoint('stream', format => 'cloudevents');
SELECT pg_sync.alter_endpoint('ce', url => 'kafka://broker.example.com/t');
SELECT pg_sync.alter_endpoint('ce', format => 'xml');
SELECT name, url, format FROM pg_sync.endpoints ORDER BY name;
SELECT pg_sync.alter_endpoint('ce', format => 'webhook');
SELECT pg_sync.alter_endpoint('ce', url => 'kafka://broker.example.com/t'); -- now it may
SELECT pg_sync.alter_endpoint('stream', format => 'webhook'); -- the one it has: accepted
SELECT name, url, format FROM pg_sync.endpoints ORDER BY name;

-- ------------------------------------------------------------------------------------------
-- 3. pg_sync.traceparent
SET pg_sync.traceparent = 'garbage';
SET pg_sync.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1';
SET pg_sync.traceparent = '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01';
SET pg_sync.traceparent = '00-00000000000000000000000000000000-00f067aa0ba902b7-01';
SET pg_sync.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01';
SET pg_sync.traceparent = '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SET pg_sync.traceparent = 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SET pg_sync.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra';
SELECT set_config('pg_sync.traceparent', 'x', true);
SHOW pg_sync.traceparent;

SELECT pg_sync.create_endpoint('hook', 'https://example.com/hook');
CREATE TABLE tr (id int PRIMARY KEY, v text);
SELECT pg_sync.track('tr', 'hook');
BEGIN;
SET LOCAL pg_sync.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
INSERT INTO tr VALUES (1, 'traced'), (2, 'traced');
SELECT pg_sync.emit('hook', 'order.paid', '{"n": 1}', key => 'o-1');
SAVEPOINT s;
SET LOCAL pg_sync.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00';
UPDATE tr SET v = 'other trace' WHERE id = 1;
RELEASE s;
TRUNCATE tr;
COMMIT;
SHOW pg_sync.traceparent; -- SET LOCAL: gone with the transaction
INSERT INTO tr VALUES (3, 'untraced');
SELECT pg_sync.emit('hook', 'order.paid', '{"n": 2}');
SELECT id, op, key::text, traceparent FROM pg_sync._queue WHERE endpoint_id = (SELECT id FROM pg_sync._endpoints WHERE name = 'hook')
 ORDER BY id;

-- Dead letters keep it, redeliver() puts it back.
WITH moved AS (DELETE FROM pg_sync._queue q WHERE q.op = 'emit' AND q.traceparent IS NOT NULL RETURNING q.*)
INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at,
                                   attempts, traceparent)
SELECT id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at, 1, traceparent FROM moved;
SELECT op, traceparent FROM pg_sync._dead_letters;
SELECT pg_sync.redeliver('hook');
SELECT op, traceparent FROM pg_sync._queue WHERE op = 'emit' ORDER BY id;

-- ------------------------------------------------------------------------------------------
-- 4. Privileges: rotate_secret is an admin's, like the other endpoint functions.
CREATE ROLE regress_ef_admin IN ROLE pgsync_admin;
CREATE ROLE regress_ef_monitor IN ROLE pgsync_monitor;
CREATE ROLE regress_ef_outsider;
SELECT p.oid::regprocedure AS fn, p.prosecdef, p.proconfig,
       has_function_privilege('regress_ef_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('regress_ef_monitor', p.oid, 'EXECUTE') AS monitor,
       has_function_privilege('regress_ef_outsider', p.oid, 'EXECUTE') AS outsider
  FROM pg_proc p WHERE p.pronamespace = 'pg_sync'::regnamespace AND p.proname = 'rotate_secret';
SET ROLE regress_ef_monitor;
SELECT pg_sync.rotate_secret('signed', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT name, format, secret_rotation_until FROM pg_sync.endpoints WHERE name = 'signed';
SET ROLE regress_ef_outsider;
SELECT pg_sync.rotate_secret('signed', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SET ROLE regress_ef_admin;
SELECT pg_sync.rotate_secret('signed', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', '1 hour') IS NOT NULL AS rotated;
RESET ROLE;
SELECT name, previous_secret IS NOT NULL AS rotating FROM pg_sync._endpoints WHERE name = 'signed';

DROP TABLE tr;
SET client_min_messages = warning;
DROP EXTENSION pg_sync CASCADE;
RESET client_min_messages;
DROP ROLE regress_ef_admin, regress_ef_monitor, regress_ef_outsider;
