// The delivery worker of one database: one wait loop over its latch and libcurl's sockets.
//
//   wait (latch | sockets | timer)  ->  HTTP progress  ->  completions
//   one short transaction ("pass"):  apply outcomes (delete delivered, schedule retries, move
//       dead letters, pause on 410), load each endpoint's head of queue, plan requests, record
//       status  ->  commit  ->  submit the planned requests
//
// Why this is safe:
//  * An event leaves the queue only in a pass that records a 2xx for the request that carried
//    it, and requests go out only after the pass that planned them committed. A crash at any
//    point leaves the events in the queue; the requests then in flight are sent again
//    (at-least-once; the webhook-id stays the same for the same events).
//  * Each pass reads the queue from its lowest id with a fresh snapshot, so a transaction that
//    commits late is seen by the next pass: no cursor can skip it.
//  * Wake-ups: a commit that queued events sets this worker's latch (launcher.cpp); a sweep every
//    pg_sync.sweep_interval catches what no commit announced (COMMIT PREPARED).
//
// Errors: this process installs no PostgreSQL error handler (PG_exception_stack is NULL), so an
// ERROR is promoted to FATAL and the process exits through proc_exit without unwinding any
// frame; no longjmp crosses the C++ objects below. The launcher starts a new worker. C++
// exceptions from the PostgreSQL-free layer are caught in pg_sync_worker_main.
extern "C" {
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
}

#include "core/dispatcher.hpp"
#include "core/signature.hpp"
#include "pg/workers.hpp"

#include <cstring>
#include <exception>
#include <optional>
#include <set>
#include <string>
#include <vector>

#ifndef PG_SYNC_VERSION
#define PG_SYNC_VERSION "dev"
#endif

namespace pg_sync::pg {
namespace {

constexpr int64 kUnixEpochShiftUs = 946684800000000LL; // 2000-01-01 minus 1970-01-01

int64 unix_ms(TimestampTz t) { return (t + kUnixEpochShiftUs) / 1000; }
TimestampTz from_unix_ms(int64 ms) { return ms * 1000 - kUnixEpochShiftUs; }

WorkerSlot *slot = nullptr;

void release_slot(int, Datum) {
    if (slot) {
        slot->pid = 0;
        slot->latch = nullptr;
    }
}

// --- SPI plans (kept across transactions) --------------------------------------------------------

enum PlanId {
    P_ENDPOINTS,
    P_HEAD,
    P_DEAD_HEAD,
    P_DELETE,
    P_RETRY,
    P_DEAD,
    P_GONE,
    P_STATE,
    P_RESET,
    P_COUNT
};

struct PlanDef {
    const char *sql;
    int nargs;
    Oid types[12];
};

const PlanDef plan_defs[P_COUNT] = {
    {"SELECT e.id, e.name, e.url, e.secret, e.batch_size, e.max_attempts, e.timeout_ms, e.max_in_flight,"
     "       e.retry_base_ms, e.retry_max_ms, e.paused,"
     "       (SELECT string_agg(h.key || ': ' || h.value, E'\\n' ORDER BY h.key)"
     "          FROM pg_catalog.jsonb_each_text(e.headers) h)"
     "  FROM pg_sync._endpoints e ORDER BY e.id",
     0,
     {}},
    {"SELECT id, op, tbl, key::text, new_row::text, old_row::text, emit_type, txid, captured_at, attempts,"
     "       next_attempt_at"
     "  FROM pg_sync._queue WHERE endpoint_id = $1 ORDER BY id LIMIT $2",
     2,
     {INT4OID, INT8OID}},
    {"SELECT id, op, tbl, key::text FROM pg_sync._dead_letters"
     " WHERE endpoint_id = $1 AND id < $2 ORDER BY id",
     2,
     {INT4OID, INT8OID}},
    {"DELETE FROM pg_sync._queue WHERE endpoint_id = $1 AND id = ANY ($2)", 2, {INT4OID, INT8ARRAYOID}},
    {"UPDATE pg_sync._queue SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4,"
     "       last_status = $5, first_attempt_at = coalesce(first_attempt_at, $6)"
     " WHERE endpoint_id = $1 AND id = ANY ($2)",
     6,
     {INT4OID, INT8ARRAYOID, TIMESTAMPTZOID, TEXTOID, INT4OID, TIMESTAMPTZOID}},
    {"WITH moved AS (DELETE FROM pg_sync._queue WHERE endpoint_id = $1 AND id = ANY ($2) RETURNING *)"
     " INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid,"
     "        captured_at, attempts, last_status, last_error, first_attempt_at, dead_at)"
     " SELECT id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at, attempts + 1,"
     "        $3, $4, coalesce(first_attempt_at, $5), now() FROM moved",
     5,
     {INT4OID, INT8ARRAYOID, INT4OID, TEXTOID, TIMESTAMPTZOID}},
    {"UPDATE pg_sync._endpoints SET paused = true, paused_reason = $2 WHERE id = $1 AND NOT paused",
     2,
     {INT4OID, TEXTOID}},
    {"INSERT INTO pg_sync._endpoint_state AS s (endpoint_id, delivered_total, failed_attempts_total,"
     "        last_success_at, last_failure_at, last_error, last_status, in_flight, consecutive_failures,"
     "        circuit, next_attempt_at, updated_at)"
     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())"
     " ON CONFLICT (endpoint_id) DO UPDATE SET"
     "   delivered_total = s.delivered_total + excluded.delivered_total,"
     "   failed_attempts_total = s.failed_attempts_total + excluded.failed_attempts_total,"
     "   last_success_at = coalesce(excluded.last_success_at, s.last_success_at),"
     "   last_failure_at = coalesce(excluded.last_failure_at, s.last_failure_at),"
     "   last_error = coalesce(excluded.last_error, s.last_error),"
     "   last_status = coalesce(excluded.last_status, s.last_status),"
     "   in_flight = excluded.in_flight, consecutive_failures = excluded.consecutive_failures,"
     "   circuit = excluded.circuit, next_attempt_at = excluded.next_attempt_at, updated_at = now()",
     11,
     {INT4OID, INT8OID, INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, INT4OID, INT4OID, INT4OID, TEXTOID,
      TIMESTAMPTZOID}},
    // At start: nothing is in flight, the circuit starts closed; state of dropped endpoints goes.
    {"WITH gone AS (DELETE FROM pg_sync._endpoint_state s"
     "               WHERE NOT EXISTS (SELECT FROM pg_sync._endpoints e WHERE e.id = s.endpoint_id))"
     " UPDATE pg_sync._endpoint_state SET in_flight = 0, circuit = 'closed', next_attempt_at = NULL",
     0,
     {}},
};

SPIPlanPtr plans[P_COUNT];

SPIPlanPtr plan(PlanId id) {
    if (!plans[id]) {
        SPIPlanPtr p = SPI_prepare(plan_defs[id].sql, plan_defs[id].nargs, const_cast<Oid *>(plan_defs[id].types));
        if (!p)
            elog(ERROR, "pg_sync: SPI_prepare failed for query %d: %s", int(id), SPI_result_code_string(SPI_result));
        SPI_keepplan(p);
        plans[id] = p;
    }
    return plans[id];
}

void run(PlanId id, Datum *values, const char *nulls, int expect) {
    int rc = SPI_execute_plan(plan(id), values, nulls, false, 0);
    if (rc != expect)
        elog(ERROR, "pg_sync: query %d failed: %s", int(id), SPI_result_code_string(rc));
}

Datum int8_array(const std::vector<std::int64_t> &ids) {
    Datum *elems = static_cast<Datum *>(palloc(sizeof(Datum) * (ids.size() + 1)));
    for (std::size_t i = 0; i < ids.size(); ++i)
        elems[i] = Int64GetDatum(ids[i]);
    return PointerGetDatum(construct_array(elems, int(ids.size()), INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

Datum text_datum(const std::string &s) { return PointerGetDatum(cstring_to_text_with_len(s.data(), int(s.size()))); }

// --- reading SPI rows ----------------------------------------------------------------------------

std::optional<std::string> get_text(HeapTuple tup, int col) {
    bool isnull = false;
    Datum d = SPI_getbinval(tup, SPI_tuptable->tupdesc, col, &isnull);
    if (isnull)
        return std::nullopt;
    text *t = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(d)));
    return std::string(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

template <typename T> T get_value(HeapTuple tup, int col, T (*conv)(Datum), T if_null) {
    bool isnull = false;
    Datum d = SPI_getbinval(tup, SPI_tuptable->tupdesc, col, &isnull);
    return isnull ? if_null : conv(d);
}
int32 as_int32(Datum d) { return DatumGetInt32(d); }
int64 as_int64(Datum d) { return DatumGetInt64(d); }
uint64 as_uint64(Datum d) { return DatumGetUInt64(d); }
bool as_bool(Datum d) { return DatumGetBool(d); }

// --- the worker's state (lives as long as the process) -------------------------------------------

struct Worker {
    dispatch::Dispatcher dispatcher;
    http::Client client;
    std::vector<dispatch::Outcome> outcomes; // completed requests not yet recorded
    std::set<std::int32_t> touched;          // endpoints with completions since the last pass
    std::vector<http::Request> to_send;      // planned in the pass, sent after its commit
    uint32 config_generation = 0;
    bool configured = false;

    Worker(std::string scope, std::uint64_t seed)
        : dispatcher(std::move(scope), seed, settings.circuit_failure_threshold), client(http_options()) {}

    static http::Options http_options() {
        http::Options o;
        o.allow_private_targets = settings.allow_private_targets;
        o.proxy = settings.http_proxy ? settings.http_proxy : "";
        o.max_connections = settings.max_connections;
        o.user_agent = "pg_sync/" PG_SYNC_VERSION;
        return o;
    }
};

Worker *worker = nullptr;

void load_endpoints() {
    run(P_ENDPOINTS, nullptr, nullptr, SPI_OK_SELECT);
    std::vector<dispatch::EndpointConfig> eps;
    for (uint64 r = 0; r < SPI_processed; ++r) {
        HeapTuple t = SPI_tuptable->vals[r];
        dispatch::EndpointConfig c;
        c.id = get_value(t, 1, as_int32, 0);
        c.name = get_text(t, 2).value_or("");
        c.url = get_text(t, 3).value_or("");
        if (std::optional<std::string> secret = get_text(t, 4))
            c.key = signature::decode_secret(*secret);
        c.batch_size = std::size_t(get_value(t, 5, as_int32, 1));
        c.policy.max_attempts = get_value(t, 6, as_int32, 1);
        c.timeout_ms = get_value(t, 7, as_int32, 10000);
        c.max_in_flight = std::size_t(get_value(t, 8, as_int32, 1));
        c.policy.base_ms = std::uint64_t(get_value(t, 9, as_int32, 1000));
        c.policy.max_ms = std::uint64_t(get_value(t, 10, as_int32, 3600000));
        c.paused = get_value(t, 11, as_bool, false);
        if (std::optional<std::string> lines = get_text(t, 12)) {
            std::size_t start = 0;
            while (start <= lines->size()) {
                std::size_t nl = lines->find('\n', start);
                if (nl == std::string::npos)
                    nl = lines->size();
                if (nl > start)
                    c.header_lines.push_back(lines->substr(start, nl - start));
                start = nl + 1;
            }
        }
        eps.push_back(std::move(c));
    }
    worker->dispatcher.configure(std::move(eps));
}

void record_outcome(const dispatch::Outcome &o, TimestampTz now) {
    const TimestampTz started = from_unix_ms(o.started_ms);
    if (!o.delivered.empty()) {
        Datum v[2] = {Int32GetDatum(o.endpoint_id), int8_array(o.delivered)};
        run(P_DELETE, v, nullptr, SPI_OK_DELETE);
    }
    if (!o.retry.empty()) {
        Datum v[6] = {Int32GetDatum(o.endpoint_id), int8_array(o.retry),
                      TimestampTzGetDatum(TimestampTzPlusMilliseconds(now, int64(o.delay_ms))), text_datum(o.reason),
                      Int32GetDatum(o.status), TimestampTzGetDatum(started)};
        char nulls[7] = "      ";
        if (o.status == 0)
            nulls[4] = 'n';
        run(P_RETRY, v, nulls, SPI_OK_UPDATE);
    }
    if (!o.dead.empty()) {
        Datum v[5] = {Int32GetDatum(o.endpoint_id), int8_array(o.dead), Int32GetDatum(o.status), text_datum(o.reason),
                      TimestampTzGetDatum(started)};
        char nulls[6] = "     ";
        if (o.status == 0)
            nulls[2] = 'n';
        run(P_DEAD, v, nulls, SPI_OK_INSERT);
    }
    if (o.verdict == retry::Verdict::Gone) {
        Datum v[2] = {Int32GetDatum(o.endpoint_id), text_datum(o.reason)};
        run(P_GONE, v, nullptr, SPI_OK_UPDATE);
        ereport(LOG, (errmsg("pg_sync: endpoint %d paused: %s", o.endpoint_id, o.reason.c_str())));
    }
}

dispatch::QueuedEvent head_row(HeapTuple t) {
    dispatch::QueuedEvent q;
    q.id = get_value(t, 1, as_int64, int64(0));
    q.op = get_text(t, 2).value_or("");
    q.table = get_text(t, 3);
    q.key = get_text(t, 4);
    q.new_row = get_text(t, 5);
    q.old_row = get_text(t, 6);
    q.type = get_text(t, 7);
    q.txid = get_value(t, 8, as_uint64, uint64(0));
    q.captured_at_us = get_value(t, 9, as_int64, int64(0)) + kUnixEpochShiftUs;
    q.attempts = get_value(t, 10, as_int32, 0);
    const int64 next = get_value(t, 11, as_int64, int64(PG_INT64_MIN));
    q.next_attempt_ms = next == PG_INT64_MIN ? 0 : unix_ms(next);
    return q;
}

void plan_endpoint(std::int32_t id, int64 now_ms) {
    const dispatch::EndpointConfig *c = worker->dispatcher.endpoint(id);
    if (!c || c->paused)
        return;
    Datum v[2] = {Int32GetDatum(id), Int64GetDatum(int64(worker->dispatcher.window(id)))};
    run(P_HEAD, v, nullptr, SPI_OK_SELECT);
    std::vector<dispatch::QueuedEvent> head;
    head.reserve(SPI_processed);
    for (uint64 r = 0; r < SPI_processed; ++r)
        head.push_back(head_row(SPI_tuptable->vals[r]));
    SPI_freetuptable(SPI_tuptable);
    if (head.empty())
        return;
    // Dead letters inside this id range keep their keys blocked (DESIGN.md, Guarantee 3).
    Datum dv[2] = {Int32GetDatum(id), Int64GetDatum(head.back().id)};
    run(P_DEAD_HEAD, dv, nullptr, SPI_OK_SELECT);
    if (SPI_processed > 0) {
        std::vector<dispatch::QueuedEvent> merged;
        merged.reserve(head.size() + SPI_processed);
        std::size_t h = 0;
        for (uint64 r = 0; r < SPI_processed; ++r) {
            HeapTuple t = SPI_tuptable->vals[r];
            dispatch::QueuedEvent d;
            d.id = get_value(t, 1, as_int64, int64(0));
            d.op = get_text(t, 2).value_or("");
            d.table = get_text(t, 3);
            d.key = get_text(t, 4);
            d.dead = true;
            while (h < head.size() && head[h].id < d.id)
                merged.push_back(std::move(head[h++]));
            if (h < head.size() && head[h].id == d.id)
                continue; // redelivered and dead again in between: the queue row wins
            merged.push_back(std::move(d));
        }
        while (h < head.size())
            merged.push_back(std::move(head[h++]));
        head.swap(merged);
    }
    std::vector<http::Request> requests = worker->dispatcher.plan(id, head, now_ms);
    for (http::Request &r : requests)
        worker->to_send.push_back(std::move(r));
}

void write_stats(int64 now_ms) {
    for (const dispatch::EndpointStats &st : worker->dispatcher.take_stats(now_ms)) {
        Datum v[11];
        char nulls[12] = "           ";
        v[0] = Int32GetDatum(st.endpoint_id);
        v[1] = Int64GetDatum(st.delivered);
        v[2] = Int64GetDatum(st.failed_attempts);
        v[3] = st.last_success_ms ? TimestampTzGetDatum(from_unix_ms(*st.last_success_ms)) : (nulls[3] = 'n', 0);
        v[4] = st.last_failure_ms ? TimestampTzGetDatum(from_unix_ms(*st.last_failure_ms)) : (nulls[4] = 'n', 0);
        v[5] = st.last_error ? text_datum(*st.last_error) : (nulls[5] = 'n', 0);
        v[6] = st.last_status ? Int32GetDatum(st.last_status) : (nulls[6] = 'n', 0);
        v[7] = Int32GetDatum(int32(st.in_flight_events));
        v[8] = Int32GetDatum(st.consecutive_failures);
        v[9] = CStringGetTextDatum(retry::state_name(st.circuit));
        v[10] = st.next_attempt_ms > 0 ? TimestampTzGetDatum(from_unix_ms(st.next_attempt_ms)) : (nulls[10] = 'n', 0);
        run(P_STATE, v, nulls, SPI_OK_INSERT);
    }
}

// One transaction: record outcomes, (re)load configuration, plan. full: look at every endpoint
// (woken by a commit, a sweep, a retry falling due); otherwise only those with completions.
void pass(bool full, bool first) {
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "pg_sync: SPI_connect failed");
    PushActiveSnapshot(GetTransactionSnapshot());
    pgstat_report_activity(STATE_RUNNING, "pg_sync delivery pass");

    if (!OidIsValid(get_extension_oid("pg_sync", true))) {
        // DROP EXTENSION: nothing left to deliver here. The launcher will not restart us.
        ereport(LOG, (errmsg("pg_sync: extension dropped in database \"%s\", worker exiting",
                             get_database_name(MyDatabaseId))));
        PopActiveSnapshot();
        SPI_finish();
        CommitTransactionCommand();
        slot->no_extension = true;
        proc_exit(0);
    }
    if (first)
        run(P_RESET, nullptr, nullptr, SPI_OK_UPDATE);

    const uint32 generation = slot->config_generation;
    if (!worker->configured || generation != worker->config_generation) {
        worker->config_generation = generation;
        load_endpoints();
        worker->configured = true;
        full = true;
    }
    const TimestampTz now = GetCurrentTimestamp();
    for (const dispatch::Outcome &o : worker->outcomes)
        record_outcome(o, now);
    worker->outcomes.clear();

    const int64 now_ms = unix_ms(now);
    if (full) {
        for (std::int32_t id : worker->dispatcher.endpoint_ids())
            plan_endpoint(id, now_ms);
    } else {
        for (std::int32_t id : worker->touched)
            plan_endpoint(id, now_ms);
    }
    worker->touched.clear();
    write_stats(now_ms);

    PopActiveSnapshot();
    SPI_finish();
    CommitTransactionCommand();
    pgstat_report_activity(STATE_IDLE, nullptr);
    pgstat_report_stat(false);
}

void collect_completions() {
    std::vector<http::Completion> done = worker->client.take_completions();
    if (done.empty())
        return;
    const int64 now_ms = unix_ms(GetCurrentTimestamp());
    for (const http::Completion &c : done) {
        std::optional<dispatch::Outcome> o = worker->dispatcher.complete(c, now_ms);
        if (!o)
            continue;
        worker->touched.insert(o->endpoint_id);
        worker->outcomes.push_back(std::move(*o));
    }
}

WaitEventSet *build_wait_set() {
    const auto &sockets = worker->client.sockets();
    WaitEventSet *set = CreateWaitEventSet(TopMemoryContext, int(sockets.size()) + 2);
    AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
    AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
    for (const auto &kv : sockets) {
        uint32 events = 0;
        if (kv.second & http::kWantRead)
            events |= WL_SOCKET_READABLE;
        if (kv.second & http::kWantWrite)
            events |= WL_SOCKET_WRITEABLE;
        if (events)
            AddWaitEventToSet(set, events, kv.first, nullptr, nullptr);
    }
    return set;
}

void run_loop() {
    WaitEventSet *wait_set = nullptr;
    WaitEvent occurred[64];
    bool woken = true, first = true;
    TimestampTz next_sweep = 0;
    for (;;) {
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
            worker->client.set_options(Worker::http_options());
        }
        collect_completions();
        TimestampTz now = GetCurrentTimestamp();
        const int64 due = worker->dispatcher.next_due_ms();
        const bool retry_due = due >= 0 && due <= unix_ms(now);
        const bool sweep = now >= next_sweep;
        const bool config = worker->configured && slot->config_generation != worker->config_generation;
        if (woken || sweep || retry_due || config || !worker->outcomes.empty()) {
            pass(woken || sweep || retry_due || config || first, first);
            first = false;
            woken = false;
            if (sweep)
                next_sweep = TimestampTzPlusMilliseconds(now, settings.sweep_interval_ms);
            for (http::Request &r : worker->to_send)
                worker->client.submit(std::move(r));
            worker->to_send.clear();
            set_worker_state(slot, worker->dispatcher.in_flight_requests() ? "delivering" : "idle");
        }

        long timeout = long((next_sweep - GetCurrentTimestamp()) / 1000);
        const int64 due_now = worker->dispatcher.next_due_ms();
        if (due_now >= 0)
            timeout = Min(timeout, long(due_now - unix_ms(GetCurrentTimestamp())));
        const long curl_timeout = worker->client.timeout_ms();
        if (curl_timeout >= 0)
            timeout = Min(timeout, curl_timeout);
        if (timeout <= 0) {
            if (curl_timeout == 0)
                worker->client.on_timeout();
            if (timeout < 0 || curl_timeout == 0)
                continue;
        }
        if (!wait_set || worker->client.changed()) {
            if (wait_set)
                FreeWaitEventSet(wait_set);
            wait_set = build_wait_set();
        }
        const int n = WaitEventSetWait(wait_set, timeout, occurred, lengthof(occurred), PG_WAIT_EXTENSION);
        for (int i = 0; i < n; ++i) {
            const WaitEvent &ev = occurred[i];
            if (ev.events & WL_LATCH_SET) {
                ResetLatch(MyLatch);
                woken = true;
                continue;
            }
            int want = 0;
            if (ev.events & WL_SOCKET_READABLE)
                want |= http::kWantRead;
            if (ev.events & WL_SOCKET_WRITEABLE)
                want |= http::kWantWrite;
            if (want)
                worker->client.on_socket(ev.fd, want);
        }
        if (n == 0 && worker->client.timeout_ms() == 0)
            worker->client.on_timeout();
    }
}

} // namespace
} // namespace pg_sync::pg

using namespace pg_sync::pg;

extern "C" void pg_sync_worker_main(Datum arg) {
    const Oid dboid = DatumGetObjectId(arg);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    // See the header comment: errors end this process without unwinding C++ frames.
    PG_exception_stack = nullptr;

    slot = claim_slot(dboid);
    if (!slot)
        proc_exit(0); // another worker serves this database, or no free slot
    before_shmem_exit(release_slot, 0);

    BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
    pgstat_report_appname("pg_sync worker");

    StartTransactionCommand();
    const bool installed = OidIsValid(get_extension_oid("pg_sync", true));
    if (installed)
        ereport(LOG, (errmsg("pg_sync: delivery worker started for database \"%s\"", get_database_name(dboid))));
    CommitTransactionCommand();
    if (!installed) {
        slot->no_extension = true;
        proc_exit(0);
    }

    char failure[256] = {0};
    try {
        const std::string scope = std::to_string(GetSystemIdentifier()) + "/" + std::to_string(dboid);
        worker = new Worker(scope, std::uint64_t(MyProcPid) ^ std::uint64_t(GetCurrentTimestamp()));
        run_loop();
    } catch (const std::exception &e) {
        snprintf(failure, sizeof failure, "%s", e.what());
    } catch (...) {
        snprintf(failure, sizeof failure, "unknown C++ exception");
    }
    ereport(FATAL, (errmsg("pg_sync delivery worker failed: %s", failure)));
}
