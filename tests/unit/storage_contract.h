/* storage_contract.h - what every storage driver promises (storage.h),
 * as checks run on an open, empty replica. test_storage_file.c and
 * test_storage_s3.c run them on the file driver and on the S3 driver
 * against a real S3-compatible server; each check is a whole test body
 * that fails the running test through the harness's assertions. */
#ifndef TM_STORAGE_CONTRACT_H
#define TM_STORAGE_CONTRACT_H

#include "../../common/storage/storage.h"

/* An object written in several pieces reads back byte for byte, in
 * pieces or whole; a second write of the key replaces it. */
void contract_put_read(struct storage *st);
/* An empty object exists, is listed with size 0 and reads as no bytes
 * (on S3, the first ranged GET of an empty object is answered 416). */
void contract_empty_object(struct storage *st);
/* A missing object: read_begin and read_all fail with TM_ERR_NOT_FOUND. */
void contract_missing_is_not_found(struct storage *st);
/* list: the immediate children of a directory key, sorted, objects with
 * their sizes and sub-directories as such; a missing directory is empty. */
void contract_list(struct storage *st);
/* remove and remove_many: the objects are gone (not found, not listed),
 * their neighbours stay; removing what is gone already succeeds. */
void contract_remove(struct storage *st);
/* An aborted write leaves nothing; an uncommitted one is not visible. */
void contract_abort_and_uncommitted(struct storage *st);
/* put_file (not attached to a loop: synchronous) stores the file's bytes. */
void contract_put_file(struct storage *st, const char *local_dir);

/* Test helpers: stores `len` bytes as `key` in one write (0 or -1, the
 * error printed); the bytes of object `key` compared with data[len]. */
int contract_put(struct storage *st, const char *key, const void *data, size_t len);
int contract_object_is(struct storage *st, const char *key, const void *data, size_t len);

#endif
