// Standard Webhooks headers; see signature.hpp.
#include "core/signature.hpp"

#include "core/validate.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <charconv>
#include <memory>
#include <stdexcept>

namespace pg_sync::signature {

namespace {

constexpr std::string_view kSecretPrefix = "whsec_";
constexpr std::string_view kVersionPrefix = "v1,";
constexpr std::size_t kSha256Size = 32;

[[noreturn]] void openssl_failed(const char *what) {
    throw std::runtime_error(std::string("OpenSSL failed: ") + what);
}

// Fetched once per process; EVP_MAC_fetch walks the provider tables.
EVP_MAC *hmac_algorithm() {
    static EVP_MAC *const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac == nullptr)
        openssl_failed("EVP_MAC_fetch(HMAC)");
    return mac;
}

// The same for SHA-256: EVP_sha256() made every digest fetch it again (a quarter of the time of
// planning a request at batch_size 1).
EVP_MD *sha256_algorithm() {
    static EVP_MD *const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (md == nullptr)
        openssl_failed("EVP_MD_fetch(SHA256)");
    return md;
}

using MacContext = std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)>;

void mac_update(EVP_MAC_CTX *ctx, std::string_view data) {
    if (!data.empty() &&
        EVP_MAC_update(ctx, reinterpret_cast<const unsigned char *>(data.data()), data.size()) != 1)
        openssl_failed("EVP_MAC_update");
}

std::string decimal(std::int64_t value) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, value);
    return std::string(buf, static_cast<std::size_t>(r.ptr - buf));
}

void append_u64be(std::string &out, std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

} // namespace

std::string base64_encode(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0'); // EVP_EncodeBlock adds a NUL
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()),
                                  reinterpret_cast<const unsigned char *>(bytes.data()),
                                  static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
    // The same acceptance rule as secret validation: alphabet only, padding optional. That also
    // keeps out the whitespace EVP_DecodeBlock would skip silently.
    if (validate::base64_decoded_length(text) < 0)
        return std::nullopt;
    std::string padded(text);
    while (padded.size() % 4 != 0)
        padded.push_back('=');
    std::size_t pad = 0;
    while (pad < padded.size() && padded[padded.size() - 1 - pad] == '=')
        ++pad;
    // EVP_DecodeBlock needs a multiple of 4 and counts the padding as decoded zero bytes.
    std::string out(padded.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char *>(out.data()),
                                  reinterpret_cast<const unsigned char *>(padded.data()),
                                  static_cast<int>(padded.size()));
    if (n < 0 || static_cast<std::size_t>(n) != out.size())
        return std::nullopt;
    out.resize(out.size() - pad);
    return out;
}

std::optional<std::string> decode_secret(std::string_view secret) {
    if (!validate::secret(secret).ok())
        return std::nullopt;
    return base64_decode(secret.substr(kSecretPrefix.size()));
}

std::string sign(std::string_view key, std::string_view msg_id, std::int64_t timestamp,
                 std::string_view body) {
    MacContext ctx(EVP_MAC_CTX_new(hmac_algorithm()), EVP_MAC_CTX_free);
    if (!ctx)
        openssl_failed("EVP_MAC_CTX_new");
    char digest_name[] = "SHA256";
    const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                                 OSSL_PARAM_construct_end()};
    // A null key would mean "keep the previous key"; an empty key must still be a key.
    static const unsigned char no_key = 0;
    const unsigned char *key_bytes =
        key.empty() ? &no_key : reinterpret_cast<const unsigned char *>(key.data());
    if (EVP_MAC_init(ctx.get(), key_bytes, key.size(), params) != 1)
        openssl_failed("EVP_MAC_init");
    mac_update(ctx.get(), msg_id);
    mac_update(ctx.get(), ".");
    mac_update(ctx.get(), decimal(timestamp));
    mac_update(ctx.get(), ".");
    mac_update(ctx.get(), body);
    unsigned char mac[kSha256Size];
    std::size_t mac_len = 0;
    if (EVP_MAC_final(ctx.get(), mac, &mac_len, sizeof mac) != 1 || mac_len != kSha256Size)
        openssl_failed("EVP_MAC_final");
    return std::string(kVersionPrefix) +
           base64_encode(std::string_view(reinterpret_cast<const char *>(mac), mac_len));
}

std::string Header::line() const { return name + ": " + value; }

std::vector<Header> headers(std::string_view msg_id, std::int64_t timestamp, std::string_view body,
                            const std::optional<std::string> &key, const std::optional<std::string> &previous_key) {
    std::vector<Header> out;
    out.reserve(3);
    out.push_back({std::string(kIdHeader), std::string(msg_id)});
    out.push_back({std::string(kTimestampHeader), decimal(timestamp)});
    if (key) {
        std::string value = sign(*key, msg_id, timestamp, body);
        if (previous_key)
            value += " " + sign(*previous_key, msg_id, timestamp, body);
        out.push_back({std::string(kSignatureHeader), std::move(value)});
    }
    return out;
}

std::string webhook_id(const std::int64_t *event_ids, std::size_t count, std::string_view scope) {
    if (count == 0)
        throw std::invalid_argument("webhook_id: a request carries at least one event");
    static constexpr char kDomain[] = "pg_sync webhook-id v1"; // the NUL is hashed too
    std::string input(kDomain, sizeof kDomain);
    input.reserve(input.size() + 8 + scope.size() + 8 * count);
    append_u64be(input, scope.size());
    input.append(scope);
    for (std::size_t i = 0; i < count; ++i)
        append_u64be(input, static_cast<std::uint64_t>(event_ids[i]));

    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (EVP_Digest(input.data(), input.size(), digest, &digest_len, sha256_algorithm(), nullptr) != 1)
        openssl_failed("EVP_Digest(SHA256)");

    static const char hex[] = "0123456789abcdef";
    std::string id = "msg_" + decimal(event_ids[0]) + "_" + std::to_string(count) + "_";
    for (int i = 0; i < 8; ++i) {
        id.push_back(hex[digest[i] >> 4]);
        id.push_back(hex[digest[i] & 0xF]);
    }
    return id;
}

std::string webhook_id(const std::vector<std::int64_t> &event_ids, std::string_view scope) {
    return webhook_id(event_ids.data(), event_ids.size(), scope);
}

} // namespace pg_sync::signature
