#!/usr/bin/python3
"""A monitoring dashboard for bench/delivery: polls pg_sync's monitoring views during a drain.

Usage: poller.py INTERVAL_S OUT.json READY_FILE   (PG* environment variables pick the database)

Connects once, touches READY_FILE, then every INTERVAL_S seconds (on a fixed schedule; a poll
that overruns is not made up for) runs, in turn, SELECT * FROM pg_sync.endpoint_status,
pg_sync.health(), pg_sync.workers and pg_sync.recent_attempts, each timed on the client
(execute + fetch of every row); POLL_QUERIES (comma-separated names) polls only some of them.
On SIGTERM writes OUT.json: polls, per query the calls, the
median, p99 and largest time in ms, and the CPU the polling took (utime + stime, /proc): this
process and its server backend, per second of polling.
"""
import json
import math
import os
import signal
import sys
import time

import psycopg2

QUERIES = {
    "endpoint_status": "SELECT * FROM pg_sync.endpoint_status",
    "health": "SELECT * FROM pg_sync.health()",
    "workers": "SELECT * FROM pg_sync.workers",
    "recent_attempts": "SELECT * FROM pg_sync.recent_attempts",
}
stop = False


def on_term(*_):
    global stop
    stop = True


def percentile(values, p):
    s = sorted(values)
    return s[max(1, math.ceil(p / 100 * len(s))) - 1] if s else math.nan


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    interval, out, ready = float(sys.argv[1]), sys.argv[2], sys.argv[3]
    if os.environ.get("POLL_QUERIES"):  # a subset, to see which query costs what
        for name in set(QUERIES) - set(os.environ["POLL_QUERIES"].split(",")):
            del QUERIES[name]
    signal.signal(signal.SIGTERM, on_term)
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    times = {name: [] for name in QUERIES}
    cur.execute("SELECT pg_backend_pid()")
    backend = cur.fetchone()[0]
    open(ready, "w").close()
    polls, next_at = 0, time.monotonic()
    started, own0, backend0 = time.monotonic(), time.process_time(), cpu_seconds(backend)
    while not stop:
        for name, sql in QUERIES.items():
            t0 = time.perf_counter()
            cur.execute(sql)
            cur.fetchall()
            times[name].append((time.perf_counter() - t0) * 1000)
        polls += 1
        next_at += interval
        now = time.monotonic()
        if next_at < now:
            next_at = now  # overran: no burst to catch up
        while not stop and time.monotonic() < next_at:
            time.sleep(min(0.01, max(0.0, next_at - time.monotonic())))
    elapsed = time.monotonic() - started
    own, server = time.process_time() - own0, cpu_seconds(backend) - backend0
    summary = {"polls": polls, "interval_s": interval, "seconds": round(elapsed, 3),
               "cpu_ms_per_s": {"poller": round(own * 1000 / elapsed, 1),
                                "backend": round(server * 1000 / elapsed, 1)}, "queries": {
        name: {"calls": len(ms), "median_ms": round(sorted(ms)[len(ms) // 2], 3) if ms else None,
               "p99_ms": round(percentile(ms, 99), 3), "max_ms": round(max(ms), 3) if ms else None}
        for name, ms in times.items()}}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summary, f)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
