/*
 * ess_err -- error codes, their strings and caller-owned error detail.
 */
#include "ess_err.h"

/* The definitions, not the analyzer's view of them (ess_err.h). */
#undef ess_err_set
#undef ess_err_setpos

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

static const char *const err_strings[] = {
    "ok",                     /* ESS_OK */
    "out of memory",          /* ESS_ENOMEM */
    "invalid argument",       /* ESS_EINVAL */
    "invalid manifest",       /* ESS_EMANIFEST */
    "configuration error",    /* ESS_ECONFIG */
    "i/o error",              /* ESS_EIO */
    "message bus error",      /* ESS_EBUS */
    "journal store error",    /* ESS_ESTORE */
    "partner transfer error", /* ESS_EPARTNER */
    "unusable event",         /* ESS_EPARSE */
    "not found",              /* ESS_ENOTFOUND */
    "value cannot be shaped", /* ESS_ESHAPE */
};

const char *ess_strerror(int code)
{
    size_t idx;

    if (code > 0 || code <= ESS__ECOUNT) {
        return "unknown error";
    }
    idx = (size_t)(-code);
    if (idx >= sizeof(err_strings) / sizeof(err_strings[0])) {
        return "unknown error";
    }
    return err_strings[idx];
}

void ess_err_clear(struct ess_err *e)
{
    if (e != NULL) {
        memset(e, 0, sizeof(*e));
    }
}

static void err_vset(struct ess_err *e, int code, const char *file, int line, int column,
                     const char *fmt, va_list ap)
{
    char *nl;

    e->code = code;
    snprintf(e->file, sizeof(e->file), "%s", file != NULL ? file : "");
    e->line = line;
    e->column = column;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    /* One line, always: a message quoting input must not break log parsing. */
    while ((nl = strpbrk(e->msg, "\r\n")) != NULL) {
        *nl = ' ';
    }
}

int ess_err_set(struct ess_err *e, int code, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL || e->code != ESS_OK) {
        return code;
    }
    va_start(ap, fmt);
    err_vset(e, code, NULL, 0, 0, fmt, ap);
    va_end(ap);
    return code;
}

int ess_err_setpos(struct ess_err *e, int code, const char *file, int line, int column,
                   const char *fmt, ...)
{
    va_list ap;

    if (e == NULL || e->code != ESS_OK) {
        return code;
    }
    va_start(ap, fmt);
    err_vset(e, code, file, line, column, fmt, ap);
    va_end(ap);
    return code;
}

const char *ess_err_format(const struct ess_err *e, char *buf, size_t len)
{
    if (len == 0) {
        return buf;
    }
    if (e == NULL) {
        buf[0] = '\0';
    } else if (e->file[0] != '\0' && e->line > 0) {
        snprintf(buf, len, "%s:%d:%d: %s", e->file, e->line, e->column, e->msg);
    } else if (e->file[0] != '\0') {
        snprintf(buf, len, "%s: %s", e->file, e->msg);
    } else {
        snprintf(buf, len, "%s", e->msg[0] != '\0' ? e->msg : ess_strerror(e->code));
    }
    return buf;
}

void ess_diags_init(struct ess_diags *d)
{
    memset(d, 0, sizeof(*d));
}

void ess_diags_fini(struct ess_diags *d)
{
    if (d != NULL) {
        free(d->v);
        memset(d, 0, sizeof(*d));
    }
}

int ess_diags_add(struct ess_diags *d, int code, const char *file, int line, int column,
                  const char *fmt, ...)
{
    va_list ap;
    struct ess_err *grown;
    size_t cap;

    if (d->n == d->cap) {
        cap = d->cap ? d->cap * 2 : 8;
        grown = realloc(d->v, cap * sizeof(*grown));
        if (grown == NULL) {
            return ESS_ENOMEM;
        }
        d->v = grown;
        d->cap = cap;
    }
    memset(&d->v[d->n], 0, sizeof(d->v[d->n]));
    va_start(ap, fmt);
    err_vset(&d->v[d->n], code, file, line, column, fmt, ap);
    va_end(ap);
    d->n++;
    return code;
}

int ess_err_exit_code(int code)
{
    switch (code) {
    case ESS_OK:
        return EX_OK;
    case ESS_EINVAL:
        return EX_USAGE;
    case ESS_EMANIFEST:
    case ESS_EPARSE:
        return EX_DATAERR;
    case ESS_ECONFIG:
        return EX_CONFIG;
    case ESS_EBUS:
    case ESS_ESTORE:
    case ESS_EPARTNER:
        return EX_UNAVAILABLE;
    case ESS_EIO:
        return EX_IOERR;
    default:
        return EX_SOFTWARE;
    }
}
