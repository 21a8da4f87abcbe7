#!/usr/bin/python3
"""One drain of bench/scale: resumes every (paused) endpoint of the database at once and measures
the drain and the delivery worker's memory until the queue is empty.

Usage: measure.py EVENTS NGINX_PORT INTERVAL_S TIMEOUT_S TIMELINE.jsonl
(PG* environment variables pick the database; run as superuser.)

Every endpoint is paused with EVENTS events queued in all. The worker's /proc/PID/status is read
for 1 s before the resume, then every INTERVAL_S (with its CPU time, /proc/PID/stat). The queue is
polled every 20 ms, cheaply (never a count of it): with one endpoint, max(id) of it through the
partitions' primary keys (a backward scan that stops at the first live entry); with several,
NOT EXISTS (SELECT FROM pg_sync._queue) through the same indexes (enable_seqscan off). Every
second a timeline point goes to TIMELINE.jsonl: events delivered so far (sum of
pg_sync._endpoint_state.delivered_total, which the worker writes every 200 ms), nginx's active
connections, the worker's RssAnon and open file descriptors (/proc/PID/fd: also counted at every
status read, for the largest), the partitions' heap
sizes. A worker that exits is followed to the one the launcher starts next (its figures then
cover all of them; "worker_restarts" counts them). Gives up (drained: false) after TIMEOUT_S.
Also: blocks of the partitions' heaps and indexes read or hit over the drain
(pg_statio_user_tables), dead letters at the end. Prints one JSON object on stdout.
"""
import json
import os
import sys
import time
import urllib.request

import psycopg2

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "memory.d"))
from drain import FIELDS, cpu_seconds, nginx_counters, status_kb  # noqa: E402  (bench/memory's)

POLL_S = 0.02

STATE_SQL = """
SELECT coalesce(sum(delivered_total), 0)::bigint, coalesce(sum(failed_attempts_total), 0)::bigint,
       extract(epoch FROM min(last_success_at))::float8,
       extract(epoch FROM max(last_success_at))::float8
  FROM pg_sync._endpoint_state
"""
PARTS_SQL = """
SELECT c.relname, pg_relation_size(c.oid), coalesce(s.autovacuum_count, 0),
       coalesce(s.seq_scan, 0),
       coalesce(io.heap_blks_read, 0) + coalesce(io.heap_blks_hit, 0),
       coalesce(io.idx_blks_read, 0) + coalesce(io.idx_blks_hit, 0)
  FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
  LEFT JOIN pg_statio_user_tables io ON io.relid = c.oid
 WHERE h.inhparent = 'pg_sync._queue'::regclass ORDER BY 1
"""


def nginx_active(port):
    """nginx's open client connections, less the status request's own."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx_status", timeout=5) as r:
        first = r.read().decode().splitlines()[0]   # "Active connections: N"
    return int(first.split(":")[1]) - 1


def parts(cur):
    cur.execute(PARTS_SQL)
    return {name: {"heap": heap, "autovacuums": av, "seq_scans": seq, "heap_blocks": hb,
                   "index_blocks": ib}
            for name, heap, av, seq, hb, ib in cur.fetchall()}


def parts_sum(ps, key):
    return sum(p[key] for p in ps.values())


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def fd_limit(pid):
    """The soft limit of open files of the process ("Max open files" in /proc/PID/limits)."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


class Worker:
    """The database's delivery worker, followed across restarts: memory peaks and CPU time."""

    def __init__(self, cur):
        self.cur = cur
        self.pid = self.current_pid()
        self.pids = [self.pid]
        self.peak = None
        self.cpu = {self.pid: [cpu_seconds(self.pid), None]}   # pid -> [first, last] seen
        self.fd_limit = fd_limit(self.pid)
        self.fds_max = 0

    def current_pid(self):
        self.cur.execute("SELECT pid FROM pg_sync.workers WHERE database = current_database()")
        row = self.cur.fetchone()
        return row[0] if row else None

    def sample(self):
        """/proc/PID/status of the worker (kB), or None while there is none."""
        for _ in range(2):
            if self.pid is not None:
                try:
                    kb = status_kb(self.pid)
                    self.cpu[self.pid][1] = cpu_seconds(self.pid)
                    self.fds_max = max(self.fds_max, open_fds(self.pid) or 0)
                    return kb
                except (OSError, KeyError):   # gone (a zombie's status has no VmRSS)
                    pass
            pid = self.current_pid()
            if pid is None or pid == self.pid:
                return None
            self.pid = pid
            self.pids.append(pid)
            self.cpu[pid] = [0.0, None]   # a new worker: all of its CPU time counts
        return None

    def cpu_total(self):
        return sum(last - first for first, last in self.cpu.values() if last is not None)


def main():
    events, port = int(sys.argv[1]), int(sys.argv[2])
    interval, timeout, timeline_path = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET enable_seqscan = off")   # the polls below go through the primary keys
    worker = Worker(conn.cursor())
    cur.execute("SELECT array_agg(id ORDER BY id) FROM pg_sync._endpoints")
    endpoint_ids = cur.fetchone()[0]
    if len(endpoint_ids) == 1:
        poll_sql = ("SELECT max(id) IS NULL FROM pg_sync._queue WHERE endpoint_id = %d"
                    % endpoint_ids[0])
    else:
        poll_sql = "SELECT NOT EXISTS (SELECT FROM pg_sync._queue)"
    cur.execute(STATE_SQL)
    delivered0, failed0, _, _ = cur.fetchone()
    cur.execute("SELECT pg_stat_force_next_flush()")
    parts0 = parts(cur)
    accepts0, requests0 = nginx_counters(port)

    baseline = None
    stop = time.monotonic() + 1.0
    while time.monotonic() < stop:
        baseline = worker.sample() or baseline
        time.sleep(interval)
    worker.cpu[worker.pid][0] = worker.cpu[worker.pid][1]
    peak = dict(baseline)
    peak_anon_at = 0.0
    active_max = 0
    samples = 0
    status_calls = 0   # our own requests to nginx's status page between the two counter reads

    t0 = time.time()
    start = time.monotonic()
    cur.execute("SELECT count(pg_sync.resume_endpoint(name)) FROM pg_sync._endpoints")
    done = None
    next_rss = next_point = start
    with open(timeline_path, "w", buffering=1) as tl:
        while True:
            now = time.monotonic()
            if now >= next_rss:
                next_rss += interval
                kb = worker.sample()
                if kb:
                    samples += 1
                    for k in FIELDS:
                        peak[k] = max(peak[k], kb[k])
                    if kb["RssAnon"] >= peak["RssAnon"]:
                        peak_anon_at = now - start
            if now >= next_point:
                next_point += 1.0
                active = nginx_active(port)
                status_calls += 1
                active_max = max(active_max, active)
                fds = open_fds(worker.pid) if worker.pid else None
                cur.execute(STATE_SQL)
                delivered = cur.fetchone()[0] - delivered0
                kb = worker.sample()
                tl.write(json.dumps({"t": round(now - start, 2), "delivered": delivered,
                                     "nginx_active": active, "worker_pid": worker.pid,
                                     "rss_anon_kb": kb["RssAnon"] if kb else None,
                                     "open_fds": fds,
                                     "part_heaps": {n: p["heap"] for n, p in parts(cur).items()}})
                         + "\n")
            cur.execute(poll_sql)
            if cur.fetchone()[0]:
                done = time.monotonic()
                break
            if now - start > timeout:
                break
            time.sleep(POLL_S)
        end = time.monotonic()
        worker.sample()
        hwm_end = peak["VmHWM"]
        time.sleep(0.5)   # the worker's last counters reach pg_sync._endpoint_state
        cur.execute(STATE_SQL)
        delivered1, failed1, first_ok, last_ok = cur.fetchone()
        tl.write(json.dumps({"t": round(end - start, 2), "delivered": delivered1 - delivered0,
                             "event": "drained" if done else "gave up"}) + "\n")
    accepts1, requests1 = nginx_counters(port)
    cur.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(1.1)   # the worker's table statistics reach pg_stat_user_tables
    parts1 = parts(cur)
    cur.execute("SELECT count(*) FROM pg_sync._dead_letters")
    dead = cur.fetchone()[0]
    seconds = (done or end) - start
    delivered = delivered1 - delivered0

    def delta(key):
        return parts_sum(parts1, key) - parts_sum(parts0, key)

    result = {
        "events": events, "drained": done is not None, "seconds": round(seconds, 3),
        "events_per_s": round(delivered / seconds), "delivered": delivered,
        "failed_requests": failed1 - failed0, "dead_letters": dead,
        "worker_pids": worker.pids, "worker_restarts": len(worker.pids) - 1,
        "worker_fd_limit": worker.fd_limit, "worker_open_fds_max": worker.fds_max,
        "baseline_kb": baseline, "peak_kb": peak, "peak_rss_anon_at_s": round(peak_anon_at, 2),
        "vm_hwm_end_kb": hwm_end, "rss_samples": samples, "interval_s": interval,
        "worker_cpu_s": round(worker.cpu_total(), 2),
        # nginx counts our status requests too (each on a connection of its own)
        "requests": requests1 - requests0 - 1 - status_calls,
        "connections": accepts1 - accepts0 - 1 - status_calls,
        "nginx_active_max": active_max,
        "first_endpoint_done_s": round(first_ok - t0, 2) if first_ok else None,
        "last_endpoint_done_s": round(last_ok - t0, 2) if last_ok else None,
        "queue_autovacuums": delta("autovacuums"), "queue_seq_scans": delta("seq_scans"),
        "queue_heap_blocks": delta("heap_blocks"), "queue_index_blocks": delta("index_blocks"),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
