// Exact pending counts per endpoint: the rules (see pending_counts.hpp).
#include "core/pending_counts.hpp"

namespace pg_sync::pending {

std::uint64_t widen(std::uint64_t next_full, std::uint32_t xid) noexcept {
    // How far xid lies behind the next id, modulo 2^32.
    const std::uint32_t behind = std::uint32_t(std::uint32_t(next_full) - xid);
    return next_full - behind;
}

bool counted_in(const SnapshotXids &s, std::uint64_t xid) noexcept {
    if (xid < s.xmin)
        return true; // ended before the snapshot; it committed, so the snapshot sees it
    if (xid >= s.xmax)
        return false; // had not even begun
    for (std::size_t i = 0; i < s.xcnt; ++i)
        if (s.xip[i] == xid)
            return false; // still running then
    return true;
}

CommitRule at_commit(bool counted, bool own_recount, bool recounting) noexcept {
    CommitRule r;
    if (counted && !own_recount)
        return r; // the last recount saw these changes: they are in its count already
    r.to_pending = true;
    r.to_side = recounting;
    return r;
}

bool LocalDeltas::add(std::int32_t endpoint, std::uint32_t subxact, std::int64_t n) noexcept {
    // The latest entries are the likeliest (the same statement, the same endpoint).
    for (std::size_t i = n_; i-- > 0;) {
        if (items_[i].endpoint == endpoint && items_[i].subxact == subxact) {
            items_[i].n += n;
            return true;
        }
    }
    if (n_ == kCapacity)
        return false;
    items_[n_++] = Delta{endpoint, subxact, n};
    return true;
}

void LocalDeltas::commit_sub(std::uint32_t sub, std::uint32_t parent) noexcept {
    bool moved = false;
    for (std::size_t i = 0; i < n_; ++i) {
        if (items_[i].subxact >= sub) {
            items_[i].subxact = parent;
            moved = true;
        }
    }
    if (moved)
        merge_duplicates();
}

void LocalDeltas::abort_sub(std::uint32_t sub) noexcept {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n_; ++i)
        if (items_[i].subxact < sub)
            items_[kept++] = items_[i];
    n_ = kept;
}

void LocalDeltas::merge_duplicates() noexcept {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n_; ++i) {
        bool merged = false;
        for (std::size_t j = 0; j < kept && !merged; ++j) {
            if (items_[j].endpoint == items_[i].endpoint && items_[j].subxact == items_[i].subxact) {
                items_[j].n += items_[i].n;
                merged = true;
            }
        }
        if (!merged)
            items_[kept++] = items_[i];
    }
    n_ = kept;
}

} // namespace pg_sync::pending
