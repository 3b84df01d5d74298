/*
 * ess_err -- one error vocabulary for every ESS module.
 *
 * Functions return an int: ESS_OK (0) or a negative ESS_E* code. The detail
 * (a one-line message, and for manifest errors the file:line:column) goes in a
 * caller-owned struct ess_err, which may be NULL. The first error set wins, so
 * a low-level cause is not overwritten by a vaguer message further up.
 *
 * struct ess_diags collects many positioned errors in one pass (the manifest
 * parser reports all of them, like OpenBSD's parse.y).
 */
#ifndef ESS_ERR_H
#define ESS_ERR_H

#include <stddef.h>

enum ess_errcode {
    ESS_OK = 0,
    ESS_ENOMEM = -1,     /* allocation failed */
    ESS_EINVAL = -2,     /* bad argument from the caller */
    ESS_EMANIFEST = -3,  /* manifest is malformed or invalid (exit 65) */
    ESS_ECONFIG = -4,    /* environment / configuration problem (exit 78) */
    ESS_EIO = -5,        /* file or socket I/O failed */
    ESS_EBUS = -6,       /* RabbitMQ unreachable or the channel failed */
    ESS_ESTORE = -7,     /* Postgres unreachable or a statement failed */
    ESS_EPARTNER = -8,   /* the partner transfer could not be set up */
    ESS_EPARSE = -9,     /* an event body is not usable (not JSON, no key...) */
    ESS_ENOTFOUND = -10, /* a looked-up thing does not exist */
    ESS_ESHAPE = -11,    /* a value could not be shaped (parks the event) */
    ESS__ECOUNT = -12    /* sentinel: one past the last code */
};

#define ESS_ERR_MSG_MAX 1024 /* room for "valid keys are ..." over the whole key table */
#define ESS_ERR_FILE_MAX 256

struct ess_err {
    int code;                    /* ESS_OK when nothing was set */
    char file[ESS_ERR_FILE_MAX]; /* "" when not positioned */
    int line;                    /* 1-based; 0 when not positioned */
    int column;                  /* 1-based; 0 when not positioned */
    char msg[ESS_ERR_MSG_MAX];   /* one line, no newline */
};

/* Static string for a code; "unknown error" for a code outside the enum. */
const char *ess_strerror(int code);

void ess_err_clear(struct ess_err *e);

/* Set code + message unless an error is already set (first error wins).
 * e may be NULL. Returns code, so callers can `return ess_err_set(...)`. */
int ess_err_set(struct ess_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As ess_err_set, with a position (file may be NULL). */
int ess_err_setpos(struct ess_err *e, int code, const char *file, int line, int column,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#ifdef __clang_analyzer__
/* For clang-tidy's analyzer, which reads one file at a time: both return their
 * code (always an ESS_E*, never ESS_OK), so "if (rc != ESS_OK) return" paths
 * are not explored as if the error had not been set. */
#define ess_err_set(e, code, ...) (ess_err_set((e), (code), __VA_ARGS__), (code))
#define ess_err_setpos(e, code, ...) (ess_err_setpos((e), (code), __VA_ARGS__), (code))
#endif

/* Format as "file:line:column: msg" (or just "msg" when not positioned)
 * into buf (always NUL-terminated). Returns buf. */
const char *ess_err_format(const struct ess_err *e, char *buf, size_t len);

/* A growable list of errors, caller-owned; ess_diags_fini frees it. */
struct ess_diags {
    struct ess_err *v;
    size_t n;
    size_t cap;
};

void ess_diags_init(struct ess_diags *d);
void ess_diags_fini(struct ess_diags *d);
/* Append one positioned error. Returns code (or ESS_ENOMEM if it could not grow). */
int ess_diags_add(struct ess_diags *d, int code, const char *file, int line, int column,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* sysexits.h code for an ess code: EMANIFEST/EPARSE 65, ECONFIG 78,
 * EBUS/ESTORE/EPARTNER 69, EINVAL 64, others 70 (software). */
int ess_err_exit_code(int code);

#endif
