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
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "storage/lmgr.h"
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
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
}

#include "core/dispatcher.hpp"
#include "core/payload_gate.hpp"
#include "core/signature.hpp"
#include "pg/workers.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
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
constexpr int64 kStatsIntervalMs = 200;
constexpr int kBackfillCheckMs = 5000; // how often the worker looks for running backfills anyway

int64 unix_ms(TimestampTz t) { return (t + kUnixEpochShiftUs) / 1000; }
TimestampTz from_unix_ms(int64 ms) { return ms * 1000 - kUnixEpochShiftUs; }

WorkerSlot *slot = nullptr;
Oid extension_oid = InvalidOid;

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
    P_ATTEMPTS,
    P_ATTEMPTS_TRIM,
    P_ATTEMPTS_NEXT,
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
    // The first dead letter of each key (and each dead truncate) is enough to block what follows.
    {"SELECT DISTINCT ON (op = 'truncate', tbl, key::text) id, op, tbl, key::text FROM pg_sync._dead_letters"
     " WHERE endpoint_id = $1 AND id < $2 ORDER BY op = 'truncate', tbl, key::text, id",
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
     "   last_status = CASE WHEN excluded.last_error IS NULL THEN s.last_status ELSE excluded.last_status END,"
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
    {"INSERT INTO pg_sync._attempts AS a (slot, endpoint_id, started_at, finished_at, events, status, error, lag_ms)"
     " SELECT * FROM unnest($1::int4[], $2::int4[], $3::timestamptz[], $4::timestamptz[], $5::int4[], $6::int4[],"
     "                      $7::text[], $8::float8[])"
     " ON CONFLICT (slot) DO UPDATE SET endpoint_id = excluded.endpoint_id, started_at = excluded.started_at,"
     "   finished_at = excluded.finished_at, events = excluded.events, status = excluded.status,"
     "   error = excluded.error, lag_ms = excluded.lag_ms",
     8,
     {INT4ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
      TEXTARRAYOID, FLOAT8ARRAYOID}},
    {"DELETE FROM pg_sync._attempts WHERE slot >= $1", 1, {INT4OID}},
    // Where the ring continues after a restart: after the newest row.
    {"SELECT coalesce((SELECT slot FROM pg_sync._attempts ORDER BY finished_at DESC, slot DESC LIMIT 1) + 1, 0)",
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

// A read under the active snapshot (read_only: SPI takes no new snapshot), so that several reads
// see one state of the database.
void run_read(PlanId id, Datum *values, const char *nulls) {
    int rc = SPI_execute_plan(plan(id), values, nulls, true, 0);
    if (rc != SPI_OK_SELECT)
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

// One result row, deformed once (reading column by column would walk the tuple from the start
// for every column after the first variable-length one).
struct Row {
    Datum values[16];
    bool nulls[16];
    explicit Row(HeapTuple tup) {
        if (SPI_tuptable->tupdesc->natts > int(lengthof(values)))
            elog(ERROR, "pg_sync: unexpected result shape");
        heap_deform_tuple(tup, SPI_tuptable->tupdesc, values, nulls);
    }

    std::optional<std::string> text(int col) const {
        if (nulls[col - 1])
            return std::nullopt;
        struct varlena *t = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(values[col - 1])));
        return std::string(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
    }
    int32 int32_or(int col, int32 d) const { return nulls[col - 1] ? d : DatumGetInt32(values[col - 1]); }
    int64 int64_or(int col, int64 d) const { return nulls[col - 1] ? d : DatumGetInt64(values[col - 1]); }
    uint64 uint64_or(int col, uint64 d) const { return nulls[col - 1] ? d : DatumGetUInt64(values[col - 1]); }
    bool bool_or(int col, bool d) const { return nulls[col - 1] ? d : DatumGetBool(values[col - 1]); }
};

// --- the worker's state (lives as long as the process) -------------------------------------------

struct Worker {
    dispatch::Dispatcher dispatcher;
    http::Client client;
    std::vector<dispatch::Outcome> outcomes; // completed requests not yet recorded
    std::set<std::int32_t> touched;          // endpoints with completions since the last pass
    // Each endpoint's head of queue as last read, minus what was delivered since. Between full
    // passes the worker plans from it instead of reading the queue again: everything committed
    // later announces itself by setting the latch (which makes the next pass full and reloads),
    // and a commit cannot put an event before a same-key event it has already seen (row locks
    // order same-key writers, and the wake-up happens before the writer releases its locks).
    struct Head {
        std::vector<dispatch::QueuedEvent> events;
        bool valid = false;
        bool whole = false; // the read returned less than the window: nothing pending beyond it
    };
    std::map<std::int32_t, Head> heads;
    std::vector<http::Request> to_send;      // planned in the pass, sent after its commit
    uint32 config_generation = 0;
    bool configured = false;
    TimestampTz next_backfill_check = 0;
    // pg_sync._endpoint_state is written at most every kStatsIntervalMs (an upsert per pass
    // cost more than the rest of a small pass); failures are written at once.
    int64 stats_written_ms = 0;
    int64 attempt_seq = -1;   // next ring position of pg_sync._attempts; -1: not read yet
    int attempts_size = -1;   // pg_sync.recent_attempts_size the ring was last trimmed to
    bool stats_urgent = false;

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
        const Row t(SPI_tuptable->vals[r]);
        dispatch::EndpointConfig c;
        c.id = t.int32_or(1, 0);
        c.name = t.text(2).value_or("");
        c.url = t.text(3).value_or("");
        if (std::optional<std::string> secret = t.text(4))
            c.key = signature::decode_secret(*secret);
        c.batch_size = std::size_t(t.int32_or(5, 1));
        c.policy.max_attempts = t.int32_or(6, 1);
        c.timeout_ms = t.int32_or(7, 10000);
        c.max_in_flight = std::size_t(t.int32_or(8, 1));
        c.policy.base_ms = std::uint64_t(t.int32_or(9, 1000));
        c.policy.max_ms = std::uint64_t(t.int32_or(10, 3600000));
        c.paused = t.bool_or(11, false);
        if (std::optional<std::string> lines = t.text(12)) {
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

// Everything but the deletes of delivered events, which pass() merges per endpoint.
void record_outcome(const dispatch::Outcome &o, TimestampTz now) {
    const TimestampTz started = from_unix_ms(o.started_ms);
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

dispatch::QueuedEvent head_row(HeapTuple tup) {
    const Row t(tup);
    dispatch::QueuedEvent q;
    q.id = t.int64_or(1, 0);
    q.op = t.text(2).value_or("");
    q.table = t.text(3);
    q.key = t.text(4);
    q.new_row = t.text(5);
    q.old_row = t.text(6);
    q.type = t.text(7);
    q.txid = t.uint64_or(8, 0);
    q.captured_at_us = t.int64_or(9, 0) + kUnixEpochShiftUs;
    q.attempts = t.int32_or(10, 0);
    const int64 next = t.int64_or(11, PG_INT64_MIN);
    q.next_attempt_ms = next == PG_INT64_MIN ? 0 : unix_ms(next);
    return q;
}

// Memory an event read from the queue takes in the worker, roughly.
std::size_t event_bytes(const dispatch::QueuedEvent &q) {
    auto len = [](const std::optional<std::string> &s) { return s ? s->size() : 0; };
    return sizeof(q) + q.op.size() + len(q.table) + len(q.key) + len(q.new_row) + len(q.old_row) + len(q.type);
}

// An endpoint's share of pg_sync.max_worker_memory: equal shares for the endpoints that may send.
std::size_t memory_share() {
    const std::size_t budget = std::size_t(settings.max_worker_memory_kb) * 1024;
    return budget / std::max<std::size_t>(1, worker->dispatcher.sending_endpoints());
}

// The lowest `window` events of an endpoint, read in chunks through a cursor under the active
// snapshot. Events that cannot go in this pass (the gate: in flight, waiting to retry, behind a
// dead letter or behind such an event) are kept without payload, so that blocked keys take no
// memory and the read reaches the keys that can go; the payloads of the others are kept up to
// `share` bytes (at least one event: one larger than the share still goes), and the first one
// beyond it ends the read (*cut).
std::vector<dispatch::QueuedEvent> read_head(std::int32_t id, std::size_t window, std::size_t share,
                                             dispatch::PayloadGate &gate, int64 now_ms, bool *cut) {
    Datum v[2] = {Int32GetDatum(id), Int64GetDatum(int64(window))};
    Portal cursor = SPI_cursor_open(nullptr, plan(P_HEAD), v, nullptr, true);
    if (!cursor)
        elog(ERROR, "pg_sync: could not open the queue cursor");
    std::vector<dispatch::QueuedEvent> head;
    // The bodies of this endpoint's requests in flight count against its share; with none in
    // flight, the first event that can go is read whatever its size.
    const std::size_t in_flight_bytes = worker->dispatcher.in_flight_bytes(id);
    std::size_t bytes = in_flight_bytes, loaded = 0;
    *cut = false;
    while (head.size() < window && !*cut) {
        // Fewer rows per fetch as the share fills (a fetch holds its rows until they are read),
        // guessing 16 kB per row.
        const std::size_t average = 16 * 1024;
        const std::size_t room = bytes < share ? (share - bytes) / average : 0;
        SPI_cursor_fetch(cursor, true, long(std::clamp<std::size_t>(room, 16, std::min<std::size_t>(256, window - head.size()))));
        if (SPI_processed == 0)
            break;
        for (uint64 r = 0; r < SPI_processed && !*cut; ++r) {
            dispatch::QueuedEvent q = head_row(SPI_tuptable->vals[r]);
            if (!gate.sendable(q, worker->dispatcher.in_flight(id, q.id), now_ms)) {
                q.new_row.reset();
                q.old_row.reset();
                q.payload_loaded = false;
            } else if (bytes < share || (loaded == 0 && in_flight_bytes == 0)) {
                bytes += event_bytes(q);
                ++loaded;
            } else {
                *cut = true;
                break;
            }
            head.push_back(std::move(q));
        }
        SPI_freetuptable(SPI_tuptable);
    }
    SPI_cursor_close(cursor);
    return head;
}

// pg_sync.debug_pass_pause (tests): wait between the two reads until the latch is set (a commit
// that queued events or changed the configuration, e.g. a redeliver()) or the time is up. The
// latch stays set, so the loop runs another pass afterwards.
void debug_pause() {
    pgstat_report_activity(STATE_RUNNING, "pg_sync delivery pass: paused between head and dead-letter reads");
    const TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), settings.debug_pass_pause_ms);
    for (;;) {
        const long left = long((until - GetCurrentTimestamp()) / 1000);
        if (left <= 0)
            break;
        const int rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, left, PG_WAIT_EXTENSION);
        if (rc & WL_LATCH_SET)
            break;
    }
    pgstat_report_activity(STATE_RUNNING, "pg_sync delivery pass");
}

void plan_from_head(std::int32_t id, int64 now_ms) {
    std::vector<http::Request> requests = worker->dispatcher.plan(id, worker->heads[id].events, now_ms);
    for (http::Request &r : requests)
        worker->to_send.push_back(std::move(r));
}

void plan_endpoint(std::int32_t id, int64 now_ms, bool full) {
    const dispatch::EndpointConfig *c = worker->dispatcher.endpoint(id);
    if (!c || c->paused)
        return;
    Worker::Head &cached = worker->heads[id];
    if (worker->dispatcher.held(id, now_ms)) {
        // Nothing could go now: do not read its queue. A full pass (a commit) may have brought
        // events the cached head lacks: the next pass that plans this endpoint reads it again.
        if (full)
            cached.valid = false;
        return;
    }
    if (!full && cached.valid) {
        const std::size_t flying = worker->dispatcher.in_flight_events(id);
        const std::size_t waiting = cached.events.size() > flying ? cached.events.size() - flying : 0;
        if (cached.whole || waiting >= c->batch_size * c->max_in_flight) {
            plan_from_head(id, now_ms);
            return;
        }
    }
    // pg_sync.max_worker_memory: the events of a head read again are mostly the ones in flight;
    // while this endpoint's request bodies alone take its share, a new read would only hold them
    // a second time (the requests it could plan wait for those anyway). The cached head is
    // dropped before the read, so that old and new heads are never in memory together.
    const std::size_t share = memory_share();
    if (worker->dispatcher.in_flight_bytes(id) >= share) {
        if (full)
            cached.valid = false;
        return;
    }
    std::vector<dispatch::QueuedEvent>().swap(cached.events);
    cached.valid = false;
    // The dead letters and the head are read under one snapshot: a redeliver() committing
    // between two reads would otherwise put its events in neither, and later events of their keys
    // would go first. (The snapshot is taken after this pass's own writes.) Dead letters keep
    // their keys blocked (docs/design.md, per-key order): the first of each key and each dead
    // truncate, one index range scan, empty in the normal case. They come first so that the head
    // read knows which events are blocked (core/payload_gate.hpp).
    CommandCounterIncrement();
    PushActiveSnapshot(GetTransactionSnapshot());
    Datum dv[2] = {Int32GetDatum(id), Int64GetDatum(PG_INT64_MAX)};
    run_read(P_DEAD_HEAD, dv, nullptr);
    std::vector<dispatch::QueuedEvent> dead;
    dispatch::PayloadGate gate;
    dead.reserve(SPI_processed);
    for (uint64 r = 0; r < SPI_processed; ++r) {
        const Row t(SPI_tuptable->vals[r]);
        dispatch::QueuedEvent d;
        d.id = t.int64_or(1, 0);
        d.op = t.text(2).value_or("");
        d.table = t.text(3);
        d.key = t.text(4);
        d.dead = true;
        gate.add_dead(d);
        dead.push_back(std::move(d));
    }
    SPI_freetuptable(SPI_tuptable);
    if (settings.debug_pass_pause_ms > 0)
        debug_pause();
    const std::size_t window = worker->dispatcher.window(id);
    bool cut = false;
    std::vector<dispatch::QueuedEvent> head = read_head(id, window, share, gate, now_ms, &cut);
    PopActiveSnapshot();
    cached.valid = true;
    cached.whole = !cut && head.size() < window;
    if (head.empty()) {
        cached.events.clear();
        plan_from_head(id, now_ms); // nothing to send; resets what the endpoint waits for
        return;
    }
    // Only the dead letters inside the head's id range block anything in it.
    dead.erase(std::remove_if(dead.begin(), dead.end(),
                              [&](const dispatch::QueuedEvent &d) { return d.id >= head.back().id; }),
               dead.end());
    if (!dead.empty()) {
        std::sort(dead.begin(), dead.end(),
                  [](const dispatch::QueuedEvent &a, const dispatch::QueuedEvent &b) { return a.id < b.id; });
        std::vector<dispatch::QueuedEvent> merged;
        merged.reserve(head.size() + dead.size());
        std::size_t h = 0;
        for (dispatch::QueuedEvent &d : dead) {
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
    cached.events.swap(head);
    plan_from_head(id, now_ms);
}

// Keeps the cached head in step with an outcome just recorded: delivered events leave it; any
// other outcome changed rows in ways the next read should see.
void update_head(const dispatch::Outcome &o) {
    auto it = worker->heads.find(o.endpoint_id);
    if (it == worker->heads.end() || !it->second.valid)
        return;
    if (!o.retry.empty() || !o.dead.empty() || o.verdict == retry::Verdict::Gone) {
        it->second.valid = false;
        return;
    }
    std::set<std::int64_t> gone(o.delivered.begin(), o.delivered.end());
    auto &ev = it->second.events;
    ev.erase(std::remove_if(ev.begin(), ev.end(), [&](const dispatch::QueuedEvent &q) { return gone.count(q.id) > 0; }),
             ev.end());
    // Events read without payload (memory share used up) can go only after a new read.
    if (std::any_of(ev.begin(), ev.end(), [](const dispatch::QueuedEvent &q) { return !q.payload_loaded; }))
        it->second.valid = false;
}

// One array parameter of the attempts insert, with NULLs where `null` says.
Datum array_param(std::vector<Datum> &values, std::vector<char> &nulls, Oid type, int len, bool byval, char align) {
    int dims[1] = {int(values.size())};
    int lbs[1] = {1};
    return PointerGetDatum(construct_md_array(values.data(), reinterpret_cast<bool *>(nulls.data()), 1, dims, lbs, type, len, byval, align));
}

// The outcomes of this pass go into the ring of recent attempts (pg_sync.recent_attempts).
void record_attempts(const std::vector<dispatch::Outcome> &outcomes) {
    const int size = settings.recent_attempts_size;
    if (worker->attempts_size != size) {
        Datum v[1] = {Int32GetDatum(size)};
        run(P_ATTEMPTS_TRIM, v, nullptr, SPI_OK_DELETE);
        worker->attempts_size = size;
    }
    if (size == 0 || outcomes.empty())
        return;
    if (worker->attempt_seq < 0) {
        run(P_ATTEMPTS_NEXT, nullptr, nullptr, SPI_OK_SELECT);
        bool isnull = false;
        worker->attempt_seq = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
    }
    // Only the newest `size` of this pass: one statement may not write a slot twice.
    const std::size_t first = outcomes.size() > std::size_t(size) ? outcomes.size() - std::size_t(size) : 0;
    const std::size_t n = outcomes.size() - first;
    std::vector<Datum> cols[8];
    std::vector<char> nulls[8]; // bool values (vector<bool> has no data())
    for (int c = 0; c < 8; ++c) {
        cols[c].reserve(n);
        nulls[c].assign(n, false);
    }
    for (std::size_t i = 0; i < n; ++i) {
        const dispatch::Outcome &o = outcomes[first + i];
        const int64 finished_ms = o.started_ms + int64(o.duration_us / 1000);
        cols[0].push_back(Int32GetDatum(int32(worker->attempt_seq++ % size)));
        cols[1].push_back(Int32GetDatum(o.endpoint_id));
        cols[2].push_back(TimestampTzGetDatum(from_unix_ms(o.started_ms)));
        cols[3].push_back(TimestampTzGetDatum(from_unix_ms(finished_ms)));
        cols[4].push_back(Int32GetDatum(o.events));
        cols[5].push_back(Int32GetDatum(o.status));
        nulls[5][i] = o.status == 0;
        cols[6].push_back(o.reason.empty() ? (Datum)0 : text_datum(o.reason));
        nulls[6][i] = o.reason.empty();
        cols[7].push_back(Float8GetDatum(double(finished_ms * 1000 - o.oldest_captured_us) / 1000.0));
        nulls[7][i] = o.oldest_captured_us == 0;
    }
    worker->attempt_seq %= size;
    Datum v[8] = {array_param(cols[0], nulls[0], INT4OID, 4, true, TYPALIGN_INT),
                  array_param(cols[1], nulls[1], INT4OID, 4, true, TYPALIGN_INT),
                  array_param(cols[2], nulls[2], TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE),
                  array_param(cols[3], nulls[3], TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE),
                  array_param(cols[4], nulls[4], INT4OID, 4, true, TYPALIGN_INT),
                  array_param(cols[5], nulls[5], INT4OID, 4, true, TYPALIGN_INT),
                  array_param(cols[6], nulls[6], TEXTOID, -1, false, TYPALIGN_INT),
                  array_param(cols[7], nulls[7], FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)};
    run(P_ATTEMPTS, v, nullptr, SPI_OK_INSERT);
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

    // DROP EXTENSION wakes the worker with a configuration change, which makes the pass full.
    const uint32 generation = slot->config_generation;
    if (generation != worker->config_generation)
        full = true;
    // Hold the extension for the pass (DROP EXTENSION locks it first, then waits for us); then
    // make sure it is still there.
    LockDatabaseObject(ExtensionRelationId, extension_oid, 0, AccessShareLock);
    if (!get_extension_name(extension_oid)) {
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

    // Outcomes first: a 410 recorded here must be what the configuration read below sees.
    const TimestampTz now = GetCurrentTimestamp();
    std::map<std::int32_t, std::vector<std::int64_t>> delivered;
    for (const dispatch::Outcome &o : worker->outcomes) {
        if (!o.delivered.empty()) {
            std::vector<std::int64_t> &ids = delivered[o.endpoint_id];
            ids.insert(ids.end(), o.delivered.begin(), o.delivered.end());
        }
        record_outcome(o, now);
        update_head(o);
    }
    record_attempts(worker->outcomes);
    worker->outcomes.clear();
    for (const auto &kv : delivered) {
        Datum v[2] = {Int32GetDatum(kv.first), int8_array(kv.second)};
        run(P_DELETE, v, nullptr, SPI_OK_DELETE);
    }
    bool reloaded = false;
    if (!worker->configured || generation != worker->config_generation) {
        reloaded = true;
        worker->config_generation = generation;
        load_endpoints();
        worker->configured = true;
        full = true;
        for (auto it = worker->heads.begin(); it != worker->heads.end();)
            it = worker->dispatcher.endpoint(it->first) ? std::next(it) : worker->heads.erase(it);
    }

    const int64 now_ms = unix_ms(now);
    if (full) {
        for (std::int32_t id : worker->dispatcher.endpoint_ids())
            plan_endpoint(id, now_ms, true);
    } else {
        for (std::int32_t id : worker->touched)
            plan_endpoint(id, now_ms, false);
    }
    worker->touched.clear();
    if (worker->stats_urgent || now_ms - worker->stats_written_ms >= kStatsIntervalMs) {
        write_stats(now_ms);
        worker->stats_written_ms = now_ms;
        worker->stats_urgent = false;
    }

    // Backfills (pg_sync.backfill) run in a worker of their own, started from here: when the
    // configuration changed (backfill() and resume_backfill() change it), at start, and every
    // few seconds (a backfill worker that died, or exited just as a job was added).
    bool start_backfill = false;
    // (A database still at version 0.1.0, before ALTER EXTENSION UPDATE, has no _backfills; one at
    // 0.2.0 has the old page query, which this library does not run: its backfills wait for the
    // update. _check_backfill_reader came with 0.3.0.)
    if ((reloaded || now >= worker->next_backfill_check) &&
        OidIsValid(get_relname_relid("_backfills", get_namespace_oid("pg_sync", true)))) {
        worker->next_backfill_check = TimestampTzPlusMilliseconds(now, kBackfillCheckMs);
        if (SPI_execute("SELECT pg_catalog.to_regprocedure('pg_sync._check_backfill_reader(oid, pg_catalog.regclass)')"
                        "       IS NOT NULL AND EXISTS (SELECT FROM pg_sync._backfills WHERE state = 'running')",
                        true, 1) !=
                SPI_OK_SELECT ||
            SPI_processed != 1)
            elog(ERROR, "pg_sync: reading pg_sync._backfills failed");
        bool isnull;
        start_backfill = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
    }

    PopActiveSnapshot();
    SPI_finish();
    CommitTransactionCommand();
    pgstat_report_activity(STATE_IDLE, nullptr);
    pgstat_report_stat(false);
    if (start_backfill && !backfill_worker_running(MyDatabaseId) && !start_backfill_worker(MyDatabaseId))
        ereport(WARNING, (errmsg("pg_sync: could not start a backfill worker"),
                          errhint("Raise max_worker_processes; backfills wait until a worker can start.")));
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
        if (o->verdict != retry::Verdict::Success)
            worker->stats_urgent = true;
        worker->outcomes.push_back(std::move(*o));
    }
}

uint32 wait_events(int want) {
    return ((want & http::kWantRead) ? WL_SOCKET_READABLE : 0) | ((want & http::kWantWrite) ? WL_SOCKET_WRITEABLE : 0);
}

// The wait set: latch, postmaster death, and libcurl's sockets. Rebuilt when sockets come or go;
// when only the interest in a socket changes (read <-> write, every request does that), the
// event is modified in place.
struct WaitSet {
    WaitEventSet *set = nullptr;
    std::map<int, std::pair<int, int>> registered; // fd -> (position, want)

    void sync(const std::map<int, int> &sockets, bool fds_changed) {
        bool same_fds = set && !fds_changed && sockets.size() == registered.size();
        if (same_fds)
            for (const auto &kv : sockets)
                if (registered.count(kv.first) == 0 || kv.second == 0) {
                    same_fds = false;
                    break;
                }
        if (same_fds) {
            for (const auto &kv : sockets) {
                auto &reg = registered[kv.first];
                if (reg.second != kv.second) {
                    ModifyWaitEvent(set, reg.first, wait_events(kv.second), nullptr);
                    reg.second = kv.second;
                }
            }
            return;
        }
        if (set)
            FreeWaitEventSet(set);
        registered.clear();
        set = CreateWaitEventSet(TopMemoryContext, int(sockets.size()) + 2);
        AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
        AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
        for (const auto &kv : sockets)
            if (const uint32 events = wait_events(kv.second))
                registered[kv.first] = {AddWaitEventToSet(set, events, kv.first, nullptr, nullptr), kv.second};
    }
};

void run_loop() {
    WaitSet wait_set;
    WaitEvent occurred[64];
    bool woken = true, first = true;
    TimestampTz next_sweep = 0;
    for (;;) {
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
            worker->client.set_options(Worker::http_options());
            worker->dispatcher.set_failure_threshold(settings.circuit_failure_threshold);
        }
        collect_completions();
        TimestampTz now = GetCurrentTimestamp();
        const int64 due = worker->dispatcher.next_due_ms();
        const bool retry_due = due >= 0 && due <= unix_ms(now);
        const bool sweep = now >= next_sweep;
        const bool config = worker->configured && slot->config_generation != worker->config_generation;
        const int64 stats_due_ms = worker->dispatcher.has_stats() ? worker->stats_written_ms + kStatsIntervalMs : -1;
        const bool stats = stats_due_ms >= 0 && stats_due_ms <= unix_ms(now);
        if (woken || sweep || retry_due || config || stats || !worker->outcomes.empty()) {
            pass(woken || sweep || retry_due || config || first, first);
            first = false;
            woken = false;
            if (sweep)
                next_sweep = TimestampTzPlusMilliseconds(now, settings.sweep_interval_ms);
            // The connection budget keeps a connection for every endpoint that may send
            // (http::next_group_to_start): a slow endpoint cannot take them all.
            worker->client.set_groups(worker->dispatcher.sending_endpoints());
            for (http::Request &r : worker->to_send)
                worker->client.submit(std::move(r));
            worker->to_send.clear();
            set_worker_state(slot, worker->dispatcher.in_flight_requests() ? "delivering" : "idle");
        }

        long timeout = Max(1L, long((next_sweep - GetCurrentTimestamp()) / 1000));
        const int64 due_now = worker->dispatcher.next_due_ms();
        if (due_now >= 0) // at least 1 ms: a due time no pass advanced must not make a busy loop
            timeout = Min(timeout, Max(1L, long(due_now - unix_ms(GetCurrentTimestamp()))));
        if (worker->dispatcher.has_stats())
            timeout = Min(timeout, Max(1L, long(worker->stats_written_ms + kStatsIntervalMs -
                                                unix_ms(GetCurrentTimestamp()))));
        const long curl_timeout = worker->client.timeout_ms();
        if (curl_timeout >= 0)
            timeout = Min(timeout, curl_timeout);
        if (timeout <= 0) {
            if (curl_timeout == 0)
                worker->client.on_timeout();
            if (timeout < 0 || curl_timeout == 0)
                continue;
        }
        const bool fds_changed = worker->client.fds_changed();
        if (worker->client.changed() || !wait_set.set)
            wait_set.sync(worker->client.sockets(), fds_changed);
        const int n = WaitEventSetWait(wait_set.set, timeout, occurred, lengthof(occurred), PG_WAIT_EXTENSION);
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
    // The worker's queries have one good plan (index scans on the queue's primary key);
    // re-planning them for every parameter value cost more than running them.
    SetConfigOption("plan_cache_mode", "force_generic_plan", PGC_SUSET, PGC_S_OVERRIDE);
    pin_worker_settings();
    // Every query of the worker is an index scan on a primary key. Its generic plans are re-made
    // when the queue's statistics change; after vacuum truncated an empty queue to 0 pages the
    // planner picked a sequential scan plus sort for the head query, which then read the whole
    // table per pass through the next backlog (bench/growth measured 61-427 events/s for up to
    // 50 s instead of ~15,000) until the next autoanalyze.
    SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);

    StartTransactionCommand();
    extension_oid = get_extension_oid("pg_sync", true);
    const bool installed = OidIsValid(extension_oid);
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
