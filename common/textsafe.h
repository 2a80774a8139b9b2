/* textsafe.h - names from the bucket made safe to show on a terminal.
 *
 * A database name found under a `dir:` entry, an object key or a message
 * naming one can hold any byte (names.h): "%1B[2J%0A" in a planted key is
 * an escape sequence and a newline once unescaped. Text output shows every
 * control character (C0, DEL, and C1 as UTF-8 U+0080..U+009F, which some
 * terminals obey too) as \xHH, so a name cannot move the cursor, clear the
 * screen or start a fake line. Other bytes, UTF-8 included, are kept.
 * JSON output escapes with json_write_string instead. */
#ifndef TM_TEXTSAFE_H
#define TM_TEXTSAFE_H

#include <stddef.h>
#include <stdio.h>

/* `text` escaped into out (cut to fit len, always NUL-terminated);
 * returns out, for printf arguments. */
const char *textsafe(const char *text, char *out, size_t len);

/* `text` escaped, written to `out`. */
void textsafe_print(FILE *out, const char *text);

#endif
