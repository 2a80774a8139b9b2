#!/usr/bin/python3
"""Crash-consistency torture (make torture; a short run in make test).

Rounds, for TORTURE_SECONDS (default 300): the writer commits
transactions of random sizes (some larger than the WAL autocheckpoint),
with the application's own TRUNCATE checkpoints and an occasional VACUUM,
while one event strikes:
  - the sidecar is killed with -9 (or stopped with SIGTERM) at a random
    moment and restarted;
  - the sidecar is killed -9 at a chosen point: mid-upload, mid-snapshot
    or mid-checkpoint. tests/faults/faultfs.c (preloaded) stalls that
    system call (a write to the replica, a read of the snapshot staging
    file, the fsync of the database by the sidecar's checkpoint) and the
    kill lands while the call is in progress;
  - the replica's disk fails for 0.5-3 s (EIO on write, EACCES on open,
    ENOSPC on rename), sometimes with a kill -9 in the middle;
  - the writer itself is killed -9 in the middle of a transaction.
Ground truth: the writer's log of committed
transactions. After every round, restores at random seconds must hold an
exact prefix of the committed sequence with the right payloads, pass
integrity_check, contain every transaction that committed at least 250 ms
before the target (outside the sidecar's downtime, where commits are
stamped when it comes back), and none that began after it.

Prints TAP, one line per round, and a summary: rounds, restores checked,
mismatches (the target is 0).
"""
import json, os, random, signal, subprocess, sys, time

from helpers import *


OUTAGES = ["write EIO 1 0 /backup/", "open EACCES 1 0 /backup/", "rename ENOSPC 1 0 /backup/"]
# where a targeted kill lands: the call faultfs stalls, and the path it is on
KILL_POINTS = {
    "kill-mid-upload": "write DELAY:400 1 0 /backup/",
    "kill-mid-snapshot": "read DELAY:150 1 0 -tidemark/tmp/",
    "kill-mid-checkpoint": "fsync DELAY:400 1 0 /app.db",
}
EVENTS = ["kill-sidecar", "kill-sidecar", "stop-sidecar", "kill-writer", "none", "outage",
          "kill-mid-upload", "kill-mid-snapshot", "kill-mid-checkpoint"]


def kill_at(env, event):
    """Stalls the call KILL_POINTS names and kills -9 the sidecar while it
    is in it. Returns whether the point was reached (else it was killed
    after 5 s wherever it was)."""
    before = len(env.faults_injected())
    snapshot = None
    env.set_fault(KILL_POINTS[event])
    if event == "kill-mid-snapshot":
        snapshot = subprocess.Popen([TIDEMARK, "snapshot", "-c", env.config, "app", "--timeout", "60s"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 5
    while time.time() < deadline and len(env.faults_injected()) == before:
        time.sleep(0.01)
    reached = len(env.faults_injected()) > before
    if reached:
        time.sleep(0.02)              # well inside the stalled call
    env.stop(signal.SIGKILL)
    env.set_fault("")
    if snapshot:
        snapshot.wait(timeout=120)
    return reached


def replica_caught_up(env):
    """Whether `tidemark status` says no object waits for any replica."""
    proc = subprocess.run([TIDEMARK, "status", "-c", env.config, "--json"], capture_output=True, text=True)
    try:
        databases = json.loads(proc.stdout)["databases"]
    except (ValueError, KeyError):
        return False
    return all(r.get("queued_objects") == 0 for db in databases for r in db.get("replicas", []))


def torture(seconds, seed):
    rng = random.Random(seed)
    env = FaultEnv("torture", extra_db="    checkpoint-pages: 50\n")
    env.fault_root = env.dir          # the replica, the spool and the database
    rounds = restores = mismatches = 0
    outages = kills_at_points = 0
    downtimes = []
    history = []          # (first id, round, event) for diagnostics
    next_id = 1
    deadline = time.time() + seconds
    try:
        env.create_db()
        env.start()
        while time.time() < deadline:
            rounds += 1
            count = rng.randint(40, 160)
            options = ["--delay-ms", str(rng.choice([2, 5, 10, 20]))]
            if rng.random() < 0.3:
                options += ["--big-every", str(rng.randint(20, 60))]
            if rng.random() < 0.4:
                options += ["--truncate-every", str(rng.randint(15, 50))]
            if rng.random() < 0.15:
                options += ["--vacuum-at", str(next_id + rng.randint(5, count - 5))]
            round_start_ms = int(time.time() * 1000)
            writer_err = open(os.path.join(env.dir, "writer-%d.err" % rounds), "w+")
            writer = subprocess.Popen([WRITER_PY, env.db, env.log, "--count", str(count), "--start", str(next_id)]
                                      + options, stdout=subprocess.DEVNULL, stderr=writer_err)
            time.sleep(rng.uniform(0.2, 1.5))
            event = rng.choice(EVENTS)
            if event in KILL_POINTS:
                down = int(time.time() * 1000)
                if not kill_at(env, event):
                    event += " (not reached)"
                else:
                    kills_at_points += 1
                time.sleep(rng.uniform(0.1, 0.5))
                env.start()
                downtimes.append((down, int(time.time() * 1000)))
            elif event == "outage":
                outages += 1
                env.set_fault(rng.choice(OUTAGES))
                time.sleep(rng.uniform(0.5, 3.0))
                if rng.random() < 0.5:
                    event += " + kill -9"
                    down = int(time.time() * 1000)
                    env.stop(signal.SIGKILL)
                    env.start()
                    downtimes.append((down, int(time.time() * 1000)))
                env.set_fault("")
            elif event in ("kill-sidecar", "stop-sidecar"):
                down = int(time.time() * 1000)
                env.stop(signal.SIGKILL if event == "kill-sidecar" else signal.SIGTERM)
                time.sleep(rng.uniform(0.1, 1.0))
                env.start()
                downtimes.append((down, int(time.time() * 1000)))
            elif event == "kill-writer":
                time.sleep(rng.uniform(0.0, 0.5))
                writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=300)
            if event == "kill-writer":
                record_unlogged_commit(env, round_start_ms, int(time.time() * 1000))
            # a writer that was not killed must have done its work: one that
            # failed would leave the ground truth short (its next run would
            # find ids the log lacks), so the round fails with its reason
            writer_err.seek(0)
            writer_failed = event != "kill-writer" and writer.returncode != 0
            if writer_failed:
                mismatches += 1
                print("# round %d: the writer exited %d: %s" % (rounds, writer.returncode, writer_err.read()[-1500:]))
            writer_err.close()
            commits = env.commits()
            history.append((next_id, rounds, event))
            next_id = max(commits) + 1 if commits else 1
            # a writer killed mid-transaction leaves nothing half-done: the
            # database holds exactly the ids the log says were committed
            time.sleep(0.6)
            if event.startswith("outage"):
                # after a replica outage the uploader retries on its backoff:
                # the replica holds the round's commits once nothing waits
                # for it (a replica that never catches up fails the round)
                wait_until(lambda: replica_caught_up(env), 30, "the replica to catch up after the outage")
            first = min(t0 for t0, t1 in commits.values())
            last = max(t1 for t0, t1 in commits.values())
            round_ok = not writer_failed
            for _ in range(3):
                target = rng.randint(first, last + 500)
                restores += 1
                try:
                    verify_point_with_downtimes(env, commits, target, downtimes)
                except Failure as e:
                    mismatches += 1
                    round_ok = False
                    print("# round %d, restore at %s: %s" % (rounds, iso(target), e))
                    missing = [int(w) for w in str(e).replace(";", " ").split() if w.isdigit()]
                    for first_id, r, ev in history:
                        if missing and first_id <= max(missing) + 1:
                            where = (first_id, r, ev)
                    if missing:
                        print("#   txn %d is from round %d (%s), which began at txn %d" % (max(missing), where[1], where[2], where[0]))
            print("%s %d - round %d: %s, %d commits so far" % ("ok" if round_ok else "not ok", rounds, rounds, event,
                                                                 len(commits)))
            sys.stdout.flush()
        env.stop()
        proc = subprocess.run([TIDEMARK, "verify", "-c", env.config], capture_output=True, text=True)
        if proc.returncode != 0:
            mismatches += 1
            print("# verify found problems: " + proc.stdout[-2000:] + proc.stderr)
        proc, out = env.restore()
        restores += 1
        if proc.returncode != 0 or restored_ids(out) != len(env.commits()):
            mismatches += 1
            print("# the final latest restore is not exact: " + proc.stderr)
    finally:
        faults = len(env.faults_injected())
        env.cleanup()
    print("1..%d" % rounds)
    print("# torture: %d rounds, %d restores checked, %d mismatches; %d replica outages, %d kills at a chosen point, "
          "%d faults injected" % (rounds, restores, mismatches, outages, kills_at_points, faults))
    return mismatches


def record_unlogged_commit(env, begun_ms, killed_ms):
    """A writer killed between COMMIT and its log line leaves a committed
    transaction the log lacks: log it with bounds that are surely right.
    It began after the round started; it was published by the time this
    connection sees it, which may be after the kill: a writer killed while
    publishing its commit in the wal-index leaves it to the next connection
    to recover (SQLite's rule), so the sidecar cannot see it sooner."""
    import sqlite3
    db = sqlite3.connect(env.db, timeout=30)
    highest = db.execute("SELECT max(id) FROM t").fetchone()[0] or 0
    seen_ms = int(time.time() * 1000)
    db.close()
    logged = max(env.commits() or {0: None})
    with open(env.log, "a") as f:
        for i in range(logged + 1, highest + 1):
            f.write("%d %d %d\n" % (i, begun_ms, max(killed_ms, seen_ms)))


def verify_point_with_downtimes(env, commits, target_ms, downtimes):
    proc, out = env.restore(iso(target_ms))
    check(proc.returncode == 0, "restore failed: " + proc.stderr)
    k = restored_ids(out)
    def in_downtime(t):
        return any(a - SLACK_MS <= t <= b + 1000 for a, b in downtimes)
    must = [i for i, (t0, t1) in commits.items() if t1 <= target_ms - SLACK_MS and not in_downtime(t1)]
    must_not = [i for i, (t0, t1) in commits.items() if t0 > target_ms]
    check(not must or k >= max(must), "%d rows; txn %d committed before the target is missing" % (k, max(must) if must else 0))
    check(not must_not or k < min(must_not), "%d rows; txn %d began after the target" % (k, min(must_not) if must_not else 0))
    os.unlink(out)


if __name__ == "__main__":
    seconds = int(os.environ.get("TORTURE_SECONDS", "300"))
    seed = int(os.environ.get("TORTURE_SEED", str(int(time.time()))))
    print("# torture for %d s, seed %d (TORTURE_SEED to replay)" % (seconds, seed))
    sys.exit(1 if torture(seconds, seed) else 0)
