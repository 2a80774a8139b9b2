#!/usr/bin/python3
"""The Grafana dashboard (config/grafana-dashboard.json) and the Prometheus
rules (config/prometheus-rules.yml) against the metrics a running sidecar
really exports, so that neither can drift from metrics.c: every metric
name and every label a PromQL expression uses (matchers, by/without/on/
ignoring lists, legends, $labels in annotations, label_values of the
template variables) must be in a scrape of /metrics taken while a writer
commits. The sidecar follows a database (`path:`) and a `dir:` entry, so
that both families of series exist. Also checks the dashboard's structure
(what Grafana's import needs) and that the checker itself catches a
renamed metric or label. Prints TAP.
"""
import json, os, re, socket, sqlite3, subprocess, sys, time, urllib.request

import yaml

from helpers import *

DASHBOARD = os.path.join(ROOT, "config", "grafana-dashboard.json")
RULES = os.path.join(ROOT, "config", "prometheus-rules.yml")

# series Prometheus makes itself, not the sidecar: the labels each has
# (ALERTS also carries the labels of its rule's series: checked apart)
PROMETHEUS_SERIES = {"up": {"job", "instance"}, "ALERTS": {"alertname", "alertstate", "severity"}}
# labels Prometheus adds to every scraped series
TARGET_LABELS = {"job", "instance"}
FUNCTIONS = {"sum", "max", "min", "avg", "count", "topk", "bottomk", "rate", "increase", "irate", "delta",
             "time", "vector", "abs", "clamp_min", "clamp_max", "max_over_time", "min_over_time",
             "avg_over_time", "changes", "resets", "absent", "scalar", "timestamp", "label_values"}
AGGREGATIONS = {"sum", "max", "min", "avg", "count", "topk", "bottomk"}
SET_KEYWORDS = {"and", "or", "unless", "bool", "offset"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# what Grafana substitutes in an expression before Prometheus sees it
GRAFANA_INTERVALS = re.compile(r"\$__(rate_interval|interval|range)\b")

TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`)'
                   r'|(?P<duration>\[[^\]]*\])'
                   r'|(?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)'
                   r'|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)'
                   r'|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){},]))')


def tokenize(expr):
    tokens, pos = [], 0
    text = GRAFANA_INTERVALS.sub("5m", expr).rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        check(m and m.end() > pos, "cannot read the expression %r at %r" % (expr, text[pos:pos + 20]))
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class Query:
    """What one PromQL expression uses: its metrics (each with the labels
    its selector matches on), the labels of its grouping and join clauses,
    and the labels its result keeps when it is aggregated."""
    def __init__(self, expr):
        self.expr = expr
        self.metrics = {}            # name -> set of matcher labels
        self.grouping = set()        # by/without/on/ignoring/group_x labels
        self.aggregated_by = None    # the labels of the outermost `by`, when the result is aggregated
        self.extra_labels = set()    # label_values(..., LABEL)
        tokens = tokenize(expr)
        if tokens[:2] == [("ident", "label_values"), ("op", "(")]:
            check(tokens[-1] == ("op", ")") and tokens[-2][0] == "ident" and tokens[-3] == ("op", ","),
                  "label_values(SELECTOR, LABEL) expected: %r" % expr)
            self.extra_labels.add(tokens[-2][1])
            tokens = tokens[2:-3]
        self.read(tokens)

    def read(self, tokens):
        i = 0
        while i < len(tokens):
            kind, text = tokens[i]
            following = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
            if kind != "ident":
                i += 1
                continue
            if text in LABEL_LIST_KEYWORDS:
                labels, i = self.label_list(tokens, i + 1)
                self.grouping |= labels
                if text == "by" and self.aggregated_by is None:
                    self.aggregated_by = labels
                continue
            if text in SET_KEYWORDS:
                i += 1
                continue
            if following == ("op", "(") or (text in AGGREGATIONS and following[1] in ("by", "without")):
                check(text in FUNCTIONS, "unknown function %s() in %r" % (text, self.expr))
                i += 1
                continue
            matchers = self.metrics.setdefault(text, set())
            i += 1
            if following == ("op", "{"):
                i += 1
                while tokens[i] != ("op", "}"):
                    label, op, value = tokens[i:i + 3]
                    check(label[0] == "ident" and op[1] in ("=", "!=", "=~", "!~") and value[0] == "string",
                          "a label matcher expected in %r at %r" % (self.expr, tokens[i:i + 3]))
                    matchers.add(label[1])
                    i += 3
                    if tokens[i] == ("op", ","):
                        i += 1
                i += 1

    def label_list(self, tokens, i):
        """The labels of `( a, b )` at tokens[i] (none when there is no list)."""
        labels = set()
        if i >= len(tokens) or tokens[i] != ("op", "("):
            return labels, i
        i += 1
        while tokens[i] != ("op", ")"):
            check(tokens[i][0] == "ident", "a label name expected in %r, found %r" % (self.expr, tokens[i][1]))
            labels.add(tokens[i][1])
            i += 1
            if tokens[i] == ("op", ","):
                i += 1
        return labels, i + 1


def parse_scrape(text):
    """{metric name: [label dict of each sample]}, and the TYPE of each."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        check(m, "unreadable sample line %r" % line)
        labels = dict(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        float(m.group(3))
        samples.setdefault(m.group(1), []).append(labels)
    return samples, types


def labels_of(samples, name):
    """The labels every sample of the metric has (as Prometheus will store
    them, with the target's labels)."""
    if name in PROMETHEUS_SERIES:
        return PROMETHEUS_SERIES[name] | TARGET_LABELS
    sets = [set(s) for s in samples[name]]
    return set.intersection(*sets) | TARGET_LABELS


def problems_of(query, samples, where, legend_labels=()):
    """Every way the query does not fit the scrape, as messages naming
    the metric or label (empty: it fits)."""
    problems = []
    for name in sorted(query.metrics):
        if name not in PROMETHEUS_SERIES and not name.startswith("tidemark_"):
            problems.append("%s: %r is neither a tidemark_ metric nor a series of Prometheus" % (where, name))
        elif name not in PROMETHEUS_SERIES and name not in samples:
            problems.append("%s: metric %s is not in /metrics" % (where, name))
    if problems:
        return problems
    for name, matchers in sorted(query.metrics.items()):
        for label in sorted(matchers - labels_of(samples, name)):
            problems.append("%s: %s has no label %r" % (where, name, label))
    used = set(query.grouping) | set(query.extra_labels)
    if query.aggregated_by is None:   # not aggregated: the legend names the series' own labels
        used |= set(legend_labels)
    else:
        for label in sorted(set(legend_labels) - query.aggregated_by):
            problems.append("%s: the legend names %r, which `by (%s)` drops" % (where, label,
                                                                                 ", ".join(sorted(query.aggregated_by))))
    for label in sorted(used):
        for name in sorted(query.metrics):
            if label not in labels_of(samples, name):
                problems.append("%s: label %r is used but %s has no such label" % (where, label, name))
    return problems


# ---------------------------------------------------------- the two files

def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def all_panels(dash):
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])   # a collapsed row holds its panels


def dashboard_queries(dash):
    """(where, Query, labels its legend names) of every target and variable."""
    out = []
    for panel in all_panels(dash):
        for target in panel.get("targets", []):
            where = "panel %r, target %s" % (panel["title"], target["refId"])
            legend = re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", ""))
            out.append((where, Query(target["expr"]), legend))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append(("variable $%s" % var["name"], Query(query), ()))
    return out


def rules():
    with open(RULES) as f:
        return yaml.safe_load(f)


def rule_queries(doc):
    out = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            text = " ".join(str(v) for v in rule.get("annotations", {}).values())
            labels = re.findall(r"\$labels\.(\w+)", text)
            query = Query(rule["expr"])
            query.grouping |= set(labels)   # the annotations read them from every series of the expression
            out.append(("rule %s" % rule["alert"], query, ()))
    return out


# ------------------------------------------------------- a running sidecar

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()


def value(samples_text, series):
    for line in samples_text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise Failure("no sample %s in the metrics" % series)


def create_db(path):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)")
    db.commit()
    db.close()


def scrape_while_writing(cache={}):
    """Starts a sidecar with metrics over `app` (path:) and a dir: entry
    `tenants` holding one database, lets a writer commit to each, and
    returns the scrapes before the writes and once all is shipped (made
    once, for every test that asks)."""
    if not cache:
        cache["scrapes"] = run_sidecar_with_writers()
    return cache["scrapes"]


def run_sidecar_with_writers():
    port = free_port()
    env = Env("dashboard")
    tenants = os.path.join(env.dir, "tenants")
    os.makedirs(tenants)
    tenant_db = os.path.join(tenants, "t1.db")
    try:
        with open(env.config, "a") as f:
            f.write("  - dir: %s\n    sync-interval: 200ms\n    replicas:\n      - type: file\n        path: %s\n"
                    "metrics: { listen: 127.0.0.1:%d }\n" % (tenants, env.backup, port))
        env.create_db()
        create_db(tenant_db)
        env.start()
        wait_until(lambda: env.tail_log(None).count("new generation") >= 2, 30, "both databases' first snapshot")
        before = scrape(port)
        env.write_py(40, "--delay-ms", "10")
        subprocess.run([WRITER_PY, tenant_db, os.path.join(env.dir, "t1.log"), "--count", "20"], check=True)
        wait_until(lambda: value(scrape(port), 'tidemark_commits_shipped_total{db="app"}')
                   - value(before, 'tidemark_commits_shipped_total{db="app"}') >= 40, 20, "app's 40 commits shipped")
        wait_until(lambda: value(scrape(port), 'tidemark_entry_commits_shipped_total{entry="tenants"}')
                   - value(before, 'tidemark_entry_commits_shipped_total{entry="tenants"}') >= 20, 20,
                   "the tenant's 20 commits shipped")
        def caught_up():
            text = scrape(port)
            return (value(text, 'tidemark_replica_lag_seconds{db="app",replica="file"}') == 0
                    and value(text, 'tidemark_entry_replica_lag_max_seconds{entry="tenants",replica="file"}') == 0)
        wait_until(caught_up, 20, "both replicas to catch up")
        text = scrape(port)
        env.stop()
        return before, text
    finally:
        env.cleanup()


# ------------------------------------------------------------------ tests

def test_dashboard_structure():
    dash = dashboard()
    check(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36,
          "schemaVersion %r: Grafana 9 or later expected" % dash.get("schemaVersion"))
    check(dash.get("id") is None and dash.get("uid") and dash.get("title"), "id null, a uid and a title expected")
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables.get("datasource")
    check(ds and ds["type"] == "datasource" and ds["query"] == "prometheus",
          "a Prometheus datasource variable $datasource expected: %r" % ds)
    for name in ("instance", "db", "entry"):
        check(name in variables and variables[name]["datasource"]["uid"] == "${datasource}",
              "variable $%s missing or not on $datasource" % name)
    ids, areas, kinds = set(), [], set()
    for panel in all_panels(dash):
        title = panel.get("title")
        check(isinstance(panel.get("id"), int) and panel["id"] not in ids, "panel %r: id %r not unique" % (title, panel.get("id")))
        ids.add(panel["id"])
        grid = panel.get("gridPos", {})
        check(all(isinstance(grid.get(k), int) for k in "hwxy") and grid["w"] > 0 and grid["h"] > 0
              and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, "panel %r: bad gridPos %r" % (title, grid))
        for other_title, other in areas:
            overlap = (grid["x"] < other["x"] + other["w"] and other["x"] < grid["x"] + grid["w"]
                       and grid["y"] < other["y"] + other["h"] and other["y"] < grid["y"] + grid["h"])
            check(not overlap, "panels %r and %r overlap" % (title, other_title))
        areas.append((title, grid))
        kinds.add(panel["type"])
        if panel["type"] == "row":
            continue
        check(panel["type"] in ("stat", "timeseries", "table"), "panel %r: type %r" % (title, panel["type"]))
        check(panel.get("datasource") == {"type": "prometheus", "uid": "${datasource}"},
              "panel %r: datasource %r" % (title, panel.get("datasource")))
        check(title and panel.get("description"), "panel %r: a title and a description expected" % title)
        targets = panel.get("targets") or []
        check(targets, "panel %r has no targets" % title)
        refs = [t.get("refId") for t in targets]
        check(len(set(refs)) == len(refs) and all(refs), "panel %r: refIds %r" % (title, refs))
        for t in targets:
            check(t.get("expr", "").strip() and t.get("datasource") == panel["datasource"],
                  "panel %r target %s: an expr on $datasource expected" % (title, t.get("refId")))
            for var in re.findall(r"\$\{?(\w+)", t["expr"]):
                check(var.startswith("__") or var in variables, "panel %r uses an undefined $%s" % (title, var))
    required = {r["id"] for r in dash.get("__requires", []) if r["type"] == "panel"}
    check(kinds - {"row"} <= required, "__requires lacks the panel types %r" % (kinds - {"row"} - required))
    print("# %d panels, schemaVersion %d" % (len(ids), dash["schemaVersion"]))


def test_rules_structure():
    doc = rules()
    names = []
    for group in doc["groups"]:
        check(group.get("name") and group.get("rules"), "a group needs a name and rules: %r" % group)
        for rule in group["rules"]:
            check(set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, "rule keys %r" % sorted(rule))
            check(rule.get("alert", "").startswith("Tidemark") and rule.get("expr"), "rule %r" % rule)
            check("for" not in rule or re.fullmatch(r"\d+[smhd]", rule["for"]), "rule %s: for %r" % (rule["alert"], rule.get("for")))
            check(rule.get("labels", {}).get("severity") in ("page", "warning"), "rule %s: severity" % rule["alert"])
            check(rule.get("annotations", {}).get("summary"), "rule %s: no summary" % rule["alert"])
            names.append(rule["alert"])
    check(len(set(names)) == len(names), "duplicate alert names: %r" % names)
    # the dashboard's ALERTS panels select the rules by this pattern
    for where, query, _ in dashboard_queries(dashboard()):
        if "ALERTS" in query.metrics:
            pattern = re.search(r'alertname=~"([^"]*)"', query.expr).group(1)
            check(all(re.fullmatch(pattern, n) for n in names), "%s: %r misses some of %r" % (where, pattern, names))
    print("# %d rules" % len(names))


def test_queries_match_a_running_sidecar():
    before, text = scrape_while_writing()
    samples, types = parse_scrape(text)
    queries = dashboard_queries(dashboard()) + rule_queries(rules())
    problems = []
    for where, query, legend in queries:
        problems += problems_of(query, samples, where, legend)
    check(not problems, "the queries do not fit /metrics:\n" + "\n".join(problems))
    used = set().union(*(q.metrics for _, q, _ in queries)) - set(PROMETHEUS_SERIES)
    # each metric has a sample for the database, or for the entry (or is the sidecar's own)
    for name in sorted(used):
        if samples[name] == [{}]:
            continue
        owners = {s.get("db") or s.get("entry") for s in samples[name]}
        check(owners & {"app", "tenants"}, "%s has no sample for app or tenants: %r" % (name, samples[name]))
    # what the dashboard draws as rates moved while the writer ran; failures did not
    rated = {n for _, q, _ in queries for n in q.metrics if re.search(r"(rate|increase)\([^()]*%s\b" % n, q.expr)}
    check(all(types[n] == "counter" for n in rated), "rate() over gauges: %r" % [n for n in rated if types[n] != "counter"])
    moved = {"tidemark_replica_objects_uploaded_total", "tidemark_replica_uploaded_bytes_total",
             "tidemark_shipped_bytes_total", "tidemark_commits_shipped_total", "tidemark_segments_shipped_total",
             "tidemark_entry_commits_shipped_total", "tidemark_entry_shipped_bytes_total",
             "tidemark_entry_segments_shipped_total"}
    still = {"tidemark_replica_upload_failures_total", "tidemark_errors_total", "tidemark_entry_errors_total"}
    check(moved | still <= rated, "rated counters %r" % sorted(rated))
    def total(scrape_text, name):
        return sum(float(line.rsplit(" ", 1)[1]) for line in scrape_text.splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " "))
    for name in sorted(moved):
        check(total(text, name) > total(before, name), "%s did not move: %s" % (name, total(text, name)))
    for name in sorted(still):
        check(total(text, name) == 0, "%s is %s on a healthy sidecar" % (name, total(text, name)))
    check(value(text, 'tidemark_replica_queued_objects{db="app",replica="file"}') == 0, "objects still queued")
    check(value(text, 'tidemark_capture_up{db="app"}') == 1, "capture of app not up")
    check(value(text, 'tidemark_snapshot_last_timestamp_seconds{db="app"}') > time.time() - 120, "no recent snapshot")
    print("# %d queries, %d tidemark metrics checked against the scrape" % (len(queries), len(used)))

    # the check fails when a metric or a label is renamed
    renamed = [("tidemark_replica_lag_seconds", "tidemark_replica_lag_secs"), ("by (instance, db, kind)", "by (instance, db, type)")]
    for old, new in renamed:
        hits = [(where, q.expr.replace(old, new), legend) for where, q, legend in queries if old in q.expr]
        check(hits, "no query uses %r" % old)
        found = [p for where, expr, legend in hits for p in problems_of(Query(expr), samples, where, legend)]
        check(found and all(new.split()[-1].strip("()") in p or new in p for p in found),
              "renaming %r to %r went unnoticed: %r" % (old, new, found))
    trimmed = dict(samples)
    del trimmed["tidemark_spool_limit_bytes"]
    found = [p for where, q, legend in queries for p in problems_of(q, trimmed, where, legend)]
    check(any("tidemark_spool_limit_bytes is not in /metrics" in p for p in found),
          "a metric gone from /metrics went unnoticed: %r" % found)


def test_docs_name_every_metric():
    """docs/monitoring.md's tables name every metric /metrics has, and no
    document names one it does not have (a `tidemark_x_*` family aside)."""
    _, text = scrape_while_writing()
    samples, types = parse_scrape(text)
    with open(os.path.join(ROOT, "docs", "monitoring.md")) as f:
        monitoring = f.read()
    undocumented = sorted(n for n in types if not re.search(r"`%s(\{[^`]*\})?`" % n, monitoring))
    check(not undocumented, "docs/monitoring.md does not document %s" % ", ".join(undocumented))
    documents = [os.path.join(ROOT, "README.md"), RULES, DASHBOARD] + \
        [os.path.join(d, f) for d in (os.path.join(ROOT, "docs"),) for f in sorted(os.listdir(d)) if f.endswith(".md")]
    for path in documents:
        with open(path) as f:
            named = set(re.findall(r"\btidemark_[a-z_]*[a-z](?![a-z_*])", f.read()))
        unknown = sorted(named - set(types))
        check(not unknown, "%s names metrics /metrics does not have: %s" % (os.path.relpath(path, ROOT), ", ".join(unknown)))


if __name__ == "__main__":
    sys.exit(run_tests([test_dashboard_structure, test_rules_structure, test_queries_match_a_running_sidecar,
                        test_docs_name_every_metric]))
