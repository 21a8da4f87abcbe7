// The delivery worker's small decisions, PostgreSQL-free and clock-free (callers pass the time,
// unix ms): when its statistics are written, where the ring of recent attempts continues, how
// long the loop may wait, when a failed pass is tried again, how the launcher spaces restarts,
// and how endpoint header lines are split. The worker (src/pg/delivery_*.cpp) only applies them.
#pragma once

#include "core/retry_policy.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pg_sync::worker {

// "Name: value" lines joined by '\n' (as the endpoint query aggregates the headers jsonb) ->
// the lines, empty ones dropped.
std::vector<std::string> split_header_lines(std::string_view joined);

// "400,401,404" (as the endpoint query renders permanent_statuses) -> the numbers; anything that
// is not a decimal number is skipped.
std::vector<int> split_ints(std::string_view csv);

// pg_sync._endpoint_state is written at most every kIntervalMs (an upsert per pass cost more than
// the rest of a small pass); failures are written at once (urgent).
class StatsThrottle {
  public:
    static constexpr std::int64_t kIntervalMs = 200;

    // Whether a pass at now_ms writes the statistics.
    bool due(std::int64_t now_ms) const { return urgent_ || now_ms - written_ms_ >= kIntervalMs; }
    // When the loop must run a pass for statistics alone (has_stats: the dispatcher has some);
    // -1: never.
    std::int64_t next_ms(bool has_stats) const { return has_stats ? written_ms_ + kIntervalMs : -1; }
    void mark_urgent() { urgent_ = true; }
    void written(std::int64_t now_ms) {
        written_ms_ = now_ms;
        urgent_ = false;
    }

  private:
    std::int64_t written_ms_ = 0;
    bool urgent_ = false;
};

// Answers not yet recorded (docs/delivery.md, "Pipelining"): the worker sends the next requests
// as soon as answers come, and records the answers (one transaction, a synchronous commit) in
// groups. A group is due when its oldest answer has waited `delay_ms` (pg_sync.ack_delay), when
// it holds kMaxAnswers answers, or at once when one of them is not a success (a retry, a dead
// letter, a 410 change what the queue must say before the endpoint's next read). A crash loses
// the answers of the group in progress: their events are sent again (docs/design.md, Guarantee 3).
class AckGroup {
  public:
    static constexpr std::size_t kMaxAnswers = 1024;

    // An answer arrived at now_ms; success: a 2xx.
    void add(std::int64_t now_ms, bool success) {
        if (count_++ == 0)
            oldest_ms_ = now_ms;
        urgent_ = urgent_ || !success;
    }
    // When the group must be recorded (unix ms); -1: no answer waits.
    std::int64_t due_ms(std::int64_t delay_ms) const {
        if (count_ == 0)
            return -1;
        if (urgent_ || count_ >= kMaxAnswers)
            return oldest_ms_;
        return oldest_ms_ + delay_ms;
    }
    bool due(std::int64_t now_ms, std::int64_t delay_ms) const {
        const std::int64_t at = due_ms(delay_ms);
        return at >= 0 && at <= now_ms;
    }
    bool empty() const { return count_ == 0; }
    // Whether the pass that records the group waits for its commit to reach the disk (a WAL
    // flush). Only with pg_sync.ack_delay = 0 (0.3.0's exact bound: a crash resends only what was
    // in flight or being recorded) or when the group holds an answer that is not a 2xx (retries,
    // dead letters and 410 pauses are not forgotten by a crash). Otherwise a group of 2xx
    // commits asynchronously: a crash can forget the groups committed in the last moments (the
    // WAL writer flushes them within 3 * wal_writer_delay), whose events are then sent again,
    // which Guarantee 3 allows (docs/design.md: the duplicate bound says so); the WAL is
    // replayed as a prefix, so per key the events sent again are still the last ones delivered.
    // (Waiting for that flush, about 100 times a second, was the worker's wait event in 164 and
    // 200 of 301 1-s samples under pgbench TPC-B: bench/results/sustained-diagnosis.md.)
    bool durable(std::int64_t delay_ms) const { return delay_ms <= 0 || urgent_; }
    // A pass committed every answer of the group.
    void recorded() {
        count_ = 0;
        oldest_ms_ = -1;
        urgent_ = false;
    }

  private:
    std::size_t count_ = 0;
    std::int64_t oldest_ms_ = -1;
    bool urgent_ = false;
};

// When statistics alone start a pass: while answers wait to be recorded, not before their group is
// due (that pass writes the statistics too), so that statistics do not cut a group short. -1: never.
inline std::int64_t stats_pass_ms(std::int64_t stats_ms, std::int64_t ack_due_ms) {
    if (stats_ms < 0 || ack_due_ms < 0)
        return stats_ms;
    return stats_ms > ack_due_ms ? stats_ms : ack_due_ms;
}

// The ring of recent attempts (pg_sync.recent_attempts, pg_sync.recent_attempts_size slots):
// where the next rows go. The position is read from the table once (after the newest row), then
// kept here; a pass that fails forgets it (reset()), so the next one reads it again.
class AttemptRing {
  public:
    // Whether the table must be trimmed to `size` slots first (the setting changed, or first use).
    bool needs_trim(int size) const { return trimmed_size_ != size; }
    void trimmed(int size) { trimmed_size_ = size; }
    bool needs_position() const { return next_ < 0; }
    void set_position(std::int64_t next) { next_ = next; }

    // The slots for `outcomes` new rows in a ring of `size` (> 0): only the newest `size` of them
    // are written (one statement may not write a slot twice); they are the last slots.size()
    // outcomes. Advances the position.
    std::vector<std::int32_t> take(std::size_t outcomes, int size);
    // The index of the first outcome written by take(outcomes, size).
    static std::size_t first_written(std::size_t outcomes, int size);

    void reset() {
        next_ = -1;
        trimmed_size_ = -1;
    }

  private:
    std::int64_t next_ = -1;
    int trimmed_size_ = -1;
};

// What the loop waits for besides its latch and the transport's sockets. Times are unix ms;
// -1: not set.
struct Deadlines {
    std::int64_t now_ms = 0;
    std::int64_t sweep_ms = 0;        // next sweep (always set)
    std::int64_t retry_due_ms = -1;   // earliest retry the dispatcher waits for
    std::int64_t token_ms = -1;       // max_rate: an endpoint's next token (Dispatcher::next_token_ms)
    std::int64_t stats_ms = -1;       // statistics to write
    std::int64_t pass_retry_ms = -1;  // a failed pass is tried again
    std::int64_t ack_ms = -1;         // answers to record (AckGroup::due_ms)
    long transport_ms = -1;           // the transport's own timer (sink::Sink::timeout_ms)
};

// How long the loop may wait: until the earliest deadline, at least 1 ms for the worker's own
// (a deadline no pass advanced must not make a busy loop); 0 only when the transport's timer is
// due now (the loop then calls on_timeout() without waiting).
long wait_timeout_ms(const Deadlines &d);

// A pass that failed (an ERROR caught at the border) is tried again after a doubling wait: the
// same schedule as an event's retries, un-jittered (one worker, nothing to spread apart).
class PassRetry {
  public:
    static constexpr std::uint64_t kBaseMs = 200;
    static constexpr std::uint64_t kMaxMs = 10000;

    // A pass failed at now_ms: returns when to try again.
    std::int64_t failed(std::int64_t now_ms);
    void succeeded() {
        failures_ = 0;
        retry_at_ms_ = -1;
    }
    bool failing() const { return failures_ > 0; }
    int failures() const { return failures_; }
    // When the next pass may run; -1: whenever.
    std::int64_t retry_at_ms() const { return retry_at_ms_; }
    bool may_run(std::int64_t now_ms) const { return retry_at_ms_ < 0 || now_ms >= retry_at_ms_; }

  private:
    int failures_ = 0;
    std::int64_t retry_at_ms_ = -1;
};

// Whether commits that only queued events should wake the worker (its latch; each wake-up starts
// a pass): not while every endpoint is paused, since nothing could be sent (a pass per commit cost
// 30 % of a core at 45,000 commits/s, taken from the writers). What a paused endpoint needs comes
// anyway: resume_endpoint changes the configuration, which always wakes the worker (a full pass
// that reads the queue again); requests for a recount always wake it; the sweep looks every
// pg_sync.sweep_interval. Until the endpoints are loaded, every commit wakes it.
inline bool events_wake_worker(std::size_t sending_endpoints, bool configured) {
    return sending_endpoints > 0 || !configured;
}

// The launcher: how long to wait before starting a database's worker again after its
// `failures`-th consecutive failure (1-based): 1 s doubling to 60 s.
std::uint64_t restart_delay_ms(int failures);

} // namespace pg_sync::worker
