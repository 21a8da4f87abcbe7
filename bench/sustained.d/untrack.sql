-- bench/sustained, before an untracked (baseline) run: no capture triggers on pgbench's tables.
\set ON_ERROR_STOP 1
SELECT pg_sync.untrack(t."table") FROM (SELECT DISTINCT "table" FROM pg_sync.tracked_tables) t;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_trigger WHERE tgname LIKE 'pg\_sync\_capture%') THEN
        RAISE EXCEPTION 'a pg_sync capture trigger is left after untrack';
    END IF;
END
$$;
