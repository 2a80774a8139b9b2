/* storage_contract.c - the checks every storage driver must pass (see
 * storage_contract.h). Objects are patterned bytes, so that a byte out
 * of place, missing or repeated shows up in the comparison. */
#include "storage_contract.h"

#include "harness.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#define BIG_OBJECT (300 * 1024 + 17)   /* more than the file driver's 256 KiB write buffer */

static void fill_pattern(uint8_t *data, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

int contract_put(struct storage *st, const char *key, const void *data, size_t len)
{
    struct storage_writer *w;
    struct tm_error err;
    if (storage_write_begin(st, key, &w, &err) != 0)
        goto fail;
    if (storage_write(w, data, len, &err) != 0) {
        storage_write_abort(w);
        goto fail;
    }
    if (storage_write_commit(w, &err) != 0)
        goto fail;
    return 0;
fail:
    fprintf(stderr, "  storing '%s': %s\n", key, err.msg);
    return -1;
}

int contract_object_is(struct storage *st, const char *key, const void *data, size_t len)
{
    uint8_t *got = NULL;
    size_t got_len = 0;
    struct tm_error err;
    if (storage_read_all(st, key, &got, &got_len, &err) != 0) {
        fprintf(stderr, "  reading '%s': %s\n", key, err.msg);
        return 0;
    }
    int same = got_len == len && memcmp(got, data, len) == 0;
    if (!same)
        fprintf(stderr, "  '%s' holds %zu other bytes, expected %zu\n", key, got_len, len);
    free(got);
    return same;
}

/* Reads `key` through a reader in 1000-byte calls into buf[cap]; the
 * length read, or -1. */
static long read_in_pieces(struct storage *st, const char *key, uint8_t *buf, size_t cap)
{
    struct storage_reader *r;
    struct tm_error err;
    if (storage_read_begin(st, key, &r, &err) != 0)
        return -1;
    size_t total = 0, got;
    do {
        size_t want = cap - total < 1000 ? cap - total : 1000;
        if (storage_read(r, buf + total, want, &got, &err) != 0) {
            storage_read_end(r);
            return -1;
        }
        total += got;
    } while (got > 0 && total < cap);
    storage_read_end(r);
    return (long)total;
}

void contract_put_read(struct storage *st)
{
    uint8_t *data = malloc(BIG_OBJECT), *back = malloc(BIG_OBJECT + 1);
    ASSERT_TRUE(data && back);
    fill_pattern(data, BIG_OBJECT, 1);
    struct storage_writer *w;
    struct tm_error err;
    ASSERT_EQ(storage_write_begin(st, "gen/segments/big.seg", &w, &err), 0);
    for (size_t done = 0; done < BIG_OBJECT; done += 7001) {
        size_t take = BIG_OBJECT - done < 7001 ? BIG_OBJECT - done : 7001;
        ASSERT_EQ(storage_write(w, data + done, take, &err), 0);
    }
    ASSERT_EQ(storage_write_commit(w, &err), 0);
    ASSERT_TRUE(contract_object_is(st, "gen/segments/big.seg", data, BIG_OBJECT));
    ASSERT_EQ(read_in_pieces(st, "gen/segments/big.seg", back, BIG_OBJECT + 1), BIG_OBJECT);
    ASSERT_TRUE(memcmp(back, data, BIG_OBJECT) == 0);
    /* a second write replaces the object */
    ASSERT_EQ(contract_put(st, "gen/segments/big.seg", "short", 5), 0);
    ASSERT_TRUE(contract_object_is(st, "gen/segments/big.seg", "short", 5));
    free(data);
    free(back);
}

void contract_empty_object(struct storage *st)
{
    ASSERT_EQ(contract_put(st, "gen/empty", "", 0), 0);
    ASSERT_TRUE(contract_object_is(st, "gen/empty", "", 0));
    struct storage_list list;
    struct tm_error err;
    ASSERT_EQ(storage_list(st, "gen", &list, &err), 0);
    ASSERT_EQ(list.count, 1);
    int ok = strcmp(list.entries[0].name, "empty") == 0 && list.entries[0].size == 0 && !list.entries[0].is_dir;
    storage_list_release(&list);
    ASSERT_TRUE(ok);
}

void contract_missing_is_not_found(struct storage *st)
{
    struct storage_reader *r = NULL;
    struct tm_error err = {0};
    ASSERT_EQ(storage_read_begin(st, "gen/segments/none.seg", &r, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_NOT_FOUND);
    ASSERT_STR_CONTAINS(err.msg, "none.seg");
    uint8_t *data = NULL;
    size_t len = 0;
    struct tm_error err2 = {0};
    ASSERT_EQ(storage_read_all(st, "nothing/here", &data, &len, &err2), -1);
    ASSERT_EQ(tm_error_code(&err2), TM_ERR_NOT_FOUND);
    ASSERT_TRUE(data == NULL);
}

/* Whether entry i of list is `name` with `size` (0 and is_dir for a
 * directory: size -1). */
static int entry_is(const struct storage_list *list, size_t i, const char *name, long size)
{
    if (i >= list->count)
        return 0;
    const struct storage_entry *e = &list->entries[i];
    int ok = strcmp(e->name, name) == 0 &&
             (size < 0 ? e->is_dir && e->size == 0 : !e->is_dir && e->size == (uint64_t)size);
    if (!ok)
        fprintf(stderr, "  entry %zu: '%s' size %llu dir %d, expected '%s' size %ld\n", i, e->name,
                (unsigned long long)e->size, e->is_dir, name, size);
    return ok;
}

void contract_list(struct storage *st)
{
    ASSERT_EQ(contract_put(st, "app/gen2/b.seg", "bb", 2), 0);
    ASSERT_EQ(contract_put(st, "app/gen2/a.seg", "a", 1), 0);
    ASSERT_EQ(contract_put(st, "app/gen2/c/deep.seg", "deep", 4), 0);
    ASSERT_EQ(contract_put(st, "app/gen1/x", "xxx", 3), 0);
    ASSERT_EQ(contract_put(st, "app/top", "top!!", 5), 0);
    struct storage_list list;
    struct tm_error err;
    ASSERT_EQ(storage_list(st, "app/gen2", &list, &err), 0);
    ASSERT_EQ(list.count, 3);
    int ok = entry_is(&list, 0, "a.seg", 1) && entry_is(&list, 1, "b.seg", 2) && entry_is(&list, 2, "c", -1);
    storage_list_release(&list);
    ASSERT_TRUE(ok);
    ASSERT_EQ(storage_list(st, "app", &list, &err), 0);
    ASSERT_EQ(list.count, 3);
    ok = entry_is(&list, 0, "gen1", -1) && entry_is(&list, 1, "gen2", -1) && entry_is(&list, 2, "top", 5);
    storage_list_release(&list);
    ASSERT_TRUE(ok);
    ASSERT_EQ(storage_list(st, "app/none", &list, &err), 0);
    ASSERT_EQ(list.count, 0);
    storage_list_release(&list);
    /* "app/gen" is a prefix of two directories' names, not a directory */
    ASSERT_EQ(storage_list(st, "app/gen", &list, &err), 0);
    ASSERT_EQ(list.count, 0);
    storage_list_release(&list);
}

void contract_remove(struct storage *st)
{
    ASSERT_EQ(contract_put(st, "d/one", "1", 1), 0);
    ASSERT_EQ(contract_put(st, "d/two", "22", 2), 0);
    ASSERT_EQ(contract_put(st, "d/three", "333", 3), 0);
    ASSERT_EQ(contract_put(st, "d/four", "4444", 4), 0);
    struct tm_error err;
    ASSERT_EQ(storage_remove(st, "d/two", &err), 0);
    uint8_t *data = NULL;
    size_t len;
    ASSERT_EQ(storage_read_all(st, "d/two", &data, &len, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_NOT_FOUND);
    ASSERT_EQ(storage_remove(st, "d/two", &err), 0);   /* gone already */
    const char *keys[] = {"d/one", "d/four", "d/never-was"};
    ASSERT_EQ(storage_remove_many(st, keys, 3, &err), 0);
    struct storage_list list;
    ASSERT_EQ(storage_list(st, "d", &list, &err), 0);
    ASSERT_EQ(list.count, 1);
    int ok = entry_is(&list, 0, "three", 3);
    storage_list_release(&list);
    ASSERT_TRUE(ok);
    ASSERT_TRUE(contract_object_is(st, "d/three", "333", 3));
}

void contract_abort_and_uncommitted(struct storage *st)
{
    struct storage_writer *w;
    struct tm_error err;
    ASSERT_EQ(storage_write_begin(st, "w/aborted", &w, &err), 0);
    ASSERT_EQ(storage_write(w, "partial", 7, &err), 0);
    storage_write_abort(w);
    ASSERT_EQ(storage_write_begin(st, "w/pending", &w, &err), 0);
    ASSERT_EQ(storage_write(w, "pending", 7, &err), 0);
    uint8_t *data = NULL;
    size_t len;
    int read_rc = storage_read_all(st, "w/pending", &data, &len, &err);
    enum tm_error_code code = tm_error_code(&err);
    struct storage_list list;
    int list_rc = storage_list(st, "w", &list, &err);
    size_t listed = list.count;
    storage_list_release(&list);
    ASSERT_EQ(storage_write_commit(w, &err), 0);
    ASSERT_EQ(read_rc, -1);
    ASSERT_EQ(code, TM_ERR_NOT_FOUND);
    ASSERT_EQ(list_rc, 0);
    ASSERT_EQ(listed, 0);
    ASSERT_TRUE(contract_object_is(st, "w/pending", "pending", 7));
    ASSERT_EQ(storage_read_all(st, "w/aborted", &data, &len, &err), -1);
    ASSERT_EQ(tm_error_code(&err), TM_ERR_NOT_FOUND);
    ASSERT_EQ(storage_list(st, "w", &list, &err), 0);
    ASSERT_EQ(list.count, 1);
    int ok = entry_is(&list, 0, "pending", 7);
    storage_list_release(&list);
    ASSERT_TRUE(ok);
}

void contract_put_file(struct storage *st, const char *local_dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/upload.bin", local_dir);
    uint8_t *data = malloc(BIG_OBJECT);
    ASSERT_TRUE(data);
    fill_pattern(data, BIG_OBJECT, 7);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write(fd, data, BIG_OBJECT), BIG_OBJECT);
    close(fd);
    struct tm_error err;
    ASSERT_EQ(storage_put_file(st, "gen/uploaded.seg", path, NULL, NULL, &err), 0);
    ASSERT_TRUE(contract_object_is(st, "gen/uploaded.seg", data, BIG_OBJECT));
    free(data);
}
