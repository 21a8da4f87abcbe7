// The Kafka records of one request; see kafka_records.hpp.
#include "core/kafka_records.hpp"

#include "core/scheduler.hpp"

#include <string>
#include <unordered_map>

namespace pg_sync::kafka {
namespace {

constexpr std::uint32_t kNone = UINT32_MAX;

struct TableOrder {
    std::uint32_t truncate = kNone;     // the latest truncate of the table in this request
    std::vector<std::uint32_t> since;   // records of the table after it
};

} // namespace

void build_records(const std::vector<envelope::EventView> &events, std::vector<sink::Record> &out) {
    std::unordered_map<std::string, std::uint32_t> last_of_key; // scheduler ordering key -> record
    std::unordered_map<std::string, TableOrder> tables;
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
        r.headers.emplace_back("id", std::to_string(e.id));
        r.headers.emplace_back("op", std::string(e.op));
        if (emit) {
            if (e.type)
                r.headers.emplace_back("type", std::string(*e.type));
        } else if (e.table) {
            r.headers.emplace_back("table", std::string(*e.table));
        }

        if (emit) {
            const std::string key = scheduler::emit_key(e.key);
            if (!key.empty()) {
                auto [it, fresh] = last_of_key.try_emplace(key, index);
                if (!fresh) {
                    r.after.push_back(it->second);
                    it->second = index;
                }
            }
        } else {
            TableOrder &t = tables[std::string(e.table.value_or(""))];
            if (truncate) {
                if (t.truncate != kNone)
                    r.after.push_back(t.truncate);
                r.after.insert(r.after.end(), t.since.begin(), t.since.end());
                t.truncate = index;
                t.since.clear();
            } else {
                const std::string key = scheduler::row_key(e.table.value_or(""), e.key.value_or("null"));
                std::uint32_t before = t.truncate;
                auto [it, fresh] = last_of_key.try_emplace(key, index);
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
