#!/usr/bin/env bash
# The example receivers of docs/receivers.md (examples/receivers/receiver.py and receiver.js)
# against a real worker: every event applied exactly once, in per-key order; a forged request is
# refused with 401; a replayed (validly signed) request is accepted but applies nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
PY=/usr/bin/python3
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
command -v node >/dev/null || fail "node is required (scripts/setup.sh installs nodejs)"
dir=$(mktemp -d /tmp/pg_sync_examples.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$dir"
    delivery_test_exit
}
trap cleanup EXIT
pg_start examples

py_port=$(pg_free_port)
js_port=$(pg_free_port)
"$PY" examples/receivers/receiver.py --port "$py_port" --secret "$SECRET" --applied "$dir/py.jsonl" &
pids+=($!)
node examples/receivers/receiver.js --port "$js_port" --secret "$SECRET" --applied "$dir/js.jsonl" &
pids+=($!)
listening() { curl -s --noproxy '*' -o /dev/null "http://127.0.0.1:$1/" -X POST -d '{}'; }
wait_for "the Python example to listen" 15 listening "$py_port"
wait_for "the Node example to listen" 15 listening "$js_port"

q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
SELECT pg_sync.create_endpoint('py', 'http://127.0.0.1:$py_port/hook', secret => '$SECRET', batch_size => 7);
SELECT pg_sync.create_endpoint('js', 'http://127.0.0.1:$js_port/hook', secret => '$SECRET', batch_size => 7);
SELECT pg_sync.track('accounts', 'py');
SELECT pg_sync.track('accounts', 'js');
INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 10) g;
SQL
for i in $(seq 1 20); do q -c "UPDATE accounts SET balance = balance + 1 WHERE id = 1 + $i % 10"; done
drained() { [ "$(q -c "SELECT sum(pending) FROM pg_sync.endpoint_status")" == 0 ]; }
wait_for "both endpoints to drain" 30 drained

# Exactly once, in order: per key, the applied balances are 0, 1, 2, ... and end at the table's.
check() { # FILE
    "$PY" - "$1" "$(q -c "SELECT string_agg(id || ':' || balance, ',' ORDER BY id) FROM accounts")" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
ids = [e["id"] for e in events]
assert len(ids) == len(set(ids)) == 30, f"{len(ids)} applied, {len(set(ids))} distinct, 30 expected"
final = dict(map(int, kv.split(":")) for kv in sys.argv[2].split(","))
for key, want in final.items():
    seen = [e["new"]["balance"] for e in events if e["key"]["id"] == key]
    assert seen == list(range(want + 1)), f"key {key}: {seen}"
PY
}
check "$dir/py.jsonl" || fail "Python example: wrong applied events"
check "$dir/js.jsonl" || fail "Node example: wrong applied events"

# A forged request: 401, nothing applied. A replay of an applied event, validly signed: 2xx,
# nothing applied twice.
post() { # PORT SIGNATURE-SECRET BODY -> status
    "$PY" - "$1" "$2" "$3" <<'PY'
import base64, hashlib, hmac, http.client, sys, time
port, secret, body = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
msg_id, ts = "msg_replay", str(int(time.time()))
key = base64.b64decode(secret.removeprefix("whsec_"))
sig = "v1," + base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
c.request("POST", "/hook", body, {"content-type": "application/json", "webhook-id": msg_id,
                                  "webhook-timestamp": ts, "webhook-signature": sig})
print(c.getresponse().status)
PY
}
other_secret=whsec_$(printf 'another secret of 24 bytes' | base64)
for kind in py js; do
    port_var=${kind}_port
    replay=$(head -n 1 "$dir/$kind.jsonl") # event ids are per endpoint: replay the receiver's own
    assert_eq "$(post "${!port_var}" "$other_secret" "{\"events\":[$replay]}")" 401 "forged request ($kind)"
    assert_eq "$(post "${!port_var}" "$SECRET" "{\"events\":[$replay]}")" 204 "replayed request ($kind)"
done
check "$dir/py.jsonl" || fail "Python example: a replay or a forgery was applied"
check "$dir/js.jsonl" || fail "Node example: a replay or a forgery was applied"
echo "ok: example receivers (Python, Node) applied 30 events each exactly once, in order; forgery refused, replay ignored"
