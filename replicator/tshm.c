/* tshm.c - the Turso engine's multi-process WAL coordination file
 * (DB-tshm): reading the committed WAL state it publishes, and taking
 * part in its protocol as one reader.
 *
 * WHERE THE FORMAT COMES FROM
 *
 * The Turso engine (npm @tursodatabase/database, the Rust rewrite of
 * SQLite) opened with experimental "multiprocess_wal" keeps no SQLite
 * wal-index (-shm): processes share the database through DB-tshm, which
 * each maps MAP_SHARED. Layout and protocol: SharedWalCoordinationMapHeader
 * and register_reader / min_active_reader_frame in
 * core/storage/shared_wal_coordination.rs of tursodatabase/turso, tag
 * v0.7.2 (the same in 0.8.0-pre.7), checked by experiment on this
 * machine (docs/format.md, "The Turso engine's coordination file"). The
 * engine calls the format experimental; version 1 is the only one read
 * here, with exactly the constants below: anything else is refused by
 * name, never guessed at.
 *
 * LAYOUT (version 1, little-endian, naturally aligned)
 *
 *     0  8  magic "TSHMWAL\0"
 *     8  4  version (1)
 *    12  4  reader slot count (64)           16  4  bitmap words (1)
 *    20  4  frame-index block capacity (4096)
 *    24  4  frame-index hash slots (8192)    28  4  frame-index max blocks (64)
 *    36  4  frame-index capacity (262144)
 *    48  8  snapshot_seq: a seqlock, odd while the fields below change
 *    56  8  max_frame: the WAL's last committed frame
 *    64  8  nbackfills: frames copied into the database file
 *    72  8  transaction_count: +1 per commit, kept across WAL restarts
 *    88  4  checkpoint_seq: +1 at every WAL restart or truncation
 *    96  4  page size       100 4  salt-1     104 4  salt-2
 *   108  4  checksum-1     112 4  checksum-2 (the WAL's chain at max_frame)
 *   192  8  reader bitmap: bit i set = slot i free
 *   200  8x64 reader_frames[i]: the frame slot i pins (UINT64_MAX: none)
 *   712  8x64 reader_owners[i]: (pid << 32) | instance, 0 = none
 * The frame index that follows (from 4096) is not read here: the WAL file
 * itself is scanned, as for SQLite.
 *
 * LOCKS. Open-file-description byte-range locks on DB-tshm, always tried,
 * never waited for: byte 0 shared by every engine process while it has
 * the file mapped (an exclusive try on it is the engine's "am I alone?";
 * a process in the default mode refuses to open while it is held);
 * byte 1 the writer; byte 2 a checkpointer; byte 3+i reader slot i.
 * tidemark takes only a reader byte: holding byte 0 would keep the
 * application from opening in its default mode, and would make the engine
 * believe another engine process is alive.
 *
 * A READER SLOT. Taken as the engine takes it: clear the slot's bitmap
 * bit with a compare-and-swap, lock byte 3+i exclusively (on failure, set
 * the bit again and try another slot), store the owner, then the frame.
 * Released in reverse. While held, the engine's checkpoints copy no frame
 * past the slot's frame into the database file, and no WAL restart or
 * truncation happens at all (any live slot makes them busy). A checkpoint
 * that finds a slot in use whose lock byte is free reclaims it: the lock
 * dies with its process, so a killed sidecar never wedges the engine.
 * The engine re-creates the file when it opens alone and finds another
 * layout; the slot then pins nothing any more: tshm_pin_intact says so.
 *
 * Only the reader's own words are ever written here (its bitmap bit, its
 * frame, its owner), with atomic operations on the shared mapping, and
 * nothing else: not the header, not the seqlock, not the frame index. */
#include "tshm.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OFF_VERSION 8
#define OFF_SLOT_COUNT 12
#define OFF_BITMAP_WORDS 16
#define OFF_BLOCK_CAPACITY 20
#define OFF_HASH_SLOTS 24
#define OFF_MAX_BLOCKS 28
#define OFF_INDEX_CAPACITY 36
#define OFF_SEQ 48
#define OFF_MAX_FRAME 56
#define OFF_BACKFILLS 64
#define OFF_TRANSACTIONS 72
#define OFF_CHECKPOINT_SEQ 88
#define OFF_PAGE_SIZE 96
#define OFF_SALT1 100
#define OFF_SALT2 104
#define OFF_CHECKSUM1 108
#define OFF_CHECKSUM2 112
#define OFF_BITMAP 192
#define OFF_READER_FRAMES (OFF_BITMAP + 8)
#define OFF_READER_OWNERS (OFF_READER_FRAMES + 8 * TSHM_READER_SLOTS)

#define BLOCK_CAPACITY 4096
#define HASH_SLOTS 8192
#define MAX_BLOCKS 64
#define INDEX_CAPACITY (BLOCK_CAPACITY * MAX_BLOCKS)
#define FRAME_NONE UINT64_MAX
/* The low half of the owner word of tidemark's slot ("}M" and 1): the
 * engine's instances count from 1, so this tells ours apart in a dump. */
#define TIDEMARK_INSTANCE 0x7d4d0001u
/* A consistent read is tried for at most this long (a yield every
 * SPINS_PER_YIELD attempts): an engine process paused while it publishes
 * keeps the seqlock odd for a moment, one killed then for ever, and the
 * loop must never hang on it. */
#define READ_BUDGET_NS (2 * 1000 * 1000)
#define SPINS_PER_YIELD 64

struct tshm {
    char *path;
    int fd;
    uint8_t *map;
    struct stat opened;        /* which file it is */
    int slot;                  /* the reader slot held, -1 none */
    uint64_t owner;
    uint32_t frame;            /* the frame it pins */
};

/* ------------------------------------------------------------ layout */

static uint32_t u32_at(const uint8_t *bytes, size_t offset)
{
    uint32_t v;
    memcpy(&v, bytes + offset, sizeof v);
    return v;
}

struct expected_field {
    size_t offset;
    uint32_t value;
    const char *name;
};

static const struct expected_field expected_fields[] = {
    {OFF_VERSION, TSHM_VERSION, "format version"},
    {OFF_SLOT_COUNT, TSHM_READER_SLOTS, "reader slot count"},
    {OFF_BITMAP_WORDS, TSHM_READER_SLOTS / 64, "reader bitmap words"},
    {OFF_BLOCK_CAPACITY, BLOCK_CAPACITY, "frame-index block capacity"},
    {OFF_HASH_SLOTS, HASH_SLOTS, "frame-index hash slots"},
    {OFF_MAX_BLOCKS, MAX_BLOCKS, "frame-index max blocks"},
    {OFF_INDEX_CAPACITY, INDEX_CAPACITY, "frame-index capacity"},
};

int tshm_check_layout(const uint8_t *bytes, size_t len, const char *path, struct tm_error *err)
{
    if (len < TSHM_MAP_BYTES)
        return tm_error_setc(err, TM_ERR_REFUSED, "'%s' is %zu bytes long: shorter than the Turso engine's "
                             "coordination header (%d bytes)", path, len, TSHM_MAP_BYTES);
    if (memcmp(bytes, TSHM_MAGIC, TSHM_MAGIC_BYTES) != 0)
        return tm_error_setc(err, TM_ERR_REFUSED, "'%s' is not a Turso engine coordination file: its magic is "
                             "%02x %02x %02x %02x %02x %02x %02x %02x, not 'TSHMWAL\\0'", path, bytes[0], bytes[1],
                             bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]);
    for (size_t i = 0; i < sizeof expected_fields / sizeof *expected_fields; i++) {
        const struct expected_field *f = &expected_fields[i];
        uint32_t found = u32_at(bytes, f->offset);
        if (found == f->value)
            continue;
        tm_error_setc(err, TM_ERR_REFUSED, "'%s' has %s %u where the only layout tidemark reads has %u (format "
                      "version %u, Turso engine 0.7.2): a Turso engine version tidemark was not tested with",
                      path, f->name, found, f->value, TSHM_VERSION);
        return tm_error_hint(err, "tidemark does not guess at a coordination format: run the engine version "
                             "docs/design.md names, or a tidemark release that supports this one");
    }
    return 0;
}

/* --------------------------------------------------- open and identify */

int tshm_header_written(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return errno != ENOENT;
    uint8_t head[TSHM_MAP_BYTES];
    ssize_t got = pread(fd, head, sizeof head, 0);
    close(fd);
    if (got < 0)
        return 1;
    if (got < (ssize_t)sizeof head)
        return 0;
    static const uint8_t zero_magic[TSHM_MAGIC_BYTES];
    if (memcmp(head, zero_magic, TSHM_MAGIC_BYTES) == 0)
        return 0;
    for (size_t i = 0; i < sizeof expected_fields / sizeof *expected_fields; i++)
        if (u32_at(head, expected_fields[i].offset) == 0)
            return 0;
    return 1;
}

static int ofd_lock_probe(int fd, short type, off_t byte, int *held)
{
    struct flock probe = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &probe) != 0)
        return -1;
    *held = probe.l_type != F_UNLCK;
    return 0;
}

int tshm_identify(const char *path, int *live, struct tm_error *err)
{
    *live = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return errno == ENOENT ? 0 : tm_error_set(err, "cannot open '%s': %s", path, strerror(errno));
    char magic[TSHM_MAGIC_BYTES];
    ssize_t got = pread(fd, magic, sizeof magic, 0);
    int is_tshm = got == (ssize_t)sizeof magic && memcmp(magic, TSHM_MAGIC, sizeof magic) == 0;
    if (got < 0)
        tm_error_set(err, "cannot read '%s': %s", path, strerror(errno));
    if (is_tshm && ofd_lock_probe(fd, F_WRLCK, 0, live) != 0)
        *live = 0;
    close(fd);
    return got < 0 ? -1 : is_tshm;
}

int tshm_open(const char *path, struct tshm **out, struct tm_error *err)
{
    struct tshm *c = calloc(1, sizeof *c);
    if (!c)
        return tm_error_set(err, "out of memory");
    c->fd = -1;
    c->slot = -1;
    c->map = MAP_FAILED;
    c->path = strdup(path);
    if (!c->path) {
        tshm_close(c);
        return tm_error_set(err, "out of memory");
    }
    /* read-write for the reader protocol's own words only (see top) */
    c->fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (c->fd < 0) {
        tm_error_set(err, "cannot open the Turso engine's coordination file '%s': %s", path, strerror(errno));
        tshm_close(c);
        return -1;
    }
    if (fstat(c->fd, &c->opened) != 0) {
        tm_error_set(err, "cannot stat '%s': %s", path, strerror(errno));
        tshm_close(c);
        return -1;
    }
    uint8_t head[TSHM_MAP_BYTES];
    ssize_t got = pread(c->fd, head, sizeof head, 0);   /* a short file: its length, named */
    if (tshm_check_layout(head, got > 0 ? (size_t)got : 0, path, err) != 0) {
        tshm_close(c);
        return -1;
    }
    c->map = mmap(NULL, TSHM_MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
    if (c->map == MAP_FAILED) {
        tm_error_set(err, "cannot map '%s': %s", path, strerror(errno));
        tshm_close(c);
        return -1;
    }
    c->owner = ((uint64_t)(uint32_t)getpid() << 32) | TIDEMARK_INSTANCE;
    *out = c;
    return 0;
}

void tshm_close(struct tshm *c)
{
    if (!c)
        return;
    if (c->map != MAP_FAILED) {
        tshm_unpin(c);
        munmap(c->map, TSHM_MAP_BYTES);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c->path);
    free(c);
}

/* ------------------------------------------------------------ reading */

static uint64_t load64(const struct tshm *c, size_t offset, int order)
{
    return __atomic_load_n((const uint64_t *)(c->map + offset), order);
}

static uint32_t load32(const struct tshm *c, size_t offset)
{
    return __atomic_load_n((const uint32_t *)(c->map + offset), __ATOMIC_RELAXED);
}

static void read_fields(const struct tshm *c, struct tshm_state *out)
{
    out->max_frame = (uint32_t)load64(c, OFF_MAX_FRAME, __ATOMIC_RELAXED);
    out->backfilled = (uint32_t)load64(c, OFF_BACKFILLS, __ATOMIC_RELAXED);
    out->transactions = load64(c, OFF_TRANSACTIONS, __ATOMIC_RELAXED);
    out->checkpoint_seq = load32(c, OFF_CHECKPOINT_SEQ);
    out->page_size = load32(c, OFF_PAGE_SIZE);
    out->salt1 = load32(c, OFF_SALT1);
    out->salt2 = load32(c, OFF_SALT2);
    out->checksum[0] = load32(c, OFF_CHECKSUM1);
    out->checksum[1] = load32(c, OFF_CHECKSUM2);
}

int tshm_read(struct tshm *c, struct tshm_state *out, struct tm_error *err)
{
    if (tshm_check_layout(c->map, TSHM_MAP_BYTES, c->path, err) != 0)
        return -1;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int attempt = 1;; attempt++) {
        if (attempt % SPINS_PER_YIELD == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) > READ_BUDGET_NS)
                return 0;
            sched_yield();
        }
        uint64_t before = load64(c, OFF_SEQ, __ATOMIC_ACQUIRE);
        if (before & 1)
            continue;
        read_fields(c, out);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (load64(c, OFF_SEQ, __ATOMIC_RELAXED) != before)
            continue;
        out->seq = before;
        return 1;
    }
}

/* -------------------------------------------------------- reader slot */

static uint64_t *bitmap_word(struct tshm *c) { return (uint64_t *)(c->map + OFF_BITMAP); }
static uint64_t *reader_frame(struct tshm *c, int slot) { return (uint64_t *)(c->map + OFF_READER_FRAMES) + slot; }
static uint64_t *reader_owner(struct tshm *c, int slot) { return (uint64_t *)(c->map + OFF_READER_OWNERS) + slot; }

static int ofd_lock(int fd, short type, off_t byte)
{
    struct flock lock = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &lock);
}

/* Claims slot `slot` if its bit is set (free): clears the bit, then locks
 * its byte; on a lock held elsewhere, sets the bit back. 1 claimed, 0 not. */
static int claim_slot(struct tshm *c, int slot)
{
    uint64_t *word = bitmap_word(c), mask = (uint64_t)1 << slot;
    uint64_t current = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    while (current & mask) {
        if (!__atomic_compare_exchange_n(word, &current, current & ~mask, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;
        if (ofd_lock(c->fd, F_WRLCK, TSHM_LOCK_READER0 + slot) == 0)
            return 1;
        __atomic_fetch_or(word, mask, __ATOMIC_RELEASE);
        return 0;
    }
    return 0;
}

int tshm_pin(struct tshm *c, uint32_t frame, struct tm_error *err)
{
    if (c->slot >= 0) {
        tshm_move_pin(c, frame);
        return 0;
    }
    /* from the top: the engine's own readers take slots from 0 */
    for (int slot = TSHM_READER_SLOTS - 1; slot >= 0; slot--) {
        if (!claim_slot(c, slot))
            continue;
        __atomic_store_n(reader_owner(c, slot), c->owner, __ATOMIC_RELEASE);
        __atomic_store_n(reader_frame(c, slot), (uint64_t)frame, __ATOMIC_RELEASE);
        c->slot = slot;
        c->frame = frame;
        return 0;
    }
    return tm_error_setc(err, TM_ERR_TRANSIENT, "every one of the %d reader slots of '%s' is taken: the sidecar "
                         "cannot hold the WAL for itself", TSHM_READER_SLOTS, c->path);
}

void tshm_move_pin(struct tshm *c, uint32_t frame)
{
    if (c->slot < 0)
        return;
    __atomic_store_n(reader_frame(c, c->slot), (uint64_t)frame, __ATOMIC_RELEASE);
    c->frame = frame;
}

void tshm_unpin(struct tshm *c)
{
    if (c->slot < 0)
        return;
    int slot = c->slot;
    ofd_lock(c->fd, F_UNLCK, TSHM_LOCK_READER0 + slot);
    /* only if still ours: an engine that re-created the file owns it now */
    uint64_t ours = c->owner;
    if (__atomic_compare_exchange_n(reader_owner(c, slot), &ours, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(reader_frame(c, slot), FRAME_NONE, __ATOMIC_RELEASE);
        __atomic_fetch_or(bitmap_word(c), (uint64_t)1 << slot, __ATOMIC_RELEASE);
    }
    c->slot = -1;
}

int tshm_pinned(const struct tshm *c) { return c->slot >= 0; }
uint32_t tshm_pin_frame(const struct tshm *c) { return c->frame; }
int tshm_pin_slot(const struct tshm *c) { return c->slot; }

int tshm_pin_intact(struct tshm *c, struct tm_error *err)
{
    struct stat now;
    if (stat(c->path, &now) != 0 || now.st_dev != c->opened.st_dev || now.st_ino != c->opened.st_ino) {
        tm_error_set(err, "the Turso engine's coordination file '%s' was deleted or replaced", c->path);
        return 0;
    }
    if (tshm_check_layout(c->map, TSHM_MAP_BYTES, c->path, err) != 0)
        return 0;
    if (c->slot < 0)
        return 1;
    uint64_t owner = __atomic_load_n(reader_owner(c, c->slot), __ATOMIC_ACQUIRE);
    uint64_t frame = __atomic_load_n(reader_frame(c, c->slot), __ATOMIC_ACQUIRE);
    if (owner != c->owner || frame != c->frame) {
        tm_error_set(err, "the sidecar's reader slot %d in '%s' was taken over (owner %#llx, frame %llu): the "
                     "engine re-created its coordination file", c->slot, c->path, (unsigned long long)owner,
                     (unsigned long long)frame);
        return 0;
    }
    return 1;
}

int tshm_locked_by_other(struct tshm *c, int byte)
{
    int held = 1;
    /* F_OFD_GETLK reports a lock of another open file description
     * (this one's own never conflict); a reader's byte is ours */
    if (ofd_lock_probe(c->fd, F_WRLCK, byte, &held) != 0)
        return 1;
    return held;
}
