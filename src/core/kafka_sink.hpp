// Kafka as a sink::Sink (core/sink.hpp), over librdkafka. PostgreSQL-free.
//
//   submit(Request with records) ─▶ producer of its (brokers, topic, settings, timeout) ─▶ brokers
//   delivery reports (librdkafka's main queue) ─▶ one Completion per Request, once every record
//   of it has its report
//
// Producers: one per distinct (URL, kafka_settings, timeout_ms), made on first use with the
// settings of core/kafka_config.hpp (acks=all, idempotence, murmur2_random, message.timeout.ms =
// the endpoint's timeout_ms), kept while in use and destroyed after kIdleMs without requests
// (a changed configuration makes a new producer; the old one finishes what it carries).
//
// Threads: librdkafka runs threads of its own in this process. They never call back into the
// worker's code except through three callbacks that touch only this file's state and libc:
// connect (the allow_private_targets check, then connect(2)), log (dropped) and the queue's
// wake-up write. Everything else (delivery reports, errors) is served by rd_kafka_poll() on the
// caller's thread, from on_socket()/on_timeout(). Every signal is blocked while librdkafka
// creates a producer, so that its threads (and the broker threads they start later, which
// inherit their mask) never take a signal meant for the process's main thread.
//
// Waking up: the loop waits on one pipe (wait_fds()): every producer's main queue writes to it
// when a report arrives on an empty queue (rd_kafka_queue_io_event_enable), so the worker sleeps
// until there is something to do; no polling.
//
// Per-key order (docs/design.md, Guarantee 4): the dispatcher never has two requests with events
// of one key in flight, and inside a request a record is produced only once the records it comes
// after (sink::Record::after, core/kafka_records.hpp) are written. So no two records of one key
// are ever in flight at once, whatever librdkafka retries, times out or fails: a record that
// fails holds back the later records of its key (they complete as NotWritten and are retried in
// order). A record that timed out in flight may still be written by the broker: that is a
// duplicate of the same event id, never a reordering, since nothing after it was sent.
//
// Written: a report without error that gives the record's offset (acknowledged_at_offset below);
// a success that librdkafka inferred without a broker's offset is sent again.
//
// Errors: a record refused for good (too large, unknown topic or partition, invalid record,
// topic or cluster authorization failed) is Rejected (a dead letter); anything else is
// transient (timeouts, connections, leaders, authentication) and the request is retried with
// the endpoint's backoff. pg_sync.allow_private_targets is checked in librdkafka's connect
// callback on the address actually connected to, for every broker connection, including the
// brokers that metadata names.
#pragma once

#include "core/retry_policy.hpp"
#include "core/sink.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pg_sync::kafka {

struct Options {
    bool allow_private_targets = true;
    std::string client_id = "pg_sync"; // unless the endpoint's kafka_settings give client.id
};

// A librdkafka error code (rd_kafka_resp_err_t) as the retry policy sees it: Rejected for the
// errors that another attempt cannot fix, else a transient category.
retry::Transport transport_of(int kafka_error) noexcept;

// Whether a delivery report (its err, rd_kafka_message_status() and offset) says that a broker
// wrote the record: no error, RD_KAFKA_MSG_STATUS_PERSISTED and the offset the broker gave it.
// librdkafka's idempotent producer also reports success without an offset when it did not hear
// it from a broker: a batch that failed (even with an error that says "not persisted") is
// "implicitly acknowledged" when a later batch of its partition succeeds, on the grounds that a
// broker accepts a producer's sequence numbers only without gaps; and DUPLICATE_SEQUENCE_NUMBER
// counts as success. A broker that does not check the sequence (librdkafka's mock cluster checks
// it only for transactional producers) or a gap accepted anyway thus loses the record while
// librdkafka reports it written. Such a report is taken as not written: the record is sent again
// (at worst a duplicate of the same event id, never a loss).
bool acknowledged_at_offset(int kafka_error, int status, std::int64_t offset) noexcept;

class Sink final : public sink::Sink {
  public:
    explicit Sink(const Options &options);
    ~Sink() override;
    Sink(const Sink &) = delete;
    Sink &operator=(const Sink &) = delete;

    // New options apply to new connections: with allow_private_targets turned off, every
    // producer is replaced (its connections were checked under the old setting).
    void set_options(const Options &options);

    void submit(sink::Request request) override;
    void set_groups(std::size_t) override {}
    std::vector<sink::Completion> take_completions() override;
    std::size_t in_flight() const override { return requests_.size(); }

    const std::map<int, int> &wait_fds() const override { return fds_; }
    bool wait_fds_changed() override;
    bool wait_fds_replaced() override;
    long timeout_ms() const override;
    void on_socket(int fd, int want_bits) override;
    void on_timeout() override;

    // Producers alive (for tests).
    std::size_t producers() const { return producers_.size(); }

    struct Producer; // public for librdkafka's C callbacks
    struct Pending;

    // A producer unused this long (and with nothing in flight) is destroyed.
    static constexpr long kIdleMs = 60000;
    // How soon records that met a full producer queue are tried again.
    static constexpr long kQueueFullRetryMs = 5;

  private:
    Producer *producer_for(const sink::Request &request, std::string *error);
    void produce_ready(Pending &p);
    void produce(Pending &p, std::uint32_t index);
    void settle(Pending &p, std::uint32_t index, int error, const char *detail);
    void finish_if_done(Pending &p);
    void serve(); // reports of every producer, then queued-up records, then idle producers
    void reap(std::int64_t now_ms);
    void open_wake_pipe();

  public:
    // Called from the delivery report callback (the caller's thread, in serve()).
    void on_report(Pending &p, std::uint32_t index, int error, const char *detail);

  private:
    Options options_;
    int wake_[2] = {-1, -1};
    std::map<int, int> fds_;
    bool fds_changed_ = false, fds_replaced_ = false;
    std::map<std::string, std::unique_ptr<Producer>> producers_; // by configuration
    std::vector<std::unique_ptr<Producer>> retired_; // replaced: destroyed once empty
    std::map<std::uint64_t, std::unique_ptr<Pending>> requests_;
    std::vector<std::uint64_t> queue_full_; // requests with records waiting for queue room
    std::vector<sink::Completion> done_;
};

} // namespace pg_sync::kafka
