#!/usr/bin/python3
"""Adversarial tests of issue 18, finding 4: local files on a shared host.
Another local user plants a symbolic link at every temporary path tidemark
could be expected to use (restore's temporary output, the `verify --deep`
scratch copy, the S3 prefetch directory, the Redis check socket), for the
next few hundred process ids, and a directory of their own (or writable by
anyone) at every scratch directory (drill staging, the directories of a
multi-database restore). Each test asserts that nothing outside is
touched (the link's target keeps its bytes and mode), that the command
either succeeds through a fresh private path or refuses with an error
naming the path, and that what is restored is not readable by others.
Prints TAP.
"""
import os, shutil, stat, subprocess, sys, time

from helpers import *

PID_SPAN = 400          # planted for this many process ids after the last one used
NOBODY = 65534
VICTIM_TEXT = "precious: must not be overwritten\n"


def next_pids():
    with open("/proc/sys/kernel/ns_last_pid") as f:
        last = int(f.read())
    return range(last + 1, last + 1 + PID_SPAN)


def make_victim(directory):
    """A file another user's symlink points at: its bytes and mode are checked after."""
    path = os.path.join(directory, "victim")
    with open(path, "w") as f:
        f.write(VICTIM_TEXT)
    os.chmod(path, 0o644)
    return path


def check_victim(path):
    with open(path, "rb") as f:
        text = f.read().decode(errors="replace")
    check(text == VICTIM_TEXT, "the symlink's target %s was written through (%d bytes now)" % (path, len(text)))
    mode = stat.S_IMODE(os.stat(path).st_mode)
    check(mode == 0o644, "the symlink's target %s changed mode to %o" % (path, mode))


def plant_links(pattern, target):
    """A symlink to target at pattern % pid for the next process ids."""
    paths = [pattern % pid for pid in next_pids()]
    for p in paths:
        os.symlink(target, p)
    return paths


def check_links_intact(paths, target):
    for p in paths:
        check(os.path.islink(p) and os.readlink(p) == target, "planted link %s was replaced or removed" % p)


def foreign_dir(path):
    """A directory that is not ours: another user's when we are root (as a
    plain user we cannot give one away: one anyone may write stands for it)."""
    os.makedirs(path)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
        os.chmod(path, 0o755)
    else:
        os.chmod(path, 0o777)


def world_writable_dir(path):
    os.makedirs(path)
    os.chmod(path, 0o1777)       # like /tmp and /var/tmp


def check_private(path):
    mode = stat.S_IMODE(os.lstat(path).st_mode)
    check(mode & 0o077 == 0, "%s is readable or writable by others (mode %o)" % (path, mode))


def tidemark(*args, env=None):
    return subprocess.run([TIDEMARK] + list(args), capture_output=True, text=True, env=env)


def test_restore_temp_output_is_not_followed():
    """restore -o OUT in a shared directory with symlinks planted at
    OUT.tidemark-restore-PID (and its -journal): the restore succeeds
    through a fresh private path, the target of the links is untouched,
    the links stay, and the restored database is mode 0600."""
    env = Env("tamper-restore")
    try:
        env.replicate_writes(40)
        shared = os.path.join(env.dir, "shared")
        world_writable_dir(shared)
        victim = make_victim(env.dir)
        out = os.path.join(shared, "restored.db")
        links = plant_links(out + ".tidemark-restore-%d", victim)
        links += plant_links(out + ".tidemark-restore-%d-journal", victim)
        old_umask = os.umask(0)
        try:
            proc, _ = env.restore(output=out)
        finally:
            os.umask(old_umask)
        check_victim(victim)
        check(proc.returncode == 0, "restore failed: " + proc.stderr)
        check(not os.path.islink(out), "the output is a symlink: a planted temporary path was renamed over it")
        check(restored_ids(out) == 40, "restored rows differ")
        check_private(out)
        check_links_intact(links, victim)
        leftovers = [n for n in os.listdir(shared) if not os.path.islink(os.path.join(shared, n)) and n != "restored.db"]
        check(leftovers == [], "the restore left files behind: %r" % leftovers)
    finally:
        env.cleanup()


def test_verify_deep_scratch_is_not_followed():
    """verify --deep restores into a scratch copy under TMPDIR (a shared,
    sticky, world-writable directory here, like /var/tmp) with symlinks
    planted at tidemark-verify-PID.db and its temporary path: verify
    succeeds, nothing is written through the links."""
    env = Env("tamper-verify")
    try:
        env.replicate_writes(30)
        tmp = os.path.join(env.dir, "vartmp")
        world_writable_dir(tmp)
        victim = make_victim(env.dir)
        links = []
        for pid in next_pids():   # the scratch copy, and the restore's temporary path beside it
            scratch = os.path.join(tmp, "tidemark-verify-%d.db" % pid)
            links += [scratch, "%s.tidemark-restore-%d" % (scratch, pid)]
        for link in links:
            os.symlink(victim, link)
        proc = tidemark("verify", "-c", env.config, "--deep", env=dict(os.environ, TMPDIR=tmp))
        check_victim(victim)
        check(proc.returncode == 0 and "newest point restored" in proc.stdout, "verify --deep: " + proc.stdout + proc.stderr)
        check_links_intact(links, victim)
        check(sorted(os.listdir(tmp)) == sorted(os.path.basename(l) for l in links),
              "verify --deep left files in TMPDIR: %r" % sorted(set(os.listdir(tmp)) - set(map(os.path.basename, links))))
    finally:
        env.cleanup()


def drill_config(env, staging):
    return env.write_config("drill.yml", env.key, extra_db='    drill: { staging: %s, check-sql: "SELECT count(*) FROM t" }\n'
                            % staging)


def test_drill_staging_must_be_ours():
    """The drill's staging directory: a symlink to a directory, another
    user's directory and a world-writable one are refused with an error
    naming the path, nothing written there; a missing one is created 0700,
    and the drill leaves nothing in it."""
    env = Env("tamper-drill")
    try:
        env.replicate_writes(30)
        elsewhere = os.path.join(env.dir, "elsewhere")
        os.makedirs(elsewhere, mode=0o700)
        cases = []
        link = os.path.join(env.dir, "staging-link")
        os.symlink(elsewhere, link)
        cases.append((link, "symbolic link"))
        theirs = os.path.join(env.dir, "staging-theirs")
        foreign_dir(theirs)
        cases.append((theirs, "owned by uid %d" % NOBODY if os.geteuid() == 0 else "writable by other users"))
        world = os.path.join(env.dir, "staging-world")
        world_writable_dir(world)
        cases.append((world, "writable by other users"))
        for staging, why in cases:
            proc = tidemark("drill", "-c", drill_config(env, staging), "app")
            output = proc.stdout + proc.stderr
            check(proc.returncode == 1 and staging in output and why in output,
                  "drill with staging %s (%s) was not refused: %s" % (staging, why, output))
            check(os.listdir(staging) == [], "the drill wrote into %s: %r" % (staging, os.listdir(staging)))
        check(os.listdir(elsewhere) == [], "the drill wrote through the staging symlink: %r" % os.listdir(elsewhere))
        fresh = os.path.join(env.dir, "staging-new", "drill")
        proc = tidemark("drill", "-c", drill_config(env, fresh), "app")
        check(proc.returncode == 0, "drill with a new staging directory: " + proc.stdout + proc.stderr)
        check_private(fresh)
        check(os.listdir(fresh) == [], "the drill left files in staging: %r" % os.listdir(fresh))
    finally:
        env.cleanup()


def test_restore_tree_directories_must_be_ours():
    """Restoring several databases (a glob) into OUTPUT/NAME: an OUTPUT
    that is a symlink, another user's directory or world-writable is
    refused with an error naming it, and nothing is written there."""
    env = Env("tamper-tree")
    try:
        env.replicate_writes(20)
        elsewhere = os.path.join(env.dir, "elsewhere")
        os.makedirs(elsewhere, mode=0o700)
        link = os.path.join(env.dir, "out-link")
        os.symlink(elsewhere, link)
        theirs = os.path.join(env.dir, "out-theirs")
        foreign_dir(theirs)
        world = os.path.join(env.dir, "out-world")
        world_writable_dir(world)
        for output in (link, theirs, world):
            proc = tidemark("restore", "-c", env.config, "ap*", "-o", output)
            check(proc.returncode == 1 and ("'%s'" % output) in proc.stdout + proc.stderr and "refusing" in proc.stderr,
                  "restore into %s was not refused: %s" % (output, proc.stdout + proc.stderr))
            check(os.listdir(output) == [], "the restore wrote into %s: %r" % (output, os.listdir(output)))
        check(os.listdir(elsewhere) == [], "the restore wrote through the symlink: %r" % os.listdir(elsewhere))
        fresh = os.path.join(env.dir, "out-new")
        proc = tidemark("restore", "-c", env.config, "ap*", "-o", fresh)
        check(proc.returncode == 0, "restore into a new directory: " + proc.stdout + proc.stderr)
        check_private(fresh)
        check_private(os.path.join(fresh, "app"))
        check(restored_ids(os.path.join(fresh, "app")) == 20, "restored rows differ")
    finally:
        env.cleanup()


def test_redis_restore_temp_dir_and_check_socket():
    """A Redis restore with, for the next process ids, a symlink to a
    directory of precious files at OUT.tidemark-restore-PID and a
    directory at /tmp/tidemark-restore-PID.sock (where the check's socket
    was predictable): the restore succeeds and is loaded by its own
    redis-server, the files behind the link are untouched, the output is
    private."""
    import test_redis
    env = test_redis.Env("tamper-files")
    planted = []
    try:
        env.server.client(0).set("k", "v")
        env.start()
        env.wait_streaming()
        env.server.client(0).set("k2", "v2")
        time.sleep(0.5)
        env.stop()
        precious = os.path.join(env.dir, "precious")
        os.makedirs(precious)
        with open(os.path.join(precious, "keep"), "w") as f:
            f.write(VICTIM_TEXT)
        shared = os.path.join(env.dir, "shared")
        world_writable_dir(shared)
        out = os.path.join(shared, "restored")
        links = plant_links(out + ".tidemark-restore-%d", precious)
        for pid in next_pids():
            path = "/tmp/tidemark-restore-%d.sock" % pid
            if not os.path.lexists(path):
                os.mkdir(path)
                planted.append(path)
        proc = tidemark("restore", "-c", env.config, "cache", "-o", out)
        check(os.listdir(precious) == ["keep"] and open(os.path.join(precious, "keep")).read() == VICTIM_TEXT,
              "the files behind the planted link were touched: %r" % os.listdir(precious))
        check(proc.returncode == 0 and "loaded by redis-server" in proc.stdout, "restore: " + proc.stdout + proc.stderr)
        check_private(out)
        check_links_intact(links, precious)
        for path in planted:
            check(os.path.isdir(path) and os.listdir(path) == [], "planted directory %s was touched" % path)
    finally:
        for path in planted:
            shutil.rmtree(path, ignore_errors=True)
        env.cleanup()


def test_s3_prefetch_directory_is_not_followed():
    """A restore from S3 prefetches segments into a local directory: with
    a symlink to a directory of precious files (named like the segments
    it fetches) planted at OUT.tidemark-restore-PID.d, the restore
    succeeds and those files are untouched."""
    import test_s3
    if test_s3.ENDPOINT is None:
        test_s3.start_server()
    bucket = test_s3.new_bucket()
    env = test_s3.file_and_s3("tamper-s3", bucket)
    try:
        env.replicate_writes(40, "--delay-ms", "20")
        precious = os.path.join(env.dir, "precious")
        os.makedirs(precious)
        names = ["segment-%d" % i for i in range(64)]
        for name in names:
            with open(os.path.join(precious, name), "w") as f:
                f.write(VICTIM_TEXT)
        shared = os.path.join(env.dir, "shared")
        world_writable_dir(shared)
        out = os.path.join(shared, "restored.db")
        links = plant_links(out + ".tidemark-restore-%d.d", precious)
        proc, _ = env.restore(output=out, extra=("--replica", "s3"))
        check(sorted(os.listdir(precious)) == sorted(names), "files behind the planted link were removed: %d left"
              % len(os.listdir(precious)))
        for name in names:
            with open(os.path.join(precious, name)) as f:
                check(f.read() == VICTIM_TEXT, "%s behind the planted link was overwritten" % name)
        check(proc.returncode == 0, "restore from S3: " + proc.stderr)
        check(restored_ids(out) == 40, "restored rows differ")
        check_private(out)
        check_links_intact(links, precious)
    finally:
        env.cleanup()


TESTS = [
    test_restore_temp_output_is_not_followed,
    test_verify_deep_scratch_is_not_followed,
    test_drill_staging_must_be_ours,
    test_restore_tree_directories_must_be_ours,
    test_redis_restore_temp_dir_and_check_socket,
    test_s3_prefetch_directory_is_not_followed,
]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
