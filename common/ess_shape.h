/*
 * ess_shape -- from an event's data to the partner's body, as the manifest says.
 *
 * Order (documented in the README): include filter `fields` (dotted paths; the
 * result keeps the nesting of the path), then `drop` (dotted paths), then `values`
 * code maps (looked up by the SOURCE field name, string or number values as
 * text; a value not in the map is left as is), then `rename` (source name ->
 * partner name; dotted source paths are renamed to a top-level partner name),
 * then render in the manifest's `format`.
 *
 * The shaper is a pure function of (manifest, data): no I/O, no globals, so it is
 * unit-tested as tables and reused by `hms ess render`.
 */
#ifndef ESS_SHAPE_H
#define ESS_SHAPE_H

#include <stddef.h>

#include <jansson.h>

#include "ess_err.h"
#include "ess_manifest.h"

/* Apply filter/drop/values/rename. data is borrowed and not modified; *out is
 * a new reference the caller json_decref()s. ESS_ESHAPE with a reason when a
 * value cannot be converted (the event is then parked with that reason). */
int ess_shape_apply(const struct ess_manifest *m, json_t *data, json_t **out,
                    struct ess_err *err);

/* Render shaped data as the partner body. *body is malloc'd (caller frees),
 * *len its length, *content_type a static string. Only json is implemented in
 * this module today; other formats return ESS_EINVAL. */
int ess_shape_render(const struct ess_manifest *m, json_t *shaped, char **body, size_t *len,
                     const char **content_type, struct ess_err *err);

#endif
