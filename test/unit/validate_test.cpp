// Unit tests of src/core/validate.{hpp,cpp}.
#include "core/validate.hpp"

#include <gtest/gtest.h>

#include <climits>
#include <limits>
#include <clocale>
#include <ostream>
#include <string>
#include <vector>

namespace pg_sync::validate {
// Names parameterized tests by the setting instead of the bytes of the struct.
void PrintTo(const Range &r, std::ostream *os) { *os << r.name; }
} // namespace pg_sync::validate

namespace {

using namespace std::string_literals;
namespace validate = pg_sync::validate;
using validate::Problem;
using validate::Range;

// Standard base64 of n bytes, with or without '=' padding.
std::string base64_of(std::size_t n, bool padded = true) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::vector<unsigned char> bytes(n);
    for (std::size_t i = 0; i < n; ++i)
        bytes[i] = static_cast<unsigned char>(i * 37 + 251); // covers '+' and '/' too
    std::string out;
    for (std::size_t i = 0; i < n; i += 3) {
        const unsigned v =
            bytes[i] << 16 | (i + 1 < n ? bytes[i + 1] << 8 : 0) | (i + 2 < n ? bytes[i + 2] : 0);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        out += i + 2 < n ? alphabet[v & 63] : '=';
    }
    if (!padded)
        while (!out.empty() && out.back() == '=')
            out.pop_back();
    return out;
}

std::string headers_json(std::size_t count) {
    std::string s = "{";
    for (std::size_t i = 0; i < count; ++i)
        s += (i ? ",\"X-H" : "\"X-H") + std::to_string(i) + "\":\"v\"";
    return s + "}";
}

// ---------------------------------------------------------------------------------------------
// endpoint_name

TEST(ValidateEndpointName, AcceptsLettersDigitsAndPunctuation) {
    for (const char *n : {"a", "orders", "Orders_v2", "orders-eu.prod", "0", "A1b2_C3-d4.e5", "a-", "a."})
        EXPECT_TRUE(validate::endpoint_name(n).ok()) << n;
}

TEST(ValidateEndpointName, MustStartWithLetterOrDigit) {
    for (const char *n : {"_", "-", ".", "-orders", ".hidden", "_x"})
        EXPECT_FALSE(validate::endpoint_name(n).ok()) << n;
}

TEST(ValidateEndpointName, Empty) {
    const Problem p = validate::endpoint_name("");
    EXPECT_EQ(p.message, "endpoint name must not be empty");
}

TEST(ValidateEndpointName, LengthLimitIs63) {
    ASSERT_EQ(validate::kMaxEndpointNameLength, 63u);
    EXPECT_TRUE(validate::endpoint_name(std::string(63, 'n')).ok());
    const Problem p = validate::endpoint_name(std::string(64, 'n'));
    EXPECT_EQ(p.message, "endpoint name is too long");
    EXPECT_EQ(p.detail, "It has 64 characters; the limit is 63.");
}

TEST(ValidateEndpointName, RejectsOtherCharacters) {
    for (const std::string &n :
         std::vector<std::string>{"a b", " a", "a ", "a\"b", "a'b", "a/b", "a:b", "a;b", "a,b", "a@b", "a*b",
                                  "a\tb", "a\nb", "caf\xc3\xa9", "\xe2\x82\xac", "a\0b"s, "a\x7f"})
        EXPECT_FALSE(validate::endpoint_name(n).ok()) << n;
}

TEST(ValidateEndpointName, MessageShowsNameSafely) {
    const Problem q = validate::endpoint_name("my \"name\"");
    EXPECT_EQ(q.message, "invalid endpoint name \"my \"name\"\"");
    EXPECT_EQ(q.hint, "Start with a letter or digit; use letters, digits, \"_\", \"-\" and \".\".");
    // Control and non-ASCII bytes are shown as '?', one per byte.
    EXPECT_EQ(validate::endpoint_name("caf\xc3\xa9\n").message, "invalid endpoint name \"caf???\"");
}

// ---------------------------------------------------------------------------------------------
// url

TEST(ValidateUrl, AcceptsHttpAndHttps) {
    for (const char *u :
         {"http://example.com", "https://example.com/", "http://example.com:8080/hook",
          "https://example.com:443/a/b/c?x=1&y=two", "http://localhost:65535/", "http://127.0.0.1:9000/hook",
          "http://[::1]/", "http://[::1]:8080/x?a=b", "https://[2001:db8::1]:8443/hook",
          "HTTPS://EXAMPLE.COM/Hook", "https://example.com/path%20with%20escapes",
          "https://sub.domain.example.co.uk/h?q", "https://xn--mnchen-3ya.de/"})
        EXPECT_TRUE(validate::url(u).ok()) << u << ": " << validate::url(u).message;
}

TEST(ValidateUrl, Empty) { EXPECT_EQ(validate::url("").message, "endpoint URL must not be empty"); }

TEST(ValidateUrl, LengthLimit) {
    ASSERT_EQ(validate::kMaxUrlLength, 2048u);
    const std::string base = "https://example.com/";
    const std::string at_limit = base + std::string(2048 - base.size(), 'a');
    ASSERT_EQ(at_limit.size(), 2048u);
    EXPECT_TRUE(validate::url(at_limit).ok());
    const Problem p = validate::url(at_limit + "a");
    EXPECT_EQ(p.message, "endpoint URL is too long");
    EXPECT_EQ(p.detail, "It has 2049 characters; the limit is 2048.");
}

TEST(ValidateUrl, RejectsOtherSchemes) {
    for (const char *u : {"file:///etc/passwd", "gopher://example.com/", "ftp://example.com/",
                          "ws://example.com/", "ldap://example.com/", "dict://example.com/"}) {
        const Problem p = validate::url(u);
        EXPECT_EQ(p.message, "endpoint URL scheme must be http, https or kafka") << u;
    }
    EXPECT_EQ(validate::url("gopher://example.com/").detail, "The URL uses \"gopher\".");
    EXPECT_FALSE(validate::url("javascript:alert(1)").ok());
    EXPECT_FALSE(validate::url("data:text/plain,hi").ok());
    EXPECT_FALSE(validate::url("mailto:a@example.com").ok());
}

TEST(ValidateUrl, RejectsMissingSchemeAndRelative) {
    for (const char *u : {"example.com/hook", "example.com", "/hook", "hook", "./hook", "//example.com/hook",
                          "?x=1", "http:example.com"}) {
        const Problem p = validate::url(u);
        EXPECT_FALSE(p.ok()) << u;
        EXPECT_EQ(p.message, "invalid endpoint URL \"" + std::string(u) + "\"") << u;
    }
    EXPECT_EQ(validate::url("example.com/hook").hint,
              "Give an absolute URL such as https://example.com/hook.");
}

TEST(ValidateUrl, RejectsMissingHost) {
    for (const char *u : {"http://", "https://", "http://:8080/", "http:///"})
        EXPECT_FALSE(validate::url(u).ok()) << u;
    // libcurl alone would read these as host "path-only" / "hooks".
    for (const char *u : {"https:///path-only", "http:///hooks?x=1", "http://?x", "http://#f"})
        EXPECT_EQ(validate::url(u).message, "endpoint URL has no host") << u;
    EXPECT_EQ(validate::url("http:/example.com/hook").message, "invalid endpoint URL \"http:/example.com/hook\"");
}

TEST(ValidateUrl, RejectsPortZeroAndEmptyFragment) {
    EXPECT_EQ(validate::url("http://example.com:0/").message, "endpoint URL port must be between 1 and 65535");
    EXPECT_EQ(validate::url("http://example.com/#").message, "endpoint URL must not contain a fragment");
}

TEST(ValidateUrl, RejectsBadPort) {
    EXPECT_FALSE(validate::url("http://example.com:65536/").ok());
    EXPECT_FALSE(validate::url("http://example.com:port/").ok());
    EXPECT_FALSE(validate::url("http://example.com:-1/").ok());
}

TEST(ValidateUrl, RejectsSpacesControlAndNonAscii) {
    for (const std::string &u : std::vector<std::string>{
             "http://example.com/a b", " http://example.com/", "http://example.com/ ",
             "http://example.com/\t", "http://example.com/\r\nX-Injected: 1", "http://example.com/\n",
             "http://example.com/\r", "http://example.com/\x01", "http://example.com/\x7f",
             "http://example.com/\0"s, "https://m\xc3\xbcnchen.de/", "https://example.com/caf\xc3\xa9"}) {
        const Problem p = validate::url(u);
        EXPECT_FALSE(p.ok()) << u;
        EXPECT_EQ(p.detail, "URLs may not contain spaces, control characters or non-ASCII characters.") << u;
    }
    const Problem p = validate::url("http://example.com/\r\nX: 1");
    EXPECT_EQ(p.message, "invalid endpoint URL \"http://example.com/??X: 1\"");
}

TEST(ValidateUrl, RejectsCredentials) {
    for (const char *u : {"http://user@example.com/", "http://user:pw@example.com/",
                          "https://:pw@example.com/", "https://user:@example.com:8443/hook"}) {
        const Problem p = validate::url(u);
        EXPECT_EQ(p.message, "endpoint URL must not contain credentials") << u;
        EXPECT_NE(p.hint.find("headers argument"), std::string::npos) << u;
    }
}

TEST(ValidateUrl, RejectsFragment) {
    const Problem p = validate::url("https://example.com/hook#section");
    EXPECT_EQ(p.message, "endpoint URL must not contain a fragment");
    EXPECT_EQ(p.detail, "A fragment (#...) is never sent to the server.");
    EXPECT_EQ(validate::url("https://example.com/?a=1#f").message,
              "endpoint URL must not contain a fragment");
}

TEST(ValidateUrl, LongValueShownTruncated) {
    const std::string u = "ftp://" + std::string(200, 'h') + "/";
    EXPECT_FALSE(validate::url(u).ok());
    const std::string bad = "http://example.com/" + std::string(100, 'a') + " ";
    const Problem p = validate::url(bad);
    EXPECT_EQ(p.message, "invalid endpoint URL \"" + bad.substr(0, 80) + "...\"");
}

// ---------------------------------------------------------------------------------------------
// headers

TEST(UrlOrigin, SchemeHostAndPortWithDefaults) {
    EXPECT_EQ(validate::url_origin("https://example.com/hooks?a=1"), "https://example.com:443");
    EXPECT_EQ(validate::url_origin("http://example.com/x"), "http://example.com:80");
    EXPECT_EQ(validate::url_origin("HTTPS://Example.COM:443/other/path"), "https://example.com:443");
    EXPECT_EQ(validate::url_origin("http://127.0.0.1:8080/hook"), "http://127.0.0.1:8080");
    EXPECT_EQ(validate::url_origin("http://[::1]:9/h"), "http://[::1]:9");
}

TEST(UrlOrigin, DiffersWhenSchemeHostOrPortDiffers) {
    const std::string base = validate::url_origin("https://example.com/a");
    EXPECT_EQ(base, validate::url_origin("https://example.com/b?q"));
    EXPECT_NE(base, validate::url_origin("http://example.com/a"));
    EXPECT_NE(base, validate::url_origin("https://example.com:8443/a"));
    EXPECT_NE(base, validate::url_origin("https://example.com.evil.test/a"));
    EXPECT_NE(base, validate::url_origin("https://evil.test/example.com"));
}

TEST(UrlOrigin, EmptyForInvalidUrls) {
    EXPECT_EQ(validate::url_origin(""), "");
    EXPECT_EQ(validate::url_origin("ftp://example.com/"), "");
    EXPECT_EQ(validate::url_origin("https://user:pw@example.com/"), "");
    EXPECT_EQ(validate::url_origin("not a url"), "");
}

TEST(ValidateHeaders, AcceptsObjectOfStrings) {
    for (const char *h :
         {"{}", " { } ", "{\"Authorization\": \"Bearer abc\"}",
          "{\"X-Api-Key\": \"k\", \"X-Tenant\": \"t1\", \"Accept\": \"application/json\"}",
          "{\"X-Empty\": \"\"}", "{\"X-Tab\": \"a\\tb\"}", "{\"!#$%&'*+-.^_`|~09azAZ\": \"v\"}",
          "{\"User-Agent\": \"pg_sync/0.1 (+https://example.com)\"}"})
        EXPECT_TRUE(validate::headers(h).ok()) << h << ": " << validate::headers(h).message;
}

TEST(ValidateHeaders, RejectsNonObjects) {
    for (const char *h : {"[]", "[{\"A\": \"b\"}]", "\"A: b\"", "42", "null", "true"}) {
        const Problem p = validate::headers(h);
        EXPECT_EQ(p.message, "headers must be a JSON object of header names to string values") << h;
        EXPECT_EQ(p.hint, "For example '{\"Authorization\": \"Bearer abc\"}'.") << h;
    }
}

TEST(ValidateHeaders, RejectsInvalidJson) {
    for (const char *h :
         {"", " ", "{", "{\"A\": \"b\"", "{\"A\": \"b\",}", "{A: \"b\"}", "{'A': 'b'}", "{\"A\": \"b\"} x",
          "{\"A\": \"b\"}{}", "{\"A\": \"\\ud800\"}", "{\"A\": \"\xff\"}"})
        EXPECT_EQ(validate::headers(h).message,
                  "headers must be a JSON object of header names to string values")
            << h;
}

TEST(ValidateHeaders, RejectsNonStringValues) {
    for (const char *h : {"{\"X-A\": 1}", "{\"X-A\": null}", "{\"X-A\": {}}", "{\"X-A\": {\"b\": \"c\"}}",
                          "{\"X-A\": [\"v\"]}", "{\"X-A\": true}", "{\"X-A\": 1.5}"})
        EXPECT_EQ(validate::headers(h).message, "value of header \"X-A\" must be a JSON string") << h;
}

TEST(ValidateHeaders, RejectsInvalidNames) {
    for (const char *h :
         {"{\"X A\": \"v\"}", "{\"X:A\": \"v\"}", "{\"\": \"v\"}", "{\"caf\xc3\xa9\": \"v\"}",
          "{\"X-A\\n\": \"v\"}", "{\"X(A)\": \"v\"}", "{\"X/A\": \"v\"}", "{\"X\\\"A\": \"v\"}",
          "{\"X@A\": \"v\"}", "{\"X,A\": \"v\"}", "{\"X\\u0000\": \"v\"}", "{\"X\\tA\": \"v\"}"})
        EXPECT_EQ(validate::headers(h).message.rfind("invalid header name \"", 0), 0u) << h;
    const Problem p = validate::headers("{\"X A\": \"v\"}");
    EXPECT_EQ(p.message, "invalid header name \"X A\"");
    EXPECT_EQ(p.detail, "Header names are HTTP tokens: letters, digits and !#$%&'*+-.^_`|~.");
}

TEST(ValidateHeaders, NameLengthLimit) {
    ASSERT_EQ(validate::kMaxHeaderNameLength, 256u);
    EXPECT_TRUE(validate::headers("{\"" + std::string(256, 'x') + "\": \"v\"}").ok());
    const Problem p = validate::headers("{\"" + std::string(257, 'x') + "\": \"v\"}");
    EXPECT_FALSE(p.ok());
    EXPECT_EQ(p.message.rfind("header name \"xxx", 0), 0u) << p.message;
    EXPECT_NE(p.message.find("\" is too long"), std::string::npos) << p.message;
    EXPECT_EQ(p.detail, "The limit is 256 bytes.");
    // Too long and not a token: the length is reported first.
    EXPECT_NE(validate::headers("{\"" + std::string(300, ' ') + "\": \"v\"}").message.find("is too long"),
              std::string::npos);
}

TEST(ValidateHeaders, RejectsReservedNamesCaseInsensitively) {
    for (const char *name :
         {"Content-Type", "content-length", "HOST", "webhook-id", "Webhook-Signature", "webhook-timestamp",
          "WEBHOOK-ANYTHING", "Proxy-Authorization", "proxy-connection", "Transfer-Encoding", "Connection",
          "CONNECTION", "TRANSFER-ENCODING", "Expect", "TE", "Trailer", "Upgrade", "Keep-Alive",
          "KEEP-ALIVE"}) {
        const Problem p = validate::headers("{\"" + std::string(name) + "\": \"v\"}");
        EXPECT_EQ(p.message, "header \"" + std::string(name) + "\" cannot be set") << name;
        EXPECT_TRUE(validate::is_reserved_header(name)) << name;
    }
}

TEST(ValidateHeaders, SimilarButUnreservedNamesAllowed) {
    for (const char *name : {"Content-Encoding", "X-Host", "Hostname", "Webhook", "X-Webhook-Id", "Proxy",
                             "Tee", "Connections", "Authorization", "Accept"}) {
        EXPECT_FALSE(validate::is_reserved_header(name)) << name;
        EXPECT_TRUE(validate::headers("{\"" + std::string(name) + "\": \"v\"}").ok()) << name;
    }
}

TEST(ValidateHeaders, RejectsControlAndNonAsciiValues) {
    const std::string msg = "value of header \"X-A\" contains a control or non-ASCII character";
    for (const char *h : {"{\"X-A\": \"a\\rb\"}", "{\"X-A\": \"a\\nb\"}", "{\"X-A\": \"a\\r\\nX-Evil: 1\"}",
                          "{\"X-A\": \"a\\u0000b\"}", "{\"X-A\": \"\\u0001\"}", "{\"X-A\": \"\\u007f\"}",
                          "{\"X-A\": \"caf\xc3\xa9\"}", "{\"X-A\": \"caf\\u00e9\"}"}) {
        const Problem p = validate::headers(h);
        EXPECT_EQ(p.message, msg) << h;
        EXPECT_EQ(p.detail, "CR, LF and other control characters would allow header injection.") << h;
    }
}

TEST(ValidateHeaders, ValueLengthLimit) {
    ASSERT_EQ(validate::kMaxHeaderValueLength, 8192u);
    EXPECT_TRUE(validate::headers("{\"X-A\": \"" + std::string(8192, 'v') + "\"}").ok());
    const Problem p = validate::headers("{\"X-A\": \"" + std::string(8193, 'v') + "\"}");
    EXPECT_EQ(p.message, "value of header \"X-A\" is too long");
    EXPECT_EQ(p.detail, "The limit is 8192 bytes.");
}

TEST(ValidateHeaders, HeaderCountLimit) {
    ASSERT_EQ(validate::kMaxHeaders, 64u);
    EXPECT_TRUE(validate::headers(headers_json(64)).ok());
    const Problem p = validate::headers(headers_json(65));
    EXPECT_EQ(p.message, "too many headers");
    EXPECT_EQ(p.detail, "There are 65; the limit is 64.");
}

TEST(ValidateHeaders, RejectsNamesDifferingOnlyInCase) {
    const Problem p = validate::headers("{\"x-api-key\": \"1\", \"X-Api-Key\": \"2\"}");
    EXPECT_FALSE(p.ok());
    EXPECT_EQ(p.message.find("header \""), 0u);
    EXPECT_NE(p.message.find("\" is given twice"), std::string::npos);
    EXPECT_FALSE(validate::headers("{\"A\": \"1\", \"B\": \"2\", \"a\": \"3\"}").ok());
}

// Current behaviour, the same as jsonb: an exactly repeated key is collapsed by the JSON parser and
// the last value wins, so it is not reported as given twice.
TEST(ValidateHeaders, ExactlyRepeatedKeyIsCollapsed) {
    EXPECT_TRUE(validate::headers("{\"X-A\": \"1\", \"X-A\": \"2\"}").ok());
}

TEST(ValidateHeaders, IsHeaderToken) {
    EXPECT_TRUE(validate::is_header_token("X-Request-Id"));
    EXPECT_TRUE(validate::is_header_token("!#$%&'*+-.^_`|~"));
    EXPECT_FALSE(validate::is_header_token(""));
    EXPECT_FALSE(validate::is_header_token("a b"));
    EXPECT_FALSE(validate::is_header_token("a:b"));
    EXPECT_FALSE(validate::is_header_token("a\0b"s));
    EXPECT_FALSE(validate::is_header_token("\xc3\xa9"));
    for (char c : std::string("()<>@,;:\\\"/[]?={} \t"))
        EXPECT_FALSE(validate::is_header_token(std::string("a") + c)) << c;
}

// ---------------------------------------------------------------------------------------------
// base64_decoded_length and secret

TEST(ValidateBase64, DecodedLength) {
    EXPECT_EQ(validate::base64_decoded_length(""), 0);
    EXPECT_EQ(validate::base64_decoded_length("QQ=="), 1);
    EXPECT_EQ(validate::base64_decoded_length("QQ"), 1);
    EXPECT_EQ(validate::base64_decoded_length("QUI="), 2);
    EXPECT_EQ(validate::base64_decoded_length("QUI"), 2);
    EXPECT_EQ(validate::base64_decoded_length("QUJD"), 3);
    EXPECT_EQ(validate::base64_decoded_length("QUJDRA=="), 4);
    EXPECT_EQ(validate::base64_decoded_length("+/+/"), 3);
    for (std::size_t n = 0; n <= 100; ++n) {
        EXPECT_EQ(validate::base64_decoded_length(base64_of(n)), static_cast<long>(n)) << n;
        EXPECT_EQ(validate::base64_decoded_length(base64_of(n, false)), static_cast<long>(n)) << n;
    }
}

TEST(ValidateBase64, RejectsMalformed) {
    for (const std::string &b :
         std::vector<std::string>{"Q",      "QUJDR",       "Q===",     "====",    "=",     "==",    "QQ=",
                                  "QUJD=",  "QUJD==",      "QQ==QQ==", "Q=Q=",    "QU-_",  "QUJ D", "QUJD\n",
                                  "\nQUJD", "QUJ\xc3\xa9", "QU\0D"s,   "QUJD===", "QQ===", "QUI=="})
        EXPECT_EQ(validate::base64_decoded_length(b), -1) << b;
}

TEST(ValidateSecret, AcceptsWhsecBase64Of24To64Bytes) {
    for (std::size_t n : {24u, 25u, 26u, 32u, 48u, 63u, 64u}) {
        EXPECT_TRUE(validate::secret("whsec_" + base64_of(n)).ok()) << n;
        EXPECT_TRUE(validate::secret("whsec_" + base64_of(n, false)).ok()) << n;
    }
    // The example from the Standard Webhooks specification (24 bytes).
    EXPECT_TRUE(validate::secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").ok());
}

TEST(ValidateSecret, RejectsMissingPrefix) {
    const std::string hint =
        "A Standard Webhooks secret is \"whsec_\" followed by the base64 encoding of 24 to 64 "
        "random bytes, for example \"whsec_\" followed by the output of openssl rand -base64 32.";
    for (const std::string &s :
         std::vector<std::string>{"", base64_of(32), "WHSEC_" + base64_of(32), "whsec" + base64_of(32),
                                  " whsec_" + base64_of(32), "whsk_" + base64_of(32)}) {
        const Problem p = validate::secret(s);
        EXPECT_EQ(p.message, "secret must start with \"whsec_\"") << s;
        EXPECT_EQ(p.hint, hint);
    }
}

TEST(ValidateSecret, RejectsBadBase64) {
    const std::string good = base64_of(32);
    for (const std::string &s : std::vector<std::string>{
             "whsec_" + good.substr(0, 10) + "-" + good.substr(11),
             "whsec_" + good.substr(0, 10) + "_" + good.substr(11), "whsec_" + good + " ",
             "whsec_" + good + "\n", "whsec_" + good.substr(0, 41) + "===", "whsec_" + good + "A"})
        EXPECT_EQ(validate::secret(s).message, "secret is not valid base64 after \"whsec_\"") << s;
}

TEST(ValidateSecret, RejectsWrongLength) {
    struct Case {
        std::string secret;
        long bytes;
    };
    for (const Case &c :
         {Case{"whsec_", 0}, Case{"whsec_" + base64_of(1), 1}, Case{"whsec_" + base64_of(23), 23},
          Case{"whsec_" + base64_of(23, false), 23}, Case{"whsec_" + base64_of(65), 65},
          Case{"whsec_" + base64_of(65, false), 65}, Case{"whsec_" + base64_of(200), 200}}) {
        const Problem p = validate::secret(c.secret);
        EXPECT_EQ(p.message, "secret must encode 24 to 64 bytes") << c.secret;
        EXPECT_EQ(p.detail, "It encodes " + std::to_string(c.bytes) + " bytes.") << c.secret;
    }
}

// ---------------------------------------------------------------------------------------------
// in_range and retry_bounds

class ValidateRange : public ::testing::TestWithParam<Range> {};

TEST_P(ValidateRange, Boundaries) {
    const Range r = GetParam();
    ASSERT_LT(r.min, r.max);
    EXPECT_TRUE(validate::in_range(r, r.min).ok());
    EXPECT_TRUE(validate::in_range(r, r.max).ok());
    EXPECT_TRUE(validate::in_range(r, r.min + 1).ok());
    EXPECT_TRUE(validate::in_range(r, r.max - 1).ok());
    const std::string msg =
        std::string(r.name) + " must be between " + std::to_string(r.min) + " and " + std::to_string(r.max);
    const Problem below = validate::in_range(r, r.min - 1);
    EXPECT_EQ(below.message, msg);
    EXPECT_EQ(below.detail, "The value given is " + std::to_string(r.min - 1) + ".");
    const Problem above = validate::in_range(r, r.max + 1);
    EXPECT_EQ(above.message, msg);
    EXPECT_EQ(above.detail, "The value given is " + std::to_string(r.max + 1) + ".");
    EXPECT_FALSE(validate::in_range(r, LONG_MIN).ok());
    EXPECT_FALSE(validate::in_range(r, LONG_MAX).ok());
    EXPECT_FALSE(validate::in_range(r, -1).ok());
}

INSTANTIATE_TEST_SUITE_P(AllSettings, ValidateRange,
                         ::testing::Values(validate::kBatchSize, validate::kMaxAttempts, validate::kTimeoutMs,
                                           validate::kMaxInFlight, validate::kRetryBaseMs,
                                           validate::kRetryMaxMs),
                         [](const ::testing::TestParamInfo<Range> &info) {
                             return std::string(info.param.name);
                         });

TEST(ValidateRangeValues, DocumentedBounds) {
    // These numbers are in the documentation; a change here must change it too.
    EXPECT_EQ(validate::kBatchSize.min, 1);
    EXPECT_EQ(validate::kBatchSize.max, 10000);
    EXPECT_EQ(validate::kMaxAttempts.max, 1000);
    EXPECT_EQ(validate::kTimeoutMs.min, 100);
    EXPECT_EQ(validate::kTimeoutMs.max, 600000);
    EXPECT_EQ(validate::kMaxInFlight.max, 256);
    EXPECT_EQ(validate::kRetryBaseMs.max, 86400000);
    EXPECT_EQ(validate::kRetryMaxMs.max, 604800000);
    EXPECT_EQ(validate::in_range(validate::kTimeoutMs, 99).message,
              "timeout_ms must be between 100 and 600000");
}

TEST(ValidateRetryBounds, BaseMustNotExceedMax) {
    EXPECT_TRUE(validate::retry_bounds(1, 1).ok());
    EXPECT_TRUE(validate::retry_bounds(1000, 60000).ok());
    EXPECT_TRUE(validate::retry_bounds(59999, 60000).ok());
    const Problem p = validate::retry_bounds(60001, 60000);
    EXPECT_EQ(p.message, "retry_base_ms must not be greater than retry_max_ms");
    EXPECT_EQ(p.detail, "retry_base_ms is 60001, retry_max_ms is 60000.");
}

// ---------------------------------------------------------------------------------------------
// Locale independence. The backend runs with the database's LC_CTYPE; <cctype> functions follow it
// (Latin-1 isalnum accepts 0xE9; Turkish tolower('I') is not 'i'). Skipped where no such locale is
// installed (e.g. LOCPATH pointing at localedef output makes them run).

class LocaleGuard {
  public:
    explicit LocaleGuard(const std::vector<const char *> &candidates) {
        for (const char *name : candidates)
            if (std::setlocale(LC_CTYPE, name)) {
                active_ = name;
                break;
            }
    }
    ~LocaleGuard() { std::setlocale(LC_CTYPE, "C"); }
    const char *active() const { return active_; }

  private:
    const char *active_ = nullptr;
};

TEST(ValidateLocale, TurkishUppercaseIStillReserved) {
    LocaleGuard guard({"tr_TR.UTF-8", "tr_TR.utf8", "tr_TR.ISO-8859-9", "tr_TR"});
    if (!guard.active())
        GTEST_SKIP() << "no Turkish locale installed";
    for (const char *name : {"CONNECTION", "TRANSFER-ENCODING", "KEEP-ALIVE", "TRAILER", "WEBHOOK-ID"}) {
        EXPECT_TRUE(validate::is_reserved_header(name)) << name << " in " << guard.active();
        EXPECT_FALSE(validate::headers("{\"" + std::string(name) + "\": \"v\"}").ok()) << name;
    }
    EXPECT_FALSE(validate::headers("{\"X-ID\": \"1\", \"x-id\": \"2\"}").ok());
}

TEST(ValidateLocale, Latin1LettersStillRejected) {
    LocaleGuard guard(
        {"de_DE.ISO-8859-1", "de_DE", "fr_FR.ISO-8859-1", "tr_TR.ISO-8859-9", "en_US.ISO-8859-1"});
    if (!guard.active())
        GTEST_SKIP() << "no single-byte Latin locale installed";
    EXPECT_FALSE(validate::endpoint_name("caf\xe9").ok()) << guard.active();
    EXPECT_FALSE(validate::is_header_token("X-\xe9")) << guard.active();
    EXPECT_EQ(validate::base64_decoded_length("QUJ\xe9"), -1) << guard.active();
}

} // namespace

namespace v = pg_sync::validate;

TEST(Validate, MaxRate) {
    EXPECT_TRUE(v::max_rate(0).ok());
    EXPECT_TRUE(v::max_rate(0.001).ok());
    EXPECT_TRUE(v::max_rate(0.5).ok());
    EXPECT_TRUE(v::max_rate(100).ok());
    EXPECT_TRUE(v::max_rate(100000).ok());
    for (double bad : {-1.0, 0.0009, 100000.5, std::numeric_limits<double>::quiet_NaN(),
                       std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()}) {
        const v::Problem p = v::max_rate(bad);
        EXPECT_FALSE(p.ok()) << bad;
        EXPECT_EQ(p.message, "max_rate must be 0 (no limit) or between 0.001 and 100000 requests per second");
    }
}

TEST(Validate, MaxRequestBytes) {
    EXPECT_TRUE(v::in_range(v::kMaxRequestBytes, 1024).ok());
    EXPECT_TRUE(v::in_range(v::kMaxRequestBytes, 1048576).ok());
    EXPECT_EQ(v::in_range(v::kMaxRequestBytes, 1023).message, "max_request_bytes must be between 1024 and 67108864");
    EXPECT_FALSE(v::in_range(v::kMaxRequestBytes, 67108865).ok());
}

TEST(Validate, PermanentStatuses) {
    EXPECT_TRUE(v::permanent_statuses({}, false).ok());
    EXPECT_TRUE(v::permanent_statuses({400, 401, 403, 404, 422}, false).ok());
    EXPECT_TRUE(v::permanent_statuses({100, 199, 300, 410, 413, 599}, false).ok());
    EXPECT_EQ(v::permanent_statuses({400, 200}, false).message, "permanent_statuses cannot contain a 2xx status");
    EXPECT_FALSE(v::permanent_statuses({299}, false).ok());
    EXPECT_EQ(v::permanent_statuses({99}, false).message,
              "permanent_statuses must be HTTP statuses between 100 and 599");
    EXPECT_FALSE(v::permanent_statuses({600}, false).ok());
    EXPECT_FALSE(v::permanent_statuses({-400}, false).ok());
    EXPECT_EQ(v::permanent_statuses({400}, true).message, "permanent_statuses must not contain null");
    EXPECT_FALSE(v::permanent_statuses(std::vector<long>(101, 400), false).ok());
}
