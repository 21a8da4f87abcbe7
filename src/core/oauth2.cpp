#include "core/oauth2.hpp"

#include "core/signature.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace pg_sync::oauth2 {
namespace {

using validate::Problem;

Problem problem(std::string message, std::string detail = {}, std::string hint = {}) {
    return Problem{std::move(message), std::move(detail), std::move(hint)};
}

bool printable_ascii(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

constexpr const char *kShape =
    "oauth2 is a JSON object: {\"token_url\": \"https://...\", \"client_id\": \"...\", \"client_secret\": \"...\"} "
    "with optional \"scope\", \"audience\" and \"client_auth\" (\"basic\", the default, or \"body\").";

} // namespace

std::optional<Config> parse_config(std::string_view json_text, Problem *out) {
    auto fail = [&](Problem p) -> std::optional<Config> {
        *out = std::move(p);
        return std::nullopt;
    };
    const nlohmann::json doc = nlohmann::json::parse(json_text.begin(), json_text.end(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        return fail(problem("oauth2 must be a JSON object", {}, kShape));
    Config c;
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        const std::string &k = it.key();
        if (k != "token_url" && k != "client_id" && k != "client_secret" && k != "scope" && k != "audience" &&
            k != "client_auth")
            return fail(problem("unknown oauth2 key \"" + (printable_ascii(k) ? k.substr(0, 40) : "?") + "\"", {},
                                kShape));
        if (!it.value().is_string())
            return fail(problem("oauth2 " + k + " must be a string", {}, kShape));
        const std::string &v = it.value().get_ref<const std::string &>();
        const std::size_t limit = k == "client_secret" ? kMaxSecretLength
                                  : k == "client_id"   ? kMaxClientIdLength
                                  : k == "token_url"   ? validate::kMaxUrlLength
                                                       : kMaxScopeLength;
        if (v.size() > limit)
            return fail(problem("oauth2 " + k + " is too long",
                                std::to_string(v.size()) + " bytes; the limit is " + std::to_string(limit) + "."));
        if (!printable_ascii(v))
            return fail(problem("oauth2 " + k + " must be printable ASCII"));
        if (k == "token_url")
            c.token_url = v;
        else if (k == "client_id")
            c.client_id = v;
        else if (k == "client_secret")
            c.client_secret = v;
        else if (k == "scope")
            c.scope = v;
        else if (k == "audience")
            c.audience = v;
        else if (v == "basic" || v == "body")
            c.basic = v == "basic";
        else
            return fail(problem("oauth2 client_auth must be \"basic\" or \"body\"", {},
                                "\"basic\" (the default) sends client_id and client_secret as HTTP Basic "
                                "credentials, \"body\" in the form body."));
    }
    for (const char *required : {"token_url", "client_id", "client_secret"})
        if (!doc.contains(required) || doc[required].get_ref<const std::string &>().empty())
            return fail(problem(std::string("oauth2 needs ") + required, {}, kShape));
    if (Problem p = validate::url(c.token_url); !p.ok())
        return fail(problem("oauth2 token_url is not valid: " + p.message, p.detail));
    if (validate::url_origin(c.token_url).rfind("http", 0) != 0)
        return fail(problem("oauth2 token_url must be an http or https URL"));
    return c;
}

Problem check_endpoint(std::string_view url, bool has_authorization_header) {
    if (validate::url_origin(url).rfind("http", 0) != 0)
        return problem("oauth2 applies to http and https endpoints only", {}, "Pass oauth2 => '{}' to drop it.");
    if (has_authorization_header)
        return problem("an endpoint with oauth2 must not have an Authorization header", {},
                       "The access token goes in Authorization; pass headers without it.");
    return {};
}

std::string form_encode(std::string_view s) {
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '*')
            out += char(c);
        else if (c == ' ')
            out += '+';
        else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::string token_request_body(const Config &c) {
    std::string body = "grant_type=client_credentials";
    if (!c.scope.empty())
        body += "&scope=" + form_encode(c.scope);
    if (!c.audience.empty())
        body += "&audience=" + form_encode(c.audience);
    if (!c.basic)
        body += "&client_id=" + form_encode(c.client_id) + "&client_secret=" + form_encode(c.client_secret);
    return body;
}

std::string basic_authorization(const Config &c) {
    if (!c.basic)
        return {};
    // RFC 6749 section 2.3.1: both form-encoded before they are joined.
    return "Authorization: Basic " + signature::base64_encode(form_encode(c.client_id) + ":" + form_encode(c.client_secret));
}

std::optional<Token> parse_token_response(std::string_view body, std::string *error) {
    const nlohmann::json doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
        *error = "the token response is not a JSON object";
        return std::nullopt;
    }
    const auto at = doc.find("access_token");
    if (at == doc.end() || !at->is_string() || at->get_ref<const std::string &>().empty()) {
        *error = "the token response has no access_token";
        return std::nullopt;
    }
    Token t;
    t.access_token = at->get<std::string>();
    // It goes into a header line: visible ASCII only (RFC 6750 b64token is narrower still).
    if (t.access_token.size() > kMaxTokenLength ||
        !std::all_of(t.access_token.begin(), t.access_token.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
        *error = "the access_token is too long or not printable ASCII";
        return std::nullopt;
    }
    const auto type = doc.find("token_type");
    if (type != doc.end()) {
        std::string v = type->is_string() ? type->get<std::string>() : std::string();
        std::transform(v.begin(), v.end(), v.begin(), [](char c) { return c >= 'A' && c <= 'Z' ? char(c + 32) : c; });
        if (v != "bearer") {
            *error = "the token_type is not Bearer";
            return std::nullopt;
        }
    }
    const auto exp = doc.find("expires_in");
    if (exp != doc.end()) {
        // A number, or (seen in the wild) a string of digits.
        if (exp->is_number_integer() || exp->is_number_unsigned())
            t.expires_in_s = exp->get<std::int64_t>();
        else if (exp->is_number_float()) {
            const double d = exp->get<double>();
            if (d >= 0 && d < 1e12) // (a cast of a larger double would be undefined)
                t.expires_in_s = std::int64_t(d);
        }
        else if (exp->is_string()) {
            const std::string &s = exp->get_ref<const std::string &>();
            if (!s.empty() && s.size() < 12 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
                t.expires_in_s = std::stoll(s);
        }
        if (t.expires_in_s && (*t.expires_in_s < 0 || *t.expires_in_s > 10LL * 365 * 86400))
            t.expires_in_s.reset();
    }
    return t;
}

std::string error_code(std::string_view body) {
    const nlohmann::json doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        return {};
    const auto e = doc.find("error");
    if (e == doc.end() || !e->is_string())
        return {};
    const std::string &v = e->get_ref<const std::string &>();
    if (v.empty() || v.size() > 64 ||
        !std::all_of(v.begin(), v.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }))
        return {};
    return v;
}

TokenCache::Use TokenCache::acquire(std::int64_t now_ms) {
    Use u;
    if (!token_.empty() && now_ms >= use_until_ms_)
        token_.clear();
    if (!token_.empty())
        u.token = token_;
    if (!fetching_ && (token_.empty() || now_ms >= refresh_at_ms_)) {
        if (now_ms >= retry_at_ms_) {
            fetching_ = true;
            u.start_fetch = true;
        } else if (token_.empty()) {
            u.backing_off = true;
        }
    }
    return u;
}

void TokenCache::fetched(const Token &token, std::int64_t sent_ms, std::int64_t received_ms) {
    if (received_ms < 0)
        received_ms = sent_ms;
    fetching_ = false;
    failures_ = 0;
    retry_at_ms_ = 0;
    const std::int64_t lifetime = token.expires_in_s ? *token.expires_in_s * 1000 : kDefaultLifetimeMs;
    const std::int64_t margin = std::min(kMaxMarginMs, lifetime / 4);
    token_ = token.access_token;
    use_until_ms_ = std::max(sent_ms + lifetime - margin / 4, received_ms + kMinUseMs);
    refresh_at_ms_ = std::min(use_until_ms_, std::max(sent_ms + lifetime - margin, received_ms));
}

void TokenCache::failed(std::int64_t now_ms) {
    fetching_ = false;
    failures_ = std::min(failures_ + 1, 30);
    const std::int64_t backoff = std::min<std::int64_t>(kMaxFetchBackoffMs, kFetchBackoffMs << std::min(failures_ - 1, 6));
    retry_at_ms_ = now_ms + backoff;
}

bool TokenCache::invalidate(const std::string &token) {
    if (token_.empty() || token != token_)
        return false;
    token_.clear();
    return true;
}

} // namespace pg_sync::oauth2
