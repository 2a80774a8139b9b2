#!/usr/bin/python3
"""The runbook, run as written: every ```sh block of docs/runbook.md is
executed in order by bash (set -e), with the variables set to a real
incident: a live database, a sidecar, good commits, then a bad DELETE.
The restored and promoted database must hold exactly the good commits,
and the restarted sidecar must start a new generation. Prints TAP.
The ```sh sqld blocks (section "Embedded replica with a self-hosted sqld
primary") need a sqld and an embedded replica: test_sqld_restore.py
(test_runbook_sqld_section) runs them.

Blocks fenced ```bash are not run (examples for other deployments: a
tenant directory, Redis, Turso Cloud, which needs an account and the
network); the runbook says so where they are.
"""
import os, re, signal, sqlite3, subprocess, sys, time

from helpers import *

RUNBOOK = os.path.join(ROOT, "docs", "runbook.md")


def runbook_commands():
    with open(RUNBOOK) as f:
        text = f.read()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    check(len(blocks) >= 6, "the runbook has only %d command blocks" % len(blocks))
    cloud = [b for b in blocks if re.search(r"^\s*turso\s", b, re.M)]
    check(not cloud, "a block fenced sh calls the Turso CLI, which cannot run here:\n%s" % "".join(cloud))
    return blocks


def test_runbook_restores_before_a_bad_delete():
    env = Env("runbook")
    try:
        env.create_db()
        env.start()
        env.write_py(150, "--delay-ms", "10")
        time.sleep(1.2)
        incident_ms = int(time.time() * 1000)
        time.sleep(0.3)
        db = sqlite3.connect(env.db)
        db.execute("DELETE FROM t")          # the incident
        db.commit()
        db.close()
        time.sleep(0.6)
        pidfile = os.path.join(env.dir, "sidecar.pid")
        with open(pidfile, "w") as f:
            f.write(str(env.replicator.pid))
        sidecar_log = os.path.join(env.dir, "replicate.log")
        prelude = """set -e
export PATH="%(root)s:$PATH"
export CONFIG=%(config)s DB_NAME=app LIVE=%(db)s STAGING=%(staging)s TIME=%(time)s
stop_application() { true; }
start_application() { true; }
stop_sidecar() {   # waits until it has exited (a zombie of this test counts as exited)
    pid=$(cat %(pid)s); kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do sleep 0.1; done
}
start_sidecar() { tidemark replicate -c "$CONFIG" >>%(log)s 2>&1 & echo $! > %(pid)s; }
""" % {"root": ROOT, "config": env.config, "db": env.db, "staging": os.path.join(env.dir, "staging.db"),
       "time": iso(incident_ms), "pid": pidfile, "log": sidecar_log}
        script = prelude + "\n".join(runbook_commands())
        env.replicator = None   # the runbook stops and starts it now
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=env.dir)
        check(proc.returncode == 0, "the runbook failed:\n%s\n%s" % (proc.stdout[-2000:], proc.stderr[-2000:]))
        check("integrity:    ok" in proc.stdout and "restorable from" in proc.stdout, "runbook output: " + proc.stdout)
        # the live database is the state just before the incident
        check(restored_ids(env.db) == 150, "the promoted database does not hold the 150 good commits")
        broken = [n for n in os.listdir(env.dir) if n.startswith("app.db.broken-")]
        check(len(broken) == 1 and "app.db" in os.listdir(os.path.join(env.dir, broken[0])), "damaged copy: %r" % broken)
        damaged = sqlite3.connect(os.path.join(env.dir, broken[0], "app.db"))
        check(damaged.execute("SELECT count(*) FROM t").fetchone()[0] == 0, "the kept damaged copy is not the damaged one")
        damaged.close()
        with open(sidecar_log) as f:
            log = f.read()
        check(log.count("new generation") >= 2, "the restarted sidecar did not start a new generation")
    finally:
        pidfile = os.path.join(env.dir, "sidecar.pid")
        if os.path.exists(pidfile):
            try:
                with open(pidfile) as f:
                    os.kill(int(f.read()), signal.SIGTERM)
                time.sleep(0.5)
            except (ProcessLookupError, ValueError):
                pass
        env.cleanup()


TESTS = [test_runbook_restores_before_a_bad_delete]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS))
