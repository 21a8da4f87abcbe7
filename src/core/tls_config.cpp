#include "core/tls_config.hpp"

#include "core/signature.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <ctime>
#include <memory>

namespace pg_sync::tls {
namespace {

using validate::Problem;

Problem problem(std::string message, std::string detail = {}, std::string hint = {}) {
    return Problem{std::move(message), std::move(detail), std::move(hint)};
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

struct X509Free {
    void operator()(X509 *x) const { X509_free(x); }
};
struct KeyFree {
    void operator()(EVP_PKEY *k) const { EVP_PKEY_free(k); }
};
struct BioFree {
    void operator()(BIO *b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

X509Ptr decode_certificate(const std::string &der) {
    const unsigned char *p = reinterpret_cast<const unsigned char *>(der.data());
    X509Ptr x(d2i_X509(nullptr, &p, long(der.size())));
    ERR_clear_error(); // a failure leaves entries on the thread's queue: other OpenSSL users share it
    if (x && p != reinterpret_cast<const unsigned char *>(der.data()) + der.size())
        x.reset(); // trailing bytes
    return x;
}

// Never asks for a passphrase (OpenSSL would prompt on a terminal without a callback).
int no_passphrase(char *, int, int, void *) { return -1; }

std::unique_ptr<EVP_PKEY, KeyFree> decode_key(std::string_view pem) {
    std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
    if (!bio)
        return nullptr;
    std::unique_ptr<EVP_PKEY, KeyFree> key(PEM_read_bio_PrivateKey(bio.get(), nullptr, &no_passphrase, nullptr));
    ERR_clear_error();
    return key;
}

// Certificates only, at least one, at most `max`: the decoded certificates, or a problem.
Problem certificates(std::string_view what, std::string_view text, std::size_t max, std::size_t max_bytes,
                     std::vector<X509Ptr> *out) {
    const std::string name(what);
    if (text.size() > max_bytes)
        return problem(name + " is too long", std::to_string(text.size()) + " bytes; the limit is " +
                                                  std::to_string(max_bytes) + ".");
    std::string error;
    std::optional<std::vector<PemBlock>> blocks = parse_pem(text, &error);
    if (!blocks)
        return problem(name + " is not PEM", error,
                       "Pass the certificates as PEM text: -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----.");
    if (blocks->empty())
        return problem(name + " holds no certificate", {},
                       "Pass the certificates as PEM text: -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----.");
    if (blocks->size() > max)
        return problem(name + " holds too many certificates",
                       std::to_string(blocks->size()) + "; the limit is " + std::to_string(max) + ".");
    for (std::size_t i = 0; i < blocks->size(); ++i) {
        const PemBlock &b = (*blocks)[i];
        if (b.label != "CERTIFICATE")
            return problem(name + " may hold certificates only",
                           "Block " + std::to_string(i + 1) + " is \"" + b.label + "\".");
        X509Ptr x = decode_certificate(b.der);
        if (!x)
            return problem(name + " holds a certificate that does not decode",
                           "Block " + std::to_string(i + 1) + " is not a DER X.509 certificate.");
        out->push_back(std::move(x));
    }
    return {};
}

Problem private_key(std::string_view text, std::unique_ptr<EVP_PKEY, KeyFree> *out) {
    if (text.size() > kMaxKeyBytes)
        return problem("tls_client_key is too long", std::to_string(text.size()) + " bytes; the limit is " +
                                                         std::to_string(kMaxKeyBytes) + ".");
    if (text.find("Proc-Type:") != std::string_view::npos || text.find("ENCRYPTED PRIVATE KEY") != std::string_view::npos)
        return problem("tls_client_key is encrypted", {},
                       "Pass the key without a passphrase (openssl pkey -in key.pem -out plain.pem); it is stored "
                       "like the other secrets of the endpoint and never shown.");
    std::string error;
    std::optional<std::vector<PemBlock>> blocks = parse_pem(text, &error);
    if (!blocks)
        return problem("tls_client_key is not PEM", error,
                       "Pass the key as PEM text: -----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY-----.");
    int keys = 0;
    for (const PemBlock &b : *blocks) {
        if (b.label == "PRIVATE KEY" || b.label == "RSA PRIVATE KEY" || b.label == "EC PRIVATE KEY")
            ++keys;
        else if (b.label != "EC PARAMETERS")
            return problem("tls_client_key may hold one private key only", "It holds a \"" + b.label + "\" block.");
    }
    if (keys != 1)
        return problem("tls_client_key must hold exactly one private key", "It holds " + std::to_string(keys) + ".",
                       "Pass the key as PEM text: -----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY-----.");
    *out = decode_key(text);
    if (!*out)
        return problem("tls_client_key does not decode", "OpenSSL cannot read the private key.");
    return {};
}

} // namespace

std::optional<std::vector<PemBlock>> parse_pem(std::string_view text, std::string *error) {
    static constexpr std::string_view kBegin = "-----BEGIN ", kEnd = "-----END ", kDashes = "-----";
    std::vector<PemBlock> blocks;
    std::size_t i = 0;
    auto fail = [&](std::string why) -> std::optional<std::vector<PemBlock>> {
        if (error)
            *error = std::move(why);
        return std::nullopt;
    };
    for (char c : text)
        if (!is_space(c) && (c < 0x20 || c >= 0x7f))
            return fail("The text holds a character that is not printable ASCII.");
    for (;;) {
        while (i < text.size() && is_space(text[i]))
            ++i;
        if (i == text.size())
            break;
        if (text.compare(i, kBegin.size(), kBegin) != 0)
            return fail("Text outside a -----BEGIN ...----- / -----END ...----- block at byte " + std::to_string(i) + ".");
        i += kBegin.size();
        const std::size_t label_end = text.find(kDashes, i);
        const std::size_t eol = text.find('\n', i);
        if (label_end == std::string_view::npos || (eol != std::string_view::npos && eol < label_end))
            return fail("A BEGIN line is not closed by -----.");
        PemBlock b;
        b.label = std::string(text.substr(i, label_end - i));
        // RFC 7468 labels: printable ASCII without '-' at the ends; short (they are quoted in messages).
        if (b.label.empty() || b.label.size() > 64 || b.label.front() == ' ' || b.label.back() == ' ' ||
            !std::all_of(b.label.begin(), b.label.end(), [](char c) { return c >= 0x20 && c < 0x7f; }))
            return fail("A BEGIN line has no valid label.");
        i = label_end + kDashes.size();
        const std::string end_line = std::string(kEnd) + b.label + std::string(kDashes);
        const std::size_t end = text.find(end_line, i);
        if (end == std::string_view::npos)
            return fail("The \"" + b.label + "\" block has no matching END line.");
        std::string body;
        for (char c : text.substr(i, end - i))
            if (!is_space(c))
                body += c;
        std::optional<std::string> der = signature::base64_decode(body);
        if (!der || der->empty())
            return fail("The body of the \"" + b.label + "\" block is not base64.");
        b.der = std::move(*der);
        blocks.push_back(std::move(b));
        i = end + end_line.size();
    }
    return blocks;
}

Problem check(std::string_view url, const std::optional<std::string> &client_cert,
              const std::optional<std::string> &client_key, const std::optional<std::string> &ca) {
    if (!client_cert && !client_key && !ca)
        return {};
    const std::string origin = validate::url_origin(url);
    if (origin.rfind("https://", 0) != 0) {
        const bool kafka = origin.rfind("kafka://", 0) == 0;
        return problem("tls_client_cert, tls_client_key and tls_ca apply to https:// endpoints only", {},
                       kafka ? "A Kafka endpoint takes its TLS material in kafka_settings (ssl.ca.pem, "
                               "ssl.certificate.pem, ssl.key.pem)."
                             : "Use an https:// URL, or pass tls_client_cert => '', tls_client_key => '' and "
                               "tls_ca => '' to drop them.");
    }
    if (client_cert.has_value() != client_key.has_value())
        return problem(client_cert ? "tls_client_cert needs tls_client_key" : "tls_client_key needs tls_client_cert", {},
                       "A client certificate and its private key are given together.");
    std::vector<X509Ptr> chain;
    if (client_cert)
        if (Problem p = certificates("tls_client_cert", *client_cert, 100, kMaxCertBytes, &chain); !p.ok())
            return p;
    if (client_key) {
        std::unique_ptr<EVP_PKEY, KeyFree> key;
        if (Problem p = private_key(*client_key, &key); !p.ok())
            return p;
        const int matches = X509_check_private_key(chain.front().get(), key.get());
        ERR_clear_error();
        if (matches != 1)
            return problem("tls_client_key is not the key of tls_client_cert", {},
                           "The first certificate of tls_client_cert must be the one the key belongs to.");
    }
    if (ca) {
        std::vector<X509Ptr> cas;
        if (Problem p = certificates("tls_ca", *ca, kMaxCaCertificates, kMaxCaBytes, &cas); !p.ok())
            return p;
    }
    return {};
}

std::optional<std::int64_t> not_after(std::string_view pem) {
    std::optional<std::vector<PemBlock>> blocks = parse_pem(pem, nullptr);
    if (!blocks)
        return std::nullopt;
    for (const PemBlock &b : *blocks) {
        if (b.label != "CERTIFICATE")
            continue;
        X509Ptr x = decode_certificate(b.der);
        if (!x)
            return std::nullopt;
        std::tm tm{};
        if (ASN1_TIME_to_tm(X509_get0_notAfter(x.get()), &tm) != 1)
            return std::nullopt;
        return std::int64_t(timegm(&tm));
    }
    return std::nullopt;
}

} // namespace pg_sync::tls
