// Exact pending counts per endpoint, kept in shared memory (queue_counters.cpp), so that
// pg_sync.endpoint_status and health() never count the queue. Who calls what:
//   hooks.cpp          shared memory set-up; transaction and subtransaction events; utility
//                      statements the counts cannot follow (COMMIT PREPARED, trigger DDL on the
//                      queue)
//   queue_writer.cpp   queue_counters_add() for every row the capture path writes
//   queue_store.cpp    queue_counters_add() with minus what the worker's DELETEs removed
//   delivery_pass.cpp  queue_counters_recount_if_due(), first thing in a pass
//   SQL                pg_sync._count_queue() (triggers on pg_sync._queue), pg_sync._pending()
// Every function is C-style (PostgreSQL errors may unwind through it; see guard.hpp).
#pragma once

#include "pg/pg_prelude.hpp"

namespace pg_sync::pg {

// --- set-up (hooks.cpp: shmem_request_hook, shmem_startup_hook) ---
void queue_counters_request();
void queue_counters_attach();

// --- the current (sub)transaction's changes to pg_sync._queue ---
// n events added to endpoint_id's queue (n < 0: removed); published when the transaction
// commits, dropped with a subtransaction or transaction that rolls back.
void queue_counters_add(int32 endpoint_id, int64 n);
// When this transaction commits, the database's counts are to be recounted (readers count the
// queue until the worker has done it): a change the counts cannot follow.
void queue_counters_recount_at_commit();

// --- transaction events (hooks.cpp) ---
void queue_counters_pre_commit();
void queue_counters_at_commit(); // after the commit is visible (XACT_EVENT_COMMIT)
void queue_counters_forget();    // abort, prepare
void queue_counters_subxact_commit(SubTransactionId sub, SubTransactionId parent);
void queue_counters_subxact_abort(SubTransactionId sub);
// A utility statement is about to run: COMMIT PREPARED makes a prepared transaction's events
// pending, ALTER TABLE ... ENABLE/DISABLE TRIGGER or ATTACH/DETACH PARTITION on the queue may
// let rows in or out unseen: recount once it commits.
void queue_counters_utility(Node *tree);

// --- the delivery worker ---
// First thing in a pass, before it changes the queue: recounts this database's queue when the
// worker has just started (shared memory is empty after a restart), when something asked for a
// recount, or when the extension was created again. Raises on error (the pass fails).
bool queue_counters_recount_if_due(); // true: it recounted

} // namespace pg_sync::pg
