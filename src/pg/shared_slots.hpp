// pg_sync's shared memory (shared_slots.cpp): one struct under one LWLock with
//  * worker slots: one per running delivery worker (pg_sync.max_workers of them);
//  * backfill slots: the backfill worker of a database (at most one each);
//  * database holds: databases whose workers are kept stopped for DROP DATABASE, ALTER
//    DATABASE ... RENAME / SET TABLESPACE and CREATE DATABASE ... TEMPLATE;
//  * launch requests: databases that asked for a worker (CREATE EXTENSION) since the launcher
//    last looked, and the launcher's latch.
// Every access takes the lock inside the functions below; callers never see the struct.
// The functions that workers themselves call are declared in workers.hpp.
#pragma once

#include "pg/pg_prelude.hpp"
#include "pg/workers.hpp"

namespace pg_sync::pg {

// --- set-up (hooks.cpp: shmem_request_hook, shmem_startup_hook) ---
void shared_slots_request(); // RequestAddinShmemSpace and the LWLock tranche
void shared_slots_attach();

// --- the launcher ---
// Records the launcher's process and latch (it is woken through them).
void register_launcher_process();
// Takes the databases that asked for a worker since the last call (at most kMaxLaunchRequests).
constexpr int kMaxLaunchRequests = 32;
int take_launch_requests(Oid *dboids);
// A delivery worker of dboid has ended: frees its slot and says how it ended. held: the
// database is held for a DDL command (the worker was stopped on purpose).
struct EndedWorker {
    bool no_extension;      // it found no pg_sync in its database and left
    TimestampTz started_at; // when it claimed its slot (now if it never did)
    bool held;
};
EndedWorker collect_ended_worker(Oid dboid, TimestampTz now);
// Whether a worker may be started for dboid now: served = a live worker the launcher has no
// handle for (the launcher restarted) serves it; held = it is held for a DDL command.
struct DatabaseOccupancy {
    bool served;
    bool held;
};
DatabaseOccupancy database_occupancy(Oid dboid, TimestampTz now);

// --- commit-time wake-ups (wakeups.cpp) ---
// Sets the latch of this database's worker (bumping its configuration generation when
// config_changed; for events alone only while it wants them: WorkerSlot::events_wake_off, unless
// force) and, when launch, queues this database for the launcher and sets its latch.
void notify_at_commit(bool config_changed, bool launch, bool force);

} // namespace pg_sync::pg
