#!/usr/bin/python3
"""Integration tests of `dir:` entries: one sidecar for a directory of
databases (one per tenant). Databases created and deleted while it runs
are picked up and released; idle ones sleep (their files closed) and
wake on a write without losing continuity; many are restored to one
second in one command, each exactly as its own writer's ground-truth log
says. Prints TAP.
"""
import glob, json, os, shutil, signal, socket, sqlite3, subprocess, tempfile, threading, time, urllib.request


def now_ms():
    return int(time.time() * 1000)

from helpers import *


class TenantEnv:
    """A directory of tenant databases and a sidecar following it."""
    def __init__(self, name, entry_extra="", top_extra="", configured=()):
        self.dir = tempfile.mkdtemp(prefix="tidemark-it-%s-" % name)
        self.tenants = os.path.join(self.dir, "tenants")
        self.backup = os.path.join(self.dir, "backup")
        os.makedirs(os.path.join(self.tenants, "eu"))
        self.key = os.path.join(self.dir, "key")
        subprocess.run([TIDEMARK, "keygen", "-o", self.key], check=True, stdout=subprocess.DEVNULL)
        self.config = os.path.join(self.dir, "tidemark.yml")
        with open(self.config, "w") as f:
            f.write("encryption:\n  key-file: %s\n%sdbs:\n  - dir: %s\n    recursive: true\n    sync-interval: 200ms\n"
                    "%s    replicas:\n      - type: file\n        path: %s\n"
                    % (self.key, top_extra, self.tenants, entry_extra, self.backup))
            for name, relpath in configured:   # databases configured on their own (path:)
                f.write("  - path: %s\n    name: %s\n    sync-interval: 200ms\n    replicas:\n      - type: file\n"
                        "        path: %s\n" % (os.path.join(self.tenants, relpath), name, self.backup))
        self.replicator = None
        self.replicator_log = open(os.path.join(self.dir, "replicate.log"), "ab")

    def path(self, relpath):
        return os.path.join(self.tenants, relpath)

    def logfile(self, relpath):
        return os.path.join(self.dir, relpath.replace("/", "_") + ".log")

    def create(self, relpath):
        db = sqlite3.connect(self.path(relpath))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)")
        db.commit()
        db.close()

    def write(self, relpath, count, start=1, delay_ms=10):
        subprocess.run([WRITER_PY, self.path(relpath), self.logfile(relpath), "--count", str(count),
                        "--start", str(start), "--delay-ms", str(delay_ms)], check=True)

    def commits(self, relpath):
        with open(self.logfile(relpath)) as f:
            rows = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
        return {i: (t0, t1) for i, t0, t1 in rows}

    def start(self):
        self.replicator = subprocess.Popen([TIDEMARK, "replicate", "-c", self.config, "-v"],
                                           stdout=self.replicator_log, stderr=self.replicator_log)
        time.sleep(0.5)
        check(self.replicator.poll() is None, "replicator exited at start: " + self.log())

    def stop(self):
        self.replicator.send_signal(signal.SIGTERM)
        code = self.replicator.wait(timeout=60)
        self.replicator = None
        check(code == 0, "replicator exited %d on SIGTERM: %s" % (code, self.log()[-3000:]))

    def logged(self, db, event):
        """True once the sidecar logged a line about database db (its
        db= field, logfmt) whose message begins with event."""
        field = 'db="%s"' % db if (" " in db or "=" in db or '"' in db) else "db=" + db
        return any(field + " " in line and ('msg="' + event in line or "msg=" + event in line)
                   for line in self.log().splitlines())

    def log(self):
        self.replicator_log.flush()
        with open(os.path.join(self.dir, "replicate.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def tidemark(self, *args):
        return subprocess.run([TIDEMARK] + list(args[:1]) + ["-c", self.config] + list(args[1:]),
                              capture_output=True, text=True)

    def cleanup(self):
        if self.replicator:
            self.replicator.kill()
            self.replicator.wait()
        if os.environ.get("KEEP_TEST_DIRS") or os.environ.get("KEEP"):
            print("# kept " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port):
    return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()


def sample(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise Failure("no sample %s in the metrics" % series)


def check_exact(path, commits, target_ms, what, downtime=None):
    """The restored database holds exactly the commits the target allows
    (commits made while the sidecar was down count from when it saw them)."""
    k = restored_ids(path)
    must = [i for i, (t0, t1) in commits.items() if t1 <= target_ms - SLACK_MS]
    if downtime:
        must = [i for i in must if not (downtime[0] - SLACK_MS <= commits[i][1] <= downtime[1] + 1000)]
    must_not = [i for i, (t0, t1) in commits.items() if t0 > target_ms]
    check(not must or k >= max(must), "%s at %s has %d rows; txn %d is missing" % (what, iso(target_ms), k, max(must) if must else 0))
    check(not must_not or k < min(must_not), "%s at %s has %d rows; txn %d began after the target"
          % (what, iso(target_ms), k, min(must_not) if must_not else 0))
    return k


def generations(env, relpath):
    name = ("tenants/" + relpath).replace("/", "%2F").replace(" ", "%20")
    return os.listdir(os.path.join(env.backup, name, "generations"))

# ------------------------------------------------------------------ tests

def test_databases_found_created_deleted_and_restored_to_one_second():
    """Three databases exist at start (one in a sub-directory), a fourth
    (a name with a space) is created while the sidecar runs, one is
    deleted. max-open 3 keeps at most three awake, so databases sleep and
    wake under the writers (the fourth one makes room). Every database, the deleted one included, is
    then restored to each of several seconds in one command, and each is
    exact against its own writer's log."""
    env = TenantEnv("tenants", "    max-open: 3\n    idle-after: 1s\n")
    try:
        names = ["a.db", "b.db", "eu/c.db"]
        for relpath in names:
            env.create(relpath)
        env.start()
        writers = [threading.Thread(target=env.write, args=(r, 60)) for r in names]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        # a new database appears: picked up without a restart
        env.create("eu/new tenant.db")
        env.write("eu/new tenant.db", 40)
        wait_until(lambda: env.logged("tenants/eu/new tenant.db", "found"), 10, "the new database to be found")
        # b is deleted: released once its replicas have everything; its backups stay
        time.sleep(1.0)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(env.path("b.db") + suffix):
                os.unlink(env.path("b.db") + suffix)
        wait_until(lambda: env.logged("tenants/b.db", "released"), 10, "the deleted database to be released")
        check(not os.path.exists(os.path.join(env.tenants, ".tidemark", "b.db")), "the released database's state stays")
        check(os.path.isdir(os.path.join(env.tenants, ".tidemark", "a.db")), "a followed database has no state directory")
        # the others go to sleep, then wake on a write in the same generation
        wait_until(lambda: env.log().count("asleep (clean)") >= 2, 15, "idle databases to sleep")
        held = sqlite3.connect(env.path("a.db"), isolation_level=None)   # keeps the WAL across the sleep
        held.execute("PRAGMA journal_mode=WAL")
        env.write("a.db", 30, start=61)
        env.write("eu/c.db", 30, start=61)
        time.sleep(1.5)
        env.stop()
        # written while the sidecar is down: the restarted sidecar continues
        # the same generation from the release it kept on disk
        down = now_ms()
        env.write("a.db", 20, start=91)
        time.sleep(0.3)
        env.start()
        up = now_ms()
        time.sleep(1.5)
        env.stop()
        held.close()
        check(len(generations(env, "a.db")) == 1, "a.db woke into a new generation: %s" % generations(env, "a.db"))
        # list shows every database with backups, the deleted one included
        listing = env.tidemark("list", "tenants/*")
        check(listing.returncode == 0, listing.stderr)
        for relpath in names + ["eu/new tenant.db"]:
            check("database tenants/%s," % relpath in listing.stdout, "list lacks %s: %s" % (relpath, listing.stdout))
        # many databases to one second, several seconds
        all_commits = {r: env.commits(r) for r in names + ["eu/new tenant.db"]}
        first = min(t0 for c in all_commits.values() for t0, _ in c.values())
        last = max(t1 for c in all_commits.values() for _, t1 in c.values())
        for n in range(6):
            target = first + (last - first) * n // 5 + (SLACK_MS if n == 5 else 0)
            out = os.path.join(env.dir, "restored-%d" % n)
            proc = env.tidemark("restore", "tenants/*", "--timestamp", iso(target), "-o", out)
            check(proc.returncode == 0, "restore of tenants/* at %s failed: %s %s" % (iso(target), proc.stdout, proc.stderr))
            check("of 4 database(s) restored to %s" % iso(target) in proc.stdout and "see the errors" not in proc.stdout,
                  proc.stdout[-500:])
            for relpath, commits in all_commits.items():
                restored = os.path.join(out, "tenants", relpath)
                if min(t0 for t0, _ in commits.values()) > target and not os.path.exists(restored):
                    continue
                check_exact(restored, commits, target, "tenants/" + relpath, (down, up) if relpath == "a.db" else None)
        # one of them by its name, and a glob that matches nothing
        proc = env.tidemark("restore", "tenants/eu/new tenant.db", "-o", os.path.join(env.dir, "one.db"))
        check(proc.returncode == 0 and restored_ids(os.path.join(env.dir, "one.db")) == 40, proc.stderr)
        proc = env.tidemark("restore", "tenants/zz*", "-o", os.path.join(env.dir, "none"))
        check(proc.returncode != 0 and "no database matches 'tenants/zz*'" in proc.stderr, proc.stderr)
        verify = env.tidemark("verify", "tenants")
        check(verify.returncode == 0 and verify.stdout.count("checked: ok") == 4, verify.stdout + verify.stderr)
    finally:
        env.cleanup()


def test_idle_databases_hold_no_files_and_write_nothing():
    """120 databases, max-open 8: once idle, the sidecar holds no
    descriptor per database (its open files stay bounded), and writes no
    object while nothing changes; a write to any of them is shipped."""
    port = free_port()
    env = TenantEnv("idle", "    max-open: 8\n    idle-after: 1s\n", "metrics: { listen: 127.0.0.1:%d }\n" % port)
    try:
        count = 120
        for n in range(count):
            env.create("t%03d.db" % n)
        env.start()
        wait_until(lambda: env.log().count("new generation") >= count, 60, "every database's first snapshot")
        pid = env.replicator.pid
        wait_until(lambda: env.log().count("asleep") >= count - 2, 30, "idle databases to sleep")
        time.sleep(1.5)
        fds = len(os.listdir("/proc/%d/fd" % pid))
        check(fds < 40, "the sidecar holds %d descriptors for %d idle databases" % (fds, count))
        # metrics: sums per entry, not a series per tenant
        text = metrics(port)
        awake, asleep = (sample(text, 'tidemark_entry_databases{entry="tenants",state="%s"}' % state)
                         for state in ("awake", "asleep"))
        check(awake + asleep == count and asleep >= count - 2, "entry databases awake %s, asleep %s" % (awake, asleep))
        check('db="tenants/' not in text, "per-database series for a dir: entry's databases")
        check(sample(text, 'tidemark_entry_replica_lag_max_seconds{entry="tenants",replica="file"}') == 0, text[-1500:])
        objects = len(glob.glob(os.path.join(env.backup, "*", "generations", "*", "*", "*")))
        commits_before = sample(text, 'tidemark_entry_commits_shipped_total{entry="tenants"}')
        time.sleep(3)
        check(len(glob.glob(os.path.join(env.backup, "*", "generations", "*", "*", "*"))) == objects,
              "idle databases wrote objects")
        env.write("t077.db", 20)
        # the writer first creates its scratch table (a commit of its own).
        # A database put to sleep to make room wakes in a new generation
        # whose snapshot may land after the writer's first commits: those
        # are inside the snapshot, not shipped as commits. So the wait is
        # for the 20 rows in the replica (restored exactly), and the count
        # only checks that nothing else shipped: at most the 20 and the
        # schema commit, and at least the commits after the first few.
        out = os.path.join(env.dir, "t077.db")
        def restored_all():
            if os.path.exists(out):
                os.unlink(out)
            proc = env.tidemark("restore", "tenants/t077.db", "-o", out)
            return proc.returncode == 0 and restored_ids(out) == 20
        wait_until(restored_all, 10, "the woken database's 20 commits to be restorable")
        time.sleep(1.0)
        shipped = sample(metrics(port), 'tidemark_entry_commits_shipped_total{entry="tenants"}') - commits_before
        check(10 <= shipped <= 21, "the entry's commit count grew by %s, not by about the 20 commits (+1 schema): "
              "other databases shipped, or the write did not" % shipped)
        env.stop()
        os.unlink(out)
        proc = env.tidemark("restore", "tenants/t077.db", "-o", out)
        check(proc.returncode == 0, proc.stderr)
        check(restored_ids(out) == 20, "the woken database's 20 commits are not all restored")
    finally:
        env.cleanup()


def test_directories_and_files_come_and_go():
    """A sub-directory made while the sidecar runs is watched and its
    database followed; a sub-directory moved away releases its databases;
    a database deleted and created again under the same name is followed
    again, in a new generation, and restores exactly; files that match the
    pattern but are not WAL-mode databases are named in the log and
    skipped, and nothing else is disturbed."""
    env = TenantEnv("comego", "    idle-after: 1s\n", configured=[("main", "main.db")])
    try:
        env.create("a.db")
        env.create("main.db")   # configured on its own: replicated once, as 'main'
        env.write("main.db", 5)
        with open(env.path("notes.db"), "w") as f:
            f.write("not a database\n")
        journal = sqlite3.connect(env.path("journal.db"))   # rollback journal, not WAL
        journal.execute("CREATE TABLE t(x)")
        journal.commit()
        journal.close()
        env.start()
        env.write("a.db", 20)
        os.makedirs(env.path("new/deep"))
        env.create("new/deep/b.db")
        env.write("new/deep/b.db", 20)
        wait_until(lambda: env.logged("tenants/new/deep/b.db", "found"), 10, "the database in a new sub-directory")
        env.create('odd "quoted" name\\.db')
        env.write('odd "quoted" name\\.db', 5)
        os.makedirs(env.path("gone"))
        env.create("gone/c.db")
        env.write("gone/c.db", 10)
        wait_until(lambda: env.logged("tenants/gone/c.db", "found"), 10, "gone/c.db to be found")
        time.sleep(0.5)
        os.rename(env.path("gone"), os.path.join(env.dir, "moved-away"))
        wait_until(lambda: env.logged("tenants/gone/c.db", "released"), 10, "a moved-away directory's database to be released")
        # a deleted database comes back under the same name, with other rows
        time.sleep(0.5)
        for suffix in ("", "-wal", "-shm"):
            os.unlink(env.path("a.db") + suffix)
        os.unlink(env.logfile("a.db"))
        env.create("a.db")
        env.write("a.db", 15, start=1)
        time.sleep(1.5)
        # tidemark snapshot: through the entry's control socket (b.db sleeps: woken), then with no sidecar
        asked = now_ms()
        proc = env.tidemark("snapshot", "tenants/new/deep/b.db")
        check(proc.returncode == 0 and "taken by the running sidecar" in proc.stdout, proc.stdout + proc.stderr)
        check(max(snapshot_times(env, "new/deep/b.db")) >= asked, "no snapshot of b.db after the request")
        env.stop()
        asked = now_ms()
        proc = env.tidemark("snapshot", "tenants/new/deep/b.db")
        check(proc.returncode == 0 and "taken directly" in proc.stdout, proc.stdout + proc.stderr)
        check(max(snapshot_times(env, "new/deep/b.db")) >= asked, "no snapshot of b.db after the direct request")
        proc = env.tidemark("snapshot", "tenants")
        check(proc.returncode != 0 and "name one of its databases" in proc.stderr, proc.stderr)
        log = env.log()
        check("'notes.db' is not followed (yet)" in log and "is not a SQLite database" in log, log[-2000:])
        check("'journal.db' is not followed (yet)" in log and "not in WAL mode" in log, log[-2000:])
        check("'main.db' is not followed here: it is configured on its own, as 'main'" in log, log[-2000:])
        check(os.path.isdir(os.path.join(env.backup, "main")) and not os.path.exists(os.path.join(env.backup, "tenants%2Fmain.db")),
              "main.db is not replicated exactly once, as 'main': %s" % os.listdir(env.backup))
        check(len(generations(env, "a.db")) >= 2, "the re-created a.db did not start a new generation")
        out = os.path.join(env.dir, "a-latest.db")
        proc = env.tidemark("restore", "tenants/a.db", "-o", out)
        check(proc.returncode == 0, proc.stderr)
        check(restored_ids(out) == 15, "the re-created a.db restores %d rows, expected its own 15" % restored_ids(out))
        commits = env.commits("a.db")
        target = max(t1 for _, t1 in commits.values()) + SLACK_MS
        out = os.path.join(env.dir, "a-at.db")
        proc = env.tidemark("restore", "tenants/a.db", "-o", out, "--timestamp", iso(target))
        check(proc.returncode == 0, proc.stderr)
        check_exact(out, commits, target, "tenants/a.db (re-created)")
        for relpath, rows in (("new/deep/b.db", 20), ("gone/c.db", 10)):
            out = os.path.join(env.dir, relpath.replace("/", "_"))
            proc = env.tidemark("restore", "tenants/" + relpath, "-o", out)
            check(proc.returncode == 0 and restored_ids(out) == rows, "tenants/%s: %s" % (relpath, proc.stderr))
        # any file name: escaped in keys, quoted in JSON
        odd = 'odd "quoted" name\\.db'
        check(os.path.exists(env.path(odd)), "the oddly named database was not made")
        listing = env.tidemark("list", "tenants/*", "--json")
        check(listing.returncode == 0, listing.stderr)
        names = [entry["database"] for entry in json.loads(listing.stdout)]
        check("tenants/" + odd in names, "list --json lacks %r: %s" % (odd, names))
        out = os.path.join(env.dir, "odd.db")
        proc = env.tidemark("restore", "tenants/" + odd, "-o", out)
        check(proc.returncode == 0 and restored_ids(out) == 5, proc.stderr)
        # retention and drills take the entry's name and globs too
        proc = env.tidemark("retention", "tenants", "--dry-run", "--json")
        check(proc.returncode == 0, proc.stderr)
        retained = [entry["database"] for entry in json.loads(proc.stdout)]
        for relpath in ("a.db", "new/deep/b.db", "gone/c.db", odd):
            check("tenants/" + relpath in retained, "retention skipped tenants/%s: %s" % (relpath, proc.stdout[:500]))
        proc = env.tidemark("drill", "tenants/new/*")
        check(proc.returncode == 0 and proc.stdout.count(": ok;") == 1 and "drill tenants/new/deep/b.db" in proc.stdout,
              proc.stdout + proc.stderr)
    finally:
        env.cleanup()


def fnv1a(text):
    h = 1469598103934665603
    for byte in text.encode():
        h = ((h ^ byte) * 1099511628211) % (1 << 64)
    return h


def snapshot_times(env, relpath):
    name = ("tenants/" + relpath).replace("/", "%2F")
    paths = glob.glob(os.path.join(env.backup, name, "generations", "*", "snapshots", "*.snap"))
    return sorted(int(os.path.basename(p).split("-")[1].split(".")[0]) for p in paths)


def test_scheduled_snapshots_spread_and_skipped_when_unchanged():
    """Every minute, spread over 20 s: a database written since its last
    snapshot gets one at minute + its share of the window (fixed by its
    name, the same FNV-1a), even while asleep; unchanged ones write
    nothing. Takes up to a minute and a half (one schedule minute, and up
    to 20 s more when a.db's slot is near at the start)."""
    env = TenantEnv("spread", '    idle-after: 1s\n    snapshot: { schedule: "* * * * *", spread: 20s }\n')

    def next_slot(relpath, after_ms):
        """The first scheduled time of relpath after after_ms: a minute
        plus its share of the spread."""
        slot = after_ms // 60000 * 60000 + fnv1a("tenants/" + relpath) % 20000
        return slot if slot > after_ms else slot + 60000

    try:
        for relpath in ("a.db", "b.db", "c.db"):
            env.create(relpath)
        env.start()
        # The write and the databases falling asleep (a few seconds) must
        # all come before a.db's next slot: the slot asserted is the first
        # one after the write, and it must find the database asleep. A
        # slot's snapshot may run up to a sync after it (1.5 s below):
        # the write waits until it is over.
        if next_slot("a.db", now_ms()) - now_ms() < 20000:
            time.sleep((next_slot("a.db", now_ms()) + 2500 - now_ms()) / 1000.0)
        env.write("a.db", 5)
        wait_until(lambda: env.log().count("asleep") >= 3, 15, "the databases to sleep")
        start = now_ms()
        expected = next_slot("a.db", start)
        # until every database's slot has passed once (b and c unchanged)
        last_slot = max(next_slot(r, start) for r in ("a.db", "b.db", "c.db"))
        time.sleep((last_slot + 2500 - now_ms()) / 1000.0)
        env.stop()
        a, b, c = (snapshot_times(env, r) for r in ("a.db", "b.db", "c.db"))
        check(len(b) == 1 and len(c) == 1, "unchanged databases took scheduled snapshots: b %s, c %s" % (b, c))
        check(len(a) == 2, "a.db, written since its snapshot, has snapshots %s" % a)
        check(expected <= a[1] <= expected + 1500, "a.db's scheduled snapshot at %s, expected at %s (its share of "
              "the spread) + one sync" % (iso(a[1]), iso(expected)))
    finally:
        env.cleanup()


def test_busy_databases_beyond_max_open_take_turns():
    """Four databases written at once with max-open 2: none starves. Each
    one's every commit is shipped, a restore at any second never holds a
    commit made after it, and holds every commit made more than a few
    turns (one sync interval each) before it."""
    env = TenantEnv("turns", "    max-open: 2\n    idle-after: 1s\n")
    try:
        names = ["t%d.db" % n for n in range(4)]
        for relpath in names:
            env.create(relpath)
        env.start()
        writers = [threading.Thread(target=env.write, args=(r, 150), kwargs={"delay_ms": 20}) for r in names]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        time.sleep(2.0)
        env.stop()
        check(env.log().count("asleep (") >= 4, "the busy databases did not take turns")
        turns_ms = 4 * 1000   # at most a few turns of one sync interval (200 ms) each, with slack
        for relpath in names:
            commits = env.commits(relpath)
            first = min(t0 for t0, _ in commits.values())
            last = max(t1 for _, t1 in commits.values())
            for n in range(6):
                target = first + (last - first) * n // 5
                out = os.path.join(env.dir, "%s-%d.db" % (relpath, n))
                proc = env.tidemark("restore", "tenants/" + relpath, "-o", out, "--timestamp", iso(target))
                if proc.returncode != 0 and "no backup of" in proc.stderr and n == 0:
                    continue   # before its first snapshot
                check(proc.returncode == 0, proc.stderr)
                k = restored_ids(out)
                must_not = [i for i, (t0, _) in commits.items() if t0 > target]
                check(not must_not or k < min(must_not), "%s at %s holds txn %d, begun after it" % (relpath, iso(target), k))
                must = [i for i, (_, t1) in commits.items() if t1 <= target - turns_ms]
                check(not must or k >= max(must), "%s at %s lacks txn %d, committed %d ms before (starved?)"
                      % (relpath, iso(target), max(must) if must else 0, target - commits[max(must)][1] if must else 0))
            out = os.path.join(env.dir, relpath + "-latest.db")
            proc = env.tidemark("restore", "tenants/" + relpath, "-o", out)
            check(proc.returncode == 0 and restored_ids(out) == 150, "%s: not every commit shipped" % relpath)
    finally:
        env.cleanup()


if __name__ == "__main__":
    sys.exit(run_tests([test_databases_found_created_deleted_and_restored_to_one_second,
                        test_idle_databases_hold_no_files_and_write_nothing,
                        test_directories_and_files_come_and_go,
                        test_busy_databases_beyond_max_open_take_turns,
                        test_scheduled_snapshots_spread_and_skipped_when_unchanged]))
