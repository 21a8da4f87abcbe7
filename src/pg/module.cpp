// The library's entry: _PG_init, a list of each part's *_init(). What each part does is in its
// own file; hooks.cpp installs every hook and callback.
#include "pg/pg_prelude.hpp"

extern "C" {
PG_MODULE_MAGIC;

void _PG_init(void);
}

#include "pg/hooks.hpp"
#include "pg/settings.hpp"
#include "pg/workers.hpp"

void _PG_init(void) {
    // The capture trigger works in any backend, but delivery needs background workers and
    // shared memory that only preloading provides; fail early with the remedy rather than
    // half-working.
    if (!process_shared_preload_libraries_in_progress)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("pg_sync must be loaded via shared_preload_libraries"),
                        errhint("Add pg_sync to shared_preload_libraries in postgresql.conf and "
                                "restart the server, then run CREATE EXTENSION pg_sync.")));
    pg_sync::pg::settings_init();  // pg_sync.* (settings.cpp)
    pg_sync::pg::hooks_init();     // shared memory, utility/executor/transaction hooks, invalidation callbacks
    pg_sync::pg::launcher_init();  // the launcher background worker (launcher.cpp)
}
