#!/usr/bin/python3
"""Turns bench/memory's raw files into the Markdown report (printed on stdout).

Usage: report.py WORK_DIR
Reads meta.txt (key=value lines) and runs.jsonl (one object per variant: drain.py's output plus
variant, setting_kb, load_s, restart_s, vacuum_s, queue_mb, payload_mb).
"""
import json
import os
import sys

MB = 1024   # kB


def mb(kb):
    return f"{kb / MB:,.1f}"


def main():
    work = sys.argv[1]
    meta = {}
    with open(os.path.join(work, "meta.txt")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    with open(os.path.join(work, "runs.jsonl")) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    settings = dict(kv.split("=", 1) for kv in meta["settings"].split())
    out = []
    w = out.append
    notes = []

    w("# Delivery worker memory benchmark")
    w("")
    w(f"{meta['date'][:10]}, {meta['cores']} cores ({meta['cpu']}), {meta['mem']} RAM, "
      f"PostgreSQL {meta['postgres']}, nginx {meta['nginx']}; pg_sync {meta['git']}, "
      f"pg_sync.so {meta['so_md5']}; CPUs {meta.get('busy_start', '?')} % busy in the second "
      f"before the start.")
    w("")
    if int(meta.get("busy_start", 0)) > 10:
        w(f"Note: the machine was busy when the run started ({meta['busy_start']} % of all cores "
          f"in use); that skews the drain times, not the memory figures.")
        w("")
    if meta.get("so_md5_end", meta["so_md5"]) != meta["so_md5"]:
        w(f"**Warning: pg_sync.so was replaced during the run (now {meta['so_md5_end']}); a "
          f"worker started after that runs the new build.**")
        w("")
    w(f"Settings: {meta['settings']}." + (" **Quick mode (smoke-test sizes).**"
                                       if settings.get("quick") == "1" else ""))
    w("")
    w(f"{int(settings['events']):,} events of one row each with a {int(settings['chars']):,}-character "
      f"md5-hex text column (incompressible), queued with the endpoint paused (batch_size "
      f"{settings['batch_size']}, max_in_flight {settings['max_in_flight']}, timeout_ms "
      f"{settings['timeout_ms']}), then the endpoint resumed against nginx on 127.0.0.1 "
      f"answering 204. Each variant loads the same rows again (from an unlogged seed table) and "
      f"restarts the server, so that its delivery worker is a fresh process.")
    w("")
    w("| pg_sync.max_worker_memory | drain | events/s | RssAnon before resume | peak RssAnon | "
      "peak − before | growth / setting | VmHWM | peak RssShmem | requests (events each) | "
      "most events in flight |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        setting_mb = r["setting_kb"] / MB
        base, peak = r["baseline_kb"]["RssAnon"], r["peak_kb"]["RssAnon"]
        growth = peak - base
        ratio = growth / r["setting_kb"]
        flag = " **> 2x**" if ratio > 2 else ""
        if ratio > 2:
            notes.append(f"{r['variant']}: the worker's private memory grew by {mb(growth)} MB, "
                         f"{ratio:.2f} times the setting (the docs say about twice at most).")
        drain = f"{r['seconds']:.1f} s" if r["drained"] else f"**not drained** after {r['seconds']:.0f} s"
        if not r["drained"]:
            notes.append(f"{r['variant']}: {r['pending_after']:,} events still pending after "
                         f"{r['seconds']:.0f} s (last_error {r['last_error']!r}).")
        rate = r["delivered"] / r["seconds"] if r["seconds"] else 0
        per_req = r["delivered"] / r["requests"] if r["requests"] else 0
        w(f"| {r['variant']} | {drain} | {rate:,.0f} | {mb(base)} MB | {mb(peak)} MB "
          f"(at {r['peak_rss_anon_at_s']:.1f} s) | {mb(growth)} MB | {ratio:.2f}{flag} | "
          f"{mb(r['peak_kb']['VmHWM'])} MB | {mb(r['peak_kb']['RssShmem'])} MB | "
          f"{r['requests']:,} ({per_req:,.0f}) | {r['in_flight_max']:,} |")
        if r["failed_requests"] or r["dead_after"]:
            notes.append(f"{r['variant']}: {r['failed_requests']} failed requests, "
                         f"{r['dead_after']} dead letters.")
        if r["worker_gone"] or r["worker_pid_after"] != r["worker_pid"]:
            notes.append(f"{r['variant']}: the worker changed from pid {r['worker_pid']} to "
                         f"{r['worker_pid_after']} during the drain.")
        if r["delivered"] != r["events"]:
            notes.append(f"{r['variant']}: delivered_total grew by {r['delivered']:,}, not "
                         f"{r['events']:,}.")
    w("")
    w("RssAnon = the worker's private memory (/proc/PID/status), sampled every "
      f"{float(settings['interval']) * 1000:.0f} ms from the resume until the queue was empty "
      "(\"before resume\": its last sample in the second before the resume; \"at\": seconds "
      "after the resume); growth / setting = (peak − before) / max_worker_memory. VmHWM = the "
      "kernel's high-water mark of the worker's whole resident set: private memory plus the "
      "shared buffers it touched (RssShmem, at most shared_buffers = "
      f"{meta['shared_buffers']}) plus mapped files. Drain = resume_endpoint until "
      "pending = 0; events/s = events / drain. Requests: what nginx counted (pg_sync caps a "
      "body at 8 MB, so a request holds at most ~400 of these events whatever batch_size says); "
      "most events in flight: the largest in_flight of pg_sync.endpoint_status seen (polled "
      "once a second).")
    w("")
    gaps = [r["max_gap_s"] for r in runs if r["max_gap_s"] is not None]
    if gaps:
        w(f"Samples per drain: {', '.join(str(r['samples']) for r in runs)}; the longest gap "
          f"between two samples was {max(gaps) * 1000:.0f} ms (the CPU is shared).")
        w("")

    w("## Phases")
    w("")
    w(f"Seed table ({int(settings['events']):,} rows of {int(settings['chars']):,} characters, "
      f"unlogged): {meta['seed_s']} s. Per variant:")
    w("")
    w("| variant | load (INSERT … SELECT from the seed, "
      f"{int(settings['chunk']):,} rows per transaction) | queue after the load | restart | drain | "
      "VACUUM of the queue after it |")
    w("|---|---:|---:|---:|---:|---:|")
    for r in runs:
        w(f"| {r['variant']} | {r['load_s']:.1f} s | {r['queue_mb']:,.0f} MB on disk "
          f"({r['payload_mb']:,.0f} MB of row JSON) | {r['restart_s']:.1f} s | "
          f"{r['seconds']:.1f} s | {r['vacuum_s']:.1f} s |")
    w("")
    w(f"Whole run: {meta.get('total_s', '?')} s.")
    w("")
    if notes:
        w("Findings:")
        for n in notes:
            w(f"- {n}")
    else:
        w("Every variant drained completely (every event delivered, no failed request, the same "
          "worker throughout), and no worker grew by more than twice its max_worker_memory.")
    w("")
    w("## Every run")
    w("")
    w("```")
    for r in runs:
        r = dict(r)
        prog = r.pop("progress", [])
        w(json.dumps(r))
        w("  pending/in_flight each second: " + " ".join(f"{t:g}s:{p}/{f}" for t, p, f in prog))
    w("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
