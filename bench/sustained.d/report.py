#!/usr/bin/python3
"""Turns bench/sustained's raw files into the Markdown report (stdout) and one CSV of every sample.

Usage: report.py WORK_DIR OUT.csv
Reads meta.txt, runs.jsonl, series-ROUND-VARIANT.csv (bench/sustained.d/sample.py),
pgbench-ROUND-VARIANT.progress (pgbench -P 1 --progress-timestamp) and autovacuum.log (the
server log's autovacuum lines for pg_sync's tables).
"""
import csv
import json
import os
import re
import statistics
import sys
from datetime import datetime, timezone

BACKLOG_LIMIT = 10_000   # the target: the backlog stays under about one second of events
STRING_COLUMNS = ("phase", "vacuum", "worker_wait", "oldest_xmin_holder")
SYSCALLS = ("epoll_wait", "sendto", "recvfrom", "fdatasync")
STALL_SHARE = 0.10       # a stalled second delivers less than this share of the capture rate


def fmt(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def read_series(path):
    rows = []
    for r in csv.DictReader(open(path)):
        for k, v in r.items():
            if k not in STRING_COLUMNS:
                r[k] = float(v) if v != "" else None
        rows.append(r)
    return rows


def read_progress(path):
    """pgbench -P 1 --progress-timestamp lines: [(epoch, tps)]."""
    out = []
    if os.path.exists(path):
        for line in open(path):
            m = re.match(r"progress: ([0-9.]+) s, ([0-9.]+) tps", line)
            if m:
                out.append((float(m.group(1)), float(m.group(2))))
    return out


def read_syscalls(path):
    """bench/sustained.d/syscalls.py's per-second counts (TRACE=1): {second: {name: count}}."""
    if not os.path.exists(path):
        return {}
    return {int(r["second"]): {k: int(v) for k, v in r.items() if k != "second"} for r in csv.DictReader(open(path))}


def enrich(series, syscalls):
    """Per-second rates from the cumulative counters, and the worker's syscalls of the second that
    ends at each sample (None where not measured)."""
    prev = None
    for r in series:
        dt = r["epoch"] - prev["epoch"] if prev else None

        def rate(col):
            if not dt or r.get(col) is None or prev.get(col) is None:
                return None
            return (r[col] - prev[col]) / dt

        def per(col, calls):
            n = r[calls] - prev[calls] if prev and r.get(calls) is not None and prev.get(calls) is not None else 0
            return (r[col] - prev[col]) / n if n else None
        r["idx_scans_per_s"] = rate("idx_scans")
        r["head_reads_per_s"] = rate("head_reads")
        r["ms_per_head_read"] = per("head_ms", "head_reads")
        r["buffers_per_head_read"] = per("head_buffers", "head_reads")
        r["deletes_per_s"] = rate("delete_calls")
        r["ms_per_delete"] = per("delete_ms", "delete_calls")
        counts = syscalls.get(int(r["epoch"]) - 1) if syscalls else None
        for name in SYSCALLS:
            r[name] = None if counts is None else counts.get(name, 0)
        prev = r


def tps_at(progress, epoch):
    """pgbench's tps over the second that ends closest to epoch (within 1 s), or None."""
    best = min(progress, key=lambda p: abs(p[0] - epoch), default=None)
    return best[1] if best and abs(best[0] - epoch) <= 1.0 else None


def read_autovacuums(path):
    """Autovacuums of pg_sync._queue: [(end epoch, elapsed s, text summary)]."""
    out = []
    if not os.path.exists(path):
        return out
    text = open(path).read()
    for m in re.finditer(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC \[\d+\] \S* ?LOG:  automatic vacuum of table "
                         r"\"[^\"]*\.pg_sync\.(_queue[^\"]*)\"(.*?)elapsed: ([0-9.]+) s", text, re.S | re.M):
        end = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
        body = m.group(3)
        removed = re.search(r"tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable", body)
        pages = re.search(r"pages: (\d+) removed, (\d+) remain", body)
        index = re.search(r"index scans: (\d+)", body)
        summary = []
        if removed:
            summary.append(f"{int(removed.group(1)):,} tuples removed, {int(removed.group(2)):,} remain, "
                           f"{int(removed.group(3)):,} dead not yet removable")
        if pages:
            summary.append(f"heap pages {int(pages.group(1)):,} removed, {int(pages.group(2)):,} remain")
        if index:
            summary.append(f"index scans {index.group(1)}")
        out.append((end, float(m.group(4)), m.group(2), "; ".join(summary)))
    return out


def csv_value(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return int(v) if v.is_integer() else round(v, 2)
    return v


def longest(flags):
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


def analyse(run, series):
    """Figures of one run from its samples."""
    s = series
    in_run = [r for r in s if r["phase"] == "run"]
    first, last = s[0], (in_run[-1] if in_run else s[-1])
    span = last["epoch"] - first["epoch"]
    rate = (last["captured"] - first["captured"]) / span if span > 0 else 0.0
    a = {"rate": rate, "span": span}
    a["delivered_rate"] = (last["delivered"] - first["delivered"]) / span if span > 0 else 0.0
    a["max_backlog"] = max(r["backlog"] for r in s)
    a["over_limit"] = sum(1 for r in in_run if r["backlog"] > BACKLOG_LIMIT)
    a["over_second"] = sum(1 for r in in_run if rate > 0 and r["backlog"] > rate)
    rated = [r for r in s if r["delivered_per_s"] is not None]
    a["stall"] = longest(rate > 0 and r["backlog"] > 0 and r["delivered_per_s"] < STALL_SHARE * rate
                         for r in rated)
    a["min_delivered"] = min((r["delivered_per_s"] for r in rated if r["phase"] == "run"), default=None)
    a["peak_dead"] = max(r["n_dead_tup"] for r in s)
    a["autovacuums"] = s[-1]["autovacuums"] - s[0]["autovacuums"]
    a["seq_scans"] = last["seq_scans"] - first["seq_scans"]
    a["idx_scans"] = last["idx_scans"] - first["idx_scans"]
    a["vacuum_samples"] = sum(1 for r in in_run if r["vacuum"])
    traced = [r for r in s if r["epoll_wait"] is not None and r["in_flight"]]
    a["silent"] = (sum(1 for r in traced if r["epoll_wait"] + r["sendto"] + r["recvfrom"] == 0)
                   if traced else None)

    def mean(col, rows=in_run):
        v = [r[col] for r in rows if r[col] is not None]
        return statistics.mean(v) if v else None
    for col in ("worker_cpu", "pgbench_cpu", "autovacuum_cpu", "machine_busy"):
        a[col] = mean(col)
    delivered = s[-1]["delivered"] - s[0]["delivered"]
    a["delivered"] = delivered
    a["captured"] = s[-1]["captured"] - s[0]["captured"]
    worker_s = s[-1]["worker_cpu_s"] - s[0]["worker_cpu_s"]
    a["worker_s"] = worker_s
    a["cpu_per_100k"] = worker_s / delivered * 100_000 if delivered > 0 else None
    a["drain_s"] = run["drained"] - run["end"]
    a["max_heap_mb"] = max(r["heap_mb"] for r in s)
    a["max_index_mb"] = max(r["index_mb"] for r in s)
    waits = {}
    for r in in_run:
        waits[r["worker_wait"] or "(none: on CPU or idle)"] = waits.get(r["worker_wait"] or "(none: on CPU or idle)", 0) + 1
    a["waits"] = sorted(waits.items(), key=lambda kv: -kv[1])
    return a


def main():
    work, csv_out = sys.argv[1], sys.argv[2]
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(os.path.join(work, "meta.txt")))
    settings = dict(kv.split("=", 1) for kv in meta["settings"].split())
    runs = [json.loads(line) for line in open(os.path.join(work, "runs.jsonl"))]
    autovacuums = read_autovacuums(os.path.join(work, "autovacuum.log"))
    series, progress = {}, {}
    for run in runs:
        name = f"{run['round']}-{run['variant']}"
        series[name] = read_series(os.path.join(work, f"series-{name}.csv"))
        enrich(series[name], read_syscalls(os.path.join(work, f"syscalls-{name}.csv")))
        progress[name] = read_progress(os.path.join(work, f"pgbench-{name}.progress"))

    # The CSV: every sample of every run, time relative to the run's pgbench start, pgbench's tps.
    with open(csv_out, "w", newline="") as f:
        w = None
        for run in runs:
            name = f"{run['round']}-{run['variant']}"
            for r in series[name]:
                row = {"round": run["round"], "variant": run["variant"], "t": f"{r['epoch'] - run['start']:.1f}"}
                row.update({k: csv_value(v) for k, v in r.items()})
                tps = tps_at(progress[name], r["epoch"])
                row["pgbench_tps"] = "" if tps is None else f"{tps:.0f}"
                if w is None:
                    w = csv.DictWriter(f, fieldnames=list(row))
                    w.writeheader()
                w.writerow(row)

    out = []
    w = out.append
    rounds = sorted({r["round"] for r in runs})
    by = {(r["round"], r["variant"]): r for r in runs}
    w("# Sustained-load benchmark: pgbench TPC-B with pg_sync capture and delivery")
    w("")
    w(f"{meta['date'][:10]}, {meta['cores']} cores ({meta['cpu']}), PostgreSQL {meta['postgres']}, "
      f"{meta['pgbench']}, nginx {meta['nginx']}; pg_sync {meta['git']}, pg_sync.so {meta['so_md5']}"
      f"{'' if meta.get('so_md5_end', meta['so_md5']) == meta['so_md5'] else ' (**replaced during the run**)'}; "
      f"CPUs {meta['busy_start']} % busy in the second before the start.")
    if int(meta.get("busy_start", 0)) > 10:
        w("")
        w(f"**Warning: the machine was busy when the run started ({meta['busy_start']} % of all cores in use "
          f"over one second); other work skews every figure.**")
    w("")
    w(f"`pgbench -c {settings['clients']} -j {settings['jobs']} -T {settings['duration']} -P 1` "
      f"(synchronous_commit off) on scale {settings['scale']}, {len(rounds)} round(s), untracked then tracked "
      f"in each. Endpoint: create_endpoint's defaults ({meta['endpoint']}), nginx answering 204 on loopback. "
      f"Server: {meta['server']}. Queue reloptions: {meta['queue_reloptions']}.")
    if meta.get("diagnosis"):
        w("")
        w(f"**Diagnosis settings (not a clean measurement): {meta['diagnosis']}.**")
    w("")

    # --- Per round -----------------------------------------------------------------------------
    figures = {}
    for rd in rounds:
        name = f"{rd}-tracked"
        if name in series:
            figures[rd] = analyse(by[(rd, "tracked")], series[name])
    ratios = [by[(rd, "tracked")]["tps"] / by[(rd, "untracked")]["tps"] for rd in rounds
              if (rd, "tracked") in by and (rd, "untracked") in by]
    w("## Per round")
    w("")
    w("| round | tps untracked | tps tracked | ratio | events/s captured | events/s delivered | max backlog | "
      f"1-s samples > {BACKLOG_LIMIT:,} | 1-s samples > 1 s of events | longest stall | slowest delivery second | "
      "peak dead tuples | autovacuums of the queue | seq scans of the queue | drain after pgbench |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rd in rounds:
        u, t, a = by.get((rd, "untracked")), by.get((rd, "tracked")), figures.get(rd)
        if not (u and t and a):
            continue
        n = len([r for r in series[f"{rd}-tracked"] if r["phase"] == "run"])
        w(f"| {rd} | {fmt(u['tps'])} | {fmt(t['tps'])} | {t['tps'] / u['tps']:.2f} | {fmt(a['rate'])} | "
          f"{fmt(a['delivered_rate'])} | {fmt(a['max_backlog'])} | {a['over_limit']} of {n} | "
          f"{a['over_second']} of {n} | {a['stall']} s | {fmt(a['min_delivered'])}/s | {fmt(a['peak_dead'])} | "
          f"{fmt(a['autovacuums'])} | {fmt(a['seq_scans'])} | {a['drain_s']:.1f} s |")
    w("")
    if ratios:
        w(f"tps tracked / untracked: median {statistics.median(ratios):.2f}, range {min(ratios):.2f} – "
          f"{max(ratios):.2f} over {len(ratios)} round(s).")
        w("")
    w(f"*1 s of events*: the run's mean capture rate. *Stall*: consecutive 1-s samples (drain included) "
      f"that delivered less than {STALL_SHARE:.0%} of that rate while the backlog was > 0. Backlog = captured "
      "(queue id sequence) − delivered (event counts of the webhook-id headers nginx logged) − new dead "
      "letters. Seq scans: pg_stat_user_tables.seq_scan of pg_sync._queue while pgbench ran (the sampler "
      "adds none; the drain check after it counts the queue through pg_sync.endpoint_status).")
    w("")
    w("### Where the CPU went (tracked runs; percent of one core, mean over the run's samples)")
    w("")
    w("| round | delivery worker | pgbench backends (tracked) | pgbench backends (untracked) | autovacuum workers | "
      "machine busy (% of all cores) | worker CPU s per 100k events (run + drain) | worker's wait events (samples) |"
      " seconds with requests in flight and no socket syscall (TRACE=1) |")
    w("|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for rd in rounds:
        a = figures.get(rd)
        if not a:
            continue
        base = analyse(by[(rd, "untracked")], series[f"{rd}-untracked"]) if f"{rd}-untracked" in series else {}
        waits = ", ".join(f"{k} {v}" for k, v in a["waits"][:4])
        w(f"| {rd} | {fmt(a['worker_cpu'])} | {fmt(a['pgbench_cpu'])} | {fmt(base.get('pgbench_cpu'))} | "
          f"{fmt(a['autovacuum_cpu'])} | {fmt(a['machine_busy'])} | "
          f"{fmt(a['cpu_per_100k'], 2)} ({fmt(a['worker_s'], 1)} s for {fmt(a['delivered'])} events) | {waits} | "
          f"{'not traced' if a['silent'] is None else a['silent']} |")
    w("")

    # --- Autovacuums ---------------------------------------------------------------------------
    w("### Autovacuums of the queue during the tracked runs and their drains (server log)")
    w("")
    w("| round | ended at (s after pgbench started) | relation | elapsed | what it did |")
    w("|---:|---:|---|---:|---|")
    for rd in rounds:
        t = by.get((rd, "tracked"))
        if not t:
            continue
        for end, elapsed, rel, summary in autovacuums:
            if t["start"] <= end <= t["drained"] + 2:
                w(f"| {rd} | {end - t['start']:.0f} | pg_sync.{rel} | {elapsed:.2f} s | {summary} |")
    w("")

    # --- Time series ---------------------------------------------------------------------------
    def window_span(rows, col):
        v = [x[col] for x in rows if x[col] is not None]
        return f"{fmt(min(v))} – {fmt(max(v))}" if v else ""
    # (header, value of sample i of series s, optional: shown only when measured)
    columns = [
        ("t", lambda s, i, t0: f"{s[i]['epoch'] - t0:.0f}", False),
        ("phase", lambda s, i, t0: s[i]["phase"], False),
        ("pgbench tps", lambda s, i, t0: fmt(tps_at(progress[current], s[i]["epoch"])), False),
        ("captured/s", lambda s, i, t0: fmt(s[i]["captured_per_s"]), False),
        ("delivered/s", lambda s, i, t0: fmt(s[i]["delivered_per_s"]), False),
        ("backlog", lambda s, i, t0: fmt(s[i]["backlog"]), False),
        ("backlog min–max (10 s)", lambda s, i, t0: window_span(s[max(1, i - 9):i + 1], "backlog") if i % 10 == 0 else "", False),
        ("delivered/s min–max (10 s)", lambda s, i, t0: window_span(s[max(1, i - 9):i + 1], "delivered_per_s") if i % 10 == 0 else "", False),
        ("n_dead_tup", lambda s, i, t0: fmt(s[i]["n_dead_tup"]), False),
        ("queue heap MB", lambda s, i, t0: fmt(s[i]["heap_mb"]), False),
        ("queue index scans/s", lambda s, i, t0: fmt(s[i]["idx_scans_per_s"]), False),
        ("autovacuum", lambda s, i, t0: s[i]["vacuum"].split(" ")[0] if s[i]["vacuum"] else "", False),
        ("worker CPU %", lambda s, i, t0: fmt(s[i]["worker_cpu"]), False),
        ("pgbench CPU %", lambda s, i, t0: fmt(s[i]["pgbench_cpu"]), False),
        ("oldest xmin age (holder)", lambda s, i, t0: (f"{fmt(s[i]['oldest_xmin_age'])} ({s[i]['oldest_xmin_holder']})"
                                                       if s[i].get("oldest_xmin_age") is not None else ""), True),
        ("head reads/s", lambda s, i, t0: fmt(s[i]["head_reads_per_s"]), True),
        ("ms / head read", lambda s, i, t0: fmt(s[i]["ms_per_head_read"], 1), True),
        ("buffers / head read", lambda s, i, t0: fmt(s[i]["buffers_per_head_read"]), True),
        ("deletes/s", lambda s, i, t0: fmt(s[i]["deletes_per_s"]), True),
        ("ms / delete", lambda s, i, t0: fmt(s[i]["ms_per_delete"], 1), True),
        ("worker epoll_wait/s", lambda s, i, t0: fmt(s[i]["epoll_wait"]), True),
        ("worker sendto+recvfrom/s", lambda s, i, t0: (fmt(s[i]["sendto"] + s[i]["recvfrom"])
                                                       if s[i]["sendto"] is not None else "–"), True),
    ]
    measured = {"oldest xmin age (holder)": "oldest_xmin_age", "head reads/s": "head_reads_per_s",
                "ms / head read": "ms_per_head_read", "buffers / head read": "buffers_per_head_read",
                "deletes/s": "deletes_per_s", "ms / delete": "ms_per_delete", "worker epoll_wait/s": "epoll_wait",
                "worker sendto+recvfrom/s": "sendto"}
    for rd in rounds:
        current = f"{rd}-tracked"
        if current not in series:
            continue
        t0 = by[(rd, "tracked")]["start"]
        s = series[current]
        shown = [c for c in columns if not c[2] or any(r.get(measured[c[0]]) is not None for r in s)]
        w(f"## Time series, round {rd} (tracked)")
        w("")
        w("Every 5th 1-s sample (t: seconds since pgbench started); on every 10th, the min–max of the 10 s "
          "that end there. The full series (both variants) is in the CSV next to this file. Queue index "
          "scans/s: pg_stat_user_tables.idx_scan of the queue; the worker's delete of delivered events adds "
          "one per event when it runs with its index condition on id, one per statement when it does not.")
        w("")
        w("| " + " | ".join(c[0] for c in shown) + " |")
        w("|" + "|".join("---" if c[0] in ("phase", "autovacuum", "oldest xmin age (holder)") else "---:"
                         for c in shown) + "|")
        for i in range(5, len(s), 5):
            w("| " + " | ".join(c[1](s, i, t0) for c in shown) + " |")
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
