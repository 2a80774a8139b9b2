/* pin.c - the pin: the sidecar's read transaction on the WAL, kept out
 * of the application's way.
 *
 * DESIGN
 *
 * The tailer (tailer_pin.c) holds a read transaction - the pin - so that no
 * frame it has not shipped can be overwritten by a WAL restart. A pin
 * held for ever would let the WAL grow for ever, so this file moves it
 * on, on the loop's thread (docs/design.md, "The pin and the
 * application"):
 *
 *  - on each sync tick (pin_keep_moving): while the application writes,
 *    once checkpoint-pages frames are shipped past the place where the
 *    pin last let go or moved, the pin is let go (no read transaction at
 *    all: the application's own checkpoints backfill the WAL and its next
 *    writer restarts it) - but only once their copy has caught up to all
 *    but checkpoint-pages frames: else the pin moves to the WAL's end and
 *    the yield timer lets go when the copy has caught up
 *    (let_go_once_copied, from memory only). An application that runs
 *    its own RESTART/TRUNCATE checkpoints only gets the pin moved. After
 *    a tick and a second without a commit, the sidecar checkpoints
 *    (PASSIVE) and hands the pin over onto mark 0, where the next writer
 *    restarts the WAL;
 *  - nothing is shipped while unpinned (pin_before_shipping takes the pin
 *    first): a backlog takes the loop tens of milliseconds, long enough
 *    for a writer that never pauses to restart its WAL over frames not
 *    read yet;
 *  - the yield timer (on_yield_poll, every YIELD_POLL_S while the pin
 *    may be in the way, every YIELD_FAST_POLL_S while unpinned): an
 *    application's FULL/RESTART/TRUNCATE checkpoint waiting for the pin
 *    makes the sidecar read what is pending into memory and let go;
 *    while unpinned the WAL is read every millisecond, and the pin is
 *    taken again once no checkpoint runs and the WAL restarted, or
 *    REPIN_AFTER_MS passed (meanwhile the tailer's guard thread holds a
 *    restarted WAL, in case the loop is late: tailer_guard.c);
 *  - while a snapshot's worker thread writes (snapshots.c), the loop's
 *    thread does the same through pin_follow_beside_worker, without
 *    shipping (the worker has the shipper).
 *
 * Continuity lost on the way (TAILER_BROKEN) restarts the database
 * (database_restart): a new generation with a snapshot. */
#include "pin.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "database.h"
#include "tailer.h"

#include <stdio.h>

/* Unpinned: pin again once the WAL restarted, or this long after. */
#define REPIN_AFTER_MS 20
/* A pin moved to be let go (pin_keep_moving) waits this long at most for
 * the application's checkpoints to copy up to it. */
#define LET_GO_WAIT_MS 500
/* The sidecar keeps up while a tick ships at most this many times
 * checkpoint-pages: only then is the pin let go (else it moves). */
#define KEEPING_UP_CHECKPOINTS 4
/* The application ran a checkpoint the pin gave way to this recently:
 * it restarts its WAL itself. */
#define OWN_CHECKPOINTS_MS 10000
/* Quiet this long (and a whole tick), the sidecar checkpoints. */
#define QUIET_CHECKPOINT_MS 1000

static void on_yield_poll(struct ev_loop *loop, ev_timer *w, int revents);

/* The pin is let go only once the application's checkpoints have copied
 * all but a little of the WAL (at most checkpoint-pages frames): copying
 * a large WAL takes them tens of milliseconds, a window without a pin in
 * which the application's writer may append and restart faster than the
 * loop comes back to read. Pinned, they copy up to the pin meanwhile. */
static int backfill_nearly_done(struct db_context *ctx)
{
    return tailer_backfill_behind(ctx->tailer) <= ctx->cfg->checkpoint_pages;
}

/* The pin was just let go (tailer_unpin): remember the WAL followed and
 * when, for repin_due. */
static void note_unpinned(struct db_context *ctx)
{
    const struct wal_header *hdr = tailer_header(ctx->tailer);
    ctx->pin.unpinned_salt1 = hdr ? hdr->salt1 : 0;
    ctx->pin.unpinned_salt2 = hdr ? hdr->salt2 : 0;
    ctx->pin.unpinned_ms = clock_now_ms();
}

/* Unpinned: whether to pin again now - no checkpoint runs, and the WAL
 * restarted since the pin was let go or REPIN_AFTER_MS passed. *restarted
 * says which. */
static int repin_due(struct db_context *ctx, int *restarted)
{
    const struct wal_header *hdr = tailer_header(ctx->tailer);
    *restarted = !hdr || hdr->salt1 != ctx->pin.unpinned_salt1 || hdr->salt2 != ctx->pin.unpinned_salt2;
    if (!tailer_needs_pin(ctx->tailer))   /* the Turso route: unpinned unless too much waits */
        return 0;
    return !tailer_app_checkpointing(ctx->tailer) &&
           (*restarted || clock_now_ms() - ctx->pin.unpinned_ms >= REPIN_AFTER_MS);
}

/* One look while a worker writes: scan, and get out of a waiting
 * checkpoint's way without shipping. 1 (err set) when continuity is lost
 * (the caller restarts once the worker is done). */
int pin_follow_beside_worker(void *arg, struct tm_error *err)
{
    struct db_context *ctx = arg;
    struct tailer *t = ctx->tailer;
    struct tm_error ignored;
    int rc = tailer_scan(t, err);
    if (rc == TAILER_BROKEN)
        return 1;
    if (!tailer_pinned(t)) {
        if (tailer_detach(t, &ignored) != 0)
            log_event(LOG_DEBUG, ctx->cfg->name, NULL, "beside the worker: pending frames not read into memory");
        int restarted;
        if (repin_due(ctx, &restarted) && tailer_advance_pin(t, &ignored) == TAILER_OK)
            ctx->pin.moves++;
        return 0;
    }
    if (!tailer_pin_in_the_way(t))
        return 0;
    if (tailer_advance_pin(t, &ignored) == TAILER_OK && !tailer_pin_in_the_way(t)) {
        ctx->pin.moves++;
        return 0;
    }
    rc = tailer_detach(t, err);
    if (rc == TAILER_BROKEN)
        return 1;
    if (rc != 0 || tailer_unpin(t) != TAILER_OK)
        return 0;
    note_unpinned(ctx);
    ctx->pin.yields++;
    ctx->pin.last_yield_ms = clock_now_ms();
    /* unpinned, the WAL is read every millisecond once the loop is back */
    ctx->pin.yield_timer.repeat = YIELD_FAST_POLL_S;
    ev_timer_again(ctx->owner->loop, &ctx->pin.yield_timer);
    return 0;
}


void pin_before_shipping(struct db_context *ctx)
{
    struct tailer *t = ctx->tailer;
    if (!t || tailer_pinned(t) || !tailer_needs_pin(t) || tailer_app_checkpoint_waits(t))
        return;
    struct tm_error err;
    int rc = tailer_advance_pin(t, &err);
    if (rc == TAILER_OK)
        ctx->pin.moves++;
    log_event(LOG_DEBUG, ctx->cfg->name, NULL, "pinned again before shipping after %lld ms: %d (the guard has held "
              "%llu restarted WAL(s) so far)", (long long)(clock_now_ms() - ctx->pin.unpinned_ms), rc,
              (unsigned long long)tailer_guard_holds(t));
}

/* The pin was just let go on purpose: remember where (note_unpinned),
 * read the WAL every millisecond while unpinned, and count the next
 * checkpoint-pages from what is shipped now. */
static void after_letting_go(struct db_context *ctx)
{
    note_unpinned(ctx);
    ctx->pin.yield_timer.repeat = YIELD_FAST_POLL_S;
    ev_timer_again(ctx->owner->loop, &ctx->pin.yield_timer);
    ctx->pin.checkpoint_floor = tailer_shipped(ctx->tailer).frame;
}

/* Moves the pin to the WAL's end (tailer_pin.c), shipping first what the
 * move needs shipped. TAILER_OK, TAILER_LATER, 1 (continuity lost) or -1. */
static int move_pin(struct db_context *ctx, struct tm_error *err)
{
    int rc = database_ship_all(ctx, err);
    if (rc != 0)
        return rc == 1 ? TAILER_BROKEN : -1;
    if (!tailer_pinned(ctx->tailer) && tailer_app_checkpointing(ctx->tailer))
        return TAILER_LATER;   /* let go beside the shipping for the application's checkpoint: not back in its way */
    rc = tailer_advance_pin(ctx->tailer, err);
    if (rc == TAILER_OK) {
        ctx->pin.moves++;
        ctx->pin.checkpoint_floor = tailer_shipped(ctx->tailer).frame;
    }
    return rc;
}

/* Ends the pin (tailer_unpin), so that the application's checkpoint or
 * next writer can restart the WAL, with what is committed shipped or
 * read into memory; when the pin cannot end now, moves it to the end
 * instead. The yield timer pins
 * again once no checkpoint runs (REPIN_AFTER_S later at the earliest). */
static int let_go_of_pin(struct db_context *ctx, int quickly, struct tm_error *err)
{
    /* quickly (a checkpoint waits): what is pending is read into memory
     * and shipped at the next tick; otherwise shipped first */
    int rc = tailer_scan(ctx->tailer, err);
    if (rc != TAILER_OK)
        return rc == TAILER_BROKEN ? TAILER_BROKEN : -1;
    int unpinned = quickly && tailer_detach(ctx->tailer, err) == 0 && tailer_unpin(ctx->tailer) == TAILER_OK;
    if (!unpinned) {
        rc = database_ship_all(ctx, err);
        if (rc != 0)
            return rc == 1 ? TAILER_BROKEN : -1;
        if (tailer_unpin(ctx->tailer) != TAILER_OK)
            return move_pin(ctx, err);
    }
    after_letting_go(ctx);
    return TAILER_OK;
}

/* The second step of letting go (pin_keep_moving moved the pin to let
 * go later): the application's checkpoints have copied up to the pin, so
 * what came since the move is read into memory and the pin let go. Only
 * from memory: shipping now would take the loop away while the copy
 * falls behind again; if it cannot, the pin stays (and moves at a later
 * tick). */
static int let_go_once_copied(struct db_context *ctx, struct tm_error *err)
{
    int rc = tailer_scan(ctx->tailer, err);
    if (rc != TAILER_OK)
        return rc == TAILER_BROKEN ? TAILER_BROKEN : -1;
    log_event(LOG_DEBUG, ctx->cfg->name, NULL, "letting go %lld ms after the move",
              (long long)(clock_now_ms() - ctx->pin.let_go_wanted_ms));
    ctx->pin.let_go_wanted_ms = 0;
    if (tailer_detach(ctx->tailer, err) != 0 || tailer_unpin(ctx->tailer) != TAILER_OK)
        return TAILER_OK;
    after_letting_go(ctx);
    return TAILER_OK;
}

/* Moves the pin to the WAL's end and ships exactly the commits up to
 * it, so that a snapshot of the pin's state belongs at the shipper's
 * next index. TAILER_OK, TAILER_LATER (try again), TAILER_BROKEN, -1. */
int pin_ship_up_to(struct db_context *ctx, struct tm_error *err)
{
    int rc = move_pin(ctx, err);
    if (rc != TAILER_OK)
        return rc;
    int status = tailer_scan(ctx->tailer, err);
    if (status != TAILER_OK)
        return status < 0 ? -1 : TAILER_BROKEN;
    int exact;
    size_t count = tailer_pending_through_pin(ctx->tailer, &exact);
    if (!exact) {
        tm_error_set(err, "the pin of '%s' is not at a commit the sidecar has read yet", ctx->cfg->path);
        return TAILER_LATER;
    }
    status = shipper_ship_first(&ctx->shipper, ctx->tailer, count, err);
    if (status == SHIPPER_RESCAN)
        return TAILER_LATER;   /* scanned again at the next attempt */
    if (status != SHIPPER_OK)
        return status < 0 ? -1 : TAILER_BROKEN;
    return tailer_pin_at_shipped(ctx->tailer) ? TAILER_OK : TAILER_LATER;
}

/* The yield timer runs while the pin may be in the way of an
 * application's checkpoint: always, except when the pin is where the
 * WAL can restart (slot 0, the WAL wholly copied into the database: no
 * checkpoint waits for it) and nothing was written since. */
void pin_update_yield_timer(struct db_context *ctx)
{
    int needed = ctx->tailer && !ctx->need_generation && !tailer_restartable(ctx->tailer);
    /* the Turso route, unpinned: polled while the application writes (its
     * WAL's inotify events restart the timer: database_scan_soon) */
    if (needed && tailer_is_turso(ctx->tailer) && !tailer_pinned(ctx->tailer) &&
        clock_now_ms() - ctx->pin.wal_event_ms > TURSO_POLL_AFTER_WRITE_MS)
        needed = 0;
    if (needed && !ev_is_active(&ctx->pin.yield_timer))
        ev_timer_again(ctx->owner->loop, &ctx->pin.yield_timer);
    else if (!needed && ev_is_active(&ctx->pin.yield_timer))
        ev_timer_stop(ctx->owner->loop, &ctx->pin.yield_timer);
}

/* The pin (tailer_pin.c) on each tick. While the application writes, the
 * pin is let go (or, when the sidecar is behind or the application runs
 * its own RESTART/TRUNCATE checkpoints, moved to the WAL's end) once
 * checkpoint-pages frames are shipped past it, so that the application's
 * own checkpoints copy the WAL into the database and its writer restarts
 * it. Once a tick and a second passed without a commit, the
 * sidecar checkpoints (PASSIVE) and puts the pin where the application's
 * next writer restarts the WAL - unless another process holds the
 * checkpoint or write lock right then (its own checkpoint or
 * transaction: a PASSIVE checkpoint of ours meanwhile would make its
 * checkpoint return busy). */
void pin_keep_moving(struct db_context *ctx, int quiet)
{
    struct tm_error err;
    int rc = TAILER_OK;
    uint32_t shipped_frame = tailer_shipped(ctx->tailer).frame;
    if (shipped_frame < ctx->pin.checkpoint_floor)
        ctx->pin.checkpoint_floor = 0;   /* the WAL restarted */
    const struct wal_header *hdr = tailer_header(ctx->tailer);
    uint32_t salt1 = hdr ? hdr->salt1 : 0;
    if (quiet) {
        /* once per place: a checkpoint another reader keeps from
         * finishing is not tried again until more is shipped */
        int restartable = 0;
        if (tailer_restartable(ctx->tailer) || tailer_app_busy(ctx->tailer) ||
            clock_now_ms() - ctx->last_active_ms < QUIET_CHECKPOINT_MS ||
            (ctx->pin.quiet_checkpoint_frame == shipped_frame && ctx->pin.quiet_checkpoint_salt1 == salt1))
            return pin_update_yield_timer(ctx);
        ctx->pin.quiet_checkpoint_frame = shipped_frame;
        ctx->pin.quiet_checkpoint_salt1 = salt1;
        rc = tailer_checkpoint(ctx->tailer, &restartable, &err);
        if (rc == 0 && restartable)
            ctx->checkpoints++;
    } else if (shipped_frame >= ctx->pin.checkpoint_floor + ctx->cfg->checkpoint_pages && tailer_pinned(ctx->tailer)) {
        /* As large as the application lets its WAL grow: let it restart.
         * Only while the sidecar keeps up (this tick shipped at most a few
         * checkpoint-pages): the loop must come back within milliseconds
         * to read the old WAL's tail; behind, the pin moves instead. */
        int keeping_up =
            shipped_frame - ctx->pin.checkpoint_floor <= KEEPING_UP_CHECKPOINTS * ctx->cfg->checkpoint_pages;
        /* an application that runs its own RESTART/TRUNCATE checkpoints
         * restarts the WAL through them (the pin gives way, held safe by
         * its WRITE lock): no window without a pin is opened for it */
        int checkpoints_itself = ctx->pin.last_yield_ms && clock_now_ms() - ctx->pin.last_yield_ms < OWN_CHECKPOINTS_MS;
        if (keeping_up && !checkpoints_itself && backfill_nearly_done(ctx)) {
            rc = let_go_of_pin(ctx, 0, &err);
        } else {
            rc = move_pin(ctx, &err);
            if (rc == TAILER_OK && keeping_up && !checkpoints_itself)
                ctx->pin.let_go_wanted_ms = clock_now_ms();   /* on_yield_poll lets go once copied */
        }
    }
    database_kick_uploaders(ctx);
    if (rc == TAILER_BROKEN)
        database_restart(ctx, err.msg);
    else if (rc < 0)
        database_report(ctx, "cannot move the pin (kept where it was)", &err);
    pin_update_yield_timer(ctx);
}

/* The yield timer while unpinned: read every millisecond (a restart's
 * old frames are read before the new WAL overwrites them; only that tail
 * is shipped here, pinned first) and pin again as soon as the WAL
 * restarted, or after REPIN_AFTER_MS, once no checkpoint runs. */
static int follow_unpinned(struct db_context *ctx, struct tm_error *err)
{
    int rc = tailer_scan(ctx->tailer, err);
    if (rc == TAILER_OK && !tailer_switching(ctx->tailer) && tailer_detach(ctx->tailer, err) != 0)
        log_event(LOG_DEBUG, ctx->cfg->name, NULL, "unpinned: pending frames not read into memory");
    if (rc == TAILER_OK && tailer_read_ahead(ctx->tailer, err) != 0)
        rc = -1;
    if (rc == TAILER_OK && tailer_switching(ctx->tailer))
        rc = database_ship_all(ctx, err);   /* pinned first: the new WAL is kept meanwhile */
    if (rc == TAILER_OK && tailer_switching(ctx->tailer))
        rc = tailer_scan(ctx->tailer, err);   /* follow the new WAL */
    int restarted;
    if (rc == TAILER_OK && !tailer_pinned(ctx->tailer) && repin_due(ctx, &restarted)) {
        int pinned = tailer_advance_pin(ctx->tailer, err);
        if (pinned == TAILER_LATER && database_ship_all(ctx, err) == 0)   /* slot 0 needs all shipped */
            pinned = tailer_advance_pin(ctx->tailer, err);
        log_event(LOG_DEBUG, ctx->cfg->name, NULL, "pin again after %lld ms (%s): %d (the guard has held %llu "
                  "restarted WAL(s) so far)", (long long)(clock_now_ms() - ctx->pin.unpinned_ms),
                  restarted ? "restarted" : "timeout", pinned, (unsigned long long)tailer_guard_holds(ctx->tailer));
        ctx->pin.moves += pinned == TAILER_OK;
    }
    return rc == TAILER_OK || rc == TAILER_LATER ? TAILER_OK : rc;
}

/* A FULL checkpoint waits only for a read mark below the WAL's end:
 * moving the pin to the end lets it through, without reading what is
 * pending into memory (tens of milliseconds for a large WAL, which the
 * application would wait for). A RESTART or TRUNCATE checkpoint still
 * finds the pin in its way once it has copied the WAL, and the pin is
 * let go at the next poll. */
static int moved_out_of_the_way(struct db_context *ctx)
{
    struct tm_error ignored;
    if (tailer_advance_pin(ctx->tailer, &ignored) != TAILER_OK)
        return 0;
    ctx->pin.moves++;
    return !tailer_pin_in_the_way(ctx->tailer);
}

/* An application's FULL, RESTART or TRUNCATE checkpoint waits (its busy
 * handler) for the readers it needs gone; when the pin may be one of
 * them, ship what is committed and move the pin out of its way (tailer_pin.c,
 * "Getting out of the application's way"). Polled every YIELD_POLL_S:
 * two fcntl calls when no checkpoint waits. */
static void on_yield_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct db_context *ctx = w->data;
    if (!ctx->tailer || ctx->need_generation)
        return;
    struct tm_error err;
    int rc = TAILER_OK;
    if (ctx->pin.let_go_wanted_ms && (!tailer_pinned(ctx->tailer) ||
                                      clock_now_ms() - ctx->pin.let_go_wanted_ms > LET_GO_WAIT_MS))
        ctx->pin.let_go_wanted_ms = 0;
    if (!tailer_pinned(ctx->tailer)) {
        rc = follow_unpinned(ctx, &err);
    } else if (tailer_is_turso(ctx->tailer) &&
               (rc = tailer_scan(ctx->tailer, &err)) != TAILER_OK) {
        /* the Turso route, pinned (a new generation, a snapshot): the WAL
         * is read at each poll all the same, so that commits are stamped
         * when they happen and the commit count is known to let go */
    } else if (ctx->pin.let_go_wanted_ms && backfill_nearly_done(ctx)) {
        rc = let_go_once_copied(ctx, &err);
    } else if (tailer_pin_in_the_way(ctx->tailer) && !moved_out_of_the_way(ctx)) {
        rc = let_go_of_pin(ctx, 1, &err);
        if (rc == TAILER_OK) {
            ctx->pin.yields++;
            ctx->pin.last_yield_ms = clock_now_ms();
            log_event(LOG_DEBUG, ctx->cfg->name, NULL, "pin let go for the application's checkpoint");
        }
    }
    double period = tailer_pinned(ctx->tailer) ? YIELD_POLL_S : YIELD_FAST_POLL_S;
    if (w->repeat != period) {
        w->repeat = period;
        ev_timer_again(loop, w);
    }
    database_kick_uploaders(ctx);
    if (rc == TAILER_BROKEN)
        database_restart(ctx, err.msg);
    else if (rc < 0)
        database_report(ctx, "cannot move the pin for the application's checkpoint", &err);
    else
        pin_update_yield_timer(ctx);
}

void pin_init_yield_timer(struct db_context *ctx)
{
    ev_timer_init(&ctx->pin.yield_timer, on_yield_poll, YIELD_POLL_S, YIELD_POLL_S);
    ctx->pin.yield_timer.data = ctx;
}
