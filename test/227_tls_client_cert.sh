#!/usr/bin/env bash
# TLS client certificates and private CAs (issue 14, item 4), against nginx requiring a client
# certificate (ssl_verify_client on) in front of a receiver (test/lib/receiver.py). The test
# makes its own CA, a server certificate for 127.0.0.1 (subjectAltName IP) and a client
# certificate with openssl:
#   a) create_endpoint refuses bad material with a clear error and stores nothing: a key of
#      another certificate, a certificate without its key, an encrypted key, text that is not
#      PEM, TLS material on an http:// URL;
#   b) with the client certificate and the private CA, events are delivered; the endpoints view
#      shows that a key is set (never the key) and when the certificate expires;
#   c) without a client certificate nginx answers 400: the events are retried, not lost;
#      alter_endpoint gives the certificate and they arrive;
#   d) with a wrong CA the handshake fails (TLS error in recent_attempts); after alter_endpoint
#      fixes the CA the backlog drains;
#   e) the key is in no view, no error text, no server log.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
command -v nginx >/dev/null || { echo "SKIP: nginx not installed"; exit 0; }

pg_start tls_client
dir=$(mktemp -d /tmp/pg_sync_tls.XXXXXX)
nginx_pid=
cleanup() {
    [ -z "$nginx_pid" ] || kill "$nginx_pid" 2>/dev/null || true
    receiver_stop_all
    pg_stop
    rm -rf "$dir"
}
trap cleanup EXIT

# --- certificates ------------------------------------------------------------------------------
cd "$dir"
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=pg_sync test CA"
ossl req -x509 -newkey rsa:2048 -nodes -keyout wrong_ca.key -out wrong_ca.pem -days 2 -subj "/CN=another CA"
ossl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
printf 'subjectAltName=IP:127.0.0.1\n' >server.ext
ossl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr -subj "/CN=pg_sync client"
ossl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2
ossl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 -subj "/CN=other"
ossl pkcs8 -topk8 -in client.key -out client_encrypted.key -passout pass:secret
cd - >/dev/null
for f in ca.pem server.pem client.pem client.key; do [ -s "$dir/$f" ] || fail "openssl did not make $f"; done

# --- nginx: TLS with a required client certificate, in front of the receiver --------------------
receiver_start hook
port=$(pg_free_port)
mkdir -p "$dir/nginx"
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
user root;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 64; }
http {
    access_log $dir/nginx/access.log;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $dir/server.pem;
        ssl_certificate_key $dir/server.key;
        ssl_client_certificate $dir/ca.pem;
        ssl_verify_client on;
        location / {
            proxy_pass http://127.0.0.1:$hook_PORT;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
nginx -p "$dir/nginx" -c "$dir/nginx.conf" -g 'daemon off;' >"$dir/nginx/stdout.log" 2>&1 &
nginx_pid=$!
nginx_up() { curl -s -o /dev/null --cacert "$dir/ca.pem" "https://127.0.0.1:$port/" ; }
wait_for "nginx on port $port" 15 nginx_up
# The set-up itself: curl with the client certificate gets through, without it gets 400.
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/ca.pem" --cert "$dir/client.pem" --key "$dir/client.key" \
       -H 'Content-Type: application/json' --data '{"events":[]}' "https://127.0.0.1:$port/hook")
assert_eq "$code" 204 "curl with the client certificate through nginx"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/ca.pem" --data '{}' "https://127.0.0.1:$port/hook")
assert_eq "$code" 400 "curl without a client certificate"

URL="https://127.0.0.1:$port/hook"
q -c "CREATE EXTENSION pg_sync"
# psql variables carry the PEM texts (:'name' quotes them as literals).
pem_vars=(-v "cert=$(cat "$dir/client.pem")" -v "key=$(cat "$dir/client.key")" -v "ca=$(cat "$dir/ca.pem")"
          -v "wrong_ca=$(cat "$dir/wrong_ca.pem")" -v "other_key=$(cat "$dir/other.key")"
          -v "encrypted_key=$(cat "$dir/client_encrypted.key")" -v "url=$URL")
# (psql interpolates variables only in what it reads, not in -c.)
qp() { if [ $# -gt 0 ]; then printf '%s\n' "$1" | q "${pem_vars[@]}"; else q "${pem_vars[@]}"; fi; }
refused() { # SQL EXPECTED_MESSAGE
    local out
    if out=$(qp "$1" 2>&1); then fail "accepted: $1"; fi
    assert_contains "$out" "$2"
}

# --- a) bad material is refused, nothing stored ---------------------------------------------------
refused "SELECT pg_sync.create_endpoint('bad', :'url', tls_client_cert => :'cert', tls_client_key => :'other_key')" \
    "tls_client_key is not the key of tls_client_cert"
refused "SELECT pg_sync.create_endpoint('bad', :'url', tls_client_cert => :'cert')" "tls_client_cert needs tls_client_key"
refused "SELECT pg_sync.create_endpoint('bad', :'url', tls_client_cert => :'cert', tls_client_key => :'encrypted_key')" \
    "tls_client_key is encrypted"
refused "SELECT pg_sync.create_endpoint('bad', :'url', tls_ca => 'not a certificate')" "tls_ca is not PEM"
refused "SELECT pg_sync.create_endpoint('bad', 'http://127.0.0.1:$hook_PORT/hook', tls_ca => :'ca')" \
    "apply to https:// endpoints only"
assert_eq "$(q -c "SELECT count(*) FROM pg_sync._endpoints")" 0 "a: endpoints after refused creates"
echo "a) bad TLS material refused, nothing stored"

# --- b) delivery with the client certificate and the private CA -------------------------------------
qp >/dev/null <<'SQL'
SELECT pg_sync.create_endpoint('mtls', :'url', tls_client_cert => :'cert', tls_client_key => :'key', tls_ca => :'ca');
CREATE TABLE t (id int PRIMARY KEY, v text);
SELECT pg_sync.track('t', 'mtls');
INSERT INTO t SELECT g, 'b' FROM generate_series(1, 5) g;
SQL
receiver_wait_events hook 5 30
wait_status mtls 20 "pending = 0" "b: the backlog delivered"
row=$(q -c "SELECT has_tls_client_key, tls_client_cert_expires > now() + interval '1 day', has_tls_ca FROM pg_sync.endpoints WHERE name = 'mtls'")
assert_eq "$row" "t|t|t" "b: endpoints view (has_tls_client_key, expiry, has_tls_ca)"
echo "b) 5 events delivered through nginx with the client certificate and the private CA"

# --- c) without a client certificate: 400, retried, not lost ------------------------------------------
qp "SELECT pg_sync.alter_endpoint('mtls', tls_client_cert => '', tls_client_key => '', retry_base_ms => 100, retry_max_ms => 500)" >/dev/null
q -c "INSERT INTO t SELECT g, 'c' FROM generate_series(6, 8) g"
wait_for "a 400 from nginx in recent_attempts" 30 cond "EXISTS (SELECT FROM pg_sync.recent_attempts WHERE endpoint = 'mtls' AND status = 400)"
assert_eq "$(st mtls pending)" 3 "c: events pending while nginx answers 400"
qp "SELECT pg_sync.alter_endpoint('mtls', tls_client_cert => :'cert', tls_client_key => :'key')" >/dev/null
receiver_wait_events hook 8 30
wait_status mtls 20 "pending = 0 AND dead = 0" "c: the backlog delivered after the certificate came back"
echo "c) without the client certificate nginx answered 400, the 3 events were retried and delivered after alter_endpoint"

# --- d) a wrong CA: the handshake fails; fixed by alter_endpoint ----------------------------------------
# (A new CA bundle is refused without the client certificate given again: the credentials do not
# go to a server another CA vouches for.)
refused "SELECT pg_sync.alter_endpoint('mtls', tls_ca => :'wrong_ca')" "changes which server is trusted"
qp "SELECT pg_sync.alter_endpoint('mtls', tls_ca => :'wrong_ca', tls_client_cert => :'cert', tls_client_key => :'key')" >/dev/null
q -c "INSERT INTO t SELECT g, 'd' FROM generate_series(9, 12) g"
wait_for "a TLS error in recent_attempts" 30 cond "EXISTS (SELECT FROM pg_sync.recent_attempts WHERE endpoint = 'mtls' AND error LIKE 'TLS error%')"
assert_eq "$(st mtls pending)" 4 "d: events pending while the CA is wrong"
qp "SELECT pg_sync.alter_endpoint('mtls', tls_ca => :'ca', tls_client_cert => :'cert', tls_client_key => :'key')" >/dev/null
receiver_wait_events hook 12 30
wait_status mtls 20 "pending = 0 AND dead = 0" "d: the backlog drained after the CA was fixed"
echo "d) wrong CA: $(q -c "SELECT error FROM pg_sync.recent_attempts WHERE endpoint = 'mtls' AND error LIKE 'TLS error%' LIMIT 1")"
echo "   backlog drained after alter_endpoint(tls_ca => ...)"

# --- e) the key is never shown ---------------------------------------------------------------------------
key_line=$(sed -n 2p "$dir/client.key")
shown=$(q -c "SELECT row_to_json(e)::text FROM pg_sync.endpoints e; SELECT row_to_json(s)::text FROM pg_sync.endpoint_status s;
              SELECT row_to_json(a)::text FROM pg_sync.recent_attempts a")
[[ "$shown" != *"$key_line"* && "$shown" != *"PRIVATE KEY"* ]] || fail "e: the client key is visible in a view"
! grep -qF -e "$key_line" "$PG_DIR/server.log" || fail "e: the client key is in the server log"
# Every delivered event arrived exactly once.
dups=$(receiver_events hook | /usr/bin/python3 -c 'import json,sys,collections
ids=collections.Counter(json.loads(l)["id"] for l in sys.stdin); print(sum(1 for v in ids.values() if v>1), len(ids))')
assert_eq "$dups" "0 12" "duplicates and distinct events at the receiver"
echo "e) the key appears in no view and not in the server log; 12 distinct events, no duplicates"
echo "PASS"
