#!/usr/bin/python3
"""Turns bench/monitoring's raw files into the Markdown report (printed on stdout).

Usage: report.py WORK_DIR   (reads meta.txt, times.jsonl, plans.json)
"""
import json
import os
import statistics
import sys

TARGET_MS = 5.0
NEW = ["endpoint_status", "health", "workers", "recent_attempts"]
BEFORE = {"endpoint_status": "endpoint_status_before", "health": "health_before"}


def main():
    work = sys.argv[1]
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(os.path.join(work, "meta.txt")))
    runs = [json.loads(line) for line in open(os.path.join(work, "times.jsonl"))]
    plans = json.load(open(os.path.join(work, "plans.json")))
    out = []
    w = out.append
    rounds = sorted({r["round"] for r in runs})
    med = {}  # (query, round) -> median ms
    for r in runs:
        med[(r["query"], r["round"])] = statistics.median(r["ms"])
    calls = len(runs[0]["ms"])

    w("# Monitoring benchmark")
    w("")
    w(f"{meta['date'][:10]}, {meta['cores']} cores ({meta['cpu']}), PostgreSQL {meta['postgres']}; "
      f"pg_sync {meta['git']}; CPUs {meta['busy_start']} % busy in the second before the start.")
    if int(meta.get("busy_start", 0)) > 10:
        w("")
        w(f"**Warning: the machine was busy when the run started ({meta['busy_start']} % of all cores "
          f"in use over one second); other work skews every time below.**")
    w("")
    w(f"Queue: {int(meta['events']):,} events pending over {meta['endpoints']} paused endpoints "
      f"({meta['queue_size']} heap + index), {meta['dead']} dead letters, {meta['attempts']} rows in "
      f"the recent-attempts ring; server settings: {meta['server']}. Load: {meta['load_s']} s "
      f"through the capture trigger.")
    w("")
    w(f"## Time per call (ms), as a member of pgsync_monitor")
    w("")
    w(f"Median of {calls} calls per round (client side: execute + fetch over loopback TCP), "
      f"{len(rounds)} rounds, queries interleaved; in parentheses the range of the round medians. "
      f"*Before*: the definitions before this change (git {meta['before_rev']}), created next to "
      f"the new ones on the same server, timed in the same rounds; the ratio is before / now per "
      f"round.")
    w("")
    w("| query | now | target < 5 ms | before | before / now |")
    w("|---|---:|---|---:|---:|")
    misses = []
    for q in NEW:
        vals = [med[(q, r)] for r in rounds if (q, r) in med]
        m = statistics.median(vals)
        ok = m < TARGET_MS
        if not ok:
            misses.append(f"{q}: {m:.2f} ms")
        now = f"{m:.2f} ({min(vals):.2f}–{max(vals):.2f})"
        before = ratio = "– (unchanged)"
        if q in BEFORE:
            bvals = [med[(BEFORE[q], r)] for r in rounds if (BEFORE[q], r) in med]
            ratios = [med[(BEFORE[q], r)] / med[(q, r)] for r in rounds if (BEFORE[q], r) in med]
            before = f"{statistics.median(bvals):.1f} ({min(bvals):.1f}–{max(bvals):.1f})"
            ratio = f"{statistics.median(ratios):.0f}x ({min(ratios):.0f}–{max(ratios):.0f}x)"
        w(f"| {q} | {now} | {'met' if ok else '**missed**'} | {before} | {ratio} |")
    w("")
    w("## Plans (EXPLAIN ANALYZE; health() through auto_explain of each statement it runs)")
    w("")
    w("| plan | nodes reading pg_sync._queue (loops) | JIT | execution ms |")
    w("|---|---|---|---:|")
    seq_now = []
    for p in plans:
        qn = ", ".join(f"{n['node']}{' (parallel)' if n['parallel'] else ''}"
                       f"{' using ' + n['index'] if n['index'] else ''} ({n['loops']})"
                       for n in p["queue_nodes"]) or "none"
        if not p["label"].startswith(("endpoint_status_before", "health_before")) and any(
                "Seq Scan" in n["node"] for n in p["queue_nodes"]):
            seq_now.append(p["label"])
        label = p["label"] + (f": `{p['query']}`" if p.get("query") else "")
        jit = f"yes, {p['jit_ms']:.0f} ms" if p["jit"] else "no"
        ex = f"{p['execution_ms']:.2f}" if p["execution_ms"] is not None else ""
        if p["label"].startswith("health") and not p["queue_nodes"] and not p["jit"] and "statement" in p["label"]:
            continue  # statements of health() that do not touch the queue: not listed one by one
        w(f"| {label} | {qn} | {jit} | {ex} |")
    w("")
    w("Statements of health() that read neither the queue nor JIT-compile are left out of the table.")
    w("")
    if meta.get("recount"):
        w(f"Recount of the whole queue by the worker (at its start, and after a DELETE or TRUNCATE of "
          f"the queue by hand; readers count meanwhile), from the server log: {meta['recount']}.")
        w("")
    if seq_now:
        misses.append(f"sequential scan of the queue in: {', '.join(seq_now)}")
    if misses:
        w("Targets missed: " + "; ".join(misses) + ".")
    else:
        w("Every query answers in under 5 ms with no sequential scan of the queue: target met.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
