// The capture trigger: writes one queue row per (row change, endpoint) in the writer's
// transaction.
//
// Hot path, so:
//  * per-relation capture plans (which endpoints, which columns, how to render each column,
//    the compiled filter) are cached per backend and dropped by relcache invalidation: of the
//    relation itself (ALTER TABLE), of its tracked ancestor (partitions), or of pg_sync._tracked
//    (track/untrack call pg_sync._config_changed());
//  * values are rendered to JSON text directly, with PostgreSQL's own output functions for the
//    common types and PostgreSQL's to_json for everything else, so that the output is exactly
//    what to_json gives;
//  * the queue row goes in with heap_insert + index_insert: no SPI, no executor, no permission
//    checks (writers have no rights on pg_sync, by design).
//
// This file calls PostgreSQL throughout, so it is written C-style: no object with a destructor
// lives in these frames (see guard.hpp). JSON text is built through core/json_render.hpp with a
// StringInfo sink.
extern "C" {
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/hio.h"
#include "storage/bufmgr.h"
#include "storage/proc.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/shortest_dec.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "tcop/utility.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

PG_FUNCTION_INFO_V1(pg_sync_capture);
PG_FUNCTION_INFO_V1(pg_sync_config_changed);
PG_FUNCTION_INFO_V1(pg_sync_check_filter);
PG_FUNCTION_INFO_V1(pg_sync_session_settings);
}

#include "core/json_render.hpp"

#include <cmath>
#include "pg/capture.hpp"
#include "pg/workers.hpp"

namespace {

namespace json = pg_sync::json;

// ---------------------------------------------------------------------------------------------
// JSON output into a StringInfo

struct StringInfoSink {
    StringInfo si;
    void append(const char *p, std::size_t n) { appendBinaryStringInfo(si, p, static_cast<int>(n)); }
    void push(char c) { appendStringInfoCharMacro(si, c); }
};

// How one column is rendered. The fast kinds cover the common built-in types (after looking
// through domains); everything else goes through PostgreSQL's to_json.
enum class Kind : uint8 { Bool, Int2, Int4, Int8, NumberOut, Text, StringOut, RawOut, DateTime, ToJson };

struct ColumnPlan {
    AttrNumber attnum;
    char *key;        // "\"name\":" rendered once
    int key_len;
    Kind kind;
    bool canonical;   // a key column: rendered the same whatever the session's settings
    Oid base_type;    // for DateTime
    bool byval;
    int16 typlen;
    FmgrInfo fn;      // output function (NumberOut, StringOut, RawOut) or to_json (ToJson)
};

enum EventBits : uint8 { EV_INSERT = 1, EV_UPDATE = 2, EV_DELETE = 4, EV_TRUNCATE = 8 };

struct EndpointPlan {
    int32 endpoint_id;
    Oid tracked_relid;     // the tracked table (the relation or a partitioned ancestor)
    uint8 events;
    bool columns_limited;  // `columns` was given: UPDATEs touching none of them are skipped
    int ncols;
    ColumnPlan *cols;
    int nkeys;
    ColumnPlan *keys;
    bool keys_need_settings; // a key column is rendered by to_json: under kCanonicalSettings
    SPIPlanPtr filter;     // NULL when no filter
    // Who wrote the filter (it runs with that role's rights only, security-restricted) and the
    // session settings recorded when it was written (it is parsed and run under them).
    Oid filter_role;
    int nsettings;
    char **setting_names;
    char **setting_values;
    // Per statement (statement_serial), not per row: the author's rights were checked, and
    // whether the session's settings already are the recorded ones (then none is set per row).
    mutable uint64 checked_serial;
    mutable bool settings_match;
};

struct RelPlan {
    Oid relid;             // hash key: the relation the trigger fires on (a partition, maybe)
    Oid tracked_relid;     // the tracked table (relid itself or a partitioned ancestor)
    bool valid;
    int in_use;            // trigger frames using this entry
    MemoryContext cxt;
    text *table_name;      // "schema.table" of the tracked table
    int neps;
    EndpointPlan *eps;
};

HTAB *rel_plans = nullptr;
// Bumped for every statement that fires the capture trigger (accept_config_changes) and every
// backfill page (capture_new_statement): what filter_passes checks once per statement.
uint64 statement_serial = 1;
// Bumped by every relcache invalidation: a plan built while one arrived is not trusted.
uint64 inval_counter = 0;

// OIDs of our own objects in the current database; InvalidOid = look up again.
Oid queue_relid = InvalidOid;
Oid queue_seqid = InvalidOid;
Oid tracked_relid_cache = InvalidOid;

// Attribute numbers of the queue columns the trigger fills, checked when the queue is looked up.
enum QueueCol { Q_ID, Q_ENDPOINT, Q_OP, Q_TBL, Q_KEY, Q_NEW, Q_OLD, Q_TXID, Q_CAPTURED_AT, Q_ATTEMPTS, Q_NCOLS };
struct QueueColumnSpec {
    const char *name;
    Oid type;
};
const QueueColumnSpec queue_columns[Q_NCOLS] = {
    {"id", INT8OID},       {"endpoint_id", INT4OID}, {"op", TEXTOID},   {"tbl", TEXTOID},
    {"key", JSONOID},      {"new_row", JSONOID},     {"old_row", JSONOID}, {"txid", XID8OID},
    {"captured_at", TIMESTAMPTZOID}, {"attempts", INT4OID}};
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

Oid own_relation(const char *name) {
    Oid relid = get_relname_relid(name, pg_sync_namespace());
    if (!OidIsValid(relid))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                        errmsg("pg_sync.%s does not exist", name),
                        errhint("The pg_sync extension is damaged; reinstall it.")));
    return relid;
}

Oid tracked_table_oid() {
    if (!OidIsValid(tracked_relid_cache))
        tracked_relid_cache = own_relation("_tracked");
    return tracked_relid_cache;
}

// Looks up the queue and checks that its columns are the ones this library fills; any other
// column must be nullable (the trigger leaves it NULL, defaults are not applied). Takes and
// keeps the locks the insert needs first, so that the metadata read here cannot change before
// the rows are written (invalidations are processed when a lock is acquired).
void lookup_queue() {
    if (OidIsValid(queue_relid))
        return;
    Oid relid = own_relation("_queue");
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
        if (queue_attnum[c] == InvalidAttrNumber)
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
}

// ---------------------------------------------------------------------------------------------
// Invalidation

void free_plan_contents(RelPlan *plan) {
    for (int i = 0; i < plan->neps; ++i)
        if (plan->eps[i].filter)
            SPI_freeplan(plan->eps[i].filter);
    plan->neps = 0;
    plan->eps = nullptr;
    plan->table_name = nullptr;
    if (plan->cxt)
        MemoryContextDelete(plan->cxt);
    plan->cxt = nullptr;
}

void invalidate_all() {
    if (!rel_plans)
        return;
    HASH_SEQ_STATUS status;
    hash_seq_init(&status, rel_plans);
    RelPlan *plan;
    while ((plan = static_cast<RelPlan *>(hash_seq_search(&status))) != nullptr)
        plan->valid = false;
}

// Runs while invalidation messages are processed: only marks, never touches catalogs.
void relcache_callback(Datum, Oid relid) {
    ++inval_counter;
    if (relid == InvalidOid) {
        queue_relid = tracked_relid_cache = InvalidOid;
        invalidate_all();
        return;
    }
    if (relid == queue_relid || relid == queue_seqid)
        queue_relid = InvalidOid;
    for (int i = 0; i < queue_nindexes; ++i)
        if (relid == queue_index_oids[i])
            queue_relid = InvalidOid;
    if (relid == tracked_relid_cache) {
        // Also forget the OID: the table may have been dropped with the extension.
        tracked_relid_cache = InvalidOid;
        invalidate_all();
        return;
    }
    if (!rel_plans)
        return;
    HASH_SEQ_STATUS status;
    hash_seq_init(&status, rel_plans);
    RelPlan *plan;
    while ((plan = static_cast<RelPlan *>(hash_seq_search(&status))) != nullptr)
        if (plan->relid == relid || plan->tracked_relid == relid)
            plan->valid = false;
}

// ---------------------------------------------------------------------------------------------
// Session settings that change what an expression means or how a value becomes text

// A filter is parsed and run under these settings as recorded from the session that called
// track() (pg_sync._session_settings()), so that the same row gets the same answer in every
// session: they change how literals are read (standard_conforming_strings, DateStyle,
// IntervalStyle), how values convert (TimeZone, lc_monetary, lc_numeric, xmloption) and how
// values turn into text (extra_float_digits, bytea_output). (search_path is pinned to
// pg_catalog on its own.)
const char *const kRecordedSettings[] = {"DateStyle",          "IntervalStyle", "TimeZone",
                                        "standard_conforming_strings", "extra_float_digits",
                                        "bytea_output",       "xmloption",     "lc_monetary",
                                        "lc_numeric"};
constexpr int kNumRecordedSettings = lengthof(kRecordedSettings);

// Keys are rendered the same whatever the writer's session (per-key order is decided on the key
// text): the common key types have a fixed rendering here (timestamptz in UTC, floats shortest
// exact); any other key column goes through to_json under these settings.
const char *const kCanonicalNames[] = {"TimeZone",     "DateStyle",   "IntervalStyle", "extra_float_digits",
                                       "bytea_output", "lc_monetary", "xmloption"};
const char *const kCanonicalValues[] = {"UTC", "ISO, YMD", "postgres", "1", "hex", "C", "content"};
constexpr int kNumCanonical = lengthof(kCanonicalNames);

// Applies the given settings (only those that differ from the current values) until
// leave_settings(nest), which undoes them and anything the code run in between set (a filter's
// set_config(..., false) must not outlive it: it would change the writer's session, or the
// worker's pinned search_path). An error in between is cleaned up by the (sub)transaction's abort.
int enter_settings(int n, const char *const *names, const char *const *values) {
    const int nest = NewGUCNestLevel();
    for (int i = 0; i < n; ++i) {
        const char *current = GetConfigOption(names[i], true, false);
        if (!current || strcmp(current, values[i]) != 0)
            (void)set_config_option(names[i], values[i], PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
                                    false);
    }
    return nest;
}

void leave_settings(int nest) { AtEOXact_GUC(false, nest); }

// Runs as `role`, security-restricted (no SET ROLE, no session state changes), until
// leave_role(). An error in between is cleaned up by the (sub)transaction's abort.
struct SavedUser {
    Oid user;
    int context;
};
SavedUser enter_role(Oid role) {
    SavedUser saved;
    GetUserIdAndSecContext(&saved.user, &saved.context);
    SetUserIdAndSecContext(role, saved.context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
    return saved;
}
void leave_role(SavedUser saved) { SetUserIdAndSecContext(saved.user, saved.context); }

// The role that wrote a filter must still exist and be able to read the tracked table; checked
// before each run of the filter. Otherwise the write fails: nothing is captured unfiltered or
// skipped silently.
void check_filter_role(Oid role, Oid tracked) {
    const char *name = OidIsValid(role) ? GetUserNameFromId(role, true) : nullptr;
    if (!name)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("the role that wrote the pg_sync filter of table %s no longer exists",
                               get_rel_name(tracked)),
                        errhint("Call pg_sync.track() for the table again: the filter then runs with the "
                                "rights of the role calling it.")));
    if (pg_class_aclcheck(tracked, role, ACL_SELECT) != ACLCHECK_OK)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("role \"%s\", which wrote the pg_sync filter of table %s, may no longer read it", name,
                               get_rel_name(tracked)),
                        errdetail("A filter runs with the rights of the role that wrote it, which must have SELECT "
                                  "on the table."),
                        errhint("Grant SELECT on the table to that role again, or call pg_sync.track() for the "
                                "table again as another role.")));
}

// ---------------------------------------------------------------------------------------------
// Plan building

void plan_column(ColumnPlan *col, Form_pg_attribute att, MemoryContext cxt, bool canonical) {
    col->attnum = att->attnum;
    col->canonical = canonical;
    {
        StringInfoData key;
        initStringInfo(&key);
        StringInfoSink sink{&key};
        const char *name = NameStr(att->attname);
        json::append_string(sink, name, strlen(name));
        appendStringInfoChar(&key, ':');
        col->key = key.data;
        col->key_len = key.len;
    }
    col->byval = att->attbyval;
    col->typlen = att->attlen;
    Oid base = getBaseType(att->atttypid);
    col->base_type = base;
    Oid outfn = InvalidOid;
    bool varlena = false;
    switch (base) {
    case BOOLOID: col->kind = Kind::Bool; break;
    case INT2OID: col->kind = Kind::Int2; break;
    case INT4OID: col->kind = Kind::Int4; break;
    case INT8OID: col->kind = Kind::Int8; break;
    case FLOAT4OID:
    case FLOAT8OID:
    case NUMERICOID: col->kind = Kind::NumberOut; break;
    case TEXTOID:
    case VARCHAROID: col->kind = Kind::Text; break;
    case BPCHAROID:
    case UUIDOID: col->kind = Kind::StringOut; break;
    case JSONOID:
    case JSONBOID: col->kind = Kind::RawOut; break;
    case DATEOID:
    case TIMESTAMPOID:
    case TIMESTAMPTZOID: col->kind = Kind::DateTime; break;
    default: col->kind = Kind::ToJson; break;
    }
    switch (col->kind) {
    case Kind::NumberOut:
    case Kind::StringOut:
    case Kind::RawOut:
        getTypeOutputInfo(base, &outfn, &varlena);
        fmgr_info_cxt(outfn, &col->fn, cxt);
        break;
    case Kind::ToJson: {
        // to_json looks at its argument's declared type through fn_expr.
        fmgr_info_cxt(F_TO_JSON, &col->fn, cxt);
        Node *arg = reinterpret_cast<Node *>(makeNullConst(att->atttypid, att->atttypmod, att->attcollation));
        Node *call = reinterpret_cast<Node *>(makeFuncExpr(F_TO_JSON, JSONOID, list_make1(arg), InvalidOid,
                                                           InvalidOid, COERCE_EXPLICIT_CALL));
        fmgr_info_set_expr(call, &col->fn);
        break;
    }
    default: break;
    }
}

Form_pg_attribute find_column(TupleDesc desc, const char *name, Relation rel) {
    for (int i = 0; i < desc->natts; ++i) {
        Form_pg_attribute att = TupleDescAttr(desc, i);
        if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
            return att;
    }
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
                    errmsg("column \"%s\" tracked by pg_sync does not exist in table %s", name,
                           RelationGetRelationName(rel)),
                    errhint("Call pg_sync.track() again with the current column names.")));
    return nullptr;
}

List *text_array_to_list(Datum array) {
    List *names = NIL;
    Datum *elems;
    bool *nulls;
    int n;
    deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
    for (int i = 0; i < n; ++i)
        if (!nulls[i])
            names = lappend(names, TextDatumGetCString(elems[i]));
    return names;
}

// Key column names: key_columns when given, else the tracked table's primary key.
List *key_column_names(Oid tracked, Datum key_columns, bool key_isnull) {
    if (!key_isnull)
        return text_array_to_list(key_columns);
    List *names = NIL;
    Relation trel = relation_open(tracked, AccessShareLock);
    Oid pk = RelationGetPrimaryKeyIndex(trel);
    if (OidIsValid(pk)) {
        Relation irel = index_open(pk, AccessShareLock);
        for (int i = 0; i < irel->rd_index->indnkeyatts; ++i) {
            AttrNumber a = irel->rd_index->indkey.values[i];
            names = lappend(names, pstrdup(NameStr(TupleDescAttr(RelationGetDescr(trel), a - 1)->attname)));
        }
        index_close(irel, AccessShareLock);
    }
    relation_close(trel, AccessShareLock);
    if (names == NIL)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("table %s tracked by pg_sync has no primary key", get_rel_name(tracked)),
                        errhint("Add a primary key, or call pg_sync.track() with key_columns.")));
    return names;
}

ColumnPlan *plan_columns(List *names, TupleDesc desc, Relation rel, MemoryContext cxt, int *count, bool canonical) {
    ColumnPlan *cols = static_cast<ColumnPlan *>(MemoryContextAllocZero(cxt, sizeof(ColumnPlan) * Max(list_length(names), 1)));
    int n = 0;
    ListCell *lc;
    foreach (lc, names)
        plan_column(&cols[n++], find_column(desc, static_cast<char *>(lfirst(lc)), rel), cxt, canonical);
    *count = n;
    return cols;
}

// The filter runs as a query over the row type of the relation the trigger fires on:
//   SELECT (<filter>) FROM (SELECT ($1).*) AS new, (SELECT ($2).*) AS old
// so that NEW.col and OLD.col work as in plpgsql. search_path is pinned to pg_catalog while
// it is parsed and run, so what a name means cannot depend on the writer's session.
char *filter_query(const char *filter) {
    return psprintf("SELECT (%s) FROM (SELECT ($1).*) AS new, (SELECT ($2).*) AS old", filter);
}

// Reports errors inside a filter against the filter's own text (not the caller's statement),
// and says where they come from.
void filter_error_callback(void *arg) {
    const char *query = static_cast<const char *>(arg);
    const int pos = geterrposition();
    if (pos > 0 && query) {
        errposition(0);
        internalerrposition(pos);
        internalerrquery(query);
    }
    errcontext("pg_sync filter");
}

bool contains_param_ref(Node *node, void *context) {
    if (node == nullptr)
        return false;
    if (IsA(node, ParamRef))
        return true;
    // The walker API takes an untyped function pointer; void (*)() is the sanctioned detour.
    return raw_expression_tree_walker(
        node, reinterpret_cast<bool (*)()>(reinterpret_cast<void (*)()>(contains_param_ref)), context);
}

// Filters see only the row: NEW and OLD, constants, operators and functions.
struct OverrideSearchPath filter_search_path = {NIL, true, false, 0};

// Checks that the filter is one expression (no way to smuggle in FROM, a second target or a
// second statement) before it is ever embedded in a query.
void check_filter_syntax(const char *filter) {
    char *query = psprintf("SELECT (%s)", filter);
    ErrorContextCallback callback = {error_context_stack, filter_error_callback, query};
    error_context_stack = &callback;
    List *stmts = raw_parser(query, RAW_PARSE_DEFAULT);
    error_context_stack = callback.previous;
    bool ok = list_length(stmts) == 1;
    SelectStmt *s = nullptr;
    if (ok) {
        Node *stmt = linitial_node(RawStmt, stmts)->stmt;
        ok = IsA(stmt, SelectStmt);
        if (ok) {
            s = reinterpret_cast<SelectStmt *>(stmt);
            ok = s->op == SETOP_NONE && list_length(s->targetList) == 1 && s->fromClause == NIL &&
                 s->whereClause == nullptr && s->groupClause == NIL && s->havingClause == nullptr &&
                 s->windowClause == NIL && s->sortClause == NIL && s->limitCount == nullptr &&
                 s->limitOffset == nullptr && s->lockingClause == NIL && s->withClause == nullptr &&
                 s->intoClause == nullptr && s->distinctClause == NIL && s->valuesLists == NIL;
        }
    }
    if (!ok)
        ereport(ERROR, (errcode(ERRCODE_SYNTAX_ERROR), errmsg("filter must be a single boolean expression"),
                        errhint("For example: NEW.status = 'paid' OR OLD.status IS DISTINCT FROM NEW.status")));
    if (contains_param_ref(static_cast<Node *>(linitial(s->targetList)), nullptr))
        ereport(ERROR, (errcode(ERRCODE_SYNTAX_ERROR), errmsg("filter must not contain parameters ($n)")));
}

// Prepares the filter plan (inside an SPI connection). Errors if it is not boolean.
SPIPlanPtr prepare_filter(const char *filter, Oid rowtype) {
    check_filter_syntax(filter);
    Oid argtypes[2] = {rowtype, rowtype};
    char *query = filter_query(filter);
    ErrorContextCallback callback = {error_context_stack, filter_error_callback, query};
    error_context_stack = &callback;
    PushOverrideSearchPath(&filter_search_path);
    SPIPlanPtr plan = SPI_prepare(query, 2, argtypes);
    PopOverrideSearchPath();
    error_context_stack = callback.previous;
    if (!plan)
        elog(ERROR, "SPI_prepare failed for pg_sync filter: %s", SPI_result_code_string(SPI_result));
    List *sources = SPI_plan_get_plan_sources(plan);
    CachedPlanSource *src = static_cast<CachedPlanSource *>(linitial(sources));
    Query *parsed = linitial_node(Query, src->query_list);
    const char *forbidden = parsed->hasSubLinks      ? "subqueries"
                            : parsed->hasAggs        ? "aggregate functions"
                            : parsed->hasWindowFuncs ? "window functions"
                            : parsed->hasTargetSRFs  ? "set-returning functions"
                                                     : nullptr;
    if (forbidden)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("filter must not use %s", forbidden),
                        errdetail("A filter looks only at the changed row, through NEW and OLD.")));
    // It may run once per endpoint and row, in the writer's transaction: no side effects.
    if (contain_volatile_functions(reinterpret_cast<Node *>(parsed->targetList)))
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("filter must not call volatile functions"),
                        errdetail("A filter may only use immutable and stable functions and operators.")));
    if (!src->resultDesc || src->resultDesc->natts != 1 ||
        getBaseType(TupleDescAttr(src->resultDesc, 0)->atttypid) != BOOLOID)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH), errmsg("filter must be a boolean expression"),
                        errdetail("It returns type %s.",
                                  src->resultDesc && src->resultDesc->natts == 1
                                      ? format_type_be(TupleDescAttr(src->resultDesc, 0)->atttypid)
                                      : "record")));
    return plan;
}

// prepare_filter as the role that wrote the filter, under the settings recorded with it.
SPIPlanPtr prepare_filter_as(const char *filter, Oid rowtype, Oid role, int nsettings, const char *const *names,
                             const char *const *values) {
    const int nest = enter_settings(nsettings, names, values);
    const SavedUser saved = enter_role(OidIsValid(role) ? role : GetUserId());
    SPIPlanPtr plan = prepare_filter(filter, rowtype);
    leave_role(saved);
    leave_settings(nest);
    return plan;
}

uint8 parse_events(Datum events) {
    Datum *elems;
    bool *nulls;
    int n;
    uint8 bits = 0;
    deconstruct_array(DatumGetArrayTypeP(events), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
    for (int i = 0; i < n; ++i) {
        if (nulls[i])
            continue;
        char *e = TextDatumGetCString(elems[i]);
        if (strcmp(e, "insert") == 0) bits |= EV_INSERT;
        else if (strcmp(e, "update") == 0) bits |= EV_UPDATE;
        else if (strcmp(e, "delete") == 0) bits |= EV_DELETE;
        else if (strcmp(e, "truncate") == 0) bits |= EV_TRUNCATE;
    }
    return bits;
}

AttrNumber optional_column_number(TupleDesc desc, const char *name) {
    for (int i = 0; i < desc->natts; ++i)
        if (!TupleDescAttr(desc, i)->attisdropped && strcmp(NameStr(TupleDescAttr(desc, i)->attname), name) == 0)
            return static_cast<AttrNumber>(i + 1);
    return InvalidAttrNumber;
}

AttrNumber column_number(TupleDesc desc, const char *name) {
    const AttrNumber a = optional_column_number(desc, name);
    if (a == InvalidAttrNumber)
        elog(ERROR, "pg_sync._tracked has no column \"%s\"", name);
    return a;
}

// "name=value" elements of a text[] (pg_sync._session_settings()) -> two arrays, in the
// current memory context.
void split_settings(Datum array, int *n, char ***names, char ***values) {
    Datum *elems;
    bool *nulls;
    int count;
    deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &count);
    *names = static_cast<char **>(palloc(sizeof(char *) * Max(count, 1)));
    *values = static_cast<char **>(palloc(sizeof(char *) * Max(count, 1)));
    *n = 0;
    for (int i = 0; i < count; ++i) {
        if (nulls[i])
            continue;
        char *item = TextDatumGetCString(elems[i]);
        char *eq = strchr(item, '=');
        if (!eq)
            continue;
        *eq = '\0';
        (*names)[*n] = item;
        (*values)[*n] = eq + 1;
        ++*n;
    }
}

void build_plan(RelPlan *plan, Relation rel) {
    const uint64 inval_at_start = inval_counter;
    Oid relid = RelationGetRelid(rel);
    List *ancestors = rel->rd_rel->relispartition ? get_partition_ancestors(relid) : NIL;
    TupleDesc desc = RelationGetDescr(rel);

    plan->cxt = AllocSetContextCreate(CacheMemoryContext, "pg_sync capture plan", ALLOCSET_SMALL_SIZES);
    MemoryContextSetIdentifier(plan->cxt, MemoryContextStrdup(plan->cxt, RelationGetRelationName(rel)));
    plan->tracked_relid = relid;
    plan->neps = 0;

    Relation trel = table_open(tracked_table_oid(), AccessShareLock);
    TupleDesc tdesc = RelationGetDescr(trel);
    AttrNumber a_tbl = column_number(tdesc, "tbl"), a_ep = column_number(tdesc, "endpoint_id"),
               a_events = column_number(tdesc, "events"), a_cols = column_number(tdesc, "columns"),
               a_keys = column_number(tdesc, "key_columns"), a_filter = column_number(tdesc, "filter");
    // Since 0.3.0 (a database not yet updated has neither: its filters run as the table's owner).
    const AttrNumber a_filter_role = optional_column_number(tdesc, "filter_role"),
                     a_filter_settings = optional_column_number(tdesc, "filter_settings");

    // First pass: count matching rows so the endpoint array has its final size.
    int capacity = 0;
    SysScanDesc scan = systable_beginscan(trel, InvalidOid, false, nullptr, 0, nullptr);
    HeapTuple tup;
    while ((tup = systable_getnext(scan)) != nullptr)
        ++capacity;
    systable_endscan(scan);
    plan->eps = static_cast<EndpointPlan *>(MemoryContextAllocZero(plan->cxt, sizeof(EndpointPlan) * Max(capacity, 1)));

    bool spi_connected = false;
    scan = systable_beginscan(trel, InvalidOid, false, nullptr, 0, nullptr);
    while ((tup = systable_getnext(scan)) != nullptr && plan->neps < capacity) {
        bool isnull;
        Oid tbl = DatumGetObjectId(heap_getattr(tup, a_tbl, tdesc, &isnull));
        if (tbl != relid && !list_member_oid(ancestors, tbl))
            continue;
        plan->tracked_relid = tbl;
        MemoryContext old = MemoryContextSwitchTo(plan->cxt);
        EndpointPlan *ep = &plan->eps[plan->neps];
        ep->endpoint_id = DatumGetInt32(heap_getattr(tup, a_ep, tdesc, &isnull));
        ep->tracked_relid = tbl;
        ep->events = parse_events(heap_getattr(tup, a_events, tdesc, &isnull));

        bool cols_null;
        Datum cols = heap_getattr(tup, a_cols, tdesc, &cols_null);
        List *col_names = NIL;
        if (cols_null) {
            // Every column, in the tracked table's order (a partition may order them otherwise).
            Relation tracked_rel = tbl == relid ? rel : relation_open(tbl, AccessShareLock);
            TupleDesc tracked_desc = RelationGetDescr(tracked_rel);
            for (int i = 0; i < tracked_desc->natts; ++i)
                if (!TupleDescAttr(tracked_desc, i)->attisdropped)
                    col_names = lappend(col_names, pstrdup(NameStr(TupleDescAttr(tracked_desc, i)->attname)));
            if (tracked_rel != rel)
                relation_close(tracked_rel, AccessShareLock);
        } else {
            col_names = text_array_to_list(cols);
        }
        ep->columns_limited = !cols_null;
        ep->cols = plan_columns(col_names, desc, rel, plan->cxt, &ep->ncols, false);

        bool keys_null;
        Datum keys = heap_getattr(tup, a_keys, tdesc, &keys_null);
        ep->keys = plan_columns(key_column_names(tbl, keys, keys_null), desc, rel, plan->cxt, &ep->nkeys, true);
        for (int k = 0; k < ep->nkeys; ++k)
            if (ep->keys[k].kind == Kind::ToJson)
                ep->keys_need_settings = true;

        bool filter_null;
        Datum filter = heap_getattr(tup, a_filter, tdesc, &filter_null);
        if (!filter_null) {
            bool role_null = true, settings_null = true;
            Datum role = a_filter_role ? heap_getattr(tup, a_filter_role, tdesc, &role_null) : (Datum)0;
            Datum settings = a_filter_settings ? heap_getattr(tup, a_filter_settings, tdesc, &settings_null) : (Datum)0;
            // No author (a filter from before 0.3.0, or a database not updated yet): it runs as
            // the writer, as it did in 0.2.0, and backfill refuses it (render_snapshot).
            ep->filter_role = role_null ? InvalidOid : DatumGetObjectId(role);
            if (!settings_null)
                split_settings(settings, &ep->nsettings, &ep->setting_names, &ep->setting_values);
        }
        MemoryContextSwitchTo(old);
        if (!filter_null) {
            if (!spi_connected) {
                if (SPI_connect() != SPI_OK_CONNECT)
                    elog(ERROR, "SPI_connect failed");
                spi_connected = true;
            }
            if (OidIsValid(ep->filter_role))
                check_filter_role(ep->filter_role, tbl);
            SPIPlanPtr fp = prepare_filter_as(TextDatumGetCString(filter), rel->rd_rel->reltype, ep->filter_role,
                                              ep->nsettings, ep->setting_names, ep->setting_values);
            SPI_keepplan(fp);
            ep->filter = fp;
        }
        plan->neps++;
    }
    systable_endscan(scan);
    table_close(trel, AccessShareLock);
    if (spi_connected)
        SPI_finish();

    // The event's table name is part of its identity (per-key order and the truncate barrier are
    // per table): quoted only where SQL needs it, whatever the writer's quote_all_identifiers.
    const char *nspname = get_namespace_name(get_rel_namespace(plan->tracked_relid));
    const char *relname = get_rel_name(plan->tracked_relid);
    const bool quote_all = quote_all_identifiers;
    quote_all_identifiers = false;
    char *name = psprintf("%s.%s", quote_identifier(nspname), quote_identifier(relname));
    quote_all_identifiers = quote_all;
    plan->table_name = static_cast<text *>(MemoryContextAlloc(plan->cxt, VARHDRSZ + strlen(name)));
    SET_VARSIZE(plan->table_name, VARHDRSZ + strlen(name));
    memcpy(VARDATA(plan->table_name), name, strlen(name));
    plan->valid = inval_counter == inval_at_start;
}

// Frees the invalid plans nobody uses (dropped relations, rotated partitions would otherwise
// keep theirs for the life of the session). Runs only when some plan is being rebuilt anyway.
void sweep_stale_plans(Oid keep) {
    HASH_SEQ_STATUS status;
    hash_seq_init(&status, rel_plans);
    RelPlan *plan;
    while ((plan = static_cast<RelPlan *>(hash_seq_search(&status))) != nullptr) {
        if (plan->valid || plan->in_use > 0 || plan->relid == keep)
            continue;
        free_plan_contents(plan);
        Oid relid = plan->relid;
        (void)hash_search(rel_plans, &relid, HASH_REMOVE, nullptr);
    }
}

RelPlan *get_plan(Relation rel) {
    if (!rel_plans) {
        HASHCTL ctl;
        memset(&ctl, 0, sizeof ctl);
        ctl.keysize = sizeof(Oid);
        ctl.entrysize = sizeof(RelPlan);
        ctl.hcxt = CacheMemoryContext;
        rel_plans = hash_create("pg_sync capture plans", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
    }
    Oid relid = RelationGetRelid(rel);
    bool found;
    RelPlan *plan = static_cast<RelPlan *>(hash_search(rel_plans, &relid, HASH_ENTER, &found));
    if (!found) {
        plan->cxt = nullptr;
        plan->neps = 0;
        plan->eps = nullptr;
        plan->valid = false;
        plan->in_use = 0;
        plan->tracked_relid = relid;
    }
    // An entry in use by an outer trigger frame is kept (stale but alive) until it is free.
    if (!plan->valid && plan->in_use == 0) {
        sweep_stale_plans(relid);
        free_plan_contents(plan);
        build_plan(plan, rel);
    }
    return plan;
}

// ---------------------------------------------------------------------------------------------
// Rendering

void render_value(StringInfoSink &sink, const ColumnPlan *col, Datum value, bool isnull) {
    if (isnull) {
        sink.append("null", 4);
        return;
    }
    char buf[MAXDATELEN + 32];
    switch (col->kind) {
    case Kind::Bool:
        if (DatumGetBool(value))
            sink.append("true", 4);
        else
            sink.append("false", 5);
        break;
    case Kind::Int2: sink.append(buf, pg_itoa(DatumGetInt16(value), buf)); break;
    case Kind::Int4: sink.append(buf, pg_ltoa(DatumGetInt32(value), buf)); break;
    case Kind::Int8: sink.append(buf, pg_lltoa(DatumGetInt64(value), buf)); break;
    case Kind::NumberOut: {
        if (col->canonical && (col->base_type == FLOAT8OID || col->base_type == FLOAT4OID)) {
            // Shortest exact digits, as float8out with extra_float_digits > 0 (the default).
            const double d = col->base_type == FLOAT8OID ? DatumGetFloat8(value) : DatumGetFloat4(value);
            if (std::isnan(d))
                json::append_number_text(sink, "NaN", 3);
            else if (std::isinf(d))
                d > 0 ? json::append_number_text(sink, "Infinity", 8) : json::append_number_text(sink, "-Infinity", 9);
            else
                sink.append(buf, col->base_type == FLOAT8OID ? double_to_shortest_decimal_buf(d, buf)
                                                             : float_to_shortest_decimal_buf(float(d), buf));
            break;
        }
        char *s = OutputFunctionCall(const_cast<FmgrInfo *>(&col->fn), value);
        json::append_number_text(sink, s, strlen(s));
        break;
    }
    case Kind::Text: {
        text *t = DatumGetTextPP(value);
        json::append_string(sink, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
        break;
    }
    case Kind::StringOut: {
        char *s = OutputFunctionCall(const_cast<FmgrInfo *>(&col->fn), value);
        json::append_string(sink, s, strlen(s));
        break;
    }
    case Kind::RawOut: {
        char *s = OutputFunctionCall(const_cast<FmgrInfo *>(&col->fn), value);
        sink.append(s, strlen(s));
        break;
    }
    case Kind::DateTime: {
        // A key's timestamptz in UTC ("+00:00"), not in the writer's TimeZone.
        static const int utc = 0;
        JsonEncodeDateTime(buf, value, col->base_type, col->canonical ? &utc : nullptr);
        sink.push('"');
        sink.append(buf, strlen(buf));
        sink.push('"');
        break;
    }
    case Kind::ToJson: {
        text *t = DatumGetTextPP(FunctionCall1(const_cast<FmgrInfo *>(&col->fn), value));
        sink.append(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
        break;
    }
    }
}

// Renders the listed columns of a deformed slot as a JSON object, returned as a json datum.
Datum render_object(const ColumnPlan *cols, int ncols, TupleTableSlot *slot) {
    StringInfoData buf;
    initStringInfo(&buf);
    appendStringInfoSpaces(&buf, VARHDRSZ); // room for the varlena header
    StringInfoSink sink{&buf};
    json::ObjectWriter<StringInfoSink> obj(sink);
    for (int i = 0; i < ncols; ++i) {
        const ColumnPlan *col = &cols[i];
        obj.raw_key(col->key, col->key_len);
        render_value(sink, col, slot->tts_values[col->attnum - 1], slot->tts_isnull[col->attnum - 1]);
    }
    obj.finish();
    SET_VARSIZE(buf.data, buf.len);
    return PointerGetDatum(buf.data);
}

// The key of a row: the same text for the same values in every session.
Datum render_key(const EndpointPlan *ep, TupleTableSlot *slot) {
    if (!ep->keys_need_settings)
        return render_object(ep->keys, ep->nkeys, slot);
    // (search_path too: regclass and the other reg* types print names relative to it.)
    const int nest = enter_settings(kNumCanonical, kCanonicalNames, kCanonicalValues);
    PushOverrideSearchPath(&filter_search_path);
    const Datum key = render_object(ep->keys, ep->nkeys, slot);
    PopOverrideSearchPath();
    leave_settings(nest);
    return key;
}

bool any_changed(const ColumnPlan *cols, int ncols, TupleTableSlot *old_slot, TupleTableSlot *new_slot) {
    for (int i = 0; i < ncols; ++i) {
        const int a = cols[i].attnum - 1;
        const bool on = old_slot->tts_isnull[a], nn = new_slot->tts_isnull[a];
        if (on != nn)
            return true;
        if (!on && !datum_image_eq(old_slot->tts_values[a], new_slot->tts_values[a], cols[i].byval, cols[i].typlen))
            return true;
    }
    return false;
}

bool filter_passes(const EndpointPlan *ep, TupleTableSlot *new_slot, TupleTableSlot *old_slot) {
    Datum args[2];
    char nulls[2] = {'n', 'n'};
    if (new_slot) {
        args[0] = ExecFetchSlotHeapTupleDatum(new_slot);
        nulls[0] = ' ';
    }
    if (old_slot) {
        args[1] = ExecFetchSlotHeapTupleDatum(old_slot);
        nulls[1] = ' ';
    }
    if (ep->checked_serial != statement_serial) {
        // Rights and settings cannot change within a statement but by code the statement runs
        // (a function calling set_config between rows): seen from the next statement on.
        if (OidIsValid(ep->filter_role))
            check_filter_role(ep->filter_role, ep->tracked_relid);
        ep->settings_match = true;
        for (int i = 0; i < ep->nsettings && ep->settings_match; ++i) {
            const char *current = GetConfigOption(ep->setting_names[i], true, false);
            ep->settings_match = current && strcmp(current, ep->setting_values[i]) == 0;
        }
        ep->checked_serial = statement_serial;
    }
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    // The same search_path and settings as at prepare time, so the writer's session cannot
    // change what the filter means (the plan cache would re-analyse it under other settings),
    // and the rights of the role that wrote it, never the writer's (or the backfill worker's).
    ErrorContextCallback callback = {error_context_stack, filter_error_callback, nullptr};
    error_context_stack = &callback;
    // Always a GUC nest level: whatever the filter sets is undone when it returns.
    const int nest = ep->settings_match ? NewGUCNestLevel()
                                        : enter_settings(ep->nsettings, ep->setting_names, ep->setting_values);
    const SavedUser saved = enter_role(OidIsValid(ep->filter_role) ? ep->filter_role : GetUserId());
    PushOverrideSearchPath(&filter_search_path);
    int rc = SPI_execute_plan(ep->filter, args, nulls, true, 1);
    PopOverrideSearchPath();
    leave_role(saved);
    leave_settings(nest);
    error_context_stack = callback.previous;
    if (rc != SPI_OK_SELECT)
        elog(ERROR, "pg_sync filter failed: %s", SPI_result_code_string(rc));
    bool pass = false;
    if (SPI_processed > 0) {
        bool isnull;
        Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
        pass = !isnull && DatumGetBool(d);
    }
    SPI_finish();
    return pass;
}

// ---------------------------------------------------------------------------------------------
// Queue insert

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
// utility statement,
// before commit, or forgotten at abort (the resource owner has released it then).
struct QueueWriter {
    bool open;
    Relation rel;
    int nindexes;
    Relation *indexes;
    BulkInsertStateData bistate;
};
QueueWriter writer = {false, nullptr, 0, nullptr, {nullptr, InvalidBuffer}};
// Capture trigger frames on the stack: executor runs nested in them (a filter's SPI query) must
// not close the writer that the enclosing statement keeps using.
int capture_depth = 0;
ExecutorEnd_hook_type prev_executor_end = nullptr;
ProcessUtility_hook_type prev_process_utility = nullptr;

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
    writer_close(); // the queue's definition changed under an open writer: start afresh
    if (!writer.indexes)
        writer.indexes = static_cast<Relation *>(MemoryContextAlloc(TopMemoryContext, sizeof(Relation) * INDEX_MAX_KEYS));
    for (int attempt = 0;; ++attempt) {
        lookup_queue();
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

void writer_executor_end(QueryDesc *query) {
    if (prev_executor_end)
        prev_executor_end(query);
    else
        standard_ExecutorEnd(query);
    if (capture_depth == 0)
        writer_close();
}

// COPY and TRUNCATE capture outside the executor: close after every utility statement too, so
// that a later TRUNCATE or DROP of the queue in the same transaction does not find it in use.
void writer_process_utility(PlannedStmt *pstmt, const char *query, bool read_only_tree,
                            ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *env,
                            DestReceiver *dest, QueryCompletion *qc) {
    if (prev_process_utility)
        prev_process_utility(pstmt, query, read_only_tree, context, params, env, dest, qc);
    else
        standard_ProcessUtility(pstmt, query, read_only_tree, context, params, env, dest, qc);
    writer_close();
}

void writer_xact_callback(XactEvent event, void *) {
    switch (event) {
    case XACT_EVENT_PRE_COMMIT:
    case XACT_EVENT_PARALLEL_PRE_COMMIT:
    case XACT_EVENT_PRE_PREPARE:
        writer_close();
        break;
    case XACT_EVENT_ABORT:
    case XACT_EVENT_PARALLEL_ABORT:
        writer.open = false; // the resource owner released the pin and the relations
        capture_depth = 0;
        writer.bistate.current_buf = InvalidBuffer;
        break;
    default:
        break;
    }
}

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
}

void capture_row(RelPlan *plan, uint8 op, TupleTableSlot *new_slot, TupleTableSlot *old_slot) {
    if (new_slot)
        slot_getallattrs(new_slot);
    if (old_slot)
        slot_getallattrs(old_slot);
    for (int i = 0; i < plan->neps; ++i) {
        const EndpointPlan *ep = &plan->eps[i];
        if (!(ep->events & op))
            continue;
        // An UPDATE that changes the key is, for the receiver, the old key going away and a new
        // one appearing: it is sent as delete (old key) + insert (new key), so that each key's
        // events stay in order under that key. It is always sent, whatever `columns` says.
        const bool key_changed = op == EV_UPDATE && any_changed(ep->keys, ep->nkeys, old_slot, new_slot);
        if (op == EV_UPDATE && !key_changed && ep->columns_limited &&
            !any_changed(ep->cols, ep->ncols, old_slot, new_slot))
            continue;
        if (ep->filter && !filter_passes(ep, new_slot, old_slot))
            continue;
        Datum new_row = new_slot ? render_object(ep->cols, ep->ncols, new_slot) : (Datum)0;
        Datum old_row = old_slot ? render_object(ep->cols, ep->ncols, old_slot) : (Datum)0;
        if (key_changed) {
            queue_insert(ep->endpoint_id, EV_DELETE, plan->table_name, render_key(ep, old_slot), 0, old_row, false,
                         true, false);
            queue_insert(ep->endpoint_id, EV_INSERT, plan->table_name, render_key(ep, new_slot), new_row, 0, false,
                         false, true);
            continue;
        }
        Datum key = render_key(ep, new_slot ? new_slot : old_slot);
        queue_insert(ep->endpoint_id, op, plan->table_name, key, new_row, old_row, false, !new_slot, !old_slot);
    }
}

// A statement that acquires no lock its transaction does not hold yet (a prepared statement run
// again, an INSERT into a table without indexes) processes no invalidation messages, so it would
// go on capturing with the configuration its transaction first saw, although a track() or
// untrack() committed since. Read them once per statement (a statement: the same transaction,
// statement start time and command id), before the plan is looked at; when none are pending
// this costs a read of one shared flag.
LocalTransactionId seen_lxid = InvalidLocalTransactionId;
TimestampTz seen_statement_start = 0;
CommandId seen_command_id = InvalidCommandId;

void accept_config_changes() {
    const TimestampTz start = GetCurrentStatementStartTimestamp();
    const CommandId cid = GetCurrentCommandId(false);
    if (MyProc->lxid == seen_lxid && start == seen_statement_start && cid == seen_command_id)
        return;
    seen_lxid = MyProc->lxid;
    seen_statement_start = start;
    seen_command_id = cid;
    ++statement_serial;
    AcceptInvalidationMessages();
}

} // namespace

namespace pg_sync::pg {
// A schema rename sends no relcache invalidation, but events name tables by schema.
void namespace_callback(Datum, int, uint32) {
    ++inval_counter;
    invalidate_all();
}

void capture_init() {
    CacheRegisterRelcacheCallback(relcache_callback, (Datum)0);
    CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_callback, (Datum)0);
    RegisterXactCallback(writer_xact_callback, nullptr);
    prev_executor_end = ExecutorEnd_hook;
    ExecutorEnd_hook = writer_executor_end;
    prev_process_utility = ProcessUtility_hook;
    ProcessUtility_hook = writer_process_utility;
}
} // namespace pg_sync::pg

// pg_sync._capture(): AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW, and AFTER TRUNCATE FOR
// EACH STATEMENT, installed by pg_sync.track().
extern "C" Datum pg_sync_capture(PG_FUNCTION_ARGS) {
    if (!CALLED_AS_TRIGGER(fcinfo))
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("pg_sync._capture() must be called as a trigger")));
    TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
    if (!TRIGGER_FIRED_AFTER(td->tg_event))
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("pg_sync._capture() must be an AFTER trigger")));

    accept_config_changes();
    RelPlan *plan = get_plan(td->tg_relation);
    if (plan->neps == 0)
        return PointerGetDatum(nullptr);
    // Keeps the plan alive for nested triggers on the same table (a filter could fire one);
    // PG_FINALLY so that an error in a savepoint does not pin it for the rest of the transaction.
    plan->in_use++;
    capture_depth++;
    PG_TRY();
    {
        if (TRIGGER_FIRED_FOR_ROW(td->tg_event)) {
            if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
                capture_row(plan, EV_INSERT, td->tg_trigslot, nullptr);
            else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
                capture_row(plan, EV_UPDATE, td->tg_newslot, td->tg_trigslot);
            else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
                capture_row(plan, EV_DELETE, nullptr, td->tg_trigslot);
        } else if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event)) {
            for (int i = 0; i < plan->neps; ++i)
                if (plan->eps[i].events & EV_TRUNCATE)
                    queue_insert(plan->eps[i].endpoint_id, EV_TRUNCATE, plan->table_name, 0, 0, 0, true, true, true);
        }
    }
    PG_FINALLY();
    {
        plan->in_use--;
        capture_depth--;
    }
    PG_END_TRY();
    return PointerGetDatum(nullptr);
}

// pg_sync._config_changed(): tells every backend (at commit) to drop its capture plans.
extern "C" Datum pg_sync_config_changed(PG_FUNCTION_ARGS) {
    CacheInvalidateRelcacheByRelid(tracked_table_oid());
    pg_sync::pg::wake_at_commit(true);
    PG_RETURN_VOID();
}

// pg_sync._check_filter(tbl regclass, filter text, role regrole, settings text[]): errors unless
// filter is one boolean expression over NEW/OLD of the table's row type, parsed as role under
// the settings (pg_sync._session_settings() of the session that wrote it), as it will run.
// A NULL role (pg_sync._reconcile after DDL, or a filter without a recorded author): parsed as the
// caller, without the author check (a parse runs no user code; the author is checked before every
// run). The 2-argument form is the 0.1.0/0.2.0 declaration of the same symbol: a database not yet
// updated calls it that way.
extern "C" Datum pg_sync_check_filter(PG_FUNCTION_ARGS) {
    if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
        PG_RETURN_VOID();
    Oid relid = PG_GETARG_OID(0);
    char *filter = text_to_cstring(PG_GETARG_TEXT_PP(1));
    const Oid role = PG_NARGS() >= 3 && !PG_ARGISNULL(2) ? PG_GETARG_OID(2) : InvalidOid;
    Oid rowtype = get_rel_type_id(relid);
    if (!OidIsValid(rowtype))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation with OID %u does not exist", relid)));
    int nsettings = 0;
    char **names = nullptr, **values = nullptr;
    if (PG_NARGS() >= 4 && !PG_ARGISNULL(3))
        split_settings(PG_GETARG_DATUM(3), &nsettings, &names, &values);
    if (OidIsValid(role))
        check_filter_role(role, relid);
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    SPIPlanPtr plan = prepare_filter_as(filter, rowtype, role, nsettings, names, values);
    SPI_freeplan(plan);
    SPI_finish();
    PG_RETURN_VOID();
}

// pg_sync._session_settings() RETURNS text[]: the settings a filter is recorded with
// (kRecordedSettings), as 'name=value' from the calling session.
extern "C" Datum pg_sync_session_settings(PG_FUNCTION_ARGS) {
    Datum elems[kNumRecordedSettings];
    for (int i = 0; i < kNumRecordedSettings; ++i)
        elems[i] = CStringGetTextDatum(
            psprintf("%s=%s", kRecordedSettings[i], GetConfigOption(kRecordedSettings[i], false, false)));
    PG_RETURN_ARRAYTYPE_P(construct_array(elems, kNumRecordedSettings, TEXTOID, -1, false, TYPALIGN_INT));
}

namespace pg_sync::pg {
void capture_new_statement() { ++statement_serial; }

// Backfill: a row of the tracked table (slot in the table's row type) rendered as the capture
// trigger renders it for the endpoint (same columns, canonical key, filter run as its author
// under its settings, with OLD all-NULL as for an insert). False when the filter rejects it.
bool render_snapshot(Relation rel, int32 endpoint_id, TupleTableSlot *slot, Datum *key, Datum *new_row) {
    RelPlan *plan = get_plan(rel);
    const EndpointPlan *ep = nullptr;
    for (int i = 0; i < plan->neps; ++i)
        if (plan->eps[i].endpoint_id == endpoint_id)
            ep = &plan->eps[i];
    if (!ep)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("table %s is no longer tracked for this endpoint", RelationGetRelationName(rel))));
    if (ep->filter && !OidIsValid(ep->filter_role))
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("the filter of table %s has no recorded author", RelationGetRelationName(rel)),
                        errdetail("It was written before pg_sync 0.3.0; a backfill runs a filter only with the "
                                  "rights of the role that wrote it."),
                        errhint("Call pg_sync.track() for the table again (as the filter's author), then "
                                "pg_sync.resume_backfill().")));
    slot_getallattrs(slot);
    volatile bool pass = true;
    plan->in_use++;
    PG_TRY();
    {
        if (ep->filter && !filter_passes(ep, slot, nullptr)) {
            pass = false;
        } else {
            *key = render_key(ep, slot);
            *new_row = render_object(ep->cols, ep->ncols, slot);
        }
    }
    PG_FINALLY();
    {
        plan->in_use--;
    }
    PG_END_TRY();
    return pass;
}
} // namespace pg_sync::pg
