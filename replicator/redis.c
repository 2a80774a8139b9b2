/* redis.c - the Redis capture: replication connections (redis.h).
 *
 * A LINK is one connection to the master, a state machine driven by the
 * libev loop (nothing blocks but the name lookup):
 *
 *   CONNECTING   non-blocking connect; when writable: [AUTH [user]
 *                password], REPLCONF listening-port 0, REPLCONF capa eof
 *                capa psync2.
 *   HANDSHAKE    one reply per command, in order; then PSYNC, alone
 *                (Redis refuses it while earlier replies are unsent):
 *                PSYNC <replid> <offset+1> to continue the archive, or
 *                PSYNC ? -1 for a full resynchronisation. An error reply
 *                names what was refused (password, ACL, replication).
 *   PSYNC_REPLY  "\n" keep-alives (a diskless master waits before it
 *                forks), then +CONTINUE (the stream goes on: same
 *                generation) or +FULLRESYNC <replid> <offset>.
 *   RDB_START    keep-alives, then "$<length>" or "$EOF:<40-byte mark>".
 *   RDB          the RDB, passed through to the spool in chunks (constant
 *                memory) as a new generation's base snapshot, its CRC64
 *                checked (common/rdb.c). Then REPLCONF ACK, which a
 *                diskless master waits for before it streams.
 *   STREAM       RESP commands (resp.c). Each counts toward the
 *                replication offset; PING and REPLCONF are the master's
 *                own and not recorded (GETACK is answered); the rest are
 *                units stamped with their arrival time, a MULTI ... EXEC
 *                block as one unit stamped at its EXEC, so a restore
 *                point never splits a transaction. REPLCONF ACK every
 *                second.
 *
 * Units wait in memory until the sync tick (or 16 MiB) makes them a
 * segment; the archive's end (spool position) records the replication id
 * and the offset after the last unit published, where a restarted
 * sidecar continues. An open MULTI block is never published: after a
 * reconnect the master sends it again.
 *
 * SCHEDULED SNAPSHOTS without a gap: a second link (`next`) asks for a
 * full resynchronisation while the main link keeps streaming into the
 * current generation. The new RDB is stored (not yet published) and the
 * next link streams on from its offset O, buffering its units. Once the
 * main link has passed O (it is live, so it normally has), its last
 * units are published, it closes, the new snapshot is published, and the
 * next link becomes the main one: the old generation reaches past the
 * new snapshot's point, so every second stays restorable.
 *
 * UNITS are cut from the stream by redis_units.c, which keeps its place
 * in the input between reads: an open MULTI block (Redis 7 also wraps a
 * Lua script's effects in one) waits whole in the input buffer until its
 * EXEC, and is measured once however many reads it takes, so a large
 * block costs time linear in its size on the loop every database
 * shares. The archive's reader takes units of at most 1 GiB
 * (ARCHIVE_REDIS_UNIT_MAX); a unit that passes it is refused as soon as
 * it does, loudly (ALERT in the log; capture_failing while it lasts):
 * splitting a block would split its transaction, and writing it would
 * make a segment no restore can read. The generation ends with the units
 * before it, and the link reconnects asking for a full
 * resynchronisation: the new generation's RDB holds the refused unit's
 * effects, and only the points between the two generations are lost.
 *
 * SPOOL LIMIT: like a database's (database.c), the spool may hold at
 * most spool-limit bytes waiting for replicas. When it is reached (an
 * ALERT is logged once, and the spool_near_limit alert holds), the main
 * link publishes nothing more and stops reading: its commands wait in
 * the master, which holds them for its replica (TCP backpressure) until
 * its client-output-buffer-limit for replicas, then drops the link. No
 * reconnection and no scheduled snapshot is started while the spool is
 * full, so no RDB is added to it either. Each sync tick looks again;
 * once the spool is below its limit the link reads on (nothing lost), or
 * reconnects: PSYNC continues the stream when the master's backlog still
 * holds it, else a full resynchronisation starts a new generation
 * (logged). So the spool exceeds its limit by one object at most: the
 * segment, or the RDB, that was on its way when it was reached.
 *
 * Any error closes the link, logs once per distinct message, and the main
 * link retries after 1 s, doubling up to 30 s (a failed next link is
 * retried at the next schedule, or after 60 s).
 *
 * FILES: this file is the capture (what a link receives: the RDB into the
 * spool, the stream into units and segments; the switch to a scheduled
 * snapshot; the interface of redis.h); redis_link.c is the connection
 * (socket, handshake, PSYNC and its reply, disconnects and retries);
 * redis_internal.h holds the structures both share. */
#include "redis_internal.h"

#include "../common/clock.h"
#include "../common/log.h"
#include "resp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEGMENT_CUT_BYTES (16 * 1024 * 1024)
#define NEXT_BUFFER_MAX (256 * 1024 * 1024)   /* units a next link may hold before it is main */

/* ------------------------------------------------------------- segments */

static int write_units(void *ctx, struct object_writer *w, struct tm_error *err)
{
    struct redis_link *l = ctx;
    return object_write(w, l->segment.data, l->segment.len, err);
}

/* Publishes the main link's complete units as one segment. */
static int publish_segment(struct redis_link *l, struct tm_error *err)
{
    struct redis_capture *rc = l->owner;
    struct shipper *sh = rc->deps.shipper;
    if (l->unit_count == 0 || l->is_next)
        return 0;
    struct redis_segment_header h = {.unit_count = l->unit_count, .index = sh->next_index,
                                     .first_time_ms = l->first_ms, .last_time_ms = l->last_ms,
                                     .start_offset = l->segment_start_offset, .end_offset = l->unit_end_offset};
    snprintf(h.generation, sizeof h.generation, "%s", sh->generation);
    memcpy(h.prev_hash, sh->chain, sizeof h.prev_hash);
    snprintf(h.replid, sizeof h.replid, "%s", l->replid);
    uint8_t header[ARCHIVE_REDIS_HEADER_BYTES];
    redis_segment_header_encode(&h, header);
    struct shipper_segment seg = {.first_ms = l->first_ms, .last_ms = l->last_ms, .header = header,
                                  .header_len = sizeof header, .write_body = write_units, .ctx = l,
                                  .end = {.repl_offset = h.end_offset}, .commits = l->unit_count,
                                  .what = "commands"};
    snprintf(seg.end.replid, sizeof seg.end.replid, "%s", l->replid);
    if (shipper_publish_segment(sh, &seg, NULL, err) != 0)
        return -1;
    l->segment.len = 0;
    redis_buffer_trim(&l->segment);
    l->unit_count = 0;
    l->segment_start_offset = l->unit_end_offset;
    rc->deps.published(rc->deps.arg);
    return 0;
}

static int add_unit(struct redis_link *l, int64_t now_ms, const uint8_t *data, size_t len)
{
    uint8_t head[12];
    archive_put_be64(head, (uint64_t)now_ms);
    archive_put_be32(head + 8, (uint32_t)len);
    if (redis_buffer_append(&l->segment, head, sizeof head) != 0 || redis_buffer_append(&l->segment, data, len) != 0)
        return -1;
    if (l->unit_count++ == 0)
        l->first_ms = now_ms;
    l->last_ms = now_ms;
    return 0;
}

/* ------------------------------------------------------------- spool limit */

/* True when the spool holds spool-limit bytes or more (logged once per
 * incident, and when it is over). */
static int spool_full(struct redis_capture *rc)
{
    uint64_t waiting = spool_bytes(rc->deps.spool), limit = rc->deps.spool_limit;
    int full = limit && waiting >= limit;
    if (full && !rc->spool_full)
        log_event(LOG_ERROR, rc->name, NULL, "ALERT: spool full: %llu bytes wait for replicas (spool-limit %llu); "
                  "the capture stops reading from Redis (the master holds the commands until its replica output "
                  "buffer limit, then drops the connection: a new generation may start) until a replica catches up",
                  (unsigned long long)waiting, (unsigned long long)limit);
    else if (!full && rc->spool_full)
        log_event(LOG_INFO, rc->name, NULL, "spool below its limit again; the capture reads on");
    rc->spool_full = full;
    return full;
}

/* The main link stops reading while the spool is full, and reads on
 * once it is not (its commands wait in the master meanwhile). */
static void hold_or_resume(struct redis_capture *rc, int full)
{
    struct redis_link *l = rc->main;
    if (full && !l->held && l->state == STREAM) {
        ev_io_stop(rc->deps.loop, &l->read_watcher);
        l->held = 1;
    } else if (!full && l->held) {
        l->held = 0;
        if (l->fd >= 0)
            ev_io_start(rc->deps.loop, &l->read_watcher);
    }
}

/* ------------------------------------------------------------- the RDB */

/* The RDB that follows +FULLRESYNC starts a new generation. */
int redis_rdb_begin(struct redis_link *l, struct tm_error *err)
{
    struct redis_capture *rc = l->owner;
    if (spool_full(rc))
        return tm_error_setc(err, TM_ERR_TRANSIENT, "the spool is full (spool-limit): no snapshot is added to it "
                             "until a replica catches up");
    l->rdb_time_ms = clock_now_ms();
    layout_generation_id_new(l->rdb_time_ms, l->generation);
    uint8_t chain[OBJECT_HASH_BYTES];
    archive_chain_start(l->generation, chain);
    layout_snapshot_key(rc->name, l->generation, 0, l->rdb_time_ms, l->rdb_key, sizeof l->rdb_key);
    spool_incoming_name(rc->deps.spool, l->rdb_key, l->rdb_incoming, sizeof l->rdb_incoming);
    if (object_writer_open(spool_incoming(rc->deps.spool), l->rdb_incoming, l->rdb_key, OBJECT_SNAPSHOT, rc->deps.key,
                           &l->rdb_writer, err) != 0)
        return -1;
    struct redis_snapshot_header h = {.index = 0, .time_ms = l->rdb_time_ms, .offset = l->rdb_offset};
    snprintf(h.generation, sizeof h.generation, "%s", l->generation);
    memcpy(h.chain_hash, chain, sizeof h.chain_hash);
    snprintf(h.replid, sizeof h.replid, "%s", l->replid);
    uint8_t header[ARCHIVE_REDIS_HEADER_BYTES];
    redis_snapshot_header_encode(&h, header);
    rdb_check_init(&l->rdb_check);
    return object_write(l->rdb_writer, header, sizeof header, err);
}

static int rdb_data(struct redis_link *l, const uint8_t *data, size_t len, struct tm_error *err)
{
    if (len == 0)
        return 0;
    uint8_t length[4];
    archive_put_be32(length, (uint32_t)len);
    rdb_check_update(&l->rdb_check, data, len);
    if (object_write(l->rdb_writer, length, sizeof length, err) != 0)
        return -1;
    return object_write(l->rdb_writer, data, len, err);
}

/* Publishes the link's stored RDB: its generation becomes the current
 * one, and the link streams into it. */
static int rdb_publish(struct redis_link *l, struct tm_error *err)
{
    struct redis_capture *rc = l->owner;
    /* segments were published while it was written: it takes the next name */
    if (spool_adopt(rc->deps.spool, l->rdb_incoming, l->rdb_key, err) != 0)
        return -1;
    spool_incoming_name(rc->deps.spool, l->rdb_key, l->rdb_incoming, sizeof l->rdb_incoming);
    shipper_use_generation(rc->deps.shipper, l->generation);
    struct spool_position end = {.repl_offset = l->rdb_offset};
    snprintf(end.replid, sizeof end.replid, "%s", l->replid);
    if (shipper_publish_snapshot(rc->deps.shipper, l->rdb_key, &end, l->rdb_time_ms, l->rdb_stored, err) != 0)
        return -1;
    l->rdb_ready = 0;
    log_info("snapshot %s: RDB of %llu bytes (replication offset %" PRIu64 "), %llu bytes stored", l->rdb_key,
             (unsigned long long)l->rdb_check.bytes, l->rdb_offset, (unsigned long long)l->rdb_stored);
    rc->deps.published(rc->deps.arg);
    return 0;
}

/* The RDB is complete: check and store it, then stream. The main link
 * publishes it at once (after its old generation's last units); a next
 * link keeps it until it takes over (redis_try_switch). */
static int rdb_end(struct redis_link *l, struct tm_error *err)
{
    int unchecked;
    uint8_t end[4] = {0, 0, 0, 0};
    if (rdb_check_finish(&l->rdb_check, &unchecked, err) != 0 ||
        object_write(l->rdb_writer, end, sizeof end, err) != 0) {
        object_writer_abort(l->rdb_writer);
        l->rdb_writer = NULL;
        return -1;
    }
    int committed = object_writer_commit(l->rdb_writer, NULL, &l->rdb_stored, err);
    l->rdb_writer = NULL;
    if (committed != 0)
        return -1;
    if (unchecked)
        log_event(LOG_WARN, l->owner->name, NULL, "the server writes RDB files without a checksum (rdbchecksum "
                  "no): this snapshot cannot be checked when it is restored");
    /* the main link's units from before the resync end its old generation */
    if (!l->is_next && publish_segment(l, err) != 0)
        return -1;
    l->offset = l->unit_end_offset = l->segment_start_offset = l->rdb_offset;
    l->have_position = 1;
    l->want_full_sync = 0;
    l->rdb_ready = 1;
    l->state = STREAM;
    l->error[0] = '\0';
    redis_link_send_ack(l);
    if (!l->is_next) {
        if (rdb_publish(l, err) != 0)
            return -1;
        l->owner->retry_s = RETRY_MIN_S;
        l->owner->failing_since_ms = 0;
    }
    return 0;
}

/* ------------------------------------------------------------- input */

/* Passes RDB bytes through; returns 1 once the RDB is complete. */
int redis_rdb_receive(struct redis_link *l)
{
    struct tm_error err;
    size_t take = l->in.len;
    int done = 0;
    if (l->rdb_eof_form) {
        uint8_t *mark = memmem(l->in.data, l->in.len, l->rdb_mark, ARCHIVE_REPLID_BYTES);
        if (mark) {
            take = (size_t)(mark - l->in.data);
            done = 1;
        } else {
            take = l->in.len > ARCHIVE_REPLID_BYTES ? l->in.len - ARCHIVE_REPLID_BYTES : 0;   /* the mark may be split */
        }
    } else {
        if (take > l->rdb_remaining)
            take = (size_t)l->rdb_remaining;
        l->rdb_remaining -= take;
        done = l->rdb_remaining == 0;
    }
    if (rdb_data(l, l->in.data, take, &err) != 0) {
        redis_link_disconnect(l, "cannot write the snapshot: %s", err.msg);
        return 0;
    }
    redis_buffer_consume(&l->in, take + (done && l->rdb_eof_form ? ARCHIVE_REPLID_BYTES : 0));
    if (!done)
        return 0;
    if (rdb_end(l, &err) != 0) {
        l->want_full_sync = 1;
        redis_link_disconnect(l, "the RDB from %s was not stored: %s", redis_link_addr(l), err.msg);
        return 0;
    }
    if (l->is_next)
        redis_try_switch(l->owner);
    return 1;
}

/* After new units: the main link cuts a segment at SEGMENT_CUT_BYTES
 * (or stops reading when the spool is full) and lets a ready next link
 * take over; a next link gives up past NEXT_BUFFER_MAX. */
static void after_units(struct redis_link *l)
{
    struct tm_error err;
    if (!l->is_next && l->segment.len >= SEGMENT_CUT_BYTES) {
        int full = spool_full(l->owner);
        hold_or_resume(l->owner, full);
        if (!full && publish_segment(l, &err) != 0)
            log_event(LOG_ERROR, l->owner->name, NULL, "cannot write to the spool: %s", err.msg);
    }
    if (l->is_next && l->segment.len >= NEXT_BUFFER_MAX)
        redis_link_disconnect(l, "the scheduled snapshot's stream buffered %d MiB while the current stream had not "
                              "yet reached its offset: given up (retried later)", NEXT_BUFFER_MAX >> 20);
    else if (!l->is_next && l->owner->next && l->owner->next->rdb_ready)
        redis_try_switch(l->owner);
}

/* A unit past the archive's reader limit: it cannot be split (a MULTI
 * block is one transaction) nor stored readably, so it is refused. The
 * units before it end the generation (published at once by the RDB that
 * follows, rdb_end); the next connection asks for a full
 * resynchronisation, whose RDB holds the refused unit's effects. */
static void refuse_unit(struct redis_link *l)
{
    log_event(LOG_ERROR, l->owner->name, NULL, "ALERT: a command or MULTI block over %u MiB at replication offset %"
              PRIu64 " is refused: the archive cannot hold a unit that large, and a transaction is never split; "
              "generation %s ends before it and a new one starts from a full resynchronisation (the points in "
              "between cannot be restored)", ARCHIVE_REDIS_UNIT_MAX >> 20, l->offset,
              l->owner->deps.shipper->generation);
    l->want_full_sync = 1;
    redis_link_disconnect(l, "a unit over %u MiB from %s was refused at offset %" PRIu64 " (a new generation will "
                          "start)", ARCHIVE_REDIS_UNIT_MAX >> 20, redis_link_addr(l), l->offset);
}

/* Records the complete units at the start of `in` (redis_units.h: the
 * cutter goes on where it stopped, and keeps an open MULTI block whole in
 * `in` until its EXEC). */
int redis_stream_receive(struct redis_link *l)
{
    int64_t now_ms = clock_now_ms();
    for (;;) {
        struct redis_unit unit;
        int kind = redis_units_next(&l->units, l->in.data, l->in.len, &unit);
        if (kind == REDIS_UNITS_MORE)
            break;
        if (kind == REDIS_UNITS_TOO_LARGE) {
            refuse_unit(l);
            return 0;
        }
        if (kind == REDIS_UNITS_MALFORMED) {
            l->want_full_sync = 1;
            redis_link_disconnect(l, "the replication stream from %s is malformed at offset %" PRIu64
                                  " (a new generation will start)", redis_link_addr(l), l->offset);
            return 0;
        }
        l->offset += unit.length;
        if (kind == REDIS_UNIT_WRITE && add_unit(l, now_ms, l->in.data + unit.start, unit.length) != 0) {
            redis_link_disconnect(l, "out of memory for the commands received");
            return 0;
        }
        l->unit_end_offset = l->offset;
        if (unit.getack)
            redis_link_send_ack(l);
    }
    redis_buffer_consume(&l->in, redis_units_release(&l->units));
    redis_buffer_trim(&l->in);
    after_units(l);
    return 0;
}

/* ------------------------------------------------------------- switch */

/* The next link's snapshot takes over once the main link has passed its
 * offset (or is gone): old generation's last units, new snapshot, and
 * the next link becomes main. */
void redis_try_switch(struct redis_capture *rc)
{
    struct redis_link *next = rc->next, *main = rc->main;
    if (!next || !next->rdb_ready)
        return;
    int main_live = main->state == STREAM && strcmp(main->replid, next->replid) == 0;
    if (main_live && main->unit_end_offset < next->rdb_offset)
        return;   /* not there yet: the main link is still live */
    struct tm_error err;
    if (publish_segment(main, &err) != 0) {
        log_event(LOG_ERROR, rc->name, NULL, "cannot write to the spool: %s", err.msg);
        return;   /* tried again with the next input or tick */
    }
    next->is_next = 0;
    if (rdb_publish(next, &err) != 0) {
        next->is_next = 1;
        log_event(LOG_ERROR, rc->name, NULL, "cannot publish the scheduled snapshot: %s", err.msg);
        return;
    }
    rc->main = next;
    rc->next = NULL;
    rc->failing_since_ms = 0;
    redis_link_free(main);
    ev_timer_stop(rc->deps.loop, &rc->retry_timer);
    rc->retry_s = RETRY_MIN_S;
    log_event(LOG_INFO, rc->name, NULL, "scheduled snapshot in place: the previous generation runs past it, "
              "and the stream continues in generation %s", rc->deps.shipper->generation);
}

/* ------------------------------------------------------------- timers */

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct redis_capture *rc = w->data;
    if (rc->main->state != IDLE || rc->stopping)
        return;
    if (spool_full(rc)) {   /* a reconnection may bring an RDB: not into a full spool */
        snprintf(rc->main->error, sizeof rc->main->error, "the spool is full (spool-limit): not reconnecting to "
                 "%s until a replica catches up", rc->deps.cfg->redis_addr);
        ev_timer_set(&rc->retry_timer, RETRY_MIN_S, 0.);
        ev_timer_start(rc->deps.loop, &rc->retry_timer);
        return;
    }
    redis_link_connect(rc->main);
}

static void on_ack_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct redis_capture *rc = w->data;
    if (rc->main->state == STREAM)
        redis_link_send_ack(rc->main);
    if (rc->next && rc->next->state == STREAM)
        redis_link_send_ack(rc->next);
}

static void on_next_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    redis_capture_snapshot(w->data);
}

/* ------------------------------------------------------------- interface */

int redis_capture_start(const struct redis_capture_deps *deps, struct redis_capture **out, struct tm_error *err)
{
    struct redis_capture *rc = calloc(1, sizeof *rc);
    if (!rc || !(rc->main = redis_link_new(rc, 0))) {
        free(rc);
        return tm_error_set(err, "out of memory");
    }
    rc->deps = *deps;
    rc->name = deps->cfg->name;
    rc->retry_s = RETRY_MIN_S;
    ev_timer_init(&rc->retry_timer, on_retry, 0., 0.);
    ev_timer_init(&rc->ack_timer, on_ack_timer, 1., 1.);
    ev_timer_init(&rc->next_retry_timer, on_next_retry, 0., 0.);
    rc->retry_timer.data = rc->ack_timer.data = rc->next_retry_timer.data = rc;
    ev_timer_start(deps->loop, &rc->ack_timer);
    /* continue where the archive ends, if it is a Redis archive */
    struct spool_position end;
    if (spool_position(deps->spool, &end) && end.replid[0]) {
        struct redis_link *l = rc->main;
        shipper_continue(deps->shipper, &end);
        snprintf(l->replid, sizeof l->replid, "%s", end.replid);
        l->offset = l->unit_end_offset = l->segment_start_offset = end.repl_offset;
        l->have_position = 1;
    }
    *out = rc;
    rc->failing_since_ms = clock_now_ms();   /* until it follows the stream */
    redis_link_connect(rc->main);
    return 0;
}

void redis_capture_sync(struct redis_capture *rc)
{
    struct tm_error err;
    int full = spool_full(rc);
    hold_or_resume(rc, full);
    if (full)
        return;   /* the units stay in memory; the link reads no more meanwhile */
    if (publish_segment(rc->main, &err) != 0)
        log_event(LOG_ERROR, rc->name, NULL, "cannot write to the spool (the commands stay in memory and are "
                  "retried): %s", err.msg);
    redis_try_switch(rc);
    if (shipper_tick(rc->deps.shipper, clock_now_ms()))   /* an idle entry's head too goes up now */
        rc->deps.published(rc->deps.arg);
}

void redis_capture_snapshot(struct redis_capture *rc)
{
    if (rc->stopping)
        return;
    if (rc->next || rc->main->state == RDB_START || rc->main->state == RDB || rc->main->state == PSYNC_REPLY)
        return;   /* one is on its way */
    if (spool_full(rc)) {
        log_event(LOG_WARN, rc->name, NULL, "scheduled snapshot skipped: the spool is full (spool-limit)");
        return;
    }
    if (rc->main->state != STREAM) {   /* not following: the reconnection asks for a full sync */
        rc->main->want_full_sync = 1;
        return;
    }
    log_event(LOG_INFO, rc->name, NULL, "scheduled snapshot: a second connection to %s asks for a full "
              "resynchronisation", rc->deps.cfg->redis_addr);
    if (!(rc->next = redis_link_new(rc, 1)))
        return;
    rc->next->want_full_sync = 1;
    redis_link_connect(rc->next);
}

void redis_capture_stop(struct redis_capture *rc)
{
    rc->stopping = 1;
    redis_link_read_pending(rc->main);   /* what the server had sent is in the last segment */
    struct tm_error err;
    if (publish_segment(rc->main, &err) != 0)
        log_event(LOG_ERROR, rc->name, NULL, "cannot write to the spool: %s", err.msg);
    redis_link_close(rc->main);
    redis_link_free(rc->next);
    rc->next = NULL;
    ev_timer_stop(rc->deps.loop, &rc->retry_timer);
    ev_timer_stop(rc->deps.loop, &rc->ack_timer);
    ev_timer_stop(rc->deps.loop, &rc->next_retry_timer);
}

void redis_capture_free(struct redis_capture *rc)
{
    if (!rc)
        return;
    rc->stopping = 1;
    redis_link_free(rc->main);
    redis_link_free(rc->next);
    ev_timer_stop(rc->deps.loop, &rc->retry_timer);
    ev_timer_stop(rc->deps.loop, &rc->ack_timer);
    ev_timer_stop(rc->deps.loop, &rc->next_retry_timer);
    free(rc);
}

int64_t redis_capture_failing_since(const struct redis_capture *rc)
{
    return rc->main->state == STREAM ? 0 : rc->failing_since_ms;
}

const char *redis_capture_error(const struct redis_capture *rc)
{
    return rc->main->error;
}
