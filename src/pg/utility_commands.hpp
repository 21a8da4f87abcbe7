// What pg_sync does around utility commands (utility_commands.cpp), called from hooks.cpp.
#pragma once

#include "pg/pg_prelude.hpp"

namespace pg_sync::pg {

// The database a command needs to itself (DROP DATABASE, ALTER DATABASE ... RENAME / SET
// TABLESPACE, CREATE DATABASE ... TEMPLATE), if any: its workers must be stopped first.
const char *database_needing_exclusivity(Node *tree);
// DROP EXTENSION pg_sync (among the objects dropped).
bool drops_pg_sync_extension(Node *tree);
// Before DROP EXTENSION pg_sync: locks the tracked tables (no deadlock with writers).
void lock_tracked_tables();

} // namespace pg_sync::pg
