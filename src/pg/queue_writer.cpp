// The queue writer: the queue rows of captured changes go into pg_sync._queue with heap_insert /
// heap_multi_insert plus index_insert for each index of the queue (plain column indexes; others
// are refused), not through SPI: this is the hot path of every write to a tracked table, and
// writers have no rights on pg_sync. lookup_queue() checks at first use that _queue has the
// columns this library fills (by name and type), so an extension/library version mismatch is an
// error, not corruption.
//
// Bulk capture: a row is formed when it is captured (its id is taken from the sequence then, so
// ids follow capture order) and kept in a buffer that is written in one heap_multi_insert when
// the statement ends (hooks.cpp: ExecutorEnd, ProcessUtility), when it holds
// MAX_PENDING_ROWS rows or MAX_PENDING_BYTES, when its subtransaction commits, and before commit
// or prepare. The buffered rows belong to the (sub)transaction that captured them: they are
// written only inside it (or inside its parent once it has committed), and dropped when it
// aborts. docs/capture.md, "Bulk capture".
//
// Two single places: queue_target() chooses the relation the rows go into, write_rows() is the
// one path by which rows reach it.
//
// C-style: no object with a destructor lives in these frames (see guard.hpp).
#include "pg/pg_prelude.hpp"

#include "pg/capture.hpp"
#include "pg/capture_internal.hpp"
#include "pg/queue_counters.hpp"
#include "pg/settings.hpp"
#include "pg/workers.hpp"

namespace pg_sync::pg::capture {
namespace {

// OIDs of the queue partition written (queue_part, sql/src/queue.sql) and of the queue's sequence
// in the current database; InvalidOid = look up again.
Oid queue_relid = InvalidOid;
int queue_part = -1;
Oid queue_seqid = InvalidOid;

// Attribute numbers of the queue columns the trigger fills, checked when the queue is looked up.
enum QueueCol {
    Q_ID, Q_ENDPOINT, Q_OP, Q_TBL, Q_KEY, Q_NEW, Q_OLD, Q_TXID, Q_CAPTURED_AT, Q_ATTEMPTS, Q_PART, Q_TRACEPARENT, Q_NCOLS
};
struct QueueColumnSpec {
    const char *name;
    Oid type;
};
const QueueColumnSpec queue_columns[Q_NCOLS] = {
    {"id", INT8OID},       {"endpoint_id", INT4OID}, {"op", TEXTOID},   {"tbl", TEXTOID},
    {"key", JSONOID},      {"new_row", JSONOID},     {"old_row", JSONOID}, {"txid", XID8OID},
    {"captured_at", TIMESTAMPTZOID}, {"attempts", INT4OID}, {"part", INT2OID}, {"traceparent", TEXTOID}};
AttrNumber queue_attnum[Q_NCOLS];
int queue_natts = 0;
// The queue's indexes with their IndexInfo, built once per lookup_queue() (CacheMemoryContext).
int queue_nindexes = 0;
Oid *queue_index_oids = nullptr;
IndexInfo **queue_index_info = nullptr;

Oid pg_sync_namespace() {
    Oid nsp = get_namespace_oid("pg_sync", true);
    if (!OidIsValid(nsp))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_SCHEMA),
                        errmsg("schema pg_sync does not exist"),
                        errhint("Run CREATE EXTENSION pg_sync in this database.")));
    return nsp;
}

} // namespace

Oid own_relation(const char *name) {
    Oid relid = get_relname_relid(name, pg_sync_namespace());
    if (!OidIsValid(relid))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                        errmsg("pg_sync.%s does not exist", name),
                        errhint("The pg_sync extension is damaged; reinstall it.")));
    return relid;
}

namespace {

// The relation the queue rows of partition `part` go into: the one place that chooses it
// (everything below, the column check, the indexes, the writer, follows its answer). The
// partition (sql/src/queue.sql); before ALTER EXTENSION UPDATE from a version before 0.3.0, the
// one unpartitioned queue, without the part column.
Oid queue_target(int part, bool *partitioned) {
    Oid relid = own_relation("_queue");
    *partitioned = get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE;
    if (*partitioned) {
        char name[NAMEDATALEN];
        snprintf(name, sizeof name, "_queue_%d", part);
        relid = own_relation(name);
    }
    return relid;
}

// Looks up the queue and checks that its columns are the ones this library fills; any other
// column must be nullable (the trigger leaves it NULL, defaults are not applied). Takes and
// keeps the locks the insert needs first, so that the metadata read here cannot change before
// the rows are written (invalidations are processed when a lock is acquired).
void lookup_queue(int part) {
    if (OidIsValid(queue_relid) && part == queue_part)
        return;
    bool partitioned;
    Oid relid = queue_target(part, &partitioned);
    Oid seqid = own_relation("_queue_id_seq");
    Relation rel = table_open(relid, RowExclusiveLock);
    TupleDesc desc = RelationGetDescr(rel);
    for (int c = 0; c < Q_NCOLS; ++c)
        queue_attnum[c] = InvalidAttrNumber;
    for (int i = 0; i < desc->natts; ++i) {
        Form_pg_attribute att = TupleDescAttr(desc, i);
        if (att->attisdropped)
            continue;
        bool known = false;
        for (int c = 0; c < Q_NCOLS; ++c) {
            if (strcmp(NameStr(att->attname), queue_columns[c].name) == 0 &&
                att->atttypid == queue_columns[c].type) {
                queue_attnum[c] = att->attnum;
                known = true;
            }
        }
        if (!known && att->attnotnull)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("pg_sync queue column \"%s\" is not known to this library version",
                                   NameStr(att->attname)),
                            errhint("Run ALTER EXTENSION pg_sync UPDATE, or install the matching library.")));
    }
    // (part and traceparent are new in 0.3.0: a queue from before has neither.)
    for (int c = 0; c < Q_NCOLS; ++c)
        if (queue_attnum[c] == InvalidAttrNumber && !((c == Q_PART || c == Q_TRACEPARENT) && !partitioned))
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("pg_sync queue has no column \"%s\" of the expected type",
                                   queue_columns[c].name),
                            errhint("Run ALTER EXTENSION pg_sync UPDATE, or install the matching library.")));
    queue_natts = desc->natts;
    // Index maintenance is done by hand (see write_rows): only plain column indexes qualify.
    List *indexes = RelationGetIndexList(rel);
    MemoryContext old = MemoryContextSwitchTo(CacheMemoryContext);
    if (queue_index_oids) {
        for (int i = 0; i < queue_nindexes; ++i)
            pfree(queue_index_info[i]);
        pfree(queue_index_oids);
        pfree(queue_index_info);
    }
    queue_nindexes = 0;
    queue_index_oids = static_cast<Oid *>(palloc(sizeof(Oid) * Max(list_length(indexes), 1)));
    queue_index_info = static_cast<IndexInfo **>(palloc(sizeof(IndexInfo *) * Max(list_length(indexes), 1)));
    MemoryContextSwitchTo(old);
    ListCell *lc;
    foreach (lc, indexes) {
        Relation irel = index_open(lfirst_oid(lc), RowExclusiveLock);
        old = MemoryContextSwitchTo(CacheMemoryContext);
        IndexInfo *info = BuildIndexInfo(irel);
        MemoryContextSwitchTo(old);
        // Like ExecOpenIndices: an index being built concurrently is not ready for inserts yet.
        if (!info->ii_ReadyForInserts) {
            index_close(irel, NoLock);
            continue;
        }
        if (info->ii_Expressions != NIL || info->ii_Predicate != NIL)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("pg_sync queue index \"%s\" is not a plain column index",
                                   RelationGetRelationName(irel))));
        queue_index_oids[queue_nindexes] = lfirst_oid(lc);
        queue_index_info[queue_nindexes] = info;
        queue_nindexes++;
        index_close(irel, NoLock);
    }
    table_close(rel, NoLock);
    queue_seqid = seqid;
    queue_relid = relid;
    queue_part = part;
}

// The partition this statement's rows go to: the current one (any is correct; see
// sql/src/queue.sql).
int target_part() {
    const int part = pg_sync::pg::queue_current_part(MyDatabaseId);
    return part < 0 ? 0 : part;
}

// The op column's four values, made once.
Datum op_text(uint8 op) {
    static Datum texts[4] = {0, 0, 0, 0};
    const int i = op == EV_INSERT ? 0 : op == EV_UPDATE ? 1 : op == EV_DELETE ? 2 : 3;
    if (!texts[i]) {
        static const char *const names[4] = {"insert", "update", "delete", "truncate"};
        MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
        texts[i] = CStringGetTextDatum(names[i]);
        MemoryContextSwitchTo(old);
    }
    return texts[i];
}

// The buffer of captured rows not written yet (docs/capture.md, "Bulk capture"). Bounded: it is
// written when it holds MAX_PENDING_ROWS rows or MAX_PENDING_BYTES of tuples.
constexpr int MAX_PENDING_ROWS = 1000;
constexpr Size MAX_PENDING_BYTES = 1024 * 1024;
struct PendingRows {
    MemoryContext cxt;        // the tuples, and what writing them allocates; reset once written
    SubTransactionId subxact; // the (sub)transaction that captured them
    int natts;                // the queue's number of columns when they were formed
    int part;                 // the queue partition they were formed for (their part column)
    int n;
    Size bytes;
    HeapTuple tuples[MAX_PENDING_ROWS];
    int32 endpoint_ids[MAX_PENDING_ROWS];
};
PendingRows pending = {nullptr, InvalidSubTransactionId, 0, 0, 0, 0, {}, {}};

// The queue as one statement writes it: the table and its indexes opened once, and the page
// being filled kept pinned (a BulkInsertState without a ring strategy), instead of opening,
// locking and looking up the target page for every row. Everything is owned by the top
// transaction's resource owner, so subtransactions neither release nor leak it. It is released
// at the end of each executor run (after the statement's AFTER triggers) and of each utility
// statement once no buffered row waits for it, before commit, or forgotten at abort (the
// resource owner has released it then): hooks.cpp calls the queue_writer_* functions below at
// those points.
struct QueueWriter {
    bool open;
    Relation rel;
    int nindexes;
    Relation *indexes;
    BulkInsertStateData bistate;
};
QueueWriter writer = {false, nullptr, 0, nullptr, {nullptr, InvalidBuffer}};

void writer_close() {
    if (!writer.open)
        return;
    writer.open = false;
    ResourceOwner saved = CurrentResourceOwner;
    CurrentResourceOwner = TopTransactionResourceOwner;
    if (writer.bistate.current_buf != InvalidBuffer)
        ReleaseBuffer(writer.bistate.current_buf);
    writer.bistate.current_buf = InvalidBuffer;
    for (int i = 0; i < writer.nindexes; ++i)
        index_close(writer.indexes[i], NoLock);
    table_close(writer.rel, NoLock);
    CurrentResourceOwner = saved;
}

void writer_open() {
    if (writer.open && OidIsValid(queue_relid))
        return;
    // Rows waiting in the buffer were formed for their partition: it stays the one written
    // (this transaction's lock on it keeps it from being truncated meanwhile).
    const int part = pending.n > 0 ? pending.part : target_part();
    writer_close(); // the queue's definition changed under an open writer: start afresh
    if (!writer.indexes)
        writer.indexes = static_cast<Relation *>(MemoryContextAlloc(TopMemoryContext, sizeof(Relation) * INDEX_MAX_KEYS));
    for (int attempt = 0;; ++attempt) {
        lookup_queue(part);
        if (queue_nindexes > INDEX_MAX_KEYS)
            elog(ERROR, "pg_sync queue has too many indexes");
        ResourceOwner saved = CurrentResourceOwner;
        CurrentResourceOwner = TopTransactionResourceOwner;
        writer.rel = table_open(queue_relid, RowExclusiveLock);
        // An index of the list may be dropped before its lock is granted (REINDEX CONCURRENTLY
        // drops the old index while writers hold the table): try_relation_open then returns
        // NULL where index_open would fail with "could not open relation", and the queue is
        // looked up again.
        bool index_gone = false;
        writer.nindexes = 0;
        for (int i = 0; i < queue_nindexes && !index_gone; ++i) {
            Relation irel = try_relation_open(queue_index_oids[i], RowExclusiveLock);
            if (irel)
                writer.indexes[writer.nindexes++] = irel;
            else
                index_gone = true;
        }
        CurrentResourceOwner = saved;
        writer.bistate.strategy = nullptr;
        writer.bistate.current_buf = InvalidBuffer;
        writer.open = true;
        if (index_gone)
            queue_relid = InvalidOid;
        if (OidIsValid(queue_relid))
            return; // no invalidation of the queue arrived while it was being opened
        writer_close();
        if (attempt >= 10)
            elog(ERROR, "pg_sync queue keeps changing while it is being opened");
    }
}

// heap_multi_insert takes slots: heap-tuple slots over the buffered tuples, made once (with a
// descriptor of their own, so that no relcache descriptor is pinned across transactions).
TupleTableSlot *slots[MAX_PENDING_ROWS];
int nslots = 0;
MemoryContext slot_cxt = nullptr;

void make_slots(int n, TupleDesc desc) {
    if (n <= nslots)
        return;
    if (!slot_cxt)
        slot_cxt = AllocSetContextCreate(TopMemoryContext, "pg_sync queue slots", ALLOCSET_DEFAULT_SIZES);
    MemoryContext old = MemoryContextSwitchTo(slot_cxt);
    TupleDesc own = nslots > 0 ? slots[0]->tts_tupleDescriptor : CreateTupleDescCopy(desc);
    for (; nslots < n; ++nslots)
        slots[nslots] = MakeSingleTupleTableSlot(own, &TTSOpsHeapTuple);
    MemoryContextSwitchTo(old);
}

// Writes rows into the queue: the heap (heap_insert for one row, heap_multi_insert for more,
// into the writer's pinned page), then each index. The one path by which rows reach the queue.
// endpoint_ids[i] is the endpoint of tuples[i].
void write_rows(HeapTuple *tuples, const int32 *endpoint_ids, int n) {
    Relation rel = writer.rel;
    const CommandId cid = GetCurrentCommandId(true);
    const ResourceOwner saved = CurrentResourceOwner;
    volatile int stored = 0;
    PG_TRY();
    {
        // The pinned page belongs to the top transaction's resource owner.
        CurrentResourceOwner = TopTransactionResourceOwner;
        if (n == 1) {
            tuples[0]->t_tableOid = RelationGetRelid(rel);
            heap_insert(rel, tuples[0], cid, 0, &writer.bistate);
        } else {
            make_slots(n, RelationGetDescr(rel));
            // The slots own the tuples from here on (no copy); they free them when cleared.
            for (; stored < n; stored = stored + 1)
                ExecStoreHeapTuple(tuples[stored], slots[stored], true);
            heap_multi_insert(rel, slots, n, cid, 0, &writer.bistate);
            for (int i = 0; i < n; ++i)
                tuples[i]->t_self = slots[i]->tts_tid;
        }
        CurrentResourceOwner = saved;

        // Index maintenance by hand: the queue's indexes are plain column indexes (checked in
        // lookup_queue), so their values come straight from the row.
        TupleDesc desc = RelationGetDescr(rel);
        for (int r = 0; r < n; ++r) {
            for (int i = 0; i < writer.nindexes; ++i) {
                IndexInfo *info = queue_index_info[i];
                Datum ivalues[INDEX_MAX_KEYS];
                bool inulls[INDEX_MAX_KEYS];
                for (int k = 0; k < info->ii_NumIndexAttrs; ++k)
                    ivalues[k] = heap_getattr(tuples[r], info->ii_IndexAttrNumbers[k], desc, &inulls[k]);
                Relation irel = writer.indexes[i];
                index_insert(irel, ivalues, inulls, &tuples[r]->t_self, rel,
                             irel->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO, false, info);
            }
        }
    }
    PG_FINALLY();
    {
        CurrentResourceOwner = saved;
        for (int i = 0; i < stored; ++i)
            ExecClearTuple(slots[i]);
    }
    PG_END_TRY();
    // Each endpoint's pending count (queue_counters.cpp): these rows, in the (sub)transaction that
    // wrote them, published when the transaction commits.
    for (int r = 0; r < n; ++r)
        pg_sync::pg::queue_counters_add(endpoint_ids[r], 1);
}

void discard_pending() {
    pending.n = 0;
    pending.bytes = 0;
    pending.subxact = InvalidSubTransactionId;
    if (pending.cxt)
        MemoryContextReset(pending.cxt);
}

// Writes the buffered rows; the caller is inside the (sub)transaction they belong to.
void write_pending() {
    if (pending.n == 0)
        return;
    writer_open(); // opened afresh if an invalidation (a new index) arrived meanwhile
    if (queue_natts != pending.natts || queue_part != pending.part)
        elog(ERROR, "pg_sync queue changed while captured rows were waiting to be written");
    MemoryContext old = MemoryContextSwitchTo(pending.cxt);
    write_rows(pending.tuples, pending.endpoint_ids, pending.n);
    MemoryContextSwitchTo(old);
    discard_pending();
}

// The writer's pg_sync.traceparent as a text datum, read once per statement
// (queue_writer_new_statement); validated when it was set, so at most 55 bytes.
union {
    char data[VARHDRSZ + 64];
    int32 align;
} statement_traceparent;
bool statement_traced = false;

} // namespace

void queue_writer_new_statement() {
    const char *v = settings.traceparent;
    const size_t len = v ? strlen(v) : 0;
    statement_traced = len > 0 && len <= sizeof statement_traceparent.data - VARHDRSZ;
    if (statement_traced) {
        SET_VARSIZE(statement_traceparent.data, VARHDRSZ + len);
        memcpy(VARDATA(statement_traceparent.data), v, len);
    }
}

void queue_insert(int32 endpoint_id, uint8 op, text *table_name, Datum key, Datum new_row, Datum old_row,
                  bool key_null, bool new_null, bool old_null) {
    writer_open();
    pg_sync::pg::wake_at_commit(false);
    // Columns this library does not fill stay NULL. (No nesting: nothing below calls back here.)
    static Datum values[MaxTupleAttributeNumber];
    static bool nulls[MaxTupleAttributeNumber];
    memset(nulls, true, sizeof(bool) * queue_natts);
    auto set = [&](QueueCol c, Datum v, bool isnull) {
        values[queue_attnum[c] - 1] = v;
        nulls[queue_attnum[c] - 1] = isnull;
    };
    // The id is taken now, so that ids follow capture order however the rows are written.
    set(Q_ID, Int64GetDatum(nextval_internal(queue_seqid, false)), false);
    set(Q_ENDPOINT, Int32GetDatum(endpoint_id), false);
    set(Q_OP, op_text(op), false);
    set(Q_TBL, PointerGetDatum(table_name), false);
    set(Q_KEY, key, key_null);
    set(Q_NEW, new_row, new_null);
    set(Q_OLD, old_row, old_null);
    set(Q_TXID, FullTransactionIdGetDatum(GetTopFullTransactionId()), false);
    set(Q_CAPTURED_AT, TimestampTzGetDatum(GetCurrentTimestamp()), false);
    set(Q_ATTEMPTS, Int32GetDatum(0), false);
    if (queue_attnum[Q_PART] != InvalidAttrNumber)
        set(Q_PART, Int16GetDatum(int16(queue_part)), false);
    if (queue_attnum[Q_TRACEPARENT] != InvalidAttrNumber && statement_traced)
        set(Q_TRACEPARENT, PointerGetDatum(statement_traceparent.data), false);
    TupleDesc desc = RelationGetDescr(writer.rel);

    const SubTransactionId subxact = GetCurrentSubTransactionId();
    if (pending.n > 0 && pending.subxact != subxact) {
        // The buffer holds rows of an enclosing (sub)transaction, which may only be written in
        // it; this row, captured in a subtransaction of it, is written now, on its own.
        HeapTuple tup = heap_form_tuple(desc, values, nulls);
        write_rows(&tup, &endpoint_id, 1);
        return;
    }
    if (!pending.cxt)
        pending.cxt = AllocSetContextCreate(TopMemoryContext, "pg_sync captured rows", ALLOCSET_DEFAULT_SIZES);
    MemoryContext old = MemoryContextSwitchTo(pending.cxt);
    HeapTuple tup = heap_form_tuple(desc, values, nulls);
    MemoryContextSwitchTo(old);
    if (pending.n == 0) {
        pending.subxact = subxact;
        pending.natts = queue_natts;
        pending.part = queue_part;
    }
    pending.tuples[pending.n] = tup;
    pending.endpoint_ids[pending.n] = endpoint_id;
    pending.n++;
    pending.bytes += HEAPTUPLESIZE + tup->t_len;
    if (pending.n >= MAX_PENDING_ROWS || pending.bytes >= MAX_PENDING_BYTES)
        write_pending();
}

} // namespace pg_sync::pg::capture

namespace pg_sync::pg {

using namespace capture;

void queue_writer_end_statement() {
    // (Not while the transaction is being aborted: its rows are dropped, never written.)
    if (pending.n > 0 && pending.subxact == GetCurrentSubTransactionId() && IsTransactionState())
        write_pending();
    if (pending.n == 0)
        writer_close();
}

void queue_writer_pre_commit() {
    // Every subtransaction has ended by now: what is left belongs to the top transaction.
    write_pending();
    writer_close();
}

void queue_writer_subxact_pre_commit(SubTransactionId subxact) {
    // Rows of this subtransaction, or of one inside it that committed into it.
    if (pending.n > 0 && pending.subxact >= subxact)
        write_pending();
}

void queue_writer_subxact_abort(SubTransactionId subxact) {
    // Subtransaction ids grow: the rows of this one and of any inside it go with it.
    if (pending.n > 0 && pending.subxact >= subxact)
        discard_pending();
}

void queue_writer_forget() {
    discard_pending();
    writer.open = false; // the resource owner released the pin and the relations
    writer.bistate.current_buf = InvalidBuffer;
}

// Runs while invalidation messages are processed: only marks, never touches catalogs.
void queue_writer_relation_invalidated(Oid relid) {
    if (relid == InvalidOid) {
        queue_relid = InvalidOid;
        return;
    }
    if (relid == queue_relid || relid == queue_seqid)
        queue_relid = InvalidOid;
    for (int i = 0; i < queue_nindexes; ++i)
        if (relid == queue_index_oids[i])
            queue_relid = InvalidOid;
}

} // namespace pg_sync::pg
