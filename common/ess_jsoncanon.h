/*
 * ess_jsoncanon -- is a JSON text already what jansson would write for it?
 *
 * The push worker renders an unshaped JSON event as
 * json_dumps(json_loads(text), JSON_COMPACT). For the common producer -- a
 * compact object of strings, integers, booleans and nulls -- that is the text
 * itself, and parsing and re-encoding it (two thirds of the render's CPU) only
 * proves it. This scanner proves it in one pass without allocating.
 *
 * DESIGN
 * - Conservative: 1 only when the text is certainly re-encoded byte for byte;
 *   0 whenever it is unsure, and the caller takes the jansson path. Accepted:
 *   an object at the top, no whitespace outside strings, integers (no leading
 *   zero, no "-0", at most 18 digits), true/false/null, strings whose escapes
 *   are the ones jansson writes itself (\" \\ \b \f \n \r \t) and whose other
 *   bytes are printable ASCII or valid UTF-8 (jansson's own rules: no overlong
 *   form, no surrogate, nothing past U+10FFFF), arrays, nested objects.
 * - Refused (0): reals (jansson writes %.17g), \u and \/ escapes (decoded and
 *   written back differently), duplicate keys in an object (the last value
 *   wins, at the first one's place), objects with more than
 *   ESS_JSONCANON_MAX_KEYS keys (the duplicate check stays a small
 *   quadratic), nesting deeper than ESS_JSONCANON_MAX_DEPTH, trailing bytes.
 * - Pure: no I/O, no allocation, no globals. ess-ut-jsoncanon checks the
 *   promise against jansson itself on tables and on random documents.
 */
#ifndef ESS_JSONCANON_H
#define ESS_JSONCANON_H

#include <stddef.h>

#define ESS_JSONCANON_MAX_KEYS 32
#define ESS_JSONCANON_MAX_DEPTH 16

/* 1: text (len bytes) is a JSON object and json_dumps(json_loadb(text, len,
 * 0), JSON_COMPACT) is exactly those len bytes; 0: not known to be. */
int ess_jsoncanon_compact(const char *text, size_t len);

/* In a text ess_jsoncanon_compact accepted: the raw JSON text of the member
 * at the dotted path ("permit.id": each segment a key of an object), 1 with
 * *val / *vlen set (a string value keeps its quotes); 0 when it is absent,
 * when the path goes through a non-object, or when a segment is empty or
 * holds a character a key would have to escape (the caller then asks
 * jansson). */
int ess_jsoncanon_member(const char *text, size_t len, const char *path, const char **val,
                         size_t *vlen);

#endif
