// Non-blocking HTTP POSTs over one libcurl multi handle, driven by the caller's event loop: the
// HTTP implementation of sink::Sink (core/sink.hpp). PostgreSQL-free. The delivery worker waits on its latch AND on the sockets this client exposes
// (sockets(), timeout_ms()), then reports readiness back (on_socket(), on_timeout()); completed
// requests come out of take_completions(). No call here blocks, so a slow receiver never stalls
// the others, nor the worker's reaction to shutdown or configuration changes.
//
// Safety rules applied to every request (docs/design.md, Guarantee 9): only http and https; redirects
// are not followed (a 3xx is an answer like any other, and a failure for the retry policy); TLS
// peers and host names are verified; proxy environment variables are ignored (Options::proxy is
// the only proxy); response bodies are read up to a cap; with allow_private_targets off, the
// address actually being connected to (after DNS) is checked, so a name that resolves to a
// private address is refused too; response headers are capped like bodies. Connections are
// reused (keep-alive) and capped in number, so the worker's sockets are bounded whatever the load.
//
// The connection cap is enforced here, not by libcurl's own queue: a request beyond the cap
// waits in this client and is handed to libcurl (which starts its timeout_ms) only once a
// connection is free for it. Which waiting request gets a freed connection is a fair share
// between groups (the worker's endpoints), see next_group_to_start() below, so that one slow
// endpoint cannot hold up the others.
#pragma once

#include "core/retry_policy.hpp"
#include "core/sink.hpp"

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace pg_sync::http {

// Defaults of the knobs that are also settings (pg_sync.allow_private_targets,
// pg_sync.max_connections): src/pg/settings.hpp names these constants.
inline constexpr bool kDefaultAllowPrivateTargets = true;
inline constexpr long kDefaultMaxConnections = 64;

struct Options {
    bool allow_private_targets = kDefaultAllowPrivateTargets;
    std::string proxy;                   // empty: no proxy at all, whatever the environment says
    long max_connections = kDefaultMaxConnections; // connections at most (requests beyond it wait here)
    std::size_t max_response_bytes = 1 << 20; // more than this and the transfer is cut off
    // Response headers (status lines and header lines of every response, 1xx included) beyond
    // this abort the transfer: libcurl before 8.3 has no limit of its own on their total.
    std::size_t max_header_bytes = 64 << 10;
    // CURLOPT_RESOLVE entries ("host:port:address[,address...]"): fixed addresses for names.
    // The worker sets none; the unit tests use it to give one name several addresses.
    std::vector<std::string> resolve;
    std::string user_agent = "pg_sync";
};

// The request and completion types are the sink's (core/sink.hpp); these names stay for the
// HTTP-only callers.
using Request = sink::Request;
using Completion = sink::Completion;
using sink::kWantRead;
using sink::kWantWrite;
using sink::Want;

// Whether a connection to this address may be opened with allow_private_targets off: refuses
// loopback, private (RFC 1918, unique local), shared (100.64/10), link-local, unspecified,
// multicast, reserved and broadcast addresses, and every IPv4-mapped or -compatible IPv6 address.
bool address_is_public(const sockaddr *address, socklen_t length) noexcept;

// --- The connection budget ---------------------------------------------------------------------
//
// A group's share of the client's connections, as it stands when one could start a transfer.
struct GroupLoad {
    std::size_t running = 0;          // transfers handed to libcurl, each holding a connection
    std::size_t waiting = 0;          // requests waiting here for a connection
    std::uint64_t oldest_waiting = 0; // arrival number of the oldest of them (smaller: older)
};

// Which group's oldest waiting request may start now (nullopt: none). `groups` lists the groups
// with requests running or waiting; `known_groups` is how many groups may submit at all (the
// worker: endpoints not paused), so that groups with nothing to send yet count too.
//
//   1. Nothing starts while `limit` transfers run.
//   2. Among the groups with waiting requests, the one with the fewest running transfers goes
//      first (ties: the oldest waiting request). A freed connection thus goes to whoever has the
//      least, so over time every group with work converges to an equal share (max-min fairness),
//      and a group above its share gets nothing while another one below it waits.
//   3. A group with nothing running may always take a free connection.
//   4. A group that already runs transfers may take one more only if that leaves a connection
//      free for each other known group that has none running, up to half the limit: a reserve
//      for groups that will have work any moment. Without it a slow receiver could take every
//      connection while the others are idle and keep them for its whole timeout_ms; with it a
//      healthy endpoint that gets an event finds a connection at once. A single busy group still
//      gets at least half the connections (all of them when it is the only known group).
// O(number of groups with work).
std::optional<std::int64_t> next_group_to_start(const std::map<std::int64_t, GroupLoad> &groups, std::size_t limit,
                                                std::size_t known_groups);

class Client final : public sink::Sink {
  public:
    explicit Client(const Options &options);
    ~Client() override;
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // New settings apply to requests submitted from now on (the connection cap at once).
    void set_options(const Options &options);
    // How many groups may submit requests (see next_group_to_start); 0: only those seen.
    void set_groups(std::size_t known_groups) override;

    // Starts a request, or queues it until a connection is free for it (its timeout starts
    // then). Throws std::runtime_error if libcurl cannot set it up (out of memory).
    void submit(Request request) override;

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
    // sink::Sink's names for the three above.
    const std::map<int, int> &wait_fds() const override { return sockets_; }
    bool wait_fds_changed() override { return changed(); }
    bool wait_fds_replaced() override { return fds_changed(); }
    // Milliseconds until on_timeout() is due; -1 when no timer is set.
    long timeout_ms() const override;

    void on_socket(int fd, int want_bits) override;
    void on_timeout() override;

    std::vector<Completion> take_completions() override;
    // Requests submitted and not completed: running() in libcurl plus queued() for a connection.
    std::size_t in_flight() const override { return transfers_; }
    std::size_t running() const { return active_.size(); }
    std::size_t queued() const { return transfers_ - active_.size(); }

    struct Transfer; // per-request state (public for libcurl's C callbacks)

  private:
    static int socket_callback(void *easy, int fd, int what, void *client, void *socketp) noexcept;
    static int timer_callback(void *multi, long timeout_ms, void *client) noexcept;
    void track_socket(int fd, int what);
    void drain_messages();
    void apply_multi_options();
    void start_waiting(); // hands waiting requests to libcurl while the budget allows
    void finish(void *easy, Transfer *t, Completion c); // frees a transfer, queues its completion
    std::size_t limit() const;

    Options options_;
    void *multi_ = nullptr;
    std::map<int, int> sockets_;
    bool changed_ = false;
    bool fds_changed_ = false;
    std::int64_t timer_deadline_us_ = -1; // steady clock
    std::size_t transfers_ = 0;
    std::set<void *> active_;          // easy handles of running transfers
    // Per group: the load, and the easy handles waiting for a connection, oldest first.
    std::map<std::int64_t, GroupLoad> load_;
    std::map<std::int64_t, std::deque<Transfer *>> waiting_;
    std::size_t known_groups_ = 0;
    std::uint64_t arrivals_ = 0;
    std::vector<void *> idle_handles_; // easy handles kept for reuse
    std::vector<Completion> done_;
};

} // namespace pg_sync::http
