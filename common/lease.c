/* lease.c - leases that keep retention off what is being read (lease.h). */
#include "lease.h"

#include "layout.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lease_take(struct storage *st, const char *db, const char *generation, int64_t now_ms, char *key_out,
               size_t key_len, struct tm_error *err)
{
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    for (char *p = host; *p; p++)
        if (*p == '/' || *p == ' ')
            *p = '_';
    layout_lease_key(db, host, (int)getpid(), now_ms, key_out, key_len);
    char body[128];
    int len = snprintf(body, sizeof body, "generation %s\nexpires %" PRId64 "\n", generation,
                       (int64_t)(now_ms + LEASE_HOLD_MS));
    struct storage_writer *w;
    if (storage_write_begin(st, key_out, &w, err) != 0)
        return -1;
    if (storage_write(w, body, (size_t)len, err) != 0) {
        storage_write_abort(w);
        return -1;
    }
    return storage_write_commit(w, err);
}

void lease_release(struct storage *st, const char *key)
{
    struct tm_error ignored;
    if (key && key[0])
        storage_remove(st, key, &ignored);
}

void lease_list_free(char **list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(list[i]);
    free(list);
}

int lease_active(struct storage *st, const char *db, int64_t now_ms, char ***out, size_t *count,
                 struct tm_error *err)
{
    *out = NULL;
    *count = 0;
    char dir[ARCHIVE_NAME_MAX];
    layout_area_dir(db, LAYOUT_LEASES, dir, sizeof dir);
    struct storage_list list;
    if (storage_list(st, dir, &list, err) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < list.count; i++) {
        if (list.entries[i].is_dir)
            continue;
        char key[1024];
        layout_child_key(dir, list.entries[i].name, key, sizeof key);
        char *text;
        size_t len;
        if (storage_read_capped(st, key, LEASE_RECORD_MAX, &text, &len, err) != 0) {
            if (tm_error_code(err) == TM_ERR_NOT_FOUND)
                continue;   /* released meanwhile */
            rc = -1;
            break;
        }
        char generation[64] = "";
        int64_t expires = 0;
        int fields = sscanf(text, "generation %63s\nexpires %" SCNd64, generation, &expires);
        free(text);
        if (fields != 2 || expires <= now_ms)
            continue;
        char **bigger = realloc(*out, (*count + 1) * sizeof *bigger);
        if (!bigger || !(bigger[*count] = strdup(generation))) {
            *out = bigger ? bigger : *out;
            rc = tm_error_set(err, "out of memory");
            break;
        }
        *out = bigger;
        (*count)++;
    }
    storage_list_release(&list);
    if (rc != 0) {
        lease_list_free(*out, *count);
        *out = NULL;
        *count = 0;
    }
    return rc;
}
