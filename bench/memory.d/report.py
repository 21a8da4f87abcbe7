#!/usr/bin/python3
"""Turns bench/memory's raw files into the Markdown report (printed on stdout).

Usage: report.py WORK_DIR
Reads meta.txt (key=value lines) and runs.jsonl (one object per variant: drain.py's output plus
variant, setting_kb, restart_s).
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
    if meta.get("so_md5_start", meta["so_md5"]) != meta["so_md5"]:
        w(f"Note: pg_sync.so was replaced during the load (from {meta['so_md5_start']}); every "
          f"worker measured ran {meta['so_md5']}.")
        w("")
    builds = sorted({r.get("so_md5", meta["so_md5"]) for r in runs})
    if len(builds) > 1:
        w("**Warning: pg_sync.so was replaced between variants; each variant's worker ran the "
          "build installed when its server started: "
          + ", ".join(f"{r['variant']} {r.get('so_md5', '?')}" for r in runs) + ".**")
        w("")
    elif meta.get("so_md5_end", meta["so_md5"]) != meta["so_md5"]:
        w(f"Note: pg_sync.so was replaced after the last server start (now "
          f"{meta['so_md5_end']}); every worker measured ran {builds[0]}.")
        w("")
    w(f"Settings: {meta['settings']}." + (" **Quick mode (smoke-test sizes).**"
                                       if settings.get("quick") == "1" else ""))
    w("")
    w(f"{int(settings['events']):,} rows, each with a {int(settings['chars']):,}-character md5-hex "
      f"text column (incompressible), inserted into a table tracked by one endpoint per variant "
      f"(batch_size {settings['batch_size']}, max_in_flight {settings['max_in_flight']}, "
      f"timeout_ms {settings['timeout_ms']}), all paused: every variant drains the same "
      f"{int(settings['events']):,} events ({meta['payload_mb']} MB of row JSON). For each "
      f"variant in turn: max_worker_memory set, the server restarted (a fresh delivery worker), "
      f"then that variant's endpoint resumed alone (paused endpoints take no share of the "
      f"setting) against nginx on 127.0.0.1 answering 204.")
    w("")
    w("| pg_sync.max_worker_memory | drain | events/s | RssAnon before resume | peak RssAnon | "
      "peak − before | growth / setting | RssAnon at the end, "
      f"{float(settings['after']):g} s later | VmHWM | peak RssShmem |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        base, peak = r["baseline_kb"]["RssAnon"], r["peak_kb"]["RssAnon"]
        growth = peak - base
        ratio = growth / r["setting_kb"]
        flag = " **> 2x**" if ratio > 2 else ""
        if ratio > 2:
            notes.append(f"{r['variant']}: the worker's private memory grew by {mb(growth)} MB, "
                         f"{ratio:.2f} times the setting (the docs say about twice).")
        drain = f"{r['seconds']:.1f} s" if r["drained"] else f"**not drained** after {r['seconds']:.0f} s"
        if not r["drained"]:
            notes.append(f"{r['variant']}: {r['pending_after']:,} events still pending after "
                         f"{r['seconds']:.0f} s (last_error {r['last_error']!r}).")
        rate = r["events"] / r["seconds"] if r["seconds"] else 0
        after = f"{mb(r['after_kb']['RssAnon'])} MB" if r.get("after_kb") else "–"
        w(f"| {r['variant']} | {drain} | {rate:,.0f} | {mb(base)} MB | {mb(peak)} MB "
          f"(at {r['peak_rss_anon_at_s']:.1f} s) | {mb(growth)} MB | {ratio:.2f}{flag} | "
          f"{mb(r['end_kb']['RssAnon'])} MB, {after} | {mb(r['peak_kb']['VmHWM'])} MB | "
          f"{mb(r['peak_kb']['RssShmem'])} MB |")
        after_kb = r.get("after_kb")
        if after_kb and after_kb["RssAnon"] - base > 0.5 * growth and growth > 16 * MB:
            notes.append(f"{r['variant']}: the memory is not given back: RssAnon "
                         f"{mb(after_kb['RssAnon'])} MB {float(settings['after']):g} s after the "
                         f"drain, with nothing left to send ({mb(base)} MB before it).")
        if r["dead_after"]:
            notes.append(f"{r['variant']}: {r['dead_after']} dead letters.")
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
      "after the resume; \"at the end\": its sample when the queue was found empty, then "
      f"{float(settings['after']):g} s later with the endpoint paused again); growth / setting = "
      "(peak − before) / max_worker_memory. VmHWM = the kernel's high-water mark of the "
      "worker's whole resident set: private memory plus the shared buffers it touched "
      f"(RssShmem, at most shared_buffers = {meta['shared_buffers']} plus PostgreSQL's other "
      "shared memory) plus mapped files (the binaries, about 65 MB). Drain = resume_endpoint "
      "until pending = 0; events/s = events / drain.")
    w("")
    gaps = [r["max_gap_s"] for r in runs if r["max_gap_s"] is not None]
    if gaps:
        w(f"Samples per drain: {', '.join(str(r['samples']) for r in runs)}; the longest gap "
          f"between two samples was {max(gaps) * 1000:.0f} ms (the CPU is shared).")
        w("")

    chunks = float(meta["payload_mb"]) * 1048576 / int(settings["events"]) / 1996
    w("## How the drains went")
    w("")
    w("| pg_sync.max_worker_memory | requests (events each) | events per request: min / median / "
      "max, requests with < 10 | request duration: median / max | failed requests | "
      "connections opened | most events in flight | worker CPU | queue TOAST blocks read (per "
      "event) | queue heap blocks read |")
    w("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for r in runs:
        per_req = r["events"] / r["requests"] if r["requests"] else 0
        per_ev = r["queue_toast_blocks"] / r["events"]
        if per_ev > 4 * chunks:
            notes.append(f"{r['variant']}: {per_ev:.0f} TOAST block accesses per event where "
                         f"reading and deleting each payload once takes about {2 * chunks:.0f}: "
                         f"payloads were read many times over; the worker used "
                         f"{r['worker_cpu_s']:.0f} s of CPU in a {r['seconds']:.0f} s drain.")
        a = r["attempts"]
        failed = a["recorded"] - a["ok"]
        fail_text = str(failed)
        if a["failures"]:
            fail_text += ": " + ", ".join(f"{f['count']} × {f['status']}"
                                          + (f" ({f['error']})" if f["error"] else "")
                                          for f in a["failures"])
            notes.append(f"{r['variant']}: {failed} of {a['recorded']:,} requests failed "
                         f"({fail_text.split(': ', 1)[1]}) although nginx answers 204 at once; "
                         f"the longest took {a['duration_max_s']:g} s.")
        if a["recorded"] != r["requests"]:
            fail_text += f" (recent_attempts holds {a['recorded']:,} of {r['requests']:,})"
        w(f"| {r['variant']} | {r['requests']:,} ({per_req:,.0f}) | {a['events_min']} / "
          f"{a['events_median']:g} / {a['events_max']}, {a['requests_under_10_events']:,} | "
          f"{a['duration_p50_s']:g} s / {a['duration_max_s']:g} s | {fail_text} | "
          f"{r['connections']} | {r['in_flight_max']:,} | {r['worker_cpu_s']:.1f} s | "
          f"{r['queue_toast_blocks']:,} ({per_ev:.1f}) | {r['queue_heap_blocks']:,} |")
    w("")
    w("Requests, connections: what nginx counted (pg_sync caps a body at 8 MB, so a request holds "
      "at most about 400 of these events whatever batch_size says); events per request, "
      "durations (start to answer or failure) and failures: pg_sync.recent_attempts. Most events in flight: the "
      "largest in_flight of pg_sync.endpoint_status seen (polled every 0.5 s; the worker writes "
      "it at the end of its passes). Worker CPU: utime + stime over the drain. Blocks: hits + "
      "reads of pg_sync._queue and of its TOAST table over the drain (pg_statio_all_tables; "
      "autovacuum is off, so they are the worker's: its head reads, and the DELETE of what was "
      "delivered). They count every TOAST chunk fetched: an event's row JSON is about "
      f"{chunks:.0f} chunks (of at most 1,996 bytes), so reading each payload once and deleting "
      f"it once comes to about {2 * chunks:.0f} block accesses per event, plus the index; many "
      "more mean payloads read again and again.")
    w("")
    w("Pending and in-flight events every 0.5 s of each drain are under Every run below.")
    w("")

    w("## Phases")
    w("")
    w(f"Load: {int(settings['events']):,} rows in {meta['load_s']} s ({int(settings['chunk']):,} "
      f"rows per transaction, {settings['loaders']} sessions at once, md5 text generated in the "
      f"INSERT; each row captured once per endpoint: {meta['queue_mb']} MB of queue on disk).")
    w("")
    w("| variant | ALTER SYSTEM, CHECKPOINT, restart, worker settled | drain |")
    w("|---|---:|---:|")
    for r in runs:
        w(f"| {r['variant']} | {r['restart_s']:.1f} s | {r['seconds']:.1f} s |")
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
        w("  pending/in_flight every 0.5 s: " + " ".join(f"{t:g}s:{p}/{f}" for t, p, f in prog))
    w("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
