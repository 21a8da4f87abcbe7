// Change capture: the trigger, its per-relation plan cache and the queue insert.
#pragma once

namespace pg_sync::pg {
// Registers the relcache callback that keeps capture plans current. Called from _PG_init.
void capture_init();
} // namespace pg_sync::pg
