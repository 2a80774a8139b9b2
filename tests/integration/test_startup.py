#!/usr/bin/python3
"""Integration tests of start order: a sidecar started before its
application's database exists, a database deleted and created again
under it, a rollback-journal database the application later switches to
WAL, and the database_missing alert. The sidecar waits (it never exits,
never polls) and follows the database once it is a WAL database, with a
first snapshot. Restores are checked against the writers' ground truth
(helpers.py). Prints TAP.
"""
import json, os, socket, sqlite3, subprocess, sys, time, urllib.error, urllib.request

from helpers import *


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def scrape(port):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def with_top(env, text):
    """Puts `text` (top-level keys) in front of env's configuration."""
    with open(env.config) as f:
        body = f.read()
    with open(env.config, "w") as f:
        f.write(text + body)


def generations(env, name="app"):
    root = os.path.join(env.backup, name, "generations")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def waiting_reason(port):
    status, body = health(port)
    return status, [w["reason"] for w in body.get("waiting", [])]


def remove_database(path):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)


def write_rollback(db, log, first, count, delay_s=0.01):
    """Commits rows first..first+count-1 on connection `db` (any journal
    mode) and logs them as writer.py does: "<id> <ms before> <ms after>"."""
    with open(log, "a") as f:
        for i in range(first, first + count):
            t0 = int(time.time() * 1000)
            db.execute("BEGIN")
            db.execute("INSERT INTO t(id, payload, big) VALUES (?, ?, NULL)", (i, payload(i)))
            db.execute("COMMIT")
            f.write("%d %d %d\n" % (i, t0, int(time.time() * 1000)))
            f.flush()
            time.sleep(delay_s)

# ------------------------------------------------------------------ tests

def test_sidecar_started_before_the_database_exists():
    """Started 3 s before the application creates its database, the
    sidecar waits (said once in the log, on /healthz as `waiting`, still
    200), then follows the new database from its first snapshot."""
    port = free_port()
    env = Env("before")
    try:
        with_top(env, "metrics: { listen: 127.0.0.1:%d }\n" % port)
        env.start()
        time.sleep(1.0)
        status, reasons = waiting_reason(port)
        check(status == 200 and reasons == ["waiting for '%s' to be created" % env.db],
              "healthz while waiting: %d %r" % (status, reasons))
        metrics = scrape(port)
        check(metrics['tidemark_database_waiting{db="app"}'] == 1 and metrics['tidemark_capture_up{db="app"}'] == 0,
              "metrics while waiting: %r" % {k: v for k, v in metrics.items() if "waiting" in k or "capture" in k})
        time.sleep(2.0)
        check(env.replicator.poll() is None, "the sidecar exited: " + env.tail_log())
        env.write_py(300, "--delay-ms", "10")   # creates the database, WAL mode, ~4 s of commits
        time.sleep(0.5)
        status, body = health(port)
        check(status == 200 and body["status"] == "ok" and body["waiting"] == [], "healthz after: %d %r" % (status, body))
        metrics = scrape(port)
        check(metrics['tidemark_database_waiting{db="app"}'] == 0 and metrics['tidemark_capture_up{db="app"}'] == 1,
              "metrics after: %r" % {k: v for k, v in metrics.items() if "waiting" in k or "capture" in k})
        env.stop()
        log = env.full_log()
        check(log.count("waiting for '%s' to be created" % env.db) == 1, "the waiting line, once: " + log[-3000:])
        check("is a WAL database now" in log and "new generation" in log, log[-3000:])
        commits = env.commits()
        first = min(t0 for t0, t1 in commits.values())
        last = max(t1 for t0, t1 in commits.values())
        for target in (first + (last - first) // 2, first + 3 * (last - first) // 4):
            verify_point(env, commits, target)
        proc, out = env.restore()
        check(proc.returncode == 0 and restored_ids(out) == len(commits), "latest restore: " + proc.stderr)
    finally:
        env.cleanup()


def test_database_deleted_and_created_again():
    """The application removes its database (db, -wal, -shm) while the
    sidecar runs, then creates it again: the sidecar waits (also after a
    restart), then follows the new file in a new generation; the old
    generation's restores stay exact."""
    port = free_port()
    env = Env("recreate")
    try:
        with_top(env, "metrics: { listen: 127.0.0.1:%d }\n" % port)
        env.create_db()
        env.start()
        env.write_py(100, "--delay-ms", "10")
        time.sleep(0.6)
        old_commits = env.commits()
        before_delete = int(time.time() * 1000)
        time.sleep(0.3)
        remove_database(env.db)
        waiting = (200, ["waiting for '%s' to be created" % env.db])
        wait_until(lambda: waiting_reason(port) == waiting, 10, "the sidecar to wait for the deleted database")
        # the same after a restart (a SIGTERM while waiting is a clean stop)
        env.stop()
        env.start()
        check(waiting_reason(port) == waiting, "after a restart: %r" % (waiting_reason(port),))
        env.log = os.path.join(env.dir, "commits-new.log")
        env.write_py(400, "--delay-ms", "10")   # more rows than before: an old state cannot pass for a new one
        time.sleep(0.6)
        check(waiting_reason(port) == (200, []), "still waiting: %r" % (waiting_reason(port),))
        env.stop()
        log = env.full_log()
        check("was deleted or replaced" in log and "cannot start" not in log, log[-3000:])
        check(log.count("waiting for '%s' to be created" % env.db) == 2, "once per process: " + log[-3000:])
        check(len(generations(env)) == 2, "generations: %r" % generations(env))
        # the old database, before it was deleted
        verify_point(env, old_commits, before_delete)
        proc, out = env.restore(iso(before_delete))
        check(restored_ids(out) == len(old_commits), "the old generation's last state lacks rows")
        # the new one
        commits = env.commits()
        first = min(t0 for t0, t1 in commits.values())
        last = max(t1 for t0, t1 in commits.values())
        for target in (first + (last - first) // 2, first + 3 * (last - first) // 4):
            verify_point(env, commits, target)
        proc, out = env.restore()
        check(proc.returncode == 0 and restored_ids(out) == len(commits), "latest restore: " + proc.stderr)
    finally:
        env.cleanup()


def test_rollback_journal_database_switched_to_wal():
    """A database in rollback-journal mode: the sidecar waits and says
    why (it never changes the journal mode); once the application
    switches to WAL it follows, and the rows written before the switch
    are in its first snapshot."""
    port = free_port()
    env = Env("rollback")
    try:
        with_top(env, "metrics: { listen: 127.0.0.1:%d }\n" % port)
        app = sqlite3.connect(env.db, isolation_level=None)
        app.execute("PRAGMA journal_mode=DELETE")
        app.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)")
        write_rollback(app, env.log, 1, 50)
        env.start()
        reason = "'%s' is in rollback-journal mode; tidemark never changes the journal mode" % env.db
        status, reasons = waiting_reason(port)
        check(status == 200 and len(reasons) == 1 and reasons[0].startswith(reason), "healthz: %d %r" % (status, reasons))
        write_rollback(app, env.log, 51, 30)   # written while it waits
        status, reasons = waiting_reason(port)
        check(len(reasons) == 1 and reasons[0].startswith(reason), "healthz: %d %r" % (status, reasons))
        check(not os.path.exists(env.db + "-wal"), "a WAL appeared beside a rollback-journal database")
        check(app.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal", "the switch to WAL failed")
        wait_until(lambda: waiting_reason(port) == (200, []), 10, "the sidecar to follow the database")
        time.sleep(1.0)
        after_switch = int(time.time() * 1000)
        time.sleep(0.5)
        env.write_py(200, "--delay-ms", "10", start=81)
        app.close()
        time.sleep(0.5)
        env.stop()
        log = env.full_log()
        check(log.count(reason) == 1, "the rollback-journal line, once: " + log[-3000:])
        commits = env.commits()
        check(verify_point(env, commits, after_switch) == 80, "the first snapshot lacks the rows before the switch")
        first = commits[81][0]
        last = max(t1 for t0, t1 in commits.values())
        verify_point(env, commits, first + (last - first) // 2)
        proc, out = env.restore()
        check(proc.returncode == 0 and restored_ids(out) == 280, "latest restore: " + proc.stderr)
    finally:
        env.cleanup()


def test_missing_database_alert_health_and_metrics():
    """missing-alert-after: 2s fires database_missing for a database that
    does not exist (the alert command runs; /healthz 503; metrics), while
    another database of the same sidecar is replicated as usual; the alert
    resolves once the database is there."""
    port = free_port()
    env = Env("missing")
    try:
        marker = os.path.join(env.dir, "alerts.txt")
        other = os.path.join(env.dir, "other.db")
        other_log = os.path.join(env.dir, "other-commits.log")
        with open(env.config, "w") as f:
            f.write("encryption:\n  key-file: %s\nmetrics: { listen: 127.0.0.1:%d }\n"
                    "alerts: { command: 'echo \"$TIDEMARK_STATE $TIDEMARK_ALERT $TIDEMARK_DB\" >> %s' }\n"
                    "dbs:\n  - path: %s\n    sync-interval: 200ms\n    missing-alert-after: 2s\n    replicas:\n%s"
                    "  - path: %s\n    sync-interval: 200ms\n    replicas:\n%s"
                    % (env.key, port, marker, env.db, env.replicas, other, env.replicas))
        subprocess.run([WRITER_PY, other, other_log, "--count", "1"], check=True)
        env.start()
        writer = subprocess.Popen([WRITER_PY, other, other_log, "--count", "400", "--delay-ms", "10", "--start", "2"])
        started = time.time()
        wait_until(lambda: os.path.exists(marker), 15, "the database_missing alert")
        print("# database_missing fired %.1f s after the start (missing-alert-after 2 s)" % (time.time() - started))
        with open(marker) as f:
            check(f.read().split() == ["firing", "database_missing", "app"], "alert command environment")
        status, body = health(port)
        check(status == 503 and [p["db"] for p in body["problems"]] == ["app"] and
              "waiting for '%s' to be created" % env.db in body["problems"][0]["reason"] and
              [w["db"] for w in body["waiting"]] == ["app"] and body["waiting"][0]["seconds"] >= 2,
              "healthz: %d %r" % (status, body))
        metrics = scrape(port)
        check(metrics['tidemark_database_waiting{db="app"}'] == 1 and
              metrics['tidemark_database_waiting_seconds{db="app"}'] >= 2 and
              metrics['tidemark_database_waiting{db="other"}'] == 0 and
              metrics['tidemark_capture_up{db="other"}'] == 1 and
              metrics['tidemark_commits_shipped_total{db="other"}'] > 0, "metrics: %r" % metrics)
        writer.wait(timeout=60)
        env.write_py(50, "--delay-ms", "10")
        wait_until(lambda: open(marker).read().split()[-3:] == ["resolved", "database_missing", "app"], 15,
                   "the resolved message")
        check(health(port)[0] == 200, "healthz after the database appeared: %r" % (health(port),))
        time.sleep(0.5)
        env.stop()
        proc, out = env.restore()
        check(proc.returncode == 0 and restored_ids(out) == 50, "restore of app: " + proc.stderr)
        out = os.path.join(env.dir, "other-restored.db")
        proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "other", "-o", out], capture_output=True, text=True)
        check(proc.returncode == 0 and restored_ids(out) == 401, "restore of other: " + proc.stderr)
    finally:
        env.cleanup()


def test_missing_directory_fails_clearly():
    """The sidecar waits for a database file, not for its directory: a
    directory that does not exist stops it at start, named."""
    env = Env("nodir")
    try:
        missing = os.path.join(env.dir, "not-there", "app.db")
        with open(env.config) as f:
            text = f.read().replace(env.db, missing)
        with open(env.config, "w") as f:
            f.write(text)
        proc = subprocess.run([TIDEMARK, "replicate", "-c", env.config], capture_output=True, text=True, timeout=30)
        check(proc.returncode != 0, "the sidecar started without the database's directory")
        check("directory '%s' of database '%s' does not exist" % (os.path.dirname(missing), missing) in proc.stderr
              and "HINT:" in proc.stderr, proc.stderr)
        check(not os.path.exists(os.path.dirname(missing)), "the sidecar created the application's directory")
    finally:
        env.cleanup()


if __name__ == "__main__":
    sys.exit(run_tests([
        test_sidecar_started_before_the_database_exists,
        test_database_deleted_and_created_again,
        test_rollback_journal_database_switched_to_wal,
        test_missing_database_alert_health_and_metrics,
        test_missing_directory_fails_clearly,
    ]))
