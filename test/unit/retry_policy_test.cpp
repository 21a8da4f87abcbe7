// Unit tests of src/core/retry_policy.{hpp,cpp}.
#include "core/retry_policy.hpp"
#include "core/validate.hpp"

#include <curl/curl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>

namespace {

using namespace std::string_literals;
namespace retry = pg_sync::retry;
using retry::CircuitBreaker;
using retry::Outcome;
using retry::Policy;
using retry::Response;
using retry::State;
using retry::Transport;
using retry::Verdict;

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();
// Sun, 06 Nov 1994 08:49:37 GMT, the example date of RFC 9110.
constexpr std::int64_t kNow = 784111777;

retry::Random fixed(std::uint64_t draw) {
    return [draw] { return draw; };
}

Policy policy(std::uint64_t base_ms, std::uint64_t max_ms, int max_attempts = 10) {
    Policy p;
    p.base_ms = base_ms;
    p.max_ms = max_ms;
    p.max_attempts = max_attempts;
    return p;
}

// ---- Backoff ------------------------------------------------------------------------------------

TEST(RetryBackoff, CapDoublesFromBaseUntilMax) {
    const Policy p = policy(1000, 3600000);
    std::uint64_t expected = 1000;
    for (int attempt = 1; attempt <= 12; ++attempt) {
        EXPECT_EQ(retry::backoff_cap_ms(p, attempt), expected) << "attempt " << attempt;
        expected *= 2;
    }
    // 1000 * 2^12 = 4096000 > 3600000
    EXPECT_EQ(retry::backoff_cap_ms(p, 13), 3600000u);
    EXPECT_EQ(retry::backoff_cap_ms(p, 14), 3600000u);
}

TEST(RetryBackoff, AttemptBelowOneCountsAsOne) {
    const Policy p = policy(250, 10000);
    EXPECT_EQ(retry::backoff_cap_ms(p, 0), 250u);
    EXPECT_EQ(retry::backoff_cap_ms(p, -7), 250u);
    EXPECT_EQ(retry::backoff_cap_ms(p, INT_MIN), 250u);
}

TEST(RetryBackoff, NoOverflowForLargeAttempts) {
    const Policy week = policy(1, retry::kMaxDelayMs);
    EXPECT_EQ(retry::backoff_cap_ms(week, 1000), retry::kMaxDelayMs);
    EXPECT_EQ(retry::backoff_cap_ms(week, INT_MAX), retry::kMaxDelayMs);
    EXPECT_EQ(retry::backoff_ms(week, 1000, fixed(kU64Max)), retry::kMaxDelayMs);

    // With no effective max the doubling must stop at the 64-bit edge, not wrap around to 0.
    const Policy unbounded = policy(1, kU64Max);
    EXPECT_EQ(retry::backoff_cap_ms(unbounded, 64), std::uint64_t{1} << 63);
    EXPECT_EQ(retry::backoff_cap_ms(unbounded, 65), kU64Max);
    EXPECT_EQ(retry::backoff_cap_ms(unbounded, 1000), kU64Max);
    const Policy big_base = policy(std::uint64_t{3} << 62, kU64Max);
    EXPECT_EQ(retry::backoff_cap_ms(big_base, 2), kU64Max);
}

TEST(RetryBackoff, BaseAboveMaxGivesMax) {
    const Policy p = policy(5000, 2000);
    EXPECT_EQ(retry::backoff_cap_ms(p, 1), 2000u);
    EXPECT_EQ(retry::backoff_cap_ms(p, 2), 2000u);
    EXPECT_EQ(retry::backoff_cap_ms(p, 1000), 2000u);
    EXPECT_EQ(retry::backoff_cap_ms(policy(2000, 2000), 1), 2000u);
    EXPECT_EQ(retry::backoff_ms(p, 3, fixed(kU64Max)), 2000u);
}

TEST(RetryBackoff, EqualJitterSpansHalfTheCapToTheCap) {
    const Policy p = policy(1000, 3600000);
    EXPECT_EQ(retry::backoff_ms(p, 1, fixed(0)), 500u);
    EXPECT_EQ(retry::backoff_ms(p, 1, fixed(kU64Max)), 1000u);
    EXPECT_EQ(retry::backoff_ms(p, 4, fixed(kU64Max)), 8000u);
    EXPECT_EQ(retry::backoff_ms(p, 4, fixed(0)), 4000u);
    EXPECT_EQ(retry::backoff_ms(p, 20, fixed(kU64Max)), 3600000u);
    EXPECT_EQ(retry::backoff_ms(p, 20, fixed(0)), 1800000u);
    EXPECT_EQ(retry::backoff_floor_ms(p, 20), 1800000u);
    // Half the draw range lands at three quarters of the cap.
    EXPECT_EQ(retry::backoff_ms(p, 1, fixed(std::uint64_t{1} << 63)), 750u);
    // An odd cap: the floor is its larger half, the wait never below it.
    const Policy odd = policy(3, 3);
    EXPECT_EQ(retry::backoff_floor_ms(odd, 1), 2u);
    EXPECT_EQ(retry::backoff_ms(odd, 1, fixed(0)), 2u);
    EXPECT_EQ(retry::backoff_ms(odd, 1, fixed(kU64Max)), 3u);
}

TEST(RetryBackoff, EmptyRandomGivesTheCap) {
    EXPECT_EQ(retry::backoff_ms(policy(1000, 60000), 3, retry::Random{}), 4000u);
}

TEST(RetryBackoff, JitterMapping) {
    EXPECT_EQ(retry::jitter(0, kU64Max), 0u);
    EXPECT_EQ(retry::jitter(0, 0), 0u);
    EXPECT_EQ(retry::jitter(1, 0), 0u);
    EXPECT_EQ(retry::jitter(1, kU64Max), 1u);
    EXPECT_EQ(retry::jitter(1, (std::uint64_t{1} << 63) - 1), 0u);
    EXPECT_EQ(retry::jitter(1, std::uint64_t{1} << 63), 1u);
    EXPECT_EQ(retry::jitter(kU64Max, 12345), 12345u);
    EXPECT_EQ(retry::jitter(kU64Max - 1, kU64Max), kU64Max - 1);
}

TEST(RetryBackoff, SeededRandomStaysInRangeAndSpreads) {
    const Policy p = policy(1000, 3600000);
    retry::Random random = retry::make_random(42);
    const std::uint64_t cap = retry::backoff_cap_ms(p, 5); // 16000
    std::uint64_t low = kU64Max, high = 0;
    double sum = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
        const std::uint64_t d = retry::backoff_ms(p, 5, random);
        ASSERT_LE(d, cap);
        low = std::min(low, d);
        high = std::max(high, d);
        sum += static_cast<double>(d);
    }
    ASSERT_GE(low, cap / 2);
    EXPECT_LT(low, cap / 2 + cap / 100);
    EXPECT_GT(high, cap - cap / 100);
    EXPECT_NEAR(sum / n, cap * 0.75, cap * 0.02);
}

TEST(RetryBackoff, SeedDeterminesSequence) {
    retry::Random a = retry::make_random(7), b = retry::make_random(7), c = retry::make_random(8);
    const std::uint64_t a1 = a(), a2 = a();
    EXPECT_EQ(a1, b());
    EXPECT_EQ(a2, b());
    EXPECT_NE(a1, a2);
    EXPECT_NE(a1, c());
}

TEST(RetryBackoff, MaxDelayMatchesTheLargestRetryMaxSetting) {
    EXPECT_EQ(retry::kMaxDelayMs, static_cast<std::uint64_t>(pg_sync::validate::kRetryMaxMs.max));
}

// ---- Retry-After --------------------------------------------------------------------------------

std::optional<std::uint64_t> after(std::string_view v, std::uint64_t ceiling = retry::kMaxDelayMs) {
    return retry::parse_retry_after_ms(v, kNow, ceiling);
}

TEST(RetryAfter, DeltaSeconds) {
    EXPECT_EQ(after("120"), 120000u);
    EXPECT_EQ(after("1"), 1000u);
    EXPECT_EQ(after("0"), 0u);
    EXPECT_EQ(after("000"), 0u);
    EXPECT_EQ(after("0120"), 120000u);
}

TEST(RetryAfter, SurroundingWhitespaceIsIgnored) {
    EXPECT_EQ(after(" 120"), 120000u);
    EXPECT_EQ(after("120 "), 120000u);
    EXPECT_EQ(after("\t 120 \t"), 120000u);
    EXPECT_EQ(after("120\r\n"), 120000u);
    EXPECT_EQ(after("  Sun, 06 Nov 1994 08:51:37 GMT\r\n"), 120000u);
}

TEST(RetryAfter, HugeValuesAreClampedToTheCeiling) {
    EXPECT_EQ(after("99999999999"), retry::kMaxDelayMs);
    EXPECT_EQ(after("604800"), retry::kMaxDelayMs); // exactly 7 days
    EXPECT_EQ(after("604799"), retry::kMaxDelayMs - 1000);
    EXPECT_EQ(after("18446744073709551615"), retry::kMaxDelayMs); // largest 64-bit value
    EXPECT_EQ(after("7200", 3600000), 3600000u);
    EXPECT_EQ(after("3600", 3600000), 3600000u);
    EXPECT_EQ(after("3599", 3600000), 3599000u);
    EXPECT_EQ(after("0", 0), 0u);
    EXPECT_EQ(after("5", 0), 0u);
    // * 1000 must not overflow with a ceiling that does not bound it.
    EXPECT_EQ(after("18446744073709551", kU64Max), 18446744073709551000u);
    EXPECT_EQ(after("18446744073709552", kU64Max), kU64Max);
}

TEST(RetryAfter, RejectsOverflowNegativesFractionsAndGarbage) {
    for (const std::string &v : {"18446744073709551616"s,
                                 "99999999999999999999999999"s,
                                 "-5"s,
                                 "-0"s,
                                 "+5"s,
                                 "1.5"s,
                                 "1,5"s,
                                 "1e3"s,
                                 "0x10"s,
                                 "12 0"s,
                                 "120s"s,
                                 "abc"s,
                                 "soon"s,
                                 "Sun"s,
                                 ""s,
                                 " "s,
                                 "\t\r\n"s,
                                 "12\0"s
                                 "3"s,
                                 "Sun, 06 Nov 1994 08:51:37 GMT\0x"s,
                                 "Sun, 06 Nov 1994 08:51:37 GMT trailing"s,
                                 "Foo, 06 Nov 1994 08:51:37 GMT"s,
                                 "Sun, 06 Foo 1994 08:51:37 GMT"s,
                                 "Sun, 32 Nov 1994 08:51:37 GMT"s,
                                 "Sun, 06 Nov 1994 25:51:37 GMT"s,
                                 "Sunday, 06-Nov-94 08:51:37 GMT trailing"s,
                                 "Sun Nov  6 08:51:37 1994 x"s,
                                 "Sun, 06 Nov 1994 08:51:37 +0000"s,
                                 "Sun, 6 Nov 1994 08:51:37 GMT"s,
                                 "Sun, 06 Nov 1994"s,
                                 "06:51:37"s,
                                 "-Sun, 06 Nov 1994 08:51:37 GMT"s,
                                 "Sun,06 Nov 1994 08:51:37 GMT"s}) {
        EXPECT_EQ(after(v), std::nullopt) << "value \"" << v << "\"";
    }
}

TEST(RetryAfter, HttpDatesInAllThreeFormats) {
    EXPECT_EQ(after("Sun, 06 Nov 1994 08:51:37 GMT"), 120000u);  // IMF-fixdate
    EXPECT_EQ(after("Sunday, 06-Nov-94 08:51:37 GMT"), 120000u); // RFC 850
    EXPECT_EQ(after("Sun Nov  6 08:51:37 1994"), 120000u);       // asctime
    EXPECT_EQ(after("Mon, 07 Nov 1994 08:49:37 GMT"), 86400000u);
    EXPECT_EQ(after("Wednesday, 09-Nov-94 08:49:37 GMT"), 3 * 86400000u);
    EXPECT_EQ(after("Wed Nov 16 08:49:37 1994", kU64Max), 10 * 86400000u);
    EXPECT_EQ(after("sun, 06 nov 1994 08:51:37 GMT"), 120000u); // names are case-insensitive
}

TEST(RetryAfter, PastOrPresentDatesGiveZero) {
    EXPECT_EQ(after("Sun, 06 Nov 1994 08:49:37 GMT"), 0u);
    EXPECT_EQ(after("Sun, 06 Nov 1994 08:49:36 GMT"), 0u);
    EXPECT_EQ(after("Sunday, 06-Nov-94 07:00:00 GMT"), 0u);
    EXPECT_EQ(after("Thu Jan  1 00:00:00 1970"), 0u);
    EXPECT_EQ(after("Wed, 31 Dec 1969 23:59:00 GMT"), 0u);
}

TEST(RetryAfter, FarFutureDatesAreClamped) {
    EXPECT_EQ(after("Fri, 31 Dec 9999 23:59:59 GMT"), retry::kMaxDelayMs);
    EXPECT_EQ(after("Mon, 07 Nov 1994 08:49:37 GMT", 3600000), 3600000u);
}

TEST(RetryAfter, DateIsRelativeToTheInjectedNow) {
    const std::int64_t now = 1772366400; // 2026-03-01 12:00:00 UTC
    EXPECT_EQ(retry::parse_retry_after_ms("Sun, 01 Mar 2026 12:00:30 GMT", now), 30000u);
    EXPECT_EQ(retry::parse_retry_after_ms("Sun, 01 Mar 2026 12:00:30 GMT", now + 10), 20000u);
    EXPECT_EQ(retry::parse_retry_after_ms("Sun, 01 Mar 2026 12:00:30 GMT", now + 60), 0u);
    EXPECT_EQ(retry::parse_retry_after_ms("Sun, 06 Nov 1994 08:51:37 GMT", now), 0u);
    // A negative now (a clock before 1970) must not wrap the difference.
    EXPECT_EQ(retry::parse_retry_after_ms("Thu, 01 Jan 1970 00:00:10 GMT", -5), 15000u);
}

// ---- Classification -----------------------------------------------------------------------------

// Draws the largest value, so a backoff delay equals the cap and is checkable.
const retry::Random kMaxDraw = fixed(kU64Max);
const Policy kPolicy = policy(1000, 60000, 5);

Outcome http(int status, int attempt = 1, std::optional<std::string_view> retry_after = std::nullopt) {
    Response r;
    r.status = status;
    r.retry_after = retry_after;
    return retry::classify(r, attempt, kPolicy, kNow, kMaxDraw);
}

Outcome failed(Transport t, std::string_view detail = {}, int attempt = 1) {
    Response r;
    r.transport = t;
    r.detail = detail;
    return retry::classify(r, attempt, kPolicy, kNow, kMaxDraw);
}

TEST(RetryClassify, TwoHundredsSucceed) {
    for (int status : {200, 201, 204, 299}) {
        const Outcome o = http(status);
        EXPECT_EQ(o.verdict, Verdict::Success) << status;
        EXPECT_EQ(o.reason, "") << status;
        EXPECT_EQ(o.delay_ms, 0u) << status;
        EXPECT_FALSE(o.is_failure()) << status;
    }
    // Success even on the last allowed attempt.
    EXPECT_EQ(http(200, 5).verdict, Verdict::Success);
}

TEST(RetryClassify, StatusTable) {
    struct Row {
        int status;
        const char *reason;
    };
    for (const Row &row :
         {Row{100, "HTTP 100 (unexpected informational response)"},
          Row{199, "HTTP 199 (unexpected informational response)"},
          Row{300, "HTTP 300 (redirects are not followed)"},
          Row{301, "HTTP 301 (redirects are not followed)"},
          Row{302, "HTTP 302 (redirects are not followed)"},
          Row{304, "HTTP 304 (redirects are not followed)"}, Row{400, "HTTP 400"}, Row{401, "HTTP 401"},
          Row{404, "HTTP 404"}, Row{409, "HTTP 409"}, Row{429, "HTTP 429"}, Row{500, "HTTP 500"},
          Row{502, "HTTP 502"}, Row{503, "HTTP 503"}, Row{599, "HTTP 599"}, Row{0, "invalid HTTP status 0"},
          Row{99, "invalid HTTP status 99"}, Row{600, "invalid HTTP status 600"},
          Row{-1, "invalid HTTP status -1"}}) {
        const Outcome o = http(row.status, 3);
        EXPECT_EQ(o.verdict, Verdict::Retry) << row.status;
        EXPECT_EQ(o.reason, row.reason) << row.status;
        EXPECT_EQ(o.delay_ms, 4000u) << row.status; // cap of attempt 3
        EXPECT_FALSE(o.retry_after_used) << row.status;
        EXPECT_TRUE(o.is_failure()) << row.status;
    }
}

TEST(RetryClassify, GonePausesWhateverTheAttempt) {
    for (int attempt : {1, 4, 5, 6}) {
        const Outcome o = http(410, attempt);
        EXPECT_EQ(o.verdict, Verdict::Gone) << attempt;
        EXPECT_EQ(o.reason, "HTTP 410 (Gone: endpoint paused)") << attempt;
        EXPECT_FALSE(o.is_failure()) << attempt;
    }
}

TEST(RetryClassify, RetryAfterLengthensTheWaitOn429And503) {
    Outcome o = http(429, 1, "7");
    EXPECT_EQ(o.verdict, Verdict::Retry);
    EXPECT_EQ(o.delay_ms, 7000u); // more than the backoff of attempt 1 (1 s)
    EXPECT_TRUE(o.retry_after_used);
    EXPECT_EQ(o.retry_after_ms, 7000u);
    EXPECT_EQ(o.reason, "HTTP 429");

    o = http(503, 2, "Sun, 06 Nov 1994 08:50:07 GMT");
    EXPECT_EQ(o.verdict, Verdict::Retry);
    EXPECT_EQ(o.delay_ms, 30000u);
    EXPECT_TRUE(o.retry_after_used);
    EXPECT_EQ(o.retry_after_ms, 30000u);
    EXPECT_EQ(o.reason, "HTTP 503");
}

// delay = max(Retry-After, backoff): "0", a past date or a short value never make a retry come
// sooner than the backoff would (hostile-receiver finding: "Retry-After: 0" with the breaker off
// made 1000 requests in 5 s and dead-lettered the event despite retry_base_ms 1000).
TEST(RetryClassify, RetryAfterNeverShortensTheBackoff) {
    for (int attempt = 1; attempt <= 4; ++attempt) {
        const std::uint64_t backoff = retry::backoff_cap_ms(kPolicy, attempt); // kMaxDraw: the cap
        for (int status : {429, 503}) {
            for (const char *value : {"0", "1", "Sun, 06 Nov 1994 08:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"}) {
                const Outcome o = http(status, attempt, value);
                EXPECT_EQ(o.verdict, Verdict::Retry);
                EXPECT_TRUE(o.retry_after_used) << value;
                EXPECT_EQ(o.delay_ms, std::max<std::uint64_t>(backoff, o.retry_after_ms))
                    << status << " " << value << " attempt " << attempt;
                EXPECT_GE(o.delay_ms, backoff);
            }
        }
    }
    EXPECT_EQ(http(429, 4, "0").delay_ms, 8000u);
    EXPECT_EQ(http(429, 4, "0").retry_after_ms, 0u);
    EXPECT_EQ(http(503, 2, "Sun, 06 Nov 1994 08:00:00 GMT").delay_ms, 2000u); // in the past
    EXPECT_EQ(http(503, 2, "Sun, 06 Nov 1994 08:00:00 GMT").retry_after_ms, 0u);
    // The jittered backoff, not its cap (attempt 3: 2000 to 4000 ms), when it is the longer.
    Response r;
    r.status = 429;
    r.retry_after = "1";
    EXPECT_EQ(retry::classify(r, 3, kPolicy, kNow, fixed(std::uint64_t{1} << 63)).delay_ms, 3000u);
    EXPECT_EQ(retry::classify(r, 3, kPolicy, kNow, fixed(0)).delay_ms, 2000u);
    r.retry_after = "3";
    EXPECT_EQ(retry::classify(r, 3, kPolicy, kNow, fixed(0)).delay_ms, 3000u);
}

// The hot loop itself: a receiver answering 429 "Retry-After: 0" to everything, retry_base_ms
// 1000, max_attempts 10, no circuit breaker. Over 5 s the event gets a handful of attempts (the
// backoff doubles), not 10, so it is not dead-lettered.
TEST(RetryClassify, RetryAfterZeroDoesNotMakeAHotLoop) {
    const Policy p = policy(1000, 3600000, 10);
    for (std::uint64_t seed = 1; seed <= 50; ++seed) {
        const retry::Random random = retry::make_random(seed);
        Response r;
        r.status = 429;
        r.retry_after = "0";
        std::uint64_t t = 0;
        int attempt = 0;
        Outcome o;
        while (t < 5000) {
            ++attempt;
            o = retry::classify(r, attempt, p, kNow + std::int64_t(t / 1000), random);
            if (o.verdict != Verdict::Retry)
                break;
            t += o.delay_ms;
        }
        EXPECT_EQ(o.verdict, Verdict::Retry) << "seed " << seed << ": dead after " << attempt << " attempts";
        EXPECT_LE(attempt, 6) << "seed " << seed;
    }
}

TEST(RetryClassify, RetryAfterIsClampedToMaxMs) {
    const Outcome o = http(429, 1, "86400");
    EXPECT_EQ(o.delay_ms, 60000u);
    EXPECT_TRUE(o.retry_after_used);
    EXPECT_EQ(http(503, 1, "Fri, 31 Dec 9999 23:59:59 GMT").delay_ms, 60000u);
}

TEST(RetryClassify, WithoutValidRetryAfterBackoffApplies) {
    for (std::optional<std::string_view> value :
         {std::optional<std::string_view>{}, std::optional<std::string_view>{"soon"},
          std::optional<std::string_view>{""}, std::optional<std::string_view>{"-3"},
          std::optional<std::string_view>{"1.5"}}) {
        for (int status : {429, 503}) {
            const Outcome o = http(status, 2, value);
            EXPECT_EQ(o.verdict, Verdict::Retry);
            EXPECT_EQ(o.delay_ms, 2000u) << status << " " << value.value_or("(none)");
            EXPECT_FALSE(o.retry_after_used) << status << " " << value.value_or("(none)");
        }
    }
}

TEST(RetryClassify, RetryAfterIgnoredOnOtherStatuses) {
    for (int status : {301, 400, 404, 500, 502}) {
        const Outcome o = http(status, 2, "7");
        EXPECT_EQ(o.delay_ms, 2000u) << status;
        EXPECT_FALSE(o.retry_after_used) << status;
    }
}

TEST(RetryClassify, BackoffUsesTheRandomDraw) {
    Response r;
    r.status = 500;
    EXPECT_EQ(retry::classify(r, 3, kPolicy, kNow, fixed(0)).delay_ms, 2000u);
    EXPECT_EQ(retry::classify(r, 3, kPolicy, kNow, fixed(std::uint64_t{1} << 63)).delay_ms, 3000u);
    EXPECT_EQ(retry::classify(r, 3, kPolicy, kNow, kMaxDraw).delay_ms, 4000u);
}

TEST(RetryClassify, TransportFailuresRetry) {
    struct Row {
        Transport transport;
        const char *reason;
    };
    for (const Row &row :
         {Row{Transport::Timeout, "timeout"}, Row{Transport::Connect, "connection failed"},
          Row{Transport::Dns, "DNS lookup failed"}, Row{Transport::Tls, "TLS error"},
          Row{Transport::ConnectionLost, "connection lost"},
          Row{Transport::Blocked, "target address not allowed (pg_sync.allow_private_targets is off)"},
          Row{Transport::Other, "transport error"}}) {
        const Outcome o = failed(row.transport, {}, 2);
        EXPECT_EQ(o.verdict, Verdict::Retry) << row.reason;
        EXPECT_EQ(o.reason, row.reason);
        EXPECT_EQ(o.delay_ms, 2000u) << row.reason;
        EXPECT_TRUE(o.is_failure()) << row.reason;
    }
}

TEST(RetryClassify, TransportFailureIgnoresStatusAndRetryAfter) {
    Response r;
    r.transport = Transport::ConnectionLost;
    r.status = 503; // a status line arrived, then the connection dropped
    r.retry_after = "30";
    const Outcome o = retry::classify(r, 1, kPolicy, kNow, kMaxDraw);
    EXPECT_EQ(o.verdict, Verdict::Retry);
    EXPECT_EQ(o.delay_ms, 1000u);
    EXPECT_FALSE(o.retry_after_used);
    EXPECT_EQ(o.reason, "connection lost");
    r.status = 200;
    EXPECT_EQ(retry::classify(r, 1, kPolicy, kNow, kMaxDraw).verdict, Verdict::Retry);
}

TEST(RetryClassify, DetailIsAppendedSanitizedAndBounded) {
    EXPECT_EQ(failed(Transport::Timeout, "Operation timed out after 10001 milliseconds\n").reason,
              "timeout: Operation timed out after 10001 milliseconds");
    EXPECT_EQ(failed(Transport::Connect, "  \r\n").reason, "connection failed");
    EXPECT_EQ(failed(Transport::Other, "a\x01"
                                       "b\xff"
                                       "c\td")
                  .reason,
              "transport error: a?b?c?d");

    const std::string long_detail(1000, 'x');
    Response r;
    r.status = 500;
    r.detail = long_detail;
    const Outcome o = retry::classify(r, 1, kPolicy, kNow, kMaxDraw);
    EXPECT_EQ(o.reason, "HTTP 500: " + std::string(200, 'x') + "...");

    r.status = 410;
    r.detail = "endpoint removed";
    EXPECT_EQ(retry::classify(r, 1, kPolicy, kNow, kMaxDraw).reason,
              "HTTP 410 (Gone: endpoint paused): endpoint removed");
}

TEST(RetryClassify, DeadLetterExactlyAtMaxAttempts) {
    for (int attempt = 1; attempt < kPolicy.max_attempts; ++attempt)
        EXPECT_EQ(http(500, attempt).verdict, Verdict::Retry) << attempt;
    Outcome o = http(500, kPolicy.max_attempts);
    EXPECT_EQ(o.verdict, Verdict::DeadLetter);
    EXPECT_EQ(o.reason, "HTTP 500"); // the real error, for dead_letters.last_error
    EXPECT_EQ(o.delay_ms, 0u);
    EXPECT_TRUE(o.is_failure());
    EXPECT_EQ(http(500, kPolicy.max_attempts + 1).verdict, Verdict::DeadLetter);

    // Retry-After does not buy an extra attempt; transport failures dead-letter alike.
    EXPECT_EQ(http(429, kPolicy.max_attempts, "5").verdict, Verdict::DeadLetter);
    EXPECT_EQ(http(302, kPolicy.max_attempts).verdict, Verdict::DeadLetter);
    o = failed(Transport::Timeout, "slow", kPolicy.max_attempts);
    EXPECT_EQ(o.verdict, Verdict::DeadLetter);
    EXPECT_EQ(o.reason, "timeout: slow");

    // max_attempts = 1: the first failure is final.
    Response r;
    r.status = 500;
    EXPECT_EQ(retry::classify(r, 1, policy(1000, 60000, 1), kNow, kMaxDraw).verdict, Verdict::DeadLetter);
}

TEST(RetryClassify, TransportFromCurl) {
    EXPECT_EQ(retry::transport_from_curl(CURLE_OK), Transport::Ok);
    EXPECT_EQ(retry::transport_from_curl(CURLE_OPERATION_TIMEDOUT), Transport::Timeout);
    EXPECT_EQ(retry::transport_from_curl(CURLE_COULDNT_CONNECT), Transport::Connect);
    EXPECT_EQ(retry::transport_from_curl(CURLE_COULDNT_RESOLVE_HOST), Transport::Dns);
    EXPECT_EQ(retry::transport_from_curl(CURLE_PEER_FAILED_VERIFICATION), Transport::Tls);
    EXPECT_EQ(retry::transport_from_curl(CURLE_SSL_CONNECT_ERROR), Transport::Tls);
    EXPECT_EQ(retry::transport_from_curl(CURLE_RECV_ERROR), Transport::ConnectionLost);
    EXPECT_EQ(retry::transport_from_curl(CURLE_SEND_ERROR), Transport::ConnectionLost);
    EXPECT_EQ(retry::transport_from_curl(CURLE_GOT_NOTHING), Transport::ConnectionLost);
    EXPECT_EQ(retry::transport_from_curl(CURLE_WRITE_ERROR), Transport::Other);
    EXPECT_EQ(retry::transport_from_curl(CURLE_UNSUPPORTED_PROTOCOL), Transport::Other);
    EXPECT_EQ(retry::transport_from_curl(-1), Transport::Other);
    EXPECT_EQ(retry::transport_from_curl(100000), Transport::Other);
}

TEST(RetryClassify, Names) {
    EXPECT_STREQ(retry::verdict_name(Verdict::Success), "success");
    EXPECT_STREQ(retry::verdict_name(Verdict::Retry), "retry");
    EXPECT_STREQ(retry::verdict_name(Verdict::Gone), "gone");
    EXPECT_STREQ(retry::verdict_name(Verdict::DeadLetter), "dead_letter");
    EXPECT_STREQ(retry::state_name(State::Closed), "closed");
    EXPECT_STREQ(retry::state_name(State::Open), "open");
    EXPECT_STREQ(retry::state_name(State::HalfOpen), "half_open");
}

// ---- Circuit breaker ----------------------------------------------------------------------------

constexpr std::uint64_t kT0 = 1'000'000;

// Fails `n` times at time `now`.
void fail(CircuitBreaker &b, int n, std::uint64_t now) {
    for (int i = 0; i < n; ++i)
        b.on_failure(now);
}

TEST(RetryBreaker, StartsClosed) {
    const CircuitBreaker b(policy(1000, 3600000));
    EXPECT_EQ(b.state(kT0), State::Closed);
    EXPECT_TRUE(b.may_send(kT0, 0));
    EXPECT_TRUE(b.may_send(kT0, 100)); // in-flight limits are the scheduler's, not the breaker's
    EXPECT_EQ(b.consecutive_failures(), 0);
    EXPECT_EQ(b.open_until(), 0u);
}

TEST(RetryBreaker, OpensAtTheThresholdForTheStreaksBackoff) {
    CircuitBreaker b(policy(1000, 3600000)); // default threshold 5
    fail(b, 4, kT0);
    EXPECT_EQ(b.state(kT0), State::Closed);
    EXPECT_TRUE(b.may_send(kT0, 3));
    EXPECT_EQ(b.consecutive_failures(), 4);
    EXPECT_EQ(b.open_until(), 0u);

    b.on_failure(kT0 + 10);
    EXPECT_EQ(b.consecutive_failures(), 5);
    EXPECT_EQ(b.open_until(), kT0 + 10 + 16000); // backoff_cap_ms(attempt 5)
    EXPECT_EQ(b.state(kT0 + 10), State::Open);
    EXPECT_FALSE(b.may_send(kT0 + 10, 0));
    EXPECT_FALSE(b.may_send(b.open_until() - 1, 0));
    EXPECT_EQ(b.state(b.open_until() - 1), State::Open);
    EXPECT_EQ(b.state(b.open_until()), State::HalfOpen);
}

TEST(RetryBreaker, SuccessResetsTheStreakWhileClosed) {
    CircuitBreaker b(policy(1000, 3600000), 3);
    fail(b, 2, kT0);
    b.on_success();
    EXPECT_EQ(b.consecutive_failures(), 0);
    fail(b, 2, kT0);
    EXPECT_EQ(b.state(kT0), State::Closed);
    b.on_failure(kT0);
    EXPECT_EQ(b.state(kT0), State::Open);
}

TEST(RetryBreaker, HalfOpenLetsOneProbeAtATime) {
    CircuitBreaker b(policy(1000, 3600000), 2);
    fail(b, 2, kT0);
    const std::uint64_t t = b.open_until();
    EXPECT_EQ(b.state(t), State::HalfOpen);
    EXPECT_TRUE(b.may_send(t, 0));
    EXPECT_FALSE(b.may_send(t, 1)); // the probe is in flight
    EXPECT_FALSE(b.may_send(t + 3600000, 1));
    EXPECT_FALSE(b.may_send(t, 2)); // requests sent before it opened still out: no probe yet
    EXPECT_TRUE(b.may_send(t + 5, 0));
}

TEST(RetryBreaker, ProbeSuccessCloses) {
    CircuitBreaker b(policy(1000, 3600000), 2);
    fail(b, 2, kT0);
    const std::uint64_t t = b.open_until();
    ASSERT_TRUE(b.may_send(t, 0));
    b.on_success();
    EXPECT_EQ(b.state(t), State::Closed);
    EXPECT_TRUE(b.may_send(t, 7));
    EXPECT_EQ(b.consecutive_failures(), 0);
    EXPECT_EQ(b.open_until(), 0u);
    // A fresh streak is needed to open it again.
    b.on_failure(t);
    EXPECT_EQ(b.state(t), State::Closed);
}

TEST(RetryBreaker, ProbeFailureReopensForLonger) {
    CircuitBreaker b(policy(1000, 3600000), 2);
    fail(b, 2, kT0);
    EXPECT_EQ(b.open_until(), kT0 + 2000); // cap of attempt 2
    std::uint64_t t = b.open_until();
    std::uint64_t last_wait = 2000;
    for (int probe = 0; probe < 5; ++probe) {
        ASSERT_EQ(b.state(t), State::HalfOpen);
        ASSERT_TRUE(b.may_send(t, 0));
        b.on_failure(t + 1);
        EXPECT_EQ(b.state(t + 1), State::Open);
        EXPECT_FALSE(b.may_send(t + 1, 0));
        const std::uint64_t wait = b.open_until() - (t + 1);
        EXPECT_EQ(wait, last_wait * 2) << "probe " << probe;
        last_wait = wait;
        t = b.open_until();
    }
    EXPECT_EQ(b.consecutive_failures(), 7);
}

TEST(RetryBreaker, WaitIsCappedAtMaxMs) {
    CircuitBreaker b(policy(1000, 10000), 1);
    std::uint64_t t = kT0;
    for (int i = 0; i < 1000; ++i) {
        b.on_failure(t);
        ASSERT_LE(b.open_until() - t, 10000u);
        t = b.open_until();
    }
    EXPECT_EQ(b.open_until() - kT0, 1000u + 2000 + 4000 + 8000 + 996u * 10000);
}

TEST(RetryBreaker, FailuresWhileOpenCountButDoNotExtend) {
    CircuitBreaker b(policy(1000, 3600000), 2);
    fail(b, 2, kT0);
    const std::uint64_t until = b.open_until();
    fail(b, 3, kT0 + 100); // requests that were already in flight
    EXPECT_EQ(b.open_until(), until);
    EXPECT_EQ(b.consecutive_failures(), 5);
    EXPECT_EQ(b.state(until), State::HalfOpen);
    // The probe's failure then waits by the whole streak: 6 failures.
    b.on_failure(until);
    EXPECT_EQ(b.open_until(), until + 32000);
}

TEST(RetryBreaker, SuccessWhileOpenCloses) {
    CircuitBreaker b(policy(1000, 3600000), 2);
    fail(b, 2, kT0);
    ASSERT_EQ(b.state(kT0 + 1), State::Open);
    b.on_success(); // a request sent before it opened got through: the receiver is back
    EXPECT_EQ(b.state(kT0 + 1), State::Closed);
    EXPECT_TRUE(b.may_send(kT0 + 1, 3));
}

TEST(RetryBreaker, ThresholdOneAndDisabled) {
    CircuitBreaker one(policy(500, 3600000), 1);
    one.on_failure(kT0);
    EXPECT_EQ(one.state(kT0), State::Open);
    EXPECT_EQ(one.open_until(), kT0 + 500);

    for (int threshold : {0, -1}) {
        CircuitBreaker off(policy(500, 3600000), threshold);
        fail(off, 100, kT0);
        EXPECT_EQ(off.state(kT0), State::Closed) << threshold;
        EXPECT_TRUE(off.may_send(kT0, 0)) << threshold;
        EXPECT_EQ(off.consecutive_failures(), 100) << threshold;
        EXPECT_EQ(off.open_until(), 0u) << threshold;
    }
}

TEST(RetryBreaker, OpenUntilSaturatesInsteadOfWrapping) {
    CircuitBreaker b(policy(1000, 3600000), 1);
    b.on_failure(kU64Max - 10);
    EXPECT_EQ(b.open_until(), kU64Max);
    EXPECT_EQ(b.state(kU64Max - 1), State::Open);
}

TEST(RetryBreaker, ResetCloses) {
    CircuitBreaker b(policy(1000, 3600000), 1);
    b.on_failure(kT0);
    b.reset();
    EXPECT_EQ(b.state(kT0), State::Closed);
    EXPECT_EQ(b.consecutive_failures(), 0);
    EXPECT_EQ(b.open_until(), 0u);
}

} // namespace

// --- permanent_statuses and 413 ------------------------------------------------------------------

TEST(RetryClassify, PermanentStatusesAreDeadLettersAtOnce) {
    Policy p = kPolicy;
    p.permanent_statuses = {400, 401, 403, 404, 422};
    for (int status : {400, 401, 403, 404, 422}) {
        Response r;
        r.status = status;
        r.detail = "no such thing";
        const Outcome o = retry::classify(r, 1, p, kNow, kMaxDraw);
        EXPECT_EQ(o.verdict, Verdict::DeadLetter) << status;
        EXPECT_TRUE(o.permanent) << status;
        EXPECT_EQ(o.reason, "HTTP " + std::to_string(status) + " (permanent for this endpoint): no such thing");
    }
    // Others keep today's classification.
    Response r;
    r.status = 500;
    EXPECT_EQ(retry::classify(r, 1, p, kNow, kMaxDraw).verdict, Verdict::Retry);
    r.status = 409;
    EXPECT_EQ(retry::classify(r, 1, p, kNow, kMaxDraw).verdict, Verdict::Retry);
    r.status = 200;
    EXPECT_EQ(retry::classify(r, 1, p, kNow, kMaxDraw).verdict, Verdict::Success);
    // Listed, 410 and 413 are permanent too (the operator's word wins).
    p.permanent_statuses = {410, 413};
    r.status = 410;
    EXPECT_EQ(retry::classify(r, 1, p, kNow, kMaxDraw).verdict, Verdict::DeadLetter);
    r.status = 413;
    r.events = 10;
    EXPECT_EQ(retry::classify(r, 1, p, kNow, kMaxDraw).verdict, Verdict::DeadLetter);
}

TEST(RetryClassify, TooLargeSplitsSeveralEventsAndDeadLettersOne) {
    Response r;
    r.status = 413;
    r.events = 2;
    Outcome o = retry::classify(r, 7, kPolicy, kNow, kMaxDraw);
    EXPECT_EQ(o.verdict, Verdict::Split);
    EXPECT_FALSE(o.is_failure());
    EXPECT_EQ(o.delay_ms, 0u);
    EXPECT_EQ(o.reason, "HTTP 413 (request too large: sent again in smaller requests)");
    r.events = 1;
    o = retry::classify(r, 1, kPolicy, kNow, kMaxDraw);
    EXPECT_EQ(o.verdict, Verdict::DeadLetter);
    EXPECT_TRUE(o.permanent);
    EXPECT_EQ(o.reason, "HTTP 413 (the event alone is larger than the receiver accepts)");
    EXPECT_STREQ(retry::verdict_name(Verdict::Split), "split");
}

TEST(RetryClassify, RejectedIsPermanentAndTheLastAttemptIsNot) {
    EXPECT_TRUE(failed(Transport::Rejected).permanent);
    const Outcome last = http(500, kPolicy.max_attempts);
    EXPECT_EQ(last.verdict, Verdict::DeadLetter);
    EXPECT_FALSE(last.permanent);
}

// --- The default schedule ------------------------------------------------------------------------

namespace {

std::string duration_text(std::uint64_t ms) {
    char buf[32];
    if (ms < 60000)
        std::snprintf(buf, sizeof buf, "%.1f s", double(ms) / 1000);
    else if (ms < 3600000)
        std::snprintf(buf, sizeof buf, "%.1f min", double(ms) / 60000);
    else
        std::snprintf(buf, sizeof buf, "%.1f h", double(ms) / 3600000);
    return buf;
}

// The README's table: one row per wait, consecutive equal waits in one row.
std::string schedule_table(const Policy &p) {
    const std::vector<retry::ScheduleStep> steps = retry::retry_schedule(p);
    std::string out = "| after attempt | wait | time since the first attempt |\n|---|---|---|\n";
    for (std::size_t i = 0; i < steps.size();) {
        std::size_t j = i;
        while (j + 1 < steps.size() && steps[j + 1].min_ms == steps[i].min_ms && steps[j + 1].max_ms == steps[i].max_ms)
            ++j;
        const std::string attempts = i == j ? std::to_string(steps[i].attempt)
                                            : std::to_string(steps[i].attempt) + " to " + std::to_string(steps[j].attempt);
        out += "| " + attempts + " | " + duration_text(steps[i].min_ms) + " to " + duration_text(steps[i].max_ms) +
               (i == j ? "" : " each") + " | " + duration_text(steps[j].min_total_ms) + " to " +
               duration_text(steps[j].max_total_ms) + " |\n";
        i = j + 1;
    }
    out += "| " + std::to_string(p.max_attempts) + " | none: if it fails, the event becomes a dead letter | |\n";
    return out;
}

} // namespace

// Issue 14: the default schedule outlasts a 24-hour receiver outage before anything becomes a
// dead letter, even when every wait draws jitter's lower bound.
TEST(RetrySchedule, TheDefaultOutlastsADayAtItsShortest) {
    const Policy p; // the defaults of create_endpoint (core/endpoint_defaults.hpp)
    const std::vector<retry::ScheduleStep> steps = retry::retry_schedule(p);
    ASSERT_EQ(steps.size(), std::size_t(p.max_attempts - 1));
    const std::uint64_t day_ms = 24ull * 3600 * 1000;
    EXPECT_GT(steps.back().min_total_ms, day_ms) << duration_text(steps.back().min_total_ms);
    // Every draw stays within the step's bounds.
    retry::Random random = retry::make_random(3);
    for (const retry::ScheduleStep &s : steps)
        for (int k = 0; k < 20; ++k) {
            const std::uint64_t d = retry::backoff_ms(p, s.attempt, random);
            ASSERT_GE(d, s.min_ms);
            ASSERT_LE(d, s.max_ms);
        }
    std::printf("default schedule: %d attempts over %s to %s\n", p.max_attempts,
                duration_text(steps.back().min_total_ms).c_str(), duration_text(steps.back().max_total_ms).c_str());
}

// README.md shows the default schedule; this renders it from the policy so that it cannot drift.
TEST(RetrySchedule, TheReadmeTableIsTheDefaultSchedule) {
    const std::string table = schedule_table(Policy{});
    std::ifstream in(std::string(PG_SYNC_SOURCE_DIR) + "/README.md");
    ASSERT_TRUE(in.good());
    const std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string begin = "<!-- retry schedule: generated by test/unit/retry_policy_test.cpp -->\n";
    const std::size_t at = readme.find(begin);
    ASSERT_NE(at, std::string::npos) << "README.md lacks the marker line " << begin;
    EXPECT_EQ(readme.substr(at + begin.size(), table.size()), table) << "README.md should have, after the marker:\n"
                                                                     << table;
}
