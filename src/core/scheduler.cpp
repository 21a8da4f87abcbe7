#include "core/scheduler.hpp"

#include <algorithm>
#include <stdexcept>
#include <unordered_map>

namespace pg_sync::scheduler {
namespace {

// Where the pending events of one domain seen so far stand: none seen (Free), all of them in
// request b (b >= 0), or at least one held back or spread over several requests (Blocked).
using Slot = std::int64_t;
constexpr Slot kFree = -1;
constexpr Slot kBlocked = -2;

// The request an event must join to respect one more domain.
Slot combine(Slot need, Slot domain) {
    if (domain == kFree || need == domain)
        return need;
    if (need == kFree)
        return domain;
    return kBlocked; // blocked, or two different requests
}

struct TableDomain {
    Slot all = kFree;     // every pending event of the table seen so far (what a truncate waits for)
    Slot barrier = kFree; // the latest truncate seen so far (what later rows wait for)
};

class Planner {
  public:
    Planner(const Limits &limits, std::size_t slots) : limits_(limits), slots_(slots) {}

    // False once no request can take another event, so the scan may stop.
    bool place(const std::vector<Candidate> &pending, std::size_t index, std::int64_t now_ms) {
        const Candidate &e = pending[index];
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
            } else if (batches_.size() < slots_) {
                batches_.emplace_back();
                ++open_;
                got = static_cast<Slot>(batches_.size() - 1);
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
        return open_ > 0 || batches_.size() < slots_;
    }

    std::vector<Batch> take() { return std::move(batches_); }

  private:
    bool fits(std::size_t b, const Candidate &e) const {
        const Batch &batch = batches_[b];
        if (batch.events.size() >= limits_.batch_size)
            return false;
        const std::size_t cap = limits_.max_request_bytes;
        return cap == 0 || batch.events.empty() || (batch.bytes <= cap && e.bytes <= cap - batch.bytes);
    }

    const Limits &limits_;
    const std::size_t slots_;
    std::vector<Batch> batches_;
    std::size_t open_ = 0; // requests with room for another event by count
    // Views into the caller's strings, which outlive the plan.
    std::unordered_map<std::string_view, Slot> keys_;
    std::unordered_map<std::string_view, TableDomain> tables_;
};

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

std::vector<Batch> plan(const std::vector<Candidate> &pending, const Limits &limits, std::int64_t now_ms) {
    for (std::size_t i = 1; i < pending.size(); ++i)
        if (pending[i - 1].id >= pending[i].id)
            throw std::invalid_argument("scheduler: pending events are not in strictly increasing id order "
                                        "(id " +
                                        std::to_string(pending[i - 1].id) + " before id " +
                                        std::to_string(pending[i].id) + ")");

    std::size_t slots = limits.max_in_flight > limits.in_flight_requests
                            ? limits.max_in_flight - limits.in_flight_requests
                            : 0;
    slots = std::min(slots, limits.max_requests);
    if (limits.paused || slots == 0 || limits.batch_size == 0)
        return {};

    Planner planner(limits, slots);
    for (std::size_t i = 0; i < pending.size(); ++i)
        if (!planner.place(pending, i, now_ms))
            break;
    return planner.take();
}

} // namespace pg_sync::scheduler
