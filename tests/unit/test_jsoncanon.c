/*
 * test_jsoncanon -- ess_jsoncanon_compact's promise, checked against jansson:
 * whenever it says 1, json_dumps(json_loadb(text), JSON_COMPACT) is the text.
 * Tables of what must be accepted (or the render shortcut never applies) and
 * refused, then random documents, both well-formed and mutated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ess_jsoncanon.h"

/* jansson's compact re-encoding equals the text (the promise behind a 1). */
static int roundtrip_same(const char *text, size_t len)
{
    json_t *v = json_loadb(text, len, 0, NULL);
    char *out;
    int same;

    if (!json_is_object(v)) {
        json_decref(v);
        return 0;
    }
    out = json_dumps(v, JSON_COMPACT);
    same = out != NULL && strlen(out) == len && memcmp(out, text, len) == 0;
    free(out);
    json_decref(v);
    return same;
}

static void check(const char *text, int want)
{
    size_t len = strlen(text);
    int got = ess_jsoncanon_compact(text, len);

    if (got != want) {
        fail_msg("ess_jsoncanon_compact(%s) = %d, want %d", text, got, want);
    }
    if (got) {
        assert_true(roundtrip_same(text, len));
    }
}

static void test_accepted(void **state)
{
    (void)state;
    check("{}", 1);
    check("{\"permit_id\":\"K1\",\"n\":1,\"street\":\"Main St\",\"status\":\"PENDING\"}", 1);
    check("{\"a\":[],\"b\":{},\"c\":[1,-2,true,false,null,\"x\"],\"d\":{\"e\":{\"f\":0}}}", 1);
    check("{\"q\":\"say \\\"hi\\\" \\\\ tab\\t nl\\n cr\\r bs\\b ff\\f\"}", 1);
    check("{\"street\":\"Stra\xc3\x9f"
          "e \xe2\x82\xac \xf0\x9f\x98\x80\"}",
          1);
    check("{\"\":\"empty key\",\"big\":999999999999999999,\"neg\":-999999999999999999}", 1);
    check("{\"del\":\"\x7f\",\"slash\":\"a/b\"}", 1);
}

static void test_refused(void **state)
{
    (void)state;
    check("", 0);
    check("[]", 0);                           /* not an object */
    check("\"s\"", 0);                        /* not an object */
    check("{ }", 0);                          /* whitespace */
    check("{\"a\": 1}", 0);                   /* whitespace */
    check("{\"a\":1} ", 0);                   /* trailing bytes */
    check("{\"a\":1}{", 0);                   /* trailing bytes */
    check("{\"a\":1.0}", 0);                  /* a real */
    check("{\"a\":1e3}", 0);                  /* a real */
    check("{\"a\":01}", 0);                   /* a leading zero */
    check("{\"a\":-0}", 0);                   /* minus zero */
    check("{\"a\":-}", 0);                    /* no digit */
    check("{\"a\":1234567890123456789}", 0);  /* 19 digits */
    check("{\"a\":\"\\u00e9\"}", 0);          /* \u: written back as UTF-8 */
    check("{\"a\":\"\\/\"}", 0);              /* \/: written back as / */
    check("{\"a\":\"\\x\"}", 0);              /* not an escape */
    check("{\"a\":1,\"a\":2}", 0);            /* a duplicate key */
    check("{\"a\":\"\x01\"}", 0);             /* a raw control character */
    check("{\"a\":\"\xc3\"}", 0);             /* truncated UTF-8 */
    check("{\"a\":\"\xc0\xaf\"}", 0);         /* overlong */
    check("{\"a\":\"\xe0\x80\xaf\"}", 0);     /* overlong */
    check("{\"a\":\"\xed\xa0\x80\"}", 0);     /* a surrogate */
    check("{\"a\":\"\xf4\x90\x80\x80\"}", 0); /* past U+10FFFF */
    check("{\"a\":\"\x80\"}", 0);             /* a lone continuation byte */
    check("{\"a\":tru}", 0);
    check("{\"a\":[1,]}", 0);
    check("{\"a\":1,}", 0);
    check("{\"a\"}", 0);
    check("{\"a\":\"open", 0);
    check("{\"a\":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}", 0); /* deeper than the limit */
}

static void test_many_keys(void **state)
{
    char buf[1024];
    size_t o = 0;
    int i;

    (void)state;
    buf[o++] = '{';
    for (i = 0; i < ESS_JSONCANON_MAX_KEYS; i++) {
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s\"k%d\":%d", i ? "," : "", i, i);
    }
    buf[o++] = '}';
    buf[o] = '\0';
    check(buf, 1);
    snprintf(buf + o - 1, sizeof(buf) - o + 1, ",\"more\":1}");
    check(buf, 0); /* one key too many: not checked for duplicates, refused */
}

static void member(const char *text, const char *path, const char *want)
{
    const char *v = NULL;
    size_t n = 0;
    int got;

    assert_true(ess_jsoncanon_compact(text, strlen(text)));
    got = ess_jsoncanon_member(text, strlen(text), path, &v, &n);
    if (want == NULL ? got != 0 : (got != 1 || n != strlen(want) || memcmp(v, want, n) != 0)) {
        fail_msg("member(%s, %s) = %d '%.*s', want %s", text, path, got, (int)n, v ? v : "",
                 want ? want : "absent");
    }
}

static void test_member(void **state)
{
    const char *doc = "{\"a\":1,\"b\":{\"c\":[1,{\"d\":2}],\"d\":\"x\\\"y\"},\"e\":{},"
                      "\"q\\\"k\":3,\"last\":null}";

    (void)state;
    member(doc, "a", "1");
    member(doc, "b", "{\"c\":[1,{\"d\":2}],\"d\":\"x\\\"y\"}");
    member(doc, "b.d", "\"x\\\"y\"");
    member(doc, "b.c", "[1,{\"d\":2}]");
    member(doc, "last", "null");
    member(doc, "b.c.d", NULL); /* through an array */
    member(doc, "a.b", NULL);   /* through a scalar */
    member(doc, "e.x", NULL);
    member(doc, "zz", NULL);
    member(doc, "", NULL);
    member(doc, "b.", NULL);
    member(doc, "q\"k", NULL); /* a key that is escaped in the text: unsure, not absent */
}

/* ---- random documents --------------------------------------------------- */

static unsigned long long rng_state = 88172645463325252ULL;

static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

struct gen {
    char buf[4096];
    size_t o;
};

static void put(struct gen *g, const char *s)
{
    size_t n = strlen(s);

    if (g->o + n < sizeof(g->buf)) {
        memcpy(g->buf + g->o, s, n);
        g->o += n;
    }
}

static void gen_string(struct gen *g)
{
    static const char *const pieces[] = {"a",
                                         "K",
                                         "7",
                                         " ",
                                         "\\\"",
                                         "\\\\",
                                         "\\n",
                                         "\\t",
                                         "\xc3\xa9",
                                         "\xe2\x82\xac",
                                         "\xf0\x9f\x98\x80",
                                         "/",
                                         "\\u0041",
                                         "\\/",
                                         "\x7f",
                                         "\\b"};
    unsigned i, n = rnd(6);

    put(g, "\"");
    for (i = 0; i < n; i++) {
        put(g, pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))]);
    }
    put(g, "\"");
}

static void gen_value(struct gen *g, int depth);

static void gen_object(struct gen *g, int depth)
{
    unsigned i, n = rnd(5);

    put(g, "{");
    for (i = 0; i < n; i++) {
        if (i > 0) {
            put(g, rnd(40) == 0 ? ", " : ",");
        }
        gen_string(g);
        put(g, rnd(40) == 0 ? ": " : ":");
        gen_value(g, depth + 1);
    }
    put(g, "}");
}

static void gen_value(struct gen *g, int depth)
{
    static const char *const scalars[] = {
        "0",  "-1", "42", "-0", "007", "1.5", "1e2", "true", "false", "null", "123456789012345678",
        "-99"};
    char num[32];
    unsigned k = rnd(depth > 4 ? 3 : 6);

    switch (k) {
    case 0:
        gen_string(g);
        break;
    case 1:
        put(g, scalars[rnd(sizeof(scalars) / sizeof(scalars[0]))]);
        break;
    case 2:
        snprintf(num, sizeof(num), "%u", rnd(100000));
        put(g, num);
        break;
    case 3:
    case 4:
        gen_object(g, depth);
        break;
    default:
        put(g, "[");
        if (rnd(3)) {
            gen_value(g, depth + 1);
            put(g, ",");
            gen_value(g, depth + 1);
        }
        put(g, "]");
        break;
    }
}

/* Whatever the scanner accepts, jansson re-encodes byte for byte; and most
 * compact documents without reals or \u are accepted. */
static void test_random(void **state)
{
    struct gen g;
    int i, yes = 0, same = 0;

    (void)state;
    for (i = 0; i < 200000; i++) {
        g.o = 0;
        gen_object(&g, 0);
        if (rnd(10) == 0 && g.o > 2) {
            g.buf[rnd((unsigned)g.o)] = (char)(rnd(2) ? ' ' : rnd(256)); /* mutate one byte */
        }
        g.buf[g.o] = '\0';
        if (ess_jsoncanon_compact(g.buf, g.o)) {
            yes++;
            if (!roundtrip_same(g.buf, g.o)) {
                fail_msg("accepted but jansson writes it differently: %s", g.buf);
            }
        }
        same += roundtrip_same(g.buf, g.o);
    }
    /* The shortcut must not be a rarity: most documents jansson would write
     * back as they are are recognised. */
    print_message("accepted %d of 200000; jansson writes back unchanged %d\n", yes, same);
    assert_true(yes > 0);
    assert_true(yes * 10 >= same * 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),  cmocka_unit_test(test_refused),
        cmocka_unit_test(test_many_keys), cmocka_unit_test(test_member),
        cmocka_unit_test(test_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
