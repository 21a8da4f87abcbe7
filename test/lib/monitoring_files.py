"""Checks the monitoring files of docs/monitoring/ against a live server (test/130):

  monitoring_files.py POSTGRES_EXPORTER_YML SQL_EXPORTER_COLLECTOR_YML ALERTS_YML DASHBOARD_JSON
  monitoring_files.py --scrape POSTGRES_EXPORTER_YML METRICS_TEXT   (the real exporter's /metrics)

psql must reach a database with pg_sync as the role given by MONITOR_ROLE (a member of
pgsync_monitor). Every query of both exporter files runs, with rows; postgres_exporter.yml's
columns are exactly its metrics; in the sql_exporter collector every column a metric maps exists,
label columns are text, value columns numeric and never NULL, and no column is left unmapped
(sql_exporter refuses extra columns); both files run the same queries and produce the same metric
names with the same labels. Every metric the alert rules and the Grafana dashboard use is one
both files produce."""
import json, os, re, subprocess, sys
import yaml

TEXT = {"text", "character varying", "name"}
NUMERIC = {"smallint", "integer", "bigint", "numeric", "real", "double precision"}
role = os.environ.get("MONITOR_ROLE", "exporter")


def psql(sql):
    out = subprocess.run(["psql", "-X", "-q", "-At", "-U", role, "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def run(query):
    """(columns as [(name, type)], rows as dicts), the types from a temporary view of the query."""
    q = query.rstrip().rstrip(";")
    out = psql("BEGIN; CREATE TEMP VIEW monitoring_query AS " + q + ";"
               " SELECT json_build_object("
               "  'columns', (SELECT json_agg(json_build_array(attname, format_type(atttypid, atttypmod))"
               "                              ORDER BY attnum)"
               "               FROM pg_attribute WHERE attrelid = 'monitoring_query'::regclass AND attnum > 0),"
               "  'rows', (SELECT json_agg(m) FROM monitoring_query m)); ROLLBACK;")
    res = json.loads(out)
    return [tuple(c) for c in res["columns"]], res["rows"] or []


# PromQL: the metric names an expression selects (not functions, aggregations, keywords, labels).
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan"}


def promql_metrics(expr):
    m = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,.*\)\s*", expr)
    if m:  # Grafana's template query
        return {m.group(1)}
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for t in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[t.end():].lstrip().startswith("(") or t.group(0).lower() in KEYWORDS:
            continue
        names.add(t.group(0))
    return names


def dashboard_exprs(dash):
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash["panels"]):
        for t in p.get("targets", []):
            yield f"panel {p['title']!r}", t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            yield f"variable {v['name']}", q


def main(pe_path, se_path, alerts_path, dash_path):
    # postgres_exporter: columns are exactly the declared metrics, in order.
    pe = yaml.safe_load(open(pe_path))
    pe_metrics = {}  # name -> (type, labels)
    for group, spec in pe.items():
        declared = [next(iter(m)) for m in spec["metrics"]]
        columns, rows = run(spec["query"])
        assert rows, f"{pe_path} {group}: no rows"
        assert [c for c, _ in columns] == declared, f"{group}: columns {columns} != metrics {declared}"
        labels = sorted(next(iter(m)) for m in spec["metrics"] if next(iter(m.values()))["usage"] == "LABEL")
        for m in spec["metrics"]:
            name, info = next(iter(m.items()))
            if info["usage"] != "LABEL":
                pe_metrics[f"{group}_{name}"] = (info["usage"].lower(), labels)
        print(f"postgres_exporter {group}: {len(rows)} row(s): {rows[0]}")

    # sql_exporter collector.
    se = yaml.safe_load(open(se_path))
    assert se["collector_name"], "collector_name"
    queries = {q["query_name"]: q["query"] for q in se.get("queries", [])}
    se_metrics, used_columns = {}, {}
    for m in se["metrics"]:
        for key in ("metric_name", "type", "help", "values"):
            assert m.get(key), f"{se_path}: {m.get('metric_name')}: no {key}"
        assert m["type"] in ("gauge", "counter"), m
        assert len(m["values"]) == 1 or m.get("value_label"), f"{m['metric_name']}: several values need value_label"
        ref = m.get("query_ref") or m["metric_name"]
        if "query" in m:
            queries[ref] = m["query"]
        assert ref in queries, f"{m['metric_name']}: no query {ref}"
        used_columns.setdefault(ref, []).append(m)
        se_metrics[m["metric_name"]] = (m["type"], sorted(m.get("key_labels", [])))
    for ref, query in queries.items():
        columns, rows = run(query)
        types = dict(columns)
        assert rows, f"{se_path} {ref}: no rows"
        mapped = set()
        for m in used_columns.get(ref, []):
            for c in m.get("key_labels", []):
                assert c in types, f"{m['metric_name']}: label column {c} not returned by {ref} ({columns})"
                assert types[c] in TEXT, f"{m['metric_name']}: label column {c} is {types[c]}"
                assert all(r[c] is not None for r in rows), f"{m['metric_name']}: label {c} NULL"
                mapped.add(c)
            for c in m["values"]:
                assert c in types, f"{m['metric_name']}: value column {c} not returned by {ref} ({columns})"
                assert types[c] in NUMERIC, f"{m['metric_name']}: value column {c} is {types[c]}, not numeric"
                assert all(r[c] is not None for r in rows), f"{m['metric_name']}: value {c} NULL"
                mapped.add(c)
        extra = set(types) - mapped
        assert not extra, f"{se_path} {ref}: columns no metric maps (sql_exporter refuses them): {extra}"
        if ref in pe:
            assert query.strip() == pe[ref]["query"].strip(), f"{ref}: the two exporter files run different queries"
        print(f"sql_exporter {ref}: {len(rows)} row(s), columns {columns}")
    assert se_metrics == pe_metrics, ("the exporter files produce different metrics",
                                      set(se_metrics.items()) ^ set(pe_metrics.items()))
    produced = set(pe_metrics)

    # Alert rules and the dashboard use only those metrics.
    alerts = yaml.safe_load(open(alerts_path))
    for rule in alerts["groups"][0]["rules"]:
        used = promql_metrics(rule["expr"])
        assert used and used <= produced, f"{rule['alert']}: unknown metric in {rule['expr']}: {used - produced}"
    print(f"{len(alerts['groups'][0]['rules'])} alert rules use known metrics")
    # The extractor itself: it must see the metrics of a wrong expression.
    assert promql_metrics('sum by (endpoint) (rate(pg_sync_nope_total{endpoint=~"$e"}[5m])) / on (x) foo') == \
        {"pg_sync_nope_total", "foo"}
    dash = json.load(open(dash_path))
    used_all = set()
    for where, expr in dashboard_exprs(dash):
        used = promql_metrics(expr)
        assert used, f"dashboard {where}: no metric in {expr}"
        assert used <= produced, f"dashboard {where}: metrics no exporter file produces: {sorted(used - produced)}"
        used_all |= used
    for needed in ("pg_sync_endpoint_pending", "pg_sync_endpoint_lag_p50_seconds", "pg_sync_endpoint_lag_p99_seconds",
                   "pg_sync_endpoint_delivered_total", "pg_sync_endpoint_failed_attempts_total",
                   "pg_sync_endpoint_dead", "pg_sync_endpoint_circuit_open"):
        assert needed in used_all, f"the dashboard shows no {needed}"
    print(f"dashboard: {sum(1 for _ in dashboard_exprs(dash))} queries use {len(used_all)} metrics, all produced")


def check_scrape(pe_path, scrape_path):
    """Every metric of postgres_exporter.yml is in a /metrics scrape of the real exporter."""
    pe = yaml.safe_load(open(pe_path))
    names = {f"{g}_{next(iter(m))}" for g, spec in pe.items() for m in spec["metrics"]
             if next(iter(m.values()))["usage"] != "LABEL"}
    scraped = {re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", l).group(0)
               for l in open(scrape_path) if l.strip() and not l.startswith("#")}
    missing = names - scraped
    assert not missing, f"postgres_exporter did not export {sorted(missing)}"
    print(f"postgres_exporter exported all {len(names)} metrics")


if __name__ == "__main__":
    if sys.argv[1] == "--scrape":
        check_scrape(sys.argv[2], sys.argv[3])
    else:
        main(*sys.argv[1:5])
