/* test_cli.c - the table-driven command line: each command accepts its
 * own options and no other, checks required options and NAMEs, and its
 * --help lists every option of its table. */
#include "harness.h"

#include "../../common/cli.h"
#include "../../common/cmd_keygen.h"
#include "../../common/cmd_version.h"
#include "../../common/report.h"
#include "../../replicator/cmd_replicate.h"
#include "../../replicator/cmd_retention.h"
#include "../../replicator/cmd_snapshot.h"
#include "../../replicator/cmd_status.h"
#include "../../restore/cmd_drill.h"
#include "../../restore/cmd_list.h"
#include "../../restore/cmd_restore.h"
#include "../../restore/cmd_verify.h"

#include <stdlib.h>

static const struct cli_command *const commands[] = {
    &cmd_replicate, &cmd_restore, &cmd_list, &cmd_verify, &cmd_snapshot,
    &cmd_drill, &cmd_retention, &cmd_status, &cmd_keygen, &cmd_version, NULL,
};

static char problem[300];
static struct cli_args args;

/* Parses a NULL-terminated list of words (copied: getopt permutes them). */
static int parse(const struct cli_command *command, const char *const *words)
{
    static char copies[16][128];
    static char *argv[17];
    int argc = 0;
    for (; words[argc]; argc++) {
        snprintf(copies[argc], sizeof copies[argc], "%s", words[argc]);
        argv[argc] = copies[argc];
    }
    argv[argc] = NULL;
    return cli_parse(command, argc, argv, &args, problem, sizeof problem);
}

static void test_rejects_an_option_the_command_does_not_take(void)
{
    ASSERT_EQ(parse(&cmd_list, (const char *const[]){"list", "-c", "t.yml", "--force", NULL}), CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "'tidemark list' does not take the option --force") == 0);
    /* --force is restore's: there it is accepted */
    ASSERT_EQ(parse(&cmd_restore, (const char *const[]){"restore", "-c", "t.yml", "app", "-o", "out.db", "--force",
                                                         NULL}), 0);
    ASSERT_TRUE(cli_flag(&args, "force"));
    /* an option no command takes, a short one, a value to a flag */
    ASSERT_EQ(parse(&cmd_verify, (const char *const[]){"verify", "-c", "t.yml", "--bogus=1", NULL}), CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "'tidemark verify' does not take the option --bogus") == 0);
    ASSERT_EQ(parse(&cmd_drill, (const char *const[]){"drill", "-c", "t.yml", "-o", "x", "app", NULL}),
              CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "'tidemark drill' does not take the option -o") == 0);
    ASSERT_EQ(parse(&cmd_list, (const char *const[]){"list", "-c", "t.yml", "--json=yes", NULL}), CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "--json takes no value") == 0);
    ASSERT_EQ(parse(&cmd_list, (const char *const[]){"list", "-c", "t.yml", "--replica", NULL}), CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "--replica needs a value (NAME|INDEX)") == 0);
    /* keygen takes no configuration */
    ASSERT_EQ(parse(&cmd_keygen, (const char *const[]){"keygen", "-c", "t.yml", "-o", "k", NULL}), CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "'tidemark keygen' does not take the option -c") == 0);
}

static void test_required_options_and_names(void)
{
    ASSERT_EQ(parse(&cmd_restore, (const char *const[]){"restore", "app", "-o", "x.db", NULL}), CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "-c FILE is required") == 0);
    /* restore's -o is optional in the table: --into-sqld* replace it (its run function requires one of them) */
    ASSERT_EQ(parse(&cmd_restore, (const char *const[]){"restore", "-c", "t.yml", "app", NULL}), 0);
    ASSERT_EQ(parse(&cmd_verify, (const char *const[]){"verify", NULL}), CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "-c FILE is required") == 0);
    ASSERT_EQ(parse(&cmd_drill, (const char *const[]){"drill", "-c", "t.yml", NULL}), CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "give exactly one database NAME") == 0);
    ASSERT_EQ(parse(&cmd_list, (const char *const[]){"list", "-c", "t.yml", "a", "b", NULL}), CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "give at most one database NAME") == 0);
    ASSERT_EQ(parse(&cmd_replicate, (const char *const[]){"replicate", "-c", "t.yml", "app", NULL}), CLI_USAGE_ERROR);
    ASSERT_TRUE(strcmp(problem, "unexpected argument 'app'") == 0);
    /* --help wins over what is missing */
    ASSERT_EQ(parse(&cmd_restore, (const char *const[]){"restore", "--help", NULL}), 1);
}

static void test_values_in_any_order(void)
{
    ASSERT_EQ(parse(&cmd_restore, (const char *const[]){"restore", "app", "--key-file", "k1", "--config=t.yml",
                                                         "--timestamp", "1700000000", "-oout.db", "--key-file=k2",
                                                         "--replica", "1", NULL}), 0);
    ASSERT_TRUE(strcmp(cli_name(&args), "app") == 0);
    ASSERT_TRUE(strcmp(cli_value(&args, "config"), "t.yml") == 0);
    ASSERT_TRUE(strcmp(cli_value(&args, "output"), "out.db") == 0);
    ASSERT_TRUE(strcmp(cli_value(&args, "replica"), "1") == 0);
    ASSERT_TRUE(!cli_flag(&args, "force") && cli_value(&args, "format") == NULL);
    char *const *keys;
    ASSERT_EQ(cli_values(&args, "key-file", &keys), 2);
    ASSERT_TRUE(strcmp(keys[0], "k1") == 0 && strcmp(keys[1], "k2") == 0);
    int64_t ms;
    int given;
    ASSERT_EQ(cli_time(&args, "timestamp", &ms, &given), 0);
    ASSERT_TRUE(given);
    ASSERT_EQ(ms, 1700000000000LL);
    /* a second parse in the same process starts afresh */
    ASSERT_EQ(parse(&cmd_list, (const char *const[]){"list", "-c", "u.yml", NULL}), 0);
    ASSERT_TRUE(strcmp(cli_value(&args, "config"), "u.yml") == 0 && cli_name(&args) == NULL);
}

static void test_help_lists_each_commands_options(void)
{
    for (size_t c = 0; commands[c]; c++) {
        char *text = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&text, &len);
        ASSERT_TRUE(fp != NULL);
        cli_print_help(commands[c], fp);
        fclose(fp);
        char usage[64];
        snprintf(usage, sizeof usage, "usage: tidemark %s", commands[c]->name);
        int ok = strncmp(text, usage, strlen(usage)) == 0 && strstr(text, "-h, --help") != NULL;
        for (size_t o = 0; ok && commands[c]->options[o]; o++) {
            char line[96];
            snprintf(line, sizeof line, "--%s%s%s", commands[c]->options[o]->name,
                     commands[c]->options[o]->value_name ? " " : "",
                     commands[c]->options[o]->value_name ? commands[c]->options[o]->value_name : "");
            ok = strstr(text, line) != NULL && strstr(text, commands[c]->options[o]->help) != NULL;
        }
        if (!ok)
            fprintf(stderr, "  help of '%s' lacks an option:\n%s", commands[c]->name, text);
        free(text);
        ASSERT_TRUE(ok);
    }
    /* and lists nothing the command does not take */
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    cli_print_help(&cmd_list, fp);
    fclose(fp);
    int clean = strstr(text, "--force") == NULL && strstr(text, "--key-file") == NULL;
    free(text);
    ASSERT_TRUE(clean);
}

/* The shared printer: one JSON array, "database" and "replica" first in
 * each record; in text, the line every record starts with. */
static void test_report_framing(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    struct report r;
    report_begin(&r, fp, 1);
    report_open(&r, "tenants/a \"b\".db", "s3");
    fprintf(fp, ", \"ok\": true");
    report_close(&r);
    report_item(&r, "{\"time\": 1}");
    report_end(&r);
    fclose(fp);
    int ok = strcmp(text, "[{\"database\": \"tenants/a \\\"b\\\".db\", \"replica\": \"s3\", \"ok\": true},\n"
                          "{\"time\": 1}]\n") == 0;
    if (!ok)
        fprintf(stderr, "  JSON: %s", text);
    free(text);
    ASSERT_TRUE(ok);
    fp = open_memstream(&text, &len);
    report_begin(&r, fp, 0);
    report_open(&r, "app", "local");
    fprintf(fp, " 2 generation(s)\n");
    report_close(&r);
    report_end(&r);
    fclose(fp);
    ok = strcmp(text, "database app, replica local: 2 generation(s)\n") == 0;
    if (!ok)
        fprintf(stderr, "  text: %s", text);
    free(text);
    ASSERT_TRUE(ok);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"cli: an option the command does not take is refused, naming both", test_rejects_an_option_the_command_does_not_take},
        {"cli: required options and the number of NAMEs", test_required_options_and_names},
        {"cli: options and NAMEs in any order, repeatable options", test_values_in_any_order},
        {"cli: --help lists every option of each command", test_help_lists_each_commands_options},
        {"report: JSON array with \"database\" and \"replica\", text line prefix", test_report_framing},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
