/* names.c - escaping database names into one object-key component
 * (format and reasons in names.h). */
#include "names.h"

#include <string.h>

static int is_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

int names_escape(const char *name, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        size_t need = is_plain(*p) ? 1 : 3;
        if (used + need >= len)
            return -1;
        if (need == 1) {
            out[used++] = (char)*p;
        } else {
            out[used++] = '%';
            out[used++] = hex[*p >> 4];
            out[used++] = hex[*p & 15];
        }
    }
    if (len == 0)
        return -1;
    out[used] = '\0';
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int names_unescape(const char *component, char *out, size_t len)
{
    size_t used = 0;
    if (!component[0] || component[0] == '.')
        return -1;
    for (const char *p = component; *p; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            int high = hex_value(p[1]), low = high < 0 ? -1 : hex_value(p[2]);
            if (low < 0)
                return -1;
            c = high * 16 + low;
            if (c == 0 || is_plain((unsigned char)c))
                return -1;   /* not the one way names_escape writes it */
            p += 2;
        } else if (!is_plain((unsigned char)c)) {
            return -1;
        }
        if (used + 1 >= len)
            return -1;
        out[used++] = (char)c;
    }
    out[used] = '\0';
    return 0;
}

int names_is_glob(const char *pattern)
{
    return strpbrk(pattern, "*?[") != NULL;
}
