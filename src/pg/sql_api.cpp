// SQL-callable validation used by the configuration functions in the install script.
// Thin: convert arguments, run the PostgreSQL-free checks from core/validate through the guard.
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_check_endpoint);
}

#include "core/kafka_config.hpp"
#include "pg/guard.hpp"

#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

using pg_sync::validate::Problem;
namespace v = pg_sync::validate;

const char *text_arg(FunctionCallInfo fcinfo, int n) {
    return PG_ARGISNULL(n) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

} // namespace

// pg_sync._check_endpoint(name, url, headers jsonb, secret, batch_size, max_attempts,
//                         timeout_ms, max_in_flight, retry_base_ms, retry_max_ms,
//                         kafka_settings jsonb)
// NULL means "not being set" and is skipped (alter_endpoint passes only what changes, plus
// the retry pair so that their relation is checked, and the URL with the headers, secret and
// kafka_settings it will have, so that what goes with which URL is checked).
extern "C" Datum pg_sync_check_endpoint(PG_FUNCTION_ARGS) {
    // All PostgreSQL calls happen here, before any C++ object exists.
    const char *name = text_arg(fcinfo, 0);
    const char *url = text_arg(fcinfo, 1);
    const char *headers = nullptr;
    bool has_headers = false;
    if (!PG_ARGISNULL(2)) {
        Jsonb *jb = PG_GETARG_JSONB_P(2);
        headers = JsonbToCString(nullptr, &jb->root, VARSIZE(jb));
        has_headers = !JB_ROOT_IS_SCALAR(jb) && JB_ROOT_COUNT(jb) > 0;
    }
    const char *secret = text_arg(fcinfo, 3);
    long ints[6];
    bool have[6];
    for (int i = 0; i < 6; ++i) {
        have[i] = !PG_ARGISNULL(4 + i);
        ints[i] = have[i] ? PG_GETARG_INT32(4 + i) : 0;
    }
    const char *kafka_settings = nullptr;
    bool has_kafka_settings = false;
    if (PG_NARGS() > 10 && !PG_ARGISNULL(10)) {
        Jsonb *jb = PG_GETARG_JSONB_P(10);
        kafka_settings = JsonbToCString(nullptr, &jb->root, VARSIZE(jb));
        has_kafka_settings = !JB_ROOT_IS_SCALAR(jb) && JB_ROOT_COUNT(jb) > 0;
    }

    pg_sync::pg::run_cxx(ERRCODE_INVALID_PARAMETER_VALUE, [&]() -> Problem {
        if (name)
            if (Problem p = v::endpoint_name(name); !p.ok())
                return p;
        if (url)
            if (Problem p = v::url(url); !p.ok())
                return p;
        if (headers)
            if (Problem p = v::headers(headers); !p.ok())
                return p;
        if (secret)
            if (Problem p = v::secret(secret); !p.ok())
                return p;
        if (kafka_settings)
            if (Problem p = v::kafka_settings(kafka_settings); !p.ok())
                return p;
        if (url)
            if (Problem p = v::transport_options(url, has_headers, secret != nullptr, has_kafka_settings); !p.ok())
                return p;
        const v::Range *ranges[6] = {&v::kBatchSize,  &v::kMaxAttempts, &v::kTimeoutMs,
                                     &v::kMaxInFlight, &v::kRetryBaseMs, &v::kRetryMaxMs};
        for (int i = 0; i < 6; ++i)
            if (have[i])
                if (Problem p = v::in_range(*ranges[i], ints[i]); !p.ok())
                    return p;
        if (have[4] && have[5])
            return v::retry_bounds(ints[4], ints[5]);
        return {};
    });
    PG_RETURN_VOID();
}

// pg_sync._check_format(url, format): the endpoint's request format (core/validate), for the
// URL it will have.
extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_check_format);
}
extern "C" Datum pg_sync_check_format(PG_FUNCTION_ARGS) {
    const char *url = text_arg(fcinfo, 0);
    const char *format = text_arg(fcinfo, 1);
    pg_sync::pg::run_cxx(ERRCODE_INVALID_PARAMETER_VALUE, [&]() -> Problem {
        return format ? v::format(url ? url : "", format) : Problem{};
    });
    PG_RETURN_VOID();
}

// pg_sync._check_delivery_limits(max_rate float8, max_request_bytes int, permanent_statuses int[])
// NULL means "not being set" and is skipped, as in _check_endpoint.
extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_check_delivery_limits);
}

extern "C" Datum pg_sync_check_delivery_limits(PG_FUNCTION_ARGS) {
    // All PostgreSQL calls happen here, before any C++ object exists.
    const bool have_rate = !PG_ARGISNULL(0), have_bytes = !PG_ARGISNULL(1), have_statuses = !PG_ARGISNULL(2);
    const double rate = have_rate ? PG_GETARG_FLOAT8(0) : 0;
    const long bytes = have_bytes ? PG_GETARG_INT32(1) : 0;
    Datum *elems = nullptr;
    bool *nulls = nullptr;
    int n = 0;
    bool multi_dimensional = false;
    if (have_statuses) {
        ArrayType *array = PG_GETARG_ARRAYTYPE_P(2);
        multi_dimensional = ARR_NDIM(array) > 1;
        deconstruct_array(array, INT4OID, 4, true, TYPALIGN_INT, &elems, &nulls, &n);
    }
    long *statuses = static_cast<long *>(palloc(sizeof(long) * (n + 1)));
    bool has_null = false;
    for (int i = 0; i < n; ++i) {
        has_null = has_null || nulls[i];
        statuses[i] = nulls[i] ? 0 : DatumGetInt32(elems[i]);
    }

    pg_sync::pg::run_cxx(ERRCODE_INVALID_PARAMETER_VALUE, [&]() -> Problem {
        if (have_rate)
            if (Problem p = v::max_rate(rate); !p.ok())
                return p;
        if (have_bytes)
            if (Problem p = v::in_range(v::kMaxRequestBytes, bytes); !p.ok())
                return p;
        if (have_statuses && multi_dimensional)
            return Problem{"permanent_statuses must be a one-dimensional array", "",
                           "For example '{400,404,422}'."};
        if (have_statuses)
            return v::permanent_statuses(std::vector<long>(statuses, statuses + n), has_null);
        return {};
    });
    PG_RETURN_VOID();
}

// pg_sync.track(tbl, endpoint, events, columns, key_columns, filter) — SECURITY INVOKER, in C,
// because it must know who is really calling: tracking sends a table's rows elsewhere, so the
// caller (current_user, which a SECURITY DEFINER plpgsql function could not see) must be able
// to read the table and to put triggers on it. The configuration itself is then done by
// pg_sync._track() as the extension's owner; nobody else may execute _track directly.
extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_track);
PG_FUNCTION_INFO_V1(pg_sync_backfill);
PG_FUNCTION_INFO_V1(pg_sync_with_caller);
}

namespace {

// The relation tbl, checked to exist; its name, quoted, for messages.
char *checked_relation(FunctionCallInfo fcinfo, Oid *relid) {
    if (PG_ARGISNULL(0))
        ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("tbl must not be null")));
    *relid = PG_GETARG_OID(0);
    if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(*relid)))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE), errmsg("relation with OID %u does not exist", *relid)));
    return quote_qualified_identifier(get_namespace_name(get_rel_namespace(*relid)), get_rel_name(*relid));
}

// pg_sync.<inner>(argtypes), looked up by OIDs, not by a signature string (which would use the
// caller's search_path); InvalidOid when missing_ok and it does not exist.
Oid own_function(const char *inner, int nargs, Oid *argtypes, bool missing_ok) {
    return LookupFuncName(list_make2(makeString(pstrdup("pg_sync")), makeString(pstrdup(inner))), nargs, argtypes,
                          missing_ok);
}

// Calls function fn (of pg_sync) as its owner (the extension's owner).
Datum call_as_owner(Oid fn, int nargs, const Datum *values, const bool *nulls, bool *result_null) {
    HeapTuple proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
    if (!HeapTupleIsValid(proc))
        elog(ERROR, "cache lookup failed for function %u", fn);
    const Oid owner = reinterpret_cast<Form_pg_proc>(GETSTRUCT(proc))->proowner;
    ReleaseSysCache(proc);

    FmgrInfo flinfo;
    fmgr_info(fn, &flinfo);
    LOCAL_FCINFO(call, FUNC_MAX_ARGS);
    InitFunctionCallInfoData(*call, &flinfo, nargs, InvalidOid, nullptr, nullptr);
    for (int i = 0; i < nargs; ++i) {
        call->args[i].value = values[i];
        call->args[i].isnull = nulls[i];
    }
    // An error below aborts the (sub)transaction, which restores the user id.
    Oid saved_user;
    int saved_context;
    GetUserIdAndSecContext(&saved_user, &saved_context);
    SetUserIdAndSecContext(owner, saved_context | SECURITY_LOCAL_USERID_CHANGE);
    Datum result = FunctionCallInvoke(call);
    SetUserIdAndSecContext(saved_user, saved_context);
    *result_null = call->isnull;
    return result;
}

} // namespace

extern "C" Datum pg_sync_track(PG_FUNCTION_ARGS) {
    Oid relid;
    const char *name = checked_relation(fcinfo, &relid);
    const Oid caller = GetUserId();
    const bool may_read = pg_class_aclcheck(relid, caller, ACL_SELECT) == ACLCHECK_OK;
    const bool may_trigger =
        pg_class_aclcheck(relid, caller, ACL_TRIGGER) == ACLCHECK_OK || pg_class_ownercheck(relid, caller);
    if (!may_read || !may_trigger)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), errmsg("permission denied to track table %s", name),
                        errdetail("Role \"%s\" lacks the %s privilege on it.", GetUserNameFromId(caller, false),
                                  !may_read ? "SELECT" : "TRIGGER"),
                        errhint("Tracking sends the table's rows to the endpoint: it needs SELECT and TRIGGER "
                                "privileges on the table, or its ownership.")));

    // The caller is recorded as the filter's author: the filter runs with its rights only. (A
    // database not yet updated to 0.3.0 has the 6-argument _track, which records no author.)
    Oid argtypes[7] = {REGCLASSOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID, REGROLEOID};
    Datum values[7];
    bool nulls[7];
    for (int i = 0; i < 6; ++i) {
        values[i] = PG_GETARG_DATUM(i);
        nulls[i] = PG_ARGISNULL(i);
    }
    values[6] = ObjectIdGetDatum(caller);
    nulls[6] = false;
    bool isnull;
    Oid fn = own_function("_track", 7, argtypes, true);
    const int nargs = OidIsValid(fn) ? 7 : 6;
    if (!OidIsValid(fn))
        fn = own_function("_track", 6, argtypes, false);
    call_as_owner(fn, nargs, values, nulls, &isnull);
    PG_RETURN_VOID();
}

// pg_sync.backfill(tbl, endpoint, batch_rows) — in C for the same reason as track(): the rows
// go to the endpoint, so the calling role must be able to read the table. pg_sync._backfill()
// records the job (as the extension owner), with the caller, whose right to read the table the
// backfill worker checks again before every page.
extern "C" Datum pg_sync_backfill(PG_FUNCTION_ARGS) {
    Oid relid;
    const char *name = checked_relation(fcinfo, &relid);
    const Oid caller = GetUserId();
    if (pg_class_aclcheck(relid, caller, ACL_SELECT) != ACLCHECK_OK)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE), errmsg("permission denied to backfill table %s", name),
                        errdetail("Role \"%s\" lacks the SELECT privilege on it.", GetUserNameFromId(caller, false)),
                        errhint("Backfill sends the table's rows to the endpoint: it needs SELECT on the table.")));
    Oid argtypes[4] = {REGCLASSOID, TEXTOID, INT4OID, OIDOID};
    Datum values[4] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1), PG_GETARG_DATUM(2), ObjectIdGetDatum(caller)};
    bool nulls[4] = {false, PG_ARGISNULL(1), PG_ARGISNULL(2), false};
    bool isnull;
    Datum id = call_as_owner(own_function("_backfill", 4, argtypes, false), 4, values, nulls, &isnull);
    if (isnull)
        PG_RETURN_NULL();
    PG_RETURN_DATUM(id);
}

// pg_sync._url_origin(url text) RETURNS text: "scheme://host:port" (core/validate), NULL when the
// URL is not one an endpoint may have.
extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_url_origin);
}
extern "C" Datum pg_sync_url_origin(PG_FUNCTION_ARGS) {
    const char *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
    // The C++ result is copied into a fixed buffer before any PostgreSQL call (see guard.hpp).
    // Room for a Kafka origin too: every broker of the URL with an explicit port.
    char origin[pg_sync::validate::kMaxUrlLength + 16 + pg_sync::kafka::kMaxBrokers * 6] = {0};
    bool failed = false;
    try {
        const std::string o = pg_sync::validate::url_origin(url);
        if (o.size() < sizeof origin)
            memcpy(origin, o.data(), o.size());
    } catch (...) {
        failed = true;
    }
    if (failed)
        ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("pg_sync: could not parse a URL")));
    if (origin[0] == '\0')
        PG_RETURN_NULL();
    PG_RETURN_TEXT_P(cstring_to_text(origin));
}

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_is_kafka_url);
}
// Whether a URL names a Kafka topic (kafka://): the one rule the worker's sink router and the
// validation use (core/kafka_config), for the SQL functions that decide by URL too.
extern "C" Datum pg_sync_is_kafka_url(PG_FUNCTION_ARGS) {
    text *url = PG_GETARG_TEXT_PP(0);
    // A border without a guard: is_kafka_url is noexcept and allocates nothing, and no C++ object
    // lives across a PostgreSQL call here.
    PG_RETURN_BOOL(pg_sync::kafka::is_kafka_url(std::string_view(VARDATA_ANY(url), VARSIZE_ANY_EXHDR(url))));
}

// pg_sync.<name>(args) declared LANGUAGE c with this symbol: runs pg_sync._<name>(args, caller
// regrole) as the extension's owner, where caller is the role calling (current_user). For the
// configuration functions whose rights depend on the caller's rights on tables (alter_endpoint's
// url, resume_backfill): a SECURITY DEFINER function could not tell who called it.
extern "C" Datum pg_sync_with_caller(PG_FUNCTION_ARGS) {
    HeapTuple proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
    if (!HeapTupleIsValid(proc))
        elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
    const Form_pg_proc form = reinterpret_cast<Form_pg_proc>(GETSTRUCT(proc));
    const int nargs = form->pronargs;
    if (nargs + 1 > FUNC_MAX_ARGS || nargs != PG_NARGS())
        elog(ERROR, "pg_sync_with_caller: unexpected number of arguments");
    char *inner = psprintf("_%s", NameStr(form->proname));
    Oid argtypes[FUNC_MAX_ARGS];
    for (int i = 0; i < nargs; ++i)
        argtypes[i] = form->proargtypes.values[i];
    ReleaseSysCache(proc);
    argtypes[nargs] = REGROLEOID;
    Datum values[FUNC_MAX_ARGS];
    bool nulls[FUNC_MAX_ARGS];
    for (int i = 0; i < nargs; ++i) {
        values[i] = PG_GETARG_DATUM(i);
        nulls[i] = PG_ARGISNULL(i);
    }
    values[nargs] = ObjectIdGetDatum(GetUserId());
    nulls[nargs] = false;
    bool isnull;
    const Datum result = call_as_owner(own_function(inner, nargs + 1, argtypes, false), nargs + 1, values, nulls, &isnull);
    if (isnull)
        PG_RETURN_NULL();
    PG_RETURN_DATUM(result);
}
