// When the queue's partitions rotate and when a partition is emptied, PostgreSQL-free and
// clock-free (callers pass the time, unix ms). The delivery worker (src/pg/queue_rotation.cpp)
// applies the decisions; the table layout is in sql/src/queue.sql, the design in
// docs/delivery.md ("Queue rotation").
//
// The queue has kParts partitions. New events go into the current one. Rotation makes the next
// partition current, and only when that one is clean (truncated since it was last current): a
// partition never takes new events on top of old dead tuples. A partition that is not current is
// looked at every kCheckMs until it is clean:
//   * no rows left: truncate it;
//   * a few rows left (at most carry_limit) long after it stopped being current (carry_after_ms:
//     events waiting for a retry, or behind a dead letter): move them, ids unchanged, into the
//     current partition, then truncate it, so that rotation goes on;
//   * otherwise wait (vacuum keeps it in check meanwhile).
// Truncating is safe only under an exclusive lock, with no rows visible after the lock was taken
// (the worker's job); this class only says when to try.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

namespace pg_sync::rotation {

constexpr int kParts = 3;
constexpr std::int64_t kCheckMs = 1000; // how often a partition that is not clean is looked at

struct Config {
    std::int64_t interval_ms = 10000;   // pg_sync.queue_rotation_interval
    std::int64_t carry_limit = 10000;   // rows moved at most to empty a partition
    // A partition is emptied by moving its rows only this long after it stopped being current.
    std::int64_t carry_after_ms() const { return 2 * interval_ms; }
};

enum class Cleanup {
    Truncate,  // no rows left
    CarryOver, // move the rows left into the current partition, then truncate
    Wait,      // look again later
};

class Rotation {
  public:
    // At worker start: the current partition and its rotation (from pg_sync._queue_rotation).
    // Every other partition may hold rows.
    void start(int current, std::int64_t rotated_ms, std::int64_t rotated_seq, std::int64_t now_ms);

    int current() const { return current_; }
    bool clean(int part) const { return clean_[std::size_t(part)]; }

    // The partitions to look at now (not current, not clean, check due).
    std::vector<int> due(std::int64_t now_ms) const;
    // What to do with a partition that has rows_left rows (counted up to carry_limit + 1).
    Cleanup decide(const Config &c, int part, std::int64_t rows_left, std::int64_t now_ms) const;
    // The partition was truncated (done) or could not be (lock taken by someone, rows left):
    // looked at again after kCheckMs, or after the interval when more rows are left than could be
    // carried over (counting them each second would be wasted work while a receiver is down).
    // rows_left: what the look found (-1: not counted).
    void checked(int part, bool truncated, std::int64_t now_ms, std::int64_t rows_left = -1);
    // Rows were carried into the current partition: it is rotated out at the next interval even
    // if no event comes, so that it is truncated too.
    void carried_over() { carried_ = true; }
    void checked_many_left(const Config &c, int part, std::int64_t now_ms);

    // Whether rotate_to() may rotate now (the interval has passed, the next partition is clean),
    // so that the caller reads the sequence only then.
    bool may_rotate(const Config &c, std::int64_t now_ms) const;
    // The partition to make current now, if any: the interval has passed, events were added since
    // the last rotation (the queue's sequence moved) or carried into the current partition, and
    // the next partition is clean.
    std::optional<int> rotate_to(const Config &c, std::int64_t now_ms, std::int64_t seq) const;
    void rotated(int to, std::int64_t now_ms, std::int64_t seq);

  private:
    int current_ = 0;
    std::int64_t rotated_ms_ = 0;
    std::int64_t rotated_seq_ = 0;
    std::array<bool, kParts> clean_{};
    std::array<std::int64_t, kParts> retired_ms_{};   // when it stopped being current
    std::array<std::int64_t, kParts> next_check_ms_{};
    std::array<std::int64_t, kParts> last_rows_{};      // rows left at the last look (-1: none)
    bool carried_ = false;                              // rows carried into the current partition
};

} // namespace pg_sync::rotation
