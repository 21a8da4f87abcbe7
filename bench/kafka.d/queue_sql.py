#!/usr/bin/python3
"""The queue's own cost, for bench/kafka: read and delete the queued events of a (paused) endpoint
in plain SQL, as the worker does (heads in id order through the primary key, BATCH rows at a time,
every column read out as text, delivered rows deleted by TID, one commit per batch), with no sink
at all. A ceiling for any worker that reads and deletes every event in PostgreSQL.

Usage: queue_sql.py ENDPOINT EVENTS BATCH   (PG* environment variables pick the database).
Prints one JSON object: events, seconds, worker_cpu_s (utime + stime of the backend that ran it).
"""
import json
import os
import sys
import time

import psycopg2


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    endpoint, events, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT id FROM pg_sync._endpoints WHERE name = %s", (endpoint,))
    endpoint_id = cur.fetchone()[0]
    # The partitions holding the endpoint's rows (TIDs are per partition).
    cur.execute("SELECT DISTINCT tableoid::regclass::text FROM pg_sync._queue WHERE endpoint_id = %s", (endpoint_id,))
    parts = [r[0] for r in cur.fetchall()]
    cur.execute("SELECT count(*) FROM pg_sync._queue WHERE endpoint_id = %s", (endpoint_id,))
    if cur.fetchone()[0] != events:
        sys.exit(f"queue_sql: expected {events} events queued for {endpoint}")
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    body = "\n".join(f"""
  LOOP
    SELECT array_agg(h.ctid), count(*), sum(length(h.txt)) INTO tids, n, bytes
      FROM (SELECT ctid, concat_ws(',', id, op, tbl, key, new_row, old_row, emit_type, txid, captured_at,
                                  attempts, next_attempt_at) AS txt
              FROM {part} WHERE endpoint_id = {endpoint_id} ORDER BY endpoint_id, id LIMIT {batch}) h;
    EXIT WHEN n = 0;
    DELETE FROM {part} WHERE ctid = ANY (tids);
    COMMIT;
  END LOOP;""" for part in parts)
    sql = f"DO $$ DECLARE tids tid[]; n int; bytes int8; BEGIN {body}\nEND $$"
    # The queue's statement triggers make the worker recount every endpoint after a DELETE by
    # hand: off during the run (the worker deletes without them), then one recount.
    triggers = {}
    for part in parts:
        cur.execute("SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                    (part,))
        triggers[part] = cur.fetchall()
        for name, _ in triggers[part]:
            cur.execute(f'ALTER TABLE {part} DISABLE TRIGGER "{name}"')
    cpu0 = proc_cpu_seconds(pid)
    start = time.monotonic()
    cur.execute(sql)
    seconds = time.monotonic() - start
    cpu1 = proc_cpu_seconds(pid)
    for part in parts:
        for name, mode in triggers[part]:
            how = {"A": "ENABLE ALWAYS", "R": "ENABLE REPLICA", "D": "DISABLE"}.get(mode, "ENABLE")
            cur.execute(f'ALTER TABLE {part} {how} TRIGGER "{name}"')
        cur.execute(f"DELETE FROM {part} WHERE false")  # asks the worker for a recount
    cur.execute("SELECT count(*) FROM pg_sync._queue WHERE endpoint_id = %s", (endpoint_id,))
    left = cur.fetchone()[0]
    if left:
        sys.exit(f"queue_sql: {left} rows left")
    print(json.dumps({"events": events, "seconds": round(seconds, 4), "worker_cpu_s": round(cpu1 - cpu0, 2)}))


main()
