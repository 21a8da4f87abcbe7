#!/usr/bin/python3
"""Measurements and load for bench/growth (PG* environment variables pick the database; run as
superuser, with the pgstattuple extension in that database).

Usage:
  probe.py snapshot LABEL OUT.jsonl
      appends one JSON object: sizes (bytes, per fork) of pg_sync._queue, each of its indexes, its
      TOAST table and TOAST index, and of _attempts, _endpoint_state, _dead_letters (heap,
      indexes); pg_stat_user_tables counters of those tables; pgstatindex() of the queue's
      indexes; pgstattuple_approx() of the queue's heap.
  probe.py backlog ROWS CHUNK
      inserts ROWS rows into orders (ids 1..ROWS), CHUNK rows per transaction; prints JSON.
  probe.py drain ENDPOINT EVENTS TIMEOUT_S TIMELINE.jsonl
      resumes ENDPOINT (paused, EVENTS pending) and polls until nothing is pending (max(id) of the
      endpoint every 20 ms, a timeline sample every second); prints JSON.
  probe.py wait-autovacuum SINCE_EPOCH MAX_WAIT_S POLL_S TIMELINE.jsonl
      polls until an autovacuum of pg_sync._queue that ended after SINCE_EPOCH has left fewer than
      1,000 dead tuples (or MAX_WAIT_S passes), a timeline sample each POLL_S; prints JSON.
  probe.py xacts INTERVAL_S
      other write traffic: one tiny transaction (INSERT INTO growth_other) every INTERVAL_S until
      SIGTERM, so that transaction ids advance as they do in a database used for anything else.
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

TABLES = ["pg_sync._queue", "pg_sync._attempts", "pg_sync._endpoint_state", "pg_sync._dead_letters"]

# Every relation of the pg_sync tables above: (table, role, relation oid, relation name).
RELATIONS_SQL = """
SELECT t.relname, 'heap', t.oid, t.oid::regclass::text FROM pg_class t
 WHERE t.oid = ANY (%(tables)s::regclass[])
UNION ALL
SELECT t.relname, 'index', i.indexrelid, i.indexrelid::regclass::text
  FROM pg_class t JOIN pg_index i ON i.indrelid = t.oid WHERE t.oid = ANY (%(tables)s::regclass[])
UNION ALL
SELECT t.relname, 'toast', t.reltoastrelid, t.reltoastrelid::regclass::text FROM pg_class t
 WHERE t.oid = ANY (%(tables)s::regclass[]) AND t.reltoastrelid <> 0
UNION ALL
SELECT t.relname, 'toast index', i.indexrelid, i.indexrelid::regclass::text
  FROM pg_class t JOIN pg_index i ON i.indrelid = t.reltoastrelid
 WHERE t.oid = ANY (%(tables)s::regclass[]) AND t.reltoastrelid <> 0
"""

STATS_SQL = """
SELECT schemaname || '.' || relname, n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_hot_upd,
       n_tup_del, n_ins_since_vacuum, extract(epoch FROM last_autovacuum)::float8, autovacuum_count,
       extract(epoch FROM last_autoanalyze)::float8, autoanalyze_count, vacuum_count, seq_scan,
       seq_tup_read, coalesce(idx_scan, 0)
  FROM pg_stat_user_tables WHERE relid = ANY (%(tables)s::regclass[])
"""
STATS_COLS = ["n_live_tup", "n_dead_tup", "n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del",
              "n_ins_since_vacuum", "last_autovacuum", "autovacuum_count", "last_autoanalyze",
              "autoanalyze_count", "vacuum_count", "seq_scan", "seq_tup_read", "idx_scan"]


def connect():
    conn = psycopg2.connect("")
    conn.autocommit = True
    return conn


def stats(cur):
    cur.execute(STATS_SQL, {"tables": TABLES})
    return {row[0]: dict(zip(STATS_COLS, row[1:])) for row in cur.fetchall()}


def relations(cur):
    cur.execute(RELATIONS_SQL, {"tables": TABLES})
    rels = []
    for table, role, oid, name in cur.fetchall():
        cur.execute("SELECT pg_relation_size(%s, 'main'), pg_relation_size(%s, 'fsm'), "
                    "pg_relation_size(%s, 'vm')", (oid, oid, oid))
        main, fsm, vm = cur.fetchone()
        rels.append({"table": "pg_sync." + table, "role": role, "name": name,
                     "main": main, "fsm": fsm, "vm": vm})
    return rels


def pending(cur):
    # No seq scan of the queue from the benchmark: seq_scan of pg_sync._queue counts the worker's.
    cur.execute("SET enable_seqscan = off")
    cur.execute("SELECT coalesce(sum(pending), 0)::bigint FROM pg_sync.endpoint_status")
    n = cur.fetchone()[0]
    cur.execute("RESET enable_seqscan")
    return n


def queue_vacuum_phase(cur):
    """The phase of an autovacuum (or VACUUM) running on pg_sync._queue now, or None."""
    cur.execute("SELECT phase FROM pg_stat_progress_vacuum WHERE relid = 'pg_sync._queue'::regclass")
    row = cur.fetchone()
    return row[0] if row else None


def snapshot(cur, label):
    snap = {"label": label, "t": time.time(), "relations": relations(cur), "stats": stats(cur),
            "indexes": {}}
    for rel in snap["relations"]:
        if rel["table"] == "pg_sync._queue" and rel["role"] == "index":
            cur.execute("SELECT index_size, leaf_pages, internal_pages, empty_pages, deleted_pages, "
                        "avg_leaf_density FROM pgstatindex(%s)", (rel["name"],))
            snap["indexes"][rel["name"]] = dict(zip(
                ["index_size", "leaf_pages", "internal_pages", "empty_pages", "deleted_pages",
                 "avg_leaf_density"], cur.fetchone()))
    cur.execute("SELECT table_len, scanned_percent, approx_tuple_count, dead_tuple_count, "
                "approx_free_space, approx_free_percent FROM pgstattuple_approx('pg_sync._queue')")
    snap["queue_heap"] = dict(zip(["table_len", "scanned_percent", "approx_tuple_count",
                                   "dead_tuple_count", "approx_free_space", "approx_free_percent"],
                                  cur.fetchone()))
    return snap


def sample(cur, t0, **extra):
    """A cheap timeline point: sizes and counters, no scans of the relations."""
    cur.execute("""
        SELECT pg_relation_size('pg_sync._queue'),
               (SELECT sum(pg_relation_size(indexrelid))::bigint FROM pg_index
                 WHERE indrelid = 'pg_sync._queue'::regclass),
               pg_total_relation_size('pg_sync._attempts'),
               pg_total_relation_size('pg_sync._endpoint_state'),
               (SELECT sum(delivered_total)::bigint FROM pg_sync._endpoint_state)""")
    heap, index, attempts, state, delivered = cur.fetchone()
    st = stats(cur)
    qs = st.get("pg_sync._queue", {})
    point = {"t": round(time.time() - t0, 2), "queue_heap": heap, "queue_indexes": index,
             "attempts_total": attempts, "endpoint_state_total": state,
             "queue_live": qs.get("n_live_tup"), "queue_dead": qs.get("n_dead_tup"),
             "queue_autovacuums": qs.get("autovacuum_count"),
             "queue_last_autovacuum": qs.get("last_autovacuum"),
             "queue_autoanalyzes": qs.get("autoanalyze_count"),
             "queue_seq_scans": qs.get("seq_scan"), "queue_seq_tup_read": qs.get("seq_tup_read"),
             "attempts_autovacuums": st.get("pg_sync._attempts", {}).get("autovacuum_count"),
             "endpoint_state_autovacuums":
                 st.get("pg_sync._endpoint_state", {}).get("autovacuum_count"),
             "vacuum_phase": queue_vacuum_phase(cur), "delivered_total": delivered}
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
    time.sleep(1.1)   # the scan counted by pending() reaches pg_stat_user_tables first
    before = stats(cur)["pg_sync._queue"]
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
    after = stats(cur)["pg_sync._queue"]
    left = pending(cur)
    if left != 0:
        sys.exit(f"drain: the endpoint's queue looked empty, but {left} events are pending")
    print(json.dumps({"events": events, "seconds": round(seconds, 2),
                      "events_per_s": round(events / seconds), "start_epoch": round(t0, 3),
                      "end_epoch": round(end_epoch, 3),
                      "queue_seq_scans": after["seq_scan"] - before["seq_scan"],
                      "queue_seq_tup_read": after["seq_tup_read"] - before["seq_tup_read"],
                      "queue_autoanalyzes": after["autoanalyze_count"] - before["autoanalyze_count"],
                      "queue_autovacuums": after["autovacuum_count"] - before["autovacuum_count"]}))


def cmd_wait_autovacuum(since, max_wait, poll, timeline_path):
    """Waits for an autovacuum of the queue that ended after `since` and left < 1,000 dead."""
    cur = connect().cursor()
    start = time.monotonic()
    t0 = time.time()
    phases = set()
    result = None
    with open(timeline_path, "a", buffering=1) as tl:
        while True:
            point = sample(cur, since)
            tl.write(json.dumps(point) + "\n")
            if point["vacuum_phase"]:
                phases.add(point["vacuum_phase"])
            last = point["queue_last_autovacuum"]
            if last is not None and last > since and point["queue_dead"] is not None \
                    and point["queue_dead"] < 1000 and not point["vacuum_phase"]:
                result = {"autovacuumed": True, "waited_s": round(time.time() - t0, 1),
                          "autovacuum_ended_after_s": round(last - since, 1)}
                break
            if time.monotonic() - start >= max_wait:
                result = {"autovacuumed": False, "waited_s": round(time.time() - t0, 1),
                          "autovacuum_ended_after_s": round(last - since, 1)
                          if last is not None and last > since else None}
                break
            time.sleep(poll)
    result["vacuum_phases_seen"] = sorted(phases)
    print(json.dumps(result))


def cmd_steady(rate, seconds, per_commit, sample_s, out_path):
    writer = connect()
    wcur = writer.cursor()
    total_commits = int(rate * seconds / per_commit)
    interval = per_commit / rate
    progress = {"rows": 0, "late_max": 0.0, "late": []}
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


def cmd_xacts(interval):
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cur = connect().cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS growth_other (x int)")
    while True:
        cur.execute("INSERT INTO growth_other VALUES (1)")
        time.sleep(interval)


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
    elif cmd == "wait-autovacuum":
        cmd_wait_autovacuum(float(args[0]), float(args[1]), float(args[2]), args[3])
    elif cmd == "xacts":
        cmd_xacts(float(args[0]))
    elif cmd == "steady":
        cmd_steady(float(args[0]), float(args[1]), int(args[2]), float(args[3]), args[4])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
