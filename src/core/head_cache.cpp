#include "core/head_cache.hpp"

#include <algorithm>
#include <unordered_set>

namespace pg_sync::dispatch {

Head merge_dead_letters(std::vector<QueuedEvent> head, std::vector<QueuedEvent> dead) {
    Head merged;
    if (head.empty())
        return merged;
    // Only the dead letters inside the head's id range block anything in it.
    const std::int64_t last = head.back().id;
    dead.erase(std::remove_if(dead.begin(), dead.end(), [&](const QueuedEvent &d) { return d.id >= last; }),
               dead.end());
    std::sort(dead.begin(), dead.end(), [](const QueuedEvent &a, const QueuedEvent &b) { return a.id < b.id; });
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

HeadCache::Action HeadCache::before_plan(std::int32_t id, Wake wake, bool held, std::size_t in_flight_events,
                                         std::size_t refill, bool memory_full, bool in_pass) {
    Cached &cached = heads_[id];
    const bool stale = wake != Wake::Answers;
    if (held) {
        if (stale)
            cached.valid = false;
        return Action::Skip;
    }
    if (wake != Wake::Reread && cached.valid && !(in_pass && cached.released)) {
        const std::size_t waiting = cached.events.size() > in_flight_events ? cached.events.size() - in_flight_events : 0;
        if (wake == Wake::Answers && (cached.whole || waiting >= refill))
            return Action::PlanCached;
        // Commits: the new events cannot go before the cached ones (see the header).
        if (wake == Wake::Commits && !cached.whole && !cached.blocked && waiting >= refill)
            return Action::PlanCached;
    }
    if (memory_full) {
        if (stale)
            cached.valid = false;
        return Action::Skip;
    }
    Head().swap(cached.events);
    cached.valid = false;
    return Action::Read;
}

void HeadCache::store(std::int32_t id, std::vector<QueuedEvent> head, std::vector<QueuedEvent> dead,
                      std::size_t window, bool cut) {
    Cached &cached = heads_[id];
    cached.valid = true;
    cached.whole = !cut && head.size() < window;
    cached.blocked = std::any_of(head.begin(), head.end(),
                                 [](const QueuedEvent &q) { return !q.payload_loaded && !q.in_flight_at_read; });
    cached.released = false;
    cached.events = merge_dead_letters(std::move(head), std::move(dead));
}

const Head &HeadCache::events(std::int32_t id) { return heads_[id].events; }

void HeadCache::on_outcome(const Outcome &o) {
    auto it = heads_.find(o.endpoint_id);
    if (it == heads_.end() || !it->second.valid)
        return;
    Cached &cached = it->second;
    if (!o.retry.empty() || !o.dead.empty() || o.verdict == retry::Verdict::Gone || o.verdict == retry::Verdict::Split) {
        cached.valid = false;
        return;
    }
    // Events read without payload because they were blocked can go only after a new read (by the
    // next pass); those read in flight leave with their own request's outcome (2xx: below).
    cached.released = cached.released || cached.blocked;
    // The request's events are in id order, so are their positions; runs of neighbours go with
    // one erase each, last run first (a run at the front moves nothing).
    Head &ev = cached.events;
    std::vector<std::int64_t> sorted;
    const std::vector<std::int64_t> *ids = &o.delivered;
    if (!std::is_sorted(ids->begin(), ids->end())) {
        sorted = o.delivered;
        std::sort(sorted.begin(), sorted.end());
        ids = &sorted;
    }
    std::vector<std::size_t> at;
    at.reserve(ids->size());
    auto from = ev.begin();
    for (std::int64_t id : *ids) {
        from = std::lower_bound(from, ev.end(), id, [](const QueuedEvent &q, std::int64_t v) { return q.id < v; });
        if (from == ev.end())
            break;
        if (from->id == id)
            at.push_back(std::size_t(from - ev.begin()));
    }
    std::size_t end = at.size();
    while (end > 0) {
        std::size_t begin = end - 1;
        while (begin > 0 && at[begin - 1] + 1 == at[begin])
            --begin;
        ev.erase(ev.begin() + std::ptrdiff_t(at[begin]), ev.begin() + std::ptrdiff_t(at[end - 1] + 1));
        end = begin;
    }
}

void HeadCache::retain(const std::vector<std::int32_t> &ids) {
    const std::unordered_set<std::int32_t> keep(ids.begin(), ids.end());
    for (auto it = heads_.begin(); it != heads_.end();)
        it = keep.count(it->first) ? std::next(it) : heads_.erase(it);
}

void HeadCache::invalidate_all() {
    for (auto &kv : heads_) {
        Head().swap(kv.second.events);
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
