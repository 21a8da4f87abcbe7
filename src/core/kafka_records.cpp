// The Kafka records of one request; see kafka_records.hpp.
#include "core/kafka_records.hpp"

#include <string>
#include <string_view>
#include <unordered_map>

namespace pg_sync::kafka {
namespace {

constexpr std::uint32_t kNone = UINT32_MAX;

// The ordering domains of core/scheduler.hpp, keyed by views into the events (which outlive the
// call), so that placing a record allocates nothing but the maps' nodes.
struct TableOrder {
    std::uint32_t truncate = kNone;                         // the table's latest truncate
    std::vector<std::uint32_t> since;                       // its records after that truncate
    std::unordered_map<std::string_view, std::uint32_t> rows; // key JSON -> latest record of it
};

} // namespace

void build_records(const std::vector<envelope::EventView> &events, std::vector<sink::Record> &out) {
    std::unordered_map<std::string_view, TableOrder> tables;
    std::unordered_map<std::string_view, std::uint32_t> emits; // emit key JSON -> latest record
    const std::uint32_t base = std::uint32_t(out.size());
    out.reserve(out.size() + events.size());
    for (std::size_t k = 0; k < events.size(); ++k) {
        const envelope::EventView &e = events[k];
        const std::uint32_t index = base + std::uint32_t(k);
        sink::Record r;
        const bool emit = e.op == "emit";
        const bool truncate = e.op == "truncate";
        if (!truncate && e.key && *e.key != "null")
            r.key = std::string(*e.key);
        r.value.reserve(envelope::event_size(e));
        envelope::append_event(r.value, e);
        r.headers.reserve(3);
        r.headers.emplace_back("id", std::to_string(e.id));
        r.headers.emplace_back("op", std::string(e.op));
        if (emit) {
            if (e.type)
                r.headers.emplace_back("type", std::string(*e.type));
        } else if (e.table) {
            r.headers.emplace_back("table", std::string(*e.table));
        }
        if (e.traceparent)
            r.headers.emplace_back("traceparent", std::string(*e.traceparent));

        if (emit) {
            // Keyed emits are ordered by their key; without one, with nothing.
            if (e.key) {
                auto [it, fresh] = emits.try_emplace(*e.key, index);
                if (!fresh) {
                    r.after.push_back(it->second);
                    it->second = index;
                }
            }
        } else {
            TableOrder &t = tables[e.table.value_or(std::string_view())];
            if (truncate) {
                if (t.truncate != kNone)
                    r.after.push_back(t.truncate);
                r.after.insert(r.after.end(), t.since.begin(), t.since.end());
                t.truncate = index;
                t.since.clear();
            } else {
                // After the previous record of its key or the table's latest truncate, whichever
                // came later (each of those waited for the other one, if earlier).
                std::uint32_t before = t.truncate;
                auto [it, fresh] = t.rows.try_emplace(e.key.value_or(std::string_view("null")), index);
                if (!fresh) {
                    if (before == kNone || it->second > before)
                        before = it->second;
                    it->second = index;
                }
                if (before != kNone)
                    r.after.push_back(before);
                t.since.push_back(index);
            }
        }
        out.push_back(std::move(r));
    }
}

} // namespace pg_sync::kafka
