extern "C" {
#include "postgres.h"
}

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

} // namespace pg_sync::pg
