/*
 * ess_batch -- the file being built for a file-drop partner (ftp://, ftps://,
 * sftp://): rendered records appended in window order, the window items they
 * came from, and when the batch opened.
 *
 * DESIGN
 * A batch is OPEN while records are added; it is due when it holds batch_max
 * records or is batch_sec old. Sealing it fixes its file name (from the
 * manifest's template: {id} connector, {seq} first seq in the batch, {ts} UTC
 * yyyymmddThhmmssZ at sealing) and its bytes: a retried upload sends the same
 * records, in the same order, under the same name, so it replaces the partial
 * temporary file a failed attempt left. After the upload's result the caller
 * reset()s it for the next file.
 *
 * Records are joined as lines: one not ending in '\n' (json, xml, soap, form)
 * gets one. With csv.header every rendered record starts with the header line;
 * add() keeps it for the first record only.
 *
 * Ownership: the batch owns its buffer and name. The items are the caller's
 * (borrowed: window items that stay in flight until the batch's result), kept
 * as opaque pointers in the order added.
 */
#ifndef ESS_BATCH_H
#define ESS_BATCH_H

#include <stddef.h>
#include <time.h>

#include "ess_err.h"

struct ess_batch;

/* NULL when out of memory. Free with ess_batch_free (NULL is a no-op). */
struct ess_batch *ess_batch_new(void);
void ess_batch_free(struct ess_batch *b);

/* Append one rendered record (len bytes, copied) for item; seq is its journal
 * seq; now_ms (monotonic) opens the batch on the first record. strip_header: the
 * record starts with a csv header line, dropped unless it is the first record.
 * ESS_EINVAL when sealed, ESS_ENOMEM (the batch is unchanged). */
int ess_batch_add(struct ess_batch *b, void *item, long long seq, const char *rec, size_t len,
                  int strip_header, long long now_ms);

/* Index of item in an open or sealed batch, -1 when it holds none. */
long ess_batch_find(const struct ess_batch *b, const void *item);

/* Replace record i's line (a later change of the same key, merged) in an open
 * batch; the record keeps its place in the file. strip_header as for add.
 * ESS_EINVAL when sealed or i is out of range, ESS_ENOMEM (unchanged). */
int ess_batch_replace(struct ess_batch *b, size_t i, const char *rec, size_t len, int strip_header);

size_t ess_batch_count(const struct ess_batch *b);

/* The i-th item added (i < count). */
void *ess_batch_item(const struct ess_batch *b, size_t i);

/* ms until an open batch must go (0: now, it is full or old enough); -1 when
 * it is empty or sealed. */
long long ess_batch_due_ms(const struct ess_batch *b, size_t batch_max, long batch_sec,
                           long long now_ms);

/* Fix the file name from tmpl ("{id}-{seq}-{ts}.txt") at wall-clock time now.
 * Sealing a sealed batch keeps its name. ESS_EINVAL when empty or the name
 * would not fit (err says why). */
int ess_batch_seal(struct ess_batch *b, const char *tmpl, const char *id, time_t now,
                   struct ess_err *err);

int ess_batch_sealed(const struct ess_batch *b);

/* The sealed file name (static storage of the batch), "" before sealing. */
const char *ess_batch_name(const struct ess_batch *b);

/* A malloc'd copy of the file's bytes (the uploader takes such a copy over);
 * NULL when out of memory. *len its length. */
char *ess_batch_body(const struct ess_batch *b, size_t *len);

/* Empty and open again, for the next file. */
void ess_batch_reset(struct ess_batch *b);

/* Expand a file name template: {id}, {seq}, {ts} (UTC yyyymmddThhmmssZ).
 * ESS_EINVAL when out does not hold it or a brace is not one of these. */
int ess_batch_file_name(const char *tmpl, const char *id, long long seq, time_t ts, char *out,
                        size_t outlen);

#endif
