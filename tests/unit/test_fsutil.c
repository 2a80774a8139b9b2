/* test_fsutil.c - the safe-local-file helpers of common/fsutil.h on real
 * files: a planted symbolic link (to a file, dangling) or an existing
 * file is refused by fsutil_create_exclusive and its target left alone;
 * mkdtemp directories are new, 0700 and unpredictable; a directory is
 * "ours" only when it is a real directory owned by the effective uid and
 * not writable by group or others (as root, one chowned to nobody stands
 * for another user's; as anyone else, mode 0777 does). */
#include "harness.h"

#include "../../common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define NOBODY_UID 65534

static void tmp_path(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", harness_tmpdir(), name);
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
}

static void read_text(const char *path, char *out, size_t len)
{
    FILE *fp = fopen(path, "r");
    size_t n = fp ? fread(out, 1, len - 1, fp) : 0;
    out[n] = '\0';
    if (fp)
        fclose(fp);
}

static void test_create_exclusive_new_file_is_0600(void)
{
    char path[PATH_MAX];
    tmp_path(path, sizeof path, "new.db");
    struct tm_error err;
    mode_t old = umask(0);
    int fd = fsutil_create_exclusive(path, &err);
    umask(old);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write(fd, "abc", 3), 3);
    close(fd);
    struct stat st;
    ASSERT_EQ(lstat(path, &st), 0);
    ASSERT_TRUE(S_ISREG(st.st_mode));
    ASSERT_EQ(st.st_mode & 07777, 0600);
    ASSERT_EQ(st.st_size, 3);
}

static void test_create_exclusive_refuses_planted_symlink(void)
{
    char target[PATH_MAX], link[PATH_MAX], text[64];
    tmp_path(target, sizeof target, "victim");
    tmp_path(link, sizeof link, "output.tidemark-restore-1");
    write_text(target, "precious");
    chmod(target, 0644);
    ASSERT_EQ(symlink(target, link), 0);
    struct tm_error err;
    ASSERT_EQ(fsutil_create_exclusive(link, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_REFUSED);
    ASSERT_STR_CONTAINS(err.msg, link);
    ASSERT_STR_CONTAINS(err.msg, "symbolic link");
    read_text(target, text, sizeof text);
    ASSERT_STR_EQ(text, "precious");
    struct stat st;
    ASSERT_EQ(stat(target, &st), 0);
    ASSERT_EQ(st.st_mode & 07777, 0644);
}

static void test_create_exclusive_refuses_dangling_symlink_and_file(void)
{
    char target[PATH_MAX], link[PATH_MAX], file[PATH_MAX], text[64];
    tmp_path(target, sizeof target, "not-yet");
    tmp_path(link, sizeof link, "dangling");
    tmp_path(file, sizeof file, "existing");
    ASSERT_EQ(symlink(target, link), 0);
    write_text(file, "theirs");
    struct tm_error err;
    ASSERT_EQ(fsutil_create_exclusive(link, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, link);
    ASSERT_EQ(access(target, F_OK), -1);   /* the link's target was not created */
    ASSERT_EQ(fsutil_create_exclusive(file, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, file);
    read_text(file, text, sizeof text);
    ASSERT_STR_EQ(text, "theirs");        /* not truncated */
}

static void test_private_dir_is_new_0700_and_unpredictable(void)
{
    char a[PATH_MAX], b[PATH_MAX];
    tmp_path(a, sizeof a, "scratch-XXXXXX");
    tmp_path(b, sizeof b, "scratch-XXXXXX");
    struct tm_error err;
    ASSERT_EQ(fsutil_private_dir(a, &err), 0);
    ASSERT_EQ(fsutil_private_dir(b, &err), 0);
    ASSERT_TRUE(strcmp(a, b) != 0);
    ASSERT_TRUE(strstr(a, "XXXXXX") == NULL);
    struct stat st;
    ASSERT_EQ(lstat(a, &st), 0);
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    ASSERT_EQ(st.st_mode & 07777, 0700);
    ASSERT_EQ(st.st_uid, geteuid());
    ASSERT_EQ(fsutil_check_dir_is_ours(a, &err), 0);
}

static void test_private_dir_reports_missing_parent(void)
{
    char path[PATH_MAX];
    tmp_path(path, sizeof path, "no-such-dir/scratch-XXXXXX");
    struct tm_error err;
    ASSERT_EQ(fsutil_private_dir(path, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "no-such-dir/scratch-");
}

static void test_check_dir_refuses_symlink_to_our_dir(void)
{
    char dir[PATH_MAX], link[PATH_MAX];
    tmp_path(dir, sizeof dir, "ours");
    tmp_path(link, sizeof link, "link-to-ours");
    ASSERT_EQ(mkdir(dir, 0700), 0);
    ASSERT_EQ(symlink(dir, link), 0);
    struct tm_error err;
    ASSERT_EQ(fsutil_check_dir_is_ours(dir, &err), 0);
    ASSERT_EQ(fsutil_check_dir_is_ours(link, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_REFUSED);
    ASSERT_STR_CONTAINS(err.msg, link);
    ASSERT_STR_CONTAINS(err.msg, "symbolic link");
    ASSERT_EQ(fsutil_ensure_private_dir(link, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "symbolic link");
}

static void test_check_dir_refuses_writable_by_others(void)
{
    char world[PATH_MAX], group[PATH_MAX];
    tmp_path(world, sizeof world, "world");
    tmp_path(group, sizeof group, "group");
    ASSERT_EQ(mkdir(world, 0700), 0);
    ASSERT_EQ(mkdir(group, 0700), 0);
    ASSERT_EQ(chmod(world, 01777), 0);   /* sticky like /tmp: still not ours to share */
    ASSERT_EQ(chmod(group, 0770), 0);
    struct tm_error err;
    ASSERT_EQ(fsutil_check_dir_is_ours(world, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, world);
    ASSERT_STR_CONTAINS(err.msg, "writable by other users");
    ASSERT_EQ(fsutil_check_dir_is_ours(group, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "writable by its group");
    ASSERT_EQ(fsutil_ensure_private_dir(world, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, world);
}

static void test_check_dir_refuses_other_owner(void)
{
    char dir[PATH_MAX];
    tmp_path(dir, sizeof dir, "theirs");
    ASSERT_EQ(mkdir(dir, 0755), 0);
    struct tm_error err;
    if (geteuid() == 0) {
        ASSERT_EQ(chown(dir, NOBODY_UID, NOBODY_UID), 0);
        ASSERT_EQ(fsutil_check_dir_is_ours(dir, &err), -1);
        ASSERT_STR_CONTAINS(err.msg, dir);
        ASSERT_STR_CONTAINS(err.msg, "owned by uid 65534, not by uid 0");
    } else {   /* cannot give it away: a directory anyone may write stands for one */
        ASSERT_EQ(chmod(dir, 0777), 0);
        ASSERT_EQ(fsutil_check_dir_is_ours(dir, &err), -1);
        ASSERT_STR_CONTAINS(err.msg, dir);
    }
    ASSERT_EQ(fsutil_ensure_private_dir(dir, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_REFUSED);
}

static void test_check_dir_refuses_file_and_missing(void)
{
    char file[PATH_MAX], missing[PATH_MAX];
    tmp_path(file, sizeof file, "plain");
    tmp_path(missing, sizeof missing, "missing");
    write_text(file, "x");
    struct tm_error err;
    ASSERT_EQ(fsutil_check_dir_is_ours(file, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "not a directory");
    ASSERT_EQ(fsutil_check_dir_is_ours(missing, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_NOT_FOUND);
}

static void test_ensure_private_dir_creates_path_0700(void)
{
    char dir[PATH_MAX];
    tmp_path(dir, sizeof dir, "a/b/c");
    struct tm_error err;
    ASSERT_EQ(fsutil_ensure_private_dir(dir, &err), 0);
    struct stat st;
    ASSERT_EQ(lstat(dir, &st), 0);
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    ASSERT_EQ(st.st_mode & 0077, 0);
    ASSERT_EQ(fsutil_ensure_private_dir(dir, &err), 0);   /* existing and ours: accepted */
}

static void test_ensure_private_path_checks_each_level_below_base(void)
{
    char base[PATH_MAX], mid[PATH_MAX], leaf[PATH_MAX];
    tmp_path(base, sizeof base, "out");
    tmp_path(mid, sizeof mid, "out/tenants");
    tmp_path(leaf, sizeof leaf, "out/tenants/eu");
    struct tm_error err;
    ASSERT_EQ(fsutil_ensure_private_path(base, leaf, &err), 0);
    struct stat st;
    ASSERT_EQ(lstat(leaf, &st), 0);
    ASSERT_EQ(st.st_mode & 0077, 0);
    ASSERT_EQ(chmod(mid, 0777), 0);   /* one level below base made writable by anyone */
    ASSERT_EQ(fsutil_ensure_private_path(base, leaf, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, mid);
    ASSERT_EQ(fsutil_ensure_private_path(base, base, &err), 0);   /* base alone is still ours */
    ASSERT_EQ(fsutil_ensure_private_path(mid, "/elsewhere", &err), -1);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"fsutil: create_exclusive makes a new 0600 file", test_create_exclusive_new_file_is_0600},
        {"fsutil: create_exclusive refuses a planted symlink, target untouched",
         test_create_exclusive_refuses_planted_symlink},
        {"fsutil: create_exclusive refuses a dangling symlink and an existing file",
         test_create_exclusive_refuses_dangling_symlink_and_file},
        {"fsutil: private_dir is new, 0700, unpredictable", test_private_dir_is_new_0700_and_unpredictable},
        {"fsutil: private_dir names the path it could not create", test_private_dir_reports_missing_parent},
        {"fsutil: a symlink to our directory is not ours", test_check_dir_refuses_symlink_to_our_dir},
        {"fsutil: a directory writable by group or others is not ours", test_check_dir_refuses_writable_by_others},
        {"fsutil: a directory of another owner is not ours", test_check_dir_refuses_other_owner},
        {"fsutil: a file or a missing path is not our directory", test_check_dir_refuses_file_and_missing},
        {"fsutil: ensure_private_dir creates the path 0700, accepts it again",
         test_ensure_private_dir_creates_path_0700},
        {"fsutil: ensure_private_path checks base and every level below it",
         test_ensure_private_path_checks_each_level_below_base},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
