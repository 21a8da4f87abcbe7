// Per endpoint TLS material for https:// endpoints: a client certificate (PEM, with its chain),
// its private key (PEM, a secret) and a CA bundle (PEM) that replaces the system's trust store
// for that endpoint. Checked here when an endpoint is created or altered (PEM shape, every block
// decodes, the key is not encrypted and belongs to the certificate); handed to libcurl from
// memory by core/http_client.cpp (CURLOPT_SSLCERT_BLOB, CURLOPT_SSLKEY_BLOB,
// CURLOPT_CAINFO_BLOB: no temporary files). PostgreSQL-free; OpenSSL's libcrypto decodes.
#pragma once

#include "core/validate.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pg_sync::tls {

// What an endpoint gives libcurl; empty strings: not set.
struct Settings {
    std::string client_cert; // PEM: the client certificate first, then its chain
    std::string client_key;  // PEM: unencrypted private key
    std::string ca;          // PEM: CA certificates trusted for this endpoint (instead of the system's)
    bool empty() const { return client_cert.empty() && client_key.empty() && ca.empty(); }
};

inline constexpr std::size_t kMaxCertBytes = 64 << 10;
inline constexpr std::size_t kMaxKeyBytes = 64 << 10;
inline constexpr std::size_t kMaxCaBytes = 1 << 20;
inline constexpr std::size_t kMaxCaCertificates = 1000;

// One "-----BEGIN LABEL----- ... -----END LABEL-----" block.
struct PemBlock {
    std::string label;
    std::string der; // the decoded base64 body
};

// The PEM blocks of a text, in order; nullopt (and *error) when the text is not a sequence of
// well-formed blocks separated by white space only (text outside the blocks, a BEGIN without its
// END, mismatched labels, a body that is not base64, a character that is not printable ASCII).
std::optional<std::vector<PemBlock>> parse_pem(std::string_view text, std::string *error);

// create_endpoint / alter_endpoint: the TLS settings an endpoint will have (nullopt: none) with
// the URL it will have. The three apply to https:// URLs only; a client certificate and its key
// come together; the key must be the certificate's. Messages never quote the key.
validate::Problem check(std::string_view url, const std::optional<std::string> &client_cert,
                        const std::optional<std::string> &client_key, const std::optional<std::string> &ca);

// The end of the first certificate's validity (unix seconds), for the endpoints view; nullopt
// when the text holds no certificate that decodes.
std::optional<std::int64_t> not_after(std::string_view pem);

} // namespace pg_sync::tls
