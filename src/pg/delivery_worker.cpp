// The delivery worker of one database: the process's entry point. It claims its slot, connects,
// builds the transport (HTTP over libcurl, core/http_client.hpp, and Kafka over librdkafka,
// core/kafka_sink.hpp, behind core/sink_router.hpp) and the worker's state (delivery.hpp), and
// runs the loop (delivery_loop.cpp), which runs the passes (delivery_pass.cpp) over the queue
// store (queue_store.cpp).
//
// Errors: this process installs no PostgreSQL error handler (PG_exception_stack is NULL), so an
// ERROR outside a pass is promoted to FATAL and the process exits through proc_exit without
// unwinding any frame; the launcher starts a new worker. Inside a pass every PostgreSQL call goes
// through postgres_call (guard.hpp), where PG_TRY catches the ERROR and the worker carries on.
// C++ exceptions from the PostgreSQL-free layer are caught here and end the process.
#include "pg/pg_prelude.hpp"

#include "core/http_client.hpp"
#include "core/kafka_sink.hpp"
#include "core/oauth2_sink.hpp"
#include "core/sink_router.hpp"
#include "pg/delivery.hpp"
#include "pg/workers.hpp"

#include <cstdio>
#include <exception>
#include <string>

#ifndef PG_SYNC_VERSION
#define PG_SYNC_VERSION "dev"
#endif

namespace pg_sync::pg {
namespace {

WorkerSlot *slot = nullptr;
http::Client *http_client = nullptr;
kafka::Sink *kafka_sink = nullptr;

void release_slot(int, Datum) {
    if (slot) {
        slot->pid = 0;
        slot->latch = nullptr;
    }
}

http::Options http_options() {
    http::Options o;
    o.allow_private_targets = settings.allow_private_targets;
    o.proxy = settings.http_proxy ? settings.http_proxy : "";
    o.max_connections = settings.max_connections;
    o.user_agent = "pg_sync/" PG_SYNC_VERSION;
    return o;
}

kafka::Options kafka_options() {
    kafka::Options o;
    o.allow_private_targets = settings.allow_private_targets;
    o.client_id = "pg_sync/" PG_SYNC_VERSION;
    return o;
}

// SIGHUP: settings the transport and the dispatcher hold.
void settings_reloaded(DeliveryWorker &w) {
    http_client->set_options(http_options());
    kafka_sink->set_options(kafka_options());
    w.dispatcher.set_failure_threshold(settings.circuit_failure_threshold);
}

} // namespace
} // namespace pg_sync::pg

using namespace pg_sync::pg;

extern "C" void pg_sync_worker_main(Datum arg) {
    const Oid dboid = DatumGetObjectId(arg);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    // See the header comment: errors outside a pass end this process without unwinding C++ frames.
    PG_exception_stack = nullptr;

    slot = claim_slot(dboid);
    if (!slot)
        proc_exit(0); // another worker serves this database, or no free slot
    before_shmem_exit(release_slot, 0);

    BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
    pgstat_report_appname("pg_sync worker");
    // Plans: the queue store chooses per statement (generic for the reads, made afresh for the
    // writes by id: queue_store.cpp), which a plan_cache_mode set by a DBA must not override.
    SetConfigOption("plan_cache_mode", "auto", PGC_SUSET, PGC_S_OVERRIDE);
    pin_worker_settings();
    // Every query of the worker is an index scan on a primary key. Its generic plans are re-made
    // when the queue's statistics change; after vacuum truncated an empty queue to 0 pages the
    // planner picked a sequential scan plus sort for the head query, which then read the whole
    // table per pass through the next backlog (bench/growth measured 61-427 events/s for up to
    // 50 s instead of ~15,000) until the next autoanalyze.
    SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
    // With sequential scans priced out, the rare statement that has no other plan looks so costly
    // that JIT compiled it every time (466 ms seen at worker start).
    SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);

    StartTransactionCommand();
    const Oid extension_oid = get_extension_oid("pg_sync", true);
    const bool installed = OidIsValid(extension_oid);
    // The database's name, for the source of CloudEvents (a database is not renamed while
    // connected to).
    char database[NAMEDATALEN] = {0};
    if (const char *name = get_database_name(dboid))
        strlcpy(database, name, sizeof database);
    if (installed)
        ereport(LOG, (errmsg("pg_sync: delivery worker started for database \"%s\"", database)));
    CommitTransactionCommand();
    if (!installed) {
        slot->no_extension = true;
        proc_exit(0);
    }

    char failure[256] = {0};
    try {
        const std::string scope = std::to_string(GetSystemIdentifier()) + "/" + std::to_string(dboid);
        // All live as long as the process (proc_exit does not unwind this frame). The Kafka
        // sink starts librdkafka only when a kafka:// endpoint has something to send.
        http_client = new pg_sync::http::Client(http_options());
        kafka_sink = new pg_sync::kafka::Sink(kafka_options());
        // OAuth2 tokens are fetched through the HTTP client, in front of it (core/oauth2_sink.hpp).
        auto *oauth2_sink = new pg_sync::oauth2::Sink(*http_client);
        auto *transport = new pg_sync::sink::Router(*oauth2_sink, *kafka_sink);
        DeliveryWorker *worker =
            new DeliveryWorker(scope, std::uint64_t(MyProcPid) ^ std::uint64_t(GetCurrentTimestamp()),
                               settings.circuit_failure_threshold, *transport);
        worker->dispatcher.set_database(database);
        run_delivery_loop(*worker, slot, extension_oid, settings_reloaded);
    } catch (const std::exception &e) {
        snprintf(failure, sizeof failure, "%s", e.what());
    } catch (...) {
        snprintf(failure, sizeof failure, "unknown C++ exception");
    }
    ereport(FATAL, (errmsg("pg_sync delivery worker failed: %s", failure)));
}
