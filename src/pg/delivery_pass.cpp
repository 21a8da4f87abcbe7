// One pass of the delivery worker: one short transaction that
//   1. records the outcomes of finished requests (delete delivered, schedule retries, move dead
//      letters, pause on 410, the ring of recent attempts),
//   2. (re)loads the endpoints when their configuration changed,
//   3. reads each endpoint's head of queue (or plans from the cached one, core/head_cache.hpp)
//      and plans requests (core/dispatcher.hpp),
//   4. submits the planned requests (pg_sync.ack_delay > 0: before the commit),
//   5. writes the endpoints' state (throttled, core/worker_policy.hpp), commits.
// Between passes the loop plans from the cached heads alone (plan_pipelined, below).
//
// Why this is safe:
//  * An event leaves the queue only in a pass that records a 2xx for the request that carried
//    it. A crash at any point leaves the events in the queue; the requests then in flight, and
//    those answered but not yet recorded, are sent again (at-least-once; the webhook-id stays
//    the same for the same events; docs/design.md, Guarantee 3).
//  * The pass records every answer waiting before it reads: a read never sees an answered event
//    as pending.
//  * Each pass reads the queue from its lowest id with a fresh snapshot, so a transaction that
//    commits late is seen by the next pass: no cursor can skip it.
//
// Errors: this file reaches PostgreSQL only through postgres_call (guard.hpp) around the C-style
// functions of the queue store, so a PostgreSQL ERROR longjmps over no frame of this file: it
// comes back as PostgresError with the transaction already aborted. run_pass() then puts the
// worker's memory back as if the pass had not run: the outcomes stay for the next pass (the
// requests in flight are neither lost nor sent again), the requests it planned and had not sent
// yet are abandoned (planned again by the next pass; those it sent are in flight like any other),
// taken statistics go back to the dispatcher, cached heads and the ring position are read again.
#include "pg/pg_prelude.hpp"

#include "core/oauth2.hpp"
#include "core/payload_gate.hpp"
#include "core/signature.hpp"
#include "core/tls_config.hpp"
#include "core/validate.hpp"
#include "pg/delivery.hpp"
#include "pg/guard.hpp"
#include "pg/queue_counters.hpp"
#include "pg/queue_store.hpp"
#include "pg/workers.hpp"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pg_sync::pg {
namespace {

namespace qs = queue_store;

constexpr int kBackfillCheckMs = 5000; // how often the worker looks for running backfills anyway

std::optional<std::string> text(const qs::Text &t) {
    if (t.null)
        return std::nullopt;
    return std::string(t.data, std::size_t(t.len));
}

std::int64_t int_or(const qs::Int &v, std::int64_t fallback) { return v.null ? fallback : v.value; }

// Metadata of a queue row or dead letter; the payload (new_row, old_row) is attached separately.
dispatch::QueuedEvent event_of(const qs::EventRow &r) {
    dispatch::QueuedEvent q;
    q.id = r.id;
    q.op = text(r.op).value_or("");
    q.table = text(r.tbl);
    q.key = text(r.key);
    q.type = text(r.emit_type);
    q.txid = std::uint64_t(int_or(r.txid, 0));
    q.captured_at_us = int_or(r.captured_at, 0) + kUnixEpochShiftUs;
    q.traceparent = text(r.traceparent);
    q.attempts = int(int_or(r.attempts, 0));
    q.next_attempt_ms = r.next_attempt_at.null ? 0 : unix_ms(r.next_attempt_at.value);
    if (OidIsValid(r.table) && ItemPointerIsValid(&r.tid))
        q.row = dispatch::RowRef{std::uint32_t(r.table), (std::uint64_t(ItemPointerGetBlockNumberNoCheck(&r.tid)) << 16) |
                                                            ItemPointerGetOffsetNumberNoCheck(&r.tid)};
    return q;
}

// Memory an event read from the queue takes in the worker, roughly.
std::size_t event_bytes(const dispatch::QueuedEvent &q) {
    auto len = [](const std::optional<std::string> &s) { return s ? s->size() : 0; };
    return sizeof(q) + q.op.size() + len(q.table) + len(q.key) + len(q.new_row) + len(q.old_row) + len(q.type) +
           len(q.traceparent);
}

void load_endpoints(DeliveryWorker &w) {
    qs::EndpointRow *rows = nullptr;
    int n = 0;
    postgres_call([&] { n = qs::read_endpoints(&rows); });
    std::vector<dispatch::EndpointConfig> endpoints;
    endpoints.reserve(std::size_t(n));
    for (int i = 0; i < n; ++i) {
        const qs::EndpointRow &r = rows[i];
        dispatch::EndpointConfig c;
        c.id = std::int32_t(int_or(r.id, 0));
        c.name = text(r.name).value_or("");
        c.url = text(r.url).value_or("");
        if (std::optional<std::string> secret = text(r.secret))
            c.key = signature::decode_secret(*secret);
        // A secret rotation (pg_sync.rotate_secret): the previous secret signs until it ends.
        if (std::optional<std::string> previous = text(r.previous_secret); previous && !r.previous_secret_until.null) {
            c.previous_key = signature::decode_secret(*previous);
            c.previous_key_until_ms = unix_ms(r.previous_secret_until.value);
        }
        c.cloudevents = text(r.format) == std::optional<std::string>(validate::kFormatCloudEvents);
        // (The columns are NOT NULL; the fallbacks are the defaults, written once.)
        namespace d = endpoint_defaults;
        c.batch_size = std::size_t(int_or(r.batch_size, d::batch_size));
        c.policy.max_attempts = int(int_or(r.max_attempts, d::max_attempts));
        c.timeout_ms = long(int_or(r.timeout_ms, d::timeout_ms));
        c.max_in_flight = std::size_t(int_or(r.max_in_flight, d::max_in_flight));
        c.policy.base_ms = std::uint64_t(int_or(r.retry_base_ms, d::retry_base_ms));
        c.policy.max_ms = std::uint64_t(int_or(r.retry_max_ms, d::retry_max_ms));
        c.paused = int_or(r.paused, 0) != 0;
        if (!r.header_lines.null)
            c.header_lines = worker::split_header_lines(std::string_view(r.header_lines.data, std::size_t(r.header_lines.len)));
        c.kafka_settings = text(r.kafka_settings).value_or("");
        if (std::optional<std::string> rate = text(r.max_rate))
            c.max_rate = std::strtod(rate->c_str(), nullptr);
        if (std::optional<std::string> bytes = text(r.max_request_bytes))
            c.max_request_bytes = std::size_t(std::max(1L, std::strtol(bytes->c_str(), nullptr, 10)));
        if (std::optional<std::string> statuses = text(r.permanent_statuses))
            c.policy.permanent_statuses = worker::split_ints(*statuses);
        tls::Settings tls_settings;
        tls_settings.client_cert = text(r.tls_client_cert).value_or("");
        tls_settings.client_key = text(r.tls_client_key).value_or("");
        tls_settings.ca = text(r.tls_ca).value_or("");
        if (!tls_settings.empty())
            c.tls = std::make_shared<const tls::Settings>(std::move(tls_settings));
        if (std::optional<std::string> o = text(r.oauth2); o && *o != "{}") {
            validate::Problem ignored; // checked when it was configured
            if (std::optional<oauth2::Config> config = oauth2::parse_config(*o, &ignored))
                c.oauth2 = std::make_shared<const oauth2::Config>(std::move(*config));
        }
        endpoints.push_back(std::move(c));
    }
    postgres_call([&] { qs::release_rows(); });
    w.dispatcher.configure(std::move(endpoints));
}

// The delivered events of an endpoint, for one delete (queue_store::delete_delivered).
struct Delivered {
    std::vector<std::int64_t> ids;
    std::vector<Oid> tables;
    std::vector<ItemPointerData> tids;

    void add(std::int64_t id, const dispatch::RowRef &row) {
        ItemPointerData tid;
        ItemPointerSetInvalid(&tid);
        if (row.table != 0)
            ItemPointerSet(&tid, BlockNumber(row.tid >> 16), OffsetNumber(row.tid & 0xFFFF));
        ids.push_back(id);
        tables.push_back(Oid(row.table));
        tids.push_back(tid);
    }
};

// Everything but the deletes of delivered events, which the pass merges per endpoint.
void record_outcome(const dispatch::Outcome &o, TimestampTz now) {
    const TimestampTz started = from_unix_ms(o.started_ms);
    if (!o.retry.empty()) {
        const TimestampTz next = TimestampTzPlusMilliseconds(now, std::int64_t(o.delay_ms));
        postgres_call([&] {
            qs::schedule_retry(o.endpoint_id, o.retry.data(), int(o.retry.size()), next, o.reason.c_str(), o.status,
                               started);
        });
    }
    if (!o.dead.empty())
        postgres_call([&] {
            qs::move_to_dead_letters(o.endpoint_id, o.dead.data(), int(o.dead.size()), o.status, o.reason.c_str(),
                                     started);
        });
    if (o.verdict == retry::Verdict::Gone)
        postgres_call([&] { qs::pause_gone(o.endpoint_id, o.reason.c_str()); });
}

// The outcomes of this pass go into the ring of recent attempts (pg_sync.recent_attempts).
void record_attempts(DeliveryWorker &w) {
    const int size = settings.recent_attempts_size;
    if (w.attempts.needs_trim(size)) {
        postgres_call([&] { qs::trim_attempts(size); });
        w.attempts.trimmed(size);
    }
    if (size == 0 || w.outcomes.empty())
        return;
    if (w.attempts.needs_position()) {
        int32 next = 0;
        postgres_call([&] { next = qs::attempts_next_slot(); });
        w.attempts.set_position(next);
    }
    const std::size_t first = worker::AttemptRing::first_written(w.outcomes.size(), size);
    const std::vector<std::int32_t> slots = w.attempts.take(w.outcomes.size(), size);
    std::vector<qs::AttemptRow> rows(slots.size());
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const dispatch::Outcome &o = w.outcomes[first + i];
        const std::int64_t finished_ms = o.started_ms + std::int64_t(o.duration_us / 1000);
        qs::AttemptRow &a = rows[i];
        a.slot = slots[i];
        a.endpoint_id = o.endpoint_id;
        a.started_at = from_unix_ms(o.started_ms);
        a.finished_at = from_unix_ms(finished_ms);
        a.events = o.events;
        a.status = o.status;
        a.error = o.reason.empty() ? nullptr : o.reason.c_str();
        a.lag_ms = double(finished_ms * 1000 - o.oldest_captured_us) / 1000.0;
        a.lag_null = o.oldest_captured_us == 0;
    }
    postgres_call([&] { qs::insert_attempts(rows.data(), int(rows.size())); });
}

// Writes the statistics taken from the dispatcher; *taken keeps them for a failed pass.
void write_stats(DeliveryWorker &w, std::int64_t now_ms, std::vector<dispatch::EndpointStats> *taken) {
    *taken = w.dispatcher.take_stats(now_ms);
    for (const dispatch::EndpointStats &st : *taken) {
        qs::EndpointStateRow row{};
        row.endpoint_id = st.endpoint_id;
        row.delivered = st.delivered;
        row.failed_attempts = st.failed_attempts;
        row.last_success_at = {st.last_success_ms ? from_unix_ms(*st.last_success_ms) : 0, !st.last_success_ms};
        row.last_failure_at = {st.last_failure_ms ? from_unix_ms(*st.last_failure_ms) : 0, !st.last_failure_ms};
        row.last_error = st.last_error ? st.last_error->c_str() : nullptr;
        row.last_status = st.last_status;
        row.in_flight = int32(st.in_flight_events);
        row.consecutive_failures = st.consecutive_failures;
        row.circuit = retry::state_name(st.circuit);
        row.next_attempt_at = {st.next_attempt_ms > 0 ? from_unix_ms(st.next_attempt_ms) : 0, st.next_attempt_ms <= 0};
        row.rate_limited = st.rate_limited;
        row.request_bytes_limit = int32(std::min<std::size_t>(st.request_bytes_limit, PG_INT32_MAX));
        postgres_call([&] { qs::write_endpoint_state(&row); });
    }
}

// An endpoint's share of pg_sync.max_worker_memory: equal shares for the endpoints that may send.
std::size_t memory_share(const DeliveryWorker &w) {
    const std::size_t budget = std::size_t(settings.max_worker_memory_kb) * 1024;
    return budget / std::max<std::size_t>(1, w.dispatcher.sending_endpoints());
}

// The lowest `window` events of an endpoint, read in chunks through a cursor under the active
// snapshot. Events that cannot go in this pass (the gate: in flight, waiting to retry, behind a
// dead letter or behind such an event) are kept without payload, so that blocked keys take no
// memory and the read reaches the keys that can go; the payloads of the others are kept up to
// `share` bytes (at least one event: one larger than the share still goes), and the first one
// beyond it ends the read (*cut).
std::vector<dispatch::QueuedEvent> read_head(DeliveryWorker &w, std::int32_t id, std::size_t window,
                                             std::size_t share, dispatch::PayloadGate &gate, std::int64_t now_ms,
                                             bool *cut) {
    Portal cursor = nullptr;
    postgres_call([&] { cursor = qs::open_head(id, std::int64_t(window)); });
    std::vector<dispatch::QueuedEvent> head;
    // The bodies of this endpoint's requests in flight count against its share; with none in
    // flight, the first event that can go is read whatever its size.
    const std::size_t in_flight_bytes = w.dispatcher.in_flight_bytes(id);
    std::size_t bytes = in_flight_bytes, loaded = 0;
    *cut = false;
    while (head.size() < window && !*cut) {
        // Fewer rows per fetch as the share fills (a fetch holds its rows until they are read),
        // guessing 16 kB per row.
        const std::size_t average = 16 * 1024;
        const std::size_t room = bytes < share ? (share - bytes) / average : 0;
        const long count = long(std::clamp<std::size_t>(room, 16, std::min<std::size_t>(256, window - head.size())));
        qs::EventRow *rows = nullptr;
        int n = 0;
        postgres_call([&] { n = qs::fetch_head(cursor, count, &rows); });
        if (n == 0)
            break;
        for (int r = 0; r < n && !*cut; ++r) {
            dispatch::QueuedEvent q = event_of(rows[r]);
            const bool in_flight = w.dispatcher.in_flight(id, q.id);
            if (!gate.sendable(q, in_flight, now_ms)) {
                q.payload_loaded = false;
                q.in_flight_at_read = in_flight;
            } else if (bytes < share || (loaded == 0 && in_flight_bytes == 0)) {
                qs::EventRow *row = &rows[r];
                postgres_call([&] { qs::payload(row); });
                q.new_row = text(row->new_row);
                q.old_row = text(row->old_row);
                bytes += event_bytes(q);
                ++loaded;
            } else {
                *cut = true;
                break;
            }
            head.push_back(std::move(q));
        }
        postgres_call([&] { qs::release_rows(); });
    }
    postgres_call([&] { qs::close_head(cursor); });
    return head;
}

void plan_from_head(DeliveryWorker &w, std::int32_t id, std::int64_t now_ms) {
    for (sink::Request &r : w.dispatcher.plan(id, w.heads.events(id), now_ms))
        w.to_send.push_back(std::move(r));
}

// What an endpoint's planning does now (core/head_cache.hpp); Skip for an unknown or paused one.
dispatch::HeadCache::Action head_action(DeliveryWorker &w, std::int32_t id, std::int64_t now_ms,
                                        dispatch::HeadCache::Wake wake, bool in_pass) {
    const dispatch::EndpointConfig *c = w.dispatcher.endpoint(id);
    if (!c || c->paused)
        return dispatch::HeadCache::Action::Skip;
    // pg_sync.max_worker_memory: the events of a head read again are mostly the ones in flight;
    // while this endpoint's request bodies alone take its share, a new read would only hold them
    // a second time (the requests it could plan wait for those anyway).
    const std::size_t free_slots = c->max_in_flight - std::min(c->max_in_flight, w.dispatcher.in_flight_requests(id));
    return w.heads.before_plan(id, wake, w.dispatcher.held(id, now_ms), w.dispatcher.in_flight_events(id),
                               c->batch_size * free_slots, w.dispatcher.in_flight_bytes(id) >= memory_share(w),
                               in_pass);
}

// The planned requests go to the transport. The connection budget keeps a connection for every
// endpoint that may send (http::next_group_to_start): a slow endpoint cannot take them all.
void submit_planned(DeliveryWorker &w) {
    if (w.to_send.empty())
        return;
    w.transport.set_groups(w.dispatcher.sending_endpoints());
    for (sink::Request &r : w.to_send)
        w.transport.submit(std::move(r));
    w.to_send.clear();
}

// Plans the endpoint from its cached head when that is what it needs now (or nothing, when it
// is skipped); returns whether it needs a read of its queue instead (the cache is dropped).
bool plan_cached(DeliveryWorker &w, std::int32_t id, std::int64_t now_ms, dispatch::HeadCache::Wake wake,
                 bool in_pass) {
    switch (head_action(w, id, now_ms, wake, in_pass)) {
    case dispatch::HeadCache::Action::Skip:
        return false;
    case dispatch::HeadCache::Action::PlanCached:
        plan_from_head(w, id, now_ms);
        return false;
    case dispatch::HeadCache::Action::Read:
        return true;
    }
    return false;
}

void plan_endpoint(DeliveryWorker &w, std::int32_t id, std::int64_t now_ms, dispatch::HeadCache::Wake wake) {
    if (!plan_cached(w, id, now_ms, wake, true))
        return;
    const std::size_t share = memory_share(w);
    // The dead letters and the head are read under one snapshot: a redeliver() committing
    // between two reads would otherwise put its events in neither, and later events of their keys
    // would go first. (The snapshot is taken after this pass's own writes.) Dead letters keep
    // their keys blocked (docs/design.md, per-key order): the first of each key and each dead
    // truncate, one index range scan, empty in the normal case. They come first so that the head
    // read knows which events are blocked (core/payload_gate.hpp).
    qs::EventRow *rows = nullptr;
    int n = 0;
    postgres_call([&] {
        qs::push_fresh_snapshot();
        n = qs::read_dead_letter_heads(id, &rows);
    });
    std::vector<dispatch::QueuedEvent> dead;
    dispatch::PayloadGate gate;
    dead.reserve(std::size_t(n));
    for (int i = 0; i < n; ++i) {
        dispatch::QueuedEvent d;
        d.id = rows[i].id;
        d.op = text(rows[i].op).value_or("");
        d.table = text(rows[i].tbl);
        d.key = text(rows[i].key);
        d.dead = true;
        gate.add_dead(d);
        dead.push_back(std::move(d));
    }
    postgres_call([&] { qs::release_rows(); });
    if (settings.debug_pass_pause_ms > 0) {
        const int ms = settings.debug_pass_pause_ms;
        postgres_call([&] { qs::debug_pause(ms); });
    }
    const std::size_t window = w.dispatcher.window(id);
    bool cut = false;
    std::vector<dispatch::QueuedEvent> head = read_head(w, id, window, share, gate, now_ms, &cut);
    postgres_call([&] { qs::pop_snapshot(); });
    w.heads.store(id, std::move(head), std::move(dead), window, cut);
    plan_from_head(w, id, now_ms); // with an empty head: nothing to send; resets what it waits for
}

// What a pass changed in memory that its commit makes true.
struct PassEffects {
    std::vector<dispatch::EndpointStats> stats_taken;
    bool stats_written = false;
    bool start_backfill = false;
};

void pass_body(DeliveryWorker &w, WorkerSlot *slot, Oid extension_oid, PassRequest request, PassEffects &effects) {
    postgres_call([] { qs::begin_pass(); });

    // DROP EXTENSION wakes the worker with a configuration change, which makes the pass full.
    const uint32 generation = slot->config_generation;
    if (generation != w.config_generation)
        request.all_endpoints = request.reread = true;
    // Hold the extension for the pass (DROP EXTENSION locks it first, then waits for us); then
    // make sure it is still there.
    bool present = false;
    postgres_call([&] { present = qs::lock_extension(extension_oid); });
    if (!present)
        postgres_call([&] { qs::exit_extension_dropped(slot); });
    // Pending counts (queue_counters.cpp): recounted at the worker's start and when asked for,
    // before this pass changes the queue.
    // A recount asked for by someone who changed the queue by hand (a DELETE, a TRUNCATE): the
    // cached heads may hold events that are gone.
    bool recounted = false;
    postgres_call([&] { recounted = queue_counters_recount_if_due(); });
    if (recounted)
        request.all_endpoints = request.reread = true;
    if (request.worker_started)
        postgres_call([] { qs::reset_endpoint_state(); });

    // Outcomes first: a 410 recorded here must be what the configuration read below sees, and
    // the reads below must not see an answered event as pending. (The cached heads dropped the
    // delivered events when their answers came: delivery_loop.cpp.)
    const TimestampTz now = GetCurrentTimestamp();
    std::map<std::int32_t, Delivered> delivered;
    for (const dispatch::Outcome &o : w.outcomes) {
        Delivered &d = delivered[o.endpoint_id];
        for (std::size_t i = 0; i < o.delivered.size(); ++i)
            d.add(o.delivered[i], i < o.delivered_rows.size() ? o.delivered_rows[i] : dispatch::RowRef{});
        record_outcome(o, now);
    }
    record_attempts(w);
    for (const auto &kv : delivered) {
        const Delivered &d = kv.second;
        if (!d.ids.empty())
            postgres_call([&] {
                qs::delete_delivered(kv.first, d.ids.data(), d.tables.data(), d.tids.data(), int(d.ids.size()));
            });
    }
    // Queue rotation sees this pass's deletes; the heads read below see its truncations.
    rotate_queue(w, unix_ms(now));

    // Secret rotations that ended: the previous secret signs nothing from now on (the dispatcher
    // checks the time for every request it plans) and is erased here. A row locked by a
    // configuration change is skipped: the configuration is read again and the next pass retries.
    const std::vector<std::int32_t> ended = w.dispatcher.take_ended_rotations(unix_ms(now));
    if (!ended.empty()) {
        int erased = 0;
        postgres_call([&] { erased = qs::end_rotations(ended.data(), int(ended.size())); });
        if (erased < int(ended.size()))
            w.configured = false;
    }

    bool reloaded = false;
    if (!w.configured || generation != w.config_generation) {
        reloaded = true;
        load_endpoints(w);
        w.config_generation = generation;
        w.configured = true;
        request.all_endpoints = request.reread = true;
        w.heads.retain(w.dispatcher.endpoint_ids());
    }

    const std::int64_t now_ms = unix_ms(now);
    using Wake = dispatch::HeadCache::Wake;
    if (request.all_endpoints) {
        const Wake wake = request.reread ? Wake::Reread : Wake::Commits;
        for (std::int32_t id : w.dispatcher.endpoint_ids())
            plan_endpoint(w, id, now_ms, wake);
    } else {
        for (std::int32_t id : w.touched)
            plan_endpoint(w, id, now_ms, Wake::Answers);
    }
    w.replan.clear();
    // Pipelining (pg_sync.ack_delay > 0): sent before the commit. Nothing below changes what they
    // carry, and the commit only makes the recorded answers durable; if the pass fails from here
    // on, these requests are in flight like any other (undo_pass abandons only unsent ones) and
    // the answers stay for the next pass. With ack_delay = 0 they wait for the commit, as in
    // 0.3.0: a crash then resends only requests in flight or whose answer was being recorded.
    if (settings.ack_delay_ms > 0)
        submit_planned(w);
    if (w.stats.due(now_ms)) {
        write_stats(w, now_ms, &effects.stats_taken);
        effects.stats_written = true;
    }

    // Backfills (pg_sync.backfill) run in a worker of their own, started from here: when the
    // configuration changed (backfill() and resume_backfill() change it), at start, and every
    // few seconds (a backfill worker that died, or exited just as a job was added).
    if (reloaded || now >= w.next_backfill_check) {
        w.next_backfill_check = TimestampTzPlusMilliseconds(now, kBackfillCheckMs);
        postgres_call([&] { effects.start_backfill = qs::backfills_running(); });
    }
    // A group of 2xx commits without waiting for the WAL flush (core/worker_policy AckGroup).
    const bool durable = w.acks.durable(settings.ack_delay_ms);
    postgres_call([&] { qs::commit_pass(durable); });
    // Committed: what the pass recorded is true now, whatever happens next.
    w.outcomes.clear();
    w.acks.recorded();
    w.touched.clear();
    submit_planned(w);
    if (effects.stats_written)
        w.stats.written(now_ms);
    // Writers take the current partition from shared memory (after the commit: a rolled-back
    // rotation must not be published; a writer that still uses the old one is no harm).
    if (w.rotation.current() != w.published_part) {
        try {
            bool published = false;
            const int part = w.rotation.current();
            postgres_call([&] { published = publish_queue_part(MyDatabaseId, part); });
            if (published)
                w.published_part = part;
        } catch (const PostgresError &) {
            // Logged; tried again after the next pass.
        }
    }
    try {
        postgres_call([] { qs::report_idle(); });
    } catch (const PostgresError &) {
        // Logged by the border; an error in the statistics report is not a failed pass (the
        // outcomes above are committed and must not be recorded again).
    }
}

// The pass failed and its transaction was rolled back: back to the state before it.
void undo_pass(DeliveryWorker &w, PassEffects &effects) {
    for (const sink::Request &r : w.to_send)
        w.dispatcher.abandon(r.token);
    w.to_send.clear();
    w.dispatcher.restore_stats(effects.stats_taken);
    w.heads.invalidate_all();
    w.attempts.reset();
    w.configured = false; // a configuration read in the pass may include its own rolled-back writes
    w.rotation_loaded = false; // a rotation or truncation of the pass may be rolled back
}

} // namespace

bool plan_pipelined(DeliveryWorker &w, std::int64_t now_ms) {
    bool read_needed = false;
    for (std::int32_t id : w.replan) // (a read is for the pass: w.touched has the endpoint)
        read_needed = plan_cached(w, id, now_ms, dispatch::HeadCache::Wake::Answers, false) || read_needed;
    w.replan.clear();
    submit_planned(w);
    return read_needed;
}

bool run_pass(DeliveryWorker &w, WorkerSlot *slot, Oid extension_oid, const PassRequest &request,
              ErrorReport *error) {
    PassEffects effects;
    try {
        pass_body(w, slot, extension_oid, request, effects);
    } catch (const PostgresError &e) {
        *error = e.report();
        undo_pass(w, effects);
        return false;
    }
    if (effects.start_backfill) {
        try {
            postgres_call([] {
                if (!backfill_worker_running(MyDatabaseId) && !start_backfill_worker(MyDatabaseId))
                    ereport(WARNING,
                            (errmsg("pg_sync: could not start a backfill worker"),
                             errhint("Raise max_worker_processes; backfills wait until a worker can start.")));
            });
        } catch (const PostgresError &) {
            // Logged; the next check (kBackfillCheckMs) tries again.
        }
    }
    return true;
}

} // namespace pg_sync::pg
