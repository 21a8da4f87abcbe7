// The settings (pg_sync.*): definitions, with the defaults of settings.hpp; and the session
// settings every pg_sync worker process pins after connecting.
#include "pg/pg_prelude.hpp"

#include "core/validate.hpp"
#include "pg/settings.hpp"
#include "pg/workers.hpp"

#include <cstring>

namespace pg_sync::pg {

// Boot values: the same as the GUC defaults (DefineCustom*Variable overwrites them at once).
Settings settings = {defaults::kMaxWorkers,          defaults::kSweepIntervalMs,
                     defaults::kDatabaseCheckIntervalS, defaults::kAllowPrivateTargets,
                     nullptr /* http_proxy: the GUC machinery owns the string */,
                     defaults::kMaxConnections,      defaults::kCircuitFailureThreshold,
                     defaults::kRecentAttemptsSize,  defaults::kMaxWorkerMemoryKb,
                     defaults::kAckDelayMs,          defaults::kDebugPassPauseMs};

namespace {
int health_max_pending_age_ms = defaults::kHealthMaxPendingAgeMs; // read from SQL (pg_sync.health) through current_setting
double health_max_error_rate = defaults::kHealthMaxErrorRate;
bool internal_trigger_change = false; // read from SQL (the DDL event triggers) through current_setting

// pg_sync.traceparent: a W3C traceparent (core/validate), refused at SET time when malformed.
// The C++ check runs before any PostgreSQL call; its message is copied out first (guard.hpp).
bool check_traceparent(char **newval, void **, GucSource) {
    char message[200] = {0}, detail[200] = {0}, hint[300] = {0};
    bool ok = true;
    try {
        const validate::Problem p = validate::traceparent(*newval ? *newval : "");
        ok = p.ok();
        strlcpy(message, p.message.c_str(), sizeof message);
        strlcpy(detail, p.detail.c_str(), sizeof detail);
        strlcpy(hint, p.hint.c_str(), sizeof hint);
    } catch (...) {
        ok = false;
        strlcpy(message, "could not check the traceparent", sizeof message);
    }
    if (ok)
        return true;
    GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
    GUC_check_errmsg("%s", message);
    if (detail[0])
        GUC_check_errdetail("%s", detail);
    if (hint[0])
        GUC_check_errhint("%s", hint);
    return false;
}
} // namespace

void settings_init() {
    DefineCustomIntVariable("pg_sync.max_workers", "Maximum number of pg_sync delivery workers (one per database).",
                            "Each database with the extension needs one; they count against max_worker_processes.",
                            &settings.max_workers, defaults::kMaxWorkers, 0, 1024, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pg_sync.sweep_interval", "How often a delivery worker rescans its queue without being woken.",
                            "Commits wake the worker at once; the sweep finds what no commit announced "
                            "(COMMIT PREPARED) and retries that fall due.",
                            &settings.sweep_interval_ms, defaults::kSweepIntervalMs, 10, 3600000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr,
                            nullptr);
    DefineCustomIntVariable("pg_sync.database_check_interval",
                            "How often the launcher looks for databases that got the extension without "
                            "CREATE EXTENSION (CREATE DATABASE ... TEMPLATE, restored copies).",
                            "CREATE EXTENSION starts a database's worker at once; this check finds the databases "
                            "that got the extension another way and starts their workers.",
                            &settings.database_check_interval_s, defaults::kDatabaseCheckIntervalS, 1, 86400, PGC_SIGHUP, GUC_UNIT_S,
                            nullptr, nullptr, nullptr);
    DefineCustomBoolVariable("pg_sync.allow_private_targets",
                             "Whether webhooks may connect to loopback, private, link-local and other "
                             "non-public addresses.",
                             "Checked on the address actually connected to, after DNS resolution.",
                             &settings.allow_private_targets, defaults::kAllowPrivateTargets, PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("pg_sync.http_proxy", "Proxy for webhook requests (empty: none).",
                               "Proxy environment variables of the server are ignored.", &settings.http_proxy, defaults::kHttpProxy,
                               PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pg_sync.max_connections", "Maximum open HTTP connections per delivery worker.",
                            "Kept alive and shared fairly between endpoints (keep it at least twice the number of "
                            "endpoints); requests beyond it wait in the worker without their timeout running. Each "
                            "connection is a file descriptor of the worker: stay well below its open-files limit. "
                            "Kafka endpoints' broker connections are librdkafka's and not counted here.",
                            &settings.max_connections, defaults::kMaxConnections, 1, 1000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pg_sync.circuit_failure_threshold",
                            "Consecutive failed requests after which an endpoint's circuit opens (0: never).",
                            "While the circuit is open the endpoint gets no requests until its next attempt time "
                            "(pg_sync.endpoint_status.next_attempt_at); then one request probes it and a success "
                            "closes the circuit. Its events wait in the queue meanwhile.",
                            &settings.circuit_failure_threshold, defaults::kCircuitFailureThreshold, 0, 1000000, PGC_SIGHUP, 0, nullptr,
                            nullptr, nullptr);
    DefineCustomIntVariable("pg_sync.recent_attempts_size",
                            "How many recent HTTP attempts pg_sync.recent_attempts keeps per database (0: none).",
                            "A ring: older attempts are overwritten, the table never grows past this.",
                            &settings.recent_attempts_size, defaults::kRecentAttemptsSize, 0, 1000000, PGC_SIGHUP, 0, nullptr, nullptr,
                            nullptr);
    DefineCustomIntVariable("pg_sync.max_worker_memory",
                            "Event payloads a delivery worker reads into memory at most, over all endpoints.",
                            "Each endpoint's head of queue is read up to an equal share of it (at least one "
                            "event); request bodies are built from those events, so the worker's memory for "
                            "events stays within about twice this.",
                            &settings.max_worker_memory_kb, defaults::kMaxWorkerMemoryKb, 1024, INT_MAX / 2, PGC_SIGHUP, GUC_UNIT_KB,
                            nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pg_sync.queue_rotation_interval",
                            "How long one of the queue's three partitions takes new events before the next one does.",
                            "A partition that is no longer current is truncated once all of its events left, so "
                            "delivered events leave no dead tuples behind and the queue returns to its idle size "
                            "(docs/delivery.md, \"Queue rotation\"). Shorter: fewer dead tuples in the current "
                            "partition; longer: fewer truncations.",
                            &settings.queue_rotation_interval_ms, defaults::kQueueRotationIntervalMs, 100, 86400000,
                            PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pg_sync.ack_delay",
                            "How long a delivery worker may wait before it records the answers of finished requests.",
                            "The next requests go out at once; answers are committed in groups, one transaction per "
                            "group. After a crash, the events of requests answered within this time before it are "
                            "sent again. 0: every round of answers is committed before the next requests go out.",
                            &settings.ack_delay_ms, defaults::kAckDelayMs, 0, 60000, PGC_SIGHUP, GUC_UNIT_MS, nullptr,
                            nullptr, nullptr);
    // For tests only (superuser): makes a delivery pass wait between its read of an endpoint's
    // head of queue and its read of the dead letters, until the worker's latch is set or this
    // time has passed, so that a test can commit something in between (test/097).
    DefineCustomIntVariable("pg_sync.debug_pass_pause", "Internal: pause a delivery pass between its two queue reads.",
                            "For tests only: the pass waits between its read of an endpoint's head of queue and "
                            "its read of the dead letters until woken or this time passed. 0: no pause.",
                            &settings.debug_pass_pause_ms, defaults::kDebugPassPauseMs, 0, 60000, PGC_SUSET,
                            GUC_UNIT_MS | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE, nullptr, nullptr, nullptr);
    // Read by pg_sync.health(); any role may set them for its own checks.
    DefineCustomIntVariable("pg_sync.health_max_pending_age",
                            "pg_sync.health() reports an endpoint whose oldest pending event is older than this.",
                            "A warning \"lagging\" with the endpoint's pending count and state. Any role may set it "
                            "for its own checks (for example ALTER ROLE for a monitoring role).",
                            &health_max_pending_age_ms, defaults::kHealthMaxPendingAgeMs, 1, INT_MAX, PGC_USERSET, GUC_UNIT_MS, nullptr,
                            nullptr, nullptr);
    DefineCustomRealVariable("pg_sync.health_max_error_rate",
                             "pg_sync.health() reports an endpoint whose recent requests failed more often than this.",
                             "A fraction of the endpoint's requests in pg_sync.recent_attempts (at least 10 of them).",
                             &health_max_error_rate, defaults::kHealthMaxErrorRate, 0.0, 1.0, PGC_USERSET, 0, nullptr, nullptr, nullptr);
    // Set only by pg_sync._sync_triggers (its SET clause: for the duration of the call) while it
    // creates, drops or re-enables a capture trigger: the event triggers refuse such changes otherwise.
    // Superuser-only, so that a table owner cannot lift that refusal; never read from a file.
    DefineCustomBoolVariable("pg_sync.internal_trigger_change", "Internal: pg_sync is changing its own capture triggers.",
                             "Set only by pg_sync while it creates, drops or re-enables a capture trigger; the "
                             "DDL event triggers refuse such changes otherwise. Never set it by hand.",
                             &internal_trigger_change, false, PGC_SUSET,
                             GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE | GUC_DISALLOW_IN_AUTO_FILE |
                                 GUC_NO_RESET_ALL,
                             nullptr, nullptr, nullptr);
    // A writer's trace (SET LOCAL pg_sync.traceparent = '00-...'): stored with the events its
    // transaction captures or emits and sent as the traceparent header (docs/delivery.md).
    DefineCustomStringVariable("pg_sync.traceparent",
                               "W3C traceparent stored with the events captured or emitted while it is set.",
                               "Sent as the traceparent header of their delivery and per event in the body; empty: none.",
                               &settings.traceparent, "", PGC_USERSET, GUC_NOT_IN_SAMPLE, check_traceparent, nullptr,
                               nullptr);
    MarkGUCPrefixReserved("pg_sync");
}

void pin_worker_settings() {
    SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("role", "none", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
}

} // namespace pg_sync::pg
