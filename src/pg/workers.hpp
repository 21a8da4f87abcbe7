// Background workers: one launcher per server (launcher.cpp), one delivery worker per database
// that has the extension (delivery_worker.cpp), a backfill worker per database while backfills
// run (backfill_worker.cpp). What they and the backends share: settings, worker slots in shared
// memory (shared_slots.cpp), wake-ups at commit (wakeups.cpp).
#pragma once

#include "pg/pg_prelude.hpp"
#include "pg/settings.hpp"

namespace pg_sync::pg {

// One per database worker; the launcher frees a slot once it has read how the worker ended.
struct WorkerSlot {
    Oid dboid;   // InvalidOid: free
    pid_t pid;   // 0: not running
    Latch *latch;
    TimestampTz started_at;
    TimestampTz last_active_at;
    uint32 config_generation; // bumped at commit of a configuration change
    bool no_extension;        // the worker found no pg_sync in its database and left
    // Every endpoint is paused: commits that only queued events do not set the latch (each one
    // would start a pass with nothing to send). Written by the worker under the exclusive lock,
    // read by committers under the shared one; cleared before every pass (set_events_wake).
    bool events_wake_off;
    char state[24];
    char last_error[256];     // the last failed pass of this worker ("": none)
};

// Registers the launcher (a static background worker). Called from _PG_init.
void launcher_init();

// Called from a backend: remember to wake this database's worker (events queued, or the
// configuration changed) or the launcher (extension created) when the transaction commits
// (wakeups.cpp; hooks.cpp calls wakeups_at_commit() / wakeups_forget()). A wake-up for events
// alone is skipped while the worker has every endpoint paused (WorkerSlot::events_wake_off);
// even_if_paused: wake it anyway (the queue's counts must be recounted).
void wake_at_commit(bool config_changed, bool even_if_paused = false);
void launch_at_commit();
void wakeups_at_commit();
void wakeups_forget();

// DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE DATABASE ... TEMPLATE need
// a database nobody is connected to: stop its worker (and keep it stopped a few seconds).
// Returns the database stopped for (InvalidOid: none, e.g. the caller may not run the command).
Oid stop_worker_for_database(const char *dbname, volatile Oid *held);
void release_database_hold(Oid dboid);

// Workers run as the bootstrap superuser: settings that a database owner may attach to the
// database (ALTER DATABASE ... SET) must neither redirect their function calls nor make them
// fail (a worker failing at every start restarts in a loop). Called after connecting.
void pin_worker_settings();

// Backfill workers (one per database at most): claim/release in the worker itself; the delivery
// worker starts one when backfills are running and none is.
bool claim_backfill_slot(Oid dboid);
void release_backfill_slot();
bool backfill_worker_running(Oid dboid);
bool start_backfill_worker(Oid dboid);

// The current partition of a database's queue (sql/src/queue.sql): -1 when its worker has not
// published one since the server started. publish: false when shared memory has no room (the
// database's writers then use partition 0).
int queue_current_part(Oid dboid);
bool publish_queue_part(Oid dboid, int part);

// For the delivery worker.
WorkerSlot *claim_slot(Oid dboid);
void set_worker_state(WorkerSlot *slot, const char *state);
void set_worker_error(WorkerSlot *slot, const char *error);
// Whether commits that only queued events wake this worker (core/worker_policy
// events_wake_worker); changes take the exclusive lock, so a committer that skipped the
// wake-up did so before the worker's next read of the queue.
void set_events_wake(WorkerSlot *slot, bool on);

} // namespace pg_sync::pg

extern "C" {
PGDLLEXPORT void pg_sync_launcher_main(Datum arg);
PGDLLEXPORT void pg_sync_worker_main(Datum arg);
PGDLLEXPORT void pg_sync_backfill_main(Datum arg);
}
