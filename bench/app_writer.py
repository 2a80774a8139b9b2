#!/usr/bin/python3
"""The application of the bench's peer comparison: a writer on Debian's
libsqlite3 (through /usr/bin/python3) as a real application runs it.

Two kinds of transaction, committed back to back or at --rate per second,
with synchronous=NORMAL and busy_timeout 5000:
  realistic  one row inserted and 20 random rows of the starting database
             updated (ids 1..--update-rows)
  single     one row inserted
Each commit appends "<id> <ms before BEGIN> <ms after COMMIT returned>" to
LOG (flushed), the ground truth a restore is checked against.

--checkpoint-every-ms N makes the application run PRAGMA wal_checkpoint
(on its own connection, between transactions, busy_timeout 5000) every N
ms, cycling through --checkpoint-modes, and time each call.

At the end it writes a JSON summary to --summary: transactions, seconds,
the largest WAL seen, and each checkpoint as [mode, ms, busy, log,
checkpointed] (busy = the first column of the PRAGMA's result; an
exception is recorded as busy -1).
"""
import argparse, json, os, random, sqlite3, time


def now_ms():
    return int(time.time() * 1000)


def payload(i):
    return "row-%d-%s" % (i, format((i * 2654435761) % 4294967296, "08x"))


def wal_bytes(db_path):
    try:
        return os.path.getsize(db_path + "-wal")
    except OSError:
        return 0


def checkpoint(db, mode):
    """One timed checkpoint: [mode, ms, busy, log, checkpointed]."""
    started = time.perf_counter()
    try:
        busy, log, done = db.execute("PRAGMA wal_checkpoint(%s)" % mode).fetchone()
    except sqlite3.OperationalError:
        busy, log, done = -1, -1, -1
    return [mode, (time.perf_counter() - started) * 1000.0, busy, log, done]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("log")
    p.add_argument("--mode", choices=["realistic", "single"], default="realistic")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--start", type=int, required=True, help="id of the first row inserted")
    p.add_argument("--update-rows", type=int, default=0, help="realistic: rows 1..N are updated at random")
    p.add_argument("--rate", type=float, default=0, help="transactions per second (0: back to back)")
    p.add_argument("--checkpoint-every-ms", type=float, default=0)
    p.add_argument("--checkpoint-modes", default="TRUNCATE", help="comma-separated, used in turn")
    p.add_argument("--summary", required=True)
    a = p.parse_args()
    if a.mode == "realistic" and a.update_rows < 1:
        p.error("--mode realistic needs --update-rows")
    db = sqlite3.connect(a.db, isolation_level=None)
    db.execute("PRAGMA busy_timeout=5000")
    db.execute("PRAGMA synchronous=NORMAL")
    modes = a.checkpoint_modes.split(",")
    rng = random.Random(a.start)
    log = open(a.log, "a")
    checkpoints, largest_wal = [], 0
    started = time.time()
    next_checkpoint = started + a.checkpoint_every_ms / 1000.0
    next_wal_check = started
    i = a.start
    while True:
        t0 = now_ms()
        db.execute("BEGIN")
        db.execute("INSERT INTO t(id, payload) VALUES (?, ?)", (i, payload(i)))
        if a.mode == "realistic":
            for _ in range(20):
                db.execute("UPDATE t SET big = randomblob(250) WHERE id = ?", (rng.randint(1, a.update_rows),))
        db.execute("COMMIT")
        log.write("%d %d %d\n" % (i, t0, now_ms()))
        log.flush()
        i += 1
        now = time.time()
        if now - started >= a.seconds:
            break
        if now >= next_wal_check:
            largest_wal = max(largest_wal, wal_bytes(a.db))
            next_wal_check = now + 0.1
        if a.checkpoint_every_ms and now >= next_checkpoint:
            checkpoints.append(checkpoint(db, modes[len(checkpoints) % len(modes)]))
            next_checkpoint = time.time() + a.checkpoint_every_ms / 1000.0
        if a.rate:
            pause = started + (i - a.start) / a.rate - time.time()
            if pause > 0:
                time.sleep(pause)
    seconds = time.time() - started
    largest_wal = max(largest_wal, wal_bytes(a.db))
    db.close()
    with open(a.summary, "w") as f:
        json.dump({"mode": a.mode, "transactions": i - a.start, "seconds": seconds,
                   "largest_wal_bytes": largest_wal, "checkpoints": checkpoints}, f)


if __name__ == "__main__":
    main()
