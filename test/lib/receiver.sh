# Webhook receivers (test/lib/receiver.py) for the bash integration tests. Source after
# test/lib/assert.sh. NAME must be a shell identifier; several receivers may run at once.
#
# receiver_start NAME [receiver.py args...]   e.g. receiver_start hook --secret "$SECRET"
#   starts a receiver on a free loopback port, logging to a fresh temp dir; waits until it
#   answers; sets NAME_PORT, NAME_URL (http://127.0.0.1:PORT/hook), NAME_OUT (the JSONL log),
#   NAME_PID and NAME_DIR.
# receiver_mode NAME 'JSON'    switch behaviour, e.g. '{"mode":"status","status":500}'
# receiver_stats NAME          print the /_stats JSON
# receiver_events NAME         print every event of 2xx-answered requests, one compact JSON per
#                              line, in log order
# receiver_wait_events NAME N [SECS]   wait (default 30 s) until >= N events were answered 2xx
# receiver_stop NAME           SIGTERM by PID and wait; keeps NAME_OUT readable
# receiver_restart NAME        start a stopped receiver again: same port, args and log (appended)
# receiver_stop_all            stop every receiver and remove their dirs (RECEIVER_KEEP=1 keeps
#                              them); for the EXIT trap, e.g. trap 'receiver_stop_all; pg_stop' EXIT

RECEIVER_PY="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/receiver.py"
RECEIVER_PYTHON=/usr/bin/python3
declare -gA _RECEIVER_ARGS=() # NAME -> receiver.py args (shell-quoted), for receiver_restart

_receiver_var() { local v="${1}_$2"; printf '%s' "${!v:-}"; }

_receiver_curl() { curl -sS --noproxy '*' --max-time 10 "$@"; }

# Launches receiver.py for NAME on PORT (0: any free one) and waits until it answers.
_receiver_launch() {
    local name=$1 port=$2; shift 2
    local dir out pid
    dir=$(_receiver_var "$name" DIR) out=$(_receiver_var "$name" OUT)
    rm -f "$dir/port"
    "$RECEIVER_PYTHON" "$RECEIVER_PY" --port "$port" --port-file "$dir/port" --out "$out" \
        --exit-with-pid $$ "$@" </dev/null >>"$dir/receiver.log" 2>&1 &
    pid=$!
    printf -v "${name}_PID" '%s' "$pid"
    local deadline=$((SECONDS + 15))
    until [ -s "$dir/port" ] && _receiver_curl -o /dev/null -f "http://127.0.0.1:$(<"$dir/port")/_stats" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$dir/receiver.log" >&2
            fail "receiver $name exited during start-up"
        fi
        [ $SECONDS -lt $deadline ] || fail "receiver $name did not answer within 15 s"
        sleep 0.05 # poll interval
    done
    port=$(<"$dir/port")
    printf -v "${name}_PORT" '%s' "$port"
    printf -v "${name}_URL" '%s' "http://127.0.0.1:$port/hook"
}

receiver_start() {
    local name=$1; shift
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || fail "receiver_start: bad name [$name]"
    [ -z "${_RECEIVER_ARGS[$name]+set}" ] || fail "receiver_start: $name already started"
    local dir
    dir=$(mktemp -d "/tmp/pg_sync_receiver_${name}.XXXXXX")
    declare -g "${name}_DIR=$dir" "${name}_OUT=$dir/out.jsonl"
    _RECEIVER_ARGS[$name]=
    [ $# -eq 0 ] || _RECEIVER_ARGS[$name]=$(printf '%q ' "$@")
    _receiver_launch "$name" 0 "$@"
}

receiver_restart() {
    local name=$1
    [ -n "${_RECEIVER_ARGS[$name]+set}" ] || fail "receiver_restart: unknown receiver $name"
    local pid; pid=$(_receiver_var "$name" PID)
    ! kill -0 "$pid" 2>/dev/null || fail "receiver_restart: $name is still running"
    eval "_receiver_launch \"\$name\" \"\$(_receiver_var \"\$name\" PORT)\" ${_RECEIVER_ARGS[$name]}"
}

receiver_mode() {
    local resp
    resp=$(_receiver_curl -w '\n%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "$2" "http://127.0.0.1:$(_receiver_var "$1" PORT)/_control") \
        || fail "receiver_mode $1: no answer"
    [ "${resp##*$'\n'}" == 200 ] || fail "receiver_mode $1 $2: ${resp%$'\n'*}"
}

receiver_stats() {
    _receiver_curl -f "http://127.0.0.1:$(_receiver_var "$1" PORT)/_stats" \
        || fail "receiver_stats $1: no answer"
}

# Reads the log rather than asking the server, so it also works after receiver_stop.
receiver_events() {
    "$RECEIVER_PYTHON" - "$(_receiver_var "$1" OUT)" <<'PY'
import json, sys
out = sys.stdout.buffer
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        rec = json.loads(line)
        if rec["status"] is not None and 200 <= rec["status"] < 300 and rec["events"]:
            for event in rec["events"]:
                out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
PY
}

receiver_wait_events() {
    local name=$1 n=$2 secs=${3:-30} stats got
    local deadline=$((SECONDS + secs))
    while :; do
        stats=$(receiver_stats "$name") || fail "receiver_wait_events $name: no stats"
        got=$("$RECEIVER_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["events_2xx"])' <<<"$stats")
        [ "$got" -lt "$n" ] || return 0
        [ $SECONDS -lt $deadline ] || fail "receiver $name: $got of $n events after ${secs}s"
        sleep 0.1 # poll interval
    done
}

receiver_stop() {
    local name=$1 pid
    pid=$(_receiver_var "$name" PID)
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true # reap it when it is our child
}

receiver_stop_all() {
    local name dir
    for name in "${!_RECEIVER_ARGS[@]}"; do
        receiver_stop "$name"
        dir=$(_receiver_var "$name" DIR)
        if [ -n "${RECEIVER_KEEP:-}" ]; then
            echo "kept $dir" >&2
        else
            rm -rf "$dir"
        fi
        unset "_RECEIVER_ARGS[$name]"
    done
}

# For tests with a server and receivers: `trap delivery_test_exit EXIT` stops both and, when the
# test failed, prints the server's errors and worker lines first (they say more than the last
# assertion alone).
delivery_test_exit() {
    local rc=$?
    if [ $rc -ne 0 ] && [ -n "${PG_DIR:-}" ]; then
        echo "--- server log (errors and worker lines):" >&2
        grep -E "ERROR|FATAL|PANIC|TRAP|terminated|exited|pg_sync" "$PG_DIR/server.log" | tail -n 40 >&2 || true
    fi
    receiver_stop_all
    pg_stop
}

# rq NAME 'python expression': evaluates it over the receiver's log. recs = every logged request
# in order (dicts: t, path, status, events...), ok = the 2xx ones, ids(r) = event ids of a request,
# keys(rs) = the distinct key ids in requests rs, sorted, comma-separated.
rq() {
    local out_var="${1}_OUT"
    "$RECEIVER_PYTHON" - "${!out_var}" "$2" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
def ids(r): return [e["id"] for e in (r["events"] or [])]
ok = [r for r in recs if r["status"] is not None and 200 <= r["status"] < 300]
def keys(rs): return ",".join(str(k) for k in sorted({e["key"]["id"] for r in rs for e in (r["events"] or [])}))
print(eval(sys.argv[2]))
PY
}
# delivered_keys NAME: the distinct key ids of events answered 2xx.
delivered_keys() { rq "$1" 'keys(ok)'; }
