#!/usr/bin/python3
"""Runs the flaky receiver of bench/soak (test/lib/receiver.py) and restarts it now and then.

Usage: chaos.py --port PORT --dir DIR --every S --down S --signals TERM,KILL
                [--exit-with-pid PID] -- RECEIVER_ARGS...

Starts receiver.py on 127.0.0.1:PORT with RECEIVER_ARGS (plus --port, --port-file, --out,
--exit-with-pid of this process, and --seed N so that every incarnation draws its own failures),
logging to DIR/flaky.N.jsonl (N = 0, 1, ...: a fresh file per incarnation, so a restart never
re-reads a large log). Once told to begin (SIGUSR2, sent when the writes start), every S seconds
it stops the receiver with the next signal
of --signals (in turn), waits until the process is gone, leaves the port closed for --down seconds
and starts a new receiver on the same port, waiting until it answers GET /_stats. Each restart is
one JSON line in DIR/restarts.jsonl: n, signal, t_signal (unix time the signal was sent), t_gone,
t_ready (the new receiver answers). DIR/flaky.pid holds the running receiver's pid.

SIGUSR1: stop restarting (a restart under way is completed, so the receiver is up); then
DIR/chaos.idle is created. SIGTERM / SIGINT: stop the receiver (SIGTERM) and exit.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

RECEIVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "lib",
                        "receiver.py")
SIGNALS = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL, "INT": signal.SIGINT}

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--dir", required=True)
ap.add_argument("--every", type=float, required=True)
ap.add_argument("--down", type=float, default=2)
ap.add_argument("--signals", default="TERM,KILL")
ap.add_argument("--exit-with-pid", type=int)
ap.add_argument("receiver_args", nargs=argparse.REMAINDER)
args = ap.parse_args()
rargs = [a for a in args.receiver_args if a != "--"]
signals = [s.strip().upper() for s in args.signals.replace(" ", ",").split(",") if s.strip()]
for s in signals:
    if s not in SIGNALS:
        sys.exit(f"chaos.py: unknown signal {s} (TERM, KILL, INT)")

stop_restarting = False
terminate = False
t0 = None   # monotonic time of SIGUSR2: the restart schedule starts there


def on_usr1(*_):
    global stop_restarting
    stop_restarting = True


def on_usr2(*_):
    global t0
    if t0 is None:
        t0 = time.monotonic()


def on_term(*_):
    global terminate
    terminate = True


signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGUSR2, on_usr2)
signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
log = open(os.path.join(args.dir, "chaos.log"), "a", buffering=1)


def say(msg):
    log.write(f"{time.time():.3f} {msg}\n")


def answers():
    try:
        with opener.open(f"http://127.0.0.1:{args.port}/_stats", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def start(n):
    """Starts incarnation n and waits until it answers; returns the Popen."""
    port_file = os.path.join(args.dir, f"flaky.{n}.port")
    out = os.path.join(args.dir, f"flaky.{n}.jsonl")
    for attempt in range(20):
        stderr = open(os.path.join(args.dir, "flaky.stderr"), "a")
        p = subprocess.Popen([sys.executable, RECEIVER, "--port", str(args.port), "--port-file",
                              port_file, "--out", out, "--exit-with-pid", str(os.getpid()),
                              "--seed", str(1000 + n), *rargs],
                             stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
        stderr.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if p.poll() is not None:
                break  # e.g. the port is not free yet: try again
            if os.path.exists(port_file) and answers():
                say(f"receiver {n} pid {p.pid} up")
                with open(os.path.join(args.dir, "flaky.pid.tmp"), "w") as f:
                    f.write(f"{p.pid}\n")
                os.replace(os.path.join(args.dir, "flaky.pid.tmp"), os.path.join(args.dir, "flaky.pid"))
                return p
            time.sleep(0.02)
        if p.poll() is None:
            p.kill()
            p.wait()
        say(f"receiver {n} did not start (attempt {attempt + 1})")
        time.sleep(0.5)
    sys.exit(f"chaos.py: the flaky receiver would not start on port {args.port}")


def stop(p, sig):
    p.send_signal(sig)
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def sleep_until(t):
    """Sleeps until time.monotonic() >= t or a signal asks for something; False if interrupted."""
    while time.monotonic() < t:
        if terminate or stop_restarting:
            return False
        if args.exit_with_pid:
            try:
                os.kill(args.exit_with_pid, 0)
            except ProcessLookupError:
                on_term()
                return False
            except PermissionError:
                pass
        time.sleep(min(0.1, max(0.0, t - time.monotonic())))
    return True


n = 0
proc = start(n)
restarts = open(os.path.join(args.dir, "restarts.jsonl"), "a", buffering=1)
while not terminate:
    if stop_restarting:
        open(os.path.join(args.dir, "chaos.idle"), "w").close()
        say("idle")
        while not terminate:
            if args.exit_with_pid:
                try:
                    os.kill(args.exit_with_pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
            time.sleep(0.1)
        break
    if t0 is None:
        sleep_until(time.monotonic() + 0.1)
        continue
    if not sleep_until(t0 + (n + 1) * args.every):
        continue
    name = signals[n % len(signals)]
    t_signal = time.time()
    stop(proc, SIGNALS[name])
    t_gone = time.time()
    say(f"receiver {n} stopped with SIG{name}")
    n += 1
    time.sleep(args.down)  # the port stays closed; completed even when asked to stop restarting
    proc = start(n)
    t_ready = time.time()
    restarts.write(json.dumps({"n": n, "signal": name, "t_signal": round(t_signal, 3),
                               "t_gone": round(t_gone, 3), "t_ready": round(t_ready, 3)}) + "\n")

stop(proc, signal.SIGTERM)
say("stopped")
