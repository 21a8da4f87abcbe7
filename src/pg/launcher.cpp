// The launcher and the shared state of all pg_sync workers.
//
// The launcher is a static background worker connected to no database (it reads only the shared
// catalog pg_database). It keeps one delivery worker running per database that has the
// extension. Which databases have it can only be seen from inside each database, so:
//
//   * at start, and every pg_sync.database_check_interval, it starts a worker in every database
//     it has no worker for; a worker that finds no extension marks its slot `no_extension` and
//     leaves at once (a short probe);
//   * CREATE EXTENSION asks for a worker at commit (pg_sync._request_worker() in the install
//     script), so delivery starts within a moment, not at the next check;
//   * a worker that ends for any other reason (error, killed) is started again after a backoff
//     of 1 s doubling to 60 s; a crash of the whole server restarts the launcher itself.
//
// C-style code: the launcher never builds C++ objects, so PostgreSQL errors may unwind it freely.
extern "C" {
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
}

#include "core/worker_policy.hpp"
#include "pg/workers.hpp"

#include <csignal>

namespace pg_sync::pg {
namespace {

constexpr int kMaxRequests = 32; // databases asking for a worker, between two launcher passes
constexpr int kMaxHolds = 8;     // databases whose worker is kept stopped for a DDL command

struct Hold {
    Oid dboid;
    TimestampTz until;
};

// The backfill worker of a database (at most one each; src/pg/backfill_worker.cpp).
constexpr int kMaxBackfills = 16;
struct BackfillSlot {
    Oid dboid;
    pid_t pid; // 0: free
};

struct SharedState {
    LWLock *lock;
    BackfillSlot backfills[kMaxBackfills];
    pid_t launcher_pid;
    Latch *launcher_latch;
    int nrequests;
    Oid requests[kMaxRequests];
    Hold holds[kMaxHolds];
    int nslots;
    WorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
};

SharedState *shared = nullptr;
shmem_request_hook_type prev_shmem_request = nullptr;
shmem_startup_hook_type prev_shmem_startup = nullptr;

Size shared_size() {
    return add_size(offsetof(SharedState, slots), mul_size(sizeof(WorkerSlot), settings.max_workers));
}

// --- wake-ups at commit --------------------------------------------------------------------------

bool wake_pending = false;
bool config_pending = false;
bool launch_pending = false;

void notify_at_commit() {
    if (!shared)
        return;
    Latch *worker_latch = nullptr;
    Latch *launcher_latch = nullptr;
    LWLockAcquire(shared->lock, (launch_pending || config_pending) ? LW_EXCLUSIVE : LW_SHARED);
    for (int i = 0; i < shared->nslots; ++i) {
        WorkerSlot *s = &shared->slots[i];
        if (s->dboid == MyDatabaseId && s->pid != 0) {
            if (config_pending)
                s->config_generation++; // under the exclusive lock: no increment is lost
            worker_latch = s->latch;
        }
    }
    if (launch_pending) {
        bool known = false;
        for (int i = 0; i < shared->nrequests; ++i)
            known |= shared->requests[i] == MyDatabaseId;
        if (!known && shared->nrequests < kMaxRequests)
            shared->requests[shared->nrequests++] = MyDatabaseId;
        launcher_latch = shared->launcher_latch;
    }
    LWLockRelease(shared->lock);
    if (worker_latch)
        SetLatch(worker_latch);
    if (launcher_latch)
        SetLatch(launcher_latch);
}

// Registered once per process (in _PG_init, inherited from the postmaster): cheaper than
// registering and removing a callback in every transaction, and it costs one branch when
// nothing was captured.
void xact_callback(XactEvent event, void *) {
    switch (event) {
    case XACT_EVENT_COMMIT:
    case XACT_EVENT_PARALLEL_COMMIT:
        if (wake_pending || config_pending || launch_pending)
            notify_at_commit();
        wake_pending = config_pending = launch_pending = false;
        break;
    case XACT_EVENT_ABORT:
    case XACT_EVENT_PARALLEL_ABORT:
    case XACT_EVENT_PREPARE: // COMMIT PREPARED comes later, elsewhere: the sweep finds it
        wake_pending = config_pending = launch_pending = false;
        break;
    default:
        break;
    }
}

bool database_held(Oid dboid, TimestampTz now) {
    for (int i = 0; i < kMaxHolds; ++i)
        if (shared->holds[i].dboid == dboid && shared->holds[i].until > now)
            return true;
    return false;
}

void shmem_request() {
    if (prev_shmem_request)
        prev_shmem_request();
    RequestAddinShmemSpace(shared_size());
    RequestNamedLWLockTranche("pg_sync", 1);
}

void shmem_startup() {
    if (prev_shmem_startup)
        prev_shmem_startup();
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    bool found = false;
    shared = static_cast<SharedState *>(ShmemInitStruct("pg_sync", shared_size(), &found));
    if (!found) {
        memset(shared, 0, shared_size());
        shared->lock = &(GetNamedLWLockTranche("pg_sync"))->lock;
        shared->nslots = settings.max_workers;
    }
    LWLockRelease(AddinShmemInitLock);
}

// --- the launcher --------------------------------------------------------------------------------

struct LauncherDb {
    Oid dboid; // hash key
    BackgroundWorkerHandle *handle;
    bool no_extension;
    bool seen; // in the last pg_database scan
    bool restart_requested; // CREATE EXTENSION while a worker (old or probe) was still running
    int failures;
    TimestampTz start_after;
};

HTAB *databases = nullptr;

// Every database that accepts connections and is not a template (a worker connected to a
// template would make CREATE DATABASE fail).
void scan_databases() {
    HASH_SEQ_STATUS it;
    LauncherDb *db;
    hash_seq_init(&it, databases);
    while ((db = static_cast<LauncherDb *>(hash_seq_search(&it))))
        db->seen = false;

    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    PushActiveSnapshot(GetTransactionSnapshot());
    Relation rel = table_open(DatabaseRelationId, AccessShareLock);
    TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
    HeapTuple tup;
    while ((tup = heap_getnext(scan, ForwardScanDirection))) {
        Form_pg_database d = (Form_pg_database)GETSTRUCT(tup);
        if (!d->datallowconn || d->datistemplate)
            continue;
        bool found = false;
        db = static_cast<LauncherDb *>(hash_search(databases, &d->oid, HASH_ENTER, &found));
        if (!found) {
            db->handle = nullptr;
            db->failures = 0;
            db->start_after = 0;
            db->restart_requested = false;
        }
        // Look again (a short probe) in databases that had no extension last time: it may have
        // come with CREATE DATABASE ... TEMPLATE or a restore.
        db->no_extension = false;
        db->seen = true;
    }
    table_endscan(scan);
    table_close(rel, AccessShareLock);
    PopActiveSnapshot();
    CommitTransactionCommand();

    hash_seq_init(&it, databases);
    while ((db = static_cast<LauncherDb *>(hash_seq_search(&it))))
        if (!db->seen && !db->handle)
            hash_search(databases, &db->dboid, HASH_REMOVE, nullptr);
}

// Workers that have ended: how, and when to start them again. Returns true when one failed (its
// database may be gone: the caller rescans pg_database before starting it again).
bool reap_workers(TimestampTz now) {
    bool failed = false;
    HASH_SEQ_STATUS it;
    LauncherDb *db;
    hash_seq_init(&it, databases);
    while ((db = static_cast<LauncherDb *>(hash_seq_search(&it)))) {
        if (!db->handle)
            continue;
        pid_t pid;
        if (GetBackgroundWorkerPid(db->handle, &pid) != BGWH_STOPPED)
            continue;
        pfree(db->handle);
        db->handle = nullptr;
        bool no_extension = false;
        TimestampTz started = now;
        LWLockAcquire(shared->lock, LW_EXCLUSIVE);
        const bool held_now = database_held(db->dboid, now);
        for (int i = 0; i < shared->nslots; ++i) {
            WorkerSlot *s = &shared->slots[i];
            if (s->dboid == db->dboid && s->pid == 0) {
                no_extension = s->no_extension;
                started = s->started_at;
                s->dboid = InvalidOid; // free
            }
        }
        LWLockRelease(shared->lock);
        const bool held = held_now;
        if (db->restart_requested) {
            db->restart_requested = false;
            db->no_extension = false;
            db->start_after = 0;
        } else if (no_extension) {
            db->no_extension = true;
            db->failures = 0;
        } else if (held) {
            // Stopped for DROP DATABASE and friends: not a failure.
            db->start_after = 0;
        } else {
            failed = true;
            // A worker that ran for a while before it ended is not a crash loop: start afresh.
            if (now - started > 60 * USECS_PER_SEC)
                db->failures = 0;
            db->failures = Min(db->failures + 1, 7);
            db->start_after = TimestampTzPlusMilliseconds(now, int64(worker::restart_delay_ms(db->failures)));
        }
    }
    return failed;
}

void take_requests() {
    Oid requests[kMaxRequests];
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    const int n = shared->nrequests;
    memcpy(requests, shared->requests, sizeof(Oid) * n);
    shared->nrequests = 0;
    LWLockRelease(shared->lock);
    for (int i = 0; i < n; ++i) {
        bool found = false;
        LauncherDb *db = static_cast<LauncherDb *>(hash_search(databases, &requests[i], HASH_ENTER, &found));
        if (!found) {
            db->handle = nullptr;
            db->seen = true;
        }
        // A worker still running may be one that is about to leave because it saw the extension
        // dropped (DROP + CREATE EXTENSION in one transaction) or a probe: start one again when
        // it ends, whatever it says.
        db->restart_requested = db->handle != nullptr;
        db->no_extension = false;
        db->failures = 0;
        db->start_after = 0;
    }
}

int running_workers() {
    int n = 0;
    HASH_SEQ_STATUS it;
    LauncherDb *db;
    hash_seq_init(&it, databases);
    while ((db = static_cast<LauncherDb *>(hash_seq_search(&it))))
        n += db->handle != nullptr;
    return n;
}

// Starts the workers that should run; returns when the next one is due (0: none waiting).
TimestampTz start_workers(TimestampTz now) {
    TimestampTz next = 0;
    int running = running_workers();
    HASH_SEQ_STATUS it;
    LauncherDb *db;
    hash_seq_init(&it, databases);
    while ((db = static_cast<LauncherDb *>(hash_seq_search(&it)))) {
        if (db->handle || db->no_extension)
            continue;
        bool held;
        bool served = false; // a live worker the launcher has no handle for (it restarted)
        LWLockAcquire(shared->lock, LW_SHARED);
        held = database_held(db->dboid, now);
        for (int i = 0; i < shared->nslots; ++i)
            if (shared->slots[i].dboid == db->dboid && shared->slots[i].pid != 0 && kill(shared->slots[i].pid, 0) == 0)
                served = true;
        LWLockRelease(shared->lock);
        if (served)
            continue;
        if (held || db->start_after > now) {
            TimestampTz due = held ? TimestampTzPlusMilliseconds(now, 500) : db->start_after;
            if (next == 0 || due < next)
                next = due;
            continue;
        }
        if (running >= settings.max_workers)
            continue; // pg_sync.max_workers reached; retried when one ends
        BackgroundWorker w;
        memset(&w, 0, sizeof w);
        w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
        w.bgw_start_time = BgWorkerStart_RecoveryFinished;
        w.bgw_restart_time = BGW_NEVER_RESTART; // the launcher restarts it, with backoff
        snprintf(w.bgw_library_name, BGW_MAXLEN, "pg_sync");
        snprintf(w.bgw_function_name, BGW_MAXLEN, "pg_sync_worker_main");
        snprintf(w.bgw_name, BGW_MAXLEN, "pg_sync worker for database %u", db->dboid);
        snprintf(w.bgw_type, BGW_MAXLEN, "pg_sync worker");
        w.bgw_main_arg = ObjectIdGetDatum(db->dboid);
        w.bgw_notify_pid = MyProcPid;
        if (!RegisterDynamicBackgroundWorker(&w, &db->handle)) {
            db->handle = nullptr;
            ereport(WARNING, (errmsg("pg_sync: could not start a delivery worker for database %u", db->dboid),
                              errhint("Raise max_worker_processes.")));
            db->start_after = TimestampTzPlusMilliseconds(now, 10000);
            continue;
        }
        running++;
    }
    return next;
}

} // namespace

Settings settings = {8, 1000, 60, true, nullptr, 64, 5, 1000};

void workers_shmem_request() {
    prev_shmem_request = shmem_request_hook;
    shmem_request_hook = shmem_request;
    prev_shmem_startup = shmem_startup_hook;
    shmem_startup_hook = shmem_startup;
}

void workers_xact_init() { RegisterXactCallback(xact_callback, nullptr); }

void register_launcher() {
    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = 5;
    snprintf(w.bgw_library_name, BGW_MAXLEN, "pg_sync");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "pg_sync_launcher_main");
    snprintf(w.bgw_name, BGW_MAXLEN, "pg_sync launcher");
    snprintf(w.bgw_type, BGW_MAXLEN, "pg_sync launcher");
    RegisterBackgroundWorker(&w);
}

void wake_at_commit(bool config_changed) {
    wake_pending = true;
    config_pending |= config_changed;
}

void launch_at_commit() { launch_pending = true; }

WorkerSlot *claim_slot(Oid dboid) {
    WorkerSlot *mine = nullptr;
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    if (database_held(dboid, GetCurrentTimestamp())) {
        LWLockRelease(shared->lock);
        return nullptr; // registered just before DROP DATABASE & co. stopped this database's worker
    }
    for (int i = 0; i < shared->nslots && !mine; ++i) {
        WorkerSlot *s = &shared->slots[i];
        if (s->dboid == dboid) {
            if (s->pid != 0 && kill(s->pid, 0) == 0) {
                LWLockRelease(shared->lock);
                return nullptr; // another worker serves this database
            }
            mine = s;
        }
    }
    for (int i = 0; i < shared->nslots && !mine; ++i)
        if (shared->slots[i].dboid == InvalidOid)
            mine = &shared->slots[i];
    if (mine) {
        mine->dboid = dboid;
        mine->pid = MyProcPid;
        mine->latch = MyLatch;
        mine->started_at = mine->last_active_at = GetCurrentTimestamp();
        mine->no_extension = false;
        strlcpy(mine->state, "starting", sizeof mine->state);
        mine->last_error[0] = '\0';
    }
    LWLockRelease(shared->lock);
    return mine;
}

void set_worker_state(WorkerSlot *slot, const char *state) {
    slot->last_active_at = GetCurrentTimestamp();
    if (strcmp(slot->state, state) != 0) {
        LWLockAcquire(shared->lock, LW_EXCLUSIVE);
        strlcpy(slot->state, state, sizeof slot->state);
        LWLockRelease(shared->lock);
    }
}

void set_worker_error(WorkerSlot *slot, const char *error) {
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    strlcpy(slot->last_error, error, sizeof slot->last_error);
    LWLockRelease(shared->lock);
}

void pin_worker_settings() {
    SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("role", "none", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
}

// --- backfill workers ----------------------------------------------------------------------------

bool claim_backfill_slot(Oid dboid) {
    bool claimed = false;
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    if (!database_held(dboid, GetCurrentTimestamp())) {
        int free_slot = -1;
        bool other = false;
        for (int i = 0; i < kMaxBackfills; ++i) {
            BackfillSlot *b = &shared->backfills[i];
            const bool alive = b->pid != 0 && kill(b->pid, 0) == 0;
            if (b->dboid == dboid && alive)
                other = true;
            else if (free_slot < 0 && (!alive || b->dboid == dboid))
                free_slot = i;
        }
        if (!other && free_slot >= 0) {
            shared->backfills[free_slot].dboid = dboid;
            shared->backfills[free_slot].pid = MyProcPid;
            claimed = true;
        }
    }
    LWLockRelease(shared->lock);
    return claimed;
}

void release_backfill_slot() {
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    for (int i = 0; i < kMaxBackfills; ++i)
        if (shared->backfills[i].pid == MyProcPid)
            shared->backfills[i].pid = 0;
    LWLockRelease(shared->lock);
}

bool backfill_worker_running(Oid dboid) {
    bool running = false;
    LWLockAcquire(shared->lock, LW_SHARED);
    for (int i = 0; i < kMaxBackfills; ++i)
        if (shared->backfills[i].dboid == dboid && shared->backfills[i].pid != 0 &&
            kill(shared->backfills[i].pid, 0) == 0)
            running = true;
    LWLockRelease(shared->lock);
    return running;
}

bool start_backfill_worker(Oid dboid) {
    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = BGW_NEVER_RESTART; // the delivery worker starts it again if needed
    snprintf(w.bgw_library_name, BGW_MAXLEN, "pg_sync");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "pg_sync_backfill_main");
    snprintf(w.bgw_name, BGW_MAXLEN, "pg_sync backfill for database %u", dboid);
    snprintf(w.bgw_type, BGW_MAXLEN, "pg_sync backfill");
    w.bgw_main_arg = ObjectIdGetDatum(dboid);
    return RegisterDynamicBackgroundWorker(&w, nullptr);
}

Oid stop_worker_for_database(const char *dbname, volatile Oid *held) {
    if (!shared || !dbname)
        return InvalidOid;
    const Oid dboid = get_database_oid(dbname, true);
    // Only for someone the command itself will allow: nobody else may stop a worker this way.
    if (!OidIsValid(dboid) || !(superuser() || pg_database_ownercheck(dboid, GetUserId())))
        return InvalidOid;
    *held = dboid; // from here on the caller releases the hold, even if the wait is cancelled
    pid_t pid = 0;
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    int free_hold = -1;
    for (int i = 0; i < kMaxHolds; ++i) {
        if (shared->holds[i].dboid == dboid || (free_hold < 0 && shared->holds[i].until < GetCurrentTimestamp()))
            free_hold = i;
    }
    if (free_hold >= 0) {
        shared->holds[free_hold].dboid = dboid;
        shared->holds[free_hold].until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 60000);
    }
    for (int i = 0; i < shared->nslots; ++i)
        if (shared->slots[i].dboid == dboid && shared->slots[i].pid != 0)
            pid = shared->slots[i].pid;
    pid_t backfill_pid = 0;
    for (int i = 0; i < kMaxBackfills; ++i)
        if (shared->backfills[i].dboid == dboid && shared->backfills[i].pid != 0)
            backfill_pid = shared->backfills[i].pid;
    LWLockRelease(shared->lock);
    if (backfill_pid != 0) {
        // It holds no slot the command waits on: the command's own wait for other sessions
        // covers it, once it has gone.
        kill(backfill_pid, SIGTERM);
        for (int waited = 0; waited < 1000 && kill(backfill_pid, 0) == 0; ++waited) {
            (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
            ResetLatch(MyLatch);
            CHECK_FOR_INTERRUPTS();
        }
    }
    if (pid == 0)
        return dboid;
    kill(pid, SIGTERM);
    // Wait (up to 10 s) for it to go; the command itself waits for other sessions after this.
    for (int waited = 0; waited < 1000; ++waited) {
        bool gone = true;
        LWLockAcquire(shared->lock, LW_SHARED);
        for (int i = 0; i < shared->nslots; ++i)
            if (shared->slots[i].dboid == dboid && shared->slots[i].pid == pid)
                gone = false;
        LWLockRelease(shared->lock);
        if (gone || kill(pid, 0) != 0)
            return dboid;
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
        CHECK_FOR_INTERRUPTS();
    }
    return dboid;
}

// After the command: the worker may come back in a couple of seconds (by then a dropped
// database is gone from pg_database; a failed DROP leaves it there and delivery resumes).
void release_database_hold(Oid dboid) {
    if (!shared || !OidIsValid(dboid))
        return;
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    const TimestampTz soon = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 2000);
    for (int i = 0; i < kMaxHolds; ++i)
        if (shared->holds[i].dboid == dboid && shared->holds[i].until > soon)
            shared->holds[i].until = soon;
    Latch *launcher = shared->launcher_latch;
    LWLockRelease(shared->lock);
    if (launcher)
        SetLatch(launcher);
}

} // namespace pg_sync::pg

using namespace pg_sync::pg;

extern "C" void pg_sync_launcher_main(Datum) {
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
    pgstat_report_appname("pg_sync launcher");

    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    shared->launcher_pid = MyProcPid;
    shared->launcher_latch = MyLatch;
    LWLockRelease(shared->lock);

    HASHCTL ctl;
    memset(&ctl, 0, sizeof ctl);
    ctl.keysize = sizeof(Oid);
    ctl.entrysize = sizeof(LauncherDb);
    ctl.hcxt = TopMemoryContext;
    databases = hash_create("pg_sync launcher databases", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

    TimestampTz next_scan = 0;
    for (;;) {
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
        }
        TimestampTz now = GetCurrentTimestamp();
        if (reap_workers(now))
            next_scan = now; // forget databases that were dropped under their worker
        take_requests();
        if (now >= next_scan) {
            scan_databases();
            next_scan = TimestampTzPlusMilliseconds(now, settings.database_check_interval_s * 1000L);
        }
        TimestampTz due = start_workers(now);
        if (due == 0 || due > next_scan)
            due = next_scan;
        long timeout = (long)((due - GetCurrentTimestamp()) / 1000);
        timeout = Max(timeout, 10L);
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout, PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
    }
}

// pg_sync._request_worker(): called by the install script; the launcher starts this database's
// worker as soon as the creating transaction commits.
extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_request_worker);
PG_FUNCTION_INFO_V1(pg_sync_workers);
PG_FUNCTION_INFO_V1(pg_sync_wake);
}

extern "C" Datum pg_sync_request_worker(PG_FUNCTION_ARGS) {
    launch_at_commit();
    PG_RETURN_VOID();
}

// pg_sync._wake(config bool): wake this database's worker at commit; config: it reloads endpoints.
extern "C" Datum pg_sync_wake(PG_FUNCTION_ARGS) {
    wake_at_commit(PG_GETARG_BOOL(0));
    PG_RETURN_VOID();
}

// pg_sync._workers(): the running delivery workers of every database, for pg_sync.workers.
extern "C" Datum pg_sync_workers(PG_FUNCTION_ARGS) {
    ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
    InitMaterializedSRF(fcinfo, 0);
    if (!shared)
        return (Datum)0;
    int n = 0;
    WorkerSlot *copy = (WorkerSlot *)palloc(sizeof(WorkerSlot) * Max(shared->nslots, 1));
    LWLockAcquire(shared->lock, LW_SHARED);
    for (int i = 0; i < shared->nslots; ++i)
        if (shared->slots[i].pid != 0 && !shared->slots[i].no_extension)
            copy[n++] = shared->slots[i];
    LWLockRelease(shared->lock);
    for (int i = 0; i < n; ++i) {
        Datum values[6];
        bool nulls[6] = {false, false, false, false, false, false};
        char *name = get_database_name(copy[i].dboid);
        if (name)
            values[0] = CStringGetTextDatum(name);
        else
            nulls[0] = true;
        values[1] = Int32GetDatum(copy[i].pid);
        values[2] = TimestampTzGetDatum(copy[i].started_at);
        values[3] = TimestampTzGetDatum(copy[i].last_active_at);
        values[4] = CStringGetTextDatum(copy[i].state);
        values[5] = copy[i].last_error[0] ? CStringGetTextDatum(copy[i].last_error) : (nulls[5] = true, (Datum)0);
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum)0;
}
