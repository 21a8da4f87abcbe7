#include "core/dispatcher.hpp"

#include "core/cloudevents.hpp"
#include "core/envelope.hpp"
#include "core/kafka_config.hpp"
#include "core/kafka_records.hpp"
#include "core/scheduler.hpp"
#include "core/signature.hpp"
#include "core/validate.hpp"

#include <algorithm>

namespace pg_sync::dispatch {
namespace {

scheduler::OrderKind kind_of(const std::string &op) {
    if (op == "truncate")
        return scheduler::OrderKind::Truncate;
    if (op == "emit")
        return scheduler::OrderKind::Emit;
    return scheduler::OrderKind::Row;
}

std::optional<std::string_view> view(const std::optional<std::string> &s) {
    if (!s)
        return std::nullopt;
    return std::string_view(*s);
}

// Sizing needs no real timestamp: captured_at always renders as 27 characters (years 1000-9999).
constexpr std::string_view kTimestampShape = "2000-01-01T00:00:00.000000Z";

envelope::EventView envelope_event(const QueuedEvent &q, std::string *captured_at) {
    envelope::EventView e;
    e.id = q.id;
    e.op = q.op;
    e.txid = q.txid;
    if (captured_at) {
        *captured_at = envelope::format_timestamp(q.captured_at_us);
        e.captured_at = *captured_at;
    } else {
        e.captured_at = kTimestampShape;
    }
    e.key = view(q.key);
    e.traceparent = view(q.traceparent);
    if (q.op == "emit") {
        e.type = view(q.type);
        e.payload = view(q.new_row); // emit keeps its payload in new_row
    } else {
        e.table = view(q.table);
        e.new_row = view(q.new_row);
        e.old_row = view(q.old_row);
    }
    return e;
}

} // namespace

Dispatcher::Dispatcher(std::string scope, std::uint64_t seed, int failure_threshold)
    : scope_(std::move(scope)), random_(retry::make_random(seed)), failure_threshold_(failure_threshold) {}

// Enough to refill every request slot three times over what is in flight, and at least
// kMinWindow: between reads the worker plans from the cached head without a transaction
// (pipelining), and a cache that runs short needs a pass whose read starts at the queue's lowest
// id, walking the index entries of the events deleted since the last vacuum (at 150,000 events/s
// that walk cost more than the rows read). Every full pass reads it too, so it is not larger (it
// grows when blocked keys fill it, see plan()).
std::size_t Dispatcher::base_window(const EndpointConfig &c) {
    return std::clamp<std::size_t>(c.batch_size * c.max_in_flight * 4, kMinWindow, kMaxWindow);
}

void Dispatcher::configure(std::vector<EndpointConfig> endpoints) {
    std::map<std::int32_t, Endpoint> next;
    for (EndpointConfig &c : endpoints) {
        auto old = endpoints_.find(c.id);
        if (old == endpoints_.end()) {
            Endpoint e{c, retry::CircuitBreaker(c.policy, failure_threshold_), {}, 0, 0, base_window(c), -1, 0, {}, true,
                       rate::TokenBucket(c.max_rate), -1, false, 0};
            e.stats.endpoint_id = c.id;
            next.emplace(c.id, std::move(e));
            continue;
        }
        Endpoint e = std::move(old->second);
        const bool resumed = e.config.paused && !c.paused;
        const bool policy_changed = e.config.policy.base_ms != c.policy.base_ms ||
                                    e.config.policy.max_ms != c.policy.max_ms ||
                                    e.config.policy.max_attempts != c.policy.max_attempts;
        if (resumed || policy_changed) {
            e.breaker = retry::CircuitBreaker(c.policy, failure_threshold_);
            e.hold_until_ms = 0;
            e.dirty = true;
        }
        if (e.config.batch_size != c.batch_size || e.config.max_in_flight != c.max_in_flight)
            e.window = base_window(c);
        if (e.config.max_rate != c.max_rate) {
            e.bucket = rate::TokenBucket(c.max_rate); // the new rate, from a full bucket
            e.token_due_ms = -1;
            e.rate_limited = false;
            e.dirty = true;
        }
        if (e.config.max_request_bytes != c.max_request_bytes || e.config.url != c.url) {
            e.learned_bytes = 0; // another receiver, or the operator's own bound
            e.dirty = true;
        }
        e.config = std::move(c);
        next.emplace(e.config.id, std::move(e));
    }
    // Requests of endpoints that are gone: their completions will be ignored.
    for (auto it = requests_.begin(); it != requests_.end();) {
        if (next.count(it->second.endpoint_id) == 0)
            it = requests_.erase(it);
        else
            ++it;
    }
    endpoints_ = std::move(next);
}

bool Dispatcher::in_flight(std::int32_t id, std::int64_t event_id) const {
    auto it = endpoints_.find(id);
    return it != endpoints_.end() && it->second.in_flight_ids.count(event_id) > 0;
}

std::size_t Dispatcher::in_flight_bytes(std::int32_t id) const {
    auto it = endpoints_.find(id);
    return it == endpoints_.end() ? 0 : it->second.in_flight_bytes;
}

const EndpointConfig *Dispatcher::endpoint(std::int32_t id) const {
    auto it = endpoints_.find(id);
    return it == endpoints_.end() ? nullptr : &it->second.config;
}

std::vector<std::int32_t> Dispatcher::endpoint_ids() const {
    std::vector<std::int32_t> ids;
    for (const auto &kv : endpoints_)
        ids.push_back(kv.first);
    return ids;
}

std::size_t Dispatcher::window(std::int32_t id) const {
    auto it = endpoints_.find(id);
    return it == endpoints_.end() ? 0 : it->second.window;
}

std::size_t Dispatcher::sending_endpoints() const {
    std::size_t n = 0;
    for (const auto &kv : endpoints_)
        if (!kv.second.config.paused)
            ++n;
    return n;
}

std::size_t Dispatcher::in_flight_requests(std::int32_t id) const {
    auto it = endpoints_.find(id);
    return it == endpoints_.end() ? 0 : it->second.in_flight_requests;
}

std::size_t Dispatcher::in_flight_events(std::int32_t id) const {
    auto it = endpoints_.find(id);
    return it == endpoints_.end() ? 0 : it->second.in_flight_ids.size();
}

void Dispatcher::set_failure_threshold(int threshold) {
    if (threshold == failure_threshold_)
        return;
    failure_threshold_ = threshold;
    for (auto &kv : endpoints_) {
        kv.second.breaker = retry::CircuitBreaker(kv.second.config.policy, threshold);
        kv.second.dirty = true;
    }
}

void Dispatcher::pause(std::int32_t id) {
    auto it = endpoints_.find(id);
    if (it != endpoints_.end())
        it->second.config.paused = true;
}

bool Dispatcher::held(std::int32_t id, std::int64_t now_ms) const {
    const auto it = endpoints_.find(id);
    if (it == endpoints_.end())
        return false;
    const Endpoint &ep = it->second;
    const auto now_u = std::uint64_t(std::max<std::int64_t>(now_ms, 0));
    switch (ep.breaker.state(now_u)) {
    case retry::State::Open:
        return true;
    case retry::State::HalfOpen:
        if (ep.in_flight_requests > 0)
            return true;
        break;
    case retry::State::Closed:
        break;
    }
    return ep.hold_until_ms > now_ms || ep.in_flight_requests >= ep.config.max_in_flight;
}

std::vector<sink::Request> Dispatcher::plan(std::int32_t id, const Head &head, std::int64_t now_ms) {
    std::vector<sink::Request> out;
    auto it = endpoints_.find(id);
    if (it == endpoints_.end())
        return out;
    Endpoint &ep = it->second;
    const EndpointConfig &c = ep.config;
    ep.next_due_ms = -1;

    scheduler::Limits limits;
    limits.batch_size = c.batch_size;
    limits.max_in_flight = c.max_in_flight;
    limits.in_flight_requests = ep.in_flight_requests;
    limits.max_request_bytes = event_bytes_cap(ep);
    limits.paused = c.paused;
    ep.token_due_ms = -1;
    const auto now_u = std::uint64_t(std::max<std::int64_t>(now_ms, 0));
    const retry::State circuit = ep.breaker.state(now_u);
    if (circuit == retry::State::Open) {
        ep.next_due_ms = std::int64_t(ep.breaker.open_until());
        return out;
    }
    if (circuit == retry::State::HalfOpen)
        limits = scheduler::probe_only(limits);
    if (ep.hold_until_ms > now_ms) {
        ep.next_due_ms = ep.hold_until_ms;
        return out;
    }

    // The earliest retry this head waits for, over all of it (no candidates needed for that).
    for (const QueuedEvent &q : head)
        if (q.next_attempt_ms > now_ms && !q.dead && (ep.next_due_ms < 0 || q.next_attempt_ms < ep.next_due_ms) &&
            !ep.in_flight_ids.count(q.id))
            ep.next_due_ms = q.next_attempt_ms;

    // max_rate: at most as many requests as the bucket has tokens. With none, the plan still runs
    // for one request, to know whether one waits for the next token (then it is not sent, and
    // the worker wakes when the token is there: take_token_due).
    const std::size_t tokens = ep.bucket.available(now_ms);
    limits.max_requests = std::min(limits.max_requests, std::max<std::size_t>(tokens, 1));

    scheduler::Planner planner(limits);
    for (std::size_t i = 0; i < head.size() && planner.open(); ++i) {
        const QueuedEvent &q = head[i];
        QueuedEvent::PlanMemo &m = q.memo;
        if (!m.ready) {
            m.kind = kind_of(q.op);
            if (m.kind == scheduler::OrderKind::Emit)
                m.key = scheduler::emit_key(view(q.key));
            else if (m.kind == scheduler::OrderKind::Row)
                m.key = scheduler::row_key(q.table.value_or(""), q.key.value_or("null"));
            const envelope::EventView shape = envelope_event(q, nullptr);
            m.bytes = (c.cloudevents ? cloudevents::event_size(shape, database_) : envelope::event_size(shape)) + 1;
            m.ready = true;
        }
        const std::string_view table =
            m.kind == scheduler::OrderKind::Emit || !q.table ? std::string_view() : std::string_view(*q.table);
        scheduler::CandidateView e{q.id,   m.kind, table, m.key, scheduler::State::Queued, q.next_attempt_ms,
                                   m.bytes, q.traceparent ? std::string_view(*q.traceparent) : std::string_view()};
        if (q.dead)
            e.state = scheduler::State::Dead;
        else if (!q.payload_loaded || ep.in_flight_ids.count(q.id))
            e.state = scheduler::State::InFlight; // (without payload: held, blocking its key)
        planner.add(e, i, now_ms);
    }
    const std::vector<scheduler::Batch> batches = planner.take();
    const bool waits_for_token = tokens == 0 && !batches.empty();
    if (waits_for_token != ep.rate_limited) {
        ep.rate_limited = waits_for_token;
        ep.dirty = true;
    }
    if (waits_for_token) {
        ep.token_due_ms = ep.bucket.next_token_ms(now_ms);
        return out;
    }

    // A head that is full and yields nothing while nothing is in flight is stuck behind blocked
    // keys: look further next time. Progress shrinks it back.
    // Shrinking by halves (not at once) keeps a head that needed a large window from having to
    // grow back step by step, with nothing sent, after every request.
    if (batches.empty() && ep.in_flight_requests == 0 && head.size() >= ep.window)
        ep.window = std::min(kMaxWindow, ep.window * 2);
    else if (!batches.empty())
        ep.window = std::max(base_window(c), ep.window / 2);

    const std::int64_t now_s = now_ms / 1000;
    std::vector<envelope::EventView> body_events;
    std::vector<std::string> stamps;
    for (const scheduler::Batch &b : batches) {
        InFlight f{id, {}, {}, {}, {}, now_ms, 0};
        f.event_bytes = b.bytes;
        body_events.clear();
        stamps.assign(b.events.size(), std::string());
        for (std::size_t k = 0; k < b.events.size(); ++k) {
            const QueuedEvent &q = head[b.events[k]];
            body_events.push_back(envelope_event(q, &stamps[k]));
            f.ids.push_back(q.id);
            f.rows.push_back(q.row);
            f.attempts.push_back(q.attempts);
            if (f.oldest_captured_us == 0 || q.captured_at_us < f.oldest_captured_us)
                f.oldest_captured_us = q.captured_at_us;
        }
        sink::Request r;
        r.token = next_token_++;
        r.url = c.url;
        r.timeout_ms = c.timeout_ms;
        r.group = id; // the HTTP client shares its connections fairly between endpoints
        f.webhook_id = signature::webhook_id(f.ids, scope_);
        if (kafka::is_kafka_url(c.url)) {
            // One Kafka record per event instead of a body (core/kafka_records.hpp).
            kafka::build_records(body_events, r.records);
            r.settings = c.kafka_settings;
            for (const sink::Record &record : r.records)
                f.body_bytes += record.value.size();
        } else {
            if (c.cloudevents) {
                cloudevents::append_batch(r.body, body_events.data(), body_events.size(), database_);
                r.content_type = std::string(cloudevents::kBatchContentType);
            } else {
                envelope::append_body(r.body, body_events);
            }
            r.headers = c.header_lines;
            r.tls = c.tls;
            r.oauth2 = c.oauth2;
            // A rotation in progress: the previous secret signs too, until the moment it ends.
            const bool rotating = c.previous_key && now_ms < c.previous_key_until_ms;
            for (const signature::Header &h :
                 signature::headers(f.webhook_id, now_s, r.body, c.key, rotating ? c.previous_key : std::nullopt))
                r.headers.push_back(h.line());
            // Every event of a request is of one trace (scheduler.hpp, "Traces").
            // The stored value was checked at SET; checked again here (a restore or the table's
            // owner could have written anything), so that no header is built from a bad one.
            if (!body_events.empty() && body_events.front().traceparent &&
                validate::traceparent(*body_events.front().traceparent).ok())
                r.headers.push_back("traceparent: " + std::string(*body_events.front().traceparent));
            f.body_bytes = r.body.size();
        }
        for (std::int64_t eid : f.ids)
            ep.in_flight_ids.insert(eid);
        ep.in_flight_requests++;
        ep.in_flight_bytes += f.body_bytes;
        ep.dirty = true;
        if (f.ids.size() == 1 && f.body_bytes > c.max_request_bytes) {
            // Alone and still too large: never sent, a dead letter at once (Transport::Rejected).
            sink::Completion refused;
            refused.token = r.token;
            refused.transport = retry::Transport::Rejected;
            refused.detail = "the event makes a request of " + std::to_string(f.body_bytes) +
                             " bytes, more than max_request_bytes (" + std::to_string(c.max_request_bytes) + ")";
            refused_.push_back(std::move(refused));
            f.never_sent = true;
            requests_.emplace(r.token, std::move(f));
            continue;
        }
        ep.bucket.take(1, now_ms);
        requests_.emplace(r.token, std::move(f));
        out.push_back(std::move(r));
    }
    // The bucket is empty now: the worker wakes for the next token (the plan then may find
    // nothing to send, which costs a plan from the cached head).
    if (ep.bucket.limited() && !out.empty() && ep.bucket.available(now_ms) == 0)
        ep.token_due_ms = ep.bucket.next_token_ms(now_ms);
    return out;
}

// The planner's cap on the events of a request (scheduler::Limits::max_request_bytes): at least
// 1 (0 would be no cap; a single event larger than the cap still goes alone).
std::size_t Dispatcher::event_bytes_cap(const Endpoint &ep) {
    const std::size_t configured = ep.config.max_request_bytes - std::min(ep.config.max_request_bytes, kBodyFrameBytes);
    return std::max<std::size_t>(1, ep.learned_bytes > 0 ? std::min(ep.learned_bytes, configured) : configured);
}

std::vector<sink::Completion> Dispatcher::take_refused() {
    std::vector<sink::Completion> out;
    out.swap(refused_);
    return out;
}

std::int64_t Dispatcher::next_token_ms() const {
    std::int64_t due = -1;
    for (const auto &kv : endpoints_) {
        const Endpoint &ep = kv.second;
        if (ep.config.paused || ep.token_due_ms < 0)
            continue;
        if (due < 0 || ep.token_due_ms < due)
            due = ep.token_due_ms;
    }
    return due;
}

std::vector<std::int32_t> Dispatcher::take_token_due(std::int64_t now_ms) {
    std::vector<std::int32_t> ids;
    for (auto &kv : endpoints_) {
        Endpoint &ep = kv.second;
        if (ep.token_due_ms >= 0 && ep.token_due_ms <= now_ms) {
            ep.token_due_ms = -1;
            if (!ep.config.paused)
                ids.push_back(kv.first);
        }
    }
    return ids;
}

std::optional<Outcome> Dispatcher::complete(const sink::Completion &completion, std::int64_t now_ms) {
    auto rit = requests_.find(completion.token);
    if (rit == requests_.end())
        return std::nullopt;
    InFlight f = std::move(rit->second);
    requests_.erase(rit);
    auto eit = endpoints_.find(f.endpoint_id);
    if (eit == endpoints_.end())
        return std::nullopt;
    Endpoint &ep = eit->second;
    release(ep, f);

    int attempt = 0;
    for (int a : f.attempts)
        attempt = std::max(attempt, a + 1);
    retry::Response response = completion.response();
    response.events = f.ids.size();
    const retry::Outcome verdict = retry::classify(response, attempt, ep.config.policy, now_ms / 1000, random_);

    Outcome o;
    o.endpoint_id = f.endpoint_id;
    o.verdict = verdict.verdict;
    o.delay_ms = verdict.delay_ms;
    o.reason = verdict.reason;
    o.status = completion.transport == retry::Transport::Ok ? completion.status : 0;
    o.duration_us = completion.duration_us;
    o.started_ms = f.started_ms;
    o.oldest_captured_us = f.oldest_captured_us;
    o.events = int(f.ids.size());
    o.webhook_id = std::move(f.webhook_id);
    EndpointStats &st = ep.stats;
    const auto now_u = std::uint64_t(std::max<std::int64_t>(now_ms, 0));
    switch (verdict.verdict) {
    case retry::Verdict::Success:
        o.delivered = std::move(f.ids);
        o.delivered_rows = std::move(f.rows);
        ep.breaker.on_success();
        st.delivered += std::int64_t(o.delivered.size());
        st.last_success_ms = now_ms;
        // A body larger than the limit learned from a 413 passed (a single event goes alone
        // whatever the limit): the receiver takes at least that much.
        if (ep.learned_bytes > 0 && f.event_bytes > ep.learned_bytes) {
            ep.learned_bytes = f.event_bytes;
            ep.dirty = true;
        }
        break;
    case retry::Verdict::Split:
        // 413: the request was too large, not refused. Its events stay as they are (no attempt
        // counted) and go again in requests of at most half its size, down to one event (whose
        // 413 makes it a dead letter). Not a failure of the receiver: the circuit is untouched.
        // (A larger request still in flight from before may answer 413 later: never raise it.)
        {
            const std::size_t half = std::max<std::size_t>(1, (f.event_bytes + 1) / 2);
            ep.learned_bytes = ep.learned_bytes > 0 ? std::min(ep.learned_bytes, half) : half;
        }
        st.failed_attempts++;
        st.last_failure_ms = now_ms;
        st.last_error = o.reason;
        st.last_status = o.status;
        break;
    case retry::Verdict::Gone:
        // The events stay as they are (not their fault); the endpoint stops until resumed.
        ep.config.paused = true;
        st.last_failure_ms = now_ms;
        st.last_error = o.reason;
        st.last_status = o.status;
        o.retry.clear();
        break;
    case retry::Verdict::Retry:
    case retry::Verdict::DeadLetter:
        // Per event: the ones that used up max_attempts become dead letters, the others wait.
        // A record transport says per record what became of it (sink::Completion::records):
        // written ones are delivered, refused ones dead letters at once.
        for (std::size_t k = 0; k < f.ids.size(); ++k) {
            const sink::RecordResult result =
                k < completion.records.size() ? completion.records[k] : sink::RecordResult::NotWritten;
            if (result == sink::RecordResult::Written)
                o.delivered.push_back(f.ids[k]);
            else if (result == sink::RecordResult::Rejected || (verdict.permanent && completion.records.empty()) ||
                     f.attempts[k] + 1 >= ep.config.policy.max_attempts)
                o.dead.push_back(f.ids[k]);
            else
                o.retry.push_back(f.ids[k]);
        }
        st.delivered += std::int64_t(o.delivered.size());
        if (!o.retry.empty() && o.verdict == retry::Verdict::DeadLetter) {
            // Some events of the request still have attempts left: they need a delay.
            o.delay_ms = retry::backoff_ms(ep.config.policy, attempt, random_);
        }
        // The hold is what the receiver asked for; the events of this request also wait for
        // their own backoff (delay_ms = max(Retry-After, backoff)), the other keys do not.
        if (verdict.retry_after_used && verdict.retry_after_ms > 0)
            ep.hold_until_ms = std::max(ep.hold_until_ms, now_ms + std::int64_t(verdict.retry_after_ms));
        // A receiver that answered 413 for one event, or an event refused before it was sent
        // (too large alone for max_request_bytes), says nothing of the receiver's health: the
        // circuit is untouched, so that other events go on.
        const bool receiver_fine = f.never_sent || (o.status == 413 && f.ids.size() == 1);
        if (!receiver_fine)
            ep.breaker.on_failure(now_u);
        if (!f.never_sent)
            st.failed_attempts++;
        st.last_failure_ms = now_ms;
        st.last_error = o.reason;
        st.last_status = o.status;
        break;
    }
    return o;
}

void Dispatcher::release(Endpoint &ep, const InFlight &f) {
    for (std::int64_t id : f.ids)
        ep.in_flight_ids.erase(id);
    ep.in_flight_requests--;
    ep.in_flight_bytes -= std::min(ep.in_flight_bytes, f.body_bytes);
    ep.dirty = true;
}

void Dispatcher::abandon(std::uint64_t token) {
    auto rit = requests_.find(token);
    if (rit == requests_.end())
        return;
    auto eit = endpoints_.find(rit->second.endpoint_id);
    if (eit != endpoints_.end())
        release(eit->second, rit->second);
    requests_.erase(rit);
}

void Dispatcher::restore_stats(const std::vector<EndpointStats> &taken) {
    for (const EndpointStats &old : taken) {
        auto it = endpoints_.find(old.endpoint_id);
        if (it == endpoints_.end())
            continue;
        EndpointStats &st = it->second.stats;
        st.delivered += old.delivered;
        st.failed_attempts += old.failed_attempts;
        if (!st.last_success_ms)
            st.last_success_ms = old.last_success_ms;
        if (!st.last_failure_ms) {
            st.last_failure_ms = old.last_failure_ms;
            st.last_error = old.last_error;
            st.last_status = old.last_status;
        }
        it->second.dirty = true;
    }
}

std::vector<EndpointStats> Dispatcher::take_stats(std::int64_t now_ms) {
    std::vector<EndpointStats> out;
    const auto now_u = std::uint64_t(std::max<std::int64_t>(now_ms, 0));
    for (auto &kv : endpoints_) {
        Endpoint &ep = kv.second;
        if (!ep.dirty)
            continue;
        EndpointStats st = ep.stats;
        st.in_flight_events = ep.in_flight_ids.size();
        st.consecutive_failures = ep.breaker.consecutive_failures();
        st.circuit = ep.breaker.state(now_u);
        st.next_attempt_ms = st.circuit == retry::State::Open ? std::int64_t(ep.breaker.open_until())
                                                              : std::max<std::int64_t>(ep.next_due_ms, 0);
        st.rate_limited = ep.rate_limited;
        st.request_bytes_limit =
            ep.learned_bytes > 0 && ep.learned_bytes + kBodyFrameBytes < ep.config.max_request_bytes ? ep.learned_bytes + kBodyFrameBytes : 0;
        out.push_back(std::move(st));
        ep.stats = EndpointStats{};
        ep.stats.endpoint_id = kv.first;
        ep.dirty = false;
    }
    return out;
}

std::vector<std::int32_t> Dispatcher::take_ended_rotations(std::int64_t now_ms) {
    std::vector<std::int32_t> ended;
    for (auto &kv : endpoints_) {
        EndpointConfig &c = kv.second.config;
        if (c.previous_key_until_ms != 0 && now_ms >= c.previous_key_until_ms) {
            ended.push_back(kv.first);
            c.previous_key.reset();
            c.previous_key_until_ms = 0;
        }
    }
    return ended;
}

bool Dispatcher::has_stats() const {
    for (const auto &kv : endpoints_)
        if (kv.second.dirty)
            return true;
    return false;
}

std::int64_t Dispatcher::next_due_ms() const {
    if (!refused_.empty())
        return 0; // (the past: due now)
    std::int64_t due = -1;
    for (const auto &kv : endpoints_) {
        const Endpoint &ep = kv.second;
        if (ep.config.paused || ep.next_due_ms < 0)
            continue;
        if (due < 0 || ep.next_due_ms < due)
            due = ep.next_due_ms;
    }
    return due;
}

} // namespace pg_sync::dispatch
