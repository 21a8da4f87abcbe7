// pg_sync._ignore_replicated(): a BEFORE ROW (and BEFORE TRUNCATE) trigger on each of pg_sync's
// internal tables, enabled for replica sessions only (ENABLE REPLICA TRIGGER), so it fires in
// nothing but logical replication and sessions with session_replication_role = replica.
//
// Why: a publication FOR ALL TABLES includes pg_sync's tables. A subscriber that also runs
// pg_sync (a blue/green upgrade by logical replication) would otherwise receive the publisher's
// queue rows and deliver them a second time, and the publisher's deletes of delivered events
// would remove the subscriber's own rows with the same ids. Changes applied by a logical
// replication worker (apply or initial table sync) are therefore skipped: each system delivers
// only what it captured itself. Other replica-role sessions (a data-only restore with
// session_replication_role = replica) write as usual. A replicated TRUNCATE of a pg_sync table
// cannot be skipped (statement triggers cannot skip), so it fails, which stops the
// subscription with this message instead of wiping the subscriber's queue.
//
// Written C-style: no object with a destructor (see guard.hpp).
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_ignore_replicated);
}

namespace {

// Apply and table-sync workers both have MyLogicalRepWorker set.
bool in_logical_replication_worker() { return MyLogicalRepWorker != nullptr; }

} // namespace

extern "C" Datum pg_sync_ignore_replicated(PG_FUNCTION_ARGS) {
    if (!CALLED_AS_TRIGGER(fcinfo))
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("pg_sync._ignore_replicated() must be called as a trigger")));
    TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event)) {
        if (in_logical_replication_worker())
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("pg_sync does not apply a replicated TRUNCATE of its table %s",
                                   RelationGetRelationName(td->tg_relation)),
                            errdetail("pg_sync ignores replicated changes to its internal tables: each system "
                                      "delivers the events it captured itself."),
                            errhint("Publish the application's tables or schemas rather than FOR ALL TABLES, or "
                                    "remove pg_sync's tables from this subscription's publication.")));
        return PointerGetDatum(nullptr);
    }
    if (!TRIGGER_FIRED_FOR_ROW(td->tg_event) || !TRIGGER_FIRED_BEFORE(td->tg_event))
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("pg_sync._ignore_replicated() must be a BEFORE ROW or BEFORE TRUNCATE trigger")));
    if (in_logical_replication_worker())
        return PointerGetDatum(nullptr); // skip the replicated change
    return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple);
}
