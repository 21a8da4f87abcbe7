// Every PostgreSQL header the library uses, in one extern "C" block, and the version checks.
//
// Each file of src/pg includes this header first, instead of its own list of PostgreSQL
// includes: one place says which server API the library depends on, and one place adapts it
// when a new major version renames something (add the shim below, not in the callers).
// PostgreSQL headers are C; including them here once keeps their C linkage and their order
// (postgres.h first) right for every C++ file.
#pragma once

extern "C" {
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/hio.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/shortest_dec.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "nodes/value.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/worker_internal.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/portal.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"
}

// Supported servers: PostgreSQL 15 (shmem_request_hook, MarkGUCPrefixReserved and
// InitMaterializedSRF are new in 15; the tests run against 15 only).
#if PG_VERSION_NUM < 150000
#error "pg_sync needs PostgreSQL 15 or later"
#endif

// PostgreSQL 16 replaced the per-catalog ownership checks by object_ownercheck(); the library
// calls the 15 names, which these map when built against 16 or later (not tested there yet).
#if PG_VERSION_NUM >= 160000
#define pg_class_ownercheck(relid, role) object_ownercheck(RelationRelationId, (relid), (role))
#define pg_database_ownercheck(dboid, role) object_ownercheck(DatabaseRelationId, (dboid), (role))
#define pg_extension_ownercheck(extoid, role) object_ownercheck(ExtensionRelationId, (extoid), (role))
#endif
