/*
 * fuzz_records -- libFuzzer target: the ess-pull record readers. The first
 * byte picks the reader (even: CSV with a header row; odd: a JSON page read
 * at records_path "data.items" with next link "links.next" when bit 1 is set,
 * else the top level); the rest is the partner's answer.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "ess_records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ess_err err;
    json_t *out;
    char *next = NULL;
    char *text;

    if (size == 0) {
        return 0;
    }
    out = json_array();
    ess_err_clear(&err);
    if ((data[0] & 1) == 0) {
        (void)ess_records_csv((const char *)data + 1, size - 1, out, &err);
    } else if ((data[0] & 2) != 0) {
        (void)ess_records_json((const char *)data + 1, size - 1, "data.items", "links.next", out,
                               &next, &err);
    } else {
        (void)ess_records_json((const char *)data + 1, size - 1, NULL, NULL, out, &next, &err);
    }
    /* what ess-pull does next with the records: hash them as canonical JSON */
    text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    free(text);
    free(next);
    json_decref(out);
    return 0;
}
