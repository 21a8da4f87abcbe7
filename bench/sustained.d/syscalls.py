#!/usr/bin/python3
"""Per-second counts of the delivery worker's socket and WAL syscalls, for bench/sustained TRACE=1.

Usage: perf script -i TRACE.data -F time,event | syscalls.py OUT.csv OFFSET
(the trace recorded with `perf record -k monotonic -e syscalls:sys_exit_epoll_wait,
syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_fdatasync -p PID`;
OFFSET = unix time - CLOCK_MONOTONIC, taken when the trace started). Writes "second,epoll_wait,sendto,recvfrom,fdatasync" rows, every
second from the first event to the last (0 where none).
"""
import collections
import csv
import sys

NAMES = ["epoll_wait", "sendto", "recvfrom", "fdatasync"]
offset = float(sys.argv[2])
counts = collections.defaultdict(collections.Counter)
for line in sys.stdin:
    parts = line.split()
    if len(parts) < 2:
        continue
    try:
        second = int(float(parts[0].rstrip(":")) + offset)
    except ValueError:
        continue
    event = parts[1].rstrip(":").split(":")[-1]
    for name in NAMES:
        if event.endswith("_" + name):
            counts[second][name] += 1
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["second"] + NAMES)
    if counts:
        for second in range(min(counts), max(counts) + 1):
            w.writerow([second] + [counts[second][n] for n in NAMES])
