/*
 * fuzz_records -- libFuzzer target: what a partner sends back that ESS reads.
 * The first byte picks the reader, the rest is the partner's bytes:
 *   0 mod 4: an ess-pull CSV page with a header row (ess_records_csv)
 *   1 mod 4: an ess-pull JSON page, records at the top level
 *   2 mod 4: an ess-pull JSON page at records_path "data.items", next link
 *            at "links.next" (ess_records_json)
 *   3 mod 4: an answer to a delivery: the SOAP Fault scan of its body
 *            (ess_render_soap_fault) and its Retry-After header value
 *            (ess_backoff_retry_after_ms)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ess_backoff.h"
#include "ess_records.h"
#include "ess_render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_answer(const char *s, size_t n)
{
    char fault[200];
    char *value = strndup(s, n); /* a header value is a C string */

    (void)ess_render_soap_fault(s, n, fault, sizeof(fault));
    if (strlen(fault) >= sizeof(fault)) {
        abort();
    }
    if (value != NULL) {
        (void)ess_backoff_retry_after_ms(value, (time_t)1614265330);
    }
    free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data + 1;
    struct ess_err err;
    json_t *out;
    char *next = NULL;
    char *text;

    if (size == 0) {
        return 0;
    }
    if (data[0] % 4 == 3) {
        fuzz_answer(s, size - 1);
        return 0;
    }
    out = json_array();
    ess_err_clear(&err);
    if (data[0] % 4 == 0) {
        (void)ess_records_csv(s, size - 1, out, &err);
    } else if (data[0] % 4 == 2) {
        (void)ess_records_json(s, size - 1, "data.items", "links.next", out, &next, &err);
    } else {
        (void)ess_records_json(s, size - 1, NULL, NULL, out, &next, &err);
    }
    /* what ess-pull does next with the records: hash them as canonical JSON */
    text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    free(text);
    free(next);
    json_decref(out);
    return 0;
}
