// Module entry: library load checks, settings, shared memory, the launcher, and the utility hook
// that keeps workers out of the way of database-level DDL.
extern "C" {
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void _PG_init(void);
}

#include "pg/capture.hpp"
#include "pg/workers.hpp"

namespace {

ProcessUtility_hook_type prev_utility = nullptr;
int health_max_pending_age_ms = 300000; // read from SQL (pg_sync.health) through current_setting
double health_max_error_rate = 0.2;
bool internal_trigger_change = false; // read from SQL (the DDL event triggers) through current_setting

// The database a command needs to itself (no other session connected), if any.
const char *database_needing_exclusivity(Node *tree) {
    switch (nodeTag(tree)) {
    case T_DropdbStmt:
        return reinterpret_cast<DropdbStmt *>(tree)->dbname;
    case T_RenameStmt: {
        RenameStmt *s = reinterpret_cast<RenameStmt *>(tree);
        return s->renameType == OBJECT_DATABASE ? s->subname : nullptr;
    }
    case T_CreatedbStmt: {
        ListCell *lc;
        foreach (lc, reinterpret_cast<CreatedbStmt *>(tree)->options) {
            DefElem *d = static_cast<DefElem *>(lfirst(lc));
            if (strcmp(d->defname, "template") == 0 && d->arg)
                return defGetString(d);
        }
        return nullptr;
    }
    case T_AlterDatabaseStmt: {
        AlterDatabaseStmt *s = reinterpret_cast<AlterDatabaseStmt *>(tree);
        ListCell *lc;
        foreach (lc, s->options)
            if (strcmp(static_cast<DefElem *>(lfirst(lc))->defname, "tablespace") == 0)
                return s->dbname;
        return nullptr;
    }
    default:
        return nullptr;
    }
}

bool drops_this_extension(Node *tree) {
    if (!IsA(tree, DropStmt) || reinterpret_cast<DropStmt *>(tree)->removeType != OBJECT_EXTENSION)
        return false;
    ListCell *lc;
    foreach (lc, reinterpret_cast<DropStmt *>(tree)->objects)
        if (strcmp(strVal(lfirst(lc)), "pg_sync") == 0)
            return true;
    return false;
}

// DROP EXTENSION drops the capture triggers, which locks each tracked table after the queue;
// writers lock their table, then the queue. Taking the tables first (in OID order, before
// anything else) turns that deadlock into a wait. Only for the extension's owner: nobody else may
// lock tables this way.
void lock_tracked_tables() {
    const Oid ext = get_extension_oid("pg_sync", true);
    if (!OidIsValid(ext) || !pg_extension_ownercheck(ext, GetUserId()))
        return;
    const Oid nsp = get_namespace_oid("pg_sync", true);
    if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("_tracked", nsp)))
        return;
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    if (SPI_execute("SELECT DISTINCT tbl::oid FROM pg_sync._tracked ORDER BY 1", true, 0) != SPI_OK_SELECT)
        elog(ERROR, "pg_sync: could not read tracked tables");
    const uint64 n = SPI_processed;
    Oid *tables = static_cast<Oid *>(SPI_palloc(sizeof(Oid) * (n + 1)));
    for (uint64 i = 0; i < n; ++i) {
        bool isnull;
        tables[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
    }
    SPI_finish();
    for (uint64 i = 0; i < n; ++i)
        LockRelationOid(tables[i], AccessExclusiveLock);
    pfree(tables);
}

void call_prev(PlannedStmt *pstmt, const char *query, bool read_only_tree, ProcessUtilityContext context,
               ParamListInfo params, QueryEnvironment *env, DestReceiver *dest, QueryCompletion *qc) {
    if (prev_utility)
        prev_utility(pstmt, query, read_only_tree, context, params, env, dest, qc);
    else
        standard_ProcessUtility(pstmt, query, read_only_tree, context, params, env, dest, qc);
}

void utility_hook(PlannedStmt *pstmt, const char *query, bool read_only_tree, ProcessUtilityContext context,
                  ParamListInfo params, QueryEnvironment *env, DestReceiver *dest, QueryCompletion *qc) {
    Node *tree = pstmt->utilityStmt;
    if (const char *db = database_needing_exclusivity(tree)) {
        // Stop the database's worker first, or the command fails with "database is being
        // accessed by other users"; it may come back once the command is over.
        volatile Oid held = InvalidOid;
        PG_TRY();
        {
            pg_sync::pg::stop_worker_for_database(db, &held);
            call_prev(pstmt, query, read_only_tree, context, params, env, dest, qc);
        }
        PG_FINALLY();
        {
            pg_sync::pg::release_database_hold(held);
        }
        PG_END_TRY();
        return;
    }
    const bool dropping = drops_this_extension(tree);
    if (dropping)
        lock_tracked_tables();
    call_prev(pstmt, query, read_only_tree, context, params, env, dest, qc);
    if (dropping)
        pg_sync::pg::wake_at_commit(true); // the worker sees the extension gone and leaves
}

void define_settings() {
    using pg_sync::pg::settings;
    DefineCustomIntVariable("pg_sync.max_workers", "Maximum number of pg_sync delivery workers (one per database).",
                            "Each database with the extension needs one; they count against max_worker_processes.",
                            &settings.max_workers, 8, 0, 1024, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pg_sync.sweep_interval", "How often a delivery worker rescans its queue without being woken.",
                            "Commits wake the worker at once; the sweep finds what no commit announced "
                            "(COMMIT PREPARED) and retries that fall due.",
                            &settings.sweep_interval_ms, 1000, 10, 3600000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr,
                            nullptr);
    DefineCustomIntVariable("pg_sync.database_check_interval",
                            "How often the launcher looks for databases that got the extension without "
                            "CREATE EXTENSION (CREATE DATABASE ... TEMPLATE, restored copies).",
                            nullptr, &settings.database_check_interval_s, 60, 1, 86400, PGC_SIGHUP, GUC_UNIT_S,
                            nullptr, nullptr, nullptr);
    DefineCustomBoolVariable("pg_sync.allow_private_targets",
                             "Whether webhooks may connect to loopback, private, link-local and other "
                             "non-public addresses.",
                             "Checked on the address actually connected to, after DNS resolution.",
                             &settings.allow_private_targets, true, PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("pg_sync.http_proxy", "Proxy for webhook requests (empty: none).",
                               "Proxy environment variables of the server are ignored.", &settings.http_proxy, "",
                               PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pg_sync.max_connections", "Maximum open HTTP connections per delivery worker.", nullptr,
                            &settings.max_connections, 64, 1, 1000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pg_sync.circuit_failure_threshold",
                            "Consecutive failed requests after which an endpoint's circuit opens (0: never).",
                            nullptr, &settings.circuit_failure_threshold, 5, 0, 1000000, PGC_SIGHUP, 0, nullptr,
                            nullptr, nullptr);
    DefineCustomIntVariable("pg_sync.recent_attempts_size",
                            "How many recent HTTP attempts pg_sync.recent_attempts keeps per database (0: none).",
                            "A ring: older attempts are overwritten, the table never grows past this.",
                            &settings.recent_attempts_size, 1000, 0, 1000000, PGC_SIGHUP, 0, nullptr, nullptr,
                            nullptr);
    DefineCustomIntVariable("pg_sync.max_worker_memory",
                            "Event payloads a delivery worker reads into memory at most, over all endpoints.",
                            "Each endpoint's head of queue is read up to an equal share of it (at least one "
                            "event); request bodies are built from those events, so the worker's memory for "
                            "events stays within about twice this.",
                            &settings.max_worker_memory_kb, 128 * 1024, 1024, INT_MAX / 2, PGC_SIGHUP, GUC_UNIT_KB,
                            nullptr, nullptr, nullptr);
    // For tests only (superuser): makes a delivery pass wait between its read of an endpoint's
    // head of queue and its read of the dead letters, until the worker's latch is set or this
    // time has passed, so that a test can commit something in between (test/097).
    DefineCustomIntVariable("pg_sync.debug_pass_pause", "Internal: pause a delivery pass between its two queue reads.",
                            nullptr, &settings.debug_pass_pause_ms, 0, 0, 60000, PGC_SUSET,
                            GUC_UNIT_MS | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE, nullptr, nullptr, nullptr);
    // Read by pg_sync.health(); any role may set them for its own checks.
    DefineCustomIntVariable("pg_sync.health_max_pending_age",
                            "pg_sync.health() reports an endpoint whose oldest pending event is older than this.",
                            nullptr, &health_max_pending_age_ms, 300000, 1, INT_MAX, PGC_USERSET, GUC_UNIT_MS, nullptr,
                            nullptr, nullptr);
    DefineCustomRealVariable("pg_sync.health_max_error_rate",
                             "pg_sync.health() reports an endpoint whose recent requests failed more often than this.",
                             "A fraction of the endpoint's requests in pg_sync.recent_attempts (at least 10 of them).",
                             &health_max_error_rate, 0.2, 0.0, 1.0, PGC_USERSET, 0, nullptr, nullptr, nullptr);
    // Set only by pg_sync._sync_triggers (its SET clause: for the duration of the call) while it
    // creates, drops or re-enables a capture trigger: the event triggers refuse such changes otherwise.
    // Superuser-only, so that a table owner cannot lift that refusal; never read from a file.
    DefineCustomBoolVariable("pg_sync.internal_trigger_change", "Internal: pg_sync is changing its own capture triggers.",
                             nullptr, &internal_trigger_change, false, PGC_SUSET,
                             GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE | GUC_DISALLOW_IN_AUTO_FILE |
                                 GUC_NO_RESET_ALL,
                             nullptr, nullptr, nullptr);
    MarkGUCPrefixReserved("pg_sync");
}

} // namespace

void _PG_init(void) {
    // The capture trigger works in any backend, but delivery needs background workers and
    // shared memory that only preloading provides; fail early with the remedy rather than
    // half-working.
    if (!process_shared_preload_libraries_in_progress)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("pg_sync must be loaded via shared_preload_libraries"),
                        errhint("Add pg_sync to shared_preload_libraries in postgresql.conf and "
                                "restart the server, then run CREATE EXTENSION pg_sync.")));
    define_settings();
    pg_sync::pg::capture_init();
    pg_sync::pg::workers_xact_init();
    pg_sync::pg::workers_shmem_request();
    pg_sync::pg::register_launcher();
    prev_utility = ProcessUtility_hook;
    ProcessUtility_hook = utility_hook;
}
