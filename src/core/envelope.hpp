// Request bodies for delivery: {"events":[EVENT,...]} from events whose JSON parts are already
// rendered (by PostgreSQL, when they were captured). PostgreSQL-free.
//
// The shape is the contract in docs/design.md, "Event and request format":
//
//   {"id":1042,"op":"update","table":"public.orders","key":{...},"new":{...},"old":{...},
//    "txid":80511,"captured_at":"2026-11-23T10:15:02.123456Z"}
//   {"id":1043,"op":"emit","type":"order.paid","key":"order-7","payload":{...},
//    "txid":80512,"captured_at":"..."}
//
// An event whose writer set pg_sync.traceparent ends with ,"traceparent":"00-...-...-01" (after
// captured_at); other events have no such field.
//
// Fields always appear in this order, with no spaces. JSON fragments (key, new, old, payload) are
// copied verbatim: they come out of PostgreSQL's json/jsonb output and are valid JSON already, so
// re-parsing them here would only cost time. Plain strings (op, table, type, captured_at) are
// escaped the way PostgreSQL's to_json escapes them (json_render.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pg_sync::envelope {

// One queue row, as the worker read it. Views point into the row's storage, which must outlive
// the call. std::nullopt is SQL NULL and is written as JSON null. A present fragment must be
// non-empty valid JSON text.
struct EventView {
    std::int64_t id = 0;
    std::string_view op;                     // insert, update, delete, truncate, snapshot, emit
    std::optional<std::string_view> table;   // text, e.g. public."Orders"; unused for emit
    std::optional<std::string_view> key;     // JSON; forced to null for truncate
    std::optional<std::string_view> new_row; // JSON; unused for emit
    std::optional<std::string_view> old_row; // JSON; unused for emit
    std::optional<std::string_view> type;    // text; emit only
    std::optional<std::string_view> payload; // JSON; emit only
    std::uint64_t txid = 0;
    std::string_view captured_at; // "2026-11-23T10:15:02.123456Z" (see below)
    std::optional<std::string_view> traceparent; // W3C, validated when it was set; none: no trace
};

// Appends s as a JSON string, escaped as PostgreSQL's to_json escapes it (json_render.hpp).
void append_json_string(std::string &out, std::string_view s);

// Appends one EVENT object to out.
void append_event(std::string &out, const EventView &event);

// Exact size append_event() will add when op, table, type and captured_at need no JSON escaping
// (the usual case); a lower bound otherwise. Used to reserve the body in one allocation.
std::size_t event_size(const EventView &event);

// Appends {"events":[EVENT,...]} to out, reserving room first, and returns the number of bytes
// appended (the request's Content-Length when out started empty).
std::size_t append_body(std::string &out, const EventView *events, std::size_t count);
std::size_t append_body(std::string &out, const std::vector<EventView> &events);

// Unix time in microseconds as ISO 8601 UTC with exactly six fractional digits and a 'Z', the
// format of captured_at: 1795428902123456 -> "2026-11-23T10:15:02.123456Z". Negative values count
// back from 1970 (-1 -> "1969-12-31T23:59:59.999999Z"). PostgreSQL timestamps count from 2000:
// add 946684800000000 (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE days in microseconds) first.
// Years outside 0001..9999 are written with as many digits as needed, which is no longer ISO 8601.
std::string format_timestamp(std::int64_t unix_micros);
void append_timestamp(std::string &out, std::int64_t unix_micros);

} // namespace pg_sync::envelope
