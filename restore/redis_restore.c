/* redis_restore.c - rebuilding a Redis data set as of a point in time
 * (redis_restore.h).
 *
 * Plan (listings only, restore_plan): the newest snapshot at or before
 * the target, then the segments of its generation from index 0 on, which
 * must be contiguous. Into a temporary directory next to the output (new,
 * mode 0700, an unpredictable name: fsutil_private_dir):
 *
 *   appendonlydir/appendonly.aof.1.base.rdb   the snapshot's RDB, its
 *                                             CRC64 trailer checked
 *   appendonlydir/appendonly.aof.1.incr.aof   every unit (command, or
 *                                             MULTI ... EXEC block) received
 *                                             at or before the target
 *   appendonlydir/appendonly.aof.manifest
 *
 * Each segment is checked as in SQLite restores (header against name,
 * chain hash, payload hash) and its replication offsets must continue the
 * previous object's. Then the result is loaded into a private
 * redis-server (a Unix socket in a private directory of its own under
 * TMPDIR or /tmp, made with mkdtemp: nobody else can answer in its
 * place; no TCP port)
 * to check that Redis accepts it; with --format rdb that server also
 * SAVEs, and only dump.rdb is kept. The directory is renamed into place
 * last, so a failed restore leaves nothing at the output path. */
#include "redis_restore.h"

#include "../common/archive.h"
#include "../common/clock.h"
#include "../common/fsutil.h"
#include "../common/lease.h"
#include "../common/log.h"
#include "../common/rdb.h"
#include "../common/targets.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#define AOF_DIR "appendonlydir"
#define BASE_NAME "appendonly.aof.1.base.rdb"
#define INCR_NAME "appendonly.aof.1.incr.aof"
#define MANIFEST_NAME "appendonly.aof.manifest"
#define LOAD_TIMEOUT_S 600

struct redis_restore {
    const struct crypto_keyring *key;
    const struct restore_options *opts;
    struct storage *st;
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint8_t chain[OBJECT_HASH_BYTES];
    uint64_t offset;                  /* replication offset reached */
    int fd;                           /* the file being written */
    struct rdb_check rdb;
    int64_t snapshot_ms, last_unit_ms;
    uint64_t units_applied, segments_read, rdb_bytes;
    int stopped;                      /* a unit after the target was seen */
    int checked_by_loading;
    struct restore_skips skips;       /* newer snapshots skipped: missing, damaged or not valid */
};

static int write_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* -------------------------------------------------------------- objects */

static int snapshot_header(void *ctx, const struct redis_snapshot_header *h, struct tm_error *err)
{
    struct redis_restore *rr = ctx;
    if (strcmp(h->generation, rr->generation) != 0 || h->index != 0 || h->time_ms != rr->snapshot_ms)
        return tm_error_setc(err, TM_ERR_CORRUPT, "its header does not match its name (generation, index or time)");
    memcpy(rr->chain, h->chain_hash, sizeof rr->chain);
    rr->offset = h->offset;
    return 0;
}

static int snapshot_data(void *ctx, const uint8_t *data, size_t len, struct tm_error *err)
{
    struct redis_restore *rr = ctx;
    rdb_check_update(&rr->rdb, data, len);
    rr->rdb_bytes += len;
    if (write_all(rr->fd, data, len) != 0)
        return tm_error_set(err, "cannot write the base RDB: %s", strerror(errno));
    return 0;
}

static int segment_header(void *ctx, const struct redis_segment_header *h, struct tm_error *err)
{
    struct redis_restore *rr = ctx;
    if (strcmp(h->generation, rr->generation) != 0)
        return tm_error_set(err, "its header names another generation (%s)", h->generation);
    if (memcmp(h->prev_hash, rr->chain, OBJECT_HASH_BYTES) != 0)
        return tm_error_set(err, "it does not follow the previous object (chain hash mismatch)");
    if (h->start_offset != rr->offset)
        return tm_error_set(err, "it starts at replication offset %" PRIu64 ", not %" PRIu64 " where the previous "
                            "object ends", h->start_offset, rr->offset);
    return 0;
}

static int segment_unit(void *ctx, int64_t time_ms, const uint8_t *data, size_t len, struct tm_error *err)
{
    struct redis_restore *rr = ctx;
    if (rr->stopped || (rr->opts->has_target && time_ms > rr->opts->target_ms)) {
        rr->stopped = 1;
        return 0;
    }
    if (write_all(rr->fd, data, len) != 0)
        return tm_error_set(err, "cannot write the AOF: %s", strerror(errno));
    rr->units_applied++;
    rr->last_unit_ms = time_ms;
    return 0;
}

/* Creates DIR/NAME as rr->fd; its path in `path`. */
static int create_file(struct redis_restore *rr, const char *dir, const char *name, char path[PATH_MAX],
                       struct tm_error *err)
{
    snprintf(path, PATH_MAX, "%s/%s", dir, name);
    rr->fd = fsutil_create_exclusive(path, err);
    return rr->fd < 0 ? -1 : 0;
}

static int write_base(struct redis_restore *rr, const struct catalog_snapshot *snap, const char *dir,
                      struct tm_error *err)
{
    char path[PATH_MAX];
    if (create_file(rr, dir, BASE_NAME, path, err) != 0)
        return -1;
    rdb_check_init(&rr->rdb);
    rr->snapshot_ms = snap->time_ms;
    struct redis_snapshot_visitor visitor = {snapshot_header, snapshot_data, rr};
    struct redis_snapshot_header h;
    int rc = redis_snapshot_read(rr->st, snap->key, rr->key, &visitor, &h, err);
    int unchecked = 0;
    if (rc == 0)
        rc = rdb_check_finish(&rr->rdb, &unchecked, err);
    if (rc != 0)
        tm_error_prefix(err, "snapshot '%s': ", snap->key);
    if (rc == 0 && unchecked)
        log_warn("the snapshot's RDB has no checksum (the server runs with rdbchecksum no): not checked");
    if (rc == 0 && fsync(rr->fd) != 0)
        rc = tm_error_set(err, "cannot write '%s': %s", path, strerror(errno));
    close(rr->fd);
    rr->fd = -1;
    return rc;
}

/* Writes *snap as the base; while it fails for a reason of its own,
 * notes why in rr->skips, removes the base file and plans again without
 * it (the next older snapshot at or before the target, in an older
 * generation: *gen and *snap updated, the lease moved). With none left,
 * fails with the first snapshot's error. */
static int write_base_or_older(struct redis_restore *rr, struct catalog *cat, const struct catalog_generation **gen,
                               const struct catalog_snapshot **snap, const char *dir, char *lease, size_t lease_len,
                               struct tm_error *err)
{
    for (;;) {
        struct tm_error failure;
        snprintf(rr->generation, sizeof rr->generation, "%s", (*gen)->id);
        rr->rdb_bytes = 0;
        if (write_base(rr, *snap, dir, &failure) == 0)
            return 0;
        if (!restore_fall_back(cat, rr->opts, &rr->skips, &failure, gen, snap, err))
            return -1;
        char base[PATH_MAX + 64];
        snprintf(base, sizeof base, "%s/%s", dir, BASE_NAME);
        unlink(base);
        if (lease[0])   /* the lease names the generation read: now the older one */
            lease_release(rr->st, lease);
        if (lease_take(rr->st, rr->opts->db_name, (*gen)->id, clock_now_ms(), lease, lease_len, &failure) != 0)
            lease[0] = '\0';
    }
}

static int write_incr(struct redis_restore *rr, const struct catalog_generation *gen, const char *dir,
                      struct tm_error *err)
{
    char path[PATH_MAX];
    if (create_file(rr, dir, INCR_NAME, path, err) != 0)
        return -1;
    int rc = 0;
    uint64_t expected = 0;
    for (size_t i = 0; i < gen->segment_count && rc == 0 && !rr->stopped; i++) {
        const struct catalog_segment *seg = &gen->segments[i];
        if (rr->opts->has_target && seg->first_ms > rr->opts->target_ms)
            break;
        if (seg->index != expected) {
            char last[40];
            clock_format_ms(rr->last_unit_ms ? rr->last_unit_ms : rr->snapshot_ms, last, sizeof last);
            tm_error_set(err, "segment %016" PRIx64 " of generation %s is missing from the replica (the next one "
                         "present is '%s')", expected, gen->id, seg->key);
            rc = tm_error_hint(err, "the last consistent point reachable is %s: restore with --timestamp %s, or "
                               "from another replica", last, last);
            break;
        }
        struct redis_segment_visitor visitor = {segment_header, segment_unit, rr};
        struct redis_segment_header h;
        uint8_t hash[OBJECT_HASH_BYTES];
        if (redis_segment_read(rr->st, seg->key, rr->key, &visitor, &h, hash, err) != 0) {
            rc = tm_error_prefix(err, "segment '%s': ", seg->key);
            break;
        }
        memcpy(rr->chain, hash, sizeof hash);
        rr->offset = h.end_offset;
        rr->segments_read++;
        expected++;
    }
    if (rc == 0 && fsync(rr->fd) != 0)
        rc = tm_error_set(err, "cannot write '%s': %s", path, strerror(errno));
    close(rr->fd);
    rr->fd = -1;
    return rc;
}

static int write_manifest(const char *dir, struct tm_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" MANIFEST_NAME, dir);
    const char text[] = "file " BASE_NAME " seq 1 type b\nfile " INCR_NAME " seq 1 type i\n";
    int fd = fsutil_create_exclusive(path, err);
    if (fd < 0)
        return -1;
    if (write_all(fd, (const uint8_t *)text, sizeof text - 1) != 0 || fsync(fd) != 0) {
        tm_error_set(err, "cannot write '%s': %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* ------------------------------------------------ checking by loading it */

/* One command to the server on `sock`, its first reply line into reply. */
static int ask(const char *sock, const char *command, char *reply, size_t len)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval timeout = {LOAD_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    int rc = write_all(fd, (const uint8_t *)command, strlen(command));
    size_t used = 0;
    while (rc == 0 && used + 1 < len) {
        ssize_t n = read(fd, reply + used, len - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
        if (memchr(reply, '\n', used))
            break;
    }
    reply[used] = '\0';
    reply[strcspn(reply, "\r\n")] = '\0';
    close(fd);
    return rc == 0 && used ? 0 : -1;
}

static void sleep_ms(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* Loads DIR's appendonlydir into a private redis-server; with `save`, it
 * also writes DIR/dump.rdb. 0, 1 when no redis-server is installed (not
 * checked), -1 with err set when Redis refuses the files. */
/* Starts a private redis-server on `sock` over `dir`, its output into
 * log_path. The child's pid, or -1 (err set). */
static pid_t start_check_server(const char *dir, const char *sock, const char *log_path, struct tm_error *err)
{
    pid_t pid = fork();
    if (pid < 0) {
        tm_error_set(err, "cannot start redis-server: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (log_fd >= 0) {
            dup2(log_fd, 1);
            dup2(log_fd, 2);
        }
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--dir", dir,
               "--appendonly", "yes", "--appenddirname", AOF_DIR, "--appendfsync", "no", "--save", "",
               "--dbfilename", "dump.rdb", "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits for the server to answer PING: 0 it did; 1 redis-server could not
 * be run; -1 it exited or did not answer in time (*pid set to -1 once it
 * has exited). */
static int wait_for_pong(pid_t *pid, const char *sock)
{
    char reply[512] = "";
    for (int waited_ms = 0; waited_ms < LOAD_TIMEOUT_S * 1000; waited_ms += 20) {
        int status;
        if (waitpid(*pid, &status, WNOHANG) == *pid) {
            *pid = -1;
            return WIFEXITED(status) && WEXITSTATUS(status) == 127 ? 1 : -1;
        }
        if (ask(sock, "*1\r\n$4\r\nPING\r\n", reply, sizeof reply) == 0 && strcmp(reply, "+PONG") == 0)
            return 0;
        sleep_ms(20);
    }
    return -1;
}

static void stop_check_server(pid_t pid, const char *sock)
{
    char reply[512];
    if (pid <= 0)
        return;
    ask(sock, "*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n", reply, sizeof reply);
    for (int waited = 0; waited < 100 && waitpid(pid, NULL, WNOHANG) != pid; waited++)
        sleep_ms(20);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Why Redis did not load the files: the last line of its log that says. */
static int load_failure(const char *log_path, struct tm_error *err)
{
    char tail[300] = "";
    FILE *fp = fopen(log_path, "r");
    if (fp) {
        char line[300];
        while (fgets(line, sizeof line, fp))
            if (strstr(line, "#") || strstr(line, "Bad") || strstr(line, "rror"))
                snprintf(tail, sizeof tail, "%s", line);
        fclose(fp);
    }
    tail[strcspn(tail, "\n")] = '\0';
    return tm_error_set(err, "Redis does not load the restored files: %s", tail[0] ? tail : "see redis-check.log");
}

static int load_in_redis(const char *dir, int save, struct tm_error *err)
{
    char sock_dir[80], sock[108], log_path[PATH_MAX], reply[512] = "";
    const char *tmp = getenv("TMPDIR");
    snprintf(sock_dir, sizeof sock_dir, "%s/tidemark-redis-XXXXXX", tmp && tmp[0] && strlen(tmp) < 50 ? tmp : "/tmp");
    if (fsutil_private_dir(sock_dir, err) != 0)
        return -1;
    snprintf(sock, sizeof sock, "%s/redis.sock", sock_dir);
    snprintf(log_path, sizeof log_path, "%s/redis-check.log", dir);
    pid_t pid = start_check_server(dir, sock, log_path, err);
    if (pid < 0) {
        rmdir(sock_dir);
        return -1;
    }
    int rc = wait_for_pong(&pid, sock);
    if (rc == 0 && save && (ask(sock, "*1\r\n$4\r\nSAVE\r\n", reply, sizeof reply) != 0 || strcmp(reply, "+OK") != 0))
        rc = tm_error_set(err, "the restored data loaded, but SAVE failed: %s", reply);
    stop_check_server(pid, sock);
    unlink(sock);
    rmdir(sock_dir);
    if (rc < 0 && !err->msg[0])
        rc = load_failure(log_path, err);
    if (rc >= 0)
        unlink(log_path);
    return rc;
}

/* ---------------------------------------------------------------- files */

/* rm -r of a directory this restore made (a symbolic link is removed,
 * never followed). */
static void remove_tree(const char *dir)
{
    struct tm_error ignored;
    fsutil_remove_tree(dir, &ignored);
}

/* The output must not exist, or be an empty directory. */
static int check_output_dir(const char *output, struct tm_error *err)
{
    struct stat st;
    if (stat(output, &st) != 0)
        return errno == ENOENT ? 0 : tm_error_set(err, "cannot check '%s': %s", output, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return tm_error_set(err, "output '%s' exists and is not a directory", output);
    DIR *d = opendir(output);
    int empty = 1;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    if (d)
        closedir(d);
    if (!empty) {
        tm_error_set(err, "output directory '%s' is not empty", output);
        return tm_error_hint(err, "restore into a new or empty directory (a running Redis's own directory would be overwritten)");
    }
    return 0;
}

static void fill_outcome(const struct redis_restore *rr, struct restore_outcome *out)
{
    *out = (struct restore_outcome){
        .point_ms = rr->last_unit_ms ? rr->last_unit_ms : rr->snapshot_ms, .snapshot_ms = rr->snapshot_ms,
        .after_snapshot = rr->last_unit_ms != 0, .transactions = rr->units_applied, .segments = rr->segments_read,
        .bytes = rr->rdb_bytes, .loaded = rr->checked_by_loading, .skipped_count = rr->skips.count};
    snprintf(out->generation, sizeof out->generation, "%s", rr->generation);
    snprintf(out->skipped, sizeof out->skipped, "%s", rr->skips.text);
}

/* The staging directory beside the output (private, removed on failure
 * by the caller: *temp is empty when it was not made) and its AOF
 * directory. */
static int make_staging(const char *output, char *temp, size_t temp_len, char *aof_dir, size_t aof_len,
                        struct tm_error *err)
{
    snprintf(temp, temp_len, "%s.tidemark-restore-XXXXXX", output);
    if (fsutil_private_dir(temp, err) != 0) {
        temp[0] = '\0';
        return -1;
    }
    snprintf(aof_dir, aof_len, "%s/" AOF_DIR, temp);
    if (mkdir(aof_dir, 0700) != 0)
        return tm_error_set(err, "cannot create '%s': %s", aof_dir, strerror(errno));
    return 0;
}

/* Loads the staged files in a scratch redis-server (the check), keeps
 * the RDB only for --format rdb, and moves the staging directory to the
 * output. */
static int check_and_publish(struct redis_restore *rr, const char *temp, const char *aof_dir, struct tm_error *err)
{
    const struct restore_options *opts = rr->opts;
    int loaded = load_in_redis(temp, opts->redis_rdb, err);
    if (loaded < 0)
        return -1;
    if (loaded == 1 && opts->redis_rdb)
        return tm_error_set(err, "--format rdb needs redis-server (apt-get install redis-server)");
    rr->checked_by_loading = loaded == 0;
    if (opts->redis_rdb)
        remove_tree(aof_dir);
    rmdir(opts->output);   /* an empty directory given as the output */
    if (rename(temp, opts->output) != 0)
        return tm_error_set(err, "cannot move the restored files to '%s': %s", opts->output, strerror(errno));
    return 0;
}

int redis_restore(const struct config_db *db, const struct crypto_keyring *key, const struct restore_options *opts,
                  struct restore_outcome *out, struct tm_error *err)
{
    struct redis_restore rr = {.key = key, .opts = opts, .fd = -1};
    char temp[PATH_MAX] = "", aof_dir[PATH_MAX + 32];
    struct catalog cat = {0};
    const struct catalog_generation *gen = NULL;
    const struct catalog_snapshot *snap = NULL;
    int rc = check_output_dir(opts->output, err);
    if (rc == 0)
        rc = targets_open_replica(db, opts->replica, &rr.st, err);
    if (rc == 0)
        rc = catalog_load(rr.st, db->name, &cat, err);
    struct restore_outcome tail = {0};
    struct heads_report heads;
    if (rc == 0)
        rc = restore_read_heads(rr.st, key, 1, &cat, opts, &heads, err);
    if (rc == 0)
        rc = restore_plan(&cat, opts, &gen, &snap, err);
    char lease[512] = "";
    if (rc == 0 && lease_take(rr.st, db->name, gen->id, clock_now_ms(), lease, sizeof lease, err) != 0) {
        log_event(LOG_WARN, db->name, NULL, "could not record that this restore reads generation %s (retention may "
                  "run meanwhile): %s", gen->id, err->msg);
        lease[0] = '\0';
    }
    if (rc == 0) {
        snprintf(rr.generation, sizeof rr.generation, "%s", gen->id);
        rc = make_staging(opts->output, temp, sizeof temp, aof_dir, sizeof aof_dir, err);
    }
    if (rc == 0)
        rc = write_base_or_older(&rr, &cat, &gen, &snap, aof_dir, lease, sizeof lease, err);
    if (rc == 0)
        rc = restore_check_tail(&cat, &heads, opts, gen, &tail, err);
    if (rc == 0)
        rc = write_incr(&rr, gen, aof_dir, err);
    if (rc == 0)
        rc = write_manifest(aof_dir, err);
    if (rc == 0)
        rc = check_and_publish(&rr, temp, aof_dir, err);
    if (rc != 0 && temp[0])
        remove_tree(temp);
    else if (rc == 0) {
        fill_outcome(&rr, out);
        out->tail = tail.tail;
        snprintf(out->tail_note, sizeof out->tail_note, "%s", tail.tail_note);
    }
    if (lease[0])
        lease_release(rr.st, lease);
    catalog_release(&cat);
    storage_free(rr.st);
    return rc;
}
