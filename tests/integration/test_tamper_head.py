#!/usr/bin/python3
"""Issue 18, finding 3: a missing tail and a rollback. Each generation has
an authenticated head (NAME/generations/GEN/head, written by the sidecar
after the objects it names, at most every 5 s while commits flow; the
previous generation's head is rewritten naming its successor). These
tests delete the newest segments, put an older head back, delete the
newest generation, plant heads, and run retention, and assert that
restore refuses the latest point (an earlier --timestamp and
--accept-missing-tail restore exactly the writer's ground truth and say
what is missing), that verify and list report each finding, and that
retention creates none. On S3 and for a Redis entry too. Prints TAP.

Each test has its own state directory (XDG_STATE_HOME) so that the
record of the newest head seen from "this host" is per test; a second
state directory plays a host that never saw the newer head.
"""
import glob, json, os, re, shutil, signal, sqlite3, subprocess, time

from helpers import *

NO_RETENTION = "    retention: off\n"
HEAD_WAIT_S = 15   # the head follows the objects it names by at most 5 s (SHIPPER_HEAD_INTERVAL_MS)


class HeadEnv(Env):
    """An Env whose tidemark commands see their own state directory
    (the record of the newest head seen), `state` unless told another."""
    def __init__(self, name, **kw):
        super().__init__(name, **kw)
        self.state = os.path.join(self.dir, "state")

    def run_env(self, state=None):
        return dict(os.environ, XDG_STATE_HOME=state or self.state, HOME=self.dir)

    def tidemark(self, *args, state=None):
        return subprocess.run([TIDEMARK] + list(args), capture_output=True, text=True, env=self.run_env(state))

    def restore(self, target=None, output=None, config=None, extra=(), state=None):
        output = output or os.path.join(self.dir, "restored-%d.db" % time.monotonic_ns())
        args = [TIDEMARK, "restore", "-c", config or self.config, "app", "-o", output] + list(extra)
        if target is not None:
            args += ["--timestamp", target]
        return subprocess.run(args, capture_output=True, text=True, env=self.run_env(state)), output


# ------------------------------------------------------------------ the archive

def gen_dirs(root, db="app"):
    base = os.path.join(root, db, "generations")
    return sorted(os.path.join(base, g) for g in os.listdir(base)) if os.path.isdir(base) else []


def segments_of(gen_dir):
    """[(index, first_ms, last_ms, path)] by index."""
    out = []
    for path in glob.glob(os.path.join(gen_dir, "segments", "*.seg")):
        index, first, last = os.path.basename(path)[:-4].split("-")
        out.append((int(index, 16), int(first), int(last), path))
    return sorted(out)


def deltas_of(gen_dir):
    """[(first_index, end_index, path)]: a delta over segments [first, end)."""
    out = []
    for path in glob.glob(os.path.join(gen_dir, "deltas", "*.delta")):
        first, end = os.path.basename(path).split("-")[:2]
        out.append((int(first, 16), int(end, 16), path))
    return sorted(out)


def delete_tail(gen_dir, keep):
    """Deletes the segments from index `keep` on, and every delta that
    reaches them (it would still hold their pages: held, not missing).
    Returns (deleted segment names, deleted delta names)."""
    segs = [s for s in segments_of(gen_dir) if s[0] >= keep]
    deltas = [d for d in deltas_of(gen_dir) if d[1] > keep]
    for item in segs + deltas:
        os.unlink(item[-1])
    return [os.path.basename(s[3]) for s in segs], [os.path.basename(d[2]) for d in deltas]


def listing(env, state=None, replica=None):
    args = ["list", "-c", env.config, "--json"] + (["--replica", replica] if replica else [])
    proc = env.tidemark(*args, state=state)
    check(proc.stdout.strip(), "list --json printed nothing: " + proc.stderr)
    return proc, json.loads(proc.stdout)


def entry(data, db="app"):
    """The database's record in list --json."""
    for e in data:
        if e["database"] == db:
            return e
    raise Failure("%s is not in list --json: %r" % (db, data))


def json_generations(data, db="app"):
    return {g["id"]: g for g in entry(data, db)["generations"]}


def wait_for_head(env, gen_dir, successor=None, replica=None):
    """Waits (sidecar running) until the head of gen_dir names every
    segment the replica holds (and, given, its successor generation)."""
    gen = os.path.basename(gen_dir)
    def named():
        segs = segments_of(gen_dir)
        proc, data = listing(env, replica=replica)
        g = json_generations(data).get(gen)
        if not g or g.get("head_segments") != (segs[-1][0] + 1 if segs else 0):
            return False
        return successor is None or ("followed by " + successor) in g["head"]
    wait_until(named, HEAD_WAIT_S, "the head of %s to name its %d segments%s"
               % (gen, len(segments_of(gen_dir)), " and its successor" if successor else ""))


def write_and_settle(env, count, start=1, delay="20"):
    """The sidecar running: commits `count` rows, waits until the head
    names the last segment, stops the sidecar (SIGTERM)."""
    env.write_py(count, "--delay-ms", delay, start=start)
    time.sleep(0.5)   # the last commits shipped
    wait_for_head(env, gen_dirs(env.backup)[-1])
    env.stop()


# ------------------------------------------------------------------ restores

def count_rows(env, proc, out):
    check(proc.returncode == 0, "restore failed: " + proc.stdout + proc.stderr)
    k = restored_ids(out)
    os.unlink(out)
    return k


def rows_at(env, target_ms, extra=(), state=None):
    """Restores at target_ms; checks it against the ground truth (every
    commit returned SLACK_MS before it, none begun after it); (k, proc)."""
    commits = env.commits()
    proc, out = env.restore(iso(target_ms), extra=extra, state=state)
    k = count_rows(env, proc, out)
    must = [i for i, (t0, t1) in commits.items() if t1 <= target_ms - SLACK_MS]
    must_not = [i for i, (t0, t1) in commits.items() if t0 > target_ms]
    check(not must or k >= max(must), "restore at %s has %d rows, commit %d is missing" % (iso(target_ms), k, max(must or [0])))
    check(not must_not or k < min(must_not), "restore at %s has %d rows, commit %d began after it"
          % (iso(target_ms), k, min(must_not or [0])))
    return k, proc


def check_refused(env, finding, target_ms=None, extra=(), state=None):
    """Restore of the latest point (or target_ms) is refused, naming the
    finding, and writes nothing."""
    proc, out = env.restore(iso(target_ms) if target_ms else None, extra=extra, state=state)
    check(proc.returncode == 1, "restore %s was not refused (exit %d): %s"
          % (iso(target_ms) if target_ms else "latest", proc.returncode, proc.stdout + proc.stderr))
    check("is incomplete at the point asked for, nothing restored: %s:" % finding in proc.stderr,
          "refusal does not name '%s': %s" % (finding, proc.stderr))
    check("--accept-missing-tail" in proc.stderr, "refusal gives no way out: " + proc.stderr)
    check(not glob.glob(out + "*"), "a refused restore wrote %r" % glob.glob(out + "*"))
    return proc


def check_accepted(env, finding, expected_rows, extra=(), state=None):
    """--accept-missing-tail restores exactly expected_rows and says it is
    incomplete and why."""
    proc, out = env.restore(extra=("--accept-missing-tail",) + tuple(extra), state=state)
    k = count_rows(env, proc, out)
    check(k == expected_rows, "--accept-missing-tail restored %d rows, the replica holds %d" % (k, expected_rows))
    check("tail:         INCOMPLETE, restored what the replica holds (--accept-missing-tail):" in proc.stdout
          and finding + ":" in proc.stdout, "--accept-missing-tail does not say what is missing: " + proc.stdout)
    return proc


def check_reported(env, finding, *words, state=None):
    """verify and list report the finding (exit non-zero)."""
    proc = env.tidemark("verify", "-c", env.config, state=state)
    check(proc.returncode != 0 and finding + ":" in proc.stdout and all(w in proc.stdout for w in words),
          "verify does not report %s %r (exit %d): %s" % (finding, words, proc.returncode, proc.stdout + proc.stderr))
    proc = env.tidemark("list", "-c", env.config, state=state)
    check(proc.returncode == 1 and ("  PROBLEM %s: " % finding) in proc.stdout and all(w in proc.stdout for w in words),
          "list does not report %s %r (exit %d): %s" % (finding, words, proc.returncode, proc.stdout + proc.stderr))
    proc, data = listing(env, state=state)
    problems = entry(data)["head_problems"]
    check(proc.returncode == 1 and any(p.startswith(finding + ":") for p in problems),
          "list --json head_problems: %r" % problems)


def check_clean(env, state=None, extra=()):
    """No head finding anywhere; the latest restore has every row and says
    its tail was checked."""
    proc = env.tidemark("verify", "-c", env.config, state=state)
    check(proc.returncode == 0, "verify: " + proc.stdout + proc.stderr)
    proc = env.tidemark("list", "-c", env.config, state=state)
    check(proc.returncode == 0 and "PROBLEM" not in proc.stdout, "list: " + proc.stdout + proc.stderr)
    proc, out = env.restore(extra=extra, state=state)
    check(count_rows(env, proc, out) == len(env.commits()), "the latest restore lacks rows")
    check("tail:         checked: the archive reaches its newest head" in proc.stdout, "tail: " + proc.stdout)


def new_generation_while_down(env, count, start):
    """The sidecar stopped: the app checkpoints with TRUNCATE and commits
    (continuity lost): the sidecar's next start begins a new generation."""
    db = sqlite3.connect(env.db)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    db.close()
    env.write_py(count, "--delay-ms", "5", start=start)


# ------------------------------------------------------------------ tests

def test_deleted_newest_segments():
    """The newest 3 segments deleted (and the deltas reaching them, which
    would still hold their pages): restore of the latest point, and of a
    time in or at the end of what is left, is refused naming the missing
    segments; a --timestamp before the gap restores exactly and says
    something is missing after it; --accept-missing-tail restores exactly
    the rows of the remaining segments and says INCOMPLETE; verify and
    list report the missing tail."""
    env = HeadEnv("head-tail", extra_db=NO_RETENTION)
    try:
        env.create_db()
        env.start()
        write_and_settle(env, 80)
        gen = gen_dirs(env.backup)[-1]
        segs = segments_of(gen)
        check(len(segs) >= 6, "expected several segments, found %d" % len(segs))
        keep = len(segs) - 3
        held_end_ms = segs[keep - 1][2]   # the last commit the remaining segments hold
        # ground truth of what the remaining segments hold: before the
        # attack, a restore at their last commit (the deleted ones' commits
        # were all seen later)
        expected, _ = rows_at(env, held_end_ms)
        check(expected < len(env.commits()), "the deleted segments held no commit")
        deleted, deleted_deltas = delete_tail(gen, keep)
        print("# deleted %d segments (%s .. %s) and %d delta(s) reaching them"
              % (len(deleted), deleted[0], deleted[-1], len(deleted_deltas)))
        missing = "segments %d to %d are missing" % (keep, len(segs) - 1)
        proc = check_refused(env, "missing tail")
        check(missing in proc.stderr, "the refusal does not name the missing segments: " + proc.stderr)
        check_refused(env, "missing tail", target_ms=held_end_ms)      # naming the held end is no way around it
        check_refused(env, "missing tail", target_ms=segs[-1][2])      # nor a time in what is missing
        first = min(t0 for t0, _ in env.commits().values())
        k, proc = rows_at(env, (first + held_end_ms) // 2)
        check(0 < k < expected and "tail:         something is missing, but not in what was restored" in proc.stdout
              and missing in proc.stdout, "restore before the gap (%d rows): %s" % (k, proc.stdout))
        proc = check_accepted(env, "missing tail", expected)
        check("point:        " + iso(held_end_ms) in proc.stdout, "the point is not the held end: " + proc.stdout)
        check_reported(env, "missing tail", missing)
        proc = env.tidemark("verify", "-c", env.config, "--deep")
        check(proc.returncode == 1 and "missing tail: " in proc.stdout and missing in proc.stdout,
              "verify --deep: " + proc.stdout + proc.stderr)
        drill_env = dict(env.run_env(), TMPDIR=env.dir)
        proc = subprocess.run([TIDEMARK, "drill", "-c", env.config, "app"], capture_output=True, text=True, env=drill_env)
        check(proc.returncode == 1 and "FAILED" in proc.stdout and "missing tail: " in proc.stdout,
              "drill of an archive missing its tail: " + proc.stdout + proc.stderr)
        # the head deleted with the tail: this host saw it (the commands
        # above recorded it), so the archive rolled back
        os.unlink(os.path.join(gen, "head"))
        proc = check_refused(env, "rolled back")
        check("is gone" in proc.stderr, "refusal: " + proc.stderr)
        check_accepted(env, "rolled back", expected)
        check_reported(env, "rolled back", "is gone")
        # LIMIT (heads.h): a host that never saw the head cannot tell this
        # archive from one written before heads; it restores what is held
        # and says the tail was not checked
        proc, out = env.restore(state=os.path.join(env.dir, "fresh-host"))
        check(count_rows(env, proc, out) == expected and "tail:         not checked: no head" in proc.stdout,
              "a host that never saw the head: " + proc.stdout + proc.stderr)
    finally:
        env.cleanup()


def test_head_rolled_back():
    """An older copy of the head put back after this host listed a newer
    one: restore refuses ("rolled back"), verify and list report it; the
    same once the segments after the old head are deleted too (the
    archive rolled back consistently), where --accept-missing-tail
    restores exactly the old head's rows. LIMIT (heads.h): a host that
    never saw the newer head cannot tell a consistent rollback from an
    archive that stopped there: it restores the old state cleanly."""
    env = HeadEnv("head-rollback", extra_db=NO_RETENTION)
    try:
        env.create_db()
        env.start()
        env.write_py(40, "--delay-ms", "20")
        time.sleep(0.5)
        gen = gen_dirs(env.backup)[-1]
        wait_for_head(env, gen)
        old_segments = len(segments_of(gen))
        old_end_ms = segments_of(gen)[-1][2]
        head = os.path.join(gen, "head")
        old_head = os.path.join(env.dir, "old-head")
        shutil.copyfile(head, old_head)
        write_and_settle(env, 40, start=41)
        check(len(segments_of(gen)) > old_segments, "no segment after the old head")
        proc = env.tidemark("list", "-c", env.config)   # this host sees the newer head
        check(proc.returncode == 0 and "newest head seen from this host: generation %s" % os.path.basename(gen)
              in proc.stdout and "%d segments" % len(segments_of(gen)) in proc.stdout, "list: " + proc.stdout)
        expected, _ = rows_at(env, old_end_ms)
        # 1. only the head put back: every segment is still there
        shutil.copyfile(old_head, head)
        proc = check_refused(env, "rolled back")
        check("older than the one this host saw" in proc.stderr, "refusal: " + proc.stderr)
        check_reported(env, "rolled back", "older than the one this host saw")
        # 2. the archive rolled back consistently: the newer segments go too
        delete_tail(gen, old_segments)
        check_refused(env, "rolled back")
        check_accepted(env, "rolled back", expected)
        check_reported(env, "rolled back")
        # the limit: a host that never saw the newer head sees an archive
        # that ends at the old head, and restores it
        fresh = os.path.join(env.dir, "fresh-host")
        proc, out = env.restore(state=fresh)
        check(count_rows(env, proc, out) == expected and "tail:         checked" in proc.stdout,
              "a host that never saw the newer head: " + proc.stdout + proc.stderr)
        check(env.tidemark("verify", "-c", env.config, state=fresh).returncode == 0, "verify on a fresh host")
    finally:
        env.cleanup()


def test_deleted_newest_generation():
    """The newest generation deleted whole: the previous generation's head
    (rewritten once its successor had a snapshot) names it, so restore of
    the latest point is refused ("missing generation") on any host, even
    one that never listed the archive; --accept-missing-tail restores
    exactly the older generation's rows; verify and list report it. Also
    the old generation's head copied over the new one's ("rejected
    head"), and the full rollback: the predecessor's head put back as it
    was before it named its successor ("rolled back" on this host, which
    saw the newer generation; a host that never did restores the older
    generation cleanly: the limit)."""
    env = HeadEnv("head-gen", extra_db=NO_RETENTION)
    try:
        env.create_db()
        env.start()
        write_and_settle(env, 40)
        old_head = os.path.join(env.dir, "old-head")   # before it named a successor
        shutil.copyfile(os.path.join(gen_dirs(env.backup)[0], "head"), old_head)
        new_generation_while_down(env, 10, start=41)
        env.start()
        env.write_py(10, "--delay-ms", "20", start=51)
        time.sleep(0.5)
        check(len(gen_dirs(env.backup)) == 2, "no second generation: %r" % gen_dirs(env.backup))
        old, new = gen_dirs(env.backup)
        wait_for_head(env, old, successor=os.path.basename(new))
        wait_for_head(env, new)
        env.stop()
        check_clean(env)
        # the old generation's head copied over the new one's: it names
        # another generation
        new_head = open(os.path.join(new, "head"), "rb").read()
        shutil.copyfile(old_head, os.path.join(new, "head"))
        check_refused(env, "rejected head")
        check_reported(env, "rejected head", os.path.basename(new))
        with open(os.path.join(new, "head"), "wb") as f:
            f.write(new_head)
        check_clean(env)
        shutil.rmtree(new)
        proc = check_refused(env, "missing generation")
        check(os.path.basename(new) in proc.stderr, "the missing generation is not named: " + proc.stderr)
        check_refused(env, "missing generation", state=os.path.join(env.dir, "fresh-host"))
        check_accepted(env, "missing generation", 40)   # the old generation holds rows 1..40
        check_reported(env, "missing generation", os.path.basename(new))
        # a full rollback: the predecessor's head put back as it was before
        # it named a successor. This host saw the newer generation's head.
        shutil.copyfile(old_head, os.path.join(old, "head"))
        proc = check_refused(env, "rolled back")
        check(os.path.basename(new) in proc.stderr and "is missing" in proc.stderr, "refusal: " + proc.stderr)
        check_accepted(env, "rolled back", 40)
        check_reported(env, "rolled back", os.path.basename(new))
        # LIMIT: a host that never saw the newer generation restores the
        # older one as the latest point, cleanly
        proc, out = env.restore(state=os.path.join(env.dir, "fresh-host-2"))
        check(count_rows(env, proc, out) == 40 and "tail:         checked" in proc.stdout,
              "a host that never saw the newer generation: " + proc.stdout + proc.stderr)
    finally:
        env.cleanup()


def test_older_generation_missing_tail():
    """The newest segments of an OLDER generation deleted (its head,
    rewritten naming its successor, names them). A restore to a time
    inside what is missing (after the last commit the replica holds of
    that generation, before the next generation starts) is refused: the
    check is against the generation restored, not the whole archive
    (before the fix: exit 0 with 23 of the 40 rows committed by then). A
    time before the gap restores exactly, and so does the latest point,
    which the newer, complete generation holds; both say something is
    missing elsewhere."""
    env = HeadEnv("head-older-gen", extra_db=NO_RETENTION)
    try:
        env.create_db()
        env.start()
        write_and_settle(env, 40)
        new_generation_while_down(env, 10, start=41)
        env.start()
        env.write_py(10, "--delay-ms", "20", start=51)
        time.sleep(0.5)
        old, new = gen_dirs(env.backup)
        wait_for_head(env, old, successor=os.path.basename(new))
        wait_for_head(env, new)
        env.stop()
        segs = segments_of(old)
        keep = len(segs) - 2
        held_end_ms = segs[keep - 1][2]
        expected, _ = rows_at(env, held_end_ms)
        delete_tail(old, keep)
        target = segs[-1][2] + 5   # after the old generation's last commit, before the new one starts
        new_start = min(int(os.path.basename(p)[:-5].split("-")[1]) for p in glob.glob(os.path.join(new, "snapshots", "*.snap")))
        check(target < new_start, "the target is not before the new generation")
        k, proc = rows_at(env, (min(t0 for t0, _ in env.commits().values()) + held_end_ms) // 2)
        check(k < expected and "something is missing, but not in what was restored" in proc.stdout,
              "a time before the gap: " + proc.stdout)
        check_refused(env, "missing tail", target_ms=target)
        proc, out = env.restore()
        check(proc.returncode == 0 and count_rows(env, proc, out) == len(env.commits()) and
              "something is missing, but not in what was restored" in proc.stdout,
              "the latest point, which the newer generation holds whole: " + proc.stdout + proc.stderr)
        proc, out = env.restore(iso(target), extra=("--accept-missing-tail",))
        check(count_rows(env, proc, out) == expected and "INCOMPLETE" in proc.stdout,
              "--accept-missing-tail at a time in the missing tail: " + proc.stdout + proc.stderr)
    finally:
        env.cleanup()


def test_planted_head():
    """A head that is not this generation's: random bytes, then the real
    head of another database (same key, same replica) copied over it.
    Each is a "rejected head" in verify and list, and restore of the
    latest point is refused; --accept-missing-tail restores every row.
    The other database's head planted under its own generation id (a
    generation holding nothing else) is reported by verify and list too;
    a restore, which starts from the real generation whose own head
    checks, goes on and names it."""
    env = HeadEnv("head-planted", extra_db=NO_RETENTION)
    try:
        other_db = os.path.join(env.dir, "other.db")
        with open(env.config, "a") as f:
            f.write("  - path: %s\n    sync-interval: 200ms\n%s    replicas:\n%s" % (other_db, NO_RETENTION, env.replicas))
        for path in (env.db, other_db):
            db = sqlite3.connect(path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)")
            db.commit()
            db.close()
        env.start()
        subprocess.run([WRITER_PY, other_db, os.path.join(env.dir, "other.log"), "--count", "20"], check=True)
        write_and_settle(env, 30)
        gen = gen_dirs(env.backup)[-1]
        other_head = os.path.join(gen_dirs(env.backup, "other")[-1], "head")
        check(os.path.exists(other_head), "the other database has no head")
        check_clean(env)
        other_gen = os.path.basename(os.path.dirname(other_head))
        real_head = open(os.path.join(gen, "head"), "rb").read()
        cases = (("random bytes", gen, os.urandom(256)),
                 ("another database's head", gen, open(other_head, "rb").read()),
                 # the other database's head under its own generation id in
                 # this database: only the binding to the database tells
                 ("another database's head in its generation", os.path.join(os.path.dirname(gen), other_gen),
                  open(other_head, "rb").read()))
        for n, (what, where, data) in enumerate(cases):
            os.makedirs(where, exist_ok=True)
            with open(os.path.join(where, "head"), "wb") as f:
                f.write(data)
            for state in (None, os.path.join(env.dir, "fresh-%d" % n)):
                try:
                    check_reported(env, "rejected head", os.path.basename(where), state=state)
                    if where == gen:
                        proc = check_refused(env, "rejected head", state=state)
                    else:
                        # a generation holding nothing but the planted head:
                        # the latest point (the real generation, whose own
                        # head checks) is whole; the restore goes on and
                        # names the rejected head on its tail: line
                        proc, out = env.restore(state=state)
                        k = count_rows(env, proc, out)
                        check(k == 30 and "rejected head" in proc.stdout and
                              "something is missing, but not in what was restored" in proc.stdout,
                              "restore beside a planted empty generation: %s %s" % (proc.stdout, proc.stderr))
                except Failure as e:
                    raise Failure("%s (%s): %s" % (what, "fresh host" if state else "this host", e))
            print("# %s: %s" % (what, (proc.stderr or proc.stdout).splitlines()[0][-170:]))
            if where == gen:
                check_accepted(env, "rejected head", 30)
            if where == gen:
                with open(os.path.join(gen, "head"), "wb") as f:
                    f.write(real_head)
            else:
                shutil.rmtree(where)
            check_clean(env)
    finally:
        env.cleanup()


def test_retention_makes_no_finding():
    """Two generations; a host listed the archive when only the first
    existed. `tidemark retention` as of 10 days later deletes the first
    generation's snapshot and tail, and its head with them (the head goes
    with its newest segment); afterwards neither that host nor this one
    finds anything: list and verify are clean and the latest restore is
    complete and checked."""
    env = HeadEnv("head-retention", extra_db=NO_RETENTION)
    try:
        env.create_db()
        env.start()
        write_and_settle(env, 40)
        early = os.path.join(env.dir, "early-host")
        proc = env.tidemark("list", "-c", env.config, state=early)   # saw only the first generation's head
        check(proc.returncode == 0 and "newest head seen from this host" in proc.stdout, "list: " + proc.stdout)
        new_generation_while_down(env, 10, start=41)
        env.start()
        env.write_py(10, "--delay-ms", "20", start=51)
        time.sleep(0.5)
        old, new = gen_dirs(env.backup)
        wait_for_head(env, old, successor=os.path.basename(new))
        wait_for_head(env, new)
        env.stop()
        check(os.path.exists(os.path.join(old, "head")) and segments_of(old), "the old generation is not whole")
        config = env.write_config("retention.yml", env.key)   # retention on (the defaults)
        later = iso(int(time.time() * 1000) + 10 * 86400 * 1000)
        proc = env.tidemark("retention", "-c", config, "--now", later, "--dry-run", "--json")
        check(proc.returncode == 0, "retention --dry-run: " + proc.stdout + proc.stderr)
        kept = [s for s in json.loads(proc.stdout)[0]["snapshots"] if s["keep"]]
        check(len(kept) == 1 and os.path.basename(new) in kept[0]["key"] and "newest-head" in kept[0]["kept_by"],
              "the newest head's snapshot is not kept by it: %r" % kept)
        proc = env.tidemark("retention", "-c", config, "--now", later)
        check(proc.returncode == 0, "retention: " + proc.stdout + proc.stderr)
        print("# " + " / ".join(l.strip() for l in proc.stdout.splitlines() if l.strip()))
        check(not segments_of(old) and not os.path.exists(os.path.join(old, "head")),
              "retention left the old generation's tail or head: %r"
              % [os.path.relpath(os.path.join(d, f), old) for d, _, fs in os.walk(old) for f in fs])
        check(os.path.exists(os.path.join(new, "head")) and segments_of(new), "retention touched the new generation")
        env.config = config
        check_clean(env)
        check_clean(env, state=early)
    finally:
        env.cleanup()


def test_deleted_newest_segments_on_s3():
    """The missing tail on S3: the newest 2 segments (and the deltas
    reaching them) deleted from the bucket with awscli. Restore of the S3
    replica's latest point is refused; --accept-missing-tail restores
    exactly the remaining rows; verify reports it; the file replica,
    untouched, restores every row."""
    import test_s3
    if test_s3.ENDPOINT is None:
        test_s3.start_server()
    bucket = test_s3.new_bucket(versioning=False)
    env = test_s3.file_and_s3("head-s3", bucket, extra_db=NO_RETENTION)
    env.__class__ = HeadEnv
    env.state = os.path.join(env.dir, "state")
    try:
        env.create_db()
        env.start()
        env.write_py(60, "--delay-ms", "20")
        time.sleep(0.5)
        gen = gen_dirs(env.backup)[-1]
        wait_for_head(env, gen, replica="s3")
        env.stop()
        segs = segments_of(gen)
        keys = test_s3.s3_keys(bucket, "prod/app")
        check(os.path.relpath(os.path.join(gen, "head"), env.backup) in keys, "no head in the bucket: %r" % keys)
        keep = len(segs) - 2
        expected, _ = rows_at(env, segs[keep - 1][2], extra=("--replica", "s3"))
        deleted = [s[3] for s in segs[keep:]] + [d[2] for d in deltas_of(gen) if d[1] > keep]
        for path in deleted:
            test_s3.aws("s3", "rm", "s3://%s/prod/app/%s" % (bucket, os.path.relpath(path, env.backup)))
        check(len(test_s3.s3_keys(bucket, "prod/app")) == len(keys) - len(deleted), "aws s3 rm did not delete")
        s3 = ("--replica", "s3")
        proc = check_refused(env, "missing tail", extra=s3)
        check("segments %d to %d are missing" % (keep, len(segs) - 1) in proc.stderr, "refusal: " + proc.stderr)
        check_accepted(env, "missing tail", expected, extra=s3)
        proc = env.tidemark("verify", "-c", env.config)
        check(proc.returncode != 0 and "missing tail:" in proc.stdout, "verify: " + proc.stdout + proc.stderr)
        proc, out = env.restore(extra=("--replica", "file"))
        check(count_rows(env, proc, out) == len(env.commits()), "the file replica lacks rows")
    finally:
        env.cleanup()


def redis_head_segments(env, gen):
    """What list --json says the Redis generation's head names."""
    proc = subprocess.run([TIDEMARK, "list", "-c", env.config, "--json"], capture_output=True, text=True)
    return json_generations(json.loads(proc.stdout), "cache").get(os.path.basename(gen), {}).get("head_segments")


def redis_archive(name):
    """A Redis archive of several segments; the sidecar still running."""
    if not shutil.which("redis-server"):
        raise Skip("redis-server is not installed")
    try:
        import test_redis
    except ImportError as e:
        raise Skip("the Python redis module: %s" % e)
    env = test_redis.Env(name, server_options=("--repl-diskless-sync-delay", "0"))
    env.start()
    env.wait_streaming()
    for n in range(4):   # several segments
        env.write(40, seed=n)
        time.sleep(0.4)
    return env, gen_dirs(os.path.join(env.dir, "backup"), "cache")[-1]


def test_redis_deleted_newest_segment():
    """A Redis archive has heads too: its newest segment deleted, restore
    of the `redis:` entry's latest point is refused naming the missing
    segment, and verify reports it. (The sidecar is stopped before the
    check: a Redis head spooled while idle is uploaded only with the next
    segment or at stop, see test_redis_head_uploaded_while_idle.)"""
    env, gen = redis_archive("head-redis")
    try:
        time.sleep(5.5)   # a head naming every segment is spooled (at most every 5 s)
        env.stop()
        segs = segments_of(gen)
        check(len(segs) >= 2, "expected several Redis segments, found %d" % len(segs))
        check(redis_head_segments(env, gen) == segs[-1][0] + 1, "the Redis head does not name every segment: %r"
              % redis_head_segments(env, gen))
        # the configuration's state-dir holds the record of the heads seen
        seen = os.path.join(env.dir, "state", "seen-heads")
        check(os.path.isdir(seen) and any(files for _, _, files in os.walk(seen)), "no record under state-dir: " + seen)
        os.unlink(segs[-1][3])
        output = os.path.join(env.dir, "restored")
        proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "cache", "-o", output],
                              capture_output=True, text=True)
        check(proc.returncode == 1 and "is incomplete at the point asked for, nothing restored: missing tail:" in proc.stderr
              and "segment %d is missing" % segs[-1][0] in proc.stderr,
              "Redis restore latest (exit %d): %s" % (proc.returncode, proc.stdout + proc.stderr))
        check(not os.path.exists(output) or not os.listdir(output), "a refused Redis restore wrote into " + output)
        proc = subprocess.run([TIDEMARK, "verify", "-c", env.config], capture_output=True, text=True)
        check(proc.returncode != 0 and "missing tail:" in proc.stdout, "verify: " + proc.stdout + proc.stderr)
    finally:
        env.cleanup()


def test_redis_head_uploaded_while_idle():
    """While Redis is idle, the head the sidecar spools 5 s after the last
    segment reaches the replica at once, with the sidecar running (before
    the fix it stayed in the spool until the next segment or the stop:
    redis_capture_sync did not kick the uploaders after shipper_tick)."""
    env, gen = redis_archive("head-redis-idle")
    try:
        names_all = lambda: segments_of(gen) and redis_head_segments(env, gen) == segments_of(gen)[-1][0] + 1
        try:
            wait_until(names_all, HEAD_WAIT_S, "")
        except Failure:
            raise Failure("after %d s the Redis head in the replica names %r of its %d segments (the sidecar "
                          "running, Redis idle)" % (HEAD_WAIT_S, redis_head_segments(env, gen), len(segments_of(gen))))
        env.stop()
    finally:
        env.cleanup()


TESTS = [test_deleted_newest_segments, test_head_rolled_back, test_deleted_newest_generation, test_planted_head,
         test_older_generation_missing_tail, test_retention_makes_no_finding, test_deleted_newest_segments_on_s3,
         test_redis_deleted_newest_segment, test_redis_head_uploaded_while_idle]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
