#!/usr/bin/python3
"""The 1-second sampler of bench/sustained: one CSV row per INTERVAL_S until SIGTERM.

Usage: sample.py OUT.csv WORKER_PID EVENTS_LOG PHASE_FILE INTERVAL_S
(PG* environment variables pick the server and the database; run as superuser.)

Every query is O(1) in the queue's size: nothing counts or scans pg_sync._queue.
  captured   events captured since the sampler started: the queue id sequence
             (pg_sync._queue_id_seq: last_value, is_called; nextval in the capture trigger),
             minus its value at the start
  delivered  events nginx received since the start: the sum of the event counts of the
             webhook-id headers (msg_<first id>_<count>_<hex>) in nginx's event log
             (EVENTS_LOG, one line per request), read on from where the last sample stopped
  delivered_worker  pg_sync._endpoint_state.delivered_total (the worker writes it at most every
             200 ms, core/worker_policy.hpp StatsThrottle), minus its value at the start
  dead       rows of pg_sync._dead_letters (0 with a receiver that answers 204), minus the start
  backlog    captured - delivered - dead
  queue      pg_stat_user_tables of every pg_sync._queue* relation (summed): n_live_tup,
             n_dead_tup, seq_scan, idx_scan, autovacuum_count; pg_relation_size of the heaps and
             pg_indexes_size; pg_stat_progress_vacuum of those relations (phase, heap blocks)
  cpu        percent of one core over the last interval from /proc/PID/stat (utime + stime) of:
             the delivery worker (and its total CPU seconds, worker_cpu_s), the pgbench backends
             (pg_stat_activity application_name 'pgbench'), autovacuum workers; and the whole
             machine's busy share from /proc/stat (percent of all cores); the worker's wait event
             at the sample
  in_flight  pg_sync._endpoint_state.in_flight (throttled as delivered_total)
  oldest_xmin_age, oldest_xmin_holder  the oldest backend_xmin in pg_stat_activity (other than the
             sampler's own), in transactions, and whose it is: what keeps deleted queue rows from
             being dead to everyone (index entries marked dead, vacuum removing them)
  head_reads, head_ms, head_buffers, delete_calls, delete_ms, delete_buffers  only with
             pg_stat_statements in the database (a diagnosis run): the worker's head-of-queue read
             and its delete of delivered events, calls, execution ms and shared buffers, cumulative
The phase column is the content of PHASE_FILE at the sample (bench/sustained writes "run",
"drain").
"""
import csv
import os
import signal
import sys
import time

import psycopg2

out_path, worker_pid, events_log, phase_file, interval = (
    sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]))
TICK = os.sysconf("SC_CLK_TCK")

QUEUE_RELS = "c.relnamespace = 'pg_sync'::regnamespace AND c.relname ~ '^_queue' AND c.relkind IN ('r', 'p')"
SAMPLE_SQL = f"""
SELECT (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM pg_sync._queue_id_seq),
       (SELECT coalesce(sum(delivered_total), 0) FROM pg_sync._endpoint_state),
       (SELECT coalesce(sum(in_flight), 0) FROM pg_sync._endpoint_state),
       (SELECT count(*) FROM pg_sync._dead_letters),
       coalesce(sum(s.n_live_tup), 0), coalesce(sum(s.n_dead_tup), 0), coalesce(sum(s.seq_scan), 0),
       coalesce(sum(s.idx_scan), 0), coalesce(sum(s.autovacuum_count), 0),
       coalesce(sum(pg_relation_size(c.oid)), 0), coalesce(sum(pg_indexes_size(c.oid)), 0),
       (SELECT string_agg(p.phase || ' ' || p.heap_blks_scanned || '/' || p.heap_blks_total, ';')
          FROM pg_stat_progress_vacuum p JOIN pg_class c ON c.oid = p.relid WHERE {QUEUE_RELS})
  FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE {QUEUE_RELS}
"""
ACTIVITY_SQL = """
SELECT pid, backend_type, coalesce(application_name, ''), coalesce(wait_event_type || ':' || wait_event, ''),
       age(backend_xmin)
  FROM pg_stat_activity
"""
# With pg_stat_statements (a diagnosis run: PG_PRELOAD), two statements of the worker
# (src/pg/queue_store.cpp): its head-of-queue read and its delete of delivered events; calls,
# execution ms and shared buffers of each, cumulative.
STATEMENTS_SQL = """
SELECT s.name, coalesce(sum(p.calls), 0), coalesce(sum(p.total_exec_time), 0),
       coalesce(sum(p.shared_blks_hit + p.shared_blks_read), 0)
  FROM (VALUES ('head', 'SELECT id, op, tbl, key, new_row%FROM pg_sync._queue WHERE endpoint_id = $1 ORDER BY id%'),
               ('delete', 'DELETE FROM pg_sync._queue WHERE endpoint_id = $1 AND id = ANY ($2)')) s(name, pattern)
  LEFT JOIN pg_stat_statements p ON p.query LIKE s.pattern
 GROUP BY s.name
"""
COLUMNS = ["epoch", "phase", "captured", "delivered", "delivered_worker", "dead_letters", "backlog",
           "captured_per_s", "delivered_per_s", "n_live_tup", "n_dead_tup", "seq_scans", "idx_scans",
           "autovacuums", "heap_mb", "index_mb", "vacuum", "worker_cpu", "pgbench_cpu",
           "autovacuum_cpu", "machine_busy", "worker_cpu_s", "worker_wait", "in_flight", "oldest_xmin_age",
           "oldest_xmin_holder", "head_reads", "head_ms", "head_buffers", "delete_calls", "delete_ms",
           "delete_buffers"]

stopping = False


def stop(*_):
    global stopping
    stopping = True


def proc_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / TICK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]   # total, idle + iowait


class EventLog:
    """Sums the event counts of the webhook-id headers nginx logged since the start."""

    def __init__(self, path):
        self.f = open(path)
        self.f.seek(0, os.SEEK_END)
        self.partial = ""
        self.events = 0

    def read(self):
        data = self.partial + self.f.read()
        lines = data.split("\n")
        self.partial = lines.pop()   # an unfinished last line waits for the next read
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[1].startswith("msg_"):
                self.events += int(parts[1].split("_")[2])
        return self.events


def main():
    signal.signal(signal.SIGTERM, stop)
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    log = EventLog(events_log)
    cur.execute("SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_stat_statements')")
    have_pgss = cur.fetchone()[0]
    base = None
    prev = None
    prev_cpu = {}
    with open(out_path, "w", newline="", buffering=1) as out:
        w = csv.writer(out)
        w.writerow(COLUMNS)
        next_at = time.monotonic()
        while not stopping:
            epoch = time.time()
            cur.execute(SAMPLE_SQL)
            (top, delivered_total, in_flight, dead, live, dead_tup, seq_scans, idx_scans, autovacuums, heap, index,
             vacuum) = cur.fetchone()
            delivered = log.read()
            cur.execute(ACTIVITY_SQL)
            activity = cur.fetchall()
            statements = {"head": ("", "", ""), "delete": ("", "", "")}
            if have_pgss:
                cur.execute(STATEMENTS_SQL)
                for name, calls, ms, blocks in cur.fetchall():
                    statements[name] = (int(calls), f"{ms:.1f}", int(blocks))
            total, idle = machine_ticks()
            try:
                with open(phase_file) as f:
                    phase = f.read().strip()
            except FileNotFoundError:
                phase = ""
            if base is None:
                base = (top, delivered_total, dead)
            captured = top - base[0]
            dead_delta = dead - base[2]
            # CPU seconds per process now; percent of one core since the last sample.
            cpu_now = {}
            groups = {"worker": 0.0, "pgbench": 0.0, "autovacuum": 0.0}
            wait = ""
            xmin_age, xmin_holder = None, ""
            for pid, backend_type, app, wait_event, age in activity:
                if age is not None and pid != cur.connection.get_backend_pid() and (xmin_age is None or age > xmin_age):
                    xmin_age, xmin_holder = age, (app or backend_type).replace(" ", "_")
                if not (backend_type == "autovacuum worker" or app == "pgbench" or pid == worker_pid):
                    continue
                c = proc_cpu_s(pid)
                if c is None:
                    continue
                cpu_now[pid] = c
                if pid == worker_pid:
                    group = "worker"
                    wait = wait_event
                elif backend_type == "autovacuum worker":
                    group = "autovacuum"
                else:
                    group = "pgbench"
                groups[group] += c - prev_cpu.get(pid, c if prev is None else 0.0)
            row = {"epoch": f"{epoch:.3f}", "phase": phase, "captured": captured, "delivered": delivered,
                   "delivered_worker": int(delivered_total) - int(base[1]), "dead_letters": dead_delta,
                   "backlog": captured - delivered - dead_delta, "n_live_tup": int(live),
                   "n_dead_tup": int(dead_tup), "seq_scans": int(seq_scans), "idx_scans": int(idx_scans),
                   "autovacuums": int(autovacuums), "heap_mb": f"{heap / 2**20:.1f}",
                   "index_mb": f"{index / 2**20:.1f}", "vacuum": vacuum or "", "worker_wait": wait,
                   "worker_cpu_s": f"{cpu_now.get(worker_pid, 0.0):.2f}", "in_flight": int(in_flight),
                   "oldest_xmin_age": "" if xmin_age is None else xmin_age, "oldest_xmin_holder": xmin_holder,
                   "head_reads": statements["head"][0], "head_ms": statements["head"][1],
                   "head_buffers": statements["head"][2], "delete_calls": statements["delete"][0],
                   "delete_ms": statements["delete"][1], "delete_buffers": statements["delete"][2]}
            if prev is None:
                dt = None
                row.update(captured_per_s="", delivered_per_s="", worker_cpu="", pgbench_cpu="",
                           autovacuum_cpu="", machine_busy="")
            else:
                dt = epoch - prev["epoch_f"]
                row["captured_per_s"] = round((captured - prev["captured"]) / dt)
                row["delivered_per_s"] = round((delivered - prev["delivered"]) / dt)
                for g in groups:
                    row[f"{g}_cpu"] = f"{100 * groups[g] / dt:.0f}"
                dtotal = total - prev["total"]
                row["machine_busy"] = f"{100 * (1 - (idle - prev['idle']) / dtotal):.0f}" if dtotal else ""
            w.writerow([row[c] for c in COLUMNS])
            prev = {"epoch_f": epoch, "captured": captured, "delivered": delivered, "total": total,
                    "idle": idle}
            prev_cpu = cpu_now
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.monotonic()   # a late sample: no burst to catch up


if __name__ == "__main__":
    main()
