// Retry policy of the delivery worker: exponential backoff with equal jitter, Retry-After parsing,
// the verdict on one HTTP attempt, and the per-endpoint circuit breaker (docs/design.md, Guarantee 5).
// PostgreSQL-free and clock-free: callers inject the time and the random draws, so every rule is
// unit-tested deterministically. Nothing here throws except std::bad_alloc from building strings.
#pragma once

#include "core/endpoint_defaults.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pg_sync::retry {

// Uniform 64-bit draws; injected so that tests can pin the jitter.
using Random = std::function<std::uint64_t()>;

// A Mersenne Twister seeded with `seed` (the worker seeds it per process). Jitter only spreads
// retries of many workers apart, so no cryptographic quality is needed. Each copy of the returned
// function carries its own state.
Random make_random(std::uint64_t seed);

// The largest wait anything here returns unless the caller allows more: the largest retry_max_ms
// that create_endpoint accepts (7 days).
inline constexpr std::uint64_t kMaxDelayMs = 7ull * 24 * 60 * 60 * 1000;

// An endpoint's retry settings (create_endpoint's retry_base_ms, retry_max_ms, max_attempts).
struct Policy {
    std::uint64_t base_ms = endpoint_defaults::retry_base_ms;
    std::uint64_t max_ms = endpoint_defaults::retry_max_ms; // caps every wait, Retry-After included
    int max_attempts = endpoint_defaults::max_attempts;     // attempts before the events become dead letters
    // HTTP statuses (100-599, not 2xx) that make the events dead letters at once
    // (create_endpoint's permanent_statuses); empty: the classification below alone.
    std::vector<int> permanent_statuses;
    bool permanent(int status) const noexcept;
};

// --- Backoff -------------------------------------------------------------------------------------

// The un-jittered ceiling of the wait after failed attempt `attempt` (1-based):
// min(max_ms, base_ms * 2^(attempt-1)), without overflow for any attempt. attempt < 1 counts as 1;
// base_ms > max_ms gives max_ms.
std::uint64_t backoff_cap_ms(const Policy &policy, int attempt) noexcept;

// Equal jitter: uniform in [cap - cap/2, cap] inclusive with cap = backoff_cap_ms, from one draw
// (a draw of 0 gives the lower bound, the largest draw the cap). The lower bound is what makes
// the schedule's length a promise (retry_schedule). An empty `random` gives the cap itself.
std::uint64_t backoff_ms(const Policy &policy, int attempt, const Random &random);
// The shortest wait backoff_ms can return after attempt `attempt`: cap - cap/2.
std::uint64_t backoff_floor_ms(const Policy &policy, int attempt) noexcept;

// The waits between the attempts of one event under `policy`: step n (1-based) is the wait after
// failed attempt n, for n = 1 .. max_attempts - 1, with its shortest and longest value and the
// time since the first attempt once it is over (cumulative). The README's schedule table is
// rendered from this (retry_policy_test checks that it matches).
struct ScheduleStep {
    int attempt = 0;
    std::uint64_t min_ms = 0, max_ms = 0;
    std::uint64_t min_total_ms = 0, max_total_ms = 0;
};
std::vector<ScheduleStep> retry_schedule(const Policy &policy);

// Maps one uniform 64-bit draw onto [0, cap] by multiply-and-shift: monotonic in the draw, bias at
// most (cap + 1) / 2^64. Exposed for tests.
std::uint64_t jitter(std::uint64_t cap, std::uint64_t draw) noexcept;

// --- Retry-After ---------------------------------------------------------------------------------

// The wait a Retry-After header value asks for (RFC 9110 10.2.3), in ms from now_unix_s:
// delta-seconds ("120", digits only) or an HTTP-date in exactly one of the IMF-fixdate, RFC 850 or
// asctime forms of RFC 9110 5.6.7 (shape checked here, value by libcurl's curl_getdate).
// Surrounding whitespace (SP, HTAB, CR, LF) is ignored.
// A date in the past gives 0; a wait over ceiling_ms gives ceiling_ms. nullopt for an empty or
// whitespace-only value, a sign, a fraction ("1.5"), a number too large for 64 bits, or anything
// that is not a date.
std::optional<std::uint64_t> parse_retry_after_ms(std::string_view value, std::int64_t now_unix_s,
                                                  std::uint64_t ceiling_ms = kMaxDelayMs);

// --- Outcome of one attempt ----------------------------------------------------------------------

// How a request ended below HTTP (or, for a record transport such as Kafka, how its records did).
enum class Transport {
    Ok,             // a complete response arrived; its status decides
    Delivered,      // record transports: every record acknowledged (no status)
    Timeout,        // connect or total timeout (timeout_ms)
    Connect,        // TCP connect failed: refused, unreachable
    Dns,            // the host name did not resolve
    Tls,            // TLS handshake or certificate verification failed
    ConnectionLost, // reset, or closed before a complete response
    Blocked,        // target address refused by pg_sync.allow_private_targets = off
    Rejected,       // record transports: refused for good (too large, unknown topic, not authorized)
    Auth,           // OAuth2: the access token could not be obtained (core/oauth2_sink.hpp)
    Other,          // any other libcurl failure
};

// Category of a libcurl result code (a CURLcode; int keeps curl.h out of this header). Blocked is
// never returned: only the opensocket callback knows that, so the HTTP client sets it itself.
Transport transport_from_curl(int curl_code) noexcept;

struct Response {
    Transport transport = Transport::Ok;
    int status = 0;                              // HTTP status, read when transport is Ok
    std::optional<std::string_view> retry_after; // Retry-After value, when the response had one
    std::string_view detail; // libcurl's error text or the start of the body; appended to reason
    std::size_t events = 1;  // events the request carried (a 413 splits a request of more than one)
};

enum class Verdict {
    Success,    // 2xx: the events leave the queue
    Retry,      // try again after delay_ms
    Gone,       // 410: pause the endpoint with `reason`; the events stay pending
    DeadLetter, // failed, and this was attempt max_attempts: the events become dead letters
    Split,      // 413 for a request of several events: send them again in smaller requests, no
                // attempt counted (the request was too large, not refused)
};

struct Outcome {
    Verdict verdict = Verdict::Success;
    std::uint64_t delay_ms = 0;    // Retry: wait before the next attempt
    bool retry_after_used = false; // the response had a valid Retry-After (429/503): retry_after_ms
    std::uint64_t retry_after_ms = 0; // the receiver's Retry-After, clamped to max_ms (<= delay_ms)
    // DeadLetter whatever the attempt: a permanent status, a single event answered 413, or
    // Transport::Rejected. (Otherwise a DeadLetter is the attempt that used up max_attempts.)
    bool permanent = false;
    std::string reason;            // for last_error / the pause reason; empty on Success
    // What the circuit breaker counts as a failure. Gone is neither: the endpoint is paused.
    bool is_failure() const { return verdict == Verdict::Retry || verdict == Verdict::DeadLetter; }
};

// The verdict on attempt number `attempt` (1-based, this one included) of a request. 2xx (and
// Transport::Delivered) is Success; a status of policy.permanent_statuses is DeadLetter; 410 is
// Gone; 413 is Split for a request of several events and DeadLetter for a single one ("the event
// alone is larger than the receiver accepts"); Transport::Rejected is DeadLetter, all whatever
// the attempt; every other status (1xx, 3xx, 4xx, 5xx) and every
// transport failure is Retry, or DeadLetter once attempt >= max_attempts. The delay is
// backoff_ms(policy, attempt, random); on 429 and 503 a valid Retry-After (clamped to max_ms) can
// only lengthen it: delay_ms = max(Retry-After, backoff). A receiver answering "Retry-After: 0" or
// a date in the past therefore gets the same backoff as one that sends no Retry-After, never a
// retry at once (with the circuit breaker off that was a hot loop burning every attempt).
// `reason` is printable ASCII of bounded length (safe for a text column): "HTTP 503",
// "HTTP 302 (redirects are not followed)", "timeout: <detail>", ...
Outcome classify(const Response &response, int attempt, const Policy &policy, std::int64_t now_unix_s,
                 const Random &random);

const char *verdict_name(Verdict v) noexcept; // "success", "retry", "gone", "dead_letter"

// --- Circuit breaker -----------------------------------------------------------------------------

enum class State { Closed, Open, HalfOpen };
const char *state_name(State s) noexcept; // "closed", "open", "half_open"

inline constexpr int kDefaultFailureThreshold = 5;

// One per endpoint. Opens after `failure_threshold` consecutive failures and stays open for
// backoff_cap_ms(policy, consecutive_failures): the same schedule as a single event's retries,
// un-jittered, so the wait doubles with the streak up to max_ms. Once that time has passed it is
// half-open: one probe request at a time. A probe success closes it; a probe failure opens it again
// for the next, longer, wait. Failures of requests sent before it opened (still in flight) count
// in the streak but do not extend the wait; any success closes it, since the receiver answered.
// failure_threshold < 1 disables opening (failures are still counted). Time is the caller's, in ms.
class CircuitBreaker {
  public:
    explicit CircuitBreaker(const Policy &policy = {}, int failure_threshold = kDefaultFailureThreshold);

    // Whether a new request may start now, given the endpoint's requests in flight. Closed: yes
    // (in-flight limits are the scheduler's); Open: no; HalfOpen: only when nothing is in flight.
    bool may_send(std::uint64_t now_ms, int in_flight) const noexcept;
    void on_success() noexcept;
    void on_failure(std::uint64_t now_ms) noexcept;
    State state(std::uint64_t now_ms) const noexcept;
    // When an open circuit becomes half-open; 0 when closed.
    std::uint64_t open_until() const noexcept { return open_until_; }
    int consecutive_failures() const noexcept { return failures_; }
    // Back to Closed with no streak (resume_endpoint, alter_endpoint).
    void reset() noexcept;

  private:
    Policy policy_;
    int threshold_;
    int failures_ = 0;
    bool tripped_ = false; // Open or HalfOpen; which one depends on the time
    std::uint64_t open_until_ = 0;
};

} // namespace pg_sync::retry
