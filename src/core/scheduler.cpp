#include "core/scheduler.hpp"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

namespace pg_sync::scheduler {
namespace {

using Slot = Planner::Slot;
constexpr Slot kFree = Planner::kFree;
constexpr Slot kBlocked = Planner::kBlocked;

// The request an event must join to respect one more domain.
Slot combine(Slot need, Slot domain) {
    if (domain == kFree || need == domain)
        return need;
    if (need == kFree)
        return domain;
    return kBlocked; // blocked, or two different requests
}

} // namespace

std::string row_key(std::string_view table, std::string_view key_json) {
    std::string k;
    k.reserve(2 + table.size() + key_json.size());
    k += 'r';
    k += table;
    k += '\0';
    k += key_json;
    return k;
}

std::string emit_key(std::optional<std::string_view> key) {
    if (!key)
        return {};
    std::string k;
    k.reserve(1 + key->size());
    k += 'e';
    k += *key;
    return k;
}

Limits probe_only(Limits limits, std::size_t probe_events) {
    limits.max_in_flight = 1;
    limits.max_requests = 1;
    limits.batch_size = std::min(limits.batch_size, probe_events);
    return limits;
}

Planner::Planner(const Limits &limits) : limits_(limits) {
    slots_ = limits.max_in_flight > limits.in_flight_requests ? limits.max_in_flight - limits.in_flight_requests : 0;
    slots_ = std::min(slots_, limits.max_requests);
    if (limits.paused || limits.batch_size == 0)
        slots_ = 0;
}

bool Planner::open() const { return slots_ > 0 && (open_ > 0 || batches_.size() < slots_); }

bool Planner::add(const CandidateView &e, std::size_t index, std::int64_t now_ms) {
    if (any_ && e.id <= last_id_)
        throw std::invalid_argument("scheduler: pending events are not in strictly increasing id order (id " +
                                    std::to_string(last_id_) + " before id " + std::to_string(e.id) + ")");
    any_ = true;
    last_id_ = e.id;
    if (!open())
        return false;
    const bool ready = e.state == State::Queued && e.next_attempt_at_ms <= now_ms;
    const bool keyed = e.kind != OrderKind::Truncate && !e.key.empty();
    TableDomain *table = e.kind == OrderKind::Emit ? nullptr : &tables_[e.table];
    Slot *key = keyed ? &keys_.try_emplace(e.key, kFree).first->second : nullptr;

    Slot need = kFree;
    if (key)
        need = combine(need, *key);
    if (table)
        need = combine(need, e.kind == OrderKind::Truncate ? table->all : table->barrier);

    Slot got = kBlocked;
    if (ready && need != kBlocked) {
        if (need >= 0) {
            if (fits(static_cast<std::size_t>(need), e))
                got = need;
        } else if (!batches_.empty() && fits(batches_.size() - 1, e)) {
            got = static_cast<Slot>(batches_.size() - 1);
        } else {
            // An open request of the event's trace, when the newest is of another (without
            // traces an event never joins an older request), else a new request.
            if (!batches_.empty() && batches_.back().trace != e.trace)
                for (std::size_t b = batches_.size() - 1; b-- > 0;)
                    if (fits(b, e)) {
                        got = static_cast<Slot>(b);
                        break;
                    }
            if (got < 0 && batches_.size() < slots_) {
                batches_.emplace_back();
                batches_.back().trace = e.trace;
                ++open_;
                got = static_cast<Slot>(batches_.size() - 1);
            }
        }
    }

    if (got >= 0) {
        Batch &b = batches_[static_cast<std::size_t>(got)];
        b.events.push_back(index);
        b.bytes += e.bytes;
        if (b.events.size() == limits_.batch_size)
            --open_;
    }
    // A held-back event holds back the rest of its domains; a placed one pins them to its request.
    if (key)
        *key = got;
    if (table) {
        table->all = combine(table->all, got);
        if (e.kind == OrderKind::Truncate)
            table->barrier = got;
    }
    return open();
}

bool Planner::fits(std::size_t b, const CandidateView &e) const {
    const Batch &batch = batches_[b];
    if (batch.events.size() >= limits_.batch_size || batch.trace != e.trace)
        return false;
    const std::size_t cap = limits_.max_request_bytes;
    return cap == 0 || batch.events.empty() || (batch.bytes <= cap && e.bytes <= cap - batch.bytes);
}

std::vector<Batch> plan(const std::vector<Candidate> &pending, const Limits &limits, std::int64_t now_ms) {
    for (std::size_t i = 1; i < pending.size(); ++i)
        if (pending[i - 1].id >= pending[i].id)
            throw std::invalid_argument("scheduler: pending events are not in strictly increasing id order "
                                        "(id " +
                                        std::to_string(pending[i - 1].id) + " before id " +
                                        std::to_string(pending[i].id) + ")");
    Planner planner(limits);
    for (std::size_t i = 0; i < pending.size(); ++i)
        if (!planner.add(pending[i], i, now_ms))
            break;
    return planner.take();
}

} // namespace pg_sync::scheduler
