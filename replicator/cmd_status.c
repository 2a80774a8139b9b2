/* cmd_status.c - `tidemark status`: is each database protected right now?
 *
 * For each configured entry the command asks the running sidecar through
 * the entry's control socket ("status", answered with the document of
 * status_wire.h: the state, problems and alerts the sidecar's /healthz
 * and alert rules see, never recomputed here). An entry no sidecar
 * answers for is read from its replicas alone (state "not running").
 * Then each replica of each database is read (the catalog's listings
 * only, and the newest drill record): the restorable window, the newest
 * snapshot, the last drill. Text or --json (status_render.h); --watch
 * repeats every 2 s until interrupted.
 *
 * Exit status: 0 every database selected is protected; 1 one is not
 * (failing, waiting, not running); 3 the sidecar's answer could not be
 * had or read (cannot tell); 2 usage. */
#include "cmd_status.h"

#include "../common/catalog.h"
#include "../common/clock.h"
#include "../common/drill_record.h"
#include "../common/targets.h"
#include "control.h"
#include "status_render.h"
#include "status_wire.h"

#include <fnmatch.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STATUS_TIMEOUT_MS 10000   /* for the sidecar's answer */
#define WATCH_INTERVAL_MS 2000
#define EXIT_NOT_PROTECTED 1
#define EXIT_CANNOT_TELL 3

static const struct cli_option opt_watch = {"watch", 0, NULL, 0, 0,
                                            "refresh every 2 s until interrupted"};
static const struct cli_option *const options[] = {&cli_opt_config, &cli_opt_json, &opt_watch, &cli_opt_verbose,
                                                    NULL};

/* What a NAME (a database, ENTRY/RELPATH, an entry, a glob) selects. */
static int selected(const char *pattern, const char *name, const char *entry)
{
    return !pattern || fnmatch(pattern, name, 0) == 0 || strcmp(pattern, name) == 0 ||
           (entry && (strcmp(pattern, entry) == 0 || fnmatch(pattern, entry, 0) == 0));
}

/* ------------------------------------------------------ the replicas */

/* The window, newest snapshot and last drill of one replica. */
static void read_window(const struct catalog *cat, struct status_replica *r)
{
    for (size_t g = 0; g < cat->generation_count; g++) {
        const struct catalog_generation *gen = &cat->generations[g];
        if (!gen->snapshot_count)
            continue;   /* not restorable */
        int64_t first = gen->snapshots[0].time_ms;
        int64_t newest = catalog_generation_newest_ms(gen);
        if (!r->oldest_ms || first < r->oldest_ms)
            r->oldest_ms = first;
        if (newest > r->newest_ms)
            r->newest_ms = newest;
        int64_t snap = gen->snapshots[gen->snapshot_count - 1].time_ms;
        if (snap > r->snapshot_ms)
            r->snapshot_ms = snap;
    }
}

static void read_replica(const struct config_replica *cfg, const char *db, struct status_replica *r)
{
    struct tm_error err;
    struct storage *st = NULL;
    struct catalog cat;
    char *drill = NULL;
    if (storage_open_replica(cfg, &st, &err) != 0 || catalog_load(st, db, &cat, &err) != 0)
        goto failed;
    read_window(&cat, r);
    catalog_release(&cat);
    if (drill_latest(st, db, &drill, &r->drill_found, &err) != 0)
        goto failed;
    if (r->drill_found)
        drill_record_parse(drill, &r->drill, &err);   /* what could be read is shown */
    free(drill);
    storage_free(st);
    r->archive_read = 1;
    return;
failed:
    snprintf(r->archive_error, sizeof r->archive_error, "%s", err.msg);
    storage_free(st);
}

/* Each replica the configuration names, in its order: the sidecar's
 * record of it when it sent one, else a new one. */
static int read_replicas(const struct config *cfg, struct status_db *db, struct tm_error *err)
{
    const struct config_db *conf = config_find_db(cfg, db->name, err);
    if (!conf)
        return -1;
    for (size_t j = 0; j < conf->replica_count; j++) {
        struct status_replica *r = NULL;
        for (size_t k = 0; k < db->replica_count && !r; k++)
            if (strcmp(db->replicas[k].name, conf->replicas[j].name) == 0)
                r = &db->replicas[k];
        if (!r && !(r = status_db_add_replica(db, conf->replicas[j].name)))
            return tm_error_set(err, "out of memory");
        read_replica(&conf->replicas[j], db->name, r);
    }
    return 0;
}

/* ------------------------------------------------------ gathering */

/* An entry no sidecar answers for: its databases as the replicas know
 * them (a `dir:` entry's: those with backups), state "not running". */
static int add_not_running(const struct config *cfg, const struct config_db *entry, const char *pattern,
                           struct status_list *list, struct tm_error *err)
{
    struct targets found;
    if (targets_select(cfg, entry->name, NULL, &found, err) != 0)
        return entry->dir ? 0 : -1;   /* a directory nothing was backed up from yet */
    int rc = 0;
    for (size_t i = 0; i < found.count && rc == 0; i++) {
        if (!selected(pattern, found.dbs[i]->name, entry->dir ? entry->name : NULL))
            continue;
        struct status_db *db = status_list_add(list, found.dbs[i]->name);
        if (!db) {
            rc = tm_error_set(err, "out of memory");
            break;
        }
        snprintf(db->state, sizeof db->state, "not running");
    }
    targets_release(&found);
    return rc;
}

/* Drops the databases from `from` on that pattern does not select. */
static void keep_selected(struct status_list *list, size_t from, const char *pattern, const char *entry)
{
    size_t kept = from;
    for (size_t i = from; i < list->count; i++) {
        if (selected(pattern, list->dbs[i].name, entry)) {
            list->dbs[kept++] = list->dbs[i];
        } else {
            free(list->dbs[i].replicas);
        }
    }
    list->count = kept;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct status_db *)a)->name, ((const struct status_db *)b)->name);
}

/* One configured entry: asks its sidecar, else reads its replicas.
 * Returns 0; EXIT_NOT_PROTECTED when no sidecar runs for it; or
 * EXIT_CANNOT_TELL with err set. */
static int gather_entry(const struct config *cfg, const struct config_db *entry, const char *pattern,
                        struct status_list *list, struct tm_error *err)
{
    char *document = NULL;
    int no_daemon = 0;
    size_t before = list->count;
    if (control_request_document(entry->state_dir, "status", STATUS_TIMEOUT_MS, &document, &no_daemon, err) != 0) {
        if (!no_daemon)
            return EXIT_CANNOT_TELL;
        if (add_not_running(cfg, entry, pattern, list, err) != 0)
            return EXIT_CANNOT_TELL;
        if (list->count > before)
            return EXIT_NOT_PROTECTED;
        if (pattern && !selected(pattern, entry->name, NULL))
            return 0;
        /* not protected even when nothing was backed up from it yet */
        fprintf(stderr, "no sidecar running for '%s' (and no database backed up from it yet)\n", entry->name);
        list->idle_entries++;
        return EXIT_NOT_PROTECTED;
    }
    int rc = strncmp(document, "error: ", 7) == 0
                 ? tm_error_set(err, "the sidecar of '%s' answered: %s", entry->name, document + 7)
                 : status_wire_parse(document, list, err);
    free(document);
    if (rc != 0)
        return EXIT_CANNOT_TELL;
    for (size_t i = before; i < list->count; i++)
        list->dbs[i].from_sidecar = 1;
    keep_selected(list, before, pattern, entry->dir ? entry->name : NULL);
    qsort(list->dbs + before, list->count - before, sizeof *list->dbs, by_name);   /* a dir: entry's */
    return 0;
}

/* Everything the command shows; 0, EXIT_NOT_PROTECTED when no sidecar
 * runs for an entry, or EXIT_CANNOT_TELL when one could not be asked (its
 * error printed). */
static int gather(const struct config *cfg, const char *pattern, struct status_list *list)
{
    int rc = 0;
    struct tm_error err;
    for (size_t i = 0; i < cfg->db_count; i++) {
        const struct config_db *entry = &cfg->dbs[i];
        if (pattern && !entry->dir && !selected(pattern, entry->name, NULL))
            continue;
        int got = gather_entry(cfg, entry, pattern, list, &err);
        if (got == EXIT_CANNOT_TELL)
            tm_error_print(&err);
        if (got > rc)
            rc = got;
    }
    for (size_t i = 0; i < list->count; i++)
        if (read_replicas(cfg, &list->dbs[i], &err) != 0) {
            tm_error_print(&err);
            rc = EXIT_CANNOT_TELL;
        }
    return rc;
}

/* ------------------------------------------------------ the command */

static int show(const struct config *cfg, const char *pattern, int json, int color)
{
    struct status_list list = {0};
    int rc = gather(cfg, pattern, &list);
    if (rc != EXIT_CANNOT_TELL && !list.count && pattern) {
        fprintf(stderr, "error: no database matches '%s'\n", pattern);
        status_list_release(&list);
        return CLI_USAGE_ERROR;
    }
    int64_t now = clock_now_ms();
    if (json)
        status_render_json(&list, now, stdout);
    else
        status_render_text(&list, now, color, stdout);
    if (rc == 0 && !status_list_protected(&list))
        rc = EXIT_NOT_PROTECTED;
    fflush(stdout);
    status_list_release(&list);
    return rc;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int run(const struct cli_args *args)
{
    struct config *cfg;
    if (cli_load_config(args, CLI_NO_KEYS, &cfg, NULL) != 0)
        return 1;
    int json = cli_flag(args, "json"), watch = cli_flag(args, "watch");
    int terminal = isatty(STDOUT_FILENO);
    int color = terminal && !getenv("NO_COLOR") && !json;
    int rc;
    for (;;) {
        if (watch && terminal)
            fputs("\033[H\033[2J", stdout);   /* home, clear the screen */
        rc = show(cfg, cli_name(args), json, color);
        if (!watch || rc == CLI_USAGE_ERROR)
            break;
        if (!terminal)
            puts("");   /* the refreshes of a pipe, one after the other */
        fflush(stdout);
        sleep_ms(WATCH_INTERVAL_MS);
    }
    cli_release_config(cfg, NULL);
    return rc;
}

const struct cli_command cmd_status = {
    .name = "status",
    .summary = "is each database protected right now",
    .options = options,
    .max_names = 1,
    .description =
        "Asks the running sidecar (through each database's control socket in its state\n"
        "directory) for the state of each database and replica: following, waiting or\n"
        "failing, with the reason /healthz gives, the lag, the spool and the alerts\n"
        "firing; and reads each replica for the restorable window (oldest and newest\n"
        "point), its newest snapshot and the last drill. With no sidecar running it says\n"
        "so and reads the replicas alone (state 'not running'). NAME: a database, a dir:\n"
        "entry, ENTRY/RELPATH or a glob. Colours only on a terminal (not with NO_COLOR).\n"
        "--watch refreshes every 2 s until interrupted. --json: the schema in\n"
        "docs/monitoring.md. Exit status: 0 every database is protected (a sidecar follows\n"
        "it, every replica healthy); 1 one is not; 2 usage; 3 the sidecar could not be\n"
        "asked (cannot tell).\n",
    .run = run,
};
