#!/usr/bin/python3
"""Times one pg_sync drain for bench/delivery.

Usage: drain.py ENDPOINT EVENTS NGINX_PORT TIMEOUT_S   (PG* environment variables pick the
database; run as superuser). The endpoint is paused with EVENTS events queued. Resumes it, polls
until the queue is empty (cheap: max(id) of the endpoint through the queue's primary key every 5 ms, and the
endpoint's pending count every second), pauses it again and prints one JSON object: events,
seconds, worker_pid, worker_cpu_s (utime + stime of the worker from /proc over the drain),
requests and connections (nginx's counters: connections opened
during the drain), worker_pid_after, pending_after.
"""
import json
import os
import sys
import time
import urllib.request

import psycopg2


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nginx_counters(port):
    """(connections accepted, requests) so far; the status request itself counts as both."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx_status", timeout=5) as r:
        lines = r.read().decode().splitlines()
    # "server accepts handled requests" then "A H R"
    accepts, _, requests = (int(x) for x in lines[2].split())
    return accepts, requests


def worker_pid(cur):
    cur.execute("SELECT pid FROM pg_sync.workers WHERE database = current_database()")
    row = cur.fetchone()
    return row[0] if row else None


def pending(cur, endpoint):
    cur.execute("SELECT pending FROM pg_sync.endpoint_status WHERE endpoint = %s", (endpoint,))
    return cur.fetchone()[0]


def main():
    endpoint, events, nginx_port, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        float(sys.argv[4])
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    queued = pending(cur, endpoint)
    if queued != events:
        sys.exit(f"drain: {queued} events pending for {endpoint}, expected {events}")
    cur.execute("SELECT id FROM pg_sync._endpoints WHERE name = %s", (endpoint,))
    endpoint_id = cur.fetchone()[0]
    pid = worker_pid(cur)
    if pid is None:
        sys.exit("drain: no pg_sync worker for this database")
    conns0, requests0 = nginx_counters(nginx_port)
    cpu0 = proc_cpu_seconds(pid)

    start = time.monotonic()
    cur.execute("SELECT pg_sync.resume_endpoint(%s)", (endpoint,))
    deadline = start + timeout
    next_full_check = start + 1.0
    done = None
    while done is None:
        now = time.monotonic()
        if now > deadline:
            break
        cur.execute("SELECT max(id) FROM pg_sync._queue WHERE endpoint_id = %s", (endpoint_id,))
        if cur.fetchone()[0] is None:
            done = time.monotonic()
            break
        if now >= next_full_check:
            next_full_check = now + 1.0
            if pending(cur, endpoint) == 0:
                done = time.monotonic()
                break
        time.sleep(0.005)
    cpu1 = proc_cpu_seconds(pid) if os.path.exists(f"/proc/{pid}") else float("nan")
    conns1, requests1 = nginx_counters(nginx_port)
    cur.execute("SELECT pg_sync.pause_endpoint(%s)", (endpoint,))
    pid_after = worker_pid(cur)
    left = pending(cur, endpoint)
    if done is None:
        cur.execute("SELECT row_to_json(s) FROM pg_sync.endpoint_status s WHERE endpoint = %s",
                    (endpoint,))
        status = cur.fetchone()[0]
        sys.exit(f"drain: {left} of {events} events still pending after {timeout:.0f} s; "
                 f"endpoint_status: {json.dumps(status)}")
    print(json.dumps({
        "events": events, "seconds": round(done - start, 4), "worker_pid": pid,
        "worker_cpu_s": round(cpu1 - cpu0, 3), "requests": requests1 - requests0 - 1,
        "connections": conns1 - conns0 - 1,
        "worker_pid_after": pid_after, "pending_after": left}))


if __name__ == "__main__":
    main()
