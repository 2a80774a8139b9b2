/* pin.h - moving the tailer's pin out of the application's way (pin.c).
 * Every function runs on the loop's thread, on a database whose tailer
 * is open and which needs no new generation (unless stated). */
#ifndef TM_PIN_H
#define TM_PIN_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/error.h"

struct db_context;

/* The yield timer's period while pinned, and while unpinned (the WAL is
 * then read every millisecond). */
#define YIELD_POLL_S 0.005
#define YIELD_FAST_POLL_S 0.001

/* The pin's bookkeeping, in each database's context (ctx->pin). */
struct pin_state {
    ev_timer yield_timer;            /* polls for an application checkpoint waiting on the pin */
    uint32_t checkpoint_floor;       /* shipped WAL frame when the pin last moved */
    uint64_t moves, yields;          /* pin handovers; of them, for an application's checkpoint */
    int64_t unpinned_ms;             /* when the pin was let go (tailer_unpin) */
    int64_t let_go_wanted_ms;        /* the pin moved to let go once the application's checkpoints
                                        have copied up to it (0: not wanted) */
    int64_t last_yield_ms;           /* the pin last gave way to an application checkpoint */
    int64_t wal_event_ms;            /* the Turso route: the WAL was last written (inotify) */
    uint32_t unpinned_salt1, unpinned_salt2;   /* the WAL followed then */
    uint32_t quiet_checkpoint_frame, quiet_checkpoint_salt1;   /* where the last quiet checkpoint was tried */
};

/* The Turso route polls the WAL every millisecond only this long after
 * its last write (then the WAL's inotify events wake it again). */
#define TURSO_POLL_AFTER_WRITE_MS 500

/* Sets the yield timer up (not started); once per context. */
void pin_init_yield_timer(struct db_context *ctx);
/* Starts the yield timer when the pin may be in the way of an
 * application's checkpoint, stops it when it cannot be (also when the
 * tailer is closed or a new generation is needed). */
void pin_update_yield_timer(struct db_context *ctx);
/* The pin's step on each sync tick, after shipping; quiet: the tick
 * shipped nothing. Continuity lost: restarts the database; an error is
 * logged, and the pin kept where it was. */
void pin_keep_moving(struct db_context *ctx, int quiet);
/* Before the loop's thread ships (tens of milliseconds for a large
 * backlog, with no look at the WAL meanwhile): takes the pin again if it
 * was let go, so that the application's writer cannot restart the WAL
 * over frames not read yet. Left unpinned while an application's
 * FULL/RESTART/TRUNCATE checkpoint holds the write lock (no frame can be
 * appended then, and the pin would make it wait for the shipping), and
 * when the pin cannot protect yet (slot 0 with frames not shipped): it
 * is taken again later. */
void pin_before_shipping(struct db_context *ctx);
/* Moves the pin to the WAL's end and ships exactly the commits up to
 * it, so that a snapshot of the pin's state belongs at the shipper's
 * next index. TAILER_OK, TAILER_LATER (try again), TAILER_BROKEN, or -1
 * with err set. */
int pin_ship_up_to(struct db_context *ctx, struct tm_error *err);
/* While a worker thread has the shipper (a snapshot's, snapshots.c; a
 * segment's, shipper_segment.c, as the shipper's `beside`; arg is the
 * struct db_context): one look at the WAL, getting out of a waiting
 * checkpoint's way without shipping. Returns 1 with err set when
 * continuity is lost (the caller restarts the database once the worker
 * is done), else 0. */
int pin_follow_beside_worker(void *arg, struct tm_error *err);

#endif
