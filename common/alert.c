/* alert.c - delivery of alerts to a webhook and/or a command (alert.h). */
#include "alert.h"

#include "childenv.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WEBHOOK_ATTEMPTS 5
#define WEBHOOK_TIMEOUT_S 10L
#define COMMAND_TIMEOUT_S 30.0

struct webhook_delivery {
    struct alert_sender *owner;
    struct webhook_delivery *next;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    char rule[32];
    int attempt;
    long status;
    ev_timer retry;
};

struct command_run {
    struct alert_sender *owner;
    struct command_run *next;
    ev_child child;
    ev_timer deadline;
};

struct alert_sender {
    struct ev_loop *loop;
    struct http_loop *hl;
    const struct config_alerts *cfg;
    struct webhook_delivery *webhooks;
    struct command_run *commands;
};

/* ---------------------------------------------------------------- webhook */

static size_t discard(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data;
    (void)userp;
    return size * nmemb;
}

static void webhook_free(struct webhook_delivery *d)
{
    for (struct webhook_delivery **p = &d->owner->webhooks; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    ev_timer_stop(d->owner->loop, &d->retry);
    curl_slist_free_all(d->headers);
    curl_easy_cleanup(d->easy);
    free(d->body);
    free(d);
}

static void webhook_send(struct webhook_delivery *d);

static void on_webhook_done(void *arg, CURL *easy, CURLcode result)
{
    struct webhook_delivery *d = arg;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (result == CURLE_OK && status >= 200 && status < 300)
        return webhook_free(d);
    if (++d->attempt >= WEBHOOK_ATTEMPTS) {
        log_error("alert %s: webhook delivery failed %d times (%s); giving up on this message", d->rule,
                  d->attempt, result != CURLE_OK ? curl_easy_strerror(result) : "HTTP error status");
        return webhook_free(d);
    }
    log_warn("alert %s: webhook delivery failed (%s, HTTP %ld); retrying", d->rule,
             result != CURLE_OK ? curl_easy_strerror(result) : "error status", status);
    ev_timer_set(&d->retry, (double)(1 << d->attempt), 0.);
    ev_timer_start(d->owner->loop, &d->retry);
}

static void on_webhook_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    webhook_send(w->data);
}

static void webhook_send(struct webhook_delivery *d)
{
    curl_easy_reset(d->easy);
    curl_easy_setopt(d->easy, CURLOPT_URL, d->owner->cfg->webhook);
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->headers);
    curl_easy_setopt(d->easy, CURLOPT_TIMEOUT, WEBHOOK_TIMEOUT_S);
    curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    struct tm_error err;
    if (http_loop_start(d->owner->hl, d->easy, on_webhook_done, d, &err) != 0) {
        log_error("alert %s: %s", d->rule, err.msg);
        webhook_free(d);
    }
}

static void json_append(FILE *fp, const char *key, const char *value)
{
    fprintf(fp, ", \"%s\": \"", key);
    for (const char *p = value; *p; p++)
        fprintf(fp, *p == '"' || *p == '\\' ? "\\%c" : (unsigned char)*p < 0x20 ? " " : "%c", *p);
    fputc('"', fp);
}

static void deliver_webhook(struct alert_sender *a, const struct alert *inc, const char *state, const char *text,
                            int64_t now_ms)
{
    struct webhook_delivery *d = calloc(1, sizeof *d);
    char *body = NULL;
    size_t len = 0;
    FILE *fp = d ? open_memstream(&body, &len) : NULL;
    if (!fp || !(d->easy = curl_easy_init())) {
        if (fp)
            fclose(fp);
        free(body);
        free(d);
        log_error("alert %s: cannot prepare the webhook delivery", inc->rule);
        return;
    }
    char since[40], when[40];
    clock_format_ms(inc->since_ms, since, sizeof since);
    clock_format_ms(now_ms, when, sizeof when);
    fprintf(fp, "{\"source\": \"tidemark\"");
    json_append(fp, "text", text);
    json_append(fp, "state", state);
    json_append(fp, "alert", inc->rule);
    json_append(fp, "db", inc->db);
    json_append(fp, "replica", inc->replica);
    json_append(fp, "message", inc->message);
    json_append(fp, "since", since);
    json_append(fp, "time", when);
    fprintf(fp, "}");
    fclose(fp);
    d->owner = a;
    d->body = body;
    d->headers = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(d->rule, sizeof d->rule, "%s", inc->rule);
    ev_timer_init(&d->retry, on_webhook_retry, 0., 0.);
    d->retry.data = d;
    d->next = a->webhooks;
    a->webhooks = d;
    webhook_send(d);
}

/* ---------------------------------------------------------------- command */

static void command_free(struct command_run *c)
{
    for (struct command_run **p = &c->owner->commands; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    ev_child_stop(c->owner->loop, &c->child);
    ev_timer_stop(c->owner->loop, &c->deadline);
    free(c);
}

static void on_command_exit(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)loop;
    (void)revents;
    struct command_run *c = w->data;
    if (!WIFEXITED(w->rstatus) || WEXITSTATUS(w->rstatus) != 0)
        log_error("alert command '%s' failed (status %d)", c->owner->cfg->command,
                  WIFEXITED(w->rstatus) ? WEXITSTATUS(w->rstatus) : -1);
    command_free(c);
}

static void on_command_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct command_run *c = w->data;
    log_error("alert command '%s' still running after %.0f s: killed", c->owner->cfg->command, COMMAND_TIMEOUT_S);
    kill(c->child.pid, SIGKILL);   /* on_command_exit follows */
}

#define COMMAND_ENV_MAX 8

/* The command's whole environment (childenv.h): PATH, HOME and the
 * TIDEMARK_* variables alert.h documents. Returns the count of malloc'd
 * strings in env, or -1 when out of memory. */
static int command_env(const struct alert *inc, const char *state, char *env[COMMAND_ENV_MAX])
{
    const struct childenv_var vars[] = {
        {"TIDEMARK_ALERT", inc->rule}, {"TIDEMARK_DB", inc->db}, {"TIDEMARK_REPLICA", inc->replica},
        {"TIDEMARK_MESSAGE", inc->message}, {"TIDEMARK_STATE", state}};
    return childenv_build(vars, sizeof vars / sizeof *vars, env, COMMAND_ENV_MAX);
}

static void deliver_command(struct alert_sender *a, const struct alert *inc, const char *state)
{
    char *env[COMMAND_ENV_MAX];
    int env_count = command_env(inc, state, env);
    struct command_run *c = env_count >= 0 ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        childenv_free(env, env_count);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execle("/bin/sh", "sh", "-c", a->cfg->command, (char *)NULL, env);
        _exit(127);
    }
    childenv_free(env, env_count);
    if (pid < 0) {
        log_error("alert command: fork: %s", strerror(errno));
        free(c);
        return;
    }
    c->owner = a;
    ev_child_init(&c->child, on_command_exit, pid, 0);
    c->child.data = c;
    ev_child_start(a->loop, &c->child);
    ev_timer_init(&c->deadline, on_command_deadline, COMMAND_TIMEOUT_S, 0.);
    c->deadline.data = c;
    ev_timer_start(a->loop, &c->deadline);
    c->next = a->commands;
    a->commands = c;
}

/* ---------------------------------------------------------------- sender */

void alert_send(struct alert_sender *s, const struct alert *a, const char *state, int64_t now_ms)
{
    char text[1000];
    int resolved = strcmp(state, "resolved") == 0;
    snprintf(text, sizeof text, "[tidemark] %s %s: %s%s%s: %s", resolved ? "RESOLVED" : "FIRING", a->rule, a->db,
             a->replica[0] ? "/" : "", a->replica, a->message);
    log_event(resolved ? LOG_INFO : LOG_ERROR, a->db, a->replica[0] ? a->replica : NULL, "ALERT %s %s: %s", state,
              a->rule, a->message);
    if (s->cfg->webhook)
        deliver_webhook(s, a, state, text, now_ms);
    if (s->cfg->command)
        deliver_command(s, a, state);
}

int alert_sender_busy(const struct alert_sender *s)
{
    return s->webhooks || s->commands;
}

int alert_sender_new(struct ev_loop *loop, struct http_loop *hl, const struct config_alerts *cfg,
                     struct alert_sender **out, struct tm_error *err)
{
    struct alert_sender *s = calloc(1, sizeof *s);
    if (!s)
        return tm_error_setc(err, TM_ERR_NO_MEMORY, "out of memory");
    s->loop = loop;
    s->hl = hl;
    s->cfg = cfg;
    *out = s;
    return 0;
}

void alert_sender_free(struct alert_sender *s)
{
    if (!s)
        return;
    while (s->webhooks) {
        http_loop_cancel(s->hl, s->webhooks->easy);
        webhook_free(s->webhooks);
    }
    while (s->commands)
        command_free(s->commands);
    free(s);
}

static void on_notify_check(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    if (!alert_sender_busy(w->data))
        ev_break(loop, EVBREAK_ALL);
}

static void on_notify_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

void alert_notify(const struct config_alerts *cfg, const struct alert *a, double timeout_s)
{
    struct ev_loop *loop = ev_default_loop(0);
    struct http_loop *hl = NULL;
    struct alert_sender *s = NULL;
    struct tm_error err;
    if (!cfg->webhook && !cfg->command)
        return;
    if (http_loop_new(loop, &hl, &err) != 0 || alert_sender_new(loop, hl, cfg, &s, &err) != 0) {
        log_error("cannot send the alert: %s", err.msg);
        http_loop_free(hl);
        return;
    }
    alert_send(s, a, "firing", clock_now_ms());
    ev_timer check, timeout;
    ev_timer_init(&check, on_notify_check, 0.05, 0.05);
    check.data = s;
    ev_timer_start(loop, &check);
    ev_timer_init(&timeout, on_notify_timeout, timeout_s, 0.);
    ev_timer_start(loop, &timeout);
    ev_run(loop, 0);
    ev_timer_stop(loop, &check);
    ev_timer_stop(loop, &timeout);
    alert_sender_free(s);
    http_loop_free(hl);
}
