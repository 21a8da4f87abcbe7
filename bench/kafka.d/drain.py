#!/usr/bin/python3
"""Times one pg_sync drain to Kafka for bench/kafka.

Usage: drain.py ENDPOINT EVENTS TIMEOUT_S   (PG* environment variables pick the database; run as
superuser). The endpoint is paused with EVENTS events queued. Resumes it, polls until the queue is
empty (max(id) of the endpoint through the queue's primary key every 5 ms, and the endpoint's
pending count every second), pauses it again and prints one JSON object: events, seconds,
worker_pid, worker_cpu_s (utime + stime over the drain, from /proc: the worker's own thread and
librdkafka's threads in it), worker_thread_cpu_s and worker_runqueue_s (the worker's main thread
alone, from /proc/PID/schedstat: time on a CPU and time runnable but waiting for one; the rest of
the drain it slept, waiting for answers or work), threads (the worker's threads at the end),
pending_after, failed_attempts (during the drain).
With PERF_OUT set (a file name), perf record --call-graph dwarf samples the worker from the moment the endpoint's
pending count first falls until the queue is empty (for a profile; the timing is then not clean).
"""
import json
import os
import signal
import subprocess
import sys
import time

import psycopg2


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def schedstat(pid):
    """The main thread's time on a CPU and time waiting in a run queue, seconds."""
    with open(f"/proc/{pid}/schedstat") as f:
        on_cpu, waiting = f.read().split()[:2]
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def status(cur, endpoint):
    cur.execute("SELECT pending, failed_attempts_total FROM pg_sync.endpoint_status WHERE endpoint = %s",
                (endpoint,))
    return cur.fetchone()


def main():
    endpoint, events, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    queued, failed0 = status(cur, endpoint)
    if queued != events:
        sys.exit(f"drain: {queued} events pending for {endpoint}, expected {events}")
    cur.execute("SELECT id FROM pg_sync._endpoints WHERE name = %s", (endpoint,))
    endpoint_id = cur.fetchone()[0]
    cur.execute("SELECT pid FROM pg_sync.workers WHERE database = current_database()")
    pid = cur.fetchone()[0]
    cpu0 = proc_cpu_seconds(pid)
    sched0 = schedstat(pid)
    start = time.monotonic()
    cur.execute("SELECT pg_sync.resume_endpoint(%s)", (endpoint,))
    deadline, next_full, done = start + timeout, start + 1.0, None
    perf, perf_out = None, os.environ.get("PERF_OUT")
    while perf_out and perf is None and time.monotonic() < deadline:
        if status(cur, endpoint)[0] < events:
            perf = subprocess.Popen(["perf", "record", "-q", "--call-graph", "dwarf,16384", "-F", "999", "-p", str(pid), "-o", perf_out],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            break
        time.sleep(0.005)
    while done is None and time.monotonic() < deadline:
        cur.execute("SELECT max(id) FROM pg_sync._queue WHERE endpoint_id = %s", (endpoint_id,))
        if cur.fetchone()[0] is None:
            done = time.monotonic()
            break
        if time.monotonic() >= next_full:
            next_full = time.monotonic() + 1.0
            if status(cur, endpoint)[0] == 0:
                done = time.monotonic()
                break
        time.sleep(0.005)
    cpu1 = proc_cpu_seconds(pid)
    sched1 = schedstat(pid)
    if perf is not None:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    threads = len(os.listdir(f"/proc/{pid}/task"))
    cur.execute("SELECT pg_sync.pause_endpoint(%s)", (endpoint,))
    if done is None:
        sys.exit(f"drain: queue not empty after {timeout} s")
    time.sleep(1.2)  # the worker writes its statistics at most once a second
    pending, failed1 = status(cur, endpoint)
    print(json.dumps({"events": events, "seconds": round(done - start, 4), "worker_pid": pid,
                      "worker_cpu_s": round(cpu1 - cpu0, 2),
                      "worker_thread_cpu_s": round(sched1[0] - sched0[0], 3),
                      "worker_runqueue_s": round(sched1[1] - sched0[1], 3), "threads": threads, "pending_after": pending,
                      "failed_attempts": failed1 - failed0}))


main()
