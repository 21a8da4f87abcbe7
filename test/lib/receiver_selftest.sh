#!/usr/bin/env bash
# Self-test of the test receiver (test/lib/receiver.py, receiver.sh) and the Standard Webhooks
# verifier (test/lib/webhook_verify.py). Requests are signed here with openssl, not with
# webhook_verify, so the two implementations check each other.
set -euo pipefail
cd "$(dirname "$0")/../.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/pg_sync_receiver_selftest.XXXXXX)
trap 'receiver_stop_all; rm -rf "$TMP"' EXIT

$PY test/lib/webhook_verify.py --self-test >/dev/null || fail "webhook_verify.py --self-test"

SECRET="whsec_$(head -c 24 /dev/urandom | base64)"
receiver_start r --secret "$SECRET"
[[ "$r_URL" == "http://127.0.0.1:$r_PORT/hook" ]] || fail "r_URL=$r_URL"
[ -f "$r_OUT" ] && kill -0 "$r_PID" || fail "r_OUT or r_PID not set"
BASE="http://127.0.0.1:$r_PORT"

# sign ID TS BODY: the v1 signature (base64 HMAC-SHA256 of "ID.TS.BODY"), computed by openssl.
sign() {
    local key
    key=$(printf '%s' "${SECRET#whsec_}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
    printf '%s' "$1.$2.$3" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key" -binary | base64
}
# post BODY [curl args...]: POSTs BODY to r_URL; prints the status (000: no answer); the
# answer's headers and body land in $TMP/hdrs and $TMP/body, curl's exit code in $TMP/rc.
post() {
    local body=$1 rc=0; shift
    curl -s --noproxy '*' -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code}' \
        -H 'Content-Type: application/json' --data-binary "$body" "$@" "$r_URL" || rc=$?
    echo "$rc" >"$TMP/rc"
}
# field N EXPR: a Python expression over line N of the log (rec), printed as JSON unless a str.
field() {
    $PY -c 'import json, sys
rec = [json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2]) - 1]
v = eval(sys.argv[3])
print(v if isinstance(v, str) else json.dumps(v))' "$r_OUT" "$1" "$2"
}
lines() { wc -l <"$r_OUT" | tr -d ' '; }
stats_field() { receiver_stats r | $PY -c "import json, sys; print(json.dumps(json.load(sys.stdin)$1))"; }
header() { tr -d '\r' <"$TMP/hdrs" | sed -n "s/^$1: //Ip"; }
held() { [ "$(stats_field '["in_flight"]')" == "$1" ]; }
has_lines() { [ "$(lines)" == "$1" ]; }

# 1. Signed, tampered and unsigned requests: answered alike, verification recorded.
ID=msg_selftest_1 TS=$(date +%s)
BODY='{"events":[{"id":1,"op":"insert","table":"public.t","key":{"id":1},"new":{"id":1,"v":"é"},"old":null,"txid":7,"captured_at":"2026-01-01T00:00:00Z"},{"id":2,"op":"emit","type":"x","key":null,"payload":{"a":[1,2]},"txid":7,"captured_at":"2026-01-01T00:00:00Z"}]}'
SIG="v1,$(sign "$ID" "$TS" "$BODY")"
HDRS=(-H "webhook-id: $ID" -H "webhook-timestamp: $TS" -A pg_sync/0.0-test)
assert_eq "$(post "$BODY" "${HDRS[@]}" -H "webhook-signature: v1,bm9wZQ== $SIG")" 204 "signed"
[ -z "$(header content-length)" ] || fail "204 must carry no Content-Length"
assert_eq "$(field 1 'rec["verified"], rec["verify_error"], rec["body_ok"], rec["status"], rec["n"]')" '[true, null, true, 204, 1]' "signed line"
assert_eq "$(field 1 '[rec["headers"][h] for h in ("content-type", "user-agent", "webhook-id", "webhook-timestamp")]')" "[\"application/json\", \"pg_sync/0.0-test\", \"$ID\", \"$TS\"]" "headers"
assert_eq "$(field 1 'rec["headers"]["webhook-signature"]')" "v1,bm9wZQ== $SIG" "signature header"
assert_eq "$(field 1 '[e["id"] for e in rec["events"]]')" '[1, 2]' "events parsed"
assert_eq "$(post "${BODY/\"v\":\"é\"/\"v\":\"e\"}" "${HDRS[@]}" -H "webhook-signature: $SIG")" 204 "tampered"
assert_eq "$(field 2 'rec["verified"], rec["verify_error"]')" '[false, "no matching signature"]' "tampered line"
assert_eq "$(post '{"events":[]}')" 204 "unsigned"
assert_eq "$(field 3 'rec["verified"], rec["verify_error"]')" '[false, "missing header webhook-id"]' "unsigned line"
assert_eq "$(post 'not json' -H 'Transfer-Encoding: chunked')" 204 "chunked, not JSON"
assert_eq "$(field 4 'rec["body_ok"], rec["events"], rec["body_text"]')" '[false, null, "not json"]' "bad body line"
assert_eq "$(post '{"events":[{"id":NaN}]}')" 204 "NaN"
assert_eq "$(field 5 'rec["body_ok"]')" false "NaN is not JSON"

# 2. Keep-alive: two requests over one connection.
assert_eq "$(curl -s --noproxy '*' -o /dev/null -o /dev/null -w '%{num_connects} ' -d '{"events":[]}' "$r_URL" "$r_URL")" "1 0 " "connection reused"

# 3. status: 500 with a body and Content-Length; keep-alive still works after it.
receiver_mode r '{"mode":"status","status":500}'
assert_eq "$(post '{"events":[]}')" 500 "status 500"
assert_eq "$(header content-length)" "$(wc -c <"$TMP/body" | tr -d ' ')" "Content-Length of a 500"
assert_eq "$(curl -s --noproxy '*' -o /dev/null -o /dev/null -w '%{http_code}/%{num_connects} ' -d '{}' "$r_URL" "$r_URL")" "500/1 500/0 " "keep-alive after 500"

# 4. 302: Location on the same port; /redirected answers ok so a followed redirect shows.
receiver_mode r '{"mode":"status","status":302}'
assert_eq "$(post '{"events":[]}')" 302 "302"
assert_eq "$(header location)" "$BASE/redirected" "Location"
assert_eq "$(post '{"events":[]}' -L)" 204 "302 followed"
assert_eq "$(field "$(lines)" 'rec["path"], rec["status"]')" '["/redirected", 204]' "redirect target logged"

# 5. retry_after: 429 by default, 503 on request, any string as Retry-After.
receiver_mode r '{"mode":"retry_after","retry_after":"2"}'
assert_eq "$(post '{"events":[]}')" 429 "retry_after 429"
assert_eq "$(header retry-after)" 2 "Retry-After seconds"
receiver_mode r '{"mode":"retry_after","status":503,"retry_after":"Wed, 21 Oct 2015 07:28:00 GMT"}'
assert_eq "$(post '{"events":[]}')" 503 "retry_after 503"
assert_eq "$(header retry-after)" "Wed, 21 Oct 2015 07:28:00 GMT" "Retry-After date"
receiver_mode r '{"mode":"fail_first","n":1,"status":429,"retry_after":"soon-ish"}'
assert_eq "$(post '{"events":[]}')" 429 "fail_first with retry_after"
assert_eq "$(header retry-after)" soon-ish "Retry-After garbage"
assert_eq "$(post '{"events":[]}')" 204 "fail_first then ok"
[ -z "$(header retry-after)" ] || fail "Retry-After on a 2xx"

# 6. stall: the client times out, the request is logged with status null, and other
#    connections are served meanwhile.
receiver_mode r '{"mode":"stall","seconds":2}'
n_before=$(lines)
post '{"events":[{"id":50}]}' --max-time 1 >/dev/null &
stalled=$!
wait_for "a held request" 5 held 1
assert_eq "$(stats_field '["requests"]')" "$n_before" "a held request is not logged yet"
receiver_mode r '{"mode":"ok"}'
assert_eq "$(post '{"events":[{"id":51}]}')" 204 "served while another request is held"
wait "$stalled"
assert_eq "$(cat "$TMP/rc")" 28 "curl timed out on the stall"
wait_for "the abandoned request's line" 5 has_lines $((n_before + 2))
assert_eq "$(field "$(lines)" 'rec["mode"], rec["status"], rec["events"]')" '["stall", null, [{"id": 50}]]' "abandoned stall line"
held 0 || fail "a request is still held"
receiver_mode r '{"mode":"stall","seconds":0.3}'
assert_eq "$(post '{"events":[{"id":52}]}' --max-time 5)" 204 "a short stall is answered"
assert_eq "$(field "$(lines)" 'rec["mode"], rec["status"]')" '["stall", 204]' "answered stall line"

# 7. drop: no answer at all.
receiver_mode r '{"mode":"drop"}'
assert_eq "$(post '{"events":[{"id":60}]}')" 000 "drop"
assert_eq "$(cat "$TMP/rc")" 52 "curl saw an empty reply"
assert_eq "$(field "$(lines)" 'rec["mode"], rec["status"]')" '["drop", null]' "drop line"

# 8. fail_first and fail_rate.
receiver_mode r '{"mode":"fail_first","n":2,"status":503}'
got=
for i in 1 2 3 4; do got+="$(post '{"events":[]}') "; done
assert_eq "$got" "503 503 204 204 " "fail_first"
rate() {
    receiver_mode r "$1"
    local i out=
    for i in $(seq 20); do out+=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code} ' -d '{}' "$r_URL"); done
    echo "$out"
}
seq1=$(rate '{"mode":"fail_rate","p":0.5,"seed":7}')
[[ "$seq1" == *500* && "$seq1" == *204* ]] || fail "fail_rate 0.5: $seq1"
assert_eq "$(rate '{"mode":"fail_rate","p":0.5,"seed":7}')" "$seq1" "fail_rate is reproducible"
[[ "$(rate '{"mode":"fail_rate","p":0}')" != *500* ]] || fail "fail_rate 0 failed a request"
[[ "$(rate '{"mode":"fail_rate","p":1,"status":502}')" != *204* ]] || fail "fail_rate 1 let one through"

# 9. ok with status 200 and a large body.
receiver_mode r '{"mode":"ok","status":200,"body_bytes":300000}'
assert_eq "$(post '{"events":[{"id":90}]}')" 200 "ok 200"
assert_eq "$(wc -c <"$TMP/body" | tr -d ' ')" 300000 "body_bytes"
receiver_mode r '{"mode":"ok"}'

# 10. Control: mistakes are refused with 400 and never logged; the secret can change.
n_before=$(lines)
for bad in '{"mode":"nope"}' '{"mode":"ok","statsu":200}' '{"mode":"status","status":99}' 'x' '{"secret":"whsec_*"}'; do
    assert_eq "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -d "$bad" "$BASE/_control")" 400 "control $bad"
done
assert_eq "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "$BASE/_control")" 405 "GET /_control"
assert_eq "$(lines)" "$n_before" "control requests are not logged"
receiver_mode r '{"secret":null}'
post '{"events":[]}' >/dev/null
assert_eq "$(field "$(lines)" 'rec["verified"], rec["verify_error"]')" '[null, null]' "no secret: not verified"
receiver_mode r "{\"secret\":\"$SECRET\"}"
assert_eq "$(stats_field '["mode"]')" '"ok"' "a secret change keeps the mode"

# 11. /_stats agrees with the log; receiver_events lists the 2xx events in order.
$PY - "$r_OUT" "$(receiver_stats r)" <<'PY' || fail "stats disagree with the log"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
stats = json.loads(sys.argv[2])
by = {}
for r in recs:
    k = "null" if r["status"] is None else str(r["status"])
    by[k] = by.get(k, 0) + 1
ev = sum(len(r["events"] or []) for r in recs if r["status"] and 200 <= r["status"] < 300)
assert [r["n"] for r in recs] == list(range(1, len(recs) + 1)), "n is not 1..N"
assert all(isinstance(r["t"], float) for r in recs), "t"
assert stats["requests"] == len(recs), (stats, len(recs))
assert stats["by_status"] == by, (stats["by_status"], by)
assert stats["events_2xx"] == ev, (stats["events_2xx"], ev)
assert stats["verify_failures"] == sum(r["verified"] is False for r in recs)
PY
events=$(receiver_events r)
assert_eq "$(head -n 1 <<<"$events")" '{"id":1,"op":"insert","table":"public.t","key":{"id":1},"new":{"id":1,"v":"é"},"old":null,"txid":7,"captured_at":"2026-01-01T00:00:00Z"}' "first event"
assert_eq "$($PY -c 'import json,sys; print(" ".join(str(json.loads(l)["id"]) for l in sys.stdin))' <<<"$events")" "1 2 1 2 51 52 90" "2xx event ids"
receiver_wait_events r 7 5

# 12. A second receiver alongside; stop is prompt even with a held request; restart keeps
#     the port and continues the log.
receiver_start r2 --mode status --status 410
[ "$r2_PORT" != "$r_PORT" ] && [ "$r2_OUT" != "$r_OUT" ] || fail "r2 shares r's port or log"
assert_eq "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -d '{}' "$r2_URL")" 410 "r2 initial mode"
receiver_mode r '{"mode":"stall","seconds":60}'
curl -s --noproxy '*' -o /dev/null -d '{}' "$r_URL" &
held_pid=$!
wait_for "a held request" 5 held 1
n_before=$(lines) port=$r_PORT start=$SECONDS
receiver_stop r
[ $((SECONDS - start)) -le 2 ] || fail "receiver_stop took $((SECONDS - start)) s"
! kill -0 "$r_PID" 2>/dev/null || fail "receiver r still running"
wait "$held_pid" || true
assert_eq "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "$BASE/_stats")" 000 "stopped"
assert_eq "$(receiver_events r | wc -l | tr -d ' ')" 7 "receiver_events after stop"
receiver_restart r
assert_eq "$r_PORT" "$port" "same port after restart"
assert_eq "$(stats_field '["requests"]')" "$n_before" "stats continue the log"
assert_eq "$(stats_field '["mode"]')" '"ok"' "restart starts in the initial mode"
post '{"events":[]}' >/dev/null
assert_eq "$(field "$(lines)" 'rec["n"], rec["verified"]')" "[$((n_before + 1)), false]" "n continues, secret kept"
receiver_stop_all
[ ! -e "$r_OUT" ] || fail "receiver_stop_all left $r_OUT"
echo "receiver self-test: ok (${SECONDS}s)"
