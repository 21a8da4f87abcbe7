// Issue 14 items 1, 7, 8 in core: secret rotation (two signatures until the overlap ends),
// CloudEvents JSON batch bodies, trace context (traceparent validation, per-request traces).
#include "core/cloudevents.hpp"
#include "core/dispatcher.hpp"
#include "core/envelope.hpp"
#include "core/http_client.hpp"
#include "core/scheduler.hpp"
#include "core/signature.hpp"
#include "core/validate.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <regex>

using namespace pg_sync;
using dispatch::Dispatcher;
using dispatch::EndpointConfig;
using dispatch::Head;
using dispatch::QueuedEvent;

namespace {

constexpr std::int64_t kNow = 1795428902000; // unix ms
const std::string kTraceA = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const std::string kTraceB = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
const std::string kSecretNew = "whsec_dGhpcnR5LXR3by1ieXRlcy1vZi1yYW5kb21uZXNzISE=";
const std::string kSecretOld = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

EndpointConfig endpoint(std::size_t batch = 10, std::size_t in_flight = 4) {
    EndpointConfig c;
    c.id = 1;
    c.name = "ep";
    c.url = "http://127.0.0.1:1/hook";
    c.batch_size = batch;
    c.max_in_flight = in_flight;
    c.policy.base_ms = 100;
    c.policy.max_ms = 1000;
    c.policy.max_attempts = 3;
    return c;
}

QueuedEvent row(std::int64_t id, const std::string &key, std::optional<std::string> trace = std::nullopt) {
    QueuedEvent q;
    q.id = id;
    q.op = "update";
    q.table = "public.\"Orders\"";
    q.key = "{\"id\":" + key + "}";
    q.new_row = "{\"id\":" + key + ",\"v\":\"x\"}";
    q.old_row = "{\"id\":" + key + "}";
    q.txid = 700;
    q.captured_at_us = 1795428902123456;
    q.traceparent = std::move(trace);
    return q;
}

QueuedEvent emit(std::int64_t id, std::optional<std::string> key) {
    QueuedEvent q;
    q.id = id;
    q.op = "emit";
    q.type = "order.paid";
    q.key = std::move(key);
    q.new_row = "{\"n\":1}";
    q.txid = 701;
    q.captured_at_us = 1795428902123456;
    return q;
}

std::string header(const http::Request &r, const std::string &name) {
    for (const std::string &h : r.headers)
        if (h.rfind(name + ": ", 0) == 0)
            return h.substr(name.size() + 2);
    return "";
}

std::vector<std::int64_t> ids_of(const http::Request &r) {
    std::vector<std::int64_t> ids;
    const nlohmann::json body = nlohmann::json::parse(r.body);
    for (const auto &e : body.at("events"))
        ids.push_back(e.at("id").get<std::int64_t>());
    return ids;
}

} // namespace

// --- validation --------------------------------------------------------------------------------

TEST(ValidateTraceparent, W3CVersion00Only) {
    EXPECT_TRUE(validate::traceparent("").ok());
    EXPECT_TRUE(validate::traceparent(kTraceA).ok());
    EXPECT_TRUE(validate::traceparent(kTraceB).ok());
    for (const char *bad : {"x", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
                            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"})
        EXPECT_FALSE(validate::traceparent(bad).ok()) << bad;
    EXPECT_NE(validate::traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").message.find("all zeros"),
              std::string::npos);
}

TEST(ValidateFormat, WebhookOrCloudEventsAndNotForKafka) {
    EXPECT_TRUE(validate::format("https://h/x", "webhook").ok());
    EXPECT_TRUE(validate::format("https://h/x", "cloudevents").ok());
    EXPECT_FALSE(validate::format("https://h/x", "CloudEvents").ok());
    EXPECT_FALSE(validate::format("https://h/x", "").ok());
    EXPECT_TRUE(validate::format("kafka://b/t", "webhook").ok());
    EXPECT_EQ(validate::format("kafka://b/t", "cloudevents").message, "a kafka endpoint has no format");
}

// --- signatures --------------------------------------------------------------------------------

TEST(SignatureRotation, BothSignaturesNewFirst) {
    const auto fresh = signature::decode_secret(kSecretNew);
    const auto old = signature::decode_secret(kSecretOld);
    ASSERT_TRUE(fresh && old);
    const auto h = signature::headers("msg_1", 1614265330, "{}", fresh, old);
    ASSERT_EQ(h.size(), 3u);
    EXPECT_EQ(h[2].value, signature::sign(*fresh, "msg_1", 1614265330, "{}") + " " +
                              signature::sign(*old, "msg_1", 1614265330, "{}"));
    // Without a previous key: one signature, as before.
    EXPECT_EQ(signature::headers("msg_1", 1614265330, "{}", fresh)[2].value,
              signature::sign(*fresh, "msg_1", 1614265330, "{}"));
}

TEST(DispatcherRotation, PreviousSecretSignsUntilTheOverlapEndsThenNever) {
    Dispatcher d("scope", 1, 5);
    EndpointConfig c = endpoint(1, 8);
    c.key = signature::decode_secret(kSecretNew);
    c.previous_key = signature::decode_secret(kSecretOld);
    c.previous_key_until_ms = kNow + 1000;
    d.configure({c});
    Head head = {row(1, "1"), row(2, "2"), row(3, "3")};
    auto before = d.plan(1, {head[0]}, kNow + 999);
    ASSERT_EQ(before.size(), 1u);
    const std::string two = header(before[0], "webhook-signature");
    EXPECT_TRUE(std::regex_match(two, std::regex("v1,[A-Za-z0-9+/=]{44} v1,[A-Za-z0-9+/=]{44}"))) << two;
    const std::int64_t ts = std::stoll(header(before[0], "webhook-timestamp"));
    EXPECT_EQ(two, signature::sign(*c.key, header(before[0], "webhook-id"), ts, before[0].body) + " " +
                       signature::sign(*c.previous_key, header(before[0], "webhook-id"), ts, before[0].body));
    // At the moment the overlap ends: the new secret alone.
    auto after = d.plan(1, {head[1]}, kNow + 1000);
    ASSERT_EQ(after.size(), 1u);
    EXPECT_EQ(header(after[0], "webhook-signature"),
              signature::sign(*c.key, header(after[0], "webhook-id"), std::stoll(header(after[0], "webhook-timestamp")),
                              after[0].body));
    // The worker is told to erase it once, and it is forgotten.
    EXPECT_TRUE(d.take_ended_rotations(kNow + 999).empty());
    EXPECT_EQ(d.take_ended_rotations(kNow + 1000), (std::vector<std::int32_t>{1}));
    EXPECT_TRUE(d.take_ended_rotations(kNow + 2000).empty());
    EXPECT_EQ(d.endpoint(1)->previous_key, std::nullopt);
}

// --- CloudEvents -------------------------------------------------------------------------------

TEST(CloudEvents, BatchModeWithTheRequiredAttributes) {
    Dispatcher d("scope", 1, 5);
    d.set_database("shop db");
    EndpointConfig c = endpoint();
    c.cloudevents = true;
    c.key = signature::decode_secret(kSecretNew);
    d.configure({c});
    QueuedEvent truncate = row(3, "0");
    truncate.op = "truncate";
    truncate.key.reset();
    truncate.new_row.reset();
    truncate.old_row.reset();
    auto reqs = d.plan(1, {row(1, "7"), emit(2, "\"o-1\""), truncate, emit(4, std::nullopt)}, kNow);
    ASSERT_EQ(reqs.size(), 1u);
    const http::Request &r = reqs[0];
    EXPECT_EQ(r.content_type, "application/cloudevents-batch+json");
    // The signature signs the exact body.
    EXPECT_EQ(header(r, "webhook-signature"),
              signature::sign(*c.key, header(r, "webhook-id"), std::stoll(header(r, "webhook-timestamp")), r.body));
    const nlohmann::json body = nlohmann::json::parse(r.body);
    ASSERT_TRUE(body.is_array());
    ASSERT_EQ(body.size(), 4u);
    for (const auto &e : body) {
        for (const char *required : {"specversion", "id", "source", "type"}) {
            ASSERT_TRUE(e.contains(required)) << required;
            ASSERT_TRUE(e.at(required).is_string());
            EXPECT_FALSE(e.at(required).get<std::string>().empty());
        }
        EXPECT_EQ(e.at("specversion"), "1.0");
        EXPECT_EQ(e.at("time"), "2026-11-23T10:15:02.123456Z");
        EXPECT_EQ(e.at("datacontenttype"), "application/json");
        EXPECT_EQ(e.at("id").get<std::string>(), std::to_string(e.at("data").at("id").get<std::int64_t>()));
        if (e.contains("subject")) {
            EXPECT_FALSE(e.at("subject").get<std::string>().empty());
        }
    }
    EXPECT_EQ(body[0].at("source"), "/pg_sync/shop%20db/public.%22Orders%22");
    EXPECT_EQ(body[0].at("type"), "pg_sync.update");
    EXPECT_EQ(body[0].at("subject"), "{\"id\":7}");
    EXPECT_EQ(body[0].at("data").at("new"), nlohmann::json::parse("{\"id\":7,\"v\":\"x\"}"));
    EXPECT_EQ(body[0].at("data").at("op"), "update");
    EXPECT_EQ(body[1].at("source"), "/pg_sync/shop%20db");
    EXPECT_EQ(body[1].at("type"), "order.paid");
    EXPECT_EQ(body[1].at("subject"), "\"o-1\"");
    EXPECT_EQ(body[1].at("data").at("payload"), nlohmann::json::parse("{\"n\":1}"));
    EXPECT_EQ(body[2].at("type"), "pg_sync.truncate");
    EXPECT_FALSE(body[2].contains("subject"));
    EXPECT_FALSE(body[3].contains("subject"));
    EXPECT_FALSE(body[0].contains("traceparent"));
}

TEST(CloudEvents, SizeIsAtLeastTheBody) {
    QueuedEvent q = row(123456789, "1", kTraceA);
    envelope::EventView e;
    e.id = q.id;
    e.op = q.op;
    e.table = *q.table;
    e.key = *q.key;
    e.new_row = *q.new_row;
    e.captured_at = "2026-11-23T10:15:02.123456Z";
    e.traceparent = *q.traceparent;
    std::string out;
    cloudevents::append_event(out, e, "db");
    EXPECT_GE(cloudevents::event_size(e, "db"), out.size());
    const nlohmann::json j = nlohmann::json::parse(out);
    EXPECT_EQ(j.at("traceparent"), kTraceA);
    EXPECT_EQ(j.at("data").at("traceparent"), kTraceA);
}

// --- traces ------------------------------------------------------------------------------------

TEST(EnvelopeTrace, TraceparentLastAndOnlyWhenSet) {
    envelope::EventView e;
    e.id = 1;
    e.op = "insert";
    e.table = "public.t";
    e.key = "{\"id\":1}";
    e.new_row = "{\"id\":1}";
    e.txid = 5;
    e.captured_at = "2026-11-23T10:15:02.123456Z";
    std::string plain;
    envelope::append_event(plain, e);
    EXPECT_EQ(plain.find("traceparent"), std::string::npos);
    e.traceparent = kTraceA;
    std::string traced;
    envelope::append_event(traced, e);
    EXPECT_EQ(traced, plain.substr(0, plain.size() - 1) + ",\"traceparent\":\"" + kTraceA + "\"}");
    EXPECT_EQ(envelope::event_size(e), traced.size());
}

namespace {
// Rows of table t with these keys and traces, ids from 1; planned with 10 events per request and
// up to 4 requests.
std::vector<scheduler::Batch> plan_rows(std::vector<scheduler::Candidate> &in, const std::vector<std::string> &keys,
                                        const std::vector<std::string> &traces) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
        scheduler::Candidate c;
        c.id = std::int64_t(i + 1);
        c.table = "t";
        c.key = scheduler::row_key("t", keys[i]);
        c.trace = traces[i];
        in.push_back(c);
    }
    scheduler::Limits limits;
    limits.batch_size = 10;
    limits.max_in_flight = 4;
    return scheduler::plan(in, limits, 0);
}
} // namespace

TEST(SchedulerTrace, RequestsCarryOneTraceAndKeysKeepTheirOrder) {
    // ids 1..6: A(k1) B(k2) A(k3) -(k4) B(k1) A(k5)
    std::vector<scheduler::Candidate> in;
    const auto batches = plan_rows(in, {"k1", "k2", "k3", "k4", "k1", "k5"}, {"A", "B", "A", "", "B", "A"});
    ASSERT_EQ(batches.size(), 3u);
    EXPECT_EQ(batches[0].events, (std::vector<std::size_t>{0, 2, 5})); // A
    EXPECT_EQ(batches[1].events, (std::vector<std::size_t>{1}));       // B; id 5 (k1) waits for id 1's request
    EXPECT_EQ(batches[2].events, (std::vector<std::size_t>{3}));       // no trace
    for (const auto &b : batches)
        for (std::size_t i : b.events)
            EXPECT_EQ(in[i].trace, std::string(b.trace));
}

TEST(SchedulerTrace, WithoutTracesNothingChanges) {
    std::vector<scheduler::Candidate> in;
    const auto batches = plan_rows(in, {"0", "1", "0", "1", "0"}, {"", "", "", "", ""});
    ASSERT_EQ(batches.size(), 1u);
    EXPECT_EQ(batches[0].events.size(), 5u);
}

TEST(DispatcherTrace, HeaderIsTheTraceOfEveryEventInTheRequest) {
    Dispatcher d("scope", 1, 5);
    d.configure({endpoint(10, 4)});
    Head head = {row(1, "1", kTraceA), row(2, "2", kTraceB), row(3, "3", kTraceA), row(4, "4")};
    auto reqs = d.plan(1, head, kNow);
    ASSERT_EQ(reqs.size(), 3u);
    EXPECT_EQ(ids_of(reqs[0]), (std::vector<std::int64_t>{1, 3}));
    EXPECT_EQ(header(reqs[0], "traceparent"), kTraceA);
    EXPECT_EQ(ids_of(reqs[1]), (std::vector<std::int64_t>{2}));
    EXPECT_EQ(header(reqs[1], "traceparent"), kTraceB);
    EXPECT_EQ(ids_of(reqs[2]), (std::vector<std::int64_t>{4}));
    EXPECT_EQ(header(reqs[2], "traceparent"), "");
    for (const auto &r : reqs) {
        EXPECT_TRUE(r.content_type.empty()); // application/json
        const nlohmann::json body = nlohmann::json::parse(r.body);
        for (const auto &e : body.at("events"))
            EXPECT_EQ(e.value("traceparent", ""), header(r, "traceparent"));
    }
}
