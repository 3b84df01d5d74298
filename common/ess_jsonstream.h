/*
 * ess_jsonstream -- a top-level JSON array split into its elements as bytes
 * arrive, so a listing of a million records is read with one record in
 * memory, not the whole document. Only the array's structure is tracked
 * (depth, strings and their escapes); each element's text is handed to the
 * callback, which parses it with jansson. It is not a JSON parser: a
 * malformed element reaches the callback as is, and jansson says what is wrong.
 *
 * Ownership: the text passed to the callback is borrowed for the call only.
 */
#ifndef ESS_JSONSTREAM_H
#define ESS_JSONSTREAM_H

#include <stddef.h>

#include "ess_err.h"

#define ESS_JSONSTREAM_ELEMENT_MAX (16u * 1024 * 1024) /* one record; larger is garbage */

struct ess_jsonstream;

/* Called per element, in order, with its text (NUL-terminated, surrounding
 * whitespace removed) and its 0-based index; a non-ESS_OK return stops the
 * stream and is returned by ess_jsonstream_feed. */
typedef int (*ess_jsonstream_fn)(void *arg, const char *text, size_t len, size_t index);

/* NULL when out of memory. _free(NULL) is a no-op. */
struct ess_jsonstream *ess_jsonstream_new(ess_jsonstream_fn cb, void *arg);
void ess_jsonstream_free(struct ess_jsonstream *js);

/* Feed the next bytes. ESS_EPARSE with the byte offset when the document is
 * not an array, an element exceeds ESS_JSONSTREAM_ELEMENT_MAX, or something
 * follows the closing bracket; the callback's code when it stopped. */
int ess_jsonstream_feed(struct ess_jsonstream *js, const char *data, size_t len,
                        struct ess_err *err);

/* After the last byte: ESS_EPARSE unless the array was closed. */
int ess_jsonstream_finish(struct ess_jsonstream *js, struct ess_err *err);

/* Elements handed to the callback so far. */
size_t ess_jsonstream_count(const struct ess_jsonstream *js);

#endif
