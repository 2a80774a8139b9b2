/* status_render.h - `tidemark status`'s output: text readable at a glance
 * (one block per database, a line per replica, colours on request) or
 * the JSON documented in docs/monitoring.md ("tidemark status"). Pure
 * functions of the list and the time, for the command and for tests. */
#ifndef TM_STATUS_RENDER_H
#define TM_STATUS_RENDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status_wire.h"

/* 1 when db is protected right now: a running sidecar follows it and
 * every replica is healthy. */
int status_db_protected(const struct status_db *db);

/* 1 when every database of list is protected (and no entry lacks a sidecar). */
int status_list_protected(const struct status_list *list);

/* A duration for people: "850 ms", "12.3 s", "4 min 10 s", "3 h 5 min", "2 d 4 h". */
void status_format_duration(int64_t ms, char *out, size_t len);

void status_render_text(const struct status_list *list, int64_t now_ms, int color, FILE *out);
void status_render_json(const struct status_list *list, int64_t now_ms, FILE *out);

#endif
