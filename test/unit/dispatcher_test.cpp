// The dispatcher: requests from the head of the queue, in-flight bookkeeping, outcomes.
#include "core/dispatcher.hpp"
#include "core/http_client.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>

using namespace pg_sync;
using dispatch::Dispatcher;
using dispatch::EndpointConfig;
using dispatch::QueuedEvent;
using dispatch::Head;

namespace {

constexpr std::int64_t kNow = 1795428902000; // unix ms

EndpointConfig endpoint(std::int32_t id, std::size_t batch, std::size_t in_flight, int max_attempts = 3) {
    EndpointConfig c;
    c.id = id;
    c.name = "ep" + std::to_string(id);
    c.url = "http://127.0.0.1:1/hook";
    c.batch_size = batch;
    c.max_in_flight = in_flight;
    c.policy.base_ms = 100;
    c.policy.max_ms = 1000;
    c.policy.max_attempts = max_attempts;
    c.header_lines = {"X-Env: test"};
    return c;
}

QueuedEvent row(std::int64_t id, const std::string &key, int attempts = 0) {
    QueuedEvent q;
    q.id = id;
    q.op = "insert";
    q.table = "public.t";
    q.key = "{\"id\":" + key + "}";
    q.new_row = "{\"id\":" + key + "}";
    q.txid = 700;
    q.captured_at_us = 1795428902123456;
    q.attempts = attempts;
    return q;
}

std::vector<std::int64_t> ids_of(const http::Request &r) {
    std::vector<std::int64_t> ids;
    const nlohmann::json body = nlohmann::json::parse(r.body);
    for (const auto &e : body.at("events"))
        ids.push_back(e.at("id").get<std::int64_t>());
    return ids;
}

http::Completion answer(const http::Request &r, int status) {
    http::Completion c;
    c.token = r.token;
    c.status = status;
    return c;
}

bool has_header(const http::Request &r, const std::string &prefix) {
    return std::any_of(r.headers.begin(), r.headers.end(),
                       [&](const std::string &h) { return h.rfind(prefix, 0) == 0; });
}

} // namespace

TEST(Dispatcher, BatchesUpToBatchSizeAndMaxInFlight) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 2, 2)});
    Head head;
    for (int i = 1; i <= 7; ++i)
        head.push_back(row(i, std::to_string(i)));
    auto reqs = d.plan(1, head, kNow);
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_EQ(ids_of(reqs[0]), (std::vector<std::int64_t>{1, 2}));
    EXPECT_EQ(ids_of(reqs[1]), (std::vector<std::int64_t>{3, 4}));
    EXPECT_EQ(reqs[0].url, "http://127.0.0.1:1/hook");
    EXPECT_TRUE(has_header(reqs[0], "X-Env: test"));
    EXPECT_TRUE(has_header(reqs[0], "webhook-id: msg_1_2_"));
    EXPECT_TRUE(has_header(reqs[0], "webhook-timestamp: 1795428902"));
    EXPECT_FALSE(has_header(reqs[0], "webhook-signature"));
    // Both slots are taken: the same head plans nothing more.
    EXPECT_TRUE(d.plan(1, head, kNow).empty());
    EXPECT_EQ(d.in_flight_requests(), 2u);
}

TEST(Dispatcher, InFlightEventsAreNotSentAgainAndSuccessFreesTheSlot) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 2, 1)});
    Head head = {row(1, "1"), row(2, "2"), row(3, "3")};
    auto first = d.plan(1, head, kNow);
    ASSERT_EQ(first.size(), 1u);
    auto o = d.complete(answer(first[0], 204), kNow + 5);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->verdict, retry::Verdict::Success);
    EXPECT_EQ(o->delivered, (std::vector<std::int64_t>{1, 2}));
    // The worker deleted 1 and 2; the next head starts at 3.
    auto second = d.plan(1, {row(3, "3")}, kNow + 6);
    ASSERT_EQ(second.size(), 1u);
    EXPECT_EQ(ids_of(second[0]), (std::vector<std::int64_t>{3}));
    // An unknown token (already completed) is ignored.
    EXPECT_FALSE(d.complete(answer(first[0], 204), kNow + 7));
}

TEST(Dispatcher, InFlightBytesCountBodiesUntilTheyComplete) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 2, 2)});
    Head head = {row(1, "1"), row(2, "2"), row(3, "3")};
    EXPECT_EQ(d.in_flight_bytes(1), 0u);
    auto reqs = d.plan(1, head, kNow);
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_EQ(d.in_flight_bytes(1), reqs[0].body.size() + reqs[1].body.size());
    ASSERT_TRUE(d.complete(answer(reqs[0], 204), kNow + 5));
    EXPECT_EQ(d.in_flight_bytes(1), reqs[1].body.size());
    ASSERT_TRUE(d.complete(answer(reqs[1], 500), kNow + 6));
    EXPECT_EQ(d.in_flight_bytes(1), 0u);
    EXPECT_EQ(d.in_flight_bytes(99), 0u); // unknown endpoint
}

TEST(Dispatcher, EventsReadWithoutPayloadAreNeverSentAndHoldTheirKey) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 10, 2)});
    QueuedEvent held = row(1, "1");
    held.new_row.reset();
    held.payload_loaded = false;
    Head head = {held, row(2, "1"), row(3, "2")};
    auto reqs = d.plan(1, head, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_EQ(ids_of(reqs[0]), (std::vector<std::int64_t>{3}));
    EXPECT_FALSE(d.in_flight(1, 1));
    EXPECT_TRUE(d.in_flight(1, 3));
}

TEST(Dispatcher, SameKeyWaitsWhileAnEarlierEventIsInFlight) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 1, 4)});
    Head head = {row(1, "7"), row(2, "7"), row(3, "8")};
    auto reqs = d.plan(1, head, kNow);
    ASSERT_EQ(reqs.size(), 2u); // 1 (key 7) and 3 (key 8); 2 waits behind 1
    EXPECT_EQ(ids_of(reqs[0]), (std::vector<std::int64_t>{1}));
    EXPECT_EQ(ids_of(reqs[1]), (std::vector<std::int64_t>{3}));
    EXPECT_TRUE(d.plan(1, head, kNow).empty());
}

TEST(Dispatcher, FailureRetriesThenDeadLettersPerEventAttempts) {
    Dispatcher d("scope", 1, 0); // breaker disabled
    d.configure({endpoint(1, 2, 1, 3)});
    // Event 1 has failed twice already, event 2 once (it joined later).
    auto reqs = d.plan(1, {row(1, "1", 2), row(2, "2", 1)}, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    auto o = d.complete(answer(reqs[0], 500), kNow + 10);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->dead, (std::vector<std::int64_t>{1}));
    EXPECT_EQ(o->retry, (std::vector<std::int64_t>{2}));
    EXPECT_LE(o->delay_ms, 400u); // full jitter under min(1000, 100 * 2^2)
    EXPECT_EQ(o->status, 500);
    EXPECT_EQ(o->reason, "HTTP 500");
}

TEST(Dispatcher, RetryWaitsForNextAttemptAndReportsWhenDue) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 10, 1)});
    QueuedEvent e = row(1, "1", 1);
    e.next_attempt_ms = kNow + 500;
    EXPECT_TRUE(d.plan(1, {e}, kNow).empty());
    EXPECT_EQ(d.next_due_ms(), kNow + 500);
    EXPECT_EQ(d.plan(1, {e}, kNow + 500).size(), 1u);
}

TEST(Dispatcher, GonePausesTheEndpointAndKeepsTheEvents) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 10, 1)});
    auto reqs = d.plan(1, {row(1, "1")}, kNow);
    auto o = d.complete(answer(reqs[0], 410), kNow + 1);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->verdict, retry::Verdict::Gone);
    EXPECT_TRUE(o->delivered.empty() && o->retry.empty() && o->dead.empty());
    EXPECT_TRUE(d.endpoint(1)->paused);
    EXPECT_TRUE(d.plan(1, {row(1, "1")}, kNow + 2).empty());
}

TEST(Dispatcher, DeadLetterBlocksItsKeyOnly) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 10, 4)});
    QueuedEvent dead = row(1, "1");
    dead.dead = true;
    auto reqs = d.plan(1, {dead, row(2, "1"), row(3, "2")}, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_EQ(ids_of(reqs[0]), (std::vector<std::int64_t>{3}));
}

TEST(Dispatcher, CircuitOpensAfterConsecutiveFailuresThenProbesOneAtATime) {
    Dispatcher d("scope", 1, 2);
    EndpointConfig c = endpoint(1, 1, 4, 100);
    d.configure({c});
    Head head = {row(1, "1"), row(2, "2"), row(3, "3"), row(4, "4")};
    auto reqs = d.plan(1, head, kNow);
    ASSERT_EQ(reqs.size(), 4u);
    d.complete(answer(reqs[0], 500), kNow + 1);
    d.complete(answer(reqs[1], 500), kNow + 1);
    auto stats = d.take_stats(kNow + 1);
    ASSERT_EQ(stats.size(), 1u);
    EXPECT_EQ(stats[0].circuit, retry::State::Open);
    EXPECT_EQ(stats[0].consecutive_failures, 2);
    EXPECT_EQ(stats[0].failed_attempts, 2);
    d.complete(answer(reqs[2], 500), kNow + 1);
    d.complete(answer(reqs[3], 500), kNow + 1);
    // Open: nothing goes, and the worker knows when to look again.
    EXPECT_TRUE(d.plan(1, head, kNow + 2).empty());
    const std::int64_t reopen = d.next_due_ms();
    ASSERT_GT(reopen, kNow + 2);
    // Half-open: one probe of one event, none while it is out.
    auto probe = d.plan(1, head, reopen);
    ASSERT_EQ(probe.size(), 1u);
    EXPECT_EQ(ids_of(probe[0]).size(), 1u);
    EXPECT_TRUE(d.plan(1, head, reopen).empty());
    const std::int64_t probed = ids_of(probe[0])[0];
    d.complete(answer(probe[0], 200), reopen + 1);
    head.erase(std::remove_if(head.begin(), head.end(), [&](const QueuedEvent &q) { return q.id == probed; }),
               head.end()); // delivered: the worker deleted it
    EXPECT_EQ(d.plan(1, head, reopen + 2).size(), 3u); // closed again: the other three go
}

TEST(Dispatcher, HeldWhileNothingCouldGo) {
    Dispatcher d("scope", 1, 2);
    d.configure({endpoint(1, 1, 2, 100)});
    EXPECT_FALSE(d.held(1, kNow));
    EXPECT_FALSE(d.held(99, kNow)); // unknown endpoint: not held (plan decides)
    const Head head = {row(1, "1"), row(2, "2"), row(3, "3")};
    auto reqs = d.plan(1, head, kNow);
    ASSERT_EQ(reqs.size(), 2u);
    EXPECT_TRUE(d.held(1, kNow)); // max_in_flight requests out
    d.complete(answer(reqs[0], 500), kNow + 1);
    EXPECT_FALSE(d.held(1, kNow + 1)); // one failure: closed, a slot free
    d.complete(answer(reqs[1], 500), kNow + 1);
    EXPECT_TRUE(d.held(1, kNow + 2)); // open
    EXPECT_TRUE(d.plan(1, head, kNow + 2).empty());
    const std::int64_t reopen = d.next_due_ms();
    EXPECT_FALSE(d.held(1, reopen)); // half-open, no probe out
    auto probe = d.plan(1, head, reopen);
    ASSERT_EQ(probe.size(), 1u);
    EXPECT_TRUE(d.held(1, reopen)); // its probe is out
}

TEST(Dispatcher, HeldByRetryAfter) {
    Dispatcher d("scope", 1, 0);
    d.configure({endpoint(1, 1, 4)});
    auto reqs = d.plan(1, {row(1, "1")}, kNow);
    http::Completion c = answer(reqs[0], 503);
    c.retry_after = "1";
    ASSERT_TRUE(d.complete(c, kNow));
    EXPECT_TRUE(d.held(1, kNow + 999));
    EXPECT_FALSE(d.held(1, kNow + 1000));
}

TEST(Dispatcher, SignsWhenTheEndpointHasAKeyAndIdIsStableAcrossRetries) {
    Dispatcher d("scope", 1, 0);
    EndpointConfig c = endpoint(1, 10, 1);
    c.key = std::string("0123456789abcdef0123456789abcdef");
    d.configure({c});
    auto first = d.plan(1, {row(5, "5"), row(6, "6")}, kNow);
    ASSERT_EQ(first.size(), 1u);
    EXPECT_TRUE(has_header(first[0], "webhook-signature: v1,"));
    d.complete(answer(first[0], 503), kNow + 1);
    auto again = d.plan(1, {row(5, "5", 1), row(6, "6", 1)}, kNow + 60000);
    ASSERT_EQ(again.size(), 1u);
    auto id_line = [](const http::Request &r) {
        return *std::find_if(r.headers.begin(), r.headers.end(),
                             [](const std::string &h) { return h.rfind("webhook-id:", 0) == 0; });
    };
    EXPECT_EQ(id_line(first[0]), id_line(again[0]));
}

TEST(Dispatcher, RemovedEndpointForgetsItsRequests) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 10, 1), endpoint(2, 10, 1)});
    auto reqs = d.plan(1, {row(1, "1")}, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    d.configure({endpoint(2, 10, 1)});
    EXPECT_FALSE(d.complete(answer(reqs[0], 200), kNow + 1));
    EXPECT_EQ(d.in_flight_requests(), 0u);
}

TEST(Dispatcher, EmitEventsCarryTypeAndPayload) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 10, 1)});
    QueuedEvent e;
    e.id = 9;
    e.op = "emit";
    e.key = "\"order-7\"";
    e.type = "order.paid";
    e.new_row = "{\"amount\":12.5}";
    e.txid = 1;
    e.captured_at_us = 0;
    auto reqs = d.plan(1, {e}, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_EQ(reqs[0].body, "{\"events\":[{\"id\":9,\"op\":\"emit\",\"type\":\"order.paid\",\"key\":\"order-7\","
                            "\"payload\":{\"amount\":12.5},\"txid\":1,\"captured_at\":\"1970-01-01T00:00:00.000000Z\"}]}");
}

TEST(Dispatcher, RetryAfterHoldsTheWholeEndpoint) {
    Dispatcher d("scope", 1, 0);
    d.configure({endpoint(1, 1, 4)});
    auto reqs = d.plan(1, {row(1, "1")}, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    http::Completion c = answer(reqs[0], 429);
    c.retry_after = "3";
    auto o = d.complete(c, kNow + 10);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->delay_ms, 1000u); // Retry-After 3 s, capped by retry_max_ms (1000 in endpoint())
    // Another key waits too: the receiver asked for a pause, not for one event to wait.
    EXPECT_TRUE(d.plan(1, {row(2, "2")}, kNow + 20).empty());
    EXPECT_EQ(d.next_due_ms(), kNow + 10 + 1000);
    EXPECT_EQ(d.plan(1, {row(2, "2")}, kNow + 1010).size(), 1u);
}

// "Retry-After: 0" (or a past date) is no reason to retry at once: the events wait for their
// backoff, exactly what a 429 without Retry-After gives, and the endpoint is not held.
TEST(Dispatcher, RetryAfterZeroGivesTheBackoffAndHoldsNothing) {
    Dispatcher d("scope", 7, 0); // breaker off, as in the hot-loop finding
    const EndpointConfig c = endpoint(1, 1, 4, 100);
    d.configure({c});
    auto reqs = d.plan(1, {row(1, "1")}, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    http::Completion done = answer(reqs[0], 429);
    done.retry_after = "0";
    auto o = d.complete(done, kNow + 10);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->verdict, retry::Verdict::Retry);
    EXPECT_EQ(o->retry, (std::vector<std::int64_t>{1}));
    const retry::Random same = retry::make_random(7); // the dispatcher's first draw
    EXPECT_EQ(o->delay_ms, retry::backoff_ms(c.policy, 1, same));
    // No hold: another key goes at once.
    EXPECT_EQ(d.plan(1, {row(2, "2")}, kNow + 11).size(), 1u);
}

TEST(Dispatcher, RetryAfterLongerThanTheBackoffHoldsForTheRetryAfterOnly) {
    Dispatcher d("scope", 7, 0);
    EndpointConfig c = endpoint(1, 1, 4, 100);
    c.policy.base_ms = 100;
    c.policy.max_ms = 60000;
    d.configure({c});
    auto reqs = d.plan(1, {row(1, "1")}, kNow);
    http::Completion done = answer(reqs[0], 503);
    done.retry_after = "2";
    auto o = d.complete(done, kNow);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->delay_ms, 2000u); // max(2 s, backoff <= 100 ms)
    EXPECT_TRUE(d.plan(1, {row(2, "2")}, kNow + 1999).empty());
    EXPECT_EQ(d.next_due_ms(), kNow + 2000);
    EXPECT_EQ(d.plan(1, {row(2, "2")}, kNow + 2000).size(), 1u);
}

TEST(Dispatcher, RequestsCarryTheirEndpointAsTheirConnectionGroup) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(3, 1, 2), endpoint(8, 1, 2)});
    EXPECT_EQ(d.sending_endpoints(), 2u);
    auto a = d.plan(3, {row(1, "1")}, kNow);
    auto b = d.plan(8, {row(2, "2")}, kNow);
    ASSERT_EQ(a.size(), 1u);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(a[0].group, 3);
    EXPECT_EQ(b[0].group, 8);
    // A paused endpoint (410) sends nothing and needs no connection.
    d.pause(8);
    EXPECT_EQ(d.sending_endpoints(), 1u);
    EndpointConfig paused = endpoint(9, 1, 2);
    paused.paused = true;
    d.configure({endpoint(3, 1, 2), endpoint(8, 1, 2), paused});
    EXPECT_EQ(d.sending_endpoints(), 2u);
}

TEST(Dispatcher, ACachedHeadPlansAgainAsAFreshCopyWould) {
    // plan() keeps what it derives from an event with the event (QueuedEvent::memo): planning
    // the same head again, as the worker does between reads, must give what a fresh copy gives.
    Dispatcher cached("scope", 1, 5), fresh("scope", 1, 5);
    cached.configure({endpoint(1, 2, 1)});
    fresh.configure({endpoint(1, 2, 1)});
    Head head = {row(1, "1"), row(2, "1"), row(3, "2"), row(4, "3"), row(5, "3")};
    for (int round = 0; round < 3; ++round) {
        const Head copy(head.begin(), head.end()); // memos copied too: strip them
        Head stripped;
        for (QueuedEvent q : copy) {
            q.memo = {};
            stripped.push_back(std::move(q));
        }
        auto a = cached.plan(1, head, kNow);
        auto b = fresh.plan(1, stripped, kNow);
        ASSERT_EQ(a.size(), 1u);
        ASSERT_EQ(b.size(), 1u);
        EXPECT_EQ(a[0].body, b[0].body);
        EXPECT_EQ(ids_of(a[0]), ids_of(b[0]));
        const auto done = cached.complete(answer(a[0], 204), kNow);
        ASSERT_TRUE(fresh.complete(answer(b[0], 204), kNow));
        ASSERT_TRUE(done);
        for (std::int64_t id : done->delivered)
            head.erase(std::find_if(head.begin(), head.end(), [&](const QueuedEvent &q) { return q.id == id; }));
    }
    EXPECT_TRUE(head.empty()); // {1, 2}, {3, 4}, {5}
}
