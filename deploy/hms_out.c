/*
 * hms_out -- listings as aligned tables for people, JSON for machines.
 */
#include "hms.h"

#include <stdlib.h>
#include <string.h>

#define OUT_MAX_COLS 32

/* A cell's text: strings as is, other JSON compact, missing/null as "-". */
static char *cell_text(json_t *v)
{
    if (v == NULL || json_is_null(v)) {
        return strdup("-");
    }
    if (json_is_string(v)) {
        return strdup(json_string_value(v));
    }
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static void print_row(char *const *cells, const size_t *width, size_t ncol)
{
    size_t c;

    for (c = 0; c + 1 < ncol; c++) {
        printf("%-*s  ", (int)width[c], cells[c]);
    }
    if (ncol > 0) {
        printf("%s\n", cells[ncol - 1]); /* no trailing blanks */
    }
}

void hms_out_rows(const struct hms_opts *o, json_t *rows, const char *const *columns)
{
    char *cells[OUT_MAX_COLS];
    size_t width[OUT_MAX_COLS];
    const char *upper[OUT_MAX_COLS];
    size_t ncol = 0;
    size_t r;
    size_t c;

    if (o->json || columns == NULL) {
        json_dumpf(rows, stdout, JSON_INDENT(2));
        printf("\n");
        return;
    }
    while (ncol < OUT_MAX_COLS && columns[ncol] != NULL) {
        upper[ncol] = columns[ncol];
        width[ncol] = strlen(columns[ncol]);
        ncol++;
    }
    for (r = 0; r < json_array_size(rows); r++) {
        for (c = 0; c < ncol; c++) {
            cells[c] = cell_text(json_object_get(json_array_get(rows, r), columns[c]));
            if (cells[c] != NULL && strlen(cells[c]) > width[c]) {
                width[c] = strlen(cells[c]);
            }
            free(cells[c]);
        }
    }
    for (c = 0; c < ncol; c++) {
        cells[c] = strdup(upper[c]);
        for (r = 0; cells[c] != NULL && cells[c][r] != '\0'; r++) {
            cells[c][r] =
                (char)(cells[c][r] >= 'a' && cells[c][r] <= 'z' ? cells[c][r] - 32 : cells[c][r]);
        }
    }
    print_row(cells, width, ncol);
    for (c = 0; c < ncol; c++) {
        free(cells[c]);
    }
    for (r = 0; r < json_array_size(rows); r++) {
        for (c = 0; c < ncol; c++) {
            cells[c] = cell_text(json_object_get(json_array_get(rows, r), columns[c]));
        }
        print_row(cells, width, ncol);
        for (c = 0; c < ncol; c++) {
            free(cells[c]);
        }
    }
}
