// Which events of an endpoint's head of queue cannot be sent in this pass, so that the delivery
// worker need not hold their payloads once pg_sync.max_worker_memory's share is used up: events
// in flight or waiting to retry, events behind a dead letter of their key (or a dead truncate of
// their table), and events behind any such event (per-key order; a truncate waits for every
// earlier event of its table). Reading on past them with metadata only lets the worker reach the
// keys that can go, instead of stopping at a memory limit filled by blocked events.
//
// Conservative by construction: an event it calls blocked could not be sent now (the scheduler
// would hold it too); an event it lets through may still be held by the scheduler. The worker
// marks the events whose payload it dropped, and the dispatcher never sends those.
#pragma once

#include "core/dispatcher.hpp"

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace pg_sync::dispatch {

class PayloadGate {
  public:
    // The endpoint's dead letters (the first of each key and each dead truncate), before the head.
    void add_dead(const QueuedEvent &dead);
    // Fed the head's events in increasing id order: whether `e` could be sent in this pass.
    bool sendable(const QueuedEvent &e, bool in_flight, std::int64_t now_ms);

  private:
    std::unordered_map<std::string, std::int64_t> dead_domain_;   // key domain -> lowest dead id
    std::unordered_map<std::string, std::int64_t> dead_in_table_; // table -> lowest dead id (any)
    std::unordered_map<std::string, std::int64_t> dead_truncate_; // table -> lowest dead truncate
    std::unordered_set<std::string> blocked_domains_;             // a blocked event of the key came
    std::unordered_set<std::string> tables_with_blocked_;         // a blocked event of the table came
    std::unordered_set<std::string> barred_tables_;               // a blocked truncate of the table came
};

} // namespace pg_sync::dispatch
