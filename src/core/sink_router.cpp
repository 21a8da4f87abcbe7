// Requests to the HTTP or the Kafka sink by URL scheme; see sink_router.hpp.
#include "core/sink_router.hpp"

#include "core/kafka_config.hpp"

#include <algorithm>

namespace pg_sync::sink {

void Router::submit(Request request) {
    if (kafka::is_kafka_url(request.url))
        kafka_.submit(std::move(request));
    else
        http_.submit(std::move(request));
}

void Router::set_groups(std::size_t known_groups) {
    http_.set_groups(known_groups);
    kafka_.set_groups(known_groups);
}

std::vector<Completion> Router::take_completions() {
    std::vector<Completion> out = http_.take_completions();
    std::vector<Completion> more = kafka_.take_completions();
    out.insert(out.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    return out;
}

const std::map<int, int> &Router::wait_fds() const {
    if (stale_) {
        fds_ = http_.wait_fds();
        for (const auto &kv : kafka_.wait_fds())
            fds_[kv.first] |= kv.second;
        stale_ = false;
    }
    return fds_;
}

// Both sides are asked every time (each clears its own flag).
bool Router::wait_fds_changed() {
    const bool h = http_.wait_fds_changed();
    const bool k = kafka_.wait_fds_changed();
    if (h || k)
        stale_ = true;
    return h || k;
}

bool Router::wait_fds_replaced() {
    const bool h = http_.wait_fds_replaced();
    const bool k = kafka_.wait_fds_replaced();
    if (h || k)
        stale_ = true;
    return h || k;
}

long Router::timeout_ms() const {
    const long h = http_.timeout_ms(), k = kafka_.timeout_ms();
    if (h < 0)
        return k;
    if (k < 0)
        return h;
    return std::min(h, k);
}

void Router::on_socket(int fd, int want_bits) {
    if (kafka_.wait_fds().count(fd))
        kafka_.on_socket(fd, want_bits);
    else
        http_.on_socket(fd, want_bits);
}

// Only the side whose timer is due: the other's on_timeout would do work early.
void Router::on_timeout() {
    if (http_.timeout_ms() == 0)
        http_.on_timeout();
    if (kafka_.timeout_ms() == 0)
        kafka_.on_timeout();
}

} // namespace pg_sync::sink
