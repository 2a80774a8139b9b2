/* cmd_restore.c - `tidemark restore`: one database rebuilt as of a point
 * in time (restore.c, redis_restore.c), or every database a glob or a
 * `dir:` entry selects, each into OUTPUT/NAME, to one point in time. */
#include "cmd_restore.h"

#include "../common/clock.h"
#include "../common/fsutil.h"
#include "../common/names.h"
#include "../common/targets.h"
#include "../common/textsafe.h"
#include "restore.h"
#include "sqld.h"

#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct cli_option opt_output = {"output", 'o', "PATH", 0, 0,
                                             "where to write the database (Redis: a new or empty directory); "
                                             "required unless --into-sqld*"};
static const struct cli_option opt_timestamp = {"timestamp", 0, "TIME", 0, 0,
                                                "the point in time (RFC 3339 or Unix seconds); default: latest"};
static const struct cli_option opt_force = {"force", 0, NULL, 0, 0, "replace PATH if it exists"};
static const struct cli_option opt_no_deltas = {"no-deltas", 0, NULL, 0, 0, "replay every segment, use no delta"};
static const struct cli_option opt_format = {"format", 0, "aof|rdb", 0, 0,
                                             "Redis: appendonlydir/ (aof, the default) or dump.rdb (rdb)"};
static const struct cli_option opt_accept_missing_tail = {
    "accept-missing-tail", 0, NULL, 0, 0, "restore what the replica holds when its heads say its end is missing"};
static const struct cli_option opt_into_sqld = {
    "into-sqld", 0, "DB-PATH", 0, 0, "load the result into the STOPPED sqld whose --db-path is DB-PATH"};
static const struct cli_option opt_into_sqld_admin = {
    "into-sqld-admin", 0, "URL", 0, 0, "load the result as a new namespace through a running sqld's admin API"};
static const struct cli_option opt_sqld_url = {"sqld-url", 0, "URL", 0, 0,
                                               "with --into-sqld-admin: sqld's HTTP API, to check the content"};
static const struct cli_option opt_namespace = {"namespace", 0, "NS", 0, 0,
                                                "the sqld namespace (--into-sqld: default 'default')"};
static const struct cli_option opt_integrity_check = {
    "integrity-check", 0, "full|quick|none", 0, 0,
    "SQLite's check of the result: PRAGMA integrity_check (full, the default), quick_check, or none"};
static const struct cli_option *const options[] = {
    &cli_opt_config, &opt_output, &opt_timestamp, &cli_opt_replica, &opt_force, &cli_opt_key_file,
    &opt_integrity_check, &opt_no_deltas, &opt_format, &opt_accept_missing_tail, &opt_into_sqld, &opt_into_sqld_admin, &opt_sqld_url,
    &opt_namespace, &cli_opt_verbose, NULL};

#define EXIT_SKIPPED 3   /* restoring many: a database created after the target */

/* The newer snapshots a restore skipped (restore.h), one line each. */
static void print_skipped(const struct restore_outcome *out)
{
    const char *line = out->skipped;
    for (unsigned i = 0; i < out->skipped_count && *line; i++) {
        size_t len = strcspn(line, "\n");
        printf("  skipped:      %.*s (fell back to an older snapshot)\n", (int)len, line);
        line += len + (line[len] == '\n');
    }
}

/* The `tail:` line (and one line per finding): whether the archive's end
 * was checked against its heads (common/heads.h). */
static void print_tail(const struct restore_outcome *out)
{
    static const char *const labels[] = {
        [RESTORE_TAIL_NO_HEAD] = "not checked: no head (written before heads, or deleted)",
        [RESTORE_TAIL_CHECKED] = "checked: ",
        [RESTORE_TAIL_GAP_ELSEWHERE] = "something is missing, but not in what was restored (the point is complete):",
        [RESTORE_TAIL_ACCEPTED] = "INCOMPLETE, restored what the replica holds (--accept-missing-tail):",
    };
    if (out->tail == RESTORE_TAIL_CHECKED) {
        printf("  tail:         %s%s\n", labels[out->tail], out->tail_note);
        return;
    }
    printf("  tail:         %s\n", labels[out->tail]);
    const char *line = out->tail_note;
    while (out->tail != RESTORE_TAIL_NO_HEAD && *line) {
        size_t len = strcspn(line, "\n");
        printf("                %.*s\n", (int)len, line);
        line += len + (line[len] == '\n');
    }
}

/* How long after committing a commit is stamped (docs/design.md "Commit
 * times", measured by bench/stamp_bound.py), for the reader of `point:`. */
#define STAMP_BOUND "typically 5 ms after committing and at most a sync-interval later"

/* "1.250 s", "3 min 20 s", "2 h 5 min", "3 d 4 h": how far apart two times are. */
static void format_span(int64_t ms, char *buf, size_t len)
{
    if (ms < 60000)
        snprintf(buf, len, "%" PRId64 ".%03d s", ms / 1000, (int)(ms % 1000));
    else if (ms < 3600000)
        snprintf(buf, len, "%" PRId64 " min %" PRId64 " s", ms / 60000, ms / 1000 % 60);
    else if (ms < 86400000)
        snprintf(buf, len, "%" PRId64 " h %" PRId64 " min", ms / 3600000, ms / 60000 % 60);
    else
        snprintf(buf, len, "%" PRId64 " d %" PRId64 " h", ms / 86400000, ms / 3600000 % 24);
}

/* The `target:` line: what was restored for the time asked for, and why. */
static void print_target(const struct restore_options *opts, const struct restore_outcome *out, const char *point)
{
    char target[40], next[40], span[40];
    if (!opts->has_target) {
        printf("  target:       latest (the newest point of the archive)\n");
        return;
    }
    clock_format_ms(opts->target_ms, target, sizeof target);
    const char *what = out->after_snapshot ? "the last commit" : "the snapshot, the last point";
    if (out->next_ms && out->reached_target) {
        clock_format_ms(out->next_ms, next, sizeof next);
        printf("  target:       %s (restored to %s, %s at or before the time asked for; the next commit was "
               "seen at %s)\n", target, point, what, next);
    } else if (out->next_ms) {
        clock_format_ms(out->next_ms, next, sizeof next);
        printf("  target:       %s (restored to %s, %s at or before the time asked for and the end of its "
               "generation; the archive's next point, at %s, is in generation %s)\n", target, point, what, next,
               out->next_generation);
    } else {
        format_span(opts->target_ms - out->point_ms, span, sizeof span);
        printf("  target:       %s (after the archive's end: restored the latest point, %s, %s before the time "
               "asked for)\n", target, point, span);
    }
}

/* The `generation:` line, when there is a choice: which and why. */
static void print_generation_choice(const struct restore_options *opts, const struct restore_outcome *out)
{
    if (out->generation_count < 2)
        return;
    char newest[40];
    clock_format_ms(out->generation_newest_ms, newest, sizeof newest);
    if (opts->has_target)
        printf("  generation:   %s, of %zu: the one whose newest snapshot at or before the target is the newest",
               out->generation, out->generation_count);
    else
        printf("  generation:   %s, of %zu: the one holding the newest commit or snapshot (%s)", out->generation,
               out->generation_count, newest);
    printf("%s\n", out->id_order_differs ? "; its id does not sort last (an id carries the clock of the host "
                                            "when the generation started: that clock was wrong, or stepped back)"
                                          : "");
}

/* The `integrity:` line and the `phases:` line (where the time went;
 * fetch and decrypt+decompress are busy times, summed over the threads). */
static void print_check(const struct restore_options *opts, const struct restore_outcome *out)
{
    static const char *const checks[] = {
        [RESTORE_CHECK_FULL] = "ok (PRAGMA integrity_check",
        [RESTORE_CHECK_QUICK] = "ok (PRAGMA quick_check, --integrity-check quick",
        [RESTORE_CHECK_NONE] = "not checked by SQLite (--integrity-check none",
    };
    printf("  integrity:    %s; size, header and every page written checked)\n", checks[opts->integrity]);
    const struct restore_phases *p = &out->phases;
    printf("phases: fetch %.2fs, decrypt+decompress %.2fs, write %.2fs, fsync %.2fs, check %.2fs, total %.2fs\n",
           p->fetch_us / 1e6, p->decode_us / 1e6, p->write_us / 1e6, p->fsync_us / 1e6, p->check_us / 1e6,
           p->total_us / 1e6);
}

static void print_sqlite_outcome(const struct restore_options *opts, const struct restore_outcome *out)
{
    char point[40], snapshot[40];
    clock_format_ms(out->point_ms, point, sizeof point);
    clock_format_ms(out->snapshot_ms, snapshot, sizeof snapshot);
    char name[1024], output[2 * PATH_MAX];   /* a `dir:` entry's names come from the bucket */
    printf("restored '%s' to %s\n", textsafe(opts->db_name, name, sizeof name),
           textsafe(opts->output, output, sizeof output));
    if (out->after_snapshot)
        printf("  point:        %s (the time the sidecar saw the last commit restored; commits are stamped when "
               "seen, " STAMP_BOUND ": docs/design.md \"Commit times\")\n", point);
    else
        printf("  point:        %s (the snapshot; no transaction after it is included)\n", point);
    print_target(opts, out, point);
    printf("  snapshot:     %s (generation %s)\n", snapshot, out->generation);
    print_skipped(out);
    print_tail(out);
    print_generation_choice(opts, out);
    printf("  transactions: %" PRIu64 " applied after the snapshot, from %" PRIu64 " segment(s) and %" PRIu64
           " delta(s)\n", out->transactions, out->segments, out->deltas);
    printf("  size:         %" PRIu64 " bytes (%u pages of %u)\n", out->bytes, out->pages, out->page_size);
    print_check(opts, out);
}

static void print_redis_outcome(const struct restore_options *opts, const struct restore_outcome *out)
{
    char point[40], snapshot[40], target[40];
    clock_format_ms(out->point_ms, point, sizeof point);
    clock_format_ms(out->snapshot_ms, snapshot, sizeof snapshot);
    char name[1024], output[2 * PATH_MAX];   /* a `dir:` entry's names come from the bucket */
    printf("restored Redis '%s' to %s%s\n", textsafe(opts->db_name, name, sizeof name),
           textsafe(opts->output, output, sizeof output),
           opts->redis_rdb ? "/dump.rdb" : "/appendonlydir (redis-server --appendonly yes --dir DIR)");
    printf("  point:        %s (%s)\n", point, out->after_snapshot ? "arrival time of the last command included"
                                                                   : "the snapshot; no command after it");
    if (opts->has_target) {
        clock_format_ms(opts->target_ms, target, sizeof target);
        printf("  target:       %s\n", target);
    } else {
        printf("  target:       latest\n");
    }
    printf("  snapshot:     %s (generation %s, RDB of %" PRIu64 " bytes, CRC64 checked)\n", snapshot,
           out->generation, out->bytes);
    printf("  commands:     %" PRIu64 " applied after the snapshot, from %" PRIu64 " segment(s)\n",
           out->transactions, out->segments);
    print_skipped(out);
    print_tail(out);
    printf("  check:        %s\n", out->loaded ? "loaded by redis-server" : "not loaded (redis-server not installed)");
}

/* One database: prints its outcome or its error. skip_not_yet: a
 * database whose backups all follow the target is skipped (EXIT_SKIPPED). */
static int restore_one(const struct config_db *db, const struct crypto_keyring *key,
                       const struct restore_options *opts, int skip_not_yet)
{
    struct tm_error err;
    struct restore_outcome out;
    int rc = restore_database(db, key, opts, &out, &err);
    if (rc == RESTORE_NOT_YET && skip_not_yet) {
        char name[1024];
        printf("skipped '%s': it did not exist yet at the target (%s)\n", textsafe(opts->db_name, name, sizeof name),
               err.hint);
        return EXIT_SKIPPED;
    }
    if (rc != 0) {
        tm_error_print(&err);
        fprintf(stderr, "nothing was written at '%s'\n", opts->output);
        return 1;
    }
    if (db->kind == DB_REDIS)
        print_redis_outcome(opts, &out);
    else
        print_sqlite_outcome(opts, &out);
    return 0;
}

/* Creates the directories above OUTPUT/NAME and restores into it. */
static int restore_into_tree(const struct config_db *db, const struct crypto_keyring *key,
                             const struct restore_options *opts)
{
    char output[PATH_MAX], parent[PATH_MAX];
    struct tm_error err;
    snprintf(output, sizeof output, "%s/%s", opts->output, db->name);
    snprintf(parent, sizeof parent, "%s", output);
    *strrchr(parent, '/') = '\0';
    if (fsutil_ensure_private_path(opts->output, parent, &err) != 0) {   /* ours, or refused */
        tm_error_print(&err);
        return 1;
    }
    struct restore_options each = *opts;
    each.db_name = db->name;
    each.output = output;
    return restore_one(db, key, &each, 1);
}

/* Several databases to one point in time (a consistent point across
 * tenants): each into OUTPUT/NAME. Without --timestamp, the point is
 * this command's start. Every database is tried; the exit code says
 * whether all of them were restored. */
static int restore_selected(const struct config *cfg, const struct crypto_keyring *key,
                            const struct restore_options *opts)
{
    struct tm_error err;
    struct targets_iter it;
    if (targets_begin(&it, cfg, opts->db_name, opts->replica, TARGETS_ONE_REPLICA, &err) != 0) {
        tm_error_print(&err);
        return 1;
    }
    struct restore_options at = *opts;
    if (!at.has_target) {
        at.has_target = 1;
        at.target_ms = clock_now_ms();
    }
    char point[64];
    clock_format_ms(at.target_ms, point, sizeof point);
    printf("restoring %zu database(s) matching '%s' to %s into %s/\n", it.selected.count, opts->db_name, point,
           opts->output);
    size_t failed = 0, skipped = 0;
    const struct config_db *db;
    size_t replica;
    while (targets_next(&it, &db, &replica)) {
        int rc = restore_into_tree(db, key, &at);
        skipped += rc == EXIT_SKIPPED;
        failed += rc != 0 && rc != EXIT_SKIPPED;
    }
    printf("%zu of %zu database(s) restored to %s", it.selected.count - failed - skipped, it.selected.count, point);
    if (skipped)
        printf(", %zu skipped (created after it)", skipped);
    printf("%s\n", failed ? "; see the errors above" : "");
    targets_end(&it, &err);
    return failed ? 1 : 0;
}

static int restore_named(const struct config *cfg, const struct crypto_keyring *key,
                         const struct restore_options *opts)
{
    struct tm_error err;
    if (names_is_glob(opts->db_name))
        return restore_selected(cfg, key, opts);
    const struct config_db *db = config_find_db(cfg, opts->db_name, &err);
    if (!db) {
        tm_error_print(&err);
        return 1;
    }
    if (db->dir)
        return restore_selected(cfg, key, opts);
    return restore_one(db, key, opts, 0);
}


/* ---- --into-sqld, --into-sqld-admin (sqld.h) */

/* Where to load the result, when one of the --into-sqld options is given. */
struct sqld_target {
    const char *db_path;     /* --into-sqld: route A */
    const char *admin_url;   /* --into-sqld-admin: route B */
    const char *http_url;    /* --sqld-url */
    const char *ns;          /* --namespace */
};

/* The combinations that make sense; prints the usage error. */
static int check_sqld_options(const struct sqld_target *t, const struct restore_options *opts,
                              const struct cli_args *args)
{
    const char *problem = NULL;
    if (t->db_path && t->admin_url)
        problem = "--into-sqld (a stopped sqld) and --into-sqld-admin (a running one) exclude each other";
    else if (t->admin_url && (!t->http_url || !t->ns))
        problem = "--into-sqld-admin needs --sqld-url (sqld's HTTP API, to check the load) and --namespace NS "
                  "(a new namespace)";
    else if (!t->db_path && !t->admin_url && (t->http_url || t->ns))
        problem = "--sqld-url and --namespace go with --into-sqld or --into-sqld-admin";
    else if (t->db_path && t->http_url)
        problem = "--sqld-url goes with --into-sqld-admin (with --into-sqld sqld is stopped)";
    else if (!t->db_path && !t->admin_url && !opts->output)
        problem = "-o PATH is required (or --into-sqld / --into-sqld-admin)";
    else if ((t->db_path || t->admin_url) && names_is_glob(opts->db_name))
        problem = "--into-sqld and --into-sqld-admin load one database: NAME cannot be a glob";
    else if ((t->db_path || t->admin_url) && opts->force)
        problem = "--force goes with -o (with --into-sqld* nothing is replaced at -o)";
    if (!problem)
        return 0;
    fprintf(stderr, "error: %s\n", problem);
    cli_print_help(args->command, stderr);
    return CLI_USAGE_ERROR;
}

static void print_sqld_replaced(const struct sqld_target *t, const struct sqld_report *rep)
{
    char path[2 * PATH_MAX];
    printf("loaded into sqld: namespace '%s' of %s (sqld stopped)\n", rep->ns, textsafe(t->db_path, path, sizeof path));
    printf("  data:         %s (%" PRIu64 " bytes, page size %u, installed in %" PRId64 " ms)\n",
           textsafe(rep->data_path, path, sizeof path), rep->bytes, rep->page_size, rep->install_ms);
    printf("  replaced:     the old data, data-wal, data-shm, wallog, snapshots/, to_compact/ are in %s (the "
           "damaged database, for undo or its later writes; delete when done)\n",
           textsafe(rep->aside_path, path, sizeof path));
    printf("  next:         start sqld: it rebuilds its replication log from the file under a new log id; "
           "embedded replicas fetch the restored data at their next sync() (no file to delete)\n");
}

static void print_sqld_created(const struct sqld_target *t, const struct sqld_report *rep)
{
    char url[2 * PATH_MAX];
    printf("loaded into sqld: new namespace '%s' through %s\n", rep->ns, textsafe(t->admin_url, url, sizeof url));
    printf("  dump:         %" PRIu64 " bytes, written in %" PRId64 " ms, loaded by sqld in %" PRId64 " ms\n",
           rep->bytes, rep->install_ms, rep->load_ms);
    printf("  check:        %" PRIu64 " table(s), %" PRIu64 " row(s): counts and value lengths equal the restored "
           "file through %s (%" PRId64 " ms)\n", rep->tables_checked, rep->rows_checked,
           textsafe(t->http_url, url, sizeof url), rep->first_query_ms);
    printf("  next:         point the application at it: embedded replicas take the namespace from their sync "
           "URL's first host label (http://%s.HOST:PORT)\n", rep->ns);
}

/* Restores into a private directory (or -o), loads the file into sqld,
 * removes the private copy. */
static int restore_into_sqld(const struct config *cfg, const struct crypto_keyring *key,
                             struct restore_options *opts, const struct sqld_target *t)
{
    struct tm_error err;
    const struct config_db *db = config_find_db(cfg, opts->db_name, &err);
    if (!db)
        goto fail;
    if (db->kind == DB_REDIS || db->dir) {
        tm_error_setc(&err, TM_ERR_REFUSED, "'%s' is not one SQLite database: --into-sqld loads one", opts->db_name);
        goto fail;
    }
    /* refused before the restore's time is spent (checked again when loading) */
    if (t->db_path ? sqld_check_stopped(t->db_path, t->ns, &err) : sqld_check_new_namespace(t->admin_url, t->ns, &err))
        goto fail;
    char scratch[PATH_MAX], output[PATH_MAX];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(scratch, sizeof scratch, "%s/tidemark-restore-XXXXXX", t->db_path ? t->db_path : tmpdir ? tmpdir : "/tmp");
    int own_output = !opts->output;
    if (own_output) {
        if (fsutil_private_dir(scratch, &err) != 0)
            goto fail;
        snprintf(output, sizeof output, "%s/restored.db", scratch);
        opts->output = output;
    }
    int rc = restore_one(db, key, opts, 0);
    if (rc == 0) {
        struct sqld_report rep;
        if (t->db_path ? sqld_replace_stopped(opts->output, t->db_path, t->ns, &rep, &err)
                       : sqld_create_namespace(opts->output, t->admin_url, t->http_url, t->ns, &rep, &err)) {
            tm_error_print(&err);
            rc = 1;
        } else if (t->db_path) {
            print_sqld_replaced(t, &rep);
        } else {
            print_sqld_created(t, &rep);
        }
    }
    if (own_output && fsutil_remove_tree(scratch, &err) != 0)
        tm_error_print(&err);
    return rc;
fail:
    tm_error_print(&err);
    return 1;
}

static int run(const struct cli_args *args)
{
    struct restore_options opts = {.db_name = cli_name(args), .output = cli_value(args, "output"),
                                   .replica = cli_value(args, "replica"), .force = cli_flag(args, "force"),
                                   .no_deltas = cli_flag(args, "no-deltas"),
                                   .accept_missing_tail = cli_flag(args, "accept-missing-tail")};
    const char *format = cli_value(args, "format");
    if (format && strcmp(format, "rdb") != 0 && strcmp(format, "aof") != 0) {
        fprintf(stderr, "error: --format is 'aof' (appendonlydir/, the default) or 'rdb' (dump.rdb)\n");
        cli_print_help(args->command, stderr);
        return CLI_USAGE_ERROR;
    }
    opts.redis_rdb = format && strcmp(format, "rdb") == 0;
    const char *integrity = cli_value(args, "integrity-check");
    if (integrity && restore_integrity_parse(integrity, &opts.integrity) != 0) {
        fprintf(stderr, "error: --integrity-check '%s' is not full, quick or none\n", integrity);
        cli_print_help(args->command, stderr);
        return CLI_USAGE_ERROR;
    }
    if (cli_time(args, "timestamp", &opts.target_ms, &opts.has_target) != 0)
        return CLI_USAGE_ERROR;
    struct sqld_target sqld = {.db_path = cli_value(args, "into-sqld"), .admin_url = cli_value(args, "into-sqld-admin"),
                               .http_url = cli_value(args, "sqld-url"), .ns = cli_value(args, "namespace")};
    int into_sqld = sqld.db_path || sqld.admin_url;
    int usage = check_sqld_options(&sqld, &opts, args);
    if (usage)
        return usage;
    struct config *cfg;
    struct crypto_keyring *key;
    if (cli_load_config(args, CLI_KEYS_TO_READ, &cfg, &key) != 0)
        return 1;
    opts.seen_dir = cfg->state_dir;
    int rc = into_sqld ? restore_into_sqld(cfg, key, &opts, &sqld) : restore_named(cfg, key, &opts);
    cli_release_config(cfg, key);
    return rc;
}

const struct cli_command cmd_restore = {
    .name = "restore",
    .summary = "rebuild database NAME at PATH",
    .options = options,
    .min_names = 1,
    .max_names = 1,
    .description =
        "Rebuilds database NAME as it was at TIME (RFC 3339 such as 2026-11-23T03:15:42Z or\n"
        "2026-11-23T05:15:42+02:00, or Unix seconds); without --timestamp, the latest point.\n"
        "Transactions seen at or before TIME are included. The result is checked with\n"
        "PRAGMA integrity_check before it is moved to PATH (--integrity-check quick: quick_check,\n"
        "none: no SQLite check; its size, header and pages are checked always). PATH must not\n"
        "exist unless --force. A `phases:` line says where the time went.\n"
        "Reads from the first replica that answers, or the one --replica names (0 = first).\n"
        "--key-file FILE (repeatable) adds keys to those of the configuration: the secret key\n"
        "of a pair, or the old keys of backups made before a key rotation.\n"
        "--no-deltas replays every segment instead of jumping over them with deltas (the\n"
        "same result, more objects read; for a damaged delta, or to cross-check).\n"
        "Before anything is written, the archive's end is checked against the generations'\n"
        "heads: when segments or a generation they name are missing, or a head is older than\n"
        "one this host saw, the latest point is refused (an earlier TIME still restores);\n"
        "--accept-missing-tail restores what the replica holds and says what is missing.\n"
        "NAME may be a glob or a `dir:` entry: each database it selects is restored into\n"
        "PATH/NAME, all to the same point in time.\n"
        "For a `redis:` entry PATH is a new or empty directory: it receives appendonlydir/\n"
        "(load it with redis-server --appendonly yes --dir PATH), or with --format rdb a\n"
        "dump.rdb; either is checked by loading it into a private redis-server.\n"
        "Into a self-hosted libSQL server (sqld; docs/runbook.md), instead of -o:\n"
        "--into-sqld DB-PATH [--namespace NS]: with sqld STOPPED (refused while it runs), the\n"
        "restored file replaces DB-PATH/dbs/NS/data (NS: default), its replication log is\n"
        "removed (the old files are kept in DB-PATH/tidemark-replaced/), so that sqld at its\n"
        "next start makes a new log id and embedded replicas resync at their next sync().\n"
        "--into-sqld-admin URL --sqld-url URL --namespace NS: creates the NEW namespace NS\n"
        "(never 'default', never an existing one) on a running sqld on this host through its\n"
        "admin API, from a dump of the restored file, then compares every table's row count\n"
        "and value lengths through the HTTP API; a failed load or check deletes NS again.\n"
        "With -o as well, the restored file is kept at PATH.\n",
    .run = run,
};
