/* cli.c - one parser for every command's option table, the help it
 * generates, and the steps every command shares: loading the
 * configuration and keys, reading time options (cli.h). */
#include "cli.h"

#include "clock.h"
#include "log.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

const struct cli_option cli_opt_config = {"config", 'c', "FILE", 1, 0, "the configuration file"};
const struct cli_option cli_opt_verbose = {"verbose", 'v', NULL, 0, 0, "log debug messages too"};
const struct cli_option cli_opt_replica = {"replica", 0, "NAME|INDEX", 0, 0,
                                           "only this replica (its name, or its index: 0 = first)"};
const struct cli_option cli_opt_json = {"json", 0, NULL, 0, 0, "print JSON instead of text"};
const struct cli_option cli_opt_key_file = {"key-file", 0, "FILE", 0, 1,
                                            "a further key to decrypt with (repeatable)"};

#define LONG_OPTION_BASE 256   /* getopt values of options without a short name */

static size_t option_count(const struct cli_command *command)
{
    size_t n = 0;
    while (command->options[n])
        n++;
    return n;
}

/* Position of option `name` in the command's table, or -1. */
static int option_index(const struct cli_command *command, const char *name)
{
    for (size_t i = 0; command->options[i]; i++)
        if (strcmp(command->options[i]->name, name) == 0)
            return (int)i;
    return -1;
}

/* Position of the option getopt_long returned as `val`, or -1. */
static int option_by_val(const struct cli_command *command, int val)
{
    for (size_t i = 0; command->options[i]; i++)
        if ((command->options[i]->short_name && command->options[i]->short_name == val) ||
            (!command->options[i]->short_name && (int)i + LONG_OPTION_BASE == val))
            return (int)i;
    return -1;
}

/* The getopt_long tables for the command: ":c:vh" and the long options. */
static void getopt_tables(const struct cli_command *command, char *shorts, struct option *longs)
{
    size_t s = 0, n = option_count(command);
    shorts[s++] = ':';
    for (size_t i = 0; i < n; i++) {
        const struct cli_option *o = command->options[i];
        longs[i] = (struct option){o->name, o->value_name ? required_argument : no_argument, NULL,
                                   o->short_name ? o->short_name : (int)i + LONG_OPTION_BASE};
        if (o->short_name) {
            shorts[s++] = o->short_name;
            if (o->value_name)
                shorts[s++] = ':';
        }
    }
    longs[n] = (struct option){"help", no_argument, NULL, 'h'};
    longs[n + 1] = (struct option){NULL, 0, NULL, 0};
    shorts[s++] = 'h';
    shorts[s] = '\0';
}

/* "-c FILE" or "--timestamp TIME": how usage lines and errors name it. */
static void option_synopsis(const struct cli_option *o, char *out, size_t len)
{
    char name[64];
    if (o->short_name)
        snprintf(name, sizeof name, "-%c", o->short_name);
    else
        snprintf(name, sizeof name, "--%s", o->name);
    snprintf(out, len, "%s%s%s", name, o->value_name ? " " : "", o->value_name ? o->value_name : "");
}

/* The problem with an option getopt_long refused ('?' or ':'). */
static void refused_option(const struct cli_command *command, int result, char **argv, char *problem, size_t len)
{
    int known = optopt ? option_by_val(command, optopt) : -1;
    const char *given = argv[optind - 1];
    if (result == ':' && known >= 0) {
        snprintf(problem, len, "--%s needs a value (%s)", command->options[known]->name,
                 command->options[known]->value_name);
    } else if (known >= 0) {
        snprintf(problem, len, "--%s takes no value", command->options[known]->name);
    } else if (optopt) {
        snprintf(problem, len, "'tidemark %s' does not take the option -%c", command->name, optopt);
    } else {
        int name_len = (int)strcspn(given, "=");
        snprintf(problem, len, "'tidemark %s' does not take the option %.*s", command->name, name_len, given);
    }
}

static int store_value(const struct cli_command *command, struct cli_args *args, int index, char *value,
                       char *problem, size_t len)
{
    const struct cli_option *o = command->options[index];
    size_t *count = &args->counts[index];
    if (o->repeatable && *count == CLI_REPEAT_MAX) {
        snprintf(problem, len, "too many --%s options (at most %d)", o->name, CLI_REPEAT_MAX);
        return CLI_USAGE_ERROR;
    }
    args->values[index][o->repeatable ? *count : 0] = value;
    (*count)++;
    return 0;
}

/* Required options, then the number of NAMEs. */
static int check_complete(const struct cli_command *command, const struct cli_args *args, char *problem,
                          size_t len)
{
    for (size_t i = 0; command->options[i]; i++) {
        if (command->options[i]->required && args->counts[i] == 0) {
            char synopsis[128];
            option_synopsis(command->options[i], synopsis, sizeof synopsis);
            snprintf(problem, len, "%s is required", synopsis);
            return CLI_USAGE_ERROR;
        }
    }
    if (args->name_count > command->max_names) {
        if (command->max_names == 0)
            snprintf(problem, len, "unexpected argument '%s'", args->names[0]);
        else if (command->min_names == command->max_names)
            snprintf(problem, len, "give exactly one database NAME");
        else
            snprintf(problem, len, "give at most one database NAME");
        return CLI_USAGE_ERROR;
    }
    if (args->name_count < command->min_names) {
        snprintf(problem, len, "give exactly one database NAME");
        return CLI_USAGE_ERROR;
    }
    return 0;
}

int cli_parse(const struct cli_command *command, int argc, char **argv, struct cli_args *args, char *problem,
              size_t problem_len)
{
    char shorts[2 * CLI_OPTIONS_MAX + 4];
    struct option longs[CLI_OPTIONS_MAX + 2];
    if (option_count(command) > CLI_OPTIONS_MAX)
        abort();   /* a table larger than CLI_OPTIONS_MAX: raise the limit */
    memset(args, 0, sizeof *args);
    args->command = command;
    problem[0] = '\0';
    getopt_tables(command, shorts, longs);
    optind = 0;   /* glibc: start afresh (a second parse in one process) */
    opterr = 0;   /* the messages are ours */
    int help = 0, result;
    while ((result = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        int index = result == '?' || result == ':' ? -1 : option_by_val(command, result);
        if (result == 'h' && index < 0) {
            help = 1;
        } else if (index < 0) {
            refused_option(command, result, argv, problem, problem_len);
            return CLI_USAGE_ERROR;
        } else if (store_value(command, args, index, optarg, problem, problem_len) != 0) {
            return CLI_USAGE_ERROR;
        }
    }
    args->names = argv + optind;
    args->name_count = (size_t)(argc - optind);
    if (help)
        return 1;
    return check_complete(command, args, problem, problem_len);
}

/* ------------------------------------------------------------------ help */

/* Appends one usage word, wrapping before column 100. */
static void usage_word(FILE *out, const char *word, size_t indent, size_t *column)
{
    if (*column + 1 + strlen(word) > 100) {
        fprintf(out, "\n%*s", (int)indent, "");
        *column = indent;
    } else {
        fputc(' ', out);
        (*column)++;
    }
    fputs(word, out);
    *column += strlen(word);
}

static void print_usage(const struct cli_command *command, FILE *out)
{
    size_t column = (size_t)fprintf(out, "usage: tidemark %s", command->name), indent = column + 1;
    char word[160], synopsis[128];
    for (size_t i = 0; command->options[i]; i++) {
        if (command->options[i]->required) {
            option_synopsis(command->options[i], word, sizeof word);
            usage_word(out, word, indent, &column);
        }
    }
    if (command->max_names)
        usage_word(out, command->min_names ? "NAME" : "[NAME]", indent, &column);
    for (size_t i = 0; command->options[i]; i++) {
        const struct cli_option *o = command->options[i];
        if (o->required)
            continue;
        option_synopsis(o, synopsis, sizeof synopsis);
        snprintf(word, sizeof word, "[%s]%s", synopsis, o->repeatable ? "..." : "");
        usage_word(out, word, indent, &column);
    }
    fputc('\n', out);
}

void cli_print_help(const struct cli_command *command, FILE *out)
{
    print_usage(command, out);
    fputs(command->description, out);
    fputs("\noptions:\n", out);
    for (size_t i = 0; command->options[i]; i++) {
        const struct cli_option *o = command->options[i];
        char names[96];
        char shorts[8] = "";
        if (o->short_name)
            snprintf(shorts, sizeof shorts, "-%c, ", o->short_name);
        snprintf(names, sizeof names, "%4s--%s%s%s", shorts, o->name, o->value_name ? " " : "",
                 o->value_name ? o->value_name : "");
        fprintf(out, "  %-28s %s%s\n", names, o->help, o->required ? " (required)" : "");
    }
    fprintf(out, "  %-28s %s\n", "-h, --help", "this help");
}

/* ------------------------------------------------------------- dispatch */

int cli_run(const struct cli_command *command, int argc, char **argv)
{
    struct cli_args args;
    char problem[300];
    int rc = cli_parse(command, argc, argv, &args, problem, sizeof problem);
    if (rc == 1) {
        cli_print_help(command, stdout);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", problem);
        cli_print_help(command, stderr);
        return CLI_USAGE_ERROR;
    }
    if (option_index(command, "verbose") >= 0 && cli_flag(&args, "verbose"))
        log_set_level(LOG_DEBUG);
    return command->run(&args);
}

static void print_commands(const struct cli_command *const *commands, FILE *out)
{
    fputs("usage: tidemark COMMAND [OPTIONS]\n\ncommands:\n", out);
    for (size_t i = 0; commands[i]; i++)
        fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fputs("\n'tidemark COMMAND --help' describes each command and its options.\n", out);
}

int cli_main(const struct cli_command *const *commands, int argc, char **argv)
{
    if (argc < 2) {
        print_commands(commands, stderr);
        return CLI_USAGE_ERROR;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_commands(commands, stdout);
        return 0;
    }
    for (size_t i = 0; commands[i]; i++)
        if (strcmp(commands[i]->name, name) == 0 || (commands[i]->alias && strcmp(commands[i]->alias, name) == 0))
            return cli_run(commands[i], argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command '%s'\n", name);
    print_commands(commands, stderr);
    return CLI_USAGE_ERROR;
}

/* -------------------------------------------------------------- values */

static int must_find(const struct cli_args *args, const char *name)
{
    int index = option_index(args->command, name);
    if (index < 0) {
        fprintf(stderr, "internal: 'tidemark %s' asks for --%s, which is not in its table\n", args->command->name,
                name);
        abort();
    }
    return index;
}

int cli_flag(const struct cli_args *args, const char *name)
{
    return args->counts[must_find(args, name)] > 0;
}

const char *cli_value(const struct cli_args *args, const char *name)
{
    int index = must_find(args, name);
    return args->counts[index] ? args->values[index][0] : NULL;
}

size_t cli_values(const struct cli_args *args, const char *name, char *const **values)
{
    int index = must_find(args, name);
    *values = args->values[index];
    return args->counts[index];
}

const char *cli_name(const struct cli_args *args)
{
    return args->name_count ? args->names[0] : NULL;
}

static int parse_option(const struct cli_args *args, const char *name,
                        int (*parse)(const char *, int64_t *, struct tm_error *), int64_t *ms, int *given)
{
    const char *text = cli_value(args, name);
    struct tm_error err;
    *given = text != NULL;
    if (!text || parse(text, ms, &err) == 0)
        return 0;
    tm_error_prefix(&err, "--%s: ", name);
    tm_error_print(&err);
    return -1;
}

int cli_time(const struct cli_args *args, const char *name, int64_t *ms, int *given)
{
    return parse_option(args, name, clock_parse_time, ms, given);
}

int cli_duration(const struct cli_args *args, const char *name, int64_t *ms, int *given)
{
    return parse_option(args, name, clock_parse_duration, ms, given);
}

/* ---------------------------------------------------------- configuration */

static int refuse_public_only(const struct config *cfg, struct tm_error *err)
{
    tm_error_setc(err, TM_ERR_REFUSED, "the configuration holds only the public key '%s', which cannot decrypt backups",
                  cfg->recipient_file);
    return tm_error_hint(err, "pass the secret key with --key-file FILE (the file 'tidemark keygen --pair' wrote "
                         "beside the .pub)");
}

int cli_load_config(const struct cli_args *args, enum cli_keys keys, struct config **cfg,
                    struct crypto_keyring **key)
{
    struct tm_error err;
    if (config_load(cli_value(args, "config"), cfg, &err) != 0) {
        tm_error_print(&err);
        *cfg = NULL;
        return -1;
    }
    if (keys == CLI_NO_KEYS || cli_load_keys(args, *cfg, keys, key) == 0)
        return 0;
    config_free(*cfg);
    *cfg = NULL;
    return -1;
}

int cli_load_keys(const struct cli_args *args, const struct config *cfg, enum cli_keys keys,
                  struct crypto_keyring **key)
{
    struct tm_error err;
    char *const *key_files = NULL;
    size_t key_file_count = 0;
    *key = NULL;
    if (option_index(args->command, "key-file") >= 0)
        key_file_count = cli_values(args, "key-file", &key_files);
    int rc = config_load_keys(cfg, key_files, key_file_count, key, &err);
    if (rc == 0 && keys == CLI_KEYS_TO_READ && *key && crypto_keyring_public_only(*key))
        rc = refuse_public_only(cfg, &err);
    if (rc != 0) {
        tm_error_print(&err);
        crypto_keyring_free(*key);
        *key = NULL;
    }
    return rc;
}

void cli_release_config(struct config *cfg, struct crypto_keyring *key)
{
    crypto_keyring_free(key);
    config_free(cfg);
}
