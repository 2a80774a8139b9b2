/* test_tshm.c - replicator/tshm.c against synthetic coordination files
 * (the Turso engine's DB-tshm, version 1) written by the test with the
 * layout the engine 0.7.2 maps (/work/notes/tshm-facts.md §1): 86016
 * bytes, the header fields at their offsets, the reader bitmap at 192
 * (bit set = slot free), reader_frames at 200 (UINT64_MAX = unused) and
 * reader_owners at 712. The "other process" holding a lock is another
 * open file description of the same file (OFD locks conflict between
 * descriptions, as between processes). Every value is checked exactly:
 * what was written is what is read, and what the sidecar writes into the
 * file is exactly the engine's reader protocol. */
#include "harness.h"

#include "../../replicator/tshm.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The v1 layout, written independently of tshm.c. */
#define FILE_BYTES 86016
#define OFF_VERSION 8
#define OFF_SLOTS 12
#define OFF_WORDS 16
#define OFF_BLOCK_CAPACITY 20
#define OFF_HASH_SLOTS 24
#define OFF_MAX_BLOCKS 28
#define OFF_BLOCKS 32
#define OFF_INDEX_CAPACITY 36
#define OFF_SEQ 48
#define OFF_MAX_FRAME 56
#define OFF_NBACKFILLS 64
#define OFF_TXN 72
#define OFF_VISIBILITY 80
#define OFF_CKSEQ 88
#define OFF_PAGE_SIZE 96
#define OFF_SALT1 100
#define OFF_SALT2 104
#define OFF_CKSUM1 108
#define OFF_CKSUM2 112
#define OFF_BITMAP 192
#define OFF_FRAMES 200
#define OFF_OWNERS 712
#define ALL_FREE UINT64_MAX
#define NO_FRAME UINT64_MAX

/* The published state the synthetic files carry. */
#define MAX_FRAME 36
#define NBACKFILLS 20
#define TXN 41
#define CKSEQ 3
#define PAGE_SIZE 4096
#define SALT1 0x11223344u
#define SALT2 0xa5b6c7d8u
#define CKSUM1 0xdeadbeefu
#define CKSUM2 0x01020304u

static void put32(uint8_t *b, size_t off, uint32_t v)
{
    memcpy(b + off, &v, 4);
}

static void put64(uint8_t *b, size_t off, uint64_t v)
{
    memcpy(b + off, &v, 8);
}

/* A version-1 header and reader arrays, as the engine creates them (one
 * frame-index block), with the state above published at seq 6. */
static void fill_header(uint8_t *b)
{
    memcpy(b, "TSHMWAL\0", 8);
    put32(b, OFF_VERSION, 1);
    put32(b, OFF_SLOTS, 64);
    put32(b, OFF_WORDS, 1);
    put32(b, OFF_BLOCK_CAPACITY, 4096);
    put32(b, OFF_HASH_SLOTS, 8192);
    put32(b, OFF_MAX_BLOCKS, 64);
    put32(b, OFF_BLOCKS, 1);
    put32(b, OFF_INDEX_CAPACITY, 262144);
    put64(b, OFF_SEQ, 6);
    put64(b, OFF_MAX_FRAME, MAX_FRAME);
    put64(b, OFF_NBACKFILLS, NBACKFILLS);
    put64(b, OFF_TXN, TXN);
    put64(b, OFF_VISIBILITY, TXN);
    put32(b, OFF_CKSEQ, CKSEQ);
    put32(b, OFF_PAGE_SIZE, PAGE_SIZE);
    put32(b, OFF_SALT1, SALT1);
    put32(b, OFF_SALT2, SALT2);
    put32(b, OFF_CKSUM1, CKSUM1);
    put32(b, OFF_CKSUM2, CKSUM2);
    put64(b, OFF_BITMAP, ALL_FREE);
    for (int i = 0; i < 64; i++)
        put64(b, OFF_FRAMES + 8 * (size_t)i, NO_FRAME);
}

/* Writes `len` bytes of a fresh coordination file at dir/name; returns
 * its path (static storage: one at a time, or copy it). */
static const char *write_file(const char *name, size_t len)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", harness_tmpdir(), name);
    uint8_t *b = calloc(1, FILE_BYTES);
    fill_header(b);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ssize_t wrote = write(fd, b, len);
    close(fd);
    free(b);
    return wrote == (ssize_t)len ? path : "(write failed)";
}

static const char *make_tshm(void)
{
    return write_file("app.db-tshm", FILE_BYTES);
}

static void poke32(const char *path, size_t off, uint32_t v)
{
    int fd = open(path, O_WRONLY);
    if (pwrite(fd, &v, 4, (off_t)off) != 4)
        abort();
    close(fd);
}

static void poke64(const char *path, size_t off, uint64_t v)
{
    int fd = open(path, O_WRONLY);
    if (pwrite(fd, &v, 8, (off_t)off) != 8)
        abort();
    close(fd);
}

static uint64_t peek64(const char *path, size_t off)
{
    uint64_t v = 0;
    int fd = open(path, O_RDONLY);
    if (pread(fd, &v, 8, (off_t)off) != 8)
        v = 0xbadbadbadull;
    close(fd);
    return v;
}

/* Another open file description's OFD lock on one byte (0 taken). */
static int ofd_lock(int fd, short type, int byte)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl);
}

/* The lock type another description would conflict with on `byte`, seen
 * from a description of its own (F_UNLCK: none). */
static short lock_seen(const char *path, int byte)
{
    int fd = open(path, O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    short type = fcntl(fd, F_OFD_GETLK, &fl) == 0 ? fl.l_type : -1;
    close(fd);
    return type;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- tshm_identify ---- */

static void test_identify_magic_missing_and_wrong(void)
{
    struct tm_error err;
    int live = 7;
    const char *path = make_tshm();
    ASSERT_EQ(tshm_identify(path, &live, &err), 1);
    ASSERT_EQ(live, 0);
    ASSERT_EQ(lock_seen(path, 0), F_UNLCK);   /* it took no lock, kept none */

    char missing[512];
    snprintf(missing, sizeof missing, "%s/none.db-tshm", harness_tmpdir());
    live = 7;
    ASSERT_EQ(tshm_identify(missing, &live, &err), 0);
    ASSERT_EQ(live, 0);

    poke32(path, 4, 0x0058414c);   /* "TSHMLAX\0": not the magic */
    live = 7;
    ASSERT_EQ(tshm_identify(path, &live, &err), 0);
    ASSERT_EQ(live, 0);

    const char *empty = write_file("empty.db-tshm", 0);
    ASSERT_EQ(tshm_identify(empty, &live, &err), 0);

    char dir[512];   /* unreadable as a file: an I/O error, named */
    snprintf(dir, sizeof dir, "%s/dir.db-tshm", harness_tmpdir());
    ASSERT_EQ(mkdir(dir, 0755), 0);
    ASSERT_EQ(tshm_identify(dir, &live, &err), -1);
    ASSERT_STR_CONTAINS(err.msg, "dir.db-tshm");
}

static void test_identify_live_only_while_byte0_is_held(void)
{
    struct tm_error err;
    int live = 7;
    const char *path = make_tshm();
    int engine = open(path, O_RDWR);
    ASSERT_EQ(ofd_lock(engine, F_RDLCK, 0), 0);   /* an engine process has it mapped */
    ASSERT_EQ(tshm_identify(path, &live, &err), 1);
    ASSERT_EQ(live, 1);
    ASSERT_EQ(lock_seen(path, 0), F_RDLCK);   /* the engine's lock stays, and only it */

    /* a lock on another byte (a reader slot) is not an open engine */
    ASSERT_EQ(ofd_lock(engine, F_UNLCK, 0), 0);
    ASSERT_EQ(ofd_lock(engine, F_WRLCK, 3), 0);
    ASSERT_EQ(tshm_identify(path, &live, &err), 1);
    ASSERT_EQ(live, 0);
    close(engine);
    ASSERT_EQ(tshm_identify(path, &live, &err), 1);
    ASSERT_EQ(live, 0);
}

/* ---- tshm_header_written ---- */

/* The engine sizes the file (zeros), then writes the header field by
 * field: until the last constant is there, the header is not written,
 * and only then may the layout be judged. */
static void test_header_written_only_once_complete(void)
{
    char missing[512];
    snprintf(missing, sizeof missing, "%s/none.db-tshm", harness_tmpdir());
    ASSERT_EQ(tshm_header_written(missing), 0);
    ASSERT_EQ(tshm_header_written(write_file("empty.db-tshm", 0)), 0);
    ASSERT_EQ(tshm_header_written(write_file("short.db-tshm", TSHM_MAP_BYTES - 1)), 0);

    const char *path = make_tshm();
    ASSERT_EQ(tshm_header_written(path), 1);
    static const size_t constants[] = {OFF_VERSION, OFF_SLOTS, OFF_WORDS, OFF_BLOCK_CAPACITY,
                                       OFF_HASH_SLOTS, OFF_MAX_BLOCKS, OFF_INDEX_CAPACITY};
    for (size_t i = 0; i < sizeof constants / sizeof *constants; i++) {
        path = make_tshm();
        poke32(path, constants[i], 0);   /* not written yet */
        ASSERT_EQ(tshm_header_written(path), 0);
    }
    path = make_tshm();
    poke32(path, 0, 0);
    poke32(path, 4, 0);   /* the magic not written yet */
    ASSERT_EQ(tshm_header_written(path), 0);

    /* written, whatever it says: tshm_check_layout refuses it by name */
    path = make_tshm();
    poke32(path, OFF_VERSION, 2);
    ASSERT_EQ(tshm_header_written(path), 1);
    path = make_tshm();
    poke32(path, 4, 0x0058414c);
    ASSERT_EQ(tshm_header_written(path), 1);

    char dir[512];   /* unreadable as a file: tshm_open names the error */
    snprintf(dir, sizeof dir, "%s/dir2.db-tshm", harness_tmpdir());
    ASSERT_EQ(mkdir(dir, 0755), 0);
    ASSERT_EQ(tshm_header_written(dir), 1);
}

/* ---- tshm_check_layout ---- */

static uint8_t *good_header(void)
{
    uint8_t *b = calloc(1, TSHM_MAP_BYTES);
    fill_header(b);
    return b;
}

static void test_check_layout_accepts_version_1(void)
{
    struct tm_error err;
    uint8_t *b = good_header();
    int rc = tshm_check_layout(b, TSHM_MAP_BYTES, "x.db-tshm", &err);
    free(b);
    ASSERT_EQ(rc, 0);
}

/* The refusal of a header changed at one field: -1, the message naming
 * the value found (needle). */
static void check_refused(size_t off, uint32_t value, size_t len, const char *needle)
{
    struct tm_error err = {0};
    uint8_t *b = good_header();
    if (off)
        put32(b, off, value);
    int rc = tshm_check_layout(b, len, "x.db-tshm", &err);
    free(b);
    ASSERT_EQ(rc, -1);
    ASSERT_STR_CONTAINS(err.msg, needle);
}

static void test_check_layout_refuses_version_2(void)
{
    check_refused(OFF_VERSION, 2, TSHM_MAP_BYTES, "version 2");
}

static void test_check_layout_refuses_32_slots(void)
{
    check_refused(OFF_SLOTS, 32, TSHM_MAP_BYTES, "reader slot count 32");
}

static void test_check_layout_refuses_a_short_file(void)
{
    check_refused(0, 0, 1000, "1000 bytes");
}

static void test_check_layout_refuses_a_wrong_magic(void)
{
    struct tm_error err = {0};
    uint8_t *b = good_header();
    memcpy(b, "SQLite f", 8);
    int rc = tshm_check_layout(b, TSHM_MAP_BYTES, "x.db-tshm", &err);
    free(b);
    ASSERT_EQ(rc, -1);
    ASSERT_STR_CONTAINS(err.msg, "magic");
    ASSERT_STR_CONTAINS(err.msg, "53 51 4c 69 74 65 20 66");   /* what it found: "SQLite f" */
}

/* ---- tshm_open, tshm_read ---- */

static struct tshm *open_ok(const char *path)
{
    struct tshm *c = NULL;
    struct tm_error err;
    if (tshm_open(path, &c, &err) != 0) {
        fprintf(stderr, "  tshm_open %s: %s\n", path, err.msg);
        return NULL;
    }
    return c;
}

static void test_open_refuses_version_2(void)
{
    struct tm_error err = {0};
    struct tshm *c = NULL;
    const char *path = make_tshm();
    poke32(path, OFF_VERSION, 2);
    ASSERT_EQ(tshm_open(path, &c, &err), -1);
    ASSERT_TRUE(c == NULL);
    ASSERT_STR_CONTAINS(err.msg, "version 2");
}

static void test_open_refuses_a_short_file(void)
{
    struct tm_error err = {0};
    struct tshm *c = NULL;
    const char *path = write_file("short.db-tshm", 1000);
    ASSERT_EQ(tshm_open(path, &c, &err), -1);
    ASSERT_TRUE(c == NULL);
    ASSERT_STR_CONTAINS(err.msg, "is 1000 bytes long");
}

static void test_read_returns_the_published_state(void)
{
    struct tm_error err;
    struct tshm_state s;
    struct tshm *c = open_ok(make_tshm());
    ASSERT_TRUE(c);
    int rc = tshm_read(c, &s, &err);
    tshm_close(c);
    ASSERT_EQ(rc, 1);
    ASSERT_EQ(s.seq, 6);
    ASSERT_EQ(s.max_frame, MAX_FRAME);
    ASSERT_EQ(s.backfilled, NBACKFILLS);
    ASSERT_EQ(s.transactions, TXN);
    ASSERT_EQ(s.checkpoint_seq, CKSEQ);
    ASSERT_EQ(s.page_size, PAGE_SIZE);
    ASSERT_EQ(s.salt1, SALT1);
    ASSERT_EQ(s.salt2, SALT2);
    ASSERT_EQ(s.checksum[0], CKSUM1);
    ASSERT_EQ(s.checksum[1], CKSUM2);
}

static void test_read_sees_a_later_publication(void)
{
    struct tm_error err;
    struct tshm_state s;
    const char *path = make_tshm();
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    poke64(path, OFF_MAX_FRAME, 50);   /* the mapping is shared: no reopen */
    poke64(path, OFF_TXN, 45);
    poke64(path, OFF_SEQ, 8);
    int rc = tshm_read(c, &s, &err);
    tshm_close(c);
    ASSERT_EQ(rc, 1);
    ASSERT_EQ(s.seq, 8);
    ASSERT_EQ(s.max_frame, 50);
    ASSERT_EQ(s.transactions, 45);
}

static void test_read_gives_up_on_an_odd_seq(void)
{
    struct tm_error err;
    struct tshm_state s;
    const char *path = make_tshm();
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    poke64(path, OFF_SEQ, 7);   /* an engine killed mid-publication */
    int64_t t0 = now_ms();
    int rc = tshm_read(c, &s, &err);
    int64_t took = now_ms() - t0;
    ASSERT_EQ(rc, 0);
    ASSERT_TRUE(took < 2000);   /* bounded (the harness's timeout is 10 s) */
    poke64(path, OFF_SEQ, 8);   /* published at last */
    rc = tshm_read(c, &s, &err);
    tshm_close(c);
    ASSERT_EQ(rc, 1);
    ASSERT_EQ(s.seq, 8);
}

static void test_read_refuses_a_version_changed_after_open(void)
{
    struct tm_error err = {0};
    struct tshm_state s;
    const char *path = make_tshm();
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    poke32(path, OFF_VERSION, 2);   /* an engine upgrade rewrote it */
    int rc = tshm_read(c, &s, &err);
    tshm_close(c);
    ASSERT_EQ(rc, -1);
    ASSERT_STR_CONTAINS(err.msg, "version 2");
}

/* ---- the reader slot ---- */

static void test_pin_takes_the_highest_free_slot(void)
{
    struct tm_error err;
    const char *path = make_tshm();
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    ASSERT_EQ(tshm_pinned(c), 0);
    ASSERT_EQ(tshm_pin_slot(c), -1);
    ASSERT_EQ(tshm_pin(c, 30, &err), 0);
    ASSERT_EQ(tshm_pinned(c), 1);
    ASSERT_EQ(tshm_pin_slot(c), 63);
    ASSERT_EQ(tshm_pin_frame(c), 30);
    ASSERT_TRUE(peek64(path, OFF_BITMAP) == (ALL_FREE & ~(1ull << 63)));
    ASSERT_EQ(peek64(path, OFF_FRAMES + 8 * 63), 30);
    uint64_t owner = peek64(path, OFF_OWNERS + 8 * 63);
    ASSERT_TRUE(owner != 0);
    ASSERT_EQ(owner >> 32, getpid());   /* (pid << 32) | instance, as the engine's */
    ASSERT_EQ(peek64(path, OFF_FRAMES + 8 * 62), NO_FRAME);   /* nothing else written */
    ASSERT_EQ(peek64(path, OFF_OWNERS + 8 * 62), 0);
    ASSERT_EQ(lock_seen(path, TSHM_LOCK_READER0 + 63), F_WRLCK);
    ASSERT_EQ(lock_seen(path, TSHM_LOCK_READER0 + 62), F_UNLCK);
    ASSERT_EQ(lock_seen(path, 0), F_UNLCK);   /* byte 0 never taken */
    ASSERT_EQ(peek64(path, OFF_SEQ), 6);      /* the header never written */
    ASSERT_EQ(peek64(path, OFF_MAX_FRAME), MAX_FRAME);
    tshm_close(c);
}

static void test_move_pin_stores_the_new_frame(void)
{
    struct tm_error err;
    const char *path = make_tshm();
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    ASSERT_EQ(tshm_pin(c, 30, &err), 0);
    uint64_t owner = peek64(path, OFF_OWNERS + 8 * 63);
    tshm_move_pin(c, 34);
    ASSERT_EQ(tshm_pin_frame(c), 34);
    ASSERT_EQ(tshm_pin_slot(c), 63);
    ASSERT_EQ(peek64(path, OFF_FRAMES + 8 * 63), 34);
    ASSERT_TRUE(peek64(path, OFF_OWNERS + 8 * 63) == owner);
    ASSERT_TRUE(peek64(path, OFF_BITMAP) == (ALL_FREE & ~(1ull << 63)));
    ASSERT_EQ(lock_seen(path, TSHM_LOCK_READER0 + 63), F_WRLCK);
    ASSERT_EQ(tshm_pin_intact(c, &err), 1);
    tshm_close(c);
}

static void test_unpin_restores_the_slot(void)
{
    struct tm_error err;
    const char *path = make_tshm();
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    ASSERT_EQ(tshm_pin(c, 30, &err), 0);
    tshm_unpin(c);
    ASSERT_EQ(tshm_pinned(c), 0);
    ASSERT_EQ(tshm_pin_slot(c), -1);
    ASSERT_TRUE(peek64(path, OFF_BITMAP) == ALL_FREE);
    ASSERT_TRUE(peek64(path, OFF_FRAMES + 8 * 63) == NO_FRAME);
    ASSERT_EQ(peek64(path, OFF_OWNERS + 8 * 63), 0);
    ASSERT_EQ(lock_seen(path, TSHM_LOCK_READER0 + 63), F_UNLCK);
    tshm_unpin(c);   /* nothing held: nothing done */
    ASSERT_TRUE(peek64(path, OFF_BITMAP) == ALL_FREE);
    /* taken again: the same slot */
    ASSERT_EQ(tshm_pin(c, 31, &err), 0);
    ASSERT_EQ(tshm_pin_slot(c), 63);
    ASSERT_EQ(peek64(path, OFF_FRAMES + 8 * 63), 31);
    tshm_close(c);
}

static void test_close_releases_the_slot(void)
{
    struct tm_error err;
    const char *path = make_tshm();
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    ASSERT_EQ(tshm_pin(c, 30, &err), 0);
    tshm_close(c);
    ASSERT_TRUE(peek64(path, OFF_BITMAP) == ALL_FREE);
    ASSERT_TRUE(peek64(path, OFF_FRAMES + 8 * 63) == NO_FRAME);
    ASSERT_EQ(peek64(path, OFF_OWNERS + 8 * 63), 0);
    ASSERT_EQ(lock_seen(path, TSHM_LOCK_READER0 + 63), F_UNLCK);
}

/* Slot 63's byte held by another reader whose bit reads free (it is
 * between its CAS and its lock, or the bit was restored), slot 62 taken
 * in the bitmap: 61 is the one, and 63's bit is set again. */
static void test_pin_skips_locked_and_taken_slots(void)
{
    struct tm_error err;
    const char *path = make_tshm();
    poke64(path, OFF_BITMAP, ALL_FREE & ~(1ull << 62));
    int other = open(path, O_RDWR);
    ASSERT_EQ(ofd_lock(other, F_WRLCK, TSHM_LOCK_READER0 + 63), 0);
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    ASSERT_EQ(tshm_pin(c, 30, &err), 0);
    ASSERT_EQ(tshm_pin_slot(c), 61);
    ASSERT_TRUE(peek64(path, OFF_BITMAP) == (ALL_FREE & ~(1ull << 62) & ~(1ull << 61)));
    ASSERT_EQ(peek64(path, OFF_FRAMES + 8 * 61), 30);
    ASSERT_TRUE(peek64(path, OFF_FRAMES + 8 * 63) == NO_FRAME);
    ASSERT_EQ(peek64(path, OFF_OWNERS + 8 * 63), 0);
    tshm_unpin(c);
    ASSERT_TRUE(peek64(path, OFF_BITMAP) == (ALL_FREE & ~(1ull << 62)));
    tshm_close(c);
    close(other);
}

static void test_no_free_slot_in_the_bitmap(void)
{
    struct tm_error err = {0};
    const char *path = make_tshm();
    poke64(path, OFF_BITMAP, 0);   /* 64 readers */
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    ASSERT_EQ(tshm_pin(c, 30, &err), -1);
    ASSERT_EQ(tshm_pinned(c), 0);
    ASSERT_EQ(tshm_pin_slot(c), -1);
    ASSERT_STR_CONTAINS(err.msg, "every one of the 64 reader slots");
    ASSERT_EQ(peek64(path, OFF_BITMAP), 0);
    ASSERT_TRUE(peek64(path, OFF_FRAMES + 8 * 63) == NO_FRAME);
    tshm_close(c);
}

/* Every bit reads free but every byte is held: each bit is set again. */
static void test_no_free_slot_every_byte_locked(void)
{
    struct tm_error err = {0};
    const char *path = make_tshm();
    int other = open(path, O_RDWR);
    for (int i = 0; i < 64; i++)
        ASSERT_EQ(ofd_lock(other, F_WRLCK, TSHM_LOCK_READER0 + i), 0);
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    ASSERT_EQ(tshm_pin(c, 30, &err), -1);
    ASSERT_EQ(tshm_pinned(c), 0);
    ASSERT_STR_CONTAINS(err.msg, "every one of the 64 reader slots");
    ASSERT_TRUE(peek64(path, OFF_BITMAP) == ALL_FREE);
    for (int i = 0; i < 64; i++) {
        ASSERT_TRUE(peek64(path, OFF_FRAMES + 8 * (size_t)i) == NO_FRAME);
        ASSERT_EQ(peek64(path, OFF_OWNERS + 8 * (size_t)i), 0);
    }
    tshm_close(c);
    close(other);
}

/* ---- tshm_pin_intact ---- */

static struct tshm *pinned_at_30(const char *path)
{
    struct tm_error err;
    struct tshm *c = open_ok(path);
    if (c && tshm_pin(c, 30, &err) != 0) {
        fprintf(stderr, "  tshm_pin: %s\n", err.msg);
        tshm_close(c);
        return NULL;
    }
    return c;
}

static void test_pin_intact_while_untouched(void)
{
    struct tm_error err;
    const char *path = make_tshm();
    struct tshm *c = pinned_at_30(path);
    ASSERT_TRUE(c);
    poke64(path, OFF_MAX_FRAME, 60);   /* the engine goes on committing */
    poke64(path, OFF_SEQ, 8);
    int rc = tshm_pin_intact(c, &err);
    tshm_close(c);
    ASSERT_EQ(rc, 1);
}

static void test_pin_lost_when_the_owner_is_overwritten(void)
{
    struct tm_error err;
    const char *path = make_tshm();
    struct tshm *c = pinned_at_30(path);
    ASSERT_TRUE(c);
    poke64(path, OFF_OWNERS + 8 * 63, ((uint64_t)99999 << 32) | 1);
    int rc = tshm_pin_intact(c, &err);
    tshm_close(c);
    ASSERT_EQ(rc, 0);
    ASSERT_STR_CONTAINS(err.msg, "slot 63");
    ASSERT_STR_CONTAINS(err.msg, "owner 0x1869f00000001");
}

static void test_pin_lost_when_the_frame_is_overwritten(void)
{
    struct tm_error err;
    const char *path = make_tshm();
    struct tshm *c = pinned_at_30(path);
    ASSERT_TRUE(c);
    poke64(path, OFF_FRAMES + 8 * 63, NO_FRAME);   /* reclaimed by a checkpointer */
    int rc = tshm_pin_intact(c, &err);
    tshm_close(c);
    ASSERT_EQ(rc, 0);
    ASSERT_STR_CONTAINS(err.msg, "slot 63");
    ASSERT_STR_CONTAINS(err.msg, "frame 18446744073709551615");
}

static void test_pin_lost_when_the_file_is_replaced(void)
{
    struct tm_error err;
    char path[512], fresh[512];
    snprintf(path, sizeof path, "%s", make_tshm());
    struct tshm *c = pinned_at_30(path);
    ASSERT_TRUE(c);
    /* the engine re-created it: a new file renamed over it, identical
     * bytes, our slot even copied over */
    snprintf(fresh, sizeof fresh, "%s", write_file("fresh.db-tshm", FILE_BYTES));
    poke64(fresh, OFF_BITMAP, peek64(path, OFF_BITMAP));
    poke64(fresh, OFF_FRAMES + 8 * 63, peek64(path, OFF_FRAMES + 8 * 63));
    poke64(fresh, OFF_OWNERS + 8 * 63, peek64(path, OFF_OWNERS + 8 * 63));
    ASSERT_EQ(rename(fresh, path), 0);
    int rc = tshm_pin_intact(c, &err);
    tshm_close(c);
    ASSERT_EQ(rc, 0);
    ASSERT_STR_CONTAINS(err.msg, "replaced");
}

static void test_pin_lost_when_the_file_is_deleted(void)
{
    struct tm_error err;
    const char *path = make_tshm();
    struct tshm *c = pinned_at_30(path);
    ASSERT_TRUE(c);
    ASSERT_EQ(unlink(path), 0);
    int rc = tshm_pin_intact(c, &err);
    tshm_close(c);
    ASSERT_EQ(rc, 0);
    ASSERT_STR_CONTAINS(err.msg, "deleted");
}

static void test_pin_lost_when_the_version_changes(void)
{
    struct tm_error err;
    const char *path = make_tshm();
    struct tshm *c = pinned_at_30(path);
    ASSERT_TRUE(c);
    poke32(path, OFF_VERSION, 2);
    int rc = tshm_pin_intact(c, &err);
    tshm_close(c);
    ASSERT_EQ(rc, 0);
    ASSERT_STR_CONTAINS(err.msg, "format version 2");
}

/* ---- tshm_locked_by_other ---- */

static void test_locked_by_other_writer_and_checkpointer(void)
{
    const char *path = make_tshm();
    struct tshm *c = open_ok(path);
    ASSERT_TRUE(c);
    ASSERT_EQ(tshm_locked_by_other(c, TSHM_LOCK_WRITER), 0);
    ASSERT_EQ(tshm_locked_by_other(c, TSHM_LOCK_CHECKPOINTER), 0);
    int engine = open(path, O_RDWR);
    ASSERT_EQ(ofd_lock(engine, F_WRLCK, TSHM_LOCK_WRITER), 0);   /* a write transaction */
    ASSERT_EQ(tshm_locked_by_other(c, TSHM_LOCK_WRITER), 1);
    ASSERT_EQ(tshm_locked_by_other(c, TSHM_LOCK_CHECKPOINTER), 0);
    ASSERT_EQ(ofd_lock(engine, F_WRLCK, TSHM_LOCK_CHECKPOINTER), 0);   /* and a checkpoint */
    ASSERT_EQ(tshm_locked_by_other(c, TSHM_LOCK_CHECKPOINTER), 1);
    ASSERT_EQ(ofd_lock(engine, F_UNLCK, TSHM_LOCK_WRITER), 0);
    ASSERT_EQ(tshm_locked_by_other(c, TSHM_LOCK_WRITER), 0);
    ASSERT_EQ(tshm_locked_by_other(c, TSHM_LOCK_CHECKPOINTER), 1);
    close(engine);
    ASSERT_EQ(tshm_locked_by_other(c, TSHM_LOCK_CHECKPOINTER), 0);
    /* looking took no lock: another can take both */
    engine = open(path, O_RDWR);
    ASSERT_EQ(ofd_lock(engine, F_WRLCK, TSHM_LOCK_WRITER), 0);
    ASSERT_EQ(ofd_lock(engine, F_WRLCK, TSHM_LOCK_CHECKPOINTER), 0);
    close(engine);
    tshm_close(c);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"identify_magic_missing_and_wrong", test_identify_magic_missing_and_wrong},
        {"identify_live_only_while_byte0_is_held", test_identify_live_only_while_byte0_is_held},
        {"header_written_only_once_complete", test_header_written_only_once_complete},
        {"check_layout_accepts_version_1", test_check_layout_accepts_version_1},
        {"check_layout_refuses_version_2", test_check_layout_refuses_version_2},
        {"check_layout_refuses_32_slots", test_check_layout_refuses_32_slots},
        {"check_layout_refuses_a_short_file", test_check_layout_refuses_a_short_file},
        {"check_layout_refuses_a_wrong_magic", test_check_layout_refuses_a_wrong_magic},
        {"open_refuses_version_2", test_open_refuses_version_2},
        {"open_refuses_a_short_file", test_open_refuses_a_short_file},
        {"read_returns_the_published_state", test_read_returns_the_published_state},
        {"read_sees_a_later_publication", test_read_sees_a_later_publication},
        {"read_gives_up_on_an_odd_seq", test_read_gives_up_on_an_odd_seq},
        {"read_refuses_a_version_changed_after_open", test_read_refuses_a_version_changed_after_open},
        {"pin_takes_the_highest_free_slot", test_pin_takes_the_highest_free_slot},
        {"move_pin_stores_the_new_frame", test_move_pin_stores_the_new_frame},
        {"unpin_restores_the_slot", test_unpin_restores_the_slot},
        {"close_releases_the_slot", test_close_releases_the_slot},
        {"pin_skips_locked_and_taken_slots", test_pin_skips_locked_and_taken_slots},
        {"no_free_slot_in_the_bitmap", test_no_free_slot_in_the_bitmap},
        {"no_free_slot_every_byte_locked", test_no_free_slot_every_byte_locked},
        {"pin_intact_while_untouched", test_pin_intact_while_untouched},
        {"pin_lost_when_the_owner_is_overwritten", test_pin_lost_when_the_owner_is_overwritten},
        {"pin_lost_when_the_frame_is_overwritten", test_pin_lost_when_the_frame_is_overwritten},
        {"pin_lost_when_the_file_is_replaced", test_pin_lost_when_the_file_is_replaced},
        {"pin_lost_when_the_file_is_deleted", test_pin_lost_when_the_file_is_deleted},
        {"pin_lost_when_the_version_changes", test_pin_lost_when_the_version_changes},
        {"locked_by_other_writer_and_checkpointer", test_locked_by_other_writer_and_checkpointer},
    };
    return harness_run(cases, sizeof cases / sizeof cases[0]);
}
