/*
 * ess_manifest -- the connector manifest (YAML), parsed by libyaml into a
 * typed struct, driven by ONE declarative key table.
 *
 * DESIGN
 * The table (ess_manifest_keys()) lists every key: name, type, default, flags
 * (required, secret-env), where it lands in struct ess_manifest (offsetof) and a
 * one-line doc. Parsing, validation, defaults and `hms ess explain` all walk that
 * table, so the docs cannot drift from the parser (model: Fluent Bit's
 * flb_config_map). Every error is positioned "file:line:column: key: message"
 * and ALL errors are reported in one pass (model: OpenBSD parse.y).
 *
 * Ownership: ess_manifest_load/parse return a heap object the caller frees
 * with ess_manifest_free (NULL is a no-op). On failure *out is NULL and the
 * diags hold every error (caller-owned; ess_diags_fini).
 */
#ifndef ESS_MANIFEST_H
#define ESS_MANIFEST_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "ess_err.h"
#include "ess_schedule.h"

enum ess_format {
    ESS_FORMAT_JSON = 0,
    ESS_FORMAT_SOAP,
    ESS_FORMAT_XML,
    ESS_FORMAT_CSV,
    ESS_FORMAT_FIXED,
    ESS_FORMAT_FORM
};

enum ess_on_park { ESS_ON_PARK_HOLD_KEY = 0, ESS_ON_PARK_SKIP_EVENT };

/* Which changes get an ess_tickets row. A change delivered at its first attempt
 * needs none by default: the journal row below the delivered offset says it. */
enum ess_tickets { ESS_TICKETS_ALL = 0, ESS_TICKETS_FAILURES, ESS_TICKETS_NONE };

enum ess_source_format { ESS_SOURCE_JSON = 0, ESS_SOURCE_CSV };

/* The RabbitMQ queue type of ess.<id> (x-queue-type). A queue's type is fixed
 * when it is created: changing it means draining and deleting the queue. */
enum ess_queue_type { ESS_QUEUE_CLASSIC = 0, ESS_QUEUE_QUORUM };

enum ess_auth_type { ESS_AUTH_NONE = 0, ESS_AUTH_BASIC, ESS_AUTH_BEARER, ESS_AUTH_HMAC };

/* conflict.strategy, in the order of the key table's choices (ess_conflict.h). */
enum ess_conflict_strategy {
    ESS_CONFLICT_LAST_WRITE_WINS = 0,
    ESS_CONFLICT_MASTER_ALWAYS_WINS,
    ESS_CONFLICT_FIRST_WRITE_WINS
};

struct ess_strlist {
    char **v;
    size_t n;
};

struct ess_strmap { /* ordered as written in the manifest */
    char **keys;
    char **vals;
    size_t n;
};

struct ess_valuemap { /* values: {field: {FROM: TO, ...}} */
    char *field;
    struct ess_strmap map;
};

struct ess_auth {
    enum ess_auth_type type;
    char *secret_env;   /* hmac: env var holding "whsec_<base64>" (or raw secret) */
    char *token_env;    /* bearer */
    char *user_env;     /* basic */
    char *password_env; /* basic */
};

/* tls: {ca_file, cert_file, key_file, verify} for https:// (and ftps://) partners.
 * Files are absolute paths, checked readable when the manifest is loaded; libcurl
 * reads them again at each new connection. */
struct ess_tls {
    char *ca_file;   /* PEM CAs trusted for the partner's certificate; NULL: system store */
    char *cert_file; /* PEM client certificate (mutual TLS); NULL: none */
    char *key_file;  /* PEM private key of cert_file, unencrypted; NULL: inside cert_file */
    int verify;      /* 1 (default): check the partner's certificate and host name */
    int given;       /* the manifest has a tls block: an ftp:// target must upgrade with
                      * AUTH TLS (explicit FTPS) and never falls back to plain FTP */
};

/* ssh: {key_file, host_key_sha256, known_hosts} for sftp:// partners. The login
 * user is the URL's (sftp://user@host/); a password comes from auth basic. */
struct ess_ssh {
    char *key_file;        /* unencrypted private key (absolute path); NULL: none */
    char *host_key_sha256; /* "SHA256:<base64>" as ssh-keygen -l prints; NULL: none */
    char *known_hosts;     /* OpenSSH known_hosts file (absolute path); NULL: none */
};

/* soap: {action, namespace, operation}. SOAPAction rule: see ess_render.h. */
struct ess_soap {
    char *action;    /* required with format: soap */
    char *namespace; /* the operation element's namespace (xmlns:ns) */
    char *operation; /* element name inside soap:Body; NULL: the action */
};

struct ess_xml {
    char *root; /* element wrapping one record (default "record") */
};

struct ess_csv {
    int header;      /* 1: a header line before the record */
    char *delimiter; /* one character (default ",") */
};

enum ess_align { ESS_ALIGN_LEFT = 0, ESS_ALIGN_RIGHT };

/* A value wider than its column: error parks the event, right cuts the end,
 * left cuts the beginning (keeps the last `width` characters). */
enum ess_truncate { ESS_TRUNCATE_ERROR = 0, ESS_TRUNCATE_RIGHT, ESS_TRUNCATE_LEFT };

struct ess_column { /* format: fixed, one per field, in record order */
    char *field;    /* the PARTNER name (after rename) */
    int width;      /* characters (UTF-8 code points), 1..10000 */
    enum ess_align align;
    char *pad; /* exactly one character (default " ") */
    enum ess_truncate truncate;
};

struct ess_conflict_rule { /* pull, webhook: the `conflict` block */
    int on;                /* 1 when the manifest has the block */
    enum ess_conflict_strategy strategy;
    char *updated_at_field;   /* change time of a record (default updated_at) */
    struct ess_strmap fields; /* field -> strategy name, checked at load */
};

struct ess_transform; /* ess_transform.h */

/* alerts: {failures: {count, within_sec}, partner_down_sec, backlog_age_sec,
 * parked} -- thresholds of the rules in ess_alert.h; 0 (false) turns a rule
 * off. failures is not the first member: a block sharing its parent's offset
 * would read as an alternative spelling of it. */
struct ess_alerts {
    int partner_down_sec; /* breaker open longer than this */
    int backlog_age_sec;  /* oldest undelivered event older than this */
    int parked;           /* 1: any open dead letter */
    struct {
        int count;      /* more than count failed attempts ... */
        int within_sec; /* ... within this many seconds */
    } failures;
};

/* canary: {every_sec, record, url}: a synthetic record through the full
 * mapping to the partner's test endpoint (header X-ESS-Canary: 1). */
struct ess_canary {
    int every_sec;
    char *url;      /* NULL: target_url */
    json_t *record; /* owned; NULL: no canary */
};

struct ess_manifest {
    char *path;   /* file it was loaded from ("<string>" for parse) */
    char *sha256; /* hex digest of the manifest text: its version */
    char *id;
    char *kind;                /* push | pull | webhook */
    struct ess_strlist topics; /* listen_topic or listen_topics, >= 1 for push */
    char *key;                 /* record key field (dotted path allowed) */
    char *target_url;          /* http(s)://, ftp(s)://, sftp:// */
    int batch_max;             /* file drops: events per file */
    int batch_sec;             /* file drops: longest a file stays open */
    char *file_name;           /* file drops: name template (ess_batch_file_name) */
    enum ess_format format;
    struct ess_strlist fields; /* include filter, dotted paths; n == 0: all */
    struct ess_strlist drop;   /* exclude filter, after include */
    struct ess_strmap rename;  /* source field -> partner field */
    struct ess_valuemap *values;
    size_t n_values;
    json_t *transforms;            /* owned; object field -> transform spec as written, or NULL */
    struct ess_transform **xforms; /* owned; transforms compiled, in manifest order */
    size_t n_xforms;
    struct ess_soap soap;
    struct ess_xml xml;
    struct ess_csv csv;
    struct ess_column *columns; /* format: fixed */
    size_t n_columns;
    struct ess_strmap headers;      /* static extra request headers */
    struct ess_strlist link_fields; /* fields carrying URLs: passed as is, never fetched */
    int delta;                      /* 1: send only changed fields (ess_delta.h) */
    struct ess_schedule schedule;   /* delivery_windows + blackouts; empty: always open */
    int debounce_sec;
    int debounce_max_sec; /* 0: 10 x debounce_sec */
    int heartbeat_sec;
    int max_retry;
    int timeout_ms;
    long replay_window_sec;            /* from "7d", "12h", "30m", "45s" */
    int prefetch;                      /* AMQP prefetch window */
    int max_in_flight;                 /* concurrent partner transfers */
    struct ess_strlist skip_origins;   /* ess-origin values never delivered back */
    struct ess_conflict_rule conflict; /* pull, webhook */
    enum ess_on_park on_park;
    enum ess_tickets tickets;
    long ticket_retention_sec; /* tickets older than this are swept */
    char *metrics_listen;      /* "IPv4:PORT" for GET /metrics; NULL: off */
    struct ess_alerts alerts;
    struct ess_canary canary;
    enum ess_queue_type queue_type; /* push: ess.<id> and ess.<id>.dead */
    int replicas;                   /* push: worker processes of this connector (ess_replica.h) */
    struct ess_auth auth;
    struct ess_tls tls;
    struct ess_ssh ssh;
    /* kind webhook (ess-webhook): where it listens, how it checks callers */
    char *listen;                 /* "127.0.0.1:PORT" */
    char *hook_path;              /* manifest key `path`: "/hooks/dmv" */
    char *publish_topic;          /* routing key on hms.events for records from the partner */
    int body_limit;               /* bytes; larger requests are 413 */
    struct ess_auth inbound_auth; /* hmac (Standard Webhooks) or bearer */
    /* kind pull (ess-pull): what it polls and how it reads the answer */
    char *source_url; /* http(s):// polled every poll_sec */
    enum ess_source_format source_format;
    int poll_sec;
    char *cursor_param;     /* query parameter of the since-cursor ("since") */
    char *updated_at_field; /* record field: the cursor is its largest value */
    char *records_path;     /* dotted path of the records array; NULL: the answer */
    char *next_path;        /* dotted path of the next-page link ("next") */
    char *page_param;       /* page-number query parameter; NULL: none */
    /* ess-reconcile (on a push manifest): both sides' listings */
    char *reconcile_url;    /* the partner's full listing; NULL: no reconcile */
    char *hms_snapshot_url; /* HMS's listing; NULL: the journal's last state per key */
};

enum ess_key_type {
    ESS_KEY_STRING = 0,
    ESS_KEY_INT,
    ESS_KEY_DURATION,
    ESS_KEY_ENUM,
    ESS_KEY_STRLIST,    /* a sequence of strings (or one string where noted) */
    ESS_KEY_STRMAP,     /* a mapping string -> string */
    ESS_KEY_VALUEMAP,   /* mapping field -> mapping */
    ESS_KEY_ANYMAP,     /* free-form mapping kept as JSON */
    ESS_KEY_AUTH,       /* the auth block */
    ESS_KEY_BLOCK,      /* a nested block of keys "<block>.<leaf>" (soap, xml, csv) */
    ESS_KEY_TRANSFORMS, /* field -> transform steps, compiled (ess_transform.h) */
    ESS_KEY_COLUMNS,    /* list of fixed-width column mappings */
    ESS_KEY_HEADERS,    /* mapping HTTP header name -> value */
    ESS_KEY_WINDOWS,    /* list of weekly delivery windows (ess_schedule.h) */
    ESS_KEY_BLACKOUTS   /* list of dated blackouts (ess_schedule.h) */
};

struct ess_manifest_key {
    const char *name;
    enum ess_key_type type;
    const char *def;     /* default as text, NULL when none */
    int required;        /* 1: missing is an error (for push) */
    const char *choices; /* "json|soap|..." for enums, else NULL */
    const char *doc;
};

/* The key table; *n receives its length. Static storage. */
const struct ess_manifest_key *ess_manifest_keys(size_t *n);

/* Load and validate a manifest file. See ownership above. Returns ESS_OK,
 * ESS_EMANIFEST (content invalid) or ESS_ECONFIG (file unreadable). */
int ess_manifest_load(const char *path, struct ess_manifest **out, struct ess_diags *diags);

/* The same from text in memory; name is used in error positions. */
int ess_manifest_parse(const char *text, size_t len, const char *name, struct ess_manifest **out,
                       struct ess_diags *diags);

/* ess_manifest_load, then every error reported: one line each on report, or
 * as error log lines when report is NULL (a worker). Same return codes. */
int ess_manifest_load_reported(const char *path, struct ess_manifest **out, FILE *report);

void ess_manifest_free(struct ess_manifest *m);

/* A duration as the manifest writes it: the largest exact unit ("7d", "90s"). */
const char *ess_manifest_duration_text(long sec, char *buf, size_t len);

/* Check that every *_env key names a variable that is set. Returns ESS_OK
 * or ESS_ECONFIG with the variable NAME (never its value) in err. */
int ess_manifest_check_env(const struct ess_manifest *m, struct ess_err *err);

/* Print every key with type, default and meaning (hms ess explain). */
void ess_manifest_explain(FILE *out);

/* "json" ... for a format; "none"... for auth. Static strings. */
const char *ess_manifest_format_name(enum ess_format f);

#endif
