#!/usr/bin/python3
"""A real HTTP/1.1 webhook receiver for the pg_sync integration tests (stdlib only).

Threaded, keep-alive, bound to 127.0.0.1. Every request other than the two control paths is
logged as one JSON line in --out (flushed at once) and answered according to the current
behaviour, which POST /_control switches at run time:

  ok            answer the ok status (204, or --ok-status / "status")
  status        answer "status" (default 500); 301/302/303/307/308 carry
                Location: http://127.0.0.1:PORT/redirected (or "location"), and requests to
                /redirected are then answered ok so a followed redirect is visible in the log
  retry_after   like status, default 429; "retry_after" (any string) is sent as Retry-After
  stall         read the request, hold it "seconds" (default 30), then answer ok; if the client
                hangs up first the request is logged with status null
  drop          read the request, close the connection without an answer (status null)
  fail_first    answer "status" (default 500) to the first "n" requests (default 1), then ok
  fail_rate     answer "status" (default 500) to a fraction "p" of requests (random, "seed")

"retry_after" adds Retry-After to any non-2xx answer; "body_bytes" sets the size of every
answer's body (not for 204). "kill_pids" (a list of PIDs, with any mode) makes the receiver send
SIGKILL to each of them, in list order, right after it has written its "kill_after"-th (default 1)
2xx answer since the behaviour was set (crash tests: a kill between the receiver's 2xx and the
client's reaction to it); with "kill_freeze": true it sends them SIGSTOP before writing that
answer, so that none of them can act on it before the SIGKILL. It fires once, and GET /_stats
lists it under "kills" (the request's log number n, time, event ids, freeze, and kill errors).
Control: POST /_control {"mode": ..., options} replaces the whole behaviour (and restarts
fail_first's count); {"secret": S or null} and {"ok_status": N} may come alone or with a mode.
A body that is a CloudEvents JSON batch (an array of CloudEvents) is logged with "cloudevents"
(the array) and "events" (the data of each). GET /_stats returns counters over the whole --out file (a restarted receiver appending to the
same file continues them). Control requests are never logged.
"""

import argparse
import json
import os
import random
import select
import signal
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import webhook_verify  # noqa: E402

MODES = ("ok", "status", "retry_after", "stall", "drop", "fail_first", "fail_rate")
OPTIONS = ("status", "retry_after", "seconds", "n", "p", "seed", "body_bytes", "location", "kill_pids",
           "kill_after", "kill_freeze")
REDIRECTS = (301, 302, 303, 307, 308)
REDIRECT_PATH = "/redirected"


def _int(spec, key, lo, hi):
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{key} must be an integer in [{lo}, {hi}]")
    return value


def _number(spec, key, lo, hi):
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{key} must be a number in [{lo}, {hi}]")
    return value


def parse_behaviour(spec):
    """Validates a behaviour ({"mode": ..., options}); unknown keys are errors so typos in a
    test fail loudly instead of silently testing the wrong thing."""
    if spec.get("mode") not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    unknown = set(spec) - set(OPTIONS) - {"mode"}
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
    b = dict(spec)
    if "status" in b:
        _int(b, "status", 200, 599)
    if "retry_after" in b:
        if b["retry_after"] is None:
            del b["retry_after"]
        else:
            b["retry_after"] = str(b["retry_after"])
            if "\r" in b["retry_after"] or "\n" in b["retry_after"]:
                raise ValueError("retry_after may not contain CR or LF")
    if "location" in b and not isinstance(b["location"], str):
        raise ValueError("location must be a string")
    for key, lo, hi in (("n", 0, 10**9), ("seed", -2**63, 2**63), ("body_bytes", 0, 1 << 30)):
        if key in b:
            _int(b, key, lo, hi)
    if "seconds" in b:
        _number(b, "seconds", 0, 86400)
    if "p" in b:
        _number(b, "p", 0, 1)
    if "kill_pids" in b:
        pids = b["kill_pids"]
        if not isinstance(pids, list) or not pids or not all(
                isinstance(p, int) and not isinstance(p, bool) and 1 < p < 2**31 for p in pids):
            raise ValueError("kill_pids must be a non-empty list of process ids (> 1)")
    if "kill_after" in b:
        if "kill_pids" not in b:
            raise ValueError("kill_after needs kill_pids")
        _int(b, "kill_after", 1, 10**9)
    if "kill_freeze" in b:
        if "kill_pids" not in b:
            raise ValueError("kill_freeze needs kill_pids")
        if not isinstance(b["kill_freeze"], bool):
            raise ValueError("kill_freeze must be true or false")
    return b


class State:
    """Behaviour, secret, counters and the log file, all under one lock so a request sees one
    consistent behaviour and /_stats always agrees with the file."""

    def __init__(self, out_path, behaviour, ok_status, secret):
        self.lock = threading.Lock()
        self.ok_status = ok_status
        self.secret = secret
        self.in_flight = 0
        self.requests = 0
        self.by_status = {}
        self.events_2xx = 0
        self.verify_failures = 0
        self.kills = []  # fired kill_pids (see the module docstring)
        self._set_behaviour(behaviour)
        if os.path.exists(out_path):  # a restarted receiver continues its file and counters
            with open(out_path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        self._count(json.loads(line))
        self.out = open(out_path, "a", encoding="utf-8")

    def _set_behaviour(self, behaviour):
        self.behaviour = behaviour
        self.seen = 0  # requests since this behaviour was set (fail_first)
        self.answered_2xx = 0  # 2xx answers decided since this behaviour was set (kill_after)
        self.rng = random.Random(behaviour.get("seed", 0))

    def control(self, spec):
        with self.lock:
            behaviour = spec.get("mode") is not None or any(k in spec for k in OPTIONS)
            new = parse_behaviour({k: v for k, v in spec.items()
                                   if k not in ("secret", "ok_status")}) if behaviour else None
            if "ok_status" in spec:
                ok_status = _int(spec, "ok_status", 200, 299)
            if "secret" in spec and spec["secret"] is not None:
                if not isinstance(spec["secret"], str):
                    raise ValueError("secret must be a string or null")
                webhook_verify._secret_key(spec["secret"])  # reject a malformed secret now
            # Validated; now apply all of it.
            if new is not None:
                self._set_behaviour(new)
            if "ok_status" in spec:
                self.ok_status = ok_status
            if "secret" in spec:
                self.secret = spec["secret"]
            return {"mode": self.behaviour["mode"], "options": self.behaviour,
                    "ok_status": self.ok_status, "secret": self.secret is not None}

    def decide(self, path, port):
        """Returns (action, status, headers, seconds, body_bytes, mode) for one request; action is
        "answer", "stall" or "drop"."""
        with self.lock:
            b = self.behaviour
            self.seen += 1
            mode, ok = b["mode"], b.get("status", self.ok_status)
            status, headers, seconds = self.ok_status, [], 0
            if mode == "ok":
                status = ok
            elif mode in ("status", "retry_after"):
                status = b.get("status", 500 if mode == "status" else 429)
                if status in REDIRECTS:
                    if path == REDIRECT_PATH:
                        status = self.ok_status
                    else:
                        location = b.get("location", f"http://127.0.0.1:{port}{REDIRECT_PATH}")
                        headers.append(("Location", location))
            elif mode == "stall":
                status, seconds = ok, b.get("seconds", 30)
            elif mode == "fail_first":
                if self.seen <= b.get("n", 1):
                    status = b.get("status", 500)
            elif mode == "fail_rate":
                if self.rng.random() < b.get("p", 0.5):
                    status = b.get("status", 500)
            if "retry_after" in b and not 200 <= status < 300:
                headers.append(("Retry-After", b["retry_after"]))
            action = {"stall": "stall", "drop": "drop"}.get(mode, "answer")
            return action, status, headers, seconds, b.get("body_bytes"), mode

    def take_kill(self, status):
        """For a request about to be answered `status`: (PIDs to kill after the answer, whether
        to freeze them before it), once (kill_pids), or None."""
        with self.lock:
            b = self.behaviour
            if "kill_pids" not in b or not 200 <= status < 300:
                return None
            self.answered_2xx += 1
            if self.answered_2xx < b.get("kill_after", 1):
                return None
            self.behaviour = {k: v for k, v in b.items() if not k.startswith("kill_")}
            return list(b["kill_pids"]), b.get("kill_freeze", False)

    def record_kill(self, entry):
        with self.lock:
            self.kills.append(entry)

    def _count(self, rec):
        self.requests += 1
        key = str(rec["status"]) if rec["status"] is not None else "null"
        self.by_status[key] = self.by_status.get(key, 0) + 1
        if rec["status"] is not None and 200 <= rec["status"] < 300 and rec["events"]:
            self.events_2xx += len(rec["events"])
        if rec["verified"] is False:
            self.verify_failures += 1

    def log(self, rec):
        with self.lock:
            rec["n"] = self.requests + 1
            self._count(rec)
            self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self.out.flush()

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "by_status": dict(self.by_status),
                    "events_2xx": self.events_2xx, "mode": self.behaviour["mode"],
                    "options": self.behaviour, "in_flight": self.in_flight,
                    "verify_failures": self.verify_failures, "kills": list(self.kills)}

    def add_in_flight(self, delta):
        with self.lock:
            self.in_flight += delta


def _reject_constant(name):
    raise ValueError(f"non-JSON constant {name}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pg_sync-test-receiver"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    def do_POST(self):
        self._handle()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self._read_exact(size))
                self.rfile.readline(1024)
        return self._read_exact(int(self.headers.get("Content-Length") or 0))

    def _read_exact(self, n):
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise ConnectionError("client closed the connection mid-body")
        return data

    def _handle(self):
        t = time.time()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True  # unreadable or truncated request: nothing to log
            return
        path = self.path.split("?", 1)[0]
        if path in ("/_control", "/_stats"):
            return self._control(path, body)

        state = self.server.state
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        rec = {"n": None, "t": t, "method": self.command, "path": path, "status": None,
               "mode": None, "headers": headers, "verified": None, "verify_error": None,
               "body_ok": False, "body_len": len(body), "events": None}
        secret = state.secret
        if secret is not None:
            try:
                webhook_verify.verify(secret, self.headers, body)
                rec["verified"] = True
            except webhook_verify.VerificationError as e:
                rec["verified"], rec["verify_error"] = False, e.reason
        try:
            doc = json.loads(body, parse_constant=_reject_constant)
            if isinstance(doc, dict) and isinstance(doc.get("events"), list):
                rec["body_ok"], rec["events"] = True, doc["events"]
            elif isinstance(doc, list) and all(isinstance(e, dict) and "specversion" in e for e in doc):
                # A CloudEvents JSON batch (format => 'cloudevents'): the events are the data of
                # each CloudEvent; the CloudEvents themselves are kept for the test to check.
                rec["body_ok"], rec["cloudevents"] = True, doc
                rec["events"] = [e.get("data") for e in doc]
        except ValueError:
            pass
        if not rec["body_ok"]:
            rec["body_text"] = body[:2000].decode("utf-8", "replace")

        action, status, extra, seconds, body_bytes, rec["mode"] = \
            state.decide(path, self.server.server_address[1])
        if action == "drop":
            state.log(rec)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.connection.close()
            return
        if action == "stall":
            state.add_in_flight(1)
            try:
                answered = self._hold(seconds)
            finally:
                state.add_in_flight(-1)
            if not answered:
                state.log(rec)  # status stays null: the client gave up
                self.close_connection = True
                return
        # Logged before answering, so once the client has its 2xx the line is in the file.
        rec["status"] = status
        kill = state.take_kill(status)
        state.log(rec)
        if kill is not None and kill[1]:
            for pid in kill[0]:
                try:
                    os.kill(pid, signal.SIGSTOP)
                except OSError:
                    pass  # reported by _kill
        self._answer(status, extra, body_bytes)
        if kill is not None:
            self._kill(rec, *kill)

    def _kill(self, rec, pids, freeze):
        """SIGKILL to each of pids, at once after the answer left (the answer is written straight
        to the socket: wfile is unbuffered)."""
        t, errors = time.time(), []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError as e:
                errors.append(f"{pid}: {e.strerror}")
        self.server.state.record_kill({"n": rec["n"], "t": t, "pids": pids, "freeze": freeze, "errors": errors,
                                       "ids": [e.get("id") for e in rec["events"] or [] if isinstance(e, dict)]})

    def _hold(self, seconds):
        """Sleeps `seconds`; returns False as soon as the client hangs up."""
        deadline = time.monotonic() + seconds
        watching = True
        while (left := deadline - time.monotonic()) > 0:
            if not watching:
                time.sleep(left)
                break
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return False
                except OSError:
                    return False
                watching = False  # the client sent more bytes; hang-ups are no longer visible
        return True

    def _answer(self, status, headers, body_bytes):
        if status == 204:
            body = b""
        elif body_bytes is not None:
            body = b"x" * body_bytes
        else:
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Status"
            body = f"{status} {phrase}\n".encode()
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            if status != 204:  # RFC 9110: no Content-Length on 204
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 65536):
                self.wfile.write(body[i:i + 65536])
        except OSError:
            self.close_connection = True  # the client went away (e.g. capped its read)

    def _json(self, status, doc):
        body = (json.dumps(doc) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _control(self, path, body):
        state = self.server.state
        if path == "/_stats" and self.command == "GET":
            return self._json(200, state.stats())
        if path == "/_control" and self.command == "POST":
            try:
                spec = json.loads(body)
                if not isinstance(spec, dict):
                    raise ValueError("control body must be a JSON object")
                return self._json(200, state.control(spec))
            except ValueError as e:
                return self._json(400, {"error": str(e)})
            except webhook_verify.VerificationError as e:
                return self._json(400, {"error": e.reason})
        return self._json(405, {"error": "GET /_stats or POST /_control"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # a burst of parallel worker connections must not be refused


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="written (atomically) with the port once listening")
    ap.add_argument("--out", required=True, help="JSONL log, appended to")
    ap.add_argument("--secret", help="verify every request's Standard Webhooks signature")
    ap.add_argument("--ok-status", type=int, default=204)
    ap.add_argument("--mode", default="ok", choices=MODES)
    ap.add_argument("--status", type=int)
    ap.add_argument("--retry-after")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--n", type=int)
    ap.add_argument("--p", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--body-bytes", type=int)
    ap.add_argument("--location")
    ap.add_argument("--idle-timeout", type=float, default=300,
                    help="close a connection idle this long (seconds)")
    ap.add_argument("--exit-with-pid", type=int,
                    help="exit when this process is gone (so a killed test leaves no receiver)")
    ap.add_argument("--verbose", action="store_true", help="access log on stderr")
    args = ap.parse_args()

    spec = {"mode": args.mode}
    for key in OPTIONS:
        if getattr(args, key, None) is not None:  # kill_*: /_control only
            spec[key] = getattr(args, key)
    if args.secret is not None:
        webhook_verify._secret_key(args.secret)
    state = State(args.out, parse_behaviour(spec), args.ok_status, args.secret)

    Handler.timeout = args.idle_timeout
    server = Server(("127.0.0.1", args.port), Handler)
    server.state, server.verbose = state, args.verbose
    port = server.server_address[1]
    if args.port_file:
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)

    def on_term(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if args.exit_with_pid:
        def watch():
            while True:
                time.sleep(0.5)
                try:
                    os.kill(args.exit_with_pid, 0)
                except ProcessLookupError:
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                except PermissionError:
                    pass
        threading.Thread(target=watch, daemon=True).start()

    print(f"receiver listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        with state.lock:  # never cut a log line in half
            state.out.close()
            # Exit now: held (stalled) connections must not delay shutdown.
            os._exit(0)


if __name__ == "__main__":
    main()
