/* test_spool.c - the spool keeps every object until each replica has it,
 * in order, and recovers exactly from a crash at any step of publishing. */
#include "harness.h"

#include "../../replicator/spool.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *names[] = {"file", "s3"};

static struct spool *open_spool(const char *dir, size_t replicas, int *added)
{
    struct spool *sp = NULL;
    struct tm_error err;
    int dummy;
    size_t removed;
    if (spool_open(dir, names, replicas, 1, &sp, added ? added : &dummy, &removed, &err) != 0)
        fprintf(stderr, "  spool_open: %s\n", err.msg);
    return sp;
}

/* Writes `size` bytes as the next incoming object for key. */
static int write_incoming(struct spool *sp, const char *key, size_t size)
{
    char name[600];
    spool_incoming_name(sp, key, name, sizeof name);
    struct storage_writer *w;
    struct tm_error err;
    char block[1000];
    memset(block, 'x', sizeof block);
    if (storage_write_begin(spool_incoming(sp), name, &w, &err) != 0)
        return -1;
    for (size_t done = 0; done < size; done += sizeof block)
        storage_write(w, block, size - done < sizeof block ? size - done : sizeof block, &err);
    return storage_write_commit(w, &err);
}

static struct spool_position position_at(uint64_t next_index)
{
    struct spool_position pos = {.next_index = next_index, .page_size = 4096,
                                 .wal = {1, 7, 8, (uint32_t)next_index * 10, {1, 2}}};
    snprintf(pos.generation, sizeof pos.generation, "20261124T000000000Z-00000001");
    memset(pos.chain, (int)next_index, sizeof pos.chain);
    return pos;
}

static int publish(struct spool *sp, uint64_t index, size_t size)
{
    char key[200];
    snprintf(key, sizeof key, "app/generations/G/segments/%016llx-1-2.seg", (unsigned long long)index);
    struct spool_position pos = position_at(index + 1);
    struct tm_error err;
    if (write_incoming(sp, key, size) != 0)
        return -1;
    return spool_publish(sp, key, &pos, &err);
}

static void test_queues_in_order_and_bytes_counted_once(void)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/order", harness_tmpdir());
    struct spool *sp = open_spool(dir, 2, NULL);
    ASSERT_TRUE(sp != NULL);
    for (uint64_t i = 0; i < 3; i++)
        ASSERT_EQ(publish(sp, i, 1000 * (i + 1)), 0);
    ASSERT_EQ(spool_queue_length(sp, 0), 3);
    ASSERT_EQ(spool_queue_length(sp, 1), 3);
    ASSERT_EQ(spool_bytes(sp), 6000);
    char key[600], path[PATH_MAX];
    struct tm_error err;
    ASSERT_EQ(spool_queue_head(sp, 1, key, sizeof key, path, sizeof path), 1);
    ASSERT_TRUE(strcmp(key, "app/generations/G/segments/0000000000000000-1-2.seg") == 0);
    ASSERT_EQ(spool_queue_done(sp, 1, &err), 0);
    ASSERT_EQ(spool_queue_done(sp, 1, &err), 0);
    ASSERT_EQ(spool_bytes(sp), 6000);          /* replica 0 still needs them */
    ASSERT_EQ(spool_queue_done(sp, 0, &err), 0);
    ASSERT_EQ(spool_bytes(sp), 5000);          /* object 0 is everywhere now */
    ASSERT_EQ(spool_queue_head(sp, 1, key, sizeof key, path, sizeof path), 1);
    ASSERT_TRUE(strstr(key, "/0000000000000002-") != NULL);
    spool_free(sp);

    /* the same state after a restart */
    int added = -1;
    sp = open_spool(dir, 2, &added);
    ASSERT_TRUE(sp != NULL);
    ASSERT_EQ(added, 0);
    ASSERT_EQ(spool_queue_length(sp, 0), 2);
    ASSERT_EQ(spool_queue_length(sp, 1), 1);
    ASSERT_EQ(spool_bytes(sp), 5000);
    struct spool_position pos;
    ASSERT_EQ(spool_position(sp, &pos), 1);
    struct spool_position want = position_at(3);
    ASSERT_TRUE(memcmp(&pos, &want, sizeof pos) == 0);
    spool_free(sp);
}

static void test_crash_before_commit_point_drops_the_object(void)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/before", harness_tmpdir());
    struct spool *sp = open_spool(dir, 2, NULL);
    ASSERT_EQ(publish(sp, 0, 100), 0);
    ASSERT_EQ(write_incoming(sp, "app/generations/G/segments/0000000000000001-1-2.seg", 100), 0);
    spool_free(sp);   /* "crash": written but never published */
    sp = open_spool(dir, 2, NULL);
    ASSERT_TRUE(sp != NULL);
    ASSERT_EQ(spool_queue_length(sp, 0), 1);
    ASSERT_EQ(spool_queue_length(sp, 1), 1);
    struct spool_position pos;
    ASSERT_EQ(spool_position(sp, &pos), 1);
    ASSERT_EQ(pos.next_index, 1);              /* the segment will be made again */
    char incoming[PATH_MAX + 16];
    snprintf(incoming, sizeof incoming, "%s/incoming", dir);
    struct stat st;
    ASSERT_EQ(stat(incoming, &st), 0);
    ASSERT_EQ(st.st_nlink, 2);                 /* empty directory */
    spool_free(sp);
}

static void test_crash_after_commit_point_completes_publishing(void)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/after", harness_tmpdir());
    struct spool *sp = open_spool(dir, 2, NULL);
    ASSERT_EQ(publish(sp, 0, 100), 0);
    /* keep a copy of the next incoming object, publish, then undo steps
     * 3-4 for replica "s3": as if the crash came right after the position */
    char name[600], saved[PATH_MAX + 700], incoming[PATH_MAX + 700], linked[PATH_MAX + 700];
    const char *key = "app/generations/G/segments/0000000000000001-1-2.seg";
    spool_incoming_name(sp, key, name, sizeof name);
    ASSERT_EQ(write_incoming(sp, key, 300), 0);
    snprintf(incoming, sizeof incoming, "%s/incoming/%s", dir, name);
    snprintf(saved, sizeof saved, "%s/saved", dir);
    ASSERT_EQ(link(incoming, saved), 0);
    struct spool_position pos = position_at(2);
    struct tm_error err;
    ASSERT_EQ(spool_publish(sp, key, &pos, &err), 0);
    spool_free(sp);
    snprintf(linked, sizeof linked, "%s/queue/s3/%s", dir, name);
    ASSERT_EQ(unlink(linked), 0);
    ASSERT_EQ(rename(saved, incoming), 0);

    sp = open_spool(dir, 2, NULL);
    ASSERT_TRUE(sp != NULL);
    ASSERT_EQ(spool_queue_length(sp, 0), 2);
    ASSERT_EQ(spool_queue_length(sp, 1), 2);   /* re-linked from incoming */
    ASSERT_EQ(spool_bytes(sp), 400);
    struct stat st;
    ASSERT_TRUE(stat(incoming, &st) != 0);
    spool_free(sp);
}

static void test_added_replica_is_reported(void)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/added", harness_tmpdir());
    int added = -1;
    struct spool *sp = open_spool(dir, 1, &added);
    ASSERT_EQ(added, 0);                       /* a new spool: nothing to miss */
    ASSERT_EQ(publish(sp, 0, 10), 0);
    spool_free(sp);
    sp = open_spool(dir, 2, &added);
    ASSERT_TRUE(sp != NULL);
    ASSERT_EQ(added, 1);
    ASSERT_EQ(spool_queue_length(sp, 1), 0);
    ASSERT_EQ(publish(sp, 1, 10), 0);
    ASSERT_EQ(spool_bytes(sp), 20);
    spool_free(sp);

    /* "file" is dropped from the configuration: its queue goes */
    const char *only_s3[] = {"s3"};
    size_t removed = 0;
    struct tm_error err;
    ASSERT_EQ(spool_open(dir, only_s3, 1, 1, &sp, &added, &removed, &err), 0);
    ASSERT_EQ(removed, 1);
    ASSERT_EQ(spool_queue_length(sp, 0), 1);
    ASSERT_EQ(spool_bytes(sp), 10);
    char queue_dir[PATH_MAX + 16];
    snprintf(queue_dir, sizeof queue_dir, "%s/queue/file", dir);
    struct stat st;
    ASSERT_TRUE(stat(queue_dir, &st) != 0);
    spool_free(sp);
}

int main(void)
{
    static const struct test_case cases[] = {
        {"spool: queues in order, each object counted once, state survives a restart",
         test_queues_in_order_and_bytes_counted_once},
        {"spool: crash before the commit point drops the unpublished object",
         test_crash_before_commit_point_drops_the_object},
        {"spool: crash after the commit point completes the publication",
         test_crash_after_commit_point_completes_publishing},
        {"spool: a replica added is reported, a replica removed loses its queue",
         test_added_replica_is_reported},
    };
    return harness_run(cases, sizeof cases / sizeof *cases);
}
