#include "core/rate_limit.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace pg_sync::rate {

TokenBucket::TokenBucket(double rate_per_s) {
    rate_ = std::isfinite(rate_per_s) && rate_per_s > 0 ? rate_per_s : 0;
    burst_ = std::max(1.0, rate_ / 10);
    tokens_ = burst_;
}

// Callers may pass a time a little older than the last one (the worker's pass takes its time at
// its start, planning between passes reads the clock anew): that refills nothing and keeps the
// reference, or the same milliseconds would be counted twice. A clock stepped back by more than
// kClockStepMs moves the reference back, so that the bucket does not stay empty until it catches up.
void TokenBucket::refill(std::int64_t now_ms) noexcept {
    if (last_ms_ < 0 || now_ms < last_ms_ - kClockStepMs) {
        last_ms_ = now_ms;
        return;
    }
    if (now_ms <= last_ms_)
        return;
    tokens_ = std::min(burst_, tokens_ + double(now_ms - last_ms_) * rate_ / 1000.0);
    last_ms_ = now_ms;
}

std::size_t TokenBucket::available(std::int64_t now_ms) noexcept {
    if (!limited())
        return std::numeric_limits<std::size_t>::max();
    refill(now_ms);
    // (a tiny epsilon: 0.1 + 0.9 accumulated in ms steps must count as one token)
    return std::size_t(std::floor(tokens_ + 1e-9));
}

void TokenBucket::take(std::size_t n, std::int64_t now_ms) noexcept {
    if (!limited() || n == 0)
        return;
    refill(now_ms);
    tokens_ = std::max(0.0, tokens_ - double(n));
}

std::int64_t TokenBucket::next_token_ms(std::int64_t now_ms) noexcept {
    if (!limited())
        return -1;
    refill(now_ms);
    const double missing = 1.0 - tokens_;
    if (missing <= 1e-9)
        return now_ms;
    return now_ms + std::int64_t(std::ceil(missing * 1000.0 / rate_ - 1e-9));
}

} // namespace pg_sync::rate
