// What a Kafka endpoint's configuration means; see kafka_config.hpp.
#include "core/kafka_config.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <arpa/inet.h>

namespace pg_sync::kafka {
namespace {

constexpr std::string_view kScheme = "kafka://";

// Not <cctype>: the backend runs with the database's LC_CTYPE (see validate.cpp).
bool ascii_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool ascii_digit(char c) { return c >= '0' && c <= '9'; }
bool ascii_alnum(char c) { return ascii_alpha(c) || ascii_digit(c); }

std::string lower(std::string_view s) {
    std::string out(s);
    for (char &c : out)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// Shows a user value in a message without letting it break the message.
std::string shown(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 80))
        out += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (s.size() > 80)
        out += "...";
    return out;
}

// A DNS name: labels of letters, digits and '-' (not first or last), separated by single dots.
bool is_dns_name(std::string_view h) {
    if (h.empty() || h.size() > 253)
        return false;
    std::size_t start = 0;
    while (start <= h.size()) {
        std::size_t dot = h.find('.', start);
        if (dot == std::string_view::npos)
            dot = h.size();
        const std::string_view label = h.substr(start, dot - start);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        if (!std::all_of(label.begin(), label.end(), [](char c) { return ascii_alnum(c) || c == '-'; }))
            return false;
        start = dot + 1;
    }
    return true;
}

bool set_error(std::string *error, std::string *detail, std::string message, std::string why = {}) {
    if (error)
        *error = std::move(message);
    if (detail)
        *detail = std::move(why);
    return false;
}

// One "host[:port]" of the broker list -> "host:port" in *out.
bool parse_broker(std::string_view b, std::string *out, std::string *error, std::string *detail) {
    std::string host;
    std::string_view rest;
    if (!b.empty() && b.front() == '[') {
        const std::size_t close = b.find(']');
        if (close == std::string_view::npos)
            return set_error(error, detail, "invalid broker \"" + shown(b) + "\" in endpoint URL",
                             "An IPv6 address is written in brackets, as in [2001:db8::1]:9092.");
        const std::string inner(b.substr(1, close - 1));
        in6_addr a6{};
        if (inet_pton(AF_INET6, inner.c_str(), &a6) != 1)
            return set_error(error, detail, "invalid broker \"" + shown(b) + "\" in endpoint URL",
                             "\"" + shown(inner) + "\" is not an IPv6 address.");
        host = "[" + lower(inner) + "]";
        rest = b.substr(close + 1);
    } else {
        const std::size_t colon = b.find(':');
        const std::string_view name = b.substr(0, colon);
        if (!is_dns_name(name))
            return set_error(error, detail, "invalid broker \"" + shown(b) + "\" in endpoint URL",
                             "A broker is a host name or IPv4 address with an optional port, as in "
                             "broker1.example.com:9092.");
        host = lower(name);
        rest = colon == std::string_view::npos ? std::string_view() : b.substr(colon);
    }
    long port = kDefaultPort;
    if (!rest.empty()) {
        if (rest.front() != ':' || rest.size() < 2 || rest.size() > 6 ||
            !std::all_of(rest.begin() + 1, rest.end(), ascii_digit))
            return set_error(error, detail, "invalid broker \"" + shown(b) + "\" in endpoint URL",
                             "The port follows the host after a colon, as in broker1:9092.");
        port = std::stol(std::string(rest.substr(1)));
        if (port < 1 || port > 65535)
            return set_error(error, detail, "broker port must be between 1 and 65535",
                             "The URL gives \"" + shown(b) + "\".");
    }
    *out = host + ":" + std::to_string(port);
    return true;
}

struct Allowed {
    const char *name;
    const char *const *values; // nullptr: any value librdkafka accepts
};
const char *const kMechanisms[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", nullptr};
const Allowed kAllowed[] = {
    {"security.protocol", nullptr},
    {"sasl.mechanism", kMechanisms},
    {"sasl.mechanisms", kMechanisms},
    {"sasl.username", nullptr},
    {"sasl.password", nullptr},
    {"ssl.ca.pem", nullptr},
    {"ssl.certificate.pem", nullptr},
    {"ssl.key.pem", nullptr},
    {"ssl.key.password", nullptr},
    {"ssl.cipher.suites", nullptr},
    {"ssl.curves.list", nullptr},
    {"ssl.sigalgs.list", nullptr},
    {"compression.type", nullptr},
    {"compression.codec", nullptr},
    {"linger.ms", nullptr},
    {"queue.buffering.max.ms", nullptr},
    {"batch.size", nullptr},
    {"batch.num.messages", nullptr},
    {"client.id", nullptr},
    {"message.max.bytes", nullptr},
};

const Allowed *find_allowed(std::string_view name) {
    for (const Allowed &a : kAllowed)
        if (name == a.name)
            return &a;
    return nullptr;
}

} // namespace

bool is_kafka_url(std::string_view url) noexcept {
    if (url.size() < kScheme.size())
        return false;
    for (std::size_t i = 0; i < kScheme.size(); ++i) {
        const char c = url[i] >= 'A' && url[i] <= 'Z' ? char(url[i] - 'A' + 'a') : url[i];
        if (c != kScheme[i])
            return false;
    }
    return true;
}

std::string Target::bootstrap() const {
    std::string out;
    for (const std::string &b : brokers) {
        if (!out.empty())
            out += ',';
        out += b;
    }
    return out;
}

// The same brokers in another order are the same cluster: sorted.
std::string Target::origin() const {
    std::vector<std::string> sorted = brokers;
    std::sort(sorted.begin(), sorted.end());
    std::string out(kScheme);
    for (std::size_t i = 0; i < sorted.size(); ++i)
        out += (i ? "," : "") + sorted[i];
    return out;
}

std::optional<Target> parse_url(std::string_view url, std::string *error, std::string *detail) {
    if (!is_kafka_url(url)) {
        set_error(error, detail, "endpoint URL scheme must be kafka");
        return std::nullopt;
    }
    if (!std::all_of(url.begin(), url.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
        set_error(error, detail, "invalid endpoint URL \"" + shown(url) + "\"",
                  "URLs may not contain spaces, control characters or non-ASCII characters.");
        return std::nullopt;
    }
    const std::string_view rest = url.substr(kScheme.size());
    if (rest.find('@') != std::string_view::npos) {
        set_error(error, detail, "endpoint URL must not contain credentials",
                  "Give SASL credentials in kafka_settings (sasl.username, sasl.password); they are never shown in views.");
        return std::nullopt;
    }
    if (rest.find_first_of("?#") != std::string_view::npos) {
        set_error(error, detail, "a kafka endpoint URL has no query or fragment",
                  "The form is kafka://host1:9092,host2:9092/topic; settings go in kafka_settings.");
        return std::nullopt;
    }
    const std::size_t slash = rest.find('/');
    const std::string_view hosts = rest.substr(0, slash);
    if (hosts.empty()) {
        set_error(error, detail, "endpoint URL has no host");
        return std::nullopt;
    }
    Target t;
    std::size_t start = 0;
    while (start <= hosts.size()) {
        std::size_t comma = hosts.find(',', start);
        if (comma == std::string_view::npos)
            comma = hosts.size();
        std::string broker;
        if (!parse_broker(hosts.substr(start, comma - start), &broker, error, detail))
            return std::nullopt;
        if (std::find(t.brokers.begin(), t.brokers.end(), broker) == t.brokers.end())
            t.brokers.push_back(broker);
        start = comma + 1;
    }
    if (t.brokers.size() > kMaxBrokers) {
        set_error(error, detail, "too many brokers in endpoint URL",
                  "There are " + std::to_string(t.brokers.size()) + "; the limit is " + std::to_string(kMaxBrokers) + ".");
        return std::nullopt;
    }
    const std::string_view topic = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (topic.empty()) {
        set_error(error, detail, "a kafka endpoint URL names its topic",
                  "The form is kafka://host1:9092,host2:9092/topic.");
        return std::nullopt;
    }
    if (topic.size() > kMaxTopicLength || topic == "." || topic == ".." ||
        !std::all_of(topic.begin(), topic.end(), [](char c) { return ascii_alnum(c) || c == '.' || c == '_' || c == '-'; })) {
        set_error(error, detail, "invalid Kafka topic \"" + shown(topic) + "\"",
                  "A topic name has 1 to 249 letters, digits, \".\", \"_\" and \"-\", and is not \".\" or \"..\".");
        return std::nullopt;
    }
    t.topic = std::string(topic);
    return t;
}

bool allowed_setting(std::string_view name) { return find_allowed(name) != nullptr; }

std::optional<Settings> parse_settings(std::string_view json_text, std::string *error, std::string *hint) {
    auto fail = [&](std::string message, std::string h = {}) -> std::optional<Settings> {
        if (error)
            *error = std::move(message);
        if (hint)
            *hint = std::move(h);
        return std::nullopt;
    };
    const nlohmann::json doc = nlohmann::json::parse(json_text.begin(), json_text.end(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        return fail("kafka_settings must be a JSON object of librdkafka setting names to values",
                    "For example '{\"compression.type\": \"lz4\", \"linger.ms\": 10}'.");
    if (doc.size() > kMaxSettings)
        return fail("too many kafka_settings", "There are " + std::to_string(doc.size()) + "; the limit is " +
                                                    std::to_string(kMaxSettings) + ".");
    Settings out;
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        const std::string &name = it.key();
        const Allowed *allowed = find_allowed(name);
        if (!allowed)
            return fail("kafka setting \"" + shown(name) + "\" cannot be set",
                        "Allowed: security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.pem, "
                        "ssl.certificate.pem, ssl.key.pem, ssl.key.password, ssl.cipher.suites, ssl.curves.list, "
                        "ssl.sigalgs.list, compression.type, linger.ms, batch.size, batch.num.messages, client.id, "
                        "message.max.bytes. pg_sync fixes acks, idempotence, partitioner and timeouts itself, and "
                        "refuses settings that read files, run programs or open other connections.");
        std::string value;
        const nlohmann::json &v = it.value();
        if (v.is_string())
            value = v.get<std::string>();
        else if (v.is_number_integer())
            value = v.dump();
        else if (v.is_boolean())
            value = v.get<bool>() ? "true" : "false";
        else
            return fail("value of kafka setting \"" + shown(name) + "\" must be a string, an integer or a boolean");
        if (value.size() > kMaxSettingValueLength)
            return fail("value of kafka setting \"" + shown(name) + "\" is too long",
                        "The limit is " + std::to_string(kMaxSettingValueLength) + " bytes.");
        if (value.find('\0') != std::string::npos)
            return fail("value of kafka setting \"" + shown(name) + "\" contains a NUL character");
        if (allowed->values) {
            bool ok = false;
            for (const char *const *a = allowed->values; *a; ++a)
                ok = ok || value == *a;
            if (!ok)
                return fail("kafka setting \"" + shown(name) + "\" must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                            "GSSAPI and OAUTHBEARER would run programs or open connections that pg_sync does not check.");
        }
        out.emplace_back(name, std::move(value));
    }
    return out;
}

Settings default_settings(const std::string &client_id) { return {{"client.id", client_id}, {"linger.ms", "1"}}; }

Settings fixed_settings(long timeout_ms) {
    const long timeout = std::max(1L, timeout_ms);
    return {
        {"acks", "all"},
        {"enable.idempotence", "true"},
        {"max.in.flight.requests.per.connection", "5"},
        {"partitioner", "murmur2_random"},
        {"message.timeout.ms", std::to_string(timeout)},
        // A topic missing from the metadata fails its records (a dead letter) before they time out.
        {"topic.metadata.propagation.max.ms", std::to_string(std::min(30000L, timeout / 2))},
        {"queue.buffering.max.messages", "1000000"},
        {"socket.nagle.disable", "true"},
        {"enable.ssl.certificate.verification", "true"},
        {"ssl.endpoint.identification.algorithm", "https"},
    };
}

} // namespace pg_sync::kafka
