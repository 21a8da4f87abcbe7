-- pg_sync.redeliver() and pg_sync.purge_dead(): what they move, what they return, who may call
-- them, and bad input. Dead letters are made by hand here, the way the worker makes them (no
-- worker runs in the regression instance); test/080 checks the real thing.
\set SHOW_CONTEXT never
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('a', 'http://127.0.0.1:9/a');
SELECT pg_sync.create_endpoint('b', 'http://127.0.0.1:9/b');
SELECT pg_sync.emit('a', 't', '{"n": 1}', key => 'k1');
SELECT pg_sync.emit('a', 't', '{"n": 2}', key => 'k2');
SELECT pg_sync.emit('b', 't', '{"n": 3}', key => 'k1');
SELECT pg_sync.emit('a', 't', '{"n": 4}', key => 'k1'); -- waits behind n=1 once that is dead
CREATE FUNCTION kill_event(n int) RETURNS void LANGUAGE sql AS $$
    WITH moved AS (DELETE FROM pg_sync._queue WHERE new_row->>'n' = n::text RETURNING *)
    INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, tbl, key, new_row, old_row, emit_type,
                                       txid, captured_at, attempts, last_status, last_error, dead_at)
    SELECT id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at, 10, 500,
           'HTTP 500', now() - interval '2 hours'
      FROM moved;
$$;
SELECT kill_event(1), kill_event(2), kill_event(3);
SELECT endpoint, pending, dead FROM pg_sync.endpoint_status ORDER BY 1;

-- Bad input changes nothing.
SELECT pg_sync.redeliver('nope');
SELECT pg_sync.redeliver('a', ARRAY[1, NULL]::bigint[]);
SELECT pg_sync.purge_dead('nope');
SELECT pg_sync.purge_dead('a', older_than => interval '-1 day');
SELECT count(*) AS dead FROM pg_sync._dead_letters;

-- Only admins.
SET ROLE pgsync_monitor;
SELECT pg_sync.redeliver();
SELECT pg_sync.purge_dead();
RESET ROLE;

-- redeliver: by id (ids of other endpoints or unknown ids are ignored), back into the queue with
-- its id and no attempts, so it comes before n=4 of the same key.
SELECT pg_sync.redeliver('a', ARRAY(SELECT id FROM pg_sync._dead_letters WHERE new_row->>'n' IN ('1', '3')) || 999999::bigint);
SELECT new_row->>'n' AS n, key, attempts, last_error FROM pg_sync._queue
 WHERE endpoint_id = (SELECT id FROM pg_sync._endpoints WHERE name = 'a') ORDER BY id;
SELECT endpoint, pending, dead FROM pg_sync.endpoint_status ORDER BY 1;
-- Nothing left to move: 0, and no error.
SELECT pg_sync.redeliver('a', ARRAY[999999]::bigint[]);

-- purge_dead: by age, then by endpoint, then everything.
SELECT pg_sync.purge_dead(older_than => interval '3 hours');
SELECT pg_sync.purge_dead('b', older_than => interval '1 hour');
SELECT endpoint, pending, dead FROM pg_sync.endpoint_status ORDER BY 1;
SELECT pg_sync.purge_dead();
SELECT count(*) AS dead FROM pg_sync._dead_letters;

-- Leave the database as we found it for the next test file.
SET client_min_messages = warning;
DROP FUNCTION kill_event(int);
DROP EXTENSION pg_sync CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
