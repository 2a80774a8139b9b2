/* main.c - the `tidemark` binary: parses the command line and hands over
 * to one command (replicator/replicate.c, restore/restore.c,
 * restore/list.c; keygen and version are here). */
#include "common/clock.h"
#include "common/config.h"
#include "common/crypto.h"
#include "common/log.h"
#include "replicator/control.h"
#include "replicator/replicate.h"
#include "replicator/retention.h"
#include "restore/drill.h"
#include "restore/list.h"
#include "restore/verify.h"
#include "restore/restore.h"

#include <getopt.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIDEMARK_VERSION "0.8.0"

static const char *usage_main =
    "usage: tidemark COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  replicate -c FILE                 run the backup sidecar (foreground)\n"
    "  restore -c FILE NAME -o PATH      rebuild database NAME at PATH\n"
    "          [--timestamp TIME] [--replica NAME|INDEX] [--force]\n"
    "  list -c FILE [NAME] [--json]      what the replicas hold\n"
    "  verify -c FILE [NAME] [--deep]    check every object and the archive's structure\n"
    "  snapshot -c FILE NAME             a base snapshot now, stored on every replica\n"
    "  drill -c FILE NAME [--json]       restore test measuring RTO and RPO, recorded in the replica\n"
    "  retention -c FILE [NAME] [--dry-run] [--json]\n"
    "                                    delete what the retention rules do not keep\n"
    "  keygen [--pair] -o FILE           write a new encryption key (or key pair)\n"
    "  version                           print the version\n"
    "\n"
    "'tidemark COMMAND --help' describes each command.\n";

static const char *usage_replicate =
    "usage: tidemark replicate -c FILE [-v]\n"
    "Tails every configured database's WAL and ships each commit to its replicas\n"
    "within sync-interval, through a local spool, to every replica on its own (a failing\n"
    "replica never delays another). SIGTERM or SIGINT ships what is committed, gives the\n"
    "replicas up to 10 s to take it (the rest is sent at the next start), then exits 0.\n";

static const char *usage_restore =
    "usage: tidemark restore -c FILE NAME -o PATH [--timestamp TIME] [--replica NAME|INDEX] [--force]\n"
    "                        [--key-file FILE]... [--no-deltas] [--format aof|rdb]\n"
    "Rebuilds database NAME as it was at TIME (RFC 3339 such as 2026-11-23T03:15:42Z or\n"
    "2026-11-23T05:15:42+02:00, or Unix seconds); without --timestamp, the latest point.\n"
    "Transactions seen at or before TIME are included. The result is checked with\n"
    "PRAGMA integrity_check before it is moved to PATH. PATH must not exist unless --force.\n"
    "Reads from the first replica that answers, or the one --replica names (0 = first).\n"
    "--key-file FILE (repeatable) adds keys to those of the configuration: the secret key\n"
    "of a pair, or the old keys of backups made before a key rotation.\n"
    "--no-deltas replays every segment instead of jumping over them with deltas (the\n"
    "same result, more objects read; for a damaged delta, or to cross-check).\n"
    "For a `redis:` entry PATH is a new or empty directory: it receives appendonlydir/\n"
    "(load it with redis-server --appendonly yes --dir PATH), or with --format rdb a\n"
    "dump.rdb; either is checked by loading it into a private redis-server.\n";

static const char *usage_list =
    "usage: tidemark list -c FILE [NAME] [--replica NAME|INDEX] [--json]\n"
    "Lists generations, snapshots, the restorable range, object count and bytes.\n";

static const char *usage_retention =
    "usage: tidemark retention -c FILE [NAME] [--replica NAME|INDEX] [--dry-run] [--json] [--now TIME]\n"
    "Applies the configured retention (daily/weekly/monthly/yearly snapshots by UTC calendar,\n"
    "every second of the point-in-time window) to each replica, and shows for each snapshot\n"
    "the rule that keeps it. --dry-run deletes nothing; --now plans as of another time.\n"
    "The sidecar runs it by itself after each snapshot and at least daily.\n";

static const char *usage_verify =
    "usage: tidemark verify -c FILE [NAME] [--replica NAME|INDEX] [--deep] [--json] [--key-file FILE]\n"
    "Reads every object of each replica (decrypts it, checks its checksums) and checks the\n"
    "archive: the chain has no gap, overlap or reordering, every generation starts from a\n"
    "snapshot, times are consistent. --deep also restores the newest point into a scratch\n"
    "file and runs integrity_check. Exit status 0 only when everything checks.\n";

static const char *usage_drill =
    "usage: tidemark drill -c FILE NAME [--replica NAME|INDEX] [--json] [--key-file FILE]\n"
    "A restore test: restores the newest point of NAME from each replica into the drill's\n"
    "staging directory, runs integrity_check and the drill's check-sql, reports RTO (restore\n"
    "time) and RPO (age of the newest restorable transaction), removes the copy, and records\n"
    "the result in the replica (shown by 'tidemark list'). Exit status 0 only if all passed.\n"
    "The sidecar runs it on the drill schedule (default monthly: \"0 4 1 * *\").\n";

static const char *usage_snapshot =
    "usage: tidemark snapshot -c FILE NAME [--timeout DURATION]\n"
    "Takes a base snapshot of database NAME now and returns once every replica has it\n"
    "(default timeout 1h). A running sidecar takes it (through its control socket in the\n"
    "state directory); with none running, this command takes it itself.\n";

static const char *usage_keygen =
    "usage: tidemark keygen [--pair] -o FILE\n"
    "Writes a new random 256-bit key to FILE (which must not exist) with mode 0600.\n"
    "With --pair, writes a key pair instead: the secret key to FILE (mode 0600) and the\n"
    "public key to FILE.pub. A sidecar given only the public key (recipient-file) can write\n"
    "backups but not read them; restore, verify and drills take the secret key (--key-file).\n"
    "Keep a copy somewhere safe and separate from the backups: without it they cannot be read.\n";

static int bad_usage(const char *usage, const char *problem)
{
    if (problem)
        fprintf(stderr, "error: %s\n", problem);
    fputs(usage, stderr);
    return 2;
}

#define MAX_KEY_FILES 32

enum { OPT_TIMESTAMP = 256, OPT_FORCE, OPT_REPLICA, OPT_JSON, OPT_HELP, OPT_DRY_RUN, OPT_NOW, OPT_DEEP,
       OPT_TIMEOUT, OPT_KEY_FILE, OPT_PAIR, OPT_NO_DELTAS, OPT_FORMAT };

static const struct option long_options[] = {
    {"config", required_argument, NULL, 'c'},   {"output", required_argument, NULL, 'o'},
    {"timestamp", required_argument, NULL, OPT_TIMESTAMP},
    {"force", no_argument, NULL, OPT_FORCE},    {"replica", required_argument, NULL, OPT_REPLICA},
    {"json", no_argument, NULL, OPT_JSON},      {"verbose", no_argument, NULL, 'v'},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN}, {"now", required_argument, NULL, OPT_NOW},
    {"deep", no_argument, NULL, OPT_DEEP},       {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"key-file", required_argument, NULL, OPT_KEY_FILE}, {"pair", no_argument, NULL, OPT_PAIR},
    {"no-deltas", no_argument, NULL, OPT_NO_DELTAS}, {"format", required_argument, NULL, OPT_FORMAT},
    {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
};

struct cli {
    const char *config, *output, *timestamp, *replica, *now, *timeout, *format;
    int force, json, verbose, help, dry_run, deep, pair, no_deltas;
    char *key_files[MAX_KEY_FILES];   /* --key-file, in order */
    size_t key_file_count;
};

enum key_use { KEYS_TO_WRITE, KEYS_TO_READ };

/* Loads the config and its keys plus --key-file ones. Commands that read
 * objects need a key that decrypts: a sidecar host holding only the
 * recipient's public key is told so before anything is fetched. */
static int load_config_and_key(const struct cli *cli, enum key_use use, struct config **cfg,
                               struct crypto_keyring **key)
{
    struct tm_error err;
    *key = NULL;
    if (config_load(cli->config, cfg, &err) != 0) {
        tm_error_print(&err);
        return -1;
    }
    if (config_load_keys(*cfg, cli->key_files, cli->key_file_count, key, &err) != 0) {
        tm_error_print(&err);
        config_free(*cfg);
        return -1;
    }
    if (use == KEYS_TO_READ && *key && crypto_keyring_public_only(*key)) {
        tm_error_set(&err, "the configuration holds only the public key '%s', which cannot decrypt backups",
                     (*cfg)->recipient_file);
        tm_error_hint(&err, "pass the secret key with --key-file FILE (the file 'tidemark keygen --pair' wrote beside the .pub)");
        tm_error_print(&err);
        crypto_keyring_free(*key);
        config_free(*cfg);
        return -1;
    }
    return 0;
}

static int parse_options(int argc, char **argv, const char *usage, struct cli *cli)
{
    memset(cli, 0, sizeof *cli);
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:o:vh", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c': cli->config = optarg; break;
        case 'o': cli->output = optarg; break;
        case 'v': cli->verbose = 1; break;
        case 'h': cli->help = 1; break;
        case OPT_TIMESTAMP: cli->timestamp = optarg; break;
        case OPT_FORCE: cli->force = 1; break;
        case OPT_REPLICA: cli->replica = optarg; break;
        case OPT_JSON: cli->json = 1; break;
        case OPT_DRY_RUN: cli->dry_run = 1; break;
        case OPT_NOW: cli->now = optarg; break;
        case OPT_DEEP: cli->deep = 1; break;
        case OPT_TIMEOUT: cli->timeout = optarg; break;
        case OPT_PAIR: cli->pair = 1; break;
        case OPT_NO_DELTAS: cli->no_deltas = 1; break;
        case OPT_FORMAT: cli->format = optarg; break;
        case OPT_KEY_FILE:
            if (cli->key_file_count == MAX_KEY_FILES)
                return bad_usage(usage, "too many --key-file options");
            cli->key_files[cli->key_file_count++] = optarg;
            break;
        default: return bad_usage(usage, NULL);
        }
    }
    if (cli->verbose)
        log_set_level(LOG_DEBUG);
    return 0;
}

static int cmd_replicate(int argc, char **argv)
{
    struct cli cli;
    if (parse_options(argc, argv, usage_replicate, &cli) != 0)
        return 2;
    if (cli.help)
        return fputs(usage_replicate, stdout), 0;
    if (!cli.config)
        return bad_usage(usage_replicate, "-c FILE is required");
    if (optind != argc)
        return bad_usage(usage_replicate, "unexpected argument");
    struct config *cfg;
    struct crypto_keyring *key;
    if (load_config_and_key(&cli, KEYS_TO_WRITE, &cfg, &key) != 0)
        return 1;
    log_set_json(cfg->log_json);
    int rc = replicate_run(cfg, key, NULL);
    crypto_keyring_free(key);
    config_free(cfg);
    return rc;
}

static int cmd_restore(int argc, char **argv)
{
    struct cli cli;
    if (parse_options(argc, argv, usage_restore, &cli) != 0)
        return 2;
    if (cli.help)
        return fputs(usage_restore, stdout), 0;
    if (!cli.config)
        return bad_usage(usage_restore, "-c FILE is required");
    if (!cli.output)
        return bad_usage(usage_restore, "-o PATH is required");
    if (optind != argc - 1)
        return bad_usage(usage_restore, "give exactly one database NAME");
    struct restore_options opts = {.db_name = argv[optind], .output = cli.output,
                                   .replica = cli.replica, .force = cli.force, .no_deltas = cli.no_deltas};
    if (cli.format && strcmp(cli.format, "rdb") != 0 && strcmp(cli.format, "aof") != 0)
        return bad_usage(usage_restore, "--format is 'aof' (appendonlydir/, the default) or 'rdb' (dump.rdb)");
    opts.redis_rdb = cli.format && strcmp(cli.format, "rdb") == 0;
    if (cli.timestamp) {
        struct tm_error err;
        if (clock_parse_time(cli.timestamp, &opts.target_ms, &err) != 0) {
            tm_error_prefix(&err, "--timestamp: ");
            tm_error_print(&err);
            return 2;
        }
        opts.has_target = 1;
    }
    struct config *cfg;
    struct crypto_keyring *key;
    if (load_config_and_key(&cli, KEYS_TO_READ, &cfg, &key) != 0)
        return 1;
    int rc = restore_run(cfg, key, &opts);
    crypto_keyring_free(key);
    config_free(cfg);
    return rc;
}

static int cmd_list(int argc, char **argv)
{
    struct cli cli;
    if (parse_options(argc, argv, usage_list, &cli) != 0)
        return 2;
    if (cli.help)
        return fputs(usage_list, stdout), 0;
    if (!cli.config)
        return bad_usage(usage_list, "-c FILE is required");
    if (optind < argc - 1)
        return bad_usage(usage_list, "give at most one database NAME");
    struct config *cfg;
    struct tm_error err;
    if (config_load(cli.config, &cfg, &err) != 0) {
        tm_error_print(&err);
        return 1;
    }
    int rc = list_run(cfg, optind < argc ? argv[optind] : NULL, cli.replica, cli.json);
    config_free(cfg);
    return rc;
}

static int cmd_retention(int argc, char **argv)
{
    struct cli cli;
    if (parse_options(argc, argv, usage_retention, &cli) != 0)
        return 2;
    if (cli.help)
        return fputs(usage_retention, stdout), 0;
    if (!cli.config)
        return bad_usage(usage_retention, "-c FILE is required");
    if (optind < argc - 1)
        return bad_usage(usage_retention, "give at most one database NAME");
    struct retention_options opts = {.db_name = optind < argc ? argv[optind] : NULL, .replica = cli.replica,
                                     .dry_run = cli.dry_run, .json = cli.json};
    struct tm_error err;
    if (cli.now) {
        if (clock_parse_time(cli.now, &opts.now_ms, &err) != 0) {
            tm_error_prefix(&err, "--now: ");
            tm_error_print(&err);
            return 2;
        }
        opts.has_now = 1;
    }
    struct config *cfg;
    if (config_load(cli.config, &cfg, &err) != 0) {
        tm_error_print(&err);
        return 1;
    }
    int rc = retention_run(cfg, &opts);
    config_free(cfg);
    return rc;
}

static int cmd_verify(int argc, char **argv)
{
    struct cli cli;
    if (parse_options(argc, argv, usage_verify, &cli) != 0)
        return 2;
    if (cli.help)
        return fputs(usage_verify, stdout), 0;
    if (!cli.config)
        return bad_usage(usage_verify, "-c FILE is required");
    if (optind < argc - 1)
        return bad_usage(usage_verify, "give at most one database NAME");
    struct verify_options opts = {.db_name = optind < argc ? argv[optind] : NULL, .replica = cli.replica,
                                  .deep = cli.deep, .json = cli.json};
    struct config *cfg;
    struct crypto_keyring *key;
    if (load_config_and_key(&cli, KEYS_TO_READ, &cfg, &key) != 0)
        return 1;
    int rc = verify_run(cfg, key, &opts);
    crypto_keyring_free(key);
    config_free(cfg);
    return rc;
}

static int cmd_drill(int argc, char **argv)
{
    struct cli cli;
    if (parse_options(argc, argv, usage_drill, &cli) != 0)
        return 2;
    if (cli.help)
        return fputs(usage_drill, stdout), 0;
    if (!cli.config)
        return bad_usage(usage_drill, "-c FILE is required");
    if (optind != argc - 1)
        return bad_usage(usage_drill, "give exactly one database NAME");
    struct drill_options opts = {.db_name = argv[optind], .replica = cli.replica, .json = cli.json};
    struct config *cfg;
    struct crypto_keyring *key;
    if (load_config_and_key(&cli, KEYS_TO_READ, &cfg, &key) != 0)
        return 1;
    int rc = drill_run(cfg, key, &opts);
    crypto_keyring_free(key);
    config_free(cfg);
    return rc;
}

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

static int cmd_snapshot(int argc, char **argv)
{
    struct cli cli;
    if (parse_options(argc, argv, usage_snapshot, &cli) != 0)
        return 2;
    if (cli.help)
        return fputs(usage_snapshot, stdout), 0;
    if (!cli.config)
        return bad_usage(usage_snapshot, "-c FILE is required");
    if (optind != argc - 1)
        return bad_usage(usage_snapshot, "give exactly one database NAME");
    int64_t timeout_ms = 3600 * 1000;
    struct tm_error err;
    if (cli.timeout && clock_parse_duration(cli.timeout, &timeout_ms, &err) != 0) {
        tm_error_prefix(&err, "--timeout: ");
        tm_error_print(&err);
        return 2;
    }
    struct config *cfg;
    struct crypto_keyring *key;
    if (load_config_and_key(&cli, KEYS_TO_WRITE, &cfg, &key) != 0)
        return 1;
    const struct config_db *db = config_find_db(cfg, argv[optind], &err);
    int rc = 1, no_daemon = 0;
    char reply[1024];
    if (!db) {
        tm_error_print(&err);
    } else if (db->kind == DB_REDIS) {
        tm_error_set(&err, "'%s' is a Redis entry: its snapshots are full resynchronisations, taken by the "
                     "running sidecar on its schedule", db->name);
        tm_error_hint(&err, "set 'snapshot: { schedule: ... }' or 'snapshot-interval' on the entry");
        tm_error_print(&err);
    } else if (db->dir || strchr(db->name, '\n')) {
        tm_error_set(&err, "'%s' is a directory entry: name one of its databases (ENTRY/RELATIVE-PATH)", db->name);
        tm_error_print(&err);
    } else if (snapshot_request(db, timeout_ms, reply, sizeof reply, &no_daemon, &err) == 0) {
        if (strncmp(reply, "stored ", 7) == 0) {
            printf("snapshot %s stored on every replica (taken by the running sidecar)\n", reply + 7);
            rc = 0;
        } else {
            fprintf(stderr, "%s\n", reply);
        }
    } else if (no_daemon) {
        struct replicate_options opts = {.snapshot_once = db->name, .timeout_ms = timeout_ms};
        rc = replicate_run(cfg, key, &opts);
        if (rc == 0)
            printf("snapshot of '%s' stored on every replica (no sidecar was running: taken directly)\n", db->name);
    } else {
        tm_error_print(&err);
    }
    crypto_keyring_free(key);
    config_free(cfg);
    return rc;
}

static int cmd_keygen(int argc, char **argv)
{
    struct cli cli;
    if (parse_options(argc, argv, usage_keygen, &cli) != 0)
        return 2;
    if (cli.help)
        return fputs(usage_keygen, stdout), 0;
    if (!cli.output || optind != argc)
        return bad_usage(usage_keygen, "-o FILE is required");
    struct tm_error err;
    if (cli.pair) {
        char key_id[CRYPTO_KEY_ID_BYTES * 2 + 1];
        if (crypto_keygen_pair(cli.output, key_id, &err) != 0) {
            tm_error_print(&err);
            return 1;
        }
        printf("wrote a key pair (id %s): secret key %s (mode 0600), public key %s.pub\n"
               "give the sidecar only the .pub (encryption: { recipient-file: ... }); keep the secret\n"
               "key off the database host, with a copy apart from the backups\n", key_id, cli.output, cli.output);
        return 0;
    }
    if (crypto_keygen(cli.output, &err) != 0) {
        tm_error_print(&err);
        return 1;
    }
    printf("wrote a new key to %s (mode 0600); keep a copy apart from the backups\n", cli.output);
    return 0;
}

int main(int argc, char **argv)
{
    struct tm_error err;
    if (argc < 2)
        return bad_usage(usage_main, NULL);
    const char *command = argv[1];
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 || strcmp(command, "help") == 0)
        return fputs(usage_main, stdout), 0;
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0) {
        printf("tidemark %s\n", TIDEMARK_VERSION);
        return 0;
    }
    if (crypto_init(&err) != 0) {
        tm_error_print(&err);
        return 1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "error: cannot initialise libcurl\n");
        return 1;
    }
    if (strcmp(command, "replicate") == 0)
        return cmd_replicate(argc - 1, argv + 1);
    if (strcmp(command, "restore") == 0)
        return cmd_restore(argc - 1, argv + 1);
    if (strcmp(command, "list") == 0)
        return cmd_list(argc - 1, argv + 1);
    if (strcmp(command, "snapshot") == 0)
        return cmd_snapshot(argc - 1, argv + 1);
    if (strcmp(command, "drill") == 0)
        return cmd_drill(argc - 1, argv + 1);
    if (strcmp(command, "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(command, "retention") == 0)
        return cmd_retention(argc - 1, argv + 1);
    if (strcmp(command, "keygen") == 0)
        return cmd_keygen(argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command '%s'\n", command);
    return bad_usage(usage_main, NULL);
}
