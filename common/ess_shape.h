/*
 * ess_shape -- from an event's data to the partner's body, as the manifest says.
 *
 * Order (documented in the README):
 *   1. fields      include filter (dotted paths; the result keeps their nesting)
 *   2. drop        exclude filter (dotted paths)
 *   3. transforms  per field, on the SOURCE names, in manifest order; each field's
 *                  steps in the order written (ess_transform.h); concat reads the
 *                  record as earlier transforms left it
 *   4. values      code maps, looked up by the SOURCE field name (string, integer
 *                  or boolean values as text; a value not in the map is left as is)
 *   5. rename      source name -> partner name (dotted sources become top level)
 *   6. render      in the manifest's `format` (ess_render.h)
 * A value a transform cannot convert is ESS_ESHAPE with the reason, e.g.
 * "transforms.issued_on: '2026-13-45' does not match %Y-%m-%d", and the worker
 * parks the event with it.
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

/* Apply fields/drop/transforms/values/rename. data is borrowed and not modified; *out is
 * a new reference the caller json_decref()s. ESS_ESHAPE with a reason when a
 * value cannot be converted (the event is then parked with that reason). */
int ess_shape_apply(const struct ess_manifest *m, json_t *data, json_t **out, struct ess_err *err);

/* Render shaped data as the partner body: ess_render_body (ess_render.h, every
 * format). *body is malloc'd (caller frees), *len its length, *content_type a
 * static string. ESS_ESHAPE (parks the event) when a value cannot be written in
 * the format, with a reason naming the field. */
int ess_shape_render(const struct ess_manifest *m, json_t *shaped, char **body, size_t *len,
                     const char **content_type, struct ess_err *err);

/* Shape and render an event's JSON text in one step when shaping changes
 * nothing (no fields/drop/transforms/values/rename) and the text already is
 * the body (ess_render_json_text): the same bytes as parsing it and calling
 * ess_shape_apply + ess_shape_render, without the parse. ESS_ENOTFOUND when
 * the shortcut does not apply (take the long way), ESS_ENOMEM. */
int ess_shape_render_text(const struct ess_manifest *m, const char *text, size_t len, char **body,
                          size_t *blen, const char **content_type);

/* The way back, for records a partner sends (ess-pull, ess-webhook): inverse
 * `rename` (partner name -> source name, dotted sources re-nested), then
 * inverse `values` (partner code -> HMS code, looked up by the source field;
 * when several codes map to one, the first written wins; unknown codes are
 * left as they are). fields/drop/transforms are not inverted (they lose
 * information). record is borrowed and not modified; *out is a new object the
 * caller json_decref()s. ESS_EINVAL when record is not an object, ESS_ESHAPE
 * when a code-mapped field holds an array, object or real. */
int ess_shape_inverse(const struct ess_manifest *m, json_t *record, json_t **out,
                      struct ess_err *err);

#endif
