// Background workers: one launcher per server, one delivery worker per database that has the
// extension. Shared state, settings and the hooks that wake them. Included after postgres.h.
#pragma once

extern "C" {
#include "storage/latch.h"
#include "utils/timestamp.h"
}

namespace pg_sync::pg {

// Settings (pg_sync.*), defined in module.cpp.
struct Settings {
    int max_workers;               // postmaster: delivery workers (shared memory slots)
    int sweep_interval_ms;         // sighup: worker rescans the queue at least this often
    int database_check_interval_s; // sighup: launcher looks for new databases this often
    bool allow_private_targets;    // superuser
    char *http_proxy;              // sighup
    int max_connections;           // sighup: sockets per worker
    int circuit_failure_threshold; // sighup
    int recent_attempts_size;      // sighup: rows kept in pg_sync.recent_attempts
    int max_worker_memory_kb;      // sighup: event payloads a delivery worker reads into memory
    int debug_pass_pause_ms;       // superuser, tests only: pause between a pass's two queue reads
};
extern Settings settings;

// One per database worker; the launcher frees a slot once it has read how the worker ended.
struct WorkerSlot {
    Oid dboid;   // InvalidOid: free
    pid_t pid;   // 0: not running
    Latch *latch;
    TimestampTz started_at;
    TimestampTz last_active_at;
    uint32 config_generation; // bumped at commit of a configuration change
    bool no_extension;        // the worker found no pg_sync in its database and left
    char state[24];
    char last_error[256];     // the last failed pass of this worker ("": none)
};

void workers_shmem_request();
void workers_shmem_startup();
void register_launcher();

// Called from a backend: remember to wake this database's worker (events queued, or the
// configuration changed) or the launcher (extension created) when the transaction commits.
void wake_at_commit(bool config_changed);
void launch_at_commit();
void workers_xact_init();

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

// For the delivery worker.
WorkerSlot *claim_slot(Oid dboid);
void set_worker_state(WorkerSlot *slot, const char *state);
void set_worker_error(WorkerSlot *slot, const char *error);

} // namespace pg_sync::pg

extern "C" {
PGDLLEXPORT void pg_sync_launcher_main(Datum arg);
PGDLLEXPORT void pg_sync_worker_main(Datum arg);
PGDLLEXPORT void pg_sync_backfill_main(Datum arg);
}
