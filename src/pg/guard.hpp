// The one border between C++ and PostgreSQL error handling.
//
// PostgreSQL reports errors with longjmp; C++ with exceptions. Neither may cross the other:
// a longjmp over a C++ frame skips destructors, an exception through a PostgreSQL frame is
// undefined behaviour. So:
//
//  * C++ -> PostgreSQL error: run_cxx(body) runs PostgreSQL-free C++ (which may throw or return
//    a Problem) and raises the PostgreSQL error only after every C++ object of the body is gone.
//    The body must not call PostgreSQL functions that can ereport.
//  * PostgreSQL error -> C++: postgres_call(body) runs C-style code that calls PostgreSQL under
//    PG_TRY (in try_postgres, a C-style frame in guard.cpp). On an ERROR it logs it, aborts the
//    transaction, copies and flushes the error state and returns; postgres_call then throws
//    PostgresError in the caller's C++ frame, which unwinds normally. The body (a lambda) and
//    everything it calls must hold no object with a destructor: the longjmp crosses them. The
//    delivery worker's pass (delivery_pass.cpp) reaches PostgreSQL only this way.
//  * Code that calls PostgreSQL otherwise stays C-style (no objects with destructors in its
//    frames), as the capture trigger does.
//
// This header is included after postgres.h.
#pragma once

#include "core/validate.hpp"

#include <exception>
#include <type_traits>

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

// --- PostgreSQL errors into C++ ------------------------------------------------------------------

// Runs fn(arg) under PG_TRY. On an ERROR: writes it to the server log, aborts the current
// transaction (SPI connections, snapshots, portals and locks go with it), copies the error into
// *report, flushes the error state; returns false. fn must be C-style (see above) and must not
// throw. FATAL and PANIC end the process as usual.
bool try_postgres(void (*fn)(void *), void *arg, ErrorReport *report) noexcept;

// A PostgreSQL ERROR caught by postgres_call; its transaction has been aborted.
class PostgresError : public std::exception {
  public:
    explicit PostgresError(const ErrorReport &report) : report_(report) {}
    const char *what() const noexcept override { return report_.message; }
    const ErrorReport &report() const noexcept { return report_; }

  private:
    ErrorReport report_;
};

// Runs body() through try_postgres; throws PostgresError (after the PG_TRY frame has returned)
// when it raised an ERROR. body: a lambda that only calls C-style code and holds no object with
// a destructor; it passes results out through its captures.
template <typename Body> void postgres_call(Body &&body) {
    using B = std::remove_reference_t<Body>;
    ErrorReport report;
    // noexcept: an exception escaping the body would skip PG_END_TRY; terminate instead.
    void (*trampoline)(void *) = [](void *p) noexcept { (*static_cast<B *>(p))(); };
    if (!try_postgres(trampoline, const_cast<void *>(static_cast<const void *>(&body)), &report))
        throw PostgresError(report);
}

} // namespace pg_sync::pg
