#!/usr/bin/env python3
"""A pg_sync webhook receiver in plain Python (standard library only).

It does the four things every receiver must do (docs/receivers.md):
  1. verify the Standard Webhooks signature (and reject old timestamps: replays),
  2. skip events it has already applied (pg_sync delivers at least once; dedupe on event id),
  3. apply the events of a request in body order,
  4. answer 2xx only once they are applied (anything else makes pg_sync retry).

"Applying" here appends the event to a JSON-lines file; a real receiver would write to its own
database and store the applied ids in the same transaction.

  python3 receiver.py --port 8080 --secret whsec_... --applied applied.jsonl
"""
import argparse, base64, hashlib, hmac, json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

TOLERANCE_S = 300


def verify(secret, headers, body):
    msg_id, ts, sigs = headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature")
    if not (msg_id and ts and sigs):
        raise ValueError("missing webhook headers")
    if abs(time.time() - int(ts)) > TOLERANCE_S:
        raise ValueError("timestamp outside tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    if not any(hmac.compare_digest(expected, s) for s in sigs.split()):
        raise ValueError("bad signature")


class Store:
    """Applied events: an append-only file plus the set of applied ids (rebuilt at start)."""

    def __init__(self, path):
        self.path, self.lock, self.applied = path, Lock(), set()
        if os.path.exists(path):
            with open(path) as f:
                self.applied = {json.loads(line)["id"] for line in f if line.strip()}

    def apply(self, events):
        with self.lock, open(self.path, "a") as f:
            for e in events:                      # body order = per-key commit order
                if e["id"] in self.applied:       # a redelivery: already done
                    continue
                f.write(json.dumps(e) + "\n")
                self.applied.add(e["id"])
            f.flush()
            os.fsync(f.fileno())                  # stored before we say 2xx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--applied", default="applied.jsonl")
    args = ap.parse_args()
    store = Store(args.applied)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"             # keep-alive: pg_sync reuses connections

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                verify(args.secret, {k.lower(): v for k, v in self.headers.items()}, body)
                store.apply(json.loads(body)["events"])
                self.send_response(204)
            except ValueError as e:
                self.send_response(401)
                self.log_message("rejected: %s", e)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
