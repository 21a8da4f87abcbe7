// Every hook and callback of the library is installed and chained in hooks.cpp.
#pragma once

namespace pg_sync::pg {
// Installs them all. Called once, from _PG_init (in the postmaster: every backend inherits them).
void hooks_init();
} // namespace pg_sync::pg
