#!/usr/bin/python3
"""Integration tests: the sidecar beside a writer it cannot follow through
SQLite's wal-index: the Turso engine (npm @tursodatabase/database) run
with LIMBO_DISABLE_FILE_LOCK=1, writing the WAL blind, and a database
file replaced by one that is not SQLite. The sidecar must never stall
silently: within 3 sync intervals the log names the cause, /healthz
answers 503 with it, tidemark_capture_up is 0 and the capture_failing
alert fires (with the default failure-after: a named cause is reported at
once). It keeps running and never deletes or checkpoints the engine's WAL
away (the engine reads back every row it committed). The Turso engine's
own modes (multiprocess_wal captured; the default mode, `engine: sqlite`
forced on a multiprocess database and unknown .tshm versions refused) are
in test_turso_engine.py. Prints TAP.
"""
import os, sys, time

from helpers import *
from test_monitoring import health
from test_turso_engine import WITHIN_S, EngineEnv, engine_installed, reported_loudly


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
        test_blind_writer_frames_beyond_the_wal_index_reported,
        test_replaced_database_that_cannot_be_opened_reported,
        test_file_found_after_waiting_that_cannot_be_opened_reported,
    ]))
