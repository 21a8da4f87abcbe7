// The seam between the delivery worker and a transport. PostgreSQL-free.
//
//   worker loop ──submit(Request)──▶ Sink ──(network)──▶ receiver
//        ▲                            │
//        └──── take_completions() ◀───┘   (the loop waits on wait_fds()/timeout_ms() and calls
//                                           on_socket()/on_timeout() when they are ready)
//
// The dispatcher (core/dispatcher.hpp) plans Requests and turns Completions into queue
// outcomes; the loop (src/pg/delivery_loop.cpp) moves them between the dispatcher and a Sink and
// knows nothing else about the transport. HTTP over libcurl (core/http_client.hpp) is one Sink;
// Kafka over librdkafka (core/kafka_sink.hpp) is another: it takes the Request's records (one per
// event) instead of its body. A transport maps a Request onto its own protocol (url: where to;
// headers and body, or records: what) and reports every submitted request exactly once as a
// Completion, with a transport failure category and, when the protocol has one, a status that
// core/retry_policy.hpp classifies (2xx: delivered; Transport::Delivered: every record written).
#pragma once

#include "core/retry_policy.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pg_sync::tls {
struct Settings;
}
namespace pg_sync::oauth2 {
struct Config;
}

namespace pg_sync::sink {

// One event as a record of a record transport (Kafka): core/kafka_records.hpp builds them.
struct Record {
    std::optional<std::string> key; // none: a record without key
    std::string value;
    std::vector<std::pair<std::string, std::string>> headers;
    // Earlier records of the same request that must be written before this one is sent (its
    // predecessors in per-key order, docs/design.md Guarantee 4), as indexes into records.
    std::vector<std::uint32_t> after;
};

// What became of each record of a request that did not succeed as a whole.
enum class RecordResult : std::uint8_t {
    NotWritten, // not sent, or failed with an error that may pass: try again
    Written,    // acknowledged by the target: delivered
    Rejected,   // refused for good (too large, unknown topic, not authorized): a dead letter
};

// One request planned by the dispatcher: a batch of events of one endpoint.
struct Request {
    std::uint64_t token = 0; // the caller's handle, returned in the Completion
    std::string url;
    std::vector<std::string> headers; // "Name: value" lines (HTTP adds Content-Type itself)
    std::string content_type;         // HTTP: the body's media type; empty: application/json
    std::string body;                 // HTTP: {"events":[...]}; empty when records are given
    std::vector<Record> records;      // record transports (kafka:// URLs): one per event, in id order
    std::string settings;             // the transport's own settings (Kafka: a JSON object), or empty
    long timeout_ms = 10000; // connect and total, counted from the moment the transport starts it
    std::int64_t group = 0;  // fair-share unit (the worker: the endpoint id)
    // HTTP: client certificate, key and CA bundle of the endpoint (core/tls_config.hpp); null: none.
    std::shared_ptr<const tls::Settings> tls;
    // HTTP: OAuth2 client credentials (core/oauth2.hpp); core/oauth2_sink.hpp adds the token and
    // clears this before the request reaches the HTTP client. Null: none.
    std::shared_ptr<const oauth2::Config> oauth2;
    // HTTP: Completion::body gets the whole response body (up to the client's cap), for the
    // token requests of core/oauth2_sink.hpp. Deliveries keep only the start, for the error text.
    bool keep_body = false;
};

// How a submitted request ended.
struct Completion {
    std::uint64_t token = 0;
    retry::Transport transport = retry::Transport::Ok;
    int status = 0;
    std::optional<std::string> retry_after;
    std::string detail;            // the transport's error text, or the start of the response
    std::uint64_t duration_us = 0; // submit to completion (waiting for a connection included)
    // Record transports, when the request did not succeed as a whole: one per record, in order.
    // Empty: every event of the request shares the verdict.
    std::vector<RecordResult> records;
    std::string body; // the response body, for requests with keep_body only

    // The view retry::classify takes; valid while this Completion lives.
    retry::Response response() const;
};

// Socket interest, per file descriptor.
enum Want : int { kWantRead = 1, kWantWrite = 2 };

class Sink {
  public:
    virtual ~Sink() = default;

    // Takes a request; never blocks. Throws std::runtime_error when it cannot be set up at all.
    virtual void submit(Request request) = 0;
    // How many groups (endpoints that may send) share the transport's connections.
    virtual void set_groups(std::size_t known_groups) = 0;
    // Requests finished since the last call, each submitted request exactly once.
    virtual std::vector<Completion> take_completions() = 0;
    // Requests submitted and not completed.
    virtual std::size_t in_flight() const = 0;

    // What the loop waits on besides its latch: file descriptor -> Want bits.
    virtual const std::map<int, int> &wait_fds() const = 0;
    // Whether wait_fds() changed since the last call (the loop rebuilds its wait set only then),
    // and whether descriptors came or went (a subset: a closed and reopened number must be
    // registered anew).
    virtual bool wait_fds_changed() = 0;
    virtual bool wait_fds_replaced() = 0;
    // Milliseconds until on_timeout() is due; -1: no timer.
    virtual long timeout_ms() const = 0;
    // Progress: a descriptor is ready (Want bits), or the timer is due.
    virtual void on_socket(int fd, int want_bits) = 0;
    virtual void on_timeout() = 0;
};

} // namespace pg_sync::sink
