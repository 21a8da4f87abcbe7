// The launcher: a static background worker connected to no database (it reads only the shared
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
// Each database the launcher knows is in one state of DbState; every change of state is one of
// the on_* functions below, and nothing else assigns `state` (docs/launcher.md has the diagram):
//
//   Pending     -- start_worker ok -->       Running
//   Pending     -- start_worker failed -->   Backoff (10 s)
//   Running     -- CREATE EXTENSION -->      Restarting
//   Running     -- worker ended: no extension --> NoExtension
//   Running     -- worker ended: database held for DDL --> Pending
//   Running     -- worker ended otherwise --> Backoff (next_restart_delay)
//   Restarting  -- worker ended -->          Pending
//   Backoff     -- delay over -->            Pending
//   Backoff, NoExtension, Pending -- CREATE EXTENSION --> Pending (backoff reset)
//   NoExtension -- pg_database scan -->      Pending (probe again)
//   not running and gone from pg_database -> forgotten
//
// Guards that keep a Pending database waiting without a change of state: a live worker serves it
// already (the launcher restarted and has no handle for it), it is held for a DDL command (looked
// at again every 500 ms), or pg_sync.max_workers workers run.
//
// C-style code: the launcher never builds C++ objects, so PostgreSQL errors may unwind it freely.
#include "pg/pg_prelude.hpp"

#include "core/worker_policy.hpp"
#include "pg/shared_slots.hpp"
#include "pg/workers.hpp"

namespace pg_sync::pg {
namespace {

enum class DbState : uint8 {
    Pending,     // a worker is to be started as soon as allowed
    Running,     // a worker the launcher started runs (handle set)
    Restarting,  // running, and CREATE EXTENSION asked for a new worker once it ends
    Backoff,     // the last worker failed: start again at start_after
    NoExtension, // the last worker found no pg_sync: wait for a request or the next scan
};

struct LauncherDb {
    Oid dboid; // hash key
    DbState state;
    BackgroundWorkerHandle *handle; // set in Running and Restarting only
    bool seen;                      // in the last pg_database scan
    int failures;                   // consecutive failed workers (for the backoff)
    TimestampTz start_after;        // Backoff: when to start again
};

constexpr int kHeldRecheckMs = 500;        // a database held for DDL is looked at again this often
constexpr int kRegisterRetryMs = 10000;    // no background worker slot free: try again after this
constexpr int kRestartMaxDoublings = 7;    // failures counted (the delay is at its cap by then)
constexpr int64 kHealthyRunUs = 60 * USECS_PER_SEC; // reset after a worker ran this long

HTAB *databases = nullptr;

// How long to wait before starting a failed database's worker again: core's schedule
// (worker::restart_delay_ms: 1 s doubling to 60 s per consecutive failure); a worker that ran a
// minute or more before it ended is not a crash loop and starts the count afresh.
int64 next_restart_delay(int *failures, int64 ran_for_us) {
    if (ran_for_us > kHealthyRunUs)
        *failures = 0;
    *failures = Min(*failures + 1, kRestartMaxDoublings);
    return int64(pg_sync::worker::restart_delay_ms(*failures));
}

// --- transitions ---------------------------------------------------------------------------------

// A database the launcher did not know (from a scan or a request): Pending.
LauncherDb *on_new(Oid dboid) {
    bool found = false;
    LauncherDb *db = static_cast<LauncherDb *>(hash_search(databases, &dboid, HASH_ENTER, &found));
    if (!found) {
        db->state = DbState::Pending;
        db->handle = nullptr;
        db->seen = true;
        db->failures = 0;
        db->start_after = 0;
    }
    return db;
}

// The scan found the database again: one that had no extension is probed again (it may have
// come with CREATE DATABASE ... TEMPLATE or a restore).
void on_found(LauncherDb *db) {
    db->seen = true;
    if (db->state == DbState::NoExtension)
        db->state = DbState::Pending;
}

// Gone from pg_database (or not accepting connections any more) and no worker runs: forget it.
void on_vanished(LauncherDb *db) { hash_search(databases, &db->dboid, HASH_REMOVE, nullptr); }

// CREATE EXTENSION committed. A worker still running may be one that is about to leave because
// it saw the extension dropped (DROP + CREATE EXTENSION in one transaction) or a probe: start one
// again when it ends, whatever it says.
void on_requested(LauncherDb *db) {
    db->state = db->handle ? DbState::Restarting : DbState::Pending;
    db->failures = 0;
    db->start_after = 0;
}

void on_started(LauncherDb *db, BackgroundWorkerHandle *handle) {
    db->handle = handle;
    db->state = DbState::Running;
}

// No background worker slot (max_worker_processes): not a failure of the worker; try again later.
void on_start_failed(LauncherDb *db, TimestampTz now) {
    db->handle = nullptr;
    db->state = DbState::Backoff;
    db->start_after = TimestampTzPlusMilliseconds(now, kRegisterRetryMs);
}

void on_backoff_elapsed(LauncherDb *db) { db->state = DbState::Pending; }

// The worker has ended (its slot is freed). Returns true when it failed.
bool on_ended(LauncherDb *db, const EndedWorker &ended, TimestampTz now) {
    pfree(db->handle);
    db->handle = nullptr;
    if (db->state == DbState::Restarting) {
        db->state = DbState::Pending;
        db->start_after = 0;
        return false;
    }
    if (ended.no_extension) {
        db->state = DbState::NoExtension;
        db->failures = 0;
        return false;
    }
    if (ended.held) {
        // Stopped for DROP DATABASE and friends: not a failure.
        db->state = DbState::Pending;
        db->start_after = 0;
        return false;
    }
    db->state = DbState::Backoff;
    db->start_after = TimestampTzPlusMilliseconds(now, next_restart_delay(&db->failures, now - ended.started_at));
    return true;
}

// --- the launcher's steps ------------------------------------------------------------------------

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
        on_found(on_new(d->oid));
    }
    table_endscan(scan);
    table_close(rel, AccessShareLock);
    PopActiveSnapshot();
    CommitTransactionCommand();

    hash_seq_init(&it, databases);
    while ((db = static_cast<LauncherDb *>(hash_seq_search(&it))))
        if (!db->seen && !db->handle)
            on_vanished(db);
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
        failed |= on_ended(db, collect_ended_worker(db->dboid, now), now);
    }
    return failed;
}

void take_requests() {
    Oid requests[kMaxLaunchRequests];
    const int n = take_launch_requests(requests);
    for (int i = 0; i < n; ++i)
        on_requested(on_new(requests[i]));
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

// Registers a delivery worker for the database; nullptr when no background worker slot is free.
BackgroundWorkerHandle *start_worker(Oid dboid) {
    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = BGW_NEVER_RESTART; // the launcher restarts it, with backoff
    snprintf(w.bgw_library_name, BGW_MAXLEN, "pg_sync");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "pg_sync_worker_main");
    snprintf(w.bgw_name, BGW_MAXLEN, "pg_sync worker for database %u", dboid);
    snprintf(w.bgw_type, BGW_MAXLEN, "pg_sync worker");
    w.bgw_main_arg = ObjectIdGetDatum(dboid);
    w.bgw_notify_pid = MyProcPid;
    BackgroundWorkerHandle *handle = nullptr;
    if (!RegisterDynamicBackgroundWorker(&w, &handle)) {
        ereport(WARNING, (errmsg("pg_sync: could not start a delivery worker for database %u", dboid),
                          errhint("Raise max_worker_processes.")));
        return nullptr;
    }
    return handle;
}

// Starts the workers that should run; returns when the next one is due (0: none waiting).
TimestampTz start_workers(TimestampTz now) {
    TimestampTz next = 0;
    int running = running_workers();
    HASH_SEQ_STATUS it;
    LauncherDb *db;
    hash_seq_init(&it, databases);
    while ((db = static_cast<LauncherDb *>(hash_seq_search(&it)))) {
        if (db->state != DbState::Pending && db->state != DbState::Backoff)
            continue;
        const DatabaseOccupancy occupancy = database_occupancy(db->dboid, now);
        if (occupancy.served)
            continue;
        const bool waiting = db->state == DbState::Backoff && db->start_after > now;
        if (occupancy.held || waiting) {
            TimestampTz due = occupancy.held ? TimestampTzPlusMilliseconds(now, kHeldRecheckMs) : db->start_after;
            if (next == 0 || due < next)
                next = due;
            continue;
        }
        if (db->state == DbState::Backoff)
            on_backoff_elapsed(db);
        if (running >= settings.max_workers)
            continue; // pg_sync.max_workers reached; retried when one ends
        BackgroundWorkerHandle *handle = start_worker(db->dboid);
        if (!handle) {
            on_start_failed(db, now);
            continue;
        }
        on_started(db, handle);
        running++;
    }
    return next;
}

} // namespace

void launcher_init() {
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

} // namespace pg_sync::pg

using namespace pg_sync::pg;

extern "C" void pg_sync_launcher_main(Datum) {
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
    pgstat_report_appname("pg_sync launcher");
    register_launcher_process();

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
