/* test_storage_file.c - the local-directory replica driver
 * (common/storage/file.c) on a real directory: the storage contract
 * (put, read, list, remove, not found, abort), then what is particular to
 * it: objects are files under the root, a write is published atomically
 * by a rename from a hidden temporary, emptied directories go, and keys
 * that would leave the root are refused. */
#include "harness.h"
#include "storage_contract.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[512];

static struct storage *open_replica(void)
{
    snprintf(root, sizeof root, "%s/replica", harness_tmpdir());
    struct storage *st = NULL;
    struct tm_error err;
    if (storage_file_open(root, &st, &err) != 0)
        fprintf(stderr, "  %s\n", err.msg);
    return st;
}

#define CONTRACT_TEST(check) static void test_##check(void) \
    { struct storage *st = open_replica(); ASSERT_TRUE(st); contract_##check(st); storage_free(st); }

CONTRACT_TEST(put_read)
CONTRACT_TEST(empty_object)
CONTRACT_TEST(missing_is_not_found)
CONTRACT_TEST(list)
CONTRACT_TEST(remove)
CONTRACT_TEST(abort_and_uncommitted)

static void test_put_file(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    contract_put_file(st, harness_tmpdir());
    storage_free(st);
}

/* The names in directory `path` (dot files included) joined by ',', sorted. */
static void names_in(const char *path, char *out, size_t cap)
{
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0)
            snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "," : "", names[i]->d_name);
        free(names[i]);
    }
    if (n >= 0)
        free(names);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Until the commit, the bytes are in a hidden ".tmp.<name>.*" file beside
 * the final name (which does not exist); the commit renames it whole. */
static void test_publish_is_a_rename_of_a_hidden_temporary(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    char description[600];
    snprintf(description, sizeof description, "file:%s", root);
    ASSERT_STR_EQ(storage_describe(st), description);
    struct storage_writer *w;
    struct tm_error err;
    ASSERT_EQ(storage_write_begin(st, "gen/seg/00001.seg", &w, &err), 0);
    ASSERT_EQ(storage_write(w, "0123456789", 10, &err), 0);
    char dir[600], final[700], names[600];
    snprintf(dir, sizeof dir, "%s/gen/seg", root);
    snprintf(final, sizeof final, "%s/00001.seg", dir);
    names_in(dir, names, sizeof names);
    ASSERT_TRUE(strncmp(names, ".tmp.00001.seg.", 15) == 0 && !strchr(names, ','));
    ASSERT_EQ(file_size(final), -1);
    ASSERT_EQ(storage_write_commit(w, &err), 0);
    names_in(dir, names, sizeof names);
    ASSERT_STR_EQ(names, "00001.seg");
    ASSERT_EQ(file_size(final), 10);
    /* an aborted write leaves no temporary behind */
    ASSERT_EQ(storage_write_begin(st, "gen/seg/00002.seg", &w, &err), 0);
    ASSERT_EQ(storage_write(w, "abc", 3, &err), 0);
    storage_write_abort(w);
    names_in(dir, names, sizeof names);
    ASSERT_STR_EQ(names, "00001.seg");
    storage_free(st);
}

/* Temporaries a crash left (dot files) are never listed as objects. */
static void test_list_skips_dot_files(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    ASSERT_EQ(contract_put(st, "g/a.seg", "a", 1), 0);
    char stray[700];
    snprintf(stray, sizeof stray, "%s/g/.tmp.b.seg.123.0", root);
    FILE *f = fopen(stray, "w");
    ASSERT_TRUE(f);
    fputs("torn", f);
    fclose(f);
    struct storage_list list;
    struct tm_error err;
    ASSERT_EQ(storage_list(st, "g", &list, &err), 0);
    ASSERT_EQ(list.count, 1);
    int ok = strcmp(list.entries[0].name, "a.seg") == 0 && list.entries[0].size == 1;
    storage_list_release(&list);
    ASSERT_TRUE(ok);
    storage_free(st);
}

/* Removing the last object of a directory removes the directories left
 * empty, up to (not including) the root; a non-empty one stays. */
static void test_remove_prunes_empty_directories(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    ASSERT_EQ(contract_put(st, "app/gen1/seg/1.seg", "1", 1), 0);
    ASSERT_EQ(contract_put(st, "app/gen2/seg/2.seg", "2", 1), 0);
    struct tm_error err;
    ASSERT_EQ(storage_remove(st, "app/gen1/seg/1.seg", &err), 0);
    char names[600], app[600];
    snprintf(app, sizeof app, "%s/app", root);
    names_in(app, names, sizeof names);
    ASSERT_STR_EQ(names, "gen2");
    ASSERT_EQ(storage_remove(st, "app/gen2/seg/2.seg", &err), 0);
    names_in(root, names, sizeof names);
    ASSERT_STR_EQ(names, "");
    struct stat info;
    ASSERT_EQ(stat(root, &info), 0);   /* the root itself stays */
    storage_free(st);
}

/* A key with ".." or a leading '/' is refused by every operation, and
 * nothing is created outside the root. */
static void test_keys_leaving_the_root_are_refused(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    const char *bad[] = {"../escaped", "gen/../../escaped", "/tmp/escaped", "a/.."};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct storage_writer *w = NULL;
        struct storage_reader *r = NULL;
        struct storage_list list;
        struct tm_error err = {0};
        char expected[200];
        snprintf(expected, sizeof expected, "invalid object key '%s'", bad[i]);
        ASSERT_EQ(storage_write_begin(st, bad[i], &w, &err), -1);
        ASSERT_STR_EQ(err.msg, expected);
        ASSERT_EQ(storage_read_begin(st, bad[i], &r, &err), -1);
        ASSERT_STR_EQ(err.msg, expected);
        ASSERT_EQ(tm_error_code(&err), TM_ERR_REFUSED);
        ASSERT_EQ(storage_list(st, bad[i], &list, &err), -1);
        ASSERT_STR_EQ(err.msg, expected);
        ASSERT_EQ(storage_remove(st, bad[i], &err), -1);
        ASSERT_STR_EQ(err.msg, expected);
    }
    char names[600];
    names_in(harness_tmpdir(), names, sizeof names);
    ASSERT_STR_EQ(names, "replica");
    names_in(root, names, sizeof names);
    ASSERT_STR_EQ(names, "");
    storage_free(st);
}

/* The object is the file root/key, byte for byte. */
static void test_objects_are_files_under_the_root(void)
{
    struct storage *st = open_replica();
    ASSERT_TRUE(st);
    ASSERT_EQ(contract_put(st, "app/generations/g1/snapshot", "snapshot bytes", 14), 0);
    char path[700], text[32] = "";
    snprintf(path, sizeof path, "%s/app/generations/g1/snapshot", root);
    FILE *f = fopen(path, "r");
    ASSERT_TRUE(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    ASSERT_EQ(n, 14);
    ASSERT_STR_EQ(text, "snapshot bytes");
    storage_free(st);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"file storage: put and read back, replace", test_put_read},
        {"file storage: an empty object", test_empty_object},
        {"file storage: a missing object is not found", test_missing_is_not_found},
        {"file storage: list children sorted with sizes", test_list},
        {"file storage: remove and remove_many", test_remove},
        {"file storage: aborted and uncommitted writes are invisible", test_abort_and_uncommitted},
        {"file storage: put_file stores the file's bytes", test_put_file},
        {"file storage: publish renames a hidden temporary", test_publish_is_a_rename_of_a_hidden_temporary},
        {"file storage: list skips dot files", test_list_skips_dot_files},
        {"file storage: remove prunes emptied directories", test_remove_prunes_empty_directories},
        {"file storage: keys leaving the root are refused", test_keys_leaving_the_root_are_refused},
        {"file storage: objects are files under the root", test_objects_are_files_under_the_root},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
