// The SQL of queue rotation (see queue_rotation.hpp), and pg_sync._queue_part(), the partition
// that new rows inserted through pg_sync._queue go to. C-style throughout: a PostgreSQL ERROR may
// longjmp out of any function here.
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_queue_part);
}

#include "pg/queue_rotation.hpp"
#include "pg/workers.hpp"

namespace pg_sync::pg::queue_rotation {
namespace {

Oid partition_oid(int part) {
    char name[NAMEDATALEN];
    snprintf(name, sizeof name, "_queue_%d", part);
    const Oid relid = get_relname_relid(name, get_namespace_oid("pg_sync", false));
    if (!OidIsValid(relid))
        elog(ERROR, "pg_sync: queue partition pg_sync.%s does not exist", name);
    return relid;
}

// Runs one statement under a snapshot taken now (after the pass's own writes).
void run(const char *sql, int expect, int nargs = 0, Oid *types = nullptr, Datum *values = nullptr) {
    const int rc = nargs ? SPI_execute_with_args(sql, nargs, types, values, nullptr, false, 0)
                         : SPI_execute(sql, false, 0);
    if (rc != expect)
        elog(ERROR, "pg_sync: queue rotation statement failed (%s): %s", SPI_result_code_string(rc), sql);
}

int64 first_int8(int col = 1) {
    if (SPI_processed != 1)
        elog(ERROR, "pg_sync: queue rotation read returned %llu rows", (unsigned long long)SPI_processed);
    bool isnull = false;
    const Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);
    return isnull ? 0 : DatumGetInt64(d);
}

} // namespace

bool available() {
    return OidIsValid(get_relname_relid("_queue_rotation", get_namespace_oid("pg_sync", false)));
}

void read_state(int *current, TimestampTz *rotated_at, int64 *rotated_seq) {
    run("SELECT current_part::int8, rotated_at, rotated_seq FROM pg_sync._queue_rotation LIMIT 1", SPI_OK_SELECT);
    if (SPI_processed == 0) {
        *current = 0;
        *rotated_at = GetCurrentTimestamp();
        *rotated_seq = 0;
        return;
    }
    *current = int(first_int8(1));
    bool isnull = false;
    const Datum at = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
    *rotated_at = isnull ? GetCurrentTimestamp() : DatumGetTimestampTz(at);
    *rotated_seq = first_int8(3);
}

void write_state(int current, int64 rotated_seq) {
    Oid types[2] = {INT2OID, INT8OID};
    Datum values[2] = {Int16GetDatum(int16(current)), Int64GetDatum(rotated_seq)};
    run("UPDATE pg_sync._queue_rotation SET current_part = $1, rotated_at = now(), rotated_seq = $2",
        SPI_OK_UPDATE, 2, types, values);
}

int64 sequence_position() {
    run("SELECT last_value FROM pg_sync._queue_id_seq", SPI_OK_SELECT);
    return first_int8();
}

int64 rows_left(int part, int64 limit) {
    char sql[256];
    // In key order: the primary key's scan skips the entries of deleted rows once they are known
    // dead, where a sequential scan would read every page of a drained partition.
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT FROM pg_sync._queue_%d ORDER BY endpoint_id, id LIMIT $1) r", part);
    Oid types[1] = {INT8OID};
    Datum values[1] = {Int64GetDatum(limit)};
    CommandCounterIncrement();
    PushActiveSnapshot(GetTransactionSnapshot());
    run(sql, SPI_OK_SELECT, 1, types, values);
    const int64 n = first_int8();
    PopActiveSnapshot();
    return n;
}

bool try_lock(int part) { return ConditionalLockRelationOid(partition_oid(part), AccessExclusiveLock); }

int64 carry_over(int part, int to) {
    char sql[1024];
    snprintf(sql, sizeof sql,
             "WITH moved AS (DELETE FROM pg_sync._queue_%d RETURNING *)"
             " INSERT INTO pg_sync._queue_%d (id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid,"
             "        captured_at, attempts, next_attempt_at, last_error, last_status, first_attempt_at, part)"
             " SELECT id, endpoint_id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at, attempts,"
             "        next_attempt_at, last_error, last_status, first_attempt_at, %d FROM moved",
             part, to, to);
    CommandCounterIncrement();
    PushActiveSnapshot(GetTransactionSnapshot());
    run(sql, SPI_OK_INSERT);
    const int64 n = int64(SPI_processed);
    PopActiveSnapshot();
    return n;
}

void truncate_part(int part) {
    char sql[128];
    snprintf(sql, sizeof sql, "TRUNCATE pg_sync._queue_%d", part);
    run(sql, SPI_OK_UTILITY);
}

} // namespace pg_sync::pg::queue_rotation

// pg_sync._queue_part(): the partition new rows go to (0 until this database's worker published
// one since the server started).
extern "C" Datum pg_sync_queue_part(PG_FUNCTION_ARGS) {
    const int part = pg_sync::pg::queue_current_part(MyDatabaseId);
    PG_RETURN_INT16(int16(part < 0 ? 0 : part));
}
