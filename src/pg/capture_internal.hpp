// Inside change capture: the types and functions the capture files share (src/pg/capture_*.cpp,
// value_render.cpp, session_settings.cpp, queue_writer.cpp). Not for the rest of the library,
// which sees only capture.hpp.
//
// Who calls whom:
//   capture_trigger.cpp (pg_sync._capture, render_snapshot)
//     -> capture_plans.cpp     get_plan(): which endpoints, columns, renderers, filter per relation
//          -> value_render.cpp    plan_rendering(): how one column becomes JSON
//          -> capture_filter.cpp  prepare_filter_as(): the filter, checked and prepared
//     -> capture_filter.cpp    filter_passes()
//     -> value_render.cpp      render_object(), render_key()
//     -> queue_writer.cpp      queue_insert()
//   session_settings.cpp: fixed settings and the filter author's rights, for filter and key code.
//   hooks.cpp calls the invalidation and end-of-statement functions declared at the bottom.
//
// All of it calls PostgreSQL throughout and is C-style: no object with a destructor lives in
// these frames (see guard.hpp).
#pragma once

#include "pg/pg_prelude.hpp"

namespace pg_sync::pg::capture {

// How one column is rendered as JSON. The fast renderers cover the common built-in types (after
// looking through domains); everything else goes through PostgreSQL's to_json.
enum class RenderKind : uint8 { Bool, Int2, Int4, Int8, NumberOut, Text, StringOut, RawOut, DateTime, ToJson };

struct ColumnPlan {
    AttrNumber attnum;
    char *key;        // "\"name\":" rendered once
    int key_len;
    RenderKind kind;
    bool canonical;   // a key column: rendered the same whatever the session's settings
    Oid base_type;    // for DateTime
    bool byval;
    int16 typlen;
    FmgrInfo fn;      // output function (NumberOut, StringOut, RawOut) or to_json (ToJson)
    // DateTime: the last value rendered and its text, with the time zone it was rendered in
    // (timestamptz outside keys). The rows of a statement often share a timestamp (now()).
    mutable bool has_last;
    mutable Datum last_value;
    mutable const pg_tz *last_tz;
    mutable int last_len;
    mutable char last_text[MAXDATELEN + 1];
};

// Row operations, as bits of an endpoint's `events` and as the op of one queue row.
enum EventBits : uint8 { EV_INSERT = 1, EV_UPDATE = 2, EV_DELETE = 4, EV_TRUNCATE = 8 };

struct EndpointPlan {
    int32 endpoint_id;
    Oid tracked_relid;     // the tracked table (the relation or a partitioned ancestor)
    uint8 events;
    bool columns_limited;  // `columns` was given: UPDATEs touching none of them are skipped
    int ncols;
    ColumnPlan *cols;
    int nkeys;
    ColumnPlan *keys;
    bool keys_need_settings; // a key column is rendered by to_json: under the canonical settings
    SPIPlanPtr filter;     // NULL when no filter
    // Who wrote the filter (it runs with that role's rights only, security-restricted) and the
    // session settings recorded when it was written (it is parsed and run under them).
    Oid filter_role;
    int nsettings;
    char **setting_names;
    char **setting_values;
    // Per statement (statement_serial), not per row: the author's rights were checked, and
    // whether the session's settings already are the recorded ones (then none is set per row).
    mutable uint64 checked_serial;
    mutable bool settings_match;
};

// The capture plan of one relation (the one the trigger fires on).
struct RelPlan {
    Oid relid;             // hash key: the relation the trigger fires on (a partition, maybe)
    Oid tracked_relid;     // the tracked table (relid itself or a partitioned ancestor)
    bool valid;
    int in_use;            // trigger frames using this entry
    MemoryContext cxt;
    text *table_name;      // "schema.table" of the tracked table
    int neps;
    EndpointPlan *eps;
};

// --- capture_plans.cpp ---
// The relation's plan, built if missing or invalid (and not in use by an outer frame).
RelPlan *get_plan(Relation rel);
// pg_sync._tracked's OID (looked up once, forgotten at its invalidation).
Oid tracked_table_oid();

// --- value_render.cpp ---
// Decides how the column is rendered and renders its "name": once, when a plan is built.
void plan_rendering(ColumnPlan *col, Form_pg_attribute att, MemoryContext cxt, bool canonical);
// The listed columns of a deformed slot as a JSON object (a json datum).
Datum render_object(const ColumnPlan *cols, int ncols, TupleTableSlot *slot);
// The key of a row: the same text for the same values in every session.
Datum render_key(const EndpointPlan *ep, TupleTableSlot *slot);

// --- capture_filter.cpp ---
// The role that wrote a filter must still exist and be able to read the tracked table.
void check_filter_role(Oid role, Oid tracked);
// Checks and prepares a filter (inside an SPI connection) as its author, under its settings.
SPIPlanPtr prepare_filter_as(const char *filter, Oid rowtype, Oid role, int nsettings, const char *const *names,
                             const char *const *values);
// Runs the endpoint's filter on the row(s): true when the event is to be captured.
bool filter_passes(const EndpointPlan *ep, TupleTableSlot *new_slot, TupleTableSlot *old_slot);

// --- session_settings.cpp ---
// "name=value" elements of a text[] (pg_sync._session_settings()) -> two arrays, in the current
// memory context.
void split_settings(Datum array, int *n, char ***names, char ***values);
// Applies the settings (those that differ) until leave_settings(nest), which also undoes what the
// code run in between set. An error in between is cleaned up by the (sub)transaction's abort.
int enter_settings(int n, const char *const *names, const char *const *values);
void leave_settings(int nest);
// The settings under which keys are rendered (TimeZone UTC, DateStyle ISO, ...).
int enter_canonical_settings();
// search_path = pg_catalog, for filters and keys (PushOverrideSearchPath/PopOverrideSearchPath).
void push_catalog_search_path();
void pop_catalog_search_path();
// Runs as `role`, security-restricted, until leave_role().
struct SavedUser {
    Oid user;
    int context;
};
SavedUser enter_role(Oid role);
void leave_role(SavedUser saved);

// --- queue_writer.cpp ---
// pg_sync.<name> (a relation of the extension); errors when the extension or it is missing.
Oid own_relation(const char *name);
// A new statement captures: reads the writer's pg_sync.traceparent for its rows (once, not per row).
void queue_writer_new_statement();
// Writes one queue row (and marks the worker to be woken at commit).
void queue_insert(int32 endpoint_id, uint8 op, text *table_name, Datum key, Datum new_row, Datum old_row,
                  bool key_null, bool new_null, bool old_null);

} // namespace pg_sync::pg::capture
