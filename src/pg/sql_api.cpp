// SQL-callable validation used by the configuration functions in the install script.
// Thin: convert arguments, run the PostgreSQL-free checks from core/validate through the guard.
extern "C" {
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(pg_sync_check_endpoint);
}

#include "pg/guard.hpp"

#include <string_view>

namespace {

using pg_sync::validate::Problem;
namespace v = pg_sync::validate;

const char *text_arg(FunctionCallInfo fcinfo, int n) {
    return PG_ARGISNULL(n) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

} // namespace

// pg_sync._check_endpoint(name, url, headers jsonb, secret, batch_size, max_attempts,
//                         timeout_ms, max_in_flight, retry_base_ms, retry_max_ms)
// NULL means "not being set" and is skipped (alter_endpoint passes only what changes, plus
// the retry pair so that their relation is checked).
extern "C" Datum pg_sync_check_endpoint(PG_FUNCTION_ARGS) {
    // All PostgreSQL calls happen here, before any C++ object exists.
    const char *name = text_arg(fcinfo, 0);
    const char *url = text_arg(fcinfo, 1);
    const char *headers = nullptr;
    if (!PG_ARGISNULL(2)) {
        Jsonb *jb = PG_GETARG_JSONB_P(2);
        headers = JsonbToCString(nullptr, &jb->root, VARSIZE(jb));
    }
    const char *secret = text_arg(fcinfo, 3);
    long ints[6];
    bool have[6];
    for (int i = 0; i < 6; ++i) {
        have[i] = !PG_ARGISNULL(4 + i);
        ints[i] = have[i] ? PG_GETARG_INT32(4 + i) : 0;
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
