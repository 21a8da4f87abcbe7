"""Helpers shared by the reports of bench/growth and bench/scale (growth.d/report.py and
scale.d/report.py put this directory on sys.path)."""
import json
import os


def num(n):
    return "–" if n is None else f"{n:,}"


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_meta(work):
    """meta.txt of a run (key=value lines) and its settings line (key=value words)."""
    with open(os.path.join(work, "meta.txt")) as f:
        meta = dict(line.rstrip("\n").split("=", 1) for line in f)
    return meta, dict(kv.split("=", 1) for kv in meta["settings"].split())


def run_notes(meta, settings, skewed):
    """The warnings a report starts with (a busy machine, pg_sync.so replaced during the run) and
    its settings line, as Markdown lines; skewed names what a busy machine skews."""
    lines = []
    if int(meta.get("busy_start", 0)) > 10:
        lines += ["", f"**Warning: the machine was busy when the run started ({meta['busy_start']} "
                      f"% of all cores in use over one second); {skewed} are skewed by other "
                      f"work.**"]
    if meta.get("so_md5_end", meta["so_md5"]) != meta["so_md5"]:
        lines += ["", f"**Warning: pg_sync.so was replaced during the run (now "
                      f"{meta['so_md5_end']}).**"]
    lines += ["", f"Settings: {meta['settings']}." + (" **Quick mode (smoke test sizes).**"
                                                   if settings.get("quick") == "1" else "")]
    return lines


def fenced(lines):
    """Lines (JSON objects are dumped one a line) inside a Markdown code fence."""
    return ["```"] + [x if isinstance(x, str) else json.dumps(x) for x in lines] + ["```"]
