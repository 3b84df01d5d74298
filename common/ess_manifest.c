/*
 * ess_manifest -- the connector manifest: YAML text -> typed struct ess_manifest.
 *
 * Every connector is driven by one YAML manifest. This module turns it into a
 * struct the workers can use without re-checking anything, or into a list of
 * positioned errors ("file:line:column: key: message"), all of them in one pass.
 *
 * DESIGN
 * ONE key table, MANIFEST_KEYS below, is written once as an X-macro and expanded
 * twice: into the public struct ess_manifest_key array (ess_manifest_keys(), what
 * `hms ess explain` prints) and into a private parallel array with what only the
 * parser needs (offsetof of the field, range, check function, flags, the
 * condition under which a key is required). Parsing, defaults, validation,
 * freeing, check_env and explain all walk that table, so adding a key is one
 * entry and the docs cannot drift from the parser (model: Fluent Bit's
 * flb_config_map). Nested blocks are dotted names ("auth.type"): the block key
 * has type ESS_KEY_AUTH and its children are the entries named "<block>.<leaf>".
 * Two keys with the same offset (listen_topic / listen_topics) are alternatives:
 * giving both is an error, either one satisfies "required".
 *
 * The YAML is loaded with libyaml's document API (node marks give positions;
 * they are 0-based, our positions are 1-based). Aliases are resolved by libyaml
 * into shared nodes, so free-form blocks are converted with a depth and a node
 * budget: a self-referencing or "billion laughs" document cannot hang or crash us.
 *
 * Ownership: see ess_manifest.h. The returned manifest owns every string, list
 * and json_t in it; ess_manifest_free releases them by walking the table.
 */
#include "ess_manifest.h"

#include "ess_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <yaml.h>

#include "ess_batch.h"
#include "ess_schedule.h"
#include "ess_zone.h"
#include "ess_transform.h"

#define MANIFEST_MAX_BYTES (1024 * 1024) /* a manifest is a page, not a data set */
#define MANIFEST_MAX_DIAGS 50            /* garbage input must not flood the terminal */
#define ANY_MAX_DEPTH 32
#define ANY_MAX_NODES 10000
#define MAP_MAX_ENTRIES 4096
#define SHOW_MAX 64
#define WHY_MAX 400
#define LABEL_MAX 160
#define INVALID 1 /* a store_* result: the value is wrong (> 0, unlike ESS_E*) */

/* Private key flags. */
#define F_ONE 0x1u       /* list key given as one scalar (listen_topic) */
#define F_ENUM_STR 0x2u  /* enum kept as its text (kind); otherwise as its index */
#define F_ENV 0x4u       /* names an environment variable; ess_manifest_check_env looks it up */
#define F_ONLY_WHEN 0x8u /* allowed only when the `when` condition holds */

_Static_assert(sizeof(enum ess_format) == sizeof(int), "enum stored as int");
_Static_assert(sizeof(enum ess_auth_type) == sizeof(int), "enum stored as int");

/* A value check: 0 when fine, else -1 with what is wrong in why. */
typedef int (*check_fn)(const char *s, char *why, size_t len);

struct key_impl {
    const char *when; /* "kind=push": required (and with F_ONLY_WHEN allowed) only then */
    unsigned flags;
    size_t off;  /* offsetof the field in struct ess_manifest */
    long lo, hi; /* range for INT and DURATION (seconds) */
    check_fn check;
};

static int check_id(const char *s, char *why, size_t len);
static int check_topic(const char *s, char *why, size_t len);
static int check_path(const char *s, char *why, size_t len);
static int check_url(const char *s, char *why, size_t len);
static int check_envname(const char *s, char *why, size_t len);
static int check_xml_name(const char *s, char *why, size_t len);
static int check_soap_action(const char *s, char *why, size_t len);
static int check_xml_ns(const char *s, char *why, size_t len);
static int check_delimiter(const char *s, char *why, size_t len);
static int check_file_name(const char *s, char *why, size_t len);
static int check_file(const char *s, char *why, size_t len);
static int check_listen(const char *s, char *why, size_t len);
static int check_hook_path(const char *s, char *why, size_t len);
static int check_routing_key(const char *s, char *why, size_t len);
static int check_host_key(const char *s, char *why, size_t len);

#define OFF(f) offsetof(struct ess_manifest, f)
#define DAYS(n) (86400L * (long)(n))

/* clang-format off */
/* X(name, type, default, required, choices, when, flags, offset, min, max, check, doc) */
#define MANIFEST_KEYS(X)                                                                       \
    X("id", ESS_KEY_STRING, NULL, 1, NULL, NULL, 0, OFF(id), 0, 0, check_id,                   \
      "connector id: queue ess.<id>, log and ops name (^[a-z][a-z0-9-]{1,62}$)")               \
    X("kind", ESS_KEY_ENUM, NULL, 1, "push|pull|webhook", NULL, F_ENUM_STR, OFF(kind), 0, 0,  \
      NULL, "push: bus -> partner; pull, webhook: partner -> bus")                            \
    X("listen_topic", ESS_KEY_STRLIST, NULL, 1, NULL, "kind=push", F_ONE, OFF(topics), 0, 0,  \
      check_topic, "AMQP binding pattern on hms.events (* one word, # any); or listen_topics") \
    X("listen_topics", ESS_KEY_STRLIST, NULL, 1, NULL, "kind=push", 0, OFF(topics), 0, 0,     \
      check_topic, "several binding patterns, instead of listen_topic")                       \
    X("key", ESS_KEY_STRING, NULL, 1, NULL, NULL, 0, OFF(key), 0, 0, check_path,              \
      "record key field (dotted path): ordering, debounce, dedupe, conflicts")                \
    X("target_url", ESS_KEY_STRING, NULL, 1, NULL, "kind=push", 0, OFF(target_url), 0, 0,     \
      check_url, "partner endpoint: http(s)://, ftp(s)://, sftp:// with a host")              \
    X("batch_max", ESS_KEY_INT, "500", 0, NULL, NULL, 0, OFF(batch_max), 1, 100000, NULL,     \
      "file drops (ftp, ftps, sftp): at most this many events per file")                      \
    X("batch_sec", ESS_KEY_INT, "10", 0, NULL, NULL, 0, OFF(batch_sec), 1, 86400, NULL,       \
      "file drops: a file goes at the latest this long after its first event")                \
    X("file_name", ESS_KEY_STRING, "{id}-{seq}-{ts}.txt", 0, NULL, NULL, 0, OFF(file_name), 0,  \
      0, check_file_name, "file drops: name template, {id} connector, {seq} first seq, {ts} "  \
      "UTC yyyymmddThhmmssZ; written as NAME.part, then renamed")                             \
    X("format", ESS_KEY_ENUM, "json", 0, "json|soap|xml|csv|fixed|form", NULL, 0,             \
      OFF(format), 0, 0, NULL, "body rendered for the partner")                               \
    X("soap", ESS_KEY_BLOCK, NULL, 0, NULL, "format=soap", F_ONLY_WHEN, OFF(soap), 0, 0, NULL, \
      "SOAP 1.1 envelope settings (format: soap)")                                            \
    X("soap.action", ESS_KEY_STRING, NULL, 1, NULL, "format=soap", 0, OFF(soap.action), 0, 0,  \
      check_soap_action,                                                                      \
      "SOAPAction header: \"NAMESPACE/ACTION\", or the action as given when it holds ':'")     \
    X("soap.namespace", ESS_KEY_STRING, NULL, 0, NULL, NULL, 0, OFF(soap.namespace), 0, 0,     \
      check_xml_ns, "namespace URI of the operation element (xmlns:ns); absent: unqualified")  \
    X("soap.operation", ESS_KEY_STRING, NULL, 0, NULL, NULL, 0, OFF(soap.operation), 0, 0,     \
      check_xml_name, "element inside soap:Body holding the fields; absent: the action")       \
    X("xml", ESS_KEY_BLOCK, NULL, 0, NULL, "format=xml", F_ONLY_WHEN, OFF(xml), 0, 0, NULL,    \
      "plain XML settings (format: xml): one element per record")                             \
    X("xml.root", ESS_KEY_STRING, "record", 0, NULL, NULL, 0, OFF(xml.root), 0, 0,            \
      check_xml_name, "element wrapping one record's fields")                                 \
    X("csv", ESS_KEY_BLOCK, NULL, 0, NULL, "format=csv", F_ONLY_WHEN, OFF(csv), 0, 0, NULL,    \
      "CSV settings (format: csv, RFC 4180 quoting, CRLF line ends)")                         \
    X("csv.header", ESS_KEY_ENUM, "false", 0, "false|true", NULL, 0, OFF(csv.header), 0, 0,   \
      NULL, "true: a header line of field names before the record line")                      \
    X("csv.delimiter", ESS_KEY_STRING, ",", 0, NULL, NULL, 0, OFF(csv.delimiter), 0, 0,        \
      check_delimiter, "field separator, one character (not a quote or line break)")          \
    X("columns", ESS_KEY_COLUMNS, NULL, 1, NULL, "format=fixed", F_ONLY_WHEN, OFF(columns), 1, \
      10000, NULL,                                                                            \
      "fixed-width layout, in order: [{field (partner name), width 1..10000, align "          \
      "left|right (left), pad one character (' '), truncate error|right|left (error)}]")      \
    X("fields", ESS_KEY_STRLIST, NULL, 0, NULL, NULL, 0, OFF(fields), 0, 0, check_path,       \
      "include filter, dotted paths; absent: every field")                                    \
    X("drop", ESS_KEY_STRLIST, NULL, 0, NULL, NULL, 0, OFF(drop), 0, 0, check_path,           \
      "exclude filter, applied after fields")                                                 \
    X("rename", ESS_KEY_STRMAP, NULL, 0, NULL, NULL, 0, OFF(rename), 0, 0, NULL,              \
      "source field -> partner field")                                                        \
    X("values", ESS_KEY_VALUEMAP, NULL, 0, NULL, NULL, 0, OFF(values), 0, 0, NULL,            \
      "field -> {FROM: TO} code translation, values compared as text")                        \
    X("transforms", ESS_KEY_TRANSFORMS, NULL, 0, NULL, NULL, 0, OFF(transforms), 0, 0,        \
      check_path, "source field -> step or [steps]: date, tz, upper, lower, trim, truncate, "  \
      "pad, default, const, concat, map (after drop, before values)")                         \
    X("link_fields", ESS_KEY_STRLIST, NULL, 0, NULL, NULL, 0, OFF(link_fields), 0, 0,         \
      check_path, "fields holding URLs of large payloads: passed through as is, never fetched") \
    X("delta", ESS_KEY_ENUM, "false", 0, "false|true", "kind=push", F_ONLY_WHEN, OFF(delta),  \
      0, 0, NULL, "true: send only fields whose values changed since the key's last 2xx "     \
      "(plus the key); an event changing nothing is not sent (ticket 'skipped')")            \
    X("delivery_windows", ESS_KEY_WINDOWS, NULL, 0, NULL, "kind=push", F_ONLY_WHEN,            \
      OFF(schedule.windows), 0, 0, NULL, "when the partner takes deliveries: [{days: mon-fri, " \
      "from: \"06:00\", to: \"20:00\", tz: America/Chicago}]; outside: journaled and held")  \
    X("blackouts", ESS_KEY_BLACKOUTS, NULL, 0, NULL, "kind=push", F_ONLY_WHEN,                 \
      OFF(schedule.blackouts), 0, 0, NULL, "dated windows without deliveries: [{from: "      \
      "\"2026-12-24T18:00\", to: \"2026-12-26T06:00\", tz: UTC}]")                            \
    X("debounce_sec", ESS_KEY_INT, "0", 0, NULL, NULL, 0, OFF(debounce_sec), 0, 86400, NULL,  \
      "merge a key's changes until it was quiet this long; 0: off")                           \
    X("debounce_max_sec", ESS_KEY_INT, "0", 0, NULL, NULL, 0, OFF(debounce_max_sec), 0,       \
      864000, NULL, "longest a busy key waits under debounce; 0: 10 x debounce_sec")          \
    X("heartbeat_sec", ESS_KEY_INT, "30", 0, NULL, NULL, 0, OFF(heartbeat_sec), 1, 3600,      \
      NULL, "heartbeat period on hms.ops; down after 3 missed")                               \
    X("max_retry", ESS_KEY_INT, "8", 0, NULL, NULL, 0, OFF(max_retry), 0, 1000, NULL,         \
      "delivery attempts before an event is parked")                                          \
    X("timeout_ms", ESS_KEY_INT, "5000", 0, NULL, NULL, 0, OFF(timeout_ms), 100, 600000,      \
      NULL, "per-delivery timeout")                                                           \
    X("replay_window", ESS_KEY_DURATION, "7d", 0, NULL, NULL, 0, OFF(replay_window_sec), 1,   \
      DAYS(3650), NULL, "how long the journal keeps events (7d, 12h, 30m, 45s)")              \
    X("prefetch", ESS_KEY_INT, "500", 0, NULL, NULL, 0, OFF(prefetch), 1, 65535, NULL,        \
      "AMQP prefetch window")                                                                 \
    X("max_in_flight", ESS_KEY_INT, "64", 0, NULL, NULL, 0, OFF(max_in_flight), 1, 1024,      \
      NULL, "concurrent partner transfers")                                                   \
    X("skip_origins", ESS_KEY_STRLIST, NULL, 0, NULL, NULL, 0, OFF(skip_origins), 0, 0, NULL, \
      "connector ids whose events (header ess-origin) are not sent back: no ping-pong; their " \
      "conflict rules see the HMS changes this connector journals")                           \
    X("conflict", ESS_KEY_BLOCK, NULL, 0, NULL, "kind=pull|webhook", F_ONLY_WHEN, OFF(conflict), \
      0, 0, NULL, "pull, webhook: rules for a key both sides changed (ess_conflict.h)")        \
    X("conflict.strategy", ESS_KEY_ENUM, "last_write_wins", 0,                                \
      "last_write_wins|master_always_wins|first_write_wins", NULL, 0, OFF(conflict.strategy), \
      0, 0, NULL, "who wins a field both sides changed: the later, HMS always, the earlier")  \
    X("conflict.updated_at_field", ESS_KEY_STRING, "updated_at", 0, NULL, NULL, 0,            \
      OFF(conflict.updated_at_field), 0, 0, check_path,                                       \
      "record field with the change time (ISO 8601 or epoch s/ms); absent: time received")    \
    X("conflict.fields", ESS_KEY_STRMAP, NULL, 0, NULL, NULL, 0, OFF(conflict.fields), 0, 0,  \
      NULL, "per-field strategy overriding conflict.strategy {status: master_always_wins}")   \
    X("on_park", ESS_KEY_ENUM, "hold_key", 0, "hold_key|skip_event", NULL, 0, OFF(on_park),  \
      0, 0, NULL, "after a parked event: hold its key's later events until dlq retry/drop")    \
    X("tickets", ESS_KEY_ENUM, "failures", 0, "all|failures|none", NULL, 0, OFF(tickets), 0,  \
      0, NULL, "delivery tickets: failures = changes not delivered at the first attempt")     \
    X("ticket_retention", ESS_KEY_DURATION, "30d", 0, NULL, NULL, 0,                         \
      OFF(ticket_retention_sec), 1, DAYS(3650), NULL,                                         \
      "how long delivery tickets are kept (swept in small batches)")                          \
    X("metrics_listen", ESS_KEY_STRING, NULL, 0, NULL, "kind=push", F_ONLY_WHEN,               \
      OFF(metrics_listen), 0, 0, check_listen,                                                \
      "IPv4:PORT serving Prometheus GET /metrics; absent: off (non-loopback: warned at start)") \
    X("alerts", ESS_KEY_BLOCK, NULL, 0, NULL, "kind=push", F_ONLY_WHEN, OFF(alerts), 0, 0,     \
      NULL, "alert thresholds; ess.alert.<id> on hms.ops when a rule fires and clears")        \
    X("alerts.failures", ESS_KEY_BLOCK, NULL, 0, NULL, NULL, 0, OFF(alerts.failures), 0, 0,    \
      NULL, "failed delivery attempts: more than count within within_sec")                    \
    X("alerts.failures.count", ESS_KEY_INT, "3", 0, NULL, NULL, 0, OFF(alerts.failures.count), \
      0, 1000000, NULL, "failed attempts tolerated within the period; 0: rule off")            \
    X("alerts.failures.within_sec", ESS_KEY_INT, "300", 0, NULL, NULL, 0,                     \
      OFF(alerts.failures.within_sec), 1, 3600, NULL, "the period failures are counted over") \
    X("alerts.partner_down_sec", ESS_KEY_INT, "60", 0, NULL, NULL, 0,                         \
      OFF(alerts.partner_down_sec), 0, 86400, NULL,                                           \
      "partner down (breaker open) longer than this; 0: rule off")                            \
    X("alerts.backlog_age_sec", ESS_KEY_INT, "300", 0, NULL, NULL, 0,                         \
      OFF(alerts.backlog_age_sec), 0, 864000, NULL,                                           \
      "oldest undelivered event older than this; 0: rule off")                                \
    X("alerts.parked", ESS_KEY_ENUM, "true", 0, "false|true", NULL, 0, OFF(alerts.parked), 0,  \
      0, NULL, "true: open while any event is parked (until dlq retry/drop)")                 \
    X("canary", ESS_KEY_BLOCK, NULL, 0, NULL, "kind=push", F_ONLY_WHEN, OFF(canary), 0, 0,     \
      NULL, "synthetic record sent every every_sec (X-ESS-Canary: 1); failing raises an alert") \
    X("canary.every_sec", ESS_KEY_INT, "300", 0, NULL, NULL, 0, OFF(canary.every_sec), 1,      \
      86400, NULL, "seconds between canary deliveries")                                       \
    X("canary.url", ESS_KEY_STRING, NULL, 0, NULL, NULL, 0, OFF(canary.url), 0, 0, check_url,  \
      "the partner's test endpoint; absent: target_url")                                      \
    X("canary.record", ESS_KEY_ANYMAP, NULL, 0, NULL, NULL, 0, OFF(canary.record), 0, 0, NULL, \
      "the synthetic event, shaped like a real one; required with canary")             \
    X("queue_type", ESS_KEY_ENUM, "classic", 0, "classic|quorum", "kind=push", F_ONLY_WHEN,  \
      OFF(queue_type), 0, 0, NULL,                                                            \
      "RabbitMQ type of ess.<id> (x-queue-type); quorum: replicated on a cluster. Fixed "     \
      "at creation: changing it needs the queue drained and deleted")                         \
    X("replicas", ESS_KEY_INT, "1", 0, NULL, "kind=push", F_ONLY_WHEN, OFF(replicas), 1, 64,   \
      NULL, "worker processes sharing ess.<id> and its journal; each key is delivered by "    \
      "one of them at a time, in order (ESS_REPLICAS overrides)")                             \
    X("auth", ESS_KEY_AUTH, NULL, 0, NULL, NULL, 0, OFF(auth), 0, 0, NULL,                    \
      "partner authentication; secrets only via *_env variable names")                        \
    X("auth.type", ESS_KEY_ENUM, "none", 0, "none|basic|bearer|hmac", NULL, 0,                \
      OFF(auth.type), 0, 0, NULL, "hmac: Standard Webhooks signature headers")                \
    X("auth.secret_env", ESS_KEY_STRING, NULL, 1, NULL, "auth.type=hmac",                     \
      F_ENV | F_ONLY_WHEN, OFF(auth.secret_env), 0, 0, check_envname,                         \
      "env var holding the HMAC secret (whsec_<base64>)")                                     \
    X("auth.token_env", ESS_KEY_STRING, NULL, 1, NULL, "auth.type=bearer",                    \
      F_ENV | F_ONLY_WHEN, OFF(auth.token_env), 0, 0, check_envname,                          \
      "env var holding the bearer token")                                                     \
    X("auth.user_env", ESS_KEY_STRING, NULL, 1, NULL, "auth.type=basic",                      \
      F_ENV | F_ONLY_WHEN, OFF(auth.user_env), 0, 0, check_envname,                           \
      "env var holding the basic-auth user")                                                  \
    X("auth.password_env", ESS_KEY_STRING, NULL, 1, NULL, "auth.type=basic",                  \
      F_ENV | F_ONLY_WHEN, OFF(auth.password_env), 0, 0, check_envname,                       \
      "env var holding the basic-auth password")                                              \
    X("listen", ESS_KEY_STRING, NULL, 1, NULL, "kind=webhook", F_ONLY_WHEN, OFF(listen), 0, 0, \
      check_listen, "webhook: address to listen on, IPv4:PORT (127.0.0.1:8089)")              \
    X("path", ESS_KEY_STRING, NULL, 1, NULL, "kind=webhook", F_ONLY_WHEN, OFF(hook_path), 0,  \
      0, check_hook_path, "webhook: URL path partners POST to (/hooks/dmv)")                   \
    X("publish_topic", ESS_KEY_STRING, NULL, 0, NULL, "kind=pull|webhook", F_ONLY_WHEN,        \
      OFF(publish_topic), 0, 0, check_routing_key,                                            \
      "routing key on hms.events for partner records (no wildcards); ess-webhook needs it")   \
    X("source_url", ESS_KEY_STRING, NULL, 0, NULL, "kind=pull", F_ONLY_WHEN, OFF(source_url),  \
      0, 0, check_url, "pull: http(s) URL polled for changed records; ess-pull needs it")      \
    X("source_format", ESS_KEY_ENUM, "json", 0, "json|csv", "kind=pull", F_ONLY_WHEN,          \
      OFF(source_format), 0, 0, NULL,                                                         \
      "pull: the answer is JSON, or CSV with a header row (RFC 4180 quoting)")                \
    X("poll_sec", ESS_KEY_INT, "30", 0, NULL, "kind=pull", F_ONLY_WHEN, OFF(poll_sec), 1,      \
      86400, NULL, "pull: seconds between polls of source_url")                               \
    X("cursor_param", ESS_KEY_STRING, "since", 0, NULL, "kind=pull", F_ONLY_WHEN,              \
      OFF(cursor_param), 0, 0, NULL, "pull: query parameter carrying the since-cursor")        \
    X("updated_at_field", ESS_KEY_STRING, "updated_at", 0, NULL, "kind=pull", F_ONLY_WHEN,     \
      OFF(updated_at_field), 0, 0, check_path,                                                \
      "pull: record field whose largest value seen becomes the cursor")                       \
    X("records_path", ESS_KEY_STRING, NULL, 0, NULL, "kind=pull|push", F_ONLY_WHEN,            \
      OFF(records_path), 0, 0, check_path,                                                    \
      "pull, reconcile: dotted path of the records array in a JSON answer; absent: the answer is one")   \
    X("next_path", ESS_KEY_STRING, "next", 0, NULL, "kind=pull|push", F_ONLY_WHEN,             \
      OFF(next_path), 0, 0, check_path, "pull, reconcile: dotted path of the next-page link in a JSON answer")           \
    X("page_param", ESS_KEY_STRING, NULL, 0, NULL, "kind=pull", F_ONLY_WHEN, OFF(page_param),  \
      0, 0, NULL, "pull: query parameter numbering pages (1, 2, ...) until a short page")     \
    X("reconcile_url", ESS_KEY_STRING, NULL, 0, NULL, "kind=push", F_ONLY_WHEN,               \
      OFF(reconcile_url), 0, 0, check_url,                                                    \
      "ess-reconcile: http(s) URL of the partner's full listing (records_path, next_path)")   \
    X("hms_snapshot_url", ESS_KEY_STRING, NULL, 0, NULL, "kind=push", F_ONLY_WHEN,            \
      OFF(hms_snapshot_url), 0, 0, check_url,                                                 \
      "ess-reconcile: http(s) URL of HMS's listing; absent: the journal's last state per key") \
    X("body_limit", ESS_KEY_INT, "1048576", 0, NULL, "kind=webhook", F_ONLY_WHEN,             \
      OFF(body_limit), 1, 67108864, NULL, "webhook: largest request body in bytes (else 413)") \
    X("inbound_auth", ESS_KEY_AUTH, NULL, 1, NULL, "kind=webhook", F_ONLY_WHEN,               \
      OFF(inbound_auth), 0, 0, NULL, "webhook: how callers prove who they are")               \
    X("inbound_auth.type", ESS_KEY_ENUM, "none", 0, "none|basic|bearer|hmac", NULL, 0,        \
      OFF(inbound_auth.type), 0, 0, NULL,                                                     \
      "hmac: Standard Webhooks signatures; bearer: Authorization: Bearer (none, basic refused)") \
    X("inbound_auth.secret_env", ESS_KEY_STRING, NULL, 1, NULL, "inbound_auth.type=hmac",     \
      F_ENV | F_ONLY_WHEN, OFF(inbound_auth.secret_env), 0, 0, check_envname,                 \
      "env var holding the webhook secret (whsec_<base64>)")                                  \
    X("inbound_auth.token_env", ESS_KEY_STRING, NULL, 1, NULL, "inbound_auth.type=bearer",    \
      F_ENV | F_ONLY_WHEN, OFF(inbound_auth.token_env), 0, 0, check_envname,                  \
      "env var holding the bearer token callers must send")                                   \
    X("headers", ESS_KEY_HEADERS, NULL, 0, NULL, NULL, 0, OFF(headers), 0, 0, NULL,           \
      "static extra request headers {Name: value}; not credentials, not ESS's own headers")   \
    X("tls", ESS_KEY_BLOCK, NULL, 0, NULL, NULL, 0, OFF(tls), 0, 0, NULL,                     \
      "TLS to an https:// partner: trusted CAs, client certificate (mutual TLS); on ftp:// "  \
      "it requires AUTH TLS (explicit FTPS), ftps:// is implicit TLS")                     \
    X("tls.ca_file", ESS_KEY_STRING, NULL, 0, NULL, NULL, 0, OFF(tls.ca_file), 0, 0,          \
      check_file, "absolute path of a PEM file of CAs trusted for the partner; absent: the "  \
      "system store")                                                                         \
    X("tls.cert_file", ESS_KEY_STRING, NULL, 0, NULL, NULL, 0, OFF(tls.cert_file), 0, 0,      \
      check_file, "absolute path of the PEM client certificate ESS presents (mutual TLS)")    \
    X("tls.key_file", ESS_KEY_STRING, NULL, 0, NULL, NULL, 0, OFF(tls.key_file), 0, 0,        \
      check_file, "absolute path of its unencrypted PEM private key; absent: in cert_file")   \
    X("tls.verify", ESS_KEY_ENUM, "true", 0, "false|true", NULL, 0, OFF(tls.verify), 0, 0,    \
      NULL, "false: the partner's certificate and host name are not checked (warned at start)") \
    X("ssh", ESS_KEY_BLOCK, NULL, 0, NULL, NULL, 0, OFF(ssh), 0, 0, NULL,                     \
      "an sftp:// partner: key login and the server's host key (user from the URL)")          \
    X("ssh.key_file", ESS_KEY_STRING, NULL, 0, NULL, NULL, 0, OFF(ssh.key_file), 0, 0,        \
      check_file, "absolute path of the unencrypted private key ESS logs in with")            \
    X("ssh.host_key_sha256", ESS_KEY_STRING, NULL, 0, NULL, NULL, 0, OFF(ssh.host_key_sha256), \
      0, 0, check_host_key, "the server's host key as `ssh-keygen -lf` prints it "           \
      "(SHA256:<base64>); any other key is refused")                                          \
    X("ssh.known_hosts", ESS_KEY_STRING, NULL, 0, NULL, NULL, 0, OFF(ssh.known_hosts), 0, 0,   \
      check_file, "absolute path of an OpenSSH known_hosts file holding the server's key")

#define KEY_PUB(nm, ty, def, req, ch, when, fl, off, lo, hi, chk, doc) {nm, ty, def, req, ch, doc},
#define KEY_IMPL(nm, ty, def, req, ch, when, fl, off, lo, hi, chk, doc) {when, fl, off, lo, hi, chk},
/* clang-format on */

static const struct ess_manifest_key key_pub[] = {MANIFEST_KEYS(KEY_PUB)};
static const struct key_impl key_impl[] = {MANIFEST_KEYS(KEY_IMPL)};

#define KEY_COUNT (sizeof(key_pub) / sizeof(key_pub[0]))

/* Inline secrets people write, and the *_env key they should have used. */
static const char *const secret_words[][2] = {
    {"secret", "secret_env"},      {"token", "token_env"},   {"password", "password_env"},
    {"passwd", "password_env"},    {"api_key", "token_env"}, {"apikey", "token_env"},
    {"hmac_secret", "secret_env"}, {"bearer", "token_env"},
};

struct pctx {
    const char *name; /* file name used in positions */
    yaml_document_t *doc;
    struct ess_manifest *m;
    struct ess_diags *diags;
    const yaml_node_t *root;
    const yaml_node_t *seen_key[KEY_COUNT]; /* key node when the key was given */
    const yaml_node_t *seen_val[KEY_COUNT];
    unsigned char bad[KEY_COUNT]; /* given but invalid: skip checks that depend on it */
    size_t budget;                /* nodes left for free-form conversion */
    int too_big;                  /* the budget or the depth limit was hit */
    int nerr;
    int oom;
};

/* ---------------------------------------------------------------- errors */

static void perr_at(struct pctx *p, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void perr_at(struct pctx *p, int line, int column, const char *fmt, ...)
{
    char msg[ESS_ERR_MSG_MAX];
    va_list ap;

    p->nerr++;
    if (p->diags->n > MANIFEST_MAX_DIAGS) {
        return;
    }
    if (p->diags->n == MANIFEST_MAX_DIAGS) {
        snprintf(msg, sizeof(msg), "manifest: too many errors; stopping here");
    } else {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    if (ess_diags_add(p->diags, ESS_EMANIFEST, p->name, line, column, "%s", msg) == ESS_ENOMEM) {
        p->oom = 1;
    }
}

#define perr(p, node, ...) \
    perr_at((p), (int)(node)->start_mark.line + 1, (int)(node)->start_mark.column + 1, __VA_ARGS__)

/* A short printable copy of user input for a message. */
static const char *show(const char *s, char *buf, size_t len)
{
    size_t i;

    for (i = 0; s[i] != '\0' && i + 1 < len && i < SHOW_MAX; i++) {
        buf[i] = (s[i] >= 0x20 && s[i] != 0x7f) ? s[i] : '?';
    }
    buf[i] = '\0';
    if (s[i] != '\0' && i >= 3) {
        memcpy(buf + i - 3, "...", 3);
    }
    return buf;
}

static const char *node_kind(const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE) {
        return "a mapping";
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        return "a list";
    }
    return "a scalar";
}

/* ---------------------------------------------------------------- table helpers */

static const char *leaf_of(const char *name)
{
    const char *dot = strrchr(name, '.');

    return dot != NULL ? dot + 1 : name;
}

/* 1 when table key ki lives directly in block `prefix` ("" = top level). */
static int key_in_block(size_t ki, const char *prefix)
{
    const char *name = key_pub[ki].name;
    size_t plen = strlen(prefix);
    size_t parent = (size_t)(leaf_of(name) - name);

    if (plen == 0) {
        return parent == 0;
    }
    return parent == plen + 1 && strncmp(name, prefix, plen) == 0;
}

static int find_key(const char *prefix, const char *leaf)
{
    size_t i;

    for (i = 0; i < KEY_COUNT; i++) {
        if (key_in_block(i, prefix) && strcmp(leaf_of(key_pub[i].name), leaf) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int key_named(const char *name)
{
    size_t i;

    for (i = 0; i < KEY_COUNT; i++) {
        if (strcmp(key_pub[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Index of text in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *text)
{
    size_t tlen = strlen(text);
    const char *c = choices;
    int idx = 0;

    while (c != NULL && *c != '\0') {
        const char *bar = strchr(c, '|');
        size_t clen = bar != NULL ? (size_t)(bar - c) : strlen(c);

        if (clen == tlen && strncmp(c, text, clen) == 0) {
            return idx;
        }
        idx++;
        c = bar != NULL ? bar + 1 : NULL;
    }
    return -1;
}

/* Copy choice number idx of "a|b|c" into buf (empty when out of range). */
static const char *choice_at(const char *choices, int idx, char *buf, size_t len)
{
    const char *c = choices;
    const char *bar;

    while (idx > 0 && c != NULL) {
        bar = strchr(c, '|');
        c = bar != NULL ? bar + 1 : NULL;
        idx--;
    }
    buf[0] = '\0';
    if (c != NULL) {
        bar = strchr(c, '|');
        snprintf(buf, len, "%.*s", (int)(bar != NULL ? (size_t)(bar - c) : strlen(c)), c);
    }
    return buf;
}

static void *field_at(const struct ess_manifest *m, size_t ki)
{
    return (char *)m + key_impl[ki].off;
}

/* Current value of an enum key as text, or NULL when unset. */
static const char *enum_text(const struct ess_manifest *m, size_t ki, char *buf, size_t len)
{
    int idx;

    if (key_impl[ki].flags & F_ENUM_STR) {
        return *(char *const *)field_at(m, ki);
    }
    memcpy(&idx, field_at(m, ki), sizeof(idx));
    choice_at(key_pub[ki].choices, idx, buf, len);
    return buf[0] != '\0' ? buf : NULL;
}

/* Does the `when` condition of key ki hold? 1 yes, 0 no, -1 cannot tell (that key
 * is missing or invalid, which is reported on its own). */
static int when_holds(const struct pctx *p, size_t ki)
{
    const char *when = key_impl[ki].when;
    char name[LABEL_MAX];
    char buf[64];
    const char *eq;
    const char *cur;
    int wk;

    if (when == NULL) {
        return 1;
    }
    eq = strchr(when, '=');
    snprintf(name, sizeof(name), "%.*s", (int)(eq - when), when);
    wk = key_named(name);
    if (wk < 0 || p->bad[wk]) {
        return -1;
    }
    cur = enum_text(p->m, (size_t)wk, buf, sizeof(buf));
    if (cur == NULL) {
        return -1;
    }
    return choice_index(eq + 1, cur) >= 0;
}

/* ---------------------------------------------------------------- value checks */

static int check_id(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    size_t n = strlen(s);
    size_t i;
    int ok = n >= 2 && n <= 63 && s[0] >= 'a' && s[0] <= 'z';

    for (i = 1; ok && i < n; i++) {
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-';
    }
    if (!ok) {
        snprintf(why, len, "'%s' is not a valid id (^[a-z][a-z0-9-]{1,62}$)",
                 show(s, sh, sizeof(sh)));
        return -1;
    }
    return 0;
}

static int is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* AMQP topic pattern: words of [A-Za-z0-9_-] separated by '.', a word may be * or #. */
/* "IPv4:PORT": libmicrohttpd binds exactly that address. */
static int check_listen(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1], host[64];
    const char *colon = strrchr(s, ':');
    struct in_addr a;
    char *end = NULL;
    long port = 0;

    if (colon != NULL && (size_t)(colon - s) < sizeof(host)) {
        snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
        errno = 0;
        port = strtol(colon + 1, &end, 10);
        if (inet_pton(AF_INET, host, &a) == 1 && end != colon + 1 && *end == '\0' && errno == 0 &&
            port >= 1 && port <= 65535) {
            return 0;
        }
    }
    snprintf(why, len, "'%s' is not IPv4:PORT (like 127.0.0.1:8089)", show(s, sh, sizeof(sh)));
    return -1;
}

static int check_hook_path(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    size_t i;

    for (i = 0; s[0] == '/' && s[i] != '\0'; i++) {
        if ((unsigned char)s[i] <= ' ' || s[i] == '?' || s[i] == '#' || s[i] == 0x7f) {
            break;
        }
    }
    if (s[0] == '/' && s[i] == '\0' && i < 1024) {
        return 0;
    }
    snprintf(why, len, "'%s' is not a URL path (starts with '/', no spaces, '?' or '#')",
             show(s, sh, sizeof(sh)));
    return -1;
}

/* A topic to publish with: a topic pattern without wildcards. */
static int check_routing_key(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];

    if (check_topic(s, why, len) != 0) {
        return -1;
    }
    if (strpbrk(s, "*#") != NULL) {
        snprintf(why, len, "'%s' is a pattern; publish needs a plain routing key (no * or #)",
                 show(s, sh, sizeof(sh)));
        return -1;
    }
    return 0;
}

static int check_topic(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    const char *w = s;
    int ok = strlen(s) > 0 && strlen(s) <= 255;

    while (ok) {
        size_t wl = strcspn(w, ".");
        size_t i;

        if (wl != 1 || (w[0] != '*' && w[0] != '#')) { /* else a wildcard word */
            for (i = 0; i < wl && is_word_char(w[i]); i++) {
            }
            ok = wl > 0 && i == wl;
        }
        if (w[wl] == '\0') {
            break;
        }
        w += wl + 1;
    }
    if (!ok) {
        snprintf(why, len,
                 "'%s' is not a valid topic pattern (words of A-Za-z0-9_- separated by '.', or * "
                 "or #)",
                 show(s, sh, sizeof(sh)));
        return -1;
    }
    return 0;
}

/* A field path: dot-separated non-empty segments, no blanks. */
static int check_path(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    size_t n = strlen(s);

    if (n == 0 || s[0] == '.' || s[n - 1] == '.' || strstr(s, "..") != NULL ||
        strpbrk(s, " \t") != NULL) {
        snprintf(why, len, "'%s' is not a field path (names separated by '.')",
                 show(s, sh, sizeof(sh)));
        return -1;
    }
    return 0;
}

static int check_envname(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    size_t i;
    int ok = (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_';

    for (i = 1; ok && s[i] != '\0'; i++) {
        ok = (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_';
    }
    if (!ok) {
        snprintf(why, len, "'%s' is not an environment variable name (^[A-Z_][A-Z0-9_]*$)",
                 show(s, sh, sizeof(sh)));
        return -1;
    }
    return 0;
}

/* An XML element name without a prefix (what the xml and soap renderers write). */
static int check_xml_name(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    const unsigned char *p = (const unsigned char *)s;
    int ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' || *p >= 0x80;

    for (p++; ok && *p != '\0'; p++) {
        ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
             *p == '_' || *p == '-' || *p == '.' || *p >= 0x80;
    }
    if (!ok) {
        snprintf(why, len,
                 "'%s' is not an XML element name (a letter or _, then letters, "
                 "digits, _ - .)",
                 show(s, sh, sizeof(sh)));
        return -1;
    }
    return 0;
}

/* Goes into a quoted header value: printable, no quotes, no blanks. */
static int check_soap_action(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '"' || s[i] == '\\') {
            snprintf(why, len,
                     "'%s' cannot be a SOAP action (no blanks, quotes or control "
                     "characters)",
                     show(s, sh, sizeof(sh)));
            return -1;
        }
    }
    return 0;
}

/* Goes into an XML attribute: a URI, so no blanks, quotes or markup. */
static int check_xml_ns(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    size_t i;

    for (i = 0; s[i] != '\0'; i++) {
        if ((unsigned char)s[i] <= 0x20 || strchr("\"'<>&", s[i]) != NULL) {
            snprintf(why, len, "'%s' is not a namespace URI (no blanks, quotes, < > &)",
                     show(s, sh, sizeof(sh)));
            return -1;
        }
    }
    return 0;
}

static int check_delimiter(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];

    if (strlen(s) != 1 || strchr("\"\r\n", s[0]) != NULL) {
        snprintf(why, len,
                 "'%s' is not a delimiter (exactly one character, not a quote or line "
                 "break)",
                 show(s, sh, sizeof(sh)));
        return -1;
    }
    return 0;
}

/* A file name template: one plain path segment once expanded (no '/', no
 * spaces, nothing a URL or an FTP command would need escaped). */
static int check_file_name(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    char name[256];

    if (ess_batch_file_name(s, "id", 1, 0, name, sizeof(name)) != ESS_OK ||
        strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+=,@") !=
            strlen(name) ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        snprintf(why, len,
                 "'%s' is not a file name template (letters, digits, . _ - + = , @ and "
                 "{id}, {seq}, {ts})",
                 show(s, sh, sizeof(sh)));
        return -1;
    }
    return 0;
}

/* "SHA256:" + 43 base64 characters (a trailing '=' allowed), as ssh-keygen -l prints. */
static int check_host_key(const char *s, char *why, size_t len)
{
    const char *b64 = strncmp(s, "SHA256:", 7) == 0 ? s + 7 : NULL;
    size_t n = b64 != NULL ? strspn(b64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                         "0123456789+/")
                           : 0;
    char sh[SHOW_MAX + 1];

    if (b64 == NULL || n != 43 || (b64[n] != '\0' && strcmp(b64 + n, "=") != 0)) {
        snprintf(why, len,
                 "'%s' is not a SHA256 host key fingerprint (SHA256:<43 base64 "
                 "characters>, from ssh-keygen -lf KEY.pub)",
                 show(s, sh, sizeof(sh)));
        return -1;
    }
    return 0;
}

/* A file the worker reads later (TLS material): absolute, so it means the same
 * whatever directory the worker runs in, and readable now, so a typo fails at
 * validate/load time rather than at the first delivery. O_NONBLOCK: a FIFO
 * must not hang the parser. */
static int check_file(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    struct stat st;
    int fd = -1;
    int rc = -1;

    if (s[0] != '/') {
        snprintf(why, len, "'%s' is not an absolute path", show(s, sh, sizeof(sh)));
        goto cleanup;
    }
    fd = open(s, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, len, "cannot read '%s': %s", show(s, sh, sizeof(sh)), strerror(errno));
        goto cleanup;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, len, "'%s' is not a regular file", show(s, sh, sizeof(sh)));
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

static const char *const url_schemes[] = {"http", "https", "ftp", "ftps", "sftp"};

/* 1 when libcurl parses s with an allowed scheme and a host; *has_pw set when the
 * URL carries a password (a secret inline). */
static int url_ok(const char *s, int *has_pw)
{
    CURLU *u = curl_url();
    char *scheme = NULL;
    char *host = NULL;
    char *pw = NULL;
    int ok = 0;
    size_t i;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, s, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
        goto done;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0') {
        goto done;
    }
    *has_pw = curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) == CURLUE_OK;
    for (i = 0; i < sizeof(url_schemes) / sizeof(url_schemes[0]); i++) {
        ok = ok || strcmp(scheme, url_schemes[i]) == 0;
    }
    /* curl also accepts "http:/host" and "http:host"; we want the written form. */
    ok = ok && strstr(s, "://") != NULL && strncmp(strstr(s, "://") + 3, "/", 1) != 0;
done:
    curl_free(scheme);
    curl_free(host);
    curl_free(pw);
    curl_url_cleanup(u);
    return ok;
}

static int check_url(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    int has_pw = 0;

    if (strpbrk(s, " \t") != NULL || !url_ok(s, &has_pw)) {
        snprintf(why, len,
                 "'%s' is not a URL (expected http://, https://, ftp://, ftps:// or sftp:// "
                 "with a host)",
                 show(s, sh, sizeof(sh)));
        return -1;
    }
    if (has_pw) {
        snprintf(why, len,
                 "a password in the URL is not allowed; secrets come only from "
                 "environment variables: use auth.password_env");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- scalar stores */

/* Strict base-10 integer: optional '-', digits, nothing else. */
static int parse_long(const char *s, long *out, int *range)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    char *end = NULL;

    *range = 0;
    if (d[0] < '0' || d[0] > '9' || strspn(d, "0123456789") != strlen(d)) {
        return -1;
    }
    errno = 0;
    *out = strtol(s, &end, 10);
    if (errno == ERANGE) {
        *range = 1;
    }
    return end != NULL && *end == '\0' ? 0 : -1;
}

static int store_int(void *at, const struct key_impl *im, const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    long v = 0;
    int range = 0;
    int iv;

    if (parse_long(s, &v, &range) != 0) {
        snprintf(why, len, "expected an integer, got '%s'", show(s, sh, sizeof(sh)));
        return INVALID;
    }
    if (range || v < im->lo || v > im->hi) {
        snprintf(why, len, "%s is out of range (%ld..%ld)", show(s, sh, sizeof(sh)), im->lo,
                 im->hi);
        return INVALID;
    }
    iv = (int)v;
    memcpy(at, &iv, sizeof(iv));
    return 0;
}

const char *ess_manifest_duration_text(long sec, char *buf, size_t len)
{
    if (sec % 86400 == 0) {
        snprintf(buf, len, "%ldd", sec / 86400);
    } else if (sec % 3600 == 0) {
        snprintf(buf, len, "%ldh", sec / 3600);
    } else if (sec % 60 == 0) {
        snprintf(buf, len, "%ldm", sec / 60);
    } else {
        snprintf(buf, len, "%lds", sec);
    }
    return buf;
}

static int store_duration(void *at, const struct key_impl *im, const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1], lo[32], hi[32], num[32];
    size_t n = strlen(s);
    const char *unit = n > 0 ? strchr("smhd", s[n - 1]) : NULL;
    static const long mult[] = {1, 60, 3600, 86400};
    long v = 0;
    int range = 0;

    snprintf(num, sizeof(num), "%.*s", (int)(n > 0 ? n - 1 : 0), s);
    if (unit == NULL || *unit == '\0' || n < 2 || n > sizeof(num) || num[0] == '-' ||
        parse_long(num, &v, &range) != 0) {
        snprintf(why, len, "expected a duration like 7d, 12h, 30m or 45s, got '%s'",
                 show(s, sh, sizeof(sh)));
        return INVALID;
    }
    if (range || v > LONG_MAX / mult[unit - "smhd"] || v * mult[unit - "smhd"] < im->lo ||
        v * mult[unit - "smhd"] > im->hi) {
        snprintf(why, len, "%s is out of range (%s..%s)", show(s, sh, sizeof(sh)),
                 ess_manifest_duration_text(im->lo, lo, sizeof(lo)),
                 ess_manifest_duration_text(im->hi, hi, sizeof(hi)));
        return INVALID;
    }
    v *= mult[unit - "smhd"];
    memcpy(at, &v, sizeof(v));
    return 0;
}

static int store_enum(void *at, size_t ki, const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    int idx = choice_index(key_pub[ki].choices, s);
    char *dup;

    if (idx < 0) {
        snprintf(why, len, "'%s' is not one of %s", show(s, sh, sizeof(sh)), key_pub[ki].choices);
        return INVALID;
    }
    if (!(key_impl[ki].flags & F_ENUM_STR)) {
        memcpy(at, &idx, sizeof(idx));
        return 0;
    }
    dup = strdup(s);
    if (dup == NULL) {
        return ESS_ENOMEM;
    }
    free(*(char **)at);
    *(char **)at = dup;
    return 0;
}

static int store_string(void *at, check_fn check, const char *s, char *why, size_t len)
{
    char *dup;

    if (check != NULL && check(s, why, len) != 0) {
        return INVALID;
    }
    dup = strdup(s);
    if (dup == NULL) {
        return ESS_ENOMEM;
    }
    free(*(char **)at);
    *(char **)at = dup;
    return 0;
}

/* Store a scalar key from text: used for YAML values and for table defaults alike.
 * Returns 0, INVALID (why says why) or ESS_ENOMEM. */
static int store_scalar(struct ess_manifest *m, size_t ki, const char *s, char *why, size_t len)
{
    void *at = field_at(m, ki);

    switch (key_pub[ki].type) {
    case ESS_KEY_INT:
        return store_int(at, &key_impl[ki], s, why, len);
    case ESS_KEY_DURATION:
        return store_duration(at, &key_impl[ki], s, why, len);
    case ESS_KEY_ENUM:
        return store_enum(at, ki, s, why, len);
    default:
        return store_string(at, key_impl[ki].check, s, why, len);
    }
}

/* ---------------------------------------------------------------- node access */

static const char *expect_word(enum ess_key_type t)
{
    switch (t) {
    case ESS_KEY_INT:
        return "an integer";
    case ESS_KEY_DURATION:
        return "a duration";
    case ESS_KEY_ENUM:
        return "one word";
    case ESS_KEY_STRLIST:
        return "a list of strings";
    case ESS_KEY_STRMAP:
    case ESS_KEY_VALUEMAP:
    case ESS_KEY_ANYMAP:
    case ESS_KEY_AUTH:
    case ESS_KEY_BLOCK:
    case ESS_KEY_TRANSFORMS:
    case ESS_KEY_HEADERS:
        return "a mapping";
    case ESS_KEY_COLUMNS:
        return "a list of columns";
    default:
        return "a string";
    }
}

static int scalar_is_null(const yaml_node_t *n)
{
    const char *v = (const char *)n->data.scalar.value;

    return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
            strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0);
}

/* The text of a scalar node, or NULL after reporting why it is not usable. */
static const char *scalar_of(struct pctx *p, const char *label, const yaml_node_t *n,
                             const char *expect)
{
    if (n->type != YAML_SCALAR_NODE) {
        perr(p, n, "%s: expected %s, got %s", label, expect, node_kind(n));
        return NULL;
    }
    if (scalar_is_null(n)) {
        perr(p, n, "%s: value is empty", label);
        return NULL;
    }
    if (memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL) {
        perr(p, n, "%s: contains a NUL character", label);
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

static yaml_node_t *node_of(struct pctx *p, int id)
{
    return yaml_document_get_node(p->doc, id);
}

/* ---------------------------------------------------------------- lists and maps */

static int strlist_push(struct ess_strlist *l, const char *s)
{
    char **grown = realloc(l->v, (l->n + 1) * sizeof(*grown));

    if (grown == NULL) {
        return ESS_ENOMEM;
    }
    l->v = grown;
    l->v[l->n] = strdup(s);
    if (l->v[l->n] == NULL) {
        return ESS_ENOMEM;
    }
    l->n++;
    return ESS_OK;
}

static void strlist_add(struct pctx *p, size_t ki, const yaml_node_t *item)
{
    const char *name = key_pub[ki].name;
    char why[WHY_MAX];
    const char *s = scalar_of(p, name, item, "a string");

    if (s == NULL) {
        p->bad[ki] = 1;
        return;
    }
    if (key_impl[ki].check != NULL && key_impl[ki].check(s, why, sizeof(why)) != 0) {
        perr(p, item, "%s: %s", name, why);
        p->bad[ki] = 1;
        return;
    }
    if (strlist_push(field_at(p->m, ki), s) != ESS_OK) {
        p->oom = 1;
    }
}

static void set_strlist(struct pctx *p, size_t ki, const yaml_node_t *v)
{
    yaml_node_item_t *it;

    if (key_impl[ki].flags & F_ONE) {
        strlist_add(p, ki, v);
        return;
    }
    if (v->type != YAML_SEQUENCE_NODE) {
        perr(p, v, "%s: expected a list of strings, got %s", key_pub[ki].name, node_kind(v));
        p->bad[ki] = 1;
        return;
    }
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
        strlist_add(p, ki, node_of(p, *it));
    }
}

static int strmap_has(const struct ess_strmap *map, const char *k)
{
    size_t i;

    for (i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], k) == 0) {
            return 1;
        }
    }
    return 0;
}

static int strmap_push(struct ess_strmap *map, const char *k, const char *v)
{
    char **keys = realloc(map->keys, (map->n + 1) * sizeof(*keys));
    char **vals;

    if (keys == NULL) {
        return ESS_ENOMEM;
    }
    map->keys = keys;
    vals = realloc(map->vals, (map->n + 1) * sizeof(*vals));
    if (vals == NULL) {
        return ESS_ENOMEM;
    }
    map->vals = vals;
    map->keys[map->n] = strdup(k);
    map->vals[map->n] = strdup(v);
    map->n++; /* counted even when a strdup failed, so free sees both slots */
    return map->keys[map->n - 1] != NULL && map->vals[map->n - 1] != NULL ? ESS_OK : ESS_ENOMEM;
}

/* A mapping node checked for shape and size; NULL after reporting. */
static const yaml_node_t *mapping_of(struct pctx *p, const char *label, const yaml_node_t *v)
{
    if (v->type != YAML_MAPPING_NODE) {
        perr(p, v, "%s: expected a mapping, got %s", label, node_kind(v));
        return NULL;
    }
    if (v->data.mapping.pairs.top - v->data.mapping.pairs.start > MAP_MAX_ENTRIES) {
        perr(p, v, "%s: more than %d entries", label, MAP_MAX_ENTRIES);
        return NULL;
    }
    return v;
}

/* label -> {scalar: scalar}; returns -1 when anything in it was wrong. */
static int set_strmap(struct pctx *p, const char *label, const yaml_node_t *v,
                      struct ess_strmap *map)
{
    char sub[LABEL_MAX];
    yaml_node_pair_t *pr;
    int rc = 0;

    if (mapping_of(p, label, v) == NULL) {
        return -1;
    }
    for (pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        const yaml_node_t *kn = node_of(p, pr->key);
        const char *k = scalar_of(p, label, kn, "a string key");
        const char *val;

        if (k == NULL) {
            rc = -1;
            continue;
        }
        snprintf(sub, sizeof(sub), "%s.%s", label, k);
        val = scalar_of(p, sub, node_of(p, pr->value), "a string");
        if (val != NULL && strmap_has(map, k)) {
            perr(p, kn, "%s: duplicate key", sub);
        } else if (val != NULL && strmap_push(map, k, val) != ESS_OK) {
            p->oom = 1;
        }
        rc = val == NULL ? -1 : rc;
    }
    return rc;
}

static void set_valuemap(struct pctx *p, size_t ki, const yaml_node_t *v)
{
    const char *name = key_pub[ki].name;
    struct ess_manifest *m = p->m;
    char sub[LABEL_MAX];
    yaml_node_pair_t *pr;
    struct ess_valuemap *grown;

    if (mapping_of(p, name, v) == NULL) {
        p->bad[ki] = 1;
        return;
    }
    for (pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        const yaml_node_t *kn = node_of(p, pr->key);
        const char *field = scalar_of(p, name, kn, "a field name");
        size_t i;

        if (field == NULL) {
            continue;
        }
        snprintf(sub, sizeof(sub), "%s.%s", name, field);
        for (i = 0; i < m->n_values && strcmp(m->values[i].field, field) != 0; i++) {
        }
        if (i < m->n_values) {
            perr(p, kn, "%s: duplicate key", sub);
            continue;
        }
        grown = realloc(m->values, (m->n_values + 1) * sizeof(*grown));
        if (grown == NULL) {
            p->oom = 1;
            return;
        }
        m->values = grown;
        memset(&m->values[m->n_values], 0, sizeof(*grown));
        m->values[m->n_values].field = strdup(field);
        m->n_values++;
        p->oom |= m->values[m->n_values - 1].field == NULL;
        set_strmap(p, sub, node_of(p, pr->value), &m->values[m->n_values - 1].map);
    }
}

/* ---------------------------------------------------------------- free-form -> JSON */

static json_t *any_to_json(struct pctx *p, const char *label, const yaml_node_t *n, int depth);

static json_t *any_scalar(struct pctx *p, const char *label, const yaml_node_t *n)
{
    json_t *j;

    if (memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL) {
        perr(p, n, "%s: contains a NUL character", label);
        return NULL;
    }
    j = json_stringn((const char *)n->data.scalar.value, n->data.scalar.length);
    if (j == NULL) {
        perr(p, n, "%s: not valid UTF-8", label);
    }
    return j;
}

static json_t *any_seq(struct pctx *p, const char *label, const yaml_node_t *n, int depth)
{
    json_t *arr = json_array();
    yaml_node_item_t *it;

    if (arr == NULL) {
        p->oom = 1;
        return NULL;
    }
    for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        json_t *j = any_to_json(p, label, node_of(p, *it), depth + 1);

        if (j == NULL || json_array_append_new(arr, j) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *any_map(struct pctx *p, const char *label, const yaml_node_t *n, int depth)
{
    char sub[LABEL_MAX];
    json_t *obj = json_object();
    yaml_node_pair_t *pr;

    if (obj == NULL) {
        p->oom = 1;
        return NULL;
    }
    for (pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        const yaml_node_t *kn = node_of(p, pr->key);
        const char *k = scalar_of(p, label, kn, "a string key");
        json_t *j = NULL;

        if (k != NULL) {
            snprintf(sub, sizeof(sub), "%s.%s", label, k);
        }
        if (k != NULL && json_object_get(obj, k) != NULL) {
            perr(p, kn, "%s: duplicate key", sub);
        } else if (k != NULL) {
            j = any_to_json(p, sub, node_of(p, pr->value), depth + 1);
        }
        if (j == NULL || json_object_set_new(obj, k, j) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

static json_t *any_to_json(struct pctx *p, const char *label, const yaml_node_t *n, int depth)
{
    /* Aliases share nodes: a budget bounds both self-reference and fan-out.
     * Reported once by set_anymap, at the block the user wrote. */
    if (depth > ANY_MAX_DEPTH || p->budget == 0) {
        p->too_big = 1;
        return NULL;
    }
    p->budget--;
    if (n->type == YAML_SCALAR_NODE) {
        return any_scalar(p, label, n);
    }
    if (n->type == YAML_SEQUENCE_NODE) {
        return any_seq(p, label, n, depth);
    }
    return any_map(p, label, n, depth);
}

static void set_anymap(struct pctx *p, size_t ki, const yaml_node_t *v)
{
    json_t **at = field_at(p->m, ki);

    if (mapping_of(p, key_pub[ki].name, v) == NULL) {
        p->bad[ki] = 1;
        return;
    }
    p->budget = ANY_MAX_NODES;
    p->too_big = 0;
    *at = any_to_json(p, key_pub[ki].name, v, 0);
    if (p->too_big) {
        perr(p, v, "%s: too deeply nested or too large (aliases?)", key_pub[ki].name);
    }
    if (*at == NULL) {
        p->bad[ki] = 1;
    }
}

/* ---------------------------------------------------------------- transforms */

/* Compile one field's spec; an error is positioned at the offending step. */
static void compile_transform(struct pctx *p, size_t ki, const char *field, const yaml_node_t *vn)
{
    struct ess_manifest *m = p->m;
    const json_t *spec = json_object_get(m->transforms, field);
    struct ess_transform *t = NULL;
    struct ess_transform **grown;
    const yaml_node_t *at = vn;
    struct ess_err err;
    int bad = -1;
    int rc;

    ess_err_clear(&err);
    rc = ess_transform_new(field, spec, &t, &bad, &err);
    if (rc == ESS_ENOMEM) {
        p->oom = 1;
        return;
    }
    if (rc != ESS_OK) {
        if (bad >= 0 && vn->type == YAML_SEQUENCE_NODE) {
            at = node_of(p, vn->data.sequence.items.start[bad]);
        }
        perr(p, at, "%s.%s: %s", key_pub[ki].name, field, err.msg);
        p->bad[ki] = 1;
        return;
    }
    grown = realloc(m->xforms, (m->n_xforms + 1) * sizeof(*grown));
    if (grown == NULL) {
        ess_transform_free(t);
        p->oom = 1;
        return;
    }
    m->xforms = grown;
    m->xforms[m->n_xforms++] = t;
}

/* Kept as written (JSON, for display) and compiled into steps, so a bad step is a
 * load-time error at its own line and column. */
static void set_transforms(struct pctx *p, size_t ki, const yaml_node_t *v)
{
    char why[WHY_MAX];
    yaml_node_pair_t *pr;

    set_anymap(p, ki, v);
    if (p->bad[ki] || p->m->transforms == NULL) {
        return;
    }
    for (pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        const yaml_node_t *kn = node_of(p, pr->key);
        const char *field = (const char *)kn->data.scalar.value;

        if (check_path(field, why, sizeof(why)) != 0) {
            perr(p, kn, "%s: %s", key_pub[ki].name, why);
            p->bad[ki] = 1;
            continue;
        }
        compile_transform(p, ki, field, node_of(p, pr->value));
    }
}

static void free_transforms(struct ess_manifest *m)
{
    size_t i;

    for (i = 0; i < m->n_xforms; i++) {
        ess_transform_free(m->xforms[i]);
    }
    free(m->xforms);
    m->xforms = NULL;
    m->n_xforms = 0;
    json_decref(m->transforms);
    m->transforms = NULL;
}

/* ---------------------------------------------------------------- columns (format: fixed) */

#define COLUMN_KEYS "field|width|align|pad|truncate"

static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        n += ((unsigned char)*s & 0xC0) != 0x80;
    }
    return n;
}

/* One "key: value" of a column; why says what is wrong. INVALID, 0 or ESS_ENOMEM. */
static int column_value(struct ess_column *c, int which, const char *s, const struct key_impl *im,
                        char *why, size_t len)
{
    char sh[SHOW_MAX + 1];
    int idx;

    switch (which) {
    case 0:
        return store_string(&c->field, check_path, s, why, len);
    case 1:
        return store_int(&c->width, im, s, why, len);
    case 2:
        idx = choice_index("left|right", s);
        c->align = idx == 1 ? ESS_ALIGN_RIGHT : ESS_ALIGN_LEFT;
        snprintf(why, len, "'%s' is not one of left|right", show(s, sh, sizeof(sh)));
        return idx < 0 ? INVALID : 0;
    case 3:
        snprintf(why, len, "must be exactly one character, got '%s'", show(s, sh, sizeof(sh)));
        return utf8_chars(s) != 1 ? INVALID : store_string(&c->pad, NULL, s, why, len);
    default:
        idx = choice_index("error|right|left", s);
        c->truncate = idx < 0 ? ESS_TRUNCATE_ERROR : (enum ess_truncate)idx;
        snprintf(why, len, "'%s' is not one of error|right|left", show(s, sh, sizeof(sh)));
        return idx < 0 ? INVALID : 0;
    }
}

static void column_pair(struct pctx *p, size_t ki, struct ess_column *c, const char *label,
                        const yaml_node_pair_t *pr, unsigned *seen)
{
    char sub[LABEL_MAX], why[WHY_MAX], sh[SHOW_MAX + 1];
    const yaml_node_t *kn = node_of(p, pr->key);
    const char *k = scalar_of(p, label, kn, "a string key");
    const char *v;
    int which, rc;

    if (k == NULL) {
        return;
    }
    which = choice_index(COLUMN_KEYS, k);
    snprintf(sub, sizeof(sub), "%s.%s", label, show(k, sh, sizeof(sh)));
    if (which < 0) {
        perr(p, kn, "%s: unknown key; valid keys are field, width, align, pad, truncate", sub);
        return;
    }
    if (*seen & (1u << which)) {
        perr(p, kn, "%s: duplicate key", sub);
        return;
    }
    *seen |= 1u << which;
    v = scalar_of(p, sub, node_of(p, pr->value), which == 1 ? "an integer" : "a string");
    rc = v != NULL ? column_value(c, which, v, &key_impl[ki], why, sizeof(why)) : INVALID;
    if (rc == ESS_ENOMEM) {
        p->oom = 1;
    } else if (rc != 0 && v != NULL) {
        perr(p, node_of(p, pr->value), "%s: %s", sub, why);
    }
}

static void parse_column(struct pctx *p, size_t ki, size_t idx, const yaml_node_t *item)
{
    struct ess_column *c = &p->m->columns[idx];
    char label[LABEL_MAX];
    yaml_node_pair_t *pr;
    unsigned seen = 0;

    snprintf(label, sizeof(label), "%s[%zu]", key_pub[ki].name, idx);
    c->pad = strdup(" ");
    p->oom |= c->pad == NULL;
    if (mapping_of(p, label, item) == NULL) {
        return;
    }
    for (pr = item->data.mapping.pairs.start; pr < item->data.mapping.pairs.top; pr++) {
        column_pair(p, ki, c, label, pr, &seen);
    }
    if (!(seen & 1u)) {
        perr(p, item, "%s: field is required", label);
    } else if (!(seen & 2u)) {
        perr(p, item, "%s: width is required", label);
    }
}

static void set_columns(struct pctx *p, size_t ki, const yaml_node_t *v)
{
    struct ess_manifest *m = p->m;
    size_t n, i;

    if (v->type != YAML_SEQUENCE_NODE) {
        perr(p, v, "%s: expected a list of column mappings, got %s", key_pub[ki].name,
             node_kind(v));
        p->bad[ki] = 1;
        return;
    }
    n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0 || n > MAP_MAX_ENTRIES) {
        perr(p, v, "%s: expected 1..%d columns", key_pub[ki].name, MAP_MAX_ENTRIES);
        p->bad[ki] = 1;
        return;
    }
    m->columns = calloc(n, sizeof(*m->columns));
    if (m->columns == NULL) {
        p->oom = 1;
        return;
    }
    m->n_columns = n;
    for (i = 0; i < n; i++) {
        parse_column(p, ki, i, node_of(p, v->data.sequence.items.start[i]));
    }
}

static void free_columns(struct ess_manifest *m)
{
    size_t i;

    for (i = 0; i < m->n_columns; i++) {
        free(m->columns[i].field);
        free(m->columns[i].pad);
    }
    free(m->columns);
    m->columns = NULL;
    m->n_columns = 0;
}

/* ---------------------------------------------------------------- delivery_windows, blackouts */

#define WINDOW_KEYS "days|from|to|tz"
#define SCHEDULE_MAX_ENTRIES 64 /* a schedule, not a calendar: next_open stays cheap */
#define BLACKOUT_KEYS "from|to|tz"

/* The nodes of one schedule item's keys (index in choices), each at most once. */
static int sched_nodes(struct pctx *p, const char *label, const char *choices,
                       const yaml_node_t *item, const yaml_node_t **val, size_t nval)
{
    char sub[LABEL_MAX], sh[SHOW_MAX + 1], list[64];
    yaml_node_pair_t *pr;
    const yaml_node_t *kn;
    const char *k;
    size_t i, o = 0;
    int which;
    int ok = 1;

    memset(val, 0, nval * sizeof(*val));
    for (i = 0; choices[i] != '\0' && o + 3 < sizeof(list); i++) {
        if (choices[i] == '|') {
            list[o++] = ',';
            list[o++] = ' ';
        } else {
            list[o++] = choices[i];
        }
    }
    list[o] = '\0';
    for (pr = item->data.mapping.pairs.start; pr < item->data.mapping.pairs.top; pr++) {
        kn = node_of(p, pr->key);
        k = scalar_of(p, label, kn, "a string key");
        if (k == NULL) {
            ok = 0;
            continue;
        }
        which = choice_index(choices, k);
        snprintf(sub, sizeof(sub), "%s.%s", label, show(k, sh, sizeof(sh)));
        if (which < 0) {
            perr(p, kn, "%s: unknown key; valid keys are %s", sub, list);
            ok = 0;
        } else if (val[which] != NULL) {
            perr(p, kn, "%s: duplicate key", sub);
            ok = 0;
        } else {
            val[which] = node_of(p, pr->value);
        }
    }
    return ok;
}

/* tz of a schedule item (default UTC), a malloc'd copy; NULL after an error. */
static char *sched_tz(struct pctx *p, const char *label, const yaml_node_t *n)
{
    char sub[LABEL_MAX], sh[SHOW_MAX + 1];
    const char *tz = "UTC";
    char *copy;

    snprintf(sub, sizeof(sub), "%s.tz", label);
    if (n != NULL) {
        tz = scalar_of(p, sub, n, "an IANA zone name");
        if (tz == NULL) {
            return NULL;
        }
        if (!ess_zone_exists(tz)) {
            perr(p, n, "%s: '%s' is not a zone in the tz database (e.g. America/Chicago, UTC)", sub,
                 show(tz, sh, sizeof(sh)));
            return NULL;
        }
    }
    copy = strdup(tz);
    p->oom |= copy == NULL;
    return copy;
}

/* A required scalar of a schedule item; NULL after an error. */
static const char *sched_text(struct pctx *p, const char *label, const char *leaf,
                              const yaml_node_t *item, const yaml_node_t *n)
{
    char sub[LABEL_MAX];

    snprintf(sub, sizeof(sub), "%s.%s", label, leaf);
    if (n == NULL) {
        perr(p, item, "%s: %s is required", label, leaf);
        return NULL;
    }
    return scalar_of(p, sub, n, "a string");
}

/* One of from/to: a time of day, or (blackouts) a local date-time in tz. */
static int sched_time(struct pctx *p, const char *label, const char *leaf, const yaml_node_t *item,
                      const yaml_node_t *n, const char *tz, long long *out)
{
    char why[WHY_MAX];
    const char *v = sched_text(p, label, leaf, item, n);
    int min = 0;
    int rc;

    if (v == NULL) {
        return -1;
    }
    if (tz == NULL) {
        rc = ess_schedule_parse_clock(v, strcmp(leaf, "to") == 0, &min, why, sizeof(why));
        *out = min;
    } else {
        rc = ess_schedule_parse_local(v, tz, out, why, sizeof(why));
    }
    if (rc != 0) {
        perr(p, n, "%s.%s: %s", label, leaf, why);
    }
    return rc;
}

static void parse_window(struct pctx *p, const char *label, const yaml_node_t *item,
                         struct ess_schedule_window *w)
{
    const yaml_node_t *v[4];
    char why[WHY_MAX], sub[LABEL_MAX];
    const char *days;
    long long from = 0, to = 0;
    int ok;

    w->days = ESS_SCHEDULE_EVERY_DAY;
    if (mapping_of(p, label, item) == NULL || !sched_nodes(p, label, WINDOW_KEYS, item, v, 4)) {
        return;
    }
    w->tz = sched_tz(p, label, v[3]);
    snprintf(sub, sizeof(sub), "%s.days", label);
    days = v[0] != NULL ? scalar_of(p, sub, v[0], "days such as mon-fri") : NULL;
    if (days != NULL && ess_schedule_parse_days(days, &w->days, why, sizeof(why)) != 0) {
        perr(p, v[0], "%s: %s", sub, why);
    }
    ok = sched_time(p, label, "from", item, v[1], NULL, &from) == 0;
    ok &= sched_time(p, label, "to", item, v[2], NULL, &to) == 0;
    w->from_min = (int)from;
    w->to_min = (int)to;
    if (ok && from == to) {
        perr(p, v[2],
             "%s.to: equals from: the window would be empty (00:00 to 24:00 is a "
             "whole day)",
             label);
    }
}

static void parse_blackout(struct pctx *p, const char *label, const yaml_node_t *item,
                           struct ess_schedule_blackout *b)
{
    const yaml_node_t *v[3];
    int ok;

    if (mapping_of(p, label, item) == NULL || !sched_nodes(p, label, BLACKOUT_KEYS, item, v, 3)) {
        return;
    }
    b->tz = sched_tz(p, label, v[2]);
    if (b->tz == NULL) {
        return;
    }
    ok = sched_time(p, label, "from", item, v[0], b->tz, &b->from) == 0;
    ok &= sched_time(p, label, "to", item, v[1], b->tz, &b->to) == 0;
    if (ok && b->to <= b->from) {
        perr(p, v[1], "%s.to: must be later than from", label);
    }
}

static void set_schedule(struct pctx *p, size_t ki, const yaml_node_t *v)
{
    struct ess_schedule *s = &p->m->schedule;
    int blackouts = key_pub[ki].type == ESS_KEY_BLACKOUTS;
    char label[LABEL_MAX];
    size_t n, i;

    if (v->type != YAML_SEQUENCE_NODE) {
        perr(p, v, "%s: expected a list of mappings, got %s", key_pub[ki].name, node_kind(v));
        p->bad[ki] = 1;
        return;
    }
    n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n > SCHEDULE_MAX_ENTRIES) {
        perr(p, v, "%s: at most %d entries", key_pub[ki].name, SCHEDULE_MAX_ENTRIES);
        p->bad[ki] = 1;
        return;
    }
    if (n == 0) {
        return;
    }
    if (blackouts) {
        s->blackouts = calloc(n, sizeof(*s->blackouts));
        s->n_blackouts = s->blackouts != NULL ? n : 0;
    } else {
        s->windows = calloc(n, sizeof(*s->windows));
        s->n_windows = s->windows != NULL ? n : 0;
    }
    if ((blackouts ? (void *)s->blackouts : (void *)s->windows) == NULL) {
        p->oom = 1;
        return;
    }
    for (i = 0; i < n; i++) {
        snprintf(label, sizeof(label), "%s[%zu]", key_pub[ki].name, i);
        if (blackouts) {
            parse_blackout(p, label, node_of(p, v->data.sequence.items.start[i]), &s->blackouts[i]);
        } else {
            parse_window(p, label, node_of(p, v->data.sequence.items.start[i]), &s->windows[i]);
        }
    }
}

/* ---------------------------------------------------------------- headers */

/* Headers ESS sets itself, and words that mark a credential (those come only
 * from *_env variables through auth). Lower case; "x-ess-" is a prefix. */
static const char *const own_headers[] = {"authorization",
                                          "idempotency-key",
                                          "content-type",
                                          "content-length",
                                          "host",
                                          "transfer-encoding",
                                          "soapaction",
                                          "webhook-id",
                                          "webhook-timestamp",
                                          "webhook-signature"};
static const char *const credential_words[] = {"token",  "secret",  "password", "passwd",
                                               "apikey", "api-key", "api_key",  "cookie"};

static int header_is_token(const char *s)
{
    const char *tchar = "!#$%&'*+-.^_`|~";

    for (; *s != '\0'; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              strchr(tchar, *s) != NULL)) {
            return 0;
        }
    }
    return 1;
}

static int header_name_ok(const char *s, char *why, size_t len)
{
    char sh[SHOW_MAX + 1], lower[SHOW_MAX + 1];
    size_t i;

    if (!header_is_token(s)) {
        snprintf(why, len, "'%s' is not an HTTP header name (a token)", show(s, sh, sizeof(sh)));
        return 0;
    }
    for (i = 0; i < sizeof(own_headers) / sizeof(own_headers[0]); i++) {
        if (strcasecmp(s, own_headers[i]) == 0 || strncasecmp(s, "x-ess-", 6) == 0) {
            snprintf(why, len, "ESS sets this header itself; it cannot be overridden");
            return 0;
        }
    }
    for (i = 0; i + 1 < sizeof(lower) && s[i] != '\0'; i++) {
        lower[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    }
    lower[i] = '\0';
    for (i = 0; i < sizeof(credential_words) / sizeof(credential_words[0]); i++) {
        if (strstr(lower, credential_words[i]) != NULL) {
            snprintf(why, len,
                     "looks like a credential; secrets come only from environment "
                     "variables: use auth");
            return 0;
        }
    }
    return 1;
}

static void set_headers(struct pctx *p, size_t ki, const yaml_node_t *v)
{
    char why[WHY_MAX], sh[SHOW_MAX + 1];
    yaml_node_pair_t *pr;

    if (set_strmap(p, key_pub[ki].name, v, field_at(p->m, ki)) != 0) {
        p->bad[ki] = 1;
        return;
    }
    for (pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top; pr++) {
        const yaml_node_t *kn = node_of(p, pr->key);
        const yaml_node_t *vn = node_of(p, pr->value);
        const char *name = (const char *)kn->data.scalar.value;
        const char *val = (const char *)vn->data.scalar.value;

        if (!header_name_ok(name, why, sizeof(why))) {
            perr(p, kn, "%s.%s: %s", key_pub[ki].name, show(name, sh, sizeof(sh)), why);
            p->bad[ki] = 1;
        } else if (strpbrk(val, "\r\n") != NULL || strlen(val) > 1024) {
            perr(p, vn, "%s.%s: a header value is one line of at most 1024 characters",
                 key_pub[ki].name, name);
            p->bad[ki] = 1;
        }
    }
}

/* ---------------------------------------------------------------- blocks */

static void parse_block(struct pctx *p, const char *prefix, const yaml_node_t *map);

static void set_scalar_key(struct pctx *p, size_t ki, const yaml_node_t *v)
{
    const char *name = key_pub[ki].name;
    char why[WHY_MAX];
    const char *s = scalar_of(p, name, v, expect_word(key_pub[ki].type));
    int rc;

    if (s == NULL) {
        p->bad[ki] = 1;
        return;
    }
    rc = store_scalar(p->m, ki, s, why, sizeof(why));
    if (rc == ESS_ENOMEM) {
        p->oom = 1;
    } else if (rc != 0) {
        perr(p, v, "%s: %s", name, why);
        p->bad[ki] = 1;
    }
}

static void set_value(struct pctx *p, size_t ki, const yaml_node_t *v)
{
    switch (key_pub[ki].type) {
    case ESS_KEY_STRLIST:
        set_strlist(p, ki, v);
        break;
    case ESS_KEY_STRMAP:
        if (set_strmap(p, key_pub[ki].name, v, field_at(p->m, ki)) != 0) {
            p->bad[ki] = 1;
        }
        break;
    case ESS_KEY_VALUEMAP:
        set_valuemap(p, ki, v);
        break;
    case ESS_KEY_ANYMAP:
        set_anymap(p, ki, v);
        break;
    case ESS_KEY_TRANSFORMS:
        set_transforms(p, ki, v);
        break;
    case ESS_KEY_COLUMNS:
        set_columns(p, ki, v);
        break;
    case ESS_KEY_HEADERS:
        set_headers(p, ki, v);
        break;
    case ESS_KEY_WINDOWS:
    case ESS_KEY_BLACKOUTS:
        set_schedule(p, ki, v);
        break;
    case ESS_KEY_AUTH:
    case ESS_KEY_BLOCK:
        if (mapping_of(p, key_pub[ki].name, v) != NULL) {
            parse_block(p, key_pub[ki].name, v);
        }
        break;
    default:
        set_scalar_key(p, ki, v);
        break;
    }
}

/* Levenshtein distance, for "did you mean"; large when either is long. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[65], i, j, diag, up;

    if (la > 64 || lb > 64) {
        return SIZE_MAX;
    }
    for (j = 0; j <= lb; j++) {
        row[j] = j;
    }
    for (i = 1; i <= la; i++) {
        diag = row[0];
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            up = row[j];
            row[j] = diag + (a[i - 1] != b[j - 1]);
            row[j] = row[j] < up + 1 ? row[j] : up + 1;
            row[j] = row[j] < row[j - 1] + 1 ? row[j] : row[j - 1] + 1;
            diag = up;
        }
    }
    return row[lb];
}

/* How far a typo is from a key: the edit distance when small, 3 for one being a
 * prefix of the other ("heartbeat" for heartbeat_sec), SIZE_MAX when unrelated. */
static size_t similarity(const char *typo, const char *key)
{
    size_t tl = strlen(typo), kl = strlen(key);
    size_t d = edit_distance(typo, key);
    size_t shorter = tl < kl ? tl : kl;

    if (tl >= 3 && d <= (kl <= 4 ? 1u : 2u)) {
        return d;
    }
    if (shorter >= 4 && strncmp(typo, key, shorter) == 0) {
        return 3;
    }
    return SIZE_MAX;
}

/* "valid keys are a, b, c" for one block, and the closest one to leaf. */
static void block_keys(const char *prefix, const char *leaf, char *list, size_t len,
                       const char **best)
{
    size_t i, used = 0, bestd = SIZE_MAX;

    *best = NULL;
    list[0] = '\0';
    for (i = 0; i < KEY_COUNT; i++) {
        const char *kl = leaf_of(key_pub[i].name);
        size_t d;

        if (!key_in_block(i, prefix)) {
            continue;
        }
        if (used < len) {
            used += (size_t)snprintf(list + used, len - used, "%s%s", used ? ", " : "", kl);
        }
        d = similarity(leaf, kl);
        if (d < bestd) {
            bestd = d;
            *best = kl;
        }
    }
}

static void unknown_key(struct pctx *p, const char *prefix, const yaml_node_t *kn, const char *leaf)
{
    char label[LABEL_MAX], sh[SHOW_MAX + 1], list[ESS_ERR_MSG_MAX], hint[96] = "";
    const char *best;
    size_t i;

    snprintf(label, sizeof(label), "%s%s%s", prefix, prefix[0] ? "." : "",
             show(leaf, sh, sizeof(sh)));
    for (i = 0; i < sizeof(secret_words) / sizeof(secret_words[0]); i++) {
        if (strcmp(leaf, secret_words[i][0]) == 0) {
            perr(p, kn, "%s: secrets come only from environment variables: use %s%s", label,
                 strcmp(prefix, "auth") == 0 ? "" : "auth.", secret_words[i][1]);
            return;
        }
    }
    block_keys(prefix, leaf, list, sizeof(list), &best);
    if (best != NULL) {
        snprintf(hint, sizeof(hint), " (did you mean %s?)", best);
    }
    perr(p, kn, "%s: unknown key%s; valid keys are %s", label, hint, list);
}

/* Two keys filling the same field the same way are alternative spellings
 * (listen_topic / listen_topics). A block and its first member share an offset
 * too (auth / auth.type), hence the type test. */
static int is_alternative(size_t a, size_t b)
{
    return a != b && key_impl[a].off == key_impl[b].off && key_pub[a].type == key_pub[b].type;
}

/* Another key of the same field (an alternative spelling) already given? */
static int alternative_seen(const struct pctx *p, size_t ki)
{
    size_t i;

    for (i = 0; i < KEY_COUNT; i++) {
        if (is_alternative(i, ki) && p->seen_key[i] != NULL) {
            return (int)i;
        }
    }
    return -1;
}

static void parse_pair(struct pctx *p, const char *prefix, const yaml_node_pair_t *pr)
{
    const yaml_node_t *kn = node_of(p, pr->key);
    const char *leaf = scalar_of(p, prefix[0] ? prefix : "manifest", kn, "a string key");
    int ki, alt;

    if (leaf == NULL) {
        return;
    }
    ki = find_key(prefix, leaf);
    if (ki < 0) {
        unknown_key(p, prefix, kn, leaf);
        return;
    }
    if (p->seen_key[ki] != NULL) {
        perr(p, kn, "%s: duplicate key (first given at line %d)", key_pub[ki].name,
             (int)p->seen_key[ki]->start_mark.line + 1);
        return;
    }
    alt = alternative_seen(p, (size_t)ki);
    p->seen_key[ki] = kn;
    p->seen_val[ki] = node_of(p, pr->value);
    if (alt >= 0) {
        perr(p, kn, "%s: %s is also given; use one or the other", key_pub[ki].name,
             key_pub[alt].name);
        p->bad[ki] = 1;
        return;
    }
    set_value(p, (size_t)ki, p->seen_val[ki]);
}

static void parse_block(struct pctx *p, const char *prefix, const yaml_node_t *map)
{
    yaml_node_pair_t *pr;

    for (pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        parse_pair(p, prefix, pr);
    }
}

/* ---------------------------------------------------------------- after parsing */

static void apply_defaults(struct pctx *p)
{
    char why[WHY_MAX];
    size_t i;

    for (i = 0; i < KEY_COUNT; i++) {
        if (p->seen_key[i] != NULL || key_pub[i].def == NULL) {
            continue;
        }
        if (store_scalar(p->m, i, key_pub[i].def, why, sizeof(why)) == ESS_ENOMEM) {
            p->oom = 1;
        }
    }
}

/* "(or listen_topics)" for keys that have alternatives; "" otherwise. */
static void alternatives_text(size_t ki, char *buf, size_t len)
{
    size_t i, used = 0;

    buf[0] = '\0';
    for (i = 0; i < KEY_COUNT && used < len; i++) {
        if (is_alternative(i, ki)) {
            used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : " (or ",
                                     key_pub[i].name);
        }
    }
    if (used > 0 && used < len) {
        snprintf(buf + used, len - used, ")");
    }
}

/* Where a missing key is reported: its block when given, else the document root. */
static const yaml_node_t *missing_pos(const struct pctx *p, size_t ki)
{
    const char *name = key_pub[ki].name;
    const char *leaf = leaf_of(name);
    size_t i;

    for (i = 0; leaf != name && i < KEY_COUNT; i++) {
        if (strlen(key_pub[i].name) == (size_t)(leaf - name - 1) &&
            strncmp(key_pub[i].name, name, (size_t)(leaf - name - 1)) == 0 &&
            p->seen_val[i] != NULL) {
            return p->seen_val[i];
        }
    }
    return p->root;
}

static void report_missing(struct pctx *p, size_t ki)
{
    const char *when = key_impl[ki].when;
    char alts[LABEL_MAX], cond[LABEL_MAX] = "";
    const char *eq;
    size_t i;

    for (i = 0; i < ki; i++) {
        if (is_alternative(i, ki)) {
            return; /* reported once, under the first spelling */
        }
    }
    alternatives_text(ki, alts, sizeof(alts));
    if (when != NULL && strncmp(when, "kind=", 5) != 0) {
        eq = strchr(when, '=');
        snprintf(cond, sizeof(cond), " (%.*s is %s)", (int)(eq - when), when, eq + 1);
    }
    perr(p, missing_pos(p, ki), "%s: required key is missing%s%s", key_pub[ki].name, alts, cond);
}

static int list_is_empty(const struct pctx *p, size_t ki)
{
    return key_pub[ki].type == ESS_KEY_STRLIST && !p->bad[ki] &&
           ((const struct ess_strlist *)field_at(p->m, ki))->n == 0;
}

static void check_keys(struct pctx *p)
{
    size_t i;
    int cond;

    for (i = 0; i < KEY_COUNT; i++) {
        cond = when_holds(p, i);
        if (p->seen_key[i] != NULL) {
            if ((key_impl[i].flags & F_ONLY_WHEN) && cond == 0) {
                perr(p, p->seen_key[i], "%s: only used when %.*s is %s", key_pub[i].name,
                     (int)strcspn(key_impl[i].when, "="), key_impl[i].when,
                     strchr(key_impl[i].when, '=') + 1);
            } else if (key_pub[i].required && cond == 1 && list_is_empty(p, i)) {
                perr(p, p->seen_val[i], "%s: at least one entry is required", key_pub[i].name);
            }
            continue;
        }
        if (key_pub[i].required && cond == 1 && alternative_seen(p, i) < 0) {
            report_missing(p, i);
        }
    }
}

/* tls: what the table cannot say. A key without its certificate is a mistake, and
 * TLS settings on a plain http:// target would protect nothing while looking as
 * if they did. */
static void check_tls(struct pctx *p)
{
    int blk = key_named("tls");
    int key = key_named("tls.key_file");
    int cert = key_named("tls.cert_file");
    int url = key_named("target_url");
    const char *target = p->m->target_url;

    p->m->tls.given = p->seen_key[blk] != NULL;
    if (p->seen_key[key] != NULL && p->seen_key[cert] == NULL) {
        perr(p, p->seen_key[key], "tls.key_file: only used with tls.cert_file");
    }
    if (p->seen_key[blk] != NULL && !p->bad[url] && target != NULL &&
        strncasecmp(target, "http://", 7) == 0) {
        perr(p, p->seen_key[blk], "tls: target_url is plain http://; use https:// (or drop tls)");
    }
    if (p->seen_key[blk] != NULL && !p->bad[url] && target != NULL &&
        strncasecmp(target, "sftp://", 7) == 0) {
        perr(p, p->seen_key[blk], "tls: target_url is sftp:// (SSH, not TLS); use ssh: {...}");
    }
}

/* 1 when a path in l is path or one of its parents ("appt" covers "appt.id"). */
static int strlist_covers(const struct ess_strlist *l, const char *path)
{
    size_t i, n;

    for (i = 0; i < l->n; i++) {
        n = strlen(l->v[i]);
        if (strncmp(l->v[i], path, n) == 0 && (path[n] == '\0' || path[n] == '.')) {
            return 1;
        }
    }
    return 0;
}

/* delta: fixed and csv records have columns, not fields: leaving the unchanged
 * ones out would blank them (and a file's csv header would not fit its rows). */
static void check_delta(struct pctx *p)
{
    int dk = key_named("delta");
    int fk = key_named("format");
    const struct ess_manifest *m = p->m;

    if (p->seen_key[dk] == NULL || !m->delta) {
        return;
    }
    if (!p->bad[fk] && (m->format == ESS_FORMAT_FIXED || m->format == ESS_FORMAT_CSV)) {
        perr(p, p->seen_val[dk],
             "delta: not with format %s (its columns would be blanked); "
             "use json, xml, soap or form",
             ess_manifest_format_name(m->format));
    }
    /* Every delta carries the key: the partner must learn which record changed. */
    if (m->key != NULL && ((m->fields.n > 0 && !strlist_covers(&m->fields, m->key)) ||
                           strlist_covers(&m->drop, m->key))) {
        perr(p, p->seen_val[dk], "delta: the key %s must be sent (in fields, not in drop)", m->key);
    }
}

/* ssh: only an sftp:// partner has an SSH server to log in to. */
static void check_ssh(struct pctx *p)
{
    int blk = key_named("ssh");
    int url = key_named("target_url");
    const char *target = p->m->target_url;

    if (p->seen_key[blk] != NULL && !p->bad[url] &&
        (target == NULL || strncasecmp(target, "sftp://", 7) != 0)) {
        perr(p, p->seen_key[blk], "ssh: only used with an sftp:// target_url");
    }
}

/* canary: a block without the record it sends says nothing; the record needs
 * the key field like any event (ess_event would refuse it at every send). */
static void check_canary(struct pctx *p)
{
    int blk = key_named("canary");
    int rec = key_named("canary.record");
    int key = key_named("key");
    json_t *v = p->m->canary.record;
    const char *part;
    const char *dot;
    char seg[256];

    if (p->seen_key[blk] == NULL || p->bad[blk]) {
        return;
    }
    if (p->seen_key[rec] == NULL) {
        perr(p, p->seen_val[blk], "canary.record: required key is missing (the synthetic event)");
        return;
    }
    if (p->bad[rec] || p->bad[key] || p->m->key == NULL) {
        return;
    }
    for (part = p->m->key; v != NULL; part = dot + 1) {
        dot = strchr(part, '.');
        snprintf(seg, sizeof(seg), "%.*s", dot != NULL ? (int)(dot - part) : (int)strlen(part),
                 part);
        v = json_object_get(v, seg);
        if (dot == NULL) {
            break;
        }
    }
    if (v == NULL || json_is_null(v)) {
        perr(p, p->seen_val[rec], "canary.record: has no key field '%s'", p->m->key);
    }
}

/* conflict: the block switches the rules on; each conflict.fields value must
 * name a strategy (the table checks only that it is a string). */
static void check_conflict(struct pctx *p)
{
    int blk = key_named("conflict");
    int fk = key_named("conflict.fields");
    const yaml_node_t *map = p->seen_val[fk];
    const char *choices = key_pub[key_named("conflict.strategy")].choices;
    yaml_node_pair_t *pr;

    p->m->conflict.on = p->seen_key[blk] != NULL;
    if (map == NULL || map->type != YAML_MAPPING_NODE || p->bad[fk]) {
        return;
    }
    for (pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top; pr++) {
        const yaml_node_t *kn = yaml_document_get_node(p->doc, pr->key);
        const yaml_node_t *vn = yaml_document_get_node(p->doc, pr->value);
        char word[64];

        if (kn == NULL || vn == NULL || kn->type != YAML_SCALAR_NODE ||
            vn->type != YAML_SCALAR_NODE) {
            continue; /* reported by set_strmap */
        }
        snprintf(word, sizeof(word), "|%.*s|",
                 (int)(vn->data.scalar.length < 60 ? vn->data.scalar.length : 60),
                 (const char *)vn->data.scalar.value);
        if (strstr("|last_write_wins|master_always_wins|first_write_wins|", word) == NULL) {
            perr(p, vn, "conflict.fields.%s: '%s' is not one of %s",
                 (const char *)kn->data.scalar.value, (const char *)vn->data.scalar.value, choices);
        }
    }
}

/* ---------------------------------------------------------------- document */

static void line_col_of(const char *text, size_t len, size_t off, int *line, int *col)
{
    size_t i;

    *line = 1;
    *col = 1;
    for (i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static void yaml_problem(struct pctx *p, const yaml_parser_t *ps, const char *text, size_t len)
{
    int line, col;
    char ctx[160] = "";

    if (ps->error == YAML_MEMORY_ERROR) {
        p->oom = 1;
        return;
    }
    if (ps->error == YAML_READER_ERROR) {
        line_col_of(text, len, ps->problem_offset, &line, &col);
    } else {
        line = (int)ps->problem_mark.line + 1;
        col = (int)ps->problem_mark.column + 1;
    }
    if (ps->context != NULL) {
        snprintf(ctx, sizeof(ctx), " (%s)", ps->context);
    }
    perr_at(p, line, col, "yaml: %s%s", ps->problem != NULL ? ps->problem : "syntax error", ctx);
}

static void parse_root(struct pctx *p)
{
    const yaml_node_t *root = yaml_document_get_root_node(p->doc);

    p->root = root;
    if (root == NULL || (root->type == YAML_SCALAR_NODE && scalar_is_null(root))) {
        perr_at(p, 1, 1, "manifest: file is empty; expected a mapping with id, kind, key, ...");
        return;
    }
    if (root->type != YAML_MAPPING_NODE) {
        perr(p, root, "manifest: top level must be a mapping of keys, got %s", node_kind(root));
        return;
    }
    parse_block(p, "", root);
    apply_defaults(p);
    check_keys(p);
    check_tls(p);
    check_canary(p);
    check_ssh(p);
    check_delta(p);
    check_conflict(p);
}

/* Load the one document; a second document is an error (which one would count?). */
static void parse_text(struct pctx *p, const char *text, size_t len)
{
    yaml_parser_t ps;
    yaml_document_t doc, extra;
    yaml_node_t *second;

    if (!yaml_parser_initialize(&ps)) {
        p->oom = 1;
        return;
    }
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    if (!yaml_parser_load(&ps, &doc)) {
        yaml_problem(p, &ps, text, len);
        yaml_parser_delete(&ps);
        return;
    }
    p->doc = &doc;
    parse_root(p);
    if (!yaml_parser_load(&ps, &extra)) {
        yaml_problem(p, &ps, text, len);
    } else {
        second = yaml_document_get_root_node(&extra);
        if (second != NULL) {
            perr(p, second, "manifest: only one YAML document is allowed");
        }
        yaml_document_delete(&extra);
    }
    p->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&ps);
}

static char *sha256_hex(const char *text, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *hex;
    unsigned int i;

    if (!EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL)) {
        return NULL;
    }
    hex = malloc((size_t)mdlen * 2 + 1);
    if (hex == NULL) {
        return NULL;
    }
    for (i = 0; i < mdlen; i++) {
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }
    return hex;
}

/* ---------------------------------------------------------------- public API */

const struct ess_manifest_key *ess_manifest_keys(size_t *n)
{
    if (n != NULL) {
        *n = KEY_COUNT;
    }
    return key_pub;
}

int ess_manifest_parse(const char *text, size_t len, const char *name, struct ess_manifest **out,
                       struct ess_diags *diags)
{
    struct pctx p;
    int rc = ESS_OK;

    if (out == NULL || diags == NULL || (text == NULL && len > 0)) {
        return ESS_EINVAL;
    }
    *out = NULL;
    memset(&p, 0, sizeof(p));
    p.name = name != NULL ? name : "<string>";
    p.diags = diags;
    p.m = calloc(1, sizeof(*p.m));
    if (p.m == NULL) {
        return ESS_ENOMEM;
    }
    p.m->path = strdup(p.name);
    p.m->sha256 = sha256_hex(text != NULL ? text : "", len);
    if (p.m->path == NULL || p.m->sha256 == NULL) {
        rc = ESS_ENOMEM;
        goto cleanup;
    }
    parse_text(&p, text != NULL ? text : "", len);
    rc = p.oom ? ESS_ENOMEM : (p.nerr > 0 ? ESS_EMANIFEST : ESS_OK);
cleanup:
    if (rc != ESS_OK) {
        ess_manifest_free(p.m);
        return rc;
    }
    *out = p.m;
    return ESS_OK;
}

/* Read a whole file; ESS_ECONFIG (with strerror) when it cannot be read. */
static int read_all(const char *path, char **buf, size_t *len, struct ess_diags *diags)
{
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    size_t n = 0;
    int rc = ESS_OK;

    *buf = NULL;
    if (f == NULL) {
        return ess_diags_add(diags, ESS_ECONFIG, path, 0, 0, "cannot read manifest: %s",
                             strerror(errno));
    }
    b = malloc(MANIFEST_MAX_BYTES + 1);
    if (b == NULL) {
        rc = ESS_ENOMEM;
        goto cleanup;
    }
    n = fread(b, 1, MANIFEST_MAX_BYTES + 1, f);
    if (ferror(f)) {
        rc = ess_diags_add(diags, ESS_ECONFIG, path, 0, 0, "cannot read manifest: %s",
                           strerror(errno));
    } else if (n > MANIFEST_MAX_BYTES) {
        rc = ess_diags_add(diags, ESS_EMANIFEST, path, 0, 0, "manifest: larger than %d bytes",
                           MANIFEST_MAX_BYTES);
    }
cleanup:
    fclose(f);
    if (rc != ESS_OK) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = n;
    return ESS_OK;
}

int ess_manifest_load(const char *path, struct ess_manifest **out, struct ess_diags *diags)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (path == NULL || out == NULL || diags == NULL) {
        return ESS_EINVAL;
    }
    *out = NULL;
    rc = read_all(path, &text, &len, diags);
    if (rc == ESS_OK) {
        rc = ess_manifest_parse(text, len, path, out, diags);
    }
    free(text);
    return rc;
}

static void strlist_free(struct ess_strlist *l)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void strmap_free(struct ess_strmap *map)
{
    size_t i;

    for (i = 0; i < map->n; i++) {
        free(map->keys[i]);
        free(map->vals[i]);
    }
    free(map->keys);
    free(map->vals);
    memset(map, 0, sizeof(*map));
}

static void free_key(struct ess_manifest *m, size_t ki)
{
    void *at = field_at(m, ki);
    size_t i;

    switch (key_pub[ki].type) {
    case ESS_KEY_STRING:
        free(*(char **)at);
        *(char **)at = NULL;
        break;
    case ESS_KEY_ENUM:
        if (key_impl[ki].flags & F_ENUM_STR) {
            free(*(char **)at);
            *(char **)at = NULL;
        }
        break;
    case ESS_KEY_STRLIST:
        strlist_free(at); /* alternatives share the list: the second call sees n == 0 */
        break;
    case ESS_KEY_STRMAP:
        strmap_free(at);
        break;
    case ESS_KEY_VALUEMAP:
        for (i = 0; i < m->n_values; i++) {
            free(m->values[i].field);
            strmap_free(&m->values[i].map);
        }
        free(m->values);
        m->values = NULL;
        m->n_values = 0;
        break;
    case ESS_KEY_ANYMAP:
        json_decref(*(json_t **)at);
        *(json_t **)at = NULL;
        break;
    case ESS_KEY_TRANSFORMS:
        free_transforms(m);
        break;
    case ESS_KEY_COLUMNS:
        free_columns(m);
        break;
    case ESS_KEY_HEADERS:
        strmap_free(at);
        break;
    case ESS_KEY_WINDOWS:
        ess_schedule_fini(&m->schedule); /* both keys: the second call sees it empty */
        break;
    default:
        break;
    }
}

void ess_manifest_free(struct ess_manifest *m)
{
    size_t i;

    if (m == NULL) {
        return;
    }
    for (i = 0; i < KEY_COUNT; i++) {
        free_key(m, i);
    }
    free(m->path);
    free(m->sha256);
    free(m);
}

int ess_manifest_check_env(const struct ess_manifest *m, struct ess_err *err)
{
    size_t i;
    const char *var;
    const char *val;

    if (m == NULL) {
        return ess_err_set(err, ESS_EINVAL, "no manifest");
    }
    for (i = 0; i < KEY_COUNT; i++) {
        if (!(key_impl[i].flags & F_ENV)) {
            continue;
        }
        var = *(char *const *)field_at(m, i);
        if (var == NULL) {
            continue;
        }
        val = getenv(var);
        /* Name the variable, never print what it holds. */
        if (val == NULL) {
            return ess_err_set(err, ESS_ECONFIG, "%s: environment variable %s is not set",
                               key_pub[i].name, var);
        }
        if (val[0] == '\0') {
            return ess_err_set(err, ESS_ECONFIG, "%s: environment variable %s is empty",
                               key_pub[i].name, var);
        }
    }
    return ESS_OK;
}

static const char *type_text(size_t ki, char *buf, size_t len)
{
    const struct key_impl *im = &key_impl[ki];
    char lo[32], hi[32];

    switch (key_pub[ki].type) {
    case ESS_KEY_INT:
        snprintf(buf, len, "int %ld..%ld", im->lo, im->hi);
        break;
    case ESS_KEY_DURATION:
        snprintf(buf, len, "duration %s..%s", ess_manifest_duration_text(im->lo, lo, sizeof(lo)),
                 ess_manifest_duration_text(im->hi, hi, sizeof(hi)));
        break;
    case ESS_KEY_ENUM:
        snprintf(buf, len, "%s", key_pub[ki].choices);
        break;
    case ESS_KEY_STRLIST:
        snprintf(buf, len, "%s", (im->flags & F_ONE) ? "string" : "list of strings");
        break;
    case ESS_KEY_STRMAP:
        snprintf(buf, len, "map string -> string");
        break;
    case ESS_KEY_VALUEMAP:
        snprintf(buf, len, "map field -> map");
        break;
    case ESS_KEY_TRANSFORMS:
        snprintf(buf, len, "map field -> steps");
        break;
    case ESS_KEY_COLUMNS:
        snprintf(buf, len, "list of columns");
        break;
    case ESS_KEY_HEADERS:
        snprintf(buf, len, "map header -> value");
        break;
    case ESS_KEY_WINDOWS:
        snprintf(buf, len, "list of windows");
        break;
    case ESS_KEY_BLACKOUTS:
        snprintf(buf, len, "list of blackouts");
        break;
    case ESS_KEY_ANYMAP:
    case ESS_KEY_AUTH:
    case ESS_KEY_BLOCK:
        snprintf(buf, len, "mapping");
        break;
    default:
        snprintf(buf, len, "string");
        break;
    }
    return buf;
}

static const char *default_text(size_t ki, char *buf, size_t len)
{
    if (key_pub[ki].def != NULL) {
        snprintf(buf, len, "%s", key_pub[ki].def);
    } else if (key_pub[ki].required && key_impl[ki].when != NULL) {
        snprintf(buf, len, "required if %s", key_impl[ki].when);
    } else {
        snprintf(buf, len, "%s", key_pub[ki].required ? "required" : "-");
    }
    return buf;
}

void ess_manifest_explain(FILE *out)
{
    char t[96], d[96];
    int wn = 3, wt = 4, wd = 7;
    size_t i;

    for (i = 0; i < KEY_COUNT; i++) {
        int n = (int)strlen(key_pub[i].name);
        int tl = (int)strlen(type_text(i, t, sizeof(t)));
        int dl = (int)strlen(default_text(i, d, sizeof(d)));

        wn = n > wn ? n : wn;
        wt = tl > wt ? tl : wt;
        wd = dl > wd ? dl : wd;
    }
    fprintf(out, "%-*s  %-*s  %-*s  %s\n", wn, "KEY", wt, "TYPE", wd, "DEFAULT", "MEANING");
    for (i = 0; i < KEY_COUNT; i++) {
        fprintf(out, "%-*s  %-*s  %-*s  %s\n", wn, key_pub[i].name, wt, type_text(i, t, sizeof(t)),
                wd, default_text(i, d, sizeof(d)), key_pub[i].doc);
    }
}

const char *ess_manifest_format_name(enum ess_format f)
{
    static const char *const names[] = {"json", "soap", "xml", "csv", "fixed", "form"};

    if ((int)f < 0 || (size_t)f >= sizeof(names) / sizeof(names[0])) {
        return "unknown";
    }
    return names[f];
}

int ess_manifest_load_reported(const char *path, struct ess_manifest **out, FILE *report)
{
    struct ess_diags diags;
    char line[700];
    size_t i;
    int rc;

    ess_diags_init(&diags);
    rc = ess_manifest_load(path, out, &diags);
    for (i = 0; i < diags.n; i++) {
        ess_err_format(&diags.v[i], line, sizeof(line));
        if (report != NULL) {
            fprintf(report, "%s\n", line);
        } else {
            ess_log_error("%s", line);
        }
    }
    ess_diags_fini(&diags);
    return rc;
}
