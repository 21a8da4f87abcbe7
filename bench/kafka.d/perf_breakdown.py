#!/usr/bin/python3
"""Breaks a perf profile of the delivery worker (bench/kafka with PERF_DIR) into its parts.

Usage: perf script -i DIR/VARIANT-ROUND.data -F comm,ip,sym | bench/kafka.d/perf_breakdown.py
Each sample of the worker's own thread goes to the first part, in the order below, that a frame
of its call stack names (DWARF call graphs: drain.py records with --call-graph dwarf); samples of
librdkafka's threads are counted per thread.
"""
import collections
import sys

PARTS = [
    ("queue rotation's count", ["rotate_queue", "queue_rotation::"]),
    ("deleting delivered rows", ["delete_delivered"]),
    ("commits", ["commit_pass", "CommitTransactionCommand"]),
    ("attempts, outcomes, statistics", ["record_attempts", "record_outcome", "write_stats", "report_idle"]),
    ("reading the head (SPI, index, heap, rows into events)", ["fetch_head", "read_events", "read_head",
                                                              "queue_store::"]),
    ("Kafka: building records (JSON, headers, order)", ["build_records"]),
    ("Kafka: rd_kafka_producev and its headers", ["Sink::produce", "rd_kafka_producev"]),
    ("Kafka: delivery reports, freeing requests", ["Sink::serve", "rd_kafka_poll", "on_report", "on_delivery",
                                                   "take_completions", "finish_if_done"]),
    ("planning, cached head (dispatcher, scheduler, head cache)", ["Dispatcher::", "Planner", "HeadCache",
                                                                   "plan_endpoint", "plan_from_head",
                                                                   "plan_pipelined", "PayloadGate",
                                                                   "submit_planned", "Sink::submit", "Router::"]),
    ("the loop, waiting, other", [""]),
]


def main():
    threads, parts = collections.Counter(), collections.Counter()
    comm, stack = None, []

    def flush():
        if comm is None:
            return
        threads[comm] += 1
        if comm == "postgres":
            frames = "\n".join(stack)
            parts[next(name for name, names in PARTS if any(n in frames for n in names))] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            comm, stack = None, []
        elif not line.startswith((" ", "\t")):
            comm, stack = line.split()[0], []
        else:
            fields = line.strip().split(None, 1)
            if len(fields) == 2:
                stack.append(fields[1])
    flush()
    total = sum(threads.values())
    if not total:
        sys.exit("no samples")
    print(f"{total} samples")
    print("| part | share of all samples |")
    print("|---|---:|")
    for name, _ in PARTS:
        print(f"| worker thread: {name} | {100 * parts[name] / total:.1f} % |")
    for name, n in threads.most_common():
        if name != "postgres":
            print(f"| thread {name} | {100 * n / total:.1f} % |")


main()
