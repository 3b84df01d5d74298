/*
 * ess_transform -- the manifest's `transforms:` block: a closed, declarative set
 * of per-field value conversions, compiled once at load time and applied to
 * every event by ess_shape.
 *
 * A field's spec is one step or a list of steps applied in order:
 *   issued_on: {date: {from: "%Y-%m-%d", to: "%m/%d/%Y"}}
 *   name: [trim, upper, {truncate: {length: 20}}]
 * A step is a bare word (upper, lower, trim) or a mapping with ONE key, the step
 * name, whose value holds its arguments:
 *   date {from, to}          strptime / strftime formats; "iso8601" is built in
 *                            for both (in: YYYY-MM-DD[THH:MM[:SS[.frac]]][Z|+HH:MM],
 *                            out: YYYY-MM-DDTHH:MM:SS). Wall-clock only: a zone
 *                            designator in the input is accepted, not applied.
 *   tz {from, to, format}    the same instant moved from IANA zone `from` to `to`;
 *                            format (default iso8601) reads and writes the text;
 *                            iso8601 output carries the offset (Z or +HH:MM); an
 *                            input offset wins over `from`; a wall-clock time that
 *                            does not exist in `from` (DST gap) is an error.
 *   upper, lower             ASCII letters only (locale-independent)
 *   trim                     ASCII white space at both ends
 *   truncate {length}        keep the first `length` characters (UTF-8 code points)
 *   pad {width, char, align} pad to `width` characters with `char` (default " "),
 *                            align left (default: pad on the right) or right
 *   default {value}          when the field is missing or null
 *   const {value}            always
 *   concat {fields, sep}     the listed fields' texts joined by sep (default ""),
 *                            missing and null fields skipped
 *   map {FROM: TO, ...}      like `values`, compared as text, unmapped left as is
 * Text steps read strings, integers, reals and booleans as text and produce a
 * string; a missing or null value passes through them untouched; an object or
 * array is an error.
 *
 * DESIGN
 * - Validated once: ess_transform_new rejects an unknown step, a missing or
 *   unknown argument, a bad number, a bad strftime conversion or an unknown zone
 *   (checked against the tz database files), so the manifest parser reports it at
 *   load time with the YAML position. Applying never meets a malformed spec.
 * - Pure per event (no I/O) except tz, which switches the process TZ for the
 *   duration of one conversion (setenv/tzset + mktime/localtime_r) and restores
 *   it: glibc has no per-zone API. Workers are single-threaded; do not call tz
 *   transforms from several threads at once.
 * - Errors at apply time are ESS_ESHAPE with a reason the worker parks the event
 *   with: "transforms.issued_on: '2026-13-45' does not match %Y-%m-%d".
 */
#ifndef ESS_TRANSFORM_H
#define ESS_TRANSFORM_H

#include <stddef.h>

#include <jansson.h>

#include "ess_err.h"

struct ess_transform; /* one field's compiled chain of steps (opaque) */

/* Compile field's spec (borrowed; strings, or integers for numbers). On success
 * *out is a heap object the caller frees with ess_transform_free. On failure
 * *out is NULL, err holds the reason WITHOUT the "transforms.FIELD: " prefix
 * (the caller positions and prefixes it) and *bad_step (may be NULL) is the index
 * of the offending step in a list spec, or -1 when the spec as a whole is wrong.
 * Returns ESS_OK, ESS_EMANIFEST or ESS_ENOMEM. */
int ess_transform_new(const char *field, const json_t *spec, struct ess_transform **out,
                      int *bad_step, struct ess_err *err);

/* NULL is a no-op. */
void ess_transform_free(struct ess_transform *t);

/* The source field (dotted path) the chain applies to; lives as long as t. */
const char *ess_transform_field(const struct ess_transform *t);

/* Run the chain on value (borrowed; NULL when the field is missing). record
 * (borrowed) is read by concat. *out is a new reference, or NULL when the field
 * stays missing. ESS_ESHAPE (reason in err) when a value cannot be converted. */
int ess_transform_apply(const struct ess_transform *t, const json_t *record, json_t *value,
                        json_t **out, struct ess_err *err);

#endif
