// What pg_sync does around some utility commands (hooks.cpp calls these from its
// ProcessUtility hook): which commands need a database nobody is connected to (its worker is
// stopped first, shared_slots.cpp), and the table locks DROP EXTENSION pg_sync takes first.
#include "pg/pg_prelude.hpp"

#include "pg/utility_commands.hpp"

namespace pg_sync::pg {

// The database a command needs to itself (no other session connected), if any.
const char *database_needing_exclusivity(Node *tree) {
    switch (nodeTag(tree)) {
    case T_DropdbStmt:
        return reinterpret_cast<DropdbStmt *>(tree)->dbname;
    case T_RenameStmt: {
        RenameStmt *s = reinterpret_cast<RenameStmt *>(tree);
        return s->renameType == OBJECT_DATABASE ? s->subname : nullptr;
    }
    case T_CreatedbStmt: {
        ListCell *lc;
        foreach (lc, reinterpret_cast<CreatedbStmt *>(tree)->options) {
            DefElem *d = static_cast<DefElem *>(lfirst(lc));
            if (strcmp(d->defname, "template") == 0 && d->arg)
                return defGetString(d);
        }
        return nullptr;
    }
    case T_AlterDatabaseStmt: {
        AlterDatabaseStmt *s = reinterpret_cast<AlterDatabaseStmt *>(tree);
        ListCell *lc;
        foreach (lc, s->options)
            if (strcmp(static_cast<DefElem *>(lfirst(lc))->defname, "tablespace") == 0)
                return s->dbname;
        return nullptr;
    }
    default:
        return nullptr;
    }
}

// DROP EXTENSION pg_sync (among the objects dropped).
bool drops_pg_sync_extension(Node *tree) {
    if (!IsA(tree, DropStmt) || reinterpret_cast<DropStmt *>(tree)->removeType != OBJECT_EXTENSION)
        return false;
    ListCell *lc;
    foreach (lc, reinterpret_cast<DropStmt *>(tree)->objects)
        if (strcmp(strVal(lfirst(lc)), "pg_sync") == 0)
            return true;
    return false;
}

// DROP EXTENSION drops the capture triggers, which locks each tracked table after the queue;
// writers lock their table, then the queue. Taking the tables first (in OID order, before
// anything else) turns that deadlock into a wait. Only for the extension's owner: nobody else may
// lock tables this way.
void lock_tracked_tables() {
    const Oid ext = get_extension_oid("pg_sync", true);
    if (!OidIsValid(ext) || !pg_extension_ownercheck(ext, GetUserId()))
        return;
    const Oid nsp = get_namespace_oid("pg_sync", true);
    if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("_tracked", nsp)))
        return;
    if (SPI_connect() != SPI_OK_CONNECT)
        elog(ERROR, "SPI_connect failed");
    if (SPI_execute("SELECT DISTINCT tbl::oid FROM pg_sync._tracked ORDER BY 1", true, 0) != SPI_OK_SELECT)
        elog(ERROR, "pg_sync: could not read tracked tables");
    const uint64 n = SPI_processed;
    Oid *tables = static_cast<Oid *>(SPI_palloc(sizeof(Oid) * (n + 1)));
    for (uint64 i = 0; i < n; ++i) {
        bool isnull;
        tables[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
    }
    SPI_finish();
    for (uint64 i = 0; i < n; ++i)
        LockRelationOid(tables[i], AccessExclusiveLock);
    pfree(tables);
}

} // namespace pg_sync::pg
