#include "core/queue_rotation.hpp"

#include <algorithm>

namespace pg_sync::rotation {

void Rotation::start(int current, std::int64_t rotated_ms, std::int64_t rotated_seq, std::int64_t now_ms) {
    current_ = (current >= 0 && current < kParts) ? current : 0;
    rotated_ms_ = rotated_ms;
    rotated_seq_ = rotated_seq;
    for (int p = 0; p < kParts; ++p) {
        clean_[std::size_t(p)] = false;
        // Unknown: the partitions that are not current stopped being current at the latest then.
        retired_ms_[std::size_t(p)] = rotated_ms;
        next_check_ms_[std::size_t(p)] = now_ms;
        last_rows_[std::size_t(p)] = -1;
    }
    carried_ = false;
}

std::vector<int> Rotation::due(std::int64_t now_ms) const {
    std::vector<int> parts;
    for (int p = 0; p < kParts; ++p)
        if (p != current_ && !clean_[std::size_t(p)] && now_ms >= next_check_ms_[std::size_t(p)])
            parts.push_back(p);
    return parts;
}

Cleanup Rotation::decide(const Config &c, int part, std::int64_t rows_left, std::int64_t now_ms) const {
    if (part == current_)
        return Cleanup::Wait;
    if (rows_left == 0)
        return Cleanup::Truncate;
    const std::int64_t before = last_rows_[std::size_t(part)];
    const bool draining = before < 0 || rows_left < before;
    if (rows_left <= c.carry_limit && !draining && now_ms - retired_ms_[std::size_t(part)] >= c.carry_after_ms())
        return Cleanup::CarryOver;
    return Cleanup::Wait;
}

void Rotation::checked(int part, bool truncated, std::int64_t now_ms, std::int64_t rows_left) {
    if (truncated) {
        clean_[std::size_t(part)] = true;
        last_rows_[std::size_t(part)] = -1;
    } else {
        next_check_ms_[std::size_t(part)] = now_ms + kCheckMs;
        if (rows_left >= 0)
            last_rows_[std::size_t(part)] = rows_left;
    }
}

bool Rotation::may_rotate(const Config &c, std::int64_t now_ms) const {
    return now_ms - rotated_ms_ >= c.interval_ms && clean_[std::size_t((current_ + 1) % kParts)];
}

void Rotation::checked_many_left(const Config &c, int part, std::int64_t now_ms) {
    next_check_ms_[std::size_t(part)] = now_ms + std::max(kCheckMs, c.interval_ms);
    last_rows_[std::size_t(part)] = c.carry_limit + 1; // counted up to that
}

std::optional<int> Rotation::rotate_to(const Config &c, std::int64_t now_ms, std::int64_t seq) const {
    if (!may_rotate(c, now_ms) || (seq == rotated_seq_ && !carried_))
        return std::nullopt;
    return (current_ + 1) % kParts;
}

void Rotation::rotated(int to, std::int64_t now_ms, std::int64_t seq) {
    retired_ms_[std::size_t(current_)] = now_ms;
    next_check_ms_[std::size_t(current_)] = now_ms;
    clean_[std::size_t(current_)] = false;
    last_rows_[std::size_t(current_)] = -1;
    current_ = to;
    rotated_ms_ = now_ms;
    rotated_seq_ = seq;
    carried_ = false;
}

} // namespace pg_sync::rotation
