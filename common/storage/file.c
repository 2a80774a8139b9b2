/* storage/file.c - the local-directory replica driver.
 *
 * A key maps to root/key. Writes go to a hidden temporary file in the
 * target directory (".tmp.<name>.XXXXXX", made by mkostemp: a new file,
 * mode 0600, an unpredictable name, never opened through a link someone
 * planted in a shared replica directory), are fsync'd, renamed over
 * the final name and the directory is fsync'd, so an object is either
 * whole and durable or absent. Listing skips names starting with '.'
 * (temporaries left by a crash are never mistaken for objects). */
#include "storage.h"

#include "../fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_WRITE_BUFFER (256 * 1024)

struct file_storage {
    char *root;
};

struct file_writer {
    char final_path[PATH_MAX];
    char temp_path[PATH_MAX];
    char dir_path[PATH_MAX];
    int fd;
    uint8_t *buffer;
    size_t buffered;
};

struct file_reader {
    int fd;
    char *path;        /* for messages */
};

static int join_path(const struct file_storage *fs, const char *key, char *out, size_t len,
                     struct tm_error *err)
{
    if (strstr(key, "..") || key[0] == '/')
        return tm_error_setc(err, TM_ERR_REFUSED, "invalid object key '%s'", key);
    if ((size_t)snprintf(out, len, "%s/%s", fs->root, key) >= len)
        return tm_error_set(err, "path too long for key '%s'", key);
    return 0;
}

static int file_write_begin(void *self, const char *key, void **handle, struct tm_error *err)
{
    struct file_storage *fs = self;
    struct file_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->buffer = malloc(FILE_WRITE_BUFFER))) {
        free(w);
        return tm_error_set(err, "out of memory");
    }
    w->fd = -1;
    if (join_path(fs, key, w->final_path, sizeof w->final_path, err) != 0)
        goto fail;
    snprintf(w->dir_path, sizeof w->dir_path, "%s", w->final_path);
    char *slash = strrchr(w->dir_path, '/');
    *slash = '\0';
    if (fsutil_make_dirs(w->dir_path, err) != 0)
        goto fail;
    snprintf(w->temp_path, sizeof w->temp_path, "%s/.tmp.%s.XXXXXX", w->dir_path, slash + 1);
    w->fd = mkostemp(w->temp_path, O_CLOEXEC);   /* O_CREAT|O_EXCL, 0600 */
    if (w->fd < 0) {
        tm_error_set(err, "cannot create '%s': %s", w->temp_path, strerror(errno));
        goto fail;
    }
    *handle = w;
    return 0;
fail:
    free(w->buffer);
    free(w);
    return -1;
}

static int write_fully(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int flush_buffer(struct file_writer *w, struct tm_error *err)
{
    if (w->buffered && write_fully(w->fd, w->buffer, w->buffered) != 0)
        return tm_error_set(err, "cannot write '%s': %s", w->temp_path, strerror(errno));
    w->buffered = 0;
    return 0;
}

static int file_write(void *handle, const void *data, size_t len, struct tm_error *err)
{
    struct file_writer *w = handle;
    const uint8_t *bytes = data;
    while (len > 0) {
        size_t room = FILE_WRITE_BUFFER - w->buffered;
        size_t take = len < room ? len : room;
        memcpy(w->buffer + w->buffered, bytes, take);
        w->buffered += take;
        bytes += take;
        len -= take;
        if (w->buffered == FILE_WRITE_BUFFER && flush_buffer(w, err) != 0)
            return -1;
    }
    return 0;
}

static void file_write_abort(void *handle)
{
    struct file_writer *w = handle;
    if (w->fd >= 0)
        close(w->fd);
    unlink(w->temp_path);
    free(w->buffer);
    free(w);
}

static int file_write_commit(void *handle, struct tm_error *err)
{
    struct file_writer *w = handle;
    if (flush_buffer(w, err) != 0)
        goto fail;
    if (fsync(w->fd) != 0) {
        tm_error_set(err, "cannot fsync '%s': %s", w->temp_path, strerror(errno));
        goto fail;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        tm_error_set(err, "cannot close '%s': %s", w->temp_path, strerror(errno));
        goto fail;
    }
    w->fd = -1;
    if (rename(w->temp_path, w->final_path) != 0) {
        tm_error_set(err, "cannot rename '%s' to '%s': %s", w->temp_path, w->final_path,
                     strerror(errno));
        goto fail;
    }
    int rc = fsutil_fsync_dir(w->dir_path, err);
    free(w->buffer);
    free(w);
    return rc;
fail:
    file_write_abort(w);
    return -1;
}

static int file_read_begin(void *self, const char *key, void **handle, struct tm_error *err)
{
    char path[PATH_MAX];
    if (join_path(self, key, path, sizeof path, err) != 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return tm_error_setc(err, TM_ERR_NOT_FOUND, "object '%s' does not exist", key);
        return tm_error_set(err, "cannot open '%s': %s", path, strerror(errno));
    }
    struct file_reader *r = malloc(sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        close(fd);
        return tm_error_set(err, "out of memory");
    }
    r->fd = fd;
    *handle = r;
    return 0;
}

static int file_read(void *handle, void *buf, size_t len, size_t *got, struct tm_error *err)
{
    struct file_reader *r = handle;
    ssize_t n;
    do {
        n = read(r->fd, buf, len);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return tm_error_set(err, "cannot read '%s': %s", r->path, strerror(errno));
    *got = (size_t)n;
    return 0;
}

static void file_read_end(void *handle)
{
    struct file_reader *r = handle;
    close(r->fd);
    free(r->path);
    free(r);
}

static int file_list(void *self, const char *dir, struct storage_list *out, struct tm_error *err)
{
    char path[PATH_MAX];
    if (join_path(self, dir, path, sizeof path, err) != 0)
        return -1;
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return tm_error_set(err, "cannot list '%s': %s", path, strerror(errno));
    }
    struct dirent *ent;
    int rc = 0;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(dirfd(d), ent->d_name, &st, 0) != 0)
            continue; /* removed while listing */
        if (storage_list_add(out, ent->d_name, S_ISDIR(st.st_mode) ? 0 : (uint64_t)st.st_size,
                             S_ISDIR(st.st_mode)) != 0) {
            rc = tm_error_set(err, "out of memory");
            break;
        }
    }
    closedir(d);
    if (rc != 0)
        storage_list_release(out);
    return rc;
}

static int file_remove(void *self, const char *key, struct tm_error *err)
{
    char path[PATH_MAX];
    if (join_path(self, key, path, sizeof path, err) != 0)
        return -1;
    if (unlink(path) != 0 && errno != ENOENT)
        return tm_error_set(err, "cannot remove '%s': %s", path, strerror(errno));
    /* Directories left empty go too (a generation whose objects were all
     * deleted disappears, as it does on S3); a non-empty one stops this. */
    const struct file_storage *fs = self;
    size_t root_len = strlen(fs->root);
    for (char *slash = strrchr(path, '/'); slash && (size_t)(slash - path) > root_len; slash = strrchr(path, '/')) {
        *slash = '\0';
        if (rmdir(path) != 0)
            break;
    }
    return 0;
}

static void file_free(void *self)
{
    struct file_storage *fs = self;
    if (!fs)
        return;
    free(fs->root);
    free(fs);
}

static const struct storage_driver file_driver = {
    .type = "file",
    .write_begin = file_write_begin,
    .write = file_write,
    .write_commit = file_write_commit,
    .write_abort = file_write_abort,
    .read_begin = file_read_begin,
    .read = file_read,
    .read_end = file_read_end,
    .list = file_list,
    .remove = file_remove,
    .free = file_free,
};

int storage_file_open(const char *root, struct storage **out, struct tm_error *err)
{
    if (fsutil_make_dirs(root, err) != 0)
        return -1;
    if (access(root, W_OK | X_OK) != 0)
        return tm_error_set(err, "replica directory '%s' is not writable: %s", root,
                            strerror(errno));
    struct file_storage *fs = calloc(1, sizeof *fs);
    if (!fs || !(fs->root = strdup(root))) {
        free(fs);
        return tm_error_set(err, "out of memory");
    }
    char description[PATH_MAX + 8];
    snprintf(description, sizeof description, "file:%s", root);
    return storage_new(&file_driver, fs, description, out, err);
}
