// JSON text building shared by the capture trigger and the unit tests. PostgreSQL-free.
//
// Output matches PostgreSQL's own to_json/row_to_json byte for byte: strings are escaped the way
// escape_json() does it, numbers that are not valid JSON numbers (NaN, Infinity) become strings,
// objects are written as {"a":1,"b":2} without spaces. The capture regression test compares the
// trigger's output with row_to_json() as text, so any drift shows up there.
//
// A Sink is anything with append(const char *, size_t) and push(char). The PostgreSQL side uses
// a StringInfo sink (no destructor, so a longjmp out of a PostgreSQL call cannot skip one); the
// unit tests use std::string.
#pragma once

#include <cstddef>

namespace pg_sync::json {

// True when text[0..len) is a number by the JSON grammar (RFC 8259, section 6).
inline bool is_number(const char *s, std::size_t len) {
    std::size_t i = 0;
    auto digit = [&](std::size_t k) { return k < len && s[k] >= '0' && s[k] <= '9'; };
    if (i < len && s[i] == '-')
        ++i;
    if (!digit(i))
        return false;
    if (s[i] == '0')
        ++i;
    else
        while (digit(i))
            ++i;
    if (i < len && s[i] == '.') {
        ++i;
        if (!digit(i))
            return false;
        while (digit(i))
            ++i;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        ++i;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            ++i;
        if (!digit(i))
            return false;
        while (digit(i))
            ++i;
    }
    return i == len;
}

// Appends s[0..len) as a quoted JSON string, escaped exactly like PostgreSQL's escape_json():
// the two-character escapes for \b \f \n \r \t " and backslash, \u00XX (lowercase hex) for the
// other control characters, every other byte (UTF-8 included) as is.
template <class Sink> void append_string(Sink &out, const char *s, std::size_t len) {
    static const char hex[] = "0123456789abcdef";
    out.push('"');
    std::size_t run = 0; // start of the pending run of bytes that need no escaping
    for (std::size_t i = 0; i < len; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (i > run)
            out.append(s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        std::size_t n = 2;
        switch (c) {
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            n = 6;
        }
        out.append(esc, n);
    }
    if (len > run)
        out.append(s + run, len - run);
    out.push('"');
}

// A number rendered by a type's output function: raw when it is a JSON number, else a string
// (to_json renders 'NaN'::float8 as "NaN").
template <class Sink> void append_number_text(Sink &out, const char *s, std::size_t len) {
    if (is_number(s, len))
        out.append(s, len);
    else
        append_string(out, s, len);
}

// Writes {"k1":v1,"k2":v2}: call key() before each value, then finish().
template <class Sink> class ObjectWriter {
  public:
    explicit ObjectWriter(Sink &out) : out_(out) { out_.push('{'); }
    // name is appended escaped; for hot paths pass a pre-rendered "\"name\":" to raw_key().
    void key(const char *name, std::size_t len) {
        separator();
        append_string(out_, name, len);
        out_.push(':');
    }
    void raw_key(const char *rendered, std::size_t len) {
        separator();
        out_.append(rendered, len);
    }
    void finish() { out_.push('}'); }

  private:
    void separator() {
        if (!first_)
            out_.push(',');
        first_ = false;
    }
    Sink &out_;
    bool first_ = true;
};

} // namespace pg_sync::json
