#include "pg/pg_prelude.hpp"

#include "pg/guard.hpp"

#include <cstring>

namespace pg_sync::pg {

namespace {
void copy(char *dst, std::size_t size, const std::string &src) noexcept {
    const std::size_t n = std::min(size - 1, src.size());
    std::memcpy(dst, src.data(), n);
    dst[n] = '\0';
}
} // namespace

void fill_report(ErrorReport &report, int sqlstate, const validate::Problem &problem) noexcept {
    report.failed = true;
    report.sqlstate = sqlstate;
    copy(report.message, sizeof report.message, problem.message);
    copy(report.detail, sizeof report.detail, problem.detail);
    copy(report.hint, sizeof report.hint, problem.hint);
}

void fill_report(ErrorReport &report, const char *what) noexcept {
    report.failed = true;
    report.sqlstate = ERRCODE_INTERNAL_ERROR;
    std::snprintf(report.message, sizeof report.message, "pg_sync internal error: %s", what);
}

void raise(const ErrorReport &report) {
    ereport(ERROR, (errcode(report.sqlstate), errmsg("%s", report.message),
                    report.detail[0] ? errdetail("%s", report.detail) : 0,
                    report.hint[0] ? errhint("%s", report.hint) : 0));
    pg_unreachable();
}

namespace {
// Copies at most size - 1 bytes, cut at a character boundary (the text goes back to SQL).
void copy_c(char *dst, std::size_t size, const char *src) noexcept {
    if (!src) {
        dst[0] = '\0';
        return;
    }
    const int len = pg_mbcliplen(src, int(strlen(src)), int(size) - 1);
    std::memcpy(dst, src, std::size_t(len));
    dst[len] = '\0';
}
} // namespace

// C-style: no object with a destructor in this frame (PG_TRY's longjmp lands here).
bool try_postgres(void (*fn)(void *), void *arg, ErrorReport *report) noexcept {
    volatile bool ok = true;
    PG_TRY();
    {
        fn(arg);
    }
    PG_CATCH();
    {
        HOLD_INTERRUPTS();
        // Copy the error out of ErrorContext before the abort resets the transaction's memory.
        MemoryContextSwitchTo(TopMemoryContext);
        ErrorData *edata = CopyErrorData();
        report->failed = true;
        report->sqlstate = edata->sqlerrcode;
        copy_c(report->message, sizeof report->message, edata->message);
        copy_c(report->detail, sizeof report->detail, edata->detail);
        copy_c(report->hint, sizeof report->hint, edata->hint);
        FreeErrorData(edata);
        EmitErrorReport(); // the server log gets the error as it was raised, with its context
        // Outside a transaction the abort below does nothing: give back what an error may have
        // left held (as PostgreSQL's own background processes do in their error recovery).
        if (!IsTransactionState()) {
            LWLockReleaseAll();
            ConditionVariableCancelSleep();
            pgstat_report_wait_end();
        }
        AbortCurrentTransaction();
        MemoryContextSwitchTo(TopMemoryContext);
        FlushErrorState();
        RESUME_INTERRUPTS();
        ok = false;
    }
    PG_END_TRY();
    // After a failure the current memory context is TopMemoryContext (the caller's belonged to
    // the aborted transaction, or was TopMemoryContext already).
    return ok;
}

} // namespace pg_sync::pg
