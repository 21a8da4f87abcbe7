#!/usr/bin/python3
"""Samples a process's memory for bench/delivery until it exits or gets SIGTERM.

Usage: sample.py PID OUT_FILE INTERVAL_S
Writes "unix_time VmRSS_kB RssAnon_kB RssShmem_kB VmHWM_kB cpu_s" lines (flushed at once); "unix_time gone"
when the process has gone.
"""
import os
import signal
import sys
import time

pid, out, interval = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
tick = os.sysconf("SC_CLK_TCK")
with open(out, "a", buffering=1) as f:
    while True:
        try:
            with open(f"/proc/{pid}/status") as s:
                fields = dict(line.split(":", 1) for line in s if ":" in line)
            with open(f"/proc/{pid}/stat") as s:
                stat = s.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            f.write(f"{time.time():.3f} gone\n")
            break
        kb = {k: int(fields[k].split()[0]) for k in ("VmRSS", "RssAnon", "RssShmem", "VmHWM")}
        cpu = (int(stat[11]) + int(stat[12])) / tick
        f.write(f"{time.time():.3f} {kb['VmRSS']} {kb['RssAnon']} {kb['RssShmem']} {kb['VmHWM']} {cpu:.2f}\n")
        time.sleep(interval)
