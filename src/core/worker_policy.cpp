#include "core/worker_policy.hpp"

#include <algorithm>

namespace pg_sync::worker {

std::vector<std::string> split_header_lines(std::string_view joined) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start <= joined.size()) {
        std::size_t nl = joined.find('\n', start);
        if (nl == std::string_view::npos)
            nl = joined.size();
        if (nl > start)
            lines.emplace_back(joined.substr(start, nl - start));
        start = nl + 1;
    }
    return lines;
}

std::vector<int> split_ints(std::string_view csv) {
    std::vector<int> out;
    for (const std::string &part : split_header_lines([&] {
             std::string s(csv);
             std::replace(s.begin(), s.end(), ',', '\n');
             return s;
         }())) {
        if (part.empty() || part.size() > 9 || part.find_first_not_of("0123456789") != std::string::npos)
            continue;
        out.push_back(std::stoi(part));
    }
    return out;
}

std::size_t AttemptRing::first_written(std::size_t outcomes, int size) {
    const std::size_t cap = size > 0 ? std::size_t(size) : 0;
    return outcomes > cap ? outcomes - cap : 0;
}

std::vector<std::int32_t> AttemptRing::take(std::size_t outcomes, int size) {
    std::vector<std::int32_t> slots;
    if (size <= 0)
        return slots;
    if (next_ < 0)
        next_ = 0;
    const std::size_t n = outcomes - first_written(outcomes, size);
    slots.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        slots.push_back(std::int32_t(next_++ % size));
    next_ %= size;
    return slots;
}

long wait_timeout_ms(const Deadlines &d) {
    // While a failed pass waits to be tried again, what only starts a pass (sweep, retries due,
    // statistics) cannot be due before it: those deadlines stay in the past until a pass
    // succeeds, and waking for them would spin.
    auto pass_at = [&](std::int64_t at) {
        return at >= 0 && d.pass_retry_ms >= 0 ? std::max(at, d.pass_retry_ms) : at;
    };
    auto until = [&](std::int64_t at) { return long(std::max<std::int64_t>(1, at - d.now_ms)); };
    long timeout = until(pass_at(d.sweep_ms));
    for (std::int64_t at : {d.retry_due_ms, d.stats_ms, d.pass_retry_ms, d.ack_ms})
        if (at >= 0)
            timeout = std::min(timeout, until(pass_at(at)));
    // A token is taken when it is due (Dispatcher::take_token_due), so it cannot stay in the past.
    if (d.token_ms >= 0)
        timeout = std::min(timeout, until(d.token_ms));
    if (d.transport_ms >= 0)
        timeout = std::min(timeout, d.transport_ms);
    return timeout;
}

std::int64_t PassRetry::failed(std::int64_t now_ms) {
    failures_ = std::min(failures_ + 1, 64);
    const retry::Policy schedule{kBaseMs, kMaxMs, 0, {}};
    retry_at_ms_ = now_ms + std::int64_t(retry::backoff_cap_ms(schedule, failures_));
    return retry_at_ms_;
}

std::uint64_t restart_delay_ms(int failures) {
    return retry::backoff_cap_ms(retry::Policy{1000, 60000, 0, {}}, failures);
}

} // namespace pg_sync::worker
