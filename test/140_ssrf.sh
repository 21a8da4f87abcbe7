#!/usr/bin/env bash
# pg_sync.allow_private_targets = off against server-side request forgery (README, Security):
#   a) endpoints pointing at loopback under every spelling (127.0.0.1, [::1], [::ffff:127.0.0.1],
#      0x7f.1, 2130706433, 127.1, 0.0.0.0, and a host name that resolves to 127.0.0.1 through an
#      /etc/hosts entry this test adds) are refused at connect time: real receivers listen on
#      127.0.0.1 and ::1 and get no request at all; endpoint_status, recent_attempts and the queue
#      say "target address not allowed"; the events stay pending, none is dead or lost;
#   b) then link-local (cloud metadata), 10/8 and 192.168/16 targets, refused the same way. No
#      packet may leave the machine: the refusal happens in libcurl's opensocket callback
#      (src/core/http_client.cpp, on_open_socket: CURL_SOCKET_BAD before socket() is even
#      called), which a) has just shown to be in force in this worker. They are dropped, and the
#      worker is seen to have reloaded its endpoints, before private targets are allowed again;
#   c) allow_private_targets = on (ALTER SYSTEM + reload): every loopback endpoint of a) delivers
#      its events, exactly once each, to the receiver its address leads to.
# The /etc/hosts entry is removed again at exit, leaving the file byte-identical.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh

HOSTS_FILE=/etc/hosts
HOSTS_NAME="pgsync-ssrf-test-$$.internal"
HOSTS_LINE="127.0.0.1 $HOSTS_NAME # added by pg_sync test/140_ssrf.sh, removed at its exit"
HOSTS_SAVED=$(mktemp /tmp/pg_sync_140_hosts.XXXXXX)
cp "$HOSTS_FILE" "$HOSTS_SAVED"
HOSTS_TOUCHED=
H6_PID='' H6_DIR=''

# Adds HOSTS_LINE at the end of /etc/hosts, in place (the file may be a bind mount: no rename).
hosts_add() {
    HOSTS_TOUCHED=1
    /usr/bin/python3 - "$HOSTS_FILE" "$HOSTS_LINE" <<'PY'
import sys
path, line = sys.argv[1], sys.argv[2].encode() + b"\n"
with open(path, "r+b") as f:
    data = f.read()
    f.write((b"\n" if data and not data.endswith(b"\n") else b"") + line)
PY
}

# Puts /etc/hosts back as it was (in place) and checks that it is byte-identical to the copy.
hosts_restore() {
    [ -n "$HOSTS_TOUCHED" ] || { rm -f "$HOSTS_SAVED"; return 0; }
    /usr/bin/python3 - "$HOSTS_FILE" "$HOSTS_SAVED" "$HOSTS_LINE" <<'PY'
import sys
path, saved_path, line = sys.argv[1], sys.argv[2], sys.argv[3].encode() + b"\n"
saved = open(saved_path, "rb").read()
with open(path, "r+b") as f:
    data = f.read()
    if data.startswith(saved) and data[len(saved):].lstrip(b"\n") == line:
        data = saved                              # only our line was appended: the saved bytes
    else:
        data = data.replace(line, b"", 1)         # someone else changed it too: take ours out only
    f.seek(0)
    f.write(data)
    f.truncate()
PY
    if cmp -s "$HOSTS_FILE" "$HOSTS_SAVED"; then
        rm -f "$HOSTS_SAVED"
        return 0
    fi
    echo "FAIL: $HOSTS_FILE differs from its copy taken before the test (kept in $HOSTS_SAVED)" >&2
    return 1
}

ssrf_exit() {
    local rc=$?
    set +e
    hosts_restore || rc=1
    if [ -n "$H6_PID" ]; then
        kill -TERM "$H6_PID" 2>/dev/null
        wait "$H6_PID" 2>/dev/null
    fi
    [ -z "$H6_DIR" ] || [ -n "${RECEIVER_KEEP:-}" ] || rm -rf "$H6_DIR"
    (exit $rc)
    delivery_test_exit # reads $?: on failure it prints the server's errors; stops receivers and server
    exit $rc
}
trap ssrf_exit EXIT

pg_start ssrf "pg_sync.allow_private_targets = off"
q -c "CREATE EXTENSION pg_sync" >/dev/null
assert_eq "$(q -c "SHOW pg_sync.allow_private_targets")" off "allow_private_targets at start"

# Real receivers: receiver.py on 127.0.0.1, hostile_receiver.py (answering 204) on ::1.
receiver_start r
H6_DIR=$(mktemp -d /tmp/pg_sync_hostile_h6.XXXXXX)
/usr/bin/python3 test/lib/hostile_receiver.py --host ::1 --port-file "$H6_DIR/port" --out "$H6_DIR/out.jsonl" \
    --mode-file "$H6_DIR/mode.json" --mode ok --exit-with-pid $$ </dev/null >"$H6_DIR/log" 2>&1 &
H6_PID=$!
h6_up() { [ -s "$H6_DIR/port" ] || { kill -0 "$H6_PID" 2>/dev/null || { cat "$H6_DIR/log" >&2; fail "::1 receiver died"; }; false; }; }
wait_for "the ::1 receiver listening" 15 h6_up
H6_PORT=$(<"$H6_DIR/port")
# h6q 'python expression' over the ::1 receiver's log: begins (requests that reached it), ok_ids.
h6q() {
    /usr/bin/python3 - "$H6_DIR/out.jsonl" "$1" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
begins = [r for r in recs if r["ev"] == "begin"]
ends = {(r["conn"], r["req"]): r for r in recs if r["ev"] == "end"}  # the last line of a request wins
ok_ids = sorted(i for r in ends.values() if r["mode"] == "ok" and r["outcome"] == "answered"
                and 200 <= (r["status"] or 0) < 300 for i in (r["ids"] or []))
print(eval(sys.argv[2]))
PY
}
# Both receivers answer when asked directly (so zero requests later means refused, not unreachable).
curl -sS --noproxy '*' --max-time 5 -o /dev/null -f "http://127.0.0.1:$r_PORT/_stats" || fail "127.0.0.1 receiver not answering"
code=$(curl -sS -g --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' -X POST --data '{}' "http://[::1]:$H6_PORT/probe") \
    || fail "::1 receiver not answering"
assert_eq "$code" 204 "::1 receiver answer to a direct probe"
h6_probe_requests=$(h6q 'len(begins)')
assert_eq "$h6_probe_requests" 1 "::1 receiver requests after the probe"

hosts_add
assert_eq "$(getent ahostsv4 "$HOSTS_NAME" | awk 'NR == 1 {print $1}')" 127.0.0.1 "$HOSTS_NAME resolves to loopback"

COMMON="timeout_ms => 500, retry_base_ms => 50, retry_max_ms => 300, max_attempts => 1000"
REFUSED="target address not allowed (pg_sync.allow_private_targets is off)"

# Endpoint name, URL and the receiver that gets its events once private targets are allowed.
LOOPBACK=(
    "v4_loopback http://127.0.0.1:$r_PORT/hook r"
    "v6_loopback http://[::1]:$H6_PORT/hook h6"
    "v4_mapped http://[::ffff:127.0.0.1]:$r_PORT/hook r"
    "hex_short http://0x7f.1:$r_PORT/hook r"
    "decimal http://2130706433:$r_PORT/hook r"
    "dotted_short http://127.1:$r_PORT/hook r"
    "unspecified http://0.0.0.0:$r_PORT/hook r"
    "hosts_name http://$HOSTS_NAME:$r_PORT/hook r"
)

# refused EP N: EP's N events were refused at least twice each, as endpoint_status, the queue and
# recent_attempts show, and are all still pending.
refused() {
    local ep=$1 n=$2
    wait_status "$ep" 20 "failed_attempts_total >= 2 AND last_error LIKE '$REFUSED%' AND last_status IS NULL
                          AND pending = $n AND dead = 0 AND delivered_total = 0" "$ep refused"
    assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue q JOIN pg_sync._endpoints e ON e.id = q.endpoint_id
                        WHERE e.name = '$ep' AND q.attempts >= 1 AND q.last_error LIKE '$REFUSED%' AND q.last_status IS NULL")" \
        "$n" "$ep: queued events recording the refusal"
    assert_eq "$(q -c "SELECT count(*) FILTER (WHERE error LIKE '$REFUSED%' AND status IS NULL) >= 1
                              AND count(*) FILTER (WHERE error NOT LIKE '$REFUSED%' OR error IS NULL OR status IS NOT NULL) = 0
                        FROM pg_sync.recent_attempts WHERE endpoint = '$ep'")" t "$ep: recent_attempts all refused"
}

# --- a) loopback, every spelling ------------------------------------------------------------------
for spec in "${LOOPBACK[@]}"; do
    read -r ep url _ <<<"$spec"
    new_case "$ep" "$url" "$COMMON"
    q -c "INSERT INTO t_$ep SELECT g FROM generate_series(1, 3) g"
done
for spec in "${LOOPBACK[@]}"; do
    read -r ep url _ <<<"$spec"
    refused "$ep" 3
done
# Every endpoint has now been tried at least twice (and keeps being tried): nothing arrived.
assert_eq "$(rq r 'len(recs)')" 0 "requests that reached the 127.0.0.1 receiver"
assert_eq "$(h6q 'len(begins)')" "$h6_probe_requests" "requests that reached the ::1 receiver (besides the probe)"
echo "ok a: loopback refused in ${#LOOPBACK[@]} spellings, nothing reached the receivers; e.g. [$(st hex_short last_error)]"

# --- b) link-local, 10/8, 192.168/16: refused before any packet --------------------------------------
# Added only now that a) has shown the opensocket check to be in force in this worker.
PRIVATE=(
    "metadata http://169.254.169.254:80/latest/meta-data/"
    "rfc1918_10 http://10.1.2.3:8080/hook"
    "rfc1918_192 http://192.168.1.1/hook"
)
for spec in "${PRIVATE[@]}"; do
    read -r ep url <<<"$spec"
    new_case "$ep" "$url" "timeout_ms => 200, retry_base_ms => 50, retry_max_ms => 300, max_attempts => 1000"
    q -c "INSERT INTO t_$ep VALUES (1), (2)"
done
for spec in "${PRIVATE[@]}"; do
    read -r ep _ <<<"$spec"
    refused "$ep" 2
done
echo "ok b: 169.254.169.254, 10.1.2.3, 192.168.1.1 refused; e.g. [$(st metadata last_error)]"

# Those must never be tried with private targets allowed: drop them, then wait until the worker
# has reloaded its endpoints. A pass reads the configuration generation (bumped by the drop's
# commit) when it starts, and the pass that records an attempt starts after the attempt ended; so
# once an attempt that started after the drop is recorded, the worker has dropped them too.
for spec in "${PRIVATE[@]}"; do
    read -r ep _ <<<"$spec"
    q -c "SELECT pg_sync.drop_endpoint('$ep', force => true)" >/dev/null
done
dropped_at=$(q -c "SELECT clock_timestamp()")
wait_for "an attempt started after the drop to be recorded" 20 \
    cond "EXISTS (SELECT FROM pg_sync._attempts WHERE started_at > '$dropped_at')"

# --- c) allowed again: the loopback endpoints deliver -------------------------------------------------
q >/dev/null <<'SQL'
ALTER SYSTEM SET pg_sync.allow_private_targets = on;
SELECT pg_reload_conf();
SQL
for spec in "${LOOPBACK[@]}"; do
    read -r ep _ _ <<<"$spec"
    wait_status "$ep" 30 "pending = 0 AND dead = 0 AND delivered_total = 3" "$ep delivered once private targets are allowed"
done
expected_r=$(for spec in "${LOOPBACK[@]}"; do
    read -r ep _ rcv <<<"$spec"
    [ "$rcv" != r ] || echo "public.t_$ep:1,2,3"
done | sort | paste -sd' ')
got_r=$("$RECEIVER_PYTHON" - "$r_OUT" <<'PY'
import json, sys
from collections import defaultdict
keys = defaultdict(list)
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    if r["status"] is not None and 200 <= r["status"] < 300:
        for e in r["events"]:
            keys[e["table"]].append(e["key"]["id"])
print(" ".join(sorted(f"{t}:{','.join(map(str, sorted(k)))}" for t, k in keys.items())))
PY
)
assert_eq "$got_r" "$expected_r" "events delivered to the 127.0.0.1 receiver (table:keys)"
assert_eq "$(rq r 'sum(len(ids(r)) for r in ok)')" 21 "events answered 2xx at the 127.0.0.1 receiver (no duplicates)"
assert_eq "$(h6q 'len(ok_ids)')" 3 "events delivered to the ::1 receiver"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._queue")" 0 "events left in the queue"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._dead_letters")" 0 "dead letters"
echo "ok c: allow_private_targets = on: all ${#LOOPBACK[@]} loopback endpoints delivered (3 events each)"

if grep -E "PANIC|TRAP:|was terminated by signal|exited with exit code|delivery worker failed|ERROR" "$PG_DIR/server.log"; then
    fail "worker trouble in the server log"
fi
echo "ok: ssrf"
