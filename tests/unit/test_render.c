/*
 * test_render -- every format as a table (record in, exact body out, or the park
 * reason), escaping (`Main & 1st <N>` survives xml, soap, csv and form), fixed
 * alignment / pad / truncation, key order, SOAPAction, static headers, and the
 * SOAP fault scan. Manifests are built by hand, independent of the parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ess_render.h"

/* Cases name only what they need; the rest is zero. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define MAXN 6
#define XML_HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
#define SOAP_HEAD                                               \
    "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope " \
    "xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>"
#define SOAP_TAIL "</soap:Body></soap:Envelope>"
#define MAIN "Main & 1st <N>"
#define MAIN_XML "Main &amp; 1st &lt;N&gt;"

struct rcase {
    const char *name;
    enum ess_format format;
    const char *in;
    const char *want; /* body; NULL when an error is expected */
    int want_rc;
    const char *want_msg;
    const char *ctype;
    /* manifest settings */
    const char *root;
    const char *action, *ns, *op;
    int header;
    const char *delim;
    const struct ess_column *cols;
    size_t ncols;
    const char *fields[MAXN];
    const char *rename[MAXN][2];
};

static char *col_num = "APPT_NUM";
static char *col_name = "NAME";
static char *col_city = "CITY";
static char *pad0 = "0";
static char *pad_sp = " ";
static char *pad_dot = ".";

static const struct ess_column layout[] = {
    {.field = NULL, .width = 10, .align = ESS_ALIGN_RIGHT, .truncate = ESS_TRUNCATE_ERROR},
    {.field = NULL, .width = 8, .align = ESS_ALIGN_LEFT, .truncate = ESS_TRUNCATE_RIGHT},
    {.field = NULL, .width = 4, .align = ESS_ALIGN_LEFT, .truncate = ESS_TRUNCATE_LEFT},
};
static struct ess_column cols[3];

static const struct rcase cases[] = {
    {"json", ESS_FORMAT_JSON, "{\"a\": 1, \"s\": \"" MAIN "\"}", "{\"a\":1,\"s\":\"" MAIN "\"}", 0,
     NULL, "application/json"},
    {"form escaping", ESS_FORMAT_FORM,
     "{\"a\": \"" MAIN "\", \"b\": 1, \"c\": {\"x\": [1, 2]}, \"d\": null, \"e\": \"\\u00e9 ~\"}",
     "a=Main+%26+1st+%3CN%3E&b=1&c=%7B%22x%22%3A%5B1%2C2%5D%7D&d=&e=%C3%A9+~", 0, NULL,
     "application/x-www-form-urlencoded"},
    {"xml escaping, nesting, arrays, null", ESS_FORMAT_XML,
     "{\"street\": \"" MAIN "\", \"q\": \"it's \\\"x\\\"\\r\", \"n\": null, \"owner\": {\"name\": "
     "\"A\"}, \"tags\": [\"a\", \"b\"], \"ok\": true, \"r\": 1.5, \"i\": -3}",
     XML_HEAD "<permit><street>" MAIN_XML "</street><q>it&apos;s &quot;x&quot;&#13;</q><n/>"
              "<owner><name>A</name></owner><tags>a</tags><tags>b</tags><ok>true</ok><r>1.5</r>"
              "<i>-3</i></permit>",
     0, NULL, "application/xml; charset=utf-8", "permit"},
    {"xml default root", ESS_FORMAT_XML, "{}", XML_HEAD "<record></record>", 0, NULL,
     "application/xml; charset=utf-8"},
    {"xml bad element name", ESS_FORMAT_XML, "{\"ok\": 1, \"first name\": \"x\"}", NULL, ESS_ESHAPE,
     "xml: field 'first name' is not a valid XML element name (rename it)"},
    {"xml bad nested name", ESS_FORMAT_XML, "{\"a\": {\"1b\": 2}}", NULL, ESS_ESHAPE,
     "xml: field '1b' is not a valid XML element name (rename it)"},
    {"xml prefix is not a name", ESS_FORMAT_XML, "{\"x:y\": 2}", NULL, ESS_ESHAPE,
     "xml: field 'x:y' is not a valid XML element name (rename it)"},
    {"xml control character", ESS_FORMAT_XML, "{\"a\": \"x\\u0001\"}", NULL, ESS_ESHAPE,
     "xml: field 'a' holds control character U+0001, which XML cannot carry"},
    {"soap envelope", ESS_FORMAT_SOAP, "{\"ApptId\": \"A1\", \"LastName\": \"" MAIN "\"}",
     SOAP_HEAD "<ns:UpdateAppt xmlns:ns=\"urn:dmv\"><ApptId>A1</ApptId><LastName>" MAIN_XML
               "</LastName></ns:UpdateAppt>" SOAP_TAIL,
     0, NULL, "text/xml; charset=utf-8", NULL, "UpdateAppt", "urn:dmv"},
    {"soap operation, no namespace", ESS_FORMAT_SOAP, "{\"n\": null}",
     SOAP_HEAD "<Op><n/></Op>" SOAP_TAIL, 0, NULL, "text/xml; charset=utf-8", NULL, "urn:x:Do",
     NULL, "Op"},
    {"soap bad field", ESS_FORMAT_SOAP, "{\"a-\\u0002\": 1, \"b c\": 2}", NULL, ESS_ESHAPE,
     "soap: field 'a-?' is not a valid XML element name (rename it)", NULL, NULL, "A", "urn:x"},
    {"soap bad name after a good one", ESS_FORMAT_SOAP, "{\"a\": 1, \"b c\": 2}", NULL, ESS_ESHAPE,
     "soap: field 'b c' is not a valid XML element name (rename it)", NULL, NULL, "A", "urn:x"},
    {"csv quoting with header", ESS_FORMAT_CSV,
     "{\"a\": \"x,y\", \"b\": \"say \\\"hi\\\"\", \"c\": \"l1\\nl2\", \"d\": null, \"e\": 5, "
     "\"f\": \"" MAIN "\", \"g\": [1, \"2\"]}",
     "a,b,c,d,e,f,g\r\n\"x,y\",\"say \"\"hi\"\"\",\"l1\nl2\",,5," MAIN ",\"[1,\"\"2\"\"]\"\r\n", 0,
     NULL, "text/csv; charset=utf-8; header=present", NULL, NULL, NULL, NULL, 1, ","},
    {"csv other delimiter, no header", ESS_FORMAT_CSV,
     "{\"a\": \"x,y\", \"b\": \"p;q\", \"c\": \"\\r\"}", "x,y;\"p;q\";\"\r\"\r\n", 0, NULL,
     "text/csv; charset=utf-8; header=absent", NULL, NULL, NULL, NULL, 0, ";"},
    {"csv quoted header name", ESS_FORMAT_CSV, "{\"a,b\": 1}", "\"a,b\"\r\n1\r\n", 0, NULL, NULL,
     NULL, NULL, NULL, NULL, 1},
    {"fixed align, pad, truncate right and left", ESS_FORMAT_FIXED,
     "{\"APPT_NUM\": 42, \"NAME\": \"Lovelace, Ada\", \"CITY\": \"Springfield\", \"X\": 1}",
     "0000000042Lovelaceield\n", 0, NULL, "text/plain; charset=utf-8", NULL, NULL, NULL, NULL, 0,
     NULL, cols, 3},
    {"fixed short values padded, missing empty", ESS_FORMAT_FIXED, "{\"NAME\": \"Jos\\u00e9\"}",
     "0000000000Jos\xc3\xa9    ....\n", 0, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, cols, 3},
    {"fixed too wide is refused", ESS_FORMAT_FIXED, "{\"APPT_NUM\": \"12345678901\"}", NULL,
     ESS_ESHAPE, "fixed: field 'APPT_NUM' is 11 characters, wider than its column (10)", NULL, NULL,
     NULL, NULL, NULL, 0, NULL, cols, 3},
    {"fixed line break is refused", ESS_FORMAT_FIXED, "{\"NAME\": \"a\\nb\"}", NULL, ESS_ESHAPE,
     "fixed: field 'NAME' contains a line break", NULL, NULL, NULL, NULL, NULL, 0, NULL, cols, 3},
    {"fixed escaping is not needed", ESS_FORMAT_FIXED, "{\"NAME\": \"" MAIN "\"}",
     "0000000000Main & 1....\n", 0, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, cols, 3},
    {"order follows fields through rename",
     ESS_FORMAT_XML,
     "{\"a\": {\"x\": 1}, \"z\": 0, \"B\": 2}",
     XML_HEAD "<record><B>2</B><a><x>1</x></a><z>0</z></record>",
     0,
     NULL,
     NULL,
     NULL,
     NULL,
     NULL,
     NULL,
     0,
     NULL,
     NULL,
     0,
     {"b", "a.x", "gone"},
     {{"b", "B"}}},
};

static void build(const struct rcase *c, struct ess_manifest *m)
{
    size_t i;

    memset(m, 0, sizeof(*m));
    m->format = c->format;
    m->xml.root = (char *)c->root;
    m->soap.action = (char *)c->action;
    m->soap.namespace = (char *)c->ns;
    m->soap.operation = (char *)c->op;
    m->csv.header = c->header;
    m->csv.delimiter = (char *)c->delim;
    m->columns = (struct ess_column *)c->cols;
    m->n_columns = c->ncols;
    m->fields.v = (char **)c->fields;
    for (i = 0; i < MAXN && c->fields[i] != NULL; i++) {
        m->fields.n++;
    }
    m->rename.keys = calloc(MAXN, sizeof(char *));
    m->rename.vals = calloc(MAXN, sizeof(char *));
    for (i = 0; i < MAXN && c->rename[i][0] != NULL; i++) {
        m->rename.keys[i] = (char *)c->rename[i][0];
        m->rename.vals[i] = (char *)c->rename[i][1];
        m->rename.n++;
    }
}

static void check_case(const struct rcase *c)
{
    struct ess_manifest m;
    struct ess_err err;
    const char *ctype = NULL;
    json_t *in = json_loads(c->in, 0, NULL);
    char *body = NULL;
    char *want;
    size_t len = 0;
    int rc;

    assert_non_null(in);
    build(c, &m);
    ess_err_clear(&err);
    rc = ess_render_body(&m, in, &body, &len, &ctype, &err);
    if (rc != c->want_rc) {
        print_error("case '%s': rc %d: %s\n", c->name, rc, err.msg);
    }
    assert_int_equal(rc, c->want_rc);
    if (rc == ESS_OK) {
        want = strdup(c->want);
        if (strcmp(body, want) != 0) {
            print_error("case '%s':\n got  %s\n want %s\n", c->name, body, want);
        }
        assert_string_equal(body, want);
        assert_int_equal(len, strlen(want));
        free(want);
        if (c->ctype != NULL) {
            assert_string_equal(ctype, c->ctype);
        }
    } else {
        assert_null(body);
        assert_string_equal(err.msg, c->want_msg);
    }
    free(body);
    free(m.rename.keys);
    free(m.rename.vals);
    json_decref(in);
}

static void test_render_table(void **state)
{
    size_t i;

    (void)state;
    memcpy(cols, layout, sizeof(cols));
    cols[0].field = col_num;
    cols[0].pad = pad0;
    cols[1].field = col_name;
    cols[1].pad = pad_sp;
    cols[2].field = col_city;
    cols[2].pad = pad_dot;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_case(&cases[i]);
    }
}

static void test_render_bad_args(void **state)
{
    struct ess_manifest m;
    struct ess_err err;
    const char *ctype;
    json_t *arr = json_array();
    char *body = (char *)1;
    size_t len;

    (void)state;
    memset(&m, 0, sizeof(m));
    ess_err_clear(&err);
    assert_int_equal(ess_render_body(&m, arr, &body, &len, &ctype, &err), ESS_EINVAL);
    assert_null(body);
    assert_int_equal(ess_render_body(NULL, arr, &body, &len, &ctype, NULL), ESS_EINVAL);
    m.format = ESS_FORMAT_FIXED; /* no columns: the parser refuses it; so does render */
    json_decref(arr);
    arr = json_object();
    assert_int_equal(ess_render_body(&m, arr, &body, &len, &ctype, NULL), ESS_EINVAL);
    json_decref(arr);
}

static void test_soap_action(void **state)
{
    static const struct {
        const char *action, *ns, *want;
    } acts[] = {
        {"UpdateAppt", "urn:dmv", "\"urn:dmv/UpdateAppt\""},
        {"UpdateAppt", "http://dmv.gov/appt/", "\"http://dmv.gov/appt/UpdateAppt\""},
        {"urn:dmv:Update", "urn:other", "\"urn:dmv:Update\""},
        {"http://dmv.gov/Update", NULL, "\"http://dmv.gov/Update\""},
        {"Update", NULL, "\"Update\""},
    };
    struct ess_manifest m;
    char buf[128];
    size_t i;

    (void)state;
    memset(&m, 0, sizeof(m));
    for (i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
        m.format = ESS_FORMAT_SOAP;
        m.soap.action = (char *)acts[i].action;
        m.soap.namespace = (char *)acts[i].ns;
        assert_int_equal(ess_render_soap_action(&m, buf, sizeof(buf)), ESS_OK);
        assert_string_equal(buf, acts[i].want);
    }
    m.format = ESS_FORMAT_XML;
    assert_int_equal(ess_render_soap_action(&m, buf, sizeof(buf)), ESS_ENOTFOUND);
    assert_string_equal(buf, "");
}

static void test_headers(void **state)
{
    char *keys[] = {"X-Partner", "Accept"};
    char *vals[] = {"hms north", "text/xml"};
    struct ess_manifest m;
    struct curl_slist *h = NULL;
    struct curl_slist *it;
    char all[512] = "";

    (void)state;
    memset(&m, 0, sizeof(m));
    m.format = ESS_FORMAT_SOAP;
    m.soap.action = "UpdateAppt";
    m.soap.namespace = "urn:dmv";
    m.headers.keys = keys;
    m.headers.vals = vals;
    m.headers.n = 2;
    assert_int_equal(ess_render_headers(&m, &h, NULL), ESS_OK);
    for (it = h; it != NULL; it = it->next) {
        strncat(all, it->data, sizeof(all) - strlen(all) - 2);
        strncat(all, "|", sizeof(all) - strlen(all) - 1);
    }
    assert_string_equal(all, "SOAPAction: \"urn:dmv/UpdateAppt\"|X-Partner: hms north|"
                             "Accept: text/xml|");
    curl_slist_free_all(h);
    h = NULL;
    m.format = ESS_FORMAT_JSON;
    m.headers.n = 0;
    assert_int_equal(ess_render_headers(&m, &h, NULL), ESS_OK);
    assert_null(h);
    assert_int_equal(ess_render_headers(NULL, &h, NULL), ESS_EINVAL);
}

static const struct {
    const char *body;
    int want;
    const char *fault;
} faults[] = {
    {"<?xml version=\"1.0\"?><soap:Envelope "
     "xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">"
     "<soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring xml:lang=\"en\">"
     "Appointment &lt;A1&gt; &amp;\n   unknown &#233; &#x41;</faultstring></soap:Fault></soap:Body>"
     "</soap:Envelope>",
     1, "Appointment <A1> & unknown \xc3\xa9 A"},
    {"<S:Envelope xmlns:S=\"x\"><S:Body><S:Fault><faultcode>S:Server</faultcode>"
     "<faultstring><![CDATA[db <down> & out]]></faultstring></S:Fault></S:Body></S:Envelope>",
     1, "db <down> & out"},
    {"<env:Envelope><env:Body><env:Fault><env:Code><env:Value>env:Sender</env:Value></env:Code>"
     "<env:Reason><env:Text xml:lang=\"en\">Bad slot</env:Text></env:Reason></env:Fault></env:Body>"
     "</env:Envelope>",
     1, "Bad slot"},
    {"<Envelope><Body><Fault><faultcode>Server</faultcode></Fault></Body></Envelope>", 1, "Server"},
    {"<Envelope><Body><Fault/></Body></Envelope>", 1, "SOAP Fault"},
    {"<soap:Envelope><soap:Body><ns:UpdateApptResponse><ok>true</ok><FaultDetail>none"
     "</FaultDetail></ns:UpdateApptResponse></soap:Body></soap:Envelope>",
     0, ""},
    {"<x>a Fault in text is not an element</x>", 0, ""},
    {"", 0, ""},
};

static void test_soap_fault(void **state)
{
    char fault[128];
    char small[8];
    const char *b;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
        memset(fault, 'z', sizeof(fault));
        assert_int_equal(
            ess_render_soap_fault(faults[i].body, strlen(faults[i].body), fault, sizeof(fault)),
            faults[i].want);
        assert_string_equal(fault, faults[i].fault);
    }
    b = faults[0].body;
    assert_int_equal(ess_render_soap_fault(b, strlen(b), small, sizeof(small)), 1);
    assert_true(strlen(small) < sizeof(small));
    /* bounded by len: the fault lies beyond it */
    assert_int_equal(ess_render_soap_fault(b, 60, fault, sizeof(fault)), 0);
    assert_int_equal(ess_render_soap_fault(NULL, 0, fault, sizeof(fault)), 0);
    assert_int_equal(ess_render_soap_fault(b, strlen(b), NULL, 0), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_table), cmocka_unit_test(test_render_bad_args),
        cmocka_unit_test(test_soap_action),  cmocka_unit_test(test_headers),
        cmocka_unit_test(test_soap_fault),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
