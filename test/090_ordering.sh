#!/usr/bin/env bash
# Per-key order under concurrency and failures, and late commits (docs/design.md, Guarantee 4):
#   a) 6 writers increment 4 counters for ~10 s while the receiver fails 20 % of requests; per
#      key, the 2xx-answered events carry v = 1, 2, 3, ... up to the final value: complete, in
#      commit order, no duplicates. Stricter, over every request in the order the receiver saw
#      them (any status): a key's events always continue right after its last acknowledged one,
#      so nothing of a key was sent while an earlier event of it was in flight or waiting to retry.
#   b) a transaction that holds a low queue id and commits after 50 later ones were delivered is
#      still delivered, and nothing was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/session.sh
. test/lib/receiver.sh
pg_start ordering "max_connections = 50"
trap 'receiver_stop_all; pg_stop' EXIT
PY=/usr/bin/python3

receiver_start hook --mode fail_rate --p 0.2 --status 500 --seed 90
q -c "CREATE EXTENSION pg_sync"
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('e', '$hook_URL', batch_size => 3, max_in_flight => 8,
                               retry_base_ms => 20, retry_max_ms => 200);
CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO t SELECT g, 0 FROM generate_series(1, 4) g;
SELECT pg_sync.track('t', 'e');
CREATE TABLE late (id int PRIMARY KEY);
SELECT pg_sync.track('late', 'e');
SQL
pending_zero() { [ "$(q -c "SELECT pending FROM pg_sync.endpoint_status WHERE endpoint = 'e'")" == 0 ]; }

# --- a) per-key order under concurrent writers and 20 % failures ----------------------------------
cat >"$PG_DIR/update.sql" <<'EOF'
\set k random(1, 4)
UPDATE t SET v = v + 1 WHERE id = :k;
EOF
chmod 644 "$PG_DIR/update.sql"
# -R caps the total rate so that the backlog (4 keys, one request per key at a time) drains in
# seconds; the point is interleaving and failures, not volume.
pgbench -n -c 6 -j 2 -T 10 -R 300 -f "$PG_DIR/update.sql" >"$PG_DIR/pgbench.log" 2>&1 ||
    { cat "$PG_DIR/pgbench.log"; fail "pgbench failed"; }
t0=$SECONDS
wait_for "the queue to drain" 40 pending_zero
drain=$((SECONDS - t0))
finals=$(q -c "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t")
$PY - "$hook_OUT" "$finals" "$drain" <<'PY'
import json, sys
path, finals, drain = sys.argv[1], dict(map(int, kv.split(":")) for kv in sys.argv[2].split(",")), sys.argv[3]
recs = [json.loads(line) for line in open(path)]
errors = []
acked = {k: 0 for k in finals}    # highest v acknowledged (2xx) per key, in receipt order
seq = {k: [] for k in finals}     # v of 2xx events per key, in receipt order
statuses, batched = {}, []
for r in recs:
    statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    batched.append(len(r["events"] or []))
    ok = r["status"] is not None and 200 <= r["status"] < 300
    per_key = {}
    for e in r["events"] or []:
        if e.get("table") != "public.t":
            continue
        if e["op"] != "update":
            errors.append(f"request {r['n']}: unexpected op {e['op']}")
            continue
        k, v = e["key"]["id"], e["new"]["v"]
        if e["old"]["v"] != v - 1:
            errors.append(f"request {r['n']}: key {k} old.v {e['old']['v']} new.v {v}")
        per_key.setdefault(k, []).append(v)
    for k, vs in per_key.items():
        expect = list(range(acked[k] + 1, acked[k] + 1 + len(vs)))
        if vs != expect and len(errors) < 20:
            errors.append(f"request {r['n']} (status {r['status']}): key {k} carries v {vs}, "
                          f"but the last acknowledged v was {acked[k]}")
        if ok:
            seq[k].extend(vs)
            acked[k] = max(acked[k], vs[-1])
for k, final in finals.items():
    if seq[k] != list(range(1, final + 1)):
        dup = len(seq[k]) - len(set(seq[k]))
        missing = sorted(set(range(1, final + 1)) - set(seq[k]))
        errors.append(f"key {k}: {len(seq[k])} events for final v {final}: {dup} duplicates, "
                      f"missing {missing[:10]}, in order: {seq[k] == sorted(seq[k])}")
total = sum(finals.values())
if errors:
    sys.exit("FAIL: a) " + "\n  ".join(errors))
print(f"a) {total} updates on 4 keys ({', '.join(f'{k}: {v}' for k, v in sorted(finals.items()))}) "
      f"delivered in per-key commit order, complete, no duplicates; {len(recs)} requests "
      f"{dict(sorted(statuses.items(), key=str))} carrying {sum(batched) / len(batched):.2f} events on "
      f"average (max {max(batched)}), queue drained {drain} s after the writers stopped")
PY
dead=$(q -c "SELECT dead FROM pg_sync.endpoint_status WHERE endpoint = 'e'")
assert_eq "$dead" 0 "dead letters (max_attempts 10 at a 20 % failure rate should never be reached)"

# --- b) a late commit is not skipped --------------------------------------------------------------
receiver_mode hook '{"mode":"ok"}'
base=$(receiver_stats hook | $PY -c 'import json,sys; print(json.load(sys.stdin)["events_2xx"])')
session_open
session "BEGIN; INSERT INTO late VALUES (0);" # takes its queue id now, commits last
for i in $(seq 1 50); do echo "INSERT INTO late VALUES ($i);"; done | q
receiver_wait_events hook $((base + 50)) 20
wait_for "the 50 committed rows to leave the queue" 20 pending_zero
late_rows() {
    receiver_events hook | $PY -c '
import json, sys
print(" ".join(str(e["new"]["id"]) for e in map(json.loads, sys.stdin) if e.get("table") == "public.late"))'
}
assert_contains " $(late_rows) " " 50 "
[[ " $(late_rows) " != *" 0 "* ]] || fail "the uncommitted row was delivered"
session "COMMIT;"
late_arrived() { [[ " $(late_rows) " == *" 0 "* ]]; }
wait_for "the late commit to be delivered" 20 late_arrived
receiver_events hook | $PY -c '
import json, sys
ev = [e for e in map(json.loads, sys.stdin) if e.get("table") == "public.late"]
rows = sorted(e["new"]["id"] for e in ev)
if rows != list(range(0, 51)):
    sys.exit(f"FAIL: b) rows of late delivered: {rows}")
first = next(e["id"] for e in ev if e["new"]["id"] == 0)
others = [e["id"] for e in ev if e["new"]["id"] != 0]
if not first < min(others):
    sys.exit(f"FAIL: b) the late row has id {first}, not below the others ({min(others)}..): test premise broken")
print(f"b) row with queue id {first} committed after ids {min(others)}..{max(others)} were delivered: "
      "delivered too, all 51 arrived once")
'
if grep -E "PANIC|ERROR|FATAL|WARNING|terminated by signal|TRAP:" "$PG_DIR/server.log"; then
    fail "unexpected errors in the server log (above)"
fi
echo "ok: per-key order under concurrency and failures; late commits delivered"
