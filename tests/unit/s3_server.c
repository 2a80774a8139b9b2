/* s3_server.c - starts and stops tests/s3/swift_server.py for a unit test
 * binary (see s3_server.h). The script is found from the binary's own
 * path (harness_program) (build/<kind>/tests/test_x lies three levels below the project
 * root), so the tests run from any directory. */
#include "s3_server.h"

#include "harness.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SCRIPT "tests/s3/swift_server.py"
#define ACCESS_KEY "test:tester"
#define SECRET_KEY "testing"
#define REGION "us-east-1"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* The project root: the nearest directory above the executable that
 * holds the script. */
static int find_root(char *root, size_t cap, struct tm_error *err)
{
    if (!realpath(harness_program(), root) || strlen(root) >= cap)
        return tm_error_set(err, "cannot resolve '%s': %s", harness_program(), strerror(errno));
    char script[PATH_MAX + 32];
    for (char *slash = strrchr(root, '/'); slash; slash = strrchr(root, '/')) {
        *slash = '\0';
        snprintf(script, sizeof script, "%s/" SCRIPT, root);
        if (access(script, R_OK) == 0)
            return 0;
    }
    return tm_error_set(err, "no '%s' above the test binary", SCRIPT);
}

/* Runs `python3 SCRIPT action dir` from root; its exit status. */
static int run_script(const char *root, const char *action, const char *dir)
{
    char script[PATH_MAX + 32];
    snprintf(script, sizeof script, "%s/" SCRIPT, root);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);   /* it prints the endpoint; errors stay on stderr */
        execl("/usr/bin/python3", "python3", script, action, dir, (char *)NULL);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int read_text(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return n > 0 ? 0 : -1;
}

/* The pids the script recorded in dir/run/<name>.pid. */
static void read_pids(struct s3_server *srv)
{
    char run[600];
    snprintf(run, sizeof run, "%s/run", srv->dir);
    DIR *d = opendir(run);
    struct dirent *ent;
    while (d && (ent = readdir(d)) && srv->pid_count < S3_SERVER_MAX_PIDS) {
        char path[900], text[32];
        snprintf(path, sizeof path, "%s/%s", run, ent->d_name);
        if (ent->d_name[0] != '.' && read_text(path, text, sizeof text) == 0 && atoi(text) > 0)
            srv->pids[srv->pid_count++] = atoi(text);
    }
    if (d)
        closedir(d);
}

int s3_server_start(struct s3_server *srv, struct tm_error *err)
{
    char root[PATH_MAX];
    memset(srv, 0, sizeof *srv);
    if (find_root(root, sizeof root, err) != 0)
        return -1;
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s/tests/tmp", root);
    mkdir(tmp, 0755);
    snprintf(srv->dir, sizeof srv->dir, "%s/unit-s3-%d", tmp, (int)getpid());
    int status = run_script(root, "start", srv->dir);
    read_pids(srv);
    if (status != 0) {
        s3_server_stop(srv);
        return tm_error_set(err, "the S3 server did not start (swift_server.py exited %d)", status);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/endpoint", srv->dir);
    if (read_text(path, srv->endpoint, sizeof srv->endpoint) != 0) {
        s3_server_stop(srv);
        return tm_error_set(err, "the S3 server wrote no endpoint");
    }
    return 0;
}

void s3_server_kill(const struct s3_server *srv)
{
    for (int i = 0; i < srv->pid_count; i++)
        kill(-srv->pids[i], SIGKILL);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(path);
    return 0;
}

void s3_server_stop(struct s3_server *srv)
{
    if (!srv->dir[0])
        return;
    s3_server_kill(srv);
    nftw(srv->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    srv->dir[0] = '\0';
    srv->pid_count = 0;
}

static size_t discard(char *data, size_t size, size_t count, void *arg)
{
    (void)data, (void)arg;
    return size * count;
}

/* One signed PUT Bucket; the HTTP status, or -1 with err set. */
static long put_bucket(const struct s3_server *srv, const char *name, struct tm_error *err)
{
    CURL *easy = curl_easy_init();
    if (!easy)
        return tm_error_set(err, "cannot initialise libcurl");
    char url[400];
    snprintf(url, sizeof url, "%s/%s", srv->endpoint, name);
    struct curl_slist *headers = curl_slist_append(NULL, "x-amz-content-sha256: " EMPTY_SHA256);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, "aws:amz:" REGION ":s3");
    curl_easy_setopt(easy, CURLOPT_USERNAME, ACCESS_KEY);
    curl_easy_setopt(easy, CURLOPT_PASSWORD, SECRET_KEY);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform(easy);
    long status = -1;
    if (rc == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    else
        tm_error_set(err, "creating bucket '%s': %s", name, curl_easy_strerror(rc));
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    return status;
}

/* The proxy answers its health check before the account and container
 * servers behind it are ready: 503s for a moment are retried. */
int s3_server_create_bucket(const struct s3_server *srv, const char *name, struct tm_error *err)
{
    long status = -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        if ((status = put_bucket(srv, name, err)) == 200)
            return 0;
        if (status >= 0 && status < 500)
            break;
        usleep(100 * 1000);
    }
    if (status < 0)
        return -1;
    return tm_error_set(err, "creating bucket '%s': HTTP %ld", name, status);
}

void s3_server_replica(const struct s3_server *srv, const char *bucket, const char *prefix,
                       struct config_replica *out)
{
    memset(out, 0, sizeof *out);
    out->type = REPLICA_S3;
    out->name = (char *)"s3";
    out->path = (char *)prefix;
    out->s3.bucket = (char *)bucket;
    out->s3.region = (char *)REGION;
    out->s3.endpoint = (char *)srv->endpoint;
    out->s3.force_path_style = 1;
    out->s3.access_key_id = (char *)ACCESS_KEY;
    out->s3.secret_access_key = (char *)SECRET_KEY;
}
