// Non-blocking HTTP POSTs over one libcurl multi handle, driven by the caller's event loop.
// PostgreSQL-free. The delivery worker waits on its latch AND on the sockets this client exposes
// (sockets(), timeout_ms()), then reports readiness back (on_socket(), on_timeout()); completed
// requests come out of take_completions(). No call here blocks, so a slow receiver never stalls
// the others, nor the worker's reaction to shutdown or configuration changes.
//
// Safety rules applied to every request (DESIGN.md, Guarantee 8): only http and https; redirects
// are not followed (a 3xx is an answer like any other, and a failure for the retry policy); TLS
// peers and host names are verified; proxy environment variables are ignored (Options::proxy is
// the only proxy); response bodies are read up to a cap; with allow_private_targets off, the
// address actually being connected to (after DNS) is checked, so a name that resolves to a
// private address is refused too. Connections are reused (keep-alive) and capped in number, so
// the worker's sockets are bounded whatever the load.
#pragma once

#include "core/retry_policy.hpp"

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace pg_sync::http {

struct Options {
    bool allow_private_targets = true;
    std::string proxy;                   // empty: no proxy at all, whatever the environment says
    long max_connections = 64;           // open sockets at most (requests beyond it wait in curl)
    std::size_t max_response_bytes = 1 << 20; // more than this and the transfer is cut off
    std::string user_agent = "pg_sync";
};

struct Request {
    std::uint64_t token = 0; // the caller's handle, returned in the Completion
    std::string url;
    std::vector<std::string> headers; // "Name: value" lines; Content-Type is added here
    std::string body;
    long timeout_ms = 10000; // connect and total
};

struct Completion {
    std::uint64_t token = 0;
    retry::Transport transport = retry::Transport::Ok;
    int status = 0;
    std::optional<std::string> retry_after;
    std::string detail;            // libcurl's error text, or the start of the response body
    std::uint64_t duration_us = 0; // submit to completion

    // The view retry::classify takes; valid while this Completion lives.
    retry::Response response() const;
};

// Socket interest as curl states it.
enum Want : int { kWantRead = 1, kWantWrite = 2 };

// Whether a connection to this address may be opened with allow_private_targets off: refuses
// loopback, private (RFC 1918, unique local), shared (100.64/10), link-local, unspecified,
// multicast, reserved and broadcast addresses, and every IPv4-mapped or -compatible IPv6 address.
bool address_is_public(const sockaddr *address, socklen_t length) noexcept;

class Client {
  public:
    explicit Client(const Options &options);
    ~Client();
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // New settings apply to requests submitted from now on (the connection cap at once).
    void set_options(const Options &options);

    // Starts a request. Throws std::runtime_error if libcurl refuses it (out of memory).
    void submit(Request request);

    // The sockets to watch: fd -> Want bits. changed() tells whether the set differs from the
    // last time it was asked (the caller rebuilds its wait set only then).
    const std::map<int, int> &sockets() const { return sockets_; }
    bool changed() {
        bool c = changed_;
        changed_ = false;
        return c;
    }
    // Whether sockets came or went since the last call (a subset of changed()): a socket closed
    // and another opened under the same number must be registered anew with epoll.
    bool fds_changed() {
        bool c = fds_changed_;
        fds_changed_ = false;
        return c;
    }
    // Milliseconds until on_timeout() is due; -1 when no timer is set.
    long timeout_ms() const;

    void on_socket(int fd, int want_bits);
    void on_timeout();

    std::vector<Completion> take_completions();
    std::size_t in_flight() const { return transfers_; }

    struct Transfer; // per-request state (public for libcurl's C callbacks)

  private:
    static int socket_callback(void *easy, int fd, int what, void *client, void *socketp) noexcept;
    static int timer_callback(void *multi, long timeout_ms, void *client) noexcept;
    void track_socket(int fd, int what);
    void drain_messages();
    void apply_multi_options();

    Options options_;
    void *multi_ = nullptr;
    std::map<int, int> sockets_;
    bool changed_ = false;
    bool fds_changed_ = false;
    std::int64_t timer_deadline_us_ = -1; // steady clock
    std::size_t transfers_ = 0;
    std::set<void *> active_;          // easy handles of running transfers
    std::vector<void *> idle_handles_; // easy handles kept for reuse
    std::vector<Completion> done_;
};

} // namespace pg_sync::http
