// Exact pending counts per endpoint, in shared memory: pg_sync.endpoint_status reads
// pg_sync._pending(endpoint) instead of counting pg_sync._queue (a parallel sequential scan of a
// million rows took 263 ms and slowed a draining worker by a third when polled).
//
// What is kept (one LWLock, "pg_sync counters"):
//  * a fixed-capacity hash (kMaxEntries) keyed by (database, endpoint id): pending, the number of
//    committed events in the endpoint's queue, and side, what writers added while a recount ran;
//  * one record per database (as many as pg_sync.max_workers, one per delivery worker): whether
//    its counts are exact, and the snapshot of its last recount (xmin, xmax and the running
//    top-level transactions, as 64-bit ids).
//
// Who changes the queue, and how the counts follow:
//  * Writers accumulate per-endpoint deltas in backend-local memory, per subtransaction
//    (core/pending_counts.hpp, LocalDeltas): the capture path (queue_writer.cpp, +1 per row),
//    SQL inserts (emit, redeliver, backfill pages, COPY of a restore: pg_sync._count_queue() as
//    an AFTER INSERT ... FOR EACH ROW trigger on the queue, cloned onto its partitions), the
//    delivery worker (queue_store.cpp: minus SPI_processed of its DELETEs of
//    delivered events and of events moved to the dead letters). A subtransaction that rolls back
//    drops its deltas, one that commits hands them to its parent. At XACT_EVENT_COMMIT (the
//    commit is visible to every snapshot taken from then on) the deltas are added to shared
//    memory by the rule below; at abort and PREPARE TRANSACTION they are dropped.
//  * What the counts cannot follow asks for a recount when it commits: a DELETE, UPDATE or
//    TRUNCATE of the queue by anyone but the delivery worker (pg_sync._count_queue() as an AFTER
//    ... FOR EACH STATEMENT trigger: no per-row cost; drop_endpoint is one), COMMIT PREPARED (the
//    prepared transaction's deltas were dropped at PREPARE: its events become pending only now),
//    ALTER TABLE ... ENABLE/DISABLE TRIGGER and ATTACH/DETACH PARTITION on the queue, a
//    transaction with more distinct (endpoint, subtransaction) deltas than LocalDeltas holds.
//    Until the recount has run, readers count the queue (exact, slower).
//  * The delivery worker's own moves within the queue (queue rotation carries a partition's last
//    events into the current one: DELETE ... RETURNING into INSERT, then TRUNCATE of the
//    partition) change no count: its inserts are not counted (the trigger skips them) and those
//    deletes are not subtracted (only queue_store.cpp's are).
//  * The delivery worker recounts, first thing in a pass and before its own changes: when it has
//    just started (shared memory is empty after a server restart, and whatever happened while no
//    worker ran is covered), when a recount was asked for, or when pg_sync._queue is another
//    relation than the one counted (the extension was created again).
//
// The recount (recount()):
//   1. exclusively: take a snapshot S, publish it in the database's record, mark the recount
//      running, zero every side count of the database; release;
//   2. count the queue per endpoint under S (SELECT endpoint_id, count(*) ... GROUP BY: an
//      index-only scan, O(queue), but rare);
//   3. exclusively: pending := count + side for every endpoint of the database, side := 0, mark
//      the counts exact (unless a recount was asked for again meanwhile); release.
// A writer, at commit, under the lock in shared mode (exclusive when it must create an entry):
//   skip the deltas if its top-level transaction id is visible in the last recount's snapshot
//   (pending_counts.hpp counted_in) and that recount did not run in this very transaction;
//   otherwise add them to pending, and to side as well while a recount is running.
//
// Why the counts are exact. Let W be a transaction with deltas d. Its commit becomes visible
// (ProcArrayEndTransaction) before its XACT_EVENT_COMMIT callback publishes d, and the lock
// orders every publication against each recount's steps 1 and 3.
//  (a) W publishes before step 1: its commit was visible before S was taken, so the count under
//      S includes d; W added d to pending, which step 3 overwrites, and not to side (step 1
//      zeroes it anyway). Counted once.
//  (b) W publishes between steps 1 and 3: if W is visible in S, the count includes d and W
//      skips. If not (W was running when S was taken, or began after), the count misses d and W
//      adds it to side, which step 3 adds. Counted once.
//  (c) W publishes after step 3: if W is visible in S, the count included d and W skips
//      (however late its callback runs). Otherwise W adds d to pending, which step 3 has already
//      set. Counted once.
//  A later recount S' replaces S: every transaction visible in S is visible in S', so the rule
//  holds against the newest snapshot alone. The recounting worker's own transaction is the one
//  exception to "visible in S": S is taken in it before any change of its own (its own xid, if
//  any, is not in S's list of running transactions, so counted_in would say "counted"), so its
//  deltas are applied whatever S says (own_recount_generation).
//  Between a commit becoming visible and its publication (microseconds), a reader sees the count
//  before it: the counts are exact as of the last published commit, and may go below the truth
//  for that moment when the worker deletes events whose writer has not published yet (readers
//  see at least 0). test/unit/pending_counts_test.cpp runs these rules through every
//  interleaving of writers, the worker and a recount; test/200_pending_counts.sh checks the
//  counts against count(*) across commits, rollbacks, savepoints, 2PC, a crash and delivery.
//
// Exact or not: pg_sync._pending() counts the endpoint's queue instead (an index-only scan under
// the reader's snapshot; exact, O(pending)) when the database has no record (no worker yet, pg_sync.max_workers = 0), before the first recount
// finished, while one runs or is asked for, when pg_sync._queue is not the relation counted, and
// after an endpoint found no free entry (overflow) until a recount finds room.
//
// C-style: no object with a destructor in these frames (see guard.hpp); the commit-time code
// raises nothing (an ERROR after the commit record would be promoted).
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_count_queue);
PG_FUNCTION_INFO_V1(pg_sync_pending);
}

#include "core/pending_counts.hpp"
#include "pg/queue_counters.hpp"
#include "pg/settings.hpp"
#include "pg/workers.hpp"

#include <csignal>

namespace pg_sync::pg {
namespace {

constexpr long kMaxEntries = 8192; // endpoints of all databases together

struct CounterKey {
    Oid dboid;
    int32 endpoint_id;
};

struct CounterEntry {
    CounterKey key;
    pg_atomic_uint64 pending; // int64, two's complement
    pg_atomic_uint64 side;
};

struct DbCounts {
    Oid dboid;          // InvalidOid: free
    pid_t owner;        // the delivery worker that recounted last
    Oid queue_relid;    // pg_sync._queue as it counted it
    bool valid;         // a recount has finished since the record was claimed
    bool recounting;    // one is running, under the snapshot below
    bool need_recount;  // asked for: readers count until it has run
    bool overflow;      // an endpoint found no free entry: readers count until a recount finds room
    uint64 generation;  // bumped by every recount's start
    uint64 xmin;        // the snapshot of the last recount (64-bit transaction ids)
    uint64 xmax;
    int xcnt;
    uint64 xip[FLEXIBLE_ARRAY_MEMBER];
};

struct SharedCounts {
    LWLock *lock;
    int ndbs;
    int xip_capacity;
    Size db_size;
    char dbs[FLEXIBLE_ARRAY_MEMBER]; // ndbs records of db_size bytes
};

SharedCounts *shared = nullptr;
HTAB *entries = nullptr;

// Backend-local: this transaction's deltas and requests.
pending::LocalDeltas local;
bool recount_requested = false;
uint64 commit_xid = 0;              // the top-level transaction id, taken at pre-commit
uint64 own_recount_generation = 0;  // this transaction ran the recount of that generation

int xip_capacity() { return MaxBackends + max_prepared_xacts; } // GetMaxSnapshotXidCount()

Size db_record_size() {
    return MAXALIGN(add_size(offsetof(DbCounts, xip), mul_size(sizeof(uint64), Max(xip_capacity(), 1))));
}

Size shared_size() {
    return add_size(offsetof(SharedCounts, dbs), mul_size(db_record_size(), Max(settings.max_workers, 0)));
}

DbCounts *db_at(int i) { return reinterpret_cast<DbCounts *>(shared->dbs + Size(i) * shared->db_size); }

// Under the lock.
DbCounts *find_db(Oid dboid) {
    for (int i = 0; i < shared->ndbs; ++i)
        if (db_at(i)->dboid == dboid)
            return db_at(i);
    return nullptr;
}

int64 read_i64(pg_atomic_uint64 *v) { return int64(pg_atomic_read_u64(v)); }
void write_i64(pg_atomic_uint64 *v, int64 x) { pg_atomic_write_u64(v, uint64(x)); }

// Under the exclusive lock: forget every entry of a database.
void drop_entries(Oid dboid) {
    HASH_SEQ_STATUS scan;
    hash_seq_init(&scan, entries);
    while (CounterEntry *e = static_cast<CounterEntry *>(hash_seq_search(&scan)))
        if (e->key.dboid == dboid)
            hash_search(entries, &e->key, HASH_REMOVE, nullptr);
}

// Under the exclusive lock: the database's record, claimed if it has none (a free one, or one
// whose worker is gone). nullptr: none to be had (readers count).
DbCounts *claim_db(Oid dboid) {
    if (DbCounts *d = find_db(dboid))
        return d;
    DbCounts *mine = nullptr;
    for (int i = 0; i < shared->ndbs && !mine; ++i)
        if (db_at(i)->dboid == InvalidOid)
            mine = db_at(i);
    for (int i = 0; i < shared->ndbs && !mine; ++i) {
        DbCounts *d = db_at(i);
        if (d->owner == 0 || kill(d->owner, 0) != 0) {
            drop_entries(d->dboid);
            mine = d;
        }
    }
    if (mine) {
        mine->dboid = dboid;
        mine->owner = 0;
        mine->queue_relid = InvalidOid;
        mine->valid = mine->recounting = mine->overflow = false;
        mine->need_recount = true;
        mine->xmin = mine->xmax = 0; // no snapshot yet: every commit adds (the recount resets all)
        mine->xcnt = 0;
    }
    return mine;
}

// Whether a reader may trust the database's counts (under the lock).
bool exact(const DbCounts *d, Oid queue) {
    return d && d->valid && !d->recounting && !d->need_recount && !d->overflow && OidIsValid(queue) &&
           d->queue_relid == queue;
}

Oid current_queue_relid() {
    const Oid nsp = get_namespace_oid("pg_sync", true);
    return OidIsValid(nsp) ? get_relname_relid("_queue", nsp) : InvalidOid;
}

// The delivery worker of this database (whose DELETEs the counts follow themselves).
bool in_delivery_worker() {
    return MyBgworkerEntry != nullptr && strcmp(MyBgworkerEntry->bgw_function_name, "pg_sync_worker_main") == 0;
}

void reset_local() {
    local.clear();
    recount_requested = false;
    commit_xid = 0;
    own_recount_generation = 0;
}

// Adds the deltas whose entries are found (under the lock: shared mode is enough, the adds are
// atomic and entries are created and removed only under the exclusive lock).
void publish(DbCounts *d, CounterEntry *const *found) {
    const pending::SnapshotXids s{d->xmin, d->xmax, d->xip, std::size_t(Max(d->xcnt, 0))};
    const bool counted = d->generation > 0 && commit_xid != 0 && pending::counted_in(s, commit_xid);
    const pending::CommitRule rule =
        pending::at_commit(counted, own_recount_generation != 0 && own_recount_generation == d->generation,
                           d->recounting);
    if (!rule.to_pending)
        return;
    for (std::size_t i = 0; i < local.size(); ++i) {
        if (!found[i])
            continue;
        pg_atomic_fetch_add_u64(&found[i]->pending, local[i].n);
        if (rule.to_side)
            pg_atomic_fetch_add_u64(&found[i]->side, local[i].n);
    }
}

// The recount itself (see the header comment), by the delivery worker in its pass.
void recount(Oid queue) {
    if (!local.empty())
        elog(ERROR, "pg_sync: the queue must be recounted before the pass changes it");
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    DbCounts *d = claim_db(MyDatabaseId);
    if (!d) {
        LWLockRelease(shared->lock);
        return; // no record free (more databases than pg_sync.max_workers): readers count
    }
    const TimestampTz started = GetCurrentTimestamp();
    // 1. The snapshot the count runs under, published before the lock is released.
    PushActiveSnapshot(GetTransactionSnapshot());
    const Snapshot snap = GetActiveSnapshot();
    if (int64(snap->xcnt) > int64(shared->xip_capacity)) {
        LWLockRelease(shared->lock);
        elog(ERROR, "pg_sync: snapshot with %u running transactions, more than %d", snap->xcnt,
             shared->xip_capacity);
    }
    const uint64 next = U64FromFullTransactionId(ReadNextFullTransactionId());
    d->xmin = pending::widen(next, snap->xmin);
    d->xmax = pending::widen(next, snap->xmax);
    for (uint32 i = 0; i < snap->xcnt; ++i)
        d->xip[i] = pending::widen(next, snap->xip[i]);
    d->xcnt = int(snap->xcnt);
    d->generation++;
    d->owner = MyProcPid;
    d->queue_relid = queue;
    d->recounting = true;
    d->need_recount = false;
    const uint64 generation = d->generation;
    own_recount_generation = generation;
    {
        HASH_SEQ_STATUS scan;
        hash_seq_init(&scan, entries);
        while (CounterEntry *e = static_cast<CounterEntry *>(hash_seq_search(&scan)))
            if (e->key.dboid == MyDatabaseId)
                write_i64(&e->side, 0);
    }
    LWLockRelease(shared->lock);

    // 2. The count, under S (read_only: SPI runs it under the active snapshot as it is).
    if (SPI_execute("SELECT endpoint_id, count(*) FROM pg_sync._queue GROUP BY endpoint_id", true, 0) !=
        SPI_OK_SELECT)
        elog(ERROR, "pg_sync: counting the queue failed");
    const uint64 n = SPI_processed;
    int32 *ids = static_cast<int32 *>(palloc(sizeof(int32) * (n + 1)));
    int64 *counts = static_cast<int64 *>(palloc(sizeof(int64) * (n + 1)));
    int64 total = 0;
    for (uint64 r = 0; r < n; ++r) {
        bool null_id = false, null_count = false;
        const Datum id = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &null_id);
        const Datum count = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &null_count);
        ids[r] = null_id ? 0 : DatumGetInt32(id);
        counts[r] = null_count ? 0 : DatumGetInt64(count);
        total += counts[r];
    }
    SPI_freetuptable(SPI_tuptable);
    PopActiveSnapshot();

    // 3. pending := count + side.
    LWLockAcquire(shared->lock, LW_EXCLUSIVE);
    d = find_db(MyDatabaseId);
    if (!d || d->generation != generation || d->owner != MyProcPid) {
        LWLockRelease(shared->lock);
        return; // taken over meanwhile (cannot happen with one worker per database)
    }
    {
        HASH_SEQ_STATUS scan;
        hash_seq_init(&scan, entries);
        while (CounterEntry *e = static_cast<CounterEntry *>(hash_seq_search(&scan))) {
            if (e->key.dboid == MyDatabaseId) {
                write_i64(&e->pending, pending::finish(0, read_i64(&e->side)));
                write_i64(&e->side, 0);
            }
        }
    }
    bool overflow = false;
    for (uint64 r = 0; r < n; ++r) {
        const CounterKey key{MyDatabaseId, ids[r]};
        bool found = false;
        CounterEntry *e = static_cast<CounterEntry *>(hash_search(entries, &key, HASH_ENTER_NULL, &found));
        if (!e) {
            overflow = true;
            continue;
        }
        if (!found) {
            pg_atomic_init_u64(&e->pending, 0);
            pg_atomic_init_u64(&e->side, 0);
        }
        // (pending holds the side count of the loop above.)
        write_i64(&e->pending, pending::finish(counts[r], read_i64(&e->pending)));
    }
    {
        // Endpoints with nothing pending need no entry (a dropped endpoint's goes here).
        HASH_SEQ_STATUS scan;
        hash_seq_init(&scan, entries);
        while (CounterEntry *e = static_cast<CounterEntry *>(hash_seq_search(&scan)))
            if (e->key.dboid == MyDatabaseId && read_i64(&e->pending) == 0)
                hash_search(entries, &e->key, HASH_REMOVE, nullptr);
    }
    d->recounting = false;
    d->valid = true;
    d->overflow = overflow;
    LWLockRelease(shared->lock);
    // Rare (worker start, DELETE or TRUNCATE of the queue by hand, COMMIT PREPARED) and O(queue):
    // worth a line in the log.
    ereport(LOG, (errmsg("pg_sync: pending events of database \"%s\" recounted: %lld in %llu endpoint%s, %ld ms",
                         get_database_name(MyDatabaseId), (long long)total, (unsigned long long)n,
                         n == 1 ? "" : "s", long((GetCurrentTimestamp() - started) / 1000))));
    if (overflow)
        ereport(LOG, (errmsg("pg_sync: more than %ld endpoints to count in shared memory; "
                             "pg_sync.endpoint_status counts the queue of database \"%s\" instead",
                             kMaxEntries, get_database_name(MyDatabaseId))));
}

} // namespace

// --- set-up --------------------------------------------------------------------------------------

void queue_counters_request() {
    RequestAddinShmemSpace(add_size(shared_size(), hash_estimate_size(kMaxEntries, sizeof(CounterEntry))));
    RequestNamedLWLockTranche("pg_sync counters", 1);
}

void queue_counters_attach() {
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    bool found = false;
    shared = static_cast<SharedCounts *>(ShmemInitStruct("pg_sync counters", shared_size(), &found));
    if (!found) {
        memset(shared, 0, shared_size());
        shared->lock = &(GetNamedLWLockTranche("pg_sync counters"))->lock;
        shared->ndbs = Max(settings.max_workers, 0);
        shared->xip_capacity = Max(xip_capacity(), 1);
        shared->db_size = db_record_size();
    }
    HASHCTL info;
    memset(&info, 0, sizeof info);
    info.keysize = sizeof(CounterKey);
    info.entrysize = sizeof(CounterEntry);
    entries = ShmemInitHash("pg_sync pending counts", kMaxEntries, kMaxEntries, &info,
                            HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
    LWLockRelease(AddinShmemInitLock);
}

// --- the current transaction's changes -----------------------------------------------------------

void queue_counters_add(int32 endpoint_id, int64 n) {
    if (n == 0)
        return;
    if (!local.add(endpoint_id, GetCurrentSubTransactionId(), n))
        queue_counters_recount_at_commit(); // more (endpoint, subtransaction) pairs than it holds
}

void queue_counters_recount_at_commit() {
    recount_requested = true;
    wake_at_commit(false, true); // the worker recounts at its next pass: let it come now, also when
                                 // every endpoint is paused
}

// --- transaction events --------------------------------------------------------------------------

void queue_counters_pre_commit() {
    if (!local.empty())
        commit_xid = U64FromFullTransactionId(GetTopFullTransactionIdIfAny());
}

void queue_counters_at_commit() {
    if (!shared || (local.empty() && !recount_requested)) {
        reset_local();
        return;
    }
    if (recount_requested) {
        // The deltas go too: the recount counts after this commit.
        LWLockAcquire(shared->lock, LW_EXCLUSIVE);
        if (DbCounts *d = find_db(MyDatabaseId))
            d->need_recount = true;
        LWLockRelease(shared->lock);
        reset_local();
        return;
    }
    CounterEntry *found[pending::LocalDeltas::kCapacity];
    LWLockAcquire(shared->lock, LW_SHARED);
    DbCounts *d = find_db(MyDatabaseId);
    bool complete = true;
    if (d) {
        for (std::size_t i = 0; i < local.size(); ++i) {
            const CounterKey key{MyDatabaseId, local[i].endpoint};
            found[i] = static_cast<CounterEntry *>(hash_search(entries, &key, HASH_FIND, nullptr));
            complete &= found[i] != nullptr || local[i].n == 0;
        }
        if (complete)
            publish(d, found);
    }
    LWLockRelease(shared->lock);
    if (d && !complete) {
        // An endpoint without an entry yet: create it, exclusively (and decide again: a recount
        // may have started in between).
        LWLockAcquire(shared->lock, LW_EXCLUSIVE);
        d = find_db(MyDatabaseId);
        if (d) {
            for (std::size_t i = 0; i < local.size(); ++i) {
                found[i] = nullptr;
                if (local[i].n == 0)
                    continue;
                const CounterKey key{MyDatabaseId, local[i].endpoint};
                bool exists = false;
                found[i] = static_cast<CounterEntry *>(hash_search(entries, &key, HASH_ENTER_NULL, &exists));
                if (!found[i])
                    d->overflow = true;
                else if (!exists) {
                    pg_atomic_init_u64(&found[i]->pending, 0);
                    pg_atomic_init_u64(&found[i]->side, 0);
                }
            }
            publish(d, found);
        }
        LWLockRelease(shared->lock);
    }
    reset_local();
}

void queue_counters_forget() { reset_local(); }

void queue_counters_subxact_commit(SubTransactionId sub, SubTransactionId parent) {
    if (!local.empty())
        local.commit_sub(sub, parent);
}

void queue_counters_subxact_abort(SubTransactionId sub) {
    if (!local.empty())
        local.abort_sub(sub);
}

void queue_counters_utility(Node *tree) {
    if (!shared || !tree)
        return;
    if (IsA(tree, TransactionStmt)) {
        if (castNode(TransactionStmt, tree)->kind == TRANS_STMT_COMMIT_PREPARED)
            queue_counters_recount_at_commit();
        return;
    }
    if (!IsA(tree, AlterTableStmt))
        return;
    AlterTableStmt *stmt = castNode(AlterTableStmt, tree);
    bool relevant = false;
    ListCell *lc;
    foreach (lc, stmt->cmds) {
        switch (castNode(AlterTableCmd, lfirst(lc))->subtype) {
        case AT_EnableTrig:
        case AT_EnableAlwaysTrig:
        case AT_EnableReplicaTrig:
        case AT_DisableTrig:
        case AT_EnableTrigAll:
        case AT_DisableTrigAll:
        case AT_EnableTrigUser:
        case AT_DisableTrigUser:
        case AT_AttachPartition:
        case AT_DetachPartition:
        case AT_DetachPartitionFinalize:
            relevant = true;
            break;
        default:
            break;
        }
    }
    if (!relevant || !stmt->relation)
        return;
    // The queue or one of its partitions.
    const Oid relid = RangeVarGetRelid(stmt->relation, NoLock, true);
    const Oid queue = current_queue_relid();
    if (OidIsValid(relid) && OidIsValid(queue) &&
        (relid == queue || (get_rel_relispartition(relid) && get_partition_parent(relid, true) == queue)))
        queue_counters_recount_at_commit();
}

// --- the delivery worker -------------------------------------------------------------------------

bool queue_counters_recount_if_due() {
    if (!shared)
        return false;
    const Oid queue = current_queue_relid();
    if (!OidIsValid(queue))
        return false;
    LWLockAcquire(shared->lock, LW_SHARED);
    const DbCounts *d = find_db(MyDatabaseId);
    const bool due = !d || d->owner != MyProcPid || d->queue_relid != queue || !d->valid || d->recounting ||
                     d->need_recount;
    LWLockRelease(shared->lock);
    if (due)
        recount(queue);
    return due;
}

} // namespace pg_sync::pg

using namespace pg_sync::pg;

// pg_sync._count_queue(): the triggers on pg_sync._queue (sql/src/counters.sql).
//   AFTER INSERT FOR EACH ROW: one more event for the row's endpoint (SQL inserts: emit,
//     redeliver, backfill pages, COPY; the capture path writes without triggers and counts in
//     queue_writer.cpp). Not in the delivery worker: its only inserts move events it deletes in
//     the same statement (queue rotation carries stragglers into the current partition).
//   AFTER UPDATE OR DELETE OR TRUNCATE FOR EACH STATEMENT: outside the delivery worker (which
//     counts its own deletes), recount once the transaction commits.
extern "C" Datum pg_sync_count_queue(PG_FUNCTION_ARGS) {
    if (!CALLED_AS_TRIGGER(fcinfo))
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("pg_sync._count_queue() must be called as a trigger")));
    TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!TRIGGER_FIRED_AFTER(td->tg_event))
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("pg_sync._count_queue() must be an AFTER trigger")));
    if (TRIGGER_FIRED_FOR_ROW(td->tg_event)) {
        if (!TRIGGER_FIRED_BY_INSERT(td->tg_event))
            ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                            errmsg("pg_sync._count_queue() counts inserted rows only")));
        if (in_delivery_worker())
            return PointerGetDatum(nullptr);
        const TupleDesc desc = RelationGetDescr(td->tg_relation);
        // By name: a partition may number its columns differently.
        AttrNumber attnum = InvalidAttrNumber;
        for (int i = 0; i < desc->natts && attnum == InvalidAttrNumber; ++i) {
            const Form_pg_attribute att = TupleDescAttr(desc, i);
            if (!att->attisdropped && strcmp(NameStr(att->attname), "endpoint_id") == 0)
                attnum = att->attnum;
        }
        if (attnum == InvalidAttrNumber)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("pg_sync._count_queue(): relation %s has no column endpoint_id",
                                   RelationGetRelationName(td->tg_relation))));
        bool isnull = false;
        const Datum endpoint = heap_getattr(td->tg_trigtuple, attnum, desc, &isnull);
        if (!isnull)
            queue_counters_add(DatumGetInt32(endpoint), 1);
        return PointerGetDatum(nullptr);
    }
    // Changes applied by logical replication are skipped by pg_sync._ignore_replicated().
    if (!in_delivery_worker() && MyLogicalRepWorker == nullptr)
        queue_counters_recount_at_commit();
    return PointerGetDatum(nullptr);
}

namespace {

// The fallback: count(*) of the endpoint's queue under the caller's snapshot, as the queue's
// owner (monitors may not read the queue), with search_path = pg_catalog and without JIT (a
// plan over a large queue would otherwise spend longer compiling than counting).
int64 count_queue(int32 endpoint_id) {
    const Oid queue = current_queue_relid();
    if (!OidIsValid(queue))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("pg_sync._queue does not exist"),
                        errhint("Run CREATE EXTENSION pg_sync in this database.")));
    HeapTuple tup = SearchSysCache1(RELOID, ObjectIdGetDatum(queue));
    if (!HeapTupleIsValid(tup))
        elog(ERROR, "pg_sync: cache lookup failed for relation %u", queue);
    const Oid owner = reinterpret_cast<Form_pg_class>(GETSTRUCT(tup))->relowner;
    ReleaseSysCache(tup);
    Oid saved_user;
    int saved_context;
    GetUserIdAndSecContext(&saved_user, &saved_context);
    SetUserIdAndSecContext(owner, saved_context | SECURITY_LOCAL_USERID_CHANGE);
    const int nest = NewGUCNestLevel();
    (void)set_config_option("search_path", "pg_catalog", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
    (void)set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "pg_sync: SPI_connect failed");
    Oid types[1] = {INT4OID};
    Datum values[1] = {Int32GetDatum(endpoint_id)};
    if (SPI_execute_with_args("SELECT pg_catalog.count(*) FROM pg_sync._queue WHERE endpoint_id OPERATOR(pg_catalog.=) $1",
                              1, types, values, nullptr, true, 1) != SPI_OK_SELECT ||
        SPI_processed != 1)
        elog(ERROR, "pg_sync: counting the queue failed");
    bool isnull = false;
    const int64 n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
    SPI_finish();
    AtEOXact_GUC(false, nest);
    SetUserIdAndSecContext(saved_user, saved_context);
    return n;
}

} // namespace

// pg_sync._pending(endpoint_id, count_if_unknown): the endpoint's committed events not yet
// delivered nor dead, from shared memory. When the database's counts are not exact at the moment
// (see the header comment), it counts them instead, or returns NULL if count_if_unknown is false.
extern "C" Datum pg_sync_pending(PG_FUNCTION_ARGS) {
    const int32 endpoint_id = PG_GETARG_INT32(0);
    const bool count_if_unknown = PG_GETARG_BOOL(1);
    bool ok = false;
    int64 value = 0;
    if (shared) {
        const CounterKey key{MyDatabaseId, endpoint_id};
        const Oid queue = current_queue_relid();
        LWLockAcquire(shared->lock, LW_SHARED);
        ok = exact(find_db(MyDatabaseId), queue);
        if (ok) {
            CounterEntry *e = static_cast<CounterEntry *>(hash_search(entries, &key, HASH_FIND, nullptr));
            value = e ? read_i64(&e->pending) : 0;
        }
        LWLockRelease(shared->lock);
    }
    if (ok)
        PG_RETURN_INT64(Max(value, 0));
    if (!count_if_unknown)
        PG_RETURN_NULL();
    PG_RETURN_INT64(count_queue(endpoint_id));
}
