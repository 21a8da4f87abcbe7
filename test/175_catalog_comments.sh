#!/usr/bin/env bash
# The catalog documents itself (issue 15, item 5): every function, table, view and view column
# of the extension, and its schema, has a description (COMMENT ON, written next to each
# definition in sql/src/), and every pg_sync.* setting in pg_settings a long description
# (extra_desc, src/pg/settings.cpp), so that \df+, \dv+, \d+ and pg_settings explain them.
# Checked after CREATE EXTENSION and after ALTER EXTENSION UPDATE from every released version
# (an update re-runs the definitions and the COMMENT ON statements of the tables: Makefile, "SQL
# scripts"); the query test/lib/undocumented.sql lists what is missing. test/180_upgrade.sh
# compares the descriptions of an updated and a fresh install too.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
current=$(sed -n 's/^EXTVERSION *= *//p' Makefile)
pg_start catalog
trap pg_stop EXIT

undocumented() { # DATABASE: fails listing what has no description
    local missing
    missing=$(q -d "$1" -f test/lib/undocumented.sql)
    [ -z "$missing" ] || fail "$2: without a description (COMMENT ON in sql/src/, long_desc in src/pg/settings.cpp):
$missing"
}

q -c "CREATE EXTENSION pg_sync" >/dev/null
undocumented postgres "fresh install of $current"
# The query sees what it should check (members of the extension, the settings).
counts=$(q <<'SQL'
SELECT (SELECT count(*) FROM pg_depend d JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
         WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_sync')) || ' functions, ' ||
       (SELECT count(*) FROM pg_class WHERE relnamespace = 'pg_sync'::regnamespace AND relkind = 'v') || ' views, ' ||
       (SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         WHERE c.relnamespace = 'pg_sync'::regnamespace AND c.relkind = 'v' AND a.attnum > 0) || ' view columns, ' ||
       (SELECT count(*) FROM pg_class WHERE relnamespace = 'pg_sync'::regnamespace AND relkind IN ('r', 'p')) || ' tables, ' ||
       (SELECT count(*) FROM pg_settings WHERE name LIKE 'pg_sync.%') || ' settings'
SQL
)
[[ "$counts" =~ ^([0-9]+)\ functions,\ ([0-9]+)\ views,\ ([0-9]+)\ view\ columns,\ ([0-9]+)\ tables,\ ([0-9]+)\ settings$ ]] ||
    fail "counts: $counts"
[ "${BASH_REMATCH[1]}" -gt 30 ] && [ "${BASH_REMATCH[2]}" -ge 7 ] && [ "${BASH_REMATCH[4]}" -ge 8 ] &&
    [ "${BASH_REMATCH[5]}" -ge 10 ] || fail "the check sees too little: $counts"
echo "ok: fresh install: $counts, every one described"

# What psql shows (the point of it all).
assert_contains "$(q -c '\d+ pg_sync.endpoint_status')" "Events captured (committed) and not yet delivered nor dead"
assert_contains "$(q -c '\dv+ pg_sync.*')" "Delivery state of every endpoint"
assert_contains "$(q -c '\df+ pg_sync.track')" "Starts (or reconfigures) capture of a table for an endpoint"
assert_contains "$(q -c '\dt+ pg_sync.*')" "Internal: the queue"
echo "ok: \\d+, \\dv+, \\df+ and \\dt+ show the descriptions"

# The check fails when something lacks one (it must be able to fail).
q -c "COMMENT ON COLUMN pg_sync.endpoint_status.lag_p99 IS NULL; COMMENT ON FUNCTION pg_sync.health() IS NULL" >/dev/null
assert_eq "$(q -f test/lib/undocumented.sql | tr '\n' ' ')" "function pg_sync.health() view column pg_sync.endpoint_status.lag_p99 " \
    "the check lists what has no description"
echo "ok: a missing description is listed"

# After ALTER EXTENSION UPDATE from every released version.
for old in $(ls sql/released/pg_sync--*.sql.gz | sed 's/.*pg_sync--\(.*\)\.sql\.gz/\1/' | grep -vx "$current" | sort -V); do
    db="up_${old//./_}"
    q -c "CREATE DATABASE $db" >/dev/null
    q -d "$db" -c "CREATE EXTENSION pg_sync VERSION '$old'" -c "ALTER EXTENSION pg_sync UPDATE" >/dev/null
    assert_eq "$(q -d "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_sync'")" "$current" "updated"
    undocumented "$db" "update from $old"
    echo "ok: update from $old: every object described"
done
