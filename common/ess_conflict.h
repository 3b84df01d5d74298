/*
 * ess_conflict -- which side wins when HMS and a partner changed the same
 * record: the decision only, as pure functions of (rule, versions). The
 * reverse workers (ess-pull, ess-webhook) load the versions from Postgres
 * (ess_store_conflict_*), call ess_conflict_resolve before publishing a
 * partner change, and record and announce what it says lost.
 *
 * DESIGN
 * Per key ESS knows HMS's last change H (what the push worker journaled, and
 * when: th) and the partner's previous version P0 (and when: tp0). A new
 * partner version P arrives at tp. Per top-level field f of P (not the key,
 * not the updated_at field) whose value differs from H[f]:
 *   - the partner did not touch f (P0[f] == P[f]): P carries a stale value (or
 *     one that lost before); HMS's value stands, nothing is recorded;
 *   - the partner changed f and HMS was quiet since P0 (th <= tp0): a plain
 *     partner edit, it passes;
 *   - the partner changed f and so did HMS (th > tp0, or no P0 is known): a
 *     conflict. The field's strategy (conflict.fields, else
 *     conflict.strategy) picks the winner: master_always_wins HMS;
 *     last_write_wins the later of th and tp; first_write_wins the earlier;
 *     a tie goes to HMS (the platform). The loser is one entry of *losses.
 * Fields HMS never had, and fields equal on both sides (an echo of HMS's own
 * change coming back), are never conflicts. Values compare as JSON. Because
 * what is published becomes HMS's state (ess_twoway records it so), a value
 * that lost stays lost when the partner later edits another field.
 * Times are epoch milliseconds: ess_conflict_time reads the updated_at field
 * (ISO 8601 with an offset or Z, or epoch seconds / milliseconds).
 */
#ifndef ESS_CONFLICT_H
#define ESS_CONFLICT_H

#include <jansson.h>

#include "ess_err.h"
#include "ess_manifest.h"

struct ess_conflict_side { /* one version of a record; borrowed */
    json_t *rec;           /* object in HMS names; NULL: no such version */
    long long ms;          /* its change time, epoch ms */
};

/* "last_write_wins" ... for a strategy; "?" out of range. Static string. */
const char *ess_conflict_strategy_name(enum ess_conflict_strategy s);

/* The strategy of field (conflict.fields, else conflict.strategy). */
enum ess_conflict_strategy ess_conflict_strategy_of(const struct ess_conflict_rule *r,
                                                    const char *field);

/* The change time of rec from r->updated_at_field (a string in ISO 8601
 * "YYYY-MM-DD[T ]hh:mm:ss[.fff](Z|+hh:mm|-hh:mm)", or a date "YYYY-MM-DD" as
 * UTC midnight, or a number: epoch seconds below 10^11, else milliseconds).
 * 1 with *ms set, 0 when the field is absent or unreadable. */
int ess_conflict_time(const struct ess_conflict_rule *r, json_t *rec, long long *ms);

/* Decide partner version `partner` against HMS's last change `hms` and the
 * partner's previous version `prev` (either may have rec NULL). *resolved
 * gets a new object: partner with every field HMS keeps set to HMS's value.
 * *losses gets a new array of {field, strategy, winner ("hms"|"partner"),
 * winner_value, loser_value} (empty when nothing conflicted). key_field is
 * never compared. Both outputs are the caller's to json_decref. ESS_EINVAL
 * when partner->rec is not an object; ESS_ENOMEM. */
int ess_conflict_resolve(const struct ess_conflict_rule *r, const char *key_field,
                         const struct ess_conflict_side *hms, const struct ess_conflict_side *prev,
                         const struct ess_conflict_side *partner, json_t **resolved,
                         json_t **losses, struct ess_err *err);

#endif
