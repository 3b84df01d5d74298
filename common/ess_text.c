/*
 * ess_text -- UTF-8 counting; see ess_text.h.
 */
#include "ess_text.h"

size_t ess_text_utf8_len(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        n += ((unsigned char)*s & 0xC0) != 0x80;
    }
    return n;
}

size_t ess_text_utf8_offset(const char *s, size_t cp)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (cp == 0) {
                return i;
            }
            cp--;
        }
    }
    return i;
}
