#!/usr/bin/python3
"""Samples pg_sync for bench/soak every INTERVAL seconds until SIGTERM.

Usage: sample.py OUT_FILE INTERVAL_S [NAME=PIDFILE...]   (psql and the PG* environment of
test/lib/pg.sh)

One JSON line per sample (flushed at once):
  t            unix time
  ep           per endpoint (pg_sync.endpoint_status): pending, in_flight, dead, delivered
               (delivered_total), failed (failed_attempts_total), state, oldest_s (age of the
               oldest pending event, seconds)
  queue_heap   pg_relation_size('pg_sync._queue') in bytes (main fork)
  queue_index  pg_indexes_size('pg_sync._queue') in bytes
  queue_total  pg_total_relation_size('pg_sync._queue') (heap, indexes, TOAST, FSM, VM)
  dead_tup, autovacuums   n_dead_tup and autovacuum_count of pg_sync._queue
  rows_read    idx_tup_fetch + seq_tup_read of pg_sync._queue (cumulative; mostly the worker's
               head reads, flushed by it about once a second)
  pid          the database's delivery worker (pg_sync.workers)
  rss, anon, shmem, hwm   its VmRSS, RssAnon, RssShmem, VmHWM in kB (/proc/PID/status)
  cpu          its utime + stime in seconds (/proc/PID/stat)
  wait         seconds it spent runnable but waiting for a CPU (/proc/PID/schedstat): a process
               starved by other work on the machine shows a growing wait, a busy one a growing cpu
  load         the machine's 1-minute load average (/proc/loadavg)
  busy         percent of all CPUs busy since the previous sample (/proc/stat), whoever used them
  procs        per NAME: {"pid", "cpu", "wait"} of the process whose pid PIDFILE holds now (the receivers)
  error        when the query failed (the other fields are then missing)
"""
import json
import os
import signal
import subprocess
import sys
import time

out, interval = sys.argv[1], float(sys.argv[2])
pidfiles = dict(a.split("=", 1) for a in sys.argv[3:])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
tick = os.sysconf("SC_CLK_TCK")

QUERY = """
SELECT json_build_object(
  'ep', (SELECT json_object_agg(endpoint, json_build_object(
            'pending', pending, 'in_flight', in_flight, 'dead', dead, 'delivered', delivered_total,
            'failed', failed_attempts_total, 'state', state,
            'oldest_s', round(extract(epoch FROM oldest_pending_age)::numeric, 1)))
           FROM pg_sync.endpoint_status),
  'queue_heap', pg_relation_size('pg_sync._queue'),
  'queue_index', pg_indexes_size('pg_sync._queue'),
  'queue_total', pg_total_relation_size('pg_sync._queue'),
  'dead_tup', (SELECT n_dead_tup FROM pg_stat_all_tables WHERE relid = 'pg_sync._queue'::regclass),
  'autovacuums', (SELECT autovacuum_count FROM pg_stat_all_tables WHERE relid = 'pg_sync._queue'::regclass),
  'rows_read', (SELECT coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0) FROM pg_stat_all_tables
                 WHERE relid = 'pg_sync._queue'::regclass),
  'pid', (SELECT pid FROM pg_sync.workers WHERE database = current_database()))
"""


def run_wait(pid):
    try:
        with open(f"/proc/{pid}/schedstat") as s:
            return round(int(s.read().split()[1]) / 1e9, 3)
    except (OSError, ValueError, IndexError):
        return None


def proc_memory(pid):
    try:
        with open(f"/proc/{pid}/status") as s:
            fields = dict(line.split(":", 1) for line in s if ":" in line)
        with open(f"/proc/{pid}/stat") as s:
            stat = s.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    kb = {k: int(fields[k].split()[0]) for k in ("VmRSS", "RssAnon", "RssShmem", "VmHWM")}
    return {"rss": kb["VmRSS"], "anon": kb["RssAnon"], "shmem": kb["RssShmem"], "hwm": kb["VmHWM"],
            "cpu": round((int(stat[11]) + int(stat[12])) / tick, 2), "wait": run_wait(pid)}


def cpu_times():
    with open("/proc/stat") as s:
        v = [int(x) for x in s.readline().split()[1:]]
    return sum(v), v[3] + v[4]   # total, idle + iowait


with open(out, "a", buffering=1) as f:
    next_t = time.monotonic()
    prev_cpu = cpu_times()
    while True:
        t = time.time()
        rec = {"t": round(t, 3)}
        with open("/proc/loadavg") as s:
            rec["load"] = float(s.read().split()[0])
        now_cpu = cpu_times()
        if now_cpu[0] > prev_cpu[0]:
            rec["busy"] = round(100 * (1 - (now_cpu[1] - prev_cpu[1]) / (now_cpu[0] - prev_cpu[0])))
        prev_cpu = now_cpu
        procs = {}
        for name, pf in pidfiles.items():
            try:
                with open(pf) as s:
                    pid = int(s.read().split()[0])
                with open(f"/proc/{pid}/stat") as s:
                    stat = s.read().rsplit(")", 1)[1].split()
                procs[name] = {"pid": pid, "cpu": round((int(stat[11]) + int(stat[12])) / tick, 2),
                               "wait": run_wait(pid)}
            except (OSError, ValueError, IndexError):
                pass
        rec["procs"] = procs
        try:
            r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", QUERY],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip()[:300])
            rec.update(json.loads(r.stdout))
            if rec.get("pid"):
                rec.update(proc_memory(rec["pid"]))
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
            rec["error"] = str(e)
        f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        next_t += interval
        time.sleep(max(0.0, next_t - time.monotonic()))
