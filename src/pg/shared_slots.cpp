// pg_sync's shared memory: worker slots, backfill slots, database holds and launch requests
// (see shared_slots.hpp), and the functions that read and change them, each under the one lock.
//
// C-style code: no C++ object with a destructor, so PostgreSQL errors may unwind it freely.
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_workers);
}

#include "pg/shared_slots.hpp"

#include <csignal>

namespace pg_sync::pg {
namespace {

constexpr int kMaxHolds = 8; // databases whose worker is kept stopped for a DDL command

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

// The current queue partition of a database (sql/src/queue.sql), as its delivery worker
// published it; kept when the worker ends, so that writers keep using it until the next worker
// publishes again. A database without an entry writes to partition 0.
constexpr int kMaxQueueParts = 64;
struct QueuePart {
    Oid dboid; // InvalidOid: free
    int part;
};

struct SharedState {
    LWLock *lock;
    QueuePart queue_parts[kMaxQueueParts];
    BackfillSlot backfills[kMaxBackfills];
    pid_t launcher_pid;
    Latch *launcher_latch;
    int nrequests;
    Oid requests[kMaxLaunchRequests]; // databases asking for a worker, between two launcher passes
    Hold holds[kMaxHolds];
    int nslots;
    WorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
};

SharedState *shared = nullptr;

Size shared_size() {
    return add_size(offsetof(SharedState, slots), mul_size(sizeof(WorkerSlot), settings.max_workers));
}

// Under the lock.
bool database_held(Oid dboid, TimestampTz now) {
    for (int i = 0; i < kMaxHolds; ++i)
        if (shared->holds[i].dboid == dboid && shared->holds[i].until > now)
            return true;
    return false;
}

} // namespace

// --- set-up --------------------------------------------------------------------------------------

void shared_slots_request() {
    RequestAddinShmemSpace(shared_size());
    RequestNamedLWLockTranche("pg_sync", 1);
}

void shared_slots_attach() {
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

void register_launcher_process() {
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    shared->launcher_pid = MyProcPid;
    shared->launcher_latch = MyLatch;
    LWLockRelease(shared->lock);
}

int take_launch_requests(Oid *dboids) {
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    const int n = shared->nrequests;
    memcpy(dboids, shared->requests, sizeof(Oid) * n);
    shared->nrequests = 0;
    LWLockRelease(shared->lock);
    return n;
}

EndedWorker collect_ended_worker(Oid dboid, TimestampTz now) {
    EndedWorker ended = {false, now, false};
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    ended.held = database_held(dboid, now);
    for (int i = 0; i < shared->nslots; ++i) {
        WorkerSlot *s = &shared->slots[i];
        if (s->dboid == dboid && s->pid == 0) {
            ended.no_extension = s->no_extension;
            ended.started_at = s->started_at;
            s->dboid = InvalidOid; // free
        }
    }
    LWLockRelease(shared->lock);
    return ended;
}

DatabaseOccupancy database_occupancy(Oid dboid, TimestampTz now) {
    DatabaseOccupancy o = {false, false};
    LWLockAcquire(shared->lock, LW_SHARED);
    o.held = database_held(dboid, now);
    for (int i = 0; i < shared->nslots; ++i)
        if (shared->slots[i].dboid == dboid && shared->slots[i].pid != 0 && kill(shared->slots[i].pid, 0) == 0)
            o.served = true;
    LWLockRelease(shared->lock);
    return o;
}

// --- commit-time wake-ups ------------------------------------------------------------------------

void notify_at_commit(bool config_changed, bool launch, bool force) {
    if (!shared)
        return;
    Latch *worker_latch = nullptr;
    Latch *launcher_latch = nullptr;
    LWLockAcquire(shared->lock, (launch || config_changed) ? LW_EXCLUSIVE : LW_SHARED);
    for (int i = 0; i < shared->nslots; ++i) {
        WorkerSlot *s = &shared->slots[i];
        if (s->dboid == MyDatabaseId && s->pid != 0) {
            if (config_changed)
                s->config_generation++; // under the exclusive lock: no increment is lost
            if (config_changed || force || !s->events_wake_off)
                worker_latch = s->latch;
        }
    }
    if (launch) {
        bool known = false;
        for (int i = 0; i < shared->nrequests; ++i)
            known |= shared->requests[i] == MyDatabaseId;
        if (!known && shared->nrequests < kMaxLaunchRequests)
            shared->requests[shared->nrequests++] = MyDatabaseId;
        launcher_latch = shared->launcher_latch;
    }
    LWLockRelease(shared->lock);
    if (worker_latch)
        SetLatch(worker_latch);
    if (launcher_latch)
        SetLatch(launcher_latch);
}

// --- worker slots (the delivery worker's side) ---------------------------------------------------

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
        mine->events_wake_off = false;
        strlcpy(mine->state, "starting", sizeof mine->state);
        mine->last_error[0] = '\0';
    }
    LWLockRelease(shared->lock);
    return mine;
}

int queue_current_part(Oid dboid) {
    int part = -1;
    LWLockAcquire(shared->lock, LW_SHARED);
    for (int i = 0; i < kMaxQueueParts; ++i)
        if (shared->queue_parts[i].dboid == dboid) {
            part = shared->queue_parts[i].part;
            break;
        }
    LWLockRelease(shared->lock);
    return part;
}

bool publish_queue_part(Oid dboid, int part) {
    bool published = false;
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    int free_entry = -1;
    for (int i = 0; i < kMaxQueueParts && !published; ++i) {
        if (shared->queue_parts[i].dboid == dboid) {
            shared->queue_parts[i].part = part;
            published = true;
        } else if (free_entry < 0 && !OidIsValid(shared->queue_parts[i].dboid)) {
            free_entry = i;
        }
    }
    if (!published && free_entry < 0) {
        // Full: take the entry of a database whose worker is gone (its writers fall back to 0).
        for (int i = 0; i < kMaxQueueParts && free_entry < 0; ++i) {
            bool served = false;
            for (int j = 0; j < shared->nslots; ++j)
                served |= shared->slots[j].dboid == shared->queue_parts[i].dboid;
            if (!served)
                free_entry = i;
        }
    }
    if (!published && free_entry >= 0) {
        shared->queue_parts[free_entry].dboid = dboid;
        shared->queue_parts[free_entry].part = part;
        published = true;
    }
    LWLockRelease(shared->lock);
    return published;
}

void set_worker_state(WorkerSlot *slot, const char *state) {
    slot->last_active_at = GetCurrentTimestamp();
    if (strcmp(slot->state, state) != 0) {
        LWLockAcquire(shared->lock, LW_EXCLUSIVE);
        strlcpy(slot->state, state, sizeof slot->state);
        LWLockRelease(shared->lock);
    }
}

void set_events_wake(WorkerSlot *slot, bool on) {
    if (slot->events_wake_off == !on)
        return; // only the worker writes it
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    slot->events_wake_off = !on;
    LWLockRelease(shared->lock);
}

// The last failed pass of this worker, for pg_sync.workers ("" clears it).
void set_worker_error(WorkerSlot *slot, const char *error) {
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    // Cut at a character boundary: the view returns it as text.
    const int len = pg_mbcliplen(error, int(strlen(error)), int(sizeof slot->last_error) - 1);
    memcpy(slot->last_error, error, len);
    slot->last_error[len] = '\0';
    LWLockRelease(shared->lock);
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
        // Six columns since 0.3.0 (last_error); a database not updated yet declares five, and
        // tuplestore_putvalues reads only as many as the result has.
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
