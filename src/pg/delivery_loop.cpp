// The delivery worker's loop: one wait over its latch, the transport's file descriptors and a
// timer; transport progress; completions -> outcomes, waiting to be recorded; the next requests
// planned from the cached heads and sent at once (pipelining, docs/delivery.md); passes
// (delivery_pass.cpp) when something calls for one, among them the answers' group falling due
// (pg_sync.ack_delay).
//
//   wait (latch | transport fds | timer)  ->  transport progress  ->  completions
//   plan from cached heads -> submit       (no transaction)
//   pass (one short transaction: record the answers, read, plan, submit, commit)
//
// The loop knows the transport only as a sink::Sink (core/sink.hpp): HTTP today, another
// transport plugs in without a change here. Wake-ups: a commit that queued events sets this
// worker's latch (launcher.cpp); a sweep every pg_sync.sweep_interval catches what no commit
// announced (COMMIT PREPARED).
//
// A pass that fails (a PostgreSQL ERROR, caught in guard.cpp) does not end the worker: the error
// is logged and shown in pg_sync.workers (state 'retrying', last_error), the requests in flight
// carry on, and the pass is tried again after core's backoff (worker::PassRetry). Any other error
// outside a pass ends the process (ERROR is FATAL here: PG_exception_stack is NULL).
#include "pg/pg_prelude.hpp"

#include "pg/delivery.hpp"
#include "pg/guard.hpp"
#include "pg/workers.hpp"

#include <map>
#include <optional>
#include <utility>

namespace pg_sync::pg {
namespace {

std::int64_t now_unix_ms() { return unix_ms(GetCurrentTimestamp()); }

// Answers -> outcomes, waiting to be recorded (w.acks); the cached heads drop the delivered
// events at once, so that the next events of their keys may be planned before the outcome is
// committed (pipelining, docs/delivery.md). Returns whether any came.
bool collect_completions(DeliveryWorker &w) {
    std::vector<sink::Completion> done = w.transport.take_completions();
    // Requests the dispatcher refused to send (an event larger than max_request_bytes) end here
    // like the transport's.
    for (sink::Completion &c : w.dispatcher.take_refused())
        done.push_back(std::move(c));
    if (done.empty())
        return false;
    const std::int64_t now_ms = now_unix_ms();
    for (const sink::Completion &c : done) {
        std::optional<dispatch::Outcome> o = w.dispatcher.complete(c, now_ms);
        if (!o)
            continue;
        const bool success = o->verdict == retry::Verdict::Success;
        w.touched.insert(o->endpoint_id);
        w.replan.insert(o->endpoint_id);
        if (!success)
            w.stats.mark_urgent();
        w.heads.on_outcome(*o);
        w.acks.add(now_ms, success);
        w.outcomes.push_back(std::move(*o));
    }
    return true;
}

uint32 wait_events(int want) {
    return ((want & sink::kWantRead) ? WL_SOCKET_READABLE : 0) | ((want & sink::kWantWrite) ? WL_SOCKET_WRITEABLE : 0);
}

// The wait set: latch, postmaster death, and the transport's descriptors. Rebuilt when
// descriptors come or go; when only the interest in one changes (read <-> write, every request
// does that), the event is modified in place.
struct WaitSet {
    WaitEventSet *set = nullptr;
    std::map<int, std::pair<int, int>> registered; // fd -> (position, want)

    void sync(const std::map<int, int> &fds, bool fds_replaced) {
        bool same_fds = set && !fds_replaced && fds.size() == registered.size();
        if (same_fds)
            for (const auto &kv : fds)
                if (registered.count(kv.first) == 0 || kv.second == 0) {
                    same_fds = false;
                    break;
                }
        if (same_fds) {
            for (const auto &kv : fds) {
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
        set = CreateWaitEventSet(TopMemoryContext, int(fds.size()) + 2);
        AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
        AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
        for (const auto &kv : fds)
            if (const uint32 events = wait_events(kv.second))
                registered[kv.first] = {AddWaitEventToSet(set, events, kv.first, nullptr, nullptr), kv.second};
    }
};

// A pass failed: log it, show it, schedule the next attempt.
void pass_failed(DeliveryWorker &w, WorkerSlot *slot, const ErrorReport &error) {
    const std::int64_t retry_at = w.pass_retry.failed(now_unix_ms());
    const long delay = long(retry_at - now_unix_ms());
    ereport(LOG, (errmsg("pg_sync: delivery pass failed (%d in a row), next attempt in %ld ms: %s",
                         w.pass_retry.failures(), delay, error.message),
                  errdetail("%zu requests stay in flight; %zu finished requests wait to be recorded.",
                            w.dispatcher.in_flight_requests(), w.outcomes.size())));
    pgstat_report_activity(STATE_IDLE, nullptr);
    set_worker_error(slot, error.message);
    set_worker_state(slot, "retrying");
}

} // namespace

void run_delivery_loop(DeliveryWorker &w, WorkerSlot *slot, Oid extension_oid, SettingsReloaded on_reload) {
    WaitSet wait_set;
    WaitEvent occurred[64];
    bool woken = true, first = true;
    std::int64_t next_sweep_ms = 0;
    for (;;) {
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
            on_reload(w);
        }
        const bool answers = collect_completions(w);
        const std::int64_t now_ms = now_unix_ms();
        // max_rate: endpoints whose next token is there plan again, as after an answer (from
        // their cached heads, or in a pass when ack_delay is 0 or the cache is not enough).
        bool tokens = false;
        for (std::int32_t id : w.dispatcher.take_token_due(now_ms)) {
            w.touched.insert(id);
            w.replan.insert(id);
            tokens = true;
        }
        const std::int64_t due = w.dispatcher.next_due_ms();
        const bool retry_due = due >= 0 && due <= now_ms;
        const bool sweep = now_ms >= next_sweep_ms;
        const bool config = w.configured && slot->config_generation != w.config_generation;
        const std::int64_t ack_delay = settings.ack_delay_ms;
        const std::int64_t stats_due_ms =
            worker::stats_pass_ms(w.stats.next_ms(w.dispatcher.has_stats()), w.acks.due_ms(ack_delay));
        const bool stats = stats_due_ms >= 0 && stats_due_ms <= now_ms;
        const bool retry_pass = w.pass_retry.failing();
        const bool full = woken || sweep || retry_due || config || first || retry_pass;
        // Pipelining: the endpoints with answers plan their next requests from their cached heads
        // and send them now; the answers wait to be recorded in a group. An endpoint whose cache
        // cannot fill its request slots needs a read of the queue, which only a pass does (after
        // recording every answer: a read never sees an answered event as pending).
        bool read_needed = false;
        if ((answers || tokens) && !full && ack_delay > 0)
            read_needed = plan_pipelined(w, now_ms);
        if ((full || stats || read_needed || (tokens && ack_delay == 0) || w.acks.due(now_ms, ack_delay)) &&
            w.pass_retry.may_run(now_ms)) {
            // After a failure the pass looks at every endpoint: what woke the failed one is gone.
            const PassRequest request{full, first, sweep || retry_due || config || first || retry_pass};
            // Commits wake the worker again before the pass reads the queue (a commit that
            // skipped its wake-up is visible to that read); the pass's end decides again.
            set_events_wake(slot, true);
            ErrorReport error;
            if (!run_pass(w, slot, extension_oid, request, &error)) {
                pass_failed(w, slot, error);
            } else {
                if (retry_pass)
                    ereport(LOG, (errmsg("pg_sync: delivery pass succeeded after %d failures", w.pass_retry.failures())));
                w.pass_retry.succeeded();
                first = false;
                woken = false;
                if (sweep)
                    next_sweep_ms = now_ms + settings.sweep_interval_ms;
                // The connection budget keeps a connection for every endpoint that may send
                // (http::next_group_to_start): a slow endpoint cannot take them all.
                w.transport.set_groups(w.dispatcher.sending_endpoints());
                set_worker_state(slot, w.dispatcher.in_flight_requests() ? "delivering" : "idle");
                set_events_wake(slot, worker::events_wake_worker(w.dispatcher.sending_endpoints(), w.configured));
            }
        }

        worker::Deadlines deadlines;
        deadlines.now_ms = now_unix_ms();
        deadlines.sweep_ms = next_sweep_ms;
        deadlines.retry_due_ms = w.dispatcher.next_due_ms();
        deadlines.token_ms = w.dispatcher.next_token_ms();
        deadlines.stats_ms = worker::stats_pass_ms(w.stats.next_ms(w.dispatcher.has_stats()), w.acks.due_ms(ack_delay));
        deadlines.pass_retry_ms = w.pass_retry.retry_at_ms();
        deadlines.ack_ms = w.acks.due_ms(ack_delay);
        deadlines.transport_ms = w.transport.timeout_ms();
        const long timeout = worker::wait_timeout_ms(deadlines);
        if (timeout <= 0) {
            w.transport.on_timeout(); // the transport's timer is due now
            continue;
        }
        const bool fds_replaced = w.transport.wait_fds_replaced();
        if (w.transport.wait_fds_changed() || !wait_set.set)
            wait_set.sync(w.transport.wait_fds(), fds_replaced);
        int n = WaitEventSetWait(wait_set.set, timeout, occurred, lengthof(occurred), PG_WAIT_EXTENSION);
        // A latch that is already set makes WaitEventSetWait return at once with the latch alone,
        // without looking at the sockets. Every commit that queues events sets it, so under a
        // steady stream of commits the requests in flight would never progress (the stalls of
        // bench/results/sustained-diagnosis.md, C). After the latch, look at the sockets too,
        // without waiting.
        if (n == 1 && (occurred[0].events & WL_LATCH_SET)) {
            ResetLatch(MyLatch);
            woken = true;
            n = WaitEventSetWait(wait_set.set, 0, occurred, lengthof(occurred), PG_WAIT_EXTENSION);
        }
        for (int i = 0; i < n; ++i) {
            const WaitEvent &ev = occurred[i];
            if (ev.events & WL_LATCH_SET) {
                ResetLatch(MyLatch);
                woken = true;
                continue;
            }
            int want = 0;
            if (ev.events & WL_SOCKET_READABLE)
                want |= sink::kWantRead;
            if (ev.events & WL_SOCKET_WRITEABLE)
                want |= sink::kWantWrite;
            if (want)
                w.transport.on_socket(ev.fd, want);
        }
        if (n == 0 && w.transport.timeout_ms() == 0)
            w.transport.on_timeout();
    }
}

} // namespace pg_sync::pg
