/*
 * ess_text -- small text helpers several shapers need: UTF-8 code point
 * counting and offsets (a fixed-width column or a truncate counts characters,
 * not bytes). No allocation, no locale.
 */
#ifndef ESS_TEXT_H
#define ESS_TEXT_H

#include <stddef.h>

/* Number of UTF-8 code points in s (continuation bytes are not counted). */
size_t ess_text_utf8_len(const char *s);

/* Byte offset of code point number cp in s (strlen(s) when s is shorter). */
size_t ess_text_utf8_offset(const char *s, size_t cp);

#endif
