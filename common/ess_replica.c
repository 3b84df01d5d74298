/*
 * ess_replica -- replicas of one connector; see ess_replica.h for the design.
 *
 * Every statement is parameterised; partition sets travel as int[] literals
 * ("{0,5,9}") built from bit masks, never from outside input.
 */
#include "ess_replica.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/random.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ess_log.h"

#define REPLICA_TICK_MAX_MS 1000
#define REPLICA_LIVE_MAX 256
#define REPLICA_SET_TEXT (ESS_REPLICA_PARTS * 3 + 3) /* "{0,1,...,63}" */

struct ess_replica {
    char *connector;
    char *instance;
    long long live_ms;  /* 2 x heartbeat_sec: older stamps are dead */
    long long fence_ms; /* 1.5 x heartbeat_sec: stop dispatching without a stamp */
    long long tick_ms;
    long long next_tick_ms;
    long long last_ok_ms;                 /* monotonic time of the last successful stamp */
    long long next_poll_ms;               /* the next look for rows other replicas journaled */
    uint64_t owned;                       /* partitions this replica's window holds */
    uint64_t desired;                     /* what rendezvous hashing gives it at the last tick */
    long long offsets[ESS_REPLICA_PARTS]; /* of owned partitions, as claimed */
    long long retain_floor;
    long long replay_seen; /* the replay its offsets are in step with */
    int due;               /* ownership must change */
    int live_n;            /* live replicas at the last tick (for logs) */
};

/* ---- hashing ------------------------------------------------------------ */

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* splitmix64's finaliser: FNV's low bits are weak for short similar inputs. */
static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

unsigned ess_replica_part(const char *key)
{
    return (unsigned)(mix(fnv1a(0xcbf29ce484222325ULL, key, strlen(key))) % ESS_REPLICA_PARTS);
}

int ess_replica_owner(const char *const *live, size_t n, unsigned part)
{
    char tail[16];
    uint64_t best = 0, score;
    int owner = -1;
    size_t i;
    int len = snprintf(tail, sizeof(tail), "/%u", part);

    for (i = 0; i < n; i++) {
        score =
            mix(fnv1a(fnv1a(0xcbf29ce484222325ULL, live[i], strlen(live[i])), tail, (size_t)len));
        if (owner < 0 || score > best) {
            best = score;
            owner = (int)i;
        }
    }
    return owner;
}

/* ---- lifecycle ---------------------------------------------------------- */

int ess_replica_count(const struct ess_manifest *m)
{
    const char *env = getenv("ESS_REPLICAS");
    char *end = NULL;
    long n;

    if (env != NULL && *env != '\0') {
        errno = 0;
        n = strtol(env, &end, 10);
        if (errno == 0 && end != NULL && *end == '\0' && n >= 1 && n <= 64) {
            return (int)n;
        }
        ess_log_warn("ESS_REPLICAS='%s' is not a number 1..64; using the manifest's replicas: %d",
                     env, m->replicas);
    }
    return m->replicas;
}

/* "<instance>#<random>": unique even when two processes share an instance
 * name (ESS_INSTANCE set alike, pid 1 in two containers), which would let
 * both deliver the same keys. */
static char *replica_name(const char *instance)
{
    unsigned char rnd[4] = {0};
    char *name;
    size_t len = strlen(instance) + 10;

    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        uint64_t x = ((uint64_t)getpid() * 2654435761ULL) ^ (uint64_t)time(NULL);

        memcpy(rnd, &x, sizeof(rnd));
    }
    name = malloc(len);
    if (name != NULL) {
        snprintf(name, len, "%s#%02x%02x%02x%02x", instance, rnd[0], rnd[1], rnd[2], rnd[3]);
    }
    return name;
}

struct ess_replica *ess_replica_new(const char *connector, const char *instance, int heartbeat_sec)
{
    struct ess_replica *r = calloc(1, sizeof(*r));
    long long hb = (long long)(heartbeat_sec > 0 ? heartbeat_sec : 1) * 1000;

    if (r == NULL) {
        return NULL;
    }
    r->connector = strdup(connector);
    r->instance = replica_name(instance);
    if (r->connector == NULL || r->instance == NULL) {
        ess_replica_free(r);
        return NULL;
    }
    r->live_ms = 2 * hb;
    r->fence_ms = hb + hb / 2;
    r->tick_ms = hb / 3 < REPLICA_TICK_MAX_MS ? hb / 3 : REPLICA_TICK_MAX_MS;
    r->retain_floor = -1;
    return r;
}

void ess_replica_free(struct ess_replica *r)
{
    if (r == NULL) {
        return;
    }
    free(r->connector);
    free(r->instance);
    free(r);
}

/* ---- SQL ---------------------------------------------------------------- */

static int replica_fail(PGconn *c, PGresult *res, const char *what, struct ess_err *err)
{
    const char *msg = res != NULL ? PQresultErrorMessage(res) : NULL;

    if (msg == NULL || *msg == '\0') {
        msg = c != NULL ? PQerrorMessage(c) : "no connection";
    }
    ess_err_set(err, ESS_ESTORE, "postgres: replicas: %s: %.*s", what, (int)strcspn(msg, "\r\n"),
                msg);
    PQclear(res);
    return ESS_ESTORE;
}

/* Run sql with n text parameters; *out (may be NULL) gets the result. */
static int replica_exec(struct ess_store *s, const char *sql, int n, const char *const *vals,
                        const char *what, PGresult **out, struct ess_err *err)
{
    PGconn *c = ess_store_pg(s);
    PGresult *res;
    ExecStatusType st;

    if (c == NULL) {
        return ess_err_set(err, ESS_ESTORE, "postgres: replicas: %s: no connection", what);
    }
    res = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        return replica_fail(c, res, what, err);
    }
    if (out != NULL) {
        *out = res;
    } else {
        PQclear(res);
    }
    return ESS_OK;
}

static void set_text(uint64_t mask, char *buf, size_t len)
{
    size_t used = 1;
    unsigned i;

    buf[0] = '{';
    for (i = 0; i < ESS_REPLICA_PARTS && used + 4 < len; i++) {
        if (mask & (1ULL << i)) {
            used += (size_t)snprintf(buf + used, len - used, "%s%u", used > 1 ? "," : "", i);
        }
    }
    snprintf(buf + used, len - used, "}");
}

static int popcount64(uint64_t m)
{
    int n = 0;

    for (; m != 0; m &= m - 1) {
        n++;
    }
    return n;
}

/* ---- tick: stamp, who is live, who owns what ---------------------------- */

static int replica_stamp(struct ess_replica *r, struct ess_store *s, struct ess_err *err)
{
    const char *v[2] = {r->connector, r->instance};

    return replica_exec(s,
                        "INSERT INTO ess_replicas (connector, instance) VALUES ($1, $2)"
                        " ON CONFLICT (connector, instance) DO UPDATE SET heartbeat_at = now()",
                        2, v, "stamp", NULL, err);
}

/* The partition rows, created at the connector's single-worker offset the
 * first time any replica looks. */
static int replica_parts(struct ess_replica *r, struct ess_store *s, PGresult **res,
                         struct ess_err *err)
{
    const char *v[1] = {r->connector};
    int rc;

    rc = replica_exec(s,
                      "SELECT part, owner, delivered_seq FROM ess_partitions"
                      " WHERE connector = $1",
                      1, v, "read partitions", res, err);
    if (rc != ESS_OK || PQntuples(*res) == ESS_REPLICA_PARTS) {
        return rc;
    }
    PQclear(*res);
    *res = NULL;
    rc = replica_exec(s,
                      "INSERT INTO ess_partitions (connector, part, delivered_seq)"
                      " SELECT $1, g, COALESCE((SELECT delivered_seq FROM ess_offsets"
                      " WHERE connector = $1), 0) FROM generate_series(0, 63) AS g"
                      " ON CONFLICT (connector, part) DO NOTHING",
                      1, v, "create partitions", NULL, err);
    if (rc == ESS_OK) {
        rc = replica_exec(s,
                          "SELECT part, owner, delivered_seq FROM ess_partitions"
                          " WHERE connector = $1",
                          1, v, "read partitions", res, err);
    }
    return rc;
}

static int in_list(const PGresult *live, const char *who)
{
    int i;

    for (i = 0; i < PQntuples(live); i++) {
        if (strcmp(PQgetvalue(live, i, 0), who) == 0) {
            return 1;
        }
    }
    return 0;
}

static uint64_t replica_desired(const struct ess_replica *r, const PGresult *live)
{
    const char *names[REPLICA_LIVE_MAX];
    size_t n = 0;
    uint64_t mask = 0;
    unsigned p;
    int i, owner;

    for (i = 0; i < PQntuples(live) && n < REPLICA_LIVE_MAX; i++) {
        names[n++] = PQgetvalue(live, i, 0);
    }
    for (p = 0; p < ESS_REPLICA_PARTS; p++) {
        owner = ess_replica_owner(names, n, p);
        if (owner >= 0 && strcmp(names[owner], r->instance) == 0) {
            mask |= 1ULL << p;
        }
    }
    return mask;
}

/* Compare what the table says with what this replica holds and wants. */
static void replica_judge(struct ess_replica *r, const PGresult *live, const PGresult *parts)
{
    uint64_t mine = 0, claimable = 0, stolen;
    long long floor = -1, seq;
    const char *owner;
    unsigned p;
    int i;

    r->desired = replica_desired(r, live);
    r->live_n = PQntuples(live);
    for (i = 0; i < PQntuples(parts); i++) {
        p = (unsigned)strtoul(PQgetvalue(parts, i, 0), NULL, 10) % ESS_REPLICA_PARTS;
        owner = PQgetisnull(parts, i, 1) ? NULL : PQgetvalue(parts, i, 1);
        seq = strtoll(PQgetvalue(parts, i, 2), NULL, 10);
        floor = floor < 0 || seq < floor ? seq : floor;
        if (owner != NULL && strcmp(owner, r->instance) == 0) {
            mine |= 1ULL << p;
        }
        if (owner == NULL || strcmp(owner, r->instance) == 0 || !in_list(live, owner)) {
            claimable |= 1ULL << p;
        }
    }
    r->retain_floor = floor;
    stolen = r->owned & ~mine;
    if (stolen != 0 && !r->due) {
        ess_log_warn("replica %s lost %d partition(s) to another replica (its stamp was too "
                     "old?); rebalancing",
                     r->instance, popcount64(stolen));
    }
    if (stolen != 0 || (r->owned & ~r->desired) != 0 || (r->desired & ~r->owned & claimable) != 0) {
        r->due = 1;
    }
}

int ess_replica_tick(struct ess_replica *r, struct ess_store *s, long long now_ms,
                     struct ess_err *err)
{
    const char *v[2];
    char live_ms[24];
    PGresult *live = NULL;
    PGresult *parts = NULL;
    int rc;

    if (now_ms < r->next_tick_ms) {
        return ESS_OK;
    }
    r->next_tick_ms = now_ms + r->tick_ms;
    ess_store_journal_lock(s, 1);
    snprintf(live_ms, sizeof(live_ms), "%lld", r->live_ms);
    v[0] = r->connector;
    v[1] = live_ms;
    rc = replica_stamp(r, s, err);
    if (rc == ESS_OK) {
        rc = replica_exec(s,
                          "SELECT instance FROM ess_replicas WHERE connector = $1 AND"
                          " heartbeat_at > now() - $2::bigint * interval '1 millisecond'"
                          " ORDER BY instance",
                          2, v, "read live replicas", &live, err);
    }
    if (rc == ESS_OK) {
        rc = replica_parts(r, s, &parts, err);
    }
    if (rc == ESS_OK) {
        r->last_ok_ms = now_ms;
        replica_judge(r, live, parts);
    }
    PQclear(live);
    PQclear(parts);
    return rc;
}

int ess_replica_may_dispatch(const struct ess_replica *r, long long now_ms)
{
    return !r->due && r->last_ok_ms > 0 && now_ms - r->last_ok_ms < r->fence_ms;
}

int ess_replica_rebalance_due(const struct ess_replica *r)
{
    return r->due;
}

/* ---- rebalance, save, leave --------------------------------------------- */

static int replica_save_owned(struct ess_replica *r, struct ess_store *s, long long mark,
                              struct ess_err *err)
{
    char set[REPLICA_SET_TEXT];
    char seq[24];
    char seen[24];
    const char *v[5] = {r->connector, r->instance, seq, set, seen};

    if (r->owned == 0) {
        return ESS_OK;
    }
    set_text(r->owned, set, sizeof(set));
    snprintf(seq, sizeof(seq), "%lld", mark);
    snprintf(seen, sizeof(seen), "%lld", r->replay_seen);
    /* Never past a replay this replica has not rebuilt its window for: its
     * mark would undo the rewind (the share lock orders it with the apply). */
    return replica_exec(s,
                        "WITH ctl AS (SELECT replay_done_id FROM ess_controls"
                        " WHERE connector = $1 FOR SHARE)"
                        " UPDATE ess_partitions SET delivered_seq = GREATEST(delivered_seq,"
                        " $3::bigint), updated_at = now() WHERE connector = $1 AND owner = $2"
                        " AND part = ANY($4::int[]) AND NOT EXISTS (SELECT 1 FROM ctl"
                        " WHERE replay_done_id > $5::bigint)",
                        5, v, "save offsets", NULL, err);
}

/* res: rows (part, delivered_seq) this replica now owns. They become r->owned
 * and r->offsets; *floor = the lowest offset, or none when nothing is owned
 * (the window then wants no event). */
static void replica_take_owned(struct ess_replica *r, const PGresult *res, long long none,
                               long long *floor)
{
    unsigned p;
    int i;

    r->owned = 0;
    *floor = -1;
    for (i = 0; i < PQntuples(res); i++) {
        p = (unsigned)strtoul(PQgetvalue(res, i, 0), NULL, 10) % ESS_REPLICA_PARTS;
        r->owned |= 1ULL << p;
        r->offsets[p] = strtoll(PQgetvalue(res, i, 1), NULL, 10);
        *floor = *floor < 0 || r->offsets[p] < *floor ? r->offsets[p] : *floor;
    }
    if (*floor < 0) {
        *floor = none;
    }
}

/* Claim the wanted partitions that are free, keep those already ours; the
 * answer is every partition now ours, with its offset. */
static int replica_claim(struct ess_replica *r, struct ess_store *s, long long mark,
                         long long *floor, struct ess_err *err)
{
    char set[REPLICA_SET_TEXT];
    char live_ms[24];
    const char *v[4] = {r->connector, r->instance, set, live_ms};
    PGresult *res = NULL;
    int rc;

    set_text(r->desired, set, sizeof(set));
    snprintf(live_ms, sizeof(live_ms), "%lld", r->live_ms);
    rc = replica_exec(s,
                      "UPDATE ess_partitions SET owner = $2, updated_at = now()"
                      " WHERE connector = $1 AND part = ANY($3::int[]) AND (owner IS NULL OR"
                      " owner = $2 OR owner NOT IN (SELECT instance FROM ess_replicas WHERE"
                      " connector = $1 AND heartbeat_at > now() - $4::bigint * interval"
                      " '1 millisecond')) RETURNING part, delivered_seq",
                      4, v, "claim partitions", &res, err);
    if (rc != ESS_OK) {
        return rc;
    }
    replica_take_owned(r, res, mark, floor);
    PQclear(res);
    return ESS_OK;
}

int ess_replica_rebalance(struct ess_replica *r, struct ess_store *s, long long mark,
                          long long *floor, struct ess_err *err)
{
    char set[REPLICA_SET_TEXT];
    const char *v[3] = {r->connector, r->instance, set};
    uint64_t before = r->owned;
    int rc;

    rc = replica_save_owned(r, s, mark, err);
    if (rc == ESS_OK) {
        set_text(r->desired, set, sizeof(set));
        rc = replica_exec(s,
                          "UPDATE ess_partitions SET owner = NULL, updated_at = now()"
                          " WHERE connector = $1 AND owner = $2 AND NOT (part = ANY($3::int[]))",
                          3, v, "release partitions", NULL, err);
    }
    if (rc == ESS_OK) {
        rc = replica_claim(r, s, mark, floor, err);
    }
    if (rc == ESS_OK) { /* replicas killed long ago (a restart is a new instance) */
        rc = replica_exec(s,
                          "DELETE FROM ess_replicas WHERE connector = $1 AND heartbeat_at <"
                          " now() - interval '1 day'",
                          1, v, "forget old replicas", NULL, err);
    }
    if (rc != ESS_OK) {
        r->owned = 0; /* unsure what is ours: deliver nothing until the next try */
        return rc;
    }
    r->due = 0;
    ess_log_info("replica %s of %d live: delivers %d of %d key partitions (+%d -%d), from seq "
                 "%lld",
                 r->instance, r->live_n, popcount64(r->owned), ESS_REPLICA_PARTS,
                 popcount64(r->owned & ~before), popcount64(before & ~r->owned), *floor + 1);
    return ESS_OK;
}

int ess_replica_replay(struct ess_replica *r, struct ess_store *s, long long replay_id,
                       long long from, long long *floor, struct ess_err *err)
{
    char id[24], seq[24];
    const char *v[3] = {r->connector, id, seq};
    const char *mine[2] = {r->connector, r->instance};
    PGresult *res = NULL;
    int rc;

    snprintf(id, sizeof(id), "%lld", replay_id);
    snprintf(seq, sizeof(seq), "%lld", from);
    /* Exactly once over all replicas: the first to lock the controls row
     * applies it; the others find replay_done_id already there. The resume
     * point is the lowest offset before the rewind (past it nothing is
     * skipped, so nothing undelivered is lost). */
    rc = replica_exec(s,
                      "WITH c AS (UPDATE ess_controls SET replay_done_id = $2::bigint,"
                      " replay_resume_seq = (SELECT min(delivered_seq) FROM ess_partitions"
                      " WHERE connector = $1), updated_at = now() WHERE connector = $1"
                      " AND replay_done_id < $2::bigint RETURNING connector)"
                      " UPDATE ess_partitions SET delivered_seq = LEAST(delivered_seq,"
                      " $3::bigint), updated_at = now() WHERE connector = $1"
                      " AND EXISTS (SELECT 1 FROM c)",
                      3, v, "replay apply", NULL, err);
    if (rc == ESS_OK) {
        rc = replica_exec(s,
                          "SELECT part, delivered_seq FROM ess_partitions"
                          " WHERE connector = $1 AND owner = $2",
                          2, mine, "read owned offsets", &res, err);
    }
    if (rc != ESS_OK) {
        return rc;
    }
    replica_take_owned(r, res, from, floor);
    PQclear(res);
    r->replay_seen = replay_id;
    return ESS_OK;
}

long long ess_replica_replay_seen(const struct ess_replica *r)
{
    return r->replay_seen;
}

int ess_replica_wants(const struct ess_replica *r, const char *key, long long seq)
{
    unsigned p = ess_replica_part(key);

    return (r->owned & (1ULL << p)) != 0 && seq > r->offsets[p];
}

int ess_replica_owns_key(const struct ess_replica *r, const char *key)
{
    return (r->owned & (1ULL << ess_replica_part(key))) != 0;
}

int ess_replica_save(struct ess_replica *r, struct ess_store *s, long long mark,
                     struct ess_err *err)
{
    const char *v[1] = {r->connector};
    int rc = replica_save_owned(r, s, mark, err);

    if (rc == ESS_OK) {
        rc = replica_exec(s,
                          "INSERT INTO ess_offsets (connector, delivered_seq, updated_at)"
                          " SELECT $1, min(delivered_seq), now() FROM ess_partitions"
                          " WHERE connector = $1 HAVING count(*) > 0"
                          " ON CONFLICT (connector) DO UPDATE SET delivered_seq ="
                          " EXCLUDED.delivered_seq, updated_at = now()",
                          1, v, "save connector offset", NULL, err);
    }
    return rc;
}

long long ess_replica_retain_floor(const struct ess_replica *r)
{
    return r->retain_floor;
}

void ess_replica_leave(struct ess_replica *r, struct ess_store *s, long long mark)
{
    const char *v[2] = {r->connector, r->instance};
    struct ess_err err;

    ess_err_clear(&err);
    if (s == NULL || ess_replica_save(r, s, mark, &err) != ESS_OK ||
        replica_exec(s,
                     "UPDATE ess_partitions SET owner = NULL, updated_at = now()"
                     " WHERE connector = $1 AND owner = $2",
                     2, v, "release partitions", NULL, &err) != ESS_OK ||
        replica_exec(s, "DELETE FROM ess_replicas WHERE connector = $1 AND instance = $2", 2, v,
                     "unregister", NULL, &err) != ESS_OK) {
        ess_log_warn("replica %s could not hand its partitions over (%s); the others take "
                     "them when its stamp is 2 x heartbeat_sec old",
                     r->instance, err.code != ESS_OK ? err.msg : "no database");
        return;
    }
    r->owned = 0;
    ess_log_info("replica %s left; its partitions go to the others", r->instance);
}

int ess_replica_poll_due(struct ess_replica *r, long long now_ms)
{
    if (now_ms < r->next_poll_ms) {
        return 0;
    }
    r->next_poll_ms = now_ms + ESS_REPLICA_POLL_MS;
    return 1;
}

long long ess_replica_poll_in(const struct ess_replica *r, long long now_ms)
{
    return r->next_poll_ms > now_ms ? r->next_poll_ms - now_ms : 0;
}

int ess_replica_scan(uint64_t owned, int want)
{
    int n = popcount64(owned);
    long long scan;

    if (want <= 0) {
        return 0;
    }
    scan = n > 0 ? (long long)want * ESS_REPLICA_PARTS / n : (long long)want * ESS_REPLICA_SCAN_MAX;
    if (scan > (long long)want * ESS_REPLICA_SCAN_MAX) {
        scan = (long long)want * ESS_REPLICA_SCAN_MAX;
    }
    return scan > INT_MAX ? INT_MAX : (int)scan;
}

const char *ess_replica_name(const struct ess_replica *r)
{
    return r->instance;
}

uint64_t ess_replica_owned(const struct ess_replica *r)
{
    return r->owned;
}
