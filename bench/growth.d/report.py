#!/usr/bin/python3
"""Turns bench/growth's raw files into the Markdown report (printed on stdout).

Usage: report.py WORK_DIR
Reads meta.txt, settings.json, snapshots.jsonl, steps.jsonl, drainN.jsonl, autovacuumN.jsonl,
steady.jsonl and server.log (the autovacuum entries of pg_sync's tables).
"""
import datetime
import json
import os
import re
import sys

KB = 1024
MB = 1024 * 1024


def size(b):
    if b is None:
        return "–"
    if b == 0:
        return "0"
    if b < MB:
        return f"{b / KB:.0f} kB"
    return f"{b / MB:.1f} MB"


def density(d):
    return "–" if d is None or d != d else f"{d:.1f} %"


def num(n):
    return "–" if n is None else f"{n:,}"


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def rel_rows(snap):
    """Report rows of one snapshot: name -> bytes."""
    rows = {}
    rels = snap["relations"]
    for r in rels:
        if r["table"] == "pg_sync._queue" and r["role"] == "heap":
            rows["pg_sync._queue heap (main fork)"] = r["main"]
            rows["pg_sync._queue heap FSM + VM forks"] = r["fsm"] + r["vm"]
    for r in rels:
        if r["table"] == "pg_sync._queue" and r["role"] == "index":
            rows[f"{r['name']} (index)"] = r["main"] + r["fsm"]
    rows["pg_sync._queue TOAST table + its index"] = sum(
        r["main"] + r["fsm"] + r["vm"] for r in rels
        if r["table"] == "pg_sync._queue" and r["role"] in ("toast", "toast index"))
    for t in ("pg_sync._attempts", "pg_sync._endpoint_state", "pg_sync._dead_letters"):
        rows[f"{t} (heap + index + TOAST, all forks)"] = sum(
            r["main"] + r["fsm"] + r["vm"] for r in rels if r["table"] == t)
    rows["**all of the above**"] = sum(r["main"] + r["fsm"] + r["vm"] for r in rels)
    return rows


# Autovacuum log entries: "2026-11-30 12:20:27.305 UTC [10904]  LOG:  automatic vacuum of table
# "growth.pg_sync._queue": index scans: 1" followed by lines starting with a tab.
LOG_HEAD = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC \[\d+\] \S* ?LOG:  automatic '
                      r'(vacuum|analyze) of table "([^"]+)"(.*)$')


def autovacuum_entries(path):
    entries = []
    if not os.path.exists(path):
        return entries
    cur = None
    with open(path, errors="replace") as f:
        for line in f:
            m = LOG_HEAD.match(line.rstrip("\n"))
            if m:
                ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                cur = {"t": ts, "kind": m.group(2), "table": m.group(3), "head": line.rstrip("\n"),
                       "lines": []}
                entries.append(cur)
            elif cur is not None and line.startswith("\t"):
                cur["lines"].append(line.rstrip("\n"))
            else:
                cur = None
    out = []
    for e in entries:
        db, _, table = e["table"].partition(".")
        if not table.startswith("pg_sync."):
            continue
        e["db"], e["table"] = db, table
        text = "\n".join(e["lines"])
        m = re.search(r"pages: (\d+) removed, (\d+) remain", text)
        e["pages_removed"], e["pages_remain"] = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        m = re.search(r"tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable",
                      text)
        e["tuples_removed"], e["tuples_remain"], e["dead_not_removable"] = \
            (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (None, None, None)
        e["indexes"] = re.findall(r'index "([^"]+)": pages: (\d+) in total, (\d+) newly deleted, '
                                  r'(\d+) currently deleted, (\d+) reusable', text)
        m = re.search(r"elapsed: ([\d.]+) s", text)
        e["elapsed"] = float(m.group(1)) if m else None
        e["bypassed"] = "index scan bypassed" in text
        out.append(e)
    return out


def slow_phase(points):
    """The drain's start until the last timeline point before the last growth of seq scans of
    the queue (the plan changed between it and the next point): seconds and events delivered,
    as text; "none" when the drain had none."""
    if not points:
        return "–"
    first, last_scan = points[0], None
    for prev, p in zip(points, points[1:]):
        if (p.get("queue_seq_scans") or 0) > (prev.get("queue_seq_scans") or 0):
            last_scan = prev
    if last_scan is None:
        return "none"
    n = (last_scan["delivered_total"] or 0) - (first["delivered_total"] or 0)
    return (f"{last_scan['t']:.0f} s: {n:,} events ({n / max(last_scan['t'], 0.001):,.0f}/s)")


def phase_of(t, marks):
    """The label of the last mark at or before t."""
    label = "start"
    for mt, ml in marks:
        if mt <= t:
            label = ml
    return label


def main():
    work = sys.argv[1]
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(os.path.join(work, "meta.txt")))
    settings = dict(kv.split("=", 1) for kv in meta["settings"].split())
    config = json.load(open(os.path.join(work, "settings.json")))
    snaps = read_jsonl(os.path.join(work, "snapshots.jsonl"))
    steps = read_jsonl(os.path.join(work, "steps.jsonl"))
    by_label = {s["label"]: s for s in snaps}
    cycles = int(settings["cycles"])
    backlog = int(settings["backlog"])
    out = []
    w = out.append

    w("# Bounded-growth benchmark")
    w("")
    w(f"{meta['date'][:10]}, {meta['cores']} cores ({meta['cpu']}), PostgreSQL {meta['postgres']}; "
      f"pg_sync {meta['git']}, pg_sync.so {meta['so_md5']}; CPUs {meta.get('busy_start', '?')} % "
      f"busy in the second before the start.")
    if int(meta.get("busy_start", 0)) > 10:
        w("")
        w(f"**Warning: the machine was busy when the run started ({meta['busy_start']} % of all "
          f"cores in use over one second); timings (not sizes) are skewed by other work.**")
    if meta.get("so_md5_end", meta["so_md5"]) != meta["so_md5"]:
        w("")
        w(f"**Warning: pg_sync.so was replaced during the run (now {meta['so_md5_end']}).**")
    w("")
    w(f"Settings: {meta['settings']}." + (" **Quick mode (smoke test sizes).**"
                                       if settings.get("quick") == "1" else ""))
    srv = config["server"]
    w(f"Server autovacuum settings (defaults): naptime {srv['autovacuum_naptime']}, "
      f"max_workers {srv['autovacuum_max_workers']}, vacuum_cost_delay "
      f"{srv['autovacuum_vacuum_cost_delay']}, vacuum_cost_limit "
      f"{srv['autovacuum_vacuum_cost_limit']} (→ vacuum_cost_limit {srv['vacuum_cost_limit']}), "
      f"vacuum_scale_factor {srv['autovacuum_vacuum_scale_factor']}, vacuum_threshold "
      f"{srv['autovacuum_vacuum_threshold']}; shared_buffers {srv['shared_buffers']}.")
    w("")
    w("Reloptions of pg_sync's tables, as installed (from sql/pg_sync--0.1.0.sql):")
    w("")
    for t, opts in sorted(config["reloptions"].items()):
        w(f"- `{t}`: {', '.join(f'`{o}`' for o in opts) if opts else 'none (server defaults)'}")
    w("")

    # ---- (a) sizes ------------------------------------------------------------------------------
    cols = [("idle", "idle")]
    for c in range(1, cycles + 1):
        cols.append((f"peak {c}", f"cycle {c}: peak"))
        if c == 1:
            cols.append((f"drained {c}", f"cycle {c}: drained"))
        else:
            cols.append((f"drained {c}", f"drained"))
        cols.append((f"autovac {c}", "after autovacuum"))
    cols.append(("reindexed", "after REINDEX CONCURRENTLY"))
    cols = [(k, t) for k, t in cols if k in by_label]
    w(f"## Sizes: {backlog:,} events queued, drained, vacuumed; {cycles} cycle"
      f"{'s' if cycles != 1 else ''} (database growth)")
    w("")
    w("| relation | " + " | ".join(t for _, t in cols) + " |")
    w("|---|" + "---:|" * len(cols))
    rows = {k: rel_rows(by_label[k]) for k, _ in cols}
    for name in rows[cols[0][0]]:
        w(f"| {name} | " + " | ".join(size(rows[k].get(name)) for k, _ in cols) + " |")
    w("")
    w("Sizes are pg_relation_size per fork (1 kB = 1024 bytes). *peak*: the backlog queued, "
      "endpoint paused; *drained*: the moment nothing is pending; *after autovacuum*: once an "
      "autovacuum of pg_sync._queue that ended after the drain left fewer than 1,000 dead tuples "
      "(or the wait ran out, see below); *after REINDEX CONCURRENTLY*: the empty queue's indexes "
      "rebuilt, after the last cycle.")
    w("")

    w("### Inside the queue at each point")
    w("")
    w("| point | n_live_tup | n_dead_tup | autovacuums so far | heap free (pgstattuple_approx) "
      "| index leaf pages | index deleted pages | index empty pages | avg leaf density |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k, t in cols:
        s = by_label[k]
        qs = s["stats"].get("pg_sync._queue", {})
        heap = s.get("queue_heap", {})
        idx = list(s["indexes"].values())
        ix = idx[0] if idx else {}
        free = f"{heap.get('approx_free_percent', 0):.1f} % of {size(heap.get('table_len'))}" \
            if heap.get("table_len") else "–"
        w(f"| {t} | {num(qs.get('n_live_tup'))} | {num(qs.get('n_dead_tup'))} | "
          f"{num(qs.get('autovacuum_count'))} | {free} | {num(ix.get('leaf_pages'))} | "
          f"{num(ix.get('deleted_pages'))} | {num(ix.get('empty_pages'))} | "
          f"{density(ix.get('avg_leaf_density'))} |")
    w("")
    w("n_live_tup / n_dead_tup are the cumulative statistics' estimates (they lag a second). Index "
      "columns: pgstatindex() of the queue's primary key; deleted pages are empty pages unlinked "
      "from the tree, reusable once no snapshot can still need them (they go to the index's free "
      "space map at a later VACUUM of it).")
    w("")

    # ---- drains and autovacuum waits ------------------------------------------------------------
    drains = {s["cycle"]: s["result"] for s in steps if s.get("step") == "drain"}
    backlogs = {s["cycle"]: s["result"] for s in steps if s.get("step") == "backlog"}
    waits = {s["cycle"]: s["result"] for s in steps if s.get("step") == "autovacuum"}
    if drains:
        w("## Backlog, drain, wait for autovacuum")
        w("")
        w("| cycle | backlog insert | drain | events/s | seq scans of _queue during the drain "
          "(tuples read) | time with seq scans: events delivered in it | autoanalyzes / "
          "autovacuums of _queue during the drain | autovacuum after the drain |")
        w("|---:|---:|---:|---:|---:|---|---:|---|")
        for c in sorted(drains):
            d, b, a = drains[c], backlogs.get(c, {}), waits.get(c, {})
            slow = slow_phase(read_jsonl(os.path.join(work, f"drain{c}.jsonl")))
            if a.get("autovacuumed"):
                av = f"ended {a['autovacuum_ended_after_s']} s after the drain"
            else:
                av = f"**none within {a.get('waited_s', '?')} s**" + (
                    f" (one ended {a['autovacuum_ended_after_s']} s after, leaving ≥ 1,000 dead)"
                    if a.get("autovacuum_ended_after_s") is not None else "")
            w(f"| {c} | {b.get('seconds', '?')} s ({num(b.get('rows_per_s'))} rows/s) | "
              f"{d['seconds']} s | {num(d['events_per_s'])} | {num(d.get('queue_seq_scans'))} "
              f"({num(d.get('queue_seq_tup_read'))}) | {slow} | {d.get('queue_autoanalyzes', '–')} / "
              f"{d.get('queue_autovacuums', '–')} | {av} |")
        w("")
        w("Backlog: INSERT ... SELECT into orders, "
          f"{int(settings['backlog_chunk']):,} rows per transaction, endpoint paused. Drain: from "
          "resume_endpoint until the endpoint's queue is empty (nginx answering 204). Seq scans: "
          "pg_stat_user_tables.seq_scan of pg_sync._queue over the drain (the benchmark itself adds "
          "none there); the worker's head query is expected to be an index scan on "
          "(endpoint_id, id). *Time with seq scans*: from resume to the last one-second timeline "
          "point before seq_scan grew for the last time, and how much delivered_total grew "
          "meanwhile (and its rate).")
        w("")

    # ---- autovacuum log ------------------------------------------------------------------------
    marks = []
    for s in snaps:
        marks.append((s["t"], s["label"]))
    for c, d in drains.items():
        marks.append((d["start_epoch"], f"draining {c}"))
    marks.sort()
    entries = autovacuum_entries(os.path.join(work, "server.log"))
    vac = [e for e in entries if e["kind"] == "vacuum"]
    if vac:
        w("## Every autovacuum of pg_sync's tables (from the server log)")
        w("")
        w("| db | when (last point before it) | table | heap pages removed / remaining | tuples "
          "removed / remaining / dead not yet removable | index: pages total, newly deleted, "
          "currently deleted, reusable | elapsed |")
        w("|---|---|---|---:|---:|---|---:|")
        for e in vac:
            idx = "; ".join(f"{n}: {a}, {b}, {c}, {d}" for n, a, b, c, d in e["indexes"]) or (
                "bypassed" if e["bypassed"] else "–")
            w(f"| {e['db']} | {phase_of(e['t'], marks)} | {e['table']} | "
              f"{num(e['pages_removed'])} / {num(e['pages_remain'])} | "
              f"{num(e['tuples_removed'])} / {num(e['tuples_remain'])} / "
              f"{num(e['dead_not_removable'])} | {idx} | {e['elapsed']} s |")
        w("")
        w("Heap pages *removed* = the heap was truncated at the end of that vacuum (the file "
          "shrank). Index pages are never given back to the file system by VACUUM; *newly "
          "deleted* pages become *reusable* once no transaction can still see them, which "
          "VACUUM records in the index's free space map (in an otherwise idle database, only at "
          "the next VACUUM of that index).")
        w("")

    # ---- findings (numbers only) ---------------------------------------------------------------
    def get(label, name):
        return rel_rows(by_label[label])[name] if label in by_label else None

    heap_name = "pg_sync._queue heap (main fork)"
    idx_names = [n for n in rel_rows(snaps[0]) if n.endswith("(index)")] if snaps else []
    if "peak 1" in by_label:
        w("## Findings")
        w("")
        for c in range(1, cycles + 1):
            if f"autovac {c}" not in by_label:
                continue
            peak, after = get(f"peak {c}", heap_name), get(f"autovac {c}", heap_name)
            ok = "returned to idle" if after <= max(get("idle", heap_name), 64 * KB) else \
                f"{100 * after / peak:.0f} % of its peak left"
            w(f"- Cycle {c}, queue heap: peak {size(peak)}, after autovacuum {size(after)} ({ok}).")
            if after > max(get("idle", heap_name), 64 * KB):
                lo, hi = by_label[f"drained {c}"]["t"] - 30, by_label[f"autovac {c}"]["t"]
                runs = [e for e in vac if e["table"] == "pg_sync._queue" and lo <= e["t"] <= hi]
                if any(e["bypassed"] for e in runs):
                    w(f"  Not truncated: the autovacuum after the drain bypassed index cleanup "
                      f"(few pages had dead line pointers, left by an autovacuum that ran while "
                      f"the last events were still queued); those LP_DEAD line pointers stay on "
                      f"the last pages, so the heap cannot be truncated, and with n_dead_tup 0 no "
                      f"further autovacuum comes.")
                elif runs:
                    w(f"  Not truncated by the {len(runs)} autovacuum(s) after the drain (see "
                      f"their log entries below).")
            for n in idx_names:
                p, a = get(f"peak {c}", n), get(f"autovac {c}", n)
                w(f"- Cycle {c}, {n}: peak {size(p)}, after autovacuum {size(a)} "
                  f"({'not returned' if a >= p else f'{100 * a / p:.0f} % of peak'}; idle "
                  f"{size(get('idle', n))}).")
        for c in range(2, cycles + 1):
            if f"peak {c}" not in by_label:
                continue
            for n in [heap_name] + idx_names:
                p1, pc = get("peak 1", n), get(f"peak {c}", n)
                verdict = ("not larger: space reused" if pc <= p1 else
                           "not larger within 2 %: space reused" if pc <= 1.02 * p1 else
                           f"**{pc / p1:.2f}x cycle 1's peak**")
                w(f"- Peak of cycle {c} vs cycle 1, {n}: {size(pc)} vs {size(p1)} ({verdict}).")
        if drains:
            d1 = drains.get(1)
            for c in sorted(drains):
                if c == 1:
                    continue
                d = drains[c]
                w(f"- Drain of cycle {c}: {num(d['events_per_s'])} events/s vs "
                  f"{num(d1['events_per_s'])} in cycle 1 ({d['events_per_s'] / d1['events_per_s']:.2f}x); "
                  f"{num(d.get('queue_seq_scans'))} seq scans of _queue during it vs "
                  f"{num(d1.get('queue_seq_scans'))}.")
        if "reindexed" in by_label:
            ms = "; ".join(f"{s['index']} {s['ms']} ms" for s in steps if s.get("step") == "reindex")
            for n in idx_names:
                w(f"- REINDEX INDEX CONCURRENTLY of the empty queue: {n} "
                  f"{size(get(f'autovac {cycles}', n))} → {size(get('reindexed', n))} ({ms}).")
        w("")

    # ---- (b) steady state ----------------------------------------------------------------------
    steady = read_jsonl(os.path.join(work, "steady.jsonl"))
    sres = next((s["result"] for s in steps if s.get("step") == "steady"), None)
    if steady and sres:
        w(f"## Steady state: {float(settings['rate']):,.0f} rows/s for {settings['steady_seconds']} s "
          f"with delivery running (fresh database steady)")
        w("")
        w(f"{num(sres['rows'])} rows in {sres['seconds']} s ({num(sres['rows_per_s'])} rows/s), "
          f"{sres['rows_per_commit']} rows per autocommit INSERT ({num(sres['commits'])} commits; "
          f"{sres['late_commits']} started late, at most {sres['late_ms_max']} ms).")
        if sres["rows_per_s"] < 0.95 * float(settings["rate"]):
            w("")
            w(f"**Warning: the writer did not keep up with {float(settings['rate']):,.0f} rows/s "
              f"(the machine was too busy); it wrote the rows it owed as fast as it could.**")
        w("")
        w("| t (s) | rows inserted | backlog | queue heap | queue indexes | _attempts | "
          "_endpoint_state | n_dead_tup | autovacuums of _queue | seq scans of _queue |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for p in steady:
            backlog_now = p["rows"] - (p.get("delivered_total") or 0)
            w(f"| {max(0.0, p['t']):.0f} | {num(p['rows'])} | {num(max(0, backlog_now))} | "
              f"{size(p['queue_heap'])} | {size(p['queue_indexes'])} | {size(p['attempts_total'])} | "
              f"{size(p['endpoint_state_total'])} | {num(p['queue_dead'])} | "
              f"{num(p['queue_autovacuums'])} | {num(p.get('queue_seq_scans'))} |")
        w("")
        half = len(steady) // 2
        first, second = steady[:half], steady[half:]
        if first and second:
            for key, name in (("queue_heap", "queue heap"), ("queue_indexes", "queue indexes"),
                              ("attempts_total", "_attempts"),
                              ("endpoint_state_total", "_endpoint_state")):
                a, b = max(p[key] for p in first), max(p[key] for p in second)
                w(f"- {name}: largest {size(a)} in the first half, {size(b)} in the second half"
                  f" ({'no growth' if b <= a else f'+{size(b - a)}'}); end {size(steady[-1][key])}.")
        avs = (steady[-1].get("queue_autovacuums") or 0) - (steady[0].get("queue_autovacuums") or 0)
        w(f"- Autovacuums of _queue during the run: {avs}; seq scans of _queue: "
          f"{(steady[-1].get('queue_seq_scans') or 0) - (steady[0].get('queue_seq_scans') or 0)}.")
        end = by_label.get("steady end")
        if end:
            w(f"- After the writer stopped and the queue emptied: "
              f"{', '.join(f'{n} {size(v)}' for n, v in rel_rows(end).items() if v)}.")
        w("")
        w("backlog = rows inserted − delivered_total (pg_sync._endpoint_state, written every "
          "200 ms); sizes: pg_relation_size (heap main fork; all indexes of _queue; "
          "pg_total_relation_size for _attempts and _endpoint_state).")
        w("")

    # ---- raw -----------------------------------------------------------------------------------
    w("## Raw data")
    w("")
    w("Steps:")
    w("")
    w("```")
    for s in steps:
        w(json.dumps(s))
    w("```")
    w("")
    if vac:
        w("Autovacuum log entries of pg_sync's tables (buffer and WAL lines left out):")
        w("")
        w("```")
        for e in vac:
            w(e["head"])
            for line in e["lines"]:
                if not re.match(r"\t(avg read rate|buffer usage|WAL usage)", line):
                    w(line)
        w("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
