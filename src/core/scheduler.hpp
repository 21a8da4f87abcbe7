// Which pending events of one endpoint may be sent now, grouped into requests. PostgreSQL-free;
// the delivery worker loads an endpoint's pending events, calls plan(), and sends each Batch as
// one request. This is where docs/design.md Guarantee 4 ("Per-key order") is decided.
//
// Ordering domains. Every event is ordered after some earlier events (its predecessors):
//   row (insert/update/delete/snapshot) of (T, k): earlier rows of (T, k) and earlier truncates of T;
//   truncate of T:                                  every earlier event of T (rows of any key, truncates);
//   emit with key k:                                earlier emits with key k (not rows: own namespace);
//   emit without key:                               nothing.
//
// The rule. An event goes out only if it is ready itself (queued and next_attempt_at <= now) and
// every predecessor still in the input is in the SAME request, earlier in it. A predecessor that
// is in flight, waiting to retry, dead, left for a later pass, or in another request of this plan
// holds it back, and with it every later event of its domains. Same-key events (and a truncate
// with the rows before and after it) may share a request: the receiver reads a body in order, and
// a request succeeds or fails as a whole, so they are delivered, retried and dead-lettered together.
// Delivered events are gone from the queue, so they are not in the input and hold nothing back.
//
// Traces. An event may belong to a trace (the W3C traceparent its writer set, sent as the
// request's traceparent header): a request carries the events of one trace only (events without
// trace are a trace of their own), so that the header is true of every event in it. An event that
// must join its predecessor's request (same key) and cannot because that request is of another
// trace waits, as when the request is full: per-key order is kept, it goes after the predecessor's
// answer.
//
// No head-of-line blocking: a held-back event blocks only its own domains; the scan goes on with
// other keys. Request content is in id order; requests of one plan carry unrelated events, so they
// may complete in any order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pg_sync::scheduler {

enum class OrderKind : std::uint8_t {
    Row,      // insert, update, delete, snapshot
    Truncate, // barrier for its table
    Emit,     // pg_sync.emit(); ordered by its key only
};

enum class State : std::uint8_t {
    Queued,   // waiting to be sent; ready when next_attempt_at_ms <= now
    InFlight, // carried by a request not yet answered
    Dead,     // a dead letter; blocks later events of its domains until redelivered or purged
};

struct Candidate {
    std::int64_t id = 0; // capture order; the input is sorted by it
    OrderKind kind = OrderKind::Row;
    // Row and Truncate: the table as the queue stores it ("public.orders"). Unused for Emit.
    std::string table;
    // Row: row_key(table, key_json). Emit: emit_key(key). Unused for Truncate. Empty means
    // "ordered with nothing" (an emit without key; a row with an empty key still respects the
    // truncates of its table).
    std::string key;
    State state = State::Queued;
    std::int64_t next_attempt_at_ms = 0; // 0: ready at once
    std::size_t bytes = 0;               // rendered size of the event in the request body
    std::string trace;                   // traceparent; empty: none
};

// A Candidate as views: what Planner::add reads (the caller keeps the strings in place).
struct CandidateView {
    std::int64_t id = 0;
    OrderKind kind = OrderKind::Row;
    std::string_view table;
    std::string_view key;
    State state = State::Queued;
    std::int64_t next_attempt_at_ms = 0;
    std::size_t bytes = 0;
    std::string_view trace;
};

// Ordering keys. Rows and emits live in separate namespaces (first byte 'r' / 'e'); the table is
// separated from the key by a NUL byte, which PostgreSQL text cannot contain, so different (table,
// key) pairs never collide. key_json must be rendered the same way for the same key every time
// (the capture trigger's renderer is deterministic, as is to_json for emit keys).
std::string row_key(std::string_view table, std::string_view key_json);
// No key: "" (ordered with nothing). An empty-string key is a key like any other.
std::string emit_key(std::optional<std::string_view> key);

inline constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();

struct Limits {
    std::size_t batch_size = 100;          // events per request; 0 yields nothing
    std::size_t max_in_flight = 4;         // requests of this endpoint in flight at once
    std::size_t in_flight_requests = 0;    // requests of this endpoint in flight now (caller counts)
    std::size_t max_requests = kUnlimited; // new requests in this plan (probe mode: 1)
    // Cap on the sum of Candidate::bytes per request; 0 = no cap. A single event larger than the cap
    // still goes, alone in its request (otherwise it and its key would be stuck forever).
    std::size_t max_request_bytes = 0;
    bool paused = false; // a paused endpoint sends nothing and keeps its events
};

// Circuit breaker "probe only": one request at a time (none while one is in flight) of at most
// probe_events events.
Limits probe_only(Limits limits, std::size_t probe_events = 1);

struct Batch {
    std::vector<std::size_t> events; // indexes into the input, increasing (so ids increase)
    std::size_t bytes = 0;           // sum of Candidate::bytes
    std::string_view trace;          // the trace of its events (a view into the caller's strings)
};

// plan(), fed one event at a time in increasing id order, so that a caller can build candidates
// only as far as the plan goes and stop when it is full (the delivery worker's cached head may
// hold 100,000 events; a plan of a few requests needs the first few). Every event up to the last
// one fed is taken into account exactly as plan() would.
class Planner {
  public:
    explicit Planner(const Limits &limits);
    // Whether another event could still be placed.
    bool open() const;
    // The next pending event; `index` is what Batch::events reports for it. The candidate's
    // strings must stay in place (not moved) as long as the planner lives. Throws
    // std::invalid_argument when ids do not strictly increase. Returns open().
    bool add(const CandidateView &e, std::size_t index, std::int64_t now_ms);
    bool add(const Candidate &e, std::size_t index, std::int64_t now_ms) {
        return add(CandidateView{e.id, e.kind, e.table, e.key, e.state, e.next_attempt_at_ms, e.bytes, e.trace}, index,
                   now_ms);
    }
    std::vector<Batch> take() { return std::move(batches_); }

    // Where the pending events of one domain seen so far stand: none seen (Free), all of them in
    // request b (b >= 0), or at least one held back or spread over several requests (Blocked).
    using Slot = std::int64_t;
    static constexpr Slot kFree = -1;
    static constexpr Slot kBlocked = -2;

  private:
    struct TableDomain {
        Slot all = kFree;     // every pending event of the table seen so far (what a truncate waits for)
        Slot barrier = kFree; // the latest truncate seen so far (what later rows wait for)
    };
    bool fits(std::size_t b, const CandidateView &e) const;

    Limits limits_;
    std::size_t slots_ = 0;
    std::vector<Batch> batches_;
    std::size_t open_ = 0; // requests with room for another event by count
    bool any_ = false;
    std::int64_t last_id_ = 0;
    // Views into the caller's strings, which outlive the plan.
    std::unordered_map<std::string_view, Slot> keys_;
    std::unordered_map<std::string_view, TableDomain> tables_;
};

// Requests to send now, at most min(max_requests, max_in_flight - in_flight_requests) of them,
// each non-empty and in id order. Events are placed greedily in id order: an event with no
// predecessor in this plan goes into the newest request (a new one when that is full); an event
// whose predecessors are in request b goes into b or, when b is full or of another trace, waits.
// An event of another trace than the newest request goes into an open request of its trace, or
// a new one.
//
// `pending` holds the endpoint's events in increasing id order; a prefix of the queue (lowest ids
// first) is a valid input, a sample with gaps is not (a missing predecessor would be taken as
// delivered). Throws std::invalid_argument when ids do not strictly increase.
//
// Cost: one pass, O(n) hash operations on the keys and table names (O(total key length)),
// memory O(distinct keys + tables); the pass stops as soon as no request can take another event.
std::vector<Batch> plan(const std::vector<Candidate> &pending, const Limits &limits, std::int64_t now_ms);

} // namespace pg_sync::scheduler
