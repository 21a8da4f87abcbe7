#!/usr/bin/python3
"""Turns bench/growth's raw files into the Markdown report (printed on stdout).

Usage: report.py WORK_DIR
Reads meta.txt, settings.json, snapshots.jsonl, steps.jsonl, steady.jsonl and server.log (the
autovacuum entries of pg_sync's tables); the drainN.jsonl and idleN.jsonl timelines stay in the
work directory (KEEP=1).
"""
import datetime
import json
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from benchlib import fenced, num, read_jsonl, read_meta, run_notes  # noqa: E402

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


def part_no(table):
    """The partition number of pg_sync._queue_N, else None."""
    m = re.fullmatch(r"pg_sync\._queue_(\d+)", table)
    return int(m.group(1)) if m else None


def rel_rows(snap):
    """Report rows of one snapshot (name -> bytes): every relation of schema pg_sync; each queue
    partition's heap, free space and visibility maps, indexes, TOAST table and TOAST index one by
    one; the other tables' heap (all forks), each index, and TOAST table + index together."""
    rows = {}
    rels = snap["relations"]
    for table in sorted({r["table"] for r in rels}, key=lambda t: (part_no(t) is None, t)):
        mine = [r for r in rels if r["table"] == table]
        short = table.replace("pg_sync.", "")
        if part_no(table) is not None:
            for r in mine:
                if r["role"] == "heap":
                    rows[f"{short} heap"] = r["main"]
                    rows[f"{short} FSM + VM"] = r["fsm"] + r["vm"]
            for r in mine:
                if r["role"] == "index":
                    rows[f"{r['name'].replace('pg_sync.', '')} (index)"] = r["main"] + r["fsm"]
            for r in mine:
                if r["role"] in ("toast", "toast index"):
                    rows[f"{short} {r['role'].replace('toast', 'TOAST')}"] = r["main"] + r["fsm"] + r["vm"]
            continue
        for r in mine:
            total = r["main"] + r["fsm"] + r["vm"]
            if r["role"] in ("heap", "sequence"):
                rows[f"{short} {'sequence' if r['role'] == 'sequence' else 'heap (all forks)'}"] = total
            elif r["role"] == "index":
                rows[f"{r['name'].replace('pg_sync.', '')} (index)"] = total
        toast = [r for r in mine if r["role"] in ("toast", "toast index")]
        if toast:
            rows[f"{short} TOAST + its index"] = sum(r["main"] + r["fsm"] + r["vm"] for r in toast)
    rows["**queue partitions, all relations**"] = sum(
        r["main"] + r["fsm"] + r["vm"] for r in rels if part_no(r["table"]) is not None)
    rows["**everything of pg_sync**"] = sum(r["main"] + r["fsm"] + r["vm"] for r in rels)
    return rows


def queue_parts(snap):
    return sorted({r["table"] for r in snap["relations"] if part_no(r["table"]) is not None})


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


def phase_of(t, marks):
    """The label of the last mark at or before t."""
    label = "start"
    for mt, ml in marks:
        if mt <= t:
            label = ml
    return label


def main():
    work = sys.argv[1]
    meta, settings = read_meta(work)
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
    out += run_notes(meta, settings, "timings (not sizes)")
    srv = config["server"]
    w(f"pg_sync settings (defaults): queue_rotation_interval "
      f"{srv.get('pg_sync.queue_rotation_interval', '?')}, sweep_interval "
      f"{srv.get('pg_sync.sweep_interval', '?')}, recent_attempts_size "
      f"{srv.get('pg_sync.recent_attempts_size', '?')}. Server autovacuum settings (defaults): "
      f"naptime {srv['autovacuum_naptime']}, max_workers {srv['autovacuum_max_workers']}, "
      f"vacuum_cost_delay {srv['autovacuum_vacuum_cost_delay']}, vacuum_cost_limit "
      f"{srv['autovacuum_vacuum_cost_limit']} (→ vacuum_cost_limit {srv['vacuum_cost_limit']}), "
      f"vacuum_scale_factor {srv['autovacuum_vacuum_scale_factor']}, vacuum_threshold "
      f"{srv['autovacuum_vacuum_threshold']}; shared_buffers {srv['shared_buffers']}.")
    w("")
    w("Reloptions of pg_sync's tables, as installed:")
    w("")
    for t, opts in sorted(config["reloptions"].items()):
        if opts:
            w(f"- `{t}`: {', '.join(f'`{o}`' for o in opts)}")
    w("- every other table: none (server defaults)")
    w("")

    # ---- (a) sizes ------------------------------------------------------------------------------
    cols = [("idle", "idle")]
    for c in range(1, cycles + 1):
        cols.append((f"peak {c}", f"cycle {c}: {backlog:,} queued"))
        cols.append((f"drained {c}", "drained"))
        cols.append((f"idle again {c}", "idle again"))
        cols.append((f"one more event {c}", "after one more event"))
    cols = [(k, t) for k, t in cols if k in by_label]
    steps_of = {}
    for s in steps:
        steps_of.setdefault(s.get("step"), {})[s.get("cycle")] = s["result"]
    drains, backlogs, idles, nudges = (steps_of.get(k, {}) for k in
                                       ("drain", "backlog", "idle", "one more event"))
    w(f"## Sizes: {backlog:,} events queued, drained, back to idle; {cycles} cycle"
      f"{'s' if cycles != 1 else ''} (database growth)")
    w("")
    w("| relation | " + " | ".join(t for _, t in cols) + " |")
    w("|---|" + "---:|" * len(cols))
    rows = {k: rel_rows(by_label[k]) for k, _ in cols}
    for name in rows[cols[0][0]]:
        w(f"| {name} | " + " | ".join(size(rows[k].get(name)) for k, _ in cols) + " |")
    w("")
    w("Every relation of schema pg_sync with storage (pg_relation_size per fork, summed where the "
      "row says so; 1 kB = 1024 bytes); pg_sync._queue itself is partitioned and has no storage. "
      "*queued*: the backlog inserted, endpoint paused; *drained*: the moment nothing is pending; "
      "*idle again*: the first poll (every 0.2 s) at which every queue partition was at its "
      "empty size (heap 0, TOAST 0, each index one page), or the end of the wait "
      f"({settings['idle_wait']} s) — see the next table for when; *after one more event* "
      "(only when the queue was not idle by then): one row inserted into orders, then the same "
      "wait.")
    w("")

    w("### Inside the queue at each point")
    w("")
    parts = queue_parts(snaps[0]) if snaps else []
    w("| point | current partition | " + " | ".join(
        f"{p.replace('pg_sync.', '')} live / dead tuples" for p in parts) +
      " | index leaf / deleted pages (" + ", ".join(p[-1] for p in parts) + ") | "
      "autovacuums of the partitions so far |")
    w("|---|---:|" + "---:|" * len(parts) + "---:|---:|")
    for k, t in cols:
        s = by_label[k]
        st = s["stats"]
        idx = [v for n, v in sorted(s["indexes"].items())]
        w(f"| {t} | {s.get('current_part')} | " + " | ".join(
            f"{num(st.get(p, {}).get('n_live_tup'))} / {num(st.get(p, {}).get('n_dead_tup'))}"
            for p in parts) + " | " +
          ", ".join(f"{num(i.get('leaf_pages'))} / {num(i.get('deleted_pages'))}" for i in idx) +
          f" | {num(sum(st.get(p, {}).get('autovacuum_count') or 0 for p in parts))} |")
    w("")
    w("n_live_tup / n_dead_tup are the cumulative statistics' estimates (they lag a second). Index "
      "pages: pgstatindex() of each partition's primary key (a truncated index has none: only "
      "its metapage).")
    w("")

    # ---- drains and the way back to idle --------------------------------------------------------
    if drains:
        w("## Backlog, drain, back to idle")
        w("")
        w("| cycle | backlog insert | drain | events/s | seq scans of the partitions during the "
          "drain (tuples read) | autoanalyzes / autovacuums of the partitions during the drain | "
          "every partition empty again, after the drain | each partition empty after | current "
          "partition during that wait | then: all empty after one more event | autovacuums of "
          "the partitions, whole cycle |")
        w("|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|")
        for c in sorted(drains):
            d, b, i = drains[c], backlogs.get(c, {}), idles.get(c, {})
            back = f"{i['after_drain_s']} s" if i.get("idle") else \
                f"**not within {i.get('waited_s', '?')} s**"
            each = ", ".join(f"{p.replace('pg_sync.', '')} " +
                             ("empty throughout" if v is None else f"{v} s") for p, v in
                             sorted(i.get("part_empty_after_s", {}).items()))
            before = by_label.get("idle") if c == 1 else \
                by_label.get(f"one more event {c - 1}") or by_label.get(f"idle again {c - 1}")
            after = by_label.get(f"idle again {c}")
            n = nudges.get(c)
            nudge = "–" if not n else f"{n['after_drain_s']} s" if n.get("idle") else \
                f"**not within {n.get('waited_s', '?')} s**"
            av = "–"
            if before and after:
                av = num(sum((after["stats"].get(p, {}).get("autovacuum_count") or 0) -
                             (before["stats"].get(p, {}).get("autovacuum_count") or 0)
                             for p in parts))
            w(f"| {c} | {b.get('seconds', '?')} s ({num(b.get('rows_per_s'))} rows/s) | "
              f"{d['seconds']} s | {num(d['events_per_s'])} | {num(d.get('queue_seq_scans'))} "
              f"({num(d.get('queue_seq_tup_read'))}) | {d.get('queue_autoanalyzes', '–')} / "
              f"{d.get('queue_autovacuums', '–')} | {back} | {each or '–'} | "
              f"{' → '.join(str(x) for x in i.get('current_parts_seen', [])) or '–'} | {nudge} | "
              f"{av} |")
        w("")
        w("Backlog: INSERT ... SELECT into orders, "
          f"{int(settings['backlog_chunk']):,} rows per transaction, endpoint paused. Drain: from "
          "resume_endpoint until the endpoint's queue is empty (nginx answering 204). Seq scans: "
          "pg_stat_user_tables.seq_scan of the partitions over the drain (the benchmark itself "
          "adds none there). *Empty again*: seconds from the end of the drain to the first poll "
          "(every 0.2 s from the resume on) at which the partition (or all three) had heap 0 and "
          "one-page indexes and after which it stayed so; negative: emptied while the drain still "
          "went on; *empty throughout*: it held nothing in that cycle. *One more event*: when the "
          "queue was not idle by the end of the wait, one row inserted into orders, and the time "
          "from that insert until every partition was empty. *Whole cycle*: from the idle point "
          "before the backlog to idle again.")
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
    w("## Every autovacuum of pg_sync's tables (from the server log)")
    w("")
    if vac:
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
    else:
        w("None (log_autovacuum_min_duration = 0 logs every one).")
    w("")

    # ---- findings (numbers only) ---------------------------------------------------------------
    def get(label, name):
        return rel_rows(by_label[label])[name] if label in by_label else None

    total = "**queue partitions, all relations**"
    if "peak 1" in by_label:
        w("## Findings")
        w("")
        idle = rel_rows(by_label["idle"])
        for c in range(1, cycles + 1):
            k = f"idle again {c}"
            if k not in by_label:
                continue
            i = idles.get(c, {})
            now = rel_rows(by_label[k])
            w(f"- Cycle {c}: the queue's partitions, all relations, {size(get(f'peak {c}', total))} "
              f"with the backlog queued, {size(get(f'drained {c}', total))} when it had drained, "
              f"{size(now[total])} " + (f"{i['after_drain_s']} s after the drain (idle: "
                                        f"{size(idle[total])})." if i.get("idle") else
                                        f"**still, {i.get('waited_s')} s after the drain**."))
            grown = [f"{n} {size(idle[n])} → {size(v)}" for n, v in now.items()
                     if n in idle and v != idle[n] and not n.startswith("**")]
            if grown:
                w(f"  Relations not at their idle size then: {'; '.join(grown)}.")
            cur_part = by_label[k].get("current_part")
            for name, total_bytes in sorted(i.get("left", {}).items()):
                w(f"  Not empty: {name} ({size(total_bytes)} in all)"
                  + (", the current partition" if part_no(name) == cur_part else "") + ".")
            n = nudges.get(c)
            if n:
                w("  After one more event (one row inserted into orders): every partition empty "
                  + (f"{n['after_drain_s']} s later" if n.get("idle") else
                     f"**still not within {n.get('waited_s')} s**") + ".")
        for c in range(2, cycles + 1):
            if f"peak {c}" not in by_label:
                continue
            p1, pc = get("peak 1", total), get(f"peak {c}", total)
            verdict = ("not larger" if pc <= p1 else "not larger within 2 %" if pc <= 1.02 * p1
                       else f"**{pc / p1:.2f}x cycle 1's peak**")
            w(f"- Peak of cycle {c} vs cycle 1, the queue's partitions: {size(pc)} vs {size(p1)} "
              f"({verdict}).")
        d1 = drains.get(1)
        for c in sorted(drains):
            if c == 1 or not d1:
                continue
            d = drains[c]
            w(f"- Drain of cycle {c}: {num(d['events_per_s'])} events/s vs "
              f"{num(d1['events_per_s'])} in cycle 1 ({d['events_per_s'] / d1['events_per_s']:.2f}x); "
              f"{num(d.get('queue_seq_scans'))} seq scans of the partitions during it vs "
              f"{num(d1.get('queue_seq_scans'))}.")
        qvac = [e for e in vac if e["db"] == "growth" and part_no(e["table"]) is not None]
        w(f"- Autovacuum of the queue's partitions in database growth: {len(qvac)} run(s)" +
          (": " + "; ".join(f"{e['table']} ({phase_of(e['t'], marks)}, {num(e['tuples_removed'])} "
                            f"tuples removed)" for e in qvac) if qvac else "") + ".")
        w("")

    # ---- (b) steady state ----------------------------------------------------------------------
    steady = read_jsonl(os.path.join(work, "steady.jsonl"))
    sres = steps_of.get("steady", {}).get(None)
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
        sparts = sorted(steady[0]["parts"])
        w("| t (s) | rows inserted | backlog | current partition | " + " | ".join(
            f"{p.replace('pg_sync.', '')} heap / index" for p in sparts) +
          " | _attempts | _endpoint_state | dead tuples (all partitions) | autovacuums of the "
          "partitions |")
        w("|---:|---:|---:|---:|" + "---:|" * len(sparts) + "---:|---:|---:|---:|")
        for p in steady:
            backlog_now = p["rows"] - (p.get("delivered_total") or 0)
            w(f"| {max(0.0, p['t']):.0f} | {num(p['rows'])} | {num(max(0, backlog_now))} | "
              f"{p.get('current_part')} | " + " | ".join(
                  f"{size(p['parts'][n]['heap'])} / {size(p['parts'][n]['indexes'])}"
                  for n in sparts) +
              f" | {size(p['attempts_total'])} | {size(p['endpoint_state_total'])} | "
              f"{num(p['queue_dead'])} | {num(p['queue_autovacuums'])} |")
        w("")
        half = len(steady) // 2
        first, second = steady[:half], steady[half:]
        if first and second:
            for key, name in (("queue_total", "queue partitions (heap, indexes, TOAST)"),
                              ("attempts_total", "_attempts"),
                              ("endpoint_state_total", "_endpoint_state")):
                a, b = max(p[key] for p in first), max(p[key] for p in second)
                w(f"- {name}: largest {size(a)} in the first half, {size(b)} in the second half"
                  f" ({'no growth' if b <= a else f'+{size(b - a)}'}); end {size(steady[-1][key])}.")
            biggest = max((p["parts"][n]["heap"], n) for p in steady for n in sparts)
            w(f"- Largest partition heap seen: {size(biggest[0])} ({biggest[1]}).")
        avs = (steady[-1].get("queue_autovacuums") or 0) - (steady[0].get("queue_autovacuums") or 0)
        w(f"- Autovacuums of the partitions during the run: {avs}; seq scans of them: "
          f"{(steady[-1].get('queue_seq_scans') or 0) - (steady[0].get('queue_seq_scans') or 0)}.")
        si = steps_of.get("steady idle", {}).get(None)
        if si:
            w("- After the writer stopped and the queue emptied, every partition was back to its "
              "empty size " + (f"{si['after_drain_s']} s later" if si.get("idle") else
                                f"**not within {si.get('waited_s')} s**") + ".")
        end = by_label.get("steady idle")
        if end:
            sizes = rel_rows(end)
            w("- Sizes then: " + ", ".join(
                f"{n} {size(v)}" for n, v in sizes.items()
                if n.startswith("**") or n.startswith("_attempts") and v) + ".")
        w("")
        w("backlog = rows inserted − delivered_total (pg_sync._endpoint_state, written every "
          "200 ms); sizes: pg_relation_size (each partition's heap main fork; its indexes, all "
          "forks; pg_total_relation_size for _attempts and _endpoint_state).")
        w("")

    # ---- raw -----------------------------------------------------------------------------------
    w("## Raw data")
    w("")
    w("Steps:")
    w("")
    out += fenced(steps)
    w("")
    if vac:
        w("Autovacuum log entries of pg_sync's tables (buffer and WAL lines left out):")
        w("")
        out += fenced([x for e in vac for x in [e["head"]] + e["lines"]
                       if not re.match(r"\t(avg read rate|buffer usage|WAL usage)", x)])
    print("\n".join(out))


if __name__ == "__main__":
    main()
