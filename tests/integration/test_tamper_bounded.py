#!/usr/bin/python3
"""Adversarial tests of issue 18, findings 5 and 8: what someone who can
write to the bucket, or reach the metrics port, can make tidemark do.

 - a planted 200 MB lease and a 200 MB drill record: retention and list
   report them as corrupt (naming them) in a few MB, never reading them
   whole; restore is not disturbed;
 - a planted drill record that closes its JSON object and opens a forged
   database entry: `list --json` stays valid JSON with exactly the real
   database, its last_drill made of known fields only;
 - a database name with control characters under a `dir:` entry
   (%1B[2J%0A in the key): no raw control byte in `list`'s output;
 - metrics clients that connect and never read: the loop goes on shipping
   commits and /healthz answers another client at once; connections over
   the cap are closed and counted;
 - the alert command does not inherit the sidecar's AWS credentials.
Prints TAP. TIDEMARK_BIN runs another build (the code before the fix)."""
import json, os, shutil, socket, sqlite3, subprocess, threading, time, urllib.error, urllib.request

import helpers
from helpers import *

if os.environ.get("TIDEMARK_BIN"):
    helpers.TIDEMARK = TIDEMARK = os.environ["TIDEMARK_BIN"]

RSS_BOUND_KB = 64 * 1024 * MEMORY_SCALE   # retention, list, restore of a small archive take ~10-20 MB
PLANTED_BYTES = 200 * 1024 * 1024


def run_measured(*args, env=None):
    """Runs tidemark; returns (exit code, stdout, stderr, peak RSS in KB)
    of that process alone (wait4's rusage)."""
    proc = subprocess.Popen([TIDEMARK] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = [], []
    readers = [threading.Thread(target=lambda: out.append(proc.stdout.read())),
               threading.Thread(target=lambda: err.append(proc.stderr.read()))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out[0], err[0], usage.ru_maxrss


def plant(path, head, size):
    """A file of `size` bytes starting with `head` (sparse: no disk used)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)


def test_planted_huge_lease_and_drill_record_are_corrupt_in_bounded_memory():
    env = Env("bounded-lease")
    try:
        env.replicate_writes(50, "--delay-ms", "5")
        lease = os.path.join(env.backup, "app", "leases", "planted-1-1795324542000.lease")
        gens = os.listdir(os.path.join(env.backup, "app", "generations"))
        plant(lease, b"generation %s\nexpires 99999999999999\n" % gens[0].encode(), PLANTED_BYTES)
        code, out, err, rss = run_measured("retention", "-c", env.config, "--dry-run")
        print("# retention with a planted 200 MB lease: exit %d, peak RSS %d KB" % (code, rss))
        check(rss < RSS_BOUND_KB, "retention peaked at %d KB (bound %d KB)" % (rss, RSS_BOUND_KB))
        check(code != 0 and b"planted-1-1795324542000.lease" in err and b"corrupt" in err,
              "retention did not report the lease as corrupt: %r" % err[-500:])
        drill = os.path.join(env.backup, "app", "drills", "1795324542000-planted.json")
        plant(drill, b'{"time": "2026-11-24T04:00:01.234Z", "ok": true, "rto_ms": 1, "pad": "', PLANTED_BYTES)
        code, out, err, rss = run_measured("list", "-c", env.config)
        print("# list with a planted 200 MB drill record: exit %d, peak RSS %d KB" % (code, rss))
        check(rss < RSS_BOUND_KB, "list peaked at %d KB (bound %d KB)" % (rss, RSS_BOUND_KB))
        check(code != 0 and b"1795324542000-planted.json" in err and b"corrupt" in err,
              "list did not report the drill record as corrupt: %r" % err[-500:])
        output = os.path.join(env.dir, "restored.db")
        code, out, err, rss = run_measured("restore", "-c", env.config, "app", "-o", output)
        print("# restore beside them: exit %d, peak RSS %d KB" % (code, rss))
        check(code == 0, "restore failed: %r" % err[-500:])
        check(rss < RSS_BOUND_KB, "restore peaked at %d KB (bound %d KB)" % (rss, RSS_BOUND_KB))
        check(restored_ids(output) == 50, "restored rows differ")
    finally:
        env.cleanup()


def test_planted_drill_record_cannot_inject_json():
    env = Env("bounded-drill")
    try:
        env.replicate_writes(20, "--delay-ms", "5")
        forged = ('{"time": "2026-11-24T04:00:01.234Z", "ok": true, "rto_ms": 1, "db": "app"}}, '
                  '{"database": "forged", "replica": "evil", "generations": [], "last_drill": null')
        plant(os.path.join(env.backup, "app", "drills", "9999999999999-evil.json"), forged.encode(), len(forged))
        proc = subprocess.run([TIDEMARK, "list", "-c", env.config, "--json"], capture_output=True, text=True)
        check(proc.returncode == 0, "list --json failed: " + proc.stderr)
        try:
            records = json.loads(proc.stdout)
        except ValueError as e:
            raise Failure("list --json is not valid JSON (%s): %s" % (e, proc.stdout[-500:]))
        check([r["database"] for r in records] == ["app"], "databases listed: %r" % [r.get("database") for r in records])
        last = records[0]["last_drill"]
        check(last == {"time": "2026-11-24T04:00:01.234Z", "ok": True, "rto_ms": 1, "rpo_ms": None},
              "last_drill: %r" % last)
    finally:
        env.cleanup()


def test_control_characters_in_names_are_escaped_in_list():
    env = Env("bounded-names")
    try:
        tenants = os.path.join(env.dir, "tenants")
        os.makedirs(tenants)
        with open(env.config, "w") as f:
            f.write("encryption:\n  key-file: %s\ndbs:\n  - dir: %s\n    replicas:\n      - type: file\n"
                    "        path: %s\n" % (env.key, tenants, env.backup))
        # "tenants/<ESC>[2J<LF>database fake, replica x: 0 generation(s)" once unescaped
        planted = "tenants%2F%1B%5B2J%0Adatabase%20fake%2C%20replica%20x%3A%20ok%0D.db"
        os.makedirs(os.path.join(env.backup, planted, "generations"))
        proc = subprocess.run([TIDEMARK, "list", "-c", env.config], capture_output=True)
        out = proc.stdout + proc.stderr
        check(b"\\x1b[2J" in proc.stdout, "the planted name is not listed escaped: %r" % proc.stdout)
        raw = sorted(set(b for b in out if (b < 0x20 and b != 0x0a) or b == 0x7f))
        check(raw == [], "raw control bytes %r in list's output: %r" % (raw, out))
        fake = [l for l in proc.stdout.splitlines() if l.startswith(b"database fake")]
        check(fake == [], "a fake line in list's output: %r" % fake)
    finally:
        env.cleanup()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slow_reader(port, request=b"GET /metrics HTTP/1.0\r\n\r\n"):
    """A client that asks and never reads (a tiny receive buffer, so the
    answer cannot all be queued in the kernel)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.connect(("127.0.0.1", port))
    s.sendall(request)
    return s


def test_slow_metrics_readers_do_not_stall_the_loop():
    port = free_port()
    env = Env("bounded-metrics")
    try:
        # 600 tenants exported one by one: a /metrics document of ~2.5 MB,
        # more than the kernel queues for a client that does not read
        # (~1.7 MB here: tcp_wmem's 4 MB with its overhead)
        tenants = os.path.join(env.dir, "tenants", "s" * 40)
        os.makedirs(tenants)
        env.create_db()
        paths = [os.path.join(tenants, "t%03d-%s.db" % (i, "y" * 48)) for i in range(600)]
        for path in paths:
            shutil.copyfile(env.db, path)
        with open(env.config, "w") as f:
            f.write("encryption:\n  key-file: %s\nmetrics: { listen: 127.0.0.1:%d }\ndbs:\n  - dir: %s\n"
                    "    recursive: true\n    metrics-per-database: true\n    sync-interval: 200ms\n"
                    "    replicas:\n      - type: file\n        path: %s\n"
                    % (env.key, port, os.path.join(env.dir, "tenants"), env.backup))
        env.db = paths[0]
        env.start()
        wait_until(lambda: os.path.isdir(env.backup) and len(os.listdir(env.backup)) >= len(paths), 60,
                   "the first snapshot of every tenant")
        size = len(urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read())
        print("# /metrics is %d bytes" % size)
        check(size > 2000000, "the /metrics document is only %d bytes" % size)
        writer = subprocess.Popen([WRITER_PY, env.db, env.log, "--count", "800", "--delay-ms", "10"])
        wait_until(lambda: segments_of(env.backup) > 0, 30, "the first segment")
        backup = env.backup   # only the first tenant is written to: its segments
        slow, stop = [], threading.Event()
        def open_slow_readers():   # one more every 0.75 s for 6 s
            while not stop.is_set() and len(slow) < 8:
                slow.append(slow_reader(port))
                stop.wait(0.75)
        opener = threading.Thread(target=open_slow_readers)
        shipped_before = segments_of(backup)
        opener.start()
        latencies, started = [], time.time()
        while time.time() - started < 6:
            t0 = time.time()
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=10) as r:
                    r.read()
            except urllib.error.HTTPError as e:
                e.read()
            except OSError as e:   # reset: not answered
                raise Failure("/healthz was not answered (%s) after %.2f s with slow readers connected"
                              % (e, time.time() - t0))
            latencies.append(time.time() - t0)
            time.sleep(0.2)
        shipped = segments_of(backup) - shipped_before
        stop.set()
        opener.join()
        print("# %d slow readers; /healthz answered in at most %.2f s; %d segments shipped in 6 s"
              % (len(slow), max(latencies), shipped))
        # (rendering 2.6 MB for each reader takes the loop ~0.1 s; before,
        # each reader that did not read held it for 2 s)
        check(max(latencies) < 1.5, "/healthz took %.2f s with slow readers connected" % max(latencies))
        check(shipped >= 10, "only %d segments shipped in 6 s with slow readers connected" % shipped)
        for s in slow:
            s.close()
        # the cap: connections beyond it are closed at once, and counted
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
        time.sleep(0.5)
        for s in idle:
            s.close()
        time.sleep(0.5)
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
        refused = [float(l.split()[1]) for l in text.splitlines()
                   if l.startswith("tidemark_metrics_connections_refused_total ")]
        check(refused and refused[0] >= 60 - 32, "connections over the cap not counted: %r" % refused)
        writer.wait(timeout=60)
        env.stop()
    finally:
        env.cleanup()


def segments_of(root):
    return sum(1 for d, _, files in os.walk(root) for f in files if f.endswith(".seg"))


def test_alert_command_gets_no_credentials():
    env = Env("bounded-alert")
    try:
        marker = os.path.join(env.dir, "alert-env")
        bad = os.path.join(env.dir, "bad")
        with open(env.config, "w") as f:
            f.write("encryption:\n  key-file: %s\nalerts: { command: 'env > %s.tmp; mv %s.tmp %s', failure-after: 1s }\n"
                    "dbs:\n  - path: %s\n    sync-interval: 200ms\n    replicas:\n      - type: file\n"
                    "        path: %s\n" % (env.key, marker, marker, marker, env.db, bad))
        env.create_db()
        os.makedirs(bad)
        with open(os.path.join(bad, "app"), "w") as f:   # every upload fails (ENOTDIR)
            f.write("in the way\n")
        secrets = dict(os.environ, AWS_SECRET_ACCESS_KEY="canary-secret-4f2a", AWS_ACCESS_KEY_ID="AKIACANARY",
                       AWS_SESSION_TOKEN="canary-token", UNRELATED_SETTING="canary-other")
        env.replicator = subprocess.Popen([TIDEMARK, "replicate", "-c", env.config, "-v"], env=secrets,
                                          stdout=env.replicator_log, stderr=env.replicator_log)
        env.write_py(20, "--delay-ms", "10")
        wait_until(lambda: os.path.exists(marker), 30, "the alert command")
        with open(marker) as f:
            seen = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
        check("canary" not in repr(seen) and not any(k.startswith("AWS_") for k in seen),
              "the alert command got the sidecar's secrets: %r" % sorted(seen))
        check(seen.get("TIDEMARK_ALERT") == "replica_failing" and seen.get("TIDEMARK_DB") == "app"
              and seen.get("PATH"), "the alert command's environment: %r" % seen)
        extra = set(seen) - {"PATH", "HOME", "PWD", "SHLVL", "_", "OLDPWD"} - {k for k in seen if k.startswith("TIDEMARK_")}
        check(not extra, "the alert command inherited %r" % sorted(extra))
        env.stop()
    finally:
        env.cleanup()


if __name__ == "__main__":
    raise SystemExit(run_tests([
        test_planted_huge_lease_and_drill_record_are_corrupt_in_bounded_memory,
        test_planted_drill_record_cannot_inject_json,
        test_control_characters_in_names_are_escaped_in_list,
        test_slow_metrics_readers_do_not_stall_the_loop,
        test_alert_command_gets_no_credentials,
    ]))
