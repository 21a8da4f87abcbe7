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
    EXPECT_GE(o->delay_ms, 200u); // equal jitter: half to all of min(1000, 100 * 2^2)
    EXPECT_LE(o->delay_ms, 400u);
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

// --- max_rate, max_request_bytes, permanent_statuses (issue 14) ---------------------------------

TEST(Dispatcher, MaxRateSendsNoMoreThanTheBucketHoldsAndSaysWhenTheNextTokenComes) {
    Dispatcher d("scope", 1, 5);
    EndpointConfig c = endpoint(1, 1, 256);
    c.max_rate = 100; // a burst of 10, then one every 10 ms
    d.configure({c, endpoint(2, 1, 256)});
    Head head;
    for (int i = 1; i <= 40; ++i)
        head.push_back(row(i, std::to_string(i)));
    auto reqs = d.plan(1, head, kNow);
    EXPECT_EQ(reqs.size(), 10u);
    EXPECT_EQ(d.next_token_ms(), kNow + 10);
    EXPECT_TRUE(d.take_token_due(kNow + 9).empty());
    // Another endpoint without a limit is not held back.
    EXPECT_EQ(d.plan(2, head, kNow).size(), 40u);
    EXPECT_EQ(d.take_token_due(kNow + 10), (std::vector<std::int32_t>{1}));
    EXPECT_EQ(d.next_token_ms(), -1); // taken
    // Requests in flight are not sent again: the next token brings the next event.
    auto more = d.plan(1, head, kNow + 10);
    ASSERT_EQ(more.size(), 1u);
    EXPECT_EQ(ids_of(more[0]), (std::vector<std::int64_t>{11}));
    EXPECT_EQ(d.next_token_ms(), kNow + 20);
    // No token yet: nothing goes, the endpoint says it is rate limited, and when to look again.
    EXPECT_TRUE(d.plan(1, head, kNow + 15).empty());
    EXPECT_EQ(d.next_token_ms(), kNow + 20);
    auto stats = d.take_stats(kNow + 15);
    ASSERT_FALSE(stats.empty());
    EXPECT_TRUE(stats[0].rate_limited);
    EXPECT_EQ(d.plan(1, head, kNow + 20).size(), 1u);
}

TEST(Dispatcher, MaxRateWithNothingToSendWaitsForNoToken) {
    Dispatcher d("scope", 1, 5);
    EndpointConfig c = endpoint(1, 1, 4);
    c.max_rate = 1;
    d.configure({c});
    auto reqs = d.plan(1, {row(1, "1"), row(2, "1")}, kNow); // same key: one at a time
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_EQ(d.next_token_ms(), kNow + 1000); // the bucket is empty
    ASSERT_EQ(d.take_token_due(kNow + 1000).size(), 1u);
    // Event 2 waits for event 1, not for a token: no wake-up is asked for.
    EXPECT_TRUE(d.plan(1, {row(1, "1"), row(2, "1")}, kNow + 1000).empty());
    EXPECT_EQ(d.next_token_ms(), -1);
}

TEST(Dispatcher, RetryAfterStillHoldsARateLimitedEndpoint) {
    Dispatcher d("scope", 1, 0);
    EndpointConfig c = endpoint(1, 1, 4);
    c.max_rate = 1000;
    d.configure({c});
    auto reqs = d.plan(1, {row(1, "1")}, kNow);
    http::Completion a = answer(reqs[0], 429);
    a.retry_after = "1";
    ASSERT_TRUE(d.complete(a, kNow));
    EXPECT_TRUE(d.plan(1, {row(2, "2")}, kNow + 500).empty()); // tokens there, the receiver's hold wins
    EXPECT_EQ(d.plan(1, {row(2, "2")}, kNow + 1000).size(), 1u);
}

TEST(Dispatcher, BatchesAreCutToMaxRequestBytes) {
    Dispatcher d("scope", 1, 5);
    EndpointConfig c = endpoint(1, 100, 1);
    c.max_request_bytes = 1024;
    d.configure({c});
    Head head;
    for (int i = 1; i <= 50; ++i) {
        head.push_back(row(i, std::to_string(i)));
        head.back().new_row = "{\"pad\":\"" + std::string(100, 'x') + "\"}";
    }
    auto reqs = d.plan(1, head, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_LE(reqs[0].body.size(), 1024u);
    EXPECT_GT(reqs[0].body.size(), 1024u / 2);
    EXPECT_GT(ids_of(reqs[0]).size(), 1u);
}

TEST(Dispatcher, ASingleEventOverMaxRequestBytesIsADeadLetterWithoutBeingSent) {
    Dispatcher d("scope", 1, 5);
    EndpointConfig c = endpoint(1, 10, 2);
    c.max_request_bytes = 1024;
    d.configure({c});
    QueuedEvent big = row(1, "1");
    big.new_row = "{\"pad\":\"" + std::string(2000, 'x') + "\"}";
    auto reqs = d.plan(1, {big, row(2, "2")}, kNow);
    ASSERT_EQ(reqs.size(), 1u); // event 2 only
    EXPECT_EQ(ids_of(reqs[0]), (std::vector<std::int64_t>{2}));
    EXPECT_EQ(d.next_due_ms(), 0); // a refusal waits to be taken: due now
    std::vector<sink::Completion> refused = d.take_refused();
    ASSERT_EQ(refused.size(), 1u);
    EXPECT_TRUE(d.take_refused().empty());
    auto o = d.complete(refused[0], kNow + 1);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->verdict, retry::Verdict::DeadLetter);
    EXPECT_EQ(o->dead, (std::vector<std::int64_t>{1}));
    EXPECT_NE(o->reason.find("more than max_request_bytes (1024)"), std::string::npos) << o->reason;
    EXPECT_EQ(o->reason.rfind("rejected: the event makes a request of ", 0), 0u) << o->reason;
}

// Found in review: alter_endpoint(max_rate => ...) must take effect at once, both ways.
TEST(Dispatcher, AChangedMaxRateTakesEffectAtOnce) {
    Head head;
    for (int i = 1; i <= 40; ++i)
        head.push_back(row(i, std::to_string(i)));
    {
        Dispatcher d("scope", 1, 5);
        EndpointConfig c = endpoint(1, 1, 256);
        c.max_rate = 0.01; // one request per 100 s
        d.configure({c});
        EXPECT_EQ(d.plan(1, head, kNow).size(), 1u);
        c.max_rate = 0; // the limit removed
        d.configure({c});
        EXPECT_EQ(d.plan(1, Head(head.begin() + 1, head.end()), kNow + 1000).size(), 39u);
    }
    {
        Dispatcher d("scope", 1, 5);
        EndpointConfig c = endpoint(1, 1, 256);
        d.configure({c});
        c.max_rate = 1; // a limit set on an endpoint that had none: a burst of one
        d.configure({c});
        EXPECT_EQ(d.plan(1, head, kNow).size(), 1u);
    }
}

// Found in review: events refused before they are sent (too large alone) say nothing of the
// receiver: they must not open the circuit, nor count as failed attempts.
TEST(Dispatcher, EventsRefusedUnsentDoNotOpenTheCircuit) {
    Dispatcher d("scope", 1, 5);
    EndpointConfig c = endpoint(1, 1, 8);
    c.max_request_bytes = 1024;
    d.configure({c});
    Head head;
    for (int i = 1; i <= 6; ++i) {
        head.push_back(row(i, std::to_string(i)));
        head.back().new_row = "{\"pad\":\"" + std::string(2000, 'x') + "\"}";
    }
    std::int64_t now = kNow;
    EXPECT_TRUE(d.plan(1, head, now).empty());
    std::size_t dead = 0;
    for (auto &r : d.take_refused()) {
        auto o = d.complete(r, ++now);
        ASSERT_TRUE(o);
        dead += o->dead.size();
    }
    EXPECT_EQ(dead, 6u);
    EXPECT_EQ(d.plan(1, {row(8, "8")}, ++now).size(), 1u);
}

TEST(Dispatcher, TooLargeHalvesTheRequestWithoutCountingAnAttemptDownToOneEvent) {
    Dispatcher d("scope", 1, 2); // the circuit would open after 2 failures
    EndpointConfig c = endpoint(1, 8, 1, 3);
    d.configure({c});
    Head head;
    for (int i = 1; i <= 8; ++i)
        head.push_back(row(i, std::to_string(i), 2)); // one attempt left each
    std::vector<std::size_t> sizes;
    std::vector<std::int64_t> dead;
    std::int64_t now = kNow;
    // The receiver takes nothing: 8, 4, 2, 1 events, then the single event is a dead letter.
    for (int round = 0; round < 4; ++round) {
        auto reqs = d.plan(1, head, ++now);
        ASSERT_EQ(reqs.size(), 1u) << round;
        sizes.push_back(ids_of(reqs[0]).size());
        auto o = d.complete(answer(reqs[0], 413), ++now);
        ASSERT_TRUE(o);
        EXPECT_TRUE(o->retry.empty()) << "no attempt counted";
        if (round < 3) {
            EXPECT_EQ(o->verdict, retry::Verdict::Split);
            EXPECT_TRUE(o->dead.empty());
        } else {
            EXPECT_EQ(o->verdict, retry::Verdict::DeadLetter);
            EXPECT_EQ(o->reason, "HTTP 413 (the event alone is larger than the receiver accepts)");
            dead = o->dead;
        }
    }
    EXPECT_EQ(sizes, (std::vector<std::size_t>{8, 4, 2, 1}));
    EXPECT_EQ(dead, (std::vector<std::int64_t>{1}));
    auto stats = d.take_stats(now);
    ASSERT_EQ(stats.size(), 1u);
    EXPECT_EQ(stats[0].circuit, retry::State::Closed); // 413s are not the receiver failing
    const std::size_t learned = stats[0].request_bytes_limit;
    EXPECT_GT(learned, 0u);
    // A 2xx of a larger body (a single event goes alone whatever the limit) raises the limit.
    head.erase(head.begin());
    head.front() = row(2, "2", 2); // (a fresh copy: the planner's sizes are memoized per event)
    head.front().new_row = "{\"pad\":\"" + std::string(3000, 'x') + "\"}";
    auto reqs = d.plan(1, head, ++now);
    ASSERT_EQ(ids_of(reqs[0]).size(), 1u);
    const std::size_t body = reqs[0].body.size();
    ASSERT_GT(body, learned);
    ASSERT_TRUE(d.complete(answer(reqs[0], 200), ++now));
    stats = d.take_stats(now);
    EXPECT_GE(stats[0].request_bytes_limit, body);
}

TEST(Dispatcher, PermanentStatusesMakeEveryEventOfTheRequestADeadLetter) {
    Dispatcher d("scope", 1, 5);
    EndpointConfig c = endpoint(1, 10, 1, 10);
    c.policy.permanent_statuses = {400, 422};
    d.configure({c});
    auto reqs = d.plan(1, {row(1, "1"), row(2, "2", 3)}, kNow);
    auto o = d.complete(answer(reqs[0], 422), kNow + 1);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->dead, (std::vector<std::int64_t>{1, 2}));
    EXPECT_TRUE(o->retry.empty());
    EXPECT_EQ(o->reason, "HTTP 422 (permanent for this endpoint)");
    reqs = d.plan(1, {row(3, "3")}, kNow + 2);
    o = d.complete(answer(reqs[0], 404), kNow + 3); // not listed: retried
    EXPECT_EQ(o->retry, (std::vector<std::int64_t>{3}));
}

// A receiver down for 24 hours with the default retry settings and circuit breaker: no event is
// a dead letter, the worker does not spin (the circuit holds the backlog and probes with one
// event), and once the receiver is back everything is delivered.
TEST(Dispatcher, ADayLongOutageDeadLettersNothingAndDoesNotSpin) {
    Dispatcher d("scope", 7, retry::kDefaultFailureThreshold);
    EndpointConfig c = endpoint(1, 10, 4);
    c.policy = retry::Policy{}; // create_endpoint's defaults
    d.configure({c});
    Head head;
    for (int i = 1; i <= 100; ++i)
        head.push_back(row(i, std::to_string(i % 20))); // 20 keys, 5 events each
    const std::int64_t back = kNow + 24ll * 3600 * 1000 + 60000; // a day and a minute
    std::int64_t now = kNow;
    int requests = 0, plans = 0, dead = 0, delivered = 0;
    while (!head.empty() && plans < 100000) {
        ++plans;
        auto reqs = d.plan(1, head, now);
        if (reqs.empty()) {
            const std::int64_t due = d.next_due_ms();
            ASSERT_GE(due, 0) << "nothing due with " << head.size() << " events left";
            now = std::max(now + 1, due);
            continue;
        }
        for (const auto &r : reqs) {
            ++requests;
            auto o = d.complete(answer(r, now < back ? 503 : 200), now + 5);
            ASSERT_TRUE(o);
            dead += int(o->dead.size());
            delivered += int(o->delivered.size());
            for (QueuedEvent &q : head)
                if (std::find(o->retry.begin(), o->retry.end(), q.id) != o->retry.end()) {
                    q.attempts++;
                    q.next_attempt_ms = now + 5 + std::int64_t(o->delay_ms);
                }
            head.erase(std::remove_if(head.begin(), head.end(),
                                      [&](const QueuedEvent &q) {
                                          return std::find(o->delivered.begin(), o->delivered.end(), q.id) !=
                                                 o->delivered.end();
                                      }),
                       head.end());
        }
        now += 5;
    }
    EXPECT_EQ(dead, 0);
    EXPECT_EQ(delivered, 100);
    EXPECT_GE(now, back);
    // About one probe an hour once the breaker's wait reaches retry_max_ms, plus the first
    // minutes: far from a spin.
    EXPECT_LT(requests, 100) << requests;
    std::printf("24-hour outage: %d requests, %d plans, delivered %d after %.1f h\n", requests, plans, delivered,
                double(now - kNow) / 3600000.0);
}

// A traceparent stored in the queue becomes a header only when it is valid (the queue's owner or a
// restore could have written anything, a line break included).
TEST(Dispatcher, AStoredTraceparentIsAHeaderOnlyWhenValid) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(1, 10, 2)});
    QueuedEvent good = row(1, "1");
    good.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    auto reqs = d.plan(1, {good}, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    EXPECT_TRUE(std::count(reqs[0].headers.begin(), reqs[0].headers.end(),
                           "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    QueuedEvent bad = row(2, "2");
    bad.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX-Injected: 1";
    reqs = d.plan(1, {bad}, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    for (const std::string &h : reqs[0].headers)
        EXPECT_EQ(h.rfind("traceparent", 0), std::string::npos) << h;
}
