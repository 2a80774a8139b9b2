#!/usr/bin/python3
"""Integration tests of encryption and the security promises: a sidecar
given only a public key (recipient-file) writes backups it cannot read;
keys rotate and old backups stay readable; secrets never reach logs or
errors; the control socket and key files keep their permissions; a
restore writes nothing outside its output path. Restores are checked
against the writer's ground truth (helpers.py). Prints TAP.
"""
import os, re, stat, subprocess, time

from helpers import *


def tidemark(*args):
    return subprocess.run([TIDEMARK] + list(args), capture_output=True, text=True)


def keygen_pair(env, name):
    """Writes NAME (secret) and NAME.pub in env.dir; returns (secret, public, id)."""
    secret = os.path.join(env.dir, name)
    proc = tidemark("keygen", "--pair", "-o", secret)
    check(proc.returncode == 0, "keygen --pair failed: " + proc.stderr)
    key_id = re.search(r"id ([0-9a-f]{16})", proc.stdout).group(1)
    return secret, secret + ".pub", key_id


def write_encryption_config(env, name, encryption):
    path = os.path.join(env.dir, name)
    with open(path, "w") as f:
        f.write("encryption:\n%sdbs:\n  - path: %s\n    sync-interval: 200ms\n    replicas:\n%s"
                % (encryption, env.db, env.replicas))
    return path


def stored_bytes(env):
    data = b""
    for d, _, files in os.walk(env.backup):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                data += fh.read()
    return data

# ------------------------------------------------------------------ tests

def test_public_key_sidecar_cannot_read_its_backups():
    """recipient-file: the sidecar seals every object to the public key.
    Restore, verify and drill on its config alone are refused with an
    error naming what is missing; with --key-file SECRET the restores are
    exact at every point."""
    env = Env("pubkey")
    try:
        secret, public, key_id = keygen_pair(env, "backup-key")
        check(stat.S_IMODE(os.stat(secret).st_mode) == 0o600, "secret key is not mode 0600")
        env.config = write_encryption_config(env, "sidecar.yml", "  recipient-file: %s\n" % public)
        env.replicate_writes(150, "--delay-ms", "4")
        log = env.full_log()
        check("drills are not run by this sidecar" in log, "no notice that drills need the secret key: " + log[-1500:])
        with open(secret) as f:
            secret_hex = f.read().split()[-1]
        check(secret_hex not in log, "the secret key appears in the log")
        check(secret_hex.encode() not in stored_bytes(env), "the secret key appears in the backups")

        proc, _ = env.restore()
        check(proc.returncode != 0, "restore without the secret key succeeded")
        check("only the public key" in proc.stderr and "--key-file" in proc.stderr,
              "unclear error without the secret key: " + proc.stderr)
        for command in (["verify", "-c", env.config], ["drill", "-c", env.config, "app"]):
            proc = tidemark(*command)
            check(proc.returncode != 0 and "only the public key" in proc.stderr,
                  "%s without the secret key: %s" % (command[0], proc.stderr))

        counts = verify_timeline(env, points=6, extra=["--key-file", secret])   # the latest holds all 150
        check(counts[0] < counts[-1], "timeline counts: %r" % counts)
        proc = tidemark("verify", "-c", env.config, "--key-file", secret)
        check(proc.returncode == 0, "verify with the secret key failed: " + proc.stdout + proc.stderr)

        # the secret key of another pair is refused by its id
        other, _, other_id = keygen_pair(env, "other-key")
        proc, _ = env.restore(extra=["--key-file", other])
        check(proc.returncode != 0 and key_id in proc.stderr and other_id in proc.stderr,
              "wrong secret key: error does not name both key ids: " + proc.stderr)
    finally:
        env.cleanup()


def test_key_rotation_keeps_old_backups_readable():
    """A symmetric key, then a rotation to a key pair in the same
    generation: restores across the boundary need both keys, and with only
    the new one the error names the old key's id."""
    env = Env("rotate")
    try:
        env.replicate_writes(80, "--delay-ms", "4")
        secret, public, new_id = keygen_pair(env, "new-key")
        env.config = write_encryption_config(env, "rotated.yml", "  recipient-file: %s\n" % public)
        env.start()
        env.write_py(80, "--delay-ms", "4", start=81)
        time.sleep(0.5)
        env.stop()
        check("resumed generation" in env.full_log(), "the rotation did not continue the generation")
        both = ["--key-file", secret, "--key-file", env.key]
        counts = verify_timeline(env, points=6, extra=both)
        # points up to 80 rows need only the old key; later ones both
        check(any(c <= 80 for c in counts) and any(c > 80 for c in counts),
              "restores do not straddle the rotation: %r" % counts)
        proc, _ = env.restore(extra=["--key-file", secret])
        check(proc.returncode != 0 and "wrong key" in proc.stderr and "symmetric key id" in proc.stderr,
              "missing old key not named: " + proc.stderr)
    finally:
        env.cleanup()


def test_secrets_stay_out_of_logs_and_errors():
    """The key file's contents and an S3 secret never appear in the
    sidecar's log or in any command's output, even when they fail."""
    env = Env("secrets")
    try:
        with open(env.key) as f:
            key_hex = f.read().strip()
        secret = "tmSECRETvalue0123456789abcdefXYZ"
        env.replicas += ("      - type: s3\n        name: offsite\n        bucket: b\n"
                         "        endpoint: http://127.0.0.1:9\n        region: us-east-1\n"
                         "        access-key-id: AKIDTEST\n        secret-access-key: %s\n" % secret)
        env.config = env.write_config("tidemark.yml", env.key)
        env.create_db()
        env.start()
        env.write_py(20, "--delay-ms", "5")
        time.sleep(1.5)
        env.stop()
        outputs = [env.full_log()]
        for args in (["list", "-c", env.config, "--replica", "offsite"],
                     ["restore", "-c", env.config, "app", "-o", os.path.join(env.dir, "x.db"), "--replica", "offsite"],
                     ["verify", "-c", env.config, "--replica", "offsite"]):
            proc = tidemark(*args)
            check(proc.returncode != 0, "%s against a dead S3 endpoint succeeded" % args[0])
            outputs.append(proc.stdout + proc.stderr)
        check("offsite" in outputs[0], "the failing replica is not named in the log")
        for text in outputs:
            check(secret not in text, "the S3 secret appears in: " + text[-500:])
            check(key_hex not in text, "the archive key appears in: " + text[-500:])
    finally:
        env.cleanup()


def test_permissions_are_enforced():
    """The control socket is private to the sidecar's user; a key file that
    group or others can read is refused, naming the file and the fix."""
    env = Env("perms")
    try:
        env.create_db()
        env.start()
        sock = os.path.join(env.dir, ".app.db-tidemark", "control.sock")
        wait_until(lambda: os.path.exists(sock), 5, "the control socket")
        mode = stat.S_IMODE(os.stat(sock).st_mode)
        check(mode & 0o077 == 0, "control socket mode is %o" % mode)
        env.stop()
        os.chmod(env.key, 0o644)
        for args in (["replicate", "-c", env.config], ["restore", "-c", env.config, "app", "-o", env.dir + "/r.db"]):
            proc = tidemark(*args)
            check(proc.returncode != 0 and env.key in proc.stderr and "chmod 600" in proc.stderr,
                  "%s with a world-readable key: %s" % (args[0], proc.stderr))
    finally:
        env.cleanup()


def test_restore_writes_only_its_output():
    """A restore creates its output file and nothing else: no file appears
    or changes anywhere else in the working tree (the replica included),
    whatever stray names the replica holds; an existing output is kept
    unless --force."""
    env = Env("confine")
    try:
        env.replicate_writes(40, "--delay-ms", "3")
        # stray names a hostile or careless hand left in the replica
        gens = os.path.join(env.backup, "app", "generations")
        real = sorted(os.listdir(gens))[0]
        for stray in ("evil", "x" * 28):
            os.makedirs(os.path.join(gens, stray, "snapshots"))
            with open(os.path.join(gens, stray, "snapshots", "0000000000000000-9999999999999.snap"), "wb") as f:
                f.write(b"not an object")

        def tree():
            out = {}
            for d, _, files in os.walk(env.dir):
                for f in files:
                    p = os.path.join(d, f)
                    st = os.stat(p)
                    out[p] = (st.st_size, st.st_mtime_ns)
            return out

        before = tree()
        output = os.path.join(env.dir, "out", "restored.db")
        os.makedirs(os.path.dirname(output))
        proc, _ = env.restore(output=output)
        check(proc.returncode == 0, "restore failed: " + proc.stderr)
        check(restored_ids(output) == 40, "restore is not exact")
        after = tree()
        added = sorted(set(after) - set(before))
        changed = sorted(p for p in before if p in after and before[p] != after[p])
        check(added == [output], "restore created %r" % added)
        check(changed == [], "restore changed %r" % changed)
        check(real in os.listdir(gens), "the real generation vanished")
        proc, _ = env.restore(output=output)
        check(proc.returncode != 0 and output in proc.stderr, "an existing output was not refused: " + proc.stderr)
    finally:
        env.cleanup()


if __name__ == "__main__":
    sys.exit(run_tests([
        test_public_key_sidecar_cannot_read_its_backups,
        test_key_rotation_keeps_old_backups_readable,
        test_secrets_stay_out_of_logs_and_errors,
        test_permissions_are_enforced,
        test_restore_writes_only_its_output,
    ]))
