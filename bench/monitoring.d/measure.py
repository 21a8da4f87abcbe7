#!/usr/bin/python3
"""Times the monitoring queries and records their plans, for bench/monitoring.

Usage:
  measure.py time ROUNDS CALLS OUT.jsonl   (as the monitor role: PG* environment variables)
  measure.py plans OUT.json                (as a superuser)

time: per round, for each query in turn (the order rotates from round to round), CALLS calls
timed on the client (execute + fetch of every row, over a loopback TCP connection), one JSON line
per (round, query) with every call's milliseconds. Before the first round, once, the new and the
old endpoint_status must agree on pending and dead for every endpoint.

plans: EXPLAIN (ANALYZE, FORMAT JSON) of each view, and of every statement health() runs (through
auto_explain, nested statements, sent to the client with client_min_messages = log); for each
plan the nodes that read pg_sync._queue, whether it was JIT-compiled, and its execution time.
"""
import json
import re
import statistics
import sys
import time

import psycopg2

QUERIES = {
    "endpoint_status": "SELECT * FROM pg_sync.endpoint_status",
    "health": "SELECT * FROM pg_sync.health()",
    "workers": "SELECT * FROM pg_sync.workers",
    "recent_attempts": "SELECT * FROM pg_sync.recent_attempts",
    "endpoint_status_before": "SELECT * FROM bench_before.endpoint_status",
    "health_before": "SELECT * FROM bench_before.health()",
}


def connect():
    conn = psycopg2.connect("")
    conn.autocommit = True
    return conn


def timed(cur, sql):
    t0 = time.perf_counter()
    cur.execute(sql)
    rows = cur.fetchall()
    return (time.perf_counter() - t0) * 1000, len(rows)


def run_time(rounds, calls, out):
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT endpoint, pending, dead FROM pg_sync.endpoint_status ORDER BY 1")
    new = cur.fetchall()
    cur.execute("SELECT endpoint, pending, dead FROM bench_before.endpoint_status ORDER BY 1")
    old = cur.fetchall()
    if new != old:
        sys.exit(f"measure: endpoint_status disagrees with the definition before:\n{new}\n{old}")
    names = list(QUERIES)
    with open(out, "w") as f:
        for r in range(1, rounds + 1):
            order = names[(r - 1) % len(names):] + names[:(r - 1) % len(names)]
            for name in order:
                timed(cur, QUERIES[name])  # one call unmeasured: plans cached, pages read
                ms, nrows = [], 0
                for _ in range(calls):
                    t, nrows = timed(cur, QUERIES[name])
                    ms.append(round(t, 3))
                f.write(json.dumps({"round": r, "query": name, "rows": nrows, "ms": ms}) + "\n")
                print(f"round {r} {name}: median {statistics.median(ms):.2f} ms", file=sys.stderr)
    print(json.dumps({"pending_checked": [list(x) for x in new]}))


def nodes(n):
    yield n
    for c in n.get("Plans", []):
        yield from nodes(c)


def summarize(label, top):
    on_queue = []
    for n in nodes(top["Plan"]):
        if re.fullmatch(r"_queue(_[0-9]+)?", n.get("Relation Name", "")):  # the queue or a partition
            on_queue.append({"node": n["Node Type"], "index": n.get("Index Name"),
                             "parallel": n.get("Parallel Aware", False),
                             "loops": n.get("Actual Loops", 0), "rows": n.get("Actual Rows", 0)})
    return {"label": label, "queue_nodes": on_queue, "jit": "JIT" in top,
            "jit_ms": top.get("JIT", {}).get("Timing", {}).get("Total"),
            "execution_ms": top.get("Execution Time", top["Plan"].get("Actual Total Time")),
            "total_cost": top["Plan"]["Total Cost"]}


def json_objects(text):
    dec, i = json.JSONDecoder(), 0
    while (i := text.find("{", i)) >= 0:
        try:
            obj, i = dec.raw_decode(text, i)
            yield obj
        except ValueError:
            i += 1


def run_plans(out):
    conn = connect()
    cur = conn.cursor()
    result = []
    for label, sql in (("endpoint_status", QUERIES["endpoint_status"]),
                       ("workers", QUERIES["workers"]),
                       ("recent_attempts", QUERIES["recent_attempts"]),
                       ("endpoint_status_before", QUERIES["endpoint_status_before"])):
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
        result.append(summarize(label, cur.fetchone()[0][0]))
    for label, fn in (("health", "pg_sync.health()"), ("health_before", "bench_before.health()")):
        notices = []
        conn.notices = notices
        for s in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                  "SET auto_explain.log_nested_statements = on", "SET auto_explain.log_analyze = on",
                  "SET auto_explain.log_format = json", "SET client_min_messages = log"):
            cur.execute(s)
        cur.execute(f"SELECT * FROM {fn}")
        cur.fetchall()
        cur.execute("SET client_min_messages = notice")
        cur.execute("SET auto_explain.log_min_duration = -1")
        plans = [o for o in json_objects("".join(notices)) if "Plan" in o]
        for i, p in enumerate(plans):
            s = summarize(f"{label} statement {i + 1}", p)
            s["query"] = " ".join(p.get("Query Text", "").split())[:80]
            result.append(s)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


def main():
    if sys.argv[1] == "time":
        run_time(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "plans":
        run_plans(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
