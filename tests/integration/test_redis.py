#!/usr/bin/python3
"""Integration tests of Redis backups against Debian's real redis-server
on private ports: the sidecar captures through the replication protocol;
restores at chosen seconds are loaded into a fresh redis-server and every
key, value and TTL presence is compared with the writer's ground truth
(the model of every operation it made, in order, with the wall time of
its request and of its reply). Prints TAP.
"""
import os, random, shutil, signal, socket, subprocess, sys, tempfile, time

import redis

from helpers import TIDEMARK, SLACK_MS, MEMORY_SCALE, Failure, check, iso, run_tests, wait_until

DBS = 4


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_ms():
    return int(time.time() * 1000)


class RedisServer:
    """A redis-server of its own on a private port and directory."""
    def __init__(self, directory, *options, port=None):
        self.dir = directory
        self.port = port or free_port()
        os.makedirs(directory, exist_ok=True)
        self.log = open(os.path.join(directory, "redis.log"), "ab")
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", directory, "--save", "", "--daemonize", "no"] + list(options),
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        while True:
            try:
                redis.Redis(port=self.port, password=self.password_of(options)).ping()
                break
            except redis.exceptions.AuthenticationError:
                break
            except redis.exceptions.ConnectionError:
                if time.time() > deadline:
                    raise Failure("redis-server did not start: %s" % open(os.path.join(directory, "redis.log")).read())
                time.sleep(0.05)

    @staticmethod
    def password_of(options):
        options = list(options)
        return options[options.index("--requirepass") + 1] if "--requirepass" in options else None

    def client(self, db=0, **kw):
        return redis.Redis(port=self.port, db=db, decode_responses=True, **kw)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def read_state(port, password=None):
    """{db: {key: (value, has_ttl)}} of a running server (string keys only)."""
    state = {}
    for db in range(DBS):
        c = redis.Redis(port=port, db=db, decode_responses=True, password=password)
        state[db] = {k: (c.get(k), c.ttl(k) > 0) for k in c.keys("*")}
    return state


class Env:
    def __init__(self, name, server_options=(), redis_extra=""):
        self.dir = tempfile.mkdtemp(prefix="tidemark-redis-%s-" % name)
        self.server = RedisServer(os.path.join(self.dir, "server"), *server_options)
        self.key = os.path.join(self.dir, "key")
        subprocess.run([TIDEMARK, "keygen", "-o", self.key], check=True, stdout=subprocess.DEVNULL)
        self.config = self.write_config(redis_extra)
        self.sidecar = None
        self.sidecar_log = os.path.join(self.dir, "sidecar.log")
        self.ops = []            # (t_send, t_reply, op)

    def write_config(self, redis_extra, name="tidemark.yml"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("encryption:\n  key-file: %s\nstate-dir: %s/state\nredis:\n  - name: cache\n"
                    "    addr: 127.0.0.1:%d\n    sync-interval: 200ms\n%s    replicas:\n      - type: file\n"
                    "        path: %s/backup\n" % (self.key, self.dir, self.server.port, redis_extra, self.dir))
        return path

    def start(self, config=None):
        log = open(self.sidecar_log, "ab")
        self.sidecar = subprocess.Popen([TIDEMARK, "replicate", "-c", config or self.config, "-v"],
                                        stdout=log, stderr=log)

    def log_text(self):
        with open(self.sidecar_log, errors="replace") as f:
            return f.read()

    def wait_streaming(self, count=1):
        wait_until(lambda: self.log_text().count("continuing the replication stream") +
                   self.log_text().count("RDB of") >= count, 30, "the sidecar to follow the stream:\n" + self.log_text()[-1500:])

    def stop(self, sig=signal.SIGTERM):
        self.sidecar.send_signal(sig)
        code = self.sidecar.wait(timeout=30)
        if sig == signal.SIGTERM:
            check(code == 0, "sidecar exited %d: %s" % (code, self.log_text()[-2000:]))

    def write(self, count, seed, pause=0.003):
        """Random operations over DBS databases, logged in order."""
        rng = random.Random(seed)
        clients = [self.server.client(db) for db in range(DBS)]
        for n in range(count):
            db = rng.randrange(DBS)
            c = clients[db]
            key = "k%d" % rng.randrange(40)
            kind = rng.random()
            t_send = now_ms()
            if kind < 0.35:
                value = "v%d-%d" % (seed, n)
                ttl = 3600 if rng.random() < 0.3 else None
                c.set(key, value, ex=ttl)
                op = ("set", db, key, value, ttl is not None)
            elif kind < 0.55:
                key = "n%d" % rng.randrange(10)
                c.incr(key)
                op = ("incr", db, key)
            elif kind < 0.7:
                c.delete(key)
                op = ("del", db, key)
            elif kind < 0.8:
                c.expire(key, 3600)
                op = ("expire", db, key)
            else:
                a, b = "m%d" % rng.randrange(5), "n%d" % rng.randrange(10)
                value = "x%d-%d" % (seed, n)
                pipe = c.pipeline(transaction=True)
                pipe.set(a, value)
                pipe.incr(b)
                pipe.execute()
                op = ("multi", db, [("set", db, a, value, False), ("incr", db, b)])
            self.ops.append((t_send, now_ms(), op))
            time.sleep(pause)

    def cleanup(self):
        if self.sidecar and self.sidecar.poll() is None:
            self.sidecar.kill()
            self.sidecar.wait()
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def apply(state, op):
    kind, db = op[0], op[1]
    keys = state.setdefault(db, {})
    if kind == "set":
        keys[op[2]] = (op[3], op[4])
    elif kind == "incr":
        value, ttl = keys.get(op[2], ("0", False))
        keys[op[2]] = (str(int(value) + 1), ttl)
    elif kind == "del":
        keys.pop(op[2], None)
    elif kind == "expire":
        if op[2] in keys:
            keys[op[2]] = (keys[op[2]][0], True)
    elif kind == "multi":
        for inner in op[2]:
            apply(state, inner)


def model_after(base, ops, count):
    state = {db: dict(keys) for db, keys in base.items()}
    for _, _, op in ops[:count]:
        apply(state, op)
    return {db: state.get(db, {}) for db in range(DBS)}


def load_and_read(env, output, rdb):
    """Starts a redis-server on a restore's output; its state."""
    options = ["--dbfilename", "dump.rdb"] if rdb else ["--appendonly", "yes"]
    server = RedisServer(output, *options)
    try:
        return read_state(server.port)
    finally:
        server.stop()


def check_restore_at(env, base, target_ms, rdb=False, extra=()):
    """Restores at target_ms; the state must equal the model after k
    operations, every operation answered SLACK_MS before the target
    included and none sent after it."""
    output = os.path.join(env.dir, "restored-%d" % time.monotonic_ns())
    args = [TIDEMARK, "restore", "-c", env.config, "cache", "-o", output] + list(extra)
    if target_ms is not None:
        args += ["--timestamp", iso(target_ms)]
    if rdb:
        args += ["--format", "rdb"]
    proc = subprocess.run(args, capture_output=True, text=True)
    check(proc.returncode == 0, "restore at %s failed: %s" % (target_ms and iso(target_ms), proc.stderr))
    check("loaded by redis-server" in proc.stdout, "restore output: " + proc.stdout)
    got = load_and_read(env, output, rdb)
    if target_ms is None:
        low = high = len(env.ops)
    else:
        low = sum(1 for t_send, t_reply, _ in env.ops if t_reply <= target_ms - SLACK_MS)
        high = sum(1 for t_send, t_reply, _ in env.ops if t_send <= target_ms)
    for count in range(low, high + 1):
        if model_after(base, env.ops, count) == got:
            shutil.rmtree(output, ignore_errors=True)
            return count
    raise Failure("restore at %s matches the model after none of operations %d..%d (%d keys restored)"
                  % (iso(target_ms) if target_ms else "latest", low, high, sum(len(v) for v in got.values())))


def timeline(env, base, points, rdb_every=3):
    first = min(t for t, _, _ in env.ops)
    last = max(t for _, t, _ in env.ops)
    counts = []
    for n in range(points):
        target = first + (last - first) * n // (points - 1)
        counts.append(check_restore_at(env, base, target, rdb=(n % rdb_every == 0)))
    counts.append(check_restore_at(env, base, None))
    return counts


def seen_back(env, first):
    """Operations made while the sidecar was down count from when it saw
    them again (the resent stream, or the new RDB): a restore before that
    may or may not hold them."""
    back = now_ms()
    env.ops[first:] = [(t_send, max(t_reply, back), op) for t_send, t_reply, op in env.ops[first:]]


# ------------------------------------------------------------------ tests

def test_point_in_time_restores_match_the_ground_truth():
    """SET (with and without TTL), INCR, DEL, EXPIRE over 4 databases and
    MULTI/EXEC blocks; restores at 8 seconds and the latest, as
    appendonlydir/ and as dump.rdb, each equal to the model at that
    point (a MULTI block all or nothing)."""
    env = Env("pitr", server_options=("--repl-diskless-sync-delay", "0"))
    try:
        env.server.client(0).set("before", "the snapshot")
        base = {0: {"before": ("the snapshot", False)}}
        env.start()
        env.wait_streaming()
        env.write(900, seed=1)
        # the sidecar acknowledges what it received (REPLCONF ACK, GETACK):
        # WAIT counts it as a replica that has every write
        acked = env.server.client(0).execute_command("WAIT", 1, 3000)
        check(acked == 1, "WAIT 1 returned %r: the sidecar did not acknowledge the stream" % acked)
        time.sleep(0.5)
        env.stop()
        counts = timeline(env, base, points=8)
        check(counts[0] < counts[-2] and counts[-1] == len(env.ops), "restores did not span the writes: %r" % counts)
        print("# %d operations; restores matched the model after %r operations" % (len(env.ops), counts))
        proc = subprocess.run([TIDEMARK, "verify", "-c", env.config, "--deep"], capture_output=True, text=True)
        check(proc.returncode == 0 and "newest point restored" in proc.stdout, "verify: " + proc.stdout + proc.stderr)
        proc = subprocess.run([TIDEMARK, "drill", "-c", env.config, "cache", "--json"], capture_output=True, text=True,
                              env=dict(os.environ, TMPDIR=env.dir))
        check(proc.returncode == 0 and '"ok": true' in proc.stdout, "drill: " + proc.stdout + proc.stderr)
        # a damaged segment is found by verify
        seg_dir = os.path.join(env.dir, "backup", "cache", "generations")
        gen = os.listdir(seg_dir)[0]
        victim = sorted(os.listdir(os.path.join(seg_dir, gen, "segments")))[2]
        path = os.path.join(seg_dir, gen, "segments", victim)
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0x10
        open(path, "wb").write(data)
        proc = subprocess.run([TIDEMARK, "verify", "-c", env.config], capture_output=True, text=True)
        check(proc.returncode == 1 and victim in proc.stdout, "verify missed a damaged segment: " + proc.stdout)
        proc = subprocess.run([TIDEMARK, "list", "-c", env.config], capture_output=True, text=True)
        check(proc.returncode == 0 and "cache" in proc.stdout, "list: " + proc.stdout + proc.stderr)
        # a restore into a directory that is not empty is refused, nothing touched
        busy = os.path.join(env.dir, "busy")
        os.makedirs(busy)
        open(os.path.join(busy, "dump.rdb"), "w").write("mine")
        proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "cache", "-o", busy], capture_output=True, text=True)
        check(proc.returncode == 1 and "is not empty" in proc.stderr and open(os.path.join(busy, "dump.rdb")).read() == "mine",
              "non-empty output: " + proc.stderr)
    finally:
        env.cleanup()


def test_kill9_partial_resync_and_forced_full_resync():
    """kill -9 of the sidecar mid-writes: on restart it continues the same
    generation (PSYNC +CONTINUE), no gap. Then, with a tiny backlog and
    many writes while it is down, the master forces a full resync: a new
    generation begins. Restores on both sides of each boundary are exact."""
    # disk-based full syncs: the RDB comes as "$<length>" (the other tests
    # use the diskless "$EOF:<mark>" form)
    env = Env("resync", server_options=("--repl-diskless-sync", "no", "--repl-backlog-size", "16kb"))
    try:
        base = {}
        env.start()
        env.wait_streaming()
        env.write(150, seed=2)
        env.stop(signal.SIGKILL)
        down_from = len(env.ops)
        env.write(20, seed=3)            # while the sidecar is down: within the backlog
        env.start()
        env.wait_streaming(2)
        seen_back(env, down_from)
        env.write(150, seed=4)
        check("continuing the replication stream" in env.log_text(), "no partial resync: " + env.log_text()[-1500:])
        env.stop()
        down_from = len(env.ops)
        for i in range(300):             # ~40 KB while it is down: beyond the 16 KB backlog
            env.server.client(i % DBS).set("bulk%d" % i, "x" * 120)
            env.ops.append((now_ms(), now_ms(), ("set", i % DBS, "bulk%d" % i, "x" * 120, False)))
        env.start()
        wait_until(lambda: env.log_text().count("full resynchronisation") >= 2, 30,
                   "a forced full resync:\n" + env.log_text()[-1500:])
        env.wait_streaming(3)
        seen_back(env, down_from)
        env.write(150, seed=5)
        time.sleep(0.5)
        env.stop()
        gens = os.listdir(os.path.join(env.dir, "backup", "cache", "generations"))
        check(len(gens) == 2, "expected 2 generations, found %r" % gens)
        counts = timeline(env, base, points=10)
        print("# generations %d; restores matched the model after %r operations" % (len(gens), counts))
    finally:
        env.cleanup()


def test_scheduled_snapshots_leave_no_gap():
    """Snapshots every 2 s while a writer runs, on a master that waits 1 s
    before forking (repl-diskless-sync-delay): each is a new generation
    from a second connection while the first keeps streaming, so the
    previous generation reaches past the new snapshot. Restores at 14
    seconds, including those around each switch, are exact."""
    env = Env("schedule", server_options=("--repl-diskless-sync-delay", "1"),
              redis_extra="    snapshot-interval: 2s\n")
    try:
        base = {}
        env.start()
        env.wait_streaming()
        env.write(1600, seed=6)
        time.sleep(0.5)
        env.stop()
        gens = os.listdir(os.path.join(env.dir, "backup", "cache", "generations"))
        check(len(gens) >= 3, "expected several generations from the schedule, found %d: %s" % (len(gens), env.log_text()[-1500:]))
        check("scheduled snapshot in place" in env.log_text(), "no switch logged: " + env.log_text()[-1500:])
        counts = timeline(env, base, points=14)
        # around each new snapshot: just before it (the previous generation)
        # and just after (the new one)
        gen_root = os.path.join(env.dir, "backup", "cache", "generations")
        for gen in sorted(gens)[1:]:
            snap = os.listdir(os.path.join(gen_root, gen, "snapshots"))[0]
            taken = int(snap.split("-")[1].split(".")[0])
            for delta in (-700, -300, -50, 50, 300):
                counts.append(check_restore_at(env, base, taken + delta))
        print("# %d generations; restores matched the model after %r operations" % (len(gens), counts))
    finally:
        env.cleanup()


def test_kill9_during_a_scheduled_snapshot():
    """The sidecar is killed -9 while a scheduled snapshot's second
    connection waits for its RDB (the master delays the fork 2 s): on
    restart it continues the current generation, the half-made snapshot is
    dropped from the spool, the next schedule makes one, and every restore
    is exact."""
    env = Env("killsnap", server_options=("--repl-diskless-sync-delay", "2"),
              redis_extra="    snapshot-interval: 3s\n")
    try:
        base = {}
        env.start()
        env.wait_streaming()
        env.write(400, seed=7)           # ~1.5 s
        wait_until(lambda: "a second connection" in env.log_text(), 10, "the scheduled snapshot to start")
        env.write(100, seed=8)
        env.stop(signal.SIGKILL)
        down_from = len(env.ops)
        env.write(50, seed=9)
        env.start()
        wait_until(lambda: env.log_text().count("continuing the replication stream") >= 1, 30,
                   "a partial resync after the kill:\n" + env.log_text()[-1500:])
        seen_back(env, down_from)
        env.write(900, seed=10)          # long enough for the next scheduled snapshot
        wait_until(lambda: "scheduled snapshot in place" in env.log_text(), 30, "a scheduled snapshot:\n" + env.log_text()[-1500:])
        env.write(100, seed=11)
        time.sleep(0.5)
        env.stop()
        incoming = os.path.join(env.dir, "state", "cache", "incoming")
        check(not os.listdir(incoming), "objects left in the spool's incoming/: %r" % os.listdir(incoming))
        counts = timeline(env, base, points=10)
        proc = subprocess.run([TIDEMARK, "verify", "-c", env.config], capture_output=True, text=True)
        check(proc.returncode == 0, "verify: " + proc.stdout)
        print("# restores matched the model after %r operations" % counts)
    finally:
        env.cleanup()


def test_missed_snapshot_is_taken_at_start():
    """The 6-hourly snapshot came due while the sidecar was down: at start
    it asks for a full resynchronisation (a new generation) instead of
    continuing, and restores on both sides are exact."""
    env = Env("missed", server_options=("--repl-diskless-sync-delay", "0"))
    try:
        base = {}
        env.start()
        env.wait_streaming()
        env.write(100, seed=12)
        time.sleep(0.4)
        env.stop()
        position = os.path.join(env.dir, "state", "cache", "position")
        with open(position) as f:
            text = f.read()
        seven_hours_ago = now_ms() - 7 * 3600 * 1000
        with open(position, "w") as f:
            f.write("".join("last-snapshot %d\n" % seven_hours_ago if line.startswith("last-snapshot ") else line
                            for line in text.splitlines(True)))
        env.start()
        wait_until(lambda: "was missed while the sidecar was down" in env.log_text() and
                   env.log_text().count("RDB of") >= 2, 30, "the missed snapshot:\n" + env.log_text()[-1500:])
        env.write(100, seed=13)
        time.sleep(0.4)
        env.stop()
        gens = os.listdir(os.path.join(env.dir, "backup", "cache", "generations"))
        check(len(gens) == 2, "expected a second generation, found %r" % gens)
        timeline(env, base, points=6)
    finally:
        env.cleanup()


def test_auth_password_and_acl_user():
    """requirepass with a password; an ACL user with just the replication
    commands; wrong credentials, a user without the permission and a
    refused connection are each reported clearly, and retried."""
    env = Env("auth", server_options=("--requirepass", "s3cret", "--repl-diskless-sync-delay", "0"))
    try:
        admin = env.server.client(0, password="s3cret")
        admin.execute_command("ACL", "SETUSER", "backup", "on", ">bpass", "+psync", "+replconf", "+ping", "allkeys")
        admin.execute_command("ACL", "SETUSER", "weak", "on", ">wpass", "+ping", "allkeys")
        cases = [
            ("    password: wrong\n", "rejected the credentials"),
            ("", "requires a password"),
            ("    username: weak\n    password: wpass\n", "may not run"),
        ]
        # a server that refuses replication (as managed services do)
        refusing = RedisServer(os.path.join(env.dir, "refusing"), "--rename-command", "PSYNC", "")
        try:
            config = os.path.join(env.dir, "refusing.yml")
            with open(env.config) as f:
                text = f.read().replace("127.0.0.1:%d" % env.server.port, "127.0.0.1:%d" % refusing.port)
            with open(config, "w") as f:
                f.write(text)
            env.start(config)
            wait_until(lambda: "refuses replication" in env.log_text(), 15, "'refuses replication':\n" + env.log_text()[-1500:])
            env.stop()
        finally:
            refusing.stop()
        for extra, message in cases:
            config = env.write_config(extra, name="bad.yml")
            env.start(config)
            wait_until(lambda: message in env.log_text(), 15, "'%s' in the log:\n%s" % (message, env.log_text()[-1500:]))
            check("s3cret" not in env.log_text() and "wpass" not in env.log_text(), "a password reached the log")
            env.stop()
        for extra in ("    password: s3cret\n", "    username: backup\n    password: bpass\n"):
            open(env.sidecar_log, "w").close()
            shutil.rmtree(os.path.join(env.dir, "state"), ignore_errors=True)
            shutil.rmtree(os.path.join(env.dir, "backup"), ignore_errors=True)
            env.config = env.write_config(extra)
            env.ops = []
            base = read_state(env.server.port, password="s3cret")
            env.start()
            env.wait_streaming()
            env.server.client(1, password="s3cret").set("auth", extra.strip())
            env.ops.append((now_ms(), now_ms(), ("set", 1, "auth", extra.strip(), False)))
            time.sleep(0.6)
            env.stop()
            check_restore_at(env, base, None)
        # nothing listening: logged, alerted (capture_failing), unhealthy;
        # resolved once a Redis answers on that address again
        env.server.stop()
        open(env.sidecar_log, "w").close()
        alerts = os.path.join(env.dir, "alerts.txt")
        metrics_port = free_port()
        config = env.write_config("    password: s3cret\n", name="alerting.yml")
        with open(config, "a") as f:
            f.write("metrics: { listen: 127.0.0.1:%d }\nalerts:\n  command: 'echo $TIDEMARK_ALERT $TIDEMARK_STATE >> %s'\n"
                    "  failure-after: 1s\n" % (metrics_port, alerts))
        env.start(config)
        wait_until(lambda: "Connection refused" in env.log_text(), 15, "connection refused in the log:\n" + env.log_text())
        wait_until(lambda: os.path.exists(alerts) and "capture_failing firing" in open(alerts).read(), 15,
                   "a capture_failing alert")
        import urllib.request, urllib.error
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/healthz" % metrics_port)
            raise Failure("/healthz said ok while Redis is unreachable")
        except urllib.error.HTTPError as e:
            check(e.code == 503 and b"Connection refused" in e.read(), "healthz: %d" % e.code)
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % metrics_port).read().decode()
        check('tidemark_capture_up{db="cache"} 0' in text, "capture_up metric: " + text[:500])
        env.server = RedisServer(os.path.join(env.dir, "server"), "--requirepass", "s3cret", port=env.server.port)
        wait_until(lambda: "capture_failing resolved" in open(alerts).read(), 40, "the alert to resolve:\n" + env.log_text()[-1500:])
        env.stop()
    finally:
        env.cleanup()


def test_a_million_keys_with_small_memory():
    """DEBUG POPULATE 1,000,000 keys: the RDB streams through the sidecar
    (peak RSS reported, bounded well below the data set) and the restore
    loads with every key."""
    env = Env("million", server_options=("--enable-debug-command", "yes", "--repl-diskless-sync-delay", "0"))
    try:
        env.server.client(0).execute_command("DEBUG", "POPULATE", "1000000", "key", "64")
        used = int(env.server.client(0).info("memory")["used_memory"])
        expected = env.server.client(0).get("key:123456")
        env.start()
        wait_until(lambda: "RDB of" in env.log_text(), 120, "the RDB:\n" + env.log_text()[-1500:])
        peak_kib = 0
        with open("/proc/%d/status" % env.sidecar.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak_kib = int(line.split()[1])
        env.stop()
        output = os.path.join(env.dir, "restored")
        started = time.time()
        proc = subprocess.run([TIDEMARK, "restore", "-c", env.config, "cache", "-o", output, "--format", "rdb"],
                              capture_output=True, text=True)
        seconds = time.time() - started
        check(proc.returncode == 0, "restore failed: " + proc.stderr)
        server = RedisServer(output, "--dbfilename", "dump.rdb")
        try:
            keys = server.client(0).dbsize()
            sample = server.client(0).get("key:123456")
        finally:
            server.stop()
        check(keys == 1000000 and sample == expected and sample.startswith("value:123456"),
              "restored %d keys, key:123456 = %r" % (keys, sample))
        check(peak_kib < 32 * 1024 * MEMORY_SCALE, "sidecar peak RSS %d KiB for a %d MB data set" % (peak_kib, used // 1000000))
        print("# 1,000,000 keys (%d MB in Redis): sidecar peak RSS %.1f MiB; restore + load %.1f s"
              % (used // 1000000, peak_kib / 1024.0, seconds))
    finally:
        env.cleanup()


TESTS = [
    test_point_in_time_restores_match_the_ground_truth,
    test_kill9_partial_resync_and_forced_full_resync,
    test_scheduled_snapshots_leave_no_gap,
    test_kill9_during_a_scheduled_snapshot,
    test_missed_snapshot_is_taken_at_start,
    test_auth_password_and_acl_user,
    test_a_million_keys_with_small_memory,
]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
