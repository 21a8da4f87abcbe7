// OAuth2 client credentials (core/oauth2.hpp, core/oauth2_sink.hpp): the setting, the token
// request and response, the token cache's schedule, and the sink that adds tokens in front of a
// transport (a recording sink here; test/225_oauth2.sh runs it against real servers).
#include "core/oauth2.hpp"
#include "core/oauth2_sink.hpp"
#include "core/signature.hpp"

#include <gtest/gtest.h>

#include <memory>

using namespace pg_sync;

namespace {

const char *kConfig = R"({"token_url": "https://auth.example.com/token", "client_id": "svc", "client_secret": "s3cr&t"})";

oauth2::Config config() {
    validate::Problem p;
    return *oauth2::parse_config(kConfig, &p);
}

class FakeSink final : public sink::Sink {
  public:
    void submit(sink::Request r) override { sent.push_back(std::move(r)); }
    void set_groups(std::size_t) override {}
    std::vector<sink::Completion> take_completions() override { return std::move(done); }
    std::size_t in_flight() const override { return sent.size() - answered; }
    const std::map<int, int> &wait_fds() const override { return fds; }
    bool wait_fds_changed() override { return false; }
    bool wait_fds_replaced() override { return false; }
    long timeout_ms() const override { return -1; }
    void on_socket(int, int) override {}
    void on_timeout() override {}

    void answer(std::size_t i, int status, std::string body = {}) {
        sink::Completion c;
        c.token = sent.at(i).token;
        c.status = status;
        c.body = std::move(body);
        done.push_back(std::move(c));
        ++answered;
    }
    std::string header(std::size_t i, const std::string &name) const {
        for (const std::string &h : sent.at(i).headers)
            if (h.rfind(name + ": ", 0) == 0)
                return h.substr(name.size() + 2);
        return {};
    }

    std::vector<sink::Request> sent;
    std::vector<sink::Completion> done;
    std::map<int, int> fds;
    std::size_t answered = 0;
};

sink::Request delivery(std::uint64_t token, std::shared_ptr<const oauth2::Config> c, std::int64_t group = 7) {
    sink::Request r;
    r.token = token;
    r.url = "https://hooks.example.com/in";
    r.body = R"({"events":[]})";
    r.group = group;
    r.oauth2 = std::move(c);
    return r;
}

} // namespace

TEST(OAuth2Config, ParsesAndRefuses) {
    const oauth2::Config c = config();
    EXPECT_EQ(c.client_id, "svc");
    EXPECT_TRUE(c.basic);
    validate::Problem p;
    EXPECT_FALSE(oauth2::parse_config("[]", &p));
    EXPECT_EQ(p.message, "oauth2 must be a JSON object");
    EXPECT_FALSE(oauth2::parse_config(R"({"token_url": "https://a.example/t", "client_id": "x"})", &p));
    EXPECT_EQ(p.message, "oauth2 needs client_secret");
    EXPECT_FALSE(oauth2::parse_config(R"({"token_url": "ftp://a.example/t", "client_id": "x", "client_secret": "y"})", &p));
    EXPECT_EQ(p.message.rfind("oauth2 token_url is not valid", 0), 0u) << p.message;
    EXPECT_FALSE(oauth2::parse_config(
        R"({"token_url": "kafka://127.0.0.1:9092/t", "client_id": "x", "client_secret": "y"})", &p));
    EXPECT_EQ(p.message, "oauth2 token_url must be an http or https URL");
    EXPECT_FALSE(oauth2::parse_config(R"({"token_url": "https://a.example/t", "client_id": "x", "client_secret": "y", "grant": "z"})", &p));
    EXPECT_EQ(p.message, "unknown oauth2 key \"grant\"");
    EXPECT_FALSE(oauth2::parse_config(R"({"token_url": "https://a.example/t", "client_id": "x", "client_secret": 5})", &p));
    EXPECT_EQ(p.message, "oauth2 client_secret must be a string");
    EXPECT_FALSE(oauth2::parse_config(R"({"token_url": "https://a.example/t", "client_id": "x", "client_secret": "y", "client_auth": "jwt"})", &p));
    EXPECT_EQ(p.message, "oauth2 client_auth must be \"basic\" or \"body\"");
    EXPECT_FALSE(oauth2::parse_config(R"({"token_url": "https://a.example/t", "client_id": "x", "client_secret": "a\nb"})", &p));
    EXPECT_EQ(p.message, "oauth2 client_secret must be printable ASCII");
    EXPECT_EQ(p.detail.find("a"), std::string::npos); // the secret is never quoted
    EXPECT_FALSE(oauth2::check_endpoint("kafka://127.0.0.1:9092/t", false).ok());
    EXPECT_EQ(oauth2::check_endpoint("https://h.example/", true).message,
              "an endpoint with oauth2 must not have an Authorization header");
    EXPECT_TRUE(oauth2::check_endpoint("http://h.example/", false).ok());
}

TEST(OAuth2Request, BasicByDefaultBodyOnRequest) {
    oauth2::Config c = config();
    c.scope = "events:write read";
    EXPECT_EQ(oauth2::token_request_body(c), "grant_type=client_credentials&scope=events%3Awrite+read");
    EXPECT_EQ(oauth2::basic_authorization(c), "Authorization: Basic " + signature::base64_encode("svc:s3cr%26t"));
    c.basic = false;
    c.audience = "https://api";
    EXPECT_EQ(oauth2::basic_authorization(c), "");
    EXPECT_EQ(oauth2::token_request_body(c),
              "grant_type=client_credentials&scope=events%3Awrite+read&audience=https%3A%2F%2Fapi"
              "&client_id=svc&client_secret=s3cr%26t");
}

TEST(OAuth2Response, ParsesTokensAndErrors) {
    std::string error;
    auto t = oauth2::parse_token_response(R"({"access_token":"abc","token_type":"bearer","expires_in":30})", &error);
    ASSERT_TRUE(t) << error;
    EXPECT_EQ(t->access_token, "abc");
    EXPECT_EQ(t->expires_in_s, 30);
    t = oauth2::parse_token_response(R"({"access_token":"abc","token_type":"Bearer","expires_in":"60"})", &error);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->expires_in_s, 60);
    t = oauth2::parse_token_response(R"({"access_token":"abc"})", &error);
    ASSERT_TRUE(t);
    EXPECT_FALSE(t->expires_in_s);
    EXPECT_FALSE(oauth2::parse_token_response(R"({"access_token":"abc","token_type":"mac"})", &error));
    EXPECT_EQ(error, "the token_type is not Bearer");
    EXPECT_FALSE(oauth2::parse_token_response(R"({"access_token":"a b"})", &error));
    EXPECT_FALSE(oauth2::parse_token_response(R"({"token_type":"bearer"})", &error));
    EXPECT_EQ(error, "the token response has no access_token");
    EXPECT_FALSE(oauth2::parse_token_response("<html>", &error));
    EXPECT_EQ(oauth2::error_code(R"({"error":"invalid_client","error_description":"x"})"), "invalid_client");
    EXPECT_EQ(oauth2::error_code(R"({"error":"<script>"})"), "");
    EXPECT_EQ(oauth2::error_code("oops"), "");
}

TEST(OAuth2Cache, FetchesOnceRefreshesBeforeExpiryAndAfterInvalidation) {
    oauth2::TokenCache cache;
    auto u = cache.acquire(0);
    EXPECT_FALSE(u.token);
    EXPECT_TRUE(u.start_fetch);
    u = cache.acquire(1); // already fetching
    EXPECT_FALSE(u.token);
    EXPECT_FALSE(u.start_fetch);
    cache.fetched(oauth2::Token{"t1", 400}, 0); // margin min(60 s, 100 s) = 60 s
    EXPECT_EQ(cache.refresh_at_ms(), 340000);
    EXPECT_EQ(cache.use_until_ms(), 385000);
    u = cache.acquire(339999);
    EXPECT_EQ(u.token, "t1");
    EXPECT_FALSE(u.start_fetch);
    u = cache.acquire(340000); // refresh in the background, the old token still serves
    EXPECT_EQ(u.token, "t1");
    EXPECT_TRUE(u.start_fetch);
    u = cache.acquire(385000); // too close to its end: wait for the refresh
    EXPECT_FALSE(u.token);
    EXPECT_FALSE(u.start_fetch);
    cache.fetched(oauth2::Token{"t2", 4}, 385000); // short-lived: margin 1 s
    EXPECT_EQ(cache.refresh_at_ms(), 388000);
    EXPECT_EQ(cache.use_until_ms(), 388750);
    EXPECT_FALSE(cache.invalidate("t1"));
    EXPECT_TRUE(cache.invalidate("t2"));
    u = cache.acquire(385001);
    EXPECT_FALSE(u.token);
    EXPECT_TRUE(u.start_fetch);
    cache.failed();
    EXPECT_FALSE(cache.fetching());
    EXPECT_TRUE(cache.acquire(385002).start_fetch);
    cache.fetched(oauth2::Token{"t3", std::nullopt}, 0); // no expires_in: an hour
    EXPECT_EQ(cache.refresh_at_ms(), oauth2::kDefaultLifetimeMs - oauth2::kMaxMarginMs);
}

TEST(OAuth2Sink, FetchesOneTokenForWaitingRequestsAndSendsThemWithIt) {
    FakeSink inner;
    std::int64_t now = 1000;
    oauth2::Sink s(inner, [&] { return now; });
    auto c = std::make_shared<const oauth2::Config>(config());
    s.submit(delivery(1, c));
    s.submit(delivery(2, c));
    ASSERT_EQ(inner.sent.size(), 1u); // the token request only
    EXPECT_EQ(inner.sent[0].url, "https://auth.example.com/token");
    EXPECT_EQ(inner.sent[0].content_type, "application/x-www-form-urlencoded");
    EXPECT_EQ(inner.header(0, "Authorization"), "Basic " + signature::base64_encode("svc:s3cr%26t"));
    EXPECT_TRUE(inner.sent[0].keep_body);
    EXPECT_EQ(s.in_flight(), 2u);
    // Plain requests pass through meanwhile.
    s.submit(delivery(3, nullptr, 8));
    ASSERT_EQ(inner.sent.size(), 2u);
    EXPECT_EQ(inner.header(1, "Authorization"), "");
    inner.answer(0, 200, R"({"access_token":"tok1","token_type":"Bearer","expires_in":3600})");
    EXPECT_TRUE(s.take_completions().empty());
    ASSERT_EQ(inner.sent.size(), 4u);
    EXPECT_EQ(inner.header(2, "Authorization"), "Bearer tok1");
    EXPECT_EQ(inner.header(3, "Authorization"), "Bearer tok1");
    EXPECT_FALSE(inner.sent[2].oauth2);
    inner.answer(2, 204);
    auto done = s.take_completions();
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].token, 1u);
    // The next request uses the cached token.
    s.submit(delivery(4, c));
    ASSERT_EQ(inner.sent.size(), 5u);
    EXPECT_EQ(inner.header(4, "Authorization"), "Bearer tok1");
    EXPECT_EQ(s.token_requests(), 1u);
}

TEST(OAuth2Sink, A401IsRetriedOnceWithAFreshToken) {
    FakeSink inner;
    std::int64_t now = 0;
    oauth2::Sink s(inner, [&] { return now; });
    auto c = std::make_shared<const oauth2::Config>(config());
    s.submit(delivery(1, c));
    inner.answer(0, 200, R"({"access_token":"old"})");
    s.take_completions();
    ASSERT_EQ(inner.sent.size(), 2u);
    inner.answer(1, 401); // revoked
    EXPECT_TRUE(s.take_completions().empty());
    ASSERT_EQ(inner.sent.size(), 3u); // a new token request
    EXPECT_EQ(inner.sent[2].url, "https://auth.example.com/token");
    inner.answer(2, 200, R"({"access_token":"new"})");
    s.take_completions();
    ASSERT_EQ(inner.sent.size(), 4u);
    EXPECT_EQ(inner.header(3, "Authorization"), "Bearer new");
    inner.answer(3, 401); // again: now it is the answer
    auto done = s.take_completions();
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].status, 401);
    EXPECT_EQ(s.token_requests(), 2u);
}

TEST(OAuth2Sink, AFailedFetchFailsTheWaitingRequestsWithoutTheSecret) {
    FakeSink inner;
    std::int64_t now = 0;
    oauth2::Sink s(inner, [&] { return now; });
    auto c = std::make_shared<const oauth2::Config>(config());
    s.submit(delivery(1, c));
    s.submit(delivery(2, c));
    now = 50;
    inner.answer(0, 401, R"({"error":"invalid_client","error_description":"bad secret s3cr&t"})");
    auto done = s.take_completions();
    ASSERT_EQ(done.size(), 2u);
    for (const sink::Completion &d : done) {
        EXPECT_EQ(d.transport, retry::Transport::Auth);
        EXPECT_EQ(d.detail, "token endpoint answered HTTP 401 (invalid_client)");
        EXPECT_EQ(d.duration_us, 50000u);
    }
    const retry::Outcome o = retry::classify(done[0].response(), 1, retry::Policy{}, 0, nullptr);
    EXPECT_EQ(o.verdict, retry::Verdict::Retry);
    EXPECT_EQ(o.reason, "OAuth2 token request failed: token endpoint answered HTTP 401 (invalid_client)");
    EXPECT_EQ(s.in_flight(), 0u);
    // Within the fetch backoff (1 s after one failure) a request fails at once with the last
    // error, and the token endpoint is not asked again.
    s.submit(delivery(30, c));
    done = s.take_completions();
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Auth);
    EXPECT_EQ(done[0].detail, "token endpoint answered HTTP 401 (invalid_client)");
    EXPECT_EQ(s.token_requests(), 1u);
    now += oauth2::kFetchBackoffMs;
    // A 200 that is not a token, and a transport failure.
    s.submit(delivery(3, c));
    inner.answer(1 + 0, 0); // (index 1 is the new token request)
    inner.done.back().transport = retry::Transport::Connect;
    inner.done.back().detail = "Failed to connect";
    done = s.take_completions();
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].detail, "token endpoint: Failed to connect");
    now += 2 * oauth2::kFetchBackoffMs; // two failures in a row: 2 s
    s.submit(delivery(4, c));
    inner.answer(2, 200, R"({"token":"x"})");
    done = s.take_completions();
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].detail, "token endpoint answered HTTP 200, but the token response has no access_token");
}

TEST(OAuth2Sink, ExpiryAndChangedSettingsFetchAgain) {
    FakeSink inner;
    std::int64_t now = 0;
    oauth2::Sink s(inner, [&] { return now; });
    auto c = std::make_shared<const oauth2::Config>(config());
    s.submit(delivery(1, c));
    inner.answer(0, 200, R"({"access_token":"t1","expires_in":4})"); // refresh from 3 s, use until 3.75 s
    s.take_completions();
    now = 3500; // refresh under way, t1 still serves
    s.submit(delivery(2, c));
    ASSERT_EQ(inner.sent.size(), 4u);
    EXPECT_EQ(inner.sent[2].url, "https://auth.example.com/token");
    EXPECT_EQ(inner.header(3, "Authorization"), "Bearer t1");
    inner.answer(2, 200, R"({"access_token":"t2","expires_in":4})");
    s.take_completions();
    s.submit(delivery(3, c));
    EXPECT_EQ(inner.header(4, "Authorization"), "Bearer t2");
    // New settings (alter_endpoint): the cached token is not used for them.
    oauth2::Config other = config();
    other.client_id = "svc2";
    s.submit(delivery(4, std::make_shared<const oauth2::Config>(other)));
    ASSERT_EQ(inner.sent.size(), 6u);
    EXPECT_EQ(inner.sent[5].url, "https://auth.example.com/token");
    EXPECT_EQ(s.token_requests(), 3u);
}

// Found in review: a token that expires at once (expires_in 0, or a fetch slower than its life)
// must still carry the requests that waited for it, instead of a new fetch for each, forever.
TEST(OAuth2Cache, ATokenIsUsableForAMomentWhateverItsExpiry) {
    oauth2::TokenCache cache;
    ASSERT_TRUE(cache.acquire(0).start_fetch);
    cache.fetched(oauth2::Token{"t0", 0}, 0, 1900);
    EXPECT_EQ(cache.use_until_ms(), 1900 + oauth2::kMinUseMs);
    auto u = cache.acquire(1901);
    EXPECT_EQ(u.token, "t0");
    EXPECT_TRUE(u.start_fetch); // refreshed at once, in the background
    cache.fetched(oauth2::Token{"t1", 2}, 2000, 3900); // a 1.9 s fetch of a 2 s token
    EXPECT_EQ(cache.acquire(3901).token, "t1");
}

TEST(OAuth2Sink, ATokenThatExpiresAtOnceStillCarriesTheWaitingRequests) {
    FakeSink inner;
    std::int64_t now = 0;
    oauth2::Sink s(inner, [&] { return now; });
    auto c = std::make_shared<const oauth2::Config>(config());
    s.submit(delivery(1, c));
    s.submit(delivery(2, c));
    ASSERT_EQ(inner.sent.size(), 1u);
    now = 1900;
    inner.answer(0, 200, R"({"access_token":"brief","expires_in":0})");
    EXPECT_TRUE(s.take_completions().empty());
    ASSERT_EQ(inner.sent.size(), 3u); // both deliveries, not another token request
    EXPECT_EQ(inner.header(1, "Authorization"), "Bearer brief");
    EXPECT_EQ(inner.header(2, "Authorization"), "Bearer brief");
    EXPECT_EQ(s.token_requests(), 1u);
}

TEST(OAuth2Cache, FailedFetchesBackOff) {
    oauth2::TokenCache cache;
    ASSERT_TRUE(cache.acquire(0).start_fetch);
    cache.failed(100);
    auto u = cache.acquire(500);
    EXPECT_FALSE(u.start_fetch);
    EXPECT_TRUE(u.backing_off);
    u = cache.acquire(100 + oauth2::kFetchBackoffMs);
    EXPECT_TRUE(u.start_fetch);
    cache.failed(2000);
    EXPECT_EQ(cache.fetch_retry_at_ms(), 2000 + 2 * oauth2::kFetchBackoffMs);
    for (int i = 0; i < 20; ++i) {
        ASSERT_TRUE(cache.acquire(cache.fetch_retry_at_ms()).start_fetch);
        cache.failed(cache.fetch_retry_at_ms());
    }
    const std::int64_t t = cache.fetch_retry_at_ms();
    ASSERT_TRUE(cache.acquire(t).start_fetch);
    cache.failed(t);
    EXPECT_EQ(cache.fetch_retry_at_ms(), t + oauth2::kMaxFetchBackoffMs);
    // A success resets it.
    ASSERT_TRUE(cache.acquire(cache.fetch_retry_at_ms()).start_fetch);
    cache.fetched(oauth2::Token{"ok", 3600}, t + oauth2::kMaxFetchBackoffMs);
    EXPECT_EQ(cache.fetch_retry_at_ms(), 0);
}
