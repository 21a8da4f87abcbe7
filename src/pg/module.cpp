// Module entry: library load checks. Delivery workers and GUCs are registered here too.
extern "C" {
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

PG_MODULE_MAGIC;

void _PG_init(void);
}

#include "pg/capture.hpp"

void _PG_init(void) {
    // The capture trigger works in any backend, but delivery needs background workers and
    // shared memory that only preloading provides; fail early with the remedy rather than
    // half-working.
    if (!process_shared_preload_libraries_in_progress)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("pg_sync must be loaded via shared_preload_libraries"),
                        errhint("Add pg_sync to shared_preload_libraries in postgresql.conf and "
                                "restart the server, then run CREATE EXTENSION pg_sync.")));
    pg_sync::pg::capture_init();
}
