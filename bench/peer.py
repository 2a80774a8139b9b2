"""The peer comparison of make bench: the same application writer
(bench/app_writer.py) on copies of the same starting database, alone,
beside tidemark and beside Litestream 0.3.13 (bench/package-lock.json),
each sidecar shipping to a file replica with a 1 s sync interval, in the
same run. Runs are interleaved (alone, tidemark, Litestream, alone, ...)
and figures are medians: the machine is shared and noisy.

Each run gets its own copy of the starting database: Litestream writes
_litestream_seq and _litestream_lock tables into the database it
follows, so tidemark never follows a file Litestream has touched.

Figures: the writer's throughput (a realistic writer and a single-row
writer), the sidecar's CPU seconds and peak RSS over the run, the
application's checkpoint latency (TRUNCATE every ~200 ms, busy_timeout
5000; PASSIVE, FULL and RESTART in a second run), rows lost at kill -9 of
the sidecar under the writer, and the restore time of the latest point.
"""
import glob, json, os, random, shutil, signal, statistics, subprocess, time

from bench import (HERE, SIDECARS, TIDEMARK, build_db, cpu_seconds, peak_rss_kib, percentile, read_log,
                   run_sampled, spool_empty, start_sidecar, wait_for)

APP_WRITER = os.path.join(HERE, "app_writer.py")
LITESTREAM = os.path.join(HERE, "node_modules", "@flydotio", "litestream-linux-x64", "litestream")
KINDS = ("alone", "tidemark", "litestream")
FIRST_ID = 10**7          # rows the writer inserts start here, above the starting database's
RATE = 500                # txn/s of the paced runs (checkpoints, kill -9)


def litestream_installed():
    return os.access(LITESTREAM, os.X_OK)


class Run:
    """One run: a copy of the starting database in its own directory, and
    the sidecar of `kind` (none for "alone") shipping it to DIR/backup."""

    def __init__(self, bench, template, kind, name):
        self.bench, self.kind = bench, kind
        self.work = bench.workdir(name)
        self.db = os.path.join(self.work, "app.db")
        shutil.copyfile(template, self.db)
        self.proc = None
        self.config = None

    def start(self):
        if self.kind == "tidemark":
            self.config = self.bench.config(self.work)
            self.proc = start_sidecar(self.config, os.path.join(self.work, "sidecar.log"))
            shipped = lambda: os.path.isdir(os.path.join(self.work, "backup", "app"))
        elif self.kind == "litestream":
            self.config = os.path.join(self.work, "litestream.yml")
            with open(self.config, "w") as f:
                f.write("dbs:\n  - path: %s\n    replicas:\n      - type: file\n        path: %s/backup\n"
                        "        sync-interval: 1s\n" % (self.db, self.work))
            log = open(os.path.join(self.work, "sidecar.log"), "ab")
            self.proc = subprocess.Popen([LITESTREAM, "replicate", "-config", self.config], stdout=log, stderr=log)
            SIDECARS.append(self.proc)
            shipped = lambda: glob.glob(os.path.join(self.work, "backup", "generations", "*", "snapshots", "*"))
        else:
            return
        if not wait_for(shipped, 60):
            raise SystemExit("peer: %s made no first snapshot in 60 s (see %s/sidecar.log)" % (self.kind, self.work))
        self.wait_quiet(0.5)

    def wait_quiet(self, window, timeout=120):
        """Until the sidecar has done its work: no CPU used for `window`
        seconds (more than a sync interval once a writer has run: then
        everything has been shipped) and, for tidemark, its spool empty."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            before = cpu_seconds(self.proc.pid)
            time.sleep(window)
            if cpu_seconds(self.proc.pid) - before < 0.01 * window and \
                    (self.kind != "tidemark" or spool_empty(self.work)):
                return
        raise SystemExit("peer: %s still busy %d s after the writer stopped" % (self.kind, timeout))

    def cpu(self):
        return cpu_seconds(self.proc.pid) if self.proc else 0.0

    def peak_rss_kib(self):
        return peak_rss_kib(self.proc.pid) if self.proc else 0

    def write(self, mode, seconds, update_rows, rate=0, checkpoint_modes=None):
        """Runs the application writer; returns its summary."""
        summary = os.path.join(self.work, "writer.json")
        args = [APP_WRITER, self.db, os.path.join(self.work, "commits.log"), "--mode", mode, "--seconds",
                str(seconds), "--start", str(FIRST_ID), "--update-rows", str(update_rows), "--rate", str(rate),
                "--summary", summary]
        if checkpoint_modes:
            args += ["--checkpoint-every-ms", "200", "--checkpoint-modes", checkpoint_modes]
        subprocess.run(args, check=True)
        with open(summary) as f:
            return json.load(f)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait()

    def restore(self, out):
        """Restores the latest point to `out`: (seconds, peak RSS KiB, output)."""
        if self.kind == "tidemark":
            args = [TIDEMARK, "restore", "-c", self.config, "app", "-o", out, "--replica", "file"]
        else:
            args = [LITESTREAM, "restore", "-config", self.config, "-o", out, self.db]
        seconds, rss, code, text = run_sampled(args)
        if code != 0:
            raise SystemExit("peer: %s restore failed: %s" % (self.kind, text[-2000:]))
        return seconds, rss, text

    def remove(self):
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def kinds():
    return KINDS if litestream_installed() else KINDS[:2]


def starting_database(bench, megabytes):
    """The starting database every run copies: (path, rows)."""
    work = bench.workdir("peer-template-%d" % megabytes)
    path = os.path.join(work, "template.db")
    return path, build_db(path, megabytes)


def median(values):
    return statistics.median(values) if values else 0.0


def ratio(a, b):
    return a / b if b else 0.0


# ----------------------------------------------------------- throughput

def throughput(bench, template, rows, mode, rounds, seconds):
    """Interleaved runs of one writer: per kind, the medians of txn/s, the
    sidecar's CPU seconds and peak RSS over the run, and the largest WAL."""
    runs = {kind: [] for kind in kinds()}
    for n in range(rounds):
        for kind in kinds():
            run = Run(bench, template, kind, "tput-%s-%s-%d" % (mode, kind, n))
            run.start()
            cpu_before = run.cpu()
            s = run.write(mode, seconds, rows)
            if run.proc:
                run.wait_quiet(1.5)     # everything the writer wrote shipped
            cpu = run.cpu() - cpu_before
            sample = {"txn_per_s": s["transactions"] / s["seconds"], "cpu_s": cpu,
                      "cpu_us_per_txn": 1e6 * cpu / max(1, s["transactions"]),
                      "peak_rss_kib": run.peak_rss_kib(), "largest_wal_bytes": s["largest_wal_bytes"]}
            run.remove()
            runs[kind].append(sample)
            print("  %s writer, round %d, %-10s %8.0f txn/s, sidecar %.2f CPU-s, peak RSS %.1f MiB, WAL up to %.1f MB"
                  % (mode, n + 1, kind + ":", sample["txn_per_s"], sample["cpu_s"], sample["peak_rss_kib"] / 1024,
                     sample["largest_wal_bytes"] / 1e6), flush=True)
    row = {"rounds": rounds, "seconds_each": seconds}
    for kind, samples in runs.items():
        row[kind] = {key: median([s[key] for s in samples]) for key in samples[0]}
        row[kind]["runs"] = samples
    for kind in kinds()[1:]:
        row[kind]["ratio"] = ratio(row[kind]["txn_per_s"], row["alone"]["txn_per_s"])
    return row


def scenario_overhead(bench, rounds, seconds, megabytes):
    """Scenario 3: writer throughput alone, beside tidemark and beside
    Litestream, for the realistic and the single-row writer. The keys of
    the old scenario (solo_txn_per_s, with_sidecar_txn_per_s, ratio) hold
    the realistic writer's medians."""
    if not litestream_installed():
        print("  (Litestream is not installed: run make bench, or BENCH_PEERS=1 scripts/install-deps)")
    print("  interleaved runs (%s), %d rounds of %.0f s, medians: the machine is noisy"
          % (", ".join(kinds()), rounds, seconds), flush=True)
    template, rows = starting_database(bench, megabytes)
    database_bytes = os.path.getsize(template)
    writers = {mode: throughput(bench, template, rows, mode, rounds, seconds) for mode in ("realistic", "single")}
    shutil.rmtree(os.path.dirname(template), ignore_errors=True)
    real = writers["realistic"]
    row = {"solo_txn_per_s": real["alone"]["txn_per_s"], "with_sidecar_txn_per_s": real["tidemark"]["txn_per_s"],
           "ratio": real["tidemark"]["ratio"], "runs": rounds, "seconds_each": seconds,
           "database_bytes": database_bytes, "writers": writers}
    if "litestream" in real:
        row["litestream_txn_per_s"] = real["litestream"]["txn_per_s"]
        row["litestream_ratio"] = real["litestream"]["ratio"]
    for mode, w in writers.items():
        print("  %s writer: alone %.0f txn/s, beside tidemark %.0f (%.1f %%), beside Litestream %s"
              % (mode, w["alone"]["txn_per_s"], w["tidemark"]["txn_per_s"], 100 * w["tidemark"]["ratio"],
                 "%.0f (%.1f %%)" % (w["litestream"]["txn_per_s"], 100 * w["litestream"]["ratio"])
                 if "litestream" in w else "-"), flush=True)
    print("  goal: tidemark >= 97 % of alone", flush=True)
    return row


# ---------------------------------------------------------- checkpoints

def checkpoint_latency(bench, template, rows, modes, rounds, seconds):
    """The application's checkpoints (every ~200 ms, busy_timeout 5000)
    under the realistic writer at RATE txn/s: per kind and mode, p50 / p99
    / max ms, calls, and calls that returned busy (or failed)."""
    calls = {kind: [] for kind in kinds()}
    for n in range(rounds):
        for kind in kinds():
            run = Run(bench, template, kind, "ckpt-%s-%d" % (kind, n))
            run.start()
            s = run.write("realistic", seconds, rows, rate=RATE, checkpoint_modes=",".join(modes))
            run.remove()
            calls[kind] += s["checkpoints"]
            done = s["checkpoints"]
            print("  checkpoints %s, round %d, %-10s %d calls, max %.0f ms, %d busy; %d txns, WAL up to %.1f MB"
                  % ("/".join(modes), n + 1, kind + ":", len(done), max([c[1] for c in done] or [0]),
                     sum(1 for c in done if c[2] != 0), s["transactions"], s["largest_wal_bytes"] / 1e6), flush=True)
    row = {}
    for kind, made in calls.items():
        row[kind] = {}
        for mode in modes:
            ms = [c[1] for c in made if c[0] == mode]
            row[kind][mode] = {"calls": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                               "max_ms": max(ms or [0]), "busy": sum(1 for c in made if c[0] == mode and c[2] == 1),
                               "failed": sum(1 for c in made if c[0] == mode and c[2] == -1)}
    return row


# --------------------------------------------------------- kill -9, RTO

def rows_restored(path):
    """(largest id the writer inserted that the restore holds, whether
    every id from FIRST_ID up to it is there)."""
    import sqlite3
    db = sqlite3.connect(path)
    top, count = db.execute("SELECT max(id), count(*) FROM t WHERE id >= ?", (FIRST_ID,)).fetchone()
    db.close()
    return (top or FIRST_ID - 1), (count == (top or FIRST_ID - 1) - FIRST_ID + 1)


def integrity_check_seconds(path):
    started = time.time()
    out = subprocess.run(["sqlite3", path, "PRAGMA integrity_check"], capture_output=True, text=True).stdout
    if out.strip() != "ok":
        raise SystemExit("peer: restored database %s fails integrity_check: %s" % (path, out[:500]))
    return time.time() - started


def kill_and_restore(bench, template, rows, trials):
    """Per trial and sidecar: the realistic writer at RATE txn/s, the
    sidecar killed -9 after 3-6 s (the writer killed at once after it),
    the latest point restored from the file replica: rows lost against
    the writer's log, ms of commits lost, restore wall time."""
    results = {kind: [] for kind in kinds()[1:]}
    rng = random.Random(11)
    for n in range(trials):
        for kind in kinds()[1:]:
            run = Run(bench, template, kind, "kill-%s-%d" % (kind, n))
            run.start()
            log = os.path.join(run.work, "commits.log")
            writer = subprocess.Popen([APP_WRITER, run.db, log, "--seconds", "60", "--start", str(FIRST_ID),
                                       "--update-rows", str(rows), "--rate", str(RATE),
                                       "--summary", os.path.join(run.work, "writer.json")])
            time.sleep(rng.uniform(3.0, 6.0))
            run.proc.send_signal(signal.SIGKILL)
            writer.send_signal(signal.SIGKILL)
            run.proc.wait()
            writer.wait()
            commits = read_log(log)
            last = max(commits)
            out = os.path.join(run.work, "restored.db")
            seconds, rss, _ = run.restore(out)
            got, exact = rows_restored(out)
            check_s = integrity_check_seconds(out)
            sample = {"rows_lost": last - got, "ms_lost": commits[last] - commits[got] if got in commits
                      else commits[last] - min(commits.values()), "exact_prefix": exact, "committed": len(commits),
                      "restore_s": seconds, "restore_rss_kib": rss, "integrity_check_s": check_s,
                      "database_bytes": os.path.getsize(out)}
            results[kind].append(sample)
            run.remove()
            print("  kill -9 trial %d, %-10s %d rows committed, %d lost (%d ms)%s; restore %.2f s (+ integrity_check "
                  "%.2f s)" % (n + 1, kind + ":", sample["committed"], sample["rows_lost"], sample["ms_lost"],
                               "" if exact else ", NOT AN EXACT PREFIX", seconds, check_s), flush=True)
    row = {}
    for kind, samples in results.items():
        lost = [s["rows_lost"] for s in samples]
        row[kind] = {"trials": len(samples), "rows_lost_p50": median(lost), "rows_lost_max": max(lost),
                     "ms_lost_p50": median([s["ms_lost"] for s in samples]),
                     "ms_lost_max": max(s["ms_lost"] for s in samples),
                     "exact": all(s["exact_prefix"] for s in samples),
                     "restore_s": median([s["restore_s"] for s in samples]),
                     "restore_rss_kib": median([s["restore_rss_kib"] for s in samples]),
                     "integrity_check_s": median([s["integrity_check_s"] for s in samples]),
                     "database_bytes": median([s["database_bytes"] for s in samples]), "samples": samples}
    return row


def scenario_peer(bench, scale, megabytes):
    """Scenario 8: the application's checkpoint latency, rows lost at
    kill -9 and restore time, alone / beside tidemark / beside Litestream."""
    if not litestream_installed():
        print("  (Litestream is not installed: only tidemark and the writer alone are measured; "
              "HINT: make bench, or BENCH_PEERS=1 scripts/install-deps)")
    print("  interleaved runs (%s), medians: the machine is noisy" % ", ".join(kinds()), flush=True)
    template, rows = starting_database(bench, megabytes)
    seconds = max(6.0, 10 * scale)
    row = {"rate": RATE, "database_bytes": os.path.getsize(template), "seconds_each": seconds,
           "checkpoints": checkpoint_latency(bench, template, rows, ["TRUNCATE"], 2, seconds)}
    other = checkpoint_latency(bench, template, rows, ["PASSIVE", "FULL", "RESTART"], 1, seconds)
    for kind in other:
        row["checkpoints"][kind].update(other[kind])
    row["kill"] = kill_and_restore(bench, template, rows, trials=max(3, int(5 * scale)))
    shutil.rmtree(os.path.dirname(template), ignore_errors=True)
    return row


# ------------------------------------------------------------- printing

def print_peer_table(r):
    """tidemark against Litestream: every figure, and tidemark / Litestream."""
    o, p = r.get("overhead", {}), r.get("peer", {})
    if "writers" not in o and not p:
        return
    lines = [("peer comparison (medians of interleaved runs)", "alone", "tidemark", "Litestream", "tidemark/Litestream")]
    fmt = lambda kind, d, f: f(d[kind]) if kind in d else "-"
    rat = lambda kind_d, key: "%.2f" % ratio(kind_d["tidemark"][key], kind_d["litestream"][key]) \
        if "litestream" in kind_d and kind_d["litestream"][key] else "-"
    for mode, w in o.get("writers", {}).items():
        pct = lambda d: "%.0f (%.1f %%)" % (d["txn_per_s"], 100 * d["ratio"])
        lines.append(("%s writer, txn/s (%% of alone; goal tidemark >= 97 %%)" % mode, "%.0f" % w["alone"]["txn_per_s"],
                      pct(w["tidemark"]), fmt("litestream", w, pct), rat(w, "txn_per_s")))
        lines.append(("  sidecar CPU-s to ship a %.0f s run (us per txn)" % w["seconds_each"], "",
                      "%.2f (%.1f)" % (w["tidemark"]["cpu_s"], w["tidemark"]["cpu_us_per_txn"]),
                      fmt("litestream", w, lambda d: "%.2f (%.1f)" % (d["cpu_s"], d["cpu_us_per_txn"])),
                      rat(w, "cpu_s")))
        lines.append(("  sidecar peak RSS (MiB)", "", "%.1f" % (w["tidemark"]["peak_rss_kib"] / 1024),
                      fmt("litestream", w, lambda d: "%.1f" % (d["peak_rss_kib"] / 1024)), rat(w, "peak_rss_kib")))
        lines.append(("  largest WAL (MB)", "%.1f" % (w["alone"]["largest_wal_bytes"] / 1e6),
                      "%.1f" % (w["tidemark"]["largest_wal_bytes"] / 1e6),
                      fmt("litestream", w, lambda d: "%.1f" % (d["largest_wal_bytes"] / 1e6)),
                      rat(w, "largest_wal_bytes")))
    c = p.get("checkpoints", {})
    for mode in ("TRUNCATE", "PASSIVE", "FULL", "RESTART"):
        if mode not in c.get("alone", {}):
            continue
        f = lambda d: "%.0f / %.0f / %.0f, %d of %d busy" % (d[mode]["p50_ms"], d[mode]["p99_ms"], d[mode]["max_ms"],
                                                             d[mode]["busy"] + d[mode]["failed"], d[mode]["calls"])
        lines.append(("app %s checkpoint p50 / p99 / max ms" % mode, f(c["alone"]), f(c["tidemark"]),
                      fmt("litestream", c, f),
                      "%.2f (p99)" % ratio(c["tidemark"][mode]["p99_ms"], c["litestream"][mode]["p99_ms"])
                      if "litestream" in c and c["litestream"][mode]["p99_ms"] >= 1.0 else "-"))
    k = p.get("kill", {})
    if "tidemark" in k:
        f = lambda d: "%.0f / %.0f rows (%.0f / %.0f ms)%s" % (d["rows_lost_p50"], d["rows_lost_max"], d["ms_lost_p50"],
                                                               d["ms_lost_max"], "" if d["exact"] else " NOT EXACT")
        lines.append(("lost at kill -9, p50 / max (%d trials, %d txn/s)" % (k["tidemark"]["trials"], p["rate"]), "",
                      f(k["tidemark"]), fmt("litestream", k, f),
                      "%.2f (p50 rows)" % ratio(k["tidemark"]["rows_lost_p50"], k["litestream"]["rows_lost_p50"])
                      if "litestream" in k and k["litestream"]["rows_lost_p50"] else "-"))
        f = lambda d: "%.2f (+ check %.2f)" % (d["restore_s"], d["integrity_check_s"])
        lines.append(("restore latest, %.0f MB: s (tidemark checks; + integrity_check)"
                      % (k["tidemark"]["database_bytes"] / 1e6), "", "%.2f" % k["tidemark"]["restore_s"],
                      fmt("litestream", k, f),
                      "%.2f (vs Litestream + check)" % ratio(k["tidemark"]["restore_s"], k["litestream"]["restore_s"]
                                                            + k["litestream"]["integrity_check_s"])
                      if "litestream" in k else "-"))
    widths = [max(len(str(l[c])) for l in lines) for c in range(5)]
    print()
    for l in lines:
        print("  ".join(str(l[c]).ljust(widths[c]) for c in range(5)))
    print("(Litestream 0.3.13; file replicas, sync-interval 1 s; each run on its own copy of the same starting "
          "database; medians because the machine is noisy)")
