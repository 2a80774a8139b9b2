"""make bench on Turso's new engine (issue 20): the application overhead
and RPO scenarios with the application on @tursodatabase/database 0.7.2
(the version pinned in tests/integration/package-lock.json, installed by
scripts/install-deps) in its multi-process mode
(`experimental: ['multiprocess_wal']`), which tidemark follows through
the engine's coordination file DB-tshm instead of SQLite's -shm.

The application is bench/turso_app_writer.mjs, bench/app_writer.py's
writer on that engine. Each run opens its own copy of the starting
database first (`--wait`), then the sidecar attaches and makes its first
snapshot, then the timed writes start: an application that has the
database open when the sidecar starts, the way this engine is shared.

  overhead     the realistic and the single-row writer back to back, alone
               and beside tidemark, interleaved rounds, medians: txn/s
               (ratio to alone), the sidecar's CPU seconds and peak RSS,
               the largest WAL. Then the realistic writer at RATE txn/s
               running PRAGMA wal_checkpoint(TRUNCATE) every ~200 ms on its
               own connection, alone and beside tidemark: each call timed,
               and the calls that returned busy counted (the engine never
               waits for a reader: a reader slot the sidecar holds makes
               the call fail at once).
  rpo          the single-row writer at RATE txn/s; at a random moment the
               writer and the sidecar are killed -9 and the database deleted;
               the latest point is restored from the file and the S3 replica
               and compared with the writer's log (data lost, in ms of
               commits). And the stamps: in a run stopped cleanly, how long
               after COMMIT returned the sidecar stamped each commit.

Every tidemark run is checked: once the sidecar is quiet its latest point
is restored and must hold exactly the writer's rows, in order, up to its
last commit (a sidecar that follows nothing would look cheap).

Litestream is not run: it follows a database through SQLite's -shm
wal-index, which this engine never writes (bench says so in its output).
"""
import json, os, random, select, shutil, signal, sqlite3, subprocess, time

from bench import (HERE, ROOT, TIDEMARK, cpu_seconds, create_db, peak_rss_kib, percentile, read_log, run_sampled,
                   spool_empty, start_sidecar, wait_for)
from peer import median, ratio, starting_database

WRITER = os.path.join(HERE, "turso_app_writer.mjs")
ENGINE = os.path.join(ROOT, "tests", "integration", "node_modules", "@tursodatabase", "database")
ENGINE_VERSION = "0.7.2"
FIRST_ID = 10**7          # rows the writer inserts start here, above the starting database's
RATE = 500                # txn/s of the paced runs (checkpoints, RPO)
KINDS = ("alone", "tidemark")
LITESTREAM_NOTE = ("Litestream is not run on this engine: it follows a database through SQLite's -shm wal-index, "
                   "which the Turso engine never writes (its processes share the WAL through DB-tshm)")
DB_FILES = ("", "-wal", "-shm", "-tshm")


def engine_version():
    """The installed engine's version, or None."""
    try:
        with open(os.path.join(ENGINE, "package.json")) as f:
            return json.load(f).get("version")
    except (OSError, ValueError):
        return None


def sidecar_log_tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


class TursoRun:
    """One run: a copy of a database in its own directory, opened by the
    Turso writer (which waits), then tidemark attached (kind "tidemark"),
    then the writes."""

    def __init__(self, bench, template, kind, name, s3_prefix=None):
        self.bench, self.kind, self.s3_prefix = bench, kind, s3_prefix
        self.work = bench.workdir(name)
        self.db = os.path.join(self.work, "app.db")
        self.log = os.path.join(self.work, "commits.log")
        self.summary = os.path.join(self.work, "writer.json")
        self.sidecar_log = os.path.join(self.work, "sidecar.log")
        shutil.copyfile(template, self.db)
        self.writer = None
        self.proc = None
        self.config = None

    def open(self, mode, seconds, update_rows, rate=0, checkpoint_modes=None):
        """Starts the writer; returns once it has the database open."""
        args = ["node", WRITER, self.db, self.log, "--mode", mode, "--seconds", str(seconds), "--start",
                str(FIRST_ID), "--update-rows", str(update_rows), "--rate", str(rate), "--summary", self.summary,
                "--wait"]
        if checkpoint_modes:
            args += ["--checkpoint-every-ms", "200", "--checkpoint-modes", checkpoint_modes]
        self.writer = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.writer.stdout], [], [], 60)
        line = self.writer.stdout.readline().strip() if ready else "(no answer in 60 s)"
        if line != "open":
            self.writer.kill()
            raise SystemExit("turso: the writer did not open %s: %s" % (self.db, line))

    def attach(self):
        """Starts tidemark (kind "tidemark") on the open database and waits
        for its first snapshot."""
        if self.kind != "tidemark":
            return
        self.config = self.bench.config(self.work, s3_prefix=self.s3_prefix, extra_db="    engine: turso\n")
        self.proc = start_sidecar(self.config, self.sidecar_log)
        if not wait_for(lambda: os.path.isdir(os.path.join(self.work, "backup", "app")) or self.proc.poll() is not None,
                        60) or self.proc.poll() is not None:
            raise SystemExit("turso: tidemark made no first snapshot of a database the Turso engine has open "
                             "(exit %s); its log (%s):\n%s" % (self.proc.poll(), self.sidecar_log,
                                                              sidecar_log_tail(self.sidecar_log)))
        self.wait_quiet(0.5)

    def go(self):
        self.writer.stdin.write("go\n")
        self.writer.stdin.flush()

    def finish(self):
        """Waits for the writer's end; returns its summary."""
        if self.writer.wait() != 0:
            raise SystemExit("turso: the writer failed (exit %d) on %s" % (self.writer.returncode, self.db))
        with open(self.summary) as f:
            return json.load(f)

    def sidecar_alive(self):
        if self.proc and self.proc.poll() is not None:
            raise SystemExit("turso: tidemark exited (%d) beside the Turso engine; its log (%s):\n%s"
                             % (self.proc.returncode, self.sidecar_log, sidecar_log_tail(self.sidecar_log)))

    def wait_quiet(self, window, timeout=120):
        """Until tidemark has done its work: its spool empty and almost no
        CPU used for `window` seconds (more than a sync interval once a
        writer has run: then everything has been shipped)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.sidecar_alive()
            before = cpu_seconds(self.proc.pid)
            time.sleep(window)
            if cpu_seconds(self.proc.pid) - before < 0.02 * window and spool_empty(self.work):
                return
        raise SystemExit("turso: tidemark still busy %d s after the writer stopped; its log:\n%s"
                         % (timeout, sidecar_log_tail(self.sidecar_log)))

    def cpu(self):
        return cpu_seconds(self.proc.pid) if self.proc else 0.0

    def restore(self, out, replica="file"):
        """The latest point from `replica`: seconds (raises on failure)."""
        seconds, _, code, text = run_sampled([TIDEMARK, "restore", "-c", self.config, "app", "-o", out,
                                              "--replica", replica])
        if code != 0:
            raise SystemExit("turso: restore from %s failed: %s\nsidecar log:\n%s"
                             % (replica, text[-2000:], sidecar_log_tail(self.sidecar_log)))
        return seconds

    def check_shipped(self):
        """Restores the latest point once everything is shipped: whether it
        holds exactly the writer's rows up to its last commit."""
        out = os.path.join(self.work, "check.db")
        self.restore(out)
        last = max(read_log(self.log))
        got, exact = rows_restored(out, FIRST_ID)
        os.unlink(out)
        with open(self.sidecar_log, errors="replace") as f:
            lines = f.readlines()
        return {"last_committed": last, "last_restored": got, "exact": exact and got == last,
                # generations after the first: continuity lost (each after a warning)
                "new_generations": max(0, sum(1 for line in lines if 'msg="new generation ' in line) - 1),
                "warnings": [line.strip() for line in lines if " level=warn " in line or " level=error " in line]}

    def stop(self, sig=signal.SIGTERM):
        for proc in (self.writer, self.proc):
            if proc and proc.poll() is None:
                proc.send_signal(sig)
                proc.wait()

    def remove(self):
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def rows_restored(path, first):
    """(largest id from `first` on that the database holds, whether every
    id from `first` up to it is there)."""
    db = sqlite3.connect(path)
    top, count = db.execute("SELECT max(id), count(*) FROM t WHERE id >= ?", (first,)).fetchone()
    db.close()
    top = top or first - 1
    return top, count == top - first + 1


def shipped_text(check):
    generations = ", %d new generation(s)" % check["new_generations"] if check["new_generations"] else ""
    if check["exact"]:
        return "all %d shipped (checked)%s" % (check["last_committed"] - FIRST_ID + 1, generations)
    return "NOT ALL SHIPPED: restore holds up to %d, the writer committed up to %d%s" % (
        check["last_restored"], check["last_committed"], generations)


def print_warnings(check, most=2):
    """The sidecar's first warnings of a run, under its line."""
    for line in check["warnings"][:most]:
        print("      sidecar: " + line, flush=True)
    if len(check["warnings"]) > most:
        print("      sidecar: ... and %d more warnings" % (len(check["warnings"]) - most), flush=True)


def checked_text(row):
    """What the table says after a figure of tidemark's runs."""
    text = "" if row["shipped_exact"] else " NOT ALL SHIPPED"
    return text + (", %d new gen." % row["new_generations"] if row["new_generations"] else "")


# ----------------------------------------------------------- throughput

def throughput(bench, template, rows, mode, rounds, seconds):
    """Interleaved runs of one writer, alone and beside tidemark: per kind
    the medians of txn/s, the sidecar's CPU seconds, its peak RSS and the
    largest WAL."""
    runs = {kind: [] for kind in KINDS}
    checks = []
    for n in range(rounds):
        for kind in KINDS:
            run = TursoRun(bench, template, kind, "turso-tput-%s-%s-%d" % (mode, kind, n))
            try:
                run.open(mode, seconds, rows)
                run.attach()
                cpu_before = run.cpu()
                run.go()
                s = run.finish()
                check = None
                if run.proc:
                    run.wait_quiet(1.5)     # everything the writer wrote shipped
                    check = run.check_shipped()
                    checks.append(check)
                cpu = run.cpu() - cpu_before
                sample = {"txn_per_s": s["transactions"] / s["seconds"], "cpu_s": cpu,
                          "cpu_us_per_txn": 1e6 * cpu / max(1, s["transactions"]),
                          "peak_rss_kib": peak_rss_kib(run.proc.pid) if run.proc else 0,
                          "largest_wal_bytes": s["largest_wal_bytes"]}
            finally:
                run.remove()
            runs[kind].append(sample)
            print("  turso %s writer, round %d, %-10s %7.0f txn/s, sidecar %.2f CPU-s, peak RSS %.1f MiB, WAL up to "
                  "%.1f MB%s" % (mode, n + 1, kind + ":", sample["txn_per_s"], sample["cpu_s"],
                                 sample["peak_rss_kib"] / 1024, sample["largest_wal_bytes"] / 1e6,
                                 "; " + shipped_text(check) if check else ""), flush=True)
            check and print_warnings(check)
    row = {"rounds": rounds, "seconds_each": seconds, "shipped_exact": all(c["exact"] for c in checks),
           "new_generations": sum(c["new_generations"] for c in checks)}
    for kind, samples in runs.items():
        row[kind] = {key: median([s[key] for s in samples]) for key in samples[0]}
        row[kind]["runs"] = samples
    row["tidemark"]["ratio"] = ratio(row["tidemark"]["txn_per_s"], row["alone"]["txn_per_s"])
    return row


def checkpoints(bench, template, rows, rounds, seconds):
    """The application's TRUNCATE checkpoints (every ~200 ms, on its own
    connection) under the realistic writer at RATE txn/s, alone and beside
    tidemark: per kind, p50 / p99 / max ms, calls, calls that returned
    busy and calls that failed; the writer's transactions and largest WAL."""
    calls = {kind: [] for kind in KINDS}
    txns = {kind: [] for kind in KINDS}
    wal = {kind: 0 for kind in KINDS}
    checks = []
    for n in range(rounds):
        for kind in KINDS:
            run = TursoRun(bench, template, kind, "turso-ckpt-%s-%d" % (kind, n))
            try:
                run.open("realistic", seconds, rows, rate=RATE, checkpoint_modes="TRUNCATE")
                run.attach()
                run.go()
                s = run.finish()
                check = None
                if run.proc:
                    run.wait_quiet(1.5)
                    check = run.check_shipped()
                    checks.append(check)
            finally:
                run.remove()
            done = s["checkpoints"]
            calls[kind] += done
            txns[kind].append(s["transactions"])
            wal[kind] = max(wal[kind], s["largest_wal_bytes"])
            print("  turso TRUNCATE checkpoints, round %d, %-10s %d calls, max %.0f ms, %d busy, %d failed; %d txns, "
                  "WAL up to %.1f MB%s" % (n + 1, kind + ":", len(done), max([c[1] for c in done] or [0]),
                                           sum(1 for c in done if c[2] == 1), sum(1 for c in done if c[2] == -1),
                                           s["transactions"], s["largest_wal_bytes"] / 1e6,
                                           "; " + shipped_text(check) if check else ""), flush=True)
            check and print_warnings(check)
    row = {"rate": RATE, "seconds_each": seconds, "rounds": rounds, "shipped_exact": all(c["exact"] for c in checks),
           "new_generations": sum(c["new_generations"] for c in checks)}
    for kind, made in calls.items():
        ms = [c[1] for c in made]
        row[kind] = {"calls": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                     "max_ms": max(ms or [0]), "busy": sum(1 for c in made if c[2] == 1),
                     "failed": sum(1 for c in made if c[2] == -1), "transactions": txns[kind],
                     "largest_wal_bytes": wal[kind]}
    return row


def scenario_overhead(bench, rounds, seconds, megabytes, scale):
    """Scenario 3 on the Turso engine: both writers' throughput alone and
    beside tidemark, and the application's TRUNCATE checkpoints."""
    version = engine_version()
    if version is None:
        print("  (the Turso engine is not installed in tests/integration/node_modules: not measured; "
              "HINT: scripts/install-deps)", flush=True)
        return None
    print("  @tursodatabase/database %s, experimental: ['multiprocess_wal']; interleaved runs (alone, tidemark), "
          "%d rounds of %.0f s, medians" % (version, rounds, seconds), flush=True)
    print("  " + LITESTREAM_NOTE, flush=True)
    template, rows = starting_database(bench, megabytes)
    try:
        row = {"engine_version": version, "database_bytes": os.path.getsize(template),
               "writers": {mode: throughput(bench, template, rows, mode, rounds, seconds)
                           for mode in ("realistic", "single")},
               "checkpoints": checkpoints(bench, template, rows, 2, max(6.0, 10 * scale))}
    finally:
        shutil.rmtree(os.path.dirname(template), ignore_errors=True)
    for mode, w in row["writers"].items():
        print("  turso %s writer: alone %.0f txn/s, beside tidemark %.0f (%.1f %%)"
              % (mode, w["alone"]["txn_per_s"], w["tidemark"]["txn_per_s"], 100 * w["tidemark"]["ratio"]), flush=True)
    c = row["checkpoints"]
    print("  turso app TRUNCATE checkpoints: alone %d of %d busy, beside tidemark %d of %d busy (%d failed)"
          % (c["alone"]["busy"], c["alone"]["calls"], c["tidemark"]["busy"], c["tidemark"]["calls"],
             c["tidemark"]["failed"]), flush=True)
    return row


# ------------------------------------------------------------------ RPO

def build_stamps_tool():
    """bench/stamps.c built against this tree's libtidemark.a (as
    bench/stamp_bound.py does), or None when it cannot be built."""
    import stamp_bound
    tool = os.path.join("/tmp", "tidemark-turso-stamps-%d" % os.getpid())
    try:
        stamp_bound.build_stamps(tool)
    except (subprocess.CalledProcessError, OSError) as e:
        print("  (stamps not measured: cannot build bench/stamps.c: %s)" % e, flush=True)
        return None
    return tool


def stamp_delays(bench, tool, template, seconds):
    """A run stopped cleanly: the single-row writer at RATE txn/s for
    `seconds`, everything shipped, tidemark stopped; every segment's stamps
    paired in order with the writer's commits. Returns (stamp - t1 list,
    stamp - t0 list, whether each commit began a sync interval or more
    after the first)."""
    run = TursoRun(bench, template, "tidemark", "turso-stamps")
    try:
        run.open("single", seconds, 0, rate=RATE)
        run.attach()
        run.go()
        run.finish()
        run.wait_quiet(1.5)
        run.stop()
        backup = os.path.join(run.work, "backup")
        keys = []
        for d, _, files in os.walk(backup):
            keys += [os.path.relpath(os.path.join(d, f), backup) for f in files if f.endswith(".seg")]
        keys.sort()
        out = subprocess.run([tool, bench.key, backup] + keys, check=True, capture_output=True, text=True).stdout
        stamps = [int(x) for x in out.split()]
        log = []
        with open(run.log) as f:
            for line in f:
                i, t0, t1 = (int(x) for x in line.split())
                log.append((t0, t1))
        if len(stamps) != len(log):
            raise SystemExit("turso: %d stamps in the segments for %d commits the writer logged (log: %s)"
                             % (len(stamps), len(log), sidecar_log_tail(run.sidecar_log)))
        return ([s - t1 for s, (t0, t1) in zip(stamps, log)], [s - t0 for s, (t0, t1) in zip(stamps, log)],
                [t0 >= log[0][0] + 1000 for t0, _ in log])
    finally:
        run.remove()


def scenario_rpo(bench, trials, scale):
    """Scenario 1 on the Turso engine: kill -9 of the writer and of tidemark
    at random moments, the database deleted, the latest point restored
    from each replica; loss in ms per trial. Then the stamps."""
    version = engine_version()
    if version is None:
        print("  (the Turso engine is not installed in tests/integration/node_modules: not measured; "
              "HINT: scripts/install-deps)", flush=True)
        return None
    print("  @tursodatabase/database %s, experimental: ['multiprocess_wal']; single-row writer at %d txn/s, "
          "sync-interval 1 s; %s" % (version, RATE, "file and S3 replicas" if bench.endpoint else "file replica"),
          flush=True)
    print("  " + LITESTREAM_NOTE, flush=True)
    work = bench.workdir("turso-rpo-template")
    template = os.path.join(work, "template.db")
    create_db(template)
    replicas = ("file", "s3") if bench.endpoint else ("file",)
    results = []
    try:
        for trial in range(trials):
            run = TursoRun(bench, template, "tidemark", "turso-rpo-%d" % trial, s3_prefix="turso-rpo-%d" % trial)
            try:
                run.open("single", 120, 0, rate=RATE)
                run.attach()
                run.go()
                time.sleep(random.uniform(2.0, 5.0))
                run.sidecar_alive()
                disaster_ms = int(time.time() * 1000)
                run.writer.send_signal(signal.SIGKILL)
                run.proc.send_signal(signal.SIGKILL)
                run.writer.wait()
                run.proc.wait()
                for suffix in DB_FILES:
                    if os.path.exists(run.db + suffix):
                        os.unlink(run.db + suffix)
                commits = read_log(run.log)
                last = max(commits)
                row = {"trial": trial, "disaster_ms": disaster_ms, "commits": len(commits)}
                for replica in replicas:
                    out = os.path.join(run.work, "restored-%s.db" % replica)
                    row["restore_s_" + replica] = run.restore(out, replica)
                    got, exact = rows_restored(out, FIRST_ID)
                    row["loss_ms_" + replica] = max(0, commits[last] - commits[got]) if got in commits \
                        else commits[last] - min(commits.values())
                    row["lost_txns_" + replica] = last - got
                    row["exact_" + replica] = exact
            finally:
                run.remove()
            results.append(row)
            print("  turso RPO trial %2d: %d commits, lost %d ms (file)%s, %s ms (s3)%s"
                  % (trial + 1, len(commits), row["loss_ms_file"], "" if row["exact_file"] else " NOT AN EXACT PREFIX",
                     row.get("loss_ms_s3", "-"), "" if row.get("exact_s3", True) else " NOT AN EXACT PREFIX"),
                  flush=True)
        summary = {"engine_version": version, "trials": trials, "rate": RATE, "sync_interval_ms": 1000,
                   "trial_rows": results}
        for replica in replicas:
            losses = [r["loss_ms_" + replica] for r in results]
            summary[replica] = {"p50_ms": percentile(losses, 50), "p99_ms": percentile(losses, 99),
                                "max_ms": max(losses), "exact": all(r["exact_" + replica] for r in results)}
        tool = build_stamps_tool()
        if tool:
            try:
                after_t1, after_t0, steady = stamp_delays(bench, tool, template, max(5.0, 10 * scale))
            finally:
                os.unlink(tool)
            later = [d for d, s in zip(after_t1, steady) if s]
            summary["stamps"] = {"commits": len(after_t1), "after_commit_p50_ms": percentile(after_t1, 50),
                                 "after_commit_p99_ms": percentile(after_t1, 99), "after_commit_max_ms": max(after_t1),
                                 "after_begin_max_ms": max(after_t0), "after_begin_min_ms": min(after_t0),
                                 "later_commits": len(later), "later_p50_ms": percentile(later, 50),
                                 "later_p99_ms": percentile(later, 99), "later_max_ms": max(later or [0])}
            s = summary["stamps"]
            print("  turso stamps: %d commits stamped %.0f / %.0f / %.0f ms (p50 / p99 / max) after COMMIT returned; "
                  "at most %d ms after BEGIN, at least %d; the %d begun 1 s or more after the first: %.0f / %.0f / "
                  "%.0f ms" % (s["commits"], s["after_commit_p50_ms"], s["after_commit_p99_ms"],
                               s["after_commit_max_ms"], s["after_begin_max_ms"], s["after_begin_min_ms"],
                               s["later_commits"], s["later_p50_ms"], s["later_p99_ms"], s["later_max_ms"]),
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary


# ------------------------------------------------------------- printing

def print_turso_table(r):
    """The Turso engine's figures: alone, beside tidemark, the ratio."""
    o, p = r.get("turso_overhead"), r.get("turso_rpo")
    if not o and not p:
        return
    version = (o or p)["engine_version"]
    lines = [("Turso engine %s, multiprocess_wal (medians)" % version, "alone", "tidemark", "tidemark / alone")]
    for mode, w in (o or {}).get("writers", {}).items():
        lines.append(("%s writer, txn/s (goal >= 97 %% of alone)" % mode, "%.0f" % w["alone"]["txn_per_s"],
                      "%.0f (%.1f %%)%s" % (w["tidemark"]["txn_per_s"], 100 * w["tidemark"]["ratio"], checked_text(w)),
                      "%.2f" % w["tidemark"]["ratio"]))
        lines.append(("  sidecar CPU-s to ship a %.0f s run (us per txn)" % w["seconds_each"], "",
                      "%.2f (%.1f)" % (w["tidemark"]["cpu_s"], w["tidemark"]["cpu_us_per_txn"]), ""))
        lines.append(("  sidecar peak RSS (MiB)", "", "%.1f" % (w["tidemark"]["peak_rss_kib"] / 1024), ""))
        lines.append(("  largest WAL (MB)", "%.1f" % (w["alone"]["largest_wal_bytes"] / 1e6),
                      "%.1f" % (w["tidemark"]["largest_wal_bytes"] / 1e6),
                      "%.2f" % ratio(w["tidemark"]["largest_wal_bytes"], w["alone"]["largest_wal_bytes"])))
    c = (o or {}).get("checkpoints")
    if c:
        f = lambda d: "%.0f / %.0f / %.0f ms, %d of %d busy%s" % (d["p50_ms"], d["p99_ms"], d["max_ms"], d["busy"],
                                                                 d["calls"], ", %d failed" % d["failed"]
                                                                 if d["failed"] else "")
        lines.append(("app TRUNCATE every ~200 ms at %d txn/s: p50 / p99 / max" % c["rate"], f(c["alone"]),
                      f(c["tidemark"]) + checked_text(c),
                      "%d busy" % c["tidemark"]["busy"]))
        lines.append(("  writer's transactions per %.0f s run (%d txn/s asked)" % (c["seconds_each"], c["rate"]),
                      " ".join("%d" % n for n in c["alone"]["transactions"]),
                      " ".join("%d" % n for n in c["tidemark"]["transactions"]), ""))
        lines.append(("  largest WAL (MB)", "%.1f" % (c["alone"]["largest_wal_bytes"] / 1e6),
                      "%.1f" % (c["tidemark"]["largest_wal_bytes"] / 1e6), ""))
    for replica in ("file", "s3"):
        if p and replica in p:
            s = p[replica]
            lines.append(("RPO %s at kill -9: p50 / p99 / max ms (%d trials, %d txn/s)" % (replica, p["trials"], p["rate"]),
                          "", "%.0f / %.0f / %.0f%s" % (s["p50_ms"], s["p99_ms"], s["max_ms"],
                                                        "" if s["exact"] else " NOT EXACT"),
                          "p99 %.2fx sync-interval (target <= %d ms)" % (s["p99_ms"] / p["sync_interval_ms"],
                                                                        p["sync_interval_ms"] + 500)))
    s = (p or {}).get("stamps")
    if s:
        lines.append(("stamped after COMMIT returned: p50 / p99 / max ms (%d commits)" % s["commits"], "",
                      "%.0f / %.0f / %.0f" % (s["after_commit_p50_ms"], s["after_commit_p99_ms"],
                                              s["after_commit_max_ms"]),
                      "min after BEGIN %d ms (never < 0)" % s["after_begin_min_ms"]))
        lines.append(("  the %d begun 1 s or more after the first" % s["later_commits"], "",
                      "%.0f / %.0f / %.0f" % (s["later_p50_ms"], s["later_p99_ms"], s["later_max_ms"]), ""))
    widths = [max(len(str(l[c])) for l in lines) for c in range(4)]
    print()
    for l in lines:
        print("  ".join(str(l[c]).ljust(widths[c]) for c in range(4)))
    print("(" + LITESTREAM_NOTE + ")")
