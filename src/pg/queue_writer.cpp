// The queue writer: one queue row per captured change, written with heap_insert plus
// index_insert for each index of pg_sync._queue (plain column indexes; others are refused), not
// through SPI: this is the hot path of every write to a tracked table, and writers have no
// rights on pg_sync. lookup_queue() checks at first use that _queue has the columns this library
// fills (by name and type), so an extension/library version mismatch is an error, not corruption.
//
// C-style: no object with a destructor lives in these frames (see guard.hpp).
#include "pg/pg_prelude.hpp"

#include "pg/capture.hpp"
#include "pg/capture_internal.hpp"
#include "pg/queue_counters.hpp"
#include "pg/workers.hpp"

namespace pg_sync::pg::capture {
namespace {

// OIDs of the queue partition written (queue_part, sql/src/queue.sql) and of the queue's sequence
// in the current database; InvalidOid = look up again.
Oid queue_relid = InvalidOid;
int queue_part = -1;
Oid queue_seqid = InvalidOid;

// Attribute numbers of the queue columns the trigger fills, checked when the queue is looked up.
enum QueueCol { Q_ID, Q_ENDPOINT, Q_OP, Q_TBL, Q_KEY, Q_NEW, Q_OLD, Q_TXID, Q_CAPTURED_AT, Q_ATTEMPTS, Q_PART, Q_NCOLS };
struct QueueColumnSpec {
    const char *name;
    Oid type;
};
const QueueColumnSpec queue_columns[Q_NCOLS] = {
    {"id", INT8OID},       {"endpoint_id", INT4OID}, {"op", TEXTOID},   {"tbl", TEXTOID},
    {"key", JSONOID},      {"new_row", JSONOID},     {"old_row", JSONOID}, {"txid", XID8OID},
    {"captured_at", TIMESTAMPTZOID}, {"attempts", INT4OID}, {"part", INT2OID}};
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

// Looks up the queue and checks that its columns are the ones this library fills; any other
// column must be nullable (the trigger leaves it NULL, defaults are not applied). Takes and
// keeps the locks the insert needs first, so that the metadata read here cannot change before
// the rows are written (invalidations are processed when a lock is acquired).
void lookup_queue(int part) {
    if (OidIsValid(queue_relid) && part == queue_part)
        return;
    // The partition (sql/src/queue.sql); before ALTER EXTENSION UPDATE from a version before
    // 0.3.0, the one unpartitioned queue, without the part column.
    Oid relid = own_relation("_queue");
    const bool partitioned = get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE;
    if (partitioned) {
        char name[NAMEDATALEN];
        snprintf(name, sizeof name, "_queue_%d", part);
        relid = own_relation(name);
    }
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
    for (int c = 0; c < Q_NCOLS; ++c)
        if (queue_attnum[c] == InvalidAttrNumber && !(c == Q_PART && !partitioned))
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("pg_sync queue has no column \"%s\" of the expected type",
                                   queue_columns[c].name),
                            errhint("Run ALTER EXTENSION pg_sync UPDATE, or install the matching library.")));
    queue_natts = desc->natts;
    // Index maintenance is done by hand (see queue_insert): only plain column indexes qualify.
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

const char *op_name(uint8 op) {
    switch (op) {
    case EV_INSERT: return "insert";
    case EV_UPDATE: return "update";
    case EV_DELETE: return "delete";
    default: return "truncate";
    }
}

// The queue as one statement writes it: the table and its indexes opened once, and the page
// being filled kept pinned (a BulkInsertState without a ring strategy), instead of opening,
// locking and looking up the target page for every row. Everything is owned by the top
// transaction's resource owner, so subtransactions neither release nor leak it, and is
// released at the end of each executor run (after the statement's AFTER triggers) and of each
// utility statement, before commit, or forgotten at abort (the resource owner has released it
// then): hooks.cpp calls queue_writer_close() / queue_writer_forget() at those points.
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
    const int part = target_part();
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
        for (int i = 0; i < queue_nindexes; ++i)
            writer.indexes[i] = index_open(queue_index_oids[i], RowExclusiveLock);
        writer.nindexes = queue_nindexes;
        CurrentResourceOwner = saved;
        writer.bistate.strategy = nullptr;
        writer.bistate.current_buf = InvalidBuffer;
        writer.open = true;
        if (OidIsValid(queue_relid))
            return; // no invalidation of the queue arrived while it was being opened
        writer_close();
        if (attempt >= 10)
            elog(ERROR, "pg_sync queue keeps changing while it is being opened");
    }
}

} // namespace

void queue_insert(int32 endpoint_id, uint8 op, text *table_name, Datum key, Datum new_row, Datum old_row,
                  bool key_null, bool new_null, bool old_null) {
    writer_open();
    pg_sync::pg::wake_at_commit(false);
    Datum *values = static_cast<Datum *>(palloc0(sizeof(Datum) * queue_natts));
    bool *nulls = static_cast<bool *>(palloc(sizeof(bool) * queue_natts));
    memset(nulls, true, sizeof(bool) * queue_natts);
    auto set = [&](QueueCol c, Datum v, bool isnull) {
        values[queue_attnum[c] - 1] = v;
        nulls[queue_attnum[c] - 1] = isnull;
    };
    set(Q_ID, Int64GetDatum(nextval_internal(queue_seqid, false)), false);
    set(Q_ENDPOINT, Int32GetDatum(endpoint_id), false);
    set(Q_OP, CStringGetTextDatum(op_name(op)), false);
    set(Q_TBL, PointerGetDatum(table_name), false);
    set(Q_KEY, key, key_null);
    set(Q_NEW, new_row, new_null);
    set(Q_OLD, old_row, old_null);
    set(Q_TXID, FullTransactionIdGetDatum(GetTopFullTransactionId()), false);
    set(Q_CAPTURED_AT, TimestampTzGetDatum(GetCurrentTimestamp()), false);
    set(Q_ATTEMPTS, Int32GetDatum(0), false);
    if (queue_attnum[Q_PART] != InvalidAttrNumber)
        set(Q_PART, Int16GetDatum(int16(queue_part)), false);

    Relation rel = writer.rel;
    HeapTuple tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);
    tup->t_tableOid = RelationGetRelid(rel);
    // The pinned page belongs to the top transaction's resource owner.
    ResourceOwner saved = CurrentResourceOwner;
    CurrentResourceOwner = TopTransactionResourceOwner;
    PG_TRY();
    {
        heap_insert(rel, tup, GetCurrentCommandId(true), 0, &writer.bistate);
    }
    PG_FINALLY();
    {
        CurrentResourceOwner = saved;
    }
    PG_END_TRY();

    // Index maintenance by hand: the queue's indexes are plain column indexes (checked in
    // lookup_queue), so their values come straight from the row.
    for (int i = 0; i < writer.nindexes; ++i) {
        IndexInfo *info = queue_index_info[i];
        Datum ivalues[INDEX_MAX_KEYS];
        bool inulls[INDEX_MAX_KEYS];
        for (int k = 0; k < info->ii_NumIndexAttrs; ++k) {
            AttrNumber a = info->ii_IndexAttrNumbers[k];
            ivalues[k] = values[a - 1];
            inulls[k] = nulls[a - 1];
        }
        Relation irel = writer.indexes[i];
        index_insert(irel, ivalues, inulls, &tup->t_self, rel,
                     irel->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO, false, info);
    }
    pg_sync::pg::queue_counters_add(endpoint_id, 1); // the pending count, published at commit
}

} // namespace pg_sync::pg::capture

namespace pg_sync::pg {

using namespace capture;

void queue_writer_close() { writer_close(); }

void queue_writer_forget() {
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
