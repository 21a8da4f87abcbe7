// Unit tests of src/core/json_render.hpp. The expected strings are what PostgreSQL 15's
// escape_json() / to_json() produce for the same input.
#include "core/json_render.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace {

using namespace std::string_literals;
namespace json = pg_sync::json;

// The Sink the header documents: append(const char *, size_t) and push(char).
struct StringSink {
    std::string text;
    void append(const char *s, std::size_t len) { text.append(s, len); }
    void push(char c) { text.push_back(c); }
};

std::string rendered(const std::string &s) {
    StringSink sink;
    json::append_string(sink, s.data(), s.size());
    return sink.text;
}

std::string number_text(const std::string &s) {
    StringSink sink;
    json::append_number_text(sink, s.data(), s.size());
    return sink.text;
}

bool is_number(const std::string &s) { return json::is_number(s.data(), s.size()); }

// A straightforward transcription of PostgreSQL's escape_json() (src/backend/utils/adt/json.c),
// used as an oracle for every single byte.
std::string escape_json_reference(const std::string &s) {
    std::string out = "\"";
    for (char ch : s) {
        switch (ch) {
        case '\b':
            out += "\\b";
            break;
        case '\f':
            out += "\\f";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        default:
            if (static_cast<unsigned char>(ch) < ' ') {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<int>(ch));
                out += buf;
            } else {
                out += ch;
            }
        }
    }
    return out + "\"";
}

// ---------------------------------------------------------------------------------------------
// append_string

TEST(JsonAppendString, EmptyString) { EXPECT_EQ(rendered(""), "\"\""); }

TEST(JsonAppendString, PlainTextUnchanged) {
    EXPECT_EQ(rendered("hello, world"), "\"hello, world\"");
    EXPECT_EQ(rendered("a/b"), "\"a/b\""); // PostgreSQL does not escape the solidus
    EXPECT_EQ(rendered("'single'"), "\"'single'\"");
}

TEST(JsonAppendString, TwoCharacterEscapes) {
    EXPECT_EQ(rendered("\b"), "\"\\b\"");
    EXPECT_EQ(rendered("\f"), "\"\\f\"");
    EXPECT_EQ(rendered("\n"), "\"\\n\"");
    EXPECT_EQ(rendered("\r"), "\"\\r\"");
    EXPECT_EQ(rendered("\t"), "\"\\t\"");
    EXPECT_EQ(rendered("\""), "\"\\\"\"");
    EXPECT_EQ(rendered("\\"), "\"\\\\\"");
}

TEST(JsonAppendString, OtherControlCharactersAsLowercaseUnicodeEscapes) {
    EXPECT_EQ(rendered("\x01"), "\"\\u0001\"");
    EXPECT_EQ(rendered("\x07"), "\"\\u0007\"");
    EXPECT_EQ(rendered("\x0b"), "\"\\u000b\""); // vertical tab has no short escape
    EXPECT_EQ(rendered("\x0e"), "\"\\u000e\"");
    EXPECT_EQ(rendered("\x1a"), "\"\\u001a\"");
    EXPECT_EQ(rendered("\x1b"), "\"\\u001b\"");
    EXPECT_EQ(rendered("\x1f"), "\"\\u001f\"");
}

TEST(JsonAppendString, DeleteAndHighBytesPassThrough) {
    EXPECT_EQ(rendered("\x7f"), "\"\x7f\"");
    EXPECT_EQ(rendered(" "), "\" \"");                               // 0x20 is the first byte left alone
    EXPECT_EQ(rendered("caf\xc3\xa9"), "\"caf\xc3\xa9\"");           // é
    EXPECT_EQ(rendered("\xe2\x82\xac"), "\"\xe2\x82\xac\"");         // €
    EXPECT_EQ(rendered("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\""); // U+1F600
    EXPECT_EQ(rendered("\xe2\x80\xa8"), "\"\xe2\x80\xa8\"");         // U+2028 is not escaped either
    EXPECT_EQ(rendered("\xff\xfe\x80"), "\"\xff\xfe\x80\"");         // bytes, not characters
}

TEST(JsonAppendString, EveryByteMatchesEscapeJson) {
    for (int b = 1; b < 256; ++b) {
        const std::string s(1, static_cast<char>(b));
        EXPECT_EQ(rendered(s), escape_json_reference(s)) << "byte " << b;
        const std::string mixed = "a" + s + "b" + s + s;
        EXPECT_EQ(rendered(mixed), escape_json_reference(mixed)) << "byte " << b;
    }
}

TEST(JsonAppendString, EmbeddedNulUsesExplicitLength) {
    const std::string s = "a\0b"s;
    ASSERT_EQ(s.size(), 3u);
    EXPECT_EQ(rendered(s), "\"a\\u0000b\"");
    EXPECT_EQ(rendered("\0"s), "\"\\u0000\"");
}

TEST(JsonAppendString, LengthLimitsTheInput) {
    StringSink sink;
    json::append_string(sink, "abc\ndef", 4);
    EXPECT_EQ(sink.text, "\"abc\\n\"");
    StringSink empty;
    json::append_string(empty, "ignored", 0);
    EXPECT_EQ(empty.text, "\"\"");
}

TEST(JsonAppendString, EscapesAtStartEndAndAdjacent) {
    EXPECT_EQ(rendered("\nabc"), "\"\\nabc\"");
    EXPECT_EQ(rendered("abc\n"), "\"abc\\n\"");
    EXPECT_EQ(rendered("\"\"\\\\"), "\"\\\"\\\"\\\\\\\\\"");
    EXPECT_EQ(rendered("\r\n\x01\t"), "\"\\r\\n\\u0001\\t\"");
    EXPECT_EQ(rendered("x\"y\\z"), "\"x\\\"y\\\\z\"");
}

TEST(JsonAppendString, LongStringWithEscapes) {
    const std::string middle(10000, 'x');
    const std::string s = "\"" + middle + "\x02" + middle + "\\";
    const std::string expected = "\"\\\"" + middle + "\\u0002" + middle + "\\\\\"";
    EXPECT_EQ(rendered(s), expected);
    EXPECT_EQ(rendered(s), escape_json_reference(s));

    std::string all_escapes;
    for (int i = 0; i < 1000; ++i)
        all_escapes += "\t\x1f\"";
    EXPECT_EQ(rendered(all_escapes), escape_json_reference(all_escapes));
    EXPECT_EQ(rendered(all_escapes).size(), 2u + 1000u * (2 + 6 + 2));
}

TEST(JsonAppendString, AppendsToExistingContent) {
    StringSink sink;
    sink.text = "prefix:";
    json::append_string(sink, "v", 1);
    EXPECT_EQ(sink.text, "prefix:\"v\"");
}

// ---------------------------------------------------------------------------------------------
// is_number

TEST(JsonIsNumber, AcceptsJsonNumbers) {
    for (const char *s : {"0", "-0", "7", "12", "12.50", "0.5", "-0.0", "1e10", "1E10", "1E+10", "1e-10",
                          "-1.5e-3", "123456789012345678901234567890", "0e0", "-0E-0", "1.0e+308"})
        EXPECT_TRUE(is_number(s)) << s;
}

TEST(JsonIsNumber, RejectsEverythingElse) {
    for (const char *s :
         {"",      "-",     "NaN", "nan",   "Infinity", "-Infinity", "+1",   "01",   "-01",  "00",
          "1.",    ".5",    "-.5", "1e",    "1e+",      "1E-",       "e5",   " 1",   "1 ",   "0x10",
          "1.2.3", "1e5.5", "--1", "1_000", "1,5",      "Inf",       "true", "null", "\"1\""})
        EXPECT_FALSE(is_number(s)) << '"' << s << '"';
}

TEST(JsonIsNumber, RespectsLength) {
    // Only the first len bytes count.
    EXPECT_TRUE(json::is_number("12x", 2));
    EXPECT_FALSE(json::is_number("12x", 3));
    EXPECT_FALSE(json::is_number("1", 0));
    EXPECT_FALSE(json::is_number("1e5", 2)); // "1e"
    EXPECT_FALSE(json::is_number("-1", 1));
    EXPECT_FALSE(is_number("1\0"s));
}

// ---------------------------------------------------------------------------------------------
// append_number_text

TEST(JsonAppendNumberText, NumbersRaw) {
    EXPECT_EQ(number_text("42"), "42");
    EXPECT_EQ(number_text("-0"), "-0");
    EXPECT_EQ(number_text("12.50"), "12.50");
    EXPECT_EQ(number_text("1e+308"), "1e+308");
    EXPECT_EQ(number_text("-1.5e-3"), "-1.5e-3");
}

TEST(JsonAppendNumberText, NonNumbersQuoted) {
    EXPECT_EQ(number_text("NaN"), "\"NaN\"");
    EXPECT_EQ(number_text("Infinity"), "\"Infinity\"");
    EXPECT_EQ(number_text("-Infinity"), "\"-Infinity\"");
    EXPECT_EQ(number_text(""), "\"\"");
    EXPECT_EQ(number_text("1\n"), "\"1\\n\"");
}

// ---------------------------------------------------------------------------------------------
// ObjectWriter

TEST(JsonObjectWriter, EmptyObject) {
    StringSink sink;
    json::ObjectWriter<StringSink> w(sink);
    w.finish();
    EXPECT_EQ(sink.text, "{}");
}

TEST(JsonObjectWriter, OneMember) {
    StringSink sink;
    json::ObjectWriter<StringSink> w(sink);
    w.key("a", 1);
    sink.append("1", 1);
    w.finish();
    EXPECT_EQ(sink.text, "{\"a\":1}");
}

TEST(JsonObjectWriter, SeparatorsWithoutSpaces) {
    StringSink sink;
    json::ObjectWriter<StringSink> w(sink);
    w.key("a", 1);
    json::append_number_text(sink, "1", 1);
    w.key("b", 1);
    json::append_string(sink, "x", 1);
    w.key("c", 1);
    json::append_number_text(sink, "NaN", 3);
    w.finish();
    EXPECT_EQ(sink.text, "{\"a\":1,\"b\":\"x\",\"c\":\"NaN\"}");
}

TEST(JsonObjectWriter, KeysAreEscaped) {
    StringSink sink;
    json::ObjectWriter<StringSink> w(sink);
    const std::string k = "we\"ird\n\0key"s;
    w.key(k.data(), k.size());
    sink.append("null", 4);
    w.finish();
    EXPECT_EQ(sink.text, "{\"we\\\"ird\\n\\u0000key\":null}");
}

TEST(JsonObjectWriter, EmptyKey) {
    StringSink sink;
    json::ObjectWriter<StringSink> w(sink);
    w.key("", 0);
    sink.append("0", 1);
    w.finish();
    EXPECT_EQ(sink.text, "{\"\":0}");
}

TEST(JsonObjectWriter, RawKeyIsWrittenVerbatim) {
    StringSink sink;
    json::ObjectWriter<StringSink> w(sink);
    const std::string pre = "\"id\":";
    w.raw_key(pre.data(), pre.size());
    sink.append("1", 1);
    w.key("name", 4);
    json::append_string(sink, "x", 1);
    w.raw_key(pre.data(), pre.size());
    sink.append("2", 1);
    w.finish();
    EXPECT_EQ(sink.text, "{\"id\":1,\"name\":\"x\",\"id\":2}");
}

TEST(JsonObjectWriter, RawKeyFirstThenKey) {
    StringSink sink;
    json::ObjectWriter<StringSink> w(sink);
    w.raw_key("\"a\":", 4);
    sink.append("true", 4);
    w.finish();
    EXPECT_EQ(sink.text, "{\"a\":true}");
}

TEST(JsonObjectWriter, NestedObjects) {
    StringSink sink;
    json::ObjectWriter<StringSink> outer(sink);
    outer.key("o", 1);
    {
        json::ObjectWriter<StringSink> inner(sink);
        inner.key("x", 1);
        sink.append("1", 1);
        inner.key("y", 1);
        sink.append("2", 1);
        inner.finish();
    }
    outer.key("e", 1);
    {
        json::ObjectWriter<StringSink> inner(sink);
        inner.finish();
    }
    outer.finish();
    EXPECT_EQ(sink.text, "{\"o\":{\"x\":1,\"y\":2},\"e\":{}}");
}

} // namespace
