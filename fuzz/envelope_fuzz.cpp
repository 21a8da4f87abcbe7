// libFuzzer target for src/core/envelope and src/core/signature.
//
// Input: fields separated by 0x1F, ten per event:
//   op, table, key, new, old, type, payload, captured_at, id (decimal), txid (decimal)
// A field that is exactly the byte 0xFF (never valid UTF-8) is SQL NULL. Checks:
//   - append_body returns the bytes it appended; event_size is exact when op/table/type/captured_at
//     need no escaping and a lower bound otherwise;
//   - when every present fragment is valid JSON (nlohmann accepts it, no NUL) and every plain string
//     is valid UTF-8, the body parses with nlohmann and each event has the documented fields, in
//     order, with the values given (fragments equal to the fragment parsed alone; truncate key null);
//   - format_timestamp of the ids: shape, and round trip through a calendar for years 1..9999;
//   - base64_encode/base64_decode round trip of the raw input; base64_decode of the raw input,
//     when it accepts, agrees with validate::base64_decoded_length and re-encodes stably;
//     decode_secret of "whsec_" + base64(prefix of the input) gives the prefix back for 24..64 bytes;
//   - sign() and webhook_id() have the documented shape.
// Built and run by scripts/fuzz.sh.
#include "fuzz_common.hpp"
#include "core/envelope.hpp"
#include "core/signature.hpp"
#include "core/validate.hpp"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using fuzz::valid_utf8;

namespace envelope = pg_sync::envelope;
namespace signature = pg_sync::signature;
using ojson = nlohmann::ordered_json;

constexpr std::size_t kFieldsPerEvent = 10;
constexpr std::size_t kMaxEvents = 64;


bool needs_escape(std::string_view s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\')
            return true;
    return false;
}

std::optional<std::string_view> field(std::string_view f) {
    if (f == "\xFF")
        return std::nullopt;
    return f;
}

template <class Int> Int integer(std::string_view f) {
    Int v = 0;
    std::from_chars(f.data(), f.data() + f.size(), v); // leaves 0 on failure
    return v;
}

void check_body(const std::vector<envelope::EventView> &events) {
    bool parseable = true;
    std::size_t sum = 0;
    for (const envelope::EventView &e : events) {
        std::string one;
        envelope::append_event(one, e);
        const bool emit = e.op == "emit";
        const bool escaping = needs_escape(e.op) || needs_escape(e.captured_at) ||
                              (emit ? e.type && needs_escape(*e.type) : e.table && needs_escape(*e.table));
        const std::size_t predicted = envelope::event_size(e);
        if (escaping)
            FUZZ_CHECK(one.size() >= predicted, "event_size is a lower bound");
        else
            FUZZ_CHECK(one.size() == predicted, "event_size is exact without escaping");
        sum += one.size();

        parseable = parseable && valid_utf8(e.op) && valid_utf8(e.captured_at);
        for (const auto &s : {e.table, e.type})
            parseable = parseable && (!s || valid_utf8(*s));
        // nlohmann's lexer takes a NUL byte as the end of input, so it would accept "1\0junk";
        // PostgreSQL text never holds NUL, so such fragments are out of contract anyway.
        for (const auto &f : {e.key, e.new_row, e.old_row, e.payload})
            parseable = parseable && (!f || (f->find('\0') == std::string_view::npos && ojson::accept(*f)));
    }

    std::string out = "prefix";
    const std::size_t n = envelope::append_body(out, events);
    FUZZ_CHECK(n == out.size() - 6 && out.compare(0, 6, "prefix") == 0, "append_body returns what it appended");
    FUZZ_CHECK(n == sum + 11 + 2 + (events.empty() ? 0 : events.size() - 1), "body is the events joined");
    if (!parseable)
        return;

    const ojson body = ojson::parse(out.begin() + 6, out.end(), nullptr, false);
    FUZZ_CHECK(!body.is_discarded(), "body with valid fragments parses as JSON");
    FUZZ_CHECK(body.is_object() && body.size() == 1 && body.contains("events"), "body is {\"events\":[...]}");
    const ojson &list = body["events"];
    FUZZ_CHECK(list.is_array() && list.size() == events.size(), "one element per event");
    for (std::size_t i = 0; i < events.size(); ++i) {
        const envelope::EventView &e = events[i];
        const ojson &j = list[i];
        const bool emit = e.op == "emit";
        static const char *const row_fields[] = {"id", "op", "table", "key", "new", "old", "txid", "captured_at"};
        static const char *const emit_fields[] = {"id", "op", "type", "key", "payload", "txid", "captured_at"};
        const char *const *names = emit ? emit_fields : row_fields;
        const std::size_t count = emit ? 7 : 8;
        FUZZ_CHECK(j.is_object() && j.size() == count, "event has the documented number of fields");
        std::size_t k = 0;
        for (auto it = j.begin(); it != j.end(); ++it, ++k)
            FUZZ_CHECK(it.key() == names[k], "fields in the documented order");
        FUZZ_CHECK(j["id"].is_number_integer() && j["id"].get<std::int64_t>() == e.id, "id");
        FUZZ_CHECK(j["txid"].is_number_integer() && j["txid"].get<std::uint64_t>() == e.txid, "txid");
        FUZZ_CHECK(j["op"] == ojson(std::string(e.op)), "op");
        FUZZ_CHECK(j["captured_at"] == ojson(std::string(e.captured_at)), "captured_at");
        auto same_string = [](const ojson &v, const std::optional<std::string_view> &s) {
            return s ? v.is_string() && v.get_ref<const std::string &>() == *s : v.is_null();
        };
        auto same_fragment = [](const ojson &v, const std::optional<std::string_view> &f) {
            return f ? v == ojson::parse(*f) : v.is_null();
        };
        if (emit) {
            FUZZ_CHECK(same_string(j["type"], e.type), "type");
            FUZZ_CHECK(same_fragment(j["key"], e.key), "emit key");
            FUZZ_CHECK(same_fragment(j["payload"], e.payload), "payload");
        } else {
            FUZZ_CHECK(same_string(j["table"], e.table), "table");
            FUZZ_CHECK(same_fragment(j["key"], e.op == "truncate" ? std::nullopt : e.key), "key (null for truncate)");
            FUZZ_CHECK(same_fragment(j["new"], e.new_row), "new");
            FUZZ_CHECK(same_fragment(j["old"], e.old_row), "old");
        }
    }
}

// Days since 1970-01-01 (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void check_timestamp(std::int64_t micros) {
    const std::string s = envelope::format_timestamp(micros);
    FUZZ_CHECK(!s.empty() && s.back() == 'Z', "timestamp ends in Z");
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0, us = 0, used = 0;
    const bool four_digit_year = s.size() == 27 && s[0] >= '0' && s[0] <= '9';
    if (!four_digit_year)
        return; // years outside 0001..9999: documented as "as many digits as needed"
    FUZZ_CHECK(std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ%n", &y, &mo, &d, &h, &mi, &se, &us, &used) == 7 &&
                   used == 27,
               "timestamp has the ISO 8601 shape");
    const std::int64_t back = (days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 +
                               h * 3600 + mi * 60 + se) * 1000000 + us;
    FUZZ_CHECK(back == micros, "timestamp round-trips through the calendar");
}

void check_base64_and_signature(std::string_view raw, const std::vector<std::int64_t> &ids) {
    // Arbitrary bytes survive encode/decode, with and without padding.
    const std::string enc = signature::base64_encode(raw);
    FUZZ_CHECK(enc.size() == 4 * ((raw.size() + 2) / 3), "base64 length");
    const std::optional<std::string> dec = signature::base64_decode(enc);
    FUZZ_CHECK(dec && *dec == raw, "base64 round trip");
    std::string unpadded = enc;
    while (!unpadded.empty() && unpadded.back() == '=')
        unpadded.pop_back();
    const std::optional<std::string> dec2 = signature::base64_decode(unpadded);
    FUZZ_CHECK(dec2 && *dec2 == raw, "base64 round trip without padding");

    // Arbitrary text: accepted exactly when the validator's length rule says so.
    const std::optional<std::string> any = signature::base64_decode(raw);
    const long expect = pg_sync::validate::base64_decoded_length(raw);
    FUZZ_CHECK(any.has_value() == (expect >= 0), "base64_decode accepts what base64_decoded_length accepts");
    if (any) {
        FUZZ_CHECK(static_cast<long>(any->size()) == expect, "decoded length");
        const std::optional<std::string> again = signature::base64_decode(signature::base64_encode(*any));
        FUZZ_CHECK(again && *again == *any, "decoded bytes re-encode stably");
    }

    // A secret made from the input's first bytes.
    const std::string_view key_bytes = raw.substr(0, 80);
    const std::string secret = "whsec_" + signature::base64_encode(key_bytes);
    const std::optional<std::string> key = signature::decode_secret(secret);
    const bool in_range = key_bytes.size() >= 24 && key_bytes.size() <= 64;
    FUZZ_CHECK(key.has_value() == in_range, "decode_secret accepts 24..64 bytes");
    FUZZ_CHECK(pg_sync::validate::secret(secret).ok() == in_range, "validate::secret accepts 24..64 bytes");
    if (key)
        FUZZ_CHECK(*key == key_bytes, "decode_secret gives the key back");

    const std::string sig = signature::sign(key_bytes, "msg_1_1_0123456789abcdef", ids.empty() ? 0 : ids[0], raw);
    FUZZ_CHECK(sig.size() == 3 + 44 && sig.compare(0, 3, "v1,") == 0, "signature shape");
    const auto dsig = signature::base64_decode(std::string_view(sig).substr(3));
    FUZZ_CHECK(dsig && dsig->size() == 32, "signature is base64 of 32 bytes");

    if (!ids.empty()) {
        const std::string id = signature::webhook_id(ids, raw.substr(0, 16));
        const std::string head = "msg_" + std::to_string(ids[0]) + "_" + std::to_string(ids.size()) + "_";
        FUZZ_CHECK(id.size() == head.size() + 16 && id.compare(0, head.size(), head) == 0, "webhook_id shape");
        for (std::size_t i = head.size(); i < id.size(); ++i)
            FUZZ_CHECK((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'), "webhook_id hex");
        FUZZ_CHECK(signature::webhook_id(ids, raw.substr(0, 16)) == id, "webhook_id is deterministic");
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string_view raw(reinterpret_cast<const char *>(data), size);
    std::vector<std::string_view> fields;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= raw.size(); ++i)
        if (i == raw.size() || raw[i] == '\x1F') {
            fields.push_back(raw.substr(start, i - start));
            start = i + 1;
        }
    fields.resize((fields.size() + kFieldsPerEvent - 1) / kFieldsPerEvent * kFieldsPerEvent);

    std::vector<envelope::EventView> events;
    std::vector<std::int64_t> ids;
    for (std::size_t b = 0; b + kFieldsPerEvent <= fields.size() && events.size() < kMaxEvents; b += kFieldsPerEvent) {
        envelope::EventView e;
        e.op = fields[b];
        e.table = field(fields[b + 1]);
        // A present fragment must be non-empty (envelope.hpp); an empty field stands for NULL.
        auto fragment = [&](std::size_t k) -> std::optional<std::string_view> {
            const auto f = field(fields[b + k]);
            return f && f->empty() ? std::nullopt : f;
        };
        e.key = fragment(2);
        e.new_row = fragment(3);
        e.old_row = fragment(4);
        e.type = field(fields[b + 5]);
        e.payload = fragment(6);
        e.captured_at = fields[b + 7];
        e.id = integer<std::int64_t>(fields[b + 8]);
        e.txid = integer<std::uint64_t>(fields[b + 9]);
        events.push_back(e);
        ids.push_back(e.id);
    }
    check_body(events);
    for (const std::int64_t id : ids)
        check_timestamp(id);
    if (size >= 8) {
        std::int64_t micros;
        std::memcpy(&micros, data, sizeof micros);
        check_timestamp(micros);
    }
    check_base64_and_signature(raw, ids);
    return 0;
}
