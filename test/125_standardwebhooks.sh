#!/usr/bin/env bash
# pg_sync's signed requests verify with the official Standard Webhooks library (issue 15, item 7):
# the npm package `standardwebhooks` (installed into a temp dir from the npm registry; cached in
# /tmp so re-runs are quick) runs in examples/receivers/standardwebhooks_receiver.js on loopback.
#   a) an endpoint with the receiver's secret: every request verifies (2xx; no failed attempt, no
#      rejection), every event is applied once, ids 1..N;
#   b) an endpoint whose secret differs from the receiver's: the library rejects every request
#      (401, "No matching signature found"), nothing is applied; the check can fail.
# Needs node and npm: installed with apt (nodejs npm) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
. test/lib/status.sh
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
OTHER_SECRET=whsec_$(printf 'another secret of 32 bytes, too.' | base64)
NPM_CACHE=${NPM_CACHE:-/tmp/pg_sync_npm_cache}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "installing nodejs and npm (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
dir=$(mktemp -d /tmp/pg_sync_standardwebhooks.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$dir"
    delivery_test_exit
}
trap cleanup EXIT

# The library, as examples/receivers/package.json asks for it.
cp examples/receivers/package.json "$dir/"
(cd "$dir" && npm install --cache "$NPM_CACHE" --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null) ||
    fail "npm install standardwebhooks failed"
version=$(node -p "require('$dir/node_modules/standardwebhooks/package.json').version")
echo "standardwebhooks $version (npm)"

pg_start standardwebhooks
start_receiver() { # NAME SECRET: port in ${NAME}_port
    local port
    port=$(pg_free_port)
    NODE_PATH="$dir/node_modules" node examples/receivers/standardwebhooks_receiver.js --port "$port" \
        --secret "$2" --applied "$dir/$1.jsonl" 2>"$dir/$1.err" &
    pids+=($!)
    printf -v "${1}_port" %s "$port"
    listening() { curl -s --noproxy '*' -o /dev/null "http://127.0.0.1:$1/" -X POST -d '{}'; }
    wait_for "the $1 receiver to listen" 15 listening "$port"
}
start_receiver good "$SECRET"
start_receiver bad "$SECRET"
# (The listening probes are unsigned: rejected with "(no webhook-id)"; signed() skips them.)
signed() { grep -v '^rejected (no webhook-id)' "$1" || true; }

q >/dev/null <<SQL
CREATE EXTENSION pg_sync;
CREATE TABLE accounts (id int PRIMARY KEY, note text NOT NULL);
SELECT pg_sync.create_endpoint('good', 'http://127.0.0.1:$good_port/hook', secret => '$SECRET', batch_size => 7);
SELECT pg_sync.create_endpoint('bad', 'http://127.0.0.1:$bad_port/hook', secret => '$OTHER_SECRET',
                               max_attempts => 2, retry_base_ms => 50, retry_max_ms => 100);
SELECT pg_sync.track('accounts', 'good');
SELECT pg_sync.track('accounts', 'bad');
-- Payloads that are easy to break in a signature: non-ASCII, quotes, backslashes, newlines.
INSERT INTO accounts SELECT g, format(E'k\u00e9y %s "q" \\\\ \u2713\n', g) FROM generate_series(1, 40) g;
SELECT pg_sync.emit('good', 'hello', '{"x": "\u00fc\u00df"}', 'k1');
SQL
for i in $(seq 1 10); do q -c "UPDATE accounts SET note = note || '.' WHERE id = $i"; done

# a) every request verifies.
wait_for "the good endpoint to drain" 60 cond "(SELECT pending = 0 FROM pg_sync.endpoint_status WHERE endpoint = 'good')"
wait_for "the delivered count" 10 cond "(SELECT delivered_total = 51 FROM pg_sync.endpoint_status WHERE endpoint = 'good')"
assert_eq "$(q -c "SELECT failed_attempts_total FROM pg_sync.endpoint_status WHERE endpoint = 'good'")" 0 \
    "requests to the right secret that failed"
[ -z "$(signed "$dir/good.err")" ] || fail "the library rejected requests: $(signed "$dir/good.err" | head -n 5)"
requests=$(q -c "SELECT count(*) FROM pg_sync.recent_attempts WHERE endpoint = 'good' AND status = 204")
/usr/bin/python3 - "$dir/good.jsonl" <<'PY' || fail "good: wrong applied events"
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
ids = [e["id"] for e in events]
assert len(ids) == len(set(ids)) == 51, f"{len(ids)} applied, {len(set(ids))} distinct, 51 expected"
assert any(e["op"] == "emit" and e["payload"] == {"x": "üß"} for e in events), "emit event"
PY
echo "ok a: standardwebhooks $version verified all $requests requests (51 events, non-ASCII payloads), each event applied once"

# b) the wrong secret: every request rejected by the library, nothing applied.
wait_for "the bad endpoint's failures" 60 cond "(SELECT failed_attempts_total >= 2 AND last_status = 401 AND delivered_total = 0
                                             FROM pg_sync.endpoint_status WHERE endpoint = 'bad')"
[ ! -s "$dir/bad.jsonl" ] || fail "a request signed with another secret was applied"
rejected=$(signed "$dir/bad.err" | grep -c ': No matching signature found$' || true)
[ "$rejected" -ge 2 ] || fail "the library did not reject: $(signed "$dir/bad.err" | head -n 3)"
[ "$(signed "$dir/bad.err" | grep -vc ': No matching signature found$' || true)" = 0 ] ||
    fail "other rejections: $(signed "$dir/bad.err" | head -n 3)"
echo "ok b: with another secret the library rejected $rejected requests (401, No matching signature found); nothing applied"
