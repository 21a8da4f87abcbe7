// Change capture: the trigger, its per-relation plan cache and the queue insert.
// Include after postgres.h.
#pragma once

struct RelationData;
struct TupleTableSlot;

namespace pg_sync::pg {
// Registers the relcache callback that keeps capture plans current. Called from _PG_init.
void capture_init();

// Backfill: renders one row of the tracked table `rel` (in a slot of rel's row type) as the
// capture trigger renders it for the endpoint: same columns, canonical key, the filter run with
// the rights and settings of the role that wrote it (OLD all-NULL, as for an insert). Returns
// false when the filter rejects the row. Errors when the table is not tracked for the endpoint.
bool render_snapshot(RelationData *rel, int32 endpoint_id, TupleTableSlot *slot, Datum *key, Datum *new_row);
// Backfill: a new page is a new statement for the per-statement checks of filters.
void capture_new_statement();
} // namespace pg_sync::pg
