// Standard Webhooks (https://www.standardwebhooks.com) headers for a delivery request.
// PostgreSQL-free; HMAC-SHA256, SHA-256 and base64 come from OpenSSL's libcrypto.
//
//   webhook-id:        msg_<first event id>_<event count>_<16 hex digits>   (see webhook_id)
//   webhook-timestamp: unix seconds of this attempt, decimal
//   webhook-signature: v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>
//
// The key is the base64-decoded part of the endpoint's secret after "whsec_". The signature is
// sent only when the endpoint has a secret. While a secret is being rotated
// (pg_sync.rotate_secret), the header carries two signatures, space-separated as the
// specification allows: "v1,<with the new secret> v1,<with the previous one>".
//
// Retries: the webhook-id is the same for every attempt of the same request (receivers dedupe
// on it), while the timestamp is that of each attempt and the signature is recomputed with it,
// because receivers reject timestamps outside a tolerance window (five minutes in the
// specification's reference libraries) to stop replays.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pg_sync::signature {

inline constexpr std::string_view kIdHeader = "webhook-id";
inline constexpr std::string_view kTimestampHeader = "webhook-timestamp";
inline constexpr std::string_view kSignatureHeader = "webhook-signature";

// The HMAC key of a secret that validate::secret() accepts ("whsec_" + base64 of 24..64 bytes,
// padding optional), as raw bytes; std::nullopt for anything else. Decode once per endpoint
// configuration, not per request.
std::optional<std::string> decode_secret(std::string_view secret);

// "v1," + base64(HMAC-SHA256(key, msg_id + "." + timestamp + "." + body)). The body is hashed in
// place, not copied. Throws std::runtime_error if OpenSSL fails (out of memory).
std::string sign(std::string_view key, std::string_view msg_id, std::int64_t timestamp,
                 std::string_view body);

struct Header {
    std::string name;
    std::string value;
    // "name: value", the form curl_slist_append() takes.
    std::string line() const;
};

// webhook-id, webhook-timestamp and, when key is given, webhook-signature, in that order. With
// previous_key too (a rotation in progress), webhook-signature holds both signatures, key's first.
std::vector<Header> headers(std::string_view msg_id, std::int64_t timestamp, std::string_view body,
                            const std::optional<std::string> &key,
                            const std::optional<std::string> &previous_key = std::nullopt);

// The webhook-id of a request carrying these events, in body order:
//
//   "msg_" + first id + "_" + count + "_" + first 8 bytes, in hex, of
//   SHA-256("pg_sync webhook-id v1" NUL, u64be(scope length), scope, u64be(id) for each id)
//
// It is a function of the request's content only, so it is stable across retries and restarts
// with nothing stored (a request counter would have to be persisted, and after a crash would
// reuse or skip numbers). First id and count alone would not do: if a failed batch {1,3} were
// regrouped as {1,2,3}, a receiver deduping on webhook-id would drop event 2; the digest of the
// whole id list tells such batches apart. Event ids are unique per database only, so scope
// should name the sender, e.g. the database's system identifier and OID, when one receiver may
// hear from several databases. Throws std::invalid_argument when count is 0.
std::string webhook_id(const std::int64_t *event_ids, std::size_t count, std::string_view scope = {});
std::string webhook_id(const std::vector<std::int64_t> &event_ids, std::string_view scope = {});

// Standard base64 (RFC 4648 section 4) with padding.
std::string base64_encode(std::string_view bytes);
// Standard base64, padding optional; std::nullopt when text is not base64.
std::optional<std::string> base64_decode(std::string_view text);

} // namespace pg_sync::signature
