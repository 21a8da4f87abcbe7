-- bench/sustained, before a tracked run: capture pgbench's TPC-B tables for endpoint "sink".
-- pgbench_history has no primary key: its events are keyed by the account (key_columns).
-- Each TPC-B transaction then captures 4 events: 3 updates (account, teller, branch) and
-- 1 insert (history).
\set ON_ERROR_STOP 1
SELECT pg_sync.track('public.pgbench_accounts', 'sink');
SELECT pg_sync.track('public.pgbench_tellers', 'sink');
SELECT pg_sync.track('public.pgbench_branches', 'sink');
SELECT pg_sync.track('public.pgbench_history', 'sink', key_columns => '{aid}');
