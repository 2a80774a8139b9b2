/* test_config.c - configuration errors name file, line and column; key
 * file checks; durations and restore times; the schema's keys against
 * docs/configuration.md. */
#include "harness.h"

#include "../../common/clock.h"
#include "../../common/config.h"
#include "../../common/crypto.h"

#include <libgen.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", harness_tmpdir(), name);
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
    chmod(path, mode);
    return path;
}

static const char *key_path(void)
{
    static char path[512];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s/key", harness_tmpdir());
        struct tm_error err;
        crypto_keygen(path, &err);
    }
    return path;
}

/* Loads `body` (with KEY replaced by the key path); returns the error. */
static int load(const char *body, struct tm_error *err, struct config **cfg)
{
    char text[2048];
    const char *mark = strstr(body, "KEY");
    if (mark)
        snprintf(text, sizeof text, "%.*s%s%s", (int)(mark - body), body, key_path(), mark + 3);
    else
        snprintf(text, sizeof text, "%s", body);
    return config_load(write_file("c.yml", text, 0644), cfg, err);
}

static void test_valid_config_defaults(void)
{
    struct config *cfg;
    struct tm_error err;
    setenv("TM_TEST_DIR", "/var/backups/x", 1);
    ASSERT_EQ(load("encryption:\n  key-file: KEY\ndbs:\n  - path: /data/app.db\n"
                   "    replicas:\n      - path: ${TM_TEST_DIR}\n", &err, &cfg), 0);
    ASSERT_EQ(cfg->db_count, 1);
    ASSERT_TRUE(strcmp(cfg->dbs[0].name, "app") == 0);
    ASSERT_EQ(cfg->dbs[0].sync_interval_ms, 1000);
    ASSERT_EQ(cfg->dbs[0].snapshot_interval_ms, 0);
    ASSERT_TRUE(strcmp(cfg->dbs[0].snapshot_schedule, "0 3 * * *") == 0);   /* daily 03:00 UTC */
    ASSERT_EQ(cfg->dbs[0].retention.enabled, 1);
    ASSERT_EQ(cfg->dbs[0].retention.daily, 7);
    ASSERT_EQ(cfg->dbs[0].retention.weekly, 4);
    ASSERT_EQ(cfg->dbs[0].retention.monthly, 12);
    ASSERT_EQ(cfg->dbs[0].retention.yearly, 7);
    ASSERT_EQ(cfg->dbs[0].retention.point_in_time_ms, 7LL * 86400 * 1000);
    ASSERT_EQ(cfg->dbs[0].drill.enabled, 1);
    ASSERT_TRUE(strcmp(cfg->dbs[0].drill.schedule, "0 4 1 * *") == 0);
    ASSERT_TRUE(strcmp(cfg->dbs[0].replicas[0].path, "/var/backups/x") == 0);
    config_free(cfg);
}

static void test_unknown_key_has_position(void)
{
    struct config *cfg;
    struct tm_error err;
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /data/app.db\n    sync-intervall: 1s\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "c.yml:4:5: unknown key 'sync-intervall'");
    ASSERT_STR_CONTAINS(err.hint, "sync-interval");
}

/* The hint comes from the schema: the nearest key, or the kind of entry
 * that takes it, then the keys this one takes. */
static void test_unknown_key_hints(void)
{
    struct config *cfg;
    struct tm_error err;
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /data/app.db\n    sync-intervall: 1s\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.hint, "did you mean 'sync-interval'? database entry keys are: path, dir, pattern");
    ASSERT_EQ(load("encryption: none\nretention: { dayly: 3 }\ndbs:\n  - path: /a.db\n    replicas: [{path: /b}]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":2:14: unknown key 'dayly' in 'retention'");
    ASSERT_STR_CONTAINS(err.hint, "did you mean 'daily'? retention keys are: daily, weekly, monthly, yearly, point-in-time");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas: [{path: /b, bucket: c}]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":4:27: unknown key 'bucket' in replica");
    ASSERT_TRUE(strcmp(err.hint, "'bucket' does not go in a file replica; file replica keys are: type, name, path") == 0);
    ASSERT_EQ(load("encryption: none\nlog-format: xml\ndbs:\n  - path: /a.db\n    replicas: [{path: /b}]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":2:13: unknown log-format 'xml'");
    ASSERT_TRUE(strcmp(err.hint, "write 'log-format: logfmt' or 'log-format: json'") == 0);
}

static void test_bad_duration(void)
{
    struct config *cfg;
    struct tm_error err;
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    sync-interval: 10\n"
                   "    replicas: [{path: /b}]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":4:20: 'sync-interval': invalid duration '10'");
}

static void test_encryption_required(void)
{
    struct config *cfg;
    struct tm_error err;
    ASSERT_EQ(load("dbs:\n  - path: /a.db\n    replicas: [{path: /b}]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "no 'encryption' section");
}

static void test_key_file_problems(void)
{
    struct config *cfg;
    struct tm_error err;
    ASSERT_EQ(load("encryption:\n  key-file: /nonexistent/key\ndbs:\n  - path: /a.db\n"
                   "    replicas: [{path: /b}]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":2:13: cannot open key file '/nonexistent/key'");
    chmod(key_path(), 0644);
    ASSERT_EQ(load("encryption:\n  key-file: KEY\ndbs:\n  - path: /a.db\n    replicas: [{path: /b}]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "accessible by group or others");
    ASSERT_STR_CONTAINS(err.hint, "chmod 600");
    chmod(key_path(), 0600);
}

static void test_missing_env_and_replicas(void)
{
    struct config *cfg;
    struct tm_error err;
    unsetenv("TM_NOT_SET");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: ${TM_NOT_SET}/a.db\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "environment variable 'TM_NOT_SET' is not set");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "has no replica");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas: [{path: /b}]\n"
                   "  - path: /c/a.db\n    replicas: [{path: /b}]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "duplicate database name 'a'");
    ASSERT_EQ(load("encryption: none\ndbs: [\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "invalid YAML");
}

static void test_times_and_durations(void)
{
    int64_t ms;
    struct tm_error err;
    ASSERT_EQ(clock_parse_time("2026-11-23T03:15:42Z", &ms, &err), 0);
    ASSERT_EQ(ms, 1795403742000LL);
    ASSERT_EQ(clock_parse_time("2026-11-23T05:15:42+02:00", &ms, &err), 0);
    ASSERT_EQ(ms, 1795403742000LL);
    ASSERT_EQ(clock_parse_time("2026-11-23T03:15:42.250Z", &ms, &err), 0);
    ASSERT_EQ(ms, 1795403742250LL);
    ASSERT_EQ(clock_parse_time("1795403742", &ms, &err), 0);
    ASSERT_EQ(ms, 1795403742000LL);
    ASSERT_EQ(clock_parse_time("2026-02-31T00:00:00Z", &ms, &err), -1);
    ASSERT_EQ(clock_parse_time("yesterday", &ms, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "invalid time 'yesterday'");
    ASSERT_EQ(clock_parse_duration("250ms", &ms, &err), 0);
    ASSERT_EQ(ms, 250);
    ASSERT_EQ(clock_parse_duration("7d", &ms, &err), 0);
    ASSERT_EQ(ms, 7LL * 86400000);
    ASSERT_EQ(clock_parse_duration("5 minutes", &ms, &err), -1);
    char text[40];
    clock_format_ms(1795403742250LL, text, sizeof text);
    ASSERT_TRUE(strcmp(text, "2026-11-23T03:15:42.250Z") == 0);
}

static void test_s3_replica(void)
{
    struct config *cfg;
    struct tm_error err;
    setenv("TM_TEST_SECRET", "s3cr3t", 1);
    ASSERT_EQ(load("encryption: none\nstate-dir: /var/lib/tidemark\nspool-limit: 2GiB\ndbs:\n  - path: /data/app.db\n"
                   "    replicas:\n      - type: file\n        path: /b\n"
                   "      - type: s3\n        bucket: backups\n        path: /prod/app/\n        region: eu-central-1\n"
                   "        force-path-style: true\n        access-key-id: AKID\n        secret-access-key: ${TM_TEST_SECRET}\n"
                   "        require-versioning: yes\n        part-size: 16MiB\n"
                   "        object-lock: { mode: governance, retain: 30d }\n", &err, &cfg), 0);
    const struct config_replica *s3 = &cfg->dbs[0].replicas[1];
    ASSERT_EQ(s3->type, REPLICA_S3);
    ASSERT_TRUE(strcmp(s3->name, "s3") == 0);
    ASSERT_TRUE(strcmp(s3->path, "prod/app") == 0);   /* slashes trimmed */
    ASSERT_TRUE(strcmp(s3->s3.secret_access_key, "s3cr3t") == 0);
    ASSERT_EQ(s3->s3.force_path_style, 1);
    ASSERT_EQ(s3->s3.require_versioning, 1);
    ASSERT_EQ(s3->s3.part_size, 16 * 1024 * 1024);
    ASSERT_TRUE(strcmp(s3->s3.object_lock_mode, "GOVERNANCE") == 0);
    ASSERT_EQ(s3->s3.object_lock_retain_ms, 30LL * 86400 * 1000);
    ASSERT_EQ(cfg->spool_limit, 2LL * 1024 * 1024 * 1024);
    ASSERT_TRUE(strcmp(cfg->dbs[0].state_dir, "/var/lib/tidemark/app") == 0);
    config_free(cfg);

    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /data/app.db\n    replicas: [{type: file, path: /b}]\n", &err, &cfg), 0);
    ASSERT_TRUE(strcmp(cfg->dbs[0].state_dir, "/data/.app.db-tidemark") == 0);
    config_free(cfg);
}

static void test_s3_replica_errors(void)
{
    struct config *cfg;
    struct tm_error err;
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n        path: x\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":5:9: replica of type 's3' has no 'bucket'");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n        bucket: b\n"
                   "        access-key-id: AKID\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "only one of 'access-key-id' and 'secret-access-key'");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n        bucket: b\n"
                   "        part-size: 1MiB\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "'part-size' is out of range");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n        bucket: b\n"
                   "        endpoint: minio:9000\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "'endpoint' must start with https:// or http://");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n        bucket: b\n"
                   "        buckett: c\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":7:9: unknown key 'buckett' in replica");
    ASSERT_STR_CONTAINS(err.hint, "bucket, path, region");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas:\n      - type: gcs\n        bucket: b\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":5:15: unknown replica type 'gcs'");
    ASSERT_EQ(load("encryption: none\nspool-limit: lots\ndbs:\n  - path: /a.db\n    replicas: [{path: /b}]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":2:14: 'spool-limit' is not a valid size");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n        bucket: b\n"
                   "        object-lock: { mode: strict, retain: 1d }\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "'object-lock' needs 'mode: governance' or 'mode: compliance'");
}

static void test_schedules_retention_drill(void)
{
    struct config *cfg;
    struct tm_error err;
    ASSERT_EQ(load("encryption: none\nretention: { daily: 3, yearly: 0, point-in-time: 2d }\ndbs:\n"
                   "  - path: /a.db\n    snapshot-interval: 6h\n    replicas: [{path: /b}]\n"
                   "  - path: /c.db\n    snapshot: { schedule: \"30 1 * * mon\" }\n    retention: off\n"
                   "    drill: { schedule: \"0 5 * * *\", staging: /tmp/s, check-sql: \"SELECT 1\" }\n"
                   "    replicas: [{path: /d}]\n", &err, &cfg), 0);
    const struct config_db *a = &cfg->dbs[0], *c = &cfg->dbs[1];
    ASSERT_EQ(a->snapshot_interval_ms, 6LL * 3600 * 1000);
    ASSERT_EQ(a->snapshot_cron_set, 0);                 /* an interval alone: no default schedule */
    ASSERT_EQ(a->retention.daily, 3);
    ASSERT_EQ(a->retention.weekly, 4);                  /* unset keys keep their defaults */
    ASSERT_EQ(a->retention.yearly, 0);
    ASSERT_EQ(a->retention.point_in_time_ms, 2LL * 86400 * 1000);
    ASSERT_EQ(c->snapshot_cron_set, 1);
    ASSERT_TRUE(strcmp(c->snapshot_schedule, "30 1 * * mon") == 0);
    ASSERT_EQ(c->retention.enabled, 0);
    ASSERT_TRUE(strcmp(c->drill.staging, "/tmp/s") == 0 && strcmp(c->drill.check_sql, "SELECT 1") == 0);
    config_free(cfg);
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    snapshot: { schedule: \"0 3 * *\" }\n"
                   "    replicas: [{path: /b}]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":4:27: 'schedule': cron expression '0 3 * *' has 4 fields, expected 5");
    ASSERT_EQ(load("encryption: none\nretention: { daily: -1 }\ndbs:\n  - path: /a.db\n    replicas: [{path: /b}]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":2:21: 'daily' must be a whole number");
    ASSERT_EQ(load("encryption: none\nretention: { hourly: 24 }\ndbs:\n  - path: /a.db\n    replicas: [{path: /b}]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "unknown key 'hourly' in 'retention'");
    /* found by fuzzing: a key given twice (it once overflowed the replica array) */
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas: [{path: /b}, {path: /c, name: c}]\n"
                   "    replicas: [{path: /d}]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":5:5: 'replicas' is given twice");
}

/* drill: { publish, after, after-timeout }: a staging file or sqld
 * namespace, never the database itself nor `default`. */
static void test_drill_publish(void)
{
    struct config *cfg;
    struct tm_error err;
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas: [{path: /b}]\n", &err, &cfg), 0);
    const struct config_drill *d = &cfg->dbs[0].drill;
    ASSERT_TRUE(!d->publish_file && !d->publish_sqld.name && !d->after);   /* the scratch copy only */
    ASSERT_EQ(d->after_timeout_ms, 5LL * 60 * 1000);
    config_free(cfg);
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    drill: { publish: /srv/staging/app.db, after: "
                   "\"./smoke.sh\", after-timeout: 30s }\n    replicas: [{path: /b}]\n", &err, &cfg), 0);
    d = &cfg->dbs[0].drill;
    ASSERT_TRUE(strcmp(d->publish_file, "/srv/staging/app.db") == 0 && strcmp(d->after, "./smoke.sh") == 0);
    ASSERT_EQ(d->after_timeout_ms, 30000);
    ASSERT_TRUE(!d->publish_sqld.name);
    config_free(cfg);
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    drill:\n      publish: { sqld-admin: "
                   "http://127.0.0.1:9090, sqld-url: http://127.0.0.1:8080, namespace: staging-1 }\n"
                   "    replicas: [{path: /b}]\n", &err, &cfg), 0);
    d = &cfg->dbs[0].drill;
    ASSERT_TRUE(!d->publish_file && strcmp(d->publish_sqld.name, "staging-1") == 0);
    ASSERT_TRUE(strcmp(d->publish_sqld.admin_url, "http://127.0.0.1:9090") == 0);
    ASSERT_TRUE(strcmp(d->publish_sqld.http_url, "http://127.0.0.1:8080") == 0);
    config_free(cfg);
    /* the database itself, however spelled, or another database of the file */
    char dir[600], body[1600];
    snprintf(dir, sizeof dir, "%s", harness_tmpdir());
    snprintf(body, sizeof body, "encryption: none\ndbs:\n  - path: %s/app.db\n    drill: { publish: %s/./app.db }\n"
             "    replicas: [{path: /b}]\n", dir, dir);
    ASSERT_EQ(load(body, &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":4:12: 'publish' '");
    ASSERT_STR_CONTAINS(err.msg, "/./app.db' is the database 'app' itself: a drill never replaces it");
    snprintf(body, sizeof body, "encryption: none\ndbs:\n  - path: /a.db\n    drill: { publish: %s/other.db }\n"
             "    replicas: [{path: /b}]\n  - path: %s/../%s/other.db\n    replicas: [{path: /c}]\n", dir, dir,
             basename(dir));
    ASSERT_EQ(load(body, &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "the drill of 'a' publishes to '");
    ASSERT_STR_CONTAINS(err.msg, "the database 'other': a drill never replaces a database backed up");
    /* mistakes */
    static const struct { const char *body, *error; } bad[] = {
        {"    drill: { publish: relative.db }\n", ":4:23: 'publish' must be an absolute path"},
        {"    drill: { publish: [a, b] }\n", ":4:23: 'publish' must be a file path or a mapping"},
        {"    drill: { publish: { sqld-admin: http://h:1, sqld-url: http://h:2, namespace: default } }\n",
         "'publish' never replaces the 'default' namespace"},
        {"    drill: { publish: { sqld-admin: http://h:1, sqld-url: http://h:2, namespace: a.b } }\n",
         "invalid namespace 'a.b'"},
        {"    drill: { publish: { sqld-admin: http://h:1, namespace: s } }\n",
         "'publish' to sqld needs 'sqld-admin', 'sqld-url' and 'namespace'"},
        {"    drill: { publish: { sqld-admin: h:1, sqld-url: http://h:2, namespace: s } }\n",
         "'h:1' must be an http:// or https:// URL"},
        {"    drill: { publish: { sqld-admn: http://h:1 } }\n", "unknown key 'sqld-admn' in 'publish'"},
        {"    drill: { after: ./x, after-timeout: 10ms }\n", "'after-timeout' must be 1s or more"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(body, sizeof body, "encryption: none\ndbs:\n  - path: /a.db\n%s    replicas: [{path: /b}]\n",
                 bad[i].body);
        ASSERT_EQ(load(body, &err, &cfg), -1);
        ASSERT_STR_CONTAINS(err.msg, bad[i].error);
    }
    /* a Redis or dir: entry's drill keeps its scratch copy */
    ASSERT_EQ(load("encryption: none\nredis:\n  - name: c\n    addr: 127.0.0.1:6379\n    drill: { publish: /s.db }\n"
                   "    replicas: [{path: /b}]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":5:12: 'publish' goes with a 'path:' database");
    ASSERT_EQ(load("encryption: none\nredis:\n  - name: c\n    addr: 127.0.0.1:6379\n    drill: { after: ./x }\n"
                   "    replicas: [{path: /b}]\n", &err, &cfg), 0);
    config_free(cfg);
}

static void test_redis_entries(void)
{
    struct config *cfg;
    struct tm_error err;
    setenv("TM_REDIS_PASSWORD", "s3cret", 1);
    ASSERT_EQ(load("encryption:\n  key-file: KEY\ndbs:\n  - path: /data/app.db\n    replicas: [ { path: /b } ]\n"
                   "redis:\n  - name: cache\n    addr: 10.0.0.5:6380\n    username: backup\n"
                   "    password: ${TM_REDIS_PASSWORD}\n    replicas: [ { path: /b } ]\n", &err, &cfg), 0);
    ASSERT_EQ(cfg->db_count, 2);
    const struct config_db *r = &cfg->dbs[1];
    ASSERT_EQ(r->kind, DB_REDIS);
    ASSERT_EQ(cfg->dbs[0].kind, DB_SQLITE);
    ASSERT_TRUE(strcmp(r->redis_addr, "10.0.0.5:6380") == 0 && strcmp(r->redis_password, "s3cret") == 0 &&
                strcmp(r->redis_username, "backup") == 0);
    ASSERT_TRUE(strcmp(r->snapshot_schedule, "0 */6 * * *") == 0);   /* every 6 hours by default */
    ASSERT_TRUE(strcmp(r->state_dir, "/var/lib/tidemark/cache") == 0);
    ASSERT_EQ(r->deltas, 0);
    ASSERT_TRUE(r->snapshot_wal_ratio == 0);
    config_free(cfg);
    /* a configuration of Redis entries only */
    ASSERT_EQ(load("encryption: none\nstate-dir: /s\nredis:\n  - name: c\n    addr: h\n    replicas: [ { path: /b } ]\n",
                   &err, &cfg), 0);
    ASSERT_TRUE(strcmp(cfg->dbs[0].state_dir, "/s/c") == 0);
    config_free(cfg);
    ASSERT_EQ(load("encryption: none\nredis:\n  - name: c\n    replicas: [ { path: /b } ]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "redis entry 'c' has no 'addr'");
    ASSERT_EQ(load("encryption: none\nredis:\n  - addr: h\n    replicas: [ { path: /b } ]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "redis entry has no 'name'");
    ASSERT_EQ(load("encryption: none\nredis:\n  - name: c\n    addr: h\n    path: /x.db\n    replicas: [ { path: /b } ]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":5:5: unknown key 'path' in redis entry");
    ASSERT_STR_CONTAINS(err.hint, "addr, username, password");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    addr: h\n    replicas: [ { path: /b } ]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "unknown key 'addr' in database entry");
}

static void test_dir_entries(void)
{
    struct config *cfg;
    struct tm_error err;
    ASSERT_EQ(load("encryption: none\ndbs:\n  - dir: /var/lib/app/tenants/\n    recursive: true\n"
                   "    replicas: [ { path: /b } ]\n", &err, &cfg), 0);
    const struct config_db *entry = &cfg->dbs[0];
    ASSERT_TRUE(strcmp(entry->name, "tenants") == 0 && strcmp(entry->pattern, "*.db") == 0);
    ASSERT_TRUE(entry->path == NULL && entry->recursive == 1 && entry->max_open == 128);
    ASSERT_EQ(entry->idle_after_ms, 60000);
    ASSERT_EQ(entry->snapshot_spread_ms, 3600 * 1000);   /* many databases: spread over an hour */
    ASSERT_TRUE(strcmp(entry->state_dir, "/var/lib/app/tenants/.tidemark") == 0);
    /* a database under it, by name: the entry's settings, its own path and state */
    const struct config_db *db = config_find_db(cfg, "tenants/eu/acme corp.db", &err);
    ASSERT_TRUE(db != NULL);
    ASSERT_TRUE(db->entry == entry && db->replicas == entry->replicas && db->dir == NULL);
    ASSERT_TRUE(strcmp(db->path, "/var/lib/app/tenants/eu/acme corp.db") == 0);
    ASSERT_STR_CONTAINS(db->state_dir, "/.tidemark/eu%2Facme%20corp.db");
    ASSERT_TRUE(config_find_db(cfg, "tenants/eu/acme corp.db", &err) == db);   /* made once */
    ASSERT_TRUE(config_find_db(cfg, "tenants/../etc/passwd", &err) == NULL);
    ASSERT_STR_CONTAINS(err.msg, "is not a relative path");
    ASSERT_TRUE(config_find_db(cfg, "other/x.db", &err) == NULL);
    ASSERT_STR_CONTAINS(err.msg, "no database named 'other/x.db'");
    config_free(cfg);
    /* with state-dir, pattern, name, limits */
    ASSERT_EQ(load("encryption: none\nstate-dir: /s\ndbs:\n  - dir: /t\n    name: users\n    pattern: \"*.sqlite\"\n"
                   "    max-open: 10\n    idle-after: 5s\n    snapshot: { spread: 10m }\n    metrics-per-database: true\n"
                   "    replicas: [ { path: /b } ]\n", &err, &cfg), 0);
    ASSERT_EQ(cfg->dbs[0].metrics_per_database, 1);
    ASSERT_TRUE(strcmp(cfg->dbs[0].state_dir, "/s/users") == 0 && cfg->dbs[0].max_open == 10);
    ASSERT_EQ(cfg->dbs[0].idle_after_ms, 5000);
    ASSERT_EQ(cfg->dbs[0].snapshot_spread_ms, 600000);
    config_free(cfg);
    /* mistakes */
    ASSERT_EQ(load("encryption: none\ndbs:\n  - dir: /t\n    path: /t/a.db\n    replicas: [ { path: /b } ]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "both 'path' and 'dir'");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - dir: /t\n    pattern: a/*.db\n    replicas: [ { path: /b } ]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "invalid 'pattern' 'a/*.db'");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /t/a.db\n    recursive: true\n    replicas: [ { path: /b } ]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "has directory settings but no 'dir'");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - dir: /t\n    recursive: maybe\n    replicas: [ { path: /b } ]\n",
                   &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, "'recursive' must be true or false");
}

static void test_missing_alert_after(void)
{
    struct config *cfg;
    struct tm_error err;
    /* default 10m; the alerts section sets every database's; a database its own; off */
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    replicas: [ { path: /b } ]\n", &err, &cfg), 0);
    ASSERT_EQ(cfg->dbs[0].missing_alert_after_ms, 600000);
    config_free(cfg);
    ASSERT_EQ(load("encryption: none\nalerts: { missing-alert-after: 2m }\ndbs:\n  - path: /a.db\n"
                   "    replicas: [ { path: /b } ]\n  - path: /c.db\n    missing-alert-after: 1.5s\n"
                   "    replicas: [ { path: /b } ]\n  - path: /d.db\n    missing-alert-after: off\n"
                   "    replicas: [ { path: /b } ]\n", &err, &cfg), 0);
    ASSERT_EQ(cfg->dbs[0].missing_alert_after_ms, 120000);
    ASSERT_EQ(cfg->dbs[1].missing_alert_after_ms, 1500);
    ASSERT_EQ(cfg->dbs[2].missing_alert_after_ms, 0);
    config_free(cfg);
    ASSERT_EQ(load("encryption: none\ndbs:\n  - path: /a.db\n    missing-alert-after: 0\n"
                   "    replicas: [ { path: /b } ]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":4:26: 'missing-alert-after': invalid duration '0'");
    ASSERT_EQ(load("encryption: none\ndbs:\n  - dir: /t\n    missing-alert-after: 5m\n"
                   "    replicas: [ { path: /b } ]\n", &err, &cfg), -1);
    ASSERT_STR_CONTAINS(err.msg, ":4:5: 'missing-alert-after' goes with 'path:', not 'dir:'");
}

/* docs/configuration.md, from the project root (where tests run) or
 * from beside this binary (build/MODE/tests/); malloc'd, or NULL. */
static char *read_docs(void)
{
    char exe[1024], path[1100];
    FILE *fp = fopen("docs/configuration.md", "rb");
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (!fp && len > 0) {
        exe[len] = '\0';
        snprintf(path, sizeof path, "%s/../../../docs/configuration.md", dirname(exe));
        fp = fopen(path, "rb");
    }
    if (!fp)
        return NULL;
    static char text[256 * 1024];
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[n] = '\0';
    return strdup(text);
}

/* The rows of the first table after the line `heading` (before the next
 * heading), one row a line, as a fresh string; NULL without a table. */
static char *table_under(const char *docs, const char *heading)
{
    char line[400];
    snprintf(line, sizeof line, "\n%s\n", heading);
    const char *at = strstr(docs, line);
    if (!at)
        return NULL;
    at += strlen(line);
    int fenced = 0;
    for (const char *p = at; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
        if (strncmp(p, "```", 3) == 0)
            fenced = !fenced;
        if (!fenced && p[0] == '#')
            return NULL;
        if (!fenced && p[0] == '|') {
            const char *end = strstr(p, "\n\n");
            return strndup(p, end ? (size_t)(end - p) : strlen(p));
        }
    }
    return NULL;
}

/* The row of table whose first cell names `key` (`key` or `key: ...`), or NULL. */
static const char *row_of(const char *table, const char *key, char *row, size_t size)
{
    char quoted[100], quoted_colon[100];
    snprintf(quoted, sizeof quoted, "`%s`", key);
    snprintf(quoted_colon, sizeof quoted_colon, "`%s:", key);
    for (const char *p = table; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        size_t len = strcspn(p, "\n");
        snprintf(row, size, "%.*s", (int)len, p);
        char *cell_end = strchr(row + 1, '|');
        if (!cell_end)
            continue;
        *cell_end = '\0';
        int named = strstr(row, quoted) || strstr(row, quoted_colon);
        *cell_end = '|';
        if (named)
            return row;
    }
    return NULL;
}

/* Whether a section documented under `heading` takes `key`. */
static int taken_under(const struct config_key_doc *keys, size_t count, const char *heading, const char *key)
{
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < count; j++)
            if (strcmp(keys[i].heading, heading) == 0 && strcmp(keys[j].section, keys[i].section) == 0 &&
                strcmp(keys[j].key, key) == 0)
                return 1;
    return 0;
}

/* Every name in the first cell of every row of table is taken there. */
static int table_keys_taken(const struct config_key_doc *keys, size_t count, const char *heading,
                            const char *table, char *bad, size_t size)
{
    for (const char *p = table; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        const char *cell_end = strchr(p + 1, '|');
        for (const char *q = strchr(p, '`'); q && cell_end && q < cell_end; q = strchr(q, '`')) {
            size_t len = strcspn(q + 1, "`: ");
            snprintf(bad, size, "%.*s", (int)len, q + 1);
            if (!taken_under(keys, count, heading, bad))
                return 0;
            q = strchr(q + 1, '`');
            q = q ? q + 1 : NULL;
        }
    }
    return 1;
}

/* Whether keys[i] is the first key documented under its heading. */
static int first_under(const struct config_key_doc *keys, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(keys[j].heading, keys[i].heading) == 0)
            return 0;
    return 1;
}

/* docs/configuration.md lists every key the parser takes, in the table of
 * its section, with its literal default; and documents no other key. */
static void test_docs_match_schema(void)
{
    struct config_key_doc keys[256];
    size_t count = config_schema_docs(keys, 256), wrong = 0;
    ASSERT_TRUE(count > 60 && count <= 256);
    char *docs = read_docs();
    ASSERT_TRUE(docs != NULL);
    for (size_t i = 0; i < count; i++) {
        char *table = table_under(docs, keys[i].heading), row[1200], bad[100];
        const char *documented = table ? row_of(table, keys[i].key, row, sizeof row) : NULL;
        int scalar_default = keys[i].def && strcmp(keys[i].type, "section") != 0;
        if (!documented)
            fprintf(stderr, "  %s key '%s' is not in the table under '%s'\n", keys[i].section, keys[i].key,
                    keys[i].heading);
        else if (scalar_default && !strstr(documented, keys[i].def))
            fprintf(stderr, "  the row of '%s' does not give its default '%s'\n", keys[i].key, keys[i].def);
        else if (first_under(keys, i) && !table_keys_taken(keys, count, keys[i].heading, table, bad, sizeof bad))
            fprintf(stderr, "  '%s' is documented under '%s' but not accepted there\n", bad, keys[i].heading);
        else
            wrong--;
        wrong++;
        free(table);
    }
    free(docs);
    ASSERT_EQ(wrong, 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    static const struct test_case cases[] = {
        {"config: valid file, defaults, ${VAR}", test_valid_config_defaults},
        {"config: unknown key reported at file:line:col with hint", test_unknown_key_has_position},
        {"config: unknown keys: the nearest key, or the entry that takes it, and the keys taken", test_unknown_key_hints},
        {"config: bad duration reported at its position", test_bad_duration},
        {"config: encryption must be explicit", test_encryption_required},
        {"config: missing and group-readable key files refused", test_key_file_problems},
        {"config: unset variable, no replica, duplicate name, bad YAML", test_missing_env_and_replicas},
        {"clock: RFC 3339, offsets, fractions, Unix seconds, durations", test_times_and_durations},
        {"config: s3 replica keys, state-dir, spool-limit, sizes", test_s3_replica},
        {"config: s3 replica mistakes named with their position", test_s3_replica_errors},
        {"config: snapshot schedules, retention defaults and overrides, drills", test_schedules_retention_drill},
        {"config: drill publish (file, sqld namespace), after, after-timeout; never the database", test_drill_publish},
        {"config: redis entries, their defaults and mistakes", test_redis_entries},
        {"config: dir entries, databases under them by name, mistakes", test_dir_entries},
        {"config: missing-alert-after: default, alerts section, per database, off", test_missing_alert_after},
        {"config: docs/configuration.md documents every key the schema takes, and only those", test_docs_match_schema},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
