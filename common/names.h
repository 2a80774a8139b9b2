/* names.h - database names as they appear in object keys.
 *
 * A configured database's name is letters, digits, '-', '_' and '.', and
 * is its own key component. A database found under a `dir:` entry is
 * named ENTRY/RELATIVE-PATH, which may hold '/', spaces or any byte a
 * file name can; its key component escapes every byte outside
 * [A-Za-z0-9._-] as %XX (upper-case hex), so that "tenants/a b.db" is
 * stored under "tenants%2Fa%20b.db/generations/...": one component, no
 * '/' and no ".." that could leave the replica's root, and no escaped
 * name equal to a configured one (those hold no '%'). */
#ifndef TM_NAMES_H
#define TM_NAMES_H

#include <stddef.h>

/* The key component of database `name`; -1 if it does not fit in len. */
int names_escape(const char *name, char *out, size_t len);

/* The database name a key component stands for; -1 if `component` is not
 * one names_escape writes (so it is not a database's). */
int names_unescape(const char *component, char *out, size_t len);

/* Whether `pattern` holds glob characters (*, ?, [). */
int names_is_glob(const char *pattern);

#endif
