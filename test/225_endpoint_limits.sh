#!/usr/bin/env bash
# Per-endpoint rate limit, request size and permanent statuses (issue 14, items 2, 3 and 6),
# against real receivers:
#   a) max_rate: 300 events at batch_size 1 with max_rate => 100 reach the receiver spaced by the
#      token bucket: in no window of t seconds more than burst + 100 * t requests (burst: 10; the
#      receiver's stamps are allowed 3 requests of slack, and the first four, which open the
#      connections, are left out), so
#      they take at least 2.87 s; the total is printed (the issue's "3 s within 10 %"). A second
#      endpoint of the same table without a limit delivers its 300 meanwhile, unhindered, and
#      endpoint_status shows the limited one as rate_limited while it waits for tokens;
#      A receiver's 429 with Retry-After: 2 holds an endpoint with max_rate 1000 for 2 s;
#   b) max_request_bytes, with nginx (client_max_body_size 4k) in front of the receiver: batches
#      of 100 events (about 30 kB) are answered 413 and halved, without counting an attempt, until
#      they fit; every small event arrives once, and a single 6 kB event becomes a dead letter
#      (attempts 1) whose reason says it is too large for the receiver; endpoint_status shows the
#      size learned;
#   c) max_request_bytes => 2048: requests stay under 2048 bytes, and a 6 kB event is never sent
#      and becomes a dead letter whose reason names max_request_bytes;
#   d) permanent_statuses => '{404}': a 404 makes dead letters at once (attempts 1); an endpoint
#      without it keeps its events pending and retries them.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh

NGINX=${NGINX:-/usr/sbin/nginx}
[ -x "$NGINX" ] || { echo "SKIP: no nginx at $NGINX (apt-get install nginx)"; exit 0; }
work=$(mktemp -d /tmp/pg_sync_limits.XXXXXX)
chmod 711 "$work" # nginx's workers (nobody) reach their temp dirs under it
nginx_pid=''
cleanup() {
    local rc=$?
    if [ -n "$nginx_pid" ]; then
        kill -QUIT "$nginx_pid" 2>/dev/null || true
        wait "$nginx_pid" 2>/dev/null || true
    fi
    [ $rc -eq 0 ] || [ ! -f "$work/nginx/error.log" ] || tail -n 20 "$work/nginx/error.log" >&2
    rm -rf "$work"
    (exit $rc)
    delivery_test_exit
}
pg_start limits
trap cleanup EXIT
q -c "CREATE EXTENSION pg_sync"

# --- a) max_rate ----------------------------------------------------------------------------------
receiver_start slow
receiver_start fast
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('limited', '$slow_URL', batch_size => 1, max_rate => 100);
SELECT pg_sync.create_endpoint('free', '$fast_URL', batch_size => 1);
CREATE TABLE rated (id int PRIMARY KEY, v text);
SELECT pg_sync.track('rated', 'limited');
SELECT pg_sync.track('rated', 'free');
SQL
assert_eq "$(q -c "SELECT max_rate FROM pg_sync.endpoints WHERE name = 'limited'")" 100 "endpoints.max_rate"
q -c "INSERT INTO rated SELECT g, 'x' FROM generate_series(1, 300) g"
seen_limited=false
limited_or_done() {
    [ "$(st limited rate_limited)" != t ] || seen_limited=true
    [ "$(st limited delivered_total)" == 300 ]
}
wait_for "300 events at the rate-limited endpoint" 120 limited_or_done
receiver_wait_events fast 300 60
receiver_wait_events slow 300 60
assert_eq "$seen_limited" true "endpoint_status.rate_limited was seen true while the endpoint waited for tokens"
/usr/bin/python3 - "$slow_OUT" "$fast_OUT" <<'PY'
import json, sys
def times(path):
    return sorted(r["t"] for r in map(json.loads, open(path)) if r["status"] and 200 <= r["status"] < 300)
slow, fast = times(sys.argv[1]), times(sys.argv[2])
assert len(slow) == 300 and len(fast) == 300, (len(slow), len(fast))
# The receiver stamps a request when it reads it, a little after pg_sync sent it: the first
# requests, which open the endpoint's connections (max_in_flight 4), arrive late and bunched with
# the next ones, and any request can be stamped a few ms late. So the windows start after those
# four, and allow 3 requests of slack.
rate, burst, slack, first = 100.0, 10, 3, 4
worst, i, j = max((j - i + 1 - (burst + rate * (slow[j] - slow[i])), i, j) for i in range(first, 300) for j in range(i, 300))
if worst > slack:
    sys.exit(f"FAIL: requests {i + 1} to {j + 1} came within {slow[j] - slow[i]:.3f} s: {worst:.1f} more than "
             f"burst + rate * t; gaps (ms): {[round((b - a) * 1000, 1) for a, b in zip(slow[i:j], slow[i + 1:j + 1])]}")
total = slow[-1] - slow[0]
assert total >= (300 - burst - slack) / rate, total
# The endpoint without a limit was not held back by the other one: it was done first.
assert fast[-1] < slow[-1], (fast[-1] - fast[0], total)
print(f"max_rate 100, batch_size 1: 300 requests in {total:.2f} s (first to last; the issue asks 3 s within 10 %); "
      f"without a limit: {fast[-1] - fast[0]:.2f} s")
PY

# A receiver's 429 with Retry-After still holds a rate-limited endpoint for as long as it asks
# (tokens or not): the next request comes at least 2 s after the 429.
receiver_start hold
receiver_mode hold '{"mode":"fail_first","status":429,"n":1,"retry_after":"2"}'
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('held', '$hold_URL', batch_size => 1, max_in_flight => 1, max_rate => 1000);
CREATE TABLE held_t (id int PRIMARY KEY);
SELECT pg_sync.track('held_t', 'held');
INSERT INTO held_t SELECT generate_series(1, 5);
SQL
receiver_wait_events hold 5 30
/usr/bin/python3 - "$hold_OUT" <<'PY'
import json, sys
recs = [r for r in map(json.loads, open(sys.argv[1])) if r["status"]]
assert recs[0]["status"] == 429, recs[0]["status"]
wait = recs[1]["t"] - recs[0]["t"]
assert wait >= 1.99, f"the request after a 429 with Retry-After: 2 came {wait:.3f} s later"
print(f"Retry-After 2 with max_rate 1000: the next request {wait:.2f} s after the 429")
PY

# --- b) a 413 halves the request, down to one event -----------------------------------------------
receiver_start behind
nginx_port=$(pg_free_port)
mkdir -p "$work/nginx"
chmod 755 "$work/nginx"
user_line=""
[ "$(id -u)" != 0 ] || user_line="user nobody nogroup;"
cat >"$work/nginx/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
$user_line
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 64; }
http {
    client_max_body_size 4k;
    client_body_temp_path $work/nginx/client_body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    access_log off;
    server {
        listen 127.0.0.1:$nginx_port;
        location / {
            proxy_pass http://127.0.0.1:$behind_PORT;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
"$NGINX" -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
nginx_up() { curl -sS --noproxy '*' -o /dev/null --max-time 2 "http://127.0.0.1:$nginx_port/_stats" 2>/dev/null; }
wait_for "nginx on port $nginx_port" 15 nginx_up

q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('sized', 'http://127.0.0.1:$nginx_port/hook', batch_size => 100,
                               retry_base_ms => 50, retry_max_ms => 200);
CREATE TABLE big (id int PRIMARY KEY, v text);
SELECT pg_sync.track('big', 'sized');
-- 200 events of about 300 bytes, then one of 6 kB (key 1000), then 10 more small ones.
INSERT INTO big SELECT g, repeat('s', 250) FROM generate_series(1, 200) g;
INSERT INTO big VALUES (1000, repeat('L', 6000));
INSERT INTO big SELECT g, repeat('s', 250) FROM generate_series(2001, 2010) g;
SQL
wait_status sized 60 "pending = 0 AND dead = 1" "every event delivered but the large one"
receiver_wait_events behind 210 30
delivered=$(receiver_events behind | /usr/bin/python3 -c '
import json, sys
ids = [json.loads(l)["id"] for l in sys.stdin]
print(len(ids), len(set(ids)), max(len(json.dumps(i)) for i in ids))')
assert_eq "${delivered% *}" "210 210" "small events delivered once each"
q -c "SELECT d.attempts, d.last_status, d.last_error FROM pg_sync.dead_letters d WHERE d.endpoint = 'sized'" >"$work/dead"
assert_contains "$(cat "$work/dead")" "1|413|HTTP 413 (the event alone is larger than the receiver accepts): <html>"
assert_eq "$(q -c "SELECT (key->>'id') FROM pg_sync.dead_letters WHERE endpoint = 'sized'")" 1000 "the dead letter is the large event"
learned=$(st sized request_bytes_limit)
[ -n "$learned" ] && [ "$learned" -le 4096 ] || fail "request_bytes_limit should be learned under 4 kB, got [$learned]"
splits=$(q -c "SELECT count(*) FROM pg_sync.recent_attempts WHERE endpoint = 'sized' AND status = 413")
[ "$splits" -ge 4 ] || fail "expected several 413 answers (100 -> 50 -> 25 -> 12 events, then the large one), got $splits"
largest=$(/usr/bin/python3 -c '
import json, sys
print(max(r["body_len"] for r in map(json.loads, open(sys.argv[1])) if r["status"]))' "$behind_OUT")
[ "$largest" -le 4096 ] || fail "a body of $largest bytes passed nginx's 4k limit"
echo "413: $splits answers 413, requests then at most $largest bytes (limit learned: $learned), the 6 kB event a dead letter"

# --- c) max_request_bytes ---------------------------------------------------------------------------
receiver_start capped
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('capped', '$capped_URL', batch_size => 100, max_request_bytes => 2048);
CREATE TABLE capped_t (id int PRIMARY KEY, v text);
SELECT pg_sync.track('capped_t', 'capped');
INSERT INTO capped_t SELECT g, repeat('s', 250) FROM generate_series(1, 50) g;
INSERT INTO capped_t VALUES (1000, repeat('L', 6000));
SQL
wait_status capped 60 "pending = 0 AND dead = 1" "every event delivered but the large one"
receiver_wait_events capped 50 30
largest=$(/usr/bin/python3 -c '
import json, sys
recs = [r for r in map(json.loads, open(sys.argv[1])) if r["status"]]
assert not any(e["id"] for r in recs for e in (r["events"] or []) if e.get("key", {}).get("id") == 1000), "the large event was sent"
print(max(r["body_len"] for r in recs))' "$capped_OUT")
[ "$largest" -le 2048 ] || fail "a body of $largest bytes with max_request_bytes 2048"
reason=$(q -c "SELECT attempts || '|' || last_error FROM pg_sync.dead_letters WHERE endpoint = 'capped'")
assert_contains "$reason" "1|rejected: the event makes a request of "
assert_contains "$reason" "more than max_request_bytes (2048)"

# --- d) permanent_statuses --------------------------------------------------------------------------
receiver_start missing
receiver_mode missing '{"mode":"status","status":404}'
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('strict', '$missing_URL', permanent_statuses => '{400,404,422}');
SELECT pg_sync.create_endpoint('lenient', '$missing_URL', retry_base_ms => 100, retry_max_ms => 200);
CREATE TABLE perm (id int PRIMARY KEY);
SELECT pg_sync.track('perm', 'strict');
SELECT pg_sync.track('perm', 'lenient');
INSERT INTO perm SELECT generate_series(1, 5);
SQL
wait_status strict 30 "dead = 5 AND pending = 0" "five dead letters at once"
assert_eq "$(q -c "SELECT string_agg(DISTINCT attempts || '|' || pg_sync._error_class(last_error), ',') FROM pg_sync.dead_letters WHERE endpoint = 'strict'")" \
    "1|HTTP 404 (permanent for this endpoint)" "permanent dead letters"
wait_status lenient 30 "failed_attempts_total >= 2" "retries of the endpoint without permanent statuses"
assert_eq "$(st lenient "dead || '/' || pending")" "0/5" "404 without permanent_statuses: retried, not dead"
assert_eq "$(q -c "SELECT permanent_statuses FROM pg_sync.endpoints WHERE name = 'strict'")" "{400,404,422}" "endpoints.permanent_statuses"
echo "PASS: 225 endpoint limits"
