/* spool.h - the local spool of one database: every archive object waits
 * here, on the database's disk, until each replica has it.
 *
 * The shipper writes an object into the spool's incoming storage, then
 * spool_publish() makes it visible to every replica's queue and records
 * the new end of the archive (spool_position) in one durable step. Each
 * replica's uploader takes its queue in order (spool_queue_head) and
 * drops each object once stored (spool_queue_done). Layout and crash
 * recovery are described in spool.c. */
#ifndef TM_SPOOL_H
#define TM_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "../common/archive.h"
#include "../common/error.h"
#include "../common/storage/storage.h"

/* The end of the archive: what the next object continues. */
struct spool_position {
    char generation[ARCHIVE_GEN_ID_BYTES + 1];
    uint64_t next_index;                  /* index of the next segment */
    uint8_t chain[OBJECT_HASH_BYTES];     /* prev hash of the next segment */
    struct archive_wal_position wal;      /* WAL position the last object ends at */
    uint32_t page_size;
    int64_t last_snapshot_ms;             /* time of the newest snapshot, 0 if none */
    int64_t last_commit_ms;               /* last commit of the generation's newest segment, 0 if none */
    char replid[ARCHIVE_REPLID_BYTES + 1];/* Redis: the master's replication id, "" for SQLite */
    uint64_t repl_offset;                 /* Redis: replication offset the archive ends at */
};

struct spool;

/* Opens (creating) DIR with one queue per replica name. *replica_added is
 * set when a replica has no queue yet while the spool already has an
 * archive position: that replica lacks the current generation's start.
 * Queues of replicas no longer named are deleted (*replicas_removed). */
int spool_open(const char *dir, const char *const *replica_names, size_t replica_count, int lock,
               struct spool **out, int *replica_added, size_t *replicas_removed, struct tm_error *err);
void spool_free(struct spool *sp);

/* The lock a spool holds on DIR/lock while open (`lock` above): one
 * sidecar per state directory. Without `lock`, the caller holds one on a
 * directory above (the databases of a `dir:` entry share their entry's:
 * one descriptor, not one per database). Released when fd is closed. */
int spool_take_lock(const char *dir, int *fd_out, struct tm_error *err);

const char *spool_dir(const struct spool *sp);

/* 1 with *out filled when an archive position was recorded, else 0. */
int spool_position(const struct spool *sp, struct spool_position *out);

/* Where the shipper writes the object `key` before publishing it. */
struct storage *spool_incoming(struct spool *sp);
void spool_incoming_name(const struct spool *sp, const char *key, char *out, size_t len);

/* An object written into incoming/ as `written_as` (an earlier
 * spool_incoming_name) while other objects were published: renames it to
 * the current spool_incoming_name(key), so that it can be published. */
int spool_adopt(struct spool *sp, const char *written_as, const char *key, struct tm_error *err);
/* Makes the object written at spool_incoming_name(key) part of every
 * replica's queue, and pos the new end of the archive, durably. */
int spool_publish(struct spool *sp, const char *key, const struct spool_position *pos,
                  struct tm_error *err);

/* The name of the last object published ("SEQ.FLAT"; heads left out),
 * "" if none, and
 * whether some replica still has to take that object (or an older one). */
const char *spool_last_published(const struct spool *sp);
int spool_pending(const struct spool *sp, const char *name);
/* The sequence number the next object published gets: it only grows,
 * across restarts (a head's counter, archive.h). */
uint64_t spool_sequence(const struct spool *sp);
/* The archive key of a published name. */
void spool_key_of(const char *name, char *key, size_t len);

/* Time of the first commit in the oldest segment still in replica's
 * queue, or 0 when its queue holds no segment. */
int64_t spool_queue_oldest_commit_ms(const struct spool *sp, size_t replica);

/* Bytes of objects that some replica still needs. */
uint64_t spool_bytes(const struct spool *sp);
size_t spool_queue_length(const struct spool *sp, size_t replica);

/* The oldest object replica still needs: 1 with key and local path, or 0. */
int spool_queue_head(const struct spool *sp, size_t replica, char *key, size_t key_len,
                     char *path, size_t path_len);
/* The head object is stored on that replica. */
int spool_queue_done(struct spool *sp, size_t replica, struct tm_error *err);

#endif
