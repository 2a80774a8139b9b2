"""Scenario 9 of make bench (`--only restore`): the restore time (the RTO)
of tidemark against the least a checked restore must do, and against
Litestream 0.3.13, at several sizes, in one run (issue 22).

Per size (BENCH_RESTORE_MB, default "256"; the issue's run is
"256,1024,4096", which CI never runs):
  - a database built by SQLite itself (bench.build_db), then aged by
    heavy updates (an index on length(big), every 7th row grown, so pages split and move to the
    end of the file; every 53rd row deleted) and checkpointed;
  - two copies of it: tidemark follows one (file replica and the S3
    server of the tests), Litestream 0.3.13 the other (file replica,
    sync-interval 1 s). Each makes its first snapshot, then gets the SAME
    updates (transactions of 50 random rows, seeded: tidemark's copy for
    BENCH_RESTORE_UPDATE_SECONDS, default 10, Litestream's the same
    number of transactions), so the latest point needs a replay; each
    sidecar ships everything and is stopped. tidemark runs with its
    default `wal-ratio` (a new snapshot once the WAL shipped reaches the
    database's size), so its replay is anything from none to about the
    database's size, depending on where that snapshot fell: the table says
    how many objects it read after its snapshot. BENCH_RESTORE_WAL_RATIO
    sets the ratio (`off`: every update replayed, as Litestream, which
    takes no snapshot of its own in those seconds; the worst case, and the
    same from run to run);
  - the baseline: zstd -d of a zstd -1 copy of the final image (made
    beforehand, not timed) + PRAGMA integrity_check (Debian's sqlite3);
  - restores of the latest point: tidemark from each replica with
    --integrity-check full, quick and none (a tidemark without the option
    restores once, "full" being what it does, the others n/a), and
    Litestream's; wall time, peak RSS (/usr/bin/time %M: the restore's
    own, not the forking Python's), and tidemark's `phases:` line when it
    prints one. Rounds are interleaved (BENCH_RESTORE_ROUNDS, default 3
    up to 256 MB, else 1); figures are medians. Before every timed run,
    each tool's alike, a file of 1.25x the database is written and
    deleted, untimed (warm_memory: this VM hands freed memory back to its
    host, and the next writer of the page cache paid for it).
BENCH_RESTORE_WITH=PATH restores with another tidemark binary (a branch's
build, say) from the replicas this tree's tidemark made: before and after
a change of the restore, on the same replicas.
Every restore is checked exact: row count and sqlite3's .sha3sum of the
content equal the source's (the source database itself once its writer
stopped and its sidecar shipped everything), and the restores that did
not run integrity_check themselves pass it afterwards (not timed).
"""
import glob, os, random, re, shutil, signal, sqlite3, statistics, subprocess, tempfile, time

from bench import (SIDECARS, TIDEMARK, build_db, cpu_seconds, objects_read, run_sampled, start_sidecar,
                   wait_for, wait_until_quiet)
import peer

CHECKS = ("full", "quick", "none")
SEED = 22
GNU_TIME = "/usr/bin/time"
BIG_WAIT = 3600      # seconds a sidecar may take to snapshot or ship a 4 GiB database


def sizes_mb():
    text = os.environ.get("BENCH_RESTORE_MB", "256")
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit("BENCH_RESTORE_MB: '%s' is not a comma-separated list of megabytes" % text)
    if not sizes or min(sizes) < 1:
        raise SystemExit("BENCH_RESTORE_MB: '%s' names no size of at least 1 MB" % text)
    return sizes


def restorer():
    """The tidemark binary that restores (BENCH_RESTORE_WITH, else ours)."""
    path = os.environ.get("BENCH_RESTORE_WITH", TIDEMARK)
    if not os.access(path, os.X_OK):
        raise SystemExit("BENCH_RESTORE_WITH: '%s' is not an executable tidemark" % path)
    return path


def restorer_version():
    proc = subprocess.run([restorer(), "version"], capture_output=True, text=True)
    return (proc.stdout.strip().splitlines() or ["?"])[0]


def rounds_for(megabytes):
    if "BENCH_RESTORE_ROUNDS" in os.environ:
        return max(1, int(os.environ["BENCH_RESTORE_ROUNDS"]))
    return 3 if megabytes <= 256 else 1


# ------------------------------------------------------------- databases

def age_database(path):
    """Heavy updates before any sidecar sees the file: an index the later
    updates churn (as an application's would; integrity_check then has
    an index to cross-check, as it does in real databases), grown rows
    split their pages (new pages at the end: the file is no longer in key
    order), deleted rows leave holes. Checkpointed, WAL emptied."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE INDEX t_big_length ON t(length(big))")
    db.execute("BEGIN")
    db.execute("UPDATE t SET big = randomblob(250 + (id * 7919) % 500), "
               "payload = payload || substr(hex(zeroblob(100)), 1, id % 97) WHERE id % 7 = 3")
    db.execute("DELETE FROM t WHERE id % 53 = 0")
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def update_same(path, rows, seconds=None, txns=None):
    """Transactions of 50 updates of random rows, from a fixed seed: for
    `seconds`, or exactly `txns` transactions (then the same updates as an
    earlier call on a copy of the same database). Returns the count."""
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA busy_timeout=30000")
    rng = random.Random(SEED)
    deadline = time.time() + seconds if seconds is not None else None
    done = 0
    while (txns is None or done < txns) and (deadline is None or time.time() < deadline):
        db.execute("BEGIN")
        for _ in range(50):
            db.execute("UPDATE t SET big = ?, payload = payload || 'x' WHERE id = ?",
                       (rng.randbytes(250 + rng.randrange(200)), rng.randint(1, rows)))
        db.execute("COMMIT")
        done += 1
    db.close()
    return done


def content(path, tables=None):
    """(row count of t, sqlite3 .sha3sum of the content): the identity a
    restore must reproduce. `tables`: a LIKE pattern (default: all)."""
    count = subprocess.run(["sqlite3", path, "SELECT count(*) FROM t"], capture_output=True, text=True,
                           check=True).stdout.strip()
    digest = subprocess.run(["sqlite3", path, ".sha3sum" + (" " + tables if tables else "")],
                            capture_output=True, text=True, check=True).stdout.strip()
    return int(count), digest


def sqlite_check(path, pragma="integrity_check"):
    """Seconds PRAGMA `pragma` takes through Debian's sqlite3; exits when
    it does not answer ok."""
    started = time.time()
    out = subprocess.run(["sqlite3", path, "PRAGMA " + pragma], capture_output=True, text=True).stdout
    if out.strip() != "ok":
        raise SystemExit("restore bench: %s of %s: %s" % (pragma, path, out[:500]))
    return time.time() - started


# -------------------------------------------------------------- sidecars

def wait_litestream_quiet(proc, window=2.5, timeout=BIG_WAIT):
    """Until Litestream used no CPU for `window` seconds (more than its
    1 s sync interval: everything written has been shipped)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        before = cpu_seconds(proc.pid)
        time.sleep(window)
        if cpu_seconds(proc.pid) - before < 0.01 * window:
            return
    raise SystemExit("restore bench: Litestream still busy after %d s" % timeout)


def replicate_tidemark(bench, work, rows, megabytes, update_seconds):
    """tidemark follows WORK/app.db (file and S3 replicas): first snapshot,
    then the updates for `update_seconds`. Returns (config, txns)."""
    ratio = os.environ.get("BENCH_RESTORE_WAL_RATIO")
    config = bench.config(work, s3_prefix="restore-%d" % megabytes,
                          extra_db="    snapshot: { wal-ratio: %s }\n" % ratio if ratio else "")
    sidecar = start_sidecar(config, os.path.join(work, "sidecar.log"))
    if not wait_for(lambda: os.path.isdir(os.path.join(work, "backup", "app")), BIG_WAIT):
        raise SystemExit("restore bench: tidemark made no snapshot (see %s/sidecar.log)" % work)
    wait_until_quiet(sidecar.pid, work, timeout=BIG_WAIT)
    txns = update_same(os.path.join(work, "app.db"), rows, seconds=update_seconds)
    wait_until_quiet(sidecar.pid, work, timeout=BIG_WAIT)
    sidecar.send_signal(signal.SIGTERM)
    sidecar.wait()
    return config, txns


def replicate_litestream(work, rows, txns):
    """Litestream 0.3.13 follows WORK/app.db (file replica, sync-interval
    1 s): first snapshot, then the same `txns` transactions. Returns its
    configuration."""
    config = os.path.join(work, "litestream.yml")
    with open(config, "w") as f:
        f.write("dbs:\n  - path: %s/app.db\n    replicas:\n      - type: file\n        path: %s/backup\n"
                "        sync-interval: 1s\n" % (work, work))
    log = open(os.path.join(work, "litestream.log"), "ab")
    proc = subprocess.Popen([peer.LITESTREAM, "replicate", "-config", config], stdout=log, stderr=log)
    log.close()
    SIDECARS.append(proc)
    if not wait_for(lambda: glob.glob(os.path.join(work, "backup", "generations", "*", "snapshots", "*")), BIG_WAIT):
        raise SystemExit("restore bench: Litestream made no snapshot (see %s/litestream.log)" % work)
    wait_litestream_quiet(proc)
    update_same(os.path.join(work, "app.db"), rows, txns=txns)
    wait_litestream_quiet(proc)
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    return config


# -------------------------------------------------------------- restores

def timed(args):
    """Runs args: (wall seconds, peak RSS KiB of the command itself, output).
    Exits on failure. Without GNU time (Debian's package "time"), the peak
    is VmHWM sampled every 10 ms (bench.run_sampled)."""
    if not os.access(GNU_TIME, os.X_OK):
        seconds, rss, code, text = run_sampled(args)
        if code != 0:
            raise SystemExit("restore bench: %s failed: %s" % (" ".join(args[:3]), text[-2000:]))
        return seconds, rss, text
    with tempfile.NamedTemporaryFile("r", suffix=".time") as rss_file:
        started = time.time()
        proc = subprocess.run([GNU_TIME, "-f", "%M", "-o", rss_file.name] + args,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.time() - started
        if proc.returncode != 0:
            raise SystemExit("restore bench: %s failed: %s" % (" ".join(args[:3]), proc.stdout[-2000:]))
        rss = rss_file.read().strip().splitlines()
        return seconds, int(rss[-1]) if rss and rss[-1].isdigit() else 0, proc.stdout


def parse_phases(text):
    """The `phases:` line of tidemark restore (issue 22's contract: `phases:
    fetch X.XXs, decrypt+decompress X.XXs, ..., total X.XXs`) as
    {name: seconds}, or None when the restore printed none."""
    line = re.search(r"^\s*phases:(.*)$", text, re.M)
    if not line:
        return None
    return {name: float(value) for name, value in re.findall(r"([a-z+]+) ([0-9.]+)s", line.group(1))}


def warm_memory(out, database_bytes):
    """Untimed, before every timed restore (each tool's alike): writes and
    deletes a file of 1.25 x the database's size next to `out`. This
    machine is a VM whose freed memory goes back to the host a few seconds
    after it is freed; the next writer to touch it pays the host's page
    faults inside its page-cache copies (perf: copy_folio_from_iter_atomic
    at 100 % of a core, sys time 0.7 s -> 1.2-2.1 s for the same 1 GiB
    restore). Without this, whichever restore ran first after a pause was
    up to twice as slow, and the ratios measured the order of the runs."""
    warm = out + ".warm"
    chunk = bytes(1 << 20)
    with open(warm, "wb") as f:
        for _ in range(int(database_bytes * 1.25) // len(chunk) + 1):
            f.write(chunk)
    os.unlink(warm)


def baseline_round(final_zst, out, database_bytes):
    """zstd -d of the compressed final image + integrity_check, timed;
    quick_check of the same file timed apart (for the quick ratio)."""
    warm_memory(out, database_bytes)
    started = time.time()
    subprocess.run(["zstd", "-d", "-q", "-f", final_zst, "-o", out], check=True)
    zstd_s = time.time() - started
    check_s = sqlite_check(out)
    sample = {"seconds": zstd_s + check_s, "zstd_s": zstd_s, "check_s": check_s,
              "quick_check_s": sqlite_check(out, "quick_check")}
    os.unlink(out)
    return sample


def verify(out, truth, checked):
    """The restored file holds the source's rows and content; integrity_check
    (untimed) when the restore did not run it itself."""
    got = content(out)
    if got != truth:
        raise SystemExit("restore bench: %s holds %r, the source %r" % (out, got, truth))
    if not checked:
        sqlite_check(out)


def tidemark_round(config, replica, check, option, out, truth, database_bytes):
    args = [restorer(), "restore", "-c", config, "app", "-o", out, "--replica", replica]
    if option:
        args += ["--integrity-check", check]
    warm_memory(out, database_bytes)
    seconds, rss, text = timed(args)
    verify(out, truth, checked=(check == "full"))
    os.unlink(out)
    return {"seconds": seconds, "peak_rss_kib": rss, "objects": objects_read(text), "phases": parse_phases(text)}


def litestream_round(config, db, out, truth, database_bytes):
    warm_memory(out, database_bytes)
    seconds, rss, _ = timed([peer.LITESTREAM, "restore", "-config", config, "-o", out, db])
    verify(out, truth, checked=False)
    os.unlink(out)
    return {"seconds": seconds, "peak_rss_kib": rss}


def medians(samples):
    """Per key, the median of the samples (phases: per phase)."""
    row = {"runs": samples}
    for key in ("seconds", "peak_rss_kib", "objects", "zstd_s", "check_s", "quick_check_s"):
        if key in samples[0]:
            row[key] = statistics.median(s[key] for s in samples)
    if samples[0].get("phases"):
        row["phases"] = {k: statistics.median(s["phases"].get(k, 0.0) for s in samples) for k in samples[0]["phases"]}
    return row


# -------------------------------------------------------------- scenario

def prepare(bench, megabytes, update_seconds):
    """Builds and replicates one size: a dict of paths and figures."""
    work = bench.workdir("restore-%d" % megabytes)
    template = os.path.join(work, "template.db")
    rows = build_db(template, megabytes)
    age_database(template)
    dirs = {}
    for kind in ("tidemark", "litestream") if peer.litestream_installed() else ("tidemark",):
        dirs[kind] = os.path.join(work, kind)
        os.makedirs(dirs[kind])
        shutil.copyfile(template, os.path.join(dirs[kind], "app.db"))
    os.unlink(template)
    p = {"work": work, "rows": rows}
    p["config"], p["txns"] = replicate_tidemark(bench, dirs["tidemark"], rows, megabytes, update_seconds)
    p["db"] = os.path.join(dirs["tidemark"], "app.db")
    p["truth"] = content(p["db"])
    if "litestream" in dirs:
        p["ls_config"] = replicate_litestream(dirs["litestream"], rows, p["txns"])
        p["ls_db"] = os.path.join(dirs["litestream"], "app.db")
        p["ls_truth"] = content(p["ls_db"])
        if content(p["ls_db"], "t") != content(p["db"], "t"):
            raise SystemExit("restore bench: the two copies differ after the same updates")
    p["final"] = os.path.join(work, "final.db")
    subprocess.run(["sqlite3", p["db"], ".backup '%s'" % p["final"]], check=True)
    subprocess.run(["zstd", "-1", "-q", "-f", p["final"], "-o", p["final"] + ".zst"], check=True)
    p["database_bytes"] = os.path.getsize(p["final"])
    os.unlink(p["final"])
    return p


def scenario_restore(bench, megabytes, update_seconds=None):
    """One size: prepare, then interleaved rounds of every restore."""
    if update_seconds is None:
        update_seconds = float(os.environ.get("BENCH_RESTORE_UPDATE_SECONDS", "10"))
    p = prepare(bench, megabytes, update_seconds)
    help_text = subprocess.run([restorer(), "restore", "--help"], capture_output=True, text=True)
    option = "--integrity-check" in help_text.stdout + help_text.stderr
    replicas = ("file", "s3") if bench.endpoint else ("file",)
    checks = CHECKS if option else ("full",)
    out = os.path.join(p["work"], "restored.db")
    samples = {"baseline": [], "litestream": []}
    for replica in replicas:
        for check in checks:
            samples[replica + "/" + check] = []
    rounds = rounds_for(megabytes)
    for n in range(rounds):
        samples["baseline"].append(baseline_round(p["final"] + ".zst", out, p["database_bytes"]))
        for replica in replicas:
            for check in checks:
                samples[replica + "/" + check].append(tidemark_round(p["config"], replica, check, option, out,
                                                                     p["truth"], p["database_bytes"]))
        if "ls_config" in p:
            samples["litestream"].append(litestream_round(p["ls_config"], p["ls_db"], out, p["ls_truth"],
                                                          p["database_bytes"]))
        print("  restore %d MB, round %d: baseline %.2fs, %s%s" % (
            megabytes, n + 1, samples["baseline"][-1]["seconds"],
            ", ".join("%s %.2fs" % (k, v[-1]["seconds"]) for k, v in samples.items()
                      if k not in ("baseline", "litestream")),
            ", Litestream %.2fs" % samples["litestream"][-1]["seconds"] if samples["litestream"] else ""), flush=True)
    row = {"megabytes": megabytes, "database_bytes": p["database_bytes"], "rows": p["truth"][0],
           "update_seconds": update_seconds, "update_txns": p["txns"], "rounds": rounds,
           "wal_ratio": os.environ.get("BENCH_RESTORE_WAL_RATIO", "default"),
           "integrity_check_option": option, "restored_with": restorer(), "restorer_version": restorer_version(), "exact": True, "baseline": medians(samples["baseline"]), "tidemark": {}}
    for replica in replicas:
        row["tidemark"][replica] = {check: medians(samples[replica + "/" + check]) if check in checks else None
                                    for check in CHECKS}
    if samples["litestream"]:
        row["litestream"] = medians(samples["litestream"])
    shutil.rmtree(p["work"], ignore_errors=True)
    return row


def scenario(bench):
    return [scenario_restore(bench, megabytes) for megabytes in sizes_mb()]


# --------------------------------------------------------------- output

def print_restore_table(r):
    """Per size: every restore's wall time, its ratio to the baseline and to
    Litestream, peak RSS and phases."""
    if not r.get("restore"):
        return
    lines = [("restore of the latest point (medians)", "wall s", "/ baseline", "/ Litestream", "peak RSS MiB",
              "phases (s)")]
    for row in r["restore"]:
        base = row["baseline"]["seconds"]
        ls = row.get("litestream", {}).get("seconds")
        replayed = (row["tidemark"].get("file", {}).get("full") or {}).get("objects")
        lines.append(("%d MB (%.0f MB file, %d update txns, %d round(s)%s%s)"
                      % (row["megabytes"], row["database_bytes"] / 1e6, row["update_txns"], row["rounds"],
                         ", tidemark reads the snapshot and %d object(s) after it" % (replayed - 1)
                         if replayed else "",
                         ", wal-ratio %s" % row["wal_ratio"] if row.get("wal_ratio", "default") != "default" else ""),
                      "", "", "", "", ""))
        lines.append(("  baseline: zstd -d + integrity_check", "%.2f" % base, "1.00", "", "",
                      "zstd -d %.2f, check %.2f (quick_check %.2f)" % (row["baseline"]["zstd_s"],
                                                                        row["baseline"]["check_s"],
                                                                        row["baseline"]["quick_check_s"])))
        for replica, by_check in row["tidemark"].items():
            for check, d in by_check.items():
                name = "  tidemark %s, --integrity-check %s" % (replica, check)
                if d is None:
                    lines.append((name, "n/a", "", "", "", "(option not in this tidemark)"))
                    continue
                target = {"full": " (<= 1.5)", "none": ""}.get(check, "")
                phases = d.get("phases")
                lines.append((name, "%.2f" % d["seconds"], "%.2f%s" % (d["seconds"] / base, target),
                              "%.2f%s" % (d["seconds"] / ls, " (< 1)" if check == "none" else "") if ls else "-",
                              "%.1f%s" % (d["peak_rss_kib"] / 1024, " (<= 64)" if row["megabytes"] >= 4096 else ""),
                              ", ".join("%s %.2f" % kv for kv in phases.items()) if phases else "(no phases line)"))
        if ls:
            lines.append(("  Litestream 0.3.13 file (checks nothing)", "%.2f" % ls, "%.2f" % (ls / base), "1.00",
                          "%.1f" % (row["litestream"]["peak_rss_kib"] / 1024), ""))
    # a size's heading line (nothing but its label) does not widen the first column
    widths = [max(len(l[c]) for l in lines if c > 0 or any(l[1:])) for c in range(6)]
    print()
    for l in lines:
        print("  ".join(l[c].ljust(widths[c]) for c in range(6)).rstrip())
    print("(every restore checked: row count and sqlite3 .sha3sum equal the source's; integrity_check ok)")
