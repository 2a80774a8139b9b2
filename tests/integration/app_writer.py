#!/usr/bin/python3
"""The application beside the sidecar, on Debian's libsqlite3 (through
/usr/bin/python3), for tests/integration/test_beside_app.py.

Commits transactions numbered from --start into table t, one row each
(the same payloads as writer.py), and appends "<id> <ms before COMMIT>
<ms after COMMIT returned>" to LOG for every commit. Options add what an
application does beside a sidecar that must never make it wait:

  --busy-timeout MS    the connection's busy timeout (0: none at all, as in
                       speedtest1 and many scripts; Python's own `timeout`
                       is set to the same)
  --schema-every K     after every K-th transaction one schema change, in
                       turn: CREATE TABLE, ALTER TABLE ADD COLUMN, CREATE
                       INDEX, DROP INDEX, DROP TABLE; and a VACUUM instead
                       once --vacuum-seconds have passed since the last
  --bulk-every K       after every K-th transaction one speedtest1-like
                       bulk step (SQLite's speedtest1 is not packaged in
                       Debian): a 30000-row INSERT, CREATE INDEX, a large
                       UPDATE, a large DELETE, DROP TABLE, in turn
  --checkpoint MODE    PRAGMA wal_checkpoint(MODE) from this same connection
                       every 150-300 ms (between transactions), each call
                       recorded in --results as a JSON line: mode, phase,
                       start (ms), latency_ms, busy, log, checkpointed, the
                       -wal file's size right after it, and the WAL header's
                       salt-1 before the call and after the next commit
  --phase-file F       the test writes the sidecar's phase here (idle, ship,
                       snapshot, upload); calls are tagged with it, and in
                       the "ship" phase every transaction also writes a
                       --ship-bytes blob, so that the sidecar has much to ship

A statement that fails with SQLITE_BUSY / "database is locked" is not
fatal: it is counted (in the summary line printed at the end), the first
1000 are appended to --errors as JSON lines (statement, message, time),
the transaction is rolled back and the same id tried again, so
the test can count them and the log stays a gapless sequence. Any other
error stops the writer (exit 1). Stops after --seconds, at --stop-file,
or after --count transactions.
"""
import argparse, json, os, random, sqlite3, struct, sys, time

MAX_ERRORS_RECORDED = 1000      # the summary line counts them all

def payload(i):
    return "row-%d-%s" % (i, format((i * 2654435761) % 4294967296, "08x"))

def now_ms():
    return int(time.time() * 1000)

def is_busy(error):
    text = str(error).lower()
    return "locked" in text or "busy" in text

def wal_salt1(db_path):
    """Salt-1 of the WAL header (bytes 16..19, big-endian), or -1."""
    try:
        with open(db_path + "-wal", "rb") as f:
            header = f.read(32)
    except FileNotFoundError:
        return -1
    return struct.unpack(">I", header[16:20])[0] if len(header) == 32 else -1

def wal_size(db_path):
    try:
        return os.path.getsize(db_path + "-wal")
    except FileNotFoundError:
        return -1

class Schema:
    """The schema changes, in turn, on tables s<N> that come and go."""
    STEPS = ["create", "alter", "index", "drop-index", "drop"]

    def __init__(self, vacuum_seconds):
        self.changes = 0
        self.vacuums = 0
        self.steps = 0
        self.table = 0
        self.vacuum_seconds = vacuum_seconds
        self.last_vacuum = time.time()

    def next_statements(self):
        self.changes += 1
        if self.vacuum_seconds and time.time() - self.last_vacuum >= self.vacuum_seconds:
            self.last_vacuum = time.time()
            self.vacuums += 1
            return ["VACUUM"]
        step = self.STEPS[self.steps % len(self.STEPS)]
        self.steps += 1
        name = "s%d" % self.table
        if step == "create":
            return ["CREATE TABLE %s(a INTEGER, b TEXT)" % name,
                    "INSERT INTO %s(a, b) VALUES (%d, 'x')" % (name, self.table)]
        if step == "alter":
            return ["ALTER TABLE %s ADD COLUMN c BLOB" % name]
        if step == "index":
            return ["CREATE INDEX %s_a ON %s(a, b)" % (name, name)]
        if step == "drop-index":
            return ["DROP INDEX %s_a" % name]
        self.table += 1
        return ["DROP TABLE %s" % name]

class Bulk:
    """speedtest1-like steps, in turn, each one statement (one large
    transaction) on table b: insert 30000 rows (~4 MB, more than the WAL
    autocheckpoint), index them, update a third, delete half, drop the
    table."""
    ROWS = 30000

    def __init__(self):
        self.steps = 0

    def next_statements(self):
        step = self.steps % 5
        self.steps += 1
        if step == 0:
            return ["CREATE TABLE IF NOT EXISTS b(k INTEGER PRIMARY KEY, v INTEGER, s TEXT)",
                    "INSERT INTO b(v, s) SELECT abs(random()) %% 100000, hex(randomblob(60)) FROM "
                    "(WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < %d) SELECT n FROM c)"
                    % self.ROWS]
        return [["CREATE INDEX b_v ON b(v)"], ["UPDATE b SET v = v + 1 WHERE k % 3 = 0"],
                ["DELETE FROM b WHERE k % 2 = 0"], ["DROP TABLE b"]][step - 1]

class App:
    def __init__(self, a):
        self.a = a
        self.db = sqlite3.connect(a.db, isolation_level=None, timeout=a.busy_timeout / 1000.0)
        self.db.execute("PRAGMA busy_timeout=%d" % a.busy_timeout)
        self.errors = open(a.errors, "a") if a.errors else None
        self.error_count = 0

    def execute(self, sql, args=()):
        """Runs one statement; False when it failed with SQLITE_BUSY (recorded)."""
        try:
            self.db.execute(sql, args).fetchall()
            return True
        except sqlite3.OperationalError as e:
            if not is_busy(e):
                raise
            self.error_count += 1
            if self.errors and self.error_count <= MAX_ERRORS_RECORDED:
                self.errors.write(json.dumps({"statement": sql[:80], "error": str(e), "ms": now_ms()}) + "\n")
                self.errors.flush()
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            return False

    def commit_row(self, i, blob):
        """One transaction inserting row i, tried until it commits;
        returns (ms before COMMIT, ms after)."""
        while True:
            t0 = now_ms()
            if (self.execute("BEGIN")
                    and self.execute("INSERT INTO t(id, payload, big) VALUES (?, ?, ?)", (i, payload(i), blob))
                    and self.execute("COMMIT")):
                return t0, now_ms()
            time.sleep(0.001)

    def schema_change(self, statements):
        for sql in statements:
            while not self.execute(sql):
                time.sleep(0.001)

    def checkpoint(self, phase):
        """One PRAGMA wal_checkpoint(MODE): its record, less the salt after
        the next commit (filled in by the caller)."""
        salt_before = wal_salt1(self.a.db)
        started = time.time()
        t = time.perf_counter()
        try:
            busy, log, checkpointed = self.db.execute("PRAGMA wal_checkpoint(%s)" % self.a.checkpoint).fetchone()
            error = None
        except sqlite3.OperationalError as e:
            busy, log, checkpointed, error = 1, -1, -1, str(e)
        latency_ms = (time.perf_counter() - t) * 1000.0
        return {"mode": self.a.checkpoint, "phase": phase, "start_ms": int(started * 1000),
                "latency_ms": round(latency_ms, 3), "busy": busy, "log": log, "checkpointed": checkpointed,
                "error": error, "wal_size": wal_size(self.a.db), "salt_before": salt_before}

def read_phase(path):
    try:
        with open(path) as f:
            return f.read().strip() or "idle"
    except FileNotFoundError:
        return "idle"

def main():
    p = argparse.ArgumentParser()
    p.add_argument("db"); p.add_argument("log")
    p.add_argument("--start", type=int, default=1)
    p.add_argument("--count", type=int, default=0, help="stop after N transactions (0: no limit)")
    p.add_argument("--seconds", type=float, default=0)
    p.add_argument("--stop-file")
    p.add_argument("--delay-ms", type=float, default=0)
    p.add_argument("--busy-timeout", type=int, default=5000)
    p.add_argument("--schema-every", type=int, default=0)
    p.add_argument("--vacuum-seconds", type=float, default=0, help="a VACUUM as the schema change this often")
    p.add_argument("--bulk-every", type=int, default=0, help="a speedtest1-like bulk step after every K-th txn")
    p.add_argument("--checkpoint", choices=["PASSIVE", "FULL", "RESTART", "TRUNCATE"])
    p.add_argument("--results")
    p.add_argument("--phase-file")
    p.add_argument("--ship-bytes", type=int, default=256 * 1024)
    p.add_argument("--errors")
    a = p.parse_args()
    app = App(a)
    app.db.execute("PRAGMA journal_mode=WAL")
    app.schema_change(["CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)"])
    log = open(a.log, "a")
    results = open(a.results, "a") if a.results else None
    schema = Schema(a.vacuum_seconds)
    bulk = Bulk()
    started = time.time()
    next_checkpoint = started + random.uniform(0.15, 0.30)
    pending = None          # a checkpoint record waiting for the next commit's salt
    i = a.start
    while True:
        phase = read_phase(a.phase_file) if a.phase_file else "idle"
        blob = os.urandom(a.ship_bytes) if phase == "ship" else None
        t0, t1 = app.commit_row(i, blob)
        log.write("%d %d %d\n" % (i, t0, t1)); log.flush()
        if pending:
            pending["salt_after_next"] = wal_salt1(a.db)
            results.write(json.dumps(pending) + "\n"); results.flush()
            pending = None
        if a.schema_every and i % a.schema_every == 0:
            app.schema_change(schema.next_statements())
        if a.bulk_every and i % a.bulk_every == 0:
            app.schema_change(bulk.next_statements())
        if a.checkpoint and time.time() >= next_checkpoint:
            pending = app.checkpoint(phase)
            next_checkpoint = time.time() + random.uniform(0.15, 0.30)
        i += 1
        if a.count and i >= a.start + a.count:
            break
        if a.seconds and time.time() - started >= a.seconds:
            break
        if a.stop_file and os.path.exists(a.stop_file):
            break
        if a.delay_ms:
            time.sleep(a.delay_ms / 1000.0)
    if pending:
        pending["salt_after_next"] = -1
        results.write(json.dumps(pending) + "\n")
    app.db.close()
    print("# app_writer: %d transactions, %d schema changes (%d VACUUM), %d bulk steps, %d busy errors"
          % (i - a.start, schema.changes, schema.vacuums, bulk.steps, app.error_count))

if __name__ == "__main__":
    main()
