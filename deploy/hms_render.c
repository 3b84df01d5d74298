/*
 * hms_render -- `hms ess render` and `hms ess test`: try a manifest's mapping
 * offline, before it touches a partner (no broker, no database, no network).
 *
 * render  one event (a file or stdin; plain JSON or a CloudEvent) -> the request
 *         ESS would send: "POST <target_url>", every header, a blank line, the
 *         body. Secrets are masked unless --show-secrets.
 * test    the cases in <manifest-name>.tests.yml beside the manifest: each an
 *         event and what to expect (an exact body, a JSON document, a park
 *         reason, header values), reported PASS/FAIL with a diff.
 *
 * DESIGN
 * Both commands go through render_request(), which calls exactly what the
 * worker calls (ess_event_parse -> ess_shape_apply -> ess_shape_render ->
 * ess_render_request_headers), so a mapping that renders here is the mapping
 * the worker delivers. An auth variable that is unset gets a placeholder value
 * in this process only (render says so on stderr): the point is to see the
 * request, and the signing code runs unchanged. Tests compare headers as render
 * prints them, masked, so a tests file never holds a secret and runs in CI
 * without one.
 *
 * The tests file is read with libyaml's document API (every node keeps its
 * position) and converted to jansson; every structural error is reported at
 * once as file:line:column (exit 65).
 */
#include "hms.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include <curl/curl.h>
#include <yaml.h>

#include "ess_err.h"
#include "ess_event.h"
#include "ess_manifest.h"
#include "ess_render.h"
#include "ess_shape.h"
#include "ess_worker.h"

#define RENDER_EVENT_MAX (16u * 1024u * 1024u) /* an event larger than this is refused */
#define RENDER_YAML_DEPTH 64                   /* nesting limit for a tests file */
#define RENDER_DETAIL_MAX 4096                 /* one case's failure detail */
#define RENDER_CONTEXT 40                      /* characters shown around a body difference */

/* One request as the worker would send it. */
struct render_req {
    char *body; /* malloc'd */
    size_t len;
    const char *ctype; /* static */
    struct curl_slist *headers;
};

static void render_req_fini(struct render_req *r)
{
    free(r->body);
    curl_slist_free_all(r->headers);
    memset(r, 0, sizeof(*r));
}

/* ---- the shared path: event text -> request ------------------------------ */

/* ESS_EPARSE: the worker would dead-letter the event; ESS_ESHAPE: it would park
 * it; err says why. now_s is the webhook-timestamp. */
static int render_request(const struct ess_manifest *m, const char *text, size_t len,
                          long long now_s, struct render_req *r, struct ess_err *err)
{
    struct ess_event ev;
    json_t *shaped = NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    rc = ess_event_parse(text, len, NULL, m->key, &ev, err);
    if (rc != ESS_OK) {
        return rc;
    }
    rc = ess_shape_apply(m, ev.data, &shaped, err);
    if (rc == ESS_OK) {
        rc = ess_shape_render(m, shaped, &r->body, &r->len, &r->ctype, err);
    }
    if (rc == ESS_OK) {
        rc = ess_render_request_headers(m, ev.id, r->ctype, r->body, r->len, now_s, &r->headers,
                                        err);
    } else if (rc != ESS_ENOMEM) {
        rc = ESS_ESHAPE; /* as the worker: whatever cannot be shaped parks the event */
    }
    json_decref(shaped);
    ess_event_fini(&ev);
    return rc;
}

/* The auth variables a manifest names, with the key that names them. */
static size_t render_auth_vars(const struct ess_manifest *m, const char *vars[4],
                               const char *keys[4])
{
    const char *const all[4] = {m->auth.secret_env, m->auth.token_env, m->auth.user_env,
                                m->auth.password_env};
    const char *const names[4] = {"secret_env", "token_env", "user_env", "password_env"};
    size_t n = 0;
    size_t i;

    for (i = 0; i < 4; i++) {
        if (m->auth.type != ESS_AUTH_NONE && all[i] != NULL && all[i][0] != '\0') {
            vars[n] = all[i];
            keys[n] = names[i];
            n++;
        }
    }
    return n;
}

/* Give every unset auth variable a placeholder (in this process only) so the
 * request renders; say so unless quiet. */
static void render_placeholders(const struct ess_manifest *m, int quiet)
{
    const char *vars[4];
    const char *keys[4];
    char value[300];
    const char *v;
    size_t n;
    size_t i;

    n = render_auth_vars(m, vars, keys);
    for (i = 0; i < n; i++) {
        v = getenv(vars[i]);
        if (v != NULL && v[0] != '\0') {
            continue;
        }
        snprintf(value, sizeof(value), "unset-%s", vars[i]);
        setenv(vars[i], value, 1);
        if (!quiet) {
            fprintf(stderr,
                    "hms: %s (auth.%s) is not set: rendered with a placeholder; the worker "
                    "would refuse to start without it\n",
                    vars[i], keys[i]);
        }
    }
}

/* ---- masking ------------------------------------------------------------- */

/* A header line as an operator may see it: the Authorization credentials and
 * webhook signatures become *** (the scheme and signature version stay). */
static void render_mask(const char *line, int show, char *out, size_t len)
{
    const char *v;
    size_t scheme;

    v = strchr(line, ':');
    if (show || v == NULL) {
        snprintf(out, len, "%s", line);
        return;
    }
    v += strspn(v + 1, " ") + 1;
    if (strncasecmp(line, "Authorization:", 14) == 0) {
        scheme = strcspn(v, " ");
        if (v[scheme] == '\0') {
            scheme = 0;
        }
        snprintf(out, len, "%.*s%.*s%s***", (int)(v - line), line, (int)scheme, v,
                 scheme > 0 ? " " : "");
    } else if (strncasecmp(line, "webhook-signature:", 18) == 0) {
        snprintf(out, len, "%.*sv1,***", (int)(v - line), line);
    } else {
        snprintf(out, len, "%s", line);
    }
}

/* ---- render -------------------------------------------------------------- */

/* Read all of f (at most RENDER_EVENT_MAX bytes) into *buf, NUL-terminated. */
static int render_read_all(FILE *f, char **buf, size_t *len)
{
    char *data = NULL;
    char *grown;
    size_t cap = 0;
    size_t n = 0;
    size_t got;

    do {
        if (cap - n < 4096) {
            cap = cap == 0 ? 8192 : cap * 2;
            grown = cap <= RENDER_EVENT_MAX + 8192 ? realloc(data, cap) : NULL;
            if (grown == NULL) {
                free(data);
                return -1;
            }
            data = grown;
        }
        got = fread(data + n, 1, cap - n - 1, f);
        n += got;
    } while (got > 0);
    if (ferror(f) || n > RENDER_EVENT_MAX) {
        free(data);
        return -1;
    }
    data[n] = '\0';
    *buf = data;
    *len = n;
    return 0;
}

/* Load a manifest, printing every positioned error. A sysexits code. */
static int render_load_manifest(const char *path, struct ess_manifest **m)
{
    int rc = ess_manifest_load_reported(path, m, stderr);

    return rc == ESS_OK ? EX_OK : ess_err_exit_code(rc);
}

/* The event text from a file, or stdin when path is NULL or "-". */
static int render_read_event(const char *path, char **buf, size_t *len)
{
    FILE *f = stdin;
    int rc;

    if (path != NULL && strcmp(path, "-") != 0) {
        f = fopen(path, "rb");
        if (f == NULL) {
            fprintf(stderr, "hms: %s: %s\n", path, strerror(errno));
            return EX_NOINPUT;
        }
    }
    rc = render_read_all(f, buf, len);
    if (f != stdin) {
        fclose(f);
    }
    if (rc != 0) {
        fprintf(stderr, "hms: %s: cannot read the event (or it is over %u bytes)\n",
                path != NULL ? path : "stdin", RENDER_EVENT_MAX);
        return EX_NOINPUT;
    }
    return EX_OK;
}

static void render_print(const struct ess_manifest *m, const struct render_req *r, int show)
{
    const struct curl_slist *h;
    char line[2048];

    printf("POST %s\n", m->target_url != NULL ? m->target_url : "-");
    for (h = r->headers; h != NULL; h = h->next) {
        render_mask(h->data, show, line, sizeof(line));
        printf("%s\n", line);
    }
    printf("\n");
    fwrite(r->body, 1, r->len, stdout);
    if (r->len == 0 || r->body[r->len - 1] != '\n') {
        printf("\n"); /* for the terminal; the body itself has no trailing newline */
    }
}

/* Where the masked credentials come from: what an operator checks first. */
static void render_note_secrets(const struct ess_manifest *m, int show)
{
    const char *vars[4];
    const char *keys[4];
    size_t n;
    size_t i;

    n = render_auth_vars(m, vars, keys);
    if (show || n == 0) {
        return;
    }
    fprintf(stderr, "hms: auth %s from",
            m->auth.type == ESS_AUTH_HMAC     ? "hmac"
            : m->auth.type == ESS_AUTH_BEARER ? "bearer"
                                              : "basic");
    for (i = 0; i < n; i++) {
        fprintf(stderr, "%s $%s", i > 0 ? "," : "", vars[i]);
    }
    fprintf(stderr, " (masked; --show-secrets prints it)\n");
}

struct render_args {
    const char *manifest;
    const char *event;
    int show_secrets;
    long long at; /* webhook-timestamp; 0: now */
};

static int render_parse_args(int argc, char **argv, struct render_args *a)
{
    char *end;
    int i;

    memset(a, 0, sizeof(*a));
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--show-secrets") == 0) {
            a->show_secrets = 1;
        } else if (strcmp(argv[i], "--at") == 0 && i + 1 < argc) {
            errno = 0;
            a->at = strtoll(argv[++i], &end, 10);
            if (errno != 0 || *end != '\0' || a->at <= 0) {
                fprintf(stderr, "hms: --at wants epoch seconds, got '%s'\n", argv[i]);
                return EX_USAGE;
            }
        } else if (a->manifest == NULL) {
            a->manifest = argv[i];
        } else if (a->event == NULL) {
            a->event = argv[i];
        } else {
            a->manifest = NULL;
            break;
        }
    }
    if (a->manifest == NULL) {
        fprintf(stderr, "usage: hms ess render <manifest> [event.json|-] [--show-secrets] "
                        "[--at EPOCH]\n");
        return EX_USAGE;
    }
    return EX_OK;
}

int hms_cmd_render(int argc, char **argv, const struct hms_opts *o)
{
    struct render_args a;
    struct ess_manifest *m = NULL;
    struct render_req r = {0};
    struct ess_err err;
    char *text = NULL;
    size_t len = 0;
    int rc;

    (void)o;
    ess_err_clear(&err);
    rc = render_parse_args(argc, argv, &a);
    if (rc == EX_OK) {
        rc = render_load_manifest(a.manifest, &m);
    }
    if (rc == EX_OK) {
        rc = render_read_event(a.event, &text, &len);
    }
    if (rc != EX_OK) {
        goto cleanup;
    }
    render_placeholders(m, 0);
    rc = render_request(m, text, len, a.at > 0 ? a.at : ess_worker_wall_ms() / 1000, &r, &err);
    if (rc == ESS_OK) {
        render_print(m, &r, a.show_secrets);
        render_note_secrets(m, a.show_secrets);
        if (m->delta) {
            fprintf(stderr, "hms: delta: true: this is a key's first delivery; later ones carry "
                            "the key and only the fields that changed\n");
        }
    } else if (rc == ESS_ESHAPE) {
        printf("would park: %s\n", err.msg);
    } else if (rc == ESS_EPARSE) {
        fprintf(stderr, "hms: event refused (the worker dead-letters it): %s\n", err.msg);
    } else {
        fprintf(stderr, "hms: %s\n", err.msg);
    }
    rc = rc == ESS_OK ? EX_OK : ess_err_exit_code(rc == ESS_ESHAPE ? ESS_EPARSE : rc);
cleanup:
    render_req_fini(&r);
    free(text);
    ess_manifest_free(m);
    return rc;
}

/* ---- tests file: YAML -> cases ------------------------------------------- */

struct test_case {
    char *name;
    int line;
    json_t *event;   /* object */
    char *body;      /* exact body, or NULL */
    json_t *json;    /* expected JSON document, or NULL */
    char *park;      /* substring of the park reason, or NULL */
    json_t *headers; /* object name -> string, or NULL */
    int has_event;
    int has_expect;
};

struct test_file {
    const char *path;
    yaml_document_t doc;
    struct ess_diags diags;
    struct test_case *cases;
    size_t n;
};

static void test_case_fini(struct test_case *c)
{
    free(c->name);
    free(c->body);
    free(c->park);
    json_decref(c->event);
    json_decref(c->json);
    json_decref(c->headers);
}

static void test_err(struct test_file *t, const yaml_node_t *n, const char *where, const char *msg)
{
    ess_diags_add(&t->diags, ESS_EMANIFEST, t->path, (int)n->start_mark.line + 1,
                  (int)n->start_mark.column + 1, "%s: %s", where, msg);
}

static yaml_node_t *test_node(struct test_file *t, int id)
{
    return yaml_document_get_node(&t->doc, id);
}

/* A plain scalar as YAML 1.2's core schema reads it; quoted ones are strings. */
static json_t *test_scalar(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    long long i;
    double d;

    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return json_stringn(s, n->data.scalar.length);
    }
    if (s[0] == '\0' || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0) {
        return json_null();
    }
    if (strcasecmp(s, "true") == 0 || strcasecmp(s, "false") == 0) {
        return json_boolean(strcasecmp(s, "true") == 0);
    }
    errno = 0;
    i = strtoll(s, &end, 10);
    if (errno == 0 && *end == '\0' && strspn(s, "+-0123456789") == strlen(s)) {
        return json_integer(i);
    }
    errno = 0;
    d = strtod(s, &end);
    if (errno == 0 && *end == '\0' && strspn(s, "+-0123456789.eE") == strlen(s)) {
        return json_real(d);
    }
    return json_stringn(s, n->data.scalar.length);
}

static json_t *test_to_json(struct test_file *t, yaml_node_t *n, int depth);

static json_t *test_mapping_json(struct test_file *t, yaml_node_t *n, int depth)
{
    yaml_node_pair_t *p;
    yaml_node_t *k;
    json_t *obj = json_object();
    json_t *v;

    for (p = n->data.mapping.pairs.start; obj != NULL && p < n->data.mapping.pairs.top; p++) {
        k = test_node(t, p->key);
        if (k == NULL || k->type != YAML_SCALAR_NODE) {
            test_err(t, k != NULL ? k : n, "key", "a mapping key must be a scalar");
            json_decref(obj);
            return NULL;
        }
        v = test_to_json(t, test_node(t, p->value), depth + 1);
        if (v == NULL) {
            json_decref(obj);
            return NULL;
        }
        json_object_set_new(obj, (const char *)k->data.scalar.value, v);
    }
    return obj;
}

/* Any YAML node as JSON; NULL after recording an error. */
static json_t *test_to_json(struct test_file *t, yaml_node_t *n, int depth)
{
    yaml_node_item_t *it;
    json_t *arr;
    json_t *v;

    if (n == NULL || depth > RENDER_YAML_DEPTH) {
        if (n != NULL) {
            test_err(t, n, "value", "nested too deeply");
        }
        return NULL;
    }
    if (n->type == YAML_SCALAR_NODE) {
        return test_scalar(n);
    }
    if (n->type == YAML_MAPPING_NODE) {
        return test_mapping_json(t, n, depth);
    }
    arr = json_array();
    for (it = n->data.sequence.items.start; arr != NULL && it < n->data.sequence.items.top; it++) {
        v = test_to_json(t, test_node(t, *it), depth + 1);
        if (v == NULL) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, v);
    }
    return arr;
}

/* A scalar's text, or NULL after recording an error naming where. */
static char *test_text(struct test_file *t, yaml_node_t *n, const char *where)
{
    char msg[128];

    if (n->type != YAML_SCALAR_NODE) {
        snprintf(msg, sizeof(msg), "must be a string, got a %s",
                 n->type == YAML_MAPPING_NODE ? "mapping" : "list");
        test_err(t, n, where, msg);
        return NULL;
    }
    return strdup((const char *)n->data.scalar.value);
}

/* expect.headers: Name -> value, both scalars. */
static json_t *test_headers(struct test_file *t, yaml_node_t *n, const char *where)
{
    yaml_node_pair_t *p;
    yaml_node_t *k;
    yaml_node_t *v;
    json_t *obj;

    if (n->type != YAML_MAPPING_NODE) {
        test_err(t, n, where, "must be a mapping of header name to value");
        return NULL;
    }
    obj = json_object();
    for (p = n->data.mapping.pairs.start; obj != NULL && p < n->data.mapping.pairs.top; p++) {
        k = test_node(t, p->key);
        v = test_node(t, p->value);
        if (k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE) {
            test_err(t, k->type != YAML_SCALAR_NODE ? k : v, where,
                     "header names and values must be strings");
            json_decref(obj);
            return NULL;
        }
        json_object_set_new(obj, (const char *)k->data.scalar.value,
                            json_string((const char *)v->data.scalar.value));
    }
    return obj;
}

static void test_expect_key(struct test_file *t, struct test_case *c, yaml_node_t *k,
                            yaml_node_t *v, const char *where)
{
    const char *key = (const char *)k->data.scalar.value;
    char msg[200];

    if (strcmp(key, "body") == 0) {
        c->body = test_text(t, v, where);
    } else if (strcmp(key, "json") == 0) {
        c->json = test_to_json(t, v, 0);
    } else if (strcmp(key, "park") == 0) {
        c->park = test_text(t, v, where);
    } else if (strcmp(key, "headers") == 0) {
        c->headers = test_headers(t, v, where);
    } else {
        snprintf(msg, sizeof(msg), "unknown key '%s'; valid keys are body, json, park, headers",
                 key);
        test_err(t, k, where, msg);
    }
}

/* cases[i].expect: exactly one of body, json, park; headers beside body/json. */
static void test_expect(struct test_file *t, struct test_case *c, yaml_node_t *n, const char *where)
{
    yaml_node_pair_t *p;
    yaml_node_t *k;
    int outcomes;

    if (n->type != YAML_MAPPING_NODE) {
        test_err(t, n, where, "must be a mapping: {body|json|park, headers}");
        return;
    }
    for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        k = test_node(t, p->key);
        if (k->type != YAML_SCALAR_NODE) {
            test_err(t, k, where, "keys must be strings");
            continue;
        }
        test_expect_key(t, c, k, test_node(t, p->value), where);
    }
    outcomes = (c->body != NULL) + (c->json != NULL) + (c->park != NULL);
    if (outcomes > 1) {
        test_err(t, n, where, "give one of body, json, park");
    } else if (outcomes == 0 && c->headers == NULL) {
        test_err(t, n, where, "expects nothing: give body, json, park or headers");
    } else if (c->park != NULL && c->headers != NULL) {
        test_err(t, n, where, "a parked event sends no headers: drop headers or park");
    }
}

static void test_case_key(struct test_file *t, struct test_case *c, yaml_node_t *k, yaml_node_t *v,
                          const char *prefix)
{
    const char *key = (const char *)k->data.scalar.value;
    char where[96];
    char msg[200];

    snprintf(where, sizeof(where), "%s.%s", prefix, key);
    if (strcmp(key, "name") == 0) {
        c->name = test_text(t, v, where);
    } else if (strcmp(key, "event") == 0) {
        c->has_event = 1;
        if (v->type != YAML_MAPPING_NODE) {
            test_err(t, v, where, "must be a mapping (the event's JSON object)");
        } else {
            c->event = test_to_json(t, v, 0);
        }
    } else if (strcmp(key, "expect") == 0) {
        test_expect(t, c, v, where);
        c->has_expect = 1;
    } else {
        snprintf(msg, sizeof(msg), "unknown key '%s'; valid keys are name, event, expect", key);
        test_err(t, k, prefix, msg);
    }
}

/* One list item -> a case; missing keys recorded at the item. */
static void test_case_parse(struct test_file *t, struct test_case *c, yaml_node_t *n, size_t idx)
{
    yaml_node_pair_t *p;
    yaml_node_t *k;
    char prefix[32];

    snprintf(prefix, sizeof(prefix), "cases[%zu]", idx);
    if (n->type != YAML_MAPPING_NODE) {
        test_err(t, n, prefix, "a case is a mapping {name, event, expect}");
        return;
    }
    for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        k = test_node(t, p->key);
        if (k->type != YAML_SCALAR_NODE) {
            test_err(t, k, prefix, "keys must be strings");
            continue;
        }
        test_case_key(t, c, k, test_node(t, p->value), prefix);
    }
    if (c->name == NULL) {
        test_err(t, n, prefix, "name is required");
    }
    if (!c->has_event) {
        test_err(t, n, prefix, "event is required");
    }
    if (!c->has_expect) {
        test_err(t, n, prefix, "expect is required");
    }
    c->line = (int)n->start_mark.line + 1;
}

/* Parse the YAML text; a syntax error is recorded with libyaml's position. */
static int test_load_doc(struct test_file *t, FILE *f)
{
    yaml_parser_t parser;
    int ok;

    if (!yaml_parser_initialize(&parser)) {
        return -1;
    }
    yaml_parser_set_input_file(&parser, f);
    ok = yaml_parser_load(&parser, &t->doc);
    if (!ok) {
        ess_diags_add(&t->diags, ESS_EMANIFEST, t->path, (int)parser.problem_mark.line + 1,
                      (int)parser.problem_mark.column + 1, "%s%s%s",
                      parser.context != NULL ? parser.context : "",
                      parser.context != NULL ? ": " : "",
                      parser.problem != NULL ? parser.problem : "not YAML");
    }
    yaml_parser_delete(&parser);
    return ok ? 0 : -1;
}

static void test_cases_parse(struct test_file *t)
{
    yaml_node_t *root = yaml_document_get_root_node(&t->doc);
    yaml_node_item_t *it;
    size_t n;

    if (root == NULL || root->type != YAML_SEQUENCE_NODE ||
        root->data.sequence.items.top == root->data.sequence.items.start) {
        ess_diags_add(&t->diags, ESS_EMANIFEST, t->path,
                      root != NULL ? (int)root->start_mark.line + 1 : 1,
                      root != NULL ? (int)root->start_mark.column + 1 : 1,
                      "cases: want a non-empty list of {name, event, expect}");
        return;
    }
    n = (size_t)(root->data.sequence.items.top - root->data.sequence.items.start);
    t->cases = calloc(n, sizeof(*t->cases));
    if (t->cases == NULL) {
        ess_diags_add(&t->diags, ESS_ENOMEM, t->path, 0, 0, "out of memory");
        return;
    }
    t->n = n;
    for (it = root->data.sequence.items.start; it < root->data.sequence.items.top; it++) {
        n = (size_t)(it - root->data.sequence.items.start);
        test_case_parse(t, &t->cases[n], test_node(t, *it), n);
    }
}

/* Load a tests file. A sysexits code; errors printed. */
static int test_file_load(struct test_file *t, const char *path)
{
    char line[700];
    FILE *f;
    size_t i;
    int loaded;

    memset(t, 0, sizeof(*t));
    t->path = path;
    ess_diags_init(&t->diags);
    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "hms: %s: %s (a YAML list of {name, event, expect} cases)\n", path,
                strerror(errno));
        return EX_NOINPUT;
    }
    loaded = test_load_doc(t, f) == 0;
    fclose(f);
    if (loaded) {
        test_cases_parse(t);
    }
    for (i = 0; i < t->diags.n; i++) {
        fprintf(stderr, "%s\n", ess_err_format(&t->diags.v[i], line, sizeof(line)));
    }
    if (!loaded) {
        memset(&t->doc, 0, sizeof(t->doc)); /* nothing to delete */
    }
    return t->diags.n == 0 ? EX_OK : EX_DATAERR;
}

static void test_file_fini(struct test_file *t)
{
    size_t i;

    for (i = 0; i < t->n; i++) {
        test_case_fini(&t->cases[i]);
    }
    free(t->cases);
    yaml_document_delete(&t->doc);
    ess_diags_fini(&t->diags);
}

/* ---- running a case ------------------------------------------------------ */

/* Append to a detail buffer; it keeps what fits. */
static void detail_add(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void detail_add(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list ap;

    if (used + 1 >= len) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

/* Text around offset at, on one line (newlines shown as \n). */
static void body_excerpt(const char *s, size_t len, size_t at, char *out, size_t outlen)
{
    size_t from = at > RENDER_CONTEXT ? at - RENDER_CONTEXT : 0;
    size_t to = at + RENDER_CONTEXT < len ? at + RENDER_CONTEXT : len;
    size_t o = 0;
    size_t i;

    if (from > 0 && o + 3 < outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    for (i = from; i < to && o + 6 < outlen; i++) {
        if (s[i] == '\n' || s[i] == '\r') {
            out[o++] = '\\';
            out[o++] = s[i] == '\n' ? 'n' : 'r';
        } else {
            out[o++] = s[i];
        }
    }
    if (to < len && o + 3 < outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static int test_check_body(const struct test_case *c, const struct render_req *r, char *why,
                           size_t len)
{
    size_t want = strlen(c->body);
    size_t at = 0;
    char a[3 * RENDER_CONTEXT + 16];
    char b[3 * RENDER_CONTEXT + 16];

    if (want == r->len && memcmp(c->body, r->body, want) == 0) {
        return 1;
    }
    while (at < want && at < r->len && c->body[at] == r->body[at]) {
        at++;
    }
    body_excerpt(c->body, want, at, a, sizeof(a));
    body_excerpt(r->body, r->len, at, b, sizeof(b));
    detail_add(why, len,
               "body differs at byte %zu (expected %zu bytes, got %zu)\n"
               "      expected: %s\n      got:      %s",
               at, want, r->len, a, b);
    return 0;
}

/* Both values compact, keys sorted: what a diff line shows. */
static void json_line(const char *label, json_t *v, char *why, size_t len)
{
    char *s = v != NULL ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;

    detail_add(why, len, "\n      %s%s", label, s != NULL ? s : "(missing)");
    free(s);
}

/* Field by field for two objects, else the two documents. */
static void json_diff(json_t *want, json_t *got, char *why, size_t len)
{
    const char *k;
    json_t *v;

    if (!json_is_object(want) || !json_is_object(got)) {
        detail_add(why, len, "body JSON differs");
        json_line("expected: ", want, why, len);
        json_line("got:      ", got, why, len);
        return;
    }
    detail_add(why, len, "body JSON differs");
    json_object_foreach(want, k, v)
    {
        if (!json_equal(v, json_object_get(got, k))) {
            detail_add(why, len, "\n      %s:", k);
            json_line("  expected ", v, why, len);
            json_line("  got      ", json_object_get(got, k), why, len);
        }
    }
    json_object_foreach(got, k, v)
    {
        if (json_object_get(want, k) == NULL) {
            detail_add(why, len, "\n      %s: not expected", k);
            json_line("  got      ", v, why, len);
        }
    }
}

static int test_check_json(const struct test_case *c, const struct render_req *r, char *why,
                           size_t len)
{
    json_error_t jerr;
    json_t *got;
    int ok;

    got = json_loadb(r->body, r->len, JSON_DECODE_ANY, &jerr);
    if (got == NULL) {
        detail_add(why, len, "body is not JSON (%s): %.200s", jerr.text, r->body);
        return 0;
    }
    ok = json_equal(c->json, got);
    if (!ok) {
        json_diff(c->json, got, why, len);
    }
    json_decref(got);
    return ok;
}

/* expect.headers against the request's headers, masked as render prints them. */
static int test_check_headers(const struct test_case *c, const struct render_req *r, char *why,
                              size_t len)
{
    const struct curl_slist *h;
    const char *name;
    json_t *want;
    char line[2048];
    const char *got;
    int ok = 1;

    json_object_foreach(c->headers, name, want)
    {
        got = NULL;
        for (h = r->headers; h != NULL && got == NULL; h = h->next) {
            if (strncasecmp(h->data, name, strlen(name)) == 0 && h->data[strlen(name)] == ':') {
                render_mask(h->data, 0, line, sizeof(line));
                got = line + strlen(name) + 1 + strspn(line + strlen(name) + 1, " ");
            }
        }
        if (got == NULL || strcmp(got, json_string_value(want)) != 0) {
            detail_add(why, len, "%sheader %s: expected '%s', got %s%s%s",
                       why[0] != '\0' ? "\n      " : "", name, json_string_value(want),
                       got != NULL ? "'" : "", got != NULL ? got : "no such header",
                       got != NULL ? "'" : "");
            ok = 0;
        }
    }
    return ok;
}

/* The outcome against the expectation: 1 pass, 0 fail with why. */
static int test_judge(const struct test_case *c, int rc, const struct ess_err *err,
                      const struct render_req *r, char *why, size_t len)
{
    int ok = 1;

    if (rc == ESS_EPARSE) {
        detail_add(why, len, "event refused (the worker dead-letters it): %s", err->msg);
        return 0;
    }
    if (rc == ESS_ESHAPE && c->park == NULL) {
        detail_add(why, len, "would park: %s", err->msg);
        return 0;
    }
    if (rc == ESS_ESHAPE) {
        if (strstr(err->msg, c->park) == NULL) {
            detail_add(why, len, "park reason lacks '%s'\n      got: %s", c->park, err->msg);
            return 0;
        }
        return 1;
    }
    if (rc != ESS_OK) {
        detail_add(why, len, "%s", err->msg);
        return 0;
    }
    if (c->park != NULL) {
        detail_add(why, len, "expected a park ('%s'), got a body: %.200s", c->park, r->body);
        return 0;
    }
    if (c->body != NULL) {
        ok = test_check_body(c, r, why, len);
    } else if (c->json != NULL) {
        ok = test_check_json(c, r, why, len);
    }
    if (c->headers != NULL && !test_check_headers(c, r, why, len)) {
        ok = 0;
    }
    return ok;
}

static int test_run_case(const struct ess_manifest *m, const struct test_case *c, char *why,
                         size_t len)
{
    struct render_req r = {0};
    struct ess_err err;
    char *text;
    int rc;
    int ok;

    ess_err_clear(&err);
    why[0] = '\0';
    text = json_dumps(c->event, JSON_COMPACT);
    if (text == NULL) {
        detail_add(why, len, "out of memory");
        return 0;
    }
    rc = render_request(m, text, strlen(text), ess_worker_wall_ms() / 1000, &r, &err);
    ok = test_judge(c, rc, &err, &r, why, len);
    render_req_fini(&r);
    free(text);
    return ok;
}

/* ---- test ---------------------------------------------------------------- */

/* manifests/city2dmv.yml -> manifests/city2dmv.tests.yml */
static int test_path_for(const char *manifest, char *out, size_t len)
{
    const char *slash = strrchr(manifest, '/');
    const char *dot = strrchr(manifest, '.');
    size_t stem = strlen(manifest);
    int n;

    if (dot != NULL && (slash == NULL || dot > slash + 1) &&
        (strcmp(dot, ".yml") == 0 || strcmp(dot, ".yaml") == 0)) {
        stem = (size_t)(dot - manifest);
    }
    n = snprintf(out, len, "%.*s.tests.yml", (int)stem, manifest);
    return n > 0 && (size_t)n < len ? 0 : -1;
}

static int test_parse_args(int argc, char **argv, const char **manifest, const char **tests)
{
    int i;

    *manifest = NULL;
    *tests = NULL;
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--tests") == 0 && i + 1 < argc) {
            *tests = argv[++i];
        } else if (*manifest == NULL && argv[i][0] != '-') {
            *manifest = argv[i];
        } else {
            *manifest = NULL;
            break;
        }
    }
    if (*manifest == NULL) {
        fprintf(stderr, "usage: hms ess test <manifest> [--tests FILE]\n");
        return EX_USAGE;
    }
    return EX_OK;
}

/* Run every case; rows for --json, lines otherwise. Returns the failures. */
static size_t test_run_all(const struct hms_opts *o, const struct ess_manifest *m,
                           const struct test_file *t)
{
    static const char *const cols[] = {"case", "result", "line", "detail", NULL};
    char why[RENDER_DETAIL_MAX];
    json_t *rows = json_array();
    size_t failed = 0;
    size_t i;
    int ok;

    for (i = 0; i < t->n; i++) {
        ok = test_run_case(m, &t->cases[i], why, sizeof(why));
        failed += ok ? 0 : 1;
        if (o->json) {
            json_array_append_new(rows, json_pack("{s:s, s:s, s:i, s:s}", "case", t->cases[i].name,
                                                  "result", ok ? "PASS" : "FAIL", "line",
                                                  t->cases[i].line, "detail", why));
        } else if (ok) {
            printf("PASS  %s\n", t->cases[i].name);
        } else {
            printf("FAIL  %s (%s:%d)\n      %s\n", t->cases[i].name, t->path, t->cases[i].line,
                   why);
        }
    }
    if (o->json) {
        hms_out_rows(o, rows, cols);
    } else {
        printf("%zu passed, %zu failed\n", t->n - failed, failed);
    }
    json_decref(rows);
    return failed;
}

int hms_cmd_test(int argc, char **argv, const struct hms_opts *o)
{
    struct ess_manifest *m = NULL;
    struct test_file t;
    const char *manifest;
    const char *tests;
    char path[4096];
    int rc;

    memset(&t, 0, sizeof(t));
    rc = test_parse_args(argc, argv, &manifest, &tests);
    if (rc == EX_OK && tests == NULL && test_path_for(manifest, path, sizeof(path)) != 0) {
        fprintf(stderr, "hms: %s: path too long\n", manifest);
        rc = EX_USAGE;
    }
    if (rc == EX_OK) {
        rc = render_load_manifest(manifest, &m);
    }
    if (rc == EX_OK) {
        rc = test_file_load(&t, tests != NULL ? tests : path);
    }
    if (rc == EX_OK) {
        render_placeholders(m, 1); /* offline: secrets are masked in every comparison */
        rc = test_run_all(o, m, &t) == 0 ? EX_OK : 1;
    }
    test_file_fini(&t);
    ess_manifest_free(m);
    return rc;
}
