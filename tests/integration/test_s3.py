#!/usr/bin/python3
"""Integration tests of S3 replicas against a real S3-compatible server
(OpenStack Swift + s3api on 127.0.0.1, started here by tests/s3/
swift_server.py; it checks SigV4 signatures and payload hashes), with
awscli (/usr/bin/aws) as an independent client. Every restore is checked
against the writer's ground-truth log (helpers.py). Prints TAP.
"""
import atexit, hashlib, json, os, shutil, signal, sqlite3, subprocess, sys, time

from helpers import *

SERVER = os.path.join(ROOT, "tests", "s3", "swift_server.py")
S3_DIR = os.path.join(ROOT, "tests", "tmp", "s3-%d" % os.getpid())
ACCESS_KEY, SECRET_KEY = "test:tester", "testing"
ENDPOINT = None
bucket_counter = [0]


def start_server():
    global ENDPOINT
    proc = subprocess.run(["/usr/bin/python3", SERVER, "start", S3_DIR], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit("cannot start the S3 server: " + proc.stderr)
    ENDPOINT = proc.stdout.strip()
    def stop_server():
        subprocess.run(["/usr/bin/python3", SERVER, "stop", S3_DIR])
        shutil.rmtree(S3_DIR, ignore_errors=True)
    atexit.register(stop_server)
    with open(os.path.join(S3_DIR, "aws-config"), "w") as f:
        f.write("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")


def server(action):
    subprocess.run(["/usr/bin/python3", SERVER, action, S3_DIR], check=True)


def aws(*args, check_rc=True):
    env = dict(os.environ, AWS_CONFIG_FILE=os.path.join(S3_DIR, "aws-config"),
               AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent")
    proc = subprocess.run(["/usr/bin/aws", "--endpoint-url", ENDPOINT] + list(args),
                          capture_output=True, text=True, env=env)
    if check_rc:
        check(proc.returncode == 0, "aws %s failed: %s" % (" ".join(args), proc.stderr))
    return proc


def new_bucket(versioning=True):
    bucket_counter[0] += 1
    name = "tidemark-%d-%d" % (os.getpid(), bucket_counter[0])
    aws("s3api", "create-bucket", "--bucket", name)
    if versioning:
        aws("s3api", "put-bucket-versioning", "--bucket", name, "--versioning-configuration", "Status=Enabled")
    return name


def s3_replica(bucket, name="s3", prefix="prod/app", secret=SECRET_KEY, extra=""):
    return ("      - type: s3\n        name: %s\n        bucket: %s\n        path: %s\n"
            "        endpoint: %s\n        force-path-style: true\n        access-key-id: %s\n"
            "        secret-access-key: %s\n%s" % (name, bucket, prefix, ENDPOINT, ACCESS_KEY, secret, extra))


def file_and_s3(env_name, bucket, extra_db="", **kw):
    env = Env(env_name, extra_db=extra_db, **kw)
    env.replicas = "      - type: file\n        path: %s\n" % env.backup + s3_replica(bucket)
    env.config = env.write_config("tidemark.yml", env.key, extra_db=extra_db)
    return env


def s3_keys(bucket, prefix):
    proc = aws("s3", "ls", "--recursive", "s3://%s/%s/" % (bucket, prefix))
    keys = [line.split(None, 3)[3] for line in proc.stdout.splitlines() if line.strip()]
    return sorted(k[len(prefix) + 1:] for k in keys)


def file_keys(root):
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files if not f.startswith(".")]
    return sorted(out)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def queued(env, replica):
    d = os.path.join(env.dir, ".app.db-tidemark", "queue", replica)
    return len(os.listdir(d)) if os.path.isdir(d) else 0


# ------------------------------------------------------------------ tests

def test_file_and_s3_at_once_restore_identically():
    """One sidecar ships to a file replica and an S3 bucket; restores from
    each are exact at every point and byte-identical at the end; awscli
    sees the same objects, with the same bytes, as the file replica."""
    bucket = new_bucket()
    env = file_and_s3("s3both", bucket)
    try:
        env.replicate_writes(200, "--delay-ms", "8", "--big-every", "90", "--truncate-every", "60")
        check("bucket versioning is enabled" in env.full_log(), "versioning status not reported")
        counts_file = verify_timeline(env, points=6, extra=("--replica", "file"))
        counts_s3 = verify_timeline(env, points=6, extra=("--replica", "s3"))
        check(counts_file == counts_s3, "replicas differ: %r vs %r" % (counts_file, counts_s3))
        _, a = env.restore(extra=("--replica", "file"), output=os.path.join(env.dir, "a.db"))
        _, b = env.restore(extra=("--replica", "1"), output=os.path.join(env.dir, "b.db"))
        check(sha(a) == sha(b), "latest restores from the two replicas differ")
        keys = s3_keys(bucket, "prod/app")
        check(keys == file_keys(env.backup), "bucket and file replica hold different objects:\n%r\n%r"
              % (keys[:5], file_keys(env.backup)[:5]))
        sample = [k for k in keys if k.endswith(".seg")][len(keys) // 3]
        local = os.path.join(env.dir, "sample")
        aws("s3", "cp", "s3://%s/prod/app/%s" % (bucket, sample), local)
        check(sha(local) == sha(os.path.join(env.backup, sample)), "awscli download differs from the file replica")
        check(queued(env, "s3") == 0 and queued(env, "file") == 0, "spool not drained after a clean stop")
    finally:
        env.cleanup()


def test_restore_from_bucket_filled_by_awscli():
    """A file replica's tree copied with `aws s3 cp --recursive` restores
    exactly through the S3 driver: the layouts are the same."""
    bucket = new_bucket(versioning=False)
    env = Env("s3copy")
    try:
        env.replicate_writes(120, "--delay-ms", "8")
        aws("s3", "cp", "--recursive", env.backup, "s3://%s/copied/" % bucket)
        env.config = env.write_config("s3only.yml", env.key, replicas=s3_replica(bucket, prefix="copied"))
        verify_timeline(env, points=5)
        proc = subprocess.run([TIDEMARK, "list", "-c", env.config], capture_output=True, text=True)
        check(proc.returncode == 0 and "1 generation" in proc.stdout, "list from S3: " + proc.stdout + proc.stderr)
        check(not [n for n in os.listdir(env.dir) if ".tidemark-restore-" in n], "restore left temporary files")
        # damage in the bucket is detected through the parallel prefetch too
        segments = [k for k in s3_keys(bucket, "copied") if k.endswith(".seg")]
        victim = segments[len(segments) // 2]
        corrupt = os.path.join(env.dir, "corrupt.seg")
        with open(os.path.join(env.backup, victim), "rb") as f:
            data = bytearray(f.read())
        data[len(data) // 2] ^= 0x40
        with open(corrupt, "wb") as f:
            f.write(data)
        aws("s3", "cp", corrupt, "s3://%s/copied/%s" % (bucket, victim))
        # (segments only: with deltas the latest restore rightly jumps it)
        proc, out = env.restore(extra=["--no-deltas"])
        check(proc.returncode == 1 and "corrupt" in proc.stderr and victim in proc.stderr,
              "corrupt segment in S3 not reported: " + proc.stderr)
        check(not os.path.exists(out), "a restore from a damaged bucket wrote its output")
        aws("s3", "rm", "s3://%s/copied/%s" % (bucket, victim))
        proc, out = env.restore(extra=["--no-deltas"])
        check(proc.returncode == 1 and "is missing from the replica" in proc.stderr and "--timestamp" in proc.stderr,
              "missing segment in S3 not reported: " + proc.stderr)
    finally:
        env.cleanup()


def test_outage_and_kill9_lose_nothing():
    """The S3 server goes down for several seconds while writes go on: the
    file replica keeps up; the sidecar is killed with -9 while the spool
    holds unsent segments; after restart and recovery everything arrives
    in order and restores exactly from S3."""
    bucket = new_bucket()
    env = file_and_s3("s3outage", bucket)
    try:
        env.create_db()
        env.start()
        writer = subprocess.Popen([WRITER_PY, env.db, env.log, "--count", "600", "--delay-ms", "15"])
        time.sleep(1.5)
        server("down")
        down_at = time.time()
        segs = lambda: sum(1 for k in file_keys(env.backup) if k.endswith(".seg"))
        before = segs()
        time.sleep(3)
        check(segs() >= before + 8, "file replica was delayed by the S3 outage (%d -> %d segments)" % (before, segs()))
        wait_until(lambda: queued(env, "s3") >= 10, 10, "segments to queue for S3")
        # the file replica keeps up: nothing waits for it beyond the
        # segment being stored right now (its uploader is a thread)
        wait_until(lambda: queued(env, "file") == 0, 2, "the file replica to keep up during the S3 outage "
                   "(it fell behind)")
        env.stop(signal.SIGKILL)
        killed_at = int(time.time() * 1000)
        time.sleep(0.5)
        env.start()
        restarted_at = int(time.time() * 1000)
        check("from before; uploading them first" in env.full_log(), "spool not picked up after restart")
        time.sleep(1.5)
        server("up")
        outage = time.time() - down_at
        writer.wait(timeout=120)
        wait_until(lambda: queued(env, "s3") == 0, 90, "the spool to drain to S3")
        time.sleep(0.5)
        env.stop()
        log = env.full_log()
        check("upload failed" in log and "recovered after" in log, "outage not reported: " + log[-1500:])
        check(outage > 4, "outage too short to mean anything: %.1fs" % outage)
        downtime = (killed_at, restarted_at)
        counts = verify_timeline(env, points=8, downtime=downtime, extra=("--replica", "s3"))
        check(counts == verify_timeline(env, points=8, downtime=downtime, extra=("--replica", "file")),
              "replicas differ after the outage")
    finally:
        server("up") if not os.path.exists(os.path.join(S3_DIR, "run", "proxy.pid")) else None
        env.cleanup()


def test_spool_limit_holds_commits_in_the_wal():
    """With S3 down and a tiny spool-limit, the sidecar stops making
    segments and says so (alert-level), keeping the commits in the WAL;
    once S3 is back everything arrives and restores exactly."""
    bucket = new_bucket()
    env = Env("s3limit")
    env.config = env.write_config("tidemark.yml", env.key, replicas=s3_replica(bucket))
    with open(env.config) as f:
        text = f.read()
    with open(env.config, "w") as f:
        f.write("spool-limit: 3KB\n" + text)
    try:
        env.create_db()
        env.start()
        server("down")
        try:
            env.write_py(200, "--delay-ms", "10")
            wait_until(lambda: "ALERT: spool full" in env.full_log(), 20, "the spool-full alert")
            spooled = queued(env, "s3")
            time.sleep(1)
            check(queued(env, "s3") == spooled, "segments kept being spooled beyond spool-limit")
        finally:
            server("up")
        wait_until(lambda: queued(env, "s3") == 0 and "shipping resumes" in env.full_log(), 90, "the spool to drain")
        time.sleep(0.5)
        env.stop()
        verify_timeline(env, points=6)
    finally:
        env.cleanup()


def test_tls_verification_and_custom_ca():
    """Over HTTPS with a certificate from a private CA: refused without
    'ca-file' (TLS verification is on), exact with it. Object Lock
    retention headers are signed and accepted."""
    bucket = new_bucket()
    with open(os.path.join(S3_DIR, "endpoint-tls")) as f:
        tls_endpoint = f.read().strip()
    ca = os.path.join(S3_DIR, "ca.pem")
    env = Env("s3tls")
    def tls_replica(extra=""):
        return s3_replica(bucket, name="offsite").replace(ENDPOINT, tls_endpoint) + extra
    try:
        env.create_db()
        config = env.write_config("untrusted.yml", env.key, replicas=tls_replica())
        proc = subprocess.run([TIDEMARK, "replicate", "-c", config], capture_output=True, text=True, timeout=60)
        check(proc.returncode == 1 and "offsite" in proc.stderr and "certificate" in proc.stderr.lower()
              and "ca-file" in proc.stderr, "untrusted certificate not refused clearly: " + proc.stderr)
        env.config = env.write_config("tidemark.yml", env.key, replicas=tls_replica(
            "        ca-file: %s\n        object-lock: { mode: governance, retain: 1d }\n" % ca))
        env.replicate_writes(80, "--delay-ms", "10")
        verify_timeline(env, points=4)
    finally:
        env.cleanup()


def test_listing_spans_several_pages():
    """A generation with more objects than one ListObjectsV2 page (1000)
    is listed completely (continuation tokens)."""
    bucket = new_bucket(versioning=False)
    env = Env("s3pages")
    try:
        gen = "20261124T000000000Z-0000abcd"
        tree = os.path.join(env.dir, "tree", "app", "generations", gen)
        os.makedirs(os.path.join(tree, "segments"))
        os.makedirs(os.path.join(tree, "snapshots"))
        open(os.path.join(tree, "snapshots", "0000000000000000-1795478400000.snap"), "w").close()
        count = 1234
        for i in range(count):
            ms = 1795478400000 + i * 10
            open(os.path.join(tree, "segments", "%016x-%d-%d.seg" % (i, ms, ms + 5)), "w").close()
        aws("s3", "cp", "--recursive", "--quiet", os.path.join(env.dir, "tree"), "s3://%s/paged/" % bucket)
        config = env.write_config("paged.yml", env.key, replicas=s3_replica(bucket, prefix="paged"))
        proc = subprocess.run([TIDEMARK, "list", "-c", config, "--json"], capture_output=True, text=True)
        check(proc.returncode == 0, "list failed: " + proc.stderr)
        listed = json.loads(proc.stdout)[0]["generations"][0]
        check(listed["segments"] == count and listed["objects"] == count + 1,
              "listed %r, expected %d segments" % (listed, count))
        check(listed["to_ms"] == 1795478400000 + (count - 1) * 10 + 5, "last segment not seen: %r" % listed)
    finally:
        env.cleanup()


def test_credentials_from_environment_and_shared_file():
    """Without keys in the configuration, credentials come from
    AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else from the AWS_PROFILE
    profile of the shared credentials file; none at all is a clear error."""
    bucket = new_bucket()
    env = Env("s3creds")
    try:
        env.replicate_writes(30, "--delay-ms", "5")
        aws("s3", "cp", "--recursive", "--quiet", env.backup, "s3://%s/creds/" % bucket)
        replica = s3_replica(bucket, prefix="creds")
        replica = "\n".join(l for l in replica.split("\n") if "access-key-id" not in l and "secret-access-key" not in l)
        config = env.write_config("nokeys.yml", env.key, replicas=replica)
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        def list_with(extra):
            return subprocess.run([TIDEMARK, "list", "-c", config], capture_output=True, text=True,
                                  env=dict(base, HOME=env.dir, **extra))
        proc = list_with({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
        check(proc.returncode == 0 and "1 generation" in proc.stdout, "environment credentials: " + proc.stderr)
        shared = os.path.join(env.dir, "credentials")
        with open(shared, "w") as f:
            f.write("[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n"
                    "[backup]\naws_access_key_id = %s\naws_secret_access_key = %s\n" % (ACCESS_KEY, SECRET_KEY))
        proc = list_with({"AWS_SHARED_CREDENTIALS_FILE": shared, "AWS_PROFILE": "backup"})
        check(proc.returncode == 0 and "1 generation" in proc.stdout, "shared file, profile backup: " + proc.stderr)
        proc = list_with({"AWS_SHARED_CREDENTIALS_FILE": shared})
        # (Swift's tempauth answers an unknown key with SignatureDoesNotMatch)
        check(proc.returncode == 1 and ("access key id not recognised" in proc.stderr or "signature rejected" in proc.stderr),
              "the default profile's unknown key was not reported: " + proc.stderr)
        os.makedirs(os.path.join(env.dir, ".aws"))
        os.rename(shared, os.path.join(env.dir, ".aws", "credentials"))
        proc = list_with({"AWS_PROFILE": "backup"})
        check(proc.returncode == 0, "~/.aws/credentials not read: " + proc.stderr)
        proc = list_with({"AWS_PROFILE": "missing"})
        check(proc.returncode == 1 and "no S3 credentials" in proc.stderr and "AWS_ACCESS_KEY_ID" in proc.stderr,
              "missing credentials not explained: " + proc.stderr)
    finally:
        env.cleanup()


def test_retention_on_s3():
    """Retention deletes from a bucket exactly what it deletes from a
    directory, and the latest point still restores exactly from S3."""
    bucket = new_bucket()
    env = file_and_s3("s3retention", bucket, extra_db="    snapshot-interval: 1s\n    retention: off\n")
    try:
        env.replicate_writes(200, "--delay-ms", "15")
        env.config = env.write_config("retention.yml", env.key, extra_db="    snapshot-interval: 1s\n")
        snaps = [k for k in s3_keys(bucket, "prod/app") if k.endswith(".snap")]
        check(len(snaps) >= 2, "expected several snapshots on S3: %r" % snaps)
        later = iso(int(time.time() * 1000) + 10 * 86400 * 1000)
        proc = subprocess.run([TIDEMARK, "retention", "-c", env.config, "--now", later], capture_output=True, text=True)
        check(proc.returncode == 0, "retention failed: " + proc.stderr)
        remaining = s3_keys(bucket, "prod/app")
        check(remaining == file_keys(env.backup), "bucket and directory differ after retention")
        check(len([k for k in remaining if k.endswith(".snap")]) == 1, "S3 snapshots left: %r" % remaining)
        proc, out = env.restore(extra=("--replica", "s3"))
        check(proc.returncode == 0 and restored_ids(out) == len(env.commits()), "latest from S3: " + proc.stderr)
    finally:
        env.cleanup()


def test_injected_storage_faults_lose_nothing():
    """An HTTP fault proxy in front of the server answers a quarter of the
    requests with 503 SlowDown, 500, 408, a reset connection, a truncated
    body or a stalled answer (stall-timeout 2s), during replication (single and multipart uploads) and during
    restores (ranged and parallel downloads): everything arrives, every
    restore is exact, no multipart upload is left behind."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "s3"))
    from fault_proxy import FaultProxy
    host, port = ENDPOINT[len("http://"):].split(":")
    proxy = FaultProxy(host, int(port), rate=0.25, seed=7)
    bucket = new_bucket()
    replica = s3_replica(bucket, extra="        part-size: 5MiB\n        stall-timeout: 2s\n").replace(ENDPOINT, proxy.endpoint)
    env = Env("s3faults")
    env.config = env.write_config("tidemark.yml", env.key, replicas="      - type: file\n        path: %s\n"
                                  % env.backup + replica)
    try:
        env.create_db()
        db = sqlite3.connect(env.db)
        db.execute("CREATE TABLE IF NOT EXISTS scratch(x BLOB)")
        db.execute("INSERT INTO scratch SELECT randomblob(1000000) FROM (WITH RECURSIVE c(n) AS "
                   "(SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n<12) SELECT n FROM c)")
        db.commit()
        db.close()
        env.start()
        env.write_py(250, "--delay-ms", "10", "--big-every", "120")
        wait_until(lambda: queued(env, "s3") == 0, 180, "the bucket to catch up through the faults")
        time.sleep(0.5)
        env.stop()
        during_replication = dict(proxy.counts)
        check(sum(during_replication.values()) >= 5 and sum(1 for v in during_replication.values() if v) >= 4,
              "too few faults injected: %r of %d requests" % (during_replication, proxy.requests))
        check("upload failed" in env.full_log() or "retry" in env.full_log() or sum(during_replication.values()) > 0,
              "faults left no trace")
        check(s3_keys(bucket, "prod/app") == file_keys(env.backup), "bucket and directory differ after the faults")
        uploads = aws("s3api", "list-multipart-uploads", "--bucket", bucket).stdout
        check('"UploadId"' not in uploads, "multipart uploads left behind: " + uploads)
        counts = verify_timeline(env, points=5, extra=("--replica", "s3"))
        check(counts == verify_timeline(env, points=5, extra=("--replica", "file")), "replicas differ")
        print("# faults injected: %r over %d requests" % (proxy.counts, proxy.requests))
    finally:
        proxy.close()
        env.cleanup()


def test_lost_answers_to_starting_multipart_uploads_leave_none_behind():
    """Starting a multipart upload is not idempotent: the answers to the
    first two starts of each upload are lost after the server acted on
    them (the first cut in half, the second a reset connection), so the
    server holds uploads the sidecar never heard of. The sidecar lists the
    key's uploads in progress and aborts the ones that are not its own: no
    multipart upload is left behind, and the snapshot restores exactly
    (before: two uploads stayed open for ever, unseen, holding their parts)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "s3"))
    from fault_proxy import FaultProxy
    host, port = ENDPOINT[len("http://"):].split(":")
    starts = {}
    def lose_first_starts(method, target):
        if method != "POST" or not ("?uploads=" in target or target.endswith("?uploads")):
            return None   # not the start of a multipart upload (its completion is "?uploadId=")
        key = target.split("?", 1)[0]
        starts[key] = starts.get(key, 0) + 1
        return {1: "truncate", 2: "reset"}.get(starts[key])
    proxy = FaultProxy(host, int(port), rate=0.0, seed=1, rule=lose_first_starts)
    bucket = new_bucket()
    env = Env("s3lost", replicas=None)
    env.config = env.write_config("tidemark.yml", env.key,
                                  replicas=s3_replica(bucket, extra="        part-size: 5MiB\n").replace(ENDPOINT, proxy.endpoint))
    try:
        env.create_db()
        db = sqlite3.connect(env.db)
        db.execute("CREATE TABLE IF NOT EXISTS scratch(x BLOB)")
        db.execute("INSERT INTO scratch SELECT randomblob(1000000) FROM (WITH RECURSIVE c(n) AS "
                   "(SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n<12) SELECT n FROM c)")
        db.commit()
        db.close()
        env.start()
        env.write_py(40, "--delay-ms", "10")
        wait_until(lambda: queued(env, "s3") == 0, 120, "the bucket to catch up")
        env.stop()
        check(proxy.counts["truncate"] >= 1 and proxy.counts["reset"] >= 1,
              "the starts' answers were not lost: %r (%r)" % (proxy.counts, starts))
        uploads = aws("s3api", "list-multipart-uploads", "--bucket", bucket).stdout
        check('"UploadId"' not in uploads, "multipart uploads left behind: " + uploads)
        verify_timeline(env, points=3, extra=("--replica", "s3"))
        print("# %d multipart start(s) whose answers were lost, %d request(s)" %
              (proxy.counts["truncate"] + proxy.counts["reset"], proxy.requests))
    finally:
        proxy.close()
        env.cleanup()


def test_clear_errors_for_bad_settings():
    """Wrong secret, missing bucket, wrong region, and versioning off with
    require-versioning: the sidecar refuses to start, naming the replica."""
    plain = new_bucket(versioning=False)
    env = Env("s3errors")
    try:
        env.create_db()
        cases = [
            (s3_replica(plain, name="offsite", secret="not-the-secret"), "replica 'offsite'", "signature rejected"),
            (s3_replica("no-such-bucket-here", name="offsite"), "bucket 'no-such-bucket-here'", "does not exist"),
            (s3_replica(plain, name="offsite", extra="        region: eu-west-1\n"), "wrong region 'eu-west-1'", "us-east-1"),
            (s3_replica(plain, name="offsite", extra="        require-versioning: true\n"),
             "does not have versioning enabled", "put-bucket-versioning"),
        ]
        for replicas, expected, detail in cases:
            config = env.write_config("bad.yml", env.key, replicas=replicas)
            proc = subprocess.run([TIDEMARK, "replicate", "-c", config], capture_output=True, text=True, timeout=60)
            check(proc.returncode == 1, "replicate started with a bad replica (%s): %s" % (expected, proc.stderr))
            check(expected in proc.stderr and detail in proc.stderr and "offsite" in proc.stderr,
                  "unclear error, expected %r and %r: %s" % (expected, detail, proc.stderr))
            check("not-the-secret" not in proc.stderr and SECRET_KEY not in proc.stderr, "secret in an error message")
        proc = subprocess.run([TIDEMARK, "list", "-c", env.write_config("bad.yml", env.key,
                               replicas=s3_replica(plain, name="offsite", secret="nope"))], capture_output=True, text=True)
        check(proc.returncode == 1 and "signature rejected" in proc.stderr, "list with a wrong secret: " + proc.stderr)
    finally:
        env.cleanup()


def test_multipart_snapshot_bounded_memory():
    """A 48 MB database snapshots as a multipart upload of 5 MiB parts; it
    restores byte for byte, and the sidecar's peak memory stays far below
    the object's size."""
    bucket = new_bucket()
    env = Env("s3big", replicas=None)
    env.config = env.write_config("tidemark.yml", env.key, replicas=s3_replica(bucket, extra="        part-size: 5MiB\n"))
    try:
        env.create_db()
        db = sqlite3.connect(env.db)
        for i in range(48):
            db.execute("INSERT INTO t(id, payload, big) VALUES (?, ?, randomblob(1000000))", (i + 1, payload(i + 1)))
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        env.start()
        wait_until(lambda: "snapshot " in env.full_log() and queued(env, "s3") == 0, 120, "the snapshot upload")
        with open("/proc/%d/status" % env.replicator.pid) as f:
            peak_kb = int([l for l in f if l.startswith("VmHWM")][0].split()[1])
        env.stop()
        keys = [k for k in s3_keys(bucket, "prod/app") if k.endswith(".snap")]
        check(len(keys) == 1, "expected one snapshot, found %r" % keys)
        head = aws("s3api", "head-object", "--bucket", bucket, "--key", "prod/app/" + keys[0]).stdout
        check('"ETag": "\\"' in head and "-" in head.split("ETag")[1].split(",")[0],
              "snapshot was not stored as a multipart upload: " + head)
        check(peak_kb < 32 * 1024 * MEMORY_SCALE, "sidecar peak memory %d KiB for a 48 MB snapshot" % peak_kb)
        proc, out = env.restore()
        check(proc.returncode == 0, "restore failed: " + proc.stderr)
        def rows_digest(path):
            db = sqlite3.connect(path)
            h = hashlib.sha256()
            for row in db.execute("SELECT id, payload, big FROM t ORDER BY id"):
                h.update(repr(row[:2]).encode() + row[2])
            db.close()
            return h.hexdigest()
        check(rows_digest(out) == rows_digest(env.db), "restored rows differ from the database")
    finally:
        env.cleanup()


TESTS = [
    test_file_and_s3_at_once_restore_identically,
    test_restore_from_bucket_filled_by_awscli,
    test_outage_and_kill9_lose_nothing,
    test_spool_limit_holds_commits_in_the_wal,
    test_tls_verification_and_custom_ca,
    test_listing_spans_several_pages,
    test_credentials_from_environment_and_shared_file,
    test_retention_on_s3,
    test_injected_storage_faults_lose_nothing,
    test_lost_answers_to_starting_multipart_uploads_leave_none_behind,
    test_clear_errors_for_bad_settings,
    test_multipart_snapshot_bounded_memory,
]

if __name__ == "__main__":
    start_server()
    sys.exit(run_tests(TESTS))
