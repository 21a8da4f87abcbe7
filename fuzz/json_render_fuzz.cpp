// libFuzzer target for src/core/json_render.hpp.
//
//   append_string: output equals a reference port of PostgreSQL's escape_json(), byte for byte;
//     when the input is valid UTF-8, nlohmann parses the output back to the input's exact bytes.
//   is_number: agrees with a table-driven automaton of the RFC 8259 number grammar and, for ASCII
//     input without whitespace (which nlohmann would skip) or NUL (which nlohmann takes for the end
//     of input), with nlohmann's parser.
//   append_number_text / ObjectWriter: output is valid JSON of the expected shape.
//
// The input is used whole, and also split at NUL bytes into keys and values for ObjectWriter.
// Built and run by scripts/fuzz.sh.
#include "fuzz_common.hpp"
#include "core/json_render.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using fuzz::valid_utf8;

namespace json = pg_sync::json;

struct StringSink {
    std::string text;
    void append(const char *s, std::size_t len) { text.append(s, len); }
    void push(char c) { text.push_back(c); }
};

// PostgreSQL's escape_json() (src/backend/utils/adt/json.c, REL_15_STABLE), restated.
std::string reference_escape(std::string_view s) {
    std::string out = "\"";
    for (char ch : s) {
        switch (ch) {
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        default:
            if (static_cast<unsigned char>(ch) < ' ') {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(ch)));
                out += buf;
            } else {
                out += ch;
            }
        }
    }
    out += '"';
    return out;
}

// RFC 8259 section 6 as a state machine:
//   number = [ minus ] int [ frac ] [ exp ];  int = zero / ( digit1-9 *DIGIT )
//   frac = "." 1*DIGIT;  exp = ("e" / "E") [ "-" / "+" ] 1*DIGIT
bool reference_is_number(std::string_view s) {
    enum St { Start, Minus, Zero, Int, Dot, Frac, E, ESign, Exp, Fail };
    St st = Start;
    for (char c : s) {
        const bool d = c >= '0' && c <= '9';
        switch (st) {
        case Start: st = c == '-' ? Minus : c == '0' ? Zero : d ? Int : Fail; break;
        case Minus: st = c == '0' ? Zero : d ? Int : Fail; break;
        case Zero: st = c == '.' ? Dot : (c == 'e' || c == 'E') ? E : Fail; break;
        case Int: st = d ? Int : c == '.' ? Dot : (c == 'e' || c == 'E') ? E : Fail; break;
        case Dot: st = d ? Frac : Fail; break;
        case Frac: st = d ? Frac : (c == 'e' || c == 'E') ? E : Fail; break;
        case E: st = (c == '+' || c == '-') ? ESign : d ? Exp : Fail; break;
        case ESign: st = d ? Exp : Fail; break;
        case Exp: st = d ? Exp : Fail; break;
        case Fail: return false;
        }
    }
    return st == Zero || st == Int || st == Frac || st == Exp;
}

// Records whether nlohmann read the text as one number. nlohmann refuses a float that overflows
// a double ("1e400", error 406) after its lexer has read it as a number: that counts as a number,
// since the grammar has no range and PostgreSQL's numeric output can exceed a double.
struct NumberSax {
    using json = nlohmann::json;
    int events = 0;
    bool number = false;
    bool overflow = false;
    bool other() { return ++events, true; }
    bool num() { return number = true, ++events, true; }
    bool null() { return other(); }
    bool boolean(bool) { return other(); }
    bool number_integer(json::number_integer_t) { return num(); }
    bool number_unsigned(json::number_unsigned_t) { return num(); }
    bool number_float(json::number_float_t, const json::string_t &) { return num(); }
    bool string(json::string_t &) { return other(); }
    bool binary(json::binary_t &) { return other(); }
    bool start_object(std::size_t) { return other(); }
    bool key(json::string_t &) { return other(); }
    bool end_object() { return other(); }
    bool start_array(std::size_t) { return other(); }
    bool end_array() { return other(); }
    std::string_view text;
    bool parse_error(std::size_t, const std::string &token, const nlohmann::detail::exception &ex) {
        // The number token must be the whole text: "1e400x" fails on the overflow before the x.
        overflow = ex.id == 406 && events == 0 && token == text;
        return false;
    }
};

void check_string(std::string_view s) {
    StringSink sink;
    json::append_string(sink, s.data(), s.size());
    FUZZ_CHECK(sink.text == reference_escape(s), "append_string matches PostgreSQL's escape_json");
    if (!valid_utf8(s))
        return;
    const nlohmann::json parsed = nlohmann::json::parse(sink.text, nullptr, false);
    FUZZ_CHECK(!parsed.is_discarded(), "append_string output of valid UTF-8 parses");
    FUZZ_CHECK(parsed.is_string(), "append_string output is a JSON string");
    FUZZ_CHECK(parsed.get_ref<const std::string &>() == s, "append_string round-trips the exact bytes");
}

void check_number(std::string_view s) {
    const bool got = json::is_number(s.data(), s.size());
    FUZZ_CHECK(got == reference_is_number(s), "is_number agrees with the RFC 8259 automaton");

    bool nlohmann_comparable = true;
    for (char c : s)
        if (static_cast<unsigned char>(c) >= 0x80 || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0')
            nlohmann_comparable = false;
    if (nlohmann_comparable) {
        NumberSax sax;
        sax.text = s;
        const bool ok = nlohmann::json::sax_parse(s.begin(), s.end(), &sax);
        const bool nl = (ok && sax.events == 1 && sax.number) || sax.overflow;
        FUZZ_CHECK(got == nl, "is_number agrees with nlohmann's number parsing");
    }

    StringSink sink;
    json::append_number_text(sink, s.data(), s.size());
    if (got)
        FUZZ_CHECK(sink.text == s, "a JSON number is copied raw");
    else
        FUZZ_CHECK(sink.text == reference_escape(s), "a non-number is rendered as a string");
    if (!got && valid_utf8(s)) {
        const nlohmann::json parsed = nlohmann::json::parse(sink.text, nullptr, false);
        FUZZ_CHECK(!parsed.is_discarded() && parsed.is_string(), "append_number_text of a non-number parses as a string");
        FUZZ_CHECK(parsed.get_ref<const std::string &>() == s, "append_number_text string round-trips");
    }
}

// Pieces at NUL bytes: key, value, key, value... Values go through append_number_text.
void check_object(std::string_view s) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= s.size(); ++i)
        if (i == s.size() || s[i] == '\0') {
            parts.push_back(s.substr(start, i - start));
            start = i + 1;
        }
    StringSink sink;
    json::ObjectWriter<StringSink> w(sink);
    std::size_t pairs = 0;
    for (std::size_t i = 0; i + 1 < parts.size(); i += 2, ++pairs) {
        if (pairs % 2 == 0) {
            w.key(parts[i].data(), parts[i].size());
        } else {
            const std::string rendered = reference_escape(parts[i]) + ":";
            w.raw_key(rendered.data(), rendered.size());
        }
        json::append_number_text(sink, parts[i + 1].data(), parts[i + 1].size());
    }
    w.finish();
    if (!valid_utf8(s))
        return;
    for (std::size_t i = 1; i < parts.size(); i += 2)
        if (json::is_number(parts[i].data(), parts[i].size()) &&
            !std::isfinite(std::strtod(std::string(parts[i]).c_str(), nullptr)))
            return; // valid JSON, but nlohmann refuses numbers beyond a double (see NumberSax)
    const nlohmann::ordered_json parsed = nlohmann::ordered_json::parse(sink.text, nullptr, false);
    FUZZ_CHECK(!parsed.is_discarded() && parsed.is_object(), "ObjectWriter output is a JSON object");
    FUZZ_CHECK(parsed.size() <= pairs && (pairs == 0) == parsed.empty(), "ObjectWriter member count");
    if (pairs > 0) {
        // nlohmann keeps the first position of a repeated key; the first key is always first.
        FUZZ_CHECK(parsed.begin().key() == parts[0], "ObjectWriter first key");
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string_view s(reinterpret_cast<const char *>(data), size);
    check_string(s);
    check_number(s);
    check_object(s);
    return 0;
}
