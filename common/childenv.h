/* childenv.h - the whole environment of a command tidemark runs for the
 * operator (an alert command, a drill's `after` command): PATH and HOME,
 * then the command's own TIDEMARK_* variables, nothing inherited: the
 * sidecar's environment holds AWS credentials and the like. Built before
 * fork, so that the child only execs. */
#ifndef TM_CHILDENV_H
#define TM_CHILDENV_H

#include <stddef.h>

struct childenv_var {
    const char *name;
    const char *value;   /* NULL: left out */
};

/* Fills env with malloc'd "NAME=value" strings, NULL-ended: PATH (the
 * sidecar's, or a standard one), HOME (when set), then vars. `max` counts
 * the entries of env, the NULL included. Returns how many strings were
 * made, or -1 when out of memory or over max (nothing left allocated). */
int childenv_build(const struct childenv_var *vars, size_t count, char **env, size_t max);

/* Frees the strings childenv_build made. */
void childenv_free(char **env, int count);

#endif
