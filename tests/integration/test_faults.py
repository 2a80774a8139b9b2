#!/usr/bin/python3
"""Storage fault tests: the file replica's disk fails under a running
sidecar, and under a restore.

tests/faults/faultfs.c (preloaded) makes the system calls under the
replica's directory fail as a failing disk does: EIO, ENOSPC and EACCES on
open, write, fsync and rename, and short writes; once (the Nth call) or
persistently for a while. For each: the error is logged naming the
replica and the system's error, the alert command fires for a persistent
failure, replication resumes by itself once the fault is gone, nothing
committed is lost (every restore is exact against the writer's ground
truth) and `tidemark verify` finds the chain whole. Prints TAP.
"""
import os, sqlite3, subprocess, time

from helpers import *

# (control line, what the log must say while it lasts; None: nothing, the
# fault must be invisible), persistent ones last PERSIST_S seconds
PERSIST_S = 2.5
FAULTS = [
    ("write EIO 1 0", "Input/output error"),
    ("write ENOSPC 1 0", "No space left on device"),
    ("open EACCES 1 0", "Permission denied"),
    ("fsync EIO 1 0", "cannot fsync"),
    ("rename EROFS 1 0", "Read-only file system"),
    ("write SHORT 1 0", None),
    ("write EIO 2 1", "Input/output error"),
    ("fsync EIO 3 1", "cannot fsync"),
    ("open ENOSPC 2 1", "No space left on device"),
]


def test_replica_disk_faults_lose_nothing():
    """Nine faults in turn while a writer commits steadily: each is
    reported, alerted when it lasts, recovered from by itself; then every
    restore is exact and verify finds the archive whole."""
    env = FaultEnv("faults")
    try:
        command = 'echo "$TIDEMARK_STATE $TIDEMARK_ALERT $TIDEMARK_REPLICA" >> %s' % env.alerts
        with open(env.config) as f:
            text = f.read()
        with open(env.config, "w") as f:
            f.write("alerts: { command: '%s', failure-after: 1s }\n" % command + text)
        env.create_db()
        env.start()
        stop_file = os.path.join(env.dir, "stop-writer")
        writer = subprocess.Popen([WRITER_PY, env.db, env.log, "--count", "100000", "--delay-ms", "10",
                                   "--stop-file", stop_file])
        try:
            for line, message in FAULTS:
                injected_before = len(env.faults_injected())
                log_before = len(env.full_log())
                env.set_fault(line)
                wait_until(lambda: len(env.faults_injected()) > injected_before, 15, "fault '%s' to be injected" % line)
                if line.endswith(" 0"):
                    time.sleep(PERSIST_S)
                env.set_fault("")
                wait_until(lambda: "replica recovered" in env.full_log()[log_before:] or message is None,
                           30, "recovery from '%s': %s" % (line, env.tail_log()))
                during = env.full_log()[log_before:]
                if message is None:
                    check("level=error" not in during, "short writes surfaced as errors: " + during[-1500:])
                else:
                    check(message in during and "replica=file" in during,
                          "'%s' not reported with the replica named: %s" % (line, during[-1500:]))
                time.sleep(0.3)
        finally:
            open(stop_file, "w").close()
            writer.wait(timeout=30)
        time.sleep(1.0)
        env.stop()

        injected = env.faults_injected()
        kinds = sorted(set(" ".join(k) for k in injected))
        print("# %d faults injected: %s" % (len(injected), ", ".join(kinds)))
        check(len(kinds) == len({" ".join(l.split()[:2]) for l, _ in FAULTS}), "not every kind was injected: %r" % kinds)
        with open(env.alerts) as f:
            alerts = f.read().split("\n")
        check("firing replica_failing file" in alerts and "resolved replica_failing file" in alerts,
              "replica_failing did not fire and resolve: %r" % alerts)

        proc = subprocess.run([TIDEMARK, "verify", "-c", env.config], capture_output=True, text=True)
        check(proc.returncode == 0, "verify after the faults: " + proc.stdout[-1500:] + proc.stderr)
        counts = verify_timeline(env, points=12)
        print("# %d commits, %d restores exact" % (len(env.commits()), len(counts) + 1))
    finally:
        env.cleanup()


def test_restore_from_a_failing_disk_is_refused():
    """Reading the replica fails (EIO on a read, on listing): the restore
    says which object or directory and why, and writes nothing."""
    env = FaultEnv("readfaults")
    try:
        env.replicate_writes(60, "--delay-ms", "3")
        output = os.path.join(env.dir, "restored.db")
        for line, message in (("read EIO 3 1", "Input/output error"),
                              ("opendir EIO 1 0", "Input/output error"),
                              ("open EACCES 1 0", "Permission denied")):
            env.set_fault(line)
            proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "app", "-o", output],
                                  capture_output=True, text=True, env=env.fault_env())
            print("# %s: %s" % (line, proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else ""))
            check(proc.returncode != 0, "restore succeeded through '%s'" % line)
            check(message in proc.stderr and (env.backup in proc.stderr or "app/" in proc.stderr),
                  "'%s': unclear error: %s" % (line, proc.stderr))
            check(not os.path.exists(output), "'%s': a restore output was left behind" % line)
        env.set_fault("")
        proc, out = env.restore(output=output)
        check(proc.returncode == 0 and restored_ids(out) == 60, "restore after the faults: " + proc.stderr)
        os.unlink(out)
        # short writes of the restored file (a full disk's first symptom,
        # or a signal): every page is still written whole
        env.fault_root = env.dir
        env.set_fault("write SHORT 1 0 tidemark-restore")
        proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "app", "-o", output],
                              capture_output=True, text=True, env=env.fault_env())
        shorts = sum(1 for op, error in env.faults_injected() if error == "SHORT")
        check(proc.returncode == 0 and restored_ids(output) == 60 and shorts > 0,
              "restore through %d short writes: %s" % (shorts, proc.stderr))
    finally:
        env.cleanup()


ORPHAN_WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("PRAGMA synchronous=FULL")        # fsync the WAL before publishing the commit
db.execute("BEGIN")
db.execute("INSERT INTO t(id, payload) VALUES (?, 'ORPHAN')", (int(sys.argv[2]),))
db.execute("COMMIT")
"""


def test_writer_killed_before_publishing_its_commit():
    """A writer dies after writing a complete, valid commit frame to the
    WAL but before publishing it in the wal-index (stalled in its WAL fsync,
    then killed -9). SQLite never committed that transaction and the next
    writer overwrites its frames: the sidecar must neither ship it nor lose
    its way in the WAL afterwards."""
    env = FaultEnv("orphan")
    env.fault_root = env.dir
    try:
        env.create_db()
        env.start()
        env.write_py(20, "--delay-ms", "5")
        env.set_fault("fsync DELAY:3000 1 0 -wal")
        orphan = subprocess.Popen(["/usr/bin/python3", "-c", ORPHAN_WRITER, env.db, "21"], env=env.fault_env())
        wait_until(lambda: env.faults_injected(), 10, "the orphan writer to reach its WAL fsync")
        time.sleep(0.8)                     # the sidecar sees the frames meanwhile
        orphan.kill()
        orphan.wait()
        env.set_fault("")
        env.write_py(40, "--delay-ms", "5", start=21)
        time.sleep(0.5)
        env.stop()
        db = sqlite3.connect(env.db)
        check(db.execute("SELECT count(*) FROM t WHERE payload = 'ORPHAN'").fetchone()[0] == 0,
              "SQLite itself kept the orphan transaction; the test did not create the case")
        db.close()
        check("new generation" not in env.full_log().split("replicating")[-1],
              "the sidecar lost its way after the orphan: " + env.tail_log())
        counts = verify_timeline(env, points=10)      # the latest holds all 60, none ORPHAN
        check(any(c == 20 for c in counts) and any(c > 21 for c in counts), "restores: %r" % counts)
    finally:
        env.cleanup()


if __name__ == "__main__":
    sys.exit(run_tests([
        test_replica_disk_faults_lose_nothing,
        test_restore_from_a_failing_disk_is_refused,
        test_writer_killed_before_publishing_its_commit,
    ]))
