/* textsafe.c - control characters shown as \xHH in text output (textsafe.h). */
#include "textsafe.h"

#include <string.h>

/* Bytes of the control character at p (0: none). */
static size_t control_at(const unsigned char *p)
{
    if (*p < 0x20 || *p == 0x7f)
        return 1;
    if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)   /* C1, UTF-8 encoded */
        return 2;
    return 0;
}

const char *textsafe(const char *text, char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t used = 0;
    if (len == 0)
        return out;
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        size_t control = control_at(p);
        if (!control) {
            if (used + 1 >= len)
                break;
            out[used++] = (char)*p++;
            continue;
        }
        if (used + 4 * control >= len)
            break;
        for (size_t i = 0; i < control; i++, p++) {
            memcpy(out + used, "\\x", 2);
            out[used + 2] = hex[*p >> 4];
            out[used + 3] = hex[*p & 15];
            used += 4;
        }
    }
    out[used] = '\0';
    return out;
}

void textsafe_print(FILE *out, const char *text)
{
    char chunk[256];
    for (const char *p = text; *p;) {
        /* whole characters per chunk: at most 63 input bytes, 4 out each */
        char part[64];
        size_t take = strnlen(p, sizeof part - 1);
        if (take == sizeof part - 1 && (unsigned char)p[take - 1] == 0xc2)
            take--;   /* keep a C1 pair together */
        memcpy(part, p, take);
        part[take] = '\0';
        fputs(textsafe(part, chunk, sizeof chunk), out);
        p += take;
    }
}
