/* object.h - the envelope every archive object (snapshot, segment) is
 * stored in: payload -> BLAKE2b hash -> zstd -> XChaCha20-Poly1305
 * secretstream -> storage. Byte layout in object.c and docs/format.md.
 *
 * Every object is bound to its *identity*: the key it is published under
 * in the archive (layout.h), which names its database, kind, generation
 * and index. The writer records it (authenticated, and the symmetric
 * stream key is derived for its database); a reader names the identity it
 * expects and gets TM_ERR_CORRUPT ("belongs to another database or place")
 * for an object written for any other (object.c). Objects of envelope
 * versions 1 and 2 predate the binding: still read, and reported.
 *
 * Writers and readers stream: memory is bounded by a few 64-256 KiB
 * buffers whatever the object size. The payload's BLAKE2b-256 is
 * appended as a 32-byte trailer by the writer and checked by the reader,
 * and is what segments chain on. */
#ifndef TM_OBJECT_H
#define TM_OBJECT_H

#include <stddef.h>
#include <stdint.h>

#include "crypto.h"
#include "error.h"
#include "storage/storage.h"

#define OBJECT_HASH_BYTES 32
#define OBJECT_IDENTITY_MAX 1024       /* bytes of an identity, at most */

enum object_kind {
    OBJECT_SNAPSHOT = 'B',
    OBJECT_SEGMENT = 'G',
    OBJECT_DELTA = 'D',
    OBJECT_HEAD = 'H',       /* a generation's head (archive.h), the one key rewritten */
};

struct object_writer;
struct object_reader;

/* Writes object `name` of st (a temporary name in the spool, or the key
 * itself) for `identity`, the key it is published under in the archive
 * (1 to OBJECT_IDENTITY_MAX bytes). key may be NULL only for archives
 * configured with `encryption: none`. */
int object_writer_open(struct storage *st, const char *name, const char *identity, enum object_kind kind,
                       const struct crypto_keyring *key, struct object_writer **out,
                       struct tm_error *err);
int object_write(struct object_writer *w, const void *data, size_t len, struct tm_error *err);
/* Appends the hash trailer, flushes and publishes the object atomically.
 * hash_out (may be NULL) receives the payload hash, stored_out (may be
 * NULL) the bytes stored. Frees w always. */
int object_writer_commit(struct object_writer *w, uint8_t hash_out[OBJECT_HASH_BYTES],
                         uint64_t *stored_out, struct tm_error *err);
void object_writer_abort(struct object_writer *w);

/* Opens object `name` of st and checks the envelope header: magic,
 * version, that it was written for `identity` (the key it is read under,
 * or for a local copy the key it was fetched from; TM_ERR_CORRUPT naming
 * the object if not), kind, and that it is encrypted with `key` ("wrong
 * key" is reported here, before any decryption) or unencrypted when key
 * is NULL. */
int object_reader_open(struct storage *st, const char *name, const char *identity, enum object_kind kind,
                       const struct crypto_keyring *key, struct object_reader **out,
                       struct tm_error *err);
/* 1 when the object's envelope (version 1 or 2) predates the identity
 * binding: nothing in it says which database or place it was written for. */
int object_reader_predates_binding(const struct object_reader *r);
/* Reads exactly len payload bytes; running out early is an error. */
int object_read(struct object_reader *r, void *buf, size_t len, struct tm_error *err);
/* Like object_read, without a copy when it can: *data points at the len
 * payload bytes, inside the reader's own buffer when they lie there whole
 * (valid until the reader's next call), else copied into scratch (len
 * bytes). A snapshot's pages are read this way: a copy of the database
 * less per restore. */
int object_read_view(struct object_reader *r, uint8_t *scratch, size_t len, const uint8_t **data,
                     struct tm_error *err);
/* After the last payload byte: checks the hash trailer and that nothing
 * follows. hash_out (may be NULL) receives the payload hash. */
int object_reader_finish(struct object_reader *r, uint8_t hash_out[OBJECT_HASH_BYTES],
                         struct tm_error *err);
void object_reader_close(struct object_reader *r);

#endif
