// The delivery worker's brain, PostgreSQL-free: per endpoint it turns the head of the queue into
// requests (scheduler + envelope + signature), remembers what is in flight, and turns each HTTP
// completion into an outcome for the queue (retry policy + circuit breaker). The PostgreSQL side
// (src/pg/delivery_pass.cpp, src/pg/delivery_loop.cpp) only loads rows, applies outcomes in SQL
// and moves requests and completions between this class and a transport (core/sink.hpp).
//
// Nothing here decides that an event is gone: the worker deletes an event from the queue only
// when an Outcome lists it as delivered, i.e. after a 2xx for the request that carried it, or
// (Kafka) after the acknowledgement of its record with acks=all.
#pragma once

#include "core/endpoint_defaults.hpp"
#include "core/oauth2.hpp"
#include "core/rate_limit.hpp"
#include "core/retry_policy.hpp"
#include "core/scheduler.hpp"
#include "core/sink.hpp"
#include "core/tls_config.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace pg_sync::dispatch {

struct EndpointConfig {
    std::int32_t id = 0;
    std::string name;
    std::string url;
    std::vector<std::string> header_lines; // "Name: value", validated when configured
    std::optional<std::string> key;        // decoded webhook secret; none: unsigned
    // pg_sync.rotate_secret(): the previous secret, decoded, which also signs every request
    // planned before previous_key_until_ms (unix ms), and none after it.
    std::optional<std::string> previous_key;
    std::int64_t previous_key_until_ms = 0;
    bool cloudevents = false;              // format 'cloudevents' (core/cloudevents.hpp)
    std::string kafka_settings;            // kafka:// endpoints: librdkafka settings (JSON object)
    std::shared_ptr<const tls::Settings> tls;       // https:// endpoints: client certificate, CA; or null
    std::shared_ptr<const oauth2::Config> oauth2;   // http(s) endpoints: client credentials; or null
    std::size_t batch_size = endpoint_defaults::batch_size;
    std::size_t max_in_flight = endpoint_defaults::max_in_flight;
    long timeout_ms = endpoint_defaults::timeout_ms;
    retry::Policy policy;
    bool paused = false;
    double max_rate = endpoint_defaults::max_rate; // requests per second; 0: no limit (core/rate_limit.hpp)
    // Largest request body (HTTP) or sum of record values (Kafka); a single larger event becomes
    // a dead letter without being sent.
    std::size_t max_request_bytes = endpoint_defaults::max_request_bytes;
};

// Where the store keeps a queue row, so that a delivered event can be deleted without a search
// (PostgreSQL: the OID of the table or partition and the tuple's TID, block << 16 | offset).
// Opaque here; {0, 0}: unknown.
struct RowRef {
    std::uint32_t table = 0;
    std::uint64_t tid = 0;
    bool operator==(const RowRef &o) const { return table == o.table && tid == o.tid; }
};

// One queue row (or dead letter) as loaded by the worker.
struct QueuedEvent {
    std::int64_t id = 0;
    RowRef row; // queue rows only
    std::string op;
    std::optional<std::string> table, key, new_row, old_row, type;
    std::uint64_t txid = 0;
    std::int64_t captured_at_us = 0; // unix microseconds
    std::optional<std::string> traceparent; // the writer's pg_sync.traceparent; none: no trace
    int attempts = 0;
    std::int64_t next_attempt_ms = 0; // unix ms; 0: ready
    bool dead = false;                // a dead letter: only blocks its key
    // false: read without its payload (it was blocked when the worker's memory share was used
    // up, core/payload_gate.hpp); it is never sent, and blocks its key like an event in flight.
    bool payload_loaded = true;
    // Read while a request in flight carried it (so without payload): it leaves the cached head
    // with that request's 2xx, and any other outcome drops the cache, so it never needs its
    // payload there (core/head_cache.hpp).
    bool in_flight_at_read = false;

    // What Dispatcher::plan derives from the event, computed at its first plan and kept (an event
    // does not change once read; a cached head is planned many times).
    struct PlanMemo {
        bool ready = false;
        scheduler::OrderKind kind = scheduler::OrderKind::Row;
        std::string key; // scheduler::row_key / emit_key
        std::size_t bytes = 0; // in a request body, with its comma
    };
    mutable PlanMemo memo;
};

// An endpoint's head of queue as the worker holds it: queue rows in increasing id order, dead
// letters of that range merged in. A deque: delivered events leave it from near its front, one
// at a time as their answers come, without moving the rest (core/head_cache.hpp).
using Head = std::deque<QueuedEvent>;

struct Outcome {
    std::int32_t endpoint_id = 0;
    retry::Verdict verdict = retry::Verdict::Success;
    std::vector<std::int64_t> delivered; // 2xx, or records written: delete
    std::vector<RowRef> delivered_rows;  // where they are, in the same order
    std::vector<std::int64_t> retry;     // attempts + 1, next attempt after delay_ms
    std::vector<std::int64_t> dead;      // attempts + 1, move to dead letters
    std::uint64_t delay_ms = 0;
    std::string reason; // last_error / pause reason; empty on success
    int status = 0;     // HTTP status, 0 when none arrived
    int events = 0;     // events the request carried
    std::uint64_t duration_us = 0;
    std::int64_t started_ms = 0; // unix ms when the request was sent
    std::int64_t oldest_captured_us = 0; // unix us: capture time of the request's oldest event
    std::string webhook_id;
};

// Counters and state for pg_sync._endpoint_state, accumulated since the last take_stats().
struct EndpointStats {
    std::int32_t endpoint_id = 0;
    std::int64_t delivered = 0;       // events
    std::int64_t failed_attempts = 0; // requests that failed
    std::optional<std::int64_t> last_success_ms, last_failure_ms;
    std::optional<std::string> last_error;
    int last_status = 0;
    // Current values (not deltas).
    std::size_t in_flight_events = 0;
    int consecutive_failures = 0;
    retry::State circuit = retry::State::Closed;
    std::int64_t next_attempt_ms = 0; // circuit reopening or earliest retry; 0: none
    bool rate_limited = false;        // a request waits for max_rate's next token
    std::size_t request_bytes_limit = 0; // smaller limit learned from 413 answers; 0: none
};

class Dispatcher {
  public:
    // scope: names this database for webhook-id (system identifier + database OID).
    Dispatcher(std::string scope, std::uint64_t seed, int failure_threshold);

    // The database's name, for the source of CloudEvents (core/cloudevents.hpp).
    void set_database(std::string name) { database_ = std::move(name); }

    // Endpoints whose secret rotation ended (previous_key_until_ms <= now_ms): the previous
    // secret signs nothing any more and is to be erased from the configuration. Forgets it here.
    std::vector<std::int32_t> take_ended_rotations(std::int64_t now_ms);

    // Replaces the configuration. An endpoint that disappears forgets its in-flight requests
    // (their completions are ignored); a changed endpoint keeps them. Resumed endpoints (paused
    // -> not paused) and changed retry settings reset the circuit breaker.
    void configure(std::vector<EndpointConfig> endpoints);
    const EndpointConfig *endpoint(std::int32_t id) const;
    std::vector<std::int32_t> endpoint_ids() const;

    // How many of the lowest queue ids of this endpoint the worker should load next time.
    std::size_t window(std::int32_t id) const;

    // The endpoint's head of queue (a gap-free prefix in id order, dead letters of that range
    // merged in) -> requests to submit now. The requests carry tokens that complete() knows.
    // Builds candidates only as far as the plan goes (scheduler::Planner): a cached head of
    // thousands of events costs a plan only the events up to the last one it could place.
    std::vector<sink::Request> plan(std::int32_t id, const Head &head, std::int64_t now_ms);

    // The verdict on a finished request; nullopt for a request this dispatcher no longer knows.
    std::optional<Outcome> complete(const sink::Completion &completion, std::int64_t now_ms);

    // pg_sync.circuit_failure_threshold changed (SIGHUP): applies to every breaker from now on.
    void set_failure_threshold(int threshold);

    // Marks an endpoint paused (after 410 Gone) until the next configure().
    void pause(std::int32_t id);

    // Forgets a request plan() returned that will not be sent after all (the pass that planned
    // it failed): its events are no longer in flight and may be planned again. Unknown tokens
    // are ignored.
    void abandon(std::uint64_t token);

    std::vector<EndpointStats> take_stats(std::int64_t now_ms);
    // Gives back what take_stats() returned when it could not be written (the pass failed):
    // counters are added to what accumulated since, last_* values kept where nothing newer came.
    void restore_stats(const std::vector<EndpointStats> &taken);
    // Whether take_stats() has anything to give.
    bool has_stats() const;
    // Whether plan() would send nothing now whatever the queue holds: the circuit is open, or
    // half-open with its probe out, or a Retry-After holds the endpoint, or max_in_flight
    // requests are out. The worker then skips reading that endpoint's queue (a held endpoint's
    // backlog was re-read on every pass: bench/soak). When it is due again, next_due_ms() says.
    bool held(std::int32_t id, std::int64_t now_ms) const;
    // Earliest time (unix ms) at which a plan could send something not ready now; -1: none.
    // (Now, when refused requests wait to be taken.)
    std::int64_t next_due_ms() const;
    // max_rate: when the earliest endpoint that waits for a token gets it (unix ms); -1: none.
    std::int64_t next_token_ms() const;
    // The endpoints whose token is there at now_ms: plan them again (from their cached heads).
    std::vector<std::int32_t> take_token_due(std::int64_t now_ms);
    // Requests plan() refused to send (a single event larger than max_request_bytes), completed
    // at once with Transport::Rejected: the worker handles them as completions of the transport.
    std::vector<sink::Completion> take_refused();
    std::size_t in_flight_requests() const { return requests_.size(); }
    std::size_t in_flight_requests(std::int32_t id) const;
    std::size_t in_flight_events(std::int32_t id) const;
    // Whether the event is carried by a request of this endpoint now in flight.
    bool in_flight(std::int32_t id, std::int64_t event_id) const;
    // Bytes of the request bodies of this endpoint now in flight (pg_sync.max_worker_memory).
    std::size_t in_flight_bytes(std::int32_t id) const;
    // Endpoints that may send (not paused): the groups the transport shares its connections
    // between (sink::Sink::set_groups). Requests carry their endpoint id as their group.
    std::size_t sending_endpoints() const;

  private:
    struct InFlight {
        std::int32_t endpoint_id;
        std::vector<std::int64_t> ids;
        std::vector<RowRef> rows;
        std::vector<int> attempts;
        std::string webhook_id;
        std::int64_t started_ms;
        std::int64_t oldest_captured_us;
        std::size_t body_bytes = 0;
        std::size_t event_bytes = 0; // the planner's size of its events (scheduler::Batch::bytes)
        // An event too large alone for max_request_bytes: refused without being sent, so its
        // dead letter says nothing of the receiver (no circuit failure, no failed attempt).
        bool never_sent = false;
    };
    struct Endpoint {
        EndpointConfig config;
        retry::CircuitBreaker breaker;
        std::unordered_set<std::int64_t> in_flight_ids;
        std::size_t in_flight_requests = 0;
        std::size_t in_flight_bytes = 0;
        std::size_t window = 0;
        std::int64_t next_due_ms = -1;
        // A 429/503 with Retry-After holds the whole endpoint (the receiver asked for a pause),
        // not only the events of that request. Unix ms; 0: no hold.
        std::int64_t hold_until_ms = 0;
        EndpointStats stats;
        bool dirty = true;
        rate::TokenBucket bucket;      // max_rate
        std::int64_t token_due_ms = -1; // a plan waits for the bucket's next token; -1: none
        bool rate_limited = false;
        // Size of a request's events learned from 413 answers (half those of the refused request;
        // raised again by a 2xx of larger ones); 0: none. Bounds requests below max_request_bytes.
        std::size_t learned_bytes = 0;
    };
    static std::size_t event_bytes_cap(const Endpoint &ep);
    static std::size_t base_window(const EndpointConfig &c);
    static void release(Endpoint &ep, const InFlight &f); // the request is no longer in flight

    std::string scope_;
    std::string database_;
    retry::Random random_;
    int failure_threshold_;
    std::map<std::int32_t, Endpoint> endpoints_;
    std::unordered_map<std::uint64_t, InFlight> requests_;
    std::uint64_t next_token_ = 1;
    std::vector<sink::Completion> refused_;
};

// Room for {"events":[]} around the events of a request body.
inline constexpr std::size_t kBodyFrameBytes = 16;
// Largest head of queue loaded per endpoint and pass.
inline constexpr std::size_t kMaxWindow = 100000;
// Smallest: the events a read gives the cached head, for planning between reads (batch_size 1
// at 20,000 events/s reads about 20 times a second).
inline constexpr std::size_t kMinWindow = 1000;

} // namespace pg_sync::dispatch
