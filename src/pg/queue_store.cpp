// The delivery worker's SQL (see queue_store.hpp). C-style throughout: a PostgreSQL ERROR may
// longjmp out of any function here.
#include "pg/pg_prelude.hpp"

#include "pg/queue_counters.hpp"
#include "pg/queue_store.hpp"
#include "pg/workers.hpp"

namespace pg_sync::pg::queue_store {
namespace {

// --- Prepared plans ------------------------------------------------------------------------------

enum Statement {
    S_READ_ENDPOINTS,
    S_READ_HEAD,
    S_READ_HEAD_UNTRACED,
    S_READ_DEAD_HEADS,
    S_DELETE_DELIVERED,
    S_SCHEDULE_RETRY,
    S_MOVE_TO_DEAD,
    S_MOVE_TO_DEAD_UNTRACED,
    S_PAUSE_GONE,
    S_END_ROTATIONS,
    S_WRITE_STATE,
    S_RESET_STATE,
    S_INSERT_ATTEMPTS,
    S_TRIM_ATTEMPTS,
    S_ATTEMPTS_NEXT,
    S_WRITE_LIMITS,
    S_COUNT
};

// A result column, found by name in the result and checked for its type once per process.
struct Column {
    const char *name;
    Oid type;
};

struct StatementDef {
    const char *sql;
    int nargs;
    Oid types[12];
    int expect; // SPI result code
    const Column *columns;
    int ncolumns;
};

// Result columns of the reads, in the order of the enums below.
enum EndpointCol { E_ID, E_NAME, E_URL, E_SECRET, E_BATCH, E_ATTEMPTS, E_TIMEOUT, E_IN_FLIGHT, E_BASE, E_MAX,
                   E_PAUSED, E_HEADERS, E_KAFKA, E_FORMAT, E_PREV_SECRET, E_PREV_UNTIL, E_RATE, E_REQUEST_BYTES,
                   E_PERMANENT, E_STATE_LIMITS, E_TLS_CERT, E_TLS_KEY, E_TLS_CA, E_OAUTH2, E_NCOLS };
const Column endpoint_columns[E_NCOLS] = {
    {"id", INT4OID},           {"name", TEXTOID},          {"url", TEXTOID},          {"secret", TEXTOID},
    {"batch_size", INT4OID},   {"max_attempts", INT4OID},  {"timeout_ms", INT4OID},   {"max_in_flight", INT4OID},
    {"retry_base_ms", INT4OID}, {"retry_max_ms", INT4OID}, {"paused", BOOLOID},       {"header_lines", TEXTOID},
    {"kafka_settings", TEXTOID}, {"format", TEXTOID},        {"previous_secret", TEXTOID},
    {"previous_secret_until", TIMESTAMPTZOID},              {"max_rate", TEXTOID},    {"max_request_bytes", TEXTOID},
    {"permanent_statuses", TEXTOID}, {"state_has_limits", BOOLOID}, {"tls_client_cert", TEXTOID},
    {"tls_client_key", TEXTOID}, {"tls_ca", TEXTOID},         {"oauth2", TEXTOID}};

enum EventCol { V_ID, V_OP, V_TBL, V_KEY, V_NEW, V_OLD, V_TYPE, V_TXID, V_CAPTURED, V_ATTEMPTS, V_NEXT, V_TABLEOID,
                V_CTID, V_TRACE, V_NCOLS };
const Column event_columns[V_NCOLS] = {
    {"id", INT8OID},       {"op", TEXTOID},          {"tbl", TEXTOID},      {"key", JSONOID},
    {"new_row", JSONOID},  {"old_row", JSONOID},     {"emit_type", TEXTOID}, {"txid", XID8OID},
    {"captured_at", TIMESTAMPTZOID}, {"attempts", INT4OID}, {"next_attempt_at", TIMESTAMPTZOID},
    {"tableoid", OIDOID},  {"ctid", TIDOID},         {"traceparent", TEXTOID}};
constexpr int kDeadColumns = V_KEY + 1; // the dead-letter read has the first four

const Column next_slot_columns[1] = {{"next_slot", INT4OID}};

const StatementDef statements[S_COUNT] = {
    {"SELECT e.id, e.name, e.url, e.secret, e.batch_size, e.max_attempts, e.timeout_ms, e.max_in_flight,"
     "       e.retry_base_ms, e.retry_max_ms, e.paused,"
     "       (SELECT string_agg(h.key || ': ' || h.value, E'\\n' ORDER BY h.key)"
     "          FROM pg_catalog.jsonb_each_text(e.headers) h) AS header_lines,"
     // (through to_jsonb: a database not yet updated to 0.3.0 has no such column)
     "       pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->>) 'kafka_settings' AS kafka_settings,"
     "       pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->>) 'format' AS format,"
     "       pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->>) 'previous_secret' AS previous_secret,"
     "       (pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->>) 'previous_secret_until')::pg_catalog.timestamptz"
     "         AS previous_secret_until,"
     // (the same for the columns of 0.3.0's rate limit, request size and permanent statuses)
     "       pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->>) 'max_rate' AS max_rate,"
     "       pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->>) 'max_request_bytes' AS max_request_bytes,"
     "       pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.jsonb_array_elements_text("
     "           pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->) 'permanent_statuses')), ',') AS permanent_statuses,"
     "       EXISTS (SELECT FROM pg_catalog.pg_attribute a"
     "                WHERE a.attrelid OPERATOR(pg_catalog.=) 'pg_sync._endpoint_state'::pg_catalog.regclass"
     "                  AND a.attname OPERATOR(pg_catalog.=) 'rate_limited' AND NOT a.attisdropped) AS state_has_limits,"
     "       pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->>) 'tls_client_cert' AS tls_client_cert,"
     "       pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->>) 'tls_client_key' AS tls_client_key,"
     "       pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->>) 'tls_ca' AS tls_ca,"
     "       pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.->>) 'oauth2' AS oauth2"
     "  FROM pg_sync._endpoints e ORDER BY e.id",
     0, {}, SPI_OK_SELECT, endpoint_columns, E_NCOLS},
    // json columns as they are: json is text inside (read the same way), and a cast to text
    // would be an I/O conversion that detoasts every payload in the query, also of the events
    // the worker drops (in flight, blocked); these stay in TOAST until payload().
    // tableoid and ctid: where the row is, for the delete of delivered events (delete_delivered).
    // traceparent: the writer's trace (pg_sync.traceparent); a queue from before 0.3.0 has none
    // (S_READ_HEAD_UNTRACED, until ALTER EXTENSION UPDATE).
    {"SELECT id, op, tbl, key, new_row, old_row, emit_type, txid,"
     "       captured_at, attempts, next_attempt_at, tableoid, ctid, traceparent"
     "  FROM pg_sync._queue WHERE endpoint_id = $1 ORDER BY id LIMIT $2",
     2, {INT4OID, INT8OID}, SPI_OK_SELECT, event_columns, V_NCOLS},
    {"SELECT id, op, tbl, key, new_row, old_row, emit_type, txid,"
     "       captured_at, attempts, next_attempt_at, tableoid, ctid, NULL::pg_catalog.text AS traceparent"
     "  FROM pg_sync._queue WHERE endpoint_id = $1 ORDER BY id LIMIT $2",
     2, {INT4OID, INT8OID}, SPI_OK_SELECT, event_columns, V_NCOLS},
    // The first dead letter of each key (and each dead truncate) is enough to block what follows.
    {"SELECT DISTINCT ON (op = 'truncate', tbl, key::text) id, op, tbl, key FROM pg_sync._dead_letters"
     " WHERE endpoint_id = $1 AND id < $2 ORDER BY op = 'truncate', tbl, key::text, id",
     2, {INT4OID, INT8OID}, SPI_OK_SELECT, event_columns, kDeadColumns},
    {"DELETE FROM pg_sync._queue WHERE endpoint_id = $1 AND id = ANY ($2)", 2, {INT4OID, INT8ARRAYOID},
     SPI_OK_DELETE, nullptr, 0},
    {"UPDATE pg_sync._queue SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4,"
     "       last_status = $5, first_attempt_at = coalesce(first_attempt_at, $6)"
     " WHERE endpoint_id = $1 AND id = ANY ($2)",
     6, {INT4OID, INT8ARRAYOID, TIMESTAMPTZOID, TEXTOID, INT4OID, TIMESTAMPTZOID}, SPI_OK_UPDATE, nullptr, 0},
    {"WITH moved AS (DELETE FROM pg_sync._queue WHERE endpoint_id = $1 AND id = ANY ($2) RETURNING *)"
     " INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid,"
     "        captured_at, attempts, last_status, last_error, first_attempt_at, dead_at, traceparent)"
     " SELECT id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at, attempts + 1,"
     "        $3, $4, coalesce(first_attempt_at, $5), now(), traceparent FROM moved",
     5, {INT4OID, INT8ARRAYOID, INT4OID, TEXTOID, TIMESTAMPTZOID}, SPI_OK_INSERT, nullptr, 0},
    {"WITH moved AS (DELETE FROM pg_sync._queue WHERE endpoint_id = $1 AND id = ANY ($2) RETURNING *)"
     " INSERT INTO pg_sync._dead_letters (id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid,"
     "        captured_at, attempts, last_status, last_error, first_attempt_at, dead_at)"
     " SELECT id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at, attempts + 1,"
     "        $3, $4, coalesce(first_attempt_at, $5), now() FROM moved",
     5, {INT4OID, INT8ARRAYOID, INT4OID, TEXTOID, TIMESTAMPTZOID}, SPI_OK_INSERT, nullptr, 0},
    {"UPDATE pg_sync._endpoints SET paused = true, paused_reason = $2 WHERE id = $1 AND NOT paused", 2,
     {INT4OID, TEXTOID}, SPI_OK_UPDATE, nullptr, 0},
    // The end of secret rotations (pg_sync.rotate_secret): the previous secret is erased. Rows an
    // alter_endpoint() or the like holds are skipped (the worker must not wait): tried again later.
    {"UPDATE pg_sync._endpoints e SET previous_secret = NULL, previous_secret_until = NULL"
     " WHERE e.id IN (SELECT s.id FROM pg_sync._endpoints s WHERE s.id = ANY ($1)"
     "                   AND s.previous_secret_until <= pg_catalog.now() FOR NO KEY UPDATE SKIP LOCKED)",
     1, {INT4ARRAYOID}, SPI_OK_UPDATE, nullptr, 0},
    {"INSERT INTO pg_sync._endpoint_state AS s (endpoint_id, delivered_total, failed_attempts_total,"
     "        last_success_at, last_failure_at, last_error, last_status, in_flight, consecutive_failures,"
     "        circuit, next_attempt_at, updated_at)"
     " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())"
     " ON CONFLICT (endpoint_id) DO UPDATE SET"
     "   delivered_total = s.delivered_total + excluded.delivered_total,"
     "   failed_attempts_total = s.failed_attempts_total + excluded.failed_attempts_total,"
     "   last_success_at = coalesce(excluded.last_success_at, s.last_success_at),"
     "   last_failure_at = coalesce(excluded.last_failure_at, s.last_failure_at),"
     "   last_error = coalesce(excluded.last_error, s.last_error),"
     "   last_status = CASE WHEN excluded.last_error IS NULL THEN s.last_status ELSE excluded.last_status END,"
     "   in_flight = excluded.in_flight, consecutive_failures = excluded.consecutive_failures,"
     "   circuit = excluded.circuit, next_attempt_at = excluded.next_attempt_at, updated_at = now()",
     11, {INT4OID, INT8OID, INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, INT4OID, INT4OID, INT4OID, TEXTOID,
          TIMESTAMPTZOID}, SPI_OK_INSERT,
     nullptr, 0},
    {"WITH gone AS (DELETE FROM pg_sync._endpoint_state s"
     "               WHERE NOT EXISTS (SELECT FROM pg_sync._endpoints e WHERE e.id = s.endpoint_id))"
     " UPDATE pg_sync._endpoint_state SET in_flight = 0, circuit = 'closed', next_attempt_at = NULL",
     0, {}, SPI_OK_UPDATE, nullptr, 0},
    {"INSERT INTO pg_sync._attempts AS a (slot, endpoint_id, started_at, finished_at, events, status, error, lag_ms)"
     " SELECT * FROM unnest($1::int4[], $2::int4[], $3::timestamptz[], $4::timestamptz[], $5::int4[], $6::int4[],"
     "                      $7::text[], $8::float8[])"
     " ON CONFLICT (slot) DO UPDATE SET endpoint_id = excluded.endpoint_id, started_at = excluded.started_at,"
     "   finished_at = excluded.finished_at, events = excluded.events, status = excluded.status,"
     "   error = excluded.error, lag_ms = excluded.lag_ms",
     8, {INT4ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
         TEXTARRAYOID, FLOAT8ARRAYOID}, SPI_OK_INSERT, nullptr, 0},
    {"DELETE FROM pg_sync._attempts WHERE slot >= $1", 1, {INT4OID}, SPI_OK_DELETE, nullptr, 0},
    {"SELECT coalesce((SELECT slot FROM pg_sync._attempts ORDER BY finished_at DESC, slot DESC LIMIT 1) + 1, 0)"
     "       AS next_slot",
     0, {}, SPI_OK_SELECT, next_slot_columns, 1},
    // Since 0.3.0 (prepared only when the columns exist: state_has_limits).
    {"UPDATE pg_sync._endpoint_state SET rate_limited = $2, request_bytes_limit = $3 WHERE endpoint_id = $1", 3,
     {INT4OID, BOOLOID, INT4OID}, SPI_OK_UPDATE, nullptr, 0},
};

SPIPlanPtr plans[S_COUNT];
// Whether this pass's queue and dead letters have the traceparent column (begin_pass), and the
// head read of the cursor open_head() opened.
bool traced = false;
Statement head_statement = S_READ_HEAD;
// Whether pg_sync._endpoint_state has the columns of 0.3.0's limits (read with the endpoints).
bool state_has_limits = false;
// Attribute numbers (1-based) of each read's columns, once checked; 0: not yet.
constexpr int kMaxReadColumns = int(V_NCOLS) > int(E_NCOLS) ? int(V_NCOLS) : int(E_NCOLS);
AttrNumber attnums[S_COUNT][kMaxReadColumns];
bool columns_checked[S_COUNT];

SPIPlanPtr plan(Statement s) {
    if (!plans[s]) {
        const StatementDef &d = statements[s];
        // Generic plans (made once; the worker's reads have one good plan, an index scan on the
        // queue's primary key), except for the writes of a list of ids: their generic plan, made
        // while the queue was small, was an index scan on endpoint_id alone that filtered every
        // queued row of the endpoint, every pass, through the next backlog
        // (bench/results/sustained-diagnosis.md, A). Planned for their ids, they always look the
        // ids up in the primary key.
        const bool by_ids = s == S_DELETE_DELIVERED || s == S_SCHEDULE_RETRY || s == S_MOVE_TO_DEAD;
        SPIPlanPtr p = SPI_prepare_cursor(d.sql, d.nargs, const_cast<Oid *>(d.types),
                                          by_ids ? CURSOR_OPT_CUSTOM_PLAN : CURSOR_OPT_GENERIC_PLAN);
        if (!p)
            elog(ERROR, "pg_sync: SPI_prepare failed for statement %d: %s", int(s), SPI_result_code_string(SPI_result));
        SPI_keepplan(p);
        plans[s] = p;
    }
    return plans[s];
}

// Finds the statement's result columns by name in desc and checks their types (once).
void check_columns(Statement s, TupleDesc desc) {
    if (columns_checked[s])
        return;
    const StatementDef &d = statements[s];
    for (int c = 0; c < d.ncolumns; ++c) {
        const int attnum = SPI_fnumber(desc, d.columns[c].name);
        if (attnum <= 0)
            elog(ERROR, "pg_sync: statement %d returns no column \"%s\"", int(s), d.columns[c].name);
        if (SPI_gettypeid(desc, attnum) != d.columns[c].type)
            elog(ERROR, "pg_sync: column \"%s\" of statement %d has type %u, expected %u", d.columns[c].name, int(s),
                 SPI_gettypeid(desc, attnum), d.columns[c].type);
        attnums[s][c] = AttrNumber(attnum);
    }
    columns_checked[s] = true;
}

// Runs a statement under a fresh snapshot (writes) or the active one (read_only).
void run(Statement s, Datum *values, const char *nulls, bool read_only = false) {
    const int rc = SPI_execute_plan(plan(s), values, nulls, read_only, 0);
    if (rc != statements[s].expect)
        elog(ERROR, "pg_sync: statement %d failed: %s", int(s), SPI_result_code_string(rc));
    if (statements[s].ncolumns > 0)
        check_columns(s, SPI_tuptable->tupdesc);
}

// One result row, deformed once (reading column by column would walk the tuple from the start
// for every column after the first variable-length one).
constexpr int kMaxColumns = 32;
struct Deformed {
    Datum values[kMaxColumns];
    bool nulls[kMaxColumns];
};

void deform(HeapTuple tuple, TupleDesc desc, Deformed *row) {
    if (desc->natts > kMaxColumns)
        elog(ERROR, "pg_sync: unexpected result shape");
    heap_deform_tuple(tuple, desc, row->values, row->nulls);
}

Text text_at(const Deformed &row, Statement s, int col) {
    const int i = attnums[s][col] - 1;
    if (row.nulls[i])
        return Text{nullptr, 0, true};
    struct varlena *t = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(row.values[i])));
    return Text{VARDATA_ANY(t), int(VARSIZE_ANY_EXHDR(t)), false};
}

Int int_at(const Deformed &row, Statement s, int col) {
    const int i = attnums[s][col] - 1;
    if (row.nulls[i])
        return Int{0, true};
    switch (statements[s].columns[col].type) {
    case INT4OID:
        return Int{DatumGetInt32(row.values[i]), false};
    case BOOLOID:
        return Int{DatumGetBool(row.values[i]) ? 1 : 0, false};
    default: // int8, xid8, timestamptz: 64 bits
        return Int{DatumGetInt64(row.values[i]), false};
    }
}

void read_event(HeapTuple tuple, TupleDesc desc, Statement s, int ncolumns, EventRow *out) {
    Deformed row;
    deform(tuple, desc, &row);
    memset(out, 0, sizeof *out);
    const Text none{nullptr, 0, true};
    const Int null_int{0, true};
    out->id = int_at(row, s, V_ID).value;
    out->op = text_at(row, s, V_OP);
    out->tbl = text_at(row, s, V_TBL);
    out->key = text_at(row, s, V_KEY);
    const bool head = s == S_READ_HEAD || s == S_READ_HEAD_UNTRACED;
    if (head) {
        // Payloads stay unread (TOAST pointers in the held tuples) until payload().
        out->new_row = out->old_row = none;
        const int inew = attnums[s][V_NEW] - 1, iold = attnums[s][V_OLD] - 1;
        out->new_raw = row.nulls[inew] ? (Datum)0 : row.values[inew];
        out->old_raw = row.nulls[iold] ? (Datum)0 : row.values[iold];
        out->payloads_pending = true;
    } else {
        out->new_row = ncolumns > V_NEW ? text_at(row, s, V_NEW) : none;
        out->old_row = ncolumns > V_OLD ? text_at(row, s, V_OLD) : none;
    }
    out->emit_type = ncolumns > V_TYPE ? text_at(row, s, V_TYPE) : none;
    out->txid = ncolumns > V_TXID ? int_at(row, s, V_TXID) : null_int;
    out->captured_at = ncolumns > V_CAPTURED ? int_at(row, s, V_CAPTURED) : null_int;
    out->attempts = ncolumns > V_ATTEMPTS ? int_at(row, s, V_ATTEMPTS) : null_int;
    out->next_attempt_at = ncolumns > V_NEXT ? int_at(row, s, V_NEXT) : null_int;
    out->table = InvalidOid;
    ItemPointerSetInvalid(&out->tid);
    out->traceparent = ncolumns > V_TRACE ? text_at(row, s, V_TRACE) : none;
    if (head) {
        const int itab = attnums[s][V_TABLEOID] - 1, itid = attnums[s][V_CTID] - 1;
        if (!row.nulls[itab] && !row.nulls[itid]) {
            out->table = DatumGetObjectId(row.values[itab]);
            ItemPointerCopy(reinterpret_cast<ItemPointer>(DatumGetPointer(row.values[itid])), &out->tid);
        }
    }
}

// The rows handed out point into the result tuples (held_table) and into detoasted copies
// (rows_context); both live until release_rows() or the end of the pass.
MemoryContext rows_context = nullptr;
SPITupleTable *held_table = nullptr;

MemoryContext rows_memory() {
    if (!rows_context)
        rows_context = AllocSetContextCreate(TopMemoryContext, "pg_sync worker rows", ALLOCSET_DEFAULT_SIZES);
    return rows_context;
}

int read_events(Statement s, EventRow **rows) {
    MemoryContext old = MemoryContextSwitchTo(rows_memory());
    const int n = int(SPI_processed);
    EventRow *out = static_cast<EventRow *>(palloc(sizeof(EventRow) * (n + 1)));
    for (int r = 0; r < n; ++r)
        read_event(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, s, statements[s].ncolumns, &out[r]);
    MemoryContextSwitchTo(old);
    held_table = SPI_tuptable;
    *rows = out;
    return n;
}

Datum int8_array(const int64 *ids, int n) {
    Datum *elems = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
    for (int i = 0; i < n; ++i)
        elems[i] = Int64GetDatum(ids[i]);
    return PointerGetDatum(construct_array(elems, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

Datum md_array(Datum *values, bool *nulls, int n, Oid type, int len, bool byval, char align) {
    int dims[1] = {n};
    int lbs[1] = {1};
    return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, type, len, byval, align));
}

} // namespace

// --- The pass's transaction --------------------------------------------------------------------

void begin_pass() {
    held_table = nullptr; // gone with the previous pass's SPI connection
    if (rows_context)
        MemoryContextReset(rows_context);
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "pg_sync: SPI_connect failed");
    PushActiveSnapshot(GetTransactionSnapshot());
    pgstat_report_activity(STATE_RUNNING, "pg_sync delivery pass");
    // A queue from before 0.3.0 (until ALTER EXTENSION UPDATE) has no traceparent column.
    // (Without the schema, DROP EXTENSION ran: lock_extension() finds that out.)
    const Oid nsp = get_namespace_oid("pg_sync", true);
    const Oid queue = OidIsValid(nsp) ? get_relname_relid("_queue", nsp) : InvalidOid;
    traced = OidIsValid(queue) && get_attnum(queue, "traceparent") != InvalidAttrNumber;
}

bool lock_extension(Oid extension_oid) {
    LockDatabaseObject(ExtensionRelationId, extension_oid, 0, AccessShareLock);
    return get_extension_name(extension_oid) != nullptr;
}

void exit_extension_dropped(WorkerSlot *slot) {
    // DROP EXTENSION: nothing left to deliver here. The launcher will not restart us.
    ereport(LOG, (errmsg("pg_sync: extension dropped in database \"%s\", worker exiting",
                         get_database_name(MyDatabaseId))));
    PopActiveSnapshot();
    SPI_finish();
    CommitTransactionCommand();
    slot->no_extension = true;
    proc_exit(0);
}

void commit_pass(bool durable) {
    // For this transaction only (GUC_ACTION_LOCAL: back to the server's setting at its end, after
    // the commit record was written).
    if (!durable)
        (void)set_config_option("synchronous_commit", "off", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0,
                                false);
    PopActiveSnapshot();
    SPI_finish();
    CommitTransactionCommand();
}

void report_idle() {
    pgstat_report_activity(STATE_IDLE, nullptr);
    pgstat_report_stat(false);
}

// --- Writes ------------------------------------------------------------------------------------

void reset_endpoint_state() { run(S_RESET_STATE, nullptr, nullptr); }

namespace {

// The queue table (or one of its partitions), open for deletes, with the attribute numbers of
// endpoint_id and id; rel is NULL when `table` is not one (then the caller deletes by id).
struct QueuePart {
    Relation rel;
    AttrNumber endpoint_att, id_att;
};

QueuePart open_queue_part(Oid table) {
    QueuePart part{nullptr, InvalidAttrNumber, InvalidAttrNumber};
    const Oid queue = get_relname_relid("_queue", get_namespace_oid("pg_sync", false));
    if (!OidIsValid(queue) || (table != queue && !get_rel_relispartition(table)))
        return part;
    if (table != queue && get_partition_parent(table, true) != queue)
        return part; // (a partition of a partition: the DELETE by id finds it)
    Relation rel = table_open(table, RowExclusiveLock);
    const TupleDesc desc = RelationGetDescr(rel);
    const AttrNumber ep = get_attnum(table, "endpoint_id"), id = get_attnum(table, "id");
    if (rel->rd_rel->relkind != RELKIND_RELATION || ep <= 0 || id <= 0 || TupleDescAttr(desc, ep - 1)->atttypid != INT4OID ||
        TupleDescAttr(desc, id - 1)->atttypid != INT8OID) {
        table_close(rel, RowExclusiveLock);
        return part;
    }
    part.rel = rel;
    part.endpoint_att = ep;
    part.id_att = id;
    return part;
}

// Deletes the row at tid if it is still the event (endpoint_id, id), visible to the pass's
// snapshot and not changed since; false: not done (the caller deletes by id).
bool delete_at(const QueuePart &part, ItemPointer tid, int32 endpoint_id, int64 id, bool *deleted) {
    HeapTupleData tuple;
    tuple.t_self = *tid;
    Buffer buffer = InvalidBuffer;
    // The partition may have been truncated since the head was read (queue rotation carries a
    // stuck event into the current partition, then truncates): a block past the end is not read
    // (heap_fetch would fail), the event is then deleted by id where it is now.
    if (ItemPointerGetBlockNumber(tid) >= RelationGetNumberOfBlocks(part.rel))
        return false;
    if (!heap_fetch(part.rel, GetActiveSnapshot(), &tuple, &buffer, false))
        return false;
    bool ep_null = true, id_null = true;
    const Datum ep = heap_getattr(&tuple, part.endpoint_att, RelationGetDescr(part.rel), &ep_null);
    const Datum row_id = heap_getattr(&tuple, part.id_att, RelationGetDescr(part.rel), &id_null);
    const bool same = !ep_null && !id_null && DatumGetInt32(ep) == endpoint_id && DatumGetInt64(row_id) == id;
    ReleaseBuffer(buffer);
    if (!same)
        return false;
    TM_FailureData failure;
    switch (heap_delete(part.rel, tid, GetCurrentCommandId(true), InvalidSnapshot, true, &failure, false)) {
    case TM_Ok:
        *deleted = true;
        return true;
    case TM_Deleted: // deleted by a transaction that committed meanwhile (drop_endpoint): gone
        return true;
    default: // updated meanwhile (it moved), or anything else: by id
        return false;
    }
}

} // namespace

void delete_delivered(int32 endpoint_id, const int64 *ids, const Oid *tables, const ItemPointerData *tids, int n) {
    int64 *by_id = static_cast<int64 *>(palloc(sizeof(int64) * (n + 1)));
    int left = 0;
    int64 removed = 0; // by this pass: the pending counts (queue_counters) go down by as much
    Oid open_table = InvalidOid;
    QueuePart part{nullptr, InvalidAttrNumber, InvalidAttrNumber};
    for (int i = 0; i < n; ++i) {
        if (OidIsValid(tables[i]) && tables[i] != open_table) {
            if (part.rel)
                table_close(part.rel, NoLock);
            part = open_queue_part(tables[i]);
            open_table = tables[i];
        }
        ItemPointerData tid = tids[i];
        bool deleted = false;
        if (!OidIsValid(tables[i]) || !part.rel || !ItemPointerIsValid(&tid) ||
            !delete_at(part, &tid, endpoint_id, ids[i], &deleted))
            by_id[left++] = ids[i];
        removed += deleted ? 1 : 0;
    }
    if (part.rel)
        table_close(part.rel, NoLock);
    if (left > 0) {
        Datum v[2] = {Int32GetDatum(endpoint_id), int8_array(by_id, left)};
        run(S_DELETE_DELIVERED, v, nullptr);
        removed += int64(SPI_processed);
    }
    pfree(by_id);
    queue_counters_add(endpoint_id, -removed); // published when the pass commits
}

void schedule_retry(int32 endpoint_id, const int64 *ids, int n, TimestampTz next_attempt_at, const char *reason,
                    int32 status, TimestampTz attempt_started_at) {
    Datum v[6] = {Int32GetDatum(endpoint_id), int8_array(ids, n), TimestampTzGetDatum(next_attempt_at),
                  CStringGetTextDatum(reason), Int32GetDatum(status), TimestampTzGetDatum(attempt_started_at)};
    char nulls[7] = "      ";
    if (status == 0)
        nulls[4] = 'n';
    run(S_SCHEDULE_RETRY, v, nulls);
}

void move_to_dead_letters(int32 endpoint_id, const int64 *ids, int n, int32 status, const char *reason,
                          TimestampTz attempt_started_at) {
    Datum v[5] = {Int32GetDatum(endpoint_id), int8_array(ids, n), Int32GetDatum(status), CStringGetTextDatum(reason),
                  TimestampTzGetDatum(attempt_started_at)};
    char nulls[6] = "     ";
    if (status == 0)
        nulls[2] = 'n';
    run(traced ? S_MOVE_TO_DEAD : S_MOVE_TO_DEAD_UNTRACED, v, nulls);
    queue_counters_add(endpoint_id, -int64(SPI_processed)); // rows moved = rows deleted from the queue
}

void pause_gone(int32 endpoint_id, const char *reason) {
    Datum v[2] = {Int32GetDatum(endpoint_id), CStringGetTextDatum(reason)};
    run(S_PAUSE_GONE, v, nullptr);
    ereport(LOG, (errmsg("pg_sync: endpoint %d paused: %s", endpoint_id, reason)));
}

int end_rotations(const int32 *endpoint_ids, int n) {
    Datum *elems = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
    for (int i = 0; i < n; ++i)
        elems[i] = Int32GetDatum(endpoint_ids[i]);
    Datum v[1] = {PointerGetDatum(construct_array(elems, n, INT4OID, 4, true, TYPALIGN_INT))};
    run(S_END_ROTATIONS, v, nullptr);
    return int(SPI_processed);
}

void trim_attempts(int size) {
    Datum v[1] = {Int32GetDatum(size)};
    run(S_TRIM_ATTEMPTS, v, nullptr);
}

int32 attempts_next_slot() {
    run(S_ATTEMPTS_NEXT, nullptr, nullptr);
    bool isnull = false;
    const Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, attnums[S_ATTEMPTS_NEXT][0], &isnull);
    return isnull ? 0 : DatumGetInt32(d);
}

void insert_attempts(const AttemptRow *rows, int n) {
    Datum *cols[8];
    bool *nulls[8];
    for (int c = 0; c < 8; ++c) {
        cols[c] = static_cast<Datum *>(palloc(sizeof(Datum) * (n + 1)));
        nulls[c] = static_cast<bool *>(palloc0(sizeof(bool) * (n + 1)));
    }
    for (int i = 0; i < n; ++i) {
        const AttemptRow &a = rows[i];
        cols[0][i] = Int32GetDatum(a.slot);
        cols[1][i] = Int32GetDatum(a.endpoint_id);
        cols[2][i] = TimestampTzGetDatum(a.started_at);
        cols[3][i] = TimestampTzGetDatum(a.finished_at);
        cols[4][i] = Int32GetDatum(a.events);
        cols[5][i] = Int32GetDatum(a.status);
        nulls[5][i] = a.status == 0;
        cols[6][i] = a.error ? CStringGetTextDatum(a.error) : (Datum)0;
        nulls[6][i] = a.error == nullptr;
        cols[7][i] = Float8GetDatum(a.lag_ms);
        nulls[7][i] = a.lag_null;
    }
    Datum v[8] = {md_array(cols[0], nulls[0], n, INT4OID, 4, true, TYPALIGN_INT),
                  md_array(cols[1], nulls[1], n, INT4OID, 4, true, TYPALIGN_INT),
                  md_array(cols[2], nulls[2], n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE),
                  md_array(cols[3], nulls[3], n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE),
                  md_array(cols[4], nulls[4], n, INT4OID, 4, true, TYPALIGN_INT),
                  md_array(cols[5], nulls[5], n, INT4OID, 4, true, TYPALIGN_INT),
                  md_array(cols[6], nulls[6], n, TEXTOID, -1, false, TYPALIGN_INT),
                  md_array(cols[7], nulls[7], n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)};
    run(S_INSERT_ATTEMPTS, v, nullptr);
}

void write_endpoint_state(const EndpointStateRow *row) {
    Datum v[11];
    char nulls[12] = "           ";
    v[0] = Int32GetDatum(row->endpoint_id);
    v[1] = Int64GetDatum(row->delivered);
    v[2] = Int64GetDatum(row->failed_attempts);
    v[3] = row->last_success_at.null ? (nulls[3] = 'n', (Datum)0) : TimestampTzGetDatum(row->last_success_at.value);
    v[4] = row->last_failure_at.null ? (nulls[4] = 'n', (Datum)0) : TimestampTzGetDatum(row->last_failure_at.value);
    v[5] = row->last_error ? CStringGetTextDatum(row->last_error) : (nulls[5] = 'n', (Datum)0);
    v[6] = row->last_status ? Int32GetDatum(row->last_status) : (nulls[6] = 'n', (Datum)0);
    v[7] = Int32GetDatum(row->in_flight);
    v[8] = Int32GetDatum(row->consecutive_failures);
    v[9] = CStringGetTextDatum(row->circuit);
    v[10] = row->next_attempt_at.null ? (nulls[10] = 'n', (Datum)0) : TimestampTzGetDatum(row->next_attempt_at.value);
    run(S_WRITE_STATE, v, nulls);
    if (state_has_limits) {
        Datum l[3] = {Int32GetDatum(row->endpoint_id), BoolGetDatum(row->rate_limited),
                      Int32GetDatum(row->request_bytes_limit)};
        char lnulls[4] = "   ";
        if (row->request_bytes_limit <= 0)
            lnulls[2] = 'n';
        run(S_WRITE_LIMITS, l, lnulls);
    }
}

// --- Reads -------------------------------------------------------------------------------------

int read_endpoints(EndpointRow **rows) {
    run(S_READ_ENDPOINTS, nullptr, nullptr);
    MemoryContext old = MemoryContextSwitchTo(rows_memory());
    const int n = int(SPI_processed);
    EndpointRow *out = static_cast<EndpointRow *>(palloc0(sizeof(EndpointRow) * (n + 1)));
    for (int r = 0; r < n; ++r) {
        Deformed row;
        deform(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, &row);
        const Statement s = S_READ_ENDPOINTS;
        EndpointRow &e = out[r];
        e.id = int_at(row, s, E_ID);
        e.name = text_at(row, s, E_NAME);
        e.url = text_at(row, s, E_URL);
        e.secret = text_at(row, s, E_SECRET);
        e.batch_size = int_at(row, s, E_BATCH);
        e.max_attempts = int_at(row, s, E_ATTEMPTS);
        e.timeout_ms = int_at(row, s, E_TIMEOUT);
        e.max_in_flight = int_at(row, s, E_IN_FLIGHT);
        e.retry_base_ms = int_at(row, s, E_BASE);
        e.retry_max_ms = int_at(row, s, E_MAX);
        e.paused = int_at(row, s, E_PAUSED);
        e.header_lines = text_at(row, s, E_HEADERS);
        e.kafka_settings = text_at(row, s, E_KAFKA);
        e.format = text_at(row, s, E_FORMAT);
        e.previous_secret = text_at(row, s, E_PREV_SECRET);
        e.previous_secret_until = int_at(row, s, E_PREV_UNTIL);
        e.max_rate = text_at(row, s, E_RATE);
        e.max_request_bytes = text_at(row, s, E_REQUEST_BYTES);
        e.permanent_statuses = text_at(row, s, E_PERMANENT);
        state_has_limits = int_at(row, s, E_STATE_LIMITS).value != 0;
        e.tls_client_cert = text_at(row, s, E_TLS_CERT);
        e.tls_client_key = text_at(row, s, E_TLS_KEY);
        e.tls_ca = text_at(row, s, E_TLS_CA);
        e.oauth2 = text_at(row, s, E_OAUTH2);
    }
    MemoryContextSwitchTo(old);
    held_table = SPI_tuptable;
    *rows = out;
    return n;
}

void push_fresh_snapshot() {
    CommandCounterIncrement();
    PushActiveSnapshot(GetTransactionSnapshot());
}

void pop_snapshot() { PopActiveSnapshot(); }

int read_dead_letter_heads(int32 endpoint_id, EventRow **rows) {
    Datum v[2] = {Int32GetDatum(endpoint_id), Int64GetDatum(PG_INT64_MAX)};
    run(S_READ_DEAD_HEADS, v, nullptr, true);
    return read_events(S_READ_DEAD_HEADS, rows);
}

Portal open_head(int32 endpoint_id, int64 window) {
    Datum v[2] = {Int32GetDatum(endpoint_id), Int64GetDatum(window)};
    head_statement = traced ? S_READ_HEAD : S_READ_HEAD_UNTRACED;
    Portal cursor = SPI_cursor_open(nullptr, plan(head_statement), v, nullptr, true);
    if (!cursor)
        elog(ERROR, "pg_sync: could not open the queue cursor");
    return cursor;
}

int fetch_head(Portal cursor, long count, EventRow **rows) {
    SPI_cursor_fetch(cursor, true, count);
    if (SPI_processed == 0) {
        SPI_freetuptable(SPI_tuptable);
        *rows = nullptr;
        return 0;
    }
    check_columns(head_statement, SPI_tuptable->tupdesc);
    const int n = read_events(head_statement, rows);
    return n;
}

void close_head(Portal cursor) { SPI_cursor_close(cursor); }

namespace {
Text detoasted(Datum raw) {
    if (raw == (Datum)0)
        return Text{nullptr, 0, true};
    struct varlena *t = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(DatumGetPointer(raw)));
    return Text{VARDATA_ANY(t), int(VARSIZE_ANY_EXHDR(t)), false};
}
} // namespace

void payload(EventRow *row) {
    if (!row->payloads_pending)
        return;
    // The detoasted copies go where the rows' other memory is (released with them).
    MemoryContext old = MemoryContextSwitchTo(rows_memory());
    row->new_row = detoasted(row->new_raw);
    row->old_row = detoasted(row->old_raw);
    MemoryContextSwitchTo(old);
    row->payloads_pending = false;
}

void release_rows() {
    if (held_table)
        SPI_freetuptable(held_table);
    held_table = nullptr;
    if (rows_context)
        MemoryContextReset(rows_context);
}

bool backfills_running() {
    // (A database still at version 0.1.0, before ALTER EXTENSION UPDATE, has no _backfills; one at
    // 0.2.0 has the old page query, which this library does not run: its backfills wait for the
    // update. _check_backfill_reader came with 0.3.0.)
    if (!OidIsValid(get_relname_relid("_backfills", get_namespace_oid("pg_sync", true))))
        return false;
    if (SPI_execute("SELECT pg_catalog.to_regprocedure('pg_sync._check_backfill_reader(oid, pg_catalog.regclass)')"
                    "       IS NOT NULL AND EXISTS (SELECT FROM pg_sync._backfills WHERE state = 'running')",
                    true, 1) != SPI_OK_SELECT ||
        SPI_processed != 1)
        elog(ERROR, "pg_sync: reading pg_sync._backfills failed");
    bool isnull;
    return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

void debug_pause(int ms) {
    pgstat_report_activity(STATE_RUNNING, "pg_sync delivery pass: paused between head and dead-letter reads");
    const TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
    for (;;) {
        const long left = long((until - GetCurrentTimestamp()) / 1000);
        if (left <= 0)
            break;
        const int rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, left, PG_WAIT_EXTENSION);
        if (rc & WL_LATCH_SET)
            break;
    }
    pgstat_report_activity(STATE_RUNNING, "pg_sync delivery pass");
}

} // namespace pg_sync::pg::queue_store
