// The head-of-queue cache and the dead-letter merge (core/head_cache.hpp): what the worker reads
// and plans from decides ordering.
#include "core/head_cache.hpp"

#include <gtest/gtest.h>

using namespace pg_sync;
using dispatch::HeadCache;
using dispatch::QueuedEvent;
using Action = HeadCache::Action;
using Wake = HeadCache::Wake;

namespace {

QueuedEvent ev(std::int64_t id, bool dead = false, bool payload = true) {
    QueuedEvent q;
    q.id = id;
    q.op = "insert";
    q.table = "public.t";
    q.key = "{\"id\":" + std::to_string(id) + "}";
    q.dead = dead;
    q.payload_loaded = payload;
    return q;
}

std::vector<std::int64_t> ids(const dispatch::Head &v) {
    std::vector<std::int64_t> out;
    for (const QueuedEvent &q : v)
        out.push_back(q.id);
    return out;
}

// Events 1..n with their payload: a read that filled a window of n.
std::vector<QueuedEvent> events_1_to(int n) {
    std::vector<QueuedEvent> head;
    for (int i = 1; i <= n; ++i)
        head.push_back(ev(i));
    return head;
}

dispatch::Outcome delivered(std::int32_t ep, std::vector<std::int64_t> ids) {
    dispatch::Outcome o;
    o.endpoint_id = ep;
    o.delivered = std::move(ids);
    return o;
}

} // namespace

TEST(MergeDeadLetters, MergesInIdOrderBelowTheLastQueueRow) {
    auto merged = dispatch::merge_dead_letters({ev(2), ev(5), ev(9)}, {ev(7, true), ev(1, true), ev(12, true)});
    EXPECT_EQ(ids(merged), (std::vector<std::int64_t>{1, 2, 5, 7, 9}));
    EXPECT_TRUE(merged[0].dead);
    EXPECT_TRUE(merged[3].dead);
    EXPECT_FALSE(merged[4].dead);
}

TEST(MergeDeadLetters, QueueRowWinsOverADeadLetterWithItsId) {
    // Redelivered and dead again between the two reads: the queue row is the current one.
    auto merged = dispatch::merge_dead_letters({ev(3), ev(4), ev(8)}, {ev(4, true)});
    EXPECT_EQ(ids(merged), (std::vector<std::int64_t>{3, 4, 8}));
    EXPECT_FALSE(merged[1].dead);
}

TEST(MergeDeadLetters, DeadLetterAtOrAfterTheLastRowIsDropped) {
    EXPECT_EQ(ids(dispatch::merge_dead_letters({ev(3), ev(6)}, {ev(6, true), ev(7, true)})),
              (std::vector<std::int64_t>{3, 6}));
}

TEST(MergeDeadLetters, EmptyHeadStaysEmpty) {
    EXPECT_TRUE(dispatch::merge_dead_letters({}, {ev(1, true)}).empty());
}

TEST(HeadCache, FirstPlanReadsThenStoresAndPlansFromIt) {
    HeadCache c;
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 0, 10, false), Action::Read);
    c.store(1, {ev(1), ev(2)}, {}, 64, false);
    EXPECT_TRUE(c.valid(1));
    EXPECT_TRUE(c.whole(1)); // fewer than the window: nothing beyond it
    EXPECT_EQ(ids(c.events(1)), (std::vector<std::int64_t>{1, 2}));
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 2, 10, false), Action::PlanCached);
}

TEST(HeadCache, RereadAlwaysReadsAgain) {
    HeadCache c;
    c.store(1, {ev(1)}, {}, 64, false);
    EXPECT_EQ(c.before_plan(1, Wake::Reread, false, 0, 10, false), Action::Read);
    EXPECT_TRUE(c.events(1).empty()); // dropped before the read: never two heads in memory
    EXPECT_FALSE(c.valid(1));
}

TEST(HeadCache, PartialHeadPlansFromCacheOnlyWithEnoughWaiting) {
    HeadCache c;
    const std::vector<QueuedEvent> head = events_1_to(64);
    c.store(1, head, {}, 64, false); // the read filled the window: more may be queued
    EXPECT_FALSE(c.whole(1));
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 54, 10, false), Action::PlanCached); // 10 waiting
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 55, 10, false), Action::Read);       // 9 waiting
}

TEST(HeadCache, CommitKeepsAPartialCacheThatFillsTheFreeSlots) {
    // A commit woke the pass: a cache that is not whole and still fills the free slots is the
    // lowest pending ids minus what was delivered; nothing committed since can go before them.
    HeadCache c;
    const std::vector<QueuedEvent> head = events_1_to(64);
    c.store(1, head, {}, 64, false);
    EXPECT_EQ(c.before_plan(1, Wake::Commits, false, 54, 10, false), Action::PlanCached); // 10 waiting
    EXPECT_TRUE(c.valid(1));
    EXPECT_EQ(c.events(1).size(), 64u);
    EXPECT_EQ(c.before_plan(1, Wake::Commits, false, 55, 10, false), Action::Read); // 9 waiting
    EXPECT_FALSE(c.valid(1));
    EXPECT_TRUE(c.events(1).empty());
}

TEST(HeadCache, CommitReadsAWholeCacheAgain) {
    // Whole: nothing was pending beyond it at the read, so the new events are beyond it and only
    // a read finds them.
    HeadCache c;
    c.store(1, {ev(1), ev(2), ev(3)}, {}, 64, false);
    EXPECT_TRUE(c.whole(1));
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 0, 1, false), Action::PlanCached);
    EXPECT_EQ(c.before_plan(1, Wake::Commits, false, 0, 1, false), Action::Read);
}

TEST(HeadCache, CommitReadsACacheWithBlockedEventsAgain) {
    // Events read without payload (behind a retry, a dead letter, an event in flight) can only go
    // after a read; a commit (a redeliver, a retry's neighbour) may be what frees them.
    HeadCache c;
    std::vector<QueuedEvent> head = events_1_to(64);
    head[4].payload_loaded = false; // id 5
    c.store(1, head, {}, 64, false);
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 0, 10, false), Action::PlanCached);
    EXPECT_EQ(c.before_plan(1, Wake::Commits, false, 0, 10, false), Action::Read);
}

TEST(HeadCache, CommitReadsACutCacheOnlyWhenItCannotFillTheSlots) {
    HeadCache c;
    c.store(1, {ev(1), ev(2), ev(3)}, {}, 64, true); // the memory share ended the read
    EXPECT_EQ(c.before_plan(1, Wake::Commits, false, 0, 3, false), Action::PlanCached);
    EXPECT_EQ(c.before_plan(1, Wake::Commits, false, 1, 3, false), Action::Read);
}

TEST(HeadCache, CommitMakesAHeldOrMemoryFullCacheStaleRereadAlwaysReads) {
    HeadCache c;
    const std::vector<QueuedEvent> head = events_1_to(64);
    c.store(1, head, {}, 64, false);
    EXPECT_EQ(c.before_plan(1, Wake::Reread, false, 0, 10, false), Action::Read); // sweep, retry, config
    c.store(1, head, {}, 64, false);
    EXPECT_EQ(c.before_plan(1, Wake::Commits, true, 0, 10, false), Action::Skip);
    EXPECT_FALSE(c.valid(1));
    c.store(1, head, {}, 64, false);
    EXPECT_EQ(c.before_plan(1, Wake::Commits, false, 60, 10, true), Action::Skip);
    EXPECT_FALSE(c.valid(1));
}

TEST(HeadCache, CutReadIsNotWhole) {
    HeadCache c;
    c.store(1, {ev(1)}, {}, 64, true);
    EXPECT_FALSE(c.whole(1));
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 1, 10, false), Action::Read);
}

TEST(HeadCache, HeldEndpointIsSkippedAndAFullPassMakesItStale) {
    HeadCache c;
    c.store(1, {ev(1)}, {}, 64, false);
    EXPECT_EQ(c.before_plan(1, Wake::Answers, true, 0, 10, false), Action::Skip);
    EXPECT_TRUE(c.valid(1));
    EXPECT_EQ(c.before_plan(1, Wake::Reread, true, 0, 10, false), Action::Skip);
    EXPECT_FALSE(c.valid(1)); // a commit may have brought events: read next time
}

TEST(HeadCache, MemoryFullSkipsUnlessTheCacheCanServe) {
    HeadCache c;
    c.store(1, {ev(1), ev(2)}, {}, 64, false);
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 0, 10, true), Action::PlanCached);
    EXPECT_EQ(c.before_plan(1, Wake::Reread, false, 0, 10, true), Action::Skip);
    EXPECT_FALSE(c.valid(1));
}

TEST(HeadCache, DeliveredEventsLeaveOtherOutcomesInvalidate) {
    HeadCache c;
    c.store(1, {ev(1), ev(2), ev(3)}, {}, 64, false);
    c.on_outcome(delivered(1, {1, 3}));
    EXPECT_TRUE(c.valid(1));
    EXPECT_EQ(ids(c.events(1)), (std::vector<std::int64_t>{2}));
    dispatch::Outcome retry;
    retry.endpoint_id = 1;
    retry.verdict = retry::Verdict::Retry;
    retry.retry = {2};
    c.on_outcome(retry);
    EXPECT_FALSE(c.valid(1));

    c.store(2, {ev(5)}, {}, 64, false);
    dispatch::Outcome gone;
    gone.endpoint_id = 2;
    gone.verdict = retry::Verdict::Gone;
    c.on_outcome(gone);
    EXPECT_FALSE(c.valid(2));
}

TEST(HeadCache, EventsWithoutPayloadNeedANewRead) {
    HeadCache c;
    c.store(1, {ev(1), ev(2, false, false)}, {}, 64, false);
    c.on_outcome(delivered(1, {1}));
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 0, 1, false), Action::Read); // by the next pass
}

TEST(HeadCache, StoreMergesDeadLetters) {
    HeadCache c;
    c.store(1, {ev(2), ev(4)}, {ev(3, true), ev(1, true)}, 64, false);
    EXPECT_EQ(ids(c.events(1)), (std::vector<std::int64_t>{1, 2, 3, 4}));
}

TEST(HeadCache, RetainAndInvalidateAll) {
    HeadCache c;
    c.store(1, {ev(1)}, {}, 64, false);
    c.store(2, {ev(2)}, {}, 64, false);
    c.retain({2});
    EXPECT_FALSE(c.valid(1));
    EXPECT_TRUE(c.valid(2));
    c.invalidate_all();
    EXPECT_FALSE(c.valid(2));
    EXPECT_TRUE(c.events(2).empty());
}

namespace {
QueuedEvent read_in_flight(std::int64_t id) {
    QueuedEvent q = ev(id, false, false);
    q.in_flight_at_read = true;
    return q;
}
} // namespace

TEST(HeadCache, EventsReadInFlightLeaveWithTheirRequest) {
    // A read while requests are out keeps their events without payload; their 2xx removes them
    // and the cache stays valid (planning goes on from it between reads: pipelining).
    HeadCache c;
    c.store(1, {read_in_flight(1), read_in_flight(2), ev(3), ev(4)}, {}, 64, false);
    c.on_outcome(delivered(1, {2}));
    EXPECT_TRUE(c.valid(1));
    c.on_outcome(delivered(1, {1}));
    EXPECT_TRUE(c.valid(1));
    EXPECT_EQ(ids(c.events(1)), (std::vector<std::int64_t>{3, 4}));
}

TEST(HeadCache, AfterADeliveryBlockedEventsWaitForTheNextPassToRead) {
    // Read without payload while not in flight (behind a dead letter, a retry or an event in
    // flight): it needs a read before it can go. Planning between passes goes on with the events
    // that have their payload; the next pass reads.
    HeadCache c;
    c.store(1, {read_in_flight(1), ev(2, false, false), ev(3)}, {}, 64, false);
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 1, 1, false, true), Action::PlanCached); // nothing released yet
    c.on_outcome(delivered(1, {1}));
    EXPECT_TRUE(c.valid(1));
    EXPECT_EQ(ids(c.events(1)), (std::vector<std::int64_t>{2, 3}));
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 0, 1, false, false), Action::PlanCached); // between passes
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 0, 1, false, true), Action::Read);        // a pass
    c.store(1, {ev(2), ev(3)}, {}, 64, false);
    c.on_outcome(delivered(1, {2}));
    EXPECT_EQ(c.before_plan(1, Wake::Answers, false, 0, 1, false, true), Action::PlanCached); // nothing blocked
}

TEST(HeadCache, DeliveredEventsLeaveInAnyOrderAndPattern) {
    HeadCache c;
    std::vector<QueuedEvent> head;
    for (int i = 1; i <= 20; ++i)
        head.push_back(ev(i * 10));
    c.store(1, head, {}, 64, false);
    c.on_outcome(delivered(1, {50, 60, 70, 150, 10, 11 /* not cached */, 200}));
    EXPECT_TRUE(c.valid(1));
    EXPECT_EQ(ids(c.events(1)),
              (std::vector<std::int64_t>{20, 30, 40, 80, 90, 100, 110, 120, 130, 140, 160, 170, 180, 190}));
    c.on_outcome(delivered(1, {20, 30, 40}));
    c.on_outcome(delivered(1, {190, 80}));
    EXPECT_EQ(ids(c.events(1)), (std::vector<std::int64_t>{90, 100, 110, 120, 130, 140, 160, 170, 180}));
}

// Pipelining as the worker does it between passes (src/pg/delivery_loop.cpp): a 2xx drops its
// events from the cached head at once, and the next event of the key is planned from the cache,
// before any outcome is recorded; never two requests of a key in flight.
TEST(HeadCache, PipeliningPlansTheNextEventOfAKeyOnlyAfterItsPredecessorsAnswer) {
    dispatch::Dispatcher d("scope", 1, 5);
    dispatch::EndpointConfig c;
    c.id = 1;
    c.url = "http://127.0.0.1:1/hook";
    c.batch_size = 1;
    c.max_in_flight = 4;
    d.configure({c});
    HeadCache cache;
    auto key_event = [](std::int64_t id, int key) {
        QueuedEvent q = ev(id);
        q.key = "{\"id\":" + std::to_string(key) + "}";
        return q;
    };
    // Key 1: ids 1, 3, 5; key 2: ids 2, 4.
    cache.store(1, {key_event(1, 1), key_event(2, 2), key_event(3, 1), key_event(4, 2), key_event(5, 1)}, {}, 1000,
                false);
    std::vector<sink::Request> first = d.plan(1, cache.events(1), 1000);
    ASSERT_EQ(first.size(), 2u); // 1 and 2; 3, 4, 5 wait for their keys
    std::vector<std::int64_t> answered;
    for (int round = 0; round < 3 && !first.empty(); ++round) {
        // Every request answered 2xx; nothing recorded (no read), the next ones come from the cache.
        std::vector<sink::Request> next;
        for (const sink::Request &r : first) {
            sink::Completion done;
            done.token = r.token;
            done.status = 204;
            const auto o = d.complete(done, 1001);
            ASSERT_TRUE(o);
            cache.on_outcome(*o);
            ASSERT_TRUE(cache.valid(1));
            answered.insert(answered.end(), o->delivered.begin(), o->delivered.end());
            EXPECT_EQ(d.in_flight_requests(1), d.in_flight_requests()); // one endpoint
            for (sink::Request &n : d.plan(1, cache.events(1), 1001 + round))
                next.push_back(std::move(n));
        }
        first = std::move(next);
    }
    EXPECT_EQ(answered, (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
    EXPECT_TRUE(cache.events(1).empty());
}
