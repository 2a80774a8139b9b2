/* tshm.h - the Turso engine's multi-process WAL coordination file
 * (DB-tshm, format version 1): reading the WAL state it publishes, and
 * holding one reader slot in it as the engine's own readers do. The
 * layout and the protocol are described at the top of tshm.c. */
#ifndef TM_TSHM_H
#define TM_TSHM_H

#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

#define TSHM_MAGIC "TSHMWAL\0"
#define TSHM_MAGIC_BYTES 8
#define TSHM_VERSION 1                 /* the only version accepted (tested: engine 0.7.2) */
#define TSHM_MAP_BYTES 4096            /* the header and the reader arrays; never shrinks below */
#define TSHM_READER_SLOTS 64
/* OFD lock bytes of the file (the engine's): held by the writer during a
 * write transaction (and FULL/RESTART/TRUNCATE checkpoints), by any
 * checkpoint, and by reader slot i at TSHM_LOCK_READER0 + i. Byte 0 is
 * each engine process's "I have it mapped": never taken by tidemark. */
#define TSHM_LOCK_WRITER 1
#define TSHM_LOCK_CHECKPOINTER 2
#define TSHM_LOCK_READER0 3

/* The WAL state the engine publishes, read consistently (seqlock). */
struct tshm_state {
    uint64_t seq;               /* snapshot_seq at the read (even) */
    uint32_t max_frame;         /* last committed frame of the WAL */
    uint32_t backfilled;        /* nbackfills: frames copied into the database file */
    uint64_t transactions;      /* transaction_count: +1 per commit, kept across WAL restarts */
    uint32_t checkpoint_seq;    /* the WAL generation: +1 per restart or truncate */
    uint32_t page_size;
    uint32_t salt1, salt2;      /* of the WAL at checkpoint_seq */
    uint32_t checksum[2];       /* the WAL's running checksum at max_frame */
};

struct tshm;

/* Whether the file at path is a coordination file (its magic): 1, 0 (no
 * file, or not the magic), -1 on I/O errors. *live = 1 when some process
 * holds its byte 0 (an engine process has it open). Opens and closes it;
 * takes no lock. */
int tshm_identify(const char *path, int *live, struct tm_error *err);

/* Whether the engine has finished writing path's header: 0 while the
 * file is missing, shorter than TSHM_MAP_BYTES, or its magic or a layout
 * constant still reads zero (the engine sizes the file, then writes the
 * header: a sidecar looking in between must wait, not refuse); 1 once
 * every one of them is set, whatever their values (tshm_check_layout
 * judges those), and when the file cannot be read (tshm_open says why). */
int tshm_header_written(const char *path);

/* Whether the first `len` bytes of a coordination file have the layout
 * this file reads (magic, version 1 and its constants). 0, or -1 with err
 * naming each value found and what is supported. */
int tshm_check_layout(const uint8_t *bytes, size_t len, const char *path, struct tm_error *err);

/* Opens path for reading and for the reader protocol (its first
 * TSHM_MAP_BYTES mapped shared), after tshm_check_layout. */
int tshm_open(const char *path, struct tshm **out, struct tm_error *err);
/* Releases the slot, if held, unmaps and closes. */
void tshm_close(struct tshm *c);

/* One consistent read of the published state: 1, 0 when the engine kept
 * it being written for 2 ms (never hangs), -1 when the file is no longer
 * one this reads (layout changed, err says). */
int tshm_read(struct tshm *c, struct tshm_state *out, struct tm_error *err);

/* Takes a free reader slot pinning `frame` (the engine's checkpoints copy
 * no frame past it into the database file, and no WAL restart happens
 * while the slot is held). 0; -1 with err (every slot taken). */
int tshm_pin(struct tshm *c, uint32_t frame, struct tm_error *err);
/* Moves the held slot's frame, in place. Within one WAL the caller only
 * moves it forward (a checkpoint may already have copied up to it); a
 * smaller number is a frame of a newer WAL. */
void tshm_move_pin(struct tshm *c, uint32_t frame);
/* Releases the slot (nothing if none is held). */
void tshm_unpin(struct tshm *c);
int tshm_pinned(const struct tshm *c);
uint32_t tshm_pin_frame(const struct tshm *c);
int tshm_pin_slot(const struct tshm *c);   /* -1: none */

/* Whether the slot still stands as taken: the file is the one opened (not
 * deleted or replaced), its layout unchanged, the slot's owner and frame
 * ours. 1, or 0 with err saying what changed (an engine that re-created
 * the file: the slot no longer pins anything). */
int tshm_pin_intact(struct tshm *c, struct tm_error *err);

/* Whether another process holds lock byte `byte` (TSHM_LOCK_WRITER: a
 * write transaction; TSHM_LOCK_CHECKPOINTER: a checkpoint). 1 also when
 * it cannot tell. */
int tshm_locked_by_other(struct tshm *c, int byte);

#endif
