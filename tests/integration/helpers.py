"""Shared helpers of the integration tests: a temporary environment
(key, config, database, sidecar process), the ground-truth writers, and
the exact-restore checks.

Every restore is checked against the writers' ground-truth logs: the
restored rows must be exactly rows 1..k with the expected payloads (a
prefix of the committed sequence), must contain every transaction that
committed at least 250 ms before the target, and none whose COMMIT began
after it.
"""
import json, os, shutil, signal, sqlite3, subprocess, sys, tempfile, time, traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TIDEMARK = os.path.join(ROOT, "tidemark")
WRITER_PY = os.path.join(HERE, "writer.py")
WRITER_JS = os.path.join(HERE, "writer.js")
SLACK_MS = 250
# `make test SANITIZE=1` runs the ASan build: its shadow memory and
# quarantine inflate resident memory, so memory bounds are doubled there
SANITIZED = os.environ.get("BUILD", "").endswith("sanitize")
MEMORY_SCALE = 2 if SANITIZED else 1
FAULTFS = os.path.join(ROOT, os.environ.get("BUILD", "build/release"), "faultfs.so")

def payload(i):
    return "row-%d-%s" % (i, format((i * 2654435761) % 4294967296, "08x"))

def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)

class Failure(Exception):
    pass

class Skip(Exception):
    """The test cannot run on this machine (reported as TAP SKIP)."""

def check(cond, message):
    if not cond:
        raise Failure(message)

class Env:
    """One temporary directory with a key, a config and a database path."""
    def __init__(self, name, sync="200ms", extra_db="", replicas=None):
        self.dir = tempfile.mkdtemp(prefix="tidemark-it-%s-" % name)
        self.db = os.path.join(self.dir, "app.db")
        self.log = os.path.join(self.dir, "commits.log")
        self.backup = os.path.join(self.dir, "backup")
        self.key = os.path.join(self.dir, "key")
        self.replicas = replicas or ("      - type: file\n        path: %s\n" % self.backup)
        subprocess.run([TIDEMARK, "keygen", "-o", self.key], check=True, stdout=subprocess.DEVNULL)
        self.config = self.write_config("tidemark.yml", self.key, sync, extra_db)
        self.replicator = None
        self.replicator_log = open(os.path.join(self.dir, "replicate.log"), "ab")

    def write_config(self, name, key, sync="200ms", extra_db="", replicas=None):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("encryption:\n  key-file: %s\ndbs:\n  - path: %s\n    sync-interval: %s\n%s"
                    "    replicas:\n%s" % (key, self.db, sync, extra_db, replicas or self.replicas))
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
        if os.environ.get("KEEP_TEST_DIRS"):
            print("# kept " + self.dir)
            return
        shutil.rmtree(self.dir, ignore_errors=True)

class FaultEnv(Env):
    """An Env whose sidecar runs with tests/faults/faultfs.c preloaded:
    set_fault() makes system calls under `root` (default: the replica's
    directory) fail or stall while it runs (see faultfs.c for the line)."""
    def __init__(self, name, root=None, **kw):
        super().__init__(name, **kw)
        self.fault_root = root or self.backup
        self.control = os.path.join(self.dir, "faultfs.control")
        self.fault_log = os.path.join(self.dir, "faultfs.log")
        self.alerts = os.path.join(self.dir, "alerts.txt")
        open(self.control, "w").close()

    def fault_env(self):
        env = dict(os.environ, LD_PRELOAD=FAULTFS, FAULTFS_ROOT=self.fault_root,
                   FAULTFS_CONTROL=self.control, FAULTFS_LOG=self.fault_log)
        # an ASan build must accept a preloaded library ahead of it
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
        return env

    def set_fault(self, line):
        with open(self.control, "w") as f:
            f.write(line + "\n" if line else "")

    def faults_injected(self):
        """[OP, ERROR] of every fault injected so far."""
        if not os.path.exists(self.fault_log):
            return []
        with open(self.fault_log) as f:
            return [line.split()[:2] for line in f if line.strip()]

    def start(self):
        self.replicator = subprocess.Popen([TIDEMARK, "replicate", "-c", self.config, "-v"], env=self.fault_env(),
                                           stdout=self.replicator_log, stderr=self.replicator_log)
        time.sleep(0.5)
        check(self.replicator.poll() is None, "replicator exited at start: " + self.tail_log())


def archive_files(env, suffix):
    """Paths of the objects ending in `suffix` (".snap", ".seg", ".delta")
    in env's file replica, sorted per directory."""
    out = []
    for d, _, files in os.walk(env.backup):
        out += sorted(os.path.join(d, f) for f in files if f.endswith(suffix))
    return out


def restored_ids(path):
    db = sqlite3.connect(path)
    check(db.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check failed on " + path)
    rows = db.execute("SELECT id, payload FROM t ORDER BY id").fetchall()
    db.close()
    for index, (i, text) in enumerate(rows):
        check(i == index + 1, "restored ids are not a prefix: position %d holds id %d" % (index + 1, i))
        check(text == payload(i), "row %d has payload %r, expected %r" % (i, text, payload(i)))
    return len(rows)

def verify_point(env, commits, target_ms, downtime=None, extra=()):
    """Restore at target_ms and check it against the ground truth."""
    proc, out = env.restore(iso(target_ms), extra=extra)
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

def verify_timeline(env, points=8, downtime=None, extra=()):
    commits = env.commits()
    first = min(t0 for t0, t1 in commits.values())
    last = max(t1 for t0, t1 in commits.values())
    counts = []
    for n in range(points):
        target = first + (last - first) * n // (points - 1)
        counts.append(verify_point(env, commits, target, downtime, extra))
    proc, out = env.restore(extra=extra)
    check(proc.returncode == 0, "latest restore failed: " + proc.stderr)
    check(restored_ids(out) == len(commits), "latest restore lacks rows")
    check("integrity:    ok" in proc.stdout and "transactions:" in proc.stdout, "restore output: " + proc.stdout)
    return counts


def wait_until(condition, timeout, what):
    """Polls condition every 100 ms; Failure after timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise Failure("timed out waiting for " + what)

def run_tests(tests):
    """Runs the selected tests (names on the command line, or all) and
    prints TAP; returns the exit code."""
    only = sys.argv[1:]
    selected = [t for t in tests if not only or t.__name__ in only]
    print("1..%d" % len(selected))
    failed = 0
    for n, test in enumerate(selected, 1):
        started = time.time()
        try:
            test()
            print("ok %d - %s (%.1fs)" % (n, test.__name__, time.time() - started))
        except Skip as e:
            print("ok %d - %s # SKIP %s" % (n, test.__name__, e))
        except Exception as e:
            failed += 1
            print("not ok %d - %s" % (n, test.__name__))
            for line in (traceback.format_exc() if not isinstance(e, Failure) else str(e)).splitlines():
                print("#   " + line)
        sys.stdout.flush()
    return 1 if failed else 0
