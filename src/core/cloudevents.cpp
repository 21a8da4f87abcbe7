// CloudEvents JSON batch bodies; see cloudevents.hpp.
#include "core/cloudevents.hpp"

#include <charconv>

namespace pg_sync::cloudevents {
namespace {

void append_string(std::string &out, std::string_view s) { envelope::append_json_string(out, s); }

bool unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

bool is_emit(const envelope::EventView &e) { return e.op == "emit"; }

// The key, when the event has one a subject can name (a truncate has none, whatever the row holds).
std::optional<std::string_view> subject(const envelope::EventView &e) {
    if (e.op == "truncate" || !e.key || *e.key == "null")
        return std::nullopt;
    return e.key;
}

constexpr std::string_view kOpen = "{\"specversion\":\"1.0\",\"id\":\"";
constexpr std::string_view kSource = "\",\"source\":\"/pg_sync/";
constexpr std::string_view kType = "\",\"type\":";
constexpr std::string_view kTypePrefix = "pg_sync.";
constexpr std::string_view kTime = ",\"time\":";
constexpr std::string_view kSubject = ",\"subject\":";
constexpr std::string_view kContentType = ",\"datacontenttype\":\"application/json\"";
constexpr std::string_view kTraceparent = ",\"traceparent\":";
constexpr std::string_view kData = ",\"data\":";

} // namespace

void append_percent_encoded(std::string &out, std::string_view text) {
    static const char hex[] = "0123456789ABCDEF";
    for (char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (unreserved(c)) {
            out.push_back(ch);
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xF]);
        }
    }
}

void append_event(std::string &out, const envelope::EventView &e, std::string_view database) {
    out.append(kOpen);
    char buf[24];
    out.append(buf, static_cast<std::size_t>(std::to_chars(buf, buf + sizeof buf, e.id).ptr - buf));
    out.append(kSource);
    append_percent_encoded(out, database);
    if (!is_emit(e) && e.table) {
        out.push_back('/');
        append_percent_encoded(out, *e.table);
    }
    out.append(kType);
    if (is_emit(e)) {
        append_string(out, e.type && !e.type->empty() ? *e.type : std::string_view("pg_sync.emit"));
    } else {
        std::string type(kTypePrefix);
        type += e.op;
        append_string(out, type);
    }
    out.append(kTime);
    append_string(out, e.captured_at);
    if (const auto s = subject(e)) {
        out.append(kSubject);
        append_string(out, *s);
    }
    out.append(kContentType);
    if (e.traceparent) {
        out.append(kTraceparent);
        append_string(out, *e.traceparent);
    }
    out.append(kData);
    envelope::append_event(out, e);
    out.push_back('}');
}

std::size_t event_size(const envelope::EventView &e, std::string_view database) {
    // Strings may grow when escaped or encoded: counted at their plain size, a lower bound that
    // is exact in the usual case (as envelope::event_size).
    std::size_t n = kOpen.size() + 20 + kSource.size() + database.size() + kType.size() + kTime.size() +
                    e.captured_at.size() + 2 + kContentType.size() + kData.size() + envelope::event_size(e) + 1;
    if (!is_emit(e) && e.table)
        n += 1 + e.table->size();
    n += (is_emit(e) ? (e.type ? e.type->size() : 12) : kTypePrefix.size() + e.op.size()) + 2;
    if (const auto s = subject(e))
        n += kSubject.size() + s->size() + 2 + s->size() / 4; // quotes inside the key are escaped
    if (e.traceparent)
        n += kTraceparent.size() + e.traceparent->size() + 2;
    return n;
}

std::size_t append_batch(std::string &out, const envelope::EventView *events, std::size_t count,
                         std::string_view database) {
    const std::size_t start = out.size();
    std::size_t size = 2 + (count > 0 ? count - 1 : 0);
    for (std::size_t i = 0; i < count; ++i)
        size += event_size(events[i], database);
    out.reserve(start + size);
    out.push_back('[');
    for (std::size_t i = 0; i < count; ++i) {
        if (i > 0)
            out.push_back(',');
        append_event(out, events[i], database);
    }
    out.push_back(']');
    return out.size() - start;
}

} // namespace pg_sync::cloudevents
