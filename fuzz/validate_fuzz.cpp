// libFuzzer target for src/core/validate: endpoint_name, url (also as a kafka:// URL), headers,
// secret and kafka_settings on arbitrary bytes. Besides "no crash, no sanitizer report", each accepted value is checked against the
// rules the header promises, with code written independently of validate.cpp, and every message
// must be printable ASCII (they go straight into ereport and the server log).
// Built and run by scripts/fuzz.sh.
#include "fuzz_common.hpp"
#include "core/signature.hpp"
#include "core/validate.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace v = pg_sync::validate;

bool alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool alnum(char c) { return alpha(c) || (c >= '0' && c <= '9'); }
bool printable(char c) { return c >= 0x20 && c < 0x7f; }

bool all_printable(std::string_view s) {
    for (char c : s)
        if (!printable(c))
            return false;
    return true;
}

std::string ascii_lower(std::string_view s) {
    std::string out(s);
    for (char &c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

void check_messages(const v::Problem &p) {
    FUZZ_CHECK(all_printable(p.message), "message is printable ASCII");
    FUZZ_CHECK(all_printable(p.detail), "detail is printable ASCII");
    FUZZ_CHECK(all_printable(p.hint), "hint is printable ASCII");
    FUZZ_CHECK(p.ok() || p.message.size() < 400, "message is bounded");
}

void check_endpoint_name(std::string_view s) {
    const v::Problem p = v::endpoint_name(s);
    check_messages(p);
    bool expect = !s.empty() && s.size() <= v::kMaxEndpointNameLength && alnum(s[0]);
    for (char c : s)
        expect = expect && (alnum(c) || c == '_' || c == '-' || c == '.');
    FUZZ_CHECK(p.ok() == expect, "endpoint_name agrees with the documented character rules");
}

void check_url(std::string_view s) {
    const v::Problem p = v::url(s);
    check_messages(p);
    if (!p.ok())
        return;
    FUZZ_CHECK(!s.empty() && s.size() <= v::kMaxUrlLength, "accepted URL length");
    FUZZ_CHECK(all_printable(s) && s.find(' ') == std::string_view::npos, "accepted URL is printable, no spaces");
    const std::string lower = ascii_lower(s.substr(0, 8));
    const bool http = lower.rfind("http://", 0) == 0;
    const bool https = lower.rfind("https://", 0) == 0;
    if (lower == "kafka://") {
        // kafka://brokers/topic: no credentials, query or fragment; a topic of Kafka's characters.
        const std::string_view rest = s.substr(8);
        const std::size_t slash = rest.find('/');
        FUZZ_CHECK(slash != std::string_view::npos && slash > 0, "accepted kafka URL has brokers and a topic");
        FUZZ_CHECK(rest.find_first_of("@?#") == std::string_view::npos, "accepted kafka URL: no credentials, query, fragment");
        const std::string_view topic = rest.substr(slash + 1);
        FUZZ_CHECK(!topic.empty() && topic.size() <= 249 && topic != "." && topic != "..", "accepted kafka topic length");
        for (char c : topic)
            FUZZ_CHECK(alnum(c) || c == '.' || c == '_' || c == '-', "accepted kafka topic characters");
        FUZZ_CHECK(!v::url_origin(s).empty(), "an accepted kafka URL has an origin");
        return;
    }
    FUZZ_CHECK(http || https, "accepted URL starts with http://, https:// or kafka://");
    const std::size_t host_at = http ? 7 : 8;
    FUZZ_CHECK(s.size() > host_at && s[host_at] != '/' && s[host_at] != '?', "accepted URL has an authority");
    FUZZ_CHECK(s.find('#') == std::string_view::npos, "accepted URL has no fragment");
}

void check_headers(std::string_view s) {
    const v::Problem p = v::headers(s);
    check_messages(p);
    if (!p.ok())
        return;
    const nlohmann::json doc = nlohmann::json::parse(s.begin(), s.end(), nullptr, false);
    FUZZ_CHECK(!doc.is_discarded() && doc.is_object(), "accepted headers are a JSON object");
    FUZZ_CHECK(doc.size() <= v::kMaxHeaders, "accepted headers: count");
    std::vector<std::string> names;
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        const std::string &name = it.key();
        FUZZ_CHECK(!name.empty() && name.size() <= v::kMaxHeaderNameLength, "header name length");
        for (char c : name)
            FUZZ_CHECK(alnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos,
                       "header name is an HTTP token");
        const std::string low = ascii_lower(name);
        FUZZ_CHECK(low != "content-type" && low != "content-length" && low != "host" &&
                       low != "transfer-encoding" && low != "connection" && low.rfind("webhook-", 0) != 0,
                   "reserved header names are refused");
        FUZZ_CHECK(it.value().is_string(), "header value is a string");
        const std::string &value = it.value().get_ref<const std::string &>();
        FUZZ_CHECK(value.size() <= v::kMaxHeaderValueLength, "header value length");
        for (char c : value)
            FUZZ_CHECK(c == '\t' || printable(c), "header value has no CR/LF/control/non-ASCII byte");
        for (const std::string &other : names)
            FUZZ_CHECK(other != low, "no header given twice (case-insensitive)");
        names.push_back(low);
    }
}

void check_secret(std::string_view s) {
    const v::Problem p = v::secret(s);
    check_messages(p);
    // decode_secret must accept exactly what validate::secret accepts, and decode to 24..64 bytes.
    const std::optional<std::string> key = pg_sync::signature::decode_secret(s);
    FUZZ_CHECK(p.ok() == key.has_value(), "decode_secret agrees with validate::secret");
    if (!p.ok())
        return;
    FUZZ_CHECK(s.substr(0, 6) == "whsec_", "accepted secret has the whsec_ prefix");
    FUZZ_CHECK(key->size() >= 24 && key->size() <= 64, "accepted secret encodes 24..64 bytes");
    FUZZ_CHECK(static_cast<long>(key->size()) == v::base64_decoded_length(s.substr(6)),
               "decoded size equals base64_decoded_length");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const std::string_view s(reinterpret_cast<const char *>(data), size);
    check_endpoint_name(s);
    check_url(s);
    check_headers(s);
    check_secret(s);
    check_messages(v::kafka_settings(s));
    if (s.substr(0, 8) != "kafka://")
        check_url("kafka://" + std::string(s));
    // A secret-looking variant, so that mutations of any input also reach the base64 rules.
    if (s.substr(0, 6) != "whsec_")
        check_secret("whsec_" + std::string(s));
    return 0;
}
