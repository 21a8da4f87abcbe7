#!/usr/bin/env bash
# Upgrade from every earlier version (the pg_sync--V--<current>.sql scripts), with events queued:
#   a) CREATE EXTENSION pg_sync VERSION '<old>' with endpoints, tracking, pending events and a dead
#      letter; ALTER EXTENSION pg_sync UPDATE; every event is then delivered once, in order, the
#      dead letter can be redelivered, and features of the new version work (backfill);
#   b) the upgraded schema is the fresh install's: every member object of the extension with its
#      definition (columns in order, defaults, indexes, constraints, function bodies, views),
#      descriptions (COMMENT ON), privileges and pg_dump marks, read from the catalogs of both databases, must be identical;
#   c) DROP EXTENSION with events pending: refused without CASCADE while tables are tracked;
#      with CASCADE the queue, configuration and capture triggers go, the tracked tables and their
#      rows stay, the worker leaves, and a new CREATE EXTENSION starts clean.
# The library of the current build serves both versions: before ALTER EXTENSION UPDATE runs, the
# worker must work against the old schema (checked in a: events flow before the update too).
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
current=$(sed -n 's/^EXTVERSION *= *//p' Makefile)
# Every released version: its install script is kept, frozen, in sql/released/; ALTER EXTENSION
# UPDATE takes the direct update script the Makefile generates from it (sql/updates/ and sql/src/).
make -s check-released-sql PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" >/dev/null ||
    fail "a released install script in sql/released/ changed"
previous=$(ls sql/released/pg_sync--*.sql.gz | sed 's/.*pg_sync--\(.*\)\.sql\.gz/\1/' | grep -vx "$current" | sort -V)
[ -n "$previous" ] || fail "no earlier version in sql/released/"
pg_start upgrade
trap delivery_test_exit EXIT
receiver_start hook

for old in $previous; do
    echo "-- from $old to $current"
    # Each version starts with an empty receiver log (its database's ids start at 1 again).
    receiver_stop hook
    : >"$hook_OUT"
    receiver_restart hook
    db="up_${old//./_}"
    q -c "CREATE DATABASE $db" >/dev/null
    export PGDATABASE=$db
    # --- a) upgrade with events queued ----------------------------------------------------------
    q >/dev/null <<SQL
CREATE EXTENSION pg_sync VERSION '$old';
SELECT pg_sync.create_endpoint('hook', '$hook_URL', batch_size => 20, max_attempts => 1);
CREATE TABLE orders (id int PRIMARY KEY, v int NOT NULL DEFAULT 1);
SELECT pg_sync.track('orders', 'hook');
SQL
    assert_eq "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_sync'")" "$old" "installed version"
    # A filtered table under the new library before the update: track() with a filter, DDL that
    # re-checks it (the old schema calls the C functions with its old signatures), writes that run
    # it (as the writer, as before: the old schema records no author).
    q >/dev/null <<'SQL'
CREATE TABLE filtered (id int PRIMARY KEY, v int NOT NULL);
CREATE TABLE filter_seen (who text);
CREATE FUNCTION seen_by() RETURNS bool LANGUAGE plpgsql VOLATILE AS
$$ BEGIN INSERT INTO public.filter_seen VALUES (current_user); RETURN true; END $$;
CREATE FUNCTION keep(v int) RETURNS bool LANGUAGE plpgsql STABLE AS $$ BEGIN PERFORM public.seen_by(); RETURN v > 0; END $$;
DO $$ BEGIN CREATE ROLE upgrade_writer; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT INSERT, SELECT ON filtered TO upgrade_writer;
GRANT INSERT ON filter_seen TO upgrade_writer;
SELECT pg_sync.track('filtered', 'hook', filter => 'public.keep(NEW.v)');
ALTER TABLE filtered ADD COLUMN note text;
SQL
    q -c "SET ROLE upgrade_writer; INSERT INTO filtered VALUES (1, 1), (2, 0)" >/dev/null
    assert_eq "$(q -c "SELECT string_agg(DISTINCT who, ',') FROM filter_seen")" upgrade_writer "before the update the filter runs as the writer"
    # The current library's worker delivers for the old schema.
    q -c "INSERT INTO orders SELECT g FROM generate_series(1, 50) g" >/dev/null
    wait_for "delivery before the update" 60 cond "(SELECT pending = 0 FROM pg_sync.endpoint_status)"
    # A dead letter (the receiver fails once, max_attempts 1), then a backlog while paused.
    receiver_mode hook '{"mode": "status", "status": 500}'
    q -c "UPDATE orders SET v = 2 WHERE id = 7" >/dev/null
    wait_for "a dead letter" 60 cond "(SELECT dead = 1 FROM pg_sync.endpoint_status)"
    receiver_mode hook '{"mode": "ok"}'
    q >/dev/null <<'SQL'
SELECT pg_sync.pause_endpoint('hook');
UPDATE orders SET v = v + 10 WHERE id <= 30;
INSERT INTO orders SELECT g FROM generate_series(51, 80) g;
SQL
    assert_eq "$(q -c "SELECT pending FROM pg_sync.endpoint_status")" 60 "queued before the update"
    # One step: the direct script (the generated scripts lead from every earlier version to the current one).
    assert_eq "$(q -c "SELECT path FROM pg_extension_update_paths('pg_sync') WHERE source = '$old' AND target = '$current'")" \
        "$old--$current" "direct update path"
    # What a DBA built on the extension survives the update: a view over pg_sync.workers, a grant
    # to another role, a grant to PUBLIC (taken back below, before the schema comparison).
    q >/dev/null <<'SQL'
CREATE VIEW my_workers AS SELECT database, state FROM pg_sync.workers;
DO $$ BEGIN CREATE ROLE upgrade_viewer; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT SELECT ON pg_sync.endpoint_status TO upgrade_viewer;
GRANT EXECUTE ON FUNCTION pg_sync.health() TO PUBLIC;
SQL
    q -c "ALTER EXTENSION pg_sync UPDATE" >/dev/null
    assert_eq "$(q -c "SELECT count(*) > 0 FROM my_workers")" t "a view over pg_sync.workers survives"
    assert_eq "$(q -c "SELECT has_table_privilege('upgrade_viewer', 'pg_sync.endpoint_status', 'SELECT')
                        AND has_function_privilege('public', 'pg_sync.health()', 'EXECUTE')")" t "DBA grants survive"
    q >/dev/null <<'SQL'
DROP VIEW my_workers;
REVOKE SELECT ON pg_sync.endpoint_status FROM upgrade_viewer;
REVOKE EXECUTE ON FUNCTION pg_sync.health() FROM PUBLIC;
SQL
    assert_eq "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_sync'")" "$current" "updated version"
    assert_eq "$(q -c "SELECT pending || '/' || dead FROM pg_sync.endpoint_status")" "60/1" "events kept by the update"
    # A filter from before the update has no recorded author: it keeps the writer's rights, never
    # gains the owner's; health() asks for track() again.
    q -c "DELETE FROM filter_seen; SET ROLE upgrade_writer; INSERT INTO filtered VALUES (3, 1)" >/dev/null
    assert_eq "$(q -c "SELECT string_agg(DISTINCT who, ',') FROM filter_seen")" upgrade_writer "after the update the old filter still runs as the writer"
    assert_eq "$(q -c "SELECT count(*) FROM pg_sync.health() WHERE problem = 'filter author unknown'")" 1 "health() names the filter without author"
    q -c "SELECT pg_sync.untrack('filtered')" >/dev/null
    q -c "SELECT pg_sync.resume_endpoint('hook'); SELECT pg_sync.redeliver('hook')" >/dev/null
    wait_for "delivery after the update" 60 cond "(SELECT pending = 0 AND dead = 0 FROM pg_sync.endpoint_status)"
    # Every row's last version arrived last for its key, ids increase per key.
    receiver_events hook | /usr/bin/python3 -c '
import json, sys
last, seven = {}, []
for line in sys.stdin:
    e = json.loads(line)
    if e["table"] != "public.orders":
        continue
    k = e["key"]["id"]
    if k in last and e["id"] < last[k][0]:
        sys.exit(f"key {k}: event {e['"'"'id'"'"']} after {last[k][0]}")
    last[k] = (e["id"], e["new"]["v"] if e["new"] else None)
    if k == 7 and e["op"] != "snapshot":
        seven.append(last[k][1])
print(len(last), sorted(set(v for _, v in last.values())), seven)' >"$PG_DIR/last"
    assert_eq "$(cat "$PG_DIR/last")" "80 [1, 11, 12] [1, 2, 12]" "keys delivered, their last versions, key 7 (dead letter redelivered) in order"
    # A feature of the new version.
    id=$(q -c "SELECT pg_sync.backfill('orders', 'hook', 25)" 2>/dev/null)
    wait_for "backfill after the update" 60 cond "(SELECT state = 'done' AND rows_enqueued = 80 FROM pg_sync.backfills WHERE id = $id)"
    echo "ok a: $old -> $current with 60 pending events and a dead letter; all delivered in order; backfill works"

    # --- b) same schema as a fresh install ---------------------------------------------------------
    q -d postgres -c "CREATE DATABASE fresh_${db}" >/dev/null
    q -d "fresh_${db}" -c "CREATE EXTENSION pg_sync" >/dev/null
    # pg_dump leaves extension members out, so the schema is compared from the catalogs: every
    # member object with its full definition and privileges, and the config-dump marks.
    snapshot() {
        q -d "$1" <<'SQL'
WITH members AS (
    SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'pg_sync' AND d.deptype = 'e')
SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
       || ' opts=' || coalesce(c.reloptions::text, '') || coalesce(' view=' || pg_get_viewdef(c.oid), '')
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'column ' || c.oid::regclass || '.' || a.attname || ' #' || a.attnum || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
UNION ALL
SELECT 'constraint ' || co.conrelid::regclass || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
  FROM members m JOIN pg_constraint co ON m.classid = 'pg_class'::regclass AND co.conrelid = m.objid
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' acl=' || coalesce(p.proacl::text, '') || E'\n' || pg_get_functiondef(p.oid)
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
  FROM members m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid AND NOT t.tgisinternal
UNION ALL
SELECT 'event trigger ' || t.evtname || ' ' || t.evtevent || ' ' || t.evtfoid::regproc || ' ' || coalesce(t.evttags::text, '')
  FROM members m JOIN pg_event_trigger t ON m.classid = 'pg_event_trigger'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'type ' || t.oid::regtype FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'schema ' || n.nspname || ' acl=' || coalesce(n.nspacl::text, '')
  FROM members m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
UNION ALL
SELECT 'description ' || pg_describe_object(ds.classoid, ds.objoid, ds.objsubid) || ': ' || ds.description
  FROM members m JOIN pg_description ds ON ds.classoid = m.classid AND ds.objoid = m.objid
UNION ALL
SELECT 'dumped ' || x::regclass || ' where=' || coalesce(w, '')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(x, w) WHERE e.extname = 'pg_sync'
UNION ALL
SELECT 'member count ' || count(*) FROM members
ORDER BY 1;
SQL
    }
    snapshot "$db" >"$PG_DIR/upgraded.txt"
    snapshot "fresh_${db}" >"$PG_DIR/fresh.txt"
    if ! diff -u "$PG_DIR/fresh.txt" "$PG_DIR/upgraded.txt" >"$PG_DIR/schema.diff"; then
        head -n 80 "$PG_DIR/schema.diff" >&2
        fail "the upgraded schema differs from a fresh install of $current"
    fi
    [ "$(grep -c '^function ' "$PG_DIR/fresh.txt")" -gt 30 ] || fail "the schema snapshot looks empty"
    echo "ok b: the upgraded schema equals a fresh $current install ($(grep -c '^function ' "$PG_DIR/fresh.txt") functions, $(grep -c '^relation ' "$PG_DIR/fresh.txt") relations, $(grep -c '^description ' "$PG_DIR/fresh.txt") descriptions, definitions and privileges)"
done

# --- c) DROP EXTENSION with events pending ----------------------------------------------------------
export PGDATABASE=postgres
q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('drop_me', '$hook_URL');
SELECT pg_sync.pause_endpoint('drop_me');
CREATE TABLE items (id int PRIMARY KEY);
SELECT pg_sync.track('items', 'drop_me');
INSERT INTO items SELECT generate_series(1, 25);
SQL
wait_for "a worker for postgres" 30 cond "(SELECT count(*) = 1 FROM pg_sync.workers WHERE database = 'postgres')"
out=$(q -c "DROP EXTENSION pg_sync" 2>&1 || true)
assert_contains "$out" "cannot drop extension pg_sync because other objects depend on it"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue")" 25 "refused DROP keeps the events"
q -c "DROP EXTENSION pg_sync CASCADE" >/dev/null 2>&1
assert_eq "$(q -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'pg_sync'")" 0 "schema gone"
assert_eq "$(q -c "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass")" 0 "capture triggers gone"
assert_eq "$(q -c "SELECT count(*) FROM items")" 25 "tracked table keeps its rows"
q -c "INSERT INTO items VALUES (26)" >/dev/null
wait_for "the worker leaves" 30 cond "(SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_sync worker' AND datname = 'postgres')"
q -c "CREATE EXTENSION pg_sync" >/dev/null
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue") $(q -c "SELECT count(*) FROM pg_sync.endpoints")" "0 0" "a new CREATE EXTENSION starts clean"
wait_for "a worker again" 30 cond "(SELECT count(*) = 1 FROM pg_sync.workers WHERE database = 'postgres')"
echo "ok c: DROP EXTENSION refused while tables are tracked; CASCADE drops queue, config and triggers, keeps the tables; worker left and came back"

echo "PASS 180_upgrade"
