// Each endpoint's head of queue as the worker last read it, minus what was delivered since, and
// the merge of dead letters into a head read. PostgreSQL-free; the worker's pass
// (src/pg/delivery_pass.cpp) asks before_plan() what to do for an endpoint, reads the queue when
// told to, and hands the rows to store().
//
// Why planning from a cached head is safe: between full passes the worker plans from it instead of
// reading the queue again; everything committed later announces itself by setting the worker's
// latch (which makes the next pass full: it reads again unless the cache, not whole, still fills
// the free request slots, see before_plan), and a commit cannot put an event before a same-key
// event it has already seen (row locks order same-key writers, and the wake-up happens before the
// writer releases its locks).
#pragma once

#include "core/dispatcher.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace pg_sync::dispatch {

// head: queue rows in increasing id order; dead: dead letters of the same endpoint (first of each
// key and each dead truncate), any order. Returns the head with the dead letters below its last id
// merged in id order; a dead letter with the id of a queue row is dropped (redelivered and dead
// again in between: the queue row wins). An empty head stays empty (no dead letter matters).
Head merge_dead_letters(std::vector<QueuedEvent> head, std::vector<QueuedEvent> dead);

class HeadCache {
  public:
    enum class Action {
        Skip,       // plan nothing now, read nothing
        PlanCached, // plan from events(id) as it is
        Read,       // read the queue, store() it, then plan from events(id)
    };

    // Why the worker plans now: what may have changed in the queue since the cache was read.
    enum class Wake {
        Answers, // only answers came (a partial pass, or planning between passes): nothing was
                 // committed since the read, or the latch would have made the pass Commits
        Commits, // a commit set the latch: events may have been queued since the read
        Reread,  // read again whatever the cache holds: the worker started, a sweep (what no
                 // commit announced), a due retry, a configuration change (redeliver, purge), a
                 // recount (someone changed the queue by hand), a pass that failed before
    };

    // What an endpoint's pass does:
    //   wake:            see Wake
    //   held:            Dispatcher::held(): nothing could be sent now whatever the queue holds
    //   in_flight_events: the endpoint's events now in flight
    //   refill:          events that fill the request slots free now (batch_size * free slots)
    //   memory_full:     the endpoint's request bodies in flight alone take its memory share
    //   in_pass:         a pass asks (it may read); false: planning between passes (pipelining)
    // A held or memory-full endpoint is skipped; when the wake is not Answers, what it caches is
    // then stale (a commit may have brought events), so the next pass that plans it reads again.
    // On Answers, a valid cache that has every pending event (whole) or enough to fill the free
    // request slots is planned from; a pass also reads again when a 2xx may have released events
    // the cache holds without payload (see on_outcome). On Commits, a valid cache that is not
    // whole, holds no blocked event and fills the free slots is planned from too: it is the
    // lowest pending ids as of its read minus what was delivered, and what committed since
    // cannot go before any of them (a same-key event committed later has a larger id than every
    // cached event of its key: the writers are ordered by row locks, and the later one took its
    // id after the earlier one committed); it is read when the cache can no longer fill the
    // slots, or at the next Reread (the sweep, every pg_sync.sweep_interval). A whole cache is
    // read again on Commits: the new events are beyond it and nothing else would fetch them.
    // Read drops the cached events first, so that an old and a new head are never in memory
    // together.
    Action before_plan(std::int32_t id, Wake wake, bool held, std::size_t in_flight_events, std::size_t refill,
                       bool memory_full, bool in_pass = true);

    // A head just read: the lowest `window` queue rows (fewer: `head` has them all, unless `cut`,
    // the read stopped early at the memory share) and the endpoint's dead letters.
    void store(std::int32_t id, std::vector<QueuedEvent> head, std::vector<QueuedEvent> dead, std::size_t window,
               bool cut);

    // The cached events of an endpoint (empty when none).
    const Head &events(std::int32_t id);

    // Keeps the cache in step with an answer, as soon as it comes (before it is recorded): the
    // delivered events leave it (O(log n) each: they are near its front), so that the next events
    // of their keys may be planned from it; any other outcome (retry, dead letter, 410) changes
    // rows in ways the next read must see. Events read without payload because they were blocked
    // (behind an event in flight, a retry or a dead letter) stay blocked in the cache (planned as
    // in flight, so their keys keep their order); once a 2xx may have released some, the next
    // pass reads again (at most pg_sync.ack_delay later: that 2xx is an answer of its group),
    // while planning between passes goes on with the events that have their payload.
    void on_outcome(const Outcome &o);

    // Forgets the endpoints not in `ids` (dropped endpoints).
    void retain(const std::vector<std::int32_t> &ids);
    // Everything must be read again (the pass that changed the queue failed and rolled back).
    void invalidate_all();

    bool valid(std::int32_t id) const;
    bool whole(std::int32_t id) const;

  private:
    struct Cached {
        Head events;
        bool valid = false;
        bool whole = false;    // the read returned less than the window: nothing pending beyond it
        bool blocked = false;  // holds events read without payload that were not in flight
        bool released = false; // blocked, and a 2xx came since the read
    };
    std::map<std::int32_t, Cached> heads_;
};

} // namespace pg_sync::dispatch
