/* object.c - the archive object envelope (see object.h).
 *
 * Stored bytes of every object:
 *
 *   offset size  field
 *        0    8  magic "TIDEMARK"
 *        8    1  envelope version: 3 (written), 2 and 1 (still read)
 *        9    1  kind: 'B' snapshot, 'G' segment, 'D' delta, 'H' head
 *       10    1  encryption: 0 none, 1 XChaCha20-Poly1305 secretstream under
 *                the symmetric key, 2 the same under a random data key
 *                sealed to a public key (crypto.h)
 *       11    1  compression: 1 zstd
 *       12    8  key id (crypto.h) of the key that encrypted it; zeros if none
 *       20    2  version 3 only: identity length L (big-endian, 1..1024)
 *       22    L  version 3 only: the identity, the object's key in the
 *                archive ("DB/generations/GEN/segments/LEAF", layout.h)
 *    +  80  encryption 2 only: crypto_box_seal of the 32-byte data key
 *    +  24  secretstream header (encrypted objects only)
 *
 * then the body. Unencrypted: one zstd frame (with its content checksum).
 * Encrypted: that same zstd frame cut into chunks of at most 64 KiB, each
 * stored as a 4-byte big-endian length followed by the secretstream
 * ciphertext of the chunk (length + 17 bytes); the header bytes before the
 * sealed key (20, or 22 + L in version 3) are the additional data of every
 * chunk, so they cannot be altered; the last chunk, and only it, carries
 * TAG_FINAL, so truncation is detected.
 *
 * THE IDENTITY (version 3). An object is bound to the place it was written
 * for: its key, which names the database (the first component), the kind,
 * the generation and the index (and the times) at once. A reader names
 * the identity it expects (the key it reads the object under, or for a
 * local copy, the key it was fetched from) and refuses any other with
 * TM_ERR_CORRUPT, "belongs to another database or place", before any
 * decryption. What makes that hold against someone who can write to the
 * bucket:
 *  - the identity is in the additional data of every chunk: rewritten to
 *    match the place it was copied to, the first chunk fails to
 *    authenticate (both schemes: whoever holds the secret key of a pair is
 *    sure the object was sealed for this place);
 *  - under the symmetric scheme the stream key is also derived per
 *    database (crypto.h): one database's objects do not decrypt as
 *    another's at all;
 *  - the object hash starts with the identity (below), so even without
 *    encryption an object copied to another place and relabelled by
 *    accident fails its hash; without a key nothing is authenticated.
 * Nothing renames an object legitimately: the spool writes it under a
 * temporary name for the key it is published under, every replica stores
 * it under that key, retention only deletes.
 *
 * Version 3 and 2: the body is the zstd frame of the payload (the kind's
 * own format, archive.c) followed by a 32-byte BLAKE2b-256 trailer, the
 * *object hash* (what segments chain on): in version 3 of the identity
 * section (the 2 + L bytes at offset 20) followed by the frame's bytes, in
 * version 2 of the frame's bytes alone; in encrypted objects both go
 * through the chunks, so the trailer is authenticated too. Hashing the
 * compressed bytes rather than the payload costs a tenth as much on
 * typical pages: the payload hash was most of the CPU time of both
 * shipping and restoring (bench/bench.py, docs/performance.md).
 *
 * Reading version 3 and 2: an unencrypted object's hash is computed from
 * its bytes and must equal its trailer. An encrypted object's trailer is
 * taken as its hash without computing it again: the chunks' tags have
 * already proven, under the key, every byte of the frame and the trailer
 * itself, in order and to the final chunk, so both are exactly what the
 * writer wrote, and the writer computed the trailer from those bytes.
 * Computing BLAKE2b again would prove nothing more, and it was half of
 * the CPU time of decrypting a snapshot, the longest step of a restore
 * (docs/performance.md).
 *
 * Version 1 (read only): the 32-byte BLAKE2b-256 of the payload is
 * appended to the payload itself, inside the zstd frame.
 *
 * Versions 1 and 2 carry no identity (symmetric stream key: the object key
 * itself, the same for every database); they are still read, and readers
 * can tell (object_reader_predates_binding) so verify reports them. */
#include "object.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define ENVELOPE_MAGIC "TIDEMARK"
#define ENVELOPE_VERSION 3
#define ENVELOPE_VERSION_FRAME_HASH 2     /* no identity */
#define ENVELOPE_VERSION_PAYLOAD_HASH 1   /* hash inside the frame, of the payload */
#define ENVELOPE_FIXED_BYTES 20
#define IDENTITY_LENGTH_BYTES 2
#define ENVELOPE_BOUND_MAX (ENVELOPE_FIXED_BYTES + IDENTITY_LENGTH_BYTES + OBJECT_IDENTITY_MAX)
#define ENC_NONE 0
#define COMPRESSION_ZSTD 1
#define CHUNK_PLAIN_MAX (64 * 1024)
#define CHUNK_CIPHER_MAX (CHUNK_PLAIN_MAX + crypto_secretstream_xchacha20poly1305_ABYTES)
#define ZSTD_LEVEL 1
/* Readers refuse windows of more than 2^22 bytes (4 MiB), so a crafted
 * object cannot make restore allocate the 128 MiB zstd allows by default.
 * Writers use that whole window with long-distance matching: a segment
 * holds every version of the pages its transactions changed, and a page
 * rewritten a few hundred pages later (an index page, at every commit)
 * differs from its last version by a row. Level 1's own window (2^19)
 * did not reach back that far; LDM's does. On 352 MB of the bench's
 * segments (`zstd` 1.5.4 CLI, the same settings): 38.0 MB stored instead
 * of 89.6, compressed in 0.74 s instead of 0.87, decompressed in 0.18 s
 * instead of 0.32. Only segments: snapshots and deltas hold each page
 * once (a 1 GiB snapshot came out at 83.8 MB with it against 84.1
 * without), and on data without long matches LDM costs 40-75 % more CPU
 * (the `zstd` CLI on a flood's WAL) - the longer a snapshot's write, the
 * longer an application's RESTART/TRUNCATE issued meanwhile can wait
 * (docs/design.md, "Known costs and limits"). Frames written before
 * (window 2^19) and after read alike. */
#define ZSTD_WINDOW_LOG_MAX 22

struct object_writer {
    struct storage_writer *sink;
    const struct crypto_keyring *keys;
    char name[512];
    uint8_t header[ENVELOPE_BOUND_MAX];   /* fixed bytes and identity: the additional data */
    size_t header_len;
    crypto_secretstream_xchacha20poly1305_state stream;
    crypto_generichash_state hash;
    ZSTD_CCtx *zstd;
    uint8_t *zstd_out;         /* ZSTD_CStreamOutSize() bytes */
    size_t zstd_out_size;
    uint8_t *chunk;            /* compressed bytes waiting to be encrypted */
    size_t chunk_used;
    uint8_t *cipher;           /* 4-byte length + ciphertext */
    uint64_t stored_bytes;
};

/* The length of the identity's first component: the database's. */
static size_t identity_database_len(const char *identity)
{
    return strcspn(identity, "/");
}

/* Writes the fixed header and the identity section; returns its length. */
static size_t build_header(uint8_t header[ENVELOPE_BOUND_MAX], enum object_kind kind,
                           const struct crypto_object_key *key, const char *identity, size_t identity_len)
{
    memcpy(header, ENVELOPE_MAGIC, 8);
    header[8] = ENVELOPE_VERSION;
    header[9] = (uint8_t)kind;
    header[10] = key ? key->scheme : ENC_NONE;
    header[11] = COMPRESSION_ZSTD;
    if (key)
        memcpy(header + 12, key->key_id, CRYPTO_KEY_ID_BYTES);
    else
        memset(header + 12, 0, CRYPTO_KEY_ID_BYTES);
    header[ENVELOPE_FIXED_BYTES] = (uint8_t)(identity_len >> 8);
    header[ENVELOPE_FIXED_BYTES + 1] = (uint8_t)identity_len;
    memcpy(header + ENVELOPE_FIXED_BYTES + IDENTITY_LENGTH_BYTES, identity, identity_len);
    return ENVELOPE_FIXED_BYTES + IDENTITY_LENGTH_BYTES + identity_len;
}

static int sink_write(struct object_writer *w, const void *data, size_t len, struct tm_error *err)
{
    w->stored_bytes += len;
    return storage_write(w->sink, data, len, err);
}

/* Encrypts and writes the pending chunk; `final` tags it as the last. */
static int flush_chunk(struct object_writer *w, int final, struct tm_error *err)
{
    unsigned long long cipher_len = 0;
    uint8_t tag = final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                        : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
    crypto_secretstream_xchacha20poly1305_push(&w->stream, w->cipher + 4, &cipher_len, w->chunk,
                                               w->chunk_used, w->header, w->header_len, tag);
    w->cipher[0] = (uint8_t)(cipher_len >> 24);
    w->cipher[1] = (uint8_t)(cipher_len >> 16);
    w->cipher[2] = (uint8_t)(cipher_len >> 8);
    w->cipher[3] = (uint8_t)cipher_len;
    w->chunk_used = 0;
    return sink_write(w, w->cipher, (size_t)cipher_len + 4, err);
}

/* Bytes of the body go to the sink directly, or through chunk encryption. */
static int emit_body(struct object_writer *w, const uint8_t *data, size_t len, struct tm_error *err)
{
    if (!w->keys)
        return sink_write(w, data, len, err);
    while (len > 0) {
        size_t room = CHUNK_PLAIN_MAX - w->chunk_used;
        size_t take = len < room ? len : room;
        memcpy(w->chunk + w->chunk_used, data, take);
        w->chunk_used += take;
        data += take;
        len -= take;
        if (w->chunk_used == CHUNK_PLAIN_MAX && len > 0 && flush_chunk(w, 0, err) != 0)
            return -1;
    }
    return 0;
}

/* The zstd frame's bytes: hashed (the object hash), then emitted. */
static int emit_compressed(struct object_writer *w, const uint8_t *data, size_t len,
                           struct tm_error *err)
{
    crypto_generichash_update(&w->hash, data, len);
    return emit_body(w, data, len, err);
}

static int compress_feed(struct object_writer *w, const void *data, size_t len,
                         ZSTD_EndDirective mode, struct tm_error *err)
{
    ZSTD_inBuffer in = {data, len, 0};
    size_t remaining;
    do {
        ZSTD_outBuffer out = {w->zstd_out, w->zstd_out_size, 0};
        remaining = ZSTD_compressStream2(w->zstd, &out, &in, mode);
        if (ZSTD_isError(remaining))
            return tm_error_set(err, "zstd compression failed: %s", ZSTD_getErrorName(remaining));
        if (out.pos && emit_compressed(w, w->zstd_out, out.pos, err) != 0)
            return -1;
    } while (mode == ZSTD_e_end ? remaining != 0 : in.pos < in.size);
    return 0;
}

static void writer_free(struct object_writer *w)
{
    ZSTD_freeCCtx(w->zstd);
    free(w->zstd_out);
    free(w->chunk);
    free(w->cipher);
    sodium_memzero(&w->stream, sizeof w->stream);
    free(w);
}

int object_writer_open(struct storage *st, const char *name, const char *identity, enum object_kind kind,
                       const struct crypto_keyring *keys, struct object_writer **out,
                       struct tm_error *err)
{
    size_t identity_len = strlen(identity);
    if (identity_len == 0 || identity_len > OBJECT_IDENTITY_MAX)
        return tm_error_set(err, "internal: object identity '%.80s' of %zu bytes (1 to %d)", identity,
                            identity_len, OBJECT_IDENTITY_MAX);
    struct object_writer *w = calloc(1, sizeof *w);
    if (!w)
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    w->keys = keys;
    snprintf(w->name, sizeof w->name, "%s", name);
    w->zstd = ZSTD_createCCtx();
    w->zstd_out_size = ZSTD_CStreamOutSize();
    w->zstd_out = malloc(w->zstd_out_size);
    w->chunk = malloc(CHUNK_PLAIN_MAX);
    w->cipher = malloc(CHUNK_CIPHER_MAX + 4);
    if (!w->zstd || !w->zstd_out || !w->chunk || !w->cipher) {
        writer_free(w);
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    }
    ZSTD_CCtx_setParameter(w->zstd, ZSTD_c_compressionLevel, ZSTD_LEVEL);
    ZSTD_CCtx_setParameter(w->zstd, ZSTD_c_checksumFlag, 1);
    if (kind == OBJECT_SEGMENT) {
        ZSTD_CCtx_setParameter(w->zstd, ZSTD_c_windowLog, ZSTD_WINDOW_LOG_MAX);
        ZSTD_CCtx_setParameter(w->zstd, ZSTD_c_enableLongDistanceMatching, 1);
    }
    struct crypto_object_key object_key = {0};
    uint8_t stream_header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    if (keys) {
        if (crypto_object_key_new(keys, identity, identity_database_len(identity), &object_key, err) != 0) {
            writer_free(w);
            return -1;
        }
        crypto_secretstream_xchacha20poly1305_init_push(&w->stream, stream_header, object_key.stream_key);
    }
    w->header_len = build_header(w->header, kind, keys ? &object_key : NULL, identity, identity_len);
    crypto_object_key_wipe(&object_key);
    /* the object hash starts with the identity section */
    crypto_generichash_init(&w->hash, NULL, 0, OBJECT_HASH_BYTES);
    crypto_generichash_update(&w->hash, w->header + ENVELOPE_FIXED_BYTES, w->header_len - ENVELOPE_FIXED_BYTES);
    if (storage_write_begin(st, name, &w->sink, err) != 0) {
        writer_free(w);
        return -1;
    }
    if (sink_write(w, w->header, w->header_len, err) != 0 ||
        (object_key.scheme == CRYPTO_SCHEME_SEALED &&
         sink_write(w, object_key.sealed, sizeof object_key.sealed, err) != 0) ||
        (keys && sink_write(w, stream_header, sizeof stream_header, err) != 0)) {
        object_writer_abort(w);
        return -1;
    }
    *out = w;
    return 0;
}

int object_write(struct object_writer *w, const void *data, size_t len, struct tm_error *err)
{
    return compress_feed(w, data, len, ZSTD_e_continue, err);
}


int object_writer_commit(struct object_writer *w, uint8_t hash_out[OBJECT_HASH_BYTES],
                         uint64_t *stored_out, struct tm_error *err)
{
    uint8_t hash[OBJECT_HASH_BYTES];
    if (compress_feed(w, NULL, 0, ZSTD_e_end, err) != 0) {
        tm_error_prefix(err, "writing '%s': ", w->name);
        object_writer_abort(w);
        return -1;
    }
    crypto_generichash_final(&w->hash, hash, sizeof hash);
    if (emit_body(w, hash, sizeof hash, err) != 0 || (w->keys && flush_chunk(w, 1, err) != 0)) {
        tm_error_prefix(err, "writing '%s': ", w->name);
        object_writer_abort(w);
        return -1;
    }
    int rc = storage_write_commit(w->sink, err);
    w->sink = NULL;
    if (stored_out)
        *stored_out = w->stored_bytes;
    writer_free(w);
    if (rc == 0 && hash_out)
        memcpy(hash_out, hash, sizeof hash);
    return rc;
}

void object_writer_abort(struct object_writer *w)
{
    if (!w)
        return;
    storage_write_abort(w->sink);
    writer_free(w);
}

/* ---------------------------------------------------------------- reading */

struct object_reader {
    struct storage_reader *source;
    const struct crypto_keyring *keys;
    char name[512];
    uint8_t header[ENVELOPE_BOUND_MAX];   /* as stored: the additional data */
    size_t header_len;
    int encrypted;
    int version;             /* envelope version: where the hash is, whether bound */
    crypto_secretstream_xchacha20poly1305_state stream;
    int final_seen;
    int source_eof;
    crypto_generichash_state hash;
    ZSTD_DCtx *zstd;
    uint8_t *in;             /* compressed bytes (decrypted chunk or raw read) */
    size_t in_size, in_used, in_pos;
    uint8_t *cipher;
    uint8_t *out;            /* decompressed bytes not yet handed out */
    size_t out_size, out_used, out_pos;
    size_t zstd_hint;        /* 0 once the zstd frame is complete */
};

/* Reads exactly len bytes from storage; *short_read set if it ended early. */
static int source_read_exact(struct object_reader *r, void *buf, size_t len, int *short_read,
                             struct tm_error *err)
{
    size_t done = 0, got;
    *short_read = 0;
    while (done < len) {
        if (storage_read(r->source, (uint8_t *)buf + done, len - done, &got, err) != 0)
            return -1;
        if (got == 0) {
            *short_read = 1;
            return 0;
        }
        done += got;
    }
    return 0;
}

static int corrupt(struct object_reader *r, struct tm_error *err, const char *what)
{
    return tm_error_setc(err, TM_ERR_CORRUPT, "object '%s' is corrupt: %s", r->name, what);
}

/* Refills r->in with the next compressed bytes; leaves in_used 0 at end. */
static int refill_input(struct object_reader *r, struct tm_error *err)
{
    r->in_pos = r->in_used = 0;
    if (!r->encrypted) {
        if (r->source_eof)
            return 0;
        size_t got;
        if (storage_read(r->source, r->in, r->in_size, &got, err) != 0)
            return -1;
        if (got == 0)
            r->source_eof = 1;
        r->in_used = got;
        return 0;
    }
    if (r->final_seen)
        return 0;
    uint8_t length_bytes[4];
    int short_read;
    if (source_read_exact(r, length_bytes, 4, &short_read, err) != 0)
        return -1;
    if (short_read)
        return corrupt(r, err, "truncated (the final encrypted chunk is missing)");
    size_t cipher_len = ((size_t)length_bytes[0] << 24) | ((size_t)length_bytes[1] << 16) |
                        ((size_t)length_bytes[2] << 8) | length_bytes[3];
    if (cipher_len < crypto_secretstream_xchacha20poly1305_ABYTES || cipher_len > CHUNK_CIPHER_MAX)
        return corrupt(r, err, "invalid chunk length");
    if (source_read_exact(r, r->cipher, cipher_len, &short_read, err) != 0)
        return -1;
    if (short_read)
        return corrupt(r, err, "truncated inside an encrypted chunk");
    unsigned long long plain_len = 0;
    uint8_t tag = 0;
    if (crypto_secretstream_xchacha20poly1305_pull(&r->stream, r->in, &plain_len, &tag, r->cipher,
                                                   cipher_len, r->header, r->header_len) != 0)
        return corrupt(r, err, "authentication failed (altered or damaged bytes)");
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL)
        r->final_seen = 1;
    r->in_used = (size_t)plain_len;
    return 0;
}

/* Produces more decompressed bytes into r->out. *ended set at payload end. */
static int fill_output(struct object_reader *r, int *ended, struct tm_error *err)
{
    r->out_pos = r->out_used = 0;
    *ended = 0;
    while (r->out_used == 0) {
        if (r->zstd_hint == 0) {
            *ended = 1;
            return 0;
        }
        if (r->in_pos == r->in_used) {
            if (refill_input(r, err) != 0)
                return -1;
            if (r->in_used == 0)
                return corrupt(r, err, "truncated (compressed stream ends early)");
        }
        ZSTD_inBuffer in = {r->in, r->in_used, r->in_pos};
        ZSTD_outBuffer out = {r->out, r->out_size, 0};
        size_t hint = ZSTD_decompressStream(r->zstd, &out, &in);
        if (ZSTD_isError(hint))
            return corrupt(r, err, ZSTD_getErrorName(hint));
        if (r->version != ENVELOPE_VERSION_PAYLOAD_HASH && !r->encrypted)   /* the frame's bytes, as consumed */
            crypto_generichash_update(&r->hash, r->in + r->in_pos, in.pos - r->in_pos);
        r->zstd_hint = hint;
        r->in_pos = in.pos;
        r->out_used = out.pos;
    }
    return 0;
}

/* Refills the decompressed output once it is all read. */
static int refill_payload(struct object_reader *r, struct tm_error *err)
{
    int ended;
    if (fill_output(r, &ended, err) != 0)
        return -1;
    if (ended)
        return corrupt(r, err, "payload ends early");
    return 0;
}

static int read_raw_payload(struct object_reader *r, uint8_t *buf, size_t len,
                            struct tm_error *err)
{
    while (len > 0) {
        if (r->out_pos == r->out_used && refill_payload(r, err) != 0)
            return -1;
        size_t avail = r->out_used - r->out_pos;
        size_t take = len < avail ? len : avail;
        memcpy(buf, r->out + r->out_pos, take);
        r->out_pos += take;
        buf += take;
        len -= take;
    }
    return 0;
}

void object_reader_close(struct object_reader *r)
{
    if (!r)
        return;
    storage_read_end(r->source);
    ZSTD_freeDCtx(r->zstd);
    free(r->in);
    free(r->cipher);
    free(r->out);
    sodium_memzero(&r->stream, sizeof r->stream);
    free(r);
}

/* Reads the identity section of a version 3 object after its fixed
 * header, and starts the object hash with it. */
static int read_identity(struct object_reader *r, struct tm_error *err)
{
    int short_read;
    uint8_t *section = r->header + ENVELOPE_FIXED_BYTES;
    if (source_read_exact(r, section, IDENTITY_LENGTH_BYTES, &short_read, err) != 0)
        return -1;
    size_t len = ((size_t)section[0] << 8) | section[1];
    if (short_read || len == 0 || len > OBJECT_IDENTITY_MAX)
        return corrupt(r, err, short_read ? "shorter than its header" : "invalid identity length");
    if (source_read_exact(r, section + IDENTITY_LENGTH_BYTES, len, &short_read, err) != 0)
        return -1;
    if (short_read)
        return corrupt(r, err, "shorter than its header");
    r->header_len = ENVELOPE_FIXED_BYTES + IDENTITY_LENGTH_BYTES + len;
    crypto_generichash_update(&r->hash, section, IDENTITY_LENGTH_BYTES + len);
    return 0;
}

/* Refuses an object whose identity is not `expected` (version 3), named
 * by the key expected (a local copy's own name means nothing to the
 * user). The identity it holds is shown with any byte outside printable
 * ASCII as '?': it came from the bucket. */
static int check_identity(struct object_reader *r, const char *expected, struct tm_error *err)
{
    const uint8_t *stored = r->header + ENVELOPE_FIXED_BYTES + IDENTITY_LENGTH_BYTES;
    size_t len = r->header_len - ENVELOPE_FIXED_BYTES - IDENTITY_LENGTH_BYTES;
    if (strlen(expected) == len && memcmp(stored, expected, len) == 0)
        return 0;
    char shown[OBJECT_IDENTITY_MAX + 1];
    for (size_t i = 0; i < len; i++)
        shown[i] = stored[i] >= 0x20 && stored[i] < 0x7f ? (char)stored[i] : '?';
    shown[len] = '\0';
    tm_error_setc(err, TM_ERR_CORRUPT, "object '%s' belongs to another database or place (it was written as '%s')",
                  expected, shown);
    return tm_error_hint(err, "refusing it: an object copied or moved from elsewhere in the bucket restores "
                              "another database's data");
}

/* Checks the header (the fixed bytes read; the identity section read here
 * for version 3) against the kind and identity expected; for an encrypted
 * object, reads the sealed data key if there is one and sets up the
 * stream key in *object_key. */
static int check_header(struct object_reader *r, enum object_kind kind, const char *identity,
                        struct crypto_object_key *object_key, struct tm_error *err)
{
    const uint8_t *h = r->header;
    if (memcmp(h, ENVELOPE_MAGIC, 8) != 0)
        return corrupt(r, err, "not a tidemark object (bad magic)");
    if (h[8] != ENVELOPE_VERSION && h[8] != ENVELOPE_VERSION_FRAME_HASH && h[8] != ENVELOPE_VERSION_PAYLOAD_HASH)
        return tm_error_set(err, "object '%s' has envelope version %u; this tidemark reads versions 1 to %u",
                            r->name, h[8], ENVELOPE_VERSION);
    r->version = h[8];
    if (r->version == ENVELOPE_VERSION &&
        (read_identity(r, err) != 0 || check_identity(r, identity, err) != 0))
        return -1;
    if (h[9] != (uint8_t)kind)
        return corrupt(r, err, "unexpected object kind");
    if (h[11] != COMPRESSION_ZSTD)
        return corrupt(r, err, "unknown compression");
    if (h[10] == ENC_NONE) {
        if (r->keys) {
            tm_error_setc(err, TM_ERR_CORRUPT, "object '%s' is not encrypted but an encryption key is configured",
                          r->name);
            return tm_error_hint(err, "refusing it: an unencrypted object in an encrypted archive may have been planted");
        }
        return 0;
    }
    if (h[10] != CRYPTO_SCHEME_SYMMETRIC && h[10] != CRYPTO_SCHEME_SEALED)
        return corrupt(r, err, "unknown encryption");
    if (!r->keys) {
        tm_error_setc(err, TM_ERR_REFUSED, "object '%s' is encrypted but the configuration has 'encryption: none'",
                      r->name);
        return tm_error_hint(err, "set encryption.key-file to the key the backups were made with");
    }
    uint8_t sealed[CRYPTO_SEALED_KEY_BYTES] = {0};
    int short_read;
    if (h[10] == CRYPTO_SCHEME_SEALED) {
        if (source_read_exact(r, sealed, sizeof sealed, &short_read, err) != 0)
            return -1;
        if (short_read)
            return corrupt(r, err, "truncated in its sealed data key");
    }
    int bound = r->version == ENVELOPE_VERSION;
    if (crypto_object_key_open(r->keys, h[10], h + 12, sealed, bound ? identity : NULL,
                               bound ? identity_database_len(identity) : 0, object_key, err) != 0)
        return tm_error_prefix(err, "object '%s': ", r->name);
    r->encrypted = 1;
    return 0;
}

int object_reader_open(struct storage *st, const char *name, const char *identity, enum object_kind kind,
                       const struct crypto_keyring *keys, struct object_reader **out,
                       struct tm_error *err)
{
    struct crypto_object_key object_key = {0};
    struct object_reader *r = calloc(1, sizeof *r);
    if (!r)
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    r->keys = keys;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->zstd = ZSTD_createDCtx();
    if (r->zstd)   /* a hostile frame cannot make us allocate a big window */
        ZSTD_DCtx_setParameter(r->zstd, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX);
    r->in_size = CHUNK_PLAIN_MAX > ZSTD_DStreamInSize() ? CHUNK_PLAIN_MAX : ZSTD_DStreamInSize();
    r->in = malloc(r->in_size);
    r->cipher = malloc(CHUNK_CIPHER_MAX);
    r->out_size = ZSTD_DStreamOutSize();
    r->out = malloc(r->out_size);
    r->zstd_hint = 1;
    if (!r->zstd || !r->in || !r->cipher || !r->out) {
        object_reader_close(r);
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    }
    crypto_generichash_init(&r->hash, NULL, 0, OBJECT_HASH_BYTES);
    if (storage_read_begin(st, name, &r->source, err) != 0) {
        object_reader_close(r);
        return -1;
    }
    int short_read;
    r->header_len = ENVELOPE_FIXED_BYTES;
    if (source_read_exact(r, r->header, ENVELOPE_FIXED_BYTES, &short_read, err) != 0)
        goto fail;
    if (short_read) {
        corrupt(r, err, "shorter than its header");
        goto fail;
    }
    if (check_header(r, kind, identity, &object_key, err) != 0)
        goto fail;
    if (r->encrypted) {
        uint8_t stream_header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
        if (source_read_exact(r, stream_header, sizeof stream_header, &short_read, err) != 0)
            goto fail;
        if (short_read ||
            crypto_secretstream_xchacha20poly1305_init_pull(&r->stream, stream_header,
                                                            object_key.stream_key) != 0) {
            corrupt(r, err, "bad encryption header");
            goto fail;
        }
    }
    crypto_object_key_wipe(&object_key);
    *out = r;
    return 0;
fail:
    crypto_object_key_wipe(&object_key);
    object_reader_close(r);
    return -1;
}

int object_reader_predates_binding(const struct object_reader *r)
{
    return r->version != ENVELOPE_VERSION;
}

int object_read(struct object_reader *r, void *buf, size_t len, struct tm_error *err)
{
    if (read_raw_payload(r, buf, len, err) != 0)
        return -1;
    if (r->version == ENVELOPE_VERSION_PAYLOAD_HASH)
        crypto_generichash_update(&r->hash, buf, len);
    return 0;
}

int object_read_view(struct object_reader *r, uint8_t *scratch, size_t len, const uint8_t **data,
                     struct tm_error *err)
{
    if (len > 0 && r->out_pos == r->out_used && refill_payload(r, err) != 0)
        return -1;
    if (r->out_used - r->out_pos >= len) {   /* whole in the output buffer: no copy */
        *data = r->out + r->out_pos;
        r->out_pos += len;
    } else {
        if (read_raw_payload(r, scratch, len, err) != 0)
            return -1;
        *data = scratch;
    }
    if (r->version == ENVELOPE_VERSION_PAYLOAD_HASH)
        crypto_generichash_update(&r->hash, *data, len);
    return 0;
}

static int finish_stream(struct object_reader *r, const uint8_t computed[OBJECT_HASH_BYTES],
                         uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err);

/* Version 2: the frame must end with the payload; then come the 32 hash
 * bytes, taken from what is left of the input and what follows. */
static int read_frame_end_and_trailer(struct object_reader *r, uint8_t stored[OBJECT_HASH_BYTES],
                                      struct tm_error *err)
{
    if (r->out_pos != r->out_used)
        return corrupt(r, err, "data after the payload");
    while (r->zstd_hint != 0) {
        int ended;
        if (fill_output(r, &ended, err) != 0)
            return -1;
        if (!ended && r->out_used)
            return corrupt(r, err, "data after the payload");
    }
    size_t have = 0;
    while (have < OBJECT_HASH_BYTES) {
        if (r->in_pos == r->in_used) {
            if (refill_input(r, err) != 0)
                return -1;
            if (r->in_used == 0)
                return corrupt(r, err, "truncated (the hash trailer is missing)");
        }
        size_t take = r->in_used - r->in_pos < OBJECT_HASH_BYTES - have ? r->in_used - r->in_pos
                                                                         : OBJECT_HASH_BYTES - have;
        memcpy(stored + have, r->in + r->in_pos, take);
        r->in_pos += take;
        have += take;
    }
    if (r->in_pos != r->in_used)
        return corrupt(r, err, "data after the hash trailer");
    if (refill_input(r, err) != 0)
        return -1;
    if (r->in_used != 0)
        return corrupt(r, err, "data after the hash trailer");
    return 0;
}

int object_reader_finish(struct object_reader *r, uint8_t hash_out[OBJECT_HASH_BYTES],
                         struct tm_error *err)
{
    uint8_t computed[OBJECT_HASH_BYTES], stored[OBJECT_HASH_BYTES];
    if (r->version != ENVELOPE_VERSION_PAYLOAD_HASH) {
        if (read_frame_end_and_trailer(r, stored, err) != 0)
            return -1;
        if (r->encrypted)   /* authenticated with every byte before it: see "Reading" above */
            return finish_stream(r, stored, hash_out, err);
        crypto_generichash_final(&r->hash, computed, sizeof computed);
        if (sodium_memcmp(computed, stored, sizeof stored) != 0)
            return corrupt(r, err, "object checksum mismatch");
        return finish_stream(r, computed, hash_out, err);
    }
    crypto_generichash_final(&r->hash, computed, sizeof computed);
    if (read_raw_payload(r, stored, sizeof stored, err) != 0)
        return -1;
    if (sodium_memcmp(computed, stored, sizeof stored) != 0)
        return corrupt(r, err, "payload checksum mismatch");
    /* Nothing may follow: the zstd frame must end here, and with it the
     * encrypted stream (final tag) or the stored bytes. */
    if (r->out_pos != r->out_used)
        return corrupt(r, err, "data after the payload");
    int ended;
    if (fill_output(r, &ended, err) != 0)
        return -1;
    if (!ended)
        return corrupt(r, err, "data after the payload");
    if (r->in_pos != r->in_used)
        return corrupt(r, err, "data after the compressed stream");
    return finish_stream(r, computed, hash_out, err);
}

/* The encrypted stream ended with its final tag and nothing is stored
 * after the object's end. */
static int finish_stream(struct object_reader *r, const uint8_t computed[OBJECT_HASH_BYTES],
                         uint8_t hash_out[OBJECT_HASH_BYTES], struct tm_error *err)
{
    if (r->encrypted && !r->final_seen)
        return corrupt(r, err, "truncated (the final encrypted chunk is missing)");
    uint8_t extra;
    size_t got;
    if (storage_read(r->source, &extra, 1, &got, err) != 0)
        return -1;
    if (got != 0)
        return corrupt(r, err, "bytes after the end of the object");
    if (hash_out)
        memcpy(hash_out, computed, OBJECT_HASH_BYTES);
    return 0;
}
