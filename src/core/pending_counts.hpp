// Exact pending counts per endpoint without counting the queue: the rules, PostgreSQL-free.
// src/pg/queue_counters.cpp keeps the counts in shared memory and applies these rules there; the
// argument that they are exact is written out in its header comment, and test/unit/
// pending_counts_test.cpp checks it against every interleaving of small scenarios.
//
// Everything here is noexcept and allocation-free: it runs inside PostgreSQL frames (the capture
// path, transaction callbacks), where no C++ exception may surface.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pg_sync::pending {

// --- Which commits a recount has counted -----------------------------------------------------------

// A 32-bit transaction id widened to 64 bits (no wraparound in comparisons) relative to the next
// full id to be assigned: valid for ids at most 2^31 older than `next_full`, which every id a live
// snapshot holds is.
std::uint64_t widen(std::uint64_t next_full, std::uint32_t xid) noexcept;

// The snapshot a recount counted under, in 64-bit transaction ids: everything below xmin had
// ended, everything from xmax on had not begun, and xip lists the top-level transactions between
// them that were still running.
struct SnapshotXids {
    std::uint64_t xmin = 0;
    std::uint64_t xmax = 0;
    const std::uint64_t *xip = nullptr;
    std::size_t xcnt = 0;
};

// Whether the changes of a transaction that has committed (top-level id xid) are visible under s,
// i.e. whether a count under s saw them: xid had ended when s was taken. (A committed
// transaction's subtransactions are visible exactly when it is.)
bool counted_in(const SnapshotXids &s, std::uint64_t xid) noexcept;

// What a committing transaction does with its deltas (once its commit is visible to others).
//   counted:     counted_in(the last recount's snapshot, its xid)
//   own_recount: the last recount ran in this very transaction, before any of its changes to the
//                queue (its count saw none of them, whatever counted_in says about its own xid)
//   recounting:  that recount has not finished yet
struct CommitRule {
    bool to_pending = false; // add the deltas to the counts
    bool to_side = false;    // and to the recount's side counts (finish() adds them to its result)
};
CommitRule at_commit(bool counted, bool own_recount, bool recounting) noexcept;

// A recount that counted `counted` events of an endpoint under its snapshot, while committing
// writers whose changes it did not see added `side`: the endpoint's pending count.
inline std::int64_t finish(std::int64_t counted, std::int64_t side) noexcept { return counted + side; }

// --- A transaction's own changes, before they are published ----------------------------------------

// Events one backend's open transaction added to (n > 0) or removed from (n < 0) each endpoint's
// queue, per subtransaction, so that a rolled-back subtransaction takes its own away. Fixed
// capacity: when it is full, add() says so and the caller falls back to a recount.
struct Delta {
    std::int32_t endpoint = 0;
    std::uint32_t subxact = 0; // PostgreSQL's SubTransactionId: children have larger ids
    std::int64_t n = 0;
};

class LocalDeltas {
  public:
    static constexpr std::size_t kCapacity = 128;

    // false: full (nothing recorded).
    bool add(std::int32_t endpoint, std::uint32_t subxact, std::int64_t n) noexcept;
    // Subtransaction `sub` committed into `parent`: its deltas (and those of its descendants,
    // which ended before it) become the parent's.
    void commit_sub(std::uint32_t sub, std::uint32_t parent) noexcept;
    // Subtransaction `sub` rolled back: its deltas and its descendants' are gone.
    void abort_sub(std::uint32_t sub) noexcept;
    void clear() noexcept { n_ = 0; }

    bool empty() const noexcept { return n_ == 0; }
    std::size_t size() const noexcept { return n_; }
    const Delta &operator[](std::size_t i) const noexcept { return items_[i]; }

  private:
    void merge_duplicates() noexcept;
    Delta items_[kCapacity];
    std::size_t n_ = 0;
};

} // namespace pg_sync::pending
