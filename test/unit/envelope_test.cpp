// Unit tests of src/core/envelope.{hpp,cpp}. Expected bytes are written out by hand from the
// contract (docs/design.md, "Event and request format"); expected timestamps were computed with
// Python's datetime, independently of the code under test.
#include "core/envelope.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <random>
#include <limits>
#include <string>
#include <vector>

namespace {

using namespace std::string_literals;
namespace envelope = pg_sync::envelope;
using Event = envelope::EventView;
using nlohmann::json;

constexpr std::string_view kAt = "2026-11-23T10:15:02.123456Z";

std::string rendered(const Event &e) {
    std::string out;
    envelope::append_event(out, e);
    return out;
}

Event row_event(std::string_view op) {
    Event e;
    e.id = 1042;
    e.op = op;
    e.table = "public.orders";
    e.key = R"({"id":7})";
    e.txid = 80511;
    e.captured_at = kAt;
    return e;
}

// ---------------------------------------------------------------------------------------------
// One event, exact bytes

TEST(EnvelopeEvent, UpdateIsTheContractExample) {
    Event e = row_event("update");
    e.new_row = R"({"id":7,"status":"paid","amount":12.50})";
    e.old_row = R"({"id":7,"status":"new","amount":12.50})";
    EXPECT_EQ(rendered(e), R"({"id":1042,"op":"update","table":"public.orders","key":{"id":7},)"
                           R"("new":{"id":7,"status":"paid","amount":12.50},)"
                           R"("old":{"id":7,"status":"new","amount":12.50},)"
                           R"("txid":80511,"captured_at":"2026-11-23T10:15:02.123456Z"})");
}

TEST(EnvelopeEvent, InsertHasNullOld) {
    Event e = row_event("insert");
    e.new_row = R"({"id":7,"status":"new"})";
    EXPECT_EQ(rendered(e), R"({"id":1042,"op":"insert","table":"public.orders","key":{"id":7},)"
                           R"("new":{"id":7,"status":"new"},"old":null,)"
                           R"("txid":80511,"captured_at":"2026-11-23T10:15:02.123456Z"})");
}

TEST(EnvelopeEvent, DeleteHasNullNew) {
    Event e = row_event("delete");
    e.old_row = R"({"id":7,"status":"paid"})";
    EXPECT_EQ(rendered(e), R"({"id":1042,"op":"delete","table":"public.orders","key":{"id":7},)"
                           R"("new":null,"old":{"id":7,"status":"paid"},)"
                           R"("txid":80511,"captured_at":"2026-11-23T10:15:02.123456Z"})");
}

TEST(EnvelopeEvent, SnapshotHasTheRowShape) {
    Event e = row_event("snapshot");
    e.new_row = R"({"id":7})";
    EXPECT_EQ(rendered(e), R"({"id":1042,"op":"snapshot","table":"public.orders","key":{"id":7},)"
                           R"("new":{"id":7},"old":null,)"
                           R"("txid":80511,"captured_at":"2026-11-23T10:15:02.123456Z"})");
}

TEST(EnvelopeEvent, TruncateKeyIsNullEvenIfTheRowHasOne) {
    Event e = row_event("truncate");
    EXPECT_EQ(rendered(e), R"({"id":1042,"op":"truncate","table":"public.orders","key":null,)"
                           R"("new":null,"old":null,)"
                           R"("txid":80511,"captured_at":"2026-11-23T10:15:02.123456Z"})");
    e.key.reset();
    EXPECT_EQ(rendered(e), R"({"id":1042,"op":"truncate","table":"public.orders","key":null,)"
                           R"("new":null,"old":null,)"
                           R"("txid":80511,"captured_at":"2026-11-23T10:15:02.123456Z"})");
}

TEST(EnvelopeEvent, EmitHasTypeKeyPayloadAndNoRowFields) {
    Event e;
    e.id = 1043;
    e.op = "emit";
    e.type = "order.paid";
    e.key = R"("order-7")";
    e.payload = R"({"order":7,"total":12.50,"tags":["a","b"]})";
    e.txid = 80512;
    e.captured_at = kAt;
    // Row fields, were they set by mistake, are not part of an emit event.
    e.table = "public.orders";
    e.new_row = "{}";
    e.old_row = "{}";
    EXPECT_EQ(rendered(e), R"({"id":1043,"op":"emit","type":"order.paid","key":"order-7",)"
                           R"("payload":{"order":7,"total":12.50,"tags":["a","b"]},)"
                           R"("txid":80512,"captured_at":"2026-11-23T10:15:02.123456Z"})");
}

TEST(EnvelopeEvent, EmitWithNulls) {
    Event e;
    e.id = 1;
    e.op = "emit";
    e.txid = 2;
    e.captured_at = kAt;
    EXPECT_EQ(rendered(e), R"({"id":1,"op":"emit","type":null,"key":null,"payload":null,)"
                           R"("txid":2,"captured_at":"2026-11-23T10:15:02.123456Z"})");
    e.type = "t";
    e.payload = "null"; // a JSON null payload is a fragment like any other
    EXPECT_EQ(rendered(e), R"({"id":1,"op":"emit","type":"t","key":null,"payload":null,)"
                           R"("txid":2,"captured_at":"2026-11-23T10:15:02.123456Z"})");
}

TEST(EnvelopeEvent, AllNullRowFields) {
    Event e;
    e.id = 5;
    e.op = "insert";
    e.txid = 6;
    e.captured_at = kAt;
    EXPECT_EQ(rendered(e), R"({"id":5,"op":"insert","table":null,"key":null,"new":null,"old":null,)"
                           R"("txid":6,"captured_at":"2026-11-23T10:15:02.123456Z"})");
}

TEST(EnvelopeEvent, IntegerExtremes) {
    Event e = row_event("insert");
    e.key = "1";
    e.id = std::numeric_limits<std::int64_t>::max();
    e.txid = std::numeric_limits<std::uint64_t>::max();
    EXPECT_EQ(rendered(e), R"({"id":9223372036854775807,"op":"insert","table":"public.orders","key":1,)"
                           R"("new":null,"old":null,"txid":18446744073709551615,)"
                           R"("captured_at":"2026-11-23T10:15:02.123456Z"})");
    e.id = std::numeric_limits<std::int64_t>::min();
    e.txid = 0;
    EXPECT_EQ(rendered(e).substr(0, 27), R"({"id":-9223372036854775808,)");
    EXPECT_NE(rendered(e).find(R"("txid":0,)"), std::string::npos);
}

TEST(EnvelopeEvent, UnicodeAndQuotedTableNames) {
    Event e = row_event("insert");
    e.key = R"({"id":1})";
    // regclass text quotes mixed-case and non-ASCII names; UTF-8 stays as is, quotes are escaped.
    e.table = "public.\"Straße ☃ 😀\"";
    const std::string out = rendered(e);
    EXPECT_NE(out.find("\"table\":\"public.\\\"Stra\xc3\x9f"
                       "e \xe2\x98\x83 \xf0\x9f\x98\x80\\\"\""),
              std::string::npos)
        << out;
    EXPECT_EQ(json::parse(out)["table"].get<std::string>(), "public.\"Straße ☃ 😀\"");
}

TEST(EnvelopeEvent, StringsAreEscapedLikePostgres) {
    Event e;
    e.id = 1;
    e.op = "emit";
    e.type = "a\\b\"c\n\x01\x1f";
    e.txid = 1;
    e.captured_at = kAt;
    EXPECT_EQ(rendered(e), R"({"id":1,"op":"emit","type":"a\\b\"c\n\u0001\u001f","key":null,)"
                           R"("payload":null,"txid":1,"captured_at":"2026-11-23T10:15:02.123456Z"})");
}

TEST(EnvelopeEvent, FragmentsAreCopiedVerbatim) {
    // Whatever PostgreSQL's json output produced, spaces and escapes included, goes through as is.
    Event e = row_event("update");
    e.key = R"({"id": 7})";
    e.new_row = R"({"s": "\u00e9\n", "n": 1e400, "a": [1, 2]})";
    e.old_row = "[]";
    const std::string out = rendered(e);
    EXPECT_NE(out.find(R"("key":{"id": 7},"new":{"s": "\u00e9\n", "n": 1e400, "a": [1, 2]},"old":[],)"),
              std::string::npos)
        << out;
}

TEST(EnvelopeEvent, HugeFragments) {
    const std::string big_value(8 << 20, 'x');
    const std::string new_row = R"({"id":7,"blob":")" + big_value + R"("})";
    Event e = row_event("insert");
    e.new_row = new_row;
    const std::string out = rendered(e);
    EXPECT_EQ(out.size(), envelope::event_size(e));
    EXPECT_EQ(out.size(), new_row.size() + 139); // the rest, counted by len() in Python
    const json parsed = json::parse(out);
    EXPECT_EQ(parsed["new"]["blob"].get<std::string>().size(), big_value.size());
    EXPECT_EQ(parsed["captured_at"], kAt);
}

// ---------------------------------------------------------------------------------------------
// event_size

TEST(EnvelopeEventSize, ExactWhenNothingNeedsEscaping) {
    std::vector<Event> events;
    for (const char *op : {"insert", "update", "delete", "truncate", "snapshot"}) {
        Event e = row_event(op);
        e.new_row = R"({"a":1})";
        events.push_back(e);
        e.table.reset();
        e.key.reset();
        e.new_row.reset();
        events.push_back(e);
    }
    Event emit;
    emit.op = "emit";
    emit.captured_at = kAt;
    events.push_back(emit);
    emit.id = -12345;
    emit.txid = 987654321;
    emit.type = "order.paid";
    emit.key = R"("k")";
    emit.payload = R"({"x":[1,2,3]})";
    events.push_back(emit);
    for (const Event &e : events)
        EXPECT_EQ(envelope::event_size(e), rendered(e).size()) << rendered(e);
}

TEST(EnvelopeEventSize, LowerBoundWhenEscaping) {
    Event e = row_event("insert");
    e.table = "public.\"T\"\n";
    EXPECT_LT(envelope::event_size(e), rendered(e).size());
}

// ---------------------------------------------------------------------------------------------
// Body

TEST(EnvelopeBody, NoEvents) {
    std::string out;
    EXPECT_EQ(envelope::append_body(out, std::vector<Event>{}), 13u);
    EXPECT_EQ(out, R"({"events":[]})");
    EXPECT_TRUE(json::parse(out)["events"].empty());
}

TEST(EnvelopeBody, OneEvent) {
    Event e = row_event("insert");
    e.new_row = R"({"id":7})";
    std::string out;
    const std::size_t n = envelope::append_body(out, &e, 1);
    EXPECT_EQ(out, R"({"events":[)" + rendered(e) + "]}");
    EXPECT_EQ(n, out.size());
    const json parsed = json::parse(out);
    ASSERT_EQ(parsed["events"].size(), 1u);
    EXPECT_EQ(parsed["events"][0]["id"], 1042);
    EXPECT_EQ(parsed["events"][0]["new"], json::parse(R"({"id":7})"));
}

TEST(EnvelopeBody, ReturnsOnlyTheBytesItAppended) {
    Event e = row_event("delete");
    std::string out = "prefix";
    const std::size_t n = envelope::append_body(out, &e, 1);
    EXPECT_EQ(n, out.size() - 6);
    EXPECT_EQ(out.substr(0, 6), "prefix");
    EXPECT_EQ(out.substr(6), R"({"events":[)" + rendered(e) + "]}");
}

TEST(EnvelopeBody, ManyEventsRoundTrip) {
    // Fragments rendered by nlohmann here stand in for PostgreSQL's json output; every field must
    // come back out of the parsed body unchanged.
    struct Source {
        json key, new_row, old_row, payload;
        std::string op, table, type, captured_at;
    };
    const char *ops[] = {"insert", "update", "delete", "truncate", "snapshot", "emit"};
    std::vector<Source> sources;
    for (int i = 0; i < 600; ++i) {
        Source s;
        s.op = ops[i % 6];
        s.table = "public.t" + std::to_string(i % 7) + (i % 5 == 0 ? " \"ü\"" : "");
        s.key = {{"id", i}, {"region", "eu"}};
        if (s.op == "emit")
            s.key = "key-" + std::to_string(i);
        s.new_row = {
            {"id", i}, {"name", "row \u00e9 " + std::to_string(i)}, {"v", i * 0.5}, {"tags", {i, "x"}}};
        s.old_row = {{"id", i}, {"deleted", i % 2 == 0}};
        s.payload = {{"n", i}, {"nested", {{"ok", true}, {"none", nullptr}}}};
        s.type = "type." + std::to_string(i % 3);
        s.captured_at = envelope::format_timestamp(1795428902123456LL + i);
        sources.push_back(s);
    }
    // The views must point at storage that outlives append_body.
    std::vector<std::string> text;
    text.reserve(sources.size() * 4);
    auto keep = [&](const json &j) -> std::string_view { return text.emplace_back(j.dump()); };
    std::vector<Event> events;
    for (std::size_t i = 0; i < sources.size(); ++i) {
        const Source &s = sources[i];
        Event e;
        e.id = static_cast<std::int64_t>(1000 + i);
        e.op = s.op;
        e.txid = 5000 + i / 10;
        e.captured_at = s.captured_at;
        e.key = keep(s.key);
        if (s.op == "emit") {
            e.type = s.type;
            e.payload = keep(s.payload);
        } else {
            e.table = s.table;
            if (s.op != "delete" && s.op != "truncate")
                e.new_row = keep(s.new_row);
            if (s.op == "update" || s.op == "delete")
                e.old_row = keep(s.old_row);
        }
        events.push_back(e);
    }

    std::string out;
    const std::size_t n = envelope::append_body(out, events);
    EXPECT_EQ(n, out.size());
    const json parsed = json::parse(out);
    ASSERT_EQ(parsed.size(), 1u);
    const json &list = parsed.at("events");
    ASSERT_EQ(list.size(), sources.size());
    for (std::size_t i = 0; i < sources.size(); ++i) {
        const Source &s = sources[i];
        const json &got = list[i];
        SCOPED_TRACE("event " + std::to_string(i) + " " + s.op);
        EXPECT_EQ(got["id"], 1000 + i);
        EXPECT_EQ(got["op"], s.op);
        EXPECT_EQ(got["txid"], 5000 + i / 10);
        EXPECT_EQ(got["captured_at"], s.captured_at);
        std::vector<std::string> names;
        for (auto it = got.begin(); it != got.end(); ++it)
            names.push_back(it.key());
        if (s.op == "emit") {
            // nlohmann sorts object keys; the order on the wire is checked byte for byte above.
            EXPECT_EQ(names, (std::vector<std::string>{"captured_at", "id", "key", "op", "payload", "txid",
                                                       "type"}));
            EXPECT_EQ(got["type"], s.type);
            EXPECT_EQ(got["key"], s.key);
            EXPECT_EQ(got["payload"], s.payload);
        } else {
            EXPECT_EQ(names, (std::vector<std::string>{"captured_at", "id", "key", "new", "old", "op",
                                                       "table", "txid"}));
            EXPECT_EQ(got["table"], s.table);
            EXPECT_EQ(got["key"], s.op == "truncate" ? json(nullptr) : s.key);
            EXPECT_EQ(got["new"], s.op != "delete" && s.op != "truncate" ? s.new_row : json(nullptr));
            EXPECT_EQ(got["old"], s.op == "update" || s.op == "delete" ? s.old_row : json(nullptr));
        }
    }
}

TEST(EnvelopeBody, ReservesOnceForTheWholeBody) {
    std::vector<std::string> rows;
    for (int i = 0; i < 100; ++i)
        rows.push_back(R"({"id":)" + std::to_string(i) + R"(,"pad":")" + std::string(1000, 'p') + R"("})");
    std::vector<Event> events;
    for (int i = 0; i < 100; ++i) {
        Event e = row_event("insert");
        e.id = i;
        e.new_row = rows[static_cast<std::size_t>(i)];
        events.push_back(e);
    }
    std::string out;
    envelope::append_body(out, events);
    const std::size_t capacity = out.capacity();
    // Everything was reserved up front: the buffer is exactly as big as the body.
    std::string exact;
    exact.reserve(out.size());
    EXPECT_EQ(capacity, exact.capacity());
}

// ---------------------------------------------------------------------------------------------
// Timestamps

TEST(EnvelopeTimestamp, FormatsUtcWithSixFractionalDigits) {
    // Expected values from Python: datetime(1970, 1, 1, tzinfo=utc) + timedelta(microseconds=us).
    const struct {
        std::int64_t us;
        const char *text;
    } cases[] = {
        {1795428902123456LL, "2026-11-23T10:15:02.123456Z"},
        {0LL, "1970-01-01T00:00:00.000000Z"},
        {-1LL, "1969-12-31T23:59:59.999999Z"},
        {1709251199999999LL, "2024-02-29T23:59:59.999999Z"},
        {946684800000001LL, "2000-01-01T00:00:00.000001Z"},
        {253402300799999999LL, "9999-12-31T23:59:59.999999Z"},
        {-62135596800000000LL, "0001-01-01T00:00:00.000000Z"},
        {-2203847999500000LL, "1900-03-01T12:00:00.500000Z"},
    };
    for (const auto &c : cases) {
        EXPECT_EQ(envelope::format_timestamp(c.us), c.text) << c.us;
        std::string out = "x";
        envelope::append_timestamp(out, c.us);
        EXPECT_EQ(out, "x"s + c.text);
    }
}

TEST(EnvelopeTimestamp, PostgresEpochOffset) {
    // PostgreSQL's timestamptz 0 is 2000-01-01 00:00:00 UTC.
    EXPECT_EQ(envelope::format_timestamp(0 + 946684800000000LL), "2000-01-01T00:00:00.000000Z");
}

} // namespace

namespace {

// The fast path (years 0-9999) against the C library, over random instants and the edges of
// days, months, leap years and centuries.
TEST(EnvelopeTimestamp, MatchesGmtimeEverywhere) {
    auto reference = [](std::int64_t us) {
        std::int64_t s = us / 1000000, f = us % 1000000;
        if (f < 0)
            f += 1000000, --s;
        const std::time_t t = static_cast<std::time_t>(s);
        std::tm tm{};
        gmtime_r(&t, &tm);
        char buf[64];
        std::snprintf(buf, sizeof buf, "%04lld-%02d-%02dT%02d:%02d:%02d.%06dZ", static_cast<long long>(tm.tm_year) + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(f));
        return std::string(buf);
    };
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<std::int64_t> any(-62167219200000000LL, 253402300799999999LL);
    std::vector<std::int64_t> cases;
    for (int i = 0; i < 200000; ++i)
        cases.push_back(any(rng));
    for (std::int64_t day : {0LL, -1LL, 11016LL, 11017LL, 10957LL, 47482LL, -25567LL, 2932896LL, -719528LL})
        for (std::int64_t d : {-86400000000LL, -1LL, 0LL, 1LL, 86399999999LL})
            cases.push_back(day * 86400000000LL + d);
    for (std::int64_t us : cases)
        ASSERT_EQ(envelope::format_timestamp(us), reference(us)) << us;
}

} // namespace
