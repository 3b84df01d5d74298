/*
 * ess_records -- reading the records a partner sends: a page that ess-pull
 * fetched (a JSON array, the array at a dotted records path, or RFC 4180 CSV
 * with a header row) and the body of a request ess-webhook received (one JSON
 * object or a non-empty array of them).
 *
 * Pure functions of their input (no I/O, no globals), so the same code is
 * unit-tested, fuzzed (fuzz/fuzz_records.c, fuzz/fuzz_webhook.c) and run by
 * the workers. Every input is hostile: any byte sequence gives either records
 * or an error with a one-line reason, never a crash.
 */
#ifndef ESS_RECORDS_H
#define ESS_RECORDS_H

#include <stddef.h>

#include <jansson.h>

#include "ess_err.h"

/* CSV with a header row: every following line becomes one object (header
 * name -> string value) appended to out (borrowed, an array). Blank lines are
 * skipped. ESS_EPARTNER on an unterminated quote or a line whose field count
 * differs from the header's; records appended before the error stay in out. */
int ess_records_csv(const char *s, size_t n, json_t *out, struct ess_err *err);

/* A JSON answer: its top level (records_path NULL) or the array at the dotted
 * records_path is appended to out. *next (may be NULL) receives a malloc'd
 * copy of the non-empty string at next_path (NULL when none). ESS_EPARTNER
 * when the answer is not JSON or holds no records array there. */
int ess_records_json(const char *s, size_t n, const char *records_path, const char *next_path,
                     json_t *out, char **next, struct ess_err *err);

/* A webhook body: one JSON object or a non-empty array. *records is a new
 * array reference (caller json_decref()s) or NULL with ESS_EPARSE and the
 * reason (JSON error with line and column) in err. Duplicate keys are refused.
 * Elements are not checked to be objects (the caller names the bad record). */
int ess_records_body(const char *s, size_t n, json_t **records, struct ess_err *err);

/* A record's scalar as text into buf (always NUL-terminated; a longer one is
 * cut): a string as is, an integer in decimal, a real with %.17g, a boolean as
 * true/false, so "40" and 40 compare equal as text. 0 for null, an object or
 * an array (buf untouched). */
int ess_records_scalar_text(const json_t *v, char *buf, size_t len);

#endif
