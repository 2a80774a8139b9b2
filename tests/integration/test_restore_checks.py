#!/usr/bin/python3
"""Issue 22: the restore's checks and its report of where the time went.

- `--integrity-check full|quick|none`: each restores exactly (ground truth
  of writer.py, helpers.verify_point), and says which SQLite check ran; an
  unknown mode is a usage error naming the value, nothing written.
- the `phases:` line: every phase a number, the total (wall time) at least
  the writer's stages that cannot overlap (write, then fsync beside the
  checks).
- a pipeline that meets an object failing authentication in the middle
  (a byte flipped inside an encrypted chunk of a middle segment, its name
  kept) stops cleanly: exit 1, the error names the object, nothing at the
  output, no temporary directory left, the process gone promptly.
- drill records carry the phases too (`drill --json`), and take the
  same --integrity-check.
Prints TAP.
"""
import json, os, re, subprocess, time

from helpers import *

PHASES = re.compile(r"^phases: fetch (\d+\.\d\d)s, decrypt\+decompress (\d+\.\d\d)s, write (\d+\.\d\d)s, "
                    r"fsync (\d+\.\d\d)s, check (\d+\.\d\d)s, total (\d+\.\d\d)s$", re.M)
INTEGRITY_LINES = {
    "full": "integrity:    ok (PRAGMA integrity_check;",
    "quick": "integrity:    ok (PRAGMA quick_check, --integrity-check quick;",
    "none": "integrity:    not checked by SQLite (--integrity-check none;",
}

_shared = None


def shared_env():
    """One replicated database for the tests that only read it: 400
    transactions, two of them of ~6 MB, in many segments (sync 100 ms)."""
    global _shared
    if _shared is None:
        env = Env("restore-checks", sync="100ms")
        env.replicate_writes(400, "--delay-ms", "5", "--big-every", "150")
        _shared = env
    return _shared


def phases_of(stdout):
    m = PHASES.search(stdout)
    check(m is not None, "no phases line in: " + stdout)
    return dict(zip(("fetch", "decode", "write", "fsync", "check", "total"), (float(x) for x in m.groups())))


def test_each_mode_restores_exactly():
    env = shared_env()
    commits = env.commits()
    first = min(t0 for t0, t1 in commits.values())
    last = max(t1 for t0, t1 in commits.values())
    for mode in ("full", "quick", "none"):
        verify_point(env, commits, (first + last) // 2, extra=("--integrity-check", mode))
        proc, out = env.restore(extra=("--integrity-check", mode))
        check(proc.returncode == 0, "latest restore with %s failed: %s" % (mode, proc.stderr))
        check(restored_ids(out) == len(commits), "latest restore with %s lacks rows" % mode)
        check(INTEGRITY_LINES[mode] in proc.stdout, "%s: integrity line missing: %s" % (mode, proc.stdout))
        check("size, header and every page written checked)" in proc.stdout, "page checks not reported")
        phases_of(proc.stdout)
        os.unlink(out)


def test_unknown_mode_is_a_usage_error():
    env = shared_env()
    proc, out = env.restore(extra=("--integrity-check", "thorough"))
    check(proc.returncode == 2, "exit %d, expected 2: %s" % (proc.returncode, proc.stderr))
    check("--integrity-check 'thorough' is not full, quick or none" in proc.stderr, "stderr: " + proc.stderr)
    check(not os.path.exists(out), "something was written at the output")


def test_phases_add_up():
    env = shared_env()
    proc, out = env.restore()
    check(proc.returncode == 0, "restore failed: " + proc.stderr)
    p = phases_of(proc.stdout)
    for name, value in p.items():
        check(value >= 0 and value <= p["total"] + 0.01, "phase %s = %.2f, total %.2f" % (name, value, p["total"]))
    # the writer's stages follow each other (the fsync runs beside the checks):
    # together no longer than the whole
    check(p["write"] + max(p["fsync"], p["check"]) <= p["total"] + 0.02, "write + fsync|check > total: %r" % p)
    check(p["total"] > 0, "total is 0: %r" % p)
    os.unlink(out)


def test_drill_records_phases():
    """`drill --json --integrity-check quick`: the record carries the
    restore's phases (ms); an unknown mode is refused as for restore."""
    env = shared_env()
    config = env.write_config("drill.yml", env.key, extra_db="    drill: { staging: %s }\n"
                              % os.path.join(env.dir, "drill-scratch"))
    proc = subprocess.run([TIDEMARK, "drill", "-c", config, "app", "--json", "--integrity-check", "quick",
                           "--no-alert"], capture_output=True, text=True)
    check(proc.returncode == 0, "drill failed: " + proc.stdout + proc.stderr)
    record = json.loads(proc.stdout)
    record = record[0] if isinstance(record, list) else record
    phases = record.get("phases")
    check(isinstance(phases, dict) and set(phases) == {"fetch_ms", "decrypt_decompress_ms", "write_ms", "fsync_ms",
                                                       "check_ms", "total_ms"}, "record: %r" % record)
    check(all(isinstance(v, int) and 0 <= v <= phases["total_ms"] + 1 for v in phases.values()), "phases: %r" % phases)
    check(record["ok"] and phases["total_ms"] <= record["rto_ms"] + 1, "record: %r" % record)
    proc = subprocess.run([TIDEMARK, "drill", "-c", config, "app", "--integrity-check", "most"],
                          capture_output=True, text=True)
    check(proc.returncode == 2 and "--integrity-check 'most' is not full, quick or none" in proc.stderr,
          "drill with a bad mode: %d %s" % (proc.returncode, proc.stderr))


def name_index(path):
    return int(os.path.basename(path).split("-")[0], 16)


def test_pipeline_stops_at_a_damaged_middle_segment():
    """A byte flipped inside an encrypted chunk of a segment in the middle
    of what a restore replays (its name kept): the restore fails naming
    it, promptly, and leaves nothing: no output, no temporary directory."""
    env = Env("restore-damaged-seg", sync="100ms")
    try:
        env.replicate_writes(300, "--delay-ms", "5", "--big-every", "60")
        newest_snap = max(archive_files(env, ".snap"), key=name_index)
        gen_dir = os.path.dirname(os.path.dirname(newest_snap))
        segs = sorted((p for p in archive_files(env, ".seg") if p.startswith(gen_dir + "/")
                       and name_index(p) >= name_index(newest_snap)), key=name_index)
        check(len(segs) >= 3, "expected several segments after the newest snapshot, found %d" % len(segs))
        damaged = max(segs[1:-1], key=os.path.getsize)   # in the middle; the largest: several chunks
        size = os.path.getsize(damaged)
        with open(damaged, "r+b") as f:
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 0x55]))
        output = os.path.join(env.dir, "out", "restored.db")
        os.mkdir(os.path.dirname(output))
        started = time.time()
        proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "app", "-o", output, "--no-deltas"],
                              capture_output=True, text=True, timeout=60)
        elapsed = time.time() - started
        check(proc.returncode == 1, "exit %d, expected 1: %s" % (proc.returncode, proc.stderr))
        check(os.path.basename(damaged) in proc.stderr and "authentication failed" in proc.stderr,
              "the error does not name the damaged segment: " + proc.stderr)
        check("nothing was written at '%s'" % output in proc.stderr, "stderr: " + proc.stderr)
        check(os.listdir(os.path.dirname(output)) == [], "left behind: %r" % os.listdir(os.path.dirname(output)))
        check(elapsed < 30, "the restore took %.1f s to stop" % elapsed)
        print("# %d segments replayed from the snapshot; damaged %s (%d bytes); stopped in %.2f s: %s"
              % (len(segs), os.path.basename(damaged), size, elapsed, proc.stderr.splitlines()[0]))
        # the point before it is still restorable
        check("--timestamp" in proc.stderr, "no hint of the last consistent point: " + proc.stderr)
    finally:
        env.cleanup()


def cleanup():
    if _shared:
        _shared.cleanup()


if __name__ == "__main__":
    try:
        code = run_tests([test_each_mode_restores_exactly, test_unknown_mode_is_a_usage_error, test_phases_add_up,
                          test_drill_records_phases, test_pipeline_stops_at_a_damaged_middle_segment])
    finally:
        cleanup()
    sys.exit(code)
