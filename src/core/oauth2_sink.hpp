// OAuth2 client credentials in front of the HTTP transport: a sink::Sink that takes the requests
// of endpoints with an oauth2 setting (sink::Request::oauth2), adds "Authorization: Bearer
// <token>" and hands them to the HTTP client; every other request passes through untouched.
// PostgreSQL-free.
//
// Tokens are fetched through the same client (a POST to the token URL on the same libcurl multi
// handle, so pg_sync.allow_private_targets, the proxy setting and the connection budget apply to
// it too, and a slow token endpoint blocks nothing else), cached per endpoint (the request's
// group) by oauth2::TokenCache, refreshed before they expire, and fetched again when a receiver
// answers 401 to a request: that request is sent once more with a fresh token, and only a second
// 401 reaches the dispatcher as the request's answer. While a token is being fetched the
// endpoint's requests wait here (in_flight for the dispatcher, so max_in_flight still holds).
// When the fetch fails they complete with Transport::Auth ("OAuth2 token request failed: ..."),
// a transient failure like any other (backoff, circuit breaker); the next request fetches again.
// Tokens and the client secret appear in no Completion, error text or log.
#pragma once

#include "core/oauth2.hpp"
#include "core/sink.hpp"

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace pg_sync::oauth2 {

class Sink final : public sink::Sink {
  public:
    // now_ms: a monotonic clock in ms (tests inject one); empty: std::chrono::steady_clock.
    explicit Sink(sink::Sink &inner, std::function<std::int64_t()> now_ms = {});

    void submit(sink::Request request) override;
    void set_groups(std::size_t known_groups) override { inner_.set_groups(known_groups); }
    std::vector<sink::Completion> take_completions() override;
    // Requests submitted and not completed (waiting for a token included, token requests not).
    std::size_t in_flight() const override;

    const std::map<int, int> &wait_fds() const override { return inner_.wait_fds(); }
    bool wait_fds_changed() override { return inner_.wait_fds_changed(); }
    bool wait_fds_replaced() override { return inner_.wait_fds_replaced(); }
    long timeout_ms() const override;
    void on_socket(int fd, int want_bits) override { inner_.on_socket(fd, want_bits); }
    void on_timeout() override { inner_.on_timeout(); }

    // Token requests sent so far (tests).
    std::uint64_t token_requests() const { return token_requests_; }

  private:
    struct Pending {
        sink::Request request; // as submitted (kept for the one resend after a 401)
        std::string token;     // the access token it was last sent with
        bool resent = false;
        std::int64_t submitted_ms = 0;
    };
    struct Endpoint {
        Config config;
        TokenCache cache;
        std::deque<std::uint64_t> waiting; // requests waiting for a token, oldest first
        std::uint64_t generation = 0;      // a configuration change forgets fetches under way
        std::string last_error;            // of the last failed token request
    };
    struct Fetch {
        std::int64_t group;
        std::uint64_t generation;
        std::int64_t sent_ms;
    };
    std::int64_t now() const;
    void send(std::uint64_t token);            // with the cached token, or waiting for a fetch
    void send_with(std::uint64_t token, const std::string &access_token);
    // send()/send_with() from take_completions(), where a failure to submit (out of memory, no
    // curl handle) becomes this request's completion instead of losing the others.
    void send_or_fail(std::uint64_t token, const std::string *access_token = nullptr);
    void complete_now(std::uint64_t token, retry::Transport transport, const std::string &detail);
    void start_fetch(std::int64_t group, Endpoint &e, long timeout_ms);
    void fetched(const sink::Completion &c);
    void fail_waiting(Endpoint &e, const std::string &detail);

    sink::Sink &inner_;
    std::function<std::int64_t()> now_ms_;
    std::map<std::int64_t, Endpoint> endpoints_;
    std::unordered_map<std::uint64_t, Pending> pending_; // OAuth2 requests not completed, by token
    std::unordered_map<std::uint64_t, Fetch> fetches_;   // token requests in flight, by their token
    std::size_t waiting_ = 0;
    std::vector<sink::Completion> done_;
    std::uint64_t next_fetch_token_ = std::uint64_t(1) << 63; // the dispatcher's tokens count from 1
    std::uint64_t token_requests_ = 0;
};

} // namespace pg_sync::oauth2
