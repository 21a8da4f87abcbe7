// libFuzzer target for what the worker and create_endpoint read from others: OAuth2 token
// responses and error bodies (core/oauth2, from any token endpoint), oauth2 settings and PEM
// texts (core/oauth2, core/tls_config, from admins). The first byte picks the parser, the rest is
// its input. Besides "no crash, no sanitizer report": an accepted token fits in a header line,
// an error code is a short word, every message is printable ASCII (they go into ereport and
// last_error), and a PEM block's body round-trips through base64.
// Built and run by scripts/fuzz.sh.
#include "fuzz_common.hpp"
#include "core/oauth2.hpp"
#include "core/signature.hpp"
#include "core/tls_config.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace {

bool printable(std::string_view s) {
    for (char c : s)
        if (c < 0x20 || c >= 0x7f)
            return false;
    return true;
}

void check_problem(const pg_sync::validate::Problem &p) {
    FUZZ_CHECK(printable(p.message) && printable(p.detail) && printable(p.hint), "printable message");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    if (size == 0)
        return 0;
    const std::string_view in(reinterpret_cast<const char *>(data) + 1, size - 1);
    namespace o = pg_sync::oauth2;
    namespace t = pg_sync::tls;
    switch (data[0] % 4) {
    case 0: {
        std::string error;
        if (std::optional<o::Token> tok = o::parse_token_response(in, &error)) {
            FUZZ_CHECK(!tok->access_token.empty() && tok->access_token.size() <= o::kMaxTokenLength, "token size");
            for (char c : tok->access_token)
                FUZZ_CHECK(c > 0x20 && c < 0x7f, "token is visible ASCII");
            FUZZ_CHECK(!tok->expires_in_s || *tok->expires_in_s >= 0, "expires_in not negative");
            o::TokenCache cache;
            cache.acquire(0);
            cache.fetched(*tok, 0);
            FUZZ_CHECK(cache.refresh_at_ms() <= cache.use_until_ms(), "refresh before the end of use");
        } else {
            FUZZ_CHECK(printable(error), "printable error");
        }
        const std::string code = o::error_code(in);
        FUZZ_CHECK(code.size() <= 64, "error code length");
        for (char c : code)
            FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_', "error code is a word");
        break;
    }
    case 1: {
        pg_sync::validate::Problem p;
        if (std::optional<o::Config> c = o::parse_config(in, &p)) {
            FUZZ_CHECK(!c->token_url.empty() && !c->client_id.empty() && !c->client_secret.empty(), "required keys");
            const std::string body = o::token_request_body(*c);
            FUZZ_CHECK(printable(body) && body.find(' ') == std::string::npos, "form body");
            FUZZ_CHECK(printable(o::basic_authorization(*c)), "printable Authorization");
        } else {
            check_problem(p);
        }
        break;
    }
    case 2: {
        std::string error;
        if (auto blocks = t::parse_pem(in, &error)) {
            for (const t::PemBlock &b : *blocks) {
                FUZZ_CHECK(!b.der.empty(), "a block has a body");
                FUZZ_CHECK(pg_sync::signature::base64_decode(pg_sync::signature::base64_encode(b.der)) == b.der,
                           "base64 round trip");
            }
        } else {
            FUZZ_CHECK(printable(error), "printable error");
        }
        (void)t::not_after(in);
        break;
    }
    default: {
        // cert | key | ca, split at the first two 0x00 bytes.
        const std::size_t a = in.find('\0');
        const std::size_t b = a == std::string_view::npos ? a : in.find('\0', a + 1);
        std::optional<std::string> cert, key, ca;
        if (b != std::string_view::npos) {
            cert = std::string(in.substr(0, a));
            key = std::string(in.substr(a + 1, b - a - 1));
            ca = std::string(in.substr(b + 1));
        } else {
            ca = std::string(in);
        }
        check_problem(t::check("https://hooks.example.com/", cert, key, ca));
        break;
    }
    }
    return 0;
}
