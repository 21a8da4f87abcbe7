// Settings (pg_sync.*): their current values and their defaults. settings.cpp defines them
// (settings_init(), from _PG_init); every other file reads `settings` and never repeats a
// default: the constants below are the only place a default is written (or, where src/core has
// the default of the same knob, they name core's constant).
#pragma once

#include "core/http_client.hpp"
#include "core/retry_policy.hpp"

namespace pg_sync::pg {

namespace defaults {
constexpr int kMaxWorkers = 8;
constexpr int kSweepIntervalMs = 1000;
constexpr int kDatabaseCheckIntervalS = 60;
constexpr bool kAllowPrivateTargets = http::kDefaultAllowPrivateTargets;
constexpr const char *kHttpProxy = "";
constexpr int kMaxConnections = int(http::kDefaultMaxConnections);
constexpr int kCircuitFailureThreshold = retry::kDefaultFailureThreshold; // the circuit breaker's own default
constexpr int kRecentAttemptsSize = 1000;
constexpr int kMaxWorkerMemoryKb = 128 * 1024;
constexpr int kAckDelayMs = 10;
constexpr int kDebugPassPauseMs = 0;
constexpr int kQueueRotationIntervalMs = 10000;
constexpr int kHealthMaxPendingAgeMs = 300000;
constexpr double kHealthMaxErrorRate = 0.2;
} // namespace defaults

struct Settings {
    int max_workers;               // postmaster: delivery workers (shared memory slots)
    int sweep_interval_ms;         // sighup: worker rescans the queue at least this often
    int database_check_interval_s; // sighup: launcher looks for new databases this often
    bool allow_private_targets;    // superuser
    char *http_proxy;              // sighup
    int max_connections;           // sighup: sockets per worker
    int circuit_failure_threshold; // sighup
    int recent_attempts_size;      // sighup: rows kept in pg_sync.recent_attempts
    int max_worker_memory_kb;      // sighup: event payloads a delivery worker reads into memory
    int ack_delay_ms;              // sighup: how long a 2xx may wait to be recorded (a crash resends its events)
    int debug_pass_pause_ms;       // superuser, tests only: pause between a pass's two queue reads
    int queue_rotation_interval_ms; // sighup: how long a queue partition stays current
    char *traceparent;             // user: the writer's W3C traceparent ("" : none); the GUC owns it
};
extern Settings settings;

// Defines every pg_sync.* setting. Called from _PG_init.
void settings_init();

} // namespace pg_sync::pg
