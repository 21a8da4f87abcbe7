#!/usr/bin/python3
"""One drain of bench/memory: resumes the paused endpoint and samples the delivery worker's
memory until the queue is empty.

Usage: drain.py ENDPOINT EVENTS NGINX_PORT INTERVAL_S TIMEOUT_S AFTER_S SAMPLES_FILE
(PG* environment variables pick the database; run as superuser.)

The endpoint is paused with EVENTS events queued. The worker's /proc/PID/status is read for
BASELINE_S (1 s) before the resume, then every INTERVAL_S from the resume until the queue is
empty. A second thread, on its own connection, watches the queue: max(id) of the endpoint through
the queue's primary key every 20 ms, and the endpoint's row of
pg_sync.endpoint_status (pending, in_flight) every 0.5 s; the queue is drained when max(id) is NULL and
pending = 0. Then the endpoint is paused again and sampling goes on for AFTER_S more (does the
worker give the memory back?). Also: the worker's CPU time over the drain (/proc/PID/stat) and
the blocks of pg_sync._queue and of its TOAST table read over the drain (pg_statio_all_tables,
hits + reads: the worker reports its statistics at the end of its passes, at most once a
second, so they are read after the AFTER_S). SAMPLES_FILE gets one line per sample: "seconds_since_resume VmRSS RssAnon RssShmem
VmHWM" (kB; negative seconds before the resume). Prints one JSON object on stdout.
"""
import json
import os
import sys
import threading
import time
import urllib.request

import psycopg2

BASELINE_S = 1.0
FIELDS = ("VmRSS", "RssAnon", "RssShmem", "VmHWM")


def status_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return {k: int(fields[k].split()[0]) for k in FIELDS}


def nginx_counters(port):
    """(connections accepted, requests) so far; the status request itself counts as both."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx_status", timeout=5) as r:
        lines = r.read().decode().splitlines()
    accepts, _, requests = (int(x) for x in lines[2].split())
    return accepts, requests


def endpoint_row(cur, endpoint):
    cur.execute("SELECT pending, in_flight, delivered_total, failed_attempts_total, dead, state, "
                "last_error FROM pg_sync.endpoint_status WHERE endpoint = %s", (endpoint,))
    return dict(zip(("pending", "in_flight", "delivered_total", "failed_attempts_total", "dead",
                     "state", "last_error"), cur.fetchone()))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def queue_blocks(cur):
    cur.execute("SELECT pg_stat_force_next_flush()")
    cur.execute("SELECT coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0), "
                "coalesce(toast_blks_read, 0) + coalesce(toast_blks_hit, 0) "
                "FROM pg_statio_all_tables WHERE schemaname = 'pg_sync' AND relname = '_queue'")
    return cur.fetchone()


def attempts(cur, endpoint, since):
    """The endpoint's HTTP requests started since `since` (pg_sync.recent_attempts): outcomes,
    durations, events per request."""
    cur.execute("""
        SELECT count(*), count(*) FILTER (WHERE status BETWEEN 200 AND 299),
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM duration))::numeric, 2),
               round(max(extract(epoch FROM duration))::numeric, 1),
               min(events), percentile_cont(0.5) WITHIN GROUP (ORDER BY events), max(events),
               count(*) FILTER (WHERE events < 10)
          FROM pg_sync.recent_attempts WHERE endpoint = %s AND started_at >= %s""", (endpoint, since))
    n, ok, p50, dmax, emin, emed, emax, small = cur.fetchone()
    cur.execute("""
        SELECT coalesce(status::text, 'no answer'), coalesce(error, ''), count(*)
          FROM pg_sync.recent_attempts
         WHERE endpoint = %s AND started_at >= %s AND NOT coalesce(status BETWEEN 200 AND 299, false)
         GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5""", (endpoint, since))
    failures = [{"status": st, "error": err, "count": c} for st, err, c in cur.fetchall()]
    return {"recorded": n, "ok": ok, "duration_p50_s": float(p50 or 0), "duration_max_s": float(dmax or 0),
            "events_min": emin, "events_median": emed, "events_max": emax,
            "requests_under_10_events": small, "failures": failures}


def worker_pid(cur):
    cur.execute("SELECT pid FROM pg_sync.workers WHERE database = current_database()")
    row = cur.fetchone()
    return row[0] if row else None


class Watcher(threading.Thread):
    """Polls the queue until it is empty (or stop is set); notes when, and the largest in_flight."""

    def __init__(self, endpoint, endpoint_id, start):
        super().__init__(daemon=True)
        self.endpoint, self.endpoint_id, self.start_t = endpoint, endpoint_id, start
        self.stop = threading.Event()
        self.done_at = None
        self.in_flight_max = 0
        self.progress = []   # (seconds since resume, pending, in_flight)
        self.error = None

    def run(self):
        try:
            conn = psycopg2.connect("")
            conn.autocommit = True
            cur = conn.cursor()
            next_status = 0.0
            while not self.stop.is_set():
                now = time.monotonic()
                cur.execute("SELECT max(id) FROM pg_sync._queue WHERE endpoint_id = %s",
                            (self.endpoint_id,))
                empty = cur.fetchone()[0] is None
                if empty or now >= next_status:
                    next_status = now + 0.5
                    row = endpoint_row(cur, self.endpoint)
                    self.in_flight_max = max(self.in_flight_max, row["in_flight"])
                    self.progress.append((round(now - self.start_t, 2), row["pending"],
                                          row["in_flight"]))
                    if empty and row["pending"] == 0:
                        self.done_at = time.monotonic()
                        return
                time.sleep(0.02)   # queue poll interval
            conn.close()
        except Exception as e:   # reported by the main thread
            self.error = repr(e)


def main():
    endpoint, events, nginx_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    interval, timeout = float(sys.argv[4]), float(sys.argv[5])
    after_s, samples_file = float(sys.argv[6]), sys.argv[7]
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    row = endpoint_row(cur, endpoint)
    if row["pending"] != events or row["state"] != "paused":
        sys.exit(f"drain: endpoint {endpoint} is {row['state']} with {row['pending']} events "
                 f"pending, expected paused with {events}")
    cur.execute("SELECT id FROM pg_sync._endpoints WHERE name = %s", (endpoint,))
    endpoint_id = cur.fetchone()[0]
    pid = worker_pid(cur)
    if pid is None:
        sys.exit("drain: no pg_sync worker for this database")
    delivered0, failed0 = row["delivered_total"], row["failed_attempts_total"]

    out = open(samples_file, "w", buffering=1)
    samples = []   # (t, {field: kB})

    def sample(t0):
        s = status_kb(pid)
        t = time.monotonic() - t0
        samples.append((t, s))
        out.write(f"{t:.3f} " + " ".join(str(s[k]) for k in FIELDS) + "\n")

    # Before the resume: the worker idle with the endpoint paused.
    t_base = time.monotonic() + BASELINE_S
    tick = time.monotonic()
    while True:
        sample(t_base)
        tick += interval
        if tick >= t_base:
            break
        time.sleep(max(0.0, tick - time.monotonic()))
    baseline = samples[-1][1]
    conns0, requests0 = nginx_counters(nginx_port)
    blocks0 = queue_blocks(cur)
    cpu0 = cpu_seconds(pid)

    cur.execute("SELECT now()")
    resumed_at = cur.fetchone()[0]
    start = time.monotonic()
    cur.execute("SELECT pg_sync.resume_endpoint(%s)", (endpoint,))
    watcher = Watcher(endpoint, endpoint_id, start)
    watcher.start()
    deadline = start + timeout
    tick = start
    n_before = len(samples)
    gone = False
    while watcher.is_alive() and time.monotonic() < deadline:
        try:
            sample(start)
        except (FileNotFoundError, ProcessLookupError):
            gone = True
            break
        tick += interval
        delay = tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            tick = time.monotonic()   # fell behind (busy CPU): the gap shows in max_gap_s
    if not gone:
        try:
            sample(start)   # the state at the end of the drain
        except (FileNotFoundError, ProcessLookupError):
            gone = True
    watcher.stop.set()
    watcher.join(10)
    end = time.monotonic()
    cpu1 = cpu_seconds(pid) if not gone else float("nan")
    conns1, requests1 = nginx_counters(nginx_port)
    after = endpoint_row(cur, endpoint)
    # The worker's counters (delivered_total, in_flight) are written at the end of its passes:
    # give them up to 10 s to catch up with the empty queue.
    settle = time.monotonic() + 10
    while watcher.done_at and after["delivered_total"] - delivered0 < events and time.monotonic() < settle:
        time.sleep(0.05)
        after = endpoint_row(cur, endpoint)
    pid_after = worker_pid(cur)

    drain = samples[n_before:]
    times = [start] + [start + t for t, _ in drain]
    gaps = [b - a for a, b in zip(times, times[1:])]
    peak = {k: max(s[k] for _, s in drain) for k in FIELDS}
    peak_at = max(drain, key=lambda x: x[1]["RssAnon"])[0]
    result = {
        "events": events,
        "drained": watcher.done_at is not None,
        "seconds": round((watcher.done_at or end) - start, 3),
        "worker_pid": pid, "worker_pid_after": pid_after, "worker_gone": gone,
        "baseline_kb": baseline,
        "peak_kb": peak,
        "peak_rss_anon_at_s": round(peak_at, 2),
        "end_kb": drain[-1][1],
        "samples": len(drain), "interval_s": interval,
        "max_gap_s": round(max(gaps), 3) if gaps else None,
        "requests": requests1 - requests0 - 1, "connections": conns1 - conns0 - 1,
        "in_flight_max": watcher.in_flight_max,
        "delivered": after["delivered_total"] - delivered0,
        "failed_requests": after["failed_attempts_total"] - failed0,
        "pending_after": after["pending"], "dead_after": after["dead"],
        "last_error": after["last_error"],
        "progress": watcher.progress,
        "watcher_error": watcher.error,
    }
    cur.execute("SELECT pg_sync.pause_endpoint(%s)", (endpoint,))
    # After the drain: does the worker keep the memory?
    n_drain = len(samples)
    stop = time.monotonic() + after_s
    tick = time.monotonic()
    while not gone and time.monotonic() < stop:
        try:
            sample(start)
        except (FileNotFoundError, ProcessLookupError):
            gone = True
            break
        tick += interval
        time.sleep(max(0.0, tick - time.monotonic()))
    blocks1 = queue_blocks(cur)
    result["after_s"] = after_s
    result["after_kb"] = samples[-1][1] if len(samples) > n_drain else None
    result["worker_cpu_s"] = round(cpu1 - cpu0, 2)
    result["queue_heap_blocks"] = blocks1[0] - blocks0[0]
    result["queue_toast_blocks"] = blocks1[1] - blocks0[1]
    result["attempts"] = attempts(cur, endpoint, resumed_at)
    print(json.dumps(result))
    b, p = baseline["RssAnon"], peak["RssAnon"]
    print(f"{endpoint}: drained {result['drained']} in {result['seconds']} s, RssAnon {b} kB -> "
          f"peak {p} kB (+{p - b}), VmHWM {peak['VmHWM']} kB, {result['requests']} requests, "
          f"at most {result['in_flight_max']} events in flight, worker CPU {result['worker_cpu_s']} s, "
          f"queue TOAST blocks {result['queue_toast_blocks']}", file=sys.stderr)


if __name__ == "__main__":
    main()
