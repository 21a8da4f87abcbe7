#include "core/validate.hpp"

#include "core/kafka_config.hpp"

#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <memory>

namespace pg_sync::validate {
namespace {

Problem problem(std::string message, std::string detail = {}, std::string hint = {}) {
    return Problem{std::move(message), std::move(detail), std::move(hint)};
}

// Not <cctype>: the backend runs with the database's LC_CTYPE, where isalnum() accepts Latin-1
// letters and, in tr_TR, tolower('I') is not 'i' (so "CONNECTION" would pass the reserved check).
bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool ascii_alnum(char c) { return (c >= '0' && c <= '9') || ascii_alpha(c); }

bool printable_ascii(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    return out;
}

// Shows a user value in a message without letting it break the message.
std::string shown(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 80)) {
        if (c >= 0x20 && c < 0x7f)
            out += c;
        else
            out += '?';
    }
    if (s.size() > 80)
        out += "...";
    return out;
}

struct CurlUrlDeleter {
    void operator()(CURLU *u) const { curl_url_cleanup(u); }
};
struct CurlFreeDeleter {
    void operator()(char *p) const { curl_free(p); }
};
using CurlString = std::unique_ptr<char, CurlFreeDeleter>;

CurlString url_part(CURLU *u, CURLUPart part) {
    char *value = nullptr;
    if (curl_url_get(u, part, &value, 0) != CURLUE_OK)
        return CurlString(nullptr);
    return CurlString(value);
}

} // namespace

Problem endpoint_name(std::string_view name) {
    if (name.empty())
        return problem("endpoint name must not be empty");
    if (name.size() > kMaxEndpointNameLength)
        return problem("endpoint name is too long",
                       "It has " + std::to_string(name.size()) + " characters; the limit is " +
                           std::to_string(kMaxEndpointNameLength) + ".");
    for (char c : name) {
        if (!(ascii_alnum(c) || c == '_' || c == '-' || c == '.') || !ascii_alnum(name[0]))
            return problem("invalid endpoint name \"" + shown(name) + "\"", {},
                           "Start with a letter or digit; use letters, digits, \"_\", \"-\" and \".\".");
    }
    return {};
}

Problem url(std::string_view text) {
    if (text.empty())
        return problem("endpoint URL must not be empty");
    if (text.size() > kMaxUrlLength)
        return problem("endpoint URL is too long", "It has " + std::to_string(text.size()) +
                                                       " characters; the limit is " +
                                                       std::to_string(kMaxUrlLength) + ".");
    if (!printable_ascii(text) || text.find(' ') != std::string_view::npos)
        return problem("invalid endpoint URL \"" + shown(text) + "\"",
                       "URLs may not contain spaces, control characters or non-ASCII characters.",
                       "Percent-encode such characters; write international host names in "
                       "punycode.");
    // libcurl is lenient: it reads "https:///hooks" and "http:/hooks" as host "hooks". Demand
    // scheme "://" authority explicitly, and no fragment at all (even an empty one).
    const std::size_t sep = text.find("://");
    const bool scheme_ok = sep != std::string_view::npos && sep > 0 && ascii_alpha(text[0]) &&
                           std::all_of(text.begin(), text.begin() + static_cast<long>(sep), [](char c) {
                               return ascii_alnum(c) || c == '+' || c == '-' || c == '.';
                           });
    if (!scheme_ok)
        return problem("invalid endpoint URL \"" + shown(text) + "\"", "It does not start with a scheme and \"://\".",
                       "Give an absolute URL such as https://example.com/hook.");
    const std::string declared = lower(text.substr(0, sep));
    if (declared == "kafka") {
        std::string message, detail;
        if (!kafka::parse_url(text, &message, &detail))
            return problem(message, detail);
        return {};
    }
    if (declared != "http" && declared != "https")
        return problem("endpoint URL scheme must be http, https or kafka", "The URL uses \"" + shown(declared) + "\".");
    if (sep + 3 >= text.size() || text[sep + 3] == '/' || text[sep + 3] == '?' || text[sep + 3] == '#')
        return problem("endpoint URL has no host");
    if (text.find('#') != std::string_view::npos)
        return problem("endpoint URL must not contain a fragment", "A fragment (#...) is never sent to the server.");
    const std::string s(text);
    std::unique_ptr<CURLU, CurlUrlDeleter> u(curl_url());
    if (!u)
        throw std::bad_alloc();
    // CURLU_NON_SUPPORT_SCHEME so that an unknown scheme gets our message, not libcurl's.
    const CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, s.c_str(), CURLU_NON_SUPPORT_SCHEME);
    if (rc != CURLUE_OK)
        return problem("invalid endpoint URL \"" + shown(text) + "\"",
                       std::string("libcurl: ") + curl_url_strerror(rc) + ".",
                       "Give an absolute URL such as https://example.com/hook.");
    const CurlString scheme = url_part(u.get(), CURLUPART_SCHEME);
    const std::string sch = scheme ? lower(scheme.get()) : std::string();
    if (sch != "http" && sch != "https")
        return problem("endpoint URL scheme must be http or https", "The URL uses \"" + shown(sch) + "\".");
    const CurlString host = url_part(u.get(), CURLUPART_HOST);
    if (!host || host.get()[0] == '\0')
        return problem("endpoint URL has no host");
    if (url_part(u.get(), CURLUPART_USER) || url_part(u.get(), CURLUPART_PASSWORD))
        return problem("endpoint URL must not contain credentials", {},
                       "Pass credentials in the headers argument, for example "
                       "'{\"Authorization\": \"Bearer ...\"}'; headers are never shown in views.");
    const CurlString port = url_part(u.get(), CURLUPART_PORT);
    if (port && std::string_view(port.get()) == "0")
        return problem("endpoint URL port must be between 1 and 65535");
    return {};
}

std::string url_origin(std::string_view text) {
    if (!url(text).ok())
        return {};
    if (kafka::is_kafka_url(text))
        return kafka::parse_url(text, nullptr)->origin();
    const std::string s(text);
    std::unique_ptr<CURLU, CurlUrlDeleter> u(curl_url());
    if (!u)
        throw std::bad_alloc();
    if (curl_url_set(u.get(), CURLUPART_URL, s.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
        return {};
    const CurlString scheme = url_part(u.get(), CURLUPART_SCHEME);
    const CurlString host = url_part(u.get(), CURLUPART_HOST);
    if (!scheme || !host)
        return {};
    char *port = nullptr; // CURLU_DEFAULT_PORT: the scheme's port when the URL gives none
    if (curl_url_get(u.get(), CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK || !port)
        return {};
    const CurlString port_owner(port);
    return lower(scheme.get()) + "://" + lower(host.get()) + ":" + port;
}

bool is_header_token(std::string_view name) {
    if (name.empty())
        return false;
    static const std::string_view extra = "!#$%&'*+-.^_`|~";
    return std::all_of(name.begin(), name.end(), [](char c) {
        return ascii_alnum(c) || extra.find(c) != std::string_view::npos;
    });
}

bool is_reserved_header(std::string_view name) {
    const std::string n = lower(name);
    static const char *const reserved[] = {"content-type", "content-length", "transfer-encoding",
                                           "host",         "connection",     "expect",
                                           "te",           "trailer",        "upgrade",
                                           "keep-alive"};
    for (const char *r : reserved)
        if (n == r)
            return true;
    return n.rfind("webhook-", 0) == 0 || n.rfind("proxy-", 0) == 0;
}

Problem headers(std::string_view json_text) {
    nlohmann::json doc = nlohmann::json::parse(json_text.begin(), json_text.end(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        return problem("headers must be a JSON object of header names to string values",
                       {}, "For example '{\"Authorization\": \"Bearer abc\"}'.");
    if (doc.size() > kMaxHeaders)
        return problem("too many headers", "There are " + std::to_string(doc.size()) +
                                               "; the limit is " + std::to_string(kMaxHeaders) + ".");
    std::string seen_lower;
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        const std::string &name = it.key();
        if (name.size() > kMaxHeaderNameLength)
            return problem("header name \"" + shown(name) + "\" is too long",
                           "The limit is " + std::to_string(kMaxHeaderNameLength) + " bytes.");
        if (!is_header_token(name))
            return problem("invalid header name \"" + shown(name) + "\"",
                           "Header names are HTTP tokens: letters, digits and !#$%&'*+-.^_`|~.");
        if (is_reserved_header(name))
            return problem("header \"" + shown(name) + "\" cannot be set", 
                           "pg_sync sets Content-Type, Content-Length, Host, the connection headers and "
                           "the webhook-* signature headers itself.");
        if (!it.value().is_string())
            return problem("value of header \"" + shown(name) + "\" must be a JSON string");
        const std::string &value = it.value().get_ref<const std::string &>();
        if (value.size() > kMaxHeaderValueLength)
            return problem("value of header \"" + shown(name) + "\" is too long",
                           "The limit is " + std::to_string(kMaxHeaderValueLength) + " bytes.");
        if (!std::all_of(value.begin(), value.end(),
                         [](char c) { return c == '\t' || (c >= 0x20 && c < 0x7f); }))
            return problem("value of header \"" + shown(name) + "\" contains a control or non-ASCII character",
                           "CR, LF and other control characters would allow header injection.");
    }
    // JSON objects may repeat a key and differ only in case; HTTP names are case-insensitive.
    for (auto a = doc.begin(); a != doc.end(); ++a)
        for (auto b = std::next(a); b != doc.end(); ++b)
            if (lower(a.key()) == lower(b.key()))
                return problem("header \"" + shown(a.key()) + "\" is given twice");
    return {};
}

long base64_decoded_length(std::string_view b64) {
    std::size_t n = b64.size();
    std::size_t pad = 0;
    while (n > 0 && b64[n - 1] == '=' && pad < 2) {
        --n;
        ++pad;
    }
    for (std::size_t i = 0; i < n; ++i) {
        const char c = b64[i];
        if (!(ascii_alnum(c) || c == '+' || c == '/'))
            return -1;
    }
    if (n % 4 == 1 || (pad > 0 && (n + pad) % 4 != 0))
        return -1;
    return static_cast<long>(n * 3 / 4);
}

Problem secret(std::string_view s) {
    static constexpr std::string_view prefix = "whsec_";
    const std::string_view hint_text =
        "A Standard Webhooks secret is \"whsec_\" followed by the base64 encoding of 24 to 64 "
        "random bytes, for example \"whsec_\" followed by the output of openssl rand -base64 32.";
    if (s.substr(0, prefix.size()) != prefix)
        return problem("secret must start with \"whsec_\"", {}, std::string(hint_text));
    const long n = base64_decoded_length(s.substr(prefix.size()));
    if (n < 0)
        return problem("secret is not valid base64 after \"whsec_\"", {}, std::string(hint_text));
    if (n < 24 || n > 64)
        return problem("secret must encode 24 to 64 bytes",
                       "It encodes " + std::to_string(n) + " bytes.", std::string(hint_text));
    return {};
}

Problem kafka_settings(std::string_view json_text) {
    std::string message, hint;
    const std::optional<kafka::Settings> settings = kafka::parse_settings(json_text, &message, &hint);
    if (!settings)
        return problem(message, {}, hint);
    // librdkafka itself checks each value (names, enumerations, ranges), with its own words.
    std::unique_ptr<rd_kafka_conf_t, void (*)(rd_kafka_conf_t *)> conf(rd_kafka_conf_new(), &rd_kafka_conf_destroy);
    for (const auto &kv : *settings) {
        char error[512] = {0};
        if (rd_kafka_conf_set(conf.get(), kv.first.c_str(), kv.second.c_str(), error, sizeof error) != RD_KAFKA_CONF_OK)
            return problem("invalid value for kafka setting \"" + shown(kv.first) + "\"", "librdkafka: " + shown(error) + ".");
    }
    return {};
}

Problem transport_options(std::string_view url, bool has_headers, bool has_secret, bool has_kafka_settings) {
    if (kafka::is_kafka_url(url)) {
        if (has_headers)
            return problem("a kafka endpoint has no headers", "Kafka records carry the headers id, op and table.",
                           "Pass headers => '{}'; SASL credentials go in kafka_settings.");
        if (has_secret)
            return problem("a kafka endpoint has no secret", "Kafka records are not signed.",
                           "Pass secret => '' to drop it; SASL credentials go in kafka_settings.");
        return {};
    }
    if (has_kafka_settings)
        return problem("kafka_settings apply to kafka:// endpoints only", {},
                       "Pass kafka_settings => '{}' to drop them.");
    return {};
}

Problem format(std::string_view url, std::string_view format) {
    if (format != kFormatWebhook && format != kFormatCloudEvents)
        return problem("format must be \"webhook\" or \"cloudevents\"", "The value given is \"" + shown(format) + "\".",
                       "\"webhook\" sends {\"events\": [...]}; \"cloudevents\" sends a CloudEvents JSON batch.");
    if (format == kFormatCloudEvents && kafka::is_kafka_url(url))
        return problem("a kafka endpoint has no format", "Kafka records carry one event each, as in the webhook format.",
                       "Pass format => 'webhook' (the default).");
    return {};
}

Problem traceparent(std::string_view v) {
    const std::string hint = "A W3C traceparent is \"00-\" + 32 lower-case hex digits (trace-id) + \"-\" + 16 "
                             "(parent-id) + \"-\" + 2 (flags), e.g. "
                             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.";
    if (v.empty())
        return {};
    auto hex = [](std::string_view s) {
        for (char c : s)
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                return false;
        return true;
    };
    auto zeros = [](std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; };
    if (v.size() != 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || !hex(v.substr(0, 2)) ||
        !hex(v.substr(3, 32)) || !hex(v.substr(36, 16)) || !hex(v.substr(53, 2)))
        return problem("invalid traceparent \"" + shown(v.substr(0, 80)) + "\"", {}, hint);
    if (v.substr(0, 2) != "00")
        return problem("unsupported traceparent version \"" + std::string(v.substr(0, 2)) + "\"",
                       "Only version 00 is known.", hint);
    if (zeros(v.substr(3, 32)))
        return problem("invalid traceparent: the trace-id is all zeros", {}, hint);
    if (zeros(v.substr(36, 16)))
        return problem("invalid traceparent: the parent-id is all zeros", {}, hint);
    return {};
}

Problem in_range(const Range &r, long value) {
    if (value < r.min || value > r.max)
        return problem(std::string(r.name) + " must be between " + std::to_string(r.min) + " and " +
                           std::to_string(r.max),
                       "The value given is " + std::to_string(value) + ".");
    return {};
}

Problem retry_bounds(long base_ms, long max_ms) {
    if (base_ms > max_ms)
        return problem("retry_base_ms must not be greater than retry_max_ms",
                       "retry_base_ms is " + std::to_string(base_ms) + ", retry_max_ms is " +
                           std::to_string(max_ms) + ".");
    return {};
}

} // namespace pg_sync::validate
