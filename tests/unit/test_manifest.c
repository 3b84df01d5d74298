/*
 * test_manifest -- ess_manifest: typed values, defaults, and every error class
 * with its exact message, line and column.
 *
 * Bad cases are data (model: curl tests/data): tests/data/manifests/bad/NAME.yml
 * and NAME.err holding the expected first error line(s), written relative as
 * "NAME.yml:L:C: key: message". The test chdirs into bad/ and loads "NAME.yml",
 * so the positions in the diags carry exactly that name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ess_manifest.h"
#include "ess_transform.h"

#define MIN_BAD_CASES 15

static char data_dir[PATH_MAX];

static void data_path(char *buf, size_t len, const char *rel)
{
    snprintf(buf, len, "%s/%s", data_dir, rel);
}

static struct ess_manifest *load_ok(const char *path)
{
    struct ess_diags d;
    struct ess_manifest *m = NULL;
    char line[1024];
    size_t i;
    int rc;

    ess_diags_init(&d);
    rc = ess_manifest_load(path, &m, &d);
    for (i = 0; i < d.n; i++) {
        print_error("%s\n", ess_err_format(&d.v[i], line, sizeof(line)));
    }
    assert_int_equal(rc, ESS_OK);
    assert_int_equal(d.n, 0);
    assert_non_null(m);
    ess_diags_fini(&d);
    return m;
}

/* Parse text in memory; returns rc, diags left in *d (caller finis). */
static int parse_str(const char *text, struct ess_manifest **m, struct ess_diags *d)
{
    ess_diags_init(d);
    return ess_manifest_parse(text, strlen(text), "t.yml", m, d);
}

/* ---------------------------------------------------------------- good manifests */

static void test_minimal_defaults(void **state)
{
    char path[PATH_MAX];
    struct ess_manifest *m;

    (void)state;
    data_path(path, sizeof(path), "manifests/good/minimal.yml");
    m = load_ok(path);
    assert_string_equal(m->id, "ab");
    assert_string_equal(m->kind, "push");
    assert_int_equal(m->topics.n, 1);
    assert_string_equal(m->topics.v[0], "permits.changed");
    assert_string_equal(m->key, "permit_id");
    assert_string_equal(m->target_url, "https://dmv.example/permits");
    assert_string_equal(m->path, path);
    assert_int_equal(m->format, ESS_FORMAT_JSON);
    assert_int_equal(m->fields.n, 0);
    assert_int_equal(m->drop.n, 0);
    assert_int_equal(m->rename.n, 0);
    assert_int_equal(m->n_values, 0);
    assert_null(m->transforms);
    assert_int_equal(m->debounce_sec, 0);
    assert_int_equal(m->heartbeat_sec, 30);
    assert_int_equal(m->max_retry, 8);
    assert_int_equal(m->timeout_ms, 5000);
    assert_int_equal(m->replay_window_sec, 7L * 86400);
    assert_int_equal(m->prefetch, 500);
    assert_int_equal(m->max_in_flight, 64);
    assert_int_equal(m->auth.type, ESS_AUTH_NONE);
    assert_null(m->auth.secret_env);
    ess_manifest_free(m);
}

static void assert_full_lists(const struct ess_manifest *m)
{
    assert_int_equal(m->topics.n, 3);
    assert_string_equal(m->topics.v[1], "permits.*.closed");
    assert_string_equal(m->topics.v[2], "#");
    assert_int_equal(m->fields.n, 3);
    assert_string_equal(m->fields.v[2], "truck_limit");
    assert_int_equal(m->drop.n, 1);
    assert_string_equal(m->drop.v[0], "owner_ssn");
    assert_int_equal(m->rename.n, 2);
    assert_string_equal(m->rename.keys[1], "street");
    assert_string_equal(m->rename.vals[1], "STREET_NAME");
    assert_int_equal(m->n_values, 2);
    assert_string_equal(m->values[0].field, "status");
    assert_int_equal(m->values[0].map.n, 3);
    /* scalars are text: an unquoted 07 stays "07", 9 stays "9" */
    assert_string_equal(m->values[0].map.vals[0], "07");
    assert_string_equal(m->values[0].map.keys[2], "CANCELLED");
    assert_string_equal(m->values[0].map.vals[2], "9");
    assert_string_equal(m->values[1].field, "lane");
}

static void assert_full_transforms(const struct ess_manifest *m)
{
    json_error_t jerr;
    json_t *want = json_loads("{\"issued_on\": {\"date\": {\"from\": \"%Y-%m-%d\", "
                              "\"to\": \"%m/%d/%Y\"}}, \"weight\": [\"trim\", {\"truncate\": "
                              "{\"length\": \"6\"}}, {\"pad\": {\"width\": \"6\", \"char\": "
                              "\"0\", \"align\": \"right\"}}]}",
                              0, &jerr);
    json_t *in = json_string(" 12.5 ");
    json_t *out = NULL;

    assert_non_null(want);
    assert_non_null(m->transforms);
    assert_true(json_equal(m->transforms, want));
    assert_int_equal(m->n_xforms, 2);
    assert_string_equal(ess_transform_field(m->xforms[1]), "weight");
    assert_int_equal(ess_transform_apply(m->xforms[1], NULL, in, &out, NULL), ESS_OK);
    assert_string_equal(json_string_value(out), "0012.5");
    json_decref(out);
    json_decref(in);
    json_decref(want);
}

static void assert_full_blocks(const struct ess_manifest *m)
{
    assert_int_equal(m->n_columns, 3);
    assert_string_equal(m->columns[0].field, "PERMIT_NUM");
    assert_int_equal(m->columns[0].width, 10);
    assert_int_equal(m->columns[0].align, ESS_ALIGN_RIGHT);
    assert_string_equal(m->columns[0].pad, "0");
    assert_int_equal(m->columns[0].truncate, ESS_TRUNCATE_ERROR);
    assert_int_equal(m->columns[1].truncate, ESS_TRUNCATE_LEFT);
    /* defaults: left, one space, error */
    assert_int_equal(m->columns[2].align, ESS_ALIGN_LEFT);
    assert_string_equal(m->columns[2].pad, " ");
    assert_int_equal(m->columns[2].truncate, ESS_TRUNCATE_ERROR);
    assert_int_equal(m->link_fields.n, 1);
    assert_string_equal(m->link_fields.v[0], "plan_pdf");
    assert_int_equal(m->headers.n, 2);
    assert_string_equal(m->headers.keys[0], "X-Partner-Site");
    assert_string_equal(m->headers.vals[0], "north 7");
    /* block defaults apply whatever the format */
    assert_string_equal(m->xml.root, "record");
    assert_string_equal(m->csv.delimiter, ",");
    assert_int_equal(m->csv.header, 0);
    assert_null(m->soap.action);
}

static void test_full_typed_values(void **state)
{
    char path[PATH_MAX];
    struct ess_manifest *m;

    (void)state;
    data_path(path, sizeof(path), "manifests/good/full.yml");
    m = load_ok(path);
    assert_string_equal(m->key, "permit.id");
    assert_string_equal(m->target_url, "sftp://dmv.example:2222/inbox/");
    assert_int_equal(m->format, ESS_FORMAT_FIXED);
    assert_full_lists(m);
    assert_full_transforms(m);
    assert_full_blocks(m);
    assert_int_equal(m->debounce_sec, 2);
    assert_int_equal(m->heartbeat_sec, 3600);
    assert_int_equal(m->max_retry, 0);
    assert_int_equal(m->timeout_ms, 600000);
    assert_int_equal(m->replay_window_sec, 12L * 3600);
    assert_int_equal(m->prefetch, 65535);
    assert_int_equal(m->max_in_flight, 1);
    assert_int_equal(m->auth.type, ESS_AUTH_HMAC);
    assert_string_equal(m->auth.secret_env, "DMV_HMAC_SECRET");
    ess_manifest_free(m);
}

static void test_pull_needs_no_target(void **state)
{
    char path[PATH_MAX];
    struct ess_manifest *m;

    (void)state;
    data_path(path, sizeof(path), "manifests/good/pull.yml");
    m = load_ok(path);
    assert_string_equal(m->kind, "pull");
    assert_null(m->target_url);
    assert_int_equal(m->topics.n, 0);
    assert_int_equal(m->auth.type, ESS_AUTH_BEARER);
    assert_string_equal(m->auth.token_env, "DMV_TOKEN");
    ess_manifest_free(m);
}

static void test_sha256_is_text_digest(void **state)
{
    static const char text[] = "id: ab\nkind: pull\nkey: k\n";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0, i;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    struct ess_manifest *m = NULL;
    struct ess_diags d;

    (void)state;
    assert_int_equal(parse_str(text, &m, &d), ESS_OK);
    assert_true(EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL));
    for (i = 0; i < mdlen; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    assert_int_equal(strlen(m->sha256), 64);
    assert_string_equal(m->sha256, hex);
    assert_string_equal(m->path, "t.yml");
    ess_manifest_free(m);
    ess_diags_fini(&d);
}

/* Every example manifest in manifests/ loads without errors. */
static void test_examples_load(void **state)
{
    char dir[PATH_MAX], path[PATH_MAX * 2];
    struct ess_manifest *m;
    struct dirent *de;
    DIR *dh;
    int n = 0;

    (void)state;
    data_path(dir, sizeof(dir), "../../manifests");
    dh = opendir(dir);
    assert_non_null(dh);
    while ((de = readdir(dh)) != NULL) {
        size_t len = strlen(de->d_name);

        /* NAME.tests.yml holds mapping test cases (hms ess test), not a manifest. */
        if (len < 5 || strcmp(de->d_name + len - 4, ".yml") != 0 ||
            (len > 10 && strcmp(de->d_name + len - 10, ".tests.yml") == 0)) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        m = load_ok(path);
        assert_true(strcmp(m->kind, "push") == 0 || strcmp(m->kind, "pull") == 0 ||
                    strcmp(m->kind, "webhook") == 0);
        ess_manifest_free(m);
        n++;
    }
    closedir(dh);
    assert_true(n >= 5);
}

static void test_example_city2dmv(void **state)
{
    char path[PATH_MAX];
    struct ess_manifest *m;

    (void)state;
    data_path(path, sizeof(path), "../../manifests/city2dmv.yml");
    m = load_ok(path);
    assert_string_equal(m->id, "city2dmv");
    assert_string_equal(m->target_url, "http://127.0.0.1:18080/dmv/permits");
    assert_int_equal(m->heartbeat_sec, 5);
    assert_int_equal(m->auth.type, ESS_AUTH_NONE);
    assert_string_equal(m->rename.vals[0], "PERMIT_NUM");
    assert_string_equal(m->values[0].map.vals[1], "08");
    ess_manifest_free(m);
}

/* ---------------------------------------------------------------- data-driven bad cases */

/* Read NAME.err into lines (at most max); returns the count. */
static size_t read_err_lines(const char *path, char lines[][1024], size_t max)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;

    assert_non_null(f);
    while (n < max && fgets(lines[n], sizeof(lines[n]), f) != NULL) {
        lines[n][strcspn(lines[n], "\n")] = '\0';
        if (lines[n][0] != '\0') {
            n++;
        }
    }
    fclose(f);
    return n;
}

/* Load bad/NAME.yml (cwd is bad/); the first diags equal NAME.err. Returns
 * the number of diags, for cases that check all of them. */
static size_t check_bad_case(const char *yml, size_t *n_expected)
{
    char want[16][1024], got[1024], errfile[PATH_MAX];
    struct ess_manifest *m = (struct ess_manifest *)1;
    struct ess_diags d;
    size_t n, i, total;

    snprintf(errfile, sizeof(errfile), "%.*s.err", (int)(strlen(yml) - 4), yml);
    n = read_err_lines(errfile, want, 16);
    assert_true(n > 0);
    ess_diags_init(&d);
    assert_int_equal(ess_manifest_load(yml, &m, &d), ESS_EMANIFEST);
    assert_null(m);
    assert_true(d.n >= n);
    for (i = 0; i < n; i++) {
        ess_err_format(&d.v[i], got, sizeof(got));
        if (strcmp(got, want[i]) != 0) {
            print_error("%s: want '%s'\n%s:  got '%s'\n", yml, want[i], yml, got);
        }
        assert_string_equal(got, want[i]);
        assert_int_equal(d.v[i].code, ESS_EMANIFEST);
        assert_true(d.v[i].line >= 1 && d.v[i].column >= 1);
    }
    total = d.n;
    ess_diags_fini(&d);
    *n_expected = n;
    return total;
}

static int enter_bad_dir(char *old, size_t len)
{
    char dir[PATH_MAX];

    data_path(dir, sizeof(dir), "manifests/bad");
    assert_non_null(getcwd(old, len));
    return chdir(dir);
}

static void test_bad_cases(void **state)
{
    char old[PATH_MAX];
    struct dirent *de;
    DIR *dh;
    size_t n_exp;
    int cases = 0;

    (void)state;
    assert_int_equal(enter_bad_dir(old, sizeof(old)), 0);
    dh = opendir(".");
    assert_non_null(dh);
    while ((de = readdir(dh)) != NULL) {
        size_t len = strlen(de->d_name);

        if (len > 4 && strcmp(de->d_name + len - 4, ".yml") == 0) {
            check_bad_case(de->d_name, &n_exp);
            cases++;
        }
    }
    closedir(dh);
    assert_int_equal(chdir(old), 0);
    assert_true(cases >= MIN_BAD_CASES);
}

/* A file with many problems: every one of them is reported, no more. */
static void test_all_errors_in_one_pass(void **state)
{
    char old[PATH_MAX];
    size_t n_exp, total;

    (void)state;
    assert_int_equal(enter_bad_dir(old, sizeof(old)), 0);
    total = check_bad_case("many-errors.yml", &n_exp);
    assert_int_equal(chdir(old), 0);
    assert_true(n_exp >= 8);
    assert_int_equal(total, n_exp);
}

/* ---------------------------------------------------------------- inline tables */

struct pos_case {
    const char *text;
    int line, column;
    const char *msg; /* the message part after file:line:column: */
};

#define HEAD "id: ab\nkind: push\nlisten_topic: a.b\nkey: k\n"
#define HEAD_URL HEAD "target_url: http://h/x\n"

static const struct pos_case pos_cases[] = {
    {HEAD_URL "debounce_sec: -1\n", 6, 15, "debounce_sec: -1 is out of range (0..86400)"},
    {HEAD_URL "prefetch: 1e3\n", 6, 11, "prefetch: expected an integer, got '1e3'"},
    {HEAD_URL "prefetch: 0x10\n", 6, 11, "prefetch: expected an integer, got '0x10'"},
    {HEAD_URL "max_in_flight: {a: 1}\n", 6, 16,
     "max_in_flight: expected an integer, got a mapping"},
    {HEAD_URL "replay_window: 0s\n", 6, 16, "replay_window: 0s is out of range (1s..3650d)"},
    {HEAD_URL "replay_window: 99999999999999999999d\n", 6, 16,
     "replay_window: 99999999999999999999d is out of range (1s..3650d)"},
    {HEAD_URL "replay_window: d\n", 6, 16,
     "replay_window: expected a duration like 7d, 12h, 30m or 45s, got 'd'"},
    {HEAD_URL "format:\n", 6, 8, "format: value is empty"},
    {HEAD_URL "fields: [a, [b]]\n", 6, 13, "fields: expected a string, got a list"},
    {HEAD_URL "drop: [a..b]\n", 6, 8, "drop: 'a..b' is not a field path (names separated by '.')"},
    {HEAD_URL "password: x\n", 6, 1,
     "password: secrets come only from environment variables: use auth.password_env"},
    {HEAD_URL "auth: {type: basic, user_env: U}\n", 6, 7,
     "auth.password_env: required key is missing (auth.type is basic)"},
    {HEAD_URL "auth: {typ: none}\n", 6, 8,
     "auth.typ: unknown key (did you mean type?); valid keys are type, secret_env, token_env, "
     "user_env, password_env"},
    {HEAD_URL "auth: none\n", 6, 7, "auth: expected a mapping, got a scalar"},
    {HEAD_URL "auth: {type: hmac, secret_env: S, secret_env: T}\n", 6, 35,
     "auth.secret_env: duplicate key (first given at line 6)"},
    {HEAD_URL "values: {status: {A: {b: c}}}\n", 6, 22,
     "values.status.A: expected a string, got a mapping"},
    {HEAD_URL "? [a]\n: b\n", 6, 3, "manifest: expected a string key, got a list"},
    {HEAD_URL "rename: {a: \"x\\0y\"}\n", 6, 13, "rename.a: contains a NUL character"},
    {HEAD_URL "transforms: [a]\n", 6, 13, "transforms: expected a mapping, got a list"},
    /* transforms: validated at load, positioned at the offending step */
    {HEAD_URL "transforms: {d: {date: {from: \"%Y-%m-%d\"}}}\n", 6, 17,
     "transforms.d: date: 'to' is required"},
    {HEAD_URL "transforms: {name: [trim, shout]}\n", 6, 27,
     "transforms.name: 'shout' is not a transform (valid: date, tz, upper, lower, trim, "
     "truncate, pad, default, const, concat, map)"},
    {HEAD_URL "transforms:\n  a: upper\n  n:\n    - trim\n    - {truncate: {length: 0}}\n", 10, 7,
     "transforms.n: truncate: length must be an integer 1..10000, got '0'"},
    {HEAD_URL "transforms: {t: {tz: {from: Mars/Base, to: UTC}}}\n", 6, 17,
     "transforms.t: tz: from 'Mars/Base' is not a zone in the tz database"},
    {HEAD_URL "transforms: {t: {tz: {from: UTC, to: ../../etc/passwd}}}\n", 6, 17,
     "transforms.t: tz: to '../../etc/passwd' is not a zone in the tz database"},
    {HEAD_URL "transforms: {n: {pad: {width: 3, char: \"ab\"}}}\n", 6, 17,
     "transforms.n: pad: char must be exactly one character, got 'ab'"},
    {HEAD_URL "transforms: {n: {pad: {width: 3, align: middle}}}\n", 6, 17,
     "transforms.n: pad: align must be left or right, got 'middle'"},
    {HEAD_URL "transforms: {d: {date: {from: \"%Y-%Q\", to: x}}}\n", 6, 17,
     "transforms.d: date.from: '%Q' is not a strftime conversion in \"%Y-%Q\""},
    {HEAD_URL "transforms: {d: {date: {from: iso8601, to: x, tz: UTC}}}\n", 6, 17,
     "transforms.d: date: unknown argument 'tz' (valid: from|to)"},
    {HEAD_URL "transforms: {n: [upper, {default: {}}]}\n", 6, 25,
     "transforms.n: default: 'value' is required"},
    {HEAD_URL "transforms: {n: {upper: {x: 1}}}\n", 6, 17,
     "transforms.n: upper takes no arguments"},
    {HEAD_URL "transforms: {n: truncate}\n", 6, 17,
     "transforms.n: truncate needs arguments: {truncate: {length: ...}}"},
    {HEAD_URL "transforms: {n: {upper: {}, lower: {}}}\n", 6, 17,
     "transforms.n: a step is a name (upper) or one {name: arguments} mapping; use a list for "
     "several steps"},
    {HEAD_URL "transforms: {n: []}\n", 6, 17, "transforms.n: an empty list of steps"},
    {HEAD_URL "transforms: {n: {concat: {fields: a}}}\n", 6, 17,
     "transforms.n: concat: fields must be a list of field names"},
    {HEAD_URL "transforms: {n: {map: {}}}\n", 6, 17,
     "transforms.n: map: expected {FROM: TO, ...} with 1..4096 entries"},
    {HEAD_URL "transforms: {a..b: upper}\n", 6, 14,
     "transforms: 'a..b' is not a field path (names separated by '.')"},
    /* formats and their blocks */
    {HEAD_URL "format: fixed\n", 1, 1, "columns: required key is missing (format is fixed)"},
    {HEAD_URL "format: soap\nsoap: {namespace: \"urn:x\"}\n", 7, 7,
     "soap.action: required key is missing (format is soap)"},
    {HEAD_URL "soap: {action: A}\n", 6, 1, "soap: only used when format is soap"},
    {HEAD_URL "format: soap\nsoap: {action: \"Up date\"}\n", 7, 16,
     "soap.action: 'Up date' cannot be a SOAP action (no blanks, quotes or control characters)"},
    {HEAD_URL "format: soap\nsoap: {action: A, operation: \"ns:Op\"}\n", 7, 30,
     "soap.operation: 'ns:Op' is not an XML element name (a letter or _, then letters, digits, "
     "_ - .)"},
    {HEAD_URL "format: xml\nxml: {root: 1x}\n", 7, 13,
     "xml.root: '1x' is not an XML element name (a letter or _, then letters, digits, _ - .)"},
    {HEAD_URL "format: csv\ncsv: {delimiter: \";;\"}\n", 7, 18,
     "csv.delimiter: ';;' is not a delimiter (exactly one character, not a quote or line break)"},
    {HEAD_URL "format: csv\ncsv: {header: yes}\n", 7, 15,
     "csv.header: 'yes' is not one of false|true"},
    {HEAD_URL "format: fixed\ncolumns: []\n", 7, 10, "columns: expected 1..4096 columns"},
    {HEAD_URL "format: fixed\ncolumns: {field: A}\n", 7, 10,
     "columns: expected a list of column mappings, got a mapping"},
    {HEAD_URL "format: fixed\ncolumns: [{field: A, width: 0}]\n", 7, 29,
     "columns[0].width: 0 is out of range (1..10000)"},
    {HEAD_URL
     "format: fixed\ncolumns:\n  - {field: A, width: 2}\n  - {field: B, width: 3, pad: \"00\"}\n",
     9, 31, "columns[1].pad: must be exactly one character, got '00'"},
    {HEAD_URL "format: fixed\ncolumns: [{field: A, width: 3, truncate: middle}]\n", 7, 42,
     "columns[0].truncate: 'middle' is not one of error|right|left"},
    {HEAD_URL "format: fixed\ncolumns: [{field: A, width: 3, align: centre}]\n", 7, 39,
     "columns[0].align: 'centre' is not one of left|right"},
    {HEAD_URL "format: fixed\ncolumns: [{width: 3}]\n", 7, 11, "columns[0]: field is required"},
    {HEAD_URL "format: fixed\ncolumns: [{field: A}]\n", 7, 11, "columns[0]: width is required"},
    {HEAD_URL "format: fixed\ncolumns: [{field: A, width: 1, colour: red}]\n", 7, 32,
     "columns[0].colour: unknown key; valid keys are field, width, align, pad, truncate"},
    {HEAD_URL "columns: [{field: A, width: 1}]\n", 6, 1, "columns: only used when format is fixed"},
    /* static headers */
    {HEAD_URL "headers: {Authorization: x}\n", 6, 11,
     "headers.Authorization: ESS sets this header itself; it cannot be overridden"},
    {HEAD_URL "headers: {X-ESS-Event-Id: x}\n", 6, 11,
     "headers.X-ESS-Event-Id: ESS sets this header itself; it cannot be overridden"},
    {HEAD_URL "headers: {idempotency-key: x}\n", 6, 11,
     "headers.idempotency-key: ESS sets this header itself; it cannot be overridden"},
    {HEAD_URL "headers: {\"bad name\": x}\n", 6, 11,
     "headers.bad name: 'bad name' is not an HTTP header name (a token)"},
    {HEAD_URL "headers: {X-Api-Key: abc}\n", 6, 11,
     "headers.X-Api-Key: looks like a credential; secrets come only from environment variables: "
     "use auth"},
    {HEAD_URL "headers: {X-A: \"a\\r\\nX-B: b\"}\n", 6, 16,
     "headers.X-A: a header value is one line of at most 1024 characters"},
    {HEAD_URL "link_fields: [a..b]\n", 6, 15,
     "link_fields: 'a..b' is not a field path (names separated by '.')"},
    {"id: ab\nkind: push\nkey: k\ntarget_url: http://h/x\n", 1, 1,
     "listen_topic: required key is missing (or listen_topics)"},
    {"id: ab\nkind: webhook\n", 1, 1, "key: required key is missing"},
    {"  # lead\n\n  id: ab\n  kind: pull\n", 3, 3, "key: required key is missing"},
    {"just a string\n", 1, 1, "manifest: top level must be a mapping of keys, got a scalar"},
    {"a: [\n", 2, 1, "yaml: did not find expected node content (while parsing a flow node)"},
    {"a: 'x\n", 2, 1, "yaml: found unexpected end of stream (while scanning a quoted scalar)"},
    {"\t- x\n", 1, 1,
     "yaml: found character that cannot start any token (while scanning for the next token)"},
};

static void test_positions_table(void **state)
{
    struct ess_manifest *m = (struct ess_manifest *)1;
    struct ess_diags d;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(pos_cases) / sizeof(pos_cases[0]); i++) {
        const struct pos_case *c = &pos_cases[i];

        assert_int_equal(parse_str(c->text, &m, &d), ESS_EMANIFEST);
        assert_null(m);
        assert_true(d.n >= 1);
        if (strcmp(d.v[0].msg, c->msg) != 0 || d.v[0].line != c->line ||
            d.v[0].column != c->column) {
            print_error("case %zu: want %d:%d: %s\n          got %d:%d: %s\n", i, c->line,
                        c->column, c->msg, d.v[0].line, d.v[0].column, d.v[0].msg);
        }
        assert_string_equal(d.v[0].msg, c->msg);
        assert_int_equal(d.v[0].line, c->line);
        assert_int_equal(d.v[0].column, c->column);
        assert_string_equal(d.v[0].file, "t.yml");
        ess_diags_fini(&d);
    }
}

struct value_case {
    const char *line; /* appended to a valid manifest */
    int ok;
};

static const struct value_case value_cases[] = {
    {"target_url: http://127.0.0.1:18080/x\n", 1},
    {"target_url: https://[::1]:8443/x?a=b\n", 1},
    {"target_url: ftp://127.0.0.1:2121/inbox/\n", 1},
    {"target_url: ftps://host/\n", 1},
    {"target_url: sftp://batch@host/inbox\n", 1},
    {"target_url: HTTP://host/x\n", 1},
    {"target_url: http://\n", 0},
    {"target_url: http:///x\n", 0},
    {"target_url: http:/host/x\n", 0},
    {"target_url: file:///etc/passwd\n", 0},
    {"target_url: mailto:a@b\n", 0},
    {"target_url: http://ho st/\n", 0},
    {"target_url: '  '\n", 0},
    {"listen_topic: '*'\n", 1},
    {"listen_topic: a.*.b.#\n", 1},
    {"listen_topic: A_b-9.c\n", 1},
    {"listen_topic: a.b*\n", 0},
    {"listen_topic: .a\n", 0},
    {"listen_topic: a.\n", 0},
    {"listen_topic: a b\n", 0},
    {"listen_topic: ''\n", 0},
    {"id: a1-b\n", 1},
    {"id: a\n", 0},
    {"id: 1ab\n", 0},
    {"id: ab_c\n", 0},
    {"id: a123456789012345678901234567890123456789012345678901234567890bcd\n",
     0} /* 64 characters */,
    {"id: a123456789012345678901234567890123456789012345678901234567890bc\n",
     1} /* 63 characters */,
};

static void test_values_table(void **state)
{
    char text[512];
    struct ess_manifest *m = NULL;
    struct ess_diags d;
    size_t i;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(value_cases) / sizeof(value_cases[0]); i++) {
        /* the case's line comes first: a key given twice would be a duplicate */
        const char *l = value_cases[i].line;

        snprintf(text, sizeof(text), "%s%s%s%s%s", l, strncmp(l, "id:", 3) ? "id: ab\n" : "",
                 "kind: push\nkey: k\n", strncmp(l, "listen_topic:", 13) ? "listen_topic: a\n" : "",
                 strncmp(l, "target_url:", 11) ? "target_url: http://h/\n" : "");
        rc = parse_str(text, &m, &d);
        if ((rc == ESS_OK) != value_cases[i].ok) {
            print_error("case %zu (%s): rc %d, %s\n", i, l, rc, d.n ? d.v[0].msg : "");
        }
        assert_int_equal(rc == ESS_OK, value_cases[i].ok);
        assert_int_equal(d.n == 0, value_cases[i].ok);
        ess_manifest_free(m);
        m = NULL;
        ess_diags_fini(&d);
    }
}

static void test_durations(void **state)
{
    static const struct {
        const char *text;
        long sec;
    } cases[] = {{"45s", 45}, {"30m", 1800}, {"12h", 43200}, {"7d", 604800}, {"3650d", 315360000}};
    char text[256];
    struct ess_manifest *m = NULL;
    struct ess_diags d;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), HEAD_URL "replay_window: %s\n", cases[i].text);
        assert_int_equal(parse_str(text, &m, &d), ESS_OK);
        assert_int_equal(m->replay_window_sec, cases[i].sec);
        ess_manifest_free(m);
        ess_diags_fini(&d);
    }
}

/* ---------------------------------------------------------------- files, env, explain */

static void test_unreadable_is_config_error(void **state)
{
    struct ess_manifest *m = (struct ess_manifest *)1;
    struct ess_diags d;
    char dir[PATH_MAX];

    (void)state;
    ess_diags_init(&d);
    assert_int_equal(ess_manifest_load("/nonexistent/x.yml", &m, &d), ESS_ECONFIG);
    assert_null(m);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].code, ESS_ECONFIG);
    assert_string_equal(d.v[0].msg, "cannot read manifest: No such file or directory");
    ess_diags_fini(&d);
    data_path(dir, sizeof(dir), "manifests");
    assert_int_equal(ess_manifest_load(dir, &m, &d), ESS_ECONFIG);
    assert_string_equal(d.v[0].msg, "cannot read manifest: Is a directory");
    ess_diags_fini(&d);
}

static void test_check_env(void **state)
{
    struct ess_manifest *m = NULL;
    struct ess_diags d;
    struct ess_err err;

    (void)state;
    assert_int_equal(parse_str(HEAD_URL "auth: {type: basic, user_env: ESS_T_USER, "
                                        "password_env: ESS_T_PW}\n",
                               &m, &d),
                     ESS_OK);
    unsetenv("ESS_T_USER");
    setenv("ESS_T_PW", "hunter2", 1);
    ess_err_clear(&err);
    assert_int_equal(ess_manifest_check_env(m, &err), ESS_ECONFIG);
    assert_string_equal(err.msg, "auth.user_env: environment variable ESS_T_USER is not set");
    setenv("ESS_T_USER", "bob", 1);
    ess_err_clear(&err);
    assert_int_equal(ess_manifest_check_env(m, &err), ESS_OK);
    setenv("ESS_T_PW", "", 1);
    assert_int_equal(ess_manifest_check_env(m, &err), ESS_ECONFIG);
    assert_null(strstr(err.msg, "hunter2"));
    assert_null(strstr(err.msg, "bob"));
    unsetenv("ESS_T_USER");
    unsetenv("ESS_T_PW");
    ess_manifest_free(m);
    ess_diags_fini(&d);
}

/* tls: defaults, the files as given, verify off, and the checks the table cannot
 * express. Real files: they must exist and be readable when the manifest loads. */
static void test_tls(void **state)
{
    char pem[] = "/tmp/ess-ut-tls-XXXXXX";
    char text[1024];
    struct ess_manifest *m = NULL;
    struct ess_diags d;
    int fd;

    (void)state;
    fd = mkstemp(pem);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(parse_str(HEAD "target_url: https://h/x\n", &m, &d), ESS_OK);
    assert_int_equal(m->tls.verify, 1);
    assert_null(m->tls.ca_file);
    assert_null(m->tls.cert_file);
    ess_manifest_free(m);
    ess_diags_fini(&d);
    snprintf(text, sizeof(text),
             HEAD "target_url: https://h/x\ntls: {ca_file: %s, cert_file: %s, key_file: %s, "
                  "verify: false}\n",
             pem, pem, pem);
    assert_int_equal(parse_str(text, &m, &d), ESS_OK);
    assert_string_equal(m->tls.ca_file, pem);
    assert_string_equal(m->tls.key_file, pem);
    assert_int_equal(m->tls.verify, 0);
    ess_manifest_free(m);
    ess_diags_fini(&d);
    snprintf(text, sizeof(text), HEAD "target_url: https://h/x\ntls:\n  key_file: %s\n", pem);
    assert_int_equal(parse_str(text, &m, &d), ESS_EMANIFEST);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.v[0].msg, "tls.key_file: only used with tls.cert_file");
    assert_int_equal(d.v[0].line, 7);
    assert_int_equal(d.v[0].column, 3);
    ess_diags_fini(&d);
    unlink(pem);
    assert_int_equal(parse_str(text, &m, &d), ESS_EMANIFEST);
    assert_non_null(strstr(d.v[0].msg, "No such file or directory"));
    ess_diags_fini(&d);
}

static void test_explain_walks_table(void **state)
{
    const struct ess_manifest_key *keys;
    char *buf = NULL;
    size_t len = 0, n, i;
    FILE *f;
    char *line;
    char *eol;

    (void)state;
    keys = ess_manifest_keys(&n);
    assert_true(n >= 20);
    f = open_memstream(&buf, &len);
    assert_non_null(f);
    ess_manifest_explain(f);
    fclose(f);
    assert_non_null(strstr(buf, "KEY"));
    for (i = 0; i < n; i++) {
        assert_non_null(keys[i].name);
        assert_non_null(keys[i].doc);
        assert_true(keys[i].type != ESS_KEY_ENUM || keys[i].choices != NULL);
        assert_non_null(strstr(buf, keys[i].name));
        assert_non_null(strstr(buf, keys[i].doc));
    }
    /* the column width follows the longest key name, so look within the line */
    line = strstr(buf, "\nheartbeat_sec ");
    assert_non_null(line);
    eol = strchr(line + 1, '\n');
    assert_non_null(eol);
    *eol = '\0';
    assert_non_null(strstr(line, " int 1..3600 "));
    free(buf);
}

/* The format enum and the table's choices name the same things in the same order. */
static void test_format_names(void **state)
{
    const struct ess_manifest_key *keys;
    char want[128] = "";
    size_t n, i;
    int f;

    (void)state;
    keys = ess_manifest_keys(&n);
    for (f = ESS_FORMAT_JSON; f <= ESS_FORMAT_FORM; f++) {
        size_t used = strlen(want);

        snprintf(want + used, sizeof(want) - used, "%s%s", used ? "|" : "",
                 ess_manifest_format_name((enum ess_format)f));
    }
    for (i = 0; i < n && strcmp(keys[i].name, "format") != 0; i++) {
    }
    assert_true(i < n);
    assert_string_equal(keys[i].choices, want);
    assert_string_equal(ess_manifest_format_name((enum ess_format)99), "unknown");
}

static void test_free_null_and_args(void **state)
{
    struct ess_manifest *m = NULL;
    struct ess_diags d;

    (void)state;
    ess_manifest_free(NULL);
    ess_diags_init(&d);
    assert_int_equal(ess_manifest_parse(NULL, 3, "x", &m, &d), ESS_EINVAL);
    assert_int_equal(ess_manifest_parse("", 0, NULL, &m, &d), ESS_EMANIFEST);
    assert_null(m);
    assert_string_equal(d.v[0].file, "<string>");
    ess_diags_fini(&d);
}

/* ---------------------------------------------------------------- never crash */

static const char *const hostile[] = {
    "a: &a [*a, *a]\ntransforms: {x: *a}\n",
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
    "transforms: {x: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}\n",
    "transforms: "
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
    "]]]]]\n",
    "transforms: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: "
    "{a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: 1}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}}\n",
    "&x id: *x\n",
    "? \n",
    "---\n...\n",
    "%YAML 1.1\n---\nid: ab\n",
    "\xef\xbb\xbfid: ab\n",
    "id: !!binary aGVsbG8=\n",
    "values: {a: &v {X: Y}, b: *v}\n",
    "rename: *nope\n",
    "id:\n  - - - - -\n",
    "auth: {type: hmac, secret_env: [A]}\n",
    "kind: [push]\n",
    "listen_topics: {a: b}\n",
    "auth: {type: [hmac]}\n",
    "values: {? [a] : b}\n",
    "rename: {? {a: b} : c}\n",
    "transforms: {? [a] : b}\n",
    "transforms: {a: 1, a: 2}\n",
    "values: {s: {A: 1}, s: {B: 2}}\n",
};

static void parse_no_crash(const char *text, size_t len)
{
    struct ess_manifest *m = NULL;
    struct ess_diags d;
    int rc;

    ess_diags_init(&d);
    rc = ess_manifest_parse(text, len, "f.yml", &m, &d);
    assert_true(rc == ESS_OK || rc == ESS_EMANIFEST);
    assert_true((rc == ESS_OK) == (m != NULL));
    assert_true(rc == ESS_OK || d.n > 0);
    assert_true(d.n <= 51);
    ess_manifest_free(m);
    ess_diags_fini(&d);
}

static void test_hostile_inputs(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        parse_no_crash(hostile[i], strlen(hostile[i]));
    }
    parse_no_crash("id: a\0b\n", 8);
}

/* Random byte flips of a good manifest, and pure noise (fixed seed). */
static void test_mutations_no_crash(void **state)
{
    static const char base[] =
        HEAD_URL "rename: {a: b}\nvalues: {s: {A: \"1\"}}\n"
                 "transforms: {t: [trim, {pad: {width: 3}}]}\nauth: {type: hmac, "
                 "secret_env: S}\n";
    char buf[sizeof(base)];
    unsigned int seed = 12345;
    int i, j;

    (void)state;
    for (i = 0; i < 3000; i++) {
        memcpy(buf, base, sizeof(base));
        for (j = 0; j < 1 + i % 4; j++) {
            seed = seed * 1103515245u + 12345u;
            buf[(seed >> 8) % (sizeof(base) - 1)] = (char)(seed >> 16);
        }
        parse_no_crash(buf, sizeof(base) - 1);
    }
    for (i = 0; i < 200; i++) {
        for (j = 0; j < (int)sizeof(buf); j++) {
            seed = seed * 1103515245u + 12345u;
            buf[j] = (char)(seed >> 16);
        }
        parse_no_crash(buf, sizeof(buf));
    }
}

static void test_error_flood_is_capped(void **state)
{
    char *text = malloc(100000);
    size_t used = 0;
    int i;

    (void)state;
    assert_non_null(text);
    for (i = 0; i < 5000; i++) {
        used += (size_t)snprintf(text + used, 100000 - used, "k%d: 1\n", i);
    }
    parse_no_crash(text, used);
    free(text);
}

int main(void)
{
    const char *env = getenv("ESS_TEST_DATA");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_full_typed_values),
        cmocka_unit_test(test_pull_needs_no_target),
        cmocka_unit_test(test_sha256_is_text_digest),
        cmocka_unit_test(test_examples_load),
        cmocka_unit_test(test_example_city2dmv),
        cmocka_unit_test(test_bad_cases),
        cmocka_unit_test(test_all_errors_in_one_pass),
        cmocka_unit_test(test_positions_table),
        cmocka_unit_test(test_values_table),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_unreadable_is_config_error),
        cmocka_unit_test(test_check_env),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_explain_walks_table),
        cmocka_unit_test(test_format_names),
        cmocka_unit_test(test_free_null_and_args),
        cmocka_unit_test(test_hostile_inputs),
        cmocka_unit_test(test_mutations_no_crash),
        cmocka_unit_test(test_error_flood_is_capped),
    };

    /* Absolute, so tests that chdir still find the data. */
    if (env == NULL || realpath(env, data_dir) == NULL) {
        fprintf(stderr, "ESS_TEST_DATA must point at tests/data\n");
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
