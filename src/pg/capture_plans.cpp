// Capture plans: per backend, per relation the trigger fires on, what to capture for which
// endpoint (events, columns and how each is rendered, key columns, the prepared filter), built
// from pg_sync._tracked with a catalog-snapshot scan (no SQL: no permission checks, nothing a
// writer's search_path could influence) and kept in CacheMemoryContext.
//
// Invalidation (hooks.cpp forwards the callbacks here) only marks plans invalid:
//  * a relation: plans of that relation and plans whose tracked relation is it (a partition's
//    parent: its rename must change the partition's event `table`);
//  * pg_sync._tracked (track, untrack and the DDL event triggers call _config_changed()), a
//    schema rename, a full reset: every plan.
// A plan built while any invalidation arrived is used once and rebuilt at the next row. A plan
// in use by an outer trigger frame (in_use) is never freed under it.
//
// C-style: no object with a destructor lives in these frames (see guard.hpp).
#include "pg/pg_prelude.hpp"

#include "pg/capture.hpp"
#include "pg/capture_internal.hpp"

namespace pg_sync::pg::capture {
namespace {

HTAB *rel_plans = nullptr;
// Bumped by every relcache invalidation: a plan built while one arrived is not trusted.
uint64 inval_counter = 0;
// pg_sync._tracked; InvalidOid = look up again.
Oid tracked_relid_cache = InvalidOid;

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

// ---------------------------------------------------------------------------------------------
// Plan building

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
        plan_rendering(&cols[n++], find_column(desc, static_cast<char *>(lfirst(lc)), rel), cxt, canonical);
    *count = n;
    return cols;
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

// Reads the rows of pg_sync._tracked for the relation (or its partitioned ancestors) into a plan.
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
            if (ep->keys[k].kind == RenderKind::ToJson)
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

} // namespace

Oid tracked_table_oid() {
    if (!OidIsValid(tracked_relid_cache))
        tracked_relid_cache = own_relation("_tracked");
    return tracked_relid_cache;
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

} // namespace pg_sync::pg::capture

namespace pg_sync::pg {

using namespace capture;

// Runs while invalidation messages are processed: only marks, never touches catalogs.
void capture_plans_relation_invalidated(Oid relid) {
    ++inval_counter;
    if (relid == InvalidOid) {
        tracked_relid_cache = InvalidOid;
        invalidate_all();
        return;
    }
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

// A schema rename sends no relcache invalidation, but events name tables by schema.
void capture_plans_namespace_invalidated() {
    ++inval_counter;
    invalidate_all();
}

} // namespace pg_sync::pg
