// Unit tests of src/core/rate_limit.{hpp,cpp}: the token bucket of max_rate, on a fake clock.
#include "core/rate_limit.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <limits>

using pg_sync::rate::TokenBucket;

namespace {
constexpr std::int64_t kT0 = 1795428902000; // unix ms
}

TEST(TokenBucket, ZeroOrNegativeOrNotFiniteIsNoLimit) {
    for (double r : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
        TokenBucket b(r);
        EXPECT_FALSE(b.limited()) << r;
        EXPECT_EQ(b.available(kT0), std::numeric_limits<std::size_t>::max());
        b.take(1000, kT0);
        EXPECT_EQ(b.available(kT0), std::numeric_limits<std::size_t>::max());
        EXPECT_EQ(b.next_token_ms(kT0), -1);
    }
}

TEST(TokenBucket, StartsFullWithATenthOfASecondOfRequestsAtLeastOne) {
    EXPECT_EQ(TokenBucket(100).available(kT0), 10u);
    EXPECT_EQ(TokenBucket(1000).available(kT0), 100u);
    EXPECT_EQ(TokenBucket(5).available(kT0), 1u);
    EXPECT_EQ(TokenBucket(0.5).available(kT0), 1u);
}

TEST(TokenBucket, RefillsAtTheRateAndSaysWhenTheNextTokenComes) {
    TokenBucket b(100); // a token every 10 ms
    b.take(10, kT0);
    EXPECT_EQ(b.available(kT0), 0u);
    EXPECT_EQ(b.next_token_ms(kT0), kT0 + 10);
    EXPECT_EQ(b.available(kT0 + 9), 0u);
    EXPECT_EQ(b.next_token_ms(kT0 + 9), kT0 + 10);
    EXPECT_EQ(b.available(kT0 + 10), 1u);
    EXPECT_EQ(b.next_token_ms(kT0 + 10), kT0 + 10);
    EXPECT_EQ(b.available(kT0 + 35), 3u);
    // Never more than the burst, however long it waited.
    EXPECT_EQ(b.available(kT0 + 60000), 10u);
}

TEST(TokenBucket, FractionalRates) {
    TokenBucket b(0.5); // one request every 2 s
    b.take(1, kT0);
    EXPECT_EQ(b.next_token_ms(kT0), kT0 + 2000);
    EXPECT_EQ(b.available(kT0 + 1999), 0u);
    EXPECT_EQ(b.available(kT0 + 2000), 1u);
    TokenBucket c(2.5); // 400 ms apart
    c.take(1, kT0);
    EXPECT_EQ(c.next_token_ms(kT0), kT0 + 400);
}

TEST(TokenBucket, AnOlderTimeRefillsNothingAndCountsNoMillisecondTwice) {
    TokenBucket b(100);
    b.take(10, kT0);
    EXPECT_EQ(b.available(kT0 + 10), 1u);
    b.take(1, kT0 + 10);
    // A caller with a time taken earlier (a pass that started at kT0 + 5): nothing comes back.
    EXPECT_EQ(b.available(kT0 + 5), 0u);
    EXPECT_EQ(b.available(kT0 + 19), 0u);
    EXPECT_EQ(b.available(kT0 + 20), 1u);
}

TEST(TokenBucket, AClockSteppedFarBackStartsCountingAgainFromThere) {
    TokenBucket b(100);
    b.take(10, kT0);
    EXPECT_EQ(b.available(kT0 - 5000), 0u);
    EXPECT_EQ(b.available(kT0 - 4990), 1u);
}

// The measurement on a fake clock: 300 requests at max_rate 100, each sent as soon as a
// token is there, with a worker that wakes up to 3 ms late: no window of t ms holds more than
// burst + rate * t requests, and the 300 take 2.9 to 3 s (the first 10 go at once).
TEST(TokenBucket, ThreeHundredRequestsAtOneHundredPerSecondTakeThreeSeconds) {
    TokenBucket b(100);
    std::deque<std::int64_t> sent;
    std::int64_t now = kT0;
    int late = 0;
    while (sent.size() < 300) {
        const std::size_t n = b.available(now);
        for (std::size_t i = 0; i < n && sent.size() < 300; ++i)
            sent.push_back(now);
        b.take(n, now);
        const std::int64_t next = b.next_token_ms(now);
        ASSERT_GT(next, now);
        now = next + (late++ % 4); // wakes 0 to 3 ms late
    }
    const std::int64_t total = sent.back() - sent.front();
    EXPECT_GE(total, 2900);
    EXPECT_LE(total, 3000);
    for (std::size_t i = 0; i < sent.size(); ++i)
        for (std::size_t j = i; j < sent.size(); ++j)
            ASSERT_LE(double(j - i + 1), b.burst() + 100.0 * double(sent[j] - sent[i]) / 1000.0 + 1e-9) << i << " " << j;
}
