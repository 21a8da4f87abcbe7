// The one border between C++ and PostgreSQL error handling.
//
// PostgreSQL reports errors with longjmp; C++ with exceptions. Neither may cross the other:
// a longjmp over a C++ frame skips destructors, an exception through a PostgreSQL frame is
// undefined behaviour. So:
//
//  * run_cxx(body) runs PostgreSQL-free C++ (which may throw or return a Problem) and raises
//    the PostgreSQL error only after every C++ object of the body is gone. The body must not
//    call PostgreSQL functions that can ereport.
//  * Code that calls PostgreSQL stays C-style (no objects with destructors in its frames), as
//    the capture trigger does.
//
// This header is included after postgres.h.
#pragma once

#include "core/validate.hpp"

namespace pg_sync::pg {

// A fixed-size, trivially destructible error report: safe to carry across ereport.
struct ErrorReport {
    bool failed = false;
    int sqlstate = 0;
    char message[512] = {0};
    char detail[512] = {0};
    char hint[512] = {0};
};

// Raises ereport(ERROR) from the report. Never returns.
[[noreturn]] void raise(const ErrorReport &report);

void fill_report(ErrorReport &report, int sqlstate, const validate::Problem &problem) noexcept;
void fill_report(ErrorReport &report, const char *what) noexcept;

// Runs body() (returning validate::Problem) and converts a problem or any exception into an
// ERROR with the given SQLSTATE, after the body's scope has closed.
template <typename Body> void run_cxx(int sqlstate, Body &&body) {
    ErrorReport report;
    try {
        const validate::Problem p = body();
        if (!p.ok())
            fill_report(report, sqlstate, p);
    } catch (const std::exception &e) {
        fill_report(report, e.what());
    } catch (...) {
        fill_report(report, "unknown C++ exception");
    }
    if (report.failed)
        raise(report);
}

} // namespace pg_sync::pg
