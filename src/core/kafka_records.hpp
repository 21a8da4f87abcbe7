// The Kafka records of one request, PostgreSQL-free: one record per event (docs/design.md,
// "Kafka records"). The dispatcher builds them for kafka:// endpoints instead of a body.
//
//   key      the event's key as the queue holds it: the row's key object as compact canonical
//            JSON ({"id":7}), an emit's key argument as a JSON string ("order-7"); no key for a
//            truncate or an emit without key
//   value    the event object exactly as in a webhook body's events array (core/envelope.hpp)
//   headers  id (decimal), op, and table (rows, truncates) or type (emits); traceparent when the
//            writer set pg_sync.traceparent
//   after    the records of the same request that must be written first: the per-key order of
//            core/scheduler.hpp, inside a request (a row waits for the previous record of its
//            key or the previous truncate of its table, whichever is later; a truncate for every
//            earlier record of its table since the previous truncate; a keyed emit for the
//            previous emit of its key). The Kafka sink sends a record only once these are
//            written, so that no two records of one key are ever in flight at once.
#pragma once

#include "core/envelope.hpp"
#include "core/sink.hpp"

#include <vector>

namespace pg_sync::kafka {

// events: one request's events, in id order. Appends one record per event to out.
void build_records(const std::vector<envelope::EventView> &events, std::vector<sink::Record> &out);

} // namespace pg_sync::kafka
