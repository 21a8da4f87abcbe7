// The Kafka records of a request (core/kafka_records.hpp): one per event, keyed by the event's
// key, the event object as value, headers, and the order inside the request.
#include "core/kafka_records.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using namespace pg_sync;

namespace {

struct Ev {
    std::int64_t id;
    std::string op;
    std::optional<std::string> table, key, type;
};

std::vector<sink::Record> records_of(const std::vector<Ev> &events) {
    std::vector<envelope::EventView> views;
    for (const Ev &e : events) {
        envelope::EventView v;
        v.id = e.id;
        v.op = e.op;
        if (e.table)
            v.table = std::string_view(*e.table);
        if (e.key)
            v.key = std::string_view(*e.key);
        if (e.type)
            v.type = std::string_view(*e.type);
        v.txid = 9;
        v.captured_at = "2026-11-23T10:15:02.123456Z";
        views.push_back(v);
    }
    std::vector<sink::Record> out;
    kafka::build_records(views, out);
    return out;
}

std::vector<std::uint32_t> after(const sink::Record &r) { return r.after; }

} // namespace

TEST(KafkaRecords, KeyValueAndHeaders) {
    const auto r = records_of({{7, "update", "public.orders", R"({"id":7})", {}},
                               {8, "emit", {}, R"("order-7")", "order.paid"},
                               {9, "emit", {}, {}, "tick"},
                               {10, "truncate", "public.orders", R"({"id":1})", {}}});
    ASSERT_EQ(r.size(), 4u);
    EXPECT_EQ(r[0].key, std::optional<std::string>(R"({"id":7})"));
    EXPECT_EQ(r[1].key, std::optional<std::string>(R"("order-7")"));
    EXPECT_FALSE(r[2].key); // emit without key
    EXPECT_FALSE(r[3].key); // truncate: no key, whatever the row held
    // The value is the event object of a webhook body, byte for byte.
    std::string body;
    envelope::EventView v;
    v.id = 7;
    v.op = "update";
    v.table = std::string_view("public.orders");
    v.key = std::string_view(R"({"id":7})");
    v.txid = 9;
    v.captured_at = "2026-11-23T10:15:02.123456Z";
    envelope::append_body(body, std::vector<envelope::EventView>{v});
    EXPECT_EQ(nlohmann::json::parse(body)["events"][0], nlohmann::json::parse(r[0].value));
    EXPECT_EQ("{\"events\":[" + r[0].value + "]}", body);
    using H = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(r[0].headers, (H{{"id", "7"}, {"op", "update"}, {"table", "public.orders"}}));
    EXPECT_EQ(r[1].headers, (H{{"id", "8"}, {"op", "emit"}, {"type", "order.paid"}}));
    EXPECT_EQ(r[3].headers, (H{{"id", "10"}, {"op", "truncate"}, {"table", "public.orders"}}));
}

TEST(KafkaRecords, OrderInsideTheRequestFollowsTheScheduler) {
    const auto r = records_of({
        {1, "insert", "public.a", R"({"id":1})", {}}, // 0
        {2, "insert", "public.a", R"({"id":2})", {}}, // 1
        {3, "update", "public.a", R"({"id":1})", {}}, // 2: after 0 (same key)
        {4, "insert", "public.b", R"({"id":1})", {}}, // 3: same key text, other table: free
        {5, "truncate", "public.a", {}, {}},          // 4: after every earlier record of a
        {6, "update", "public.a", R"({"id":2})", {}}, // 5: after the truncate
        {7, "update", "public.a", R"({"id":2})", {}}, // 6: after 5
        {8, "emit", {}, R"("k")", "t"},               // 7
        {9, "emit", {}, {}, "t"},                     // 8: free
        {10, "emit", {}, R"("k")", "t"},              // 9: after 7
        {11, "truncate", "public.a", {}, {}},         // 10: after the first truncate and what followed it
        {12, "delete", "public.a", R"({"id":1})", {}} // 11: after the second truncate
    });
    ASSERT_EQ(r.size(), 12u);
    EXPECT_TRUE(after(r[0]).empty());
    EXPECT_TRUE(after(r[1]).empty());
    EXPECT_EQ(after(r[2]), (std::vector<std::uint32_t>{0}));
    EXPECT_TRUE(after(r[3]).empty());
    EXPECT_EQ(after(r[4]), (std::vector<std::uint32_t>{0, 1, 2}));
    EXPECT_EQ(after(r[5]), (std::vector<std::uint32_t>{4}));
    EXPECT_EQ(after(r[6]), (std::vector<std::uint32_t>{5}));
    EXPECT_TRUE(after(r[7]).empty());
    EXPECT_TRUE(after(r[8]).empty());
    EXPECT_EQ(after(r[9]), (std::vector<std::uint32_t>{7}));
    EXPECT_EQ(after(r[10]), (std::vector<std::uint32_t>{4, 5, 6}));
    EXPECT_EQ(after(r[11]), (std::vector<std::uint32_t>{10}));
}
