// The delivery worker's process-lifetime state and the calls between its parts. Included after
// postgres.h.
//
//   delivery_worker.cpp  entry point: connects, builds the state below and the transport, runs
//                        the loop; settings (SIGHUP) -> transport options
//   delivery_loop.cpp    waits on latch | transport fds | timer, drives the transport
//                        (sink::Sink), turns completions into outcomes, sends the next requests
//                        from the cached heads (plan_pipelined), decides when a pass runs and when
//                        a failed one is tried again (core/worker_policy.hpp)
//   delivery_pass.cpp    one transaction: outcomes -> queue, configuration, heads of queue
//                        (core/head_cache.hpp) -> planned requests (core/dispatcher.hpp);
//                        reaches PostgreSQL only through postgres_call (guard.hpp) and the
//                        queue store
//   delivery_rotation.cpp  queue rotation in a pass (core/queue_rotation.hpp decides)
//   queue_store.cpp      the SQL: typed C-style functions over prepared plans
//   queue_rotation.cpp   the SQL of queue rotation
//
// Calls go downwards: worker -> loop -> pass -> queue store -> SPI; loop and pass -> core.
#pragma once

#include "core/dispatcher.hpp"
#include "core/head_cache.hpp"
#include "core/queue_rotation.hpp"
#include "core/sink.hpp"
#include "core/worker_policy.hpp"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace pg_sync::pg {

struct WorkerSlot;

struct DeliveryWorker {
    dispatch::Dispatcher dispatcher;
    sink::Sink &transport;
    std::vector<dispatch::Outcome> outcomes; // completed requests not yet recorded (kept until a pass commits them)
    worker::AckGroup acks;                   // when `outcomes` must be recorded (pg_sync.ack_delay)
    std::set<std::int32_t> touched;          // endpoints with completions since the last pass
    std::set<std::int32_t> replan;           // endpoints with completions since they were last planned
    dispatch::HeadCache heads;
    std::vector<sink::Request> to_send; // planned, not yet submitted
    std::uint32_t config_generation = 0;
    bool configured = false;
    TimestampTz next_backfill_check = 0;
    worker::StatsThrottle stats;
    worker::AttemptRing attempts;
    worker::PassRetry pass_retry;
    rotation::Rotation rotation;     // queue rotation (delivery_rotation.cpp)
    bool rotation_loaded = false;    // false: read pg_sync._queue_rotation in the next pass
    int published_part = -1;         // the current partition as last published in shared memory
    std::int64_t rotation_carried = 0; // events moved between partitions (queue_rotation_interval)

    DeliveryWorker(std::string scope, std::uint64_t seed, int failure_threshold, sink::Sink &sink)
        : dispatcher(std::move(scope), seed, failure_threshold), transport(sink) {}
};

// What the loop asks of a pass.
struct PassRequest {
    bool all_endpoints;  // plan every endpoint (a commit, a sweep, a due retry, a configuration
                         // change woke it); otherwise only those with completions
    bool worker_started; // the first pass of this process: reset what the last one left
    bool reread;         // read every endpoint's queue again, whatever its cached head holds (a
                         // sweep, a due retry, a configuration change, the first pass, a pass
                         // after a failed one); a commit alone may leave a cache that still fills
                         // the free request slots in place (core/head_cache.hpp, Wake::Commits)
};

// Runs one pass. On a PostgreSQL ERROR the transaction has been aborted (guard.hpp), the
// worker's in-memory state is put back as if the pass had not run (outcomes kept for the next
// one, planned requests abandoned) and the error is copied into *error; returns false.
bool run_pass(DeliveryWorker &w, WorkerSlot *slot, Oid extension_oid, const PassRequest &request,
              struct ErrorReport *error);

// Queue rotation, inside a pass (delivery_rotation.cpp).
void rotate_queue(DeliveryWorker &w, std::int64_t now_ms);

// Pipelining (no transaction): the endpoints with answers since they were last planned plan
// from their cached heads and the requests go out at once. Returns whether an endpoint needs a
// read of its queue (a pass) to plan more.
bool plan_pipelined(DeliveryWorker &w, std::int64_t now_ms);

// Hooks of the loop into the process (delivery_worker.cpp): settings were reloaded (SIGHUP).
using SettingsReloaded = void (*)(DeliveryWorker &w);

// The worker's loop; returns never.
[[noreturn]] void run_delivery_loop(DeliveryWorker &w, WorkerSlot *slot, Oid extension_oid,
                                    SettingsReloaded on_reload);

// Time conversions: PostgreSQL's TimestampTz (us since 2000) <-> unix ms.
inline constexpr std::int64_t kUnixEpochShiftUs = 946684800000000LL; // 2000-01-01 minus 1970-01-01
inline std::int64_t unix_ms(TimestampTz t) { return (t + kUnixEpochShiftUs) / 1000; }
inline TimestampTz from_unix_ms(std::int64_t ms) { return ms * 1000 - kUnixEpochShiftUs; }

} // namespace pg_sync::pg
