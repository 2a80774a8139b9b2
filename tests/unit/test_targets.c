/* test_targets.c - the walk every command over databases x replicas
 * shares: names and globs, each replica or one per database, and the one
 * wording of "no replica". */
#include "harness.h"

#include "../../common/targets.h"

#include <stdio.h>
#include <stdlib.h>

static struct config *load_config(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/targets.yml", harness_tmpdir());
    FILE *fp = fopen(path, "w");
    if (!fp)
        return NULL;
    fprintf(fp, "encryption: none\n"
                "dbs:\n"
                "  - path: /data/app.db\n"
                "    replicas:\n"
                "      - { name: near, path: /backups/near }\n"
                "      - { name: far, path: /backups/far }\n"
                "  - path: /data/audit.db\n"
                "    replicas:\n"
                "      - { name: near, path: /backups/audit }\n"
                "  - path: /data/billing.db\n"
                "    replicas:\n"
                "      - { name: only, path: /backups/billing }\n");
    fclose(fp);
    struct config *cfg;
    struct tm_error err;
    if (config_load(path, &cfg, &err) != 0) {
        fprintf(stderr, "  config: %s\n", err.msg);
        return NULL;
    }
    return cfg;
}

/* "app/near app/far ..." for the walk, into out. */
static int walk(const struct config *cfg, const char *pattern, const char *replica, enum targets_walk how,
                char *out, size_t len, struct tm_error *err)
{
    struct targets_iter it;
    if (targets_begin(&it, cfg, pattern, replica, how, err) != 0)
        return -1;
    const struct config_db *db;
    size_t index, used = 0;
    out[0] = '\0';
    while (targets_next(&it, &db, &index))
        used += (size_t)snprintf(out + used, len - used, "%s%s/%s", used ? " " : "", db->name,
                                 index == TARGETS_ANY_REPLICA ? "*" : db->replicas[index].name);
    return targets_end(&it, err);
}

static void test_each_replica_and_one_per_database(void)
{
    struct config *cfg = load_config();
    ASSERT_TRUE(cfg != NULL);
    char seen[256];
    struct tm_error err;
    ASSERT_EQ(walk(cfg, NULL, NULL, TARGETS_EACH_REPLICA, seen, sizeof seen, &err), 0);
    ASSERT_TRUE(strcmp(seen, "app/near app/far audit/near billing/only") == 0);
    ASSERT_EQ(walk(cfg, NULL, "near", TARGETS_EACH_REPLICA, seen, sizeof seen, &err), 0);
    ASSERT_TRUE(strcmp(seen, "app/near audit/near") == 0);
    ASSERT_EQ(walk(cfg, "a*", "1", TARGETS_EACH_REPLICA, seen, sizeof seen, &err), 0);   /* by index */
    ASSERT_TRUE(strcmp(seen, "app/far") == 0);
    ASSERT_EQ(walk(cfg, "a*", NULL, TARGETS_ONE_REPLICA, seen, sizeof seen, &err), 0);
    ASSERT_TRUE(strcmp(seen, "app/* audit/*") == 0);
    config_free(cfg);
}

static void test_no_replica_is_one_error(void)
{
    struct config *cfg = load_config();
    ASSERT_TRUE(cfg != NULL);
    char seen[256];
    struct tm_error err;
    ASSERT_EQ(walk(cfg, "billing", "near", TARGETS_EACH_REPLICA, seen, sizeof seen, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_NOT_FOUND);
    ASSERT_TRUE(strcmp(err.msg, "database 'billing' has no replica 'near'") == 0);
    ASSERT_STR_CONTAINS(err.hint, "0 = first");
    ASSERT_EQ(walk(cfg, NULL, "far-away", TARGETS_EACH_REPLICA, seen, sizeof seen, &err), -1);
    ASSERT_TRUE(strcmp(err.msg, "no database selected has a replica 'far-away'") == 0);
    /* opening names it the same way */
    struct storage *st = NULL;
    ASSERT_EQ(targets_open_replica(&cfg->dbs[2], "near", &st, &err), -1);
    ASSERT_TRUE(strcmp(err.msg, "database 'billing' has no replica 'near'") == 0 && st == NULL);
    /* a pattern that matches nothing */
    ASSERT_EQ(walk(cfg, "zz*", NULL, TARGETS_EACH_REPLICA, seen, sizeof seen, &err), -1);
    ASSERT_TRUE(strcmp(err.msg, "no database matches 'zz*'") == 0);
    config_free(cfg);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"targets: each replica, --replica by name or index, one per database", test_each_replica_and_one_per_database},
        {"targets: one wording of a missing replica", test_no_replica_is_one_error},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
