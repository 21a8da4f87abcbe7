// The libcurl multi client against a tiny real HTTP server on loopback (a thread in the test),
// and the address rules of pg_sync.allow_private_targets.
#include "core/http_client.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <chrono>
#include <string>
#include <thread>

using namespace pg_sync;

namespace {

sockaddr_in v4(const char *text) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, text, &a.sin_addr);
    return a;
}

sockaddr_in6 v6(const char *text) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &a.sin6_addr);
    return a;
}

bool public4(const char *text) {
    sockaddr_in a = v4(text);
    return http::address_is_public(reinterpret_cast<sockaddr *>(&a), sizeof a);
}

bool public6(const char *text) {
    sockaddr_in6 a = v6(text);
    return http::address_is_public(reinterpret_cast<sockaddr *>(&a), sizeof a);
}

// Accepts connections and answers every request with `response` (one request per connection
// read, then close). Enough for the client's behaviour; keep-alive is tested end to end.
class OneShotServer {
  public:
    explicit OneShotServer(std::string response) : response_(std::move(response)) {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a = v4("127.0.0.1");
        a.sin_port = 0;
        bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a);
        listen(fd_, 16);
        socklen_t len = sizeof a;
        getsockname(fd_, reinterpret_cast<sockaddr *>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~OneShotServer() {
        stop_ = true;
        thread_.join();
        close(fd_);
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
    int requests() const { return requests_; }

  private:
    void serve() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 20) <= 0)
                continue;
            int c = accept(fd_, nullptr, nullptr);
            if (c < 0)
                continue;
            std::string got;
            char buf[4096];
            // Read until the end of headers and the body (Content-Length of the test bodies).
            while (got.find("\r\n\r\n") == std::string::npos || got.size() < got.find("\r\n\r\n") + 4 + 2) {
                ssize_t n = recv(c, buf, sizeof buf, 0);
                if (n <= 0)
                    break;
                got.append(buf, std::size_t(n));
            }
            ++requests_;
            send(c, response_.data(), response_.size(), MSG_NOSIGNAL);
            close(c);
        }
    }
    std::string response_;
    int fd_ = -1;
    int port_ = 0;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<int> requests_{0};
};

// Drives the client the way the worker does, with poll(2) instead of a WaitEventSet.
std::vector<http::Completion> run_until_done(http::Client &client, int want, int deadline_ms = 5000) {
    std::vector<http::Completion> done;
    auto start = std::chrono::steady_clock::now();
    while (int(done.size()) < want) {
        if (std::chrono::steady_clock::now() - start > std::chrono::milliseconds(deadline_ms))
            break;
        std::vector<pollfd> fds;
        for (const auto &kv : client.sockets())
            fds.push_back({kv.first, short(((kv.second & http::kWantRead) ? POLLIN : 0) |
                                           ((kv.second & http::kWantWrite) ? POLLOUT : 0)),
                           0});
        long t = client.timeout_ms();
        int n = poll(fds.data(), fds.size(), t < 0 ? 50 : int(std::min(t, 50L)));
        if (n > 0) {
            for (const pollfd &p : fds) {
                int bits = ((p.revents & (POLLIN | POLLHUP | POLLERR)) ? http::kWantRead : 0) |
                           ((p.revents & POLLOUT) ? http::kWantWrite : 0);
                if (bits)
                    client.on_socket(p.fd, bits);
            }
        }
        if (client.timeout_ms() == 0)
            client.on_timeout();
        for (auto &c : client.take_completions())
            done.push_back(std::move(c));
    }
    return done;
}

http::Request post(const std::string &url, std::uint64_t token) {
    http::Request r;
    r.token = token;
    r.url = url;
    r.body = "{}";
    r.timeout_ms = 3000;
    r.headers = {"X-Test: 1"};
    return r;
}

} // namespace

TEST(AddressPolicy, RefusesNonPublicIPv4) {
    for (const char *a : {"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
                          "169.254.169.254", "0.0.0.0", "100.64.0.1", "224.0.0.1", "255.255.255.255", "198.18.0.1"})
        EXPECT_FALSE(public4(a)) << a;
    for (const char *a : {"8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255", "93.184.216.34", "100.128.0.1"})
        EXPECT_TRUE(public4(a)) << a;
}

TEST(AddressPolicy, RefusesNonPublicIPv6AndMappedIPv4) {
    for (const char *a : {"::", "::1", "::ffff:127.0.0.1", "::ffff:8.8.8.8", "::127.0.0.1", "fe80::1", "fd00::1",
                          "fc00::1", "ff02::1", "64:ff9b::7f00:1"})
        EXPECT_FALSE(public6(a)) << a;
    for (const char *a : {"2001:4860:4860::8888", "2606:4700:4700::1111"})
        EXPECT_TRUE(public6(a)) << a;
    EXPECT_FALSE(http::address_is_public(nullptr, 0));
}

TEST(HttpClient, PostsAndReportsStatusAndRetryAfter) {
    OneShotServer server("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 4\r\n"
                         "Connection: close\r\n\r\nslow");
    http::Client client(http::Options{});
    client.submit(post(server.url(), 42));
    EXPECT_EQ(client.in_flight(), 1u);
    auto done = run_until_done(client, 1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].token, 42u);
    EXPECT_EQ(done[0].transport, retry::Transport::Ok);
    EXPECT_EQ(done[0].status, 429);
    ASSERT_TRUE(done[0].retry_after);
    EXPECT_EQ(*done[0].retry_after, "7");
    EXPECT_EQ(done[0].detail, "slow");
    EXPECT_EQ(client.in_flight(), 0u);
}

// The token requests of core/oauth2_sink.hpp read the whole answer; deliveries only its start.
TEST(HttpClient, KeepsTheWholeBodyWhenAsked) {
    const std::string body(5000, 'x');
    OneShotServer server("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n" + body);
    http::Client client(http::Options{});
    sink::Request r = post(server.url(), 1);
    r.keep_body = true;
    r.content_type = "application/x-www-form-urlencoded";
    client.submit(r);
    auto done = run_until_done(client, 1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].status, 200);
    EXPECT_EQ(done[0].body, body);
    EXPECT_EQ(done[0].detail, "");
}

TEST(HttpClient, DoesNotFollowRedirects) {
    OneShotServer server("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n");
    http::Client client(http::Options{});
    client.submit(post(server.url(), 1));
    auto done = run_until_done(client, 1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].status, 302);
    EXPECT_EQ(server.requests(), 1);
}

TEST(HttpClient, BlocksPrivateTargetsAtConnectTime) {
    OneShotServer server("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    http::Options o;
    o.allow_private_targets = false;
    http::Client client(o);
    client.submit(post(server.url(), 1));
    client.submit(post("http://localhost:" + server.url().substr(server.url().rfind(':') + 1), 2));
    auto done = run_until_done(client, 2);
    ASSERT_EQ(done.size(), 2u);
    for (const auto &c : done)
        EXPECT_EQ(c.transport, retry::Transport::Blocked) << c.detail;
    EXPECT_EQ(server.requests(), 0);
}

TEST(HttpClient, RefusesOtherSchemesAndReportsRefusedConnections) {
    http::Client client(http::Options{});
    client.submit(post("file:///etc/passwd", 1));
    client.submit(post("http://127.0.0.1:1/closed", 2));
    auto done = run_until_done(client, 2);
    ASSERT_EQ(done.size(), 2u);
    for (const auto &c : done) {
        EXPECT_NE(c.transport, retry::Transport::Ok);
        EXPECT_FALSE(c.detail.empty());
    }
}

TEST(HttpClient, CutsOffResponsesOverTheCapButKeepsTheStatus) {
    std::string big(200000, 'x');
    OneShotServer server("HTTP/1.1 500 Internal Server Error\r\nContent-Length: " + std::to_string(big.size()) +
                         "\r\nConnection: close\r\n\r\n" + big);
    http::Options o;
    o.max_response_bytes = 1000;
    http::Client client(o);
    client.submit(post(server.url(), 1));
    auto done = run_until_done(client, 1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Ok);
    EXPECT_EQ(done[0].status, 500);
    EXPECT_LE(done[0].detail.size(), 120u);
}

// ---- The connection budget (hostile-receiver finding: starvation at pg_sync.max_connections) ----

namespace {

// Accepts connections (the kernel does, from the listen backlog) and never answers: every
// request sent to it runs into its timeout.
class SilentServer {
  public:
    SilentServer() {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a = v4("127.0.0.1");
        a.sin_port = 0;
        bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a);
        listen(fd_, 64);
        socklen_t len = sizeof a;
        getsockname(fd_, reinterpret_cast<sockaddr *>(&a), &len);
        port_ = ntohs(a.sin_port);
    }
    ~SilentServer() { close(fd_); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/silent"; }

  private:
    int fd_ = -1;
    int port_ = 0;
};

// Answers 204 on every connection, reading each request first; keeps count.
class HealthyServer : public OneShotServer {
  public:
    HealthyServer() : OneShotServer("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n") {}
};

http::Request to(const std::string &url, std::uint64_t token, std::int64_t group, long timeout_ms) {
    http::Request r = post(url, token);
    r.group = group;
    r.timeout_ms = timeout_ms;
    return r;
}

const http::Completion *find(const std::vector<http::Completion> &done, std::uint64_t token) {
    for (const auto &c : done)
        if (c.token == token)
            return &c;
    return nullptr;
}

std::map<std::int64_t, http::GroupLoad> loads(std::initializer_list<std::pair<std::int64_t, http::GroupLoad>> l) {
    return std::map<std::int64_t, http::GroupLoad>(l.begin(), l.end());
}

http::GroupLoad load(std::size_t running, std::size_t waiting, std::uint64_t oldest = 1) {
    http::GroupLoad g;
    g.running = running;
    g.waiting = waiting;
    g.oldest_waiting = waiting ? oldest : 0;
    return g;
}

} // namespace

TEST(ConnectionBudget, NothingStartsAtTheLimitOrWithoutWaitingRequests) {
    EXPECT_FALSE(http::next_group_to_start({}, 4, 2));
    EXPECT_FALSE(http::next_group_to_start(loads({{1, load(2, 0)}}), 4, 2));
    EXPECT_FALSE(http::next_group_to_start(loads({{1, load(3, 1)}, {2, load(1, 1)}}), 4, 2));
    // A limit of 0 counts as 1.
    EXPECT_EQ(http::next_group_to_start(loads({{1, load(0, 1)}}), 0, 0), 1);
    EXPECT_FALSE(http::next_group_to_start(loads({{1, load(1, 1)}}), 0, 0));
}

TEST(ConnectionBudget, TheGroupWithTheFewestRunningGoesFirstThenTheOldest) {
    // 2 has fewer running than 1, although 1 waits longer.
    EXPECT_EQ(http::next_group_to_start(loads({{1, load(2, 3, 1)}, {2, load(1, 1, 9)}}), 8, 2), 2);
    // Equal: the oldest waiting request.
    EXPECT_EQ(http::next_group_to_start(loads({{1, load(1, 3, 7)}, {2, load(1, 1, 5)}}), 8, 2), 2);
    EXPECT_EQ(http::next_group_to_start(loads({{1, load(1, 3, 4)}, {2, load(1, 1, 5)}}), 8, 2), 1);
}

TEST(ConnectionBudget, AGroupAboveItsShareGetsNothingWhileAnotherWaits) {
    // Limit 4, one free connection: the group holding 3 waits, the one holding none goes.
    EXPECT_EQ(http::next_group_to_start(loads({{1, load(3, 5, 1)}, {2, load(0, 1, 9)}}), 4, 2), 2);
    // Max-min: a freed connection goes to the group below its share (2 of 4 for 2 groups).
    EXPECT_EQ(http::next_group_to_start(loads({{1, load(2, 5, 1)}, {2, load(1, 1, 9)}}), 4, 2), 2);
}

TEST(ConnectionBudget, ReservesAConnectionForEachIdleGroupUpToHalfTheLimit) {
    // The finding: limit 4, a silent receiver with max_in_flight 4, a healthy endpoint idle.
    // The silent one gets 3; the 4th connection stays free for the healthy endpoint.
    auto silent = [](std::size_t running) { return loads({{1, load(running, 4 - running)}}); };
    EXPECT_EQ(http::next_group_to_start(silent(0), 4, 2), 1);
    EXPECT_EQ(http::next_group_to_start(silent(1), 4, 2), 1);
    EXPECT_EQ(http::next_group_to_start(silent(2), 4, 2), 1);
    EXPECT_FALSE(http::next_group_to_start(silent(3), 4, 2));
    // ...which the healthy endpoint takes as soon as it has a request.
    EXPECT_EQ(http::next_group_to_start(loads({{1, load(3, 1, 1)}, {2, load(0, 1, 2)}}), 4, 2), 2);
    // The only known group may use every connection.
    EXPECT_EQ(http::next_group_to_start(silent(3), 4, 1), 1);
    EXPECT_EQ(http::next_group_to_start(silent(3), 4, 0), 1);
    // Many idle groups: the reserve stops at half the limit, so a busy group still gets half.
    auto busy = [](std::size_t running) { return loads({{1, load(running, 100)}}); };
    EXPECT_EQ(http::next_group_to_start(busy(31), 64, 100), 1);
    EXPECT_FALSE(http::next_group_to_start(busy(32), 64, 100));
    // A few idle groups: one connection each.
    EXPECT_EQ(http::next_group_to_start(busy(60), 64, 4), 1);
    EXPECT_FALSE(http::next_group_to_start(busy(61), 64, 4));
    // Groups with requests but nothing running are served first anyway (rule 3), and groups that
    // run something are not idle: two busy groups and one idle one keep one connection free.
    EXPECT_EQ(http::next_group_to_start(loads({{1, load(1, 1, 1)}, {2, load(1, 1, 2)}}), 4, 3), 1);
    EXPECT_FALSE(http::next_group_to_start(loads({{1, load(2, 1, 1)}, {2, load(1, 0)}}), 4, 3));
}

// Requests beyond the connection cap wait in the client, and their timeout starts only when they
// get a connection. Before: libcurl queued them (CURLMOPT_MAX_TOTAL_CONNECTIONS) with their
// timeout running, and one stuck behind a silent receiver failed with "Failed to resolve host
// '127.0.0.1' with timeout after 0 ms" without ever being sent.
TEST(HttpClient, RequestsBeyondTheCapWaitWithoutTheirTimeoutRunning) {
    SilentServer silent;
    HealthyServer healthy;
    http::Options o;
    o.max_connections = 1;
    http::Client client(o);
    client.submit(to(silent.url(), 1, 1, 700));
    client.submit(to(healthy.url(), 2, 1, 300)); // shorter than its wait for the connection
    EXPECT_EQ(client.running(), 1u);
    EXPECT_EQ(client.queued(), 1u);
    EXPECT_EQ(client.in_flight(), 2u);
    auto done = run_until_done(client, 2);
    ASSERT_EQ(done.size(), 2u);
    ASSERT_TRUE(find(done, 1) && find(done, 2));
    EXPECT_EQ(find(done, 1)->transport, retry::Transport::Timeout) << find(done, 1)->detail;
    EXPECT_EQ(find(done, 2)->transport, retry::Transport::Ok) << find(done, 2)->detail;
    EXPECT_EQ(find(done, 2)->status, 204);
    EXPECT_GE(find(done, 2)->duration_us, 600000u); // it did wait for the silent one's 700 ms
    EXPECT_EQ(healthy.requests(), 1);
    EXPECT_EQ(client.in_flight(), 0u);
}

// The finding itself: max_connections 4, a silent receiver holding max_in_flight 4 requests, and
// a healthy endpoint with one event: it is answered at once, not after the silent one's timeout.
TEST(HttpClient, ASilentReceiverCannotTakeEveryConnection) {
    SilentServer silent;
    HealthyServer healthy;
    http::Options o;
    o.max_connections = 4;
    http::Client client(o);
    client.set_groups(2);
    for (std::uint64_t k = 1; k <= 4; ++k)
        client.submit(to(silent.url(), k, 1, 2000));
    EXPECT_EQ(client.running(), 3u); // one connection kept for the other endpoint
    EXPECT_EQ(client.queued(), 1u);
    const auto start = std::chrono::steady_clock::now();
    client.submit(to(healthy.url(), 9, 2, 1000));
    EXPECT_EQ(client.running(), 4u);
    auto done = run_until_done(client, 1, 1500);
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].token, 9u);
    EXPECT_EQ(done[0].transport, retry::Transport::Ok) << done[0].detail;
    EXPECT_EQ(done[0].status, 204);
    EXPECT_LT(took, std::chrono::milliseconds(500));
    // The silent ones time out (the fourth after a connection frees), none charged to group 2.
    done = run_until_done(client, 4, 6000);
    ASSERT_EQ(done.size(), 4u);
    for (const auto &c : done)
        EXPECT_EQ(c.transport, retry::Transport::Timeout) << c.token << " " << c.detail;
}

// A freed connection goes to the group running the fewest transfers, even when another group's
// request has waited longer.
TEST(HttpClient, AFreedConnectionGoesToTheGroupWithTheFewest) {
    SilentServer silent;
    HealthyServer healthy;
    http::Options o;
    o.max_connections = 2;
    http::Client client(o);
    client.submit(to(silent.url(), 1, 1, 300));  // frees its connection first
    client.submit(to(silent.url(), 2, 1, 3000));
    client.submit(to(silent.url(), 3, 1, 300));  // waits (group 1 runs 2)
    client.submit(to(healthy.url(), 4, 2, 2000)); // waits, arrived after 3
    EXPECT_EQ(client.running(), 2u);
    EXPECT_EQ(client.queued(), 2u);
    auto done = run_until_done(client, 2, 2500);
    ASSERT_EQ(done.size(), 2u);
    EXPECT_EQ(done[0].token, 1u);
    EXPECT_EQ(done[1].token, 4u) << "the freed connection went to group 1's request 3";
    EXPECT_EQ(done[1].status, 204);
    done = run_until_done(client, 2, 5000);
    ASSERT_EQ(done.size(), 2u);
    EXPECT_EQ(done[0].token, 3u);
    EXPECT_EQ(done[1].token, 2u);
}

// A lower cap (SIGHUP) applies to what starts from now on; a higher one starts waiting requests.
TEST(HttpClient, RaisingTheCapStartsWaitingRequests) {
    SilentServer silent;
    http::Options o;
    o.max_connections = 1;
    http::Client client(o);
    client.submit(to(silent.url(), 1, 1, 400));
    client.submit(to(silent.url(), 2, 1, 400));
    client.submit(to(silent.url(), 3, 1, 400));
    EXPECT_EQ(client.running(), 1u);
    o.max_connections = 3;
    client.set_options(o);
    EXPECT_EQ(client.running(), 3u);
    EXPECT_EQ(client.queued(), 0u);
    auto done = run_until_done(client, 3, 3000);
    EXPECT_EQ(done.size(), 3u);
}

// Destroying the client with requests running and waiting frees everything (ASan build).
TEST(HttpClient, DestroyedWithRunningAndWaitingRequests) {
    SilentServer silent;
    http::Options o;
    o.max_connections = 1;
    http::Client client(o);
    client.submit(to(silent.url(), 1, 1, 5000));
    client.submit(to(silent.url(), 2, 2, 5000));
    EXPECT_EQ(client.queued(), 1u);
}

// ---- Response header cap (libcurl < 8.3 has no limit on their total) ----------------------------

TEST(HttpClient, ResponseHeadersOverTheCapAbortTheTransfer) {
    std::string head = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; head.size() < 70000; ++i)
        head += "X-Pad-" + std::to_string(i) + ": " + std::string(900, 'h') + "\r\n";
    OneShotServer server(head + "Content-Length: 0\r\nConnection: close\r\n\r\n");
    http::Client client(http::Options{}); // 64 KiB by default
    client.submit(post(server.url(), 1));
    auto done = run_until_done(client, 1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Other);
    EXPECT_EQ(done[0].status, 0); // not a 200: the response was not accepted
    EXPECT_EQ(done[0].detail, "response headers larger than 65536 bytes, transfer aborted");
    const retry::Outcome v = retry::classify(done[0].response(), 1, retry::Policy{}, 0, nullptr);
    EXPECT_EQ(v.verdict, retry::Verdict::Retry);
    EXPECT_EQ(v.reason, "transport error: response headers larger than 65536 bytes, transfer aborted");
}

TEST(HttpClient, ResponseHeadersUnderTheCapAreFineAndTheCapIsAnOption) {
    std::string head = "HTTP/1.1 204 No Content\r\n";
    for (int i = 0; i < 20; ++i)
        head += "X-Pad-" + std::to_string(i) + ": " + std::string(900, 'h') + "\r\n";
    const std::string response = head + "Connection: close\r\n\r\n";
    {
        OneShotServer server(response);
        http::Client client(http::Options{});
        client.submit(post(server.url(), 1));
        auto done = run_until_done(client, 1);
        ASSERT_EQ(done.size(), 1u);
        EXPECT_EQ(done[0].transport, retry::Transport::Ok) << done[0].detail;
        EXPECT_EQ(done[0].status, 204);
    }
    {
        OneShotServer server(response);
        http::Options o;
        o.max_header_bytes = 4096;
        http::Client client(o);
        client.submit(post(server.url(), 1));
        auto done = run_until_done(client, 1);
        ASSERT_EQ(done.size(), 1u);
        EXPECT_EQ(done[0].transport, retry::Transport::Other);
        EXPECT_EQ(done[0].detail, "response headers larger than 4096 bytes, transfer aborted");
    }
}

// ---- "target address not allowed" only when no connection attempt was allowed ------------------

// A name that resolves to a private address and to a public one: the private one is refused, the
// public one is tried and fails for its own reason (192.0.2.1, TEST-NET-1, is unreachable or
// silent from here). That failure is reported, not a refusal. Before, the refusal's flag stuck.
TEST(HttpClient, ARefusedAddressFollowedByAnotherFailureReportsThatFailure) {
    http::Options o;
    o.allow_private_targets = false;
    o.resolve = {"mixed.pgsync.test:8080:127.0.0.1,192.0.2.1"};
    http::Client client(o);
    client.submit(to("http://mixed.pgsync.test:8080/hook", 1, 1, 700));
    auto done = run_until_done(client, 1, 3000);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_NE(done[0].transport, retry::Transport::Blocked) << done[0].detail;
    EXPECT_TRUE(done[0].transport == retry::Transport::Connect || done[0].transport == retry::Transport::Timeout)
        << int(done[0].transport) << " " << done[0].detail;
}

TEST(HttpClient, ANameWithOnlyPrivateAddressesIsStillRefused) {
    OneShotServer server("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    const std::string port = server.url().substr(server.url().rfind(':') + 1, std::string::npos);
    const std::string p = port.substr(0, port.find('/'));
    http::Options o;
    o.allow_private_targets = false;
    o.resolve = {"private.pgsync.test:" + p + ":127.0.0.1,10.0.0.1,169.254.169.254"};
    http::Client client(o);
    client.submit(to("http://private.pgsync.test:" + p + "/hook", 1, 1, 1000));
    auto done = run_until_done(client, 1, 3000);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Blocked) << done[0].detail;
    EXPECT_EQ(server.requests(), 0);
}

// Answers 204 to every request, keeping each connection open (keep-alive); one connection at a
// time, which is all these tests need. Counts requests and connections.
class KeepAliveServer {
  public:
    KeepAliveServer() {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a = v4("127.0.0.1");
        a.sin_port = 0;
        bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a);
        listen(fd_, 16);
        socklen_t len = sizeof a;
        getsockname(fd_, reinterpret_cast<sockaddr *>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~KeepAliveServer() {
        stop_ = true;
        thread_.join();
        close(fd_);
    }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
    int requests() const { return requests_; }
    int connections() const { return connections_; }

  private:
    void serve() {
        int c = -1;
        std::string got;
        while (!stop_) {
            pollfd p[2] = {{fd_, POLLIN, 0}, {c, POLLIN, 0}};
            if (poll(p, c < 0 ? 1 : 2, 20) <= 0)
                continue;
            if (p[0].revents & POLLIN) {
                int n = accept(fd_, nullptr, nullptr);
                if (n >= 0) {
                    if (c >= 0)
                        close(c);
                    c = n;
                    got.clear();
                    ++connections_;
                }
                continue;
            }
            char buf[4096];
            ssize_t n = recv(c, buf, sizeof buf, 0);
            if (n <= 0) {
                close(c);
                c = -1;
                continue;
            }
            got.append(buf, std::size_t(n));
            // The test bodies are "{}": a request is complete 2 bytes after the blank line.
            for (std::size_t end; (end = got.find("\r\n\r\n")) != std::string::npos && got.size() >= end + 6;) {
                got.erase(0, end + 6);
                ++requests_;
                static const char answer[] = "HTTP/1.1 204 No Content\r\n\r\n";
                send(c, answer, sizeof answer - 1, MSG_NOSIGNAL);
            }
        }
        if (c >= 0)
            close(c);
    }
    int fd_ = -1;
    int port_ = 0;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<int> requests_{0};
    std::atomic<int> connections_{0};
};

// A request refused on an open connection (prerequest check) is a refusal too, although the
// connection attempt itself was allowed back then: a keep-alive connection to a private address,
// opened while private targets were allowed, must not carry requests after they were turned off.
TEST(HttpClient, ARequestOnAReusedConnectionToAPrivateAddressIsRefused) {
    KeepAliveServer server;
    http::Options o;
    http::Client client(o); // private targets allowed
    client.submit(post(server.url(), 1));
    auto done = run_until_done(client, 1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].status, 204);
    client.submit(post(server.url(), 2)); // the same connection, still allowed
    done = run_until_done(client, 1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].status, 204);
    EXPECT_EQ(server.connections(), 1);
    o.allow_private_targets = false;
    client.set_options(o);
    client.submit(post(server.url(), 3));
    done = run_until_done(client, 1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].transport, retry::Transport::Blocked) << done[0].detail;
    EXPECT_EQ(server.requests(), 2);
}
