#include "core/http_client.hpp"

#include "core/tls_config.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace pg_sync::http {
namespace {

std::int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

bool ipv4_is_public(std::uint32_t a) {
    auto in = [a](std::uint32_t net, int bits) {
        const std::uint32_t mask = bits == 0 ? 0 : ~std::uint32_t(0) << (32 - bits);
        return (a & mask) == net;
    };
    return !(in(0x00000000, 8)      // "this network", 0.0.0.0
             || in(0x0A000000, 8)   // 10/8
             || in(0x64400000, 10)  // 100.64/10, carrier-grade NAT
             || in(0x7F000000, 8)   // loopback
             || in(0xA9FE0000, 16)  // link-local (cloud metadata services live here)
             || in(0xAC100000, 12)  // 172.16/12
             || in(0xC0000000, 24)  // IETF protocol assignments
             || in(0xC0A80000, 16)  // 192.168/16
             || in(0xC6120000, 15)  // 198.18/15, benchmarking
             || in(0xE0000000, 4)   // multicast
             || in(0xF0000000, 4)); // reserved, broadcast
}

} // namespace

bool address_is_public(const sockaddr *address, socklen_t length) noexcept {
    if (!address)
        return false;
    if (address->sa_family == AF_INET && length >= socklen_t(sizeof(sockaddr_in))) {
        const auto *v4 = reinterpret_cast<const sockaddr_in *>(address);
        return ipv4_is_public(ntohl(v4->sin_addr.s_addr));
    }
    if (address->sa_family == AF_INET6 && length >= socklen_t(sizeof(sockaddr_in6))) {
        const auto *b = reinterpret_cast<const sockaddr_in6 *>(address)->sin6_addr.s6_addr;
        static const unsigned char zero[12] = {0};
        if (std::memcmp(b, zero, 12) == 0)
            return false; // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
        if (std::memcmp(b, zero, 10) == 0 && b[10] == 0xff && b[11] == 0xff)
            return false; // IPv4-mapped ::ffff:a.b.c.d reaches IPv4 hosts; refused whole
        if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
            return false; // fe80::/10 link-local
        if ((b[0] & 0xfe) == 0xfc)
            return false; // fc00::/7 unique local
        if (b[0] == 0xff)
            return false; // multicast
        if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b)
            return false; // 64:ff9b::/96 NAT64 can reach any IPv4 address
        return true;
    }
    return false; // other families (unix sockets...) are never a webhook target
}

} // namespace pg_sync::http

namespace pg_sync::sink {
retry::Response Completion::response() const {
    retry::Response r;
    r.transport = transport;
    r.status = status;
    if (retry_after)
        r.retry_after = std::string_view(*retry_after);
    r.detail = detail;
    return r;
}
} // namespace pg_sync::sink

namespace pg_sync::http {

std::optional<std::int64_t> next_group_to_start(const std::map<std::int64_t, GroupLoad> &groups, std::size_t limit,
                                                std::size_t known_groups) {
    limit = std::max<std::size_t>(limit, 1);
    std::size_t running = 0, busy = 0;
    const std::pair<const std::int64_t, GroupLoad> *best = nullptr;
    for (const auto &kv : groups) {
        const GroupLoad &g = kv.second;
        running += g.running;
        if (g.running > 0)
            ++busy;
        if (g.waiting == 0)
            continue;
        if (!best || g.running < best->second.running ||
            (g.running == best->second.running && g.oldest_waiting < best->second.oldest_waiting))
            best = &kv;
    }
    if (!best || running >= limit)
        return std::nullopt;
    if (best->second.running == 0)
        return best->first;
    // Every group with waiting requests runs something (best has the fewest): keep one free
    // connection for each known group that runs nothing, up to half the limit.
    const std::size_t known = std::max(known_groups, groups.size());
    const std::size_t idle_others = known > busy ? known - busy : 0;
    const std::size_t reserve = std::min(idle_others, limit / 2);
    if (limit - running - 1 >= reserve)
        return best->first;
    return std::nullopt;
}

// Per-request state, owned through CURLOPT_PRIVATE from submit() to completion.
struct Client::Transfer {
    Client *client = nullptr;
    void *easy = nullptr;
    Request request;
    curl_slist *headers = nullptr;
    curl_slist *resolve = nullptr; // Options::resolve, when set
    std::int64_t started_us = 0;
    std::uint64_t arrival = 0; // submit order, for the fair share's ties
    std::size_t received = 0;
    std::string body_start; // first bytes of the response, for the error detail
    bool too_large = false;
    std::size_t header_bytes = 0;
    std::size_t header_cap = 0;
    bool headers_too_large = false;
    // Address checks (allow_private_targets off). A name may resolve to several addresses and
    // libcurl tries them in turn: a refused private one followed by a public one that fails for
    // another reason is that other failure, not a refusal. Blocked is reported only when no
    // connection attempt was allowed at all, or when a request was refused on a connection.
    int refused_connects = 0; // opensocket: private addresses refused
    int opened_sockets = 0;   // opensocket: connection attempts allowed
    bool refused_request = false; // prerequest: the connection (new or reused) leads to a private address
    bool allow_private = true;
    std::size_t cap = 0;
    char error[CURL_ERROR_SIZE] = {0};

    bool blocked() const { return refused_request || (refused_connects > 0 && opened_sockets == 0); }
};

namespace {

// libcurl's callbacks are C frames: nothing may throw through them (noexcept, and the one
// allocation that could fail is guarded).
std::size_t on_body(char *data, std::size_t size, std::size_t n, void *user) noexcept {
    auto *t = static_cast<Client::Transfer *>(user);
    const std::size_t len = size * n;
    t->received += len;
    const std::size_t keep = t->request.keep_body ? t->cap : 200;
    if (t->body_start.size() < keep) {
        try {
            t->body_start.append(data, std::min(len, keep - t->body_start.size()));
        } catch (...) {
            return 0;
        }
    }
    if (t->received > t->cap) {
        t->too_large = true;
        return 0; // aborts the transfer (CURLE_WRITE_ERROR)
    }
    return len;
}

// Every header line and status line of every response (1xx, trailers) counts: a receiver
// sending an endless header block is cut off at the cap, like an endless body.
std::size_t on_header(char *, std::size_t size, std::size_t n, void *user) noexcept {
    auto *t = static_cast<Client::Transfer *>(user);
    const std::size_t len = size * n;
    t->header_bytes += len;
    if (t->header_bytes > t->header_cap) {
        t->headers_too_large = true;
        return 0; // aborts the transfer (CURLE_WRITE_ERROR)
    }
    return len;
}

curl_socket_t on_open_socket(void *user, curlsocktype, curl_sockaddr *address) noexcept {
    auto *t = static_cast<Client::Transfer *>(user);
    if (!t->allow_private && !address_is_public(&address->addr, address->addrlen)) {
        t->refused_connects++;
        return CURL_SOCKET_BAD; // libcurl goes on with the next address, if any
    }
    t->opened_sockets++;
    return socket(address->family, address->socktype, address->protocol);
}

// Called for every request once its connection is ready, new or reused: a connection opened
// before allow_private_targets went off must not carry requests to a private address either.
int on_prerequest(void *user, char *primary_ip, char *, int primary_port, int) noexcept {
    auto *t = static_cast<Client::Transfer *>(user);
    if (t->allow_private)
        return CURL_PREREQFUNC_OK;
    sockaddr_storage ss{};
    socklen_t len = 0;
    auto *v4 = reinterpret_cast<sockaddr_in *>(&ss);
    auto *v6 = reinterpret_cast<sockaddr_in6 *>(&ss);
    if (inet_pton(AF_INET, primary_ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(std::uint16_t(primary_port));
        len = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, primary_ip, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(std::uint16_t(primary_port));
        len = sizeof(sockaddr_in6);
    }
    if (len == 0 || !address_is_public(reinterpret_cast<sockaddr *>(&ss), len)) {
        t->refused_request = true;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

// Printable ASCII only, so that the text can go into a log or a text column as it is.
std::string printable(std::string_view s, std::size_t max) {
    std::string out;
    for (char c : s.substr(0, max))
        out += (c >= 0x20 && c < 0x7f) ? c : ' ';
    while (!out.empty() && out.back() == ' ')
        out.pop_back();
    return out;
}

} // namespace

Client::Client(const Options &options) : options_(options) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    multi_ = curl_multi_init();
    if (!multi_)
        throw std::runtime_error("curl_multi_init failed");
    CURLM *m = static_cast<CURLM *>(multi_);
    curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, &Client::socket_callback);
    curl_multi_setopt(m, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, &Client::timer_callback);
    curl_multi_setopt(m, CURLMOPT_TIMERDATA, this);
    apply_multi_options();
}

Client::~Client() {
    CURLM *m = static_cast<CURLM *>(multi_);
    // Running transfers: remove and free them with their state.
    for (void *h : active_) {
        Transfer *t = nullptr;
        curl_easy_getinfo(static_cast<CURL *>(h), CURLINFO_PRIVATE, reinterpret_cast<char **>(&t));
        curl_multi_remove_handle(m, static_cast<CURL *>(h));
        if (t) {
            curl_slist_free_all(t->headers);
            curl_slist_free_all(t->resolve);
            delete t;
        }
        curl_easy_cleanup(static_cast<CURL *>(h));
    }
    // Waiting ones were never added to the multi handle.
    for (auto &kv : waiting_)
        for (Transfer *t : kv.second) {
            curl_easy_cleanup(static_cast<CURL *>(t->easy));
            curl_slist_free_all(t->headers);
            curl_slist_free_all(t->resolve);
            delete t;
        }
    for (void *h : idle_handles_)
        curl_easy_cleanup(static_cast<CURL *>(h));
    curl_multi_cleanup(m);
}

std::size_t Client::limit() const { return std::size_t(std::max(1L, options_.max_connections)); }

// libcurl's own cap stays as a backstop for the number of sockets, but requests never wait in
// libcurl's queue for it: a transfer waiting there already runs its timeout (CURLOPT_TIMEOUT_MS
// counts from curl_multi_add_handle), so a request stuck behind a slow receiver's connections
// timed out without ever being sent ("Failed to resolve host ... with timeout after 0 ms").
// This client hands libcurl at most `limit` transfers; each holds at most one connection, so
// when the connection cache is full at least one of its connections is idle, and libcurl closes
// it for the new transfer instead of making it wait.
void Client::apply_multi_options() {
    CURLM *m = static_cast<CURLM *>(multi_);
    const long cap = long(limit());
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, cap);
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, cap);
}

void Client::set_options(const Options &options) {
    options_ = options;
    apply_multi_options();
    start_waiting(); // a higher cap lets waiting requests go now
}

void Client::set_groups(std::size_t known_groups) {
    known_groups_ = known_groups;
    start_waiting();
}

int Client::socket_callback(void *, int fd, int what, void *client, void *) noexcept {
    auto *self = static_cast<Client *>(client);
    try {
        self->track_socket(fd, what);
    } catch (...) {
        return -1; // out of memory: libcurl fails the transfer
    }
    return 0;
}

void Client::track_socket(int fd, int what) {
    Client *self = this;
    if (what == CURL_POLL_REMOVE) {
        self->sockets_.erase(fd);
        self->fds_changed_ = true; // a later socket may get the same number: not the same socket
    } else {
        if (self->sockets_.count(fd) == 0)
            self->fds_changed_ = true;
        int want = 0;
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
            want |= kWantRead;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
            want |= kWantWrite;
        self->sockets_[fd] = want;
    }
    self->changed_ = true;
}

int Client::timer_callback(void *, long timeout_ms, void *client) noexcept {
    auto *self = static_cast<Client *>(client);
    self->timer_deadline_us_ = timeout_ms < 0 ? -1 : now_us() + std::int64_t(timeout_ms) * 1000;
    return 0;
}

long Client::timeout_ms() const {
    if (timer_deadline_us_ < 0)
        return -1;
    const std::int64_t left = timer_deadline_us_ - now_us();
    return left <= 0 ? 0 : long((left + 999) / 1000);
}

void Client::submit(Request request) {
    CURL *e = nullptr;
    if (!idle_handles_.empty()) {
        e = static_cast<CURL *>(idle_handles_.back());
        idle_handles_.pop_back();
        curl_easy_reset(e);
    } else {
        e = curl_easy_init();
    }
    if (!e)
        throw std::runtime_error("curl_easy_init failed");
    auto t = std::make_unique<Transfer>();
    t->client = this;
    t->easy = e;
    t->request = std::move(request);
    t->allow_private = options_.allow_private_targets;
    t->cap = options_.max_response_bytes;
    t->header_cap = options_.max_header_bytes;
    t->started_us = now_us();
    t->arrival = ++arrivals_;
    const std::string content_type =
        "Content-Type: " + (t->request.content_type.empty() ? std::string("application/json") : t->request.content_type);
    curl_slist *h = curl_slist_append(nullptr, content_type.c_str());
    h = h ? curl_slist_append(h, "Expect:") : nullptr; // no 100-continue round trip on big bodies
    for (const std::string &line : t->request.headers)
        if (h)
            h = curl_slist_append(h, line.c_str());
    if (!h) {
        curl_easy_cleanup(e);
        throw std::runtime_error("out of memory building request headers");
    }
    t->headers = h;

    for (const std::string &entry : options_.resolve) {
        curl_slist *r = curl_slist_append(t->resolve, entry.c_str());
        if (!r) {
            curl_slist_free_all(t->headers);
            curl_slist_free_all(t->resolve);
            curl_easy_cleanup(e);
            throw std::runtime_error("out of memory building the resolve list");
        }
        t->resolve = r;
    }
    if (t->resolve)
        curl_easy_setopt(e, CURLOPT_RESOLVE, t->resolve);

    curl_easy_setopt(e, CURLOPT_URL, t->request.url.c_str());
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (const tls::Settings *tls = t->request.tls.get()) {
        // From memory, copied by libcurl (CURL_BLOB_COPY): no file ever holds the key. libcurl
        // matches reused connections on these too, so endpoints with other material never share
        // one. tls_ca replaces the system's CA store for this endpoint.
        auto blob = [](const std::string &pem) {
            curl_blob b;
            b.data = const_cast<char *>(pem.data());
            b.len = pem.size();
            b.flags = CURL_BLOB_COPY;
            return b;
        };
        if (!tls->client_cert.empty()) {
            curl_blob cert = blob(tls->client_cert), key = blob(tls->client_key);
            curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
            curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cert);
            curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
            curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &key);
        }
        if (!tls->ca.empty()) {
            curl_blob ca = blob(tls->ca);
            curl_easy_setopt(e, CURLOPT_CAINFO, nullptr);
            curl_easy_setopt(e, CURLOPT_CAPATH, nullptr);
            curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
        }
    }
    curl_easy_setopt(e, CURLOPT_PROXY, options_.proxy.c_str()); // "" disables env proxies
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, t->request.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, t->request.timeout_ms);
    curl_easy_setopt(e, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->request.body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(t->request.body.size()));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t.get());
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t.get());
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, &on_prerequest);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, t.get());
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());

    // Queued first, started by start_waiting() when the budget allows (at once if it does).
    const std::int64_t group = t->request.group;
    GroupLoad *load_entry = nullptr;
    try {
        load_entry = &load_[group];
        waiting_[group].push_back(t.get());
    } catch (...) {
        if (load_entry && load_entry->running == 0 && load_entry->waiting == 0)
            load_.erase(group);
        curl_slist_free_all(t->headers);
        curl_slist_free_all(t->resolve);
        curl_easy_cleanup(e);
        throw;
    }
    GroupLoad &load = *load_entry;
    if (load.waiting++ == 0)
        load.oldest_waiting = t->arrival;
    t.release();
    ++transfers_;
    start_waiting();
}

void Client::start_waiting() {
    CURLM *m = static_cast<CURLM *>(multi_);
    while (std::optional<std::int64_t> group = next_group_to_start(load_, limit(), known_groups_)) {
        std::deque<Transfer *> &queue = waiting_[*group];
        Transfer *t = queue.front();
        queue.pop_front();
        GroupLoad &load = load_[*group];
        load.waiting--;
        load.oldest_waiting = queue.empty() ? 0 : queue.front()->arrival;
        if (queue.empty())
            waiting_.erase(*group);
        if (curl_multi_add_handle(m, static_cast<CURL *>(t->easy)) != CURLM_OK) {
            // Out of memory in libcurl: this request fails like any other transport failure.
            if (load.running == 0 && load.waiting == 0)
                load_.erase(*group);
            Completion c;
            c.token = t->request.token;
            c.transport = retry::Transport::Other;
            c.detail = "curl_multi_add_handle failed";
            c.duration_us = std::uint64_t(std::max<std::int64_t>(0, now_us() - t->started_us));
            finish(t->easy, t, std::move(c));
            continue;
        }
        load.running++;
        active_.insert(t->easy);
    }
}

void Client::finish(void *easy, Transfer *t, Completion c) {
    CURL *e = static_cast<CURL *>(easy);
    curl_slist_free_all(t->headers);
    curl_slist_free_all(t->resolve);
    delete t;
    --transfers_;
    if (idle_handles_.size() < 256)
        idle_handles_.push_back(e);
    else
        curl_easy_cleanup(e);
    done_.push_back(std::move(c));
}

void Client::on_socket(int fd, int want_bits) {
    int ev = 0;
    if (want_bits & kWantRead)
        ev |= CURL_CSELECT_IN;
    if (want_bits & kWantWrite)
        ev |= CURL_CSELECT_OUT;
    int running = 0;
    curl_multi_socket_action(static_cast<CURLM *>(multi_), fd, ev, &running);
    drain_messages();
}

void Client::on_timeout() {
    int running = 0;
    timer_deadline_us_ = -1;
    curl_multi_socket_action(static_cast<CURLM *>(multi_), CURL_SOCKET_TIMEOUT, 0, &running);
    drain_messages();
}

void Client::drain_messages() {
    CURLM *m = static_cast<CURLM *>(multi_);
    int left = 0;
    bool freed = false;
    while (CURLMsg *msg = curl_multi_info_read(m, &left)) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *e = msg->easy_handle;
        const CURLcode result = msg->data.result;
        Transfer *t = nullptr;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, reinterpret_cast<char **>(&t));

        Completion c;
        c.token = t->request.token;
        c.duration_us = std::uint64_t(std::max<std::int64_t>(0, now_us() - t->started_us));
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (result == CURLE_OK || (result == CURLE_WRITE_ERROR && t->too_large && status > 0)) {
            // A response whose body goes past the cap still has its status: the receiver
            // answered, and what it says in the body does not change the verdict.
            c.transport = retry::Transport::Ok;
            c.status = int(status);
            curl_header *ra = nullptr;
            if (curl_easy_header(e, "Retry-After", 0, CURLH_HEADER, -1, &ra) == CURLHE_OK && ra)
                c.retry_after = std::string(ra->value);
            if (t->request.keep_body)
                c.body = std::move(t->body_start);
            else if (status < 200 || status > 299)
                c.detail = printable(t->body_start, 120);
        } else if (t->headers_too_large) {
            c.transport = retry::Transport::Other;
            c.detail = "response headers larger than " + std::to_string(t->header_cap) + " bytes, transfer aborted";
        } else {
            c.transport = t->blocked() ? retry::Transport::Blocked : retry::transport_from_curl(result);
            c.detail = printable(t->error[0] ? std::string_view(t->error) : curl_easy_strerror(result), 160);
        }
        curl_multi_remove_handle(m, e);
        active_.erase(e);
        auto load = load_.find(t->request.group);
        if (load != load_.end() && --load->second.running == 0 && load->second.waiting == 0)
            load_.erase(load);
        finish(e, t, std::move(c));
        freed = true;
    }
    if (freed)
        start_waiting();
}

std::vector<Completion> Client::take_completions() {
    std::vector<Completion> out;
    out.swap(done_);
    return out;
}

} // namespace pg_sync::http
