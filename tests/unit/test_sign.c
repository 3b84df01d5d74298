/*
 * test_sign -- Standard Webhooks signatures (official test vector), base64,
 * verification with rotation, and auth headers from the environment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_sign.h"

/* https://github.com/standard-webhooks/standard-webhooks (libraries' test vector) */
#define SW_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SW_TS 1614265330LL
#define SW_BODY "{\"test\": 2432232314}"
#define SW_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static void test_official_vector(void **state)
{
    struct ess_err err;
    char out[64];

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(
        ess_sign_webhook(SW_SECRET, SW_ID, SW_TS, SW_BODY, strlen(SW_BODY), out, sizeof(out), &err),
        ESS_OK);
    assert_string_equal(out, SW_SIG);
}

static void test_sign_small_buffer_and_bad_secret(void **state)
{
    struct ess_err err;
    char out[64];

    (void)state;
    ess_err_clear(&err);
    assert_int_equal(
        ess_sign_webhook(SW_SECRET, SW_ID, SW_TS, SW_BODY, strlen(SW_BODY), out, 10, &err),
        ESS_EINVAL);
    ess_err_clear(&err);
    assert_int_equal(ess_sign_webhook("whsec_not*base64!", SW_ID, SW_TS, SW_BODY, strlen(SW_BODY),
                                      out, sizeof(out), &err),
                     ESS_EINVAL);
    assert_non_null(strstr(err.msg, "base64"));
    assert_null(strstr(err.msg, "not*base64"));
}

static void test_secret_forms_agree(void **state)
{
    char a[64], b[64], c[64];

    (void)state;
    /* "foob" = Zm9vYg== ; padding optional; a raw secret is its own bytes */
    assert_int_equal(ess_sign_webhook("whsec_Zm9vYg==", "id", 1, "x", 1, a, sizeof(a), NULL), 0);
    assert_int_equal(ess_sign_webhook("whsec_Zm9vYg", "id", 1, "x", 1, b, sizeof(b), NULL), 0);
    assert_int_equal(ess_sign_webhook("foob", "id", 1, "x", 1, c, sizeof(c), NULL), 0);
    assert_string_equal(a, b);
    assert_string_equal(a, c);
}

struct b64_case {
    const char *in;
    const char *want;
};

static void test_base64_table(void **state)
{
    static const struct b64_case cases[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    size_t i;
    char *got;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        got = ess_sign_base64((const unsigned char *)cases[i].in, strlen(cases[i].in));
        assert_non_null(got);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
}

struct verify_case {
    const char *name;
    const char *body;
    long long ts;
    const char *header;
    int want;
};

static void test_verify_table(void **state)
{
    static const struct verify_case cases[] = {
        {"exact", SW_BODY, SW_TS, SW_SIG, ESS_OK},
        {"tampered body", "{\"test\": 2432232315}", SW_TS, SW_SIG, ESS_EPARSE},
        {"other timestamp", SW_BODY, SW_TS + 1, SW_SIG, ESS_EPARSE},
        {"rotation: second matches", SW_BODY, SW_TS,
         "v1,Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm8= " SW_SIG, ESS_OK},
        {"rotation: first matches", SW_BODY, SW_TS, SW_SIG " v1,Zm9v", ESS_OK},
        {"extra spaces", SW_BODY, SW_TS, "  " SW_SIG "  ", ESS_OK},
        {"non-v1 ignored", SW_BODY, SW_TS,
         "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", ESS_EPARSE},
        {"v1a ignored, v1 used", SW_BODY, SW_TS, "v1a,abcd " SW_SIG, ESS_OK},
        {"truncated", SW_BODY, SW_TS, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1O", ESS_EPARSE},
        {"garbage", SW_BODY, SW_TS, "v1,@@@@ nonsense ,,,", ESS_EPARSE},
        {"empty", SW_BODY, SW_TS, "", ESS_EPARSE},
    };
    struct ess_err err;
    size_t i;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ess_err_clear(&err);
        rc = ess_sign_verify(SW_SECRET, SW_ID, cases[i].ts, cases[i].body, strlen(cases[i].body),
                             cases[i].header, &err);
        if (rc != cases[i].want) {
            fail_msg("%s: got %d (%s), want %d", cases[i].name, rc, err.msg, cases[i].want);
        }
    }
    assert_int_equal(ess_sign_verify(SW_SECRET, SW_ID, SW_TS, SW_BODY, 3, NULL, NULL), ESS_EPARSE);
}

static int count_headers(const struct curl_slist *h)
{
    int n = 0;

    for (; h != NULL; h = h->next) {
        n++;
    }
    return n;
}

static void test_headers_none_bearer_basic(void **state)
{
    struct ess_auth auth;
    struct curl_slist *h = NULL;
    struct ess_err err;

    (void)state;
    memset(&auth, 0, sizeof(auth));
    ess_err_clear(&err);
    auth.type = ESS_AUTH_NONE;
    assert_int_equal(ess_sign_headers(&auth, "e1", 1, "{}", 2, &h, &err), ESS_OK);
    assert_null(h);

    setenv("ESS_TEST_TOKEN", "tok-123", 1);
    auth.type = ESS_AUTH_BEARER;
    auth.token_env = "ESS_TEST_TOKEN";
    assert_int_equal(ess_sign_headers(&auth, "e1", 1, "{}", 2, &h, &err), ESS_OK);
    assert_string_equal(h->data, "Authorization: Bearer tok-123");

    setenv("ESS_TEST_USER", "Aladdin", 1);
    setenv("ESS_TEST_PASS", "open sesame", 1);
    auth.type = ESS_AUTH_BASIC;
    auth.user_env = "ESS_TEST_USER";
    auth.password_env = "ESS_TEST_PASS";
    assert_int_equal(ess_sign_headers(&auth, "e1", 1, "{}", 2, &h, &err), ESS_OK);
    assert_int_equal(count_headers(h), 2);
    assert_string_equal(h->next->data, "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    curl_slist_free_all(h);
}

static void test_headers_hmac(void **state)
{
    struct ess_auth auth;
    struct curl_slist *h = NULL;
    struct ess_err err;

    (void)state;
    memset(&auth, 0, sizeof(auth));
    ess_err_clear(&err);
    setenv("ESS_TEST_HMAC", SW_SECRET, 1);
    auth.type = ESS_AUTH_HMAC;
    auth.secret_env = "ESS_TEST_HMAC";
    assert_int_equal(ess_sign_headers(&auth, SW_ID, SW_TS, SW_BODY, strlen(SW_BODY), &h, &err),
                     ESS_OK);
    assert_int_equal(count_headers(h), 3);
    assert_string_equal(h->data, "webhook-id: " SW_ID);
    assert_string_equal(h->next->data, "webhook-timestamp: 1614265330");
    assert_string_equal(h->next->next->data, "webhook-signature: " SW_SIG);
    curl_slist_free_all(h);
}

struct env_case {
    enum ess_auth_type type;
    const char *set_var; /* set to set_value first, or NULL */
    const char *set_value;
    const char *want_name; /* must appear in the message */
};

static void test_headers_env_errors(void **state)
{
    static const struct env_case cases[] = {
        {ESS_AUTH_HMAC, NULL, NULL, "ESS_TEST_MISSING_SECRET"},
        {ESS_AUTH_BEARER, NULL, NULL, "ESS_TEST_MISSING_TOKEN"},
        {ESS_AUTH_BASIC, NULL, NULL, "ESS_TEST_MISSING_USER"},
        {ESS_AUTH_BASIC, "ESS_TEST_MISSING_USER", "u", "ESS_TEST_MISSING_PASS"},
        {ESS_AUTH_BEARER, "ESS_TEST_MISSING_TOKEN", "", "ESS_TEST_MISSING_TOKEN"},
        {ESS_AUTH_BEARER, "ESS_TEST_MISSING_TOKEN", "abc\r\nX-Evil: 1", "ESS_TEST_MISSING_TOKEN"},
        {ESS_AUTH_HMAC, "ESS_TEST_MISSING_SECRET", "whsec_%%hunter2%%", "ESS_TEST_MISSING_SECRET"},
    };
    struct ess_auth auth;
    struct curl_slist *h;
    struct ess_err err;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsetenv("ESS_TEST_MISSING_SECRET");
        unsetenv("ESS_TEST_MISSING_TOKEN");
        unsetenv("ESS_TEST_MISSING_USER");
        unsetenv("ESS_TEST_MISSING_PASS");
        if (cases[i].set_var != NULL) {
            setenv(cases[i].set_var, cases[i].set_value, 1);
        }
        memset(&auth, 0, sizeof(auth));
        auth.type = cases[i].type;
        auth.secret_env = "ESS_TEST_MISSING_SECRET";
        auth.token_env = "ESS_TEST_MISSING_TOKEN";
        auth.user_env = "ESS_TEST_MISSING_USER";
        auth.password_env = "ESS_TEST_MISSING_PASS";
        h = curl_slist_append(NULL, "X-Keep: 1");
        ess_err_clear(&err);
        assert_int_equal(ess_sign_headers(&auth, "e1", 1, "{}", 2, &h, &err), ESS_ECONFIG);
        assert_int_equal(err.code, ESS_ECONFIG);
        if (strstr(err.msg, cases[i].want_name) == NULL) {
            fail_msg("case %zu: message \"%s\" does not name %s", i, err.msg, cases[i].want_name);
        }
        assert_null(strstr(err.msg, "hunter2")); /* never a secret value */
        assert_int_equal(count_headers(h), 1);   /* the list is left valid, unchanged */
        curl_slist_free_all(h);
    }
}

static void test_headers_manifest_without_env_name(void **state)
{
    struct ess_auth auth;
    struct curl_slist *h = NULL;
    struct ess_err err;

    (void)state;
    memset(&auth, 0, sizeof(auth));
    ess_err_clear(&err);
    auth.type = ESS_AUTH_HMAC;
    assert_int_equal(ess_sign_headers(&auth, "e1", 1, "{}", 2, &h, &err), ESS_ECONFIG);
    assert_non_null(strstr(err.msg, "secret_env"));
    assert_null(h);
}

/* A received request: every header and clock case, as a table. */
static void test_check_request_table(void **state)
{
    static const struct {
        const char *id, *ts, *sig;
        long long now;
        int rc;
        const char *msg;
    } cases[] = {
        {SW_ID, "1614265330", SW_SIG, SW_TS, ESS_OK, ""},
        {SW_ID, "1614265330", SW_SIG, SW_TS + 300, ESS_OK, ""},
        {SW_ID, "1614265330", SW_SIG, SW_TS + 301, ESS_EPARSE, "more than 300 s off"},
        {SW_ID, "1614265330", SW_SIG, SW_TS - 301, ESS_EPARSE, "more than 300 s off"},
        {NULL, "1614265330", SW_SIG, SW_TS, ESS_EPARSE, "missing webhook-id"},
        {SW_ID, NULL, SW_SIG, SW_TS, ESS_EPARSE, "missing webhook-id"},
        {SW_ID, "1614265330", NULL, SW_TS, ESS_EPARSE, "missing webhook-id"},
        {SW_ID, "", SW_SIG, SW_TS, ESS_EPARSE, "not a number"},
        {SW_ID, "16x", SW_SIG, SW_TS, ESS_EPARSE, "not a number"},
        {SW_ID, "99999999999999999999", SW_SIG, SW_TS, ESS_EPARSE, "not a number"},
        {SW_ID, "-9223372036854775807", SW_SIG, SW_TS, ESS_EPARSE, "off"},
        {SW_ID, "9223372036854775807", SW_SIG, 0, ESS_EPARSE, "off"},
        {SW_ID, "1614265330", "v1,AAAA", SW_TS, ESS_EPARSE, "no webhook-signature matches"},
        {"other", "1614265330", SW_SIG, SW_TS, ESS_EPARSE, "no webhook-signature matches"},
    };
    struct ess_err err;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ess_err_clear(&err);
        assert_int_equal(ess_sign_check_request(SW_SECRET, cases[i].id, cases[i].ts, cases[i].sig,
                                                SW_BODY, strlen(SW_BODY), cases[i].now, 300, &err),
                         cases[i].rc);
        if (strstr(err.msg, cases[i].msg) == NULL) {
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].msg);
        }
    }
    ess_err_clear(&err);
    assert_int_equal(ess_sign_check_request(NULL, SW_ID, "1614265330", SW_SIG, SW_BODY,
                                            strlen(SW_BODY), SW_TS, 300, &err),
                     ESS_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_official_vector),
        cmocka_unit_test(test_sign_small_buffer_and_bad_secret),
        cmocka_unit_test(test_secret_forms_agree),
        cmocka_unit_test(test_base64_table),
        cmocka_unit_test(test_verify_table),
        cmocka_unit_test(test_headers_none_bearer_basic),
        cmocka_unit_test(test_headers_hmac),
        cmocka_unit_test(test_headers_env_errors),
        cmocka_unit_test(test_headers_manifest_without_env_name),
        cmocka_unit_test(test_check_request_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
