#!/usr/bin/python3
"""Adversarial tests of issue 18, finding 1: one database's backup must
never restore as another's. Every object is bound to its key in the
archive (envelope version 3, common/object.c): copying a generation or a
segment from one database to another (two configured databases, or two
tenants of one `dir:` entry) makes restore and verify refuse, naming the
object ("belongs to another database or place"), with the symmetric key,
with a key pair, and (an accident, nothing authenticated) without
encryption, and for Redis archives; the database left alone still
restores exactly. An archive
written by tidemark 0.9 (envelope version 2, a committed fixture) still
restores, and verify says its objects predate the binding. Prints TAP.
"""
import os, shutil, sqlite3, subprocess, time

from helpers import *

FIXTURE_V2 = os.path.join(HERE, "fixtures", "envelope-v2")
REFUSAL = "belongs to another database or place"


def tidemark(*args):
    return subprocess.run([TIDEMARK] + list(args), capture_output=True, text=True, timeout=120)


class World:
    """Two configured databases (a, b) and a `dir:` entry with two tenants
    (tenants/x.db, tenants/y.db), all replicated once by one sidecar to a
    file replica, each with rows of its own. mode: "key" (symmetric),
    "pair" (the sidecar has the public key only; readers get the secret
    key with --key-file) or "none"."""
    DBS = ("a", "b", "tenants/x.db", "tenants/y.db")
    COMPONENT = {"a": "a", "b": "b", "tenants/x.db": "tenants%2Fx.db", "tenants/y.db": "tenants%2Fy.db"}

    def __init__(self, mode):
        self.mode = mode
        self.dir = tempfile.mkdtemp(prefix="tidemark-it-identity-%s-" % mode)
        self.backup = os.path.join(self.dir, "backup")
        os.makedirs(os.path.join(self.dir, "tenants"))
        self.read_args = []
        if mode == "key":
            key = os.path.join(self.dir, "key")
            subprocess.run([TIDEMARK, "keygen", "-o", key], check=True, stdout=subprocess.DEVNULL)
            encryption = "encryption:\n  key-file: %s\n" % key
        elif mode == "pair":
            secret = os.path.join(self.dir, "pair")
            subprocess.run([TIDEMARK, "keygen", "--pair", "-o", secret], check=True, stdout=subprocess.DEVNULL)
            encryption = "encryption:\n  recipient-file: %s.pub\n" % secret
            self.read_args = ["--key-file", secret]
        else:
            encryption = "encryption: none\n"
        self.encryption = encryption

    def path(self, name):
        return os.path.join(self.dir, name if name.startswith("tenants/") else name + ".db")

    def config_for(self, backup, s3_replica=None):
        """A config reading the file replica `backup`, or the S3 replica
        given (tests/integration/test_s3.py's s3_replica)."""
        path = os.path.join(self.dir, "tidemark-%s.yml" % os.path.basename(backup))
        replica = "    replicas:\n" + (s3_replica or "      - type: file\n        path: %s\n" % backup)
        with open(path, "w") as f:
            f.write(self.encryption + "dbs:\n")
            for name in ("a", "b"):
                f.write("  - path: %s\n    name: %s\n    sync-interval: 100ms\n%s" % (self.path(name), name, replica))
            f.write("  - dir: %s\n    sync-interval: 100ms\n%s" % (os.path.join(self.dir, "tenants"), replica))
        return path

    def rows(self, name):
        return ["%s-row-%d" % (name, i) for i in range(1, 13)]

    def build(self):
        for name in self.DBS:
            db = sqlite3.connect(self.path(name))
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
            db.commit()
            db.close()
        config = self.config_for(self.backup)
        log = open(os.path.join(self.dir, "replicate.log"), "ab")
        proc = subprocess.Popen([TIDEMARK, "replicate", "-c", config], stdout=log, stderr=log)
        try:
            time.sleep(1.0)
            for chunk in range(3):   # a few segments each, after the first snapshot
                for name in self.DBS:
                    db = sqlite3.connect(self.path(name))
                    for payload in self.rows(name)[chunk * 4:(chunk + 1) * 4]:
                        db.execute("INSERT INTO t(payload) VALUES (?)", (payload,))
                    db.commit()
                    db.close()
                time.sleep(0.4)
            wait_until(lambda: all(len(self.segments(self.backup, name)) >= 3 for name in self.DBS), 15,
                       "every database's segments to be shipped")
        finally:
            proc.terminate()
            code = proc.wait(timeout=60)
        check(code == 0, "the sidecar exited %d" % code)

    def generations(self, backup, name):
        root = os.path.join(backup, self.COMPONENT[name], "generations")
        return sorted(os.listdir(root)) if os.path.isdir(root) else []

    def segments(self, backup, name):
        out = []
        for gen in self.generations(backup, name):
            folder = os.path.join(backup, self.COMPONENT[name], "generations", gen, "segments")
            if os.path.isdir(folder):
                out += [os.path.join(folder, leaf) for leaf in sorted(os.listdir(folder))]
        return out

    def attack_copy(self, label):
        """A copy of the replica to attack, and a config that reads it."""
        backup = os.path.join(self.dir, "attack-" + label)
        shutil.copytree(self.backup, backup)
        return backup, self.config_for(backup)

    def restore(self, config, name, label):
        out = os.path.join(self.dir, "restored-%s-%s.db" % (label, name.replace("/", "_")))
        return tidemark("restore", "-c", config, name, "-o", out, *self.read_args), out

    def check_exact(self, config, name, label):
        proc, out = self.restore(config, name, label)
        check(proc.returncode == 0 and "integrity:    ok" in proc.stdout,
              "%s (left alone) did not restore: %s %s" % (name, proc.stdout, proc.stderr))
        db = sqlite3.connect(out)
        rows = [r[0] for r in db.execute("SELECT payload FROM t ORDER BY id")]
        db.close()
        check(rows == self.rows(name), "%s restored %r, wrote %r" % (name, rows, self.rows(name)))

    def check_refused(self, config, victim, key, label, head=None):
        """restore and verify of `victim` refuse, naming the object `key`
        (restore may name the copied generation's head first, `head`: it
        reads the heads before any snapshot)."""
        expected = "object '%s' %s" % (key, REFUSAL)
        restore_names = [expected] + (["object '%s' %s" % (head, REFUSAL)] if head else [])
        proc, out = self.restore(config, victim, label)
        check(proc.returncode != 0, "%s [%s]: restore of %s succeeded with another database's data: %s"
              % (label, self.mode, victim, proc.stdout))
        check(any(name in proc.stderr for name in restore_names), "%s [%s]: restore of %s did not name %s: %s"
              % (label, self.mode, victim, " or ".join(restore_names), proc.stderr))
        check(not os.path.exists(out), "%s: a refused restore left %s" % (label, out))
        proc = tidemark("verify", "-c", config, victim, *self.read_args)
        check(proc.returncode != 0 and "PROBLEMS FOUND" in proc.stdout,
              "%s [%s]: verify %s said ok: %s" % (label, self.mode, victim, proc.stdout))
        check(expected in proc.stdout, "%s [%s]: verify %s did not name %s: %s"
              % (label, self.mode, victim, key, proc.stdout))

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def swap_generation(world, source, victim, label):
    """The victim's generations replaced by the source's newest one."""
    backup, config = world.attack_copy(label)
    gen = world.generations(backup, source)[-1]
    victim_root = os.path.join(backup, World.COMPONENT[victim], "generations")
    shutil.rmtree(victim_root)
    shutil.copytree(os.path.join(backup, World.COMPONENT[source], "generations", gen),
                    os.path.join(victim_root, gen))
    snapshot = sorted(os.listdir(os.path.join(victim_root, gen, "snapshots")))[0]
    key = "%s/generations/%s/snapshots/%s" % (World.COMPONENT[victim], gen, snapshot)
    head = "%s/generations/%s/head" % (World.COMPONENT[victim], gen)
    check(os.path.exists(os.path.join(victim_root, gen, "head")), "%s: the copied generation has no head" % label)
    world.check_refused(config, victim, key, label, head)
    world.check_exact(config, source, label)


def swap_segment(world, source, victim, label):
    """The victim's segment 1 replaced by the bytes of the source's."""
    backup, config = world.attack_copy(label)
    target = world.segments(backup, victim)[1]
    shutil.copyfile(world.segments(backup, source)[1], target)
    key = os.path.relpath(target, backup)
    world.check_refused(config, victim, key, label)
    world.check_exact(config, source, label)


def run_mode(mode):
    world = World(mode)
    try:
        world.build()
        swap_generation(world, "a", "b", "gen-dbs")
        swap_generation(world, "tenants/x.db", "tenants/y.db", "gen-tenants")
        swap_segment(world, "a", "b", "seg-dbs")
        swap_segment(world, "tenants/y.db", "tenants/x.db", "seg-tenants")
        # the untouched replica restores every database exactly
        for name in World.DBS:
            world.check_exact(world.config_for(world.backup), name, "untouched")
    finally:
        world.cleanup()

# ------------------------------------------------------------------ tests

def test_swaps_refused_with_the_symmetric_key():
    """A generation, then one segment, copied from database a to b, and
    between two tenants of one dir: entry: restore and verify refuse,
    naming the object; the source still restores exactly."""
    run_mode("key")


def test_swaps_refused_with_a_key_pair():
    """The same with a sidecar holding only the public key: whoever holds
    the secret key is sure each object was sealed for its place."""
    run_mode("pair")


def test_swaps_refused_without_encryption():
    """The same with encryption: none: nothing authenticates, but an
    object copied to another place by accident is refused."""
    run_mode("none")


def test_segment_swap_refused_through_s3_prefetch():
    """Restore from S3 reads segments from local copies (prefetched, named
    segment-N): each is still read as its key. One segment of a copied
    over b's, the replica uploaded to a bucket: restore and verify of b
    refuse naming the key; a restores exactly."""
    import test_s3
    test_s3.start_server()
    world = World("key")
    try:
        world.build()
        backup, _ = world.attack_copy("s3")
        target = world.segments(backup, "b")[1]
        shutil.copyfile(world.segments(backup, "a")[1], target)
        bucket = test_s3.new_bucket(versioning=False)
        test_s3.aws("s3", "cp", "--recursive", "--quiet", backup, "s3://%s/prod" % bucket)
        config = world.config_for(os.path.join(world.dir, "s3"), test_s3.s3_replica(bucket, prefix="prod"))
        world.check_refused(config, "b", os.path.relpath(target, backup), "s3")
        world.check_exact(config, "a", "s3")
    finally:
        world.cleanup()


def test_redis_swaps_refused():
    """Redis objects are bound too: two Redis servers followed by one
    sidecar (symmetric key); cache1's generation copied in place of
    cache2's, then one stream segment of cache1 over cache2's: restore
    and verify of cache2 refuse naming the object; cache1 restores and
    loads."""
    try:
        from test_redis import RedisServer
    except ImportError as e:
        raise Skip("no redis module: %s" % e)
    if not shutil.which("redis-server"):
        raise Skip("no redis-server")
    work = tempfile.mkdtemp(prefix="tidemark-it-identity-redis-")
    servers = []
    try:
        servers = [RedisServer(os.path.join(work, "server%d" % i), "--repl-diskless-sync-delay", "0") for i in (1, 2)]
        key = os.path.join(work, "key")
        subprocess.run([TIDEMARK, "keygen", "-o", key], check=True, stdout=subprocess.DEVNULL)
        backup = os.path.join(work, "backup")

        def config_for(root):
            path = os.path.join(work, "tidemark-%s.yml" % os.path.basename(root))
            with open(path, "w") as f:
                f.write("encryption:\n  key-file: %s\nstate-dir: %s/state\nredis:\n" % (key, work))
                for i, server in enumerate(servers, 1):
                    f.write("  - name: cache%d\n    addr: 127.0.0.1:%d\n    sync-interval: 100ms\n    replicas:\n"
                            "      - type: file\n        path: %s\n" % (i, server.port, root))
            return path

        def segments(root, name):
            out = []
            gens = os.path.join(root, name, "generations")
            for gen in sorted(os.listdir(gens)) if os.path.isdir(gens) else []:
                folder = os.path.join(gens, gen, "segments")
                out += [os.path.join(folder, leaf) for leaf in sorted(os.listdir(folder))] if os.path.isdir(folder) else []
            return out

        log_path = os.path.join(work, "replicate.log")
        log = open(log_path, "ab")
        proc = subprocess.Popen([TIDEMARK, "replicate", "-c", config_for(backup)], stdout=log, stderr=log)
        try:
            wait_until(lambda: open(log_path).read().count("RDB of") >= 2, 20, "both RDBs to be stored")
            for round_ in range(3):
                for i, server in enumerate(servers, 1):
                    server.client().set("cache%d-key-%d" % (i, round_), "value-%d" % round_)
                time.sleep(0.4)
            wait_until(lambda: all(len(segments(backup, "cache%d" % i)) >= 2 for i in (1, 2)), 15,
                       "both Redis archives to have segments")
        finally:
            proc.terminate()
            proc.wait(timeout=60)

        def refused(root, victim_key, label, head=None):
            config = config_for(root)
            out = os.path.join(work, "restored-" + label)
            run = tidemark("restore", "-c", config, "cache2", "-o", out)
            expected = "object '%s' %s" % (victim_key, REFUSAL)
            named = [expected] + (["object '%s' %s" % (head, REFUSAL)] if head else [])
            check(run.returncode != 0 and any(name in run.stderr for name in named),
                  "%s: restore of cache2 not refused naming %s: %s %s" % (label, victim_key, run.stdout, run.stderr))
            run = tidemark("verify", "-c", config, "cache2")
            check(run.returncode != 0 and expected in run.stdout, "%s: verify of cache2: %s" % (label, run.stdout))
            run = tidemark("restore", "-c", config, "cache1", "-o", os.path.join(work, "cache1-" + label))
            check(run.returncode == 0 and "loaded by redis-server" in run.stdout,
                  "%s: cache1 (left alone) did not restore: %s %s" % (label, run.stdout, run.stderr))

        # the generation
        root = os.path.join(work, "attack-gen")
        shutil.copytree(backup, root)
        gen = sorted(os.listdir(os.path.join(root, "cache1", "generations")))[-1]
        shutil.rmtree(os.path.join(root, "cache2", "generations"))
        shutil.copytree(os.path.join(root, "cache1", "generations", gen), os.path.join(root, "cache2", "generations", gen))
        snapshot = sorted(os.listdir(os.path.join(root, "cache2", "generations", gen, "snapshots")))[0]
        refused(root, "cache2/generations/%s/snapshots/%s" % (gen, snapshot), "gen",
                "cache2/generations/%s/head" % gen)
        # one stream segment
        root = os.path.join(work, "attack-seg")
        shutil.copytree(backup, root)
        target = segments(root, "cache2")[0]
        shutil.copyfile(segments(root, "cache1")[0], target)
        refused(root, os.path.relpath(target, root), "seg")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_archive_of_envelope_version_2_restores_and_is_noted():
    """An archive written by tidemark 0.9 (committed fixture, envelope
    version 2) restores exactly; verify passes it and says, for its
    generation, that its 4 objects predate the identity binding."""
    work = tempfile.mkdtemp(prefix="tidemark-it-identity-v2-")
    try:
        shutil.copytree(os.path.join(FIXTURE_V2, "backup"), os.path.join(work, "backup"))
        key = os.path.join(work, "key")
        shutil.copyfile(os.path.join(FIXTURE_V2, "key"), key)
        os.chmod(key, 0o600)
        config = os.path.join(work, "tidemark.yml")
        with open(config, "w") as f:
            f.write("encryption:\n  key-file: %s\ndbs:\n  - path: %s/app.db\n    name: app\n    replicas:\n"
                    "      - type: file\n        path: %s/backup\n" % (key, work, work))
        out = os.path.join(work, "restored.db")
        proc = tidemark("restore", "-c", config, "app", "-o", out)
        check(proc.returncode == 0 and "integrity:    ok" in proc.stdout, "v2 archive: %s %s" % (proc.stdout, proc.stderr))
        db = sqlite3.connect(out)
        rows = [r[0] for r in db.execute("SELECT payload FROM t ORDER BY id")]
        db.close()
        check(rows == ["row-%d" % i for i in range(1, 31)], "v2 archive restored %r" % rows)
        proc = tidemark("verify", "-c", config)
        check(proc.returncode == 0, "verify of the v2 archive failed: " + proc.stdout + proc.stderr)
        check("NOTE 20261130T094501212Z-12eaed92: 4 of its 4 object(s) predate the identity binding" in proc.stdout,
              "verify does not say the objects predate the binding: " + proc.stdout)
        proc = tidemark("verify", "-c", config, "--json")
        check('"objects_predating_binding": 4' in proc.stdout, "verify --json: " + proc.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_tests([test_swaps_refused_with_the_symmetric_key, test_swaps_refused_with_a_key_pair,
               test_swaps_refused_without_encryption, test_segment_swap_refused_through_s3_prefetch,
               test_redis_swaps_refused,
               test_archive_of_envelope_version_2_restores_and_is_noted]))
