#!/usr/bin/env bash
# OAuth2 client credentials (issue 14, item 5), against a local authorization server and a
# receiver that accepts only its bearer tokens (test/lib/oauth2_server.py, one process):
#   a) bad oauth2 settings are refused with a clear error and nothing is stored;
#   b) delivery: one token request (HTTP Basic client authentication, the scope), events carry the
#      token; the endpoints view shows oauth2 without client_secret;
#   c) a revoked token: the receiver answers 401, the worker fetches a new token and sends again;
#      no failed attempt is recorded for it;
#   d) expiry: tokens that live 3 s are refreshed before they expire (the receiver never sees an
#      expired one), new tokens are fetched and used (counted at the token endpoint);
#   e) the token endpoint down (503): the events are retried (last_error and recent_attempts say
#      "OAuth2 token request failed"), nothing is lost, and they drain when it is back;
#   f) pg_sync.allow_private_targets = off applies to the token URL too;
#   g) neither client_secret nor any token appears in a view, an error text or the server log;
#      every event arrived, none twice.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/status.sh
PY=/usr/bin/python3

pg_start oauth2
dir=$(mktemp -d /tmp/pg_sync_oauth2.XXXXXX)
server_pid=
cleanup() {
    [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
    pg_stop
    rm -rf "$dir"
}
trap cleanup EXIT

CLIENT_SECRET="s3cr&t-$($PY -c 'import secrets; print(secrets.token_hex(8))')"
$PY test/lib/oauth2_server.py --port-file "$dir/port" --client-id pg_sync --client-secret "$CLIENT_SECRET" \
    --scope "events:write" >"$dir/server.log" 2>&1 &
server_pid=$!
wait_for "the OAuth2 server" 15 test -s "$dir/port"
port=$(<"$dir/port")
base="http://127.0.0.1:$port"
stats() { curl -sS --noproxy '*' "$base/_stats"; }
stat() { stats | $PY -c "import json,sys; s=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
control() { curl -sS --noproxy '*' -o /dev/null -H 'Content-Type: application/json' --data "$1" "$base/_control"; }
delivered_ids() { stat 'len(s["event_ids"])'; }
have_events() { [ "$(delivered_ids)" -ge "$1" ]; }
OAUTH2="{\"token_url\": \"$base/token\", \"client_id\": \"pg_sync\", \"client_secret\": \"$CLIENT_SECRET\", \"scope\": \"events:write\"}"

q -c "CREATE EXTENSION pg_sync"
refused() { # SQL EXPECTED_MESSAGE
    local out
    if out=$(q -c "$1" 2>&1); then fail "accepted: $1"; fi
    assert_contains "$out" "$2"
    [[ "$out" != *"$CLIENT_SECRET"* ]] || fail "the error quotes client_secret: $out"
}

# (A statement that fails is logged with its text by PostgreSQL, log_min_error_statement: these
# use another secret, so that the check of the log in g) holds for the real one.)
OTHER=${OAUTH2/$CLIENT_SECRET/other}

# --- a) bad settings ------------------------------------------------------------------------------
refused "SELECT pg_sync.create_endpoint('bad', '$base/hook', oauth2 => '{\"token_url\": \"$base/token\", \"client_id\": \"x\"}')" \
    "oauth2 needs client_secret"
refused "SELECT pg_sync.create_endpoint('bad', '$base/hook', oauth2 => '{\"token_url\": \"ftp://127.0.0.1/t\", \"client_id\": \"x\", \"client_secret\": \"other\"}')" \
    "oauth2 token_url is not valid"
refused "SELECT pg_sync.create_endpoint('bad', '$base/hook', oauth2 => '{\"token_url\": \"$base/token\", \"client_id\": \"x\", \"client_secret\": \"other\", \"grant\": \"y\"}')" \
    'unknown oauth2 key "grant"'
refused "SELECT pg_sync.create_endpoint('bad', '$base/hook', headers => '{\"Authorization\": \"Bearer x\"}', oauth2 => '$OTHER')" \
    "an endpoint with oauth2 must not have an Authorization header"
refused "SELECT pg_sync.create_endpoint('bad', 'kafka://127.0.0.1:9092/t', oauth2 => '$OTHER')" \
    "oauth2 applies to http and https endpoints only"
refused "SELECT pg_sync.create_endpoint('bad', '$base/hook', oauth2 => NULL)" "oauth2"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._endpoints")" 0 "a: endpoints after refused creates"
echo "a) bad oauth2 settings refused, nothing stored"

# --- b) delivery with a token ---------------------------------------------------------------------------
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('oa', '$base/hook', oauth2 => '$OAUTH2', batch_size => 5,
                               retry_base_ms => 100, retry_max_ms => 1000);
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT pg_sync.track('t', 'oa');
INSERT INTO t SELECT g, 'b' FROM generate_series(1, 10) g;
SQL
n=10
wait_for "b: $n events at the receiver" 30 have_events "$n"
wait_status oa 20 "pending = 0" "b: the backlog delivered"
assert_eq "$(stat 's["token_requests"]')" 1 "b: token requests"
assert_eq "$(stat 's["bad_requests"]')" "[]" "b: token requests the server found wrong"
shown=$(q -c "SELECT oauth2 FROM pg_sync.endpoints WHERE name = 'oa'")
assert_eq "$(echo "$shown" | $PY -c 'import json,sys; print(sorted(json.load(sys.stdin)))')" \
    "['client_id', 'scope', 'token_url']" "b: oauth2 in the endpoints view"
echo "b) $n events delivered with one token; endpoints.oauth2 = $shown"

# --- c) a revoked token: 401, a fresh token, sent again -------------------------------------------------------
failed_before=$(st oa failed_attempts_total)
control '{"revoke": true}'
q -c "INSERT INTO t SELECT g, 'c' FROM generate_series(11, 13) g"
n=13
wait_for "c: $n events at the receiver" 30 have_events "$n"
assert_eq "$(stat 's["token_requests"]')" 2 "c: token requests after the revocation"
assert_eq "$(stat 's["hook_by_status"].get("401", 0) >= 1')" True "c: the receiver answered 401 to the revoked token"
wait_status oa 20 "pending = 0" "c: the backlog delivered"
assert_eq "$(st oa failed_attempts_total)" "$failed_before" "c: failed attempts (the 401 was answered by a new token)"
echo "c) revoked token: 401, one new token, 3 events delivered, no failed attempt recorded"

# --- d) expiry: short-lived tokens are refreshed before they expire ----------------------------------------------
# Tokens issued from now on live 3 s; the current one is revoked, so the next request gets a 401
# and fetches one of those. The worker refreshes a 3 s token 2.25 s after it asked for it and
# stops using it at 2.81 s; the server refuses it from 3 s after it issued it, plus 1 s leeway.
control '{"expires_in": 3}'
control '{"revoke": true}'
unauthorized_before=$(stat 's["hook_by_status"].get("401", 0)')
tokens_before=$(stat 's["token_requests"]')
i=100000 # (ids of its own: how many events this takes depends on the machine's speed)
deadline=$((SECONDS + 60))
# One event at a time, each waited for, until the server has issued three more tokens (~7 s).
until [ "$(stat 's["token_requests"]')" -ge $((tokens_before + 4)) ]; do
    [ $SECONDS -lt $deadline ] || fail "d: no new tokens within 60 s ($(stats))"
    i=$((i + 1)); n=$((n + 1))
    q -c "INSERT INTO t VALUES ($i, 'd')"
    wait_for "d: event $i at the receiver" 30 have_events "$n"
done
unauthorized=$(( $(stat 's["hook_by_status"].get("401", 0)') - unauthorized_before ))
# The revocation costs one 401 (then a 3 s token); the tokens after it are refreshed before they expire.
assert_eq "$unauthorized" 1 "d: 401 answers while tokens expired every 3 s"
echo "d) tokens living 3 s: $(( $(stat 's["token_requests"]') - tokens_before )) token requests over $((i - 100000)) events, none sent expired"
control '{"expires_in": 3600}'

# --- e) the token endpoint down ------------------------------------------------------------------------------------
control '{"down": true, "revoke": true}'
q -c "INSERT INTO t SELECT g, 'e' FROM generate_series(200, 204) g"
wait_for "e: an OAuth2 failure in recent_attempts" 30 \
    cond "EXISTS (SELECT FROM pg_sync.recent_attempts WHERE endpoint = 'oa' AND error LIKE 'OAuth2 token request failed: token endpoint answered HTTP 503%')"
wait_status oa 20 "last_error LIKE 'OAuth2 token request failed%' AND pending = 5 AND dead = 0" "e: the failure shown, events kept"
echo "e) token endpoint down: $(st oa last_error); $(st oa pending) events pending"
control '{"down": false}'
n=$((n + 5))
wait_for "e: $n events at the receiver" 60 have_events "$n"
wait_status oa 30 "pending = 0 AND dead = 0" "e: the backlog drained"
echo "   token endpoint back: the backlog drained"

# --- f) allow_private_targets = off applies to the token URL -------------------------------------------------------
# New settings (an audience, which the server ignores): the cached token is not theirs, so the
# next request needs a token request first.
q -c "SELECT pg_sync.alter_endpoint('oa', oauth2 => '${OAUTH2%\}}, \"audience\": \"hooks\"}')" >/dev/null
q >/dev/null <<SQL
ALTER SYSTEM SET pg_sync.allow_private_targets = off;
SELECT pg_reload_conf();
SQL
sleep_until_reloaded() { [ "$(q -c "SHOW pg_sync.allow_private_targets")" == off ]; }
wait_for "the setting" 10 sleep_until_reloaded
q -c "INSERT INTO t VALUES (300, 'f')"
wait_status oa 30 "last_error LIKE 'OAuth2 token request failed: token endpoint address not allowed%'" "f: the token URL refused"
echo "f) allow_private_targets = off: $(st oa last_error)"
q >/dev/null <<SQL
ALTER SYSTEM RESET pg_sync.allow_private_targets;
SELECT pg_reload_conf();
SQL
n=$((n + 1))
wait_for "f: $n events at the receiver" 60 have_events "$n"
wait_status oa 30 "pending = 0 AND dead = 0" "f: the backlog drained"

# --- g) secrets and tokens are shown nowhere; every event once ---------------------------------------------------
shown=$(q -c "SELECT row_to_json(e)::text FROM pg_sync.endpoints e; SELECT row_to_json(s)::text FROM pg_sync.endpoint_status s;
              SELECT row_to_json(a)::text FROM pg_sync.recent_attempts a")
[[ "$shown" != *"$CLIENT_SECRET"* ]] || fail "g: client_secret visible in a view"
for tok in $(stat '" ".join(s["tokens"])'); do
    [[ "$shown" != *"$tok"* ]] || fail "g: a token is visible in a view"
    ! grep -qF -e "$tok" "$PG_DIR/server.log" || fail "g: a token is in the server log"
done
! grep -qF -e "$CLIENT_SECRET" "$PG_DIR/server.log" || fail "g: client_secret is in the server log"
dups=$(stat 'str(len(s["event_ids"]) - len(set(s["event_ids"]))) + " " + str(len(set(s["event_ids"])))')
assert_eq "$dups" "0 $n" "g: duplicates and distinct events at the receiver"
echo "g) no secret or token in views or the log; $n distinct events, no duplicates; $(stat 's["token_requests"]') token requests in all"
echo "PASS"
