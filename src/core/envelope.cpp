// Request bodies for delivery; see envelope.hpp.
#include "core/envelope.hpp"

#include "core/json_render.hpp"

#include <charconv>
#include <cstdio>
#include <ctime>
#include <stdexcept>

namespace pg_sync::envelope {

namespace {

// The Sink json_render.hpp writes to.
struct StringSink {
    std::string &text;
    void append(const char *s, std::size_t len) { text.append(s, len); }
    void push(char c) { text.push_back(c); }
};

constexpr std::string_view kNull = "null";

template <class Int> void append_integer(std::string &out, Int value) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, value);
    out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

template <class Int> std::size_t integer_size(Int value) {
    char buf[24];
    return static_cast<std::size_t>(std::to_chars(buf, buf + sizeof buf, value).ptr - buf);
}

void append_string(std::string &out, std::string_view s) { append_json_string(out, s); }

void append_string_or_null(std::string &out, const std::optional<std::string_view> &s) {
    if (s)
        append_string(out, *s);
    else
        out.append(kNull);
}

void append_fragment(std::string &out, const std::optional<std::string_view> &fragment) {
    out.append(fragment ? *fragment : kNull);
}

std::size_t string_size(const std::optional<std::string_view> &s) { return s ? s->size() + 2 : kNull.size(); }
std::size_t fragment_size(const std::optional<std::string_view> &f) { return f ? f->size() : kNull.size(); }

bool is_emit(const EventView &e) { return e.op == "emit"; }
bool is_truncate(const EventView &e) { return e.op == "truncate"; }

// Keys with their punctuation, written as one piece each.
constexpr std::string_view kId = "{\"id\":";
constexpr std::string_view kOp = ",\"op\":";
constexpr std::string_view kTable = ",\"table\":";
constexpr std::string_view kType = ",\"type\":";
constexpr std::string_view kKey = ",\"key\":";
constexpr std::string_view kNew = ",\"new\":";
constexpr std::string_view kOld = ",\"old\":";
constexpr std::string_view kPayload = ",\"payload\":";
constexpr std::string_view kTxid = ",\"txid\":";
constexpr std::string_view kCapturedAt = ",\"captured_at\":";
constexpr std::string_view kTraceparent = ",\"traceparent\":";
constexpr std::string_view kBodyOpen = "{\"events\":[";
constexpr std::string_view kBodyClose = "]}";

} // namespace

void append_json_string(std::string &out, std::string_view s) {
    StringSink sink{out};
    json::append_string(sink, s.data(), s.size());
}

void append_event(std::string &out, const EventView &e) {
    out.append(kId);
    append_integer(out, e.id);
    out.append(kOp);
    append_string(out, e.op);
    if (is_emit(e)) {
        out.append(kType);
        append_string_or_null(out, e.type);
        out.append(kKey);
        append_fragment(out, e.key);
        out.append(kPayload);
        append_fragment(out, e.payload);
    } else {
        out.append(kTable);
        append_string_or_null(out, e.table);
        out.append(kKey);
        // A truncate has no key, whatever the row holds: the contract makes it null.
        append_fragment(out, is_truncate(e) ? std::nullopt : e.key);
        out.append(kNew);
        append_fragment(out, e.new_row);
        out.append(kOld);
        append_fragment(out, e.old_row);
    }
    out.append(kTxid);
    append_integer(out, e.txid);
    out.append(kCapturedAt);
    append_string(out, e.captured_at);
    if (e.traceparent) {
        out.append(kTraceparent);
        append_string(out, *e.traceparent);
    }
    out.push_back('}');
}

std::size_t event_size(const EventView &e) {
    std::size_t n = kId.size() + integer_size(e.id) + kOp.size() + e.op.size() + 2;
    if (is_emit(e))
        n += kType.size() + string_size(e.type) + kKey.size() + fragment_size(e.key) + kPayload.size() +
             fragment_size(e.payload);
    else
        n += kTable.size() + string_size(e.table) + kKey.size() +
             (is_truncate(e) ? kNull.size() : fragment_size(e.key)) + kNew.size() + fragment_size(e.new_row) +
             kOld.size() + fragment_size(e.old_row);
    n += kTxid.size() + integer_size(e.txid) + kCapturedAt.size() + e.captured_at.size() + 2 + 1;
    if (e.traceparent)
        n += kTraceparent.size() + e.traceparent->size() + 2;
    return n;
}

std::size_t append_body(std::string &out, const EventView *events, std::size_t count) {
    const std::size_t start = out.size();
    std::size_t size = kBodyOpen.size() + kBodyClose.size() + (count > 0 ? count - 1 : 0);
    for (std::size_t i = 0; i < count; ++i)
        size += event_size(events[i]);
    out.reserve(start + size);

    out.append(kBodyOpen);
    for (std::size_t i = 0; i < count; ++i) {
        if (i > 0)
            out.push_back(',');
        append_event(out, events[i]);
    }
    out.append(kBodyClose);
    return out.size() - start;
}

std::size_t append_body(std::string &out, const std::vector<EventView> &events) {
    return append_body(out, events.data(), events.size());
}

namespace {

// Years 0000-9999 (every timestamptz a queue row can hold in practice): days since 1970-01-01 ->
// civil date (H. Hinnant's days_from_civil inverse), digits written directly. The request body
// has one per event: gmtime_r and snprintf took 5% of the worker at batch_size 100.
bool append_timestamp_fast(std::string &out, std::int64_t seconds, std::int64_t micros) {
    constexpr std::int64_t kMinSeconds = -62167219200LL; // 0000-01-01T00:00:00Z
    constexpr std::int64_t kEndSeconds = 253402300800LL; // 10000-01-01T00:00:00Z
    if (seconds < kMinSeconds || seconds >= kEndSeconds)
        return false;
    std::int64_t days = seconds / 86400, rest = seconds % 86400;
    if (rest < 0) {
        rest += 86400;
        --days;
    }
    const std::int64_t z = days + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const int day = int(doy - (153 * mp + 2) / 5 + 1);
    const int month = int(mp < 10 ? mp + 3 : mp - 9);
    const int year = int(yoe + era * 400 + (month <= 2 ? 1 : 0));
    char buf[27];
    auto put = [&](int at, std::int64_t v, int width) {
        for (int i = width - 1; i >= 0; --i, v /= 10)
            buf[at + i] = char('0' + v % 10);
    };
    put(0, year, 4);
    buf[4] = '-';
    put(5, month, 2);
    buf[7] = '-';
    put(8, day, 2);
    buf[10] = 'T';
    put(11, rest / 3600, 2);
    buf[13] = ':';
    put(14, rest / 60 % 60, 2);
    buf[16] = ':';
    put(17, rest % 60, 2);
    buf[19] = '.';
    put(20, micros, 6);
    buf[26] = 'Z';
    out.append(buf, sizeof buf);
    return true;
}

} // namespace

void append_timestamp(std::string &out, std::int64_t unix_micros) {
    // Floor division, so that times before 1970 keep a fraction in [0, 1e6).
    std::int64_t seconds = unix_micros / 1000000;
    std::int64_t micros = unix_micros % 1000000;
    if (micros < 0) {
        micros += 1000000;
        --seconds;
    }
    if (append_timestamp_fast(out, seconds, micros))
        return;
    const std::time_t t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    if (gmtime_r(&t, &tm) == nullptr)
        throw std::out_of_range("timestamp out of range: " + std::to_string(unix_micros));
    char buf[64];
    const int len = std::snprintf(buf, sizeof buf, "%04lld-%02d-%02dT%02d:%02d:%02d.%06dZ",
                                  static_cast<long long>(tm.tm_year) + 1900, tm.tm_mon + 1, tm.tm_mday,
                                  tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(micros));
    out.append(buf, static_cast<std::size_t>(len));
}

std::string format_timestamp(std::int64_t unix_micros) {
    std::string out;
    append_timestamp(out, unix_micros);
    return out;
}

} // namespace pg_sync::envelope
