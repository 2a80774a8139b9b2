/* cmd_snapshot.c - `tidemark snapshot`: a base snapshot of one database
 * now. The client side: it asks the running sidecar through its control
 * socket (control.h), or with none running takes the snapshot itself
 * (replicate_run with snapshot_once). */
#include "cmd_snapshot.h"

#include "control.h"
#include "replicate.h"

#include <string.h>

static const struct cli_option opt_timeout = {"timeout", 0, "DURATION", 0, 0,
                                              "how long to wait for every replica (default 1h)"};
static const struct cli_option *const options[] = {&cli_opt_config, &opt_timeout, &cli_opt_verbose, NULL};

/* Asks the running sidecar: a configured database's own control socket,
 * or its directory entry's ("snapshot NAME"). */
static int snapshot_request(const struct config_db *db, int64_t timeout_ms, char *reply, size_t reply_len,
                            int *no_daemon, struct tm_error *err)
{
    if (!db->entry)
        return control_request(db->state_dir, "snapshot", timeout_ms, reply, reply_len, no_daemon, err);
    char command[1024];
    snprintf(command, sizeof command, "snapshot %s", db->name);
    return control_request(db->entry->state_dir, command, timeout_ms, reply, reply_len, no_daemon, err);
}

/* A database this command can snapshot: a SQLite database, not a Redis
 * entry nor a `dir:` entry as a whole. */
static int check_snapshot_target(const struct config_db *db, struct tm_error *err)
{
    if (db->kind == DB_REDIS) {
        tm_error_setc(err, TM_ERR_REFUSED, "'%s' is a Redis entry: its snapshots are full resynchronisations, "
                      "taken by the running sidecar on its schedule", db->name);
        return tm_error_hint(err, "set 'snapshot: { schedule: ... }' or 'snapshot-interval' on the entry");
    }
    if (db->dir || strchr(db->name, '\n'))
        return tm_error_setc(err, TM_ERR_REFUSED, "'%s' is a directory entry: name one of its databases "
                             "(ENTRY/RELATIVE-PATH)", db->name);
    return 0;
}

static int take_snapshot(const struct config *cfg, const struct crypto_keyring *key, const struct config_db *db,
                         int64_t timeout_ms)
{
    struct tm_error err;
    char reply[1024];
    int no_daemon = 0;
    if (snapshot_request(db, timeout_ms, reply, sizeof reply, &no_daemon, &err) == 0) {
        if (strncmp(reply, "stored ", 7) != 0) {
            fprintf(stderr, "%s\n", reply);
            return 1;
        }
        printf("snapshot %s stored on every replica (taken by the running sidecar)\n", reply + 7);
        return 0;
    }
    if (!no_daemon) {
        tm_error_print(&err);
        return 1;
    }
    struct replicate_options opts = {.snapshot_once = db->name, .timeout_ms = timeout_ms};
    int rc = replicate_run(cfg, key, &opts);
    if (rc == 0)
        printf("snapshot of '%s' stored on every replica (no sidecar was running: taken directly)\n", db->name);
    return rc;
}

static int run(const struct cli_args *args)
{
    int64_t timeout_ms = 3600 * 1000;
    int given;
    if (cli_duration(args, "timeout", &timeout_ms, &given) != 0)
        return CLI_USAGE_ERROR;
    struct config *cfg;
    struct crypto_keyring *key;
    if (cli_load_config(args, CLI_KEYS_TO_WRITE, &cfg, &key) != 0)
        return 1;
    struct tm_error err;
    const struct config_db *db = config_find_db(cfg, cli_name(args), &err);
    int rc = 1;
    if (!db || check_snapshot_target(db, &err) != 0)
        tm_error_print(&err);
    else
        rc = take_snapshot(cfg, key, db, timeout_ms);
    cli_release_config(cfg, key);
    return rc;
}

const struct cli_command cmd_snapshot = {
    .name = "snapshot",
    .summary = "a base snapshot now, stored on every replica",
    .options = options,
    .min_names = 1,
    .max_names = 1,
    .description =
        "Takes a base snapshot of database NAME now and returns once every replica has it\n"
        "(default timeout 1h). A running sidecar takes it (through its control socket in the\n"
        "state directory); with none running, this command takes it itself.\n",
    .run = run,
};
