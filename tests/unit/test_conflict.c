/*
 * test_conflict -- the conflict decision (ess_conflict.h) as a table: each
 * strategy, per-field overrides, echoes, stale partner values, plain partner
 * edits; the time parser; the manifest block's validation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ess_conflict.h"
#include "ess_manifest.h"

struct rcase {
    const char *name;
    const char *conflict; /* the manifest's conflict block (flow YAML) */
    const char *hms;      /* JSON or NULL */
    long long hms_ms;
    const char *prev; /* JSON or NULL */
    long long prev_ms;
    const char *partner;
    long long partner_ms;
    const char *resolved; /* expected JSON */
    const char *losses;   /* expected JSON array */
};

#define LWW "{strategy: last_write_wins}"
#define MAW "{strategy: master_always_wins}"
#define FWW "{strategy: first_write_wins}"

static const struct rcase rcases[] = {
    {"lww: the partner's later change wins, HMS's value is the loser", LWW,
     "{\"id\":\"S1\",\"status\":\"open\"}", 2000, "{\"id\":\"S1\",\"status\":\"new\"}", 1000,
     "{\"id\":\"S1\",\"status\":\"closed\"}", 3000, "{\"id\":\"S1\",\"status\":\"closed\"}",
     "[{\"field\":\"status\",\"strategy\":\"last_write_wins\",\"winner\":\"partner\","
     "\"winner_value\":\"closed\",\"loser_value\":\"open\"}]"},
    {"lww: HMS's later change wins, the partner's value is the loser", LWW,
     "{\"id\":\"S1\",\"status\":\"open\"}", 3000, NULL, 0, "{\"id\":\"S1\",\"status\":\"closed\"}",
     2000, "{\"id\":\"S1\",\"status\":\"open\"}",
     "[{\"field\":\"status\",\"strategy\":\"last_write_wins\",\"winner\":\"hms\","
     "\"winner_value\":\"open\",\"loser_value\":\"closed\"}]"},
    {"lww: a tie goes to HMS", LWW, "{\"id\":\"S1\",\"n\":1}", 5000, NULL, 0,
     "{\"id\":\"S1\",\"n\":2}", 5000, "{\"id\":\"S1\",\"n\":1}",
     "[{\"field\":\"n\",\"strategy\":\"last_write_wins\",\"winner\":\"hms\","
     "\"winner_value\":1,\"loser_value\":2}]"},
    {"master: HMS wins although the partner wrote later", MAW,
     "{\"id\":\"S1\",\"status\":\"open\"}", 1000, NULL, 0, "{\"id\":\"S1\",\"status\":\"closed\"}",
     9000, "{\"id\":\"S1\",\"status\":\"open\"}",
     "[{\"field\":\"status\",\"strategy\":\"master_always_wins\",\"winner\":\"hms\","
     "\"winner_value\":\"open\",\"loser_value\":\"closed\"}]"},
    {"fww: the earlier change (the partner's) wins", FWW, "{\"id\":\"S1\",\"status\":\"open\"}",
     5000, NULL, 0, "{\"id\":\"S1\",\"status\":\"closed\"}", 4000,
     "{\"id\":\"S1\",\"status\":\"closed\"}",
     "[{\"field\":\"status\",\"strategy\":\"first_write_wins\",\"winner\":\"partner\","
     "\"winner_value\":\"closed\",\"loser_value\":\"open\"}]"},
    {"fww: the earlier change (HMS's) wins", FWW, "{\"id\":\"S1\",\"status\":\"open\"}", 4000, NULL,
     0, "{\"id\":\"S1\",\"status\":\"closed\"}", 5000, "{\"id\":\"S1\",\"status\":\"open\"}",
     "[{\"field\":\"status\",\"strategy\":\"first_write_wins\",\"winner\":\"hms\","
     "\"winner_value\":\"open\",\"loser_value\":\"closed\"}]"},
    {"per-field override: status is master's, the note last writer's",
     "{strategy: last_write_wins, fields: {status: master_always_wins}}",
     "{\"id\":\"S1\",\"status\":\"open\",\"note\":\"a\"}", 1000, NULL, 0,
     "{\"id\":\"S1\",\"status\":\"closed\",\"note\":\"b\"}", 2000,
     "{\"id\":\"S1\",\"status\":\"open\",\"note\":\"b\"}",
     "[{\"field\":\"status\",\"strategy\":\"master_always_wins\",\"winner\":\"hms\","
     "\"winner_value\":\"open\",\"loser_value\":\"closed\"},"
     "{\"field\":\"note\",\"strategy\":\"last_write_wins\",\"winner\":\"partner\","
     "\"winner_value\":\"b\",\"loser_value\":\"a\"}]"},
    {"echo: the partner holds HMS's value, nothing conflicts", MAW,
     "{\"id\":\"S1\",\"status\":\"open\"}", 2000, "{\"id\":\"S1\",\"status\":\"new\"}", 1000,
     "{\"id\":\"S1\",\"status\":\"open\",\"updated_at\":\"x\"}", 3000,
     "{\"id\":\"S1\",\"status\":\"open\",\"updated_at\":\"x\"}", "[]"},
    {"HMS quiet since the partner's last version: a plain partner edit", MAW,
     "{\"id\":\"S1\",\"status\":\"open\"}", 1000, "{\"id\":\"S1\",\"status\":\"open\"}", 2000,
     "{\"id\":\"S1\",\"status\":\"closed\"}", 3000, "{\"id\":\"S1\",\"status\":\"closed\"}", "[]"},
    {"stale: the partner did not touch a field HMS changed; HMS's value stands", LWW,
     "{\"id\":\"S1\",\"status\":\"open\",\"note\":\"a\"}", 2000,
     "{\"id\":\"S1\",\"status\":\"new\",\"note\":\"a\"}", 1000,
     "{\"id\":\"S1\",\"status\":\"new\",\"note\":\"z\"}", 3000,
     "{\"id\":\"S1\",\"status\":\"open\",\"note\":\"z\"}",
     "[{\"field\":\"note\",\"strategy\":\"last_write_wins\",\"winner\":\"partner\","
     "\"winner_value\":\"z\",\"loser_value\":\"a\"}]"},
    {"a loser stays lost: the partner's next edit of another field does not carry it", MAW,
     "{\"id\":\"S1\",\"status\":\"open\",\"note\":\"a\"}", 1000,
     "{\"id\":\"S1\",\"status\":\"closed\",\"note\":\"a\"}", 2000,
     "{\"id\":\"S1\",\"status\":\"closed\",\"note\":\"b\"}", 3000,
     "{\"id\":\"S1\",\"status\":\"open\",\"note\":\"b\"}", "[]"},
    {"no HMS version: the partner's record passes", MAW, NULL, 0, NULL, 0,
     "{\"id\":\"S1\",\"status\":\"closed\"}", 3000, "{\"id\":\"S1\",\"status\":\"closed\"}", "[]"},
    {"a field HMS never had is not a conflict; the key is never compared", MAW, "{\"id\":\"S1\"}",
     2000, NULL, 0, "{\"id\":\"S2\",\"extra\":1}", 1000, "{\"id\":\"S2\",\"extra\":1}", "[]"},
};

static struct ess_manifest *manifest_with(const char *conflict)
{
    char text[1024];
    struct ess_manifest *m = NULL;
    struct ess_diags d;

    snprintf(text, sizeof(text),
             "id: tt\nkind: pull\nkey: id\nsource_url: http://127.0.0.1:1/x\n"
             "publish_topic: a.b\nconflict: %s\n",
             conflict);
    ess_diags_init(&d);
    assert_int_equal(ess_manifest_parse(text, strlen(text), "t.yml", &m, &d), ESS_OK);
    ess_diags_fini(&d);
    return m;
}

static json_t *load_or_null(const char *s)
{
    json_t *v;

    if (s == NULL) {
        return NULL;
    }
    v = json_loads(s, 0, NULL);
    assert_non_null(v);
    return v;
}

static void test_resolve_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rcases) / sizeof(rcases[0]); i++) {
        const struct rcase *c = &rcases[i];
        struct ess_manifest *m = manifest_with(c->conflict);
        struct ess_conflict_side h = {load_or_null(c->hms), c->hms_ms};
        struct ess_conflict_side p0 = {load_or_null(c->prev), c->prev_ms};
        struct ess_conflict_side p = {load_or_null(c->partner), c->partner_ms};
        json_t *want_r = load_or_null(c->resolved);
        json_t *want_l = load_or_null(c->losses);
        json_t *got_r = NULL, *got_l = NULL;
        struct ess_err err;
        char *gr, *gl;

        ess_err_clear(&err);
        print_message("case: %s\n", c->name);
        assert_true(m->conflict.on);
        assert_int_equal(
            ess_conflict_resolve(&m->conflict, m->key, &h, &p0, &p, &got_r, &got_l, &err), ESS_OK);
        gr = json_dumps(got_r, JSON_SORT_KEYS | JSON_COMPACT);
        gl = json_dumps(got_l, JSON_SORT_KEYS | JSON_COMPACT);
        if (!json_equal(got_r, want_r) || !json_equal(got_l, want_l)) {
            fail_msg("%s: resolved %s losses %s", c->name, gr, gl);
        }
        free(gr);
        free(gl);
        json_decref(h.rec);
        json_decref(p0.rec);
        json_decref(p.rec);
        json_decref(want_r);
        json_decref(want_l);
        json_decref(got_r);
        json_decref(got_l);
        ess_manifest_free(m);
    }
}

static void test_not_an_object(void **state)
{
    struct ess_manifest *m = manifest_with(LWW);
    struct ess_conflict_side none = {NULL, 0};
    struct ess_conflict_side p = {json_string("x"), 0};
    json_t *r = NULL, *l = NULL;
    struct ess_err err;

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(ess_conflict_resolve(&m->conflict, "id", &none, &none, &p, &r, &l, &err),
                     ESS_EINVAL);
    assert_null(r);
    assert_null(l);
    json_decref(p.rec);
    ess_manifest_free(m);
}

struct tcase {
    const char *json; /* {"updated_at": ...} */
    int ok;
    long long ms;
};

static const struct tcase tcases[] = {
    {"{\"updated_at\":\"1970-01-01T00:00:00Z\"}", 1, 0},
    {"{\"updated_at\":\"2026-11-27T01:02:03Z\"}", 1, 1795741323000LL},
    {"{\"updated_at\":\"2026-11-27T01:02:03.250Z\"}", 1, 1795741323250LL},
    {"{\"updated_at\":\"2026-11-27T03:02:03+02:00\"}", 1, 1795741323000LL},
    {"{\"updated_at\":\"2026-11-26T20:02:03-0500\"}", 1, 1795741323000LL},
    {"{\"updated_at\":\"2026-11-27 01:02:03\"}", 1, 1795741323000LL},
    {"{\"updated_at\":\"2026-11-27\"}", 1, 1795737600000LL},
    {"{\"updated_at\":1795741323}", 1, 1795741323000LL},
    {"{\"updated_at\":1795741323250}", 1, 1795741323250LL},
    {"{\"updated_at\":\"yesterday\"}", 0, 0},
    {"{\"updated_at\":\"2026-13-01T00:00:00Z\"}", 0, 0},
    {"{\"updated_at\":\"2026-11-27T25:00:00Z\"}", 0, 0},
    {"{\"updated_at\":\"2026-11-27T01:02:03Zjunk\"}", 0, 0},
    {"{\"updated_at\":-5}", 0, 0},
    {"{\"updated_at\":null}", 0, 0},
    {"{\"other\":1}", 0, 0},
};

static void test_time_table(void **state)
{
    struct ess_manifest *m = manifest_with(LWW);
    long long ms;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(tcases) / sizeof(tcases[0]); i++) {
        json_t *rec = json_loads(tcases[i].json, 0, NULL);

        ms = -1;
        print_message("time: %s\n", tcases[i].json);
        assert_int_equal(ess_conflict_time(&m->conflict, rec, &ms), tcases[i].ok);
        if (tcases[i].ok) {
            assert_int_equal(ms, tcases[i].ms);
        }
        json_decref(rec);
    }
    ess_manifest_free(m);
}

static void test_strategy_names(void **state)
{
    (void)state;
    assert_string_equal(ess_conflict_strategy_name(ESS_CONFLICT_LAST_WRITE_WINS),
                        "last_write_wins");
    assert_string_equal(ess_conflict_strategy_name(ESS_CONFLICT_MASTER_ALWAYS_WINS),
                        "master_always_wins");
    assert_string_equal(ess_conflict_strategy_name(ESS_CONFLICT_FIRST_WRITE_WINS),
                        "first_write_wins");
    assert_string_equal(ess_conflict_strategy_name((enum ess_conflict_strategy)3), "?");
}

/* Manifest errors name file:line:column and the key. */
static void test_manifest_errors(void **state)
{
    static const char *text = "id: tt\nkind: pull\nkey: id\nsource_url: http://127.0.0.1:1/x\n"
                              "publish_topic: a.b\nconflict:\n  strategy: newest_wins\n"
                              "  fields: {status: master_wins}\n";
    static const char *push = "id: tt\nkind: push\nlisten_topic: a\nkey: id\n"
                              "target_url: http://127.0.0.1:1/x\nconflict: {}\n";
    struct ess_manifest *m = NULL;
    struct ess_diags d;

    (void)state;
    ess_diags_init(&d);
    assert_int_equal(ess_manifest_parse(text, strlen(text), "c.yml", &m, &d), ESS_EMANIFEST);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.v[0].line, 7);
    assert_int_equal(d.v[0].column, 13);
    assert_non_null(strstr(d.v[0].msg, "conflict.strategy: 'newest_wins' is not one of "
                                       "last_write_wins|master_always_wins|first_write_wins"));
    assert_int_equal(d.v[1].line, 8);
    assert_int_equal(d.v[1].column, 20);
    assert_non_null(strstr(d.v[1].msg, "conflict.fields.status: 'master_wins' is not one of"));
    ess_diags_fini(&d);
    ess_diags_init(&d);
    assert_int_equal(ess_manifest_parse(push, strlen(push), "p.yml", &m, &d), ESS_EMANIFEST);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.v[0].msg, "conflict: only used when kind is pull|webhook"));
    ess_diags_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_table),   cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_time_table),      cmocka_unit_test(test_strategy_names),
        cmocka_unit_test(test_manifest_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
