// Validation of endpoint settings: names, URLs, headers, secrets, Kafka settings and numeric
// limits.
// PostgreSQL-free; the SQL functions call it through src/pg/sql_api.cpp.
#pragma once

#include <string>
#include <string_view>

namespace pg_sync::validate {

// Empty message means valid. Messages follow PostgreSQL's style: lower case, no final period;
// hints are full sentences.
struct Problem {
    std::string message;
    std::string detail;
    std::string hint;
    bool ok() const { return message.empty(); }
};

// Bounds of the numeric endpoint settings, shared with the documentation.
struct Range {
    const char *name;
    long min;
    long max;
};
inline constexpr Range kBatchSize{"batch_size", 1, 10000};
inline constexpr Range kMaxAttempts{"max_attempts", 1, 1000};
inline constexpr Range kTimeoutMs{"timeout_ms", 100, 600000};
inline constexpr Range kMaxInFlight{"max_in_flight", 1, 256};
inline constexpr Range kRetryBaseMs{"retry_base_ms", 1, 86400000};
inline constexpr Range kRetryMaxMs{"retry_max_ms", 1, 604800000};

inline constexpr std::size_t kMaxUrlLength = 2048;
inline constexpr std::size_t kMaxHeaders = 64;
inline constexpr std::size_t kMaxHeaderNameLength = 256;
inline constexpr std::size_t kMaxHeaderValueLength = 8192;
inline constexpr std::size_t kMaxEndpointNameLength = 63;

Problem endpoint_name(std::string_view name);
// http or https, parses with libcurl's URL API, has a host, no credentials, no fragment,
// printable ASCII only; or kafka://brokers/topic (core/kafka_config.hpp).
Problem url(std::string_view url);
// The origin of a URL that url() accepts: "scheme://host:port" with scheme and host in lower
// case and the port explicit (80 for http, 443 for https when none is given); for kafka, every
// broker: "kafka://host1:9092,host2:9092". Empty when url() would refuse it. Credentials given
// for one origin must not follow the URL to another.
std::string url_origin(std::string_view url);
// kafka_settings: a JSON object of allowed librdkafka settings (core/kafka_config.hpp) whose
// values librdkafka accepts.
Problem kafka_settings(std::string_view json_text);
// What goes with which URL: a kafka:// endpoint has no headers and no secret (nothing signs a
// Kafka record), an http(s) one no kafka_settings.
Problem transport_options(std::string_view url, bool has_headers, bool has_secret, bool has_kafka_settings);
// A JSON object (as text) of header name -> string value; names are HTTP tokens and not
// reserved (Content-Type, Content-Length, Host, webhook-*, ...); values printable ASCII.
Problem headers(std::string_view json_text);
// Standard Webhooks secret: "whsec_" + base64 of 24..64 bytes.
Problem secret(std::string_view secret);
Problem in_range(const Range &r, long value);
// retry_base_ms <= retry_max_ms
Problem retry_bounds(long base_ms, long max_ms);

// Request body format of an endpoint: "webhook" ({"events":[...]}) or "cloudevents" (CloudEvents
// JSON batch mode, core/cloudevents.hpp). A kafka:// endpoint writes one record per event and
// has no request body: it takes only "webhook" (the default).
inline constexpr std::string_view kFormatWebhook = "webhook";
inline constexpr std::string_view kFormatCloudEvents = "cloudevents";
Problem format(std::string_view url, std::string_view format);
// W3C Trace Context traceparent, version 00: "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex
// flags>", lower-case hex, neither id all zeros (https://www.w3.org/TR/trace-context/). The empty
// string means "no trace" and is valid.
Problem traceparent(std::string_view value);

// Helpers exposed for tests.
bool is_header_token(std::string_view name);
bool is_reserved_header(std::string_view name);
// Decoded length of standard base64 (padding optional), or -1 when not base64.
long base64_decoded_length(std::string_view b64);

} // namespace pg_sync::validate
