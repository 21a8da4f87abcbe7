#!/usr/bin/env bash
# Without shared_preload_libraries, CREATE EXTENSION fails with a clear error and a hint, and
# the server keeps running.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
PG_PRELOAD="" pg_start nopreload
trap pg_stop EXIT

out=$(psql -X -At -c "CREATE EXTENSION pg_sync" 2>&1 || true)
assert_contains "$out" "pg_sync must be loaded via shared_preload_libraries"
assert_contains "$out" "HINT:  Add pg_sync to shared_preload_libraries"
assert_eq "$(q -c "SELECT count(*) FROM pg_extension WHERE extname = 'pg_sync'")" "0" "no extension left behind"
assert_eq "$(q -c "SELECT 1")" "1" "server still answers"
kill -0 "$PG_PID"
echo "ok: preload required, clear error"
