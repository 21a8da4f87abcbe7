#!/usr/bin/python3
"""The classic outbox relay that bench/delivery compares pg_sync with.

One database connection, one keep-alive HTTP connection (http.client). Loop: claim and delete up
to 100 of the oldest outbox rows (FOR UPDATE SKIP LOCKED, so that several relays could share the
table), POST each one as its own request in pg_sync's event format, commit after the last answer
(so a crash before the commit re-sends them: at-least-once, as pg_sync). Exits when the outbox is
empty.

Usage: outbox_consumer.py HOST PORT PATH   (PG* environment variables pick the database)
Prints one JSON object: events, requests, seconds, consumer_cpu_s, backend_cpu_s.
"""
import http.client
import json
import os
import socket
import sys
import time

import psycopg2

CLAIM = """
DELETE FROM outbox
 WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
RETURNING id, tbl, op, key::text, payload::text, old::text, txid,
          to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
"""


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conn = psycopg2.connect("")
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    backend = cur.fetchone()[0]
    conn.commit()
    http_conn = http.client.HTTPConnection(host, port)
    # http.client writes the headers and the body with two send() calls: without TCP_NODELAY,
    # Nagle's algorithm may hold the body back (requests/urllib3 set it too).
    http_conn.connect()
    http_conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Content-Type": "application/json"}

    backend_cpu0 = proc_cpu_seconds(backend)
    t0 = os.times()
    start = time.monotonic()
    events = 0
    while True:
        cur.execute(CLAIM)
        rows = cur.fetchall()
        if not rows:
            conn.commit()
            break
        # RETURNING gives no order: send in id order, as a relay that keeps per-key order must.
        rows.sort()
        for id_, tbl, op, key, new, old, txid, captured_at in rows:
            body = ('{"events":[{"id":%d,"op":%s,"table":%s,"key":%s,"new":%s,"old":%s,'
                    '"txid":%d,"captured_at":"%s"}]}' % (
                        id_, json.dumps(op), json.dumps(tbl), key, new or "null",
                        old or "null", txid, captured_at))
            http_conn.request("POST", path, body=body, headers=headers)
            resp = http_conn.getresponse()
            resp.read()
            if not 200 <= resp.status < 300:
                sys.exit(f"outbox_consumer: HTTP {resp.status} for event {id_}")
        conn.commit()
        events += len(rows)
    seconds = time.monotonic() - start
    t1 = os.times()
    backend_cpu = proc_cpu_seconds(backend) - backend_cpu0
    print(json.dumps({
        "events": events, "requests": events, "seconds": round(seconds, 4),
        "consumer_cpu_s": round(t1.user + t1.system - t0.user - t0.system, 3),
        "backend_cpu_s": round(backend_cpu, 3)}))
    conn.close()


if __name__ == "__main__":
    main()
