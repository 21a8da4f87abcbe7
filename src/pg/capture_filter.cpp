// The filter of a tracked table: one boolean SQL expression over NEW and OLD, checked and
// prepared when a capture plan is built (and by pg_sync._check_filter() when track() records
// it), run per endpoint and row by the capture trigger and by backfill.
//
// It runs as
//   SELECT (<filter>) FROM (SELECT ($1).*) AS new, (SELECT ($2).*) AS old
// with the new and old rows as composite parameters of the firing relation's row type. Before
// it is ever embedded, SELECT (<filter>) is parsed on its own and must be exactly one target with
// nothing around it; after analysis, subqueries, aggregates, window and set-returning functions
// and volatile functions are refused. It is parsed and run with search_path = pg_catalog, under
// the session settings recorded with it, as the role that wrote it, security-restricted
// (session_settings.cpp).
//
// C-style: no object with a destructor lives in these frames (see guard.hpp).
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_check_filter);
}

#include "pg/capture_internal.hpp"

namespace pg_sync::pg::capture {
namespace {

// Bumped for every statement that fires the capture trigger (accept_config_changes) and every
// backfill page (capture_new_statement): what filter_passes checks once per statement.
uint64 statement_serial = 1;

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
    push_catalog_search_path();
    SPIPlanPtr plan = SPI_prepare(query, 2, argtypes);
    pop_catalog_search_path();
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

} // namespace

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
    push_catalog_search_path();
    int rc = SPI_execute_plan(ep->filter, args, nulls, true, 1);
    pop_catalog_search_path();
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

} // namespace pg_sync::pg::capture

namespace pg_sync::pg {
void capture_new_statement() { ++capture::statement_serial; }
} // namespace pg_sync::pg

using namespace pg_sync::pg::capture;

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
