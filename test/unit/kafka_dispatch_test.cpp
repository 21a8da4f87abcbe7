// The dispatcher and the retry policy with a record transport (Kafka): requests for kafka://
// endpoints carry one record per event and no body; per-record results decide per event.
#include "core/dispatcher.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace pg_sync;
using dispatch::Dispatcher;
using dispatch::EndpointConfig;
using dispatch::QueuedEvent;
using sink::RecordResult;

namespace {

constexpr std::int64_t kNow = 1795428902000; // unix ms

EndpointConfig kafka_endpoint(int max_attempts = 3) {
    EndpointConfig c;
    c.id = 1;
    c.name = "k";
    c.url = "kafka://127.0.0.1:9092/events";
    c.kafka_settings = R"({"linger.ms":"1"})";
    c.batch_size = 10;
    c.max_in_flight = 4;
    c.policy.base_ms = 100;
    c.policy.max_ms = 1000;
    c.policy.max_attempts = max_attempts;
    return c;
}

QueuedEvent row(std::int64_t id, int key, int attempts = 0) {
    QueuedEvent q;
    q.id = id;
    q.op = "update";
    q.table = "public.t";
    q.key = "{\"id\":" + std::to_string(key) + "}";
    q.new_row = "{\"id\":" + std::to_string(key) + ",\"v\":" + std::to_string(id) + "}";
    q.txid = 700;
    q.captured_at_us = 1795428902123456;
    q.attempts = attempts;
    return q;
}

} // namespace

TEST(KafkaDispatch, RequestsCarryRecordsNotABody) {
    Dispatcher d("scope", 1, 5);
    d.configure({kafka_endpoint()});
    const auto requests = d.plan(1, {row(1, 1), row(2, 2), row(3, 1)}, kNow);
    ASSERT_EQ(requests.size(), 1u);
    const sink::Request &r = requests[0];
    EXPECT_TRUE(r.body.empty());
    EXPECT_TRUE(r.headers.empty()); // no signature, no HTTP headers
    EXPECT_EQ(r.settings, R"({"linger.ms":"1"})");
    ASSERT_EQ(r.records.size(), 3u);
    EXPECT_EQ(r.records[0].key, std::optional<std::string>(R"({"id":1})"));
    EXPECT_EQ(nlohmann::json::parse(r.records[2].value)["id"], 3);
    EXPECT_EQ(r.records[2].after, (std::vector<std::uint32_t>{0})); // same key, after event 1
    EXPECT_TRUE(r.records[1].after.empty());
    // Memory accounting counts the record values.
    EXPECT_EQ(d.in_flight_bytes(1), r.records[0].value.size() + r.records[1].value.size() + r.records[2].value.size());
}

TEST(KafkaDispatch, EveryRecordWrittenIsASuccessWithoutStatus) {
    Dispatcher d("scope", 1, 5);
    d.configure({kafka_endpoint()});
    const auto requests = d.plan(1, {row(1, 1), row(2, 2)}, kNow);
    sink::Completion c;
    c.token = requests[0].token;
    c.transport = retry::Transport::Delivered;
    const auto o = d.complete(c, kNow);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->verdict, retry::Verdict::Success);
    EXPECT_EQ(o->delivered, (std::vector<std::int64_t>{1, 2}));
    EXPECT_EQ(o->status, 0);
    EXPECT_TRUE(o->reason.empty());
}

TEST(KafkaDispatch, PerRecordResultsDecidePerEvent) {
    Dispatcher d("scope", 1, 5);
    d.configure({kafka_endpoint()});
    // [1: key 1 too large] [2: key 1, never sent] [3: key 2 written] [4: key 3 timed out]
    const auto requests = d.plan(1, {row(1, 1), row(2, 1), row(3, 2), row(4, 3)}, kNow);
    sink::Completion c;
    c.token = requests[0].token;
    c.transport = retry::Transport::Rejected;
    c.detail = "Broker: Message size too large";
    c.records = {RecordResult::Rejected, RecordResult::NotWritten, RecordResult::Written, RecordResult::NotWritten};
    const auto o = d.complete(c, kNow);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->verdict, retry::Verdict::DeadLetter);
    EXPECT_EQ(o->delivered, (std::vector<std::int64_t>{3}));
    EXPECT_EQ(o->dead, (std::vector<std::int64_t>{1}));
    EXPECT_EQ(o->retry, (std::vector<std::int64_t>{2, 4}));
    EXPECT_GE(o->delay_ms, 0u);
    EXPECT_LE(o->delay_ms, 100u);
    EXPECT_EQ(o->reason, "rejected: Broker: Message size too large");
    // The written event counts as delivered; the failure counts toward the circuit breaker.
    const auto stats = d.take_stats(kNow);
    ASSERT_EQ(stats.size(), 1u);
    EXPECT_EQ(stats[0].delivered, 1);
    EXPECT_EQ(stats[0].failed_attempts, 1);
    EXPECT_EQ(stats[0].consecutive_failures, 1);
}

TEST(KafkaDispatch, TransientFailuresRetryWithBackoffUntilMaxAttempts) {
    Dispatcher d("scope", 1, 5);
    d.configure({kafka_endpoint(2)});
    auto requests = d.plan(1, {row(1, 1), row(2, 2, 1)}, kNow); // event 2: its last attempt
    sink::Completion c;
    c.token = requests[0].token;
    c.transport = retry::Transport::Timeout;
    c.detail = "Local: Message timed out";
    c.records = {RecordResult::NotWritten, RecordResult::NotWritten};
    const auto o = d.complete(c, kNow);
    ASSERT_TRUE(o);
    EXPECT_EQ(o->retry, (std::vector<std::int64_t>{1}));
    EXPECT_EQ(o->dead, (std::vector<std::int64_t>{2}));
    EXPECT_EQ(o->reason, "timeout: Local: Message timed out");
}

TEST(KafkaRetryPolicy, DeliveredIsSuccessAndRejectedADeadLetterAtOnce) {
    retry::Response r;
    r.transport = retry::Transport::Delivered;
    EXPECT_EQ(retry::classify(r, 1, retry::Policy{}, 0, {}).verdict, retry::Verdict::Success);
    r.transport = retry::Transport::Rejected;
    r.detail = "Broker: Topic authorization failed";
    const retry::Outcome o = retry::classify(r, 1, retry::Policy{}, 0, {});
    EXPECT_EQ(o.verdict, retry::Verdict::DeadLetter);
    EXPECT_TRUE(o.is_failure());
    EXPECT_EQ(o.reason, "rejected: Broker: Topic authorization failed");
}
