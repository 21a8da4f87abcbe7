// OAuth2 client credentials (RFC 6749 section 4.4) for http(s) endpoints: the endpoint's oauth2
// setting, the token request, the token response, and the per-endpoint token cache. PostgreSQL-
// and network-free: core/oauth2_sink.hpp sends the token requests through the HTTP transport.
//
// The client authenticates with HTTP Basic (client_secret_basic, RFC 6749 section 2.3.1: the
// default that every authorization server must support), or, with "client_auth": "body", with
// client_id and client_secret in the form body (client_secret_post).
#pragma once

#include "core/validate.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pg_sync::oauth2 {

// create_endpoint(oauth2 => '{"token_url": ..., "client_id": ..., "client_secret": ...,
// "scope": ..., "audience": ..., "client_auth": "basic" | "body"}').
struct Config {
    std::string token_url;
    std::string client_id;
    std::string client_secret;
    std::string scope;    // empty: not sent
    std::string audience; // empty: not sent (Auth0 and others ask for it)
    bool basic = true;    // client_auth: "basic" (default) or "body"

    bool operator==(const Config &o) const {
        return token_url == o.token_url && client_id == o.client_id && client_secret == o.client_secret &&
               scope == o.scope && audience == o.audience && basic == o.basic;
    }
    bool operator!=(const Config &o) const { return !(*this == o); }
};

inline constexpr std::size_t kMaxClientIdLength = 1024;
inline constexpr std::size_t kMaxSecretLength = 4096;
inline constexpr std::size_t kMaxScopeLength = 4096;
inline constexpr std::size_t kMaxTokenLength = 16384;

// The oauth2 JSON object as text -> Config; nullopt with *problem when it is not valid (unknown
// keys, token_url not an http(s) URL that validate::url accepts, missing client_id or
// client_secret, values that are not printable ASCII strings). An empty object is not a Config:
// callers treat '{}' as "no OAuth2". Messages never quote client_secret.
std::optional<Config> parse_config(std::string_view json_text, validate::Problem *problem);

// What goes with which endpoint: OAuth2 applies to http(s) URLs only, and the endpoint's own
// headers must not set Authorization (the token goes there).
validate::Problem check_endpoint(std::string_view url, bool has_authorization_header);

// The token request: form body (application/x-www-form-urlencoded) and, for Basic, the
// Authorization header line.
std::string token_request_body(const Config &c);
std::string basic_authorization(const Config &c); // "Authorization: Basic ..."; empty for "body"
std::string form_encode(std::string_view s);      // application/x-www-form-urlencoded

// A successful token response (RFC 6749 section 5.1).
struct Token {
    std::string access_token;
    std::optional<std::int64_t> expires_in_s;
};
// The body of a 200 answer -> Token; nullopt with *error (never quoting the body's token) when it
// is not a JSON object with a Bearer access_token that fits in a header.
std::optional<Token> parse_token_response(std::string_view body, std::string *error);
// The "error" code of an error response (RFC 6749 section 5.2), when the body has one that is a
// short printable word; empty otherwise. Nothing else of an error body is ever shown.
std::string error_code(std::string_view body);

// --- The token cache of one endpoint -------------------------------------------------------------
//
//   Empty ──acquire──▶ Fetching ──fetched──▶ Valid ──(refresh_at)──▶ Valid + Fetching
//     ▲                   │ failed               │ invalidate(t)          │ fetched: new token
//     └───────────────────┴──────────────────────┴────── expired (use_until) ──▶ Empty/Fetching
//
// A token fetched at time F with expires_in E is used until F + E - margin/4 and refreshed from
// F + E - margin on (the old token still serves meanwhile), margin = min(60 s, E / 4); F is when
// the token request was sent, so the time it took counts against the token. Without expires_in a
// token is refreshed after an hour, and at once when a receiver answers 401 to it.
// A token is usable for at least kMinUseMs after its answer arrived, whatever its expires_in (0,
// or a fetch slower than the token's life), so that the requests that waited for it go out.
// After a failed fetch the next one waits kFetchBackoffMs, doubling to kMaxFetchBackoffMs: a token
// endpoint that refuses is not asked once per request; meanwhile a request without a usable token
// fails at once (the endpoint's retry backoff and circuit breaker take over).
inline constexpr std::int64_t kMaxMarginMs = 60000;
inline constexpr std::int64_t kDefaultLifetimeMs = 3600000;
inline constexpr std::int64_t kMinUseMs = 1000;
inline constexpr std::int64_t kFetchBackoffMs = 1000;
inline constexpr std::int64_t kMaxFetchBackoffMs = 60000;

class TokenCache {
  public:
    struct Use {
        std::optional<std::string> token; // send with this token now; none: wait for a fetch
        bool start_fetch = false;         // the caller must start a token request now
        bool backing_off = false;         // no token, and no fetch before fetch_retry_at_ms()
    };
    // What a request should do at now_ms.
    Use acquire(std::int64_t now_ms);
    // The token request that acquire() asked for was sent at sent_ms and its answer arrived at
    // received_ms (default: sent_ms); it succeeded / failed (at now_ms).
    void fetched(const Token &token, std::int64_t sent_ms, std::int64_t received_ms = -1);
    void failed(std::int64_t now_ms = 0);
    std::int64_t fetch_retry_at_ms() const { return retry_at_ms_; }
    // A receiver answered 401 to `token`: when it is the current one, it is dropped (the next
    // acquire() fetches). Returns whether it was dropped.
    bool invalidate(const std::string &token);
    bool fetching() const { return fetching_; }
    bool has_token() const { return !token_.empty(); }
    std::int64_t use_until_ms() const { return use_until_ms_; }
    std::int64_t refresh_at_ms() const { return refresh_at_ms_; }

  private:
    std::string token_;
    std::int64_t use_until_ms_ = 0;
    std::int64_t refresh_at_ms_ = 0;
    bool fetching_ = false;
    int failures_ = 0;             // fetches failed in a row
    std::int64_t retry_at_ms_ = 0; // no fetch before this after a failure
};

} // namespace pg_sync::oauth2
