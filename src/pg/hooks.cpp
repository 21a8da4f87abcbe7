// Every hook of the library, in one place: what PostgreSQL calls, in which order pg_sync's
// features get their turn, and how the previous hook is chained. The behaviour itself lives in
// the feature's file; these functions only dispatch.
//
//   shmem_request_hook, shmem_startup_hook  -> shared_slots.cpp (pg_sync's shared memory),
//                                              queue_counters.cpp (pending counts)
//   ProcessUtility_hook                     -> utility_commands.cpp + shared_slots.cpp (stop a
//                                              database's workers around DROP DATABASE & co.,
//                                              lock tracked tables before DROP EXTENSION),
//                                              queue_writer.cpp (end of statement after the
//                                              command: write the captured rows, close the
//                                              writer; COPY and TRUNCATE capture outside the
//                                              executor), wakeups.cpp (DROP EXTENSION wakes the
//                                              worker, which sees the extension gone and leaves),
//                                              queue_counters.cpp (COMMIT PREPARED, trigger DDL
//                                              on the queue: recount at commit)
//   ExecutorEnd_hook                        -> queue_writer.cpp (end of statement after its
//                                              AFTER triggers, unless a capture trigger frame is
//                                              still on the stack)
//   transaction callback                    -> queue_writer.cpp (write and close before
//                                              commit/prepare, drop at abort),
//                                              capture_trigger.cpp (forget its frames at abort),
//                                              queue_counters.cpp (publish the pending counts at
//                                              commit, before the wake-up; forget at abort and
//                                              prepare), wakeups.cpp (wake workers at commit,
//                                              forget at abort and prepare)
//   subtransaction callback                 -> queue_writer.cpp (write a subtransaction's rows
//                                              before it commits, drop them when it aborts),
//                                              queue_counters.cpp (a subtransaction's counts go
//                                              to its parent or with it)
//   relcache callback                       -> queue_writer.cpp, capture_plans.cpp (mark only)
//   syscache callback on pg_namespace       -> capture_plans.cpp (schema renames)
//
// Callbacks are registered once per process (in _PG_init, inherited from the postmaster):
// cheaper than registering and removing one in every transaction, and the (sub)transaction
// callbacks cost a few branches when nothing was captured.
#include "pg/pg_prelude.hpp"

#include "pg/capture.hpp"
#include "pg/hooks.hpp"
#include "pg/queue_counters.hpp"
#include "pg/shared_slots.hpp"
#include "pg/utility_commands.hpp"
#include "pg/workers.hpp"

namespace pg_sync::pg {
namespace {

shmem_request_hook_type prev_shmem_request = nullptr;
shmem_startup_hook_type prev_shmem_startup = nullptr;
ProcessUtility_hook_type prev_process_utility = nullptr;
ExecutorEnd_hook_type prev_executor_end = nullptr;

void shmem_request() {
    if (prev_shmem_request)
        prev_shmem_request();
    shared_slots_request();
    queue_counters_request();
}

void shmem_startup() {
    if (prev_shmem_startup)
        prev_shmem_startup();
    shared_slots_attach();
    queue_counters_attach();
}

// The command itself, then the end of the statement for the queue writer: the rows it captured
// are written and the writer is closed, so that a later TRUNCATE or DROP of the queue in the
// same transaction does not find it in use.
void run_utility(PlannedStmt *pstmt, const char *query, bool read_only_tree, ProcessUtilityContext context,
                 ParamListInfo params, QueryEnvironment *env, DestReceiver *dest, QueryCompletion *qc) {
    if (prev_process_utility)
        prev_process_utility(pstmt, query, read_only_tree, context, params, env, dest, qc);
    else
        standard_ProcessUtility(pstmt, query, read_only_tree, context, params, env, dest, qc);
    queue_writer_end_statement();
}

void process_utility(PlannedStmt *pstmt, const char *query, bool read_only_tree, ProcessUtilityContext context,
                     ParamListInfo params, QueryEnvironment *env, DestReceiver *dest, QueryCompletion *qc) {
    Node *tree = pstmt->utilityStmt;
    queue_counters_utility(tree);
    if (const char *db = database_needing_exclusivity(tree)) {
        // Stop the database's worker first, or the command fails with "database is being
        // accessed by other users"; it may come back once the command is over.
        volatile Oid held = InvalidOid;
        PG_TRY();
        {
            stop_worker_for_database(db, &held);
            run_utility(pstmt, query, read_only_tree, context, params, env, dest, qc);
        }
        PG_FINALLY();
        {
            release_database_hold(held);
        }
        PG_END_TRY();
        return;
    }
    const bool dropping = drops_pg_sync_extension(tree);
    if (dropping)
        lock_tracked_tables();
    run_utility(pstmt, query, read_only_tree, context, params, env, dest, qc);
    if (dropping)
        wake_at_commit(true); // the worker sees the extension gone and leaves
}

void executor_end(QueryDesc *query) {
    if (prev_executor_end)
        prev_executor_end(query);
    else
        standard_ExecutorEnd(query);
    if (!capture_trigger_active())
        queue_writer_end_statement();
}

void xact_callback(XactEvent event, void *) {
    switch (event) {
    case XACT_EVENT_PRE_COMMIT:
    case XACT_EVENT_PARALLEL_PRE_COMMIT:
    case XACT_EVENT_PRE_PREPARE:
        queue_writer_pre_commit();   // writes the last captured rows (which count them) first
        queue_counters_pre_commit();
        break;
    case XACT_EVENT_COMMIT:
    case XACT_EVENT_PARALLEL_COMMIT:
        queue_counters_at_commit(); // before the worker is woken: it may delete those events at once
        wakeups_at_commit();
        break;
    case XACT_EVENT_ABORT:
    case XACT_EVENT_PARALLEL_ABORT:
        queue_writer_forget();
        capture_trigger_forget();
        queue_counters_forget();
        wakeups_forget();
        break;
    case XACT_EVENT_PREPARE: // COMMIT PREPARED comes later, elsewhere: the worker's sweep finds it
        queue_counters_forget(); // and COMMIT PREPARED asks for a recount
        wakeups_forget();
        break;
    default:
        break;
    }
}

void subxact_callback(SubXactEvent event, SubTransactionId subxact, SubTransactionId parent, void *) {
    switch (event) {
    case SUBXACT_EVENT_PRE_COMMIT_SUB:
        queue_writer_subxact_pre_commit(subxact); // its rows written (and counted) in it
        break;
    case SUBXACT_EVENT_COMMIT_SUB:
        queue_counters_subxact_commit(subxact, parent);
        break;
    case SUBXACT_EVENT_ABORT_SUB:
        queue_writer_subxact_abort(subxact);
        queue_counters_subxact_abort(subxact);
        break;
    default:
        break;
    }
}

// Runs while invalidation messages are processed: the features only mark, never read catalogs.
void relcache_callback(Datum, Oid relid) {
    queue_writer_relation_invalidated(relid);
    capture_plans_relation_invalidated(relid);
}


void namespace_callback(Datum, int, uint32) { capture_plans_namespace_invalidated(); }

} // namespace

void hooks_init() {
    prev_shmem_request = shmem_request_hook;
    shmem_request_hook = shmem_request;
    prev_shmem_startup = shmem_startup_hook;
    shmem_startup_hook = shmem_startup;
    prev_process_utility = ProcessUtility_hook;
    ProcessUtility_hook = process_utility;
    prev_executor_end = ExecutorEnd_hook;
    ExecutorEnd_hook = executor_end;
    RegisterXactCallback(xact_callback, nullptr);
    RegisterSubXactCallback(subxact_callback, nullptr);
    CacheRegisterRelcacheCallback(relcache_callback, (Datum)0);
    CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_callback, (Datum)0);
}

} // namespace pg_sync::pg
