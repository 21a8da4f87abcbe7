#include "core/payload_gate.hpp"

#include "core/scheduler.hpp"

namespace pg_sync::dispatch {
namespace {

bool before(const std::unordered_map<std::string, std::int64_t> &lowest, const std::string &name, std::int64_t id) {
    auto it = lowest.find(name);
    return it != lowest.end() && it->second < id;
}

void keep_lowest(std::unordered_map<std::string, std::int64_t> &lowest, const std::string &name, std::int64_t id) {
    auto [it, inserted] = lowest.emplace(name, id);
    if (!inserted && id < it->second)
        it->second = id;
}

std::string domain_of(const QueuedEvent &e) {
    if (e.op == "truncate")
        return {};
    if (e.op == "emit") {
        if (!e.key)
            return {};
        return scheduler::emit_key(std::string_view(*e.key));
    }
    return scheduler::row_key(e.table.value_or(""), e.key.value_or("null"));
}

} // namespace

void PayloadGate::add_dead(const QueuedEvent &dead) {
    const std::string table = dead.op == "emit" ? std::string() : dead.table.value_or("");
    if (dead.op == "truncate") {
        keep_lowest(dead_truncate_, table, dead.id);
    } else if (std::string domain = domain_of(dead); !domain.empty()) {
        keep_lowest(dead_domain_, domain, dead.id);
    }
    if (!table.empty())
        keep_lowest(dead_in_table_, table, dead.id);
}

bool PayloadGate::sendable(const QueuedEvent &e, bool in_flight, std::int64_t now_ms) {
    const bool truncate = e.op == "truncate";
    const std::string table = e.op == "emit" ? std::string() : e.table.value_or("");
    const std::string domain = domain_of(e);
    bool blocked = in_flight || e.next_attempt_ms > now_ms;
    if (!domain.empty())
        blocked = blocked || before(dead_domain_, domain, e.id) || blocked_domains_.count(domain) > 0;
    if (!table.empty()) {
        blocked = blocked || before(dead_truncate_, table, e.id) || barred_tables_.count(table) > 0;
        if (truncate) // the barrier waits for every earlier event of its table
            blocked = blocked || before(dead_in_table_, table, e.id) || tables_with_blocked_.count(table) > 0;
    }
    if (!blocked)
        return true;
    if (!domain.empty())
        blocked_domains_.insert(domain);
    if (!table.empty()) {
        tables_with_blocked_.insert(table);
        if (truncate)
            barred_tables_.insert(table);
    }
    return false;
}

} // namespace pg_sync::dispatch
