// Request bodies in CloudEvents JSON batch mode (format => 'cloudevents'), PostgreSQL-free.
// CloudEvents 1.0, JSON Event Format section 4 ("JSON Batch Format"): the body is a JSON array of
// events in the JSON event format, sent with Content-Type application/cloudevents-batch+json.
// Each event, in this order, without spaces:
//
//   {"specversion":"1.0",
//    "id":"1042",                                  the event id (a string)
//    "source":"/pg_sync/<database>/<table>",       table events; emits: "/pg_sync/<database>"
//    "type":"pg_sync.update",                      pg_sync.<op>; emits: the emit's own type
//    "time":"2026-11-23T10:15:02.123456Z",         captured_at (RFC 3339)
//    "subject":"{\"id\":7}",                       the key as compact JSON text; absent without key
//    "datacontenttype":"application/json",
//    "traceparent":"00-...-...-01",                the Distributed Tracing extension; absent without trace
//    "data":{...}}                                 the event object of the default format
//
// source is a URI-reference: database and table names are percent-encoded (every byte but
// A-Z a-z 0-9 - . _ ~). id is unique per database (the queue's sequence), so source + id is
// unique per event as CloudEvents requires; a redelivered event keeps its id.
#pragma once

#include "core/envelope.hpp"

#include <cstddef>
#include <string>
#include <string_view>

namespace pg_sync::cloudevents {

inline constexpr std::string_view kBatchContentType = "application/cloudevents-batch+json";

// Appends one CloudEvent for the event, from the database named `database`.
void append_event(std::string &out, const envelope::EventView &event, std::string_view database);
// About what append_event() adds, for batching by size (escaping and encoding can add more).
std::size_t event_size(const envelope::EventView &event, std::string_view database);
// Appends [EVENT,...] and returns the number of bytes appended.
std::size_t append_batch(std::string &out, const envelope::EventView *events, std::size_t count,
                         std::string_view database);

// RFC 3986 percent-encoding of every byte but the unreserved ones.
void append_percent_encoded(std::string &out, std::string_view text);

} // namespace pg_sync::cloudevents
