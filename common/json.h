/* json.h - writing a JSON string value: the one escaping every JSON
 * output of tidemark uses (list, verify, retention, drill, /healthz). Names
 * of a directory's databases can hold any byte a file name can. */
#ifndef TM_JSON_H
#define TM_JSON_H

#include <stdio.h>

/* "text" with '"', '\\' and control characters escaped. */
void json_write_string(FILE *out, const char *text);

#endif
