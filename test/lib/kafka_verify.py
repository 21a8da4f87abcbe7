"""Checks what a Kafka topic holds against a tracked table (test/2xx_kafka*.sh).

    kafka_verify.py RECORDS ROWS TABLE PARTITIONS [MAX_DUPLICATES [CRASH_MS]]

RECORDS: the topic as kcat -J prints it (one envelope per line, partition by partition in offset
order). ROWS: "id<TAB>v" per row of the table, where every change bumped v by one, so that a
key's committed versions are exactly 1..v. Checks, for the events of TABLE:
  - every record: key = the event's key object as compact JSON, headers id/op/table = the
    event's, partition = where a Java producer puts the key (murmur2, written here from Kafka's
    definition and checked against Kafka's own test vectors);
  - nothing lost: versions 1..v of every key arrived; nothing else (uncommitted) did;
  - per-key order: in its partition, the first deliveries of a key's events are in id order;
  - duplicates (the same event id twice) are identical and at most MAX_DUPLICATES (default 0);
    with CRASH_MS (unix ms), each was first written before it (a record's timestamp is when the
    worker handed it to librdkafka): only what was in flight at a crash arrives twice.
"""
import json
import sys
from collections import defaultdict


def murmur2(data: bytes) -> int:
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail, rest = length & ~3, length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


# org.apache.kafka.common.utils.UtilsTest#testMurmur2
for text, expected in [("21", -973932308), ("foobar", -790332482), ("a-little-bit-long-string", -985981536),
                       ("a-little-bit-longer-string", -1486304829), ("abc", 479470107)]:
    assert murmur2(text.encode()) == expected, text


def main():
    records_file, rows_file, table, partitions = sys.argv[1:5]
    partitions = int(partitions)
    max_dups = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    crash_ms = int(sys.argv[6]) if len(sys.argv) > 6 else None
    first_ts = {}
    rows = {}
    with open(rows_file) as f:
        for line in f:
            k, v = line.split("\t")
            rows[int(k)] = int(v)
    problems = []
    first, count = {}, defaultdict(int)
    order = defaultdict(list)  # (partition, key id) -> first-delivered ids in offset order
    n_records = 0
    with open(records_file, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            e = json.loads(rec["payload"])
            if e.get("table") != table:
                continue
            n_records += 1
            key = json.dumps(e["key"], separators=(",", ":"))
            h = rec.get("headers") or []
            headers = dict(zip(h[0::2], h[1::2]))
            if rec["key"] != key:
                problems.append(f"event {e['id']}: record key {rec['key']!r}, event key {key!r}")
            if headers.get("id") != str(e["id"]) or headers.get("op") != e["op"] or headers.get("table") != table:
                problems.append(f"event {e['id']}: headers {headers}")
            want = (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
            if rec["partition"] != want:
                problems.append(f"event {e['id']} key {key}: partition {rec['partition']}, a Java producer uses {want}")
            count[e["id"]] += 1
            if e["id"] in first:
                if first[e["id"]] != e:
                    problems.append(f"event {e['id']} differs between its deliveries")
                continue
            first[e["id"]] = e
            first_ts[e["id"]] = rec["ts"]
            order[(rec["partition"], e["key"]["id"])].append(e["id"])
    versions = defaultdict(list)
    for e in first.values():
        if e["op"] not in ("insert", "update"):
            problems.append(f"unexpected event {e}")
            continue
        versions[e["key"]["id"]].append(e["new"]["v"])
    lost, phantom = [], []
    for k, v in rows.items():
        got = versions.get(k, [])
        lost += [(k, x) for x in range(1, v + 1) if x not in got]
        phantom += [(k, x) for x in got if not 1 <= x <= v]
        if len(got) != len(set(got)):
            problems.append(f"key {k}: a version in two events: {sorted(got)}")
    phantom += [(k, x) for k in versions if k not in rows for x in versions[k]]
    if lost:
        problems.append(f"{len(lost)} committed versions never delivered, e.g. (key, v) {lost[:10]}")
    if phantom:
        problems.append(f"{len(phantom)} delivered versions that were never committed, e.g. {phantom[:10]}")
    for (p, k), ids in order.items():
        if ids != sorted(ids):
            problems.append(f"partition {p} key {k}: first deliveries out of id order: {ids}")
            break
    dups = {i: c for i, c in count.items() if c > 1}
    if len(dups) > max_dups:
        problems.append(f"{len(dups)} events delivered more than once (at most {max_dups} were in flight)")
    if crash_ms is not None:
        late = sorted(i for i in dups if first_ts[i] >= crash_ms)
        if late:
            problems.append(f"duplicates first written after the crash: {late[:20]}")
    used = {p for (p, _) in order}
    print(f"{table}: {len(rows)} keys, {sum(rows.values())} committed versions, {n_records} records, "
          f"{len(first)} events in {len(used)} partitions, {sum(c - 1 for c in dups.values())} duplicate records "
          f"of {len(dups)} events" + (f" (ids {sorted(dups)[:20]})" if dups else ""))
    for p in problems[:20]:
        print("  " + p, file=sys.stderr)
    sys.exit(1 if problems else 0)


main()
