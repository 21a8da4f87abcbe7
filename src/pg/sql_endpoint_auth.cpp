// SQL-callable checks and summaries of an endpoint's TLS material and OAuth2 setting
// (core/tls_config, core/oauth2). Thin: convert arguments, run the PostgreSQL-free code through
// the guard. C-style: no object with a destructor in these frames (see guard.hpp).
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_check_endpoint_auth);
PG_FUNCTION_INFO_V1(pg_sync_cert_not_after);
}

#include "core/oauth2.hpp"
#include "core/tls_config.hpp"
#include "pg/guard.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

namespace {

using pg_sync::validate::Problem;

const char *text_arg(FunctionCallInfo fcinfo, int n) {
    return PG_ARGISNULL(n) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

const char *jsonb_arg(FunctionCallInfo fcinfo, int n) {
    if (PG_ARGISNULL(n))
        return nullptr;
    Jsonb *jb = PG_GETARG_JSONB_P(n);
    return JsonbToCString(nullptr, &jb->root, VARSIZE(jb));
}

std::optional<std::string> opt(const char *s) { return s ? std::optional<std::string>(s) : std::nullopt; }

} // namespace

// pg_sync._check_endpoint_auth(url, headers jsonb, tls_client_cert, tls_client_key, tls_ca,
//                              oauth2 jsonb): the values the endpoint will have (NULL: not set,
// oauth2 '{}': none). Raises invalid_parameter_value with the first problem.
extern "C" Datum pg_sync_check_endpoint_auth(PG_FUNCTION_ARGS) {
    const char *url = text_arg(fcinfo, 0);
    const char *headers = jsonb_arg(fcinfo, 1);
    const char *cert = text_arg(fcinfo, 2);
    const char *key = text_arg(fcinfo, 3);
    const char *ca = text_arg(fcinfo, 4);
    const char *oauth2 = jsonb_arg(fcinfo, 5);
    if (!url)
        PG_RETURN_VOID();
    pg_sync::pg::run_cxx(ERRCODE_INVALID_PARAMETER_VALUE, [&]() -> Problem {
        if (Problem p = pg_sync::tls::check(url, opt(cert), opt(key), opt(ca)); !p.ok())
            return p;
        if (!oauth2)
            return {};
        const nlohmann::json o = nlohmann::json::parse(oauth2, nullptr, false);
        if (o.is_object() && o.empty())
            return {};
        Problem p;
        if (!pg_sync::oauth2::parse_config(oauth2, &p))
            return p;
        bool authorization = false;
        if (headers) {
            const nlohmann::json h = nlohmann::json::parse(headers, nullptr, false);
            if (h.is_object())
                for (auto it = h.begin(); it != h.end(); ++it) {
                    std::string k = it.key();
                    for (char &c : k)
                        if (c >= 'A' && c <= 'Z')
                            c = char(c - 'A' + 'a');
                    authorization |= k == "authorization";
                }
        }
        return pg_sync::oauth2::check_endpoint(url, authorization);
    });
    PG_RETURN_VOID();
}

// pg_sync._cert_not_after(pem text) -> timestamptz: when the first certificate expires; NULL when
// none decodes.
extern "C" Datum pg_sync_cert_not_after(PG_FUNCTION_ARGS) {
    const char *pem = text_arg(fcinfo, 0);
    if (!pem)
        PG_RETURN_NULL();
    bool found = false;
    int64 seconds = 0;
    pg_sync::pg::run_cxx(ERRCODE_INTERNAL_ERROR, [&]() -> Problem {
        if (std::optional<std::int64_t> t = pg_sync::tls::not_after(pem)) {
            found = true;
            seconds = *t;
        }
        return {};
    });
    if (!found)
        PG_RETURN_NULL();
    PG_RETURN_TIMESTAMPTZ(time_t_to_timestamptz(pg_time_t(seconds)));
}
