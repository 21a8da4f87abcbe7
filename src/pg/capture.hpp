// Change capture: the trigger, its per-relation plan cache, the rendering of rows as JSON, the
// filter and the queue writer (files capture_*.cpp, value_render.cpp, session_settings.cpp,
// queue_writer.cpp; their shared insides are in capture_internal.hpp). This is what the rest of
// the library calls.
#pragma once

#include "pg/pg_prelude.hpp"

namespace pg_sync::pg {

// Backfill: renders one row of the tracked table `rel` (in a slot of rel's row type) as the
// capture trigger renders it for the endpoint: same columns, canonical key, the filter run with
// the rights and settings of the role that wrote it (OLD all-NULL, as for an insert). Returns
// false when the filter rejects the row. Errors when the table is not tracked for the endpoint.
bool render_snapshot(Relation rel, int32 endpoint_id, TupleTableSlot *slot, Datum *key, Datum *new_row);
// Backfill: a new page is a new statement for the per-statement checks of filters.
void capture_new_statement();

// --- called from hooks.cpp only ---
// Relcache invalidation of relid (InvalidOid: all): forget the queue's cached definition if it
// is concerned, and mark the capture plans concerned invalid. Only marks; never reads catalogs.
void queue_writer_relation_invalidated(Oid relid);
void capture_plans_relation_invalidated(Oid relid);
// A schema was renamed (no relcache invalidation says so): every plan is invalid.
void capture_plans_namespace_invalidated();
// True while a capture trigger frame is on the stack (an executor run nested in it, a filter's
// query, is not the end of the capturing statement).
bool capture_trigger_active();
// End of a statement (executor run or utility command): write the rows this (sub)transaction
// captured, and release the queue writer unless rows of an enclosing one still wait for it.
void queue_writer_end_statement();
// Before commit / prepare: write whatever is left and release the writer.
void queue_writer_pre_commit();
// A subtransaction commits: its rows are written in it. It aborts: its rows are dropped.
void queue_writer_subxact_pre_commit(SubTransactionId subxact);
void queue_writer_subxact_abort(SubTransactionId subxact);
// Abort: drop the captured rows; the resource owner released the writer's pin and relations,
// forget them and the trigger frames the error unwound.
void queue_writer_forget();
void capture_trigger_forget();

} // namespace pg_sync::pg
