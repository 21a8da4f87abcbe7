#!/usr/bin/python3
"""bench/kafka's report: meta.txt and runs.jsonl -> markdown on stdout.

Usage: report.py META RUNS SECONDS_IN_ALL
Per variant: median events/s over the rounds with the range, the per-round ratio to kcat of the
same round (median and range), the CPU per 100k events (median), and the targets of issue 13:
at least 0.5x kcat and at least 100,000 events/s.
"""
import json
import statistics
import sys


def fmt_int(x):
    return f"{x:,.0f}"


def main():
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(sys.argv[1]) if "=" in line)
    runs = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
    total_s = int(sys.argv[3])
    variants = []
    for r in runs:
        if r["variant"] not in variants:
            variants.append(r["variant"])
    kcat = {r["round"]: r for r in runs if r["variant"] == "kcat"}
    out = ["# Kafka benchmark", ""]
    out.append(f"{meta['date'][:10]}, {meta['cores']} cores ({meta['cpu']}), PostgreSQL {meta['postgres']}, "
               f"librdkafka {meta['librdkafka']}, kcat {meta['kcat']}; pg_sync {meta['git']}; "
               f"CPUs {meta['busy_start']} % busy in the second before the start.")
    out.append(f"Settings: {meta['settings']}. {total_s} s in all.")
    out.append("")
    out.append("## Draining a preloaded queue into Kafka (librdkafka's mock cluster, 3 brokers, 6 partitions)")
    out.append("")
    out.append("| variant | events | events/s (median, range) | vs kcat -P, per round (median, range) | CPU s per 100k events | target |")
    out.append("|---|---:|---:|---:|---:|---|")
    missed = []
    for v in variants:
        rs = [r for r in runs if r["variant"] == v]
        rates = [r["events"] / r["seconds"] for r in rs]
        cpu_key = "cpu_s" if v == "kcat" else "worker_cpu_s"
        cpu = [r[cpu_key] / r["events"] * 100000 for r in rs]
        rate = statistics.median(rates)
        name = {"kcat": "kcat -P (one producer, records from a file)",
                "http": "reference: pg_sync b100x16 to nginx (webhooks)",
                "sql": "reference: the queue alone in plain SQL (read, delete by TID, commit; 1000 a batch)"}.get(v, "pg_sync " + v)
        line = f"| {name} | " \
               f"{rs[0]['events']:,} | {fmt_int(rate)} ({fmt_int(min(rates))}–{fmt_int(max(rates))}) | "
        if v == "kcat":
            line += f"1.00x | {statistics.median(cpu):.2f} (kcat) | |"
        elif v in ("http", "sql"):
            ratios = [(r["events"] / r["seconds"]) / (kcat[r["round"]]["events"] / kcat[r["round"]]["seconds"])
                      for r in rs if r["round"] in kcat]
            line += f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}–{max(ratios):.2f}) | {statistics.median(cpu):.2f} ({'backend' if v == 'sql' else 'worker'}) | |"
        else:
            ratios = [(r["events"] / r["seconds"]) / (kcat[r["round"]]["events"] / kcat[r["round"]]["seconds"])
                      for r in rs if r["round"] in kcat]
            ratio = statistics.median(ratios)
            ok = ratio >= 0.5 and rate >= 100000
            target = "≥ 0.5x kcat and ≥ 100,000 events/s: " + ("met" if ok else "**missed**")
            if not ok:
                missed.append(f"pg_sync {v}: {ratio:.2f}x kcat, {fmt_int(rate)} events/s")
            line += f"{ratio:.2f}x ({min(ratios):.2f}–{max(ratios):.2f}) | {statistics.median(cpu):.2f} (worker) | {target} |"
        out.append(line)
    out.append("")
    out.append("events/s = events / (time from resume_endpoint until the queue is empty; for kcat, from its start to "
               "its exit); ratios are taken per round, pg_sync / kcat of the same round, since other work on the "
               "shared machine moves both. CPU = utime + stime over the drain (the worker process: its own thread "
               "and librdkafka's), or of the kcat process. Every drain wrote its own topic; the records written "
               "were counted from the partitions' end offsets (kcat -Q).")
    timed = [v for v in variants if any("worker_runqueue_s" in r for r in runs if r["variant"] == v)]
    if timed:
        out.append("")
        out.append("## The worker's main thread during the drains (medians; /proc/PID/schedstat)")
        out.append("")
        out.append("| variant | on a CPU | runnable, waiting for a CPU | asleep (waiting for answers or work) |")
        out.append("|---|---:|---:|---:|")
        for v in timed:
            rs = [r for r in runs if r["variant"] == v and "worker_runqueue_s" in r]
            on = statistics.median(r["worker_thread_cpu_s"] / r["seconds"] for r in rs)
            rq = statistics.median(r["worker_runqueue_s"] / r["seconds"] for r in rs)
            asleep = statistics.median(max(0.0, 1 - (r["worker_thread_cpu_s"] + r["worker_runqueue_s"]) / r["seconds"])
                                       for r in rs)
            out.append(f"| {v} | {100 * on:.0f} % | {100 * rq:.0f} % | {100 * asleep:.0f} % |")
        out.append("")
        out.append("Shares of the drain's wall time. Time runnable but waiting for a CPU is the shared machine's "
                   "(other processes, the mock brokers, librdkafka's own threads); time asleep is the worker "
                   "waiting for delivery reports, answers or the next pass.")
    if missed:
        out.append("")
        out.append("Targets missed:")
        out += [f"- {m}" for m in missed]
    out.append("")
    out.append("## Every run")
    out.append("")
    out.append("```")
    out += [json.dumps(r) for r in runs]
    out.append("```")
    print("\n".join(out))


main()
