// The backfill worker of one database: runs the jobs of pg_sync.backfill(), one page per short
// transaction, until no job is left running; then it exits. The delivery worker starts it when
// it sees running jobs (after backfill() or resume_backfill() commit, after a restart, and every
// few seconds), so a job interrupted by a crash or a restart continues from its last page.
//
// One page (see "Backfill" in the install script for the SQL side and why it is consistent):
//   BEGIN
//   pick the running job least recently advanced (FOR UPDATE SKIP LOCKED: cancel waits for us)
//   pg_sync._backfill_page(job): checks, throttle, the page query
//   run the page query as the table's owner, security-restricted, search_path = pg_catalog,
//       lock_timeout 1 s (FOR SHARE of the page's rows): whole rows and their page keys
//   render each row as the capture trigger does (render_snapshot: same columns, canonical key,
//       the filter with the rights and settings of the role that wrote it), still as the owner
//   pg_sync._backfill_record(job, ...): queue the rows in page order, advance the job
//   COMMIT
//
// Errors: the page runs under PG_TRY; an error aborts the transaction and is written to the
// job: lock timeouts, deadlocks and cancels are retried a second later, anything else fails
// the job (pg_sync.resume_backfill() continues it). This file calls PostgreSQL throughout and
// is written C-style: no object with a destructor lives in these frames (see guard.hpp).
#include "pg/pg_prelude.hpp"

#include "pg/capture.hpp"
#include "pg/workers.hpp"

namespace {

enum Step {
    STEP_IDLE,     // no job is running: the worker exits
    STEP_WAIT,     // every running job waits (retry_at, locked by a cancel): sleep a little
    STEP_PROGRESS, // a page was done, a job failed or was put back to wait: go on at once
};

Oid extension_oid = InvalidOid;
MemoryContext worker_cxt = nullptr;

void release_slot(int, Datum) { pg_sync::pg::release_backfill_slot(); }

void begin() {
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "pg_sync: SPI_connect failed");
    PushActiveSnapshot(GetTransactionSnapshot());
}

void end() {
    PopActiveSnapshot();
    SPI_finish();
    CommitTransactionCommand();
}

// Holds the extension for the transaction (DROP EXTENSION waits for the page); exits the
// process when it is gone.
void require_extension() {
    LockDatabaseObject(ExtensionRelationId, extension_oid, 0, AccessShareLock);
    if (!get_extension_name(extension_oid)) {
        end();
        proc_exit(0);
    }
}

bool single_bool(const char *sql) {
    if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
        elog(ERROR, "pg_sync: backfill query failed: %s", sql);
    bool isnull;
    const Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
    return !isnull && DatumGetBool(d);
}

void job_update(const char *sql, int64 job, const char *text) {
    Oid types[2] = {INT8OID, TEXTOID};
    Datum values[2] = {Int64GetDatum(job), text ? CStringGetTextDatum(text) : (Datum)0};
    const char nulls[2] = {' ', text ? ' ' : 'n'};
    if (SPI_execute_with_args(sql, 2, types, values, nulls, false, 0) != SPI_OK_UPDATE)
        elog(ERROR, "pg_sync: backfill update failed");
}

// One page of one job. *job is set as soon as a job is picked (the caller records an error
// against it).
Step page(volatile int64 *job) {
    begin();
    require_extension();
    pgstat_report_activity(STATE_RUNNING, "pg_sync backfill page");

    if (SPI_execute("SELECT b.id, b.batch_rows, b.last_key FROM pg_sync._backfills b"
                    " WHERE b.state = 'running' AND (b.retry_at IS NULL OR b.retry_at <= now())"
                    " ORDER BY b.updated_at, b.id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    false, 0) != SPI_OK_SELECT)
        elog(ERROR, "pg_sync: reading pg_sync._backfills failed");
    if (SPI_processed == 0) {
        const bool any = single_bool("SELECT EXISTS (SELECT FROM pg_sync._backfills WHERE state = 'running')");
        end();
        return any ? STEP_WAIT : STEP_IDLE;
    }
    HeapTuple jt = SPI_tuptable->vals[0];
    TupleDesc jd = SPI_tuptable->tupdesc;
    bool isnull, last_key_null;
    *job = DatumGetInt64(SPI_getbinval(jt, jd, 1, &isnull));
    const int64 id = *job;
    const int32 batch_rows = DatumGetInt32(SPI_getbinval(jt, jd, 2, &isnull));
    const Datum last_key = SPI_getbinval(jt, jd, 3, &last_key_null);

    Oid id_type[1] = {INT8OID};
    Datum id_value[1] = {Int64GetDatum(id)};
    if (SPI_execute_with_args("SELECT query, owner, table_name, throttled, tbl, endpoint_id"
                              "  FROM pg_sync._backfill_page($1)", 1,
                              id_type, id_value, nullptr, false, 0) != SPI_OK_SELECT ||
        SPI_processed != 1)
        elog(ERROR, "pg_sync: pg_sync._backfill_page failed");
    HeapTuple pt = SPI_tuptable->vals[0];
    TupleDesc pd = SPI_tuptable->tupdesc;
    const char *query = SPI_getvalue(pt, pd, 1);
    const Oid owner = DatumGetObjectId(SPI_getbinval(pt, pd, 2, &isnull));
    const Datum table_name = SPI_getbinval(pt, pd, 3, &isnull);
    const bool throttled = DatumGetBool(SPI_getbinval(pt, pd, 4, &isnull));
    const Oid tbl = DatumGetObjectId(SPI_getbinval(pt, pd, 5, &isnull));
    const int32 endpoint_id = DatumGetInt32(SPI_getbinval(pt, pd, 6, &isnull));
    if (throttled) {
        // Look again in a moment; meanwhile the other jobs take their turns.
        job_update("UPDATE pg_sync._backfills SET waiting_for = $2, retry_at = now() + interval '200 ms',"
                   "       updated_at = now() WHERE id = $1",
                   id, "delivery");
        end();
        return STEP_PROGRESS;
    }

    // The page, as the table's owner, security-restricted: reading it runs only the table's own
    // code (its key's comparison operators and output functions), never with this worker's
    // rights; so does rendering, where casts to json and output functions of the table's types
    // run. The filter runs as the role that wrote it (render_snapshot).
    Oid saved_user;
    int saved_context;
    GetUserIdAndSecContext(&saved_user, &saved_context);
    SetUserIdAndSecContext(owner, saved_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
    const int nest = NewGUCNestLevel();
    (void)set_config_option("search_path", "pg_catalog", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
    // Waiting for a writer's row lock holds the page's other rows: wait a second, then retry.
    (void)set_config_option("lock_timeout", "1s", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
    Oid page_types[2] = {TEXTARRAYOID, INT4OID};
    Datum page_values[2] = {last_key, Int32GetDatum(batch_rows)};
    const char page_nulls[2] = {last_key_null ? 'n' : ' ', ' '};
    const int rc = SPI_execute_with_args(query, 2, page_types, page_values, page_nulls, false, 0);
    if (rc != SPI_OK_SELECT)
        elog(ERROR, "pg_sync: backfill page query failed: %s", SPI_result_code_string(rc));

    SPITupleTable *rows = SPI_tuptable;
    const uint64 scanned = SPI_processed;
    Datum *keys = static_cast<Datum *>(palloc(sizeof(Datum) * (scanned + 1)));
    Datum *news = static_cast<Datum *>(palloc(sizeof(Datum) * (scanned + 1)));
    int kept = 0;
    Datum page_key = (Datum)0;
    Relation rel = table_open(tbl, AccessShareLock);
    pg_sync::pg::capture_new_statement();
    TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
    for (uint64 i = 0; i < scanned; ++i) {
        HeapTuple t = rows->vals[i];
        const HeapTupleHeader row = DatumGetHeapTupleHeader(SPI_getbinval(t, rows->tupdesc, 1, &isnull));
        HeapTupleData tuple;
        tuple.t_len = HeapTupleHeaderGetDatumLength(row);
        ItemPointerSetInvalid(&tuple.t_self);
        tuple.t_tableOid = tbl;
        tuple.t_data = row;
        ExecStoreHeapTuple(&tuple, slot, false);
        if (pg_sync::pg::render_snapshot(rel, endpoint_id, slot, &keys[kept], &news[kept]))
            ++kept;
        ExecClearTuple(slot);
        if (i == scanned - 1)
            page_key = SPI_getbinval(t, rows->tupdesc, 2, &isnull);
    }
    ExecDropSingleTupleTableSlot(slot);
    table_close(rel, NoLock);
    // false: whatever the owner's code or a filter set is undone, never kept in this worker.
    AtEOXact_GUC(false, nest);
    SetUserIdAndSecContext(saved_user, saved_context);
    Oid rec_types[6] = {INT8OID, TEXTOID, JSONARRAYOID, JSONARRAYOID, TEXTARRAYOID, INT4OID};
    Datum rec_values[6] = {Int64GetDatum(id),
                           table_name,
                           PointerGetDatum(construct_array(keys, kept, JSONOID, -1, false, TYPALIGN_INT)),
                           PointerGetDatum(construct_array(news, kept, JSONOID, -1, false, TYPALIGN_INT)),
                           page_key,
                           Int32GetDatum(int32(scanned))};
    const char rec_nulls[6] = {' ', ' ', ' ', ' ', scanned ? ' ' : 'n', ' '};
    if (SPI_execute_with_args("SELECT pg_sync._backfill_record($1, $2, $3, $4, $5, $6)", 6, rec_types, rec_values,
                              rec_nulls, false, 0) != SPI_OK_SELECT)
        elog(ERROR, "pg_sync: pg_sync._backfill_record failed");
    end();
    pgstat_report_activity(STATE_IDLE, nullptr);
    return STEP_PROGRESS;
}

bool transient(int sqlstate) {
    return sqlstate == ERRCODE_LOCK_NOT_AVAILABLE || sqlstate == ERRCODE_T_R_DEADLOCK_DETECTED ||
           sqlstate == ERRCODE_T_R_SERIALIZATION_FAILURE || sqlstate == ERRCODE_QUERY_CANCELED ||
           ERRCODE_TO_CATEGORY(sqlstate) == ERRCODE_INSUFFICIENT_RESOURCES;
}

// After a failed page (its transaction is rolled back): note the error on the job.
void record_failure(int64 job, const ErrorData *edata) {
    begin();
    require_extension();
    if (transient(edata->sqlerrcode)) {
        job_update("UPDATE pg_sync._backfills SET last_error = $2, retry_at = now() + interval '1 second',"
                   "       waiting_for = CASE WHEN $2 LIKE '%lock timeout%' THEN 'row lock' ELSE 'retry' END"
                   " WHERE id = $1 AND state = 'running'",
                   job, edata->message);
    } else {
        job_update("UPDATE pg_sync._backfills SET state = 'failed', last_error = $2, finished_at = now(),"
                   "       updated_at = now(), waiting_for = NULL WHERE id = $1 AND state = 'running'",
                   job, edata->message);
    }
    end();
}

Step run_page() {
    volatile int64 job = 0;
    volatile Step step = STEP_WAIT;
    PG_TRY();
    {
        step = page(&job);
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(worker_cxt);
        ErrorData *edata = CopyErrorData();
        FlushErrorState();
        AbortCurrentTransaction();
        const bool retry = transient(edata->sqlerrcode);
        ereport(retry ? DEBUG1 : WARNING,
                (errmsg("pg_sync: backfill %lld %s: %s", static_cast<long long>(job), retry ? "will retry" : "failed",
                        edata->message)));
        if (job != 0)
            record_failure(job, edata);
        FreeErrorData(edata);
        step = retry ? STEP_WAIT : STEP_PROGRESS;
    }
    PG_END_TRY();
    return step;
}

} // namespace

extern "C" void pg_sync_backfill_main(Datum arg) {
    const Oid dboid = DatumGetObjectId(arg);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    if (!pg_sync::pg::claim_backfill_slot(dboid))
        proc_exit(0); // another one runs for this database, or the database is being dropped
    before_shmem_exit(release_slot, 0);

    BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
    pgstat_report_appname("pg_sync backfill");
    pg_sync::pg::pin_worker_settings();
    // Page keys go through text and back: one date format for all of them, and floats with all
    // their digits (with the database's extra_float_digits = 0 a float key read back as a
    // smaller value and the page's last row came again in the next page).
    SetConfigOption("DateStyle", "ISO, YMD", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("IntervalStyle", "postgres", PGC_SUSET, PGC_S_OVERRIDE);
    SetConfigOption("extra_float_digits", "1", PGC_SUSET, PGC_S_OVERRIDE);
    // The event's table name (quote_ident) as the capture trigger writes it.
    SetConfigOption("quote_all_identifiers", "off", PGC_SUSET, PGC_S_OVERRIDE);

    StartTransactionCommand();
    extension_oid = get_extension_oid("pg_sync", true);
    CommitTransactionCommand();
    if (!OidIsValid(extension_oid))
        proc_exit(0);
    worker_cxt = AllocSetContextCreate(TopMemoryContext, "pg_sync backfill", ALLOCSET_DEFAULT_SIZES);
    ereport(LOG, (errmsg("pg_sync: backfill worker started")));

    for (;;) {
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
        }
        const Step step = run_page();
        MemoryContextReset(worker_cxt);
        pgstat_report_stat(false);
        if (step == STEP_IDLE)
            break;
        if (step == STEP_WAIT) {
            (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 200, PG_WAIT_EXTENSION);
            ResetLatch(MyLatch);
        }
    }
    ereport(LOG, (errmsg("pg_sync: backfill worker finished: no backfill is running")));
    proc_exit(0);
}
