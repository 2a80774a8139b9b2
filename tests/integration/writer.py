#!/usr/bin/python3
"""Ground-truth writer on Debian's libsqlite3 (through /usr/bin/python3).

Commits transactions numbered 1..N into table t and appends one line per
commit to LOG: "<id> <ms before COMMIT> <ms after COMMIT returned>", so a
test knows the interval in which each commit happened. Options add the
events the sidecar must survive: transactions larger than the WAL
autocheckpoint, explicit TRUNCATE checkpoints (a TRUNCATE that returns busy
stops the writer with exit status 1: beside the sidecar it must succeed),
VACUUM.
"""
import argparse, os, sqlite3, sys, time

def payload(i):
    return "row-%d-%s" % (i, format((i * 2654435761) % 4294967296, "08x"))

def now_ms():
    return int(time.time() * 1000)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("db"); p.add_argument("log")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--start", type=int, default=1)
    p.add_argument("--delay-ms", type=float, default=10)
    p.add_argument("--big-every", type=int, default=0, help="every K-th txn also writes ~6 MB")
    p.add_argument("--truncate-every", type=int, default=0, help="wal_checkpoint(TRUNCATE) after every K-th txn")
    p.add_argument("--vacuum-at", type=int, default=0)
    p.add_argument("--stop-file", help="stop (between transactions) once this file exists")
    p.add_argument("--rate", type=float, default=0, help="commit N transactions per second (paced; replaces --delay-ms)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long")
    a = p.parse_args()
    db = sqlite3.connect(a.db, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)")
    db.execute("CREATE TABLE IF NOT EXISTS scratch(x BLOB)")
    log = open(a.log, "a")
    started = time.time()
    for n, i in enumerate(range(a.start, a.start + a.count)):
        big = None
        if a.big_every and i % a.big_every == 0:
            big = os.urandom(6 * 1024 * 1024)
        t0 = now_ms()
        db.execute("BEGIN")
        db.execute("INSERT INTO t(id, payload, big) VALUES (?, ?, ?)", (i, payload(i), big))
        if a.vacuum_at and i == a.vacuum_at - 1:
            db.execute("INSERT INTO scratch SELECT randomblob(4000) FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n<500) SELECT n FROM c)")
        db.execute("COMMIT")
        t1 = now_ms()
        log.write("%d %d %d\n" % (i, t0, t1)); log.flush()
        if a.vacuum_at and i == a.vacuum_at:
            db.execute("DELETE FROM scratch")
            db.execute("VACUUM")
        if a.truncate_every and i % a.truncate_every == 0:
            # with the writer's own busy_timeout: the sidecar never blocks
            # the application's checkpoints (test_beside_app.py times them)
            busy, frames, backfilled = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                sys.exit("writer.py: the application's wal_checkpoint(TRUNCATE) after txn %d returned busy "
                         "(%d of %d frames backfilled)" % (i, backfilled, frames))
        if a.rate:
            pause = started + (n + 1) / a.rate - time.time()
            if pause > 0:
                time.sleep(pause)
        else:
            time.sleep(a.delay_ms / 1000.0)
        if a.stop_file and os.path.exists(a.stop_file):
            break
        if a.seconds and time.time() - started >= a.seconds:
            break
    db.close()

if __name__ == "__main__":
    main()
