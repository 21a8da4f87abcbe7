#!/usr/bin/python3
"""Webhook receiver for bench/delivery's latency run: notes when each event arrives.

Usage: receiver.py PORT OUT_FILE READY_FILE
HTTP/1.1 with keep-alive (Content-Length or chunked bodies, Expect: 100-continue), answers 204
to every POST. For each event of each request body ({"events": [...]}) it records the event's
row key ("key": {"id": N}) and the arrival time (time.monotonic(), the system-wide
CLOCK_MONOTONIC that the driver uses too) taken as soon as the whole body is read. On SIGTERM it
writes "key arrival_s event_id" lines to OUT_FILE, a summary JSON object to OUT_FILE.json, and
exits.
"""
import asyncio
import json
import signal
import sys
import time

arrivals = []          # (key, arrival, event id)
stats = {"requests": 0, "events": 0, "bad_requests": 0, "max_batch": 0}


async def read_body(reader, headers):
    length = headers.get("content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return b""


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ", 1)[0]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            if headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await read_body(reader, headers)
            now = time.monotonic()
            stats["requests"] += 1
            if method == "POST":
                try:
                    events = json.loads(body)["events"]
                    stats["events"] += len(events)
                    stats["max_batch"] = max(stats["max_batch"], len(events))
                    for e in events:
                        key = e.get("key")
                        arrivals.append((key.get("id") if isinstance(key, dict) else None,
                                         now, e.get("id")))
                except (ValueError, KeyError, TypeError, AttributeError):
                    stats["bad_requests"] += 1
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    port, out, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)
    with open(ready, "w") as f:
        f.write("ready\n")
    await stop.wait()
    server.close()
    with open(out, "w") as f:
        for key, arrival, event_id in arrivals:
            f.write(f"{key} {arrival:.6f} {event_id}\n")
    with open(out + ".json", "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    asyncio.run(main())
