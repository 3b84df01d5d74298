/*
 * ess_event -- turn a message body from hms.events into an event: the record
 * to shape, its key and its id.
 *
 * Bodies are plain JSON objects, or CloudEvents 1.0 in structured mode
 * (an object with "specversion" and "data"): shaping then applies to "data".
 * The event id is, in order: the CloudEvents "id", the AMQP message_id, the
 * body's "event_id", else the hex SHA-256 of key + "\n" + body (so a re-sent
 * identical message dedupes).
 *
 * A body that is not JSON, not an object, whose CloudEvents data is not an
 * object, or that lacks the key is ESS_EPARSE with a one-line reason; the worker
 * dead-letters it and carries on.
 */
#ifndef ESS_EVENT_H
#define ESS_EVENT_H

#include <stddef.h>

#include <jansson.h>

#include "ess_err.h"

struct ess_event {
    json_t *root;      /* owned: the whole parsed body */
    json_t *data;      /* borrowed from root: what shaping applies to */
    char *id;          /* owned, NUL-terminated */
    char *key;         /* owned: key value as text (numbers printed in decimal) */
    int cloudevent;    /* 1 when the body was a CloudEvent */
    long long time_ms; /* CloudEvents "time" as epoch ms, else 0 */
};

/* Parse body (not necessarily NUL-terminated). message_id may be NULL or "".
 * key_path is a dotted path into data ("permit.id"). On success ev is filled
 * (release with ess_event_fini); on failure ev is zeroed and nothing is owned. */
int ess_event_parse(const char *body, size_t len, const char *message_id, const char *key_path,
                    struct ess_event *ev, struct ess_err *err);

/* ess_event_parse for a worker that needs only the id and the key: a compact,
 * canonical plain object (ess_jsoncanon.h) with a message_id and its key a
 * string without escapes or an integer is read in one pass without building
 * it -- ev->root and ev->data are then NULL; anything else (a CloudEvent,
 * no message_id, an error to report) is parsed by ess_event_parse. The id,
 * key and outcome are the same either way. */
int ess_event_identify(const char *body, size_t len, const char *message_id, const char *key_path,
                       struct ess_event *ev, struct ess_err *err);

void ess_event_fini(struct ess_event *ev);

/* Look up a dotted path ("a.b.c") in an object. Borrowed result or NULL. */
json_t *ess_event_path_get(json_t *obj, const char *path);

#endif
