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
