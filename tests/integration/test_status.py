#!/usr/bin/python3
"""Integration tests of `tidemark status`: against a running sidecar with
a replica that works and one that fails (a file replica whose directory
is blocked by a file; an S3 replica on a port nothing listens on), a
database the sidecar waits for, no sidecar at all (read from the
replicas), the --json schema (keys checked exactly), colours only on a
terminal, --watch. Values are checked against the writer's ground truth.
Prints TAP.
"""
import json, os, pty, select, shutil, signal, subprocess, sys, time

from helpers import *

DB_KEYS = {"name", "state", "protected", "source", "asleep", "problem", "waiting_reason", "waiting_since_ms",
           "spool_bytes", "last_snapshot_ms", "drill_this_run", "alerts", "replicas"}
REPLICA_KEYS = {"name", "state", "problem", "lag_ms", "queued_objects", "last_upload_ms", "failing_since_ms",
                "last_error", "archive_error", "oldest_point_ms", "newest_point_ms", "newest_point_age_ms",
                "last_snapshot_ms", "last_drill"}
ALERT_KEYS = {"rule", "replica", "message", "since_ms"}
DRILL_KEYS = {"time", "ok", "rto_ms", "rpo_ms", "error"}


def status(env, *args, env_vars=None):
    proc = subprocess.run([TIDEMARK, "status", "-c", env.config] + list(args), capture_output=True, text=True,
                          timeout=60, env=env_vars)
    return proc


def status_json(env, *args):
    proc = status(env, "--json", *args)
    check(proc.stdout.strip(), "no JSON (exit %d): %s" % (proc.returncode, proc.stderr))
    return proc.returncode, json.loads(proc.stdout)


def check_schema(doc):
    check(set(doc) == {"time_ms", "protected", "databases"}, "top-level keys: %r" % sorted(doc))
    for db in doc["databases"]:
        check(set(db) == DB_KEYS, "database keys: %r" % sorted(set(db) ^ DB_KEYS))
        for a in db["alerts"]:
            check(set(a) == ALERT_KEYS, "alert keys: %r" % sorted(a))
        for r in db["replicas"]:
            check(set(r) == REPLICA_KEYS, "replica keys: %r" % sorted(set(r) ^ REPLICA_KEYS))
            check(r["last_drill"] is None or set(r["last_drill"]) == DRILL_KEYS, "drill keys: %r" % r["last_drill"])


def with_alerts(env, replicas, settings="failure-after: 1s"):
    env.config = env.write_config("tidemark.yml", env.key, replicas=replicas)
    with open(env.config) as f:
        text = f.read()
    with open(env.config, "w") as f:
        f.write("alerts: { %s }\n" % settings + text)


def file_replica(name, path):
    return "      - type: file\n        name: %s\n        path: %s\n" % (name, path)


def by_name(items):
    return {x["name"]: x for x in items}

# ------------------------------------------------------------------ tests

def test_following_then_failing_file_replica():
    """All good: exit 0, following, the window's newest point is the last
    commit the writer recorded (within two sync intervals). Then one
    replica's directory is blocked: that replica is failing with
    /healthz's reason, the other following, an alert fires, exit 1."""
    env = Env("status-file")
    try:
        bad = os.path.join(env.dir, "bad")
        with_alerts(env, file_replica("good", env.backup) + file_replica("bad", bad))
        env.create_db()
        env.start()
        env.write_py(60, "--delay-ms", "5")
        last_commit = max(t1 for t0, t1 in env.commits().values())
        time.sleep(1.0)   # five sync intervals: everything shipped
        code, doc = status_json(env)
        check_schema(doc)
        check(code == 0 and doc["protected"] is True, "exit %d, %r" % (code, doc))
        db = doc["databases"][0]
        check(db["name"] == "app" and db["state"] == "following" and db["source"] == "sidecar"
              and db["problem"] is None and db["alerts"] == [], "database: %r" % db)
        replicas = by_name(db["replicas"])
        check(sorted(replicas) == ["bad", "good"], "replicas: %r" % sorted(replicas))
        first_commit = min(t0 for t0, t1 in env.commits().values())
        for r in replicas.values():
            check(r["state"] == "following" and r["lag_ms"] == 0 and r["queued_objects"] == 0, "replica: %r" % r)
            check(last_commit <= r["newest_point_ms"] <= last_commit + 400,
                  "newest point %s, last commit %s" % (iso(r["newest_point_ms"]), iso(last_commit)))
            check(r["oldest_point_ms"] <= first_commit and r["oldest_point_ms"] == r["last_snapshot_ms"],
                  "window starts %r, first commit %r, snapshot %r" % (r["oldest_point_ms"], first_commit,
                                                                     r["last_snapshot_ms"]))
            check(abs(r["newest_point_age_ms"] - (doc["time_ms"] - r["newest_point_ms"])) <= 0, "age: %r" % r)
        check(db["last_snapshot_ms"] == replicas["good"]["last_snapshot_ms"], "snapshot times differ: %r" % db)
        text = status(env)
        check(text.returncode == 0 and text.stdout.startswith("database app: following\n")
              and "  replica good: following, lag 0 ms, 0 object(s) queued\n" in text.stdout
              and "\033[" not in text.stdout, "text output: %r" % text.stdout)
        # the bad replica's directory for this database becomes a file
        os.rename(os.path.join(bad, "app"), os.path.join(bad, "app.moved"))
        with open(os.path.join(bad, "app"), "w") as f:
            f.write("in the way\n")
        writer = subprocess.Popen([WRITER_PY, env.db, env.log, "--count", "200", "--delay-ms", "15", "--start", "61"])
        wait_until(lambda: status_json(env)[1]["databases"][0]["state"] == "failing", 20, "state failing")
        time.sleep(1.2)   # the alert rule runs every second
        code, doc = status_json(env)
        check_schema(doc)
        db = doc["databases"][0]
        replicas = by_name(db["replicas"])
        check(code == 1 and doc["protected"] is False and db["state"] == "failing", "exit %d %r" % (code, db))
        check(replicas["good"]["state"] == "following" and replicas["good"]["problem"] is None, "good: %r" % replicas["good"])
        b = replicas["bad"]
        check(b["state"] == "failing" and b["problem"].startswith("failing for ") and "Not a directory" in b["problem"]
              and b["queued_objects"] > 0 and b["lag_ms"] > 0 and b["failing_since_ms"] is not None
              and "Not a directory" in b["archive_error"], "bad: %r" % b)
        check([(a["rule"], a["replica"]) for a in db["alerts"]] == [("replica_failing", "bad")], "alerts: %r" % db["alerts"])
        text = status(env)
        check(text.returncode == 1 and "database app: failing\n" in text.stdout
              and "  replica bad: failing (failing for " in text.stdout
              and "  alert replica_failing on bad: replica 'bad' has failed" in text.stdout, "text: %r" % text.stdout)
        writer.wait(timeout=60)
        env.stop()
    finally:
        env.cleanup()


def test_dead_s3_replica_is_failing():
    """An S3 replica on a port nothing listens on: failing with the
    reason, the file replica following; the command answers promptly."""
    env = Env("status-s3")
    try:
        dead = ("      - type: s3\n        name: offsite\n        bucket: b\n"
                "        endpoint: http://127.0.0.1:9\n        region: us-east-1\n"
                "        access-key-id: AKIDTEST\n        secret-access-key: tmSECRETstatus0123456789\n")
        with_alerts(env, file_replica("local", env.backup) + dead)
        env.create_db()
        env.start()
        env.write_py(20, "--delay-ms", "5")
        wait_until(lambda: status_json(env)[1]["databases"][0]["state"] == "failing", 20, "state failing")
        started = time.time()
        code, doc = status_json(env)
        took = time.time() - started
        check_schema(doc)
        replicas = by_name(doc["databases"][0]["replicas"])
        check(code == 1, "exit %d" % code)
        check(replicas["local"]["state"] == "following", "local: %r" % replicas["local"])
        off = replicas["offsite"]
        check(off["state"] == "failing" and off["problem"].startswith("failing for ") and off["archive_error"],
              "offsite: %r" % off)
        print("# status answered in %.1f s with a dead S3 endpoint" % took)
        check(took < 15, "status took %.1f s with a dead S3 endpoint" % took)
        for args in ((), ("--json",)):
            proc = status(env, *args)
            check("tmSECRET" not in proc.stdout + proc.stderr, "the S3 secret is in the output: %r" % proc.stdout)
        env.stop()
    finally:
        env.cleanup()


def test_waiting_database():
    """A configured database that does not exist yet: waiting, with the
    reason /healthz gives; exit 1."""
    env = Env("status-wait")
    try:
        env.start()
        code, doc = status_json(env)
        check_schema(doc)
        db = doc["databases"][0]
        check(code == 1 and db["state"] == "waiting" and db["source"] == "sidecar"
              and db["waiting_reason"] == "waiting for '%s' to be created" % env.db
              and db["waiting_since_ms"] <= doc["time_ms"], "waiting: %d %r" % (code, db))
        text = status(env)
        check(text.returncode == 1 and text.stdout.startswith("database app: waiting\n")
              and "  waiting for " in text.stdout and "to be created" in text.stdout, "text: %r" % text.stdout)
        env.create_db()
        wait_until(lambda: status(env).returncode == 0, 20, "following once the database exists")
        env.stop()
    finally:
        env.cleanup()


def test_no_sidecar_reads_the_replicas():
    """With no sidecar the command says so, reads the window, snapshot
    and drill from the replica, and exits 1 (nothing protects it now)."""
    env = Env("status-off")
    try:
        env.replicate_writes(40, "--delay-ms", "5")
        commits = env.commits()
        drill = subprocess.run([TIDEMARK, "drill", "-c", env.config, "app"], capture_output=True, text=True)
        check(drill.returncode == 0, "drill: " + drill.stdout + drill.stderr)
        text = status(env)
        check(text.returncode == 1 and text.stdout.startswith(
            "database app: not running (no sidecar running: read from the replicas)\n"), "text: %r" % text.stdout)
        check(" ok, RTO " in text.stdout, "the drill is not shown: %r" % text.stdout)
        code, doc = status_json(env)
        check_schema(doc)
        db = doc["databases"][0]
        r = db["replicas"][0]
        last = max(t1 for t0, t1 in commits.values())
        check(code == 1 and db["state"] == "not running" and db["source"] == "replicas" and r["state"] is None
              and r["lag_ms"] is None and db["spool_bytes"] is None, "fallback: %r" % db)
        check(last <= r["newest_point_ms"] <= last + 400, "newest %r, last commit %r" % (r["newest_point_ms"], last))
        check(r["last_drill"]["ok"] is True and r["last_drill"]["rto_ms"] >= 0, "drill: %r" % r["last_drill"])
        # the window read is the one restore uses: restoring at its newest point has every commit
        proc, out = env.restore(iso(r["newest_point_ms"]))
        check(proc.returncode == 0 and restored_ids(out) == len(commits), "restore at the newest point: " + proc.stderr)
    finally:
        env.cleanup()


def test_names_colours_and_watch():
    """NAME selects; an unknown one is a usage error (2). Colours only on a
    terminal and without NO_COLOR; --watch refreshes until interrupted."""
    env = Env("status-tty")
    try:
        env.create_db()
        env.start()
        env.write_py(5, "--delay-ms", "5")
        time.sleep(0.6)
        check(status(env, "app").returncode == 0, "status app")
        wrong = status(env, "nope")
        check(wrong.returncode == 2 and "no database matches 'nope'" in wrong.stderr, "unknown NAME: %r" % (wrong,))
        check("\033[32mfollowing\033[0m" in on_terminal(env, dict(os.environ)), "no colour on a terminal")
        plain = on_terminal(env, dict(os.environ, NO_COLOR="1"))
        check("database app: following" in plain and "\033[32m" not in plain, "colour with NO_COLOR: %r" % plain)
        watch = subprocess.Popen([TIDEMARK, "status", "-c", env.config, "--watch"], stdout=subprocess.PIPE, text=True)
        time.sleep(4.5)
        watch.send_signal(signal.SIGINT)
        out, _ = watch.communicate(timeout=10)
        check(out.count("database app: following") >= 2 and "\033[" not in out, "watch output: %r" % out)
        env.stop()
    finally:
        env.cleanup()


def test_dir_entry_databases():
    """A `dir:` entry's databases come from the entry's control socket,
    each with its replica; NAME selects one of them or the whole entry;
    with no sidecar they are read from the replica."""
    env = Env("status-dir")
    try:
        tenants = os.path.join(env.dir, "tenants")
        os.makedirs(tenants)
        with open(env.config, "w") as f:
            f.write("encryption:\n  key-file: %s\ndbs:\n  - dir: %s\n    sync-interval: 200ms\n"
                    "    replicas:\n      - type: file\n        path: %s\n" % (env.key, tenants, env.backup))
        empty = status(env)   # no sidecar, nothing backed up yet: not protected either
        check(empty.returncode == 1 and empty.stdout.startswith("no database found")
              and "no sidecar running for 'tenants'" in empty.stderr, "empty entry: %r" % (empty,))
        code, doc = status_json(env)
        check(code == 1 and doc["protected"] is False and doc["databases"] == [], "empty entry, JSON: %r" % doc)
        for name in ("a.db", "b.db"):
            subprocess.run([WRITER_PY, os.path.join(tenants, name), os.path.join(env.dir, name + ".log"),
                            "--count", "5", "--delay-ms", "5"], check=True)
        env.start()
        def both_following():
            code, doc = status_json(env)
            return code == 0 and [d["name"] for d in doc["databases"]] == ["tenants/a.db", "tenants/b.db"]
        wait_until(both_following, 20, "both databases following")
        code, doc = status_json(env)
        check_schema(doc)
        for db in doc["databases"]:
            r = db["replicas"][0]
            check(db["state"] == "following" and db["source"] == "sidecar" and r["state"] == "following"
                  and r["newest_point_ms"] is not None, "tenant: %r" % db)
        code, doc = status_json(env, "tenants/b.db")
        check(code == 0 and [d["name"] for d in doc["databases"]] == ["tenants/b.db"], "NAME: %r" % doc)
        code, doc = status_json(env, "tenants")
        check(code == 0 and len(doc["databases"]) == 2, "the entry's NAME: %r" % doc)
        env.stop()
        code, doc = status_json(env)
        check(code == 1 and [(d["name"], d["state"], d["source"]) for d in doc["databases"]]
              == [("tenants/a.db", "not running", "replicas"), ("tenants/b.db", "not running", "replicas")],
              "no sidecar: %r" % doc)
    finally:
        env.cleanup()


def test_redis_entry():
    """A `redis:` entry answers on its own control socket: following while
    the sidecar streams from the server; failing with the capture's reason
    once the server is gone."""
    import test_redis
    env = test_redis.Env("status-redis")
    try:
        with open(env.config) as f:
            text = f.read()
        with open(env.config, "w") as f:
            f.write("alerts: { failure-after: 1s }\n" + text)
        env.server.client().set("k", "v")
        env.start()
        env.wait_streaming()
        wait_until(lambda: status(env).returncode == 0, 20, "the Redis entry protected")
        code, doc = status_json(env)
        check_schema(doc)
        db = doc["databases"][0]
        check(db["name"] == "cache" and db["state"] == "following" and db["replicas"][0]["newest_point_ms"],
              "redis entry: %r" % db)
        env.server.stop()
        wait_until(lambda: status_json(env)[1]["databases"][0]["state"] == "failing", 30, "the entry failing")
        code, doc = status_json(env)
        db = doc["databases"][0]
        print("# Redis gone: " + db["problem"])
        check(code == 1 and "refused" in db["problem"] and db["replicas"][0]["state"] == "following",
              "redis down: %r" % db)
        env.stop()
    finally:
        if env.sidecar and env.sidecar.poll() is None:
            env.sidecar.kill()
            env.sidecar.wait()
        env.server.stop()
        shutil.rmtree(env.dir, ignore_errors=True)


def on_terminal(env, variables):
    """The text output with stdout on a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([TIDEMARK, "status", "-c", env.config], stdout=slave, stderr=subprocess.DEVNULL,
                            env=variables)
    os.close(slave)
    data = b""
    while True:
        ready, _, _ = select.select([master], [], [], 10)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    proc.wait(timeout=10)
    os.close(master)
    return data.decode(errors="replace").replace("\r\n", "\n")


if __name__ == "__main__":
    sys.exit(run_tests([test_following_then_failing_file_replica, test_dead_s3_replica_is_failing,
                        test_waiting_database, test_no_sidecar_reads_the_replicas, test_names_colours_and_watch,
                        test_dir_entry_databases, test_redis_entry]))
