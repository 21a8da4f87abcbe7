// An endpoint's rate limit (create_endpoint's max_rate): a token bucket. PostgreSQL-free and
// clock-free: the caller passes the time (unix ms), so the unit tests drive it with a fake clock.
//
// One token per request. The bucket refills at `rate` tokens per second and holds at most
// burst() = max(1, rate / 10) tokens (a tenth of a second of requests), full at the start: any
// window of t seconds sees at most burst() + rate * t requests, and a worker that wakes a little
// late for a token loses no throughput (the tokens that came meanwhile are still there).
// A rate of 0 (or less) is no limit. Nothing here throws.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pg_sync::rate {

class TokenBucket {
  public:
    explicit TokenBucket(double rate_per_s = 0);

    bool limited() const noexcept { return rate_ > 0; }
    double rate() const noexcept { return rate_; }
    double burst() const noexcept { return burst_; }

    // Whole tokens available at now_ms (refilled up to then); SIZE_MAX without a limit.
    std::size_t available(std::int64_t now_ms) noexcept;
    // Uses n tokens (requests sent at now_ms); at most what available() said.
    void take(std::size_t n, std::int64_t now_ms) noexcept;
    // When the next whole token is there (unix ms, rounded up): now_ms when one is there now,
    // -1 without a limit.
    std::int64_t next_token_ms(std::int64_t now_ms) noexcept;

    static constexpr std::int64_t kClockStepMs = 1000;

  private:
    void refill(std::int64_t now_ms) noexcept;

    double rate_ = 0;  // tokens per second
    double burst_ = 1; // capacity
    double tokens_ = 1;
    std::int64_t last_ms_ = -1; // time of the last refill; -1: never (full)
};

} // namespace pg_sync::rate
