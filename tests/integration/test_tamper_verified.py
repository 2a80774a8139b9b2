#!/usr/bin/python3
"""Issue 18, "decisions only from verified objects": objects planted in a
real generation under plausible names (a fake snapshot, a fake segment)
and a damaged newest snapshot. Retention counts a snapshot as newest or
kept only once its header is verified with the key, and reports the
others; restore of "latest" and of a time falls back to the next older
verified snapshot, says which object it skipped and why, and restores
exactly the writer's ground truth. Prints TAP.
"""
import json, os, re, sqlite3, subprocess, time

from helpers import *

NO_RETENTION = "    retention: off\n"


def tidemark(*args):
    return subprocess.run([TIDEMARK] + list(args), capture_output=True, text=True)


def snapshot_files(env):
    return archive_files(env, ".snap")


def name_fields(path):
    return [int(x, 16) if n == 0 else int(x) for n, x in
            enumerate(os.path.basename(path).rsplit(".", 1)[0].split("-"))]


def plant_fake_snapshot(env, real):
    """An 8-byte file named as the next snapshot, 1 ms after `real`."""
    index, time_ms = name_fields(real)
    fake = os.path.join(os.path.dirname(real), "%016x-%013d.snap" % (index + 1, time_ms + 1))
    with open(fake, "wb") as f:
        f.write(b"TIDEMARK")
    return fake


def plant_fake_segment(env, time_ms):
    """A segment after the last real one, its commits at time_ms."""
    segs = archive_files(env, ".seg")
    index = name_fields(segs[-1])[0] + 1
    fake = os.path.join(os.path.dirname(segs[-1]), "%016x-%013d-%013d.seg" % (index, time_ms, time_ms))
    with open(fake, "wb") as f:
        f.write(b"TIDEMARK" + bytes(64))
    return fake


def flip_middle_byte(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(os.path.getsize(path) // 2)
        f.write(bytes([byte[0] ^ 0x55]))


def s3_env(name):
    """The S3 test module (its server started), a new bucket, and an Env
    replicating to a file replica and to that bucket."""
    import test_s3
    if test_s3.ENDPOINT is None:
        test_s3.start_server()
    bucket = test_s3.new_bucket(versioning=False)
    return test_s3, bucket, test_s3.file_and_s3(name, bucket, extra_db=NO_RETENTION)


def retention_plan(env, config):
    proc = tidemark("retention", "-c", config, "--dry-run", "--json")
    check(proc.returncode == 0, "retention --dry-run failed: " + proc.stdout + proc.stderr)
    return json.loads(proc.stdout)[0]


def plan_entry(plan, path):
    for s in plan["snapshots"]:
        if s["key"].endswith(os.path.basename(path)):
            return s
    raise Failure("%s not in the plan: %r" % (os.path.basename(path), plan["snapshots"]))


def check_latest(env, skipped, why):
    """Restore latest: every committed row, and the fallback said."""
    proc, out = env.restore()
    check(proc.returncode == 0, "restore latest failed: " + proc.stdout + proc.stderr)
    check(restored_ids(out) == len(env.commits()), "restore latest lacks rows")
    check("skipped" in proc.stdout and os.path.basename(skipped) in proc.stdout and why in proc.stdout,
          "the fallback is not said (object and why): " + proc.stdout)


def check_at_time(env, skipped, target_ms):
    commits = env.commits()
    proc, out = env.restore(iso(target_ms))
    check(proc.returncode == 0, "restore at %s failed: %s" % (iso(target_ms), proc.stdout + proc.stderr))
    check(os.path.basename(skipped) in proc.stdout, "the skipped snapshot is not named: " + proc.stdout)
    k = restored_ids(out)
    must = [i for i, (t0, t1) in commits.items() if t1 <= target_ms - SLACK_MS]
    must_not = [i for i, (t0, t1) in commits.items() if t0 > target_ms]
    check(not must or k >= max(must), "restore at %s has %d rows, expected at least %d" % (iso(target_ms), k, max(must)))
    check(not must_not or k < min(must_not), "restore at %s has %d rows, some after the target" % (iso(target_ms), k))

# ------------------------------------------------------------------ tests

def test_fake_snapshot_is_not_trusted():
    """An 8-byte file named as a snapshot 1 ms after the only real one:
    retention keeps the real one as newest and reports the fake (kept:
    it is newer than every verified snapshot); restore of latest and of
    a time after the fake's name fall back to the real snapshot."""
    env = Env("fake-snap", extra_db=NO_RETENTION)
    try:
        env.replicate_writes(60, "--delay-ms", "10")
        snaps = snapshot_files(env)
        check(len(snaps) == 1, "expected the generation's one snapshot, found %r" % snaps)
        real = snaps[0]
        fake = plant_fake_snapshot(env, real)
        config = env.write_config("retention.yml", env.key)
        plan = retention_plan(env, config)
        real_entry, fake_entry = plan_entry(plan, real), plan_entry(plan, fake)
        check(real_entry["keep"] and "newest" in real_entry["kept_by"], "real snapshot: %r" % real_entry)
        check(fake_entry["keep"] and "newest" not in fake_entry["kept_by"] and not fake_entry["verified"]
              and fake_entry["problem"], "fake snapshot: %r" % fake_entry)
        check(plan["deleted_snapshots"] == 0, "plan deletes snapshots: %r" % plan)
        proc = tidemark("retention", "-c", config, "--dry-run")
        check("unverified" in proc.stdout and os.path.basename(fake) in proc.stdout,
              "the fake is not reported: " + proc.stdout)
        check_latest(env, fake, "corrupt")
        commits = env.commits()
        check_at_time(env, fake, (min(t1 for _, t1 in commits.values()) + max(t1 for _, t1 in commits.values())) // 2)
    finally:
        env.cleanup()


def test_damaged_newest_snapshot_falls_back():
    """Bytes flipped in the newest of several real snapshots: retention
    counts the one before it as newest, restore of latest and of a time
    after the damaged one replay from the older snapshot, exactly."""
    env = Env("damaged-snap", extra_db="    snapshot-interval: 1s\n" + NO_RETENTION)
    try:
        env.replicate_writes(200, "--delay-ms", "15")
        snaps = sorted(snapshot_files(env), key=lambda p: name_fields(p)[1])
        check(len(snaps) >= 2, "expected several snapshots, found %d" % len(snaps))
        newest, previous = snaps[-1], snaps[-2]
        flip_middle_byte(newest)
        config = env.write_config("retention.yml", env.key, extra_db="    snapshot-interval: 1s\n")
        plan = retention_plan(env, config)
        check("newest" in plan_entry(plan, previous)["kept_by"], "previous: %r" % plan_entry(plan, previous))
        damaged = plan_entry(plan, newest)
        check(damaged["keep"] and not damaged["verified"] and "newest" not in damaged["kept_by"],
              "damaged: %r" % damaged)
        check_latest(env, newest, "authentication failed")
        check_at_time(env, newest, name_fields(newest)[1] + 100)
    finally:
        env.cleanup()


def test_fake_segment_and_snapshot():
    """A fake snapshot and a fake segment after the real tail: retention
    keeps the real snapshot; a restore before the fake segment's time is
    exact; restore of latest refuses at the fake segment, naming it and
    the last consistent point, which then restores exactly."""
    env = Env("fake-seg", extra_db=NO_RETENTION)
    try:
        env.replicate_writes(60, "--delay-ms", "10")
        real = snapshot_files(env)[0]
        fake_snap = plant_fake_snapshot(env, real)
        last_commit = max(t1 for _, t1 in env.commits().values())
        fake_seg = plant_fake_segment(env, last_commit + 5000)
        config = env.write_config("retention.yml", env.key)
        plan = retention_plan(env, config)
        check("newest" in plan_entry(plan, real)["kept_by"], "real snapshot: %r" % plan_entry(plan, real))
        check(plan["deleted_snapshots"] == 0 and plan["deleted_segments"] == 0, "plan deletes: %r" % plan)
        check_at_time(env, fake_snap, last_commit + 1000)
        proc, _ = env.restore()
        check(proc.returncode != 0 and os.path.basename(fake_seg) in proc.stderr, "latest: " + proc.stdout + proc.stderr)
        point = re.search(r"--timestamp (\S+)", proc.stderr)
        check(point, "no last consistent point in: " + proc.stderr)
        proc, out = env.restore(point.group(1).rstrip(","))
        check(proc.returncode == 0, "restore at the point named: " + proc.stdout + proc.stderr)
        check(restored_ids(out) == len(env.commits()), "restore at the point named lacks rows")
    finally:
        env.cleanup()


def test_key_pair_sidecar_retention():
    """A sidecar with a key pair holds only the public key: its retention
    cannot read headers but still tells the planted file from a sealed
    envelope (and says it planned from names); the secret key given with
    --key-file verifies."""
    env = Env("fake-snap-pair", extra_db=NO_RETENTION)
    try:
        pair = os.path.join(env.dir, "pair")
        subprocess.run([TIDEMARK, "keygen", "--pair", "-o", pair], check=True, capture_output=True)
        def pair_config(name, extra_db):
            path = os.path.join(env.dir, name)
            with open(path, "w") as f:
                f.write("encryption:\n  recipient-file: %s.pub\ndbs:\n  - path: %s\n    sync-interval: 200ms\n%s"
                        "    replicas:\n%s" % (pair, env.db, extra_db, env.replicas))
            return path
        env.config = pair_config("pair.yml", NO_RETENTION)
        env.replicate_writes(30, "--delay-ms", "10")
        real = snapshot_files(env)[0]
        fake = plant_fake_snapshot(env, real)
        config = pair_config("retention.yml", "")
        for extra, note in (([], True), (["--key-file", pair], False)):
            proc = tidemark("retention", "-c", config, "--dry-run", "--json", *extra)
            check(proc.returncode == 0, "retention %r failed: %s" % (extra, proc.stdout + proc.stderr))
            plan = json.loads(proc.stdout)[0]
            real_entry, fake_entry = plan_entry(plan, real), plan_entry(plan, fake)
            check(real_entry["keep"] and "newest" in real_entry["kept_by"], "real (%r): %r" % (extra, real_entry))
            check(not fake_entry["verified"] and "newest" not in fake_entry["kept_by"], "fake: %r" % fake_entry)
            text = tidemark("retention", "-c", config, "--dry-run", *extra).stdout
            check(("only the public key" in text) == note, "public-key note (%r): %s" % (extra, text))
    finally:
        env.cleanup()


def test_fake_snapshot_on_s3():
    """The same fake snapshot put into a bucket with awscli: retention of
    the S3 replica (headers read with ranged GETs) keeps the real
    snapshot as newest, and restore from S3 falls back to it."""
    test_s3, bucket, env = s3_env("fake-snap-s3")
    try:
        env.replicate_writes(60, "--delay-ms", "10")
        real = snapshot_files(env)[0]
        fake = plant_fake_snapshot(env, real)   # in the file replica: the same key on S3 below
        key = "prod/app/" + os.path.relpath(fake, env.backup)
        test_s3.aws("s3", "cp", fake, "s3://%s/%s" % (bucket, key))
        os.unlink(fake)
        config = env.write_config("retention.yml", env.key)
        proc = tidemark("retention", "-c", config, "--dry-run", "--json", "--replica", "s3")
        check(proc.returncode == 0, "retention --dry-run on S3 failed: " + proc.stdout + proc.stderr)
        plan = json.loads(proc.stdout)[0]
        real_entry, fake_entry = plan_entry(plan, real), plan_entry(plan, fake)
        check(real_entry["keep"] and "newest" in real_entry["kept_by"], "real snapshot: %r" % real_entry)
        check(not fake_entry["verified"] and "newest" not in fake_entry["kept_by"], "fake: %r" % fake_entry)
        proc, out = env.restore(extra=("--replica", "s3"))
        check(proc.returncode == 0, "restore latest from S3 failed: " + proc.stdout + proc.stderr)
        check(restored_ids(out) == len(env.commits()), "restore latest from S3 lacks rows")
        check(os.path.basename(fake) in proc.stdout, "the fallback is not said: " + proc.stdout)
    finally:
        env.cleanup()


def test_damaged_snapshot_on_s3_falls_back_across_generations():
    """Two generations; the newer one's snapshot damaged in the bucket. A
    restore from S3 falls back to the older generation's snapshot and
    replays that generation's segments, read from local copies (named by
    position, as the newer generation's are: a copy downloaded for one
    generation must never be read for the other; the identity binding
    would refuse it and the restore would fail), and says what it
    skipped. The rows are exactly the first generation's."""
    test_s3, bucket, env = s3_env("damaged-snap-s3")
    try:
        env.replicate_writes(40, "--delay-ms", "10")
        first_run = len(env.commits())
        env.write_py(10, start=first_run + 1)   # while the sidecar is down, then checkpointed away:
        db = sqlite3.connect(env.db)              # it cannot resume, and starts a new generation
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        env.start()
        env.write_py(40, "--delay-ms", "10", start=first_run + 11)
        time.sleep(0.5)
        env.stop()
        snaps = sorted(snapshot_files(env), key=lambda p: name_fields(p)[1])
        generations = sorted({os.path.basename(os.path.dirname(os.path.dirname(p))) for p in snaps})
        check(len(generations) == 2, "expected two generations, found %r" % generations)
        newest = snaps[-1]
        check(generations[1] in newest, "the newest snapshot is not the second generation's: " + newest)
        check(len([p for p in archive_files(env, ".seg") if generations[1] in p]) >= 2,
              "the second generation has too few segments to run ahead on")
        key = "prod/app/" + os.path.relpath(newest, env.backup)
        damaged = os.path.join(env.dir, "damaged.snap")
        test_s3.aws("s3", "cp", "s3://%s/%s" % (bucket, key), damaged)
        flip_middle_byte(damaged)
        test_s3.aws("s3", "cp", damaged, "s3://%s/%s" % (bucket, key))
        last_ms = max(t1 for _, t1 in env.commits().values())
        proc, out = env.restore(iso(last_ms + 1000), extra=("--replica", "s3"))
        check(proc.returncode == 0, "restore from S3 failed: " + proc.stdout + proc.stderr)
        check(os.path.basename(newest) in proc.stdout and "authentication failed" in proc.stdout,
              "the fallback is not said: " + proc.stdout)
        check(restored_ids(out) == first_run, "restored %d rows, the first generation holds %d"
              % (restored_ids(out), first_run))
    finally:
        env.cleanup()


if __name__ == "__main__":
    sys.exit(run_tests([test_fake_snapshot_is_not_trusted, test_damaged_newest_snapshot_falls_back,
                        test_fake_segment_and_snapshot, test_key_pair_sidecar_retention, test_fake_snapshot_on_s3,
                        test_damaged_snapshot_on_s3_falls_back_across_generations]))
