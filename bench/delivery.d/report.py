#!/usr/bin/python3
"""Turns bench/delivery's raw files into the Markdown report (printed on stdout).

Usage: report.py WORK_DIR
Reads meta.txt, runs.jsonl, and when present latency.json, commits.txt, arrivals.txt,
memory.txt, marks.txt.
"""
import json
import math
import os
import random
import statistics
import sys

TITLES = {
    "classic": "classic outbox relay (Python, 1 POST per event)",
    "b1x16": "pg_sync batch_size 1, max_in_flight 16",
    "b1x4": "pg_sync batch_size 1, max_in_flight 4 (default)",
    "b100x4": "pg_sync batch_size 100, max_in_flight 4 (defaults)",
    "b100x16": "pg_sync batch_size 100, max_in_flight 16",
    "b100x16_nopoll": "pg_sync batch_size 100, max_in_flight 16, without the monitoring poller",
}
ORDER = ["classic", "b1x16", "b1x4", "b100x4", "b100x16", "b100x16_nopoll"]
POLLED = ["endpoint_status", "health", "workers", "recent_attempts"]
RATIO_TARGET = 2.0          # batch_size 1 against the classic relay, per round
# events/s: batch_size 1 with a larger max_in_flight; batch_size 100 with the defaults, and 16
RATE_TARGETS = {"b1x16": 20_000, "b100x4": 150_000, "b100x16": 100_000}
P50_TARGET_MS, P99_TARGET_MS = 2.0, 20.0
FLAT_MB = 2.0               # RssAnon peak after the warm-up rounds above its peak during them


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def poller_section(runs, settings, w):
    """The monitoring poller (bench/delivery.d/poller.py) during the drains: its query times per
    variant, and what it costs: b100x16 (polled) against b100x16_nopoll, per round."""
    polled = [r for r in runs if "poll" in r]
    if not polled:
        return
    w(f"## Monitoring during the drains (a poller every {float(settings.get('poll_interval', 0.1)) * 1000:.0f} ms)")
    w("")
    w("| variant | polls | " + " | ".join(f"{q} ms (median / p99)" for q in POLLED)
      + " | CPU ms/s: poller + its backend |")
    w("|---|---:|" + "---:|" * (len(POLLED) + 1))
    for v in ORDER:
        rs = [r for r in polled if r["variant"] == v]
        if not rs:
            continue
        cells = []
        for q in POLLED:
            if any(q not in r["poll"]["queries"] for r in rs):
                cells.append("–")  # not polled (POLL_QUERIES)
                continue
            med = statistics.median(r["poll"]["queries"][q]["median_ms"] for r in rs)
            p99 = max(r["poll"]["queries"][q]["p99_ms"] for r in rs)
            cells.append(f"{med:.2f} / {p99:.2f}")
        cpu = [r["poll"].get("cpu_ms_per_s") for r in rs]
        cells.append(f"{statistics.median(c['poller'] for c in cpu):.0f} + "
                     f"{statistics.median(c['backend'] for c in cpu):.0f}" if all(cpu) else "–")
        w(f"| {v} | {sum(r['poll']['polls'] for r in rs):,} | " + " | ".join(cells) + " |")
    w("")
    pairs, cpu_pairs = [], []
    for rnd in sorted({r["round"] for r in runs}):
        a = [r for r in runs if r["round"] == rnd and r["variant"] == "b100x16" and "poll" in r]
        b = [r for r in runs if r["round"] == rnd and r["variant"] == "b100x16_nopoll"]
        if a and b:
            pairs.append((a[0]["events"] / a[0]["seconds"]) / (b[0]["events"] / b[0]["seconds"]))
            cpu_pairs.append((a[0]["worker_cpu_s"] / a[0]["events"]) / (b[0]["worker_cpu_s"] / b[0]["events"]))
    if pairs:
        w(f"Drain throughput with the poller / without it (b100x16 / b100x16_nopoll, per round): "
          + ", ".join(f"{x:.3f}" for x in pairs)
          + f"; median {statistics.median(pairs):.3f} (range {min(pairs):.3f}–{max(pairs):.3f}). "
          f"Each poll runs the four queries one after the other on one connection, as superuser; "
          f"CPU ms/s: utime + stime of the poller process and of its server backend per second "
          f"of polling (1000 = one core), median over the drains.")
        w("")
        if len(pairs) >= 5:
            lo, hi = median_interval(pairs)
            clo, chi = median_interval(cpu_pairs)
            w(f"Over {len(pairs)} pairs: throughput ratio median {statistics.median(pairs):.3f}, 95 % "
              f"interval of the median {lo:.3f}–{hi:.3f} (bootstrap); polled drains faster than "
              f"unpolled in {sum(x > 1 for x in pairs)} of {len(pairs)} pairs. The worker's CPU per "
              f"event polled / unpolled: median {statistics.median(cpu_pairs):.3f} "
              f"({clo:.3f}–{chi:.3f}). That the poller costs these drains under 5 % of throughput "
              f"(median of the ratios) is shown, at 95 % confidence, when the interval's lower end "
              f"is above 0.950: "
              f"**{'yes' if lo > 0.95 else 'not shown'}** here.")
            w("")


def median_interval(values, resamples=10000):
    """95 % bootstrap interval of the median of values (a fixed seed: the same runs give the same
    report)."""
    rng = random.Random(12)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1]


def main():
    work = sys.argv[1]
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(os.path.join(work, "meta.txt")))
    settings = dict(kv.split("=", 1) for kv in meta["settings"].split())
    runs = [json.loads(line) for line in open(os.path.join(work, "runs.jsonl"))]
    out = []
    w = out.append
    misses = []

    rounds = int(settings["rounds"])
    w("# Delivery benchmark")
    w("")
    w(f"{meta['date'][:10]}, {meta['cores']} cores ({meta['cpu']}), PostgreSQL {meta['postgres']}, "
      f"nginx {meta['nginx']}, Python {meta['python']}; pg_sync {meta['git']}, "
      f"pg_sync.so {meta['so_md5']}; CPUs {meta.get('busy_start', '?')} % busy in the second "
      f"before the start.")
    if int(meta.get("busy_start", 0)) > 10:
        w(f"**Warning: the machine was busy when the run started ({meta['busy_start']} % of all "
          f"cores in use over one second); other work skews every figure.**")
        w("")
    if meta.get("so_md5_end", meta["so_md5"]) != meta["so_md5"]:
        w(f"**Warning: pg_sync.so was replaced during the run (now {meta['so_md5_end']}); a "
          f"worker started after that runs the new build.**")
        w("")
    w(f"Settings: {meta['settings']}." + (" **Quick mode (smoke test sizes).**"
                                       if settings.get("quick") == "1" else ""))
    w("")

    # (a) drains
    variants = [v for v in ORDER if any(r["variant"] == v for r in runs)]
    if variants:
        w(f"## Draining a preloaded queue into nginx (204), median of {rounds} interleaved "
          f"round{'s' if rounds != 1 else ''}")
        w("")
        w("| variant | events | events/s | vs classic, per round | CPU s per 100k events | "
          "requests (connections) | target |")
        w("|---|---:|---:|---:|---:|---:|---|")

        def spread(values, fmt):
            """median (min–max) of a list, formatted."""
            text = fmt.format(statistics.median(values))
            if len(values) > 1:
                text += f" ({fmt.format(min(values))}–{fmt.format(max(values))})"
            return text

        classic = {r["round"]: r["events"] / r["seconds"] for r in runs if r["variant"] == "classic"}
        for v in variants:
            rs = [r for r in runs if r["variant"] == v]
            rates = [r["events"] / r["seconds"] for r in rs]
            rate = statistics.median(rates)
            if v == "classic":
                cpus = [(r["consumer_cpu_s"] + r["backend_cpu_s"]) * 1e5 / r["events"] for r in rs]
                relay = statistics.median(r["consumer_cpu_s"] * 1e5 / r["events"] for r in rs)
                cpu_text = (f"{spread(cpus, '{:.2f}')} (relay {relay:.2f} + its backend "
                            f"{statistics.median(cpus) - relay:.2f})")
            else:
                cpus = [r["worker_cpu_s"] * 1e5 / r["events"] for r in rs]
                cpu_text = f"{spread(cpus, '{:.2f}')} (worker)"
            requests = statistics.median(r["requests"] for r in rs)
            conns = max(r.get("connections", 0) for r in rs)
            # The relay and each variant ran in the same round: their ratio is what the noise of
            # a shared machine affects least.
            ratios = [r["events"] / r["seconds"] / classic[r["round"]] for r in rs if r["round"] in classic]
            ratio = spread(ratios, "{:.2f}x") if ratios and v != "classic" else ("1.00x" if ratios else "–")
            goals = []
            if v in ("b1x16", "b1x4") and ratios:
                ok = statistics.median(ratios) >= RATIO_TARGET
                goals.append(f"≥ {RATIO_TARGET:g}x classic: {'met' if ok else '**missed**'}")
                if not ok:
                    misses.append(f"{TITLES[v]}: {statistics.median(ratios):.2f}x the classic relay "
                                  f"(median of the rounds), target {RATIO_TARGET:g}x")
            if v in RATE_TARGETS:
                ok = rate >= RATE_TARGETS[v]
                goals.append(f"≥ {RATE_TARGETS[v]:,} events/s: {'met' if ok else '**missed**'}")
                if not ok:
                    misses.append(f"{TITLES[v]}: {rate:,.0f} events/s, target {RATE_TARGETS[v]:,}")
            w(f"| {TITLES[v]} | {rs[0]['events']:,} | {spread(rates, '{:,.0f}')} | {ratio} | {cpu_text} | "
              f"{requests:,.0f} ({conns}) | {'; '.join(goals)} |")
        w("")
        w("events/s = events / (time from resume_endpoint, or from the relay's start, until the "
          "queue is empty), median and in parentheses the range over the rounds; vs classic = "
          "events/s over the classic relay's in the same round, median and range over the rounds; "
          "CPU = utime + stime over the drain from /proc (the pg_sync worker; the relay process "
          "and its server backend for the classic relay), median and range; requests (connections): what nginx counted, "
          "connections = new ones accepted during the drain (pg_sync keeps its connections open "
          "from one drain to the next). The classic relay (bench/delivery.d/outbox_consumer.py): "
          "one psycopg2 connection, DELETE ... WHERE id IN (SELECT id ... ORDER BY id LIMIT 100 "
          "FOR UPDATE SKIP LOCKED) RETURNING, one POST per event with http.client over one "
          "keep-alive connection (TCP_NODELAY), COMMIT after each 100.")
        w("")

    poller_section(runs, settings, w)

    # (b) latency
    lat_path = os.path.join(work, "latency.json")
    if os.path.exists(lat_path):
        lat = json.load(open(lat_path))
        warmup = float(settings["warmup"])
        commits = {int(i): (float(c), float(d)) for i, c, d in read_lines(
            os.path.join(work, "commits.txt"))}
        arrivals, dups = {}, 0
        for key, arrival, _ in read_lines(os.path.join(work, "arrivals.txt")):
            if key == "None":
                continue
            key = int(key)
            if key in arrivals:
                dups += 1
            else:
                arrivals[key] = float(arrival)
        first_due = min(d for _, d in commits.values()) if commits else 0
        measured = [i for i, (_, d) in commits.items() if d >= first_due + warmup]
        lats = sorted((arrivals[i] - commits[i][0]) * 1000 for i in measured if i in arrivals)
        missing = sum(1 for i in commits if i not in arrivals)
        p50, p99 = percentile(lats, 50), percentile(lats, 99)
        ok = p50 < P50_TARGET_MS and p99 < P99_TARGET_MS and missing == 0
        if not ok:
            misses.append(f"latency p50 {p50:.2f} ms, p99 {p99:.2f} ms, {missing} events missing "
                          f"(target p50 < {P50_TARGET_MS:g} ms, p99 < {P99_TARGET_MS:g} ms)")
        drv, rcv = lat["driver"], lat["receiver"]
        w(f"## Commit-to-receipt latency at {float(settings['rate']):,.0f} events/s")
        w("")
        w("| rows/s reached | events measured | p50 | p90 | p99 | max | worker CPU s per 100k "
          "events | target |")
        w("|---:|---:|---:|---:|---:|---:|---:|---|")
        cpu = lat["worker_cpu_s"] * 1e5 / max(1, drv["rows"])
        w(f"| {drv['rate']:,.0f} | {len(lats):,} | {p50:.2f} ms | {percentile(lats, 90):.2f} ms | "
          f"{p99:.2f} ms | {lats[-1] if lats else math.nan:.2f} ms | {cpu:.2f} | "
          f"p50 < {P50_TARGET_MS:g} ms, p99 < {P99_TARGET_MS:g} ms: "
          f"{'met' if ok else '**missed**'} |")
        w("")
        w(f"{drv['rows']:,} single-row autocommit INSERTs in {drv['seconds']} s over "
          f"{settings['driver_connections']} connections (p99 start {drv['late_ms_p99']} ms behind "
          f"schedule), into a table tracked for an endpoint with create_endpoint's defaults "
          f"(batch_size 100, max_in_flight 4); a Python asyncio receiver timed each event's "
          f"arrival. Latency = arrival - return of the INSERT's commit; the first {warmup:g} s "
          f"are left out. The receiver got {rcv['events']:,} events in {rcv['requests']:,} "
          f"requests (largest {rcv['max_batch']}), {dups} duplicates, {missing} missing, "
          f"{rcv['bad_requests']} unreadable bodies.")
        w("")

    # (c) memory
    samples = [s for s in read_lines(os.path.join(work, "memory.txt")) if s[1] != "gone"]
    gone = any(s[1] == "gone" for s in read_lines(os.path.join(work, "memory.txt")))
    marks = read_lines(os.path.join(work, "marks.txt"))
    if samples:
        def at(t):   # last sample at or before t
            best = samples[0]
            for s in samples:
                if float(s[0]) <= t:
                    best = s
            return best
        points = [("start", samples[0])]
        round_ends = {}
        for m in marks:
            if m[1] == "round":
                round_ends[int(m[2])] = float(m[0])   # the last variant of the round wins
        checkpoints = [(float(m[0]), "after latency run") for m in marks if m[1:] == ["latency", "end"]]
        checkpoints += [(t, f"after round {r}") for r, t in round_ends.items()]
        for t, name in sorted(checkpoints):
            points.append((name, at(t)))
        points.append(("end", samples[-1]))
        columns = ((1, "VmRSS"), (2, "RssAnon"), (3, "RssShmem"), (4, "VmHWM"))
        peak = {i: max(int(s[i]) for s in samples) for i, _ in columns}
        w(f"## Worker memory (MB, {len(samples)} samples, every 0.1 s)")
        w("")
        w("| | " + " | ".join(p for p, _ in points) + " | peak |")
        w("|---|" + "---:|" * (len(points) + 1))
        for i, name in columns:
            w(f"| {name} | " + " | ".join(f"{int(s[i]) / 1024:.1f}" for _, s in points)
              + f" | {peak[i] / 1024:.1f} |")
        w("")
        # RssAnon settles during the first two rounds (the latency run and round 1 are the
        # worker's first time through everything it does; in round 2 measured runs kept about
        # 4 MB more, flat from then on up to round 10), and malloc moves it up and down by about
        # a megabyte between samples. So flat = the highest RssAnon after the warm-up rounds is
        # at most FLAT_MB above the highest during them: a leak keeps climbing past it.
        warm = 2 if len(round_ends) >= 3 else 1
        if warm in round_ends and len(round_ends) > warm:
            first = max(int(s[2]) for s in samples if float(s[0]) <= round_ends[warm]) / 1024
            later = max(int(s[2]) for s in samples if float(s[0]) > round_ends[warm]) / 1024
            flat = later - first <= FLAT_MB and not gone
            after = len(round_ends) - warm
            w(f"Private memory (RssAnon): highest {first:.1f} MB up to the end of round {warm}, "
              f"{later:.1f} MB in the {after} round{'s' if after > 1 else ''} after it "
              f"({later - first:+.1f} MB); target flat (≤ +{FLAT_MB:g} MB): "
              f"{'met' if flat else '**missed**'}.")
            if not flat:
                misses.append(f"worker memory: RssAnon peaked {later - first:+.1f} MB above its "
                              f"peak up to round {warm}" + (", worker exited" if gone else ""))
        else:
            w("Flat or not needs ROUNDS ≥ 2 (the first round is the worker's first time through "
              "every drain): not judged.")
        w("RssShmem is shared memory (shared_buffers) the worker has touched: it grows with the "
          "queue pages it reads, up to shared_buffers, and is not the worker's own.")
        if gone:
            w("")
            w("**The worker exited during the run.**")
            misses.append("the worker exited during the run")
        w("")

    if misses:
        w("Targets missed:")
        for m in misses:
            w(f"- {m}")
    else:
        w("Every target measured in this run is met.")
    w("")
    w("## Every run")
    w("")
    w("```")
    for r in runs:
        w(json.dumps(r))
    if os.path.exists(lat_path):
        w(open(lat_path).read().strip())
    w("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
