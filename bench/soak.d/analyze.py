#!/usr/bin/python3
"""Report of bench/soak: reads its work directory, prints Markdown, exits 0 when every target is
met and 3 otherwise.

Usage: analyze.py WORK_DIR

Inputs (all written by bench/soak and its helpers): meta.txt, marks.txt, samples.jsonl
(sample.py), restarts.jsonl (chaos.py), flaky.N.jsonl (one log per incarnation of the flaky
receiver, test/lib/receiver.py format), healthy.jsonl, rows.tsv (table, id, v of every row),
tombstones.tsv (table, id, last v of every deleted row), endpoint_status.json,
dead_letters.json, queue_stats.json, server_log_lines.txt, pgbench.log.
"""
import glob
import json
import os
import re
import statistics
import sys
from collections import defaultdict

work = sys.argv[1]
MB = 1024 * 1024


def path(name):
    return os.path.join(work, name)


def read_kv(name):
    out = {}
    if os.path.exists(path(name)):
        for line in open(path(name)):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out


meta = read_kv("meta.txt")
settings = dict(kv.split("=", 1) for kv in meta["settings"].split(" ") if "=" in kv)
# "restart_signals=TERM KILL" contains a space: take it from the raw line
m = re.search(r"restart_signals=(.*?) restart_window=", meta["settings"])
settings["restart_signals"] = m.group(1) if m else "?"
m = re.search(r"endpoint_opts=(.*?) quick=", meta["settings"])
settings["endpoint_opts"] = m.group(1) if m else ""
duration = float(settings["duration"])
window = float(settings["restart_window"])
restart_every = float(settings["restart_every"])

marks = {}
for line in open(path("marks.txt")):
    t, name = line.rstrip("\n").split(" ", 1)
    marks[name] = float(t)
t_start = marks["start"]
t_ws, t_we = marks["writes start"], marks["writes end"]
drain_key = next(k for k in marks if k.startswith("drained"))
t_drained, drain_ok = marks[drain_key], drain_key.endswith("1")
t_end = marks["end"]
t_mid = t_ws + (t_we - t_ws) / 2

samples = [json.loads(l) for l in open(path("samples.jsonl")) if l.strip()]
good = [s for s in samples if "error" not in s and s.get("ep")]
sample_errors = len(samples) - len(good)
restarts = [json.loads(l) for l in open(path("restarts.jsonl"))] if os.path.exists(path("restarts.jsonl")) else []
status = {s["endpoint"]: s for s in json.load(open(path("endpoint_status.json"))) or []}
dead_letters = json.loads(open(path("dead_letters.json")).read().strip() or "null") or []
queue_stats = json.loads(open(path("queue_stats.json")).read().strip() or "null") or {}

# --- expected versions, from the tables --------------------------------------------------------
rows, tombs = {}, {}
for name, into in (("rows.tsv", rows), ("tombstones.tsv", tombs)):
    for line in open(path(name)):
        tbl, k, v = line.rstrip("\n").split("\t")
        into[(tbl, int(k))] = int(v)
captured = sum(rows.values()) + sum(tombs.values()) + len(tombs)  # per endpoint: versions + deletes
per_table_captured = defaultdict(int)
for (tbl, _), v in rows.items():
    per_table_captured[tbl] += v
for (tbl, _), v in tombs.items():
    per_table_captured[tbl] += v + 1


def in_restart_window(t):
    for r in restarts:
        if r["t_signal"] - window <= t <= r["t_ready"] + window:
            return r["n"]
    return None


def check(name, files):
    """Compares one receiver's 2xx-answered events with the tables."""
    first = {}              # event id -> (table, key, op, v, t of first 2xx)
    count = defaultdict(int)
    by_status = defaultdict(int)
    requests = verify_failures = events_2xx = bad_bodies = 0
    last_id = {}            # (table, key) -> highest id first delivered so far
    order_violations = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                r = json.loads(line)
                requests += 1
                by_status[str(r["status"])] += 1
                if r["verified"] is False:
                    verify_failures += 1
                if not r["body_ok"]:
                    bad_bodies += 1
                if r["status"] is None or not 200 <= r["status"] < 300 or not r["events"]:
                    continue
                for e in r["events"]:
                    events_2xx += 1
                    i = e["id"]
                    count[i] += 1
                    if count[i] > 1:
                        continue
                    op = e["op"]
                    tbl, key = e.get("table"), e["key"]["id"]
                    v = e["new"]["v"] if op in ("insert", "update") else (e.get("old") or {}).get("v")
                    first[i] = (tbl, key, op, v, r["t"])
                    kk = (tbl, key)
                    if last_id.get(kk, 0) > i:
                        order_violations.append((kk, last_id[kk], i))
                    else:
                        last_id[kk] = i
    versions, deletes = defaultdict(list), defaultdict(list)
    unexpected_ops = 0
    for tbl, key, op, v, _ in first.values():
        if op in ("insert", "update"):
            versions[(tbl, key)].append(v)
        elif op == "delete":
            deletes[(tbl, key)].append(v)
        else:
            unexpected_ops += 1
    lost, phantom, twice = [], [], []
    for kk, v in list(rows.items()) + list(tombs.items()):
        got = versions.get(kk, [])
        have = set(got)
        lost += [(kk, x) for x in range(1, v + 1) if x not in have]
        phantom += [(kk, x) for x in have if not 1 <= x <= v]
        if len(got) != len(have):
            twice.append(kk)
    for kk, dv in deletes.items():
        if kk in tombs:
            if len(dv) > 1:
                twice.append(kk)
            if any(x != tombs[kk] for x in dv):
                phantom += [(kk, f"delete of v{x}") for x in dv if x != tombs[kk]]
        else:
            phantom += [(kk, f"delete of v{x}") for x in dv]
    for kk in tombs:
        if kk not in deletes:
            lost.append((kk, "delete"))
    for kk, got in versions.items():
        if kk not in rows and kk not in tombs:
            phantom += [(kk, x) for x in got]
    dups = {i: c for i, c in count.items() if c > 1}
    dup_in = defaultdict(int)
    dup_out = []
    for i in dups:
        n = in_restart_window(first[i][4])
        if n is None:
            dup_out.append(i)
        else:
            dup_in[n] += 1
    # time of first delivery, for the restart table
    res = {
        "name": name, "requests": requests, "by_status": dict(by_status), "events_2xx": events_2xx,
        "received": len(first), "lost": lost, "phantom": phantom, "twice": twice,
        "dups": dups, "dup_deliveries": sum(c - 1 for c in dups.values()), "dup_in": dict(dup_in),
        "dup_out": dup_out, "dup_out_first": sorted(first[i][4] for i in dup_out),
        "order_violations": order_violations, "verify_failures": verify_failures,
        "bad_bodies": bad_bodies, "unexpected_ops": unexpected_ops,
    }
    return res


flaky_files = sorted(glob.glob(path("flaky.*.jsonl")),
                     key=lambda f: int(os.path.basename(f).split(".")[1]))
checks = {"flaky": check("flaky", flaky_files), "healthy": check("healthy", [path("healthy.jsonl")])}

# --- samples ------------------------------------------------------------------------------------
def ep(s, name, field):
    return ((s.get("ep") or {}).get(name) or {}).get(field)


def sz(s):
    return (s.get("queue_heap") or 0) + (s.get("queue_index") or 0)


write_samples = [s for s in good if t_ws <= s["t"] <= t_we]
first_half = [s for s in write_samples if s["t"] < t_mid]
second_half = [s for s in write_samples if s["t"] >= t_mid]
mem_samples = [s for s in good if s.get("anon") is not None]
pids = []
for s in good:
    if s.get("pid") and (not pids or pids[-1] != s["pid"]):
        pids.append(s["pid"])

write_s = t_we - t_ws
capture_rate = captured / write_s if write_s > 0 else 0  # events/s per endpoint (seed included)
low_water = max(100, int(5 * capture_rate))


def mmm(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, None
    return min(values), statistics.median(values), max(values)


# restarts: backlog before, peak after, time back to the low-water mark
restart_rows = []
for idx, r in enumerate(restarts):
    boundary = restarts[idx + 1]["t_signal"] if idx + 1 < len(restarts) else t_drained
    before = [s for s in good if s["t"] <= r["t_signal"]]
    after = [s for s in good if r["t_signal"] < s["t"] <= boundary]
    peak = max((ep(s, "flaky", "pending") or 0 for s in after), default=None)
    peak_h = max((ep(s, "healthy", "pending") or 0 for s in after), default=None)
    # back to the low-water mark: the first sample at or after the peak (and after the new
    # receiver answered) with the backlog at or below it
    i_peak = next((i for i, s in enumerate(after) if (ep(s, "flaky", "pending") or 0) == peak), 0)
    rec = next((s for s in after[i_peak:]
                if s["t"] > r["t_ready"] and (ep(s, "flaky", "pending") or 0) <= low_water), None)
    restart_rows.append({
        "n": r["n"], "at": r["t_signal"] - t_ws, "signal": r["signal"],
        "down": r["t_ready"] - r["t_signal"],
        "pending_before": ep(before[-1], "flaky", "pending") if before else None,
        "peak": peak, "peak_h": peak_h, "recovered_s": (rec["t"] - r["t_ready"]) if rec else None,
        "recovered_before_next": rec is not None,
        "next_is": "next restart" if idx + 1 < len(restarts) else "end of drain",
        "dups": checks["flaky"]["dup_in"].get(r["n"], 0),
        "states": sorted({ep(s, "flaky", "state") for s in after if ep(s, "flaky", "state")}),
    })

# --- verdict ------------------------------------------------------------------------------------
fl, he = checks["flaky"], checks["healthy"]
verdict = []   # (what, result, met)


def add(what, result, met):
    verdict.append((what, result, met))


lost_total = len(fl["lost"]) + len(he["lost"])
add("0 lost (committed versions never received)",
    f"flaky {len(fl['lost'])}, healthy {len(he['lost'])}", lost_total == 0)
add("duplicates only from receiver restarts",
    f"flaky {len(fl['dups'])} events duplicated, {len(fl['dups']) - len(fl['dup_out'])} within "
    f"±{window:g} s of a restart, {len(fl['dup_out'])} outside; healthy {len(he['dups'])}",
    not fl["dup_out"] and not he["dups"])

anon_first = max((s["anon"] for s in first_half if s.get("anon")), default=None)
anon_second = max((s["anon"] for s in second_half if s.get("anon")), default=None)
if anon_first is not None and anon_second is not None:
    growth = (anon_second - anon_first) / 1024
    add("worker memory flat (RssAnon: max of 2nd half of writes - max of 1st half < 2 MB)",
        f"{anon_first / 1024:.1f} MB -> {anon_second / 1024:.1f} MB ({growth:+.1f} MB)", growth < 2)
else:
    growth = None
    add("worker memory flat", "no memory samples", False)

size_first = max((sz(s) for s in first_half), default=0)
size_second = max((sz(s) for s in second_half), default=0)
size_allow = max(8 * MB, 0.25 * size_first)
not_recovered = [r["n"] for r in restart_rows if not r["recovered_before_next"]]
p1 = max((ep(s, "flaky", "pending") or 0 for s in first_half), default=0)
p2 = max((ep(s, "flaky", "pending") or 0 for s in second_half), default=0)
bounded = not not_recovered and size_second - size_first <= size_allow and drain_ok
ph = max((ep(s, "healthy", "pending") or 0 for s in write_samples), default=0)
busy_vals = [s["busy"] for s in write_samples if s.get("busy") is not None]
busy_w = statistics.mean(busy_vals) if busy_vals else None
load_w = max((s.get("load") or 0 for s in write_samples), default=0)
add("queue size bounded (backlog back to ≤ low-water after every restart; heap+indexes grow ≤ "
    "max(8 MB, 25 %) from 1st to 2nd half; drained in time)",
    f"restarts not recovered from: {not_recovered or 'none'} (low-water {low_water:,} events); "
    f"heap+indexes max {size_first / MB:.1f} MB -> {size_second / MB:.1f} MB; "
    f"pending max flaky {p1:,} -> {p2:,} (healthy: {ph:,} in all); drain {'done' if drain_ok else 'NOT done'} in "
    f"{t_drained - t_we:.0f} s", bounded)

integrity = (not fl["phantom"] and not he["phantom"] and not fl["twice"] and not he["twice"]
             and not fl["order_violations"] and not he["order_violations"]
             and not fl["unexpected_ops"] and not he["unexpected_ops"])
add("check: no phantoms (rolled-back or unknown versions), one event per version, per-key order "
    "of first deliveries",
    f"phantoms {len(fl['phantom'])}/{len(he['phantom'])}, versions in two events "
    f"{len(fl['twice'])}/{len(he['twice'])}, order violations "
    f"{len(fl['order_violations'])}/{len(he['order_violations'])} (flaky/healthy)", integrity)
dead_total = sum((status.get(e) or {}).get("dead") or 0 for e in ("flaky", "healthy"))
add("check: no dead letters", f"{dead_total}", dead_total == 0)
add("check: one delivery worker for the whole run (same pid)",
    f"pids {pids}", len(pids) == 1)
sig_fail = fl["verify_failures"] + he["verify_failures"]
add("check: every request's signature verified", f"{sig_fail} failures", sig_fail == 0)
server_lines = open(path("server_log_lines.txt")).read().splitlines() if os.path.exists(path("server_log_lines.txt")) else []
bad_server = [l for l in server_lines if re.search(r"PANIC|TRAP|terminated by signal|pg_sync worker.*exited", l)]
add("check: no PANIC, assertion or worker crash in the server log", f"{len(bad_server)} lines",
    not bad_server)
all_met = all(m for _, _, m in verdict)

# --- pgbench --------------------------------------------------------------------------------------
pgb = open(path("pgbench.log")).read() if os.path.exists(path("pgbench.log")) else ""


def pgb_value(pattern):
    m = re.search(pattern, pgb)
    return m.group(1) if m else "?"


tx_done = pgb_value(r"number of transactions actually processed: (\d+)")
tx_failed = pgb_value(r"number of failed transactions: (\d+)")
tx_retried = pgb_value(r"number of transactions retried: (\d+)")
tps = pgb_value(r"tps = (\d+(?:\.\d)?)")
lat = pgb_value(r"latency average = ([\d.]+ ms)")
lag = pgb_value(r"rate limit schedule lag: avg ([\d.]+ \(max [\d.]+\) ms)")
progress = re.findall(r"progress: [\d.]+ s, ([\d.]+) tps, lat ([\d.]+) ms.*?lag ([\d.]+) ms", pgb)

# --- report ---------------------------------------------------------------------------------------
def mb(kb):
    return f"{kb / 1024:.1f}" if kb is not None else "?"


def n(x):
    return f"{x:,}" if isinstance(x, int) else str(x)


def interval_ms(text):
    """'00:00:01.5' (an interval as JSON renders it) -> '1,500 ms'."""
    m = re.fullmatch(r"(\d+):(\d+):([\d.]+)", text or "")
    if not m:
        return str(text)
    ms = (int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))) * 1000
    return f"{ms:,.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def rel(t):
    return t - t_ws


SPARK = "▁▂▃▄▅▆▇█"


def spark(values, top):
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif top <= 0:
            out.append(SPARK[0])
        else:
            out.append(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))])
    return "".join(out)


p = print
p("# Soak benchmark")
p()
p(f"{meta.get('date', '?')[:10]}, {meta.get('cores')} cores ({meta.get('cpu', '?')}), PostgreSQL "
  f"{meta.get('postgres')}; pg_sync {meta.get('git')}, pg_sync.so {meta.get('so_md5')}"
  + (f" (the installed file was replaced during the run, by {meta.get('so_md5_end')}; the server "
     "had preloaded the first)" if meta.get("so_md5_end", meta.get("so_md5")) != meta.get("so_md5") else "")
  + f"; CPUs "
  f"{meta.get('busy_start')} % busy in the second before the start (other work on the machine "
  f"skews the figures).")
p(f"Writes: {settings['rate']} tx/s (pgbench -R, {settings['clients']} clients) for "
  f"{duration:.0f} s; flaky receiver: 500 to {float(settings['fail_rate']) * 100:g} % of requests, "
  f"restarted every {restart_every:g} s (signals {settings['restart_signals']} in turn, port closed "
  f"{settings['restart_down']} s); duplicate window ±{window:g} s; samples every "
  f"{settings['sample']} s; {'--quick; ' if settings.get('quick') == '1' else ''}"
  f"endpoints: {meta.get('endpoints', '?')}"
  + (f" (ENDPOINT_OPTS `{settings['endpoint_opts']}`)" if settings["endpoint_opts"] else "") + ".")
p()
p("## Verdict")
p()
p("| target | result | |")
p("|---|---|---|")
for what, result, met in verdict:
    p(f"| {what} | {result} | {'met' if met else '**missed**'} |")
p()
p(f"**{'All targets met.' if all_met else 'Targets missed: ' + '; '.join(w.split(' (')[0] for w, _, m in verdict if not m) + '.'}**")
p()
if busy_w is not None:
    p(f"Machine during the writes: all CPUs {busy_w:.0f} % busy on average (this benchmark and "
      f"anything else running), 1-minute load average up to {load_w:.1f} on {meta.get('cores')} cores.")
if ph > low_water:
    p(f"The healthy endpoint, never restarted, also fell behind (up to {ph:,} pending, low-water "
      f"{low_water:,}): in those minutes the delivery worker as a whole did not keep up with the "
      f"writes (see worker CPU %, machine busy % and load per minute below), so a backlog there "
      f"is not the flaky receiver's doing alone.")
p()
p("## Events")
p()
per_table_text = ", ".join(f"{t.split('.')[1]} {c:,}" for t, c in sorted(per_table_captured.items()))
p(f"Captured: {captured:,} events per endpoint (every committed version of every row, seed "
  f"included, plus one delete per deleted row; {per_table_text}); "
  f"{len(rows):,} rows, {len(tombs):,} deleted. pgbench: {tx_done} transactions ({tps} tx/s), "
  f"{tx_failed} failed, {tx_retried} retried; latency average {lat}, schedule lag {lag}; exit "
  f"code {meta.get('pgbench_rc', '?')}."
  + (" Per minute (tx/s, latency ms, schedule lag ms): "
     + ", ".join(f"{float(a):.0f}/{float(b):.0f}/{float(c):.0f}" for a, b, c in progress) + "." if progress else ""))
p()
p("| | flaky | healthy |")
p("|---|---:|---:|")


def row(label, f):
    p(f"| {label} | {f(fl)} | {f(he)} |")


row("captured (from the tables)", lambda c: f"{captured:,}")
row("delivered_total (worker counter, end)", lambda c: n((status.get(c["name"]) or {}).get("delivered_total")))
row("distinct events received (2xx)", lambda c: f"{c['received']:,}")
row("**lost** (committed versions never received)", lambda c: f"**{len(c['lost']):,}**")
row("phantoms (versions never committed)", lambda c: f"{len(c['phantom']):,}")
row("**duplicated events** (id answered 2xx more than once)", lambda c: f"**{len(c['dups']):,}** ({c['dup_deliveries']:,} extra deliveries)")
row("  of which first delivered within ±window of a restart", lambda c: f"{len(c['dups']) - len(c['dup_out']):,}")
row("  of which not explained by a restart", lambda c: f"{len(c['dup_out']):,}")
row("per-key order violations (first deliveries)", lambda c: f"{len(c['order_violations']):,}")
row("requests (by status; None = cut off unanswered)", lambda c: f"{c['requests']:,} (" + ", ".join(f"{k}: {v:,}" for k, v in sorted(c['by_status'].items())) + ")")
row("events per 2xx request", lambda c: f"{c['events_2xx'] / max(1, sum(v for k, v in c['by_status'].items() if k.startswith('2'))):.1f}")
row("signature failures / unreadable bodies", lambda c: f"{c['verify_failures']} / {c['bad_bodies']}")
row("dead letters (end)", lambda c: n((status.get(c["name"]) or {}).get("dead")))
row("failed_attempts_total (requests, end)", lambda c: n((status.get(c["name"]) or {}).get("failed_attempts_total")))
row("lag p50 / p99 (capture to 2xx, pg_sync.recent_attempts at the end)", lambda c: f"{interval_ms((status.get(c['name']) or {}).get('lag_p50'))} / {interval_ms((status.get(c['name']) or {}).get('lag_p99'))}")
row("max oldest_pending_age (samples)", lambda c: f"{max((ep(s, c['name'], 'oldest_s') or 0 for s in good), default=0):.1f} s")
p()
for c in (fl, he):
    if c["lost"]:
        p(f"- {c['name']}: lost, e.g. {c['lost'][:10]}")
    if c["phantom"]:
        p(f"- {c['name']}: phantoms, e.g. {c['phantom'][:10]}")
    if c["dup_out"]:
        p(f"- {c['name']}: duplicates outside restart windows, first delivered at (s into the writes) "
          f"{[round(rel(t), 1) for t in c['dup_out_first'][:20]]}")
    if c["order_violations"]:
        p(f"- {c['name']}: order violations, e.g. {c['order_violations'][:5]}")
if dead_letters:
    p(f"- dead letters: {dead_letters[:5]}")
p()

p("## Receiver restarts (flaky endpoint)")
p()
if restart_rows:
    p(f"Low-water mark: {low_water:,} pending events (5 s of captured events, at least 100). "
      "Back to low-water = the first sample after the peak that follows the restart (and after "
      "the new receiver answered) with the backlog at or below the mark, in seconds after the "
      "new receiver answered (samples every "
      f"{settings['sample']} s); it must come before the next restart (for the last one, before "
      "the end of the drain).")
    p()
    p("| # | at (s) | signal | port closed (s) | pending before | peak after | back to low-water after (s) | states seen | duplicates | healthy endpoint's peak, same interval |")
    p("|---:|---:|---|---:|---:|---:|---:|---|---:|---:|")
    for r in restart_rows:
        rec = f"{r['recovered_s']:.0f}" if r["recovered_s"] is not None else f"**not before the {r['next_is']}**"
        p(f"| {r['n']} | {r['at']:.0f} | SIG{r['signal']} | {r['down']:.1f} | {n(r['pending_before'])} | "
          f"{n(r['peak'])} | {rec} | {', '.join(r['states'])} | {r['dups']:,} | {n(r['peak_h'])} |")
else:
    p("No restarts (the write phase was shorter than RESTART_EVERY).")
p()

p("## Queue size over time")
p()
ps_f = [ep(s, "flaky", "pending") for s in write_samples]
ps_h = [ep(s, "healthy", "pending") for s in write_samples]
sizes = [sz(s) / MB for s in write_samples]
for label, vals, unit in (("pending, flaky", ps_f, "events"), ("pending, healthy", ps_h, "events"),
                          ("pg_sync._queue heap + indexes", sizes, "MB")):
    lo, med, hi = mmm(vals)
    if lo is None:
        continue
    fmt = (lambda x: f"{x:,.0f}") if unit == "events" else (lambda x: f"{x:.1f}")
    p(f"- {label} during the writes ({len(vals)} samples): min {fmt(lo)}, median {fmt(med)}, max {fmt(hi)} {unit}")
last = good[-1] if good else {}
p(f"- end (after the drain): pending flaky {ep(last, 'flaky', 'pending')}, healthy "
  f"{ep(last, 'healthy', 'pending')}; heap + indexes {sz(last) / MB:.1f} MB (total with TOAST, FSM, VM "
  f"{(last.get('queue_total') or 0) / MB:.1f} MB); autovacuums of pg_sync._queue: "
  f"{queue_stats.get('autovacuum_count', '?')}")
p()
# per minute, writes and drain
minutes = defaultdict(list)
for s in good:
    if s["t"] >= t_ws:
        minutes[int((s["t"] - t_ws) // 60)].append(s)
restart_minutes = defaultdict(int)
for r in restarts:
    restart_minutes[int((r["t_signal"] - t_ws) // 60)] += 1
keys = sorted(minutes)
maxes = [max((ep(s, "flaky", "pending") or 0) for s in minutes[k]) for k in keys]
maxes_h = [max((ep(s, "healthy", "pending") or 0) for s in minutes[k]) for k in keys]
top = max(maxes + maxes_h, default=0)
p("Max pending per minute (one character a minute, both lines on the same scale "
  f"0..{top:,}; `|` marks the end of the writes):")
p()
we_min = int((t_we - t_ws) // 60)
def spark_line(vals):
    s = spark(vals, top)
    cut = sum(1 for k in keys if k < we_min + (1 if (t_we - t_ws) % 60 else 0))
    return s[:cut] + "|" + s[cut:]
p("```")
p(f"flaky   {spark_line(maxes)}")
p(f"healthy {spark_line(maxes_h)}")
p("```")
p()
p("| minute | restarts | pending flaky min / median / max | pending healthy max | flaky state(s) | heap+idx MB | dead tuples | RssAnon MB | delivered/s flaky | delivered/s healthy | worker CPU % | worker waiting for a CPU % | receivers CPU % | queue rows read/s | machine busy % | load |")
p("|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
prev = None
for k in keys:
    ss = minutes[k]
    lo, med, hi = mmm([ep(s, "flaky", "pending") for s in ss])
    hh = max((ep(s, "healthy", "pending") or 0) for s in ss)
    states = sorted({ep(s, "flaky", "state") for s in ss if ep(s, "flaky", "state")})
    a, b = (prev or ss[0]), ss[-1]
    dt = b["t"] - a["t"]
    rate_f = ((ep(b, "flaky", "delivered") or 0) - (ep(a, "flaky", "delivered") or 0)) / dt if dt > 0 else 0
    rate_h = ((ep(b, "healthy", "delivered") or 0) - (ep(a, "healthy", "delivered") or 0)) / dt if dt > 0 else 0
    wcpu = ((b.get("cpu") or 0) - (a.get("cpu") or 0)) / dt * 100 if dt > 0 else 0
    wwait = (f"{((b.get('wait') or 0) - (a.get('wait') or 0)) / dt * 100:.0f}"
             if dt > 0 and b.get("wait") is not None and a.get("wait") is not None and a.get("pid") == b.get("pid") else "?")
    rcpu = 0.0   # both receivers; the flaky one's CPU restarts at 0 with each incarnation
    chain = [a] + ss
    for x, y in zip(chain, chain[1:]):
        for name in ("flaky", "healthy"):
            px, py = (x.get("procs") or {}).get(name), (y.get("procs") or {}).get(name)
            if px and py and px["pid"] == py["pid"]:
                rcpu += py["cpu"] - px["cpu"]
    rcpu = rcpu / dt * 100 if dt > 0 else 0
    rr = (f"{((b.get('rows_read') or 0) - (a.get('rows_read') or 0)) / dt:,.0f}"
          if dt > 0 and b.get("rows_read") is not None and a.get("rows_read") is not None else "?")
    busy_l = [s["busy"] for s in ss if s.get("busy") is not None]
    busy = f"{statistics.mean(busy_l):.0f}" if busy_l else "?"
    load = f"{max((s.get('load') or 0) for s in ss):.1f}" if any(s.get("load") for s in ss) else "?"
    phase = "" if ss[-1]["t"] <= t_we else " (drain)" if ss[0]["t"] > t_we else " (writes end)"
    p(f"| {k}{phase} | {restart_minutes.get(k, 0) or ''} | {lo:,} / {med:,.0f} / {hi:,} | {hh:,} | {', '.join(states)} | "
      f"{sz(b) / MB:.1f} | {b.get('dead_tup') or 0:,} | {mb(b.get('anon'))} | {rate_f:,.0f} | {rate_h:,.0f} | "
      f"{wcpu:.0f} | {wwait} | {rcpu:.0f} | {rr} | {busy} | {load} |")
    prev = b
p()

# --- what the worker's time went to, by the flaky endpoint's state -----------------------------
groups = defaultdict(lambda: defaultdict(float))
for a, b in zip(write_samples, write_samples[1:]):
    if a.get("pid") != b.get("pid") or a.get("cpu") is None or b.get("cpu") is None:
        continue
    if "circuit_open" in (ep(a, "flaky", "state"), ep(b, "flaky", "state")):
        g = groups["circuit open"]
    elif max(ep(a, "flaky", "pending") or 0, ep(b, "flaky", "pending") or 0) > low_water:
        g = groups["backlog above low-water, circuit closed"]
    else:
        g = groups["backlog at or below low-water"]
    g["dt"] += b["t"] - a["t"]
    g["cpu"] += b["cpu"] - a["cpu"]
    g["wait"] += (b.get("wait") or 0) - (a.get("wait") or 0)
    g["del_f"] += (ep(b, "flaky", "delivered") or 0) - (ep(a, "flaky", "delivered") or 0)
    g["del_h"] += (ep(b, "healthy", "delivered") or 0) - (ep(a, "healthy", "delivered") or 0)
    g["pend_f"] += ((ep(a, "flaky", "pending") or 0) + (ep(b, "flaky", "pending") or 0)) / 2 * (b["t"] - a["t"])
    g["pend_h_max"] = max(g["pend_h_max"], ep(b, "healthy", "pending") or 0)
    if a.get("rows_read") is not None and b.get("rows_read") is not None:
        g["rows"] += b["rows_read"] - a["rows_read"]
        g["has_rows"] = 1
if groups:
    p("## What the worker spent its time on, by the flaky endpoint's state")
    p()
    p(f"Over the {settings['sample']} s intervals of the write phase: circuit open when either of an "
      "interval's samples saw the flaky endpoint's circuit open, else by the larger of its two flaky "
      f"backlogs against the low-water mark ({low_water:,}). Events are captured at about "
      f"{capture_rate:,.0f}/s per endpoint; the healthy endpoint keeps up when it delivers as many.")
    p()
    p("| flaky endpoint | seconds | mean flaky pending | worker CPU % | worker waiting for a CPU % | delivered/s flaky | delivered/s healthy | max healthy pending | queue rows read/s | worker CPU µs per delivered event | queue rows read per delivered event |")
    p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("backlog at or below low-water", "circuit open", "backlog above low-water, circuit closed"):
        g = groups.get(name)
        if not g or g["dt"] <= 0:
            continue
        dels = g["del_f"] + g["del_h"]
        rows_s = f"{g['rows'] / g['dt']:,.0f}" if g.get("has_rows") else "?"
        rows_e = f"{g['rows'] / dels:.1f}" if g.get("has_rows") and dels else "?"
        p(f"| {name} | {g['dt']:.0f} | {g['pend_f'] / g['dt']:,.0f} | {g['cpu'] / g['dt'] * 100:.0f} | "
          f"{g['wait'] / g['dt'] * 100:.0f} | {g['del_f'] / g['dt']:,.0f} | {g['del_h'] / g['dt']:,.0f} | "
          f"{g['pend_h_max']:,.0f} | {rows_s} | {g['cpu'] / dels * 1e6 if dels else 0:,.0f} | {rows_e} |")
    p()
    lo, op = groups.get("backlog at or below low-water"), groups.get("circuit open")
    if lo and op and lo.get("has_rows") and op.get("has_rows") and lo["dt"] > 0 and op["dt"] > 0:
        r_lo, r_op = lo["rows"] / lo["dt"], op["rows"] / op["dt"]
        if r_lo > 0 and r_op >= 2 * r_lo:
            p(f"While the flaky endpoint's circuit was open, nothing was sent to it, yet pg_sync._queue "
              f"rows were read {r_op / r_lo:.1f} times as fast as with its backlog small "
              f"({r_op:,.0f}/s against {r_lo:,.0f}/s): the passes the writers' commits trigger read "
              "the held endpoint's head of queue too.")
            hl = lo["del_h"] / lo["dt"]
            ho = op["del_h"] / op["dt"]
            if ho < capture_rate * 0.95:
                p(f"The healthy endpoint was delivered {ho:,.0f} events/s meanwhile (against "
                  f"{hl:,.0f}/s otherwise and about {capture_rate:,.0f}/s captured), with the worker "
                  f"waiting for a CPU {op['wait'] / op['dt'] * 100:.0f} % of the time.")
            p()

p("## Worker memory")
p()
if mem_samples:
    st, en = mem_samples[0], mem_samples[-1]
    p("| MB | start | max | end | max 1st half of writes | max 2nd half of writes |")
    p("|---|---:|---:|---:|---:|---:|")
    for field, label in (("anon", "RssAnon (private)"), ("rss", "VmRSS"), ("shmem", "RssShmem")):
        p(f"| {label} | {mb(st.get(field))} | {mb(max(s.get(field) or 0 for s in mem_samples))} | "
          f"{mb(en.get(field))} | {mb(max((s.get(field) or 0 for s in first_half), default=None))} | "
          f"{mb(max((s.get(field) or 0 for s in second_half), default=None))} |")
    cpu = (en.get("cpu") or 0) - (st.get("cpu") or 0)
    p()
    p(f"Flat = RssAnon's highest value in the second half of the write phase is less than 2 MB above "
      f"its highest value in the first half ({'+' if growth is not None and growth >= 0 else ''}"
      f"{growth:.1f} MB). RssShmem (and so VmRSS) counts the pages of shared_buffers the worker "
      f"has touched; it grows up to shared_buffers and is not the worker's own. Worker CPU over "
      f"the run: {cpu:.0f} s ({cpu / max(1, en['t'] - st['t']) * 100:.1f} % of one core).")
p()

p("## Server log")
p()
p(f"{len(server_lines)} line(s) matching PANIC|FATAL|ERROR|TRAP|terminated by signal|exited with exit code|pg_sync:"
  + (" (first 10):" if server_lines else "."))
if server_lines:
    p()
    p("```")
    for l in server_lines[:10]:
        p(l[:300])
    p("```")
p()
p(f"Sampler: {len(samples)} samples, {sample_errors} failed queries. Phases (s after the start "
  f"of the writes): seed {t_start - t_ws:.0f}, writes 0-{t_we - t_ws:.0f}, drain to "
  f"{t_drained - t_ws:.0f}, end {t_end - t_ws:.0f}.")
sys.exit(0 if all_met else 3)
