// The delivery worker's SQL: typed functions over prepared SPI plans (kept for the life of the
// process) on pg_sync._queue, _dead_letters, _endpoints, _endpoint_state and _attempts. Result
// columns are looked up by name and their types checked once per process.
//
// Every function here is C-style: plain parameters and results (rows are PODs pointing into
// memory that lives until release_rows() or the end of the pass), no object with a destructor
// in any frame, so a PostgreSQL ERROR may longjmp out of them. The pass (delivery_pass.cpp)
// calls them only through postgres_call (guard.hpp). Included after postgres.h.
#pragma once

#include "pg/pg_prelude.hpp"

namespace pg_sync::pg {
struct WorkerSlot;
}

namespace pg_sync::pg::queue_store {

// A text value of a row; data is not NUL-terminated.
struct Text {
    const char *data;
    int len;
    bool null;
};

// A nullable scalar of a row.
struct Int {
    int64 value;
    bool null;
};

// A row of pg_sync._queue (or, with only id/op/tbl/key set, of pg_sync._dead_letters).
struct EventRow {
    int64 id;
    Text op, tbl, key, new_row, old_row, emit_type;
    // fetch_head leaves new_row and old_row unread (not detoasted: a blocked event's payload is
    // never fetched from TOAST); payload() reads them when the worker keeps the payload.
    Datum new_raw, old_raw;
    bool payloads_pending;
    Int txid;            // xid8, as unsigned bits
    Int captured_at;     // TimestampTz
    Int attempts;
    Int next_attempt_at; // TimestampTz
    Text traceparent;    // head reads: the writer's pg_sync.traceparent (NULL: none)
    Oid table;           // head reads: the table (or partition) the row is in, and its TID
    ItemPointerData tid;
};

// A row of pg_sync._endpoints, headers joined as "Name: value" lines separated by '\n'.
struct EndpointRow {
    Int id, batch_size, max_attempts, timeout_ms, max_in_flight, retry_base_ms, retry_max_ms, paused;
    Text name, url, secret, header_lines, kafka_settings, format, previous_secret;
    Int previous_secret_until; // TimestampTz; NULL: no rotation
    Text max_rate, max_request_bytes, permanent_statuses; // as text; null before 0.3.0's update
    Text tls_client_cert, tls_client_key, tls_ca, oauth2; // NULL when not set; oauth2 '{}' when not set
};

// A row of the ring pg_sync._attempts.
struct AttemptRow {
    int32 slot;
    int32 endpoint_id;
    TimestampTz started_at, finished_at;
    int32 events;
    int32 status;      // 0: NULL (no HTTP status)
    const char *error; // NULL: none
    double lag_ms;
    bool lag_null;
};

// A row of pg_sync._endpoint_state (values accumulated since the last write, current values).
struct EndpointStateRow {
    int32 endpoint_id;
    int64 delivered, failed_attempts;
    Int last_success_at, last_failure_at; // TimestampTz
    const char *last_error;               // NULL: none
    int32 last_status;                    // 0: NULL
    int32 in_flight, consecutive_failures;
    const char *circuit;
    Int next_attempt_at; // TimestampTz
    bool rate_limited;
    int32 request_bytes_limit; // 0: NULL
};

// --- The pass's transaction --------------------------------------------------------------------

// Starts the pass: transaction, SPI connection, snapshot.
void begin_pass();
// Locks the extension for the pass (DROP EXTENSION locks it first, then waits for the pass) and
// says whether it still exists.
bool lock_extension(Oid extension_oid);
// DROP EXTENSION: commits, marks the slot and ends the process.
pg_attribute_noreturn() void exit_extension_dropped(WorkerSlot *slot);
// Commits the pass; !durable: with synchronous_commit = off for this commit only (it does not wait
// for the WAL flush; core/worker_policy AckGroup::durable says when).
void commit_pass(bool durable);
// After the commit: the activity and statistics reports (their errors are not the pass's).
void report_idle();

// --- Writes ------------------------------------------------------------------------------------

// At start: nothing is in flight, circuits closed; the state of dropped endpoints goes.
void reset_endpoint_state();
// The delivered events: each by its TID in `tables` (read with the head) when the row there is
// still the event (no index search, no row lock: the DELETE statement locked every row first for
// the replica-only BEFORE ROW trigger, and searched the index per id), the others (no TID, moved,
// or a table that is not the queue) by id with a DELETE statement.
void delete_delivered(int32 endpoint_id, const int64 *ids, const Oid *tables, const ItemPointerData *tids, int n);
void schedule_retry(int32 endpoint_id, const int64 *ids, int n, TimestampTz next_attempt_at, const char *reason,
                    int32 status, TimestampTz attempt_started_at);
void move_to_dead_letters(int32 endpoint_id, const int64 *ids, int n, int32 status, const char *reason,
                          TimestampTz attempt_started_at);
// 410 Gone: pauses the endpoint (unless paused already) and logs it.
void pause_gone(int32 endpoint_id, const char *reason);
// Erases the previous secret of these endpoints whose rotation ended (pg_sync.rotate_secret),
// skipping rows locked by a configuration change; returns how many were erased.
int end_rotations(const int32 *endpoint_ids, int n);
void trim_attempts(int size);
// Where the ring continues after a restart: after the newest row.
int32 attempts_next_slot();
void insert_attempts(const AttemptRow *rows, int n);
void write_endpoint_state(const EndpointStateRow *row);

// --- Reads -------------------------------------------------------------------------------------

// The endpoints, by id. *rows lives until release_rows().
int read_endpoints(EndpointRow **rows);
// Reads see one state of the database: push a snapshot taken now (after the pass's own writes),
// read, pop it.
void push_fresh_snapshot();
void pop_snapshot();
// The first dead letter of each key (and each dead truncate) of an endpoint. Lives until
// release_rows().
int read_dead_letter_heads(int32 endpoint_id, EventRow **rows);
// The endpoint's lowest `window` queue rows, through a cursor under the active snapshot.
Portal open_head(int32 endpoint_id, int64 window);
// The next at most `count` rows of the cursor (0: none left). Lives until release_rows().
int fetch_head(Portal cursor, long count, EventRow **rows);
// Reads (detoasts) a row's new_row and old_row, left unread by fetch_head.
void payload(EventRow *row);
void close_head(Portal cursor);
// Frees the rows of the last read or fetch.
void release_rows();

// Whether backfills are running (and this database's schema can run them).
bool backfills_running();

// pg_sync.debug_pass_pause (tests): waits up to ms between the dead-letter and head reads, until
// the latch is set (which stays set).
void debug_pause(int ms);

} // namespace pg_sync::pg::queue_store
