// Unit tests of src/core/scheduler.{hpp,cpp}: batching, in-flight limits, per-key order,
// truncate barriers, emit keys, probe mode, and a randomized simulation of many delivery rounds.
#include "core/scheduler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace scheduler = pg_sync::scheduler;
using scheduler::Batch;
using Event = scheduler::Candidate;
using Kind = scheduler::OrderKind;
using scheduler::Limits;
using scheduler::State;
using Ids = std::vector<std::vector<std::int64_t>>;

constexpr std::int64_t kNow = 1'000'000;

Event row(std::int64_t id, const std::string &table, const std::string &key_json, State state = State::Queued,
          std::int64_t next_attempt_at_ms = 0, std::size_t bytes = 100) {
    Event e;
    e.id = id;
    e.kind = Kind::Row;
    e.table = table;
    e.key = scheduler::row_key(table, key_json);
    e.state = state;
    e.next_attempt_at_ms = next_attempt_at_ms;
    e.bytes = bytes;
    return e;
}

// Row of public.t with key {"id":k}.
Event row_k(std::int64_t id, int k, State state = State::Queued, std::int64_t next_attempt_at_ms = 0) {
    return row(id, "public.t", "{\"id\":" + std::to_string(k) + "}", state, next_attempt_at_ms);
}

Event truncate(std::int64_t id, const std::string &table, State state = State::Queued,
               std::int64_t next_attempt_at_ms = 0) {
    Event e;
    e.id = id;
    e.kind = Kind::Truncate;
    e.table = table;
    e.state = state;
    e.next_attempt_at_ms = next_attempt_at_ms;
    e.bytes = 80;
    return e;
}

Event emit(std::int64_t id, std::optional<std::string> key, State state = State::Queued,
           std::int64_t next_attempt_at_ms = 0) {
    Event e;
    e.id = id;
    e.kind = Kind::Emit;
    e.key = key ? scheduler::emit_key(std::string_view(*key)) : scheduler::emit_key(std::nullopt);
    e.state = state;
    e.next_attempt_at_ms = next_attempt_at_ms;
    e.bytes = 60;
    return e;
}

Limits limits(std::size_t batch_size, std::size_t max_in_flight = 4, std::size_t in_flight = 0) {
    Limits l;
    l.batch_size = batch_size;
    l.max_in_flight = max_in_flight;
    l.in_flight_requests = in_flight;
    return l;
}

// The plan as ids per request, which is what the tests state.
Ids ids_of(const std::vector<Batch> &batches, const std::vector<Event> &events) {
    Ids out;
    for (const Batch &b : batches) {
        out.emplace_back();
        for (std::size_t i : b.events)
            out.back().push_back(events.at(i).id);
    }
    return out;
}

Ids plan_ids(const std::vector<Event> &events, const Limits &l, std::int64_t now = kNow) {
    return ids_of(scheduler::plan(events, l, now), events);
}

// ---------------------------------------------------------------------------------------------
// Keys

TEST(SchedulerKeys, RowKeysDifferByTableAndKey) {
    EXPECT_EQ(scheduler::row_key("public.t", "{\"id\":1}"), scheduler::row_key("public.t", "{\"id\":1}"));
    EXPECT_NE(scheduler::row_key("public.t", "{\"id\":1}"), scheduler::row_key("public.t", "{\"id\":2}"));
    EXPECT_NE(scheduler::row_key("public.t", "{\"id\":1}"), scheduler::row_key("public.u", "{\"id\":1}"));
    // The separator keeps (table, key) pairs apart even when the concatenations would match.
    EXPECT_NE(scheduler::row_key("ab", "c"), scheduler::row_key("a", "bc"));
}

TEST(SchedulerKeys, EmitKeysHaveTheirOwnNamespace) {
    EXPECT_EQ(scheduler::emit_key(std::nullopt), "");
    EXPECT_FALSE(scheduler::emit_key(std::string_view("")).empty()); // "" is a key, NULL is not
    EXPECT_EQ(scheduler::emit_key(std::string_view("k")), scheduler::emit_key(std::string_view("k")));
    EXPECT_NE(scheduler::emit_key(std::string_view("k")), scheduler::emit_key(std::string_view("j")));
    // An emit key spelled like a row key is still a different key.
    const std::string r = scheduler::row_key("t", "1");
    EXPECT_NE(scheduler::emit_key(std::string_view(r)), r);
    EXPECT_NE(scheduler::emit_key(std::string_view(r.substr(1))), r);
}

// ---------------------------------------------------------------------------------------------
// Batching and limits

TEST(SchedulerBatching, EmptyInputPlansNothing) {
    EXPECT_TRUE(scheduler::plan({}, limits(10), kNow).empty());
}

TEST(SchedulerBatching, ReadyEventsOfDifferentKeysShareOneRequest) {
    std::vector<Event> ev;
    for (int i = 1; i <= 5; ++i)
        ev.push_back(row_k(i, i));
    EXPECT_EQ(plan_ids(ev, limits(100)), (Ids{{1, 2, 3, 4, 5}}));
}

TEST(SchedulerBatching, BatchPositionsAreIndexesIntoTheInput) {
    std::vector<Event> ev{row_k(10, 1), row_k(20, 2, State::InFlight), row_k(30, 3)};
    ev[0].bytes = 7;
    ev[2].bytes = 5;
    const auto batches = scheduler::plan(ev, limits(100), kNow);
    ASSERT_EQ(batches.size(), 1u);
    EXPECT_EQ(batches[0].events, (std::vector<std::size_t>{0, 2}));
    EXPECT_EQ(batches[0].bytes, 12u);
}

TEST(SchedulerBatching, BatchSizeSplitsIntoRequestsInIdOrder) {
    std::vector<Event> ev;
    for (int i = 1; i <= 10; ++i)
        ev.push_back(row_k(i, i));
    EXPECT_EQ(plan_ids(ev, limits(3)), (Ids{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10}}));
    EXPECT_EQ(plan_ids(ev, limits(1, 2)), (Ids{{1}, {2}}));
}

TEST(SchedulerBatching, MaxInFlightCountsRequestsAlreadyInFlight) {
    std::vector<Event> ev;
    for (int i = 1; i <= 10; ++i)
        ev.push_back(row_k(i, i));
    EXPECT_EQ(plan_ids(ev, limits(2, 3, 0)), (Ids{{1, 2}, {3, 4}, {5, 6}}));
    EXPECT_EQ(plan_ids(ev, limits(2, 3, 1)), (Ids{{1, 2}, {3, 4}}));
    EXPECT_EQ(plan_ids(ev, limits(2, 3, 2)), (Ids{{1, 2}}));
    EXPECT_EQ(plan_ids(ev, limits(2, 3, 3)), Ids{});
    // max_in_flight lowered by alter_endpoint below what is in flight now.
    EXPECT_EQ(plan_ids(ev, limits(2, 3, 5)), Ids{});
    EXPECT_EQ(plan_ids(ev, limits(2, 0, 0)), Ids{});
}

TEST(SchedulerBatching, MaxRequestsCapsThePlan) {
    std::vector<Event> ev;
    for (int i = 1; i <= 10; ++i)
        ev.push_back(row_k(i, i));
    Limits l = limits(2, 4);
    l.max_requests = 1;
    EXPECT_EQ(plan_ids(ev, l), (Ids{{1, 2}}));
    l.max_requests = 0;
    EXPECT_EQ(plan_ids(ev, l), Ids{});
}

TEST(SchedulerBatching, ZeroBatchSizePlansNothing) { EXPECT_EQ(plan_ids({row_k(1, 1)}, limits(0)), Ids{}); }

TEST(SchedulerBatching, PausedEndpointPlansNothing) {
    std::vector<Event> ev{row_k(1, 1), row_k(2, 2), emit(3, std::nullopt)};
    Limits l = limits(10);
    l.paused = true;
    EXPECT_EQ(plan_ids(ev, l), Ids{});
    l.paused = false;
    EXPECT_EQ(plan_ids(ev, l), (Ids{{1, 2, 3}}));
}

TEST(SchedulerBatching, RequestByteCap) {
    std::vector<Event> ev;
    for (int i = 1; i <= 5; ++i) {
        ev.push_back(row_k(i, i));
        ev.back().bytes = 400;
    }
    Limits l = limits(100);
    l.max_request_bytes = 1000;
    const auto batches = scheduler::plan(ev, l, kNow);
    EXPECT_EQ(ids_of(batches, ev), (Ids{{1, 2}, {3, 4}, {5}}));
    for (const Batch &b : batches)
        EXPECT_LE(b.bytes, 1000u);
    l.max_request_bytes = 800; // exactly two fit
    EXPECT_EQ(plan_ids(ev, l), (Ids{{1, 2}, {3, 4}, {5}}));
    l.max_request_bytes = 799;
    EXPECT_EQ(plan_ids(ev, l), (Ids{{1}, {2}, {3}, {4}}));
}

TEST(SchedulerBatching, EventLargerThanTheByteCapGoesAlone) {
    std::vector<Event> ev{row_k(1, 1), row_k(2, 2), row_k(3, 3), row_k(4, 3)};
    ev[1].bytes = 5000;
    Limits l = limits(100);
    l.max_request_bytes = 1000;
    EXPECT_EQ(plan_ids(ev, l), (Ids{{1}, {2}, {3, 4}}));
    // Same key after the oversized one: it cannot join (cap) and cannot go elsewhere (order).
    std::vector<Event> same{row_k(1, 1), row_k(2, 1), row_k(3, 2)};
    same[0].bytes = 5000;
    EXPECT_EQ(plan_ids(same, l), (Ids{{1}, {3}}));
}

TEST(SchedulerBatching, RejectsInputOutOfIdOrder) {
    EXPECT_THROW(scheduler::plan({row_k(2, 1), row_k(1, 2)}, limits(10), kNow), std::invalid_argument);
    EXPECT_THROW(scheduler::plan({row_k(1, 1), row_k(1, 2)}, limits(10), kNow), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Per-key order

TEST(SchedulerOrder, SameKeyWaitsBehindInFlight) {
    std::vector<Event> ev{row_k(1, 1, State::InFlight), row_k(2, 2), row_k(3, 1), row_k(4, 1)};
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{2}}));
}

TEST(SchedulerOrder, SameKeyWaitsBehindRetryUntilItIsDue) {
    std::vector<Event> ev{row_k(1, 1, State::Queued, kNow + 1), row_k(2, 1), row_k(3, 2)};
    EXPECT_EQ(plan_ids(ev, limits(10), kNow), (Ids{{3}}));
    // Due exactly now: it goes, and the later event of its key goes behind it, in the same request.
    EXPECT_EQ(plan_ids(ev, limits(10), kNow + 1), (Ids{{1, 2, 3}}));
}

TEST(SchedulerOrder, SameKeyWaitsBehindDeadUntilItIsGone) {
    std::vector<Event> ev{row_k(1, 1, State::Dead), row_k(2, 2), row_k(3, 1), row_k(4, 1)};
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{2}}));
    EXPECT_EQ(plan_ids(ev, limits(10), kNow + 86'400'000), (Ids{{2}})); // time does not release it
    // Purged: later events of the key go.
    std::vector<Event> purged{ev[1], ev[2], ev[3]};
    EXPECT_EQ(plan_ids(purged, limits(10)), (Ids{{2, 3, 4}}));
    // Redelivered: back in the queue, it goes first, the others behind it.
    ev[0].state = State::Queued;
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{1, 2, 3, 4}}));
}

TEST(SchedulerOrder, SameKeyEventsShareARequestInIdOrder) {
    std::vector<Event> ev{row_k(1, 7), row_k(2, 7), row_k(3, 8), row_k(4, 7)};
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{1, 2, 3, 4}}));
}

TEST(SchedulerOrder, SameKeyNeverSpreadsOverTwoRequests) {
    // Key 1's first two fill request 0; its third may not go in request 1, which could arrive
    // first or succeed while request 0 fails. Other keys carry on in request 1.
    std::vector<Event> ev{row_k(1, 1), row_k(2, 1), row_k(3, 1), row_k(4, 2), row_k(5, 1), row_k(6, 3)};
    EXPECT_EQ(plan_ids(ev, limits(2)), (Ids{{1, 2}, {4, 6}}));
    // Both keys are pinned to the full request 0: nothing else goes.
    std::vector<Event> ev2{row_k(1, 1), row_k(2, 2), row_k(3, 2), row_k(4, 1)};
    EXPECT_EQ(plan_ids(ev2, limits(2)), (Ids{{1, 2}}));
}

TEST(SchedulerOrder, SameKeyJoinsAnEarlierRequestThatHasRoom) {
    // With a byte cap, request 0 keeps room while request 1 is open; key 1 must stay in request 0.
    std::vector<Event> ev{row_k(1, 1), row_k(2, 2), row_k(3, 1)};
    ev[0].bytes = 100;
    ev[1].bytes = 950;
    ev[2].bytes = 100;
    Limits l = limits(10);
    l.max_request_bytes = 1000;
    EXPECT_EQ(plan_ids(ev, l), (Ids{{1, 3}, {2}}));
}

TEST(SchedulerOrder, BlockedKeysDoNotBlockOthers) {
    std::vector<Event> ev{row_k(1, 1, State::InFlight),
                          row_k(2, 2),
                          row_k(3, 1),
                          row_k(4, 3, State::Queued, kNow + 500),
                          row_k(5, 1),
                          row_k(6, 2),
                          row_k(7, 3),
                          row_k(8, 4, State::Dead),
                          row_k(9, 5),
                          row_k(10, 4)};
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{2, 6, 9}}));
    EXPECT_EQ(plan_ids(ev, limits(2)), (Ids{{2, 6}, {9}}));
}

TEST(SchedulerOrder, SameKeyJsonInDifferentTablesIsUnrelated) {
    std::vector<Event> ev{row(1, "public.a", "{\"id\":1}", State::InFlight), row(2, "public.b", "{\"id\":1}"),
                          row(3, "public.a", "{\"id\":1}")};
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{2}}));
}

TEST(SchedulerOrder, FullScanFindsReadyEventsBehindManyBlockedOnes) {
    // 100k events, all behind in-flight heads except one key at the very end.
    std::vector<Event> ev;
    ev.reserve(100'001);
    for (int i = 0; i < 100'000; ++i)
        ev.push_back(row_k(i + 1, i % 1000, i < 1000 ? State::InFlight : State::Queued));
    ev.push_back(row_k(100'001, 5000));
    const auto start = std::chrono::steady_clock::now();
    const Ids got = plan_ids(ev, limits(100));
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    EXPECT_EQ(got, (Ids{{100'001}}));
    RecordProperty("plan_100k_ms", static_cast<int>(ms.count()));
}

TEST(SchedulerOrder, StopsOnceEveryRequestIsFull) {
    // Many ready events, a few requests: the plan takes the lowest ids.
    std::vector<Event> ev;
    for (int i = 1; i <= 100'000; ++i)
        ev.push_back(row_k(i, i));
    const auto batches = scheduler::plan(ev, limits(100, 4), kNow);
    ASSERT_EQ(batches.size(), 4u);
    for (std::size_t b = 0; b < 4; ++b) {
        ASSERT_EQ(batches[b].events.size(), 100u);
        EXPECT_EQ(batches[b].events.front(), b * 100);
        EXPECT_EQ(batches[b].events.back(), b * 100 + 99);
    }
}

// ---------------------------------------------------------------------------------------------
// Truncate barrier

TEST(SchedulerTruncate, WaitsForEveryEarlierEventOfItsTable) {
    for (State s : {State::InFlight, State::Dead}) {
        std::vector<Event> ev{row(1, "public.t", "{\"id\":1}", s), row(2, "public.u", "{\"id\":1}"),
                              truncate(3, "public.t"), row(4, "public.t", "{\"id\":2}"),
                              row(5, "public.u", "{\"id\":2}")};
        EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{2, 5}})) << static_cast<int>(s);
    }
    std::vector<Event> retry{row(1, "public.t", "{\"id\":1}", State::Queued, kNow + 10),
                             truncate(2, "public.t"), row(3, "public.t", "{\"id\":2}")};
    EXPECT_EQ(plan_ids(retry, limits(10)), Ids{});
    EXPECT_EQ(plan_ids(retry, limits(10), kNow + 10), (Ids{{1, 2, 3}}));
}

TEST(SchedulerTruncate, LaterEventsOfItsTableWaitForIt) {
    for (State s : {State::InFlight, State::Dead}) {
        std::vector<Event> ev{truncate(1, "public.t", s), row(2, "public.t", "{\"id\":1}"),
                              row(3, "public.u", "{\"id\":1}"), row(4, "public.t", "{\"id\":2}")};
        EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{3}})) << static_cast<int>(s);
    }
    std::vector<Event> retry{truncate(1, "public.t", State::Queued, kNow + 10),
                             row(2, "public.t", "{\"id\":1}"), truncate(3, "public.t")};
    EXPECT_EQ(plan_ids(retry, limits(10)), Ids{});
}

TEST(SchedulerTruncate, GoesInTheSameRequestAsTheEventsAroundIt) {
    std::vector<Event> ev{row(1, "public.t", "{\"id\":1}"), row(2, "public.t", "{\"id\":2}"),
                          truncate(3, "public.t"), row(4, "public.t", "{\"id\":1}"),
                          row(5, "public.t", "{\"id\":3}")};
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{1, 2, 3, 4, 5}}));
}

TEST(SchedulerTruncate, HeldBackWhenEarlierEventsOfItsTableAreInAnotherRequest) {
    // Request 0 is full with rows of t: the truncate cannot go in request 1, nor can later rows of t.
    std::vector<Event> ev{row(1, "public.t", "{\"id\":1}"), row(2, "public.t", "{\"id\":2}"),
                          truncate(3, "public.t"), row(4, "public.t", "{\"id\":3}"),
                          row(5, "public.u", "{\"id\":1}")};
    EXPECT_EQ(plan_ids(ev, limits(2)), (Ids{{1, 2}, {5}}));
    // Rows of t spread over two requests (different keys may): the truncate can join neither.
    std::vector<Event> spread{row(1, "public.t", "{\"id\":1}"), row(2, "public.t", "{\"id\":2}"),
                              truncate(3, "public.t"), row(4, "public.u", "{\"id\":1}")};
    EXPECT_EQ(plan_ids(spread, limits(1)), (Ids{{1}, {2}, {4}}));
    // Same, with room left in the request holding the last row of t.
    std::vector<Event> mixed{row(1, "public.t", "{\"id\":1}"), row(2, "public.u", "{\"id\":1}"),
                             row(3, "public.t", "{\"id\":2}"), truncate(4, "public.t"),
                             row(5, "public.u", "{\"id\":2}")};
    EXPECT_EQ(plan_ids(mixed, limits(2)), (Ids{{1, 2}, {3, 5}}));
}

TEST(SchedulerTruncate, RowsAfterItStayInItsRequest) {
    std::vector<Event> ev{truncate(1, "public.t"), row(2, "public.u", "{\"id\":1}"),
                          row(3, "public.t", "{\"id\":1}"), row(4, "public.u", "{\"id\":2}"),
                          row(5, "public.t", "{\"id\":2}")};
    EXPECT_EQ(plan_ids(ev, limits(2)), (Ids{{1, 2}, {4}}));
    EXPECT_EQ(plan_ids(ev, limits(3)), (Ids{{1, 2, 3}, {4}}));
}

TEST(SchedulerTruncate, SuccessiveTruncates) {
    std::vector<Event> ev{truncate(1, "public.t"), truncate(2, "public.t"), row(3, "public.t", "{\"id\":1}")};
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{1, 2, 3}}));
    EXPECT_EQ(plan_ids(ev, limits(1)), (Ids{{1}}));
    ev[0].state = State::InFlight;
    EXPECT_EQ(plan_ids(ev, limits(10)), Ids{});
}

TEST(SchedulerTruncate, OtherTablesAndEmitsAreNotBehindIt) {
    std::vector<Event> ev{truncate(1, "public.t", State::Dead), row(2, "public.t2", "{\"id\":1}"),
                          emit(3, std::string("public.t")), emit(4, std::nullopt)};
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{2, 3, 4}}));
}

TEST(SchedulerTruncate, RowWithoutKeyStillRespectsTheBarrier) {
    Event keyless = row(2, "public.t", "{}");
    keyless.key.clear();
    Event keyless2 = row(3, "public.t", "{}");
    keyless2.key.clear();
    std::vector<Event> ev{truncate(1, "public.t", State::InFlight), keyless};
    EXPECT_EQ(plan_ids(ev, limits(10)), Ids{});
    // Without a truncate, keyless rows are ordered with nothing.
    std::vector<Event> unordered{row(1, "public.t", "{}", State::InFlight), keyless, keyless2};
    unordered[0].key.clear();
    EXPECT_EQ(plan_ids(unordered, limits(1)), (Ids{{2}, {3}}));
}

// ---------------------------------------------------------------------------------------------
// Emit

TEST(SchedulerEmit, OrderedByItsKey) {
    std::vector<Event> ev{emit(1, std::string("a"), State::InFlight), emit(2, std::string("a")),
                          emit(3, std::string("b")), emit(4, std::string("b")), emit(5, std::string("a"))};
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{3, 4}}));
    EXPECT_EQ(plan_ids(ev, limits(1)), (Ids{{3}}));
}

TEST(SchedulerEmit, KeyNamespaceIsSeparateFromRows) {
    // A row of table "a" with key "b" in flight does not hold back emits keyed like it, and back.
    const std::string row_text = scheduler::row_key("a", "b");
    std::vector<Event> ev{row(1, "a", "b", State::InFlight),
                          emit(2, row_text),
                          emit(3, std::string("a")),
                          emit(4, std::string("b")),
                          emit(5, std::string("x"), State::Dead),
                          row(6, "x", "x"),
                          row(7, "a", "c")};
    EXPECT_EQ(plan_ids(ev, limits(10)), (Ids{{2, 3, 4, 6, 7}}));
}

TEST(SchedulerEmit, NullKeyIsOrderedWithNothing) {
    std::vector<Event> ev{emit(1, std::nullopt, State::Dead), emit(2, std::nullopt, State::InFlight),
                          emit(3, std::nullopt), emit(4, std::nullopt), emit(5, std::nullopt)};
    EXPECT_EQ(plan_ids(ev, limits(1)), (Ids{{3}, {4}, {5}}));
    // An empty-string key is a real key.
    std::vector<Event> empty{emit(1, std::string(""), State::InFlight), emit(2, std::string("")),
                             emit(3, std::nullopt)};
    EXPECT_EQ(plan_ids(empty, limits(10)), (Ids{{3}}));
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker probe

TEST(SchedulerProbe, OneRequestOfAtMostNEventsAndNoneWhileOneIsOut) {
    std::vector<Event> ev;
    for (int i = 1; i <= 10; ++i)
        ev.push_back(row_k(i, i));
    const Limits normal = limits(100, 8);
    EXPECT_EQ(plan_ids(ev, scheduler::probe_only(normal)), (Ids{{1}}));
    EXPECT_EQ(plan_ids(ev, scheduler::probe_only(normal, 3)), (Ids{{1, 2, 3}}));
    EXPECT_EQ(plan_ids(ev, scheduler::probe_only(limits(2, 8), 3)), (Ids{{1, 2}}));
    Limits out = normal;
    out.in_flight_requests = 1;
    EXPECT_EQ(plan_ids(ev, scheduler::probe_only(out)), Ids{});
    Limits paused = normal;
    paused.paused = true;
    EXPECT_EQ(plan_ids(ev, scheduler::probe_only(paused)), Ids{});
}

TEST(SchedulerProbe, ProbeRespectsOrder) {
    std::vector<Event> ev{row_k(1, 1, State::Queued, kNow + 100), row_k(2, 1), row_k(3, 2)};
    EXPECT_EQ(plan_ids(ev, scheduler::probe_only(limits(100, 4))), (Ids{{3}}));
}

// ---------------------------------------------------------------------------------------------
// Randomized simulation: plan -> send -> random outcomes in random completion order -> retries,
// dead letters, redelivery, purges, new events; a receiver checks the order of what it gets.

struct Origin { // what the event is, independently of how the scheduler encodes keys
    Kind kind;
    int table; // -1 for emits
    std::optional<int> key;
};

// p must reach the receiver before e.
bool precedes(const Origin &p, std::int64_t p_id, const Origin &e, std::int64_t e_id) {
    if (p_id >= e_id)
        return false;
    switch (e.kind) {
    case Kind::Row:
        return p.table == e.table && (p.kind == Kind::Truncate || (p.kind == Kind::Row && p.key == e.key));
    case Kind::Truncate:
        return p.table == e.table && p.kind != Kind::Emit;
    case Kind::Emit:
        return p.kind == Kind::Emit && e.key && p.key == e.key;
    }
    return false;
}

class Simulation {
  public:
    explicit Simulation(unsigned seed) : rng_(seed) {}

    void run(int rounds, bool failures) {
        for (int r = 0; r < rounds; ++r) {
            if (failures)
                add_events(pick(0, 3));
            round(failures);
            if (::testing::Test::HasFailure())
                return;
        }
    }

    // No new events, no failures, dead letters redelivered: the queue must drain.
    void drain() {
        for (Event &e : queue_)
            if (e.state == State::Dead) {
                e.state = State::Queued;
                e.next_attempt_at_ms = 0;
                attempts_[e.id] = 0;
            }
        for (int r = 0; r < 20'000 && !(queue_.empty() && in_flight_.empty()); ++r) {
            round(false);
            if (::testing::Test::HasFailure())
                return;
        }
        EXPECT_TRUE(queue_.empty());
        EXPECT_TRUE(in_flight_.empty());
        EXPECT_EQ(received_.size() + purged_.size(), origin_.size());
    }

    std::size_t received() const { return received_.size(); }
    std::size_t purged() const { return purged_.size(); }
    std::size_t requests() const { return requests_; }

  private:
    int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
    bool chance(int percent) { return pick(1, 100) <= percent; }

    void add_events(int n) {
        static const char *const tables[] = {"public.a", "public.b", "a"};
        for (int i = 0; i < n; ++i) {
            Event e;
            e.id = next_id_;
            next_id_ += pick(1, 3); // ids need not be dense
            e.bytes = static_cast<std::size_t>(pick(50, 400));
            Origin o{Kind::Row, -1, std::nullopt};
            const int roll = pick(1, 100);
            if (roll <= 72) {
                o.table = pick(0, 2);
                o.key = pick(0, 5);
                e.table = tables[o.table];
                e.key = scheduler::row_key(e.table, "{\"id\":" + std::to_string(*o.key) + "}");
            } else if (roll <= 76) {
                o.kind = e.kind = Kind::Truncate;
                o.table = pick(0, 2);
                e.table = tables[o.table];
            } else if (roll <= 90) {
                o.kind = e.kind = Kind::Emit;
                o.key = pick(0, 3);
                // Key 0 is spelled like a table name, to show namespaces do not mix.
                e.key = scheduler::emit_key(std::string_view(*o.key == 0 ? "a" : std::to_string(*o.key)));
            } else {
                o.kind = e.kind = Kind::Emit;
                e.key = scheduler::emit_key(std::nullopt);
            }
            origin_.emplace(e.id, o);
            queue_.push_back(std::move(e));
        }
    }

    Limits random_limits() {
        Limits l;
        l.batch_size = static_cast<std::size_t>(pick(1, 6));
        l.max_in_flight = static_cast<std::size_t>(pick(1, 4));
        l.in_flight_requests = in_flight_.size();
        if (chance(25))
            l.max_request_bytes = static_cast<std::size_t>(pick(100, 1200));
        l.paused = chance(5);
        if (chance(10))
            l = scheduler::probe_only(l, static_cast<std::size_t>(pick(1, 3)));
        return l;
    }

    void round(bool failures) {
        now_ += pick(0, 20);
        const Limits l = random_limits();
        const std::vector<Batch> batches = scheduler::plan(queue_, l, now_);
        check_plan(batches, l);
        if (::testing::Test::HasFailure())
            return;
        for (const Batch &b : batches) {
            std::vector<std::int64_t> ids;
            for (std::size_t i : b.events) {
                queue_[i].state = State::InFlight;
                ids.push_back(queue_[i].id);
            }
            in_flight_.push_back(std::move(ids));
            ++requests_;
        }
        complete_some(failures);
        if (failures)
            tend_dead_letters();
    }

    // Checks that hold for every plan, against the oracle `precedes`.
    void check_plan(const std::vector<Batch> &batches, const Limits &l) {
        std::size_t slots =
            l.max_in_flight > l.in_flight_requests ? l.max_in_flight - l.in_flight_requests : 0;
        slots = std::min(slots, l.max_requests);
        if (l.paused)
            slots = 0;
        ASSERT_LE(batches.size(), slots);
        std::map<std::size_t, std::pair<std::size_t, std::size_t>> where; // index -> (batch, position)
        for (std::size_t b = 0; b < batches.size(); ++b) {
            const Batch &batch = batches[b];
            ASSERT_FALSE(batch.events.empty());
            ASSERT_LE(batch.events.size(), l.batch_size);
            std::size_t bytes = 0;
            for (std::size_t p = 0; p < batch.events.size(); ++p) {
                const std::size_t i = batch.events[p];
                ASSERT_LT(i, queue_.size());
                if (p > 0) {
                    ASSERT_LT(batch.events[p - 1], i) << "request not in id order";
                }
                ASSERT_TRUE(where.emplace(i, std::make_pair(b, p)).second) << "event in two requests";
                ASSERT_EQ(queue_[i].state, State::Queued);
                ASSERT_LE(queue_[i].next_attempt_at_ms, now_);
                bytes += queue_[i].bytes;
            }
            ASSERT_EQ(bytes, batch.bytes);
            if (l.max_request_bytes && batch.events.size() > 1) {
                ASSERT_LE(bytes, l.max_request_bytes);
            }
        }
        std::vector<const Origin *> origin; // of queue_[i], without a map look-up per pair
        for (const Event &e : queue_)
            origin.push_back(&origin_.at(e.id));
        auto before = [&](std::size_t j, std::size_t i) {
            return precedes(*origin[j], queue_[j].id, *origin[i], queue_[i].id);
        };
        // Safety: every pending predecessor of a planned event is earlier in the same request.
        for (const auto &[i, bp] : where) {
            const Event &e = queue_[i];
            for (std::size_t j = 0; j < i; ++j) {
                if (!before(j, i))
                    continue;
                auto it = where.find(j);
                ASSERT_TRUE(it != where.end() && it->second.first == bp.first &&
                            it->second.second < bp.second)
                    << "event " << e.id << " planned while " << queue_[j].id << " is not before it";
            }
        }
        // Progress (no head-of-line blocking): a ready event left out has a predecessor that is not
        // planned or is in another request, or the one request it could join has no room for it.
        if (slots == 0)
            return; // paused, or every request in flight
        auto fits = [&](std::size_t b, const Event &e) {
            const Batch &batch = batches[b];
            if (batch.events.size() >= l.batch_size)
                return false;
            return !l.max_request_bytes || batch.bytes + e.bytes <= l.max_request_bytes;
        };
        for (std::size_t i = 0; i < queue_.size(); ++i) {
            const Event &e = queue_[i];
            if (where.count(i) || e.state != State::Queued || e.next_attempt_at_ms > now_)
                continue;
            std::optional<std::size_t> only; // the request all pending predecessors are in
            bool excused = false;
            for (std::size_t j = 0; j < i && !excused; ++j) {
                if (!before(j, i))
                    continue;
                auto it = where.find(j);
                if (it == where.end() || (only && *only != it->second.first))
                    excused = true;
                else
                    only = it->second.first;
            }
            if (excused)
                continue;
            if (only) {
                ASSERT_FALSE(fits(*only, e)) << "event " << e.id << " left out though its request had room";
            } else {
                ASSERT_EQ(batches.size(), slots) << "event " << e.id << " left out with a request slot free";
                ASSERT_FALSE(fits(batches.size() - 1, e)) << "event " << e.id << " left out with room";
            }
        }
    }

    void complete_some(bool failures) {
        std::shuffle(in_flight_.begin(), in_flight_.end(), rng_);
        std::size_t n = static_cast<std::size_t>(pick(0, static_cast<int>(in_flight_.size())));
        if (!failures && n == 0)
            n = in_flight_.size(); // keep the drain moving
        std::vector<std::vector<std::int64_t>> done(in_flight_.end() - n, in_flight_.end());
        in_flight_.resize(in_flight_.size() - n);
        for (const auto &request : done) {
            if (!failures || chance(60))
                receive(request);
            else
                fail(request);
        }
    }

    std::size_t index_of(std::int64_t id) const {
        auto it = std::lower_bound(queue_.begin(), queue_.end(), id,
                                   [](const Event &e, std::int64_t v) { return e.id < v; });
        return static_cast<std::size_t>(it - queue_.begin());
    }

    // The receiver: everything that must come before each event has come before it. An earlier
    // event no longer in the queue was received or purged; one still in the queue is a violation.
    void receive(const std::vector<std::int64_t> &request) {
        for (std::int64_t id : request) {
            const Origin &o = origin_.at(id);
            const std::size_t at = index_of(id);
            ASSERT_LT(at, queue_.size());
            for (std::size_t j = 0; j < at; ++j)
                ASSERT_FALSE(precedes(origin_.at(queue_[j].id), queue_[j].id, o, id))
                    << "event " << id << " received before " << queue_[j].id;
            ASSERT_TRUE(received_.insert(id).second) << "event " << id << " received twice";
            queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(at));
        }
    }

    void fail(const std::vector<std::int64_t> &request) {
        // Usually one retry time per request, as the worker does; sometimes per event.
        const bool per_event = chance(20);
        const std::int64_t at = now_ + pick(1, 60);
        for (std::int64_t id : request) {
            Event &e = queue_[index_of(id)];
            if (++attempts_[id] >= 4) {
                e.state = State::Dead;
            } else {
                e.state = State::Queued;
                e.next_attempt_at_ms = per_event ? now_ + pick(0, 60) : at;
            }
        }
    }

    void tend_dead_letters() {
        if (!chance(10))
            return;
        std::vector<std::size_t> dead;
        for (std::size_t i = 0; i < queue_.size(); ++i)
            if (queue_[i].state == State::Dead)
                dead.push_back(i);
        if (dead.empty())
            return;
        const std::size_t i = dead[static_cast<std::size_t>(pick(0, static_cast<int>(dead.size()) - 1))];
        if (chance(50)) { // pg_sync.redeliver
            queue_[i].state = State::Queued;
            queue_[i].next_attempt_at_ms = 0;
            attempts_[queue_[i].id] = 0;
        } else { // pg_sync.purge_dead
            purged_.insert(queue_[i].id);
            queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
        }
    }

    std::mt19937 rng_;
    std::int64_t now_ = 0;
    std::int64_t next_id_ = 1;
    std::vector<Event> queue_; // pending (queued, in flight, dead), in id order
    std::vector<std::vector<std::int64_t>> in_flight_;
    std::map<std::int64_t, Origin> origin_;
    std::map<std::int64_t, int> attempts_;
    std::set<std::int64_t> received_;
    std::set<std::int64_t> purged_;
    std::size_t requests_ = 0;
};

TEST(SchedulerProperty, RandomRoundsKeepPerKeyOrderAndDrain) {
    for (unsigned seed : {1u, 2u, 3u, 42u, 20240601u}) {
        SCOPED_TRACE("seed " + std::to_string(seed));
        Simulation sim(seed);
        sim.run(3000, true);
        ASSERT_FALSE(HasFailure());
        sim.drain();
        ASSERT_FALSE(HasFailure());
        // The simulation must have exercised something.
        EXPECT_GT(sim.received(), 2000u);
        EXPECT_GT(sim.purged(), 0u);
        EXPECT_GT(sim.requests(), 1000u);
    }
}

} // namespace

namespace {

// ---------------------------------------------------------------------------------------------
// Planner: plan() one event at a time

TEST(SchedulerPlanner, StopsWhenFullAndPlansWhatPlanPlans) {
    // Two keys hot, then many free events: the planner closes once the slots are full, so a
    // caller building candidates lazily never needs the rest, and the result is plan()'s.
    std::vector<Event> events = {row_k(1, 1, State::InFlight), row_k(2, 1), row_k(3, 2)};
    for (int i = 4; i <= 1000; ++i)
        events.push_back(row_k(i, i));
    const Limits l = limits(2, 3, 1); // two free slots of two events
    scheduler::Planner planner(l);
    std::size_t fed = 0;
    while (fed < events.size() && planner.open())
        planner.add(events[fed], fed, kNow), ++fed;
    EXPECT_EQ(fed, 6u); // 1 (in flight), 2 (held by 1), then 3, 4 and 5, 6 fill both requests
    const std::vector<Batch> streamed = planner.take();
    EXPECT_EQ(ids_of(streamed, events), (Ids{{3, 4}, {5, 6}}));
    EXPECT_EQ(ids_of(streamed, events), plan_ids(events, l));
}

TEST(SchedulerPlanner, ViewsPlanLikeCandidates) {
    const std::vector<Event> events = {row_k(1, 7), truncate(2, "public.t"), row_k(3, 7), emit(4, "k"), emit(5, "k")};
    scheduler::Planner planner(limits(10, 4));
    for (std::size_t i = 0; i < events.size(); ++i) {
        const Event &e = events[i];
        planner.add(scheduler::CandidateView{e.id, e.kind, e.table, e.key, e.state, e.next_attempt_at_ms, e.bytes, {}}, i,
                    kNow);
    }
    EXPECT_EQ(ids_of(planner.take(), events), plan_ids(events, limits(10, 4)));
}

TEST(SchedulerPlanner, RefusesIdsOutOfOrderAndClosedLimits) {
    scheduler::Planner planner(limits(10));
    planner.add(row_k(5, 1), 0, kNow);
    EXPECT_THROW(planner.add(row_k(5, 2), 1, kNow), std::invalid_argument);
    Limits paused = limits(10);
    paused.paused = true;
    EXPECT_FALSE(scheduler::Planner(paused).open());
    EXPECT_FALSE(scheduler::Planner(limits(0)).open());
    EXPECT_FALSE(scheduler::Planner(limits(10, 2, 2)).open());
}

} // namespace
