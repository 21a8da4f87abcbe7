#!/usr/bin/python3
"""Paced writer for bench/delivery's latency run.

Usage: driver.py TABLE RATE DURATION_S CONNECTIONS OUT_FILE   (PG* environment variables pick
the database)
Inserts RATE rows per second for DURATION_S seconds into TABLE, each row its own autocommit
INSERT, row i due at start + i / RATE (open loop: a late row does not shift the ones after it),
spread over CONNECTIONS connections (threads; psycopg2 releases the GIL while it waits for the
server). Right after each INSERT returns (the commit is done) it notes time.monotonic(). Writes
"id commit_s due_s" lines to OUT_FILE and prints one JSON object: rows, seconds, rate, late_ms
p99 (how far behind schedule the INSERTs started).
"""
import json
import sys
import threading
import time

import psycopg2

INSERT = ("INSERT INTO {} (id, customer_id, status, amount, note) "
          "VALUES (%s, %s, 'new', 9.99, 'order note')")


def main():
    table, rate, duration, nconn, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), \
        int(sys.argv[4]), sys.argv[5]
    total = int(rate * duration)
    sql = INSERT.format(table)
    conns = []
    for _ in range(nconn):
        c = psycopg2.connect("")
        c.autocommit = True
        conns.append(c)
    lock = threading.Lock()
    next_row = [0]
    results = [[] for _ in range(nconn)]
    start = time.monotonic() + 0.1

    def run(slot):
        cur = conns[slot].cursor()
        mine = results[slot]
        while True:
            with lock:
                i = next_row[0]
                next_row[0] += 1
            if i >= total:
                return
            due = start + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            began = time.monotonic()
            cur.execute(sql, (i + 1, i % 1000))
            mine.append((i + 1, time.monotonic(), due, began))

    threads = [threading.Thread(target=run, args=(s,)) for s in range(nconn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.monotonic()
    rows = sorted(r for rs in results for r in rs)
    with open(out, "w") as f:
        for id_, commit, due, _ in rows:
            f.write(f"{id_} {commit:.6f} {due:.6f}\n")
    late = sorted(began - due for _, _, due, began in rows)
    print(json.dumps({
        "rows": len(rows), "seconds": round(end - start, 3),
        "rate": round(len(rows) / (end - start), 1),
        "late_ms_p99": round(late[int(len(late) * 0.99)] * 1000, 2) if late else None}))
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
