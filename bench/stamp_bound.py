#!/usr/bin/python3
"""How long after a commit the sidecar stamps it (docs/design.md "Commit
times"): the bound `tidemark restore` prints on its `point:` line.

The ground-truth writer (tests/integration/writer.py) logs, per
transaction, the time before BEGIN (t0) and after COMMIT returned (t1);
the commit happens between them. The sidecar follows it; afterwards every
segment is decoded (bench/stamps.c) and the n-th stamp is paired with the
n-th logged commit (both tables exist before the sidecar starts, so the
writer's transactions are the only ones). For each scenario it prints the
stamp minus t1 (how long after COMMIT returned: median, 99th percentile,
max) and the stamp minus t0 (the most it can be after the commit: max), and
the least stamp minus t0 (never negative: a stamp never precedes a commit).

Usage: /usr/bin/python3 bench/stamp_bound.py [ROUNDS]   (after make -j2)
       STAMP_BOUND_ONLY=flood ... runs the flood scenario alone
"""
import os, sqlite3, subprocess, sys, time
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from helpers import Env

def build_stamps(out):
    libs = ["-lsqlite3", "-lsodium", "-lzstd", "-lyaml", "-lcurl", "-lcrypto", "-lev", "-lpthread"]
    subprocess.run(["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-o", out, os.path.join(HERE, "stamps.c"),
                    os.path.join(ROOT, "build", "release", "libtidemark.a")] + libs, check=True)

def stamps(env, tool):
    keys = []
    for d, _, files in os.walk(env.backup):
        keys += [os.path.relpath(os.path.join(d, f), env.backup) for f in files if f.endswith(".seg")]
    keys.sort()
    out = subprocess.run([tool, env.key, env.backup] + keys, check=True, capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]

def create_tables(env):
    db = sqlite3.connect(env.db)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)")
    db.execute("CREATE TABLE IF NOT EXISTS scratch(x BLOB)")
    db.commit()
    db.close()

def flood_scenario(tool, name, sync, seconds):
    """Delays of single-row transactions committed as fast as Python
    drives libsqlite3 for `seconds` (test_beside_app.py's flood): the
    sidecar ships large segments while commits keep coming."""
    from test_beside_app import flood
    env = Env("stamps", sync=sync)
    try:
        create_tables(env)
        env.start()
        time.sleep(0.5)
        flood(env.db, env.log, seconds)
        time.sleep(1.5)
        env.stop()
        log = env.commits()
        seen = stamps(env, tool)
        if len(seen) != len(log):
            sys.exit("%s: %d stamps for %d logged commits" % (name, len(seen), len(log)))
        return [(stamp - log[i][1], stamp - log[i][0], False) for i, stamp in enumerate(seen, 1)]
    finally:
        env.cleanup()

def scenario(tool, name, sync, bursts, per_burst, pause_s, *writer_options):
    """Delays (stamp - t1, stamp - t0) per commit; `first` marks the first
    commit of each burst after the first (after a pause: the sidecar's own
    checkpoint has run when pause_s > 1)."""
    env = Env("stamps", sync=sync)
    try:
        create_tables(env)
        env.start()
        for b in range(bursts):
            env.write_py(per_burst, *writer_options, start=b * per_burst + 1)
            time.sleep(pause_s)
        env.stop()
        log = env.commits()
        seen = stamps(env, tool)
        if len(seen) != len(log):
            sys.exit("%s: %d stamps for %d logged commits" % (name, len(seen), len(log)))
        rows = []
        for i, stamp in enumerate(seen, 1):
            t0, t1 = log[i]
            rows.append((stamp - t1, stamp - t0, i > 1 and (i - 1) % per_burst == 0))
        return rows
    finally:
        env.cleanup()

def report(name, rows):
    after = sorted(r[0] for r in rows)
    if not after:
        return
    print("%-52s %5d  %6d %6d %6d  %6d  %6d" % (name, len(after), after[len(after) // 2],
                                                after[min(len(after) - 1, len(after) * 99 // 100)], after[-1],
                                                max(r[1] for r in rows), min(r[1] for r in rows)))

def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    tool = os.path.join("/tmp", "tidemark-stamps-%d" % os.getpid())
    build_stamps(tool)
    scenarios = [
        ("steady, sync 200ms, a commit every ~10 ms", "200ms", 1, 300, 0.5),
        ("steady, sync 1s", "1s", 1, 300, 0.5),
        ("bursts after 2.5 s quiet (sidecar checkpoints), sync 200ms", "200ms", 8, 5, 2.5),
        ("bursts after 2.5 s quiet, sync 1s", "1s", 8, 5, 2.5),
        ("application TRUNCATE every 10 (pin gives way)", "200ms", 1, 200, 0.5, "--truncate-every", "10"),
    ]
    print("%-52s %5s  %6s %6s %6s  %6s  %6s" % ("scenario (ms)", "n", "med", "p99", "max", "max-t0", "min-t0"))
    only_flood = os.environ.get("STAMP_BOUND_ONLY") == "flood"
    try:
        for _ in range(rounds):
            report("flood: single-row transactions for 10 s, sync 1s", flood_scenario(tool, "flood", "1s", 10))
            for name, sync, bursts, per, pause, *opts in ([] if only_flood else scenarios):
                rows = scenario(tool, name, sync, bursts, per, pause, *opts)
                report(name, rows)
                if bursts > 1:
                    report("  first commit after each quiet pause", [r for r in rows if r[2]])
    finally:
        os.unlink(tool)

if __name__ == "__main__":
    main()
