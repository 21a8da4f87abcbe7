// TLS client certificates and CA bundles (core/tls_config.hpp): PEM shape, keys that match,
// https only. The certificates are made here with OpenSSL.
#include "core/tls_config.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <string>

using namespace pg_sync;

namespace {

struct Pair {
    std::string cert, key;
};

std::string bio_text(BIO *b) {
    char *data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    std::string s(data, std::size_t(n));
    BIO_free(b);
    return s;
}

// A self-signed certificate valid for `days`, and its key (EC P-256 or RSA 2048).
Pair make_pair(bool rsa = false, long days = 30) {
    EVP_PKEY *key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char *>("test"), -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, key);
    X509_sign(x, key, EVP_sha256());
    BIO *cb = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(cb, x);
    BIO *kb = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(kb, key, nullptr, nullptr, 0, nullptr, nullptr);
    Pair p{bio_text(cb), bio_text(kb)};
    X509_free(x);
    EVP_PKEY_free(key);
    return p;
}

std::string encrypted_key(const std::string &plain_pem) {
    BIO *in = BIO_new_mem_buf(plain_pem.data(), int(plain_pem.size()));
    EVP_PKEY *key = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
    BIO_free(in);
    BIO *out = BIO_new(BIO_s_mem());
    char pass[] = "secret";
    PEM_write_bio_PKCS8PrivateKey(out, key, EVP_aes_256_cbc(), pass, 6, nullptr, nullptr);
    EVP_PKEY_free(key);
    return bio_text(out);
}

const std::string kUrl = "https://hooks.example.com/in";
const std::optional<std::string> none;

} // namespace

TEST(Pem, ParsesBlocksAndRefusesTextAround) {
    const Pair p = make_pair();
    std::string error;
    auto blocks = tls::parse_pem("\n" + p.cert + "\n" + p.cert, &error);
    ASSERT_TRUE(blocks) << error;
    ASSERT_EQ(blocks->size(), 2u);
    EXPECT_EQ((*blocks)[0].label, "CERTIFICATE");
    EXPECT_FALSE((*blocks)[0].der.empty());
    EXPECT_TRUE(tls::parse_pem("", &error)->empty());
    EXPECT_FALSE(tls::parse_pem("subject=CN=test\n" + p.cert, &error));
    EXPECT_NE(error.find("outside"), std::string::npos) << error;
    EXPECT_FALSE(tls::parse_pem("-----BEGIN CERTIFICATE-----\nAAAA\n", &error));
    EXPECT_FALSE(tls::parse_pem("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", &error));
    EXPECT_FALSE(tls::parse_pem(p.cert + "\x01", &error));
    EXPECT_FALSE(tls::parse_pem("-----BEGIN CERTIFICAD CERTIF\tCATE-----\n", &error)); // (fuzz)
    EXPECT_EQ(error, "A BEGIN line has no valid label.");
}

TEST(TlsCheck, AcceptsAMatchingPairAndACaBundle) {
    for (bool rsa : {false, true}) {
        const Pair p = make_pair(rsa), ca1 = make_pair(), ca2 = make_pair();
        EXPECT_TRUE(tls::check(kUrl, p.cert, p.key, none).ok()) << tls::check(kUrl, p.cert, p.key, none).message;
        EXPECT_TRUE(tls::check(kUrl, p.cert, p.key, ca1.cert + ca2.cert).ok());
        EXPECT_TRUE(tls::check(kUrl, none, none, ca1.cert).ok());
        EXPECT_TRUE(tls::check(kUrl, none, none, none).ok());
        // A chain after the client certificate is fine.
        EXPECT_TRUE(tls::check(kUrl, p.cert + ca1.cert, p.key, none).ok());
    }
}

TEST(TlsCheck, RefusesOtherSchemesAndHalfPairs) {
    const Pair p = make_pair();
    validate::Problem e = tls::check("http://hooks.example.com/in", none, none, p.cert);
    EXPECT_EQ(e.message, "tls_client_cert, tls_client_key and tls_ca apply to https:// endpoints only");
    e = tls::check("kafka://127.0.0.1:9092/t", p.cert, p.key, none);
    EXPECT_NE(e.hint.find("kafka_settings"), std::string::npos);
    EXPECT_EQ(tls::check(kUrl, p.cert, none, none).message, "tls_client_cert needs tls_client_key");
    EXPECT_EQ(tls::check(kUrl, none, p.key, none).message, "tls_client_key needs tls_client_cert");
}

TEST(TlsCheck, RefusesAKeyOfAnotherCertificateWithoutQuotingIt) {
    const Pair a = make_pair(), b = make_pair();
    const validate::Problem e = tls::check(kUrl, a.cert, b.key, none);
    EXPECT_EQ(e.message, "tls_client_key is not the key of tls_client_cert");
    EXPECT_EQ((e.message + e.detail + e.hint).find("PRIVATE"), std::string::npos);
}

TEST(TlsCheck, RefusesBadShapes) {
    const Pair p = make_pair();
    EXPECT_EQ(tls::check(kUrl, "not a certificate", p.key, none).message, "tls_client_cert is not PEM");
    EXPECT_EQ(tls::check(kUrl, p.key, p.key, none).message, "tls_client_cert may hold certificates only");
    EXPECT_EQ(tls::check(kUrl, p.cert, p.cert, none).message, "tls_client_key may hold one private key only");
    EXPECT_EQ(tls::check(kUrl, p.cert, p.key + p.key, none).message, "tls_client_key must hold exactly one private key");
    EXPECT_EQ(tls::check(kUrl, p.cert, encrypted_key(p.key), none).message, "tls_client_key is encrypted");
    EXPECT_EQ(tls::check(kUrl, none, none, "").message, "tls_ca holds no certificate");
    EXPECT_EQ(tls::check(kUrl, none, none, p.cert + p.key).message, "tls_ca may hold certificates only");
    // A base64 body that is not a certificate.
    EXPECT_EQ(tls::check(kUrl, none, none, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").message,
              "tls_ca holds a certificate that does not decode");
    EXPECT_EQ(tls::check(kUrl, none, none, std::string(tls::kMaxCaBytes + 1, ' ')).message, "tls_ca is too long");
}

TEST(TlsCheck, NotAfterIsTheFirstCertificatesEnd) {
    const Pair p = make_pair(false, 10);
    const std::optional<std::int64_t> t = tls::not_after(p.cert + make_pair(false, 100).cert);
    ASSERT_TRUE(t);
    const std::int64_t now = std::int64_t(time(nullptr));
    EXPECT_NEAR(double(*t - now), 10 * 86400.0, 120.0);
    EXPECT_FALSE(tls::not_after("junk"));
    EXPECT_FALSE(tls::not_after(p.key));
}
