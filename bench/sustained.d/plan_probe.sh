#!/usr/bin/env bash
# The diagnosis probe of bench/sustained: which generic plans the delivery worker gets for its
# head-of-queue read and its delete of delivered events when they are made for an empty queue or
# a full one, what they cost on a full queue, and what the head read costs on a queue whose first
# events were delivered (deleted) but not yet vacuumed. Runs bench/sustained.d/plan_probe.sql in a
# throwaway server (test/lib/pg.sh, PG_BIN as for the tests) and prints its output.
# Environment: ROWS (events queued, default 300000), DELETED (of them deleted from the head,
# default 290000).
set -euo pipefail
ROWS=${ROWS:-300000}
DELETED=${DELETED:-290000}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../../test/lib/pg.sh"
trap pg_stop EXIT
pg_start plan_probe shared_buffers=512MB max_wal_size=4GB >/dev/null
psql -X -q -v rows="$ROWS" -v deleted="$DELETED" -f "$here/plan_probe.sql"
