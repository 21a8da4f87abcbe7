#include "core/retry_policy.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <limits>
#include <random>

namespace pg_sync::retry {
namespace {

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();
// Bounds the text a receiver or libcurl can put into last_error.
constexpr std::size_t kMaxDetailLength = 200;

// HTTP's optional whitespace, plus CR/LF so a raw header line from libcurl's callback also works.
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);
    return s;
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) { return b > kU64Max - a ? kU64Max : a + b; }

// Seconds to ms, clamped to the ceiling first so that the multiplication cannot overflow.
std::uint64_t seconds_to_ms(std::uint64_t seconds, std::uint64_t ceiling_ms) {
    if (seconds > ceiling_ms / 1000)
        return ceiling_ms;
    return seconds * 1000;
}

// delta-seconds = 1*DIGIT; nullopt when s has anything else or does not fit 64 bits. Not
// std::from_chars or strtoull: both accept more than digits (a sign, or leading space).
std::optional<std::uint64_t> parse_digits(std::string_view s) {
    if (s.empty())
        return std::nullopt;
    std::uint64_t value = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return std::nullopt;
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (value > (kU64Max - digit) / 10)
            return std::nullopt;
        value = value * 10 + digit;
    }
    return value;
}

// Whether s has the shape of `pattern`: 'd' a digit, 'a' a letter, '_' a space or digit, '*' one or
// more letters, anything else itself. '*' may only come first.
bool shaped(std::string_view s, std::string_view pattern) {
    auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (!pattern.empty() && pattern.front() == '*') {
        std::size_t n = 0;
        while (n < s.size() && letter(s[n]))
            ++n;
        if (n == 0)
            return false;
        s.remove_prefix(n);
        pattern.remove_prefix(1);
    }
    if (s.size() != pattern.size())
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i], p = pattern[i];
        const bool ok = p == 'd'   ? digit(c)
                        : p == 'a' ? letter(c)
                        : p == '_' ? (c == ' ' || digit(c))
                                   : c == p;
        if (!ok)
            return false;
    }
    return true;
}

// The three HTTP-date forms of RFC 9110 5.6.7. curl_getdate alone is too lenient for a header we
// act on: it stops after six date parts and ignores whatever follows, and accepts stray separators.
bool is_http_date(std::string_view s) {
    return shaped(s, "aaa, dd aaa dddd dd:dd:dd GMT") || // IMF-fixdate
           shaped(s, "*, dd-aaa-dd dd:dd:dd GMT") ||     // RFC 850
           shaped(s, "aaa aaa _d dd:dd:dd dddd");        // asctime
}

// last_error is a text column: keep printable ASCII only, so no byte sequence from a receiver can
// make it invalid in the database encoding or break a log line.
void append_detail(std::string &reason, std::string_view detail) {
    detail = trim(detail);
    if (detail.empty())
        return;
    reason += ": ";
    for (char c : detail.substr(0, kMaxDetailLength))
        reason += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (detail.size() > kMaxDetailLength)
        reason += "...";
}

const char *transport_reason(Transport t) {
    switch (t) {
    case Transport::Ok:
    case Transport::Delivered:
        break;
    case Transport::Timeout:
        return "timeout";
    case Transport::Connect:
        return "connection failed";
    case Transport::Dns:
        return "DNS lookup failed";
    case Transport::Tls:
        return "TLS error";
    case Transport::ConnectionLost:
        return "connection lost";
    case Transport::Blocked:
        return "target address not allowed (pg_sync.allow_private_targets is off)";
    case Transport::Rejected:
        return "rejected";
    case Transport::Auth:
        return "OAuth2 token request failed";
    case Transport::Other:
        break;
    }
    return "transport error";
}

std::string status_reason(int status) {
    std::string reason = "HTTP " + std::to_string(status);
    if (status >= 100 && status < 200)
        reason += " (unexpected informational response)";
    else if (status >= 300 && status < 400)
        reason += " (redirects are not followed)";
    else if (status == 410)
        reason += " (Gone: endpoint paused)";
    return reason;
}

} // namespace

Random make_random(std::uint64_t seed) {
    return [engine = std::mt19937_64(seed)]() mutable { return static_cast<std::uint64_t>(engine()); };
}

std::uint64_t backoff_cap_ms(const Policy &policy, int attempt) noexcept {
    const std::uint64_t max = policy.max_ms;
    const std::uint64_t base = policy.base_ms;
    if (base >= max)
        return max;
    const int shift = attempt < 1 ? 0 : attempt - 1;
    // base < max here, so base << shift reaches max before it can overflow: stop when it would.
    if (shift >= 64 || base > (max >> shift))
        return max;
    return base << shift;
}

std::uint64_t jitter(std::uint64_t cap, std::uint64_t draw) noexcept {
    if (cap == kU64Max)
        return draw;
    // floor(draw * (cap + 1) / 2^64): 0 maps to 0 and 2^64 - 1 maps to cap.
    __extension__ using u128 = unsigned __int128;
    return static_cast<std::uint64_t>((static_cast<u128>(draw) * (cap + 1)) >> 64);
}

std::uint64_t backoff_floor_ms(const Policy &policy, int attempt) noexcept {
    const std::uint64_t cap = backoff_cap_ms(policy, attempt);
    return cap - cap / 2;
}

std::uint64_t backoff_ms(const Policy &policy, int attempt, const Random &random) {
    const std::uint64_t cap = backoff_cap_ms(policy, attempt);
    if (!random)
        return cap;
    const std::uint64_t floor = cap - cap / 2;
    return floor + jitter(cap - floor, random());
}

std::vector<ScheduleStep> retry_schedule(const Policy &policy) {
    std::vector<ScheduleStep> steps;
    std::uint64_t min_total = 0, max_total = 0;
    for (int n = 1; n < policy.max_attempts; ++n) {
        ScheduleStep s;
        s.attempt = n;
        s.min_ms = backoff_floor_ms(policy, n);
        s.max_ms = backoff_cap_ms(policy, n);
        min_total = saturating_add(min_total, s.min_ms);
        max_total = saturating_add(max_total, s.max_ms);
        s.min_total_ms = min_total;
        s.max_total_ms = max_total;
        steps.push_back(s);
    }
    return steps;
}

bool Policy::permanent(int status) const noexcept {
    return std::find(permanent_statuses.begin(), permanent_statuses.end(), status) != permanent_statuses.end();
}

std::optional<std::uint64_t> parse_retry_after_ms(std::string_view value, std::int64_t now_unix_s,
                                                  std::uint64_t ceiling_ms) {
    value = trim(value);
    if (value.empty())
        return std::nullopt;
    if (value.find_first_not_of("0123456789") == std::string_view::npos) {
        const auto seconds = parse_digits(value);
        if (!seconds)
            return std::nullopt;
        return seconds_to_ms(*seconds, ceiling_ms);
    }
    // The shape check also keeps "1.5", "-5" and NUL bytes away from curl_getdate; curl then checks
    // the names and the ranges and does the calendar arithmetic.
    if (!is_http_date(value))
        return std::nullopt;
    const std::string text(value);
    const time_t date = curl_getdate(text.c_str(), nullptr);
    if (date == -1)
        return std::nullopt;
    const auto when = static_cast<std::int64_t>(date);
    if (when <= now_unix_s)
        return std::uint64_t{0};
    // when > now, so the unsigned difference is exact even if now is negative.
    return seconds_to_ms(static_cast<std::uint64_t>(when) - static_cast<std::uint64_t>(now_unix_s),
                         ceiling_ms);
}

Transport transport_from_curl(int curl_code) noexcept {
    switch (static_cast<CURLcode>(curl_code)) {
    case CURLE_OK:
        return Transport::Ok;
    case CURLE_OPERATION_TIMEDOUT:
        return Transport::Timeout;
    case CURLE_COULDNT_CONNECT:
        return Transport::Connect;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return Transport::Dns;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return Transport::Tls;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2_STREAM:
        return Transport::ConnectionLost;
    default:
        return Transport::Other;
    }
}

Outcome classify(const Response &response, int attempt, const Policy &policy, std::int64_t now_unix_s,
                 const Random &random) {
    Outcome out;
    const int status = response.status;
    if (response.transport == Transport::Delivered)
        return out; // Success
    if (response.transport == Transport::Ok) {
        if (status >= 200 && status < 300)
            return out; // Success
        if (policy.permanent(status)) {
            // The operator said that this answer will not change (permanent_statuses).
            out.verdict = Verdict::DeadLetter;
            out.permanent = true;
            out.reason = status_reason(status) + " (permanent for this endpoint)";
            append_detail(out.reason, response.detail);
            return out;
        }
        if (status == 413) {
            // Too large for the receiver: smaller requests may pass, a single event cannot.
            out.verdict = response.events > 1 ? Verdict::Split : Verdict::DeadLetter;
            out.permanent = out.verdict == Verdict::DeadLetter;
            out.reason = response.events > 1 ? "HTTP 413 (request too large: sent again in smaller requests)"
                                             : "HTTP 413 (the event alone is larger than the receiver accepts)";
            append_detail(out.reason, response.detail);
            return out;
        }
        if (status == 410) {
            // The receiver says the endpoint is gone for good: retrying or dead-lettering would
            // only burn the events, so the caller pauses the endpoint and keeps them.
            out.verdict = Verdict::Gone;
            out.reason = status_reason(status);
            append_detail(out.reason, response.detail);
            return out;
        }
        out.reason = (status >= 100 && status <= 599) ? status_reason(status)
                                                      : "invalid HTTP status " + std::to_string(status);
    } else {
        out.reason = transport_reason(response.transport);
    }
    append_detail(out.reason, response.detail);

    // Refused for good: another attempt would get the same answer.
    if (attempt >= policy.max_attempts || response.transport == Transport::Rejected) {
        out.verdict = Verdict::DeadLetter;
        out.permanent = response.transport == Transport::Rejected;
        return out;
    }
    out.verdict = Verdict::Retry;
    out.delay_ms = backoff_ms(policy, attempt, random);
    if (response.transport == Transport::Ok && (status == 429 || status == 503) && response.retry_after) {
        // Clamped to max_ms: the operator's bound on any wait holds against a receiver's wish too.
        // It may ask for a longer wait than the backoff, never a shorter one: "0" or a past date
        // must not turn retries into a loop as fast as the receiver can answer.
        if (auto ms = parse_retry_after_ms(*response.retry_after, now_unix_s, policy.max_ms)) {
            out.retry_after_used = true;
            out.retry_after_ms = *ms;
            out.delay_ms = std::max(out.delay_ms, *ms);
        }
    }
    return out;
}

const char *verdict_name(Verdict v) noexcept {
    switch (v) {
    case Verdict::Success:
        return "success";
    case Verdict::Retry:
        return "retry";
    case Verdict::Gone:
        return "gone";
    case Verdict::DeadLetter:
        return "dead_letter";
    case Verdict::Split:
        return "split";
    }
    return "unknown";
}

const char *state_name(State s) noexcept {
    switch (s) {
    case State::Closed:
        return "closed";
    case State::Open:
        return "open";
    case State::HalfOpen:
        return "half_open";
    }
    return "unknown";
}

CircuitBreaker::CircuitBreaker(const Policy &policy, int failure_threshold)
    : policy_(policy), threshold_(failure_threshold) {}

State CircuitBreaker::state(std::uint64_t now_ms) const noexcept {
    if (!tripped_)
        return State::Closed;
    return now_ms < open_until_ ? State::Open : State::HalfOpen;
}

bool CircuitBreaker::may_send(std::uint64_t now_ms, int in_flight) const noexcept {
    switch (state(now_ms)) {
    case State::Closed:
        return true;
    case State::Open:
        return false;
    case State::HalfOpen:
        return in_flight <= 0; // one probe at a time
    }
    return false;
}

void CircuitBreaker::on_success() noexcept { reset(); }

void CircuitBreaker::on_failure(std::uint64_t now_ms) noexcept {
    if (failures_ < std::numeric_limits<int>::max())
        ++failures_;
    const State before = state(now_ms);
    // While Open, a failure is a request sent before the circuit opened: it tells nothing new.
    if (before == State::Open)
        return;
    if (before == State::Closed && (threshold_ < 1 || failures_ < threshold_))
        return;
    // Closed reaching the threshold, or a failed probe in HalfOpen: open for the streak's wait.
    tripped_ = true;
    open_until_ = saturating_add(now_ms, backoff_cap_ms(policy_, failures_));
}

void CircuitBreaker::reset() noexcept {
    failures_ = 0;
    tripped_ = false;
    open_until_ = 0;
}

} // namespace pg_sync::retry
