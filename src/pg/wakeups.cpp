// Wake-ups at commit. A backend marks what its transaction did (events queued, configuration
// changed, extension created); when the transaction commits, hooks.cpp calls
// wakeups_at_commit(), which sets the database worker's latch (and bumps its configuration
// generation) or queues the database for the launcher. Nothing happens on abort or prepare
// (COMMIT PREPARED comes later, elsewhere: the worker's sweep finds it). The commit callback
// runs after the commit is visible and before the transaction releases its locks; the delivery
// worker relies on that (docs/delivery.md, "The cached head").
#include "pg/pg_prelude.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pg_sync_request_worker);
PG_FUNCTION_INFO_V1(pg_sync_wake);
}

#include "pg/shared_slots.hpp"
#include "pg/workers.hpp"

namespace pg_sync::pg {
namespace {

bool wake_pending = false;
bool config_pending = false;
bool force_pending = false;
bool launch_pending = false;

} // namespace

void wake_at_commit(bool config_changed, bool even_if_paused) {
    wake_pending = true;
    config_pending |= config_changed;
    force_pending |= even_if_paused;
}

void launch_at_commit() { launch_pending = true; }

void wakeups_at_commit() {
    if (wake_pending || config_pending || launch_pending)
        notify_at_commit(config_pending, launch_pending, force_pending);
    wakeups_forget();
}

void wakeups_forget() { wake_pending = config_pending = launch_pending = force_pending = false; }

} // namespace pg_sync::pg

// pg_sync._request_worker(): called by the install script; the launcher starts this database's
// worker as soon as the creating transaction commits.
extern "C" Datum pg_sync_request_worker(PG_FUNCTION_ARGS) {
    pg_sync::pg::launch_at_commit();
    PG_RETURN_VOID();
}

// pg_sync._wake(config bool): wake this database's worker at commit; config: it reloads endpoints.
extern "C" Datum pg_sync_wake(PG_FUNCTION_ARGS) {
    pg_sync::pg::wake_at_commit(PG_GETARG_BOOL(0));
    PG_RETURN_VOID();
}
