// libFuzzer target for src/core/scheduler: plan() on fuzzed event lists and limits.
//
// Input: an 8-byte header, then 4 bytes per event (see decode()). Checks, against the rules in
// scheduler.hpp restated here with a quadratic reference:
//   - plan() throws std::invalid_argument exactly when ids do not strictly increase, nothing else;
//   - at most min(max_requests, max_in_flight - in_flight_requests) requests, none when paused or
//     batch_size is 0; each non-empty, in increasing index order, within batch_size, bytes equal to
//     the sum, within max_request_bytes unless alone; no event in two requests;
//   - only ready events (queued, next_attempt_at_ms <= now) are sent;
//   - per-key order: a sent event's predecessors that are in the input are all in the same request;
//   - progress: a ready event with no predecessor is left out only when every slot is used;
//   - probe_only() limits; plan() is deterministic.
// Built and run by scripts/fuzz.sh.
#include "fuzz_common.hpp"
#include "core/scheduler.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

namespace sch = pg_sync::scheduler;

constexpr std::size_t kMaxEvents = 256;

struct Input {
    std::vector<sch::Candidate> events;
    sch::Limits limits;
    std::int64_t now_ms = 0;
    bool probe = false;
    std::size_t probe_events = 1;
    bool increasing = true;
};

// Header: h0 batch_size (%10, 0xFF unlimited), h1 max_in_flight (%6, 0xFF unlimited),
// h2 in_flight_requests (%6), h3 max_requests (%6, 0xFF unlimited), h4|h5<<8 max_request_bytes,
// h6 flags (1 paused, 2 probe_only, 4 raw keys shared by all kinds and tables, 8 ids may repeat or
// decrease), h7 now_ms = h7 * 100 and probe_events = h7 % 4.
// Event: e0 kind (bits 0-1, 3 = row), state (bits 2-3, 3 = queued), next_attempt (bits 4-5:
// 0, now, now + 1, INT64_MIN); e1 table (bits 0-1) and key number (bits 2-4; 0 = no key);
// e2 id delta; e3 bytes (* 16, 0xFF = huge).
Input decode(const std::uint8_t *data, std::size_t size) {
    std::uint8_t h[8] = {};
    for (std::size_t i = 0; i < 8 && i < size; ++i)
        h[i] = data[i];
    Input in;
    auto count = [](std::uint8_t b, unsigned mod) { return b == 0xFF ? sch::kUnlimited : std::size_t{b} % mod; };
    in.limits.batch_size = count(h[0], 10);
    in.limits.max_in_flight = count(h[1], 6);
    in.limits.in_flight_requests = h[2] % 6;
    in.limits.max_requests = count(h[3], 6);
    in.limits.max_request_bytes = std::size_t{h[4]} | (std::size_t{h[5]} << 8);
    in.limits.paused = h[6] & 1;
    in.probe = h[6] & 2;
    const bool raw_keys = h[6] & 4;
    const bool any_ids = h[6] & 8;
    in.now_ms = std::int64_t{h[7]} * 100;
    in.probe_events = h[7] % 4;

    std::int64_t id = 1;
    for (std::size_t off = 8; off + 4 <= size && in.events.size() < kMaxEvents; off += 4) {
        const std::uint8_t *e = data + off;
        sch::Candidate ev;
        const unsigned kind = e[0] & 3, state = (e[0] >> 2) & 3, timing = (e[0] >> 4) & 3;
        ev.kind = kind == 1 ? sch::OrderKind::Truncate : kind == 2 ? sch::OrderKind::Emit : sch::OrderKind::Row;
        ev.state = state == 0 ? sch::State::InFlight : state == 1 ? sch::State::Dead : sch::State::Queued;
        ev.next_attempt_at_ms = timing == 0   ? 0
                                : timing == 1 ? in.now_ms
                                : timing == 2 ? in.now_ms + 1
                                              : std::numeric_limits<std::int64_t>::min();
        const unsigned key = (e[1] >> 2) & 7;
        if (ev.kind != sch::OrderKind::Emit)
            ev.table = "public.t" + std::to_string(e[1] & 3);
        if (raw_keys) {
            ev.key = key == 0 ? std::string() : std::string(1, static_cast<char>('a' + key));
        } else if (ev.kind == sch::OrderKind::Row) {
            // Key 7: a row whose key renders empty (still ordered after its table's truncates).
            ev.key = key == 0 ? std::string() : sch::row_key(ev.table, key == 7 ? "" : "{\"id\":" + std::to_string(key) + "}");
        } else if (ev.kind == sch::OrderKind::Emit) {
            ev.key = key == 0 ? sch::emit_key(std::nullopt) : sch::emit_key(key == 7 ? "" : std::to_string(key));
        }
        if (any_ids)
            id += static_cast<std::int8_t>(e[2]);
        else
            id += std::int64_t{e[2]} + 1;
        ev.id = id;
        ev.bytes = e[3] == 0xFF ? std::numeric_limits<std::size_t>::max() / 4 : std::size_t{e[3]} * 16;
        in.events.push_back(ev);
    }
    for (std::size_t i = 1; i < in.events.size(); ++i)
        if (in.events[i - 1].id >= in.events[i].id)
            in.increasing = false;
    return in;
}

bool keyed(const sch::Candidate &e) { return e.kind != sch::OrderKind::Truncate && !e.key.empty(); }

// Whether earlier event a must be delivered before (or with) later event b.
bool predecessor(const sch::Candidate &a, const sch::Candidate &b) {
    if (keyed(a) && keyed(b) && a.key == b.key)
        return true;
    if (b.kind == sch::OrderKind::Row && a.kind == sch::OrderKind::Truncate && a.table == b.table)
        return true;
    if (b.kind == sch::OrderKind::Truncate && a.kind != sch::OrderKind::Emit && a.table == b.table)
        return true;
    return false;
}

bool same_plan(const std::vector<sch::Batch> &x, const std::vector<sch::Batch> &y) {
    if (x.size() != y.size())
        return false;
    for (std::size_t i = 0; i < x.size(); ++i)
        if (x[i].events != y[i].events || x[i].bytes != y[i].bytes)
            return false;
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const Input in = decode(data, size);
    sch::Limits limits = in.limits;
    if (in.probe) {
        limits = sch::probe_only(in.limits, in.probe_events);
        FUZZ_CHECK(limits.max_in_flight == 1 && limits.max_requests == 1, "probe_only: one request");
        FUZZ_CHECK(limits.batch_size == std::min(in.limits.batch_size, in.probe_events), "probe_only batch size");
        FUZZ_CHECK(limits.paused == in.limits.paused && limits.max_request_bytes == in.limits.max_request_bytes &&
                       limits.in_flight_requests == in.limits.in_flight_requests,
                   "probe_only keeps the other limits");
    }

    std::vector<sch::Batch> plan;
    try {
        plan = sch::plan(in.events, limits, in.now_ms);
    } catch (const std::invalid_argument &) {
        FUZZ_CHECK(!in.increasing, "invalid_argument only for ids that do not strictly increase");
        return 0;
    }
    FUZZ_CHECK(in.increasing, "ids that do not strictly increase are refused");
    FUZZ_CHECK(same_plan(plan, sch::plan(in.events, limits, in.now_ms)), "plan is deterministic");

    const std::size_t n = in.events.size();
    std::size_t slots =
        limits.max_in_flight > limits.in_flight_requests ? limits.max_in_flight - limits.in_flight_requests : 0;
    slots = std::min(slots, limits.max_requests);
    if (limits.paused || slots == 0 || limits.batch_size == 0)
        FUZZ_CHECK(plan.empty(), "nothing to send when paused, out of slots or batch_size is 0");
    FUZZ_CHECK(plan.size() <= slots, "request count within the slots");

    constexpr std::size_t kUnplaced = std::numeric_limits<std::size_t>::max();
    std::vector<std::size_t> batch_of(n, kUnplaced);
    for (std::size_t b = 0; b < plan.size(); ++b) {
        const sch::Batch &batch = plan[b];
        FUZZ_CHECK(!batch.events.empty(), "requests are non-empty");
        FUZZ_CHECK(batch.events.size() <= limits.batch_size, "request within batch_size");
        std::size_t bytes = 0;
        bool overflow = false;
        for (std::size_t k = 0; k < batch.events.size(); ++k) {
            const std::size_t i = batch.events[k];
            FUZZ_CHECK(i < n, "index in range");
            FUZZ_CHECK(k == 0 || batch.events[k - 1] < i, "indexes increase within a request");
            FUZZ_CHECK(batch_of[i] == kUnplaced, "no event in two requests");
            batch_of[i] = b;
            const sch::Candidate &e = in.events[i];
            FUZZ_CHECK(e.state == sch::State::Queued && e.next_attempt_at_ms <= in.now_ms, "only ready events are sent");
            overflow = overflow || e.bytes > std::numeric_limits<std::size_t>::max() - bytes;
            bytes += e.bytes; // wraps like the planner's sum when there is no cap
        }
        FUZZ_CHECK(batch.bytes == bytes, "request bytes are the sum of its events");
        if (limits.max_request_bytes > 0 && batch.events.size() > 1)
            FUZZ_CHECK(!overflow && bytes <= limits.max_request_bytes, "request within max_request_bytes");
    }

    for (std::size_t j = 0; j < n; ++j) {
        const sch::Candidate &e = in.events[j];
        bool has_predecessor = false;
        for (std::size_t i = 0; i < j; ++i) {
            if (!predecessor(in.events[i], e))
                continue;
            has_predecessor = true;
            if (batch_of[j] != kUnplaced && batch_of[i] != batch_of[j]) {
                std::fprintf(stderr, "event #%zu (id %lld) sent in request %zu, predecessor #%zu (id %lld) in %s\n", j,
                             static_cast<long long>(e.id), batch_of[j], i, static_cast<long long>(in.events[i].id),
                             batch_of[i] == kUnplaced ? "none" : std::to_string(batch_of[i]).c_str());
                FUZZ_CHECK(false, "per-key order: predecessors travel in the same request");
            }
        }
        const bool ready = e.state == sch::State::Queued && e.next_attempt_at_ms <= in.now_ms;
        if (ready && !has_predecessor && batch_of[j] == kUnplaced && !limits.paused && limits.batch_size > 0)
            FUZZ_CHECK(plan.size() == slots, "a free ready event waits only when every slot is used");
    }
    return 0;
}
