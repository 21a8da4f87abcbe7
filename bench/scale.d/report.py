#!/usr/bin/python3
"""Turns bench/scale's raw files into the Markdown report (printed on stdout).

Usage: report.py WORK_DIR
Reads meta.txt, runs.jsonl (one drain per line, or a skipped size), timeline-*.jsonl,
trouble-*.log and server.log (autovacuums of the queue's partitions).
"""
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import fenced, num, read_jsonl, read_meta, run_notes  # noqa: E402

MB = 1024 * 1024


def mb_kb(kb):
    return "–" if kb is None else f"{kb / 1024:,.1f} MB"


def size(b):
    if b >= 1024 * MB:
        return f"{b / 1024 / MB:,.1f} GB"
    return f"{b / MB:,.0f} MB"


def quarters(points, events, seconds):
    """Events/s over the first and the last quarter of the events (from the timeline: delivered
    so far, once a second; interpolated), or None for drains shorter than 10 s."""
    pts = [(p["t"], p["delivered"]) for p in points if "delivered" in p]
    if seconds < 10 or len(pts) < 3:
        return None

    def time_at(n):
        for (t0, d0), (t1, d1) in zip(pts, pts[1:]):
            if d1 >= n:
                return t0 + (t1 - t0) * ((n - d0) / (d1 - d0) if d1 > d0 else 1.0)
        return pts[-1][0]

    t25, t75 = time_at(events / 4), time_at(3 * events / 4)
    return (events / 4 / max(t25, 0.001), events / 4 / max(seconds - t75, 0.001))


def secs(x):
    return "–" if x is None else f"{x} s"


def cpu_per_100k(r):
    return "–" if not r["delivered"] else f"{100000 * r['worker_cpu_s'] / r['delivered']:.1f} s"


def per_event(r, key):
    return "–" if key not in r else f"{r[key] / max(r['delivered'], 1):.1f}"


def memory_cells(r):
    b, p = r["baseline_kb"], r["peak_kb"]
    return (f"{mb_kb(b['RssAnon'])} → {mb_kb(p['RssAnon'])}", mb_kb(r["vm_hwm_end_kb"]))


def main():
    work = sys.argv[1]
    meta, settings = read_meta(work)
    runs = read_jsonl(os.path.join(work, "runs.jsonl"))
    out = []
    w = out.append
    w("# Scaling benchmark: backlog size and number of endpoints")
    w("")
    w(f"{meta['date'][:10]}, {meta['cores']} cores ({meta['cpu']}), {meta['mem']} RAM, PostgreSQL "
      f"{meta['postgres']}, nginx {meta['nginx']}; pg_sync {meta['git']}, pg_sync.so "
      f"{meta['so_md5']}; CPUs {meta.get('busy_start', '?')} % busy in the second before the "
      f"start; {int(meta['disk_free_start']) / 1024 ** 3:.0f} GB free on the data directory's file "
      f"system. Whole run {int(meta.get('total_s', 0)) / 60:.0f} min.")
    out += run_notes(meta, settings, "rates")
    w("")

    def timeline(name):
        return read_jsonl(os.path.join(work, f"timeline-{name}.jsonl"))

    a = [r for r in runs if r.get("part") == "a"]
    if a:
        w("## (a) Backlog size: one endpoint, default settings (batch_size 100, max_in_flight 4)")
        w("")
        w("| backlog (events) | load | queue on disk (data directory) | drain | events/s | events/s: "
          "first / last quarter of the events | worker RssAnon: before → peak | worker VmHWM | "
          "worker CPU per 100k events | queue index / heap blocks per event | requests (events "
          "each) | autovacuums of the queue partitions during the drain |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in a:
            if "skipped" in r:
                w(f"| {num(r['events'])} | skipped: {r['skipped']} |" + " |" * 10)
                continue
            q = quarters(timeline(f"a-{r['events']}"), r["events"], r["seconds"])
            anon, hwm = memory_cells(r)
            drain = f"{r['seconds']:,.1f} s" if r["drained"] else \
                f"**gave up after {r['seconds']:,.0f} s ({num(r['delivered'])} delivered)**"
            w(f"| {num(r['events'])} | {r['load']['seconds']:,.1f} s ({num(r['load']['rows_per_s'])} "
              f"rows/s) | {size(r['queue_bytes'])} ({size(r['data_bytes'])}) | {drain} | "
              f"{num(r['events_per_s'])} | " + (f"{q[0]:,.0f} / {q[1]:,.0f}" if q else "–") +
              f" | {anon} | {hwm} | {cpu_per_100k(r)} | "
              f"{per_event(r, 'queue_index_blocks')} / {per_event(r, 'queue_heap_blocks')} | "
              f"{num(r['requests'])} ({r['delivered'] / max(r['requests'], 1):.0f}) | "
              f"{r['queue_autovacuums']} |")
        w("")
        w("Load: INSERT ... SELECT generate_series into the tracked table orders (about 300 bytes "
          "of JSON per event), "
          f"{int(settings['backlog_chunk']):,} rows per transaction, the endpoint paused. Queue on "
          "disk: its three partitions (heap, index, TOAST) once loaded; data directory: the whole "
          "cluster then (orders, the queue, WAL). Drain: resume_endpoint until the queue is empty "
          "(polled every 20 ms); events/s = events / drain. First / last quarter: the rate while "
          "the first 25 % and the last 25 % of the events were delivered (from delivered_total, "
          "once a second; drains of 10 s and more). RssAnon: the worker's private memory "
          "(/proc/PID/status, sampled every "
          f"{settings['interval']} s; before: in the second before the resume); VmHWM: the "
          "kernel's high-water mark of its whole resident set (private memory, the shared buffers "
          "it touched, the binaries), read at the end of the drain; every step ran in a fresh "
          "database, so a fresh worker. Blocks per event: index and heap blocks of the queue's "
          "partitions read or hit over the drain (pg_statio_user_tables: the worker's reads, "
          "deletes and truncations, and autovacuum's), per event delivered. Requests: what nginx "
          "counted.")
        w("")

    b = [r for r in runs if r.get("part") == "b"]
    if b:
        w(f"## (b) Endpoints: {num(int(settings['fanout_events']))} events spread evenly, default "
          f"endpoint settings")
        w("")
        w("| endpoints | pg_sync.max_connections | emit | drain | events/s | first / last "
          "endpoint done | worker RssAnon: before → peak | worker VmHWM | worker CPU per 100k "
          "events | requests (events each) | connections opened (most open at once) | worker's "
          "open files, most (limit) | failed requests / dead letters / worker restarts |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in b:
            anon, hwm = memory_cells(r)
            drain = f"{r['seconds']:,.1f} s" if r["drained"] else \
                f"**gave up after {r['seconds']:,.0f} s ({num(r['delivered'])} delivered)**"
            w(f"| {num(r['endpoints'])} | {r['max_connections']} | {r['emit_s']} s | {drain} | "
              f"{num(r['events_per_s'])} | {secs(r['first_endpoint_done_s'])} / "
              f"{secs(r['last_endpoint_done_s'])} | {anon} | {hwm} | "
              f"{cpu_per_100k(r)} | {num(r['requests'])} "
              f"({r['delivered'] / max(r['requests'], 1):.0f}) | {num(r['connections'])} "
              f"({num(r['nginx_active_max'])}) | {num(r['worker_open_fds_max'])} "
              f"({num(r['worker_fd_limit'])}) | {num(r['failed_requests'])} / "
              f"{num(r['dead_letters'])} / {r['worker_restarts']} |")
        w("")
        spread = ", ".join(
            f"{num(r['per_endpoint_min'])}" + ("" if r["per_endpoint_max"] == r["per_endpoint_min"]
                                              else f"–{num(r['per_endpoint_max'])}") for r in b)
        w("Each endpoint its own URL path (/e/<i>) on the same nginx; events per endpoint: "
          f"{spread}. "
          "Emit: the one statement that queued them (pg_sync.emit per event, all endpoints "
          "paused). Drain: one statement resumed every endpoint, until the queue was empty. "
          "First / last endpoint done: the endpoint that finished first and last "
          "(pg_sync._endpoint_state.last_success_at), seconds after the resume. Most open at "
          "once: nginx's active connections, once a second. pg_sync.max_connections: twice the "
          "endpoints, at least its default (64), at most its maximum (1,000), unless the row says "
          "otherwise. Open files: the worker's /proc/PID/fd (sockets included), once a second, "
          "and its soft limit (Max open files); a drain that did not end is given up after "
          f"{settings.get('fanout_timeout', '?')} s.")
        w("")

    # ---- findings ----------------------------------------------------------------------------
    w("## Findings")
    w("")
    done_a = [r for r in a if "skipped" not in r]
    if len(done_a) > 1:
        base = done_a[0]
        for r in done_a[1:]:
            w(f"- Backlog {num(r['events'])}: {r['events_per_s'] / base['events_per_s']:.2f}x the "
              f"drain rate of {num(base['events'])} events; peak RssAnon "
              f"{mb_kb(r['peak_kb']['RssAnon'])} vs {mb_kb(base['peak_kb']['RssAnon'])}.")
    if len(b) > 1:
        base = b[0]
        for r in b[1:]:
            w(f"- {num(r['endpoints'])} endpoints (max_connections {r['max_connections']}): "
              f"{r['events_per_s'] / base['events_per_s']:.2f}x "
              f"the drain rate of {num(base['endpoints'])}; peak RssAnon "
              f"{mb_kb(r['peak_kb']['RssAnon'])} vs {mb_kb(base['peak_kb']['RssAnon'])}.")
    for r in a + b:
        if "skipped" in r:
            continue
        name = f"backlog {num(r['events'])}" if r["part"] == "a" else \
            f"{num(r['endpoints'])} endpoints, max_connections {r['max_connections']}"
        if r.get("failed_requests"):
            w(f"- {name}: {num(r['failed_requests'])} failed requests (nginx answers 204 at once).")
        if r.get("worker_restarts"):
            w(f"- {name}: **the delivery worker exited {r['worker_restarts']} time(s) during the "
              f"drain** (pids {r['worker_pids']}; the memory and CPU figures cover all of them).")
        if not r["drained"]:
            w(f"- {name}: **not drained within {r['seconds']:,.0f} s**: {num(r['delivered'])} of "
              f"{num(r['events'])} delivered.")
        if r.get("server_log_trouble"):
            tag = f"a-{r['events']}" if r["part"] == "a" else f"b-{r['endpoints']}-{r['max_connections']}"
            path = os.path.join(work, f"trouble-{tag}.log")
            lines = open(path).read().splitlines() if os.path.exists(path) else []
            w(f"- {name}: {r['server_log_trouble']} lines of trouble in the server log, the first:")
            w("")
            w("  ```")
            for line in lines[:4]:
                w(f"  {line[:300]}")
            w("  ```")
        if r.get("queue_seq_scans"):
            w(f"- {name}: {num(r['queue_seq_scans'])} sequential scans of the queue's partitions "
              f"during the drain.")
    w("")

    # ---- raw ---------------------------------------------------------------------------------
    w("## Raw data")
    w("")
    out += fenced(runs)
    log = os.path.join(work, "server.log")
    if os.path.exists(log):
        heads = [line.rstrip("\n") for line in open(log, errors="replace")
                 if re.search(r'automatic vacuum of table "[^"]+\.pg_sync\._queue_\d', line)]
        if heads:
            w("")
            w("Autovacuums of the queue's partitions (server log):")
            w("")
            out += fenced(heads)
    print("\n".join(out))


if __name__ == "__main__":
    main()
