#include "core/head_cache.hpp"

#include <algorithm>
#include <unordered_set>

namespace pg_sync::dispatch {

std::vector<QueuedEvent> merge_dead_letters(std::vector<QueuedEvent> head, std::vector<QueuedEvent> dead) {
    if (head.empty())
        return head;
    // Only the dead letters inside the head's id range block anything in it.
    const std::int64_t last = head.back().id;
    dead.erase(std::remove_if(dead.begin(), dead.end(), [&](const QueuedEvent &d) { return d.id >= last; }),
               dead.end());
    if (dead.empty())
        return head;
    std::sort(dead.begin(), dead.end(), [](const QueuedEvent &a, const QueuedEvent &b) { return a.id < b.id; });
    std::vector<QueuedEvent> merged;
    merged.reserve(head.size() + dead.size());
    std::size_t h = 0;
    for (QueuedEvent &d : dead) {
        while (h < head.size() && head[h].id < d.id)
            merged.push_back(std::move(head[h++]));
        if (h < head.size() && head[h].id == d.id)
            continue; // redelivered and dead again in between: the queue row wins
        merged.push_back(std::move(d));
    }
    while (h < head.size())
        merged.push_back(std::move(head[h++]));
    return merged;
}

HeadCache::Action HeadCache::before_plan(std::int32_t id, bool full, bool held, std::size_t in_flight_events,
                                         std::size_t refill, bool memory_full) {
    Head &cached = heads_[id];
    if (held) {
        if (full)
            cached.valid = false;
        return Action::Skip;
    }
    if (!full && cached.valid) {
        const std::size_t waiting = cached.events.size() > in_flight_events ? cached.events.size() - in_flight_events : 0;
        if (cached.whole || waiting >= refill)
            return Action::PlanCached;
    }
    if (memory_full) {
        if (full)
            cached.valid = false;
        return Action::Skip;
    }
    std::vector<QueuedEvent>().swap(cached.events);
    cached.valid = false;
    return Action::Read;
}

void HeadCache::store(std::int32_t id, std::vector<QueuedEvent> head, std::vector<QueuedEvent> dead,
                      std::size_t window, bool cut) {
    Head &cached = heads_[id];
    cached.valid = true;
    cached.whole = !cut && head.size() < window;
    cached.events = merge_dead_letters(std::move(head), std::move(dead));
}

const std::vector<QueuedEvent> &HeadCache::events(std::int32_t id) { return heads_[id].events; }

void HeadCache::on_outcome(const Outcome &o) {
    auto it = heads_.find(o.endpoint_id);
    if (it == heads_.end() || !it->second.valid)
        return;
    if (!o.retry.empty() || !o.dead.empty() || o.verdict == retry::Verdict::Gone) {
        it->second.valid = false;
        return;
    }
    const std::unordered_set<std::int64_t> gone(o.delivered.begin(), o.delivered.end());
    auto &ev = it->second.events;
    ev.erase(std::remove_if(ev.begin(), ev.end(), [&](const QueuedEvent &q) { return gone.count(q.id) > 0; }),
             ev.end());
    // Events read without payload (memory share used up) can go only after a new read.
    if (std::any_of(ev.begin(), ev.end(), [](const QueuedEvent &q) { return !q.payload_loaded; }))
        it->second.valid = false;
}

void HeadCache::retain(const std::vector<std::int32_t> &ids) {
    const std::unordered_set<std::int32_t> keep(ids.begin(), ids.end());
    for (auto it = heads_.begin(); it != heads_.end();)
        it = keep.count(it->first) ? std::next(it) : heads_.erase(it);
}

void HeadCache::invalidate_all() {
    for (auto &kv : heads_) {
        std::vector<QueuedEvent>().swap(kv.second.events);
        kv.second.valid = false;
    }
}

bool HeadCache::valid(std::int32_t id) const {
    auto it = heads_.find(id);
    return it != heads_.end() && it->second.valid;
}

bool HeadCache::whole(std::int32_t id) const {
    auto it = heads_.find(id);
    return it != heads_.end() && it->second.whole;
}

} // namespace pg_sync::dispatch
