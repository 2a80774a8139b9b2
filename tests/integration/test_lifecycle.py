#!/usr/bin/python3
"""Integration tests of the archive's life cycle: snapshot schedules
(a missed snapshot is taken at start), retention (the command and the
sidecar's own runs), verify and drills. Restores are checked against the
writer's ground truth (helpers.py). Prints TAP.
"""
import json, os, re, signal, sqlite3, subprocess, sys, time

from helpers import *


def snapshots(env):
    return archive_files(env, ".snap")


def segments(env):
    return archive_files(env, ".seg")


def tidemark(*args):
    return subprocess.run([TIDEMARK] + list(args), capture_output=True, text=True)

# ------------------------------------------------------------------ tests

def test_missed_scheduled_snapshot_is_taken_at_start():
    """The sidecar was down over the scheduled time: it takes the missed
    snapshot as soon as it is back (and not again at the next start)."""
    env = Env("missed", extra_db='    snapshot: { schedule: "0 3 * * *" }\n')
    try:
        env.replicate_writes(20, "--delay-ms", "5")
        check(len(snapshots(env)) == 1, "expected the generation's first snapshot only")
        position = os.path.join(env.dir, ".app.db-tidemark", "position")
        with open(position) as f:
            text = f.read()
        # pretend the last snapshot was taken two days ago, before 03:00
        two_days_ago = int(time.time() * 1000) - 2 * 86400 * 1000
        with open(position, "w") as f:
            f.write(re.sub(r"last-snapshot \d+", "last-snapshot %d" % two_days_ago, text))
        env.start()
        env.write_py(20, "--delay-ms", "5", start=21)
        time.sleep(0.5)
        env.stop()
        log = env.full_log()
        check("was missed while the sidecar was down" in log, "missed snapshot not reported: " + log[-1500:])
        check("resumed generation" in log, "the generation did not resume: " + log[-1500:])
        check(len(snapshots(env)) == 2, "expected a second snapshot, found %d" % len(snapshots(env)))
        env.start()
        time.sleep(0.3)
        env.stop()
        check(len(snapshots(env)) == 2, "the caught-up snapshot was taken again")
        verify_timeline(env, points=5)
    finally:
        env.cleanup()


def test_retention_command():
    """--dry-run deletes nothing and names the rule keeping each snapshot;
    a real run as of 10 days later keeps only what the rules say, and the
    latest point still restores exactly; older points are refused clearly."""
    # the sidecar's own retention is off here (it would already thin out
    # same-day snapshots); the command gets a configuration with it on
    env = Env("retention", extra_db="    snapshot-interval: 1s\n    retention: off\n")
    try:
        env.replicate_writes(300, "--delay-ms", "15")
        env.config = env.write_config("retention.yml", env.key, extra_db="    snapshot-interval: 1s\n")
        before_snaps, before_segs = len(snapshots(env)), len(segments(env))
        check(before_snaps >= 3, "expected several snapshots, found %d" % before_snaps)
        later = iso(int(time.time() * 1000) + 10 * 86400 * 1000)
        proc = tidemark("retention", "-c", env.config, "--dry-run", "--json", "--now", later)
        check(proc.returncode == 0, "dry run failed: " + proc.stderr)
        plan = json.loads(proc.stdout)[0]
        check(plan["dry_run"] and plan["kept_snapshots"] == 1 and plan["deleted_snapshots"] == before_snaps - 1,
              "dry-run plan: %r" % {k: v for k, v in plan.items() if k != "snapshots"})
        newest = plan["snapshots"][-1]
        check(newest["keep"] and "newest" in newest["kept_by"] and "daily" in newest["kept_by"], "newest: %r" % newest)
        check(len(snapshots(env)) == before_snaps and len(segments(env)) == before_segs, "--dry-run deleted something")
        proc = tidemark("retention", "-c", env.config, "--now", later)
        check(proc.returncode == 0 and "deleted %d snapshot(s)" % (before_snaps - 1) in proc.stdout,
              "retention: " + proc.stdout + proc.stderr)
        check(len(snapshots(env)) == 1 and os.path.basename(snapshots(env)[0]) in newest["key"],
              "kept snapshots: %r" % snapshots(env))
        # the latest point is still exact
        proc, out = env.restore()
        check(proc.returncode == 0, "latest restore after retention: " + proc.stderr)
        check(restored_ids(out) == len(env.commits()), "latest restore lacks rows after retention")
        # a point before the kept snapshot no longer exists, and says so
        first = min(t0 for t0, t1 in env.commits().values())
        proc, _ = env.restore(iso(first + 50))
        check(proc.returncode == 1 and "earliest restorable point" in proc.stderr, "old point: " + proc.stderr)
        # what retention leaves verifies clean
        proc = tidemark("verify", "-c", env.config, "--deep")
        check(proc.returncode == 0, "verify after retention: " + proc.stdout + proc.stderr)
        # a second run finds nothing more to delete
        proc = tidemark("retention", "-c", env.config, "--now", later)
        check(proc.returncode == 0 and "deleted 0 snapshot(s) and 0 segment(s)" in proc.stdout, proc.stdout)
    finally:
        env.cleanup()


def test_sidecar_runs_retention_after_snapshots():
    """With snapshots every second and a 2 s point-in-time window, the
    sidecar's own retention runs keep the archive small while every
    second of the window (and the latest point) stays restorable."""
    env = Env("autoretention", extra_db="    snapshot-interval: 1s\n"
              "    retention: { daily: 0, weekly: 0, monthly: 0, yearly: 0, point-in-time: 2s }\n")
    try:
        env.create_db()
        env.start()
        env.write_py(250, "--delay-ms", "20")
        time.sleep(1.5)
        env.stop()
        stopped_ms = int(time.time() * 1000)
        count = len(snapshots(env))
        check(1 <= count <= 4, "retention did not run: %d snapshots remain" % count)
        commits = env.commits()
        last = max(t1 for t0, t1 in commits.values())
        proc, out = env.restore()
        check(proc.returncode == 0 and restored_ids(out) == len(commits), "latest point lost: " + proc.stderr)
        # The window is the 2 s before each retention run, and the last one
        # ran before the stop (snapshots, hence runs, go on every second
        # after the writes end): every second from stop - 2 s is promised.
        verify_point(env, commits, max(last - 1500, stopped_ms - 2000 + 250))
    finally:
        env.cleanup()


def test_verify_reports_every_damage():
    """verify passes a healthy archive (--deep restores the newest point),
    and reports, naming the object, every flipped byte, truncation,
    deletion, duplicate and reordering in randomised cases."""
    import random, shutil
    rng = random.Random(20261124)
    env = Env("verify", extra_db="    snapshot-interval: 1s\n    retention: off\n")
    try:
        env.replicate_writes(150, "--delay-ms", "15", "--big-every", "70")
        proc = tidemark("verify", "-c", env.config, "--deep")
        check(proc.returncode == 0 and "ok" in proc.stdout, "healthy archive: " + proc.stdout + proc.stderr)
        pristine = os.path.join(env.dir, "pristine")
        shutil.copytree(env.backup, pristine)
        segs = [os.path.relpath(p, env.backup) for p in segments(env)]
        snaps = [os.path.relpath(p, env.backup) for p in snapshots(env)]
        check(len(segs) >= 6 and len(snaps) >= 2, "archive too small: %d segments" % len(segs))
        first_snapshot = snaps[0]   # index 0: the base of the first run
        # Undetectable by design (docs/design.md): the newest segment, and
        # the first segment when a snapshot follows it exactly (that is what
        # retention leaves behind).
        snap_indexes = {int(os.path.basename(p).split("-")[0], 16) for p in snaps}
        first_seg_index = int(os.path.basename(segs[0]).split("-")[0], 16)
        deletable = [p for p in segs[:-1] if not (p == segs[0] and first_seg_index + 1 in snap_indexes)]
        deletable.append(first_snapshot)
        # CORRUPTION_CASES (make torture: 1000) scales the mix; default 68
        total = int(os.environ.get("CORRUPTION_CASES", "68"))
        scale = total / 68.0
        cases = []
        for _ in range(int(40 * scale)):
            cases.append(("flip", rng.choice(segs + snaps)))
        for _ in range(int(8 * scale)):
            cases.append(("truncate", rng.choice(segs + snaps)))
        for _ in range(max(8, int(8 * scale))):
            cases.append(("delete", rng.choice(deletable)))
        for _ in range(int(6 * scale)):
            cases.append(("duplicate", rng.choice(segs[:-1])))
        while len(cases) < total:
            a, b = rng.sample(segs, 2)
            cases.append(("reorder", a + "|" + b))
        detected = 0
        for kind, target in cases:
            shutil.rmtree(env.backup)
            shutil.copytree(pristine, env.backup)
            names = target.split("|")
            path = os.path.join(env.backup, names[0])
            if kind == "flip":
                with open(path, "r+b") as f:
                    size = os.path.getsize(path)
                    pos = rng.randrange(size)
                    f.seek(pos); b = f.read(1); f.seek(pos); f.write(bytes([b[0] ^ (1 << rng.randrange(8))]))
            elif kind == "truncate":
                with open(path, "r+b") as f:
                    f.truncate(rng.randrange(os.path.getsize(path)))
            elif kind == "delete":
                os.unlink(path)
            elif kind == "duplicate":
                # the same bytes again under the name of a later index
                index, first, last = os.path.basename(path)[:-4].split("-")
                new = "%016x-%s-%s.seg" % (int(index, 16) + 1000, first, last)
                shutil.copy(path, os.path.join(os.path.dirname(path), new))
                names.append(os.path.relpath(os.path.join(os.path.dirname(path), new), env.backup))
            elif kind == "reorder":
                other = os.path.join(env.backup, names[1])
                tmp = path + ".swap"
                os.rename(path, tmp); os.rename(other, path); os.rename(tmp, other)
            proc = tidemark("verify", "-c", env.config)
            named = any(os.path.basename(n) in proc.stdout for n in names) or \
                    (kind == "delete" and "missing" in proc.stdout) or (kind == "delete" and "no snapshot" in proc.stdout)
            if proc.returncode == 1 and "PROBLEM" in proc.stdout and named:
                detected += 1
            else:
                print("# undetected %s of %s: rc=%d %s" % (kind, target, proc.returncode, proc.stdout[-300:]))
        print("# verify detected %d of %d damage cases" % (detected, len(cases)))
        check(detected == len(cases), "verify missed %d of %d damage cases" % (len(cases) - detected, len(cases)))
    finally:
        env.cleanup()


def test_drill_measures_rto_rpo_and_records_it():
    """A drill restores the newest point, runs the check query on it,
    reports RTO and RPO, leaves nothing in staging and records the result
    in the replica, where list shows it; a failing check fails the drill."""
    staging_holder = {}
    def drill_section(sql):
        return '    drill: { staging: %s, check-sql: "%s" }\n' % (staging_holder["dir"], sql)
    env = Env("drill")
    staging_holder["dir"] = os.path.join(env.dir, "staging")
    try:
        env.config = env.write_config("tidemark.yml", env.key, extra_db=drill_section("SELECT count(*) FROM t"))
        env.replicate_writes(80, "--delay-ms", "10")
        last_commit = max(t1 for t0, t1 in env.commits().values())
        proc = tidemark("drill", "-c", env.config, "app", "--json")
        check(proc.returncode == 0, "drill failed: " + proc.stdout + proc.stderr)
        record = json.loads(proc.stdout)[0]
        now = int(time.time() * 1000)
        check(record["ok"] and record["check_result"] == "80", "drill record: %r" % record)
        check(0 <= record["rto_ms"] < 60000, "RTO: %r" % record)
        # RPO: the newest restorable transaction is the last commit (seen within 250 ms of it)
        check(now - last_commit - 1000 <= record["rpo_ms"] <= now - last_commit + 500, "RPO %d ms, last commit %d ms ago"
              % (record["rpo_ms"], now - last_commit))
        check(os.listdir(staging_holder["dir"]) == [], "drill left files in staging: %r" % os.listdir(staging_holder["dir"]))
        proc = tidemark("list", "-c", env.config)
        check("last drill: %s ok" % record["time"] in proc.stdout, "list: " + proc.stdout)
        # a check query that returns no row fails the drill, and that is recorded too
        env.config = env.write_config("failing.yml", env.key, extra_db=drill_section("SELECT id FROM t WHERE id < 0"))
        proc = tidemark("drill", "-c", env.config, "app")
        check(proc.returncode == 1 and "FAILED: check-sql returned no row" in proc.stdout, "failing drill: " + proc.stdout)
        proc = tidemark("list", "-c", env.config, "--json")
        last = json.loads(proc.stdout)[0]["last_drill"]
        check(last and last["ok"] is False and "no row" in last["error"], "recorded failure: %r" % last)
        env.config = env.write_config("broken.yml", env.key, extra_db=drill_section("SELEC nonsense"))
        proc = tidemark("drill", "-c", env.config, "app")
        check(proc.returncode == 1 and "check-sql failed" in proc.stdout, "broken check-sql: " + proc.stdout)
    finally:
        env.cleanup()

def test_list_estimates_the_latest_restore():
    """list says what a restore of the latest point reads (the snapshot,
    then the deltas and segments to replay: exactly the objects a restore
    applies) and, once a drill has recorded what it read and how long it
    took, the time that rate gives; the drill's bytes are those list
    plans."""
    env = Env("estimate")
    try:
        env.replicate_writes(60, "--delay-ms", "10")
        proc = tidemark("list", "-c", env.config, "--json")
        check(proc.returncode == 0, "list: " + proc.stdout + proc.stderr)
        latest = json.loads(proc.stdout)[0]["latest"]
        check(latest and latest["estimated_restore_s"] is None and latest["gap"] is False, "before a drill: %r" % latest)
        newest = max(snapshots(env), key=lambda p: os.path.basename(p))
        check(latest["snapshot_bytes"] == os.path.getsize(newest), "snapshot bytes %r, newest snapshot %s is %d bytes"
              % (latest, newest, os.path.getsize(newest)))
        proc, out = env.restore()
        m = re.search(r"from (\d+) segment\(s\) and (\d+) delta\(s\)", proc.stdout)
        check(proc.returncode == 0 and m, "restore: " + proc.stdout + proc.stderr)
        check(latest["replay_objects"] == int(m.group(1)) + int(m.group(2)) > 0,
              "list plans %d objects to replay, the restore applied %s segments and %s deltas"
              % (latest["replay_objects"], m.group(1), m.group(2)))
        text = tidemark("list", "-c", env.config).stdout
        check("latest point: snapshot %s (%d bytes), then %d object(s) to replay (%d bytes"
              % (latest["snapshot"], latest["snapshot_bytes"], latest["replay_objects"], latest["replay_bytes"]) in text
              and "unknown until a drill records what it read" in text, "list text: " + text)

        proc = tidemark("drill", "-c", env.config, "app", "--json")
        check(proc.returncode == 0, "drill: " + proc.stdout + proc.stderr)
        record = json.loads(proc.stdout)[0]
        check(record.get("read_bytes") == latest["snapshot_bytes"] + latest["replay_bytes"],
              "the drill read %r bytes, list plans %d + %d" % (record.get("read_bytes"), latest["snapshot_bytes"],
                                                               latest["replay_bytes"]))
        listed = json.loads(tidemark("list", "-c", env.config, "--json").stdout)[0]
        check(listed["last_drill"].get("read_bytes") == record["read_bytes"], "list's last drill: %r" % listed["last_drill"])
        expected = (latest["snapshot_bytes"] + latest["replay_bytes"]) * record["rto_ms"] / 1000.0 / record["read_bytes"]
        got = listed["latest"]["estimated_restore_s"]
        check(got is not None and abs(got - expected) < 0.001, "estimate %r s, the drill's rate gives %.3f s"
              % (got, expected))
        text = tidemark("list", "-c", env.config).stdout
        check("estimated restore time: %.1f s (at the last drill's rate)" % expected in text, "list text: " + text)
    finally:
        env.cleanup()


BUSY_WRITER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("PRAGMA busy_timeout=30000")
deadline = time.time() + float(sys.argv[2])
n = 0
while time.time() < deadline:
    db.execute("BEGIN")
    for k in range(40):
        db.execute("INSERT OR REPLACE INTO t(id, payload, big) VALUES (?, ?, randomblob(300))",
                   (1 + (n * 40 + k) % 3000, "v%d" % n))
    db.execute("COMMIT")
    n += 1
print(n)
"""


def test_snapshots_under_a_writer_that_never_pauses():
    """An application committing back to back leaves the write lock free
    for microseconds between transactions. The sidecar polls for it
    (SQLite's own busy handler sleeps up to 100 ms between attempts and
    never got it, so snapshots failed with "database is locked" and the
    loop stalled for 2 s). Snapshots every second must all be taken while
    the writer runs, and the latest restore must equal the database."""
    env = Env("busywriter", extra_db="    snapshot-interval: 1s\n    retention: off\n")
    try:
        env.create_db()
        env.start()
        before = len(snapshots(env))
        writer = subprocess.run([sys.executable, "-c", BUSY_WRITER, env.db, "6"], capture_output=True, text=True)
        check(writer.returncode == 0, "writer failed: " + writer.stderr)
        during = len(snapshots(env)) - before
        time.sleep(0.5)
        env.stop()
        log = env.full_log()
        check("database is locked" not in log, "the sidecar failed on the lock: " + log[-2000:])
        check(during >= 4, "only %d snapshot(s) in 6 s of back-to-back commits (%s transactions): %s"
              % (during, writer.stdout.strip(), log[-2000:]))
        proc, out = env.restore()
        check(proc.returncode == 0, "restore failed: " + proc.stderr)
        query = "SELECT count(*), group_concat(id || ':' || payload || ':' || hex(big)) FROM (SELECT * FROM t ORDER BY id)"
        got = sqlite3.connect(out).execute(query).fetchone()
        want = sqlite3.connect(env.db).execute(query).fetchone()
        check(got == want and got[0] == 3000, "restored database differs from the application's (%d rows vs %d)"
              % (got[0], want[0]))
    finally:
        env.cleanup()


def test_snapshot_command_with_and_without_sidecar():
    """`tidemark snapshot` asks the running sidecar (control socket, mode
    0600) and returns once the snapshot is stored; with no sidecar it takes
    the snapshot itself. Restores stay exact."""
    env = Env("snapcmd", extra_db="    retention: off\n")
    try:
        env.create_db()
        proc = tidemark("snapshot", "-c", env.config, "app")
        check(proc.returncode == 0 and "no sidecar was running" in proc.stdout, "without sidecar: " + proc.stdout + proc.stderr)
        check(len(snapshots(env)) == 1, "expected 1 snapshot, found %d" % len(snapshots(env)))
        env.start()
        sock = os.path.join(env.dir, ".app.db-tidemark", "control.sock")
        check(oct(os.stat(sock).st_mode & 0o777) == "0o600", "control socket mode %o" % (os.stat(sock).st_mode & 0o777))
        writer = subprocess.Popen([WRITER_PY, env.db, env.log, "--count", "100", "--delay-ms", "10"])
        time.sleep(0.5)
        before = len(snapshots(env))
        proc = tidemark("snapshot", "-c", env.config, "app")
        check(proc.returncode == 0 and "taken by the running sidecar" in proc.stdout, "with sidecar: " + proc.stdout + proc.stderr)
        check(len(snapshots(env)) == before + 1, "expected one more snapshot")
        key = proc.stdout.split()[1]
        check(os.path.exists(os.path.join(env.backup, key)), "the answer came before the replica had %s" % key)
        writer.wait()
        time.sleep(0.5)
        # a second sidecar on the same state directory is refused
        proc = tidemark("replicate", "-c", env.config)
        check(proc.returncode == 1 and "another tidemark process" in proc.stderr, "second sidecar: " + proc.stderr)
        env.stop()
        verify_timeline(env, points=5)
    finally:
        env.cleanup()


def test_retention_spares_what_a_restore_reads():
    """A generation with a lease of a running restore is left whole by
    retention; an expired lease protects nothing; a finished restore
    leaves no lease behind."""
    env = Env("lease", extra_db="    snapshot-interval: 1s\n    retention: off\n")
    try:
        env.replicate_writes(120, "--delay-ms", "15")
        env.config = env.write_config("retention.yml", env.key, extra_db="    snapshot-interval: 1s\n")
        proc, _ = env.restore()
        check(proc.returncode == 0, proc.stderr)
        check(not os.path.exists(os.path.join(env.backup, "app", "leases")), "the restore left its lease")
        gen = os.listdir(os.path.join(env.backup, "app", "generations"))[0]
        lease_dir = os.path.join(env.backup, "app", "leases")
        os.makedirs(lease_dir)
        lease = os.path.join(lease_dir, "otherhost-4242-1.lease")
        now = int(time.time() * 1000)
        later = iso(now + 10 * 86400 * 1000)
        with open(lease, "w") as f:
            f.write("generation %s\nexpires %d\n" % (gen, now + 3600 * 1000))
        before = len(snapshots(env)) + len(segments(env))
        proc = tidemark("retention", "-c", env.config, "--now", later, "--json")
        check(proc.returncode == 0, proc.stderr)
        plan = json.loads(proc.stdout)[0]
        check(plan["deleted_snapshots"] == 0 and plan["deleted_segments"] == 0, "deleted under a lease: %r" % plan)
        check(all("in-use-by-a-restore" in s["kept_by"] for s in plan["snapshots"]), "kept_by: %r" % plan["snapshots"])
        check(len(snapshots(env)) + len(segments(env)) == before, "objects disappeared under a lease")
        with open(lease, "w") as f:
            f.write("generation %s\nexpires %d\n" % (gen, now - 1000))
        proc = tidemark("retention", "-c", env.config, "--now", later, "--json")
        check(proc.returncode == 0 and json.loads(proc.stdout)[0]["deleted_snapshots"] > 0, "expired lease still protects")
    finally:
        env.cleanup()


TESTS = [
    test_missed_scheduled_snapshot_is_taken_at_start,
    test_retention_command,
    test_sidecar_runs_retention_after_snapshots,
    test_verify_reports_every_damage,
    test_drill_measures_rto_rpo_and_records_it,
    test_list_estimates_the_latest_restore,
    test_snapshot_command_with_and_without_sidecar,
    test_snapshots_under_a_writer_that_never_pauses,
    test_retention_spares_what_a_restore_reads,
]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
