// OAuth2 tokens in front of the HTTP transport; see oauth2_sink.hpp.
#include "core/oauth2_sink.hpp"

#include <algorithm>
#include <chrono>
#include <exception>

namespace pg_sync::oauth2 {

Sink::Sink(sink::Sink &inner, std::function<std::int64_t()> now_ms) : inner_(inner), now_ms_(std::move(now_ms)) {}

std::int64_t Sink::now() const {
    if (now_ms_)
        return now_ms_();
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::size_t Sink::in_flight() const {
    const std::size_t inner = inner_.in_flight();
    return inner - std::min(inner, fetches_.size()) + waiting_;
}

long Sink::timeout_ms() const {
    // Completions made here (a failed fetch) are ready at once.
    return done_.empty() ? inner_.timeout_ms() : 0;
}

void Sink::submit(sink::Request request) {
    if (!request.oauth2) {
        inner_.submit(std::move(request));
        return;
    }
    Endpoint &e = endpoints_[request.group];
    if (e.config != *request.oauth2) {
        // New or changed settings: the cached token was for the old ones.
        e.config = *request.oauth2;
        e.cache = TokenCache();
        e.generation++;
    }
    const std::uint64_t token = request.token;
    Pending p;
    p.request = std::move(request);
    p.submitted_ms = now();
    pending_[token] = std::move(p);
    try {
        send(token);
    } catch (...) {
        pending_.erase(token);
        throw;
    }
}

void Sink::send(std::uint64_t token) {
    Pending &p = pending_.at(token);
    const std::int64_t group = p.request.group;
    Endpoint &e = endpoints_[group];
    const TokenCache::Use use = e.cache.acquire(now());
    if (use.start_fetch)
        start_fetch(group, e, p.request.timeout_ms);
    if (!use.token) {
        if (use.backing_off) {
            // The last token request failed and the next one is not due yet.
            complete_now(token, retry::Transport::Auth, e.last_error.empty() ? "token endpoint failed" : e.last_error);
            return;
        }
        e.waiting.push_back(token);
        waiting_++;
        return;
    }
    send_with(token, *use.token);
}

void Sink::send_with(std::uint64_t token, const std::string &access_token) {
    Pending &p = pending_.at(token);
    p.token = access_token;
    sink::Request r = p.request;
    r.oauth2.reset();
    r.headers.push_back("Authorization: Bearer " + p.token);
    inner_.submit(std::move(r));
}

void Sink::start_fetch(std::int64_t group, Endpoint &e, long timeout_ms) {
    sink::Request r;
    r.token = next_fetch_token_++;
    r.url = e.config.token_url;
    r.content_type = "application/x-www-form-urlencoded";
    r.headers.push_back("Accept: application/json");
    if (std::string basic = basic_authorization(e.config); !basic.empty())
        r.headers.push_back(std::move(basic));
    r.body = token_request_body(e.config);
    r.timeout_ms = timeout_ms;
    r.group = group;
    r.keep_body = true;
    fetches_[r.token] = Fetch{group, e.generation, now()};
    token_requests_++;
    try {
        inner_.submit(std::move(r));
    } catch (...) {
        fetches_.erase(r.token);
        e.cache.failed(now());
        throw;
    }
}

void Sink::complete_now(std::uint64_t token, retry::Transport transport, const std::string &detail) {
    auto it = pending_.find(token);
    if (it == pending_.end())
        return;
    sink::Completion c;
    c.token = token;
    c.transport = transport;
    c.detail = detail;
    c.duration_us = std::uint64_t(std::max<std::int64_t>(0, now() - it->second.submitted_ms)) * 1000;
    pending_.erase(it);
    done_.push_back(std::move(c));
}

void Sink::send_or_fail(std::uint64_t token, const std::string *access_token) {
    try {
        if (access_token)
            send_with(token, *access_token);
        else
            send(token);
    } catch (const std::exception &e) {
        complete_now(token, retry::Transport::Other, e.what());
    }
}

void Sink::fail_waiting(Endpoint &e, const std::string &detail) {
    const std::int64_t t = now();
    for (std::uint64_t token : e.waiting) {
        auto it = pending_.find(token);
        if (it == pending_.end())
            continue;
        sink::Completion c;
        c.token = token;
        c.transport = retry::Transport::Auth;
        c.detail = detail;
        c.duration_us = std::uint64_t(std::max<std::int64_t>(0, t - it->second.submitted_ms)) * 1000;
        pending_.erase(it);
        done_.push_back(std::move(c));
    }
    waiting_ -= e.waiting.size();
    e.waiting.clear();
}

// The answer of a token request: the waiting requests go with the new token, or fail.
void Sink::fetched(const sink::Completion &c) {
    auto f = fetches_.find(c.token);
    const Fetch fetch = f->second;
    fetches_.erase(f);
    auto eit = endpoints_.find(fetch.group);
    if (eit == endpoints_.end() || eit->second.generation != fetch.generation)
        return; // for settings that changed since
    Endpoint &e = eit->second;
    std::string detail;
    if (c.transport == retry::Transport::Ok && c.status >= 200 && c.status < 300) {
        std::string error;
        if (std::optional<Token> token = parse_token_response(c.body, &error)) {
            e.cache.fetched(*token, fetch.sent_ms, now());
            std::deque<std::uint64_t> waiting;
            waiting.swap(e.waiting);
            waiting_ -= waiting.size();
            // With the token just fetched, not through acquire(): they waited for this one.
            for (std::uint64_t t : waiting)
                if (pending_.count(t))
                    send_or_fail(t, &token->access_token);
            return;
        }
        detail = "token endpoint answered HTTP " + std::to_string(c.status) + ", but " + error;
    } else if (c.transport == retry::Transport::Ok) {
        detail = "token endpoint answered HTTP " + std::to_string(c.status);
        if (std::string code = error_code(c.body); !code.empty())
            detail += " (" + code + ")";
    } else if (c.transport == retry::Transport::Blocked) {
        detail = "token endpoint address not allowed (pg_sync.allow_private_targets is off)";
    } else {
        detail = "token endpoint: " + c.detail;
    }
    e.cache.failed(now());
    e.last_error = detail;
    fail_waiting(e, detail);
}

std::vector<sink::Completion> Sink::take_completions() {
    for (sink::Completion &c : inner_.take_completions()) {
        if (fetches_.count(c.token)) {
            fetched(c);
            continue;
        }
        auto it = pending_.find(c.token);
        if (it == pending_.end()) {
            done_.push_back(std::move(c)); // not an OAuth2 request
            continue;
        }
        Pending &p = it->second;
        if (c.transport == retry::Transport::Ok && c.status == 401 && !p.resent) {
            // The receiver refused the token (revoked, rotated, expired early): once more with a
            // fresh one. A second 401 is the request's answer.
            p.resent = true;
            endpoints_[p.request.group].cache.invalidate(p.token);
            send_or_fail(c.token);
            continue;
        }
        if (p.resent) // both attempts
            c.duration_us = std::uint64_t(std::max<std::int64_t>(0, now() - p.submitted_ms)) * 1000;
        pending_.erase(it);
        done_.push_back(std::move(c));
    }
    std::vector<sink::Completion> out;
    out.swap(done_);
    return out;
}

} // namespace pg_sync::oauth2
