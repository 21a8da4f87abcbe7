#!/usr/bin/env bash
# Issue 14 items 1, 7, 8 end to end, against real receivers on loopback (test/lib/receiver.py):
#   a) secret rotation: pg_sync.rotate_secret() with a short overlap. During it every request
#      carries two v1 signatures, verified (independently, test/lib/webhook_verify.py) by a
#      receiver still on the old secret and by one already on the new one; endpoints shows the
#      rotation. After it: one signature, the old secret verifies nothing, no request signed
#      with it has a timestamp past the overlap's end, and the worker erases it.
#   b) format => 'cloudevents': Content-Type application/cloudevents-batch+json, the body a JSON
#      array of CloudEvents 1.0 with the required attributes and their types (specversion, id,
#      source, type), time (RFC 3339), subject, datacontenttype, data = the default event
#      object; the signature signs the exact body; a Kafka endpoint refuses the format.
#   c) trace context: SET LOCAL pg_sync.traceparent in writers of two traces and an untraced
#      one (capture trigger and emit): every request carries one trace, its traceparent header is
#      that of each of its events (and absent for untraced ones), per-key order holds across
#      traces; a dead letter keeps its trace through redeliver().
set -euo pipefail
cd "$(dirname "$0")/.."
. test/lib/pg.sh
. test/lib/assert.sh
. test/lib/receiver.sh
pg_start features
trap delivery_test_exit EXIT

PY=/usr/bin/python3
new_secret() { echo "whsec_$($PY -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"; }
OLD=$(new_secret)
NEW=$(new_secret)
receiver_start rot --secret "$OLD"
receiver_start ce --secret "$NEW"
receiver_start tr
q -c "CREATE EXTENSION pg_sync" >/dev/null
pending_zero() { [ "$(q -c "SELECT pending FROM pg_sync.endpoint_status WHERE endpoint = '$1'")" == 0 ]; }

# --- a) secret rotation -----------------------------------------------------------------------
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('rot', '$rot_URL', secret => '$OLD', batch_size => 10);
CREATE TABLE rot_items (id int PRIMARY KEY, v int);
SELECT pg_sync.track('rot_items', 'rot');
INSERT INTO rot_items VALUES (1, 0);
SQL
receiver_wait_events rot 1 30
# (The overlap is short so that the test sees its end; it starts when rotate_secret commits.)
until_epoch=$(q -c "SELECT extract(epoch FROM pg_sync.rotate_secret('rot', '$NEW', overlap => '6 seconds'))")
assert_eq "$(q -c "SELECT secret_rotation_until IS NOT NULL FROM pg_sync.endpoints WHERE name = 'rot'")" t \
    "endpoints shows the rotation"
q -c "INSERT INTO rot_items VALUES (2, 0)"
receiver_wait_events rot 2 30
receiver_mode rot "{\"mode\": \"ok\", \"secret\": \"$NEW\"}" # the receiver moves to the new secret
q -c "INSERT INTO rot_items VALUES (3, 0)"
receiver_wait_events rot 3 30
# After the overlap (polled): one signature, by the new secret only.
past_end() { [ "$(q -c "SELECT now() > to_timestamp($until_epoch)")" == t ]; }
wait_for "the end of the overlap" 30 past_end
q -c "INSERT INTO rot_items VALUES (4, 0)"
receiver_wait_events rot 4 30
receiver_mode rot "{\"mode\": \"ok\", \"secret\": \"$OLD\"}" # a receiver that never moved
q -c "INSERT INTO rot_items VALUES (5, 0)"
receiver_wait_events rot 5 30
erased() { [ "$(q -c "SELECT previous_secret IS NULL AND previous_secret_until IS NULL FROM pg_sync._endpoints WHERE name = 'rot'")" == t ]; }
wait_for "the worker erases the previous secret" 30 erased
assert_eq "$(q -c "SELECT secret_rotation_until IS NULL FROM pg_sync.endpoints WHERE name = 'rot'")" t \
    "endpoints no longer shows a rotation"
$PY - "$rot_OUT" "$until_epoch" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
until = float(sys.argv[2])
by_id = {}
for r in recs:
    assert r["status"] == 204, r
    sigs = r["headers"]["webhook-signature"].split()
    assert all(s.startswith("v1,") for s in sigs), sigs
    for e in r["events"]:
        by_id[e["id"]] = (len(sigs), r["verified"], int(r["headers"]["webhook-timestamp"]))
# id 1: before the rotation; 2: old receiver, 3: new receiver, both during the overlap;
# 4: new receiver, 5: old receiver, both after it.
expect = {1: (1, True), 2: (2, True), 3: (2, True), 4: (1, True), 5: (1, False)}
for i, (n, ok) in expect.items():
    assert by_id[i][:2] == (n, ok), (i, by_id[i])
# No request signed with the old secret has a timestamp past the end of the overlap.
for r in recs:
    if len(r["headers"]["webhook-signature"].split()) == 2:
        assert int(r["headers"]["webhook-timestamp"]) <= until, r["headers"]
print("a) rotation: two signatures during the overlap (old and new receivers verify),"
      " one after (the old secret verifies nothing); erased by the worker")
PY

# --- b) CloudEvents ---------------------------------------------------------------------------
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('ce', '$ce_URL', secret => '$NEW', format => 'cloudevents', batch_size => 50);
CREATE TABLE ce_orders (id int PRIMARY KEY, note text);
SELECT pg_sync.track('ce_orders', 'ce', events => '{insert,update,delete,truncate}');
BEGIN;
INSERT INTO ce_orders VALUES (1, 'a'), (2, 'b "quoted"');
UPDATE ce_orders SET note = 'c' WHERE id = 1;
DELETE FROM ce_orders WHERE id = 2;
SELECT pg_sync.emit('ce', 'order.paid', '{"total": 12.5}', key => 'order-7');
COMMIT;
TRUNCATE ce_orders;
SQL
receiver_wait_events ce 6 30
$PY - "$ce_OUT" <<'PY'
import json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
rfc3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
events = []
for r in recs:
    assert r["status"] == 204 and r["verified"] is True, (r["status"], r["verify_error"])
    assert r["headers"]["content-type"] == "application/cloudevents-batch+json", r["headers"]
    assert isinstance(r.get("cloudevents"), list) and r["cloudevents"], r
    events += r["cloudevents"]
ids = [int(e["id"]) for e in events]
assert ids == sorted(ids) and len(ids) == 6, ids
for e in events:
    # Required attributes: non-empty strings; specversion 1.0.
    for a in ("specversion", "id", "source", "type"):
        assert isinstance(e[a], str) and e[a], (a, e)
    assert e["specversion"] == "1.0"
    assert rfc3339.match(e["time"]), e["time"]
    assert e["datacontenttype"] == "application/json"
    assert "subject" not in e or (isinstance(e["subject"], str) and e["subject"]), e
    assert e["id"] == str(e["data"]["id"]), e
    assert e["time"] == e["data"]["captured_at"]
    # Extension attribute names are lower-case letters and digits (CloudEvents 1.0).
    for name in e:
        assert re.fullmatch(r"[a-z0-9]+|data", name), name
ops = [(e["type"], e["source"], e.get("subject")) for e in events]
assert ops == [("pg_sync.insert", "/pg_sync/postgres/public.ce_orders", '{"id":1}'),
               ("pg_sync.insert", "/pg_sync/postgres/public.ce_orders", '{"id":2}'),
               ("pg_sync.update", "/pg_sync/postgres/public.ce_orders", '{"id":1}'),
               ("pg_sync.delete", "/pg_sync/postgres/public.ce_orders", '{"id":2}'),
               ("order.paid", "/pg_sync/postgres", '"order-7"'),
               ("pg_sync.truncate", "/pg_sync/postgres/public.ce_orders", None)], ops
assert events[1]["data"]["new"] == {"id": 2, "note": 'b "quoted"'}
assert events[4]["data"]["payload"] == {"total": 12.5} and events[4]["data"]["type"] == "order.paid"
print("b) cloudevents: %d events in %d signed batch requests, attributes per CloudEvents 1.0" % (len(events), len(recs)))
PY

# --- c) trace context -------------------------------------------------------------------------
A=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
B=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00
q >/dev/null <<SQL
SELECT pg_sync.create_endpoint('tr', '$tr_URL', batch_size => 100, max_in_flight => 4, max_attempts => 1);
CREATE TABLE tr_items (id int PRIMARY KEY, v int);
SELECT pg_sync.track('tr_items', 'tr');
SELECT pg_sync.pause_endpoint('tr'); -- so that the traces share a backlog
BEGIN;
SET LOCAL pg_sync.traceparent = '$A';
INSERT INTO tr_items SELECT g, 0 FROM generate_series(1, 10) g;
SELECT pg_sync.emit('tr', 'traced.emit', '{}', key => 'k');
COMMIT;
BEGIN;
SET LOCAL pg_sync.traceparent = '$B';
UPDATE tr_items SET v = 1 WHERE id <= 5;
COMMIT;
UPDATE tr_items SET v = 2 WHERE id IN (1, 6);
BEGIN;
SET LOCAL pg_sync.traceparent = '$A';
UPDATE tr_items SET v = 3 WHERE id = 1;
COMMIT;
SELECT pg_sync.resume_endpoint('tr');
SQL
receiver_wait_events tr 19 30
$PY - "$tr_OUT" "$A" "$B" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
A, B = sys.argv[2], sys.argv[3]
seen = {}
for r in recs:
    assert r["status"] == 204, r
    traces = {e.get("traceparent") for e in r["events"]}
    assert len(traces) == 1, ("a request mixes traces", traces)
    assert r["headers"].get("traceparent") == traces.pop(), r["headers"]
    for e in r["events"]:
        seen[e["id"]] = e
events = [seen[i] for i in sorted(seen)]
assert len(events) == 19, len(events)
want = [A] * 11 + [B] * 5 + [None] * 2 + [A]
assert [e.get("traceparent") for e in events] == want, [e.get("traceparent") for e in events]
# Per-key order across traces: each key's events arrive in id order (requests in log order).
order = {}
for r in recs:
    for e in r["events"]:
        k = json.dumps(e["key"])
        assert e["id"] > order.get(k, 0), ("out of order", k, e["id"])
        order[k] = e["id"]
print("c) trace context: %d requests, one trace each, header = the events' traceparent" % len(recs))
PY
# A dead letter keeps its trace: redelivered, it carries it again.
receiver_mode tr '{"mode": "status", "status": 500}'
q -c "BEGIN; SET LOCAL pg_sync.traceparent = '$B'; INSERT INTO tr_items VALUES (100, 0); COMMIT;" >/dev/null
dead_one() { [ "$(q -c "SELECT dead FROM pg_sync.endpoint_status WHERE endpoint = 'tr'")" == 1 ]; }
wait_for "a dead letter" 30 dead_one
assert_eq "$(q -c "SELECT traceparent FROM pg_sync._dead_letters")" "$B" "the dead letter keeps the trace"
receiver_mode tr '{"mode": "ok"}'
q -c "SELECT pg_sync.redeliver('tr')" >/dev/null
receiver_wait_events tr 20 30
assert_eq "$(rq tr '[r["headers"].get("traceparent") for r in ok for e in r["events"] if e["key"] == {"id": 100}][-1]')" "$B" \
    "redelivered with its trace"
echo "c) a dead letter keeps its trace through redeliver()"
! grep -E "PANIC|TRAP|server process .* was terminated" "$PG_DIR/server.log" || fail "server crash in the log"
echo "ok: endpoint features"
