#!/usr/bin/python3
"""Measurements and load for bench/growth (PG* environment variables pick the database; run as
superuser, with the pgstattuple extension in that database). bench/scale loads its backlogs with
`backlog` too.

Usage:
  probe.py snapshot LABEL OUT.jsonl
      appends one JSON object: the size (bytes, per fork) of every relation of schema pg_sync with
      storage (each table and sequence, each index, each TOAST table and its index; the queue's
      partitions _queue_0.._queue_2 one by one); pg_stat_user_tables counters of pg_sync's tables;
      pgstatindex() of each queue partition's indexes; pgstattuple_approx() of each partition's
      heap; the current partition (pg_sync._queue_rotation).
  probe.py backlog ROWS CHUNK
      inserts ROWS rows into orders (ids 1..ROWS), CHUNK rows per transaction; prints JSON.
  probe.py drain ENDPOINT EVENTS TIMEOUT_S TIMELINE.jsonl
      resumes ENDPOINT (paused, EVENTS pending) and polls until nothing is pending (max(id) of the
      endpoint every 20 ms, a timeline sample every second); prints JSON.
  probe.py wait-idle DRAIN.json MAX_WAIT_S TIMELINE.jsonl
      started with the drain (or once the writer stopped): polls every 0.2 s (a timeline sample
      every second) until DRAIN.json exists (the drain's result: its end_epoch) and every queue
      partition is back to its empty size (heap 0, each index and the TOAST index one page, TOAST
      table 0), or MAX_WAIT_S passed since the drain ended; prints JSON: how long after the drain
      each partition (negative: while the drain was still going; null: empty throughout), and the
      whole queue, got there and stayed.
  probe.py steady RATE SECONDS ROWS_PER_COMMIT SAMPLE_S OUT.jsonl
      one writer inserts RATE rows/s into orders for SECONDS (ROWS_PER_COMMIT rows per INSERT and
      commit, open loop: INSERT i is due at start + i * ROWS_PER_COMMIT / RATE) while the main
      thread writes a timeline sample every SAMPLE_S to OUT.jsonl; prints JSON.
"""
import json
import sys
import threading
import time

import psycopg2

PAGE = 8192

# Every relation of schema pg_sync with storage: (table, role, name, size of each fork).
RELATIONS_SQL = """
WITH t AS (SELECT oid, relname, relkind, reltoastrelid FROM pg_class
            WHERE relnamespace = 'pg_sync'::regnamespace AND relkind IN ('r', 'S')),
r AS (
    SELECT relname AS tbl, CASE relkind WHEN 'S' THEN 'sequence' ELSE 'heap' END AS role, oid
      FROM t
    UNION ALL
    SELECT t.relname, 'index', i.indexrelid FROM t JOIN pg_index i ON i.indrelid = t.oid
    UNION ALL
    SELECT relname, 'toast', reltoastrelid FROM t WHERE reltoastrelid <> 0
    UNION ALL
    SELECT t.relname, 'toast index', i.indexrelid FROM t JOIN pg_index i ON i.indrelid = t.reltoastrelid)
SELECT 'pg_sync.' || tbl, role, oid::regclass::text, pg_relation_size(oid, 'main'),
       pg_relation_size(oid, 'fsm'), pg_relation_size(oid, 'vm')
  FROM r ORDER BY 1, 2, 3
"""

STATS_SQL = """
SELECT schemaname || '.' || relname, n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_hot_upd,
       n_tup_del, n_ins_since_vacuum, extract(epoch FROM last_autovacuum)::float8, autovacuum_count,
       extract(epoch FROM last_autoanalyze)::float8, autoanalyze_count, vacuum_count, seq_scan,
       seq_tup_read, coalesce(idx_scan, 0)
  FROM pg_stat_user_tables WHERE schemaname = 'pg_sync'
"""
STATS_COLS = ["n_live_tup", "n_dead_tup", "n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del",
              "n_ins_since_vacuum", "last_autovacuum", "autovacuum_count", "last_autoanalyze",
              "autoanalyze_count", "vacuum_count", "seq_scan", "seq_tup_read", "idx_scan"]

# The queue's partitions: name, heap (main fork), indexes (all forks), total (heap, indexes,
# TOAST, all forks), and whether it is at its empty size (heap 0, TOAST 0, every index one page).
PARTS_SQL = """
SELECT c.oid::regclass::text, pg_relation_size(c.oid),
       (SELECT coalesce(sum(pg_total_relation_size(i.indexrelid)), 0)::bigint
          FROM pg_index i WHERE i.indrelid = c.oid),
       pg_total_relation_size(c.oid),
       pg_total_relation_size(c.oid) = %(page)s * (SELECT count(*) FROM pg_index i
                                                   WHERE i.indrelid IN (c.oid, c.reltoastrelid))
  FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
 WHERE h.inhparent = 'pg_sync._queue'::regclass ORDER BY 1
"""


def connect():
    conn = psycopg2.connect("")
    conn.autocommit = True
    return conn


def stats(cur):
    cur.execute(STATS_SQL)
    return {row[0]: dict(zip(STATS_COLS, row[1:])) for row in cur.fetchall()}


def parts(cur):
    cur.execute(PARTS_SQL, {"page": PAGE})
    return [{"name": n, "heap": h, "indexes": i, "total": t, "empty": e}
            for n, h, i, t, e in cur.fetchall()]


def queue_stats(st, names, key):
    """The sum of one counter over the queue's partitions."""
    return sum(st.get(n, {}).get(key) or 0 for n in names)


def current_part(cur):
    cur.execute("SELECT current_part FROM pg_sync._queue_rotation")
    row = cur.fetchone()
    return row[0] if row else None


def relations(cur):
    cur.execute(RELATIONS_SQL)
    return [{"table": t, "role": role, "name": name, "main": main, "fsm": fsm, "vm": vm}
            for t, role, name, main, fsm, vm in cur.fetchall()]


def pending(cur):
    # No seq scan of the queue from the benchmark: seq_scan of its partitions counts the worker's.
    cur.execute("SET enable_seqscan = off")
    cur.execute("SELECT coalesce(sum(pending), 0)::bigint FROM pg_sync.endpoint_status")
    n = cur.fetchone()[0]
    cur.execute("RESET enable_seqscan")
    return n


def snapshot(cur, label):
    snap = {"label": label, "t": time.time(), "relations": relations(cur), "stats": stats(cur),
            "current_part": current_part(cur), "indexes": {}, "heaps": {}}
    for p in parts(cur):
        cur.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
                    (p["name"],))
        for (idx,) in cur.fetchall():
            cur.execute("SELECT index_size, leaf_pages, internal_pages, empty_pages, deleted_pages, "
                        "avg_leaf_density FROM pgstatindex(%s)", (idx,))
            snap["indexes"][idx] = dict(zip(
                ["index_size", "leaf_pages", "internal_pages", "empty_pages", "deleted_pages",
                 "avg_leaf_density"], cur.fetchone()))
        cur.execute("SELECT table_len, approx_tuple_count, dead_tuple_count, approx_free_space, "
                    "approx_free_percent FROM pgstattuple_approx(%s::regclass)", (p["name"],))
        snap["heaps"][p["name"]] = dict(zip(["table_len", "approx_tuple_count", "dead_tuple_count",
                                             "approx_free_space", "approx_free_percent"],
                                            cur.fetchone()))
    return snap


def sample(cur, t0, **extra):
    """A cheap timeline point: sizes and counters, no scans of the relations."""
    ps = parts(cur)
    names = [p["name"] for p in ps]
    cur.execute("SELECT pg_total_relation_size('pg_sync._attempts'), "
                "pg_total_relation_size('pg_sync._endpoint_state'), "
                "(SELECT sum(delivered_total)::bigint FROM pg_sync._endpoint_state)")
    attempts, state, delivered = cur.fetchone()
    st = stats(cur)
    point = {"t": round(time.time() - t0, 2), "current_part": current_part(cur),
             "parts": {p["name"]: {"heap": p["heap"], "indexes": p["indexes"], "total": p["total"],
                                   "empty": p["empty"],
                                   "dead": st.get(p["name"], {}).get("n_dead_tup"),
                                   "autovacuums": st.get(p["name"], {}).get("autovacuum_count")}
                       for p in ps},
             "queue_heap": sum(p["heap"] for p in ps),
             "queue_indexes": sum(p["indexes"] for p in ps),
             "queue_total": sum(p["total"] for p in ps),
             "attempts_total": attempts, "endpoint_state_total": state,
             "queue_dead": queue_stats(st, names, "n_dead_tup"),
             "queue_autovacuums": queue_stats(st, names, "autovacuum_count"),
             "queue_autoanalyzes": queue_stats(st, names, "autoanalyze_count"),
             "queue_seq_scans": queue_stats(st, names, "seq_scan"),
             "queue_seq_tup_read": queue_stats(st, names, "seq_tup_read"),
             "delivered_total": delivered}
    point.update(extra)
    return point


INSERT = """
INSERT INTO orders (id, customer_id, status, amount, created_at, note)
SELECT g, g %% 1000, 'new', (g %% 100000) / 100.0,
       '2026-01-01'::timestamptz + g * interval '1 second', 'order note ' || g
  FROM generate_series(%s::bigint, %s::bigint) g
"""


def cmd_backlog(rows, chunk):
    cur = connect().cursor()
    start = time.monotonic()
    for first in range(1, rows + 1, chunk):
        cur.execute(INSERT, (first, min(rows, first + chunk - 1)))
    seconds = time.monotonic() - start
    print(json.dumps({"rows": rows, "chunk": chunk, "seconds": round(seconds, 2),
                      "rows_per_s": round(rows / seconds)}))


def cmd_drain(endpoint, events, timeout, timeline_path):
    conn = connect()
    cur = conn.cursor()
    queued = pending(cur)
    if queued != events:
        sys.exit(f"drain: {queued} events pending, expected {events}")
    cur.execute("SELECT id FROM pg_sync._endpoints WHERE name = %s", (endpoint,))
    endpoint_id = cur.fetchone()[0]
    names = [p["name"] for p in parts(cur)]
    time.sleep(1.1)   # the scan counted by pending() reaches pg_stat_user_tables first
    before = stats(cur)
    t0 = time.time()
    start = time.monotonic()
    cur.execute("SELECT pg_sync.resume_endpoint(%s)", (endpoint,))
    next_sample = start
    done = None
    with open(timeline_path, "a", buffering=1) as tl:
        while time.monotonic() - start < timeout:
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + 1.0
                tl.write(json.dumps(sample(cur, t0)) + "\n")
            cur.execute("SELECT max(id) FROM pg_sync._queue WHERE endpoint_id = %s", (endpoint_id,))
            if cur.fetchone()[0] is None:
                done = time.monotonic()
                break
            time.sleep(0.02)
        end_epoch = time.time()
        if done is not None:
            tl.write(json.dumps(sample(cur, t0, event="drained")) + "\n")
    if done is None:
        cur.execute("SELECT row_to_json(s) FROM pg_sync.endpoint_status s WHERE endpoint = %s",
                    (endpoint,))
        sys.exit(f"drain: {pending(cur)} of {events} events still pending after {timeout:.0f} s; "
                 f"endpoint_status: {json.dumps(cur.fetchone()[0])}")
    seconds = done - start
    time.sleep(1.1)   # the worker's last statistics reach pg_stat_user_tables
    after = stats(cur)
    left = pending(cur)
    if left != 0:
        sys.exit(f"drain: the endpoint's queue looked empty, but {left} events are pending")

    def delta(key):
        return queue_stats(after, names, key) - queue_stats(before, names, key)

    print(json.dumps({"events": events, "seconds": round(seconds, 2),
                      "events_per_s": round(events / seconds), "start_epoch": round(t0, 3),
                      "end_epoch": round(end_epoch, 3),
                      "queue_seq_scans": delta("seq_scan"),
                      "queue_seq_tup_read": delta("seq_tup_read"),
                      "queue_autoanalyzes": delta("autoanalyze_count"),
                      "queue_autovacuums": delta("autovacuum_count")}))


def cmd_wait_idle(drain_file, max_wait, timeline_path):
    """Polls until every queue partition is at its empty size, after the drain ended (the time
    drain_file gives, once it exists); when each partition got there and stayed."""
    cur = connect().cursor()
    empty_since = {}   # partition -> epoch since which it is empty
    held = set()       # partitions seen holding rows or dead tuples
    currents = []
    since = None
    started = time.time()
    next_sample = time.monotonic()
    result = None
    with open(timeline_path, "a", buffering=1) as tl:
        while True:
            now = time.time()
            if since is None:
                try:
                    with open(drain_file) as f:
                        since = json.load(f)["end_epoch"]
                except (FileNotFoundError, ValueError):
                    pass
            ps = parts(cur)
            cp = current_part(cur)
            if not currents or currents[-1] != cp:
                currents.append(cp)
            for p in ps:
                if p["empty"]:
                    empty_since.setdefault(p["name"], now)
                else:
                    empty_since.pop(p["name"], None)   # (again) holding rows or dead tuples
                    held.add(p["name"])
            if time.monotonic() >= next_sample:
                next_sample += 1.0
                # t: seconds since this wait started (the resume); after_drain once known
                tl.write(json.dumps(sample(cur, started, after_drain=None if since is None
                                           else round(now - since, 2))) + "\n")
            if since is not None:
                if all(p["empty"] for p in ps):
                    result = {"idle": True, "after_drain_s": round(
                        max([0.0] + [t - since for p, t in empty_since.items() if p in held]), 1)}
                    tl.write(json.dumps(sample(cur, started, after_drain=round(now - since, 2),
                                               event="idle")) + "\n")
                    break
                if now - since >= max_wait:
                    result = {"idle": False, "after_drain_s": None,
                              "left": {p["name"]: p["total"] for p in ps if not p["empty"]}}
                    break
            time.sleep(0.2)
    result["waited_s"] = round(time.time() - since, 1)
    result["part_empty_after_s"] = {p: round(t - since, 1) if p in held else None
                                    for p, t in empty_since.items()}
    result["current_parts_seen"] = currents
    print(json.dumps(result))


def cmd_steady(rate, seconds, per_commit, sample_s, out_path):
    writer = connect()
    wcur = writer.cursor()
    total_commits = int(rate * seconds / per_commit)
    interval = per_commit / rate
    progress = {"rows": 0, "late": []}
    start = time.monotonic() + 0.2

    def write():
        for i in range(total_commits):
            due = start + i * interval
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                progress["late"].append(-wait)
            first = i * per_commit + 1
            wcur.execute(INSERT, (first, first + per_commit - 1))
            progress["rows"] = first + per_commit - 1

    thread = threading.Thread(target=write)
    cur = connect().cursor()
    t0 = time.time() + 0.2
    thread.start()
    with open(out_path, "a", buffering=1) as out:
        next_sample = time.monotonic()
        while thread.is_alive():
            now = time.monotonic()
            if now >= next_sample:
                next_sample += sample_s
                out.write(json.dumps(sample(cur, t0, rows=progress["rows"])) + "\n")
            time.sleep(min(0.1, max(0.0, next_sample - time.monotonic())))
        thread.join()
        elapsed = time.monotonic() - start
        out.write(json.dumps(sample(cur, t0, rows=progress["rows"], event="writer done")) + "\n")
    late = sorted(progress["late"])
    print(json.dumps({"rows": progress["rows"], "seconds": round(elapsed, 2),
                      "rows_per_s": round(progress["rows"] / elapsed),
                      "commits": total_commits, "rows_per_commit": per_commit,
                      "late_commits": len(late),
                      "late_ms_max": round(late[-1] * 1000, 1) if late else 0.0}))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "snapshot":
        snap = snapshot(connect().cursor(), args[0])
        with open(args[1], "a") as f:
            f.write(json.dumps(snap) + "\n")
    elif cmd == "backlog":
        cmd_backlog(int(args[0]), int(args[1]))
    elif cmd == "drain":
        cmd_drain(args[0], int(args[1]), float(args[2]), args[3])
    elif cmd == "wait-idle":
        cmd_wait_idle(args[0], float(args[1]), args[2])
    elif cmd == "steady":
        cmd_steady(float(args[0]), float(args[1]), int(args[2]), float(args[3]), args[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
