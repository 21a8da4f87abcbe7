// The capture trigger: writes one queue row per (row change, endpoint) in the writer's
// transaction. Entry points: pg_sync._capture() (the trigger), pg_sync._config_changed(), and
// render_snapshot() for backfill.
//
// Hot path, so:
//  * per-relation capture plans (which endpoints, which columns, how to render each column,
//    the compiled filter) are cached per backend and dropped by relcache invalidation
//    (capture_plans.cpp);
//  * values are rendered to JSON text directly, with PostgreSQL's own output functions for the
//    common types and PostgreSQL's to_json for everything else, so that the output is exactly
//    what to_json gives (value_render.cpp);
//  * the queue row goes in with heap_insert + index_insert: no SPI, no executor, no permission
//    checks (writers have no rights on pg_sync, by design) (queue_writer.cpp).
//
// This file calls PostgreSQL throughout, so it is written C-style: no object with a destructor
// lives in these frames (see guard.hpp).
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_capture);
PG_FUNCTION_INFO_V1(pg_sync_config_changed);
}

#include "pg/capture.hpp"
#include "pg/capture_internal.hpp"
#include "pg/workers.hpp"

using namespace pg_sync::pg::capture;

namespace {

// Capture trigger frames on the stack (see capture_trigger_active()).
int capture_depth = 0;

bool any_changed(const ColumnPlan *cols, int ncols, TupleTableSlot *old_slot, TupleTableSlot *new_slot) {
    for (int i = 0; i < ncols; ++i) {
        const int a = cols[i].attnum - 1;
        const bool on = old_slot->tts_isnull[a], nn = new_slot->tts_isnull[a];
        if (on != nn)
            return true;
        if (!on && !datum_image_eq(old_slot->tts_values[a], new_slot->tts_values[a], cols[i].byval, cols[i].typlen))
            return true;
    }
    return false;
}

void capture_row(RelPlan *plan, uint8 op, TupleTableSlot *new_slot, TupleTableSlot *old_slot) {
    if (new_slot)
        slot_getallattrs(new_slot);
    if (old_slot)
        slot_getallattrs(old_slot);
    for (int i = 0; i < plan->neps; ++i) {
        const EndpointPlan *ep = &plan->eps[i];
        if (!(ep->events & op))
            continue;
        // An UPDATE that changes the key is, for the receiver, the old key going away and a new
        // one appearing: it is sent as delete (old key) + insert (new key), so that each key's
        // events stay in order under that key. It is always sent, whatever `columns` says.
        const bool key_changed = op == EV_UPDATE && any_changed(ep->keys, ep->nkeys, old_slot, new_slot);
        if (op == EV_UPDATE && !key_changed && ep->columns_limited &&
            !any_changed(ep->cols, ep->ncols, old_slot, new_slot))
            continue;
        if (ep->filter && !filter_passes(ep, new_slot, old_slot))
            continue;
        Datum new_row = new_slot ? render_object(ep->cols, ep->ncols, new_slot) : (Datum)0;
        Datum old_row = old_slot ? render_object(ep->cols, ep->ncols, old_slot) : (Datum)0;
        if (key_changed) {
            queue_insert(ep->endpoint_id, EV_DELETE, plan->table_name, render_key(ep, old_slot), 0, old_row, false,
                         true, false);
            queue_insert(ep->endpoint_id, EV_INSERT, plan->table_name, render_key(ep, new_slot), new_row, 0, false,
                         false, true);
            continue;
        }
        Datum key = render_key(ep, new_slot ? new_slot : old_slot);
        queue_insert(ep->endpoint_id, op, plan->table_name, key, new_row, old_row, false, !new_slot, !old_slot);
    }
}

// A statement that acquires no lock its transaction does not hold yet (a prepared statement run
// again, an INSERT into a table without indexes) processes no invalidation messages, so it would
// go on capturing with the configuration its transaction first saw, although a track() or
// untrack() committed since. Read them once per statement (a statement: the same transaction,
// statement start time and command id), before the plan is looked at; when none are pending
// this costs a read of one shared flag.
LocalTransactionId seen_lxid = InvalidLocalTransactionId;
TimestampTz seen_statement_start = 0;
CommandId seen_command_id = InvalidCommandId;

void accept_config_changes() {
    const TimestampTz start = GetCurrentStatementStartTimestamp();
    const CommandId cid = GetCurrentCommandId(false);
    if (MyProc->lxid == seen_lxid && start == seen_statement_start && cid == seen_command_id)
        return;
    seen_lxid = MyProc->lxid;
    seen_statement_start = start;
    seen_command_id = cid;
    pg_sync::pg::capture_new_statement();
    queue_writer_new_statement();
    AcceptInvalidationMessages();
}

} // namespace

namespace pg_sync::pg {
bool capture_trigger_active() { return capture_depth > 0; }
void capture_trigger_forget() { capture_depth = 0; }
} // namespace pg_sync::pg

// pg_sync._capture(): AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW, and AFTER TRUNCATE FOR
// EACH STATEMENT, installed by pg_sync.track().
extern "C" Datum pg_sync_capture(PG_FUNCTION_ARGS) {
    if (!CALLED_AS_TRIGGER(fcinfo))
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("pg_sync._capture() must be called as a trigger")));
    TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!TRIGGER_FIRED_AFTER(td->tg_event))
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("pg_sync._capture() must be an AFTER trigger")));

    accept_config_changes();
    RelPlan *plan = get_plan(td->tg_relation);
    if (plan->neps == 0)
        return PointerGetDatum(nullptr);
    // Keeps the plan alive for nested triggers on the same table (a filter could fire one);
    // PG_FINALLY so that an error in a savepoint does not pin it for the rest of the transaction.
    plan->in_use++;
    capture_depth++;
    PG_TRY();
    {
        if (TRIGGER_FIRED_FOR_ROW(td->tg_event)) {
            if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
                capture_row(plan, EV_INSERT, td->tg_trigslot, nullptr);
            else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
                capture_row(plan, EV_UPDATE, td->tg_newslot, td->tg_trigslot);
            else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
                capture_row(plan, EV_DELETE, nullptr, td->tg_trigslot);
        } else if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event)) {
            for (int i = 0; i < plan->neps; ++i)
                if (plan->eps[i].events & EV_TRUNCATE)
                    queue_insert(plan->eps[i].endpoint_id, EV_TRUNCATE, plan->table_name, 0, 0, 0, true, true, true);
        }
    }
    PG_FINALLY();
    {
        plan->in_use--;
        capture_depth--;
    }
    PG_END_TRY();
    return PointerGetDatum(nullptr);
}

// pg_sync._config_changed(): tells every backend (at commit) to drop its capture plans.
extern "C" Datum pg_sync_config_changed(PG_FUNCTION_ARGS) {
    CacheInvalidateRelcacheByRelid(tracked_table_oid());
    pg_sync::pg::wake_at_commit(true);
    PG_RETURN_VOID();
}

namespace pg_sync::pg {
// Backfill: a row of the tracked table (slot in the table's row type) rendered as the capture
// trigger renders it for the endpoint (same columns, canonical key, filter run as its author
// under its settings, with OLD all-NULL as for an insert). False when the filter rejects it.
bool render_snapshot(Relation rel, int32 endpoint_id, TupleTableSlot *slot, Datum *key, Datum *new_row) {
    RelPlan *plan = get_plan(rel);
    const EndpointPlan *ep = nullptr;
    for (int i = 0; i < plan->neps; ++i)
        if (plan->eps[i].endpoint_id == endpoint_id)
            ep = &plan->eps[i];
    if (!ep)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("table %s is no longer tracked for this endpoint", RelationGetRelationName(rel))));
    if (ep->filter && !OidIsValid(ep->filter_role))
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("the filter of table %s has no recorded author", RelationGetRelationName(rel)),
                        errdetail("It was written before pg_sync 0.3.0; a backfill runs a filter only with the "
                                  "rights of the role that wrote it."),
                        errhint("Call pg_sync.track() for the table again (as the filter's author), then "
                                "pg_sync.resume_backfill().")));
    slot_getallattrs(slot);
    volatile bool pass = true;
    plan->in_use++;
    PG_TRY();
    {
        if (ep->filter && !filter_passes(ep, slot, nullptr)) {
            pass = false;
        } else {
            *key = render_key(ep, slot);
            *new_row = render_object(ep->cols, ep->ncols, slot);
        }
    }
    PG_FINALLY();
    {
        plan->in_use--;
    }
    PG_END_TRY();
    return pass;
}
} // namespace pg_sync::pg
