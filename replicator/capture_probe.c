/* capture_probe.c - telling when a database's commits are hidden from the
 * sidecar, and naming why, instead of stalling silently.
 *
 * DESIGN
 *
 * The tailer sees a commit only once SQLite's wal-index (DB-shm) publishes
 * it. An engine that writes the same file formats without taking part in
 * SQLite's locking and shared memory leaves the sidecar blind: it keeps
 * running and ships nothing. The Turso engine (npm @tursodatabase/database,
 * the Rust rewrite of SQLite) does exactly that, in two ways:
 *
 *  - its default, single-process mode holds a POSIX write lock over the
 *    whole database file and the whole WAL (l_start 0, l_len 0) while
 *    open. No other process can read the database; a libsqlite3 connection
 *    waits for its busy timeout and fails with "database is locked".
 *    SQLite itself never locks there: its database-file locks are in the
 *    lock-byte page at 1 GiB (PENDING 0x40000000, RESERVED +1, SHARED
 *    +2..+511), it never locks the WAL file at all (its WAL locks are in
 *    DB-shm). So a lock over byte 0 of either file is another engine's.
 *    F_OFD_GETLK asks for it without taking anything; it sees POSIX and
 *    OFD locks of every process, ours included (we hold none there).
 *  - its experimental multiprocess_wal mode shares the files through its
 *    own coordination file DB-tshm (magic "TSHMWAL\0", then a 32-bit
 *    version; byte 0 is OFD-locked for each live process's lifetime) and
 *    never updates DB-shm. Its presence names the engine.
 *
 * Anything else that writes the WAL blind (the Turso engine run with
 * LIMBO_DISABLE_FILE_LOCK=1, a multiprocess engine whose DB-tshm was
 * removed) is caught by what it leaves: valid committed frames beyond the
 * wal-index's end. A SQLite writer puts frames there too, for a moment:
 * it appends its transaction and publishes it in the wal-index right
 * after, once the WAL is synced (with synchronous=FULL, that fsync can
 * take a long time on a busy disk); frames without a commit frame are a
 * transaction still being written. So the probe counts only a commit
 * frame (salts equal to the header's, the checksum chain unbroken from
 * the tailer's committed end), and only when the same frame (same number,
 * same checksum) is still there, with the tailer's committed end
 * unchanged, after grace_ms (a sync interval: seen at two checks in a
 * row) during which no SQLite writer was in a transaction. A SQLite
 * writer holds the WAL write lock (byte 120 of DB-shm) from its first
 * frame until it has published its commit; F_GETLK on the tailer's own
 * descriptor of DB-shm sees another process's lock (never ours). While
 * the lock is held the grace time starts over. An engine writing blind
 * never takes it; a SQLite writer that died between its commit frame and
 * publishing leaves it free, and its frames count until the next SQLite
 * writer publishes (see below). Only one such commit can be a dead SQLite
 * writer's: the next SQLite writer appends at the wal-index's end, over
 * it, and publishes. So a single commit beyond the end counts only after
 * DEAD_WRITER_GRACE_MS (a minute), two or more after grace_ms: a blind
 * engine commits again and again, and is named within a few sync
 * intervals, while the sidecar keeps its connections (and so SQLite's
 * shared memory) through a dead writer's orphan, as SQLite's own
 * connections would, instead of letting the next one to open recover it.
 * The search reads at most PROBE_FRAMES_PER_CHECK frames per call and
 * goes on from where it stopped at the next call; when nothing lies past
 * the end (the usual case) it costs an fstat.
 *
 * Why once seen it stays: after it, the sidecar closes its connections
 * (a snapshot or checkpoint through a wal-index that no longer describes
 * the WAL would read or copy the wrong pages), and a blind writer cannot
 * be seen any more: the WAL gives no sign of who writes it. The cause is
 * kept until the WAL file is emptied, deleted or replaced, or the
 * wal-index changes (a SQLite writer published a commit: the frames were
 * a dead SQLite writer's, overwritten by the next one).
 *
 * The probe takes no lock and holds no descriptor between calls. The WAL
 * and DB-tshm are opened and closed on each call (SQLite never locks the
 * WAL; nobody holds POSIX locks on DB-tshm). The database file is opened
 * only when the caller has no connection on it: closing a descriptor of
 * a file drops all of the process's POSIX locks on it, SQLite's too.
 * While the sidecar follows the database it holds a read lock there, and
 * the Turso engine (either mode) refuses to open a file another process
 * has locked, so a whole-file lock cannot appear on the database then. */
#include "capture_probe.h"

#include "tshm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROBE_FRAMES_PER_CHECK 16
/* Checks come once per sync interval, a millisecond early or late: a
 * commit seen at two checks one interval apart counts. */
#define GRACE_JITTER_DIVISOR 10
/* One commit beyond the end, never followed by a second, may be a SQLite
 * writer's that died before publishing it (see DESIGN): it counts only
 * after this long. */
#define DEAD_WRITER_GRACE_MS 60000
/* enum tailer_engine's `sqlite` */
#define ENGINE_SQLITE 1
#define RUNBOOK_HINT "see docs/runbook.md, \"Other engines beside the sidecar\""

/* The search past the tailer's committed end (all for one `from`). */
struct beyond_search {
    int active;
    struct wal_position from;      /* the tailer's committed end it started at */
    struct wal_position reached;   /* valid frames followed so far */
    int found;                     /* a commit frame ends at `commit` */
    int second_found;              /* and another one follows it */
    struct wal_position commit;
    int64_t found_ms;              /* when it was first seen */
};

struct capture_probe {
    char *db_path, *wal_path, *shm_path, *tshm_path;
    int64_t grace_ms;
    int sqlite_only;               /* `engine: sqlite`: DB-tshm is a cause */
    struct beyond_search search;
    int sticky;                    /* CAPTURE_UNPUBLISHED seen on this WAL file */
    dev_t sticky_dev;
    ino_t sticky_ino;
    int sticky_index_read;         /* sticky_index holds the wal-index then */
    struct wal_index_state sticky_index;
    char sticky_msg[sizeof ((struct tm_error *)0)->msg];
};

static char *path_with_suffix(const char *path, const char *suffix)
{
    char *out = NULL;
    return asprintf(&out, "%s%s", path, suffix) < 0 ? NULL : out;
}

int capture_probe_new(const char *db_path, int64_t grace_ms, int engine, struct capture_probe **out,
                      struct tm_error *err)
{
    struct capture_probe *p = calloc(1, sizeof *p);
    if (!p)
        return tm_error_set(err, "out of memory");
    p->grace_ms = grace_ms;
    p->sqlite_only = engine == ENGINE_SQLITE;
    p->db_path = strdup(db_path);
    p->wal_path = path_with_suffix(db_path, "-wal");
    p->shm_path = path_with_suffix(db_path, "-shm");
    p->tshm_path = path_with_suffix(db_path, "-tshm");
    if (!p->db_path || !p->wal_path || !p->shm_path || !p->tshm_path) {
        capture_probe_free(p);
        return tm_error_set(err, "out of memory");
    }
    *out = p;
    return 0;
}

void capture_probe_free(struct capture_probe *p)
{
    if (!p)
        return;
    free(p->db_path);
    free(p->wal_path);
    free(p->shm_path);
    free(p->tshm_path);
    free(p);
}

/* ------------------------------------------------------------------ locks */

/* Is byte 0 of the file open on fd locked by anyone? 1 with *pid (-1 for
 * an OFD lock, which has no owner process), 0 no, -1 cannot tell. */
static int byte0_locked(int fd, int want, pid_t *pid)
{
    struct flock probe = {.l_type = (short)want, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &probe) != 0)
        return -1;
    *pid = probe.l_pid;
    return probe.l_type != F_UNLCK;
}

static void describe_owner(pid_t pid, char *out, size_t len)
{
    if (pid > 0)
        snprintf(out, len, "pid %d", (int)pid);
    else
        snprintf(out, len, "an open file description lock");
}

static int foreign_lock(const char *path, struct tm_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return errno == ENOENT ? 0 : tm_error_set(err, "cannot open '%s': %s", path, strerror(errno));
    pid_t pid = 0;
    int locked = byte0_locked(fd, F_WRLCK, &pid);
    int saved = errno;
    close(fd);
    if (locked < 0)
        return tm_error_set(err, "cannot query the locks of '%s': %s", path, strerror(saved));
    if (!locked)
        return 0;
    char owner[48];
    describe_owner(pid, owner, sizeof owner);
    tm_error_set(err, "'%s' is locked as a whole by another process (%s): the Turso engine "
                 "(@tursodatabase/database) in its default single-process mode locks the file so that no "
                 "other process can read it; waiting for the lock to go away", path, owner);
    tm_error_hint(err, "no other process can share such a database: open it in the engine's multi-process mode, "
                  "which tidemark follows: connect(path, { experimental: ['multiprocess_wal'] }) (Python: "
                  "experimental_features=\"multiprocess_wal\"; Rust: .experimental_multiprocess_wal(true)); %s",
                  RUNBOOK_HINT);
    return CAPTURE_FOREIGN_LOCK;
}

/* ------------------------------------------------------------------- tshm */

static int turso_coordination_file(struct capture_probe *p, struct tm_error *err)
{
    int live = 0;
    int is_tshm = tshm_identify(p->tshm_path, &live, err);
    if (is_tshm <= 0)
        return is_tshm;
    tm_error_set(err, "'%s' is written by the Turso engine (@tursodatabase/database) in its multiprocess_wal mode "
                 "('%s' beside it%s): that engine does not publish its commits in SQLite's wal-index (-shm), so "
                 "tidemark cannot see them; nothing of this database is captured",
                 p->db_path, p->tshm_path, live == 1 ? ", in use by a running process" : ", no process has it open");
    tm_error_hint(err, "the configuration says `engine: sqlite`: set `engine: auto` (or turso) and tidemark follows "
                  "this engine through its coordination file; never open it with sqlite3 while the engine runs (a "
                  "last connection checkpoints and deletes the WAL under it); %s", RUNBOOK_HINT);
    return CAPTURE_FOREIGN_SHM;
}

/* A coordination file for the Turso route: refused by name when its
 * version or layout is not the one tidemark reads (never guessed at). */
static int unknown_coordination_layout(struct capture_probe *p, struct tm_error *err)
{
    int fd = open(p->tshm_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return errno == ENOENT ? 0 : tm_error_set(err, "cannot open '%s': %s", p->tshm_path, strerror(errno));
    uint8_t head[TSHM_MAP_BYTES];
    ssize_t got = pread(fd, head, sizeof head, 0);
    close(fd);
    if (got < TSHM_MAGIC_BYTES || memcmp(head, TSHM_MAGIC, TSHM_MAGIC_BYTES) != 0)
        return 0;
    if (tshm_check_layout(head, (size_t)got, p->tshm_path, err) == 0)
        return 0;
    return CAPTURE_TSHM_UNKNOWN;
}

/* The Turso engine's MVCC journal mode writes 255 as the file format
 * versions (bytes 18 and 19 of the header) and keeps DB-log: not a WAL. */
static int mvcc_database(struct capture_probe *p, struct tm_error *err)
{
    int fd = open(p->db_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return 0;
    uint8_t header[20];
    ssize_t got = pread(fd, header, sizeof header, 0);
    close(fd);
    if (got != (ssize_t)sizeof header || memcmp(header, "SQLite format 3", 16) != 0 ||
        (header[18] != 255 && header[19] != 255))
        return 0;
    tm_error_set(err, "'%s' is in the Turso engine's MVCC journal mode (file format version 255): tidemark cannot "
                 "follow it", p->db_path);
    tm_error_hint(err, "open it in the engine's WAL journal mode with experimental: ['multiprocess_wal'], which "
                  "tidemark follows; %s", RUNBOOK_HINT);
    return CAPTURE_MVCC;
}

/* ---------------------------------------------------- frames beyond the end */

static int read_frame(int fd, const struct wal_header *hdr, uint32_t frame, uint8_t *buf)
{
    size_t len = WAL_FRAME_HEADER_BYTES + hdr->page_size;
    ssize_t got = pread(fd, buf, len, (off_t)wal_frame_offset(hdr, frame));
    return got == (ssize_t)len ? 0 : -1;
}

static int same_position(const struct wal_position *a, const struct wal_position *b)
{
    return a->salt1 == b->salt1 && a->salt2 == b->salt2 && a->frame == b->frame &&
           a->checksum[0] == b->checksum[0] && a->checksum[1] == b->checksum[1];
}

/* Is the commit frame found earlier still there, unchanged (same salts,
 * same cumulative checksum)? */
static int commit_still_there(int fd, const struct wal_header *hdr, const struct beyond_search *s)
{
    uint8_t bytes[WAL_FRAME_HEADER_BYTES];
    if (pread(fd, bytes, sizeof bytes, (off_t)wal_frame_offset(hdr, s->commit.frame)) != (ssize_t)sizeof bytes)
        return 0;
    struct wal_frame_header fh;
    wal_frame_header_decode(bytes, &fh);
    return fh.db_size_after_commit != 0 && fh.salt1 == s->commit.salt1 && fh.salt2 == s->commit.salt2 &&
           fh.checksum[0] == s->commit.checksum[0] && fh.checksum[1] == s->commit.checksum[1];
}

/* Follows the chain from s->reached for at most PROBE_FRAMES_PER_CHECK
 * frames, stopping at the first commit frame. 1 found, 0 not (yet), -1
 * out of memory. */
static int search_commit(int fd, const struct wal_header *hdr, off_t wal_size, struct beyond_search *s)
{
    uint64_t frame_bytes = WAL_FRAME_HEADER_BYTES + (uint64_t)hdr->page_size;
    uint8_t *buf = malloc(frame_bytes);
    if (!buf)
        return -1;
    int found = 0;
    for (int i = 0; i < PROBE_FRAMES_PER_CHECK && !found; i++) {
        uint32_t next_frame = s->reached.frame + 1;
        if (wal_frame_offset(hdr, next_frame) + frame_bytes > (uint64_t)wal_size ||
            read_frame(fd, hdr, next_frame, buf) != 0)
            break;
        struct wal_position next;
        if (!wal_frame_follows(hdr, &s->reached, buf, &next))
            break;
        s->reached = next;
        struct wal_frame_header fh;
        wal_frame_header_decode(buf, &fh);
        found = fh.db_size_after_commit != 0;
    }
    free(buf);
    return found;
}

/* Does another process hold SQLite's WAL write lock (wal-index byte
 * 120)? 1 yes or cannot tell, 0 no. */
static int sqlite_writer_active(int wal_index_fd)
{
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 120, .l_len = 1};
    if (wal_index_fd < 0 || fcntl(wal_index_fd, F_GETLK, &probe) != 0)
        return 1;
    return probe.l_type != F_UNLCK;
}

/* The commits past the end have waited their grace time: names the
 * cause, and keeps it (sticky) for this WAL file (see DESIGN). */
static int name_unpublished(struct capture_probe *p, const struct capture_view *view, const struct stat *wal_stat,
                            int64_t now_ms, struct tm_error *err)
{
    struct beyond_search *s = &p->search;
    tm_error_set(err, "'%s' holds committed transactions that the wal-index ('%s-shm') does not publish "
                 "(frames %u-%u, for %.1f s): another engine writes this WAL without SQLite's shared memory "
                 "(the Turso engine in its multiprocess_wal mode, or run with LIMBO_DISABLE_FILE_LOCK)%s, and "
                 "tidemark cannot see its commits; stopped following the database",
                 p->wal_path, p->db_path, s->from.frame + 1, s->commit.frame,
                 (double)(now_ms - s->found_ms) / 1000.0,
                 s->second_found ? "" : ", or a SQLite writer died between writing its commit and publishing it "
                 "and none has written since");
    p->sticky = 1;
    p->sticky_dev = wal_stat->st_dev;
    p->sticky_ino = wal_stat->st_ino;
    struct tm_error ignored;
    p->sticky_index_read = wal_index_read(view->wal_index_fd, &p->sticky_index, &ignored) == 1;
    snprintf(p->sticky_msg, sizeof p->sticky_msg, "%s", err->msg);
    s->active = 0;
    return CAPTURE_UNPUBLISHED;
}

static int unpublished_frames(struct capture_probe *p, const struct capture_view *view, int64_t now_ms,
                              struct tm_error *err)
{
    struct beyond_search *s = &p->search;
    int fd = open(p->wal_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        s->active = 0;
        return errno == ENOENT ? 0 : tm_error_set(err, "cannot open '%s': %s", p->wal_path, strerror(errno));
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = tm_error_set(err, "cannot stat '%s': %s", p->wal_path, strerror(errno));
        goto done;
    }
    const struct wal_header *hdr = &view->hdr;
    if (wal_frame_offset(hdr, view->committed_end.frame + 1) + WAL_FRAME_HEADER_BYTES + hdr->page_size >
        (uint64_t)st.st_size) {
        s->active = 0;   /* nothing past the end: the usual case */
        goto done;
    }
    if (!s->active || !same_position(&s->from, &view->committed_end)) {
        *s = (struct beyond_search){.active = 1, .from = view->committed_end, .reached = view->committed_end};
    }
    if (s->found && !commit_still_there(fd, hdr, s))
        *s = (struct beyond_search){.active = 1, .from = view->committed_end, .reached = view->committed_end};
    if (!s->second_found) {
        int found = search_commit(fd, hdr, st.st_size, s);
        if (found < 0) {
            rc = tm_error_set(err, "out of memory");
            goto done;
        }
        if (found && s->found) {
            s->second_found = 1;
        } else if (found) {
            s->found = 1;
            s->commit = s->reached;
            s->found_ms = now_ms;
        }
    }
    if (s->found && sqlite_writer_active(view->wal_index_fd))
        s->found_ms = now_ms;   /* maybe its commit, being synced: not yet published */
    int64_t grace_ms = s->second_found ? p->grace_ms : DEAD_WRITER_GRACE_MS;
    if (s->found && now_ms - s->found_ms >= grace_ms - grace_ms / GRACE_JITTER_DIVISOR)
        rc = name_unpublished(p, view, &st, now_ms, err);
done:
    close(fd);
    return rc;
}

/* Has a SQLite writer published a commit since the cause was seen (the
 * wal-index changed)? Then SQLite's writers own this WAL after all (one
 * of them died between writing a commit and publishing it, and the next
 * one went on). The wal-index is opened here only with no connection of
 * ours on the database (closing it would drop our POSIX locks). */
static int wal_index_moved(struct capture_probe *p, const struct capture_view *following)
{
    int fd = following ? following->wal_index_fd : open(p->shm_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct wal_index_state now;
    struct tm_error ignored;
    int read = fd >= 0 && wal_index_read(fd, &now, &ignored) == 1;
    if (!following && fd >= 0)
        close(fd);
    return read && p->sticky_index_read &&
           (now.max_frame != p->sticky_index.max_frame || now.salt1 != p->sticky_index.salt1 ||
            now.salt2 != p->sticky_index.salt2);
}

/* The sticky cause holds while the WAL file is the same one, not empty,
 * and no SQLite writer has published since. */
static int still_unpublished(struct capture_probe *p, const struct capture_view *following)
{
    struct stat st;
    if (stat(p->wal_path, &st) != 0 || st.st_dev != p->sticky_dev || st.st_ino != p->sticky_ino ||
        st.st_size < WAL_HEADER_BYTES + WAL_FRAME_HEADER_BYTES || wal_index_moved(p, following))
        p->sticky = 0;
    return p->sticky;
}

int capture_probe_check(struct capture_probe *p, const struct capture_view *following, int64_t now_ms,
                        struct tm_error *err)
{
    if (p->sticky && (!following || !following->turso) && still_unpublished(p, following)) {
        tm_error_set(err, "%s", p->sticky_msg);
        tm_error_hint(err, "stop the other engine (or switch the application to SQLite or libSQL); the sidecar "
                      "follows the database again once the WAL is emptied or replaced, a SQLite writer publishes "
                      "a commit, or the sidecar restarts; %s",
                      RUNBOOK_HINT);
        return CAPTURE_UNPUBLISHED;
    }
    int rc = p->sqlite_only ? turso_coordination_file(p, err) : unknown_coordination_layout(p, err);
    /* the database file is opened only with no POSIX lock of ours on it
     * (closing any descriptor of it would drop SQLite's: see DESIGN) */
    if (rc == 0 && (!following || following->turso))
        rc = mvcc_database(p, err);
    if (rc == 0 && (!following || following->turso))
        rc = foreign_lock(p->db_path, err);
    if (rc == 0)
        rc = foreign_lock(p->wal_path, err);
    if (rc == 0 && following && following->has_wal && !following->turso)
        rc = unpublished_frames(p, following, now_ms, err);
    if (rc != 0)
        p->search.active = 0;
    if (rc == CAPTURE_UNPUBLISHED)
        tm_error_hint(err, "stop the other engine (or switch the application to SQLite or libSQL); %s",
                      RUNBOOK_HINT);
    return rc;
}
