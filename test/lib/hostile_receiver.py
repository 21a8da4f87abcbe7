#!/usr/bin/python3
"""A hostile HTTP server for the pg_sync integration tests (stdlib only, raw sockets).

It speaks just enough HTTP/1.1 to read a request (head up to 64 kB, Content-Length body), then
answers according to the behaviour in --mode-file (JSON, re-read for every request, so a test
switches it by replacing the file atomically). One thread per connection. Behaviours
({"mode": ..., options}):

  ok        a well-formed answer, keep-alive: "status" (default 204)
  status    "status" (default 500), plus Retry-After: "retry_after" when given (any string,
            sent as it is), empty body, keep-alive
            (ok and status: "close": true answers with Connection: close and closes instead)
  endless   status line "status" (default 500), chunked body of "chunk" bytes (default 65536)
            per chunk, forever (until the client hangs up)
  headers   status line "status" (default 200), then header lines of "line" bytes (default 1000)
            forever: the header block never ends
  huge      status "status" (default 500), Content-Length "bytes" (default 8 MiB), all sent
  drip      a valid 200 response with a "bytes"-byte body (default 4096), one byte every
            "interval" seconds (default 0.2)
  garbage   sends "raw" (default a status line that is not HTTP) as it is, then waits up to
            "hold" seconds (default 10) for the client to hang up, then closes
  reset     sends part of a response, then resets the connection (SO_LINGER 0: RST, not FIN):
            "at": "headers" (default: in the middle of the header block) or "body" (after the
            headers of a 200 with Content-Length 10000 and 1000 bytes of the body)
  silent    reads the request and never answers; holds the connection until the client hangs up
            ("read": false: does not even read the request)

Every request is logged as two JSON lines in --out (flushed at once): {"ev": "begin", "conn",
"req", "t", "path", "mode", "ids"} when its head and body have been read (for silent with read
false: at accept), and {"ev": "end", "conn", "req", "t", "mode", "outcome", "status", "sent",
"ids"} when it is over: outcome "answered" (a complete, well-formed answer went out),
"cut" (the client hung up while we were sending, or before we answered), "reset" (we reset it),
"closed" (garbage sent, then closed). Events of a request count as delivered when its (last)
end line has mode ok, outcome answered and a 2xx status. Answers of ok and status are logged just
before they are sent, so the line is there by the time the client has the answer.
"""

import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

MODES = ("ok", "status", "endless", "headers", "huge", "drip", "garbage", "reset", "silent")
DEFAULT_GARBAGE = "SSH-2.0-OpenSSH_9.2p1 not-http\r\n\r\n"


class Log:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.out = open(path, "a", encoding="utf-8")
        self.conns = 0

    def next_conn(self):
        with self.lock:
            self.conns += 1
            return self.conns

    def write(self, rec):
        with self.lock:
            self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")
            self.out.flush()


def read_behaviour(path, fallback):
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return fallback
    if not isinstance(spec, dict) or spec.get("mode") not in MODES:
        return fallback
    return spec


class ClientGone(Exception):
    pass


class Conn:
    def __init__(self, sock, server):
        self.sock = sock
        self.server = server
        self.buf = b""
        self.sent = 0

    def recv_more(self):
        data = self.sock.recv(65536)
        if not data:
            raise ClientGone()
        self.buf += data

    def read_request(self):
        """Returns (path, body), or None when the client closed the connection between requests."""
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise ClientGone()
            try:
                self.recv_more()
            except ClientGone:
                if not self.buf:
                    return None
                raise
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        path = parts[1] if len(parts) >= 2 else "?"
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > 64 << 20:
            raise ClientGone()
        while len(self.buf) < length:
            self.recv_more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return path, body

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise ClientGone() from e
        self.sent += len(data)

    def wait_hangup(self, seconds):
        """Waits until the client closes (True) or `seconds` pass (False)."""
        self.sock.settimeout(0.05)
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                try:
                    if not self.sock.recv(65536):
                        return True
                except socket.timeout:
                    continue
                except OSError:
                    return True
            return False
        finally:
            self.sock.settimeout(self.server.io_timeout)

    def reset(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def event_ids(body):
    try:
        doc = json.loads(body)
        return [e["id"] for e in doc["events"]]
    except (ValueError, KeyError, TypeError):
        return None


def reason(status):
    return {200: "OK", 204: "No Content", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}.get(status, "Status")


def serve(sock, server):
    c = Conn(sock, server)
    conn = server.log.next_conn()
    req = 0
    try:
        while True:
            b = read_behaviour(server.mode_file, server.initial)
            mode = b["mode"]
            req += 1
            t = time.time()
            if mode == "silent" and b.get("read") is False:
                server.log.write({"ev": "begin", "conn": conn, "req": req, "t": t, "path": None,
                                  "mode": mode, "ids": None})
                gone = c.wait_hangup(86400)
                server.log.write({"ev": "end", "conn": conn, "req": req, "t": time.time(), "mode": mode,
                                  "outcome": "cut" if gone else "held", "status": None, "sent": 0, "ids": None})
                return
            r = c.read_request()
            if r is None:
                return
            path, body = r
            ids = event_ids(body)
            # The behaviour that applies is the one in force once the request is in.
            b = read_behaviour(server.mode_file, server.initial)
            mode = b["mode"]
            server.log.write({"ev": "begin", "conn": conn, "req": req, "t": time.time(), "path": path,
                              "mode": mode, "ids": ids})
            end = {"ev": "end", "conn": conn, "req": req, "mode": mode, "outcome": "answered",
                   "status": None, "ids": ids}
            keep_alive = False
            try:
                if mode in ("ok", "status"):
                    status = int(b.get("status", 204 if mode == "ok" else 500))
                    end["status"] = status
                    head = f"HTTP/1.1 {status} {reason(status)}\r\n"
                    if "retry_after" in b:
                        head += f"Retry-After: {b['retry_after']}\r\n"
                    if status != 204:
                        head += "Content-Length: 0\r\n"
                    keep_alive = not b.get("close")
                    if not keep_alive:
                        head += "Connection: close\r\n"
                    data = (head + "\r\n").encode("latin-1")
                    # Logged before answering, so that once the client has its answer the line is
                    # in the file; should the send fail, the "cut" end line written after it wins.
                    server.log.write(dict(end, t=time.time(), sent=len(data)))
                    c.send(data)
                elif mode == "endless":
                    status = int(b.get("status", 500))
                    end["status"] = status
                    c.send(f"HTTP/1.1 {status} {reason(status)}\r\nContent-Type: text/plain\r\n"
                           f"Transfer-Encoding: chunked\r\n\r\n".encode())
                    n = int(b.get("chunk", 65536))
                    chunk = f"{n:x}\r\n".encode() + b"x" * n + b"\r\n"
                    while True:
                        c.send(chunk)
                elif mode == "headers":
                    status, n = int(b.get("status", 200)), int(b.get("line", 1000))
                    end["status"] = status
                    c.send(f"HTTP/1.1 {status} {reason(status)}\r\n".encode())
                    i = 0
                    while True:
                        i += 1
                        c.send(f"X-Pad-{i}: ".encode() + b"h" * n + b"\r\n")
                elif mode == "huge":
                    status, size = int(b.get("status", 500)), int(b.get("bytes", 8 << 20))
                    end["status"] = status
                    c.send(f"HTTP/1.1 {status} {reason(status)}\r\nContent-Type: text/plain\r\n"
                           f"Content-Length: {size}\r\n\r\n".encode())
                    block = b"y" * 65536
                    left = size
                    while left > 0:
                        c.send(block[:min(left, len(block))])
                        left -= min(left, len(block))
                    keep_alive = True
                elif mode == "drip":
                    size, interval = int(b.get("bytes", 4096)), float(b.get("interval", 0.2))
                    end["status"] = 200
                    data = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode() + b"z" * size
                    for i in range(len(data)):
                        c.send(data[i:i + 1])
                        if i + 1 < len(data) and c.wait_hangup(interval):
                            raise ClientGone()
                elif mode == "garbage":
                    c.send(b.get("raw", DEFAULT_GARBAGE).encode("latin-1"))
                    c.wait_hangup(float(b.get("hold", 10)))
                    end["outcome"] = "closed"
                    return
                elif mode == "reset":
                    if b.get("at", "headers") == "body":
                        end["status"] = 200
                        c.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10000\r\n\r\n"
                               + b"w" * 1000)
                    else:
                        c.send(b"HTTP/1.1 200 OK\r\nContent-Type: appl")
                    time.sleep(0.05)  # let the bytes arrive before the RST overtakes them
                    end["outcome"] = "reset"
                    c.reset()
                    return
                elif mode == "silent":
                    end["outcome"] = "cut" if c.wait_hangup(86400) else "held"
                    return
            except ClientGone:
                end["outcome"] = "cut"
                return
            finally:
                end["t"], end["sent"] = time.time(), c.sent
                c.sent = 0
                if mode not in ("ok", "status") or end["outcome"] != "answered":
                    server.log.write(end)
            if not keep_alive:
                return
    except (ClientGone, OSError, ValueError):
        return
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="127.0.0.1 or ::1 (loopback only)")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="written (atomically) with the port once listening")
    ap.add_argument("--out", required=True, help="JSONL log, appended to")
    ap.add_argument("--mode-file", required=True, help="JSON behaviour, re-read for every request")
    ap.add_argument("--mode", default="ok", choices=MODES, help="behaviour while --mode-file is missing")
    ap.add_argument("--exit-with-pid", type=int,
                    help="exit when this process is gone (so a killed test leaves no server)")
    args = ap.parse_args()
    if args.host not in ("127.0.0.1", "::1"):
        ap.error("--host must be a loopback address")

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(128)

    class Server:
        pass
    server = Server()
    server.log = Log(args.out)
    server.mode_file = args.mode_file
    server.initial = {"mode": args.mode}
    server.io_timeout = 60

    port = listener.getsockname()[1]
    if args.port_file:
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)

    def on_term(signum, frame):
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if args.exit_with_pid:
        def watch():
            while True:
                time.sleep(0.5)
                try:
                    os.kill(args.exit_with_pid, 0)
                except ProcessLookupError:
                    os._exit(0)
                except PermissionError:
                    pass
        threading.Thread(target=watch, daemon=True).start()

    print(f"hostile receiver listening on {args.host} port {port}", file=sys.stderr, flush=True)
    while True:
        sock, _ = listener.accept()
        sock.settimeout(server.io_timeout)
        threading.Thread(target=serve, args=(sock, server), daemon=True).start()


if __name__ == "__main__":
    main()
