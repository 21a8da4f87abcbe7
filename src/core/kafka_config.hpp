// What a Kafka endpoint's configuration means, PostgreSQL-free: its URL
// (kafka://host1:9092,host2:9092/topic) and the librdkafka settings a user may give in
// create_endpoint(kafka_settings => ...), checked against an allow-list. validate.cpp checks
// them when an endpoint is created or altered; the Kafka sink (kafka_sink.hpp) builds its
// producers from them, with the settings pg_sync fixes (fixed_settings()) applied last.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pg_sync::kafka {

inline constexpr std::size_t kMaxBrokers = 32;
inline constexpr std::size_t kMaxTopicLength = 249; // Kafka's own limit
inline constexpr int kDefaultPort = 9092;
inline constexpr std::size_t kMaxSettings = 64;
inline constexpr std::size_t kMaxSettingValueLength = 65536; // room for PEM certificate chains

// Whether the URL selects the Kafka sink (scheme "kafka", any case). Allocates nothing and never
// throws: pg_sync._is_kafka_url calls it straight from SQL.
bool is_kafka_url(std::string_view url) noexcept;

struct Target {
    std::vector<std::string> brokers; // "host:port" (IPv6 hosts in brackets), as librdkafka takes them
    std::string topic;
    std::string bootstrap() const; // brokers joined by ','
    std::string origin() const;    // "kafka://" + the brokers, sorted (hosts are in lower case)
};

// kafka://HOST[:PORT][,HOST[:PORT]...]/TOPIC. HOST is a DNS name, an IPv4 address or an IPv6
// address in brackets; PORT 1..65535 (9092 when missing); TOPIC 1..249 of [A-Za-z0-9._-], not "."
// or "..". No credentials, query or fragment; printable ASCII without spaces. nullopt with a
// message (PostgreSQL style, lower case) in *error, and a detail in *detail when one helps.
std::optional<Target> parse_url(std::string_view url, std::string *error, std::string *detail = nullptr);

using Settings = std::vector<std::pair<std::string, std::string>>; // name -> value, in input order

// Whether a user may set this librdkafka property. Allowed: security.protocol; sasl.mechanism(s)
// (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), sasl.username, sasl.password; ssl.ca.pem,
// ssl.certificate.pem, ssl.key.pem, ssl.key.password, ssl.cipher.suites, ssl.curves.list,
// ssl.sigalgs.list; compression.type (compression.codec); linger.ms (queue.buffering.max.ms);
// batch.size, batch.num.messages; client.id; message.max.bytes. Refused: everything else, in
// particular what the worker fixes (acks, idempotence, partitioner, timeouts) and what reads
// files or runs programs as the server's OS user or opens connections that
// pg_sync.allow_private_targets does not check (*.location, sasl.kerberos.*,
// sasl.oauthbearer.*, ssl.engine.*, ssl.providers, plugin.library.paths, ...).
bool allowed_setting(std::string_view name);

// The kafka_settings JSON object (as text): string, integer or boolean values, at most
// kMaxSettings, allowed names only, sasl.mechanism among those above. Values are checked by
// the caller against librdkafka itself (validate.cpp). nullopt with a message in *error.
std::optional<Settings> parse_settings(std::string_view json_text, std::string *error, std::string *hint = nullptr);

// What pg_sync sets on every producer before the user's settings (kafka_settings may change
// them): client.id, and linger.ms 1 instead of librdkafka's 5 (the worker hands librdkafka whole
// requests at once, so waiting longer for more records adds latency and little batching).
Settings default_settings(const std::string &client_id);

// What pg_sync sets on every producer, after the user's settings: acks=all, idempotence,
// murmur2_random partitioning (a key lands where a Java producer puts it), the endpoint's
// timeout_ms as message.timeout.ms, and the limits the worker relies on.
Settings fixed_settings(long timeout_ms);

} // namespace pg_sync::kafka
