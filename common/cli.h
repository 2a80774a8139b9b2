/* cli.h - the command line, declared as tables.
 *
 * Each command (one file each: replicator/cmd_*.c, restore/cmd_*.c,
 * common/cmd_*.c) declares a `struct cli_command`: its name, the options it
 * takes (a NULL-terminated list of `struct cli_option`, shared ones such
 * as cli_opt_config below or its own), how many database NAMEs it takes,
 * its help text and the function that runs it. One parser (cli_parse)
 * walks that table: it accepts exactly the options listed, in any order
 * and mixed with the NAMEs (GNU getopt_long: -c FILE, -cFILE, --config
 * FILE, --config=FILE, unambiguous abbreviations), checks required options
 * and the NAME count, and generates the usage line and the option list of
 * `--help` from the same table. An option the command does not take is a
 * usage error naming both ("'tidemark list' does not take --force").
 *
 * Exit codes (cli_run): 0 for --help, 2 for a usage error (the message
 * and the command's help on stderr), else what the command returns. */
#ifndef TM_CLI_H
#define TM_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "crypto.h"

#define CLI_OPTIONS_MAX 16    /* options per command */
#define CLI_REPEAT_MAX 32     /* values of a repeatable option (--key-file) */
#define CLI_USAGE_ERROR 2

struct cli_option {
    const char *name;         /* long name: "config" for --config */
    char short_name;          /* 'c' for -c, or 0 */
    const char *value_name;   /* "FILE"; NULL for a flag */
    int required;             /* the command cannot run without it */
    int repeatable;           /* may be given up to CLI_REPEAT_MAX times */
    const char *help;         /* one line for --help */
};

/* Options several commands take, worded once. */
extern const struct cli_option cli_opt_config;     /* -c, --config FILE (required) */
extern const struct cli_option cli_opt_verbose;    /* -v, --verbose */
extern const struct cli_option cli_opt_replica;    /* --replica NAME|INDEX */
extern const struct cli_option cli_opt_json;       /* --json */
extern const struct cli_option cli_opt_key_file;   /* --key-file FILE (repeatable) */

/* What cli_parse found, for the command's run function. */
struct cli_args {
    const struct cli_command *command;
    size_t counts[CLI_OPTIONS_MAX];                       /* by position in command->options */
    char *values[CLI_OPTIONS_MAX][CLI_REPEAT_MAX];
    char **names;                                         /* the database NAMEs given */
    size_t name_count;
};

struct cli_command {
    const char *name;                     /* "restore" */
    const char *alias;                    /* another spelling ("--version"), or NULL */
    const char *summary;                  /* one line for `tidemark --help` */
    const struct cli_option *const *options;   /* NULL-terminated; -h/--help is implicit */
    size_t min_names, max_names;          /* database NAMEs taken (0 or 1) */
    const char *description;              /* what the command does, after the usage line */
    int (*run)(const struct cli_args *args);   /* returns the exit code */
};

/* Parses argv (argv[0] is the command's name). Returns 0 when the command
 * should run, 1 when --help was asked, or CLI_USAGE_ERROR with the
 * problem in `problem` (one line, no "error:"). */
int cli_parse(const struct cli_command *command, int argc, char **argv, struct cli_args *args, char *problem,
              size_t problem_len);

/* The command's help: usage line, description, one line per option. */
void cli_print_help(const struct cli_command *command, FILE *out);

/* Parses, prints help or the usage error, sets -v's log level, runs. */
int cli_run(const struct cli_command *command, int argc, char **argv);

/* Dispatch: argv[1] names one of `commands` (NULL-terminated). Prints
 * the list of commands for no command, --help, -h or help. */
int cli_main(const struct cli_command *const *commands, int argc, char **argv);

/* What was given for an option of the command (the name must be one of
 * its options: asking for another one is a programming error, abort()). */
int cli_flag(const struct cli_args *args, const char *name);
const char *cli_value(const struct cli_args *args, const char *name);    /* the last one given, or NULL */
size_t cli_values(const struct cli_args *args, const char *name, char *const **values);
const char *cli_name(const struct cli_args *args);                      /* the NAME, or NULL */

/* An option holding a time (RFC 3339 or Unix seconds) or a duration
 * ("90s", "1h"): 0 with *given set, or -1 after printing the error. */
int cli_time(const struct cli_args *args, const char *name, int64_t *ms, int *given);
int cli_duration(const struct cli_args *args, const char *name, int64_t *ms, int *given);

/* Loads -c's configuration and its keys plus --key-file ones; prints the
 * error and returns -1 on failure. CLI_KEYS_TO_READ: commands that
 * decrypt objects are refused, before anything is fetched, a keyring
 * holding only a recipient's public key. */
enum cli_keys { CLI_NO_KEYS, CLI_KEYS_TO_WRITE, CLI_KEYS_TO_READ };
int cli_load_config(const struct cli_args *args, enum cli_keys keys, struct config **cfg,
                    struct crypto_keyring **key);
/* The second half of cli_load_config: the keys of a configuration
 * already loaded (a command that sets up its log format in between). */
int cli_load_keys(const struct cli_args *args, const struct config *cfg, enum cli_keys keys,
                  struct crypto_keyring **key);
void cli_release_config(struct config *cfg, struct crypto_keyring *key);

#endif
