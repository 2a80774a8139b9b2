#!/usr/bin/python3
"""Integration tests: the sidecar beside an engine it cannot follow, the
Turso engine (npm @tursodatabase/database, pinned in package-lock.json),
run for real by turso_writer.mjs with a ground-truth log. The sidecar must
never stall silently: within 3 sync intervals the log names the cause,
/healthz answers 503 with it, tidemark_capture_up is 0 and the
capture_failing alert fires (with the default failure-after: a named cause
is reported at once). It keeps running, never deletes or checkpoints the
engine's WAL away (the engine reads back every row it committed), and
follows the database once the engine has gone. Prints TAP.
"""
import os, signal, subprocess, sys, time

from helpers import *
from test_monitoring import free_port, health, scrape

TURSO_WRITER = os.path.join(HERE, "turso_writer.mjs")
SYNC_S = 1.0
WITHIN_S = 3 * SYNC_S


def engine_installed():
    if not os.path.isdir(os.path.join(HERE, "node_modules", "@tursodatabase", "database")):
        raise Skip("@tursodatabase/database not installed (scripts/install-deps)")


class EngineEnv(Env):
    """An Env with /metrics, an alert command writing to alerts.txt, a
    one-second sync interval, and Turso-engine writers."""
    def __init__(self, name):
        super().__init__(name, sync="1s")
        self.port = free_port()
        self.alerts = os.path.join(self.dir, "alerts.txt")
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write("metrics: { listen: 127.0.0.1:%d }\nalerts: { command: 'echo \"$TIDEMARK_STATE $TIDEMARK_ALERT "
                    "$TIDEMARK_DB\" >> %s' }\n" % (self.port, self.alerts) + text)
        self.engines = []

    def start_engine(self, mode, delay_ms=20, extra_env=None, start=1):
        """A Turso-engine writer committing until SIGTERM; waits for it to open."""
        env = dict(os.environ, **(extra_env or {}))
        proc = subprocess.Popen(["node", TURSO_WRITER, self.db, self.log, "0", str(delay_ms), mode, str(start)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.engines.append(proc)
        line = proc.stdout.readline().strip()
        check(line == "open", "the Turso engine did not open the database: %r" % line)
        return proc

    def stop_engine(self, proc):
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        check(proc.returncode == 0, "the Turso writer exited %d: %s" % (proc.returncode, out))

    def engine_rows(self, mode):
        """Rows of t as the engine itself reads them (the sidecar stopped)."""
        proc = subprocess.run(["node", TURSO_WRITER, self.db, "-", "count", mode], capture_output=True, text=True,
                              timeout=60)
        check(proc.returncode == 0, "the engine cannot read its database: %s %s" % (proc.stdout, proc.stderr))
        return int(proc.stdout.strip())

    def alert_lines(self):
        if not os.path.exists(self.alerts):
            return []
        with open(self.alerts) as f:
            return [line.split() for line in f if line.strip()]

    def stop_not_following(self):
        """SIGTERM while the database is not followed: the sidecar stops,
        exiting 1 (not everything committed could be shipped)."""
        self.replicator.send_signal(signal.SIGTERM)
        code = self.replicator.wait(timeout=60)
        self.replicator = None
        check(code == 1, "the sidecar exited %d, not 1, without having captured the database" % code)

    def cleanup(self):
        for proc in self.engines:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        super().cleanup()


def reported_loudly(env, words):
    """The four signals, each naming the cause by `words`; returns the
    seconds it took from now, failing after WITHIN_S (plus the time one
    scrape may take)."""
    started = time.time()
    state = {}

    def all_there():
        state["log"] = words in env.full_log()
        code, body = health(env.port)
        reasons = [p.get("reason", "") for p in body["problems"] if p.get("db") == "app"]
        state["health"] = code == 503 and any(words in r for r in reasons)
        state["up"] = scrape(env.port).get('tidemark_capture_up{db="app"}') == 0
        state["alert"] = ["firing", "capture_failing", "app"] in env.alert_lines()
        return all(state.values())
    try:
        wait_until(all_there, WITHIN_S + 0.5, "the stall to be reported")
    except Failure:
        raise Failure("not reported within %.0f s (%s): %s" % (WITHIN_S, state, env.tail_log()))
    return time.time() - started


def test_default_mode_lock_reported_then_followed_once_the_engine_closes():
    """The engine in its default mode opens first (whole-file locks): the
    sidecar, started beside it, names the lock, keeps running and retries;
    after the engine closes it follows the database from a snapshot that
    holds every row the engine committed, and captures what comes next."""
    engine_installed()
    env = EngineEnv("turso-default")
    try:
        engine = env.start_engine("default")
        time.sleep(0.5)
        env.start()
        took = reported_loudly(env, "is locked as a whole by another process (pid %d)" % engine.pid)
        print("# default mode: reported %.1f s after the sidecar started" % (took + 0.5))
        log = env.full_log()
        check("Turso engine (@tursodatabase/database) in its default single-process mode" in log, "cause not named")
        check("HINT" in log and "docs/runbook.md" in log, "no hint to the runbook: " + env.tail_log())
        check(log.count("commits cannot be captured") == 1, "the cause was logged more than once per incident")
        # the sidecar keeps running, the application keeps committing
        rows_before = len(env.commits())
        time.sleep(2)
        check(env.replicator.poll() is None, "the sidecar exited: " + env.tail_log())
        check(len(env.commits()) > rows_before + 20, "the application stopped committing beside the sidecar")
        env.stop_engine(engine)
        wait_until(lambda: "following the database again" in env.full_log() and "new generation" in env.full_log(),
                   WITHIN_S + 2, "the sidecar to follow the database once the engine closed")
        wait_until(lambda: health(env.port)[0] == 200, 5, "/healthz 200 again")
        check(scrape(env.port).get('tidemark_capture_up{db="app"}') == 1, "tidemark_capture_up not 1 again")
        wait_until(lambda: ["resolved", "capture_failing", "app"] in env.alert_lines(), 5, "the resolved alert")
        # while the sidecar follows it, the engine cannot open the file (documented limit)
        refused = subprocess.run(["node", TURSO_WRITER, env.db, "-", "count", "default"], capture_output=True,
                                 text=True, timeout=60)
        check(refused.returncode == 3 and "locked" in refused.stdout, "engine opened beside the sidecar: %s"
              % refused.stdout)
        engine_rows = len(env.commits())
        following_from = int(time.time() * 1000)
        env.write_py(150, "--delay-ms", "10", start=engine_rows + 1)
        time.sleep(1.5)
        env.stop()
        commits = env.commits()
        proc, out = env.restore()
        check(proc.returncode == 0, "restore failed: " + proc.stderr)
        check(restored_ids(out) == len(commits), "the latest restore lacks rows")
        last = max(t1 for t0, t1 in commits.values())
        for n in range(4):   # points in time since the sidecar follows the database
            verify_point(env, commits, following_from + (last - following_from) * n // 3)
        print("# %d rows by the engine, %d after it; restores exact" % (engine_rows, len(commits) - engine_rows))
    finally:
        env.cleanup()


def test_multiprocess_wal_reported_and_engine_wal_kept():
    """The engine in multiprocess_wal mode (DB-tshm, no -shm updates):
    the sidecar names it within 3 sync intervals and keeps running; it
    never opens the database through libsqlite3, so the engine's WAL is
    neither checkpointed nor deleted: after the sidecar stops, the engine
    reads back every row it committed."""
    engine_installed()
    env = EngineEnv("turso-mp")
    try:
        engine = env.start_engine("multiprocess")
        time.sleep(0.5)
        env.start()
        took = reported_loudly(env, "multiprocess_wal mode")
        print("# multiprocess_wal: reported %.1f s after the sidecar started" % (took + 0.5))
        check("app.db-tshm' beside it, in use by a running process" in env.full_log(), "-tshm not named")
        rows_before = len(env.commits())
        time.sleep(2)
        check(env.replicator.poll() is None, "the sidecar exited: " + env.tail_log())
        check(len(env.commits()) > rows_before + 20, "the application stopped committing beside the sidecar")
        check(os.path.exists(env.db + "-wal"), "the engine's WAL is gone")
        env.stop_not_following()
        time.sleep(0.5)
        env.stop_engine(engine)
        committed = len(env.commits())
        check(env.engine_rows("multiprocess") == committed, "the engine committed %d rows and reads back %d"
              % (committed, env.engine_rows("multiprocess")))
        print("# %d rows committed, all read back by the engine" % committed)
    finally:
        env.cleanup()


def test_blind_writer_frames_beyond_the_wal_index_reported():
    """The engine with LIMBO_DISABLE_FILE_LOCK=1 writes the WAL of a
    database the sidecar already follows, without locks or -shm: its
    commits never reach the wal-index. Within 3 sync intervals of its
    first commit the sidecar names the committed frames beyond the index
    and lets go of the database; it never checkpoints or deletes the WAL
    (the engine reads back every row after the sidecar stopped)."""
    engine_installed()
    env = EngineEnv("turso-blind")
    try:
        env.create_db()
        env.start()
        wait_until(lambda: "new generation" in env.full_log(), 5, "the first generation")
        engine = env.start_engine("default", extra_env={"LIMBO_DISABLE_FILE_LOCK": "1"})
        wait_until(lambda: os.path.exists(env.log) and env.commits(), 5, "the engine's first commit")
        first_commit = min(t1 for t0, t1 in env.commits().values()) / 1000.0
        reported_loudly(env, "holds committed transactions that the wal-index")
        took = time.time() - first_commit
        print("# frames beyond the wal-index: reported %.1f s after the engine's first commit" % took)
        check(took <= WITHIN_S + 0.5, "reported %.1f s after the first unseen commit" % took)
        time.sleep(1.5)
        check(env.replicator.poll() is None, "the sidecar exited: " + env.tail_log())
        env.stop_not_following()
        time.sleep(0.5)
        env.stop_engine(engine)
        committed = len(env.commits())
        check(os.path.exists(env.db + "-wal"), "the WAL was deleted")
        check(env.engine_rows("default") == committed, "the engine committed %d rows and reads back %d"
              % (committed, env.engine_rows("default")))
        print("# %d rows committed, all read back by the engine" % committed)
    finally:
        env.cleanup()


def test_replaced_database_that_cannot_be_opened_reported():
    """The database file replaced under the sidecar by one it cannot open
    (not a SQLite database): the tailer notices the replacement, the
    reopening fails, and that is reported at once, like another engine,
    and retried; once a database is back it follows it again and a
    restore is exact."""
    env = EngineEnv("replaced")
    try:
        env.create_db()
        env.start()
        env.write_py(50, "--delay-ms", "5")
        time.sleep(1.5)
        good = env.db + ".good"
        os.rename(env.db, good)
        with open(env.db + ".junk", "w") as f:
            f.write("not a database\n" * 300)
        os.rename(env.db + ".junk", env.db)
        took = reported_loudly(env, "is not a SQLite database")
        print("# replaced by a file it cannot open: reported %.1f s after" % took)
        check("was deleted or replaced" in env.full_log(), "the replacement not named: " + env.tail_log())
        time.sleep(1.5)
        check(env.full_log().count("level=error db=app msg=\"cannot start") == 1, "the failure was logged more than once")
        os.rename(good, env.db)
        wait_until(lambda: health(env.port)[0] == 200, WITHIN_S + 2, "/healthz 200 once the database is back")
        env.write_py(50, "--delay-ms", "5", start=51)
        time.sleep(1.5)
        env.stop()
        proc, out = env.restore()
        check(proc.returncode == 0, "restore failed: " + proc.stderr)
        check(restored_ids(out) == 100, "the latest restore lacks rows")
    finally:
        env.cleanup()


def test_file_found_after_waiting_that_cannot_be_opened_reported():
    """The database moved away (the sidecar waits for it), then a file it
    cannot open put in its place: reported at once, as when the tailer
    sees the replacement itself (a race in the test above, which CI hit:
    then it took failure-after, a minute)."""
    env = EngineEnv("found-junk")
    try:
        env.create_db()
        env.start()
        env.write_py(20, "--delay-ms", "5")
        time.sleep(1.5)
        os.rename(env.db, env.db + ".good")
        wait_until(lambda: "to be created" in env.full_log(), 5, "the sidecar to wait for the database")
        with open(env.db + ".junk", "w") as f:
            f.write("not a database\n" * 300)
        os.rename(env.db + ".junk", env.db)
        took = reported_loudly(env, "is not a SQLite database")
        print("# a file it cannot open, found after waiting: reported %.1f s after" % took)
    finally:
        env.cleanup()


if __name__ == "__main__":
    sys.exit(run_tests([
        test_default_mode_lock_reported_then_followed_once_the_engine_closes,
        test_multiprocess_wal_reported_and_engine_wal_kept,
        test_blind_writer_frames_beyond_the_wal_index_reported,
        test_replaced_database_that_cannot_be_opened_reported,
        test_file_found_after_waiting_that_cannot_be_opened_reported,
    ]))
