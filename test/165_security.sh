#!/usr/bin/env bash
# Security of the background paths (docs/security.md), with a real worker and receiver:
#   a) the escalation of 0.2.0: a member of pgsync_admin with only SELECT and TRIGGER on a
#      superuser's table tracks it with a filter whose STABLE function PERFORMs a VOLATILE one
#      that makes the admin superuser when current_user is someone else, then calls backfill().
#      The backfill worker runs the filter as the admin: the admin stays what it was, and the
#      rows the filter lets through are delivered;
#   b) backfill renders keys exactly as the capture trigger does, whatever the session settings
#      of the writer or of the database the backfill worker connects to (TimeZone, DateStyle,
#      extra_float_digits, IntervalStyle): a snapshot and a later update of the same row have the
#      same key text, so per-key order holds between them;
#   c) backfill runs the filter under the settings recorded at track() (DateStyle DMY), not the
#      worker's;
#   d) a backfill requester hidden from rows by row-level security is refused (at the call, and
#      when RLS is switched on later the job fails), so a backfill never sends rows its
#      requester could not read;
#   e) settings changed by a filter (set_config(..., false)) are undone when it returns: they
#      never stay in the backfill worker.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
pg_start security
trap delivery_test_exit EXIT
receiver_start hook
PY=/usr/bin/python3

q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
SELECT pg_sync.create_endpoint('hook', '$hook_URL', batch_size => 20);
CREATE ROLE sec_admin LOGIN IN ROLE pgsync_admin;
CREATE SCHEMA app;
GRANT USAGE, CREATE ON SCHEMA app TO sec_admin;
CREATE TABLE app.payroll (id int PRIMARY KEY, salary int NOT NULL);
INSERT INTO app.payroll SELECT g, g * 100 FROM generate_series(1, 30) g;
GRANT SELECT, TRIGGER ON app.payroll TO sec_admin;
CREATE TABLE app.seen (who text);
GRANT INSERT ON app.seen TO sec_admin;
SQL
bf_wait() { # ID STATE SECS
    wait_for "backfill $1 $2 ($(q -c "SELECT format('%s error=%s', state, last_error) FROM pg_sync.backfills WHERE id = $1"))" \
        "$3" cond "(SELECT state = '$2' FROM pg_sync.backfills WHERE id = $1)"
}
# snapshot_keys TABLE: "<id>\t<key JSON as sent>" of the receiver's snapshot events of TABLE.
events_of() { receiver_events hook | $PY -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e["table"] == sys.argv[1]:
        print(e["op"], json.dumps(e["key"], separators=(",", ":")), sep="\t")' "$1"; }

# --- a) no escalation through backfill ------------------------------------------------------
PGUSER=sec_admin q >/dev/null <<'SQL'
CREATE FUNCTION app.escalate() RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO app.seen VALUES (current_user);
    IF current_user <> 'sec_admin' THEN
        ALTER ROLE sec_admin SUPERUSER;
    END IF;
    RETURN true;
END $$;
CREATE FUNCTION app.f(salary int) RETURNS bool LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM app.escalate();
    RETURN salary > 1000;
END $$;
SELECT pg_sync.track('app.payroll', 'hook', filter => 'app.f(NEW.salary)');
SQL
id=$(PGUSER=sec_admin q -c "SELECT pg_sync.backfill('app.payroll', 'hook', batch_rows => 7)" 2>/dev/null)
bf_wait "$id" done 60
wait_status hook 60 "pending = 0" "the backfill to be delivered"
assert_eq "$(q -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'sec_admin'")" f "the admin is not superuser"
assert_eq "$(q -c "SELECT string_agg(DISTINCT who, ',') FROM app.seen")" sec_admin "the filter ran as its author only"
assert_eq "$(events_of app.payroll | grep -c '^snapshot')" 20 "rows with salary > 1000 were sent (11..30)"
echo "a) backfill ran the filter as its author ($(q -c "SELECT count(*) FROM app.seen") calls), no escalation"

# --- b) keys are the trigger's, whatever the settings ----------------------------------------
# The backfill worker connects with the database's settings; writers use their own.
q >/dev/null <<'SQL'
ALTER DATABASE postgres SET TimeZone = 'Asia/Tokyo';
ALTER DATABASE postgres SET DateStyle = 'SQL, DMY';
ALTER DATABASE postgres SET extra_float_digits = 0;
ALTER DATABASE postgres SET IntervalStyle = 'sql_standard';
CREATE TABLE app.readings (at timestamptz, sensor float8, span interval, v int NOT NULL,
                           PRIMARY KEY (at, sensor, span));
INSERT INTO app.readings SELECT '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 hour 0.5 s',
                                g / 3.0, g * interval '1 day 2 min', 0
                           FROM generate_series(1, 12) g;
SELECT pg_sync.track('app.readings', 'hook');
SQL
id=$(q -c "SELECT pg_sync.backfill('app.readings', 'hook', batch_rows => 5)" 2>/dev/null)
bf_wait "$id" done 60
PGOPTIONS="-c TimeZone=America/Los_Angeles -c extra_float_digits=3 -c IntervalStyle=iso_8601 -c DateStyle=German" \
    q -c "UPDATE app.readings SET v = 1" >/dev/null
wait_status hook 60 "pending = 0" "the snapshots and updates to be delivered"
events_of app.readings | $PY -c '
import sys, collections
by_op = collections.defaultdict(list)
for line in sys.stdin:
    op, key = line.rstrip("\n").split("\t")
    by_op[op].append(key)
snap, upd = by_op["snapshot"], by_op["update"]
assert len(snap) == 12 and len(upd) == 12, (len(snap), len(upd))
assert sorted(snap) == sorted(upd), "snapshot keys differ from update keys:\n" + "\n".join(sorted(set(snap) ^ set(upd)))
assert all("+00:00" in k for k in snap), snap[:2]
print("b) 12 snapshot keys equal the 12 update keys, e.g.", snap[0])'

# --- c) backfill evaluates the filter under the settings recorded at track() -----------------
q >/dev/null <<'SQL'
CREATE TABLE app.dated (id int PRIMARY KEY, d date NOT NULL);
INSERT INTO app.dated VALUES (1, '2026-01-15'), (2, '2026-03-01');
SQL
# 01/02/2026 is 1 February for the tracker (DMY), 2 January for the worker's database (MDY).
PGOPTIONS="-c DateStyle=ISO,DMY" q -c "SELECT pg_sync.track('app.dated', 'hook', filter => \$\$NEW.d < '01/02/2026'\$\$)" >/dev/null
q -c "ALTER DATABASE postgres SET DateStyle = 'ISO, MDY'" >/dev/null
id=$(q -c "SELECT pg_sync.backfill('app.dated', 'hook')" 2>/dev/null)
bf_wait "$id" done 60
wait_status hook 60 "pending = 0" "the dated snapshot"
assert_eq "$(events_of app.dated | cut -f2 | tr '\n' ' ')" '{"id":1} ' "the filter kept 15 Jan only (DMY)"
echo "c) the backfill filter used the tracker's DateStyle"

# --- d) row-level security: no backfill of rows the requester may not see --------------------
q >/dev/null <<'SQL'
CREATE TABLE app.tenants (id int PRIMARY KEY, tenant text NOT NULL);
INSERT INTO app.tenants SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 10) g;
GRANT SELECT, TRIGGER ON app.tenants TO sec_admin;
ALTER TABLE app.tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_a ON app.tenants FOR SELECT USING (tenant = 'a');
SELECT pg_sync.track('app.tenants', 'hook');
SQL
err=$(PGUSER=sec_admin q -c "SELECT pg_sync.backfill('app.tenants', 'hook')" 2>&1 || true)
assert_contains "$err" "row-level security"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._backfills WHERE tbl = 'app.tenants'::regclass")" 0 "nothing recorded"
# Switched on after the call (in the same transaction, so before the job's first page): the
# job fails with the reason, and nothing of the table is sent.
q -c "ALTER TABLE app.tenants DISABLE ROW LEVEL SECURITY" >/dev/null
id=$(q 2>/dev/null <<'SQL'
BEGIN;
SET ROLE sec_admin;
SELECT pg_sync.backfill('app.tenants', 'hook');
RESET ROLE;
ALTER TABLE app.tenants ENABLE ROW LEVEL SECURITY;
COMMIT;
SQL
)
bf_wait "$id" failed 60
assert_contains "$(q -c "SELECT last_error FROM pg_sync.backfills WHERE id = $id")" "row-level security"
assert_eq "$(events_of app.tenants | wc -l)" 0 "no row of the RLS table was sent"
echo "d) RLS: refused at the call, and the job failed when RLS came on before its first page"
# --- e) code run by the backfill leaves no setting behind in the worker ---------------------------
# A filter that sets search_path (set_config(..., false)) in every call: the next page of the
# worker, and its own next call, must not see it (0.3.0's first cut kept such settings, and the
# worker then ran its queries under the author's search_path).
PGUSER=sec_admin q >/dev/null <<'SQL'
CREATE FUNCTION app.leak_log() RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO app.seen VALUES (current_setting('search_path'));
    PERFORM set_config('search_path', 'app_evil, pg_catalog', false);
    RETURN true;
END $$;
CREATE FUNCTION app.leaky() RETURNS bool LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN app.leak_log(); END $$;
SQL
q >/dev/null <<'SQL'
DELETE FROM app.seen;
CREATE TABLE app.leak (id int PRIMARY KEY);
INSERT INTO app.leak SELECT generate_series(1, 10);
GRANT SELECT, TRIGGER ON app.leak TO sec_admin;
SQL
PGUSER=sec_admin q -c "SELECT pg_sync.track('app.leak', 'hook', filter => 'app.leaky()')" >/dev/null
id=$(PGUSER=sec_admin q -c "SELECT pg_sync.backfill('app.leak', 'hook', batch_rows => 3)" 2>/dev/null)
bf_wait "$id" done 60
assert_eq "$(q -c "SELECT count(*) FROM app.seen")" 10 "the filter ran once per row"
assert_eq "$(q -c "SELECT count(*) FROM app.seen WHERE who LIKE '%app_evil%'")" 0 "no call saw a search_path set by an earlier one"
echo "e) settings set by a filter in the backfill worker are undone ($(q -c "SELECT DISTINCT who FROM app.seen"))"
q -c "ALTER DATABASE postgres RESET ALL" >/dev/null
echo "ok"
