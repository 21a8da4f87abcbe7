#!/usr/bin/env bash
# A long-lived writer session keeps capturing correctly while another session changes the
# configuration: the per-backend capture plan cache is invalidated at the other session's
# commit (track for another endpoint, untrack, ADD COLUMN, DROP TABLE + re-create).
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/session.sh
pg_start live
trap pg_stop EXIT

q >/dev/null <<'SQL'
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('a', 'http://127.0.0.1:9/a');
SELECT pg_sync.create_endpoint('b', 'http://127.0.0.1:9/b');
CREATE TABLE items (id int PRIMARY KEY, name text);
SELECT pg_sync.track('items', 'a');
SQL

# The writer: one long-lived session (test/lib/session.sh).
session_open
events() {
    q -c "SELECT string_agg(e.name || ':' || (q.key->>'id') || ':' || q.new_row::text, ' ' ORDER BY q.id)
            FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id WHERE q.key->>'id' = '$1'"
}

session "INSERT INTO items VALUES (1, 'one');"
assert_eq "$(events 1)" 'a:1:{"id":1,"name":"one"}' "before any change"

q -c "SELECT pg_sync.track('items', 'b', columns => '{name}')" >/dev/null
session "INSERT INTO items VALUES (2, 'two');"
assert_eq "$(events 2)" 'a:2:{"id":2,"name":"two"} b:2:{"name":"two"}' "after track for b in another session"

q -c "SELECT pg_sync.untrack('items', 'a')" >/dev/null
q -c "ALTER TABLE items ADD COLUMN price numeric DEFAULT 9" >/dev/null
q -c "SELECT pg_sync.track('items', 'b')" >/dev/null
session "INSERT INTO items VALUES (3, 'three');"
assert_eq "$(events 3)" 'b:3:{"id":3,"name":"three","price":9}' "after untrack a, ADD COLUMN, re-track b"

# Inside the writer's own open transaction the plan stays usable while others commit changes.
session "BEGIN; INSERT INTO items VALUES (4, 'four');"
q -c "SELECT pg_sync.track('items', 'a', columns => '{id}')" >/dev/null
session "INSERT INTO items VALUES (5, 'five'); COMMIT;"
assert_eq "$(events 4)" 'b:4:{"id":4,"name":"four","price":9}' "row 4 (before a was tracked)"
n5=$(events 5)
[[ "$n5" == *'b:5:{"id":5,"name":"five","price":9}'* ]] || fail "row 5 not captured for b: $n5"

# Drop and re-create the table with the same name: the old tracking is gone with it.
q -c "DROP TABLE items" >/dev/null
q -c "CREATE TABLE items (id int PRIMARY KEY, name text)" >/dev/null
session "INSERT INTO items VALUES (6, 'six');"
assert_eq "$(events 6)" "" "no capture for a re-created, untracked table"
q -c "SELECT pg_sync.track('items', 'b')" >/dev/null
session "INSERT INTO items VALUES (7, 'seven');"
assert_eq "$(events 7)" 'b:7:{"id":7,"name":"seven"}' "re-created table tracked again"
echo "ok: a long-lived writer follows configuration and schema changes made by other sessions"
