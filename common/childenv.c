/* childenv.c - the minimal environment of the commands tidemark runs for
 * the operator (childenv.h). */
#include "childenv.h"

#include <stdio.h>
#include <stdlib.h>

static int add(char **env, int *count, size_t max, const char *name, const char *value)
{
    if (!value)
        return 0;
    if ((size_t)*count + 1 >= max || asprintf(&env[*count], "%s=%s", name, value) < 0)
        return -1;
    (*count)++;
    return 0;
}

int childenv_build(const struct childenv_var *vars, size_t var_count, char **env, size_t max)
{
    const char *path = getenv("PATH"), *home = getenv("HOME");
    int count = 0;
    int rc = add(env, &count, max, "PATH", path && path[0] ? path : "/usr/local/bin:/usr/bin:/bin");
    if (rc == 0)
        rc = add(env, &count, max, "HOME", home);
    for (size_t i = 0; rc == 0 && i < var_count; i++)
        rc = add(env, &count, max, vars[i].name, vars[i].value);
    if (rc != 0) {
        childenv_free(env, count);
        return -1;
    }
    env[count] = NULL;
    return count;
}

void childenv_free(char **env, int count)
{
    while (count > 0)
        free(env[--count]);
}
