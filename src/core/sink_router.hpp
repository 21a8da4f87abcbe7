// One sink::Sink in front of two: requests for kafka:// URLs go to the Kafka sink
// (core/kafka_sink.hpp), all others to HTTP (core/http_client.hpp). The delivery loop still sees
// a single transport: the wait set is the union of both sinks' descriptors (each descriptor
// belongs to one of them), the timer the earlier of theirs, completions come from both.
// PostgreSQL-free.
#pragma once

#include "core/sink.hpp"

#include <map>

namespace pg_sync::sink {

class Router final : public Sink {
  public:
    Router(Sink &http, Sink &kafka) : http_(http), kafka_(kafka) {}

    void submit(Request request) override;
    void set_groups(std::size_t known_groups) override;
    std::vector<Completion> take_completions() override;
    std::size_t in_flight() const override { return http_.in_flight() + kafka_.in_flight(); }

    const std::map<int, int> &wait_fds() const override;
    bool wait_fds_changed() override;
    bool wait_fds_replaced() override;
    long timeout_ms() const override;
    void on_socket(int fd, int want_bits) override;
    void on_timeout() override;

  private:
    Sink &http_;
    Sink &kafka_;
    mutable std::map<int, int> fds_; // the union, rebuilt when either side changed
    mutable bool stale_ = true;
};

} // namespace pg_sync::sink
