#!/usr/bin/python3
"""Integration tests of monitoring: the /metrics and /healthz endpoint,
alerts to a webhook (a small HTTP receiver here records the calls) and to
a command, while a replica really fails (its directory path is blocked by
a file) and recovers. Nothing committed may be lost (ground truth).
Prints TAP.
"""
import http.server, json, os, shutil, signal, socket, subprocess, sys, threading, time, urllib.error, urllib.request

from helpers import *


class Receiver:
    """Records every POST body (parsed JSON) with the time it arrived."""
    def __init__(self):
        self.calls = []
        receiver = self
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.calls.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()
            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def states(self, alert):
        return [c["state"] for t, c in self.calls if c["alert"] == alert]

    def close(self):
        self.server.shutdown()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def health(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def two_replicas(env):
    env.bad = os.path.join(env.dir, "bad")
    return ("      - type: file\n        name: good\n        path: %s\n"
            "      - type: file\n        name: bad\n        path: %s\n" % (env.backup, env.bad))


def block_replica(env):
    """The replica's path for this database becomes a plain file: every
    upload to it fails (ENOTDIR), even for root."""
    os.rename(os.path.join(env.bad, "app"), os.path.join(env.bad, "app.moved"))
    with open(os.path.join(env.bad, "app"), "w") as f:
        f.write("in the way\n")


def unblock_replica(env):
    os.unlink(os.path.join(env.bad, "app"))
    os.rename(os.path.join(env.bad, "app.moved"), os.path.join(env.bad, "app"))


def segments_in(root):
    return sum(1 for d, _, files in os.walk(root) for f in files if f.endswith(".seg"))

# ------------------------------------------------------------------ tests

def test_failing_replica_alert_metrics_health_and_recovery():
    receiver = Receiver()
    port = free_port()
    env = Env("alerts")
    try:
        replicas = two_replicas(env)
        env.config = env.write_config("tidemark.yml", env.key, replicas=replicas)
        with open(env.config) as f:
            text = f.read()
        with open(env.config, "w") as f:
            f.write("metrics: { listen: 127.0.0.1:%d }\nalerts: { webhook: %s, failure-after: 2s, lag-threshold: 60s }\n"
                    % (port, receiver.url) + text)
        env.create_db()
        env.start()
        writer = subprocess.Popen([WRITER_PY, env.db, env.log, "--count", "700", "--delay-ms", "15"])
        time.sleep(1.0)
        status, body = health(port)
        check(status == 200 and body["status"] == "ok", "healthz before the failure: %r" % body)
        before = scrape(port)
        block_replica(env)
        blocked_at = time.time()
        wait_until(lambda: "firing" in receiver.states("replica_failing"), 60, "the replica_failing alert")
        delay = receiver.calls[[c["alert"] for t, c in receiver.calls].index("replica_failing")][0] - blocked_at
        print("# replica_failing alert %.1f s after the failure began (failure-after 2 s)" % delay)
        check(delay < 15, "the alert took %.1f s (failure-after is 2 s)" % delay)
        alert = [c for t, c in receiver.calls if c["alert"] == "replica_failing"][0]
        check(alert["db"] == "app" and alert["replica"] == "bad" and "FIRING" in alert["text"], "alert body: %r" % alert)
        time.sleep(2)
        during = scrape(port)
        lag_bad = during['tidemark_replica_lag_seconds{db="app",replica="bad"}']
        check(lag_bad > 1.5, "lag of the failing replica: %r" % lag_bad)
        check(during['tidemark_replica_lag_seconds{db="app",replica="good"}'] < 1.5, "the good replica lags too")
        check(during['tidemark_replica_queued_objects{db="app",replica="bad"}'] > 0, "nothing queued for the bad replica")
        check(during['tidemark_replica_failing{db="app",replica="bad"}'] == 1, "failing gauge not set")
        check(during['tidemark_replica_upload_failures_total{db="app",replica="bad"}'] > 0, "no failure counted")
        check(during['tidemark_shipped_bytes_total{db="app"}'] > before['tidemark_shipped_bytes_total{db="app"}'],
              "bytes shipped did not grow with the writes")
        check(during['tidemark_commits_shipped_total{db="app"}'] > before['tidemark_commits_shipped_total{db="app"}'],
              "commits shipped did not grow")
        status, body = health(port)
        check(status == 503 and body["problems"][0]["replica"] == "bad" and "failing for" in body["problems"][0]["reason"],
              "healthz during the failure: %d %r" % (status, body))
        check(receiver.states("replica_failing") == ["firing"], "repeated alerts: %r" % receiver.states("replica_failing"))
        unblock_replica(env)
        wait_until(lambda: "resolved" in receiver.states("replica_failing"), 90, "the resolved message")
        writer.wait(timeout=120)
        wait_until(lambda: scrape(port)['tidemark_replica_lag_seconds{db="app",replica="bad"}'] == 0, 30, "lag back to 0")
        status, body = health(port)
        check(status == 200, "healthz after recovery: %r" % body)
        check(receiver.states("replica_failing") == ["firing", "resolved"], "messages: %r" % receiver.states("replica_failing"))
        after = scrape(port)
        snap = [os.path.join(d, f) for d, _, fs in os.walk(env.backup) for f in fs if f.endswith(".snap")]
        check(after['tidemark_snapshot_last_bytes{db="app"}'] == os.path.getsize(snap[0]),
              "snapshot size metric %r, object %d" % (after['tidemark_snapshot_last_bytes{db="app"}'], os.path.getsize(snap[0])))
        env.stop()
        # nothing was lost on the replica that failed
        verify_timeline(env, points=6, extra=("--replica", "bad"))
        log = env.full_log()
        check("level=error db=app replica=bad" in log, "logfmt fields missing: " + log[-600:])
    finally:
        receiver.close()
        env.cleanup()


def test_failing_or_hanging_alert_command_does_not_stall_replication():
    env = Env("alertcmd")
    try:
        marker = os.path.join(env.dir, "paged")
        env.config = env.write_config("tidemark.yml", env.key, replicas=two_replicas(env))
        with open(env.config) as f:
            text = f.read()
        command = 'echo "$TIDEMARK_STATE $TIDEMARK_ALERT $TIDEMARK_DB $TIDEMARK_REPLICA" >> %s; sleep 600' % marker
        with open(env.config, "w") as f:
            f.write("alerts: { command: '%s', failure-after: 1s }\n" % command + text)
        env.create_db()
        env.start()
        os.makedirs(os.path.join(env.bad, "app"), exist_ok=True)
        block_replica(env)
        writer = subprocess.Popen([WRITER_PY, env.db, env.log, "--count", "400", "--delay-ms", "15"])
        wait_until(lambda: os.path.exists(marker), 30, "the alert command")
        with open(marker) as f:
            check(f.read().split() == ["firing", "replica_failing", "app", "bad"], "command environment")
        # the command hangs (sleep 600): shipping to the good replica goes on
        count = segments_in(env.backup)
        time.sleep(2)
        check(segments_in(env.backup) >= count + 5, "replication stalled while the alert command hangs")
        writer.wait(timeout=60)
        unblock_replica(env)
        time.sleep(1.5)
        started = time.time()
        env.stop()
        check(time.time() - started < 15, "stopping took %.1f s with a hanging alert command" % (time.time() - started))
        verify_timeline(env, points=4, extra=("--replica", "good"))
    finally:
        subprocess.run(["pkill", "-f", "sleep 600"], capture_output=True)
        env.cleanup()


def test_full_filesystem_alert_within_60s_with_defaults():
    """A file replica on a small filesystem that fills up (ENOSPC): with
    the default alert settings (failure-after 30 s) the alert reaches the
    webhook within 60 s, once; after space is freed, "resolved", and the
    replica has every commit. Needs to mount a tmpfs (root)."""
    receiver = Receiver()
    env = Env("enospc")
    small = os.path.join(env.dir, "small")
    os.makedirs(small)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small], capture_output=True).returncode != 0:
        receiver.close()
        env.cleanup()
        raise Skip("cannot mount a tmpfs here")
    try:
        replicas = ("      - type: file\n        name: good\n        path: %s\n"
                    "      - type: file\n        name: small\n        path: %s/backup\n" % (env.backup, small))
        env.config = env.write_config("tidemark.yml", env.key, replicas=replicas)
        with open(env.config) as f:
            text = f.read()
        with open(env.config, "w") as f:
            f.write("alerts: { webhook: %s }\n" % receiver.url + text)
        env.create_db()
        env.start()
        filler = os.path.join(small, "filler")
        subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=64k", "count=64"], capture_output=True)
        full_at = time.time()
        env.write_py(150, "--delay-ms", "10")
        wait_until(lambda: "firing" in receiver.states("replica_failing"), 75, "the alert")
        delay = [t for t, c in receiver.calls if c["alert"] == "replica_failing"][0] - full_at
        print("# the alert reached the receiver %.1f s after the disk filled (bound: 60 s)" % delay)
        check(delay <= 60, "the alert reached the receiver %.1f s after the disk filled" % delay)
        os.unlink(filler)
        wait_until(lambda: "resolved" in receiver.states("replica_failing"), 90, "resolved")
        check(receiver.states("replica_failing") == ["firing", "resolved"], "messages: %r" % receiver.states("replica_failing"))
        time.sleep(0.5)
        env.stop()
        verify_timeline(env, points=4, extra=("--replica", "small"))
    finally:
        receiver.close()
        if env.replicator:
            env.replicator.kill()
            env.replicator.wait()
        subprocess.run(["umount", small], capture_output=True)
        env.cleanup()


def test_verify_problem_raises_an_alert():
    env = Env("verifyalert")
    try:
        env.replicate_writes(60, "--delay-ms", "10")
        marker = os.path.join(env.dir, "paged")
        with open(env.config) as f:
            text = f.read()
        with open(env.config, "w") as f:
            f.write("alerts: { command: 'echo \"$TIDEMARK_STATE $TIDEMARK_ALERT $TIDEMARK_DB $TIDEMARK_REPLICA\" >> %s' }\n"
                    % marker + text)
        proc = subprocess.run([TIDEMARK, "verify", "-c", env.config], capture_output=True, text=True)
        check(proc.returncode == 0 and not os.path.exists(marker), "a clean verify alerted: " + proc.stdout)
        seg = sorted(os.path.join(d, f) for d, _, fs in os.walk(env.backup) for f in fs if f.endswith(".seg"))[0]
        with open(seg, "r+b") as f:
            f.seek(80); b = f.read(1); f.seek(80); f.write(bytes([b[0] ^ 1]))
        proc = subprocess.run([TIDEMARK, "verify", "-c", env.config], capture_output=True, text=True, timeout=60)
        check(proc.returncode == 1, "verify passed a corrupt archive")
        with open(marker) as f:
            check(f.read().split() == ["firing", "verify_failed", "app", "file"], "alert command not run as expected")
    finally:
        env.cleanup()


TESTS = [
    test_failing_replica_alert_metrics_health_and_recovery,
    test_failing_or_hanging_alert_command_does_not_stall_replication,
    test_verify_problem_raises_an_alert,
    test_full_filesystem_alert_within_60s_with_defaults,
]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
