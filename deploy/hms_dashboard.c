/*
 * hms_dashboard -- `hms ops serve`: a live fleet dashboard on loopback.
 *
 * One process, three threads. The bus thread consumes hms.ops ("ess.#":
 * heartbeats, lifecycle, alerts, conflicts) on an exclusive auto-delete queue
 * of its own connection, reconnecting with capped, jittered back-off; the HTTP
 * threads (libmicrohttpd, one per connection) serve an embedded page, a JSON
 * API and a Server-Sent Events stream; the main thread seeds, then waits for
 * SIGINT/SIGTERM.
 *
 * DESIGN
 * All state lives in one struct dash behind one mutex: per connector the
 * latest heartbeat and the one before (rates), a ring of the last 200 ops
 * events, and a feed ring of ready-made SSE messages numbered by seq. Each SSE
 * client keeps the seq it has sent and waits on a condition variable for the
 * next; a client that falls behind the ring skips ahead (the page reloads
 * the API on reconnect, and connector messages are whole rows, so nothing is
 * lost but intermediate values). DOWN is decided here, not in the browser:
 * a connector whose last heartbeat was *received* more than 3 x heartbeat_sec
 * ago on this process's monotonic clock is DOWN, so neither the worker's nor
 * the viewer's clock matters; the bus thread's 250 ms tick pushes a
 * "connector" message when a status changes that way. heartbeat_sec is not in
 * the heartbeat body: it comes from ess_heartbeats (seeded at start, looked up
 * once for a connector first seen on the bus), else from the interval between
 * two heartbeats.
 *
 * Everything shown is partner- or worker-controlled text: the JSON is built by
 * jansson, the page builds its DOM with textContent only, and a strict
 * Content-Security-Policy (script and style from 'self' only, no inline code)
 * stands behind that. The page, its script and its style are C strings below:
 * no build step, no CDN. The server binds 127.0.0.1 unless --public, and
 * without --public refuses requests whose Host is not a loopback name, so a
 * web page elsewhere cannot read it through DNS rebinding.
 */
#include "hms.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <time.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <microhttpd.h>

#include "ess_err.h"
#include "ess_worker.h"

#define DASH_EVENTS 200          /* ops events kept for /api/events */
#define DASH_FEED 256            /* SSE messages kept for slow clients */
#define DASH_MAX_CONNECTORS 1024 /* beyond this, new connector ids are ignored */
#define DASH_MAX_SSE 32          /* concurrent /api/stream clients; 503 beyond */
#define DASH_KEEPALIVE_MS 15000  /* SSE comment when nothing else was sent */
#define DASH_TICK_MS 250         /* bus poll / DOWN check period */
#define DASH_DOWN_FACTOR 3       /* DESIGN.md: silent for 3 x heartbeat_sec is down */
#define DASH_DEFAULT_HB_SEC 30.0
#define DASH_ID_MAX 64
#define DASH_TEXT_MAX 2048 /* last_error / detail kept per field */
#define DASH_DEFAULT_LISTEN "127.0.0.1:8080"

struct dash_conn { /* one connector: its latest heartbeat */
    char id[DASH_ID_MAX];
    json_t *body;         /* latest heartbeat body (owned) */
    json_t *prev;         /* the one before, for rates (owned, may be NULL) */
    double span_s;        /* seconds between prev and body, 0 when unknown */
    long long recv_mono;  /* when body was received, ess_worker_mono_ms() */
    double hb_sec;        /* 0 until known or guessed */
    int hb_sec_known;     /* from the body or ess_heartbeats, not guessed */
    int hb_sec_looked_up; /* ess_heartbeats asked once */
    int stopped;          /* a lifecycle "stopped" since the last heartbeat */
    unsigned long beats;
    char status[24]; /* last status pushed to the feed */
};

struct dash_msg { /* one SSE message, ready to send */
    unsigned long long seq;
    char *text; /* "event: ...\ndata: ...\n\n", malloc'd */
};

struct dash {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* broadcast on a new feed message and on quit */
    struct dash_conn *conns;
    size_t n_conns;
    json_t *events[DASH_EVENTS]; /* ring of ops events (owned) */
    unsigned long long event_seq;
    struct dash_msg feed[DASH_FEED];
    unsigned long long feed_seq; /* seq of the newest feed message */
    int sse_clients;
    int quit;
    int bus_up;
    struct ess_store *store; /* bus thread only: heartbeat_sec look-ups */
    const char *ops_exchange;
    char *amqp_url;                 /* parsed in place into ci */
    struct amqp_connection_info ci; /* points into amqp_url */
    int public;
};

struct dash_client { /* one /api/stream connection */
    struct dash *d;
    unsigned long long seq; /* last feed seq sent */
    char *pending;          /* a message partly sent (owned) */
    size_t pending_len;
    size_t pending_off;
    long long last_send_ms;
};

/* ---- embedded assets ------------------------------------------------------ */

static const char dash_index_html[] =
    "<!doctype html>\n"
    "<html lang='en'>\n"
    "<head>\n"
    "<meta charset='utf-8'>\n"
    "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
    "<title>ESS fleet</title>\n"
    "<link rel='stylesheet' href='/app.css'>\n"
    "</head>\n"
    "<body>\n"
    "<header><h1>ESS fleet</h1><span id='summary'></span><span id='link' "
    "class='link'>connecting</span></header>\n"
    "<main id='grid' aria-live='polite'></main>\n"
    "<section><h2>Recent events</h2><ol id='events'></ol></section>\n"
    "<script src='/app.js'></script>\n"
    "</body>\n"
    "</html>\n";

static const char dash_app_css[] =
    ":root { --ok: #1f9d55; --warn: #d69e2e; --bad: #e53e3e; --off: #718096; --bg: #111827; "
    "--card: #1f2937; --text: #e5e7eb; --dim: #9ca3af; }\n"
    "* { box-sizing: border-box; }\n"
    "body { margin: 0; font: 14px/1.4 system-ui, -apple-system, 'Segoe UI', sans-serif; "
    "background: var(--bg); color: var(--text); }\n"
    "header { display: flex; align-items: baseline; gap: 1em; padding: 12px 20px; border-bottom: "
    "1px solid #374151; }\n"
    "h1 { font-size: 18px; margin: 0; }\n"
    "h2 { font-size: 15px; margin: 16px 20px 8px; color: var(--dim); }\n"
    "#summary { color: var(--dim); }\n"
    ".link { margin-left: auto; font-size: 12px; color: var(--dim); }\n"
    ".link.up { color: var(--ok); }\n"
    "#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: "
    "12px; padding: 16px 20px; }\n"
    ".empty { color: var(--dim); }\n"
    ".tile { background: var(--card); border-radius: 8px; padding: 12px 14px; border-left: 8px "
    "solid var(--off); }\n"
    ".tile.ok { border-left-color: var(--ok); }\n"
    ".tile.warn { border-left-color: var(--warn); }\n"
    ".tile.bad { border-left-color: var(--bad); }\n"
    ".tile.bad .state { color: var(--bad); }\n"
    ".tile.warn .state { color: var(--warn); }\n"
    ".tile.ok .state { color: var(--ok); }\n"
    ".top { display: flex; align-items: center; gap: 8px; }\n"
    ".name { font-weight: 600; font-size: 15px; overflow-wrap: anywhere; }\n"
    ".state { margin-left: auto; font-weight: 600; text-transform: uppercase; font-size: 12px; }\n"
    ".dot { width: 10px; height: 10px; border-radius: 50%; background: var(--off); flex: none; }\n"
    ".tile.ok .dot { background: var(--ok); }\n"
    ".tile.warn .dot { background: var(--warn); }\n"
    ".tile.bad .dot { background: var(--bad); }\n"
    ".dot.pulse { animation: pulse 0.9s ease-out; }\n"
    "@keyframes pulse { 0% { box-shadow: 0 0 0 0 rgba(255,255,255,0.8); transform: scale(1.6); } "
    "100% { box-shadow: 0 0 0 12px rgba(255,255,255,0); transform: scale(1); } }\n"
    "dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 10px 0 0; "
    "font-size: 13px; }\n"
    "dt { color: var(--dim); }\n"
    "dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }\n"
    ".err { color: #fca5a5; }\n"
    ".alerts.open { color: var(--warn); font-weight: 600; }\n"
    ".meta { color: var(--dim); font-size: 12px; margin-top: 6px; overflow-wrap: anywhere; }\n"
    "#events { list-style: none; margin: 0 20px 20px; padding: 0; font-size: 13px; }\n"
    "#events li { padding: 4px 0; border-bottom: 1px solid #374151; display: flex; gap: 10px; }\n"
    "#events .t { color: var(--dim); font-variant-numeric: tabular-nums; }\n"
    "#events .k { font-weight: 600; min-width: 6em; }\n"
    "#events .alert .k { color: var(--warn); }\n"
    "#events .conflict .k { color: var(--bad); }\n"
    "#events .d { overflow-wrap: anywhere; }\n";

static const char dash_app_js[] =
    "'use strict';\n"
    "(function () {\n"
    "  var MAX_EVENTS = 60;\n"
    "  var tiles = {};\n"
    "  var lastSeq = 0;\n"
    "  var opened = false;\n"
    "  var grid = document.getElementById('grid');\n"
    "  var strip = document.getElementById('events');\n"
    "  var link = document.getElementById('link');\n"
    "  var summary = document.getElementById('summary');\n"
    "\n"
    "  function el(tag, cls, text) {\n"
    "    var e = document.createElement(tag);\n"
    "    if (cls) { e.className = cls; }\n"
    "    if (text !== undefined && text !== null) { e.textContent = String(text); }\n"
    "    return e;\n"
    "  }\n"
    "  function num(v, unit) {\n"
    "    if (v === null || v === undefined) { return '-'; }\n"
    "    return (typeof v === 'number' && v % 1 !== 0 ? v.toFixed(1) : String(v)) + (unit || '');\n"
    "  }\n"
    "  function level(row) { return ['ok', 'warn', 'bad', 'off'].indexOf(row.level) >= 0 ? "
    "row.level : 'off'; }\n"
    "  function field(dl, label) {\n"
    "    dl.appendChild(el('dt', '', label));\n"
    "    var dd = el('dd', '', '-');\n"
    "    dl.appendChild(dd);\n"
    "    return dd;\n"
    "  }\n"
    "  function makeTile(id) {\n"
    "    var t = { root: el('article', 'tile off') };\n"
    "    var top = el('div', 'top');\n"
    "    t.dot = el('span', 'dot');\n"
    "    top.appendChild(t.dot);\n"
    "    top.appendChild(el('span', 'name', id));\n"
    "    t.state = el('span', 'state', '');\n"
    "    top.appendChild(t.state);\n"
    "    t.root.appendChild(top);\n"
    "    var dl = el('dl');\n"
    "    t.rate = field(dl, 'delivered');\n"
    "    t.fail = field(dl, 'failed');\n"
    "    t.backlog = field(dl, 'backlog');\n"
    "    t.lag = field(dl, 'lag p99');\n"
    "    t.age = field(dl, 'heartbeat');\n"
    "    t.alerts = field(dl, 'alerts');\n"
    "    t.canary = field(dl, 'canary');\n"
    "    t.error = field(dl, 'last error');\n"
    "    t.error.className = 'err';\n"
    "    t.root.appendChild(dl);\n"
    "    t.meta = el('div', 'meta', '');\n"
    "    t.root.appendChild(t.meta);\n"
    "    t.root.dataset.connector = id;\n"
    "    tiles[id] = t;\n"
    "    var ids = Object.keys(tiles).sort();\n"
    "    var next = ids[ids.indexOf(id) + 1];\n"
    "    grid.insertBefore(t.root, next ? tiles[next].root : null);\n"
    "    return t;\n"
    "  }\n"
    "  function render(row, beat) {\n"
    "    if (!row || typeof row.connector !== 'string') { return; }\n"
    "    var empty = document.getElementById('empty');\n"
    "    if (empty) { empty.remove(); }\n"
    "    var t = tiles[row.connector] || makeTile(row.connector);\n"
    "    t.root.className = 'tile ' + level(row);\n"
    "    t.state.textContent = row.status || '-';\n"
    "    t.rate.textContent = num(row.delivered_per_s, '/s') + ' (' + num(row.delivered) + ')';\n"
    "    t.fail.textContent = num(row.failed_per_s, '/s') + ' (' + num(row.failed) + ')';\n"
    "    t.backlog.textContent = num(row.backlog);\n"
    "    t.lag.textContent = num(row.lag_ms_p99, ' ms');\n"
    "    var open = Array.isArray(row.alerts) ? row.alerts.filter(function (a) { return typeof a "
    "=== 'string'; }) : [];\n"
    "    t.alerts.textContent = open.length ? open.join(', ') : '-';\n"
    "    t.alerts.className = open.length ? 'alerts open' : 'alerts';\n"
    "    t.root.dataset.alerts = open.join(' ');\n"
    "    var c = row.canary && typeof row.canary === 'object' ? row.canary : null;\n"
    "    t.canary.textContent = c ? String(c.result) + (typeof c.rtt_ms === 'number' ? ' (' + "
    "c.rtt_ms + ' ms)' : '') : '-';\n"
    "    t.canary.className = c && c.result !== 'ok' ? 'err' : '';\n"
    "    t.error.textContent = row.last_error ? row.last_error : '-';\n"
    "    t.meta.textContent = [row.instance, row.version].filter(Boolean).join('  ');\n"
    "    t.ageMs = typeof row.age_ms === 'number' ? row.age_ms : null;\n"
    "    t.seenAt = Date.now();\n"
    "    showAge(t);\n"
    "    if (beat) {\n"
    "      t.dot.classList.remove('pulse');\n"
    "      void t.dot.offsetWidth;\n"
    "      t.dot.classList.add('pulse');\n"
    "    }\n"
    "    count();\n"
    "  }\n"
    "  function showAge(t) {\n"
    "    if (t.ageMs === null) { t.age.textContent = '-'; return; }\n"
    "    t.age.textContent = ((t.ageMs + Date.now() - t.seenAt) / 1000).toFixed(0) + ' s ago';\n"
    "  }\n"
    "  function count() {\n"
    "    var n = { ok: 0, warn: 0, bad: 0, off: 0 };\n"
    "    Object.keys(tiles).forEach(function (id) {\n"
    "      var c = tiles[id].root.className.split(' ')[1];\n"
    "      n[c] = (n[c] || 0) + 1;\n"
    "    });\n"
    "    summary.textContent = Object.keys(tiles).length + ' connectors: ' + n.ok + ' ok, ' + "
    "n.warn +\n"
    "      ' degraded/paused, ' + n.bad + ' down';\n"
    "  }\n"
    "  function addEvent(ev) {\n"
    "    if (!ev || typeof ev.seq !== 'number' || ev.seq <= lastSeq) { return; }\n"
    "    lastSeq = ev.seq;\n"
    "    var li = el('li', ['lifecycle', 'alert', 'conflict'].indexOf(ev.kind) >= 0 ? ev.kind : "
    "'other');\n"
    "    li.appendChild(el('span', 't', (ev.ts || '').replace('T', ' ').replace('Z', '')));\n"
    "    li.appendChild(el('span', 'k', ev.kind));\n"
    "    li.appendChild(el('span', 'c', ev.connector || '-'));\n"
    "    li.appendChild(el('span', 'd', [ev.event, ev.detail].filter(Boolean).join(': ')));\n"
    "    strip.insertBefore(li, strip.firstChild);\n"
    "    while (strip.childNodes.length > MAX_EVENTS) { strip.removeChild(strip.lastChild); }\n"
    "  }\n"
    "  function getJSON(path, each) {\n"
    "    return fetch(path, { cache: 'no-store' }).then(function (r) { return r.json(); })\n"
    "      .then(function (list) { if (Array.isArray(list)) { list.forEach(each); } });\n"
    "  }\n"
    "  function load() {\n"
    "    getJSON('/api/connectors', function (row) { render(row, false); });\n"
    "    getJSON('/api/events', addEvent);\n"
    "  }\n"
    "  function on(es, name, fn) {\n"
    "    es.addEventListener(name, function (e) {\n"
    "      try { fn(JSON.parse(e.data)); } catch (x) { /* a malformed message changes nothing */ "
    "}\n"
    "    });\n"
    "  }\n"
    "  var empty = el('p', 'empty', 'No connector has sent a heartbeat yet.');\n"
    "  empty.id = 'empty';\n"
    "  grid.appendChild(empty);\n"
    "  load();\n"
    "  var es = new EventSource('/api/stream');\n"
    "  es.onopen = function () {\n"
    "    link.textContent = 'live';\n"
    "    link.className = 'link up';\n"
    "    if (opened) { load(); }\n"
    "    opened = true;\n"
    "  };\n"
    "  es.onerror = function () { link.textContent = 'reconnecting'; link.className = 'link'; };\n"
    "  on(es, 'heartbeat', function (row) { render(row, true); });\n"
    "  on(es, 'connector', function (row) { render(row, false); });\n"
    "  on(es, 'ops', addEvent);\n"
    "  setInterval(function () { Object.keys(tiles).forEach(function (id) { showAge(tiles[id]); "
    "}); }, 1000);\n"
    "})();\n";

/* ---- state (callers hold d->mu) ------------------------------------------- */

static const char *dash_str(json_t *o, const char *field)
{
    return json_string_value(json_object_get(o, field));
}

/* The receive time of "now" as ISO-8601 UTC with milliseconds. */
static void dash_now_iso(char *buf, size_t len)
{
    long long ms = ess_worker_wall_ms();
    time_t t = (time_t)(ms / 1000);
    char base[32];
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03lldZ", base, ms % 1000);
}

/* Append an SSE message to the feed ring (takes data's reference) and wake
 * the stream clients. */
static void dash_feed_push(struct dash *d, const char *event, json_t *data)
{
    char *json = json_dumps(data, JSON_COMPACT | JSON_ESCAPE_SLASH);
    struct dash_msg *m;
    size_t len;

    json_decref(data);
    if (json == NULL) {
        return;
    }
    len = strlen(event) + strlen(json) + 32;
    m = &d->feed[(d->feed_seq + 1) % DASH_FEED];
    free(m->text);
    m->text = malloc(len);
    if (m->text != NULL) {
        snprintf(m->text, len, "event: %s\ndata: %s\n\n", event, json);
    }
    m->seq = ++d->feed_seq;
    free(json);
    pthread_cond_broadcast(&d->cond);
}

static double dash_hb_sec(const struct dash_conn *c)
{
    return c->hb_sec > 0 ? c->hb_sec : DASH_DEFAULT_HB_SEC;
}

/* STOPPED after a graceful exit, DOWN when silent for 3 heartbeats, else the
 * worker's own word (ok, degraded, paused, partner_down, ...). */
static const char *dash_status(const struct dash_conn *c, long long now)
{
    const char *said = dash_str(c->body, "state");

    if (c->stopped || (said != NULL && strcmp(said, "stopped") == 0)) {
        return "STOPPED";
    }
    if (now - c->recv_mono > (long long)(DASH_DOWN_FACTOR * dash_hb_sec(c) * 1000)) {
        return "DOWN";
    }
    return said != NULL && said[0] != '\0' ? said : "unknown";
}

/* The tile colour: ok (green), warn (amber), bad (red), off (grey). */
static const char *dash_level(const char *status)
{
    if (strcmp(status, "ok") == 0) {
        return "ok";
    }
    if (strcmp(status, "DOWN") == 0 || strcmp(status, "partner_down") == 0) {
        return "bad";
    }
    if (strcmp(status, "STOPPED") == 0) {
        return "off";
    }
    return "warn"; /* degraded, paused, and words this build does not know */
}

/* A counter's growth per second between the two heartbeats; null without a
 * previous one or when the counter went back (a restart). */
static json_t *dash_rate(const struct dash_conn *c, const char *field)
{
    json_t *now = json_object_get(c->body, field);
    json_t *was = json_object_get(c->prev, field);
    double v;

    if (!json_is_number(now) || !json_is_number(was) || c->span_s <= 0) {
        return json_null();
    }
    v = (json_number_value(now) - json_number_value(was)) / c->span_s;
    return v >= 0 ? json_real(v) : json_null();
}

/* A body field, or null when absent or "". */
static json_t *dash_field(const struct dash_conn *c, const char *field)
{
    json_t *v = json_object_get(c->body, field);

    if (v == NULL || (json_is_string(v) && json_string_value(v)[0] == '\0')) {
        return json_null();
    }
    return json_incref(v);
}

/* One connector as the API and the stream show it (a new object). */
static json_t *dash_row(const struct dash_conn *c, long long now)
{
    const char *status = dash_status(c, now);
    json_t *row = json_object();
    static const char *const copied[] = {"instance",   "host",       "version",    "state",
                                         "backlog",    "delivered",  "failed",     "parked",
                                         "lag_ms_p50", "lag_ms_p99", "last_error", "ts",
                                         "uptime_s",   "alerts",     "canary",     NULL};
    int silent;
    size_t i;

    json_object_set_new(row, "connector", json_string(c->id));
    json_object_set_new(row, "status", json_string(status));
    json_object_set_new(row, "level", json_string(dash_level(status)));
    json_object_set_new(row, "age_ms", json_integer(now - c->recv_mono));
    json_object_set_new(row, "heartbeat_sec", json_real(dash_hb_sec(c)));
    json_object_set_new(row, "beats", json_integer((json_int_t)c->beats));
    for (i = 0; copied[i] != NULL; i++) {
        json_object_set_new(row, copied[i], dash_field(c, copied[i]));
    }
    /* a silent worker has no current rate, only its last counters */
    silent = strcmp(status, "DOWN") == 0 || strcmp(status, "STOPPED") == 0;
    json_object_set_new(row, "delivered_per_s", silent ? json_null() : dash_rate(c, "delivered"));
    json_object_set_new(row, "failed_per_s", silent ? json_null() : dash_rate(c, "failed"));
    return row;
}

static struct dash_conn *dash_conn_get(struct dash *d, const char *id, int create)
{
    struct dash_conn *grown;
    size_t i;

    for (i = 0; i < d->n_conns; i++) {
        if (strcmp(d->conns[i].id, id) == 0) {
            return &d->conns[i];
        }
    }
    if (!create || d->n_conns >= DASH_MAX_CONNECTORS || strlen(id) >= DASH_ID_MAX) {
        return NULL;
    }
    grown = realloc(d->conns, (d->n_conns + 1) * sizeof(*d->conns));
    if (grown == NULL) {
        return NULL;
    }
    d->conns = grown;
    memset(&d->conns[d->n_conns], 0, sizeof(*d->conns));
    snprintf(d->conns[d->n_conns].id, DASH_ID_MAX, "%s", id);
    return &d->conns[d->n_conns++];
}

/* Strings from the bus are bounded before they are kept. */
static void dash_clip(json_t *o, const char *field)
{
    const char *v = dash_str(o, field);
    size_t n = DASH_TEXT_MAX;

    if (v == NULL || strlen(v) <= DASH_TEXT_MAX) {
        return;
    }
    while (n > 0 && ((unsigned char)v[n] & 0xC0) == 0x80) {
        n--; /* never cut a UTF-8 sequence */
    }
    json_object_set_new(o, field, json_stringn(v, n));
}

/* ---- what the bus and the database tell ----------------------------------- */

static double dash_num(json_t *row, const char *col)
{
    const char *text = dash_str(row, col);
    char *end = NULL;
    double v;

    if (text == NULL) {
        return 0;
    }
    errno = 0;
    v = strtod(text, &end);
    return errno == 0 && end != text ? v : 0;
}

/* Seconds between two heartbeats: their own ts_ms when both carry it, else
 * the receive interval. */
static double dash_span(json_t *body, json_t *prev, double received_s)
{
    json_t *a = json_object_get(prev, "ts_ms");
    json_t *b = json_object_get(body, "ts_ms");

    if (json_is_integer(a) && json_is_integer(b) && json_integer_value(b) > json_integer_value(a)) {
        return (double)(json_integer_value(b) - json_integer_value(a)) / 1000.0;
    }
    return received_s;
}

/* A heartbeat arrived (body borrowed). hb_sec_db: from ess_heartbeats, 0 when
 * unknown. Pushes a "heartbeat" message with the new row. */
static void dash_take_heartbeat(struct dash *d, struct dash_conn *c, json_t *body, double hb_sec_db)
{
    long long now = ess_worker_mono_ms();
    double interval = c->body != NULL ? (double)(now - c->recv_mono) / 1000.0 : 0;
    json_t *own = json_object_get(body, "heartbeat_sec");

    json_decref(c->prev);
    c->prev = c->body;
    c->body = json_incref(body);
    dash_clip(c->body, "last_error");
    c->span_s = c->prev != NULL ? dash_span(c->body, c->prev, interval) : 0;
    c->recv_mono = now;
    if (json_is_number(own) && json_number_value(own) > 0) {
        c->hb_sec = json_number_value(own);
        c->hb_sec_known = 1;
    } else if (hb_sec_db > 0) {
        c->hb_sec = hb_sec_db;
        c->hb_sec_known = 1;
    } else if (!c->hb_sec_known && interval > 0 && (c->hb_sec <= 0 || interval < c->hb_sec)) {
        c->hb_sec = interval; /* the shortest interval seen is the closest guess */
    }
    c->stopped = 0;
    c->beats++;
    snprintf(c->status, sizeof(c->status), "%s", dash_status(c, now));
    dash_feed_push(d, "heartbeat", dash_row(c, now));
}

/* The routing key's part after "ess.<kind>." (borrowed), or "". */
static const char *dash_rk_id(const char *rk)
{
    const char *dot = strchr(rk + 4, '.');

    return dot != NULL ? dot + 1 : "";
}

/* ess.<kind>.<id> -> kind into buf ("other" when it has no such shape). */
static void dash_rk_kind(const char *rk, char *buf, size_t len)
{
    const char *dot = strchr(rk + 4, '.');

    if (dot == NULL) {
        snprintf(buf, len, "other");
        return;
    }
    snprintf(buf, len, "%.*s", (int)(dot - (rk + 4)), rk + 4);
}

/* An ess.alert message opens or closes its rule in the connector's "alerts"
 * list at once (the next heartbeat says the same), and its tile is pushed. */
static void dash_take_alert(struct dash *d, struct dash_conn *c, json_t *body)
{
    const char *rule = dash_str(body, "rule");
    const char *state = dash_str(body, "state");
    json_t *list;
    json_t *fresh;
    json_t *v;
    size_t i;

    if (c == NULL || c->body == NULL || rule == NULL || state == NULL || strlen(rule) > 64) {
        return;
    }
    list = json_object_get(c->body, "alerts");
    fresh = json_array();
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), rule) != 0) {
            json_array_append(fresh, v);
        }
    }
    if (strcmp(state, "fired") == 0) {
        json_array_append_new(fresh, json_string(rule));
    }
    json_object_set_new(c->body, "alerts", fresh);
    dash_feed_push(d, "connector", dash_row(c, ess_worker_mono_ms()));
}

/* An ops event (lifecycle, alert, conflict, ...) into the ring and the feed. */
static void dash_take_event(struct dash *d, const char *rk, json_t *body, const char *raw)
{
    json_t *ev = json_object();
    const char *id = dash_str(body, "connector");
    struct dash_conn *c;
    char kind[32];
    char ts[40];

    dash_rk_kind(rk, kind, sizeof(kind));
    dash_now_iso(ts, sizeof(ts));
    json_object_set_new(ev, "seq", json_integer((json_int_t)++d->event_seq));
    json_object_set_new(ev, "ts", json_string(ts));
    json_object_set_new(ev, "routing_key", json_string(rk));
    json_object_set_new(ev, "kind", json_string(kind));
    json_object_set_new(ev, "connector", json_string(id != NULL ? id : dash_rk_id(rk)));
    json_object_set(ev, "instance", json_object_get(body, "instance"));
    json_object_set(ev, "event", json_object_get(body, "event"));
    json_object_set(ev, "detail", json_object_get(body, "detail"));
    if (body == NULL) {
        json_object_set_new(ev, "detail", json_string(raw));
    }
    dash_clip(ev, "detail");
    dash_clip(ev, "event");
    c = dash_conn_get(d, dash_str(ev, "connector"), 0);
    if (c != NULL && strcmp(kind, "lifecycle") == 0 && dash_str(ev, "event") != NULL &&
        strcmp(dash_str(ev, "event"), "stopped") == 0) {
        c->stopped = 1; /* the tick below pushes the new status */
    }
    if (strcmp(kind, "alert") == 0) {
        dash_take_alert(d, c, body);
    }
    json_decref(d->events[d->event_seq % DASH_EVENTS]);
    d->events[d->event_seq % DASH_EVENTS] = json_incref(ev);
    dash_feed_push(d, "ops", ev);
}

/* Every tick: a connector whose status changed without a heartbeat (it went
 * silent: DOWN; it stopped: STOPPED) is pushed as a "connector" message. */
static void dash_tick(struct dash *d)
{
    long long now = ess_worker_mono_ms();
    const char *status;
    size_t i;

    for (i = 0; i < d->n_conns; i++) {
        status = dash_status(&d->conns[i], now);
        if (strcmp(status, d->conns[i].status) != 0) {
            snprintf(d->conns[i].status, sizeof(d->conns[i].status), "%s", status);
            dash_feed_push(d, "connector", dash_row(&d->conns[i], now));
        }
    }
}

static const char dash_seed_sql[] =
    "SELECT DISTINCT ON (connector) connector, heartbeat_sec, body, prev_body,"
    " (extract(epoch FROM now() - ts) * 1000)::float8 AS age_ms,"
    " extract(epoch FROM ts - prev_ts)::float8 AS span_s"
    " FROM ess_heartbeats ORDER BY connector, ts DESC";

/* One ess_heartbeats row into a connector (before any thread runs). */
static void dash_seed_row(struct dash *d, json_t *row, long long now)
{
    const char *id = dash_str(row, "connector");
    const char *prev = dash_str(row, "prev_body");
    struct dash_conn *c = id != NULL ? dash_conn_get(d, id, 1) : NULL;

    if (c == NULL) {
        return;
    }
    c->body = json_loads(dash_str(row, "body") != NULL ? dash_str(row, "body") : "", 0, NULL);
    if (c->body == NULL) {
        c->body = json_object();
    }
    dash_clip(c->body, "last_error");
    c->prev = prev != NULL ? json_loads(prev, 0, NULL) : NULL;
    c->span_s = dash_num(row, "span_s");
    c->recv_mono = now - (long long)dash_num(row, "age_ms");
    c->hb_sec = dash_num(row, "heartbeat_sec");
    c->hb_sec_known = c->hb_sec > 0;
    c->hb_sec_looked_up = 1;
    snprintf(c->status, sizeof(c->status), "%s", dash_status(c, now));
}

/* Tiles at once: the latest heartbeat of every connector from Postgres. A
 * database that cannot be reached only costs the seed. */
static void dash_seed(struct dash *d)
{
    struct ess_err err;
    json_t *rows = NULL;
    size_t i;

    if (d->store == NULL) {
        fprintf(stderr, "hms: ops serve: no database; tiles appear with the first heartbeats\n");
        return;
    }
    ess_err_clear(&err);
    if (ess_store_query_json(d->store, dash_seed_sql, 0, NULL, &rows, &err) != ESS_OK) {
        fprintf(stderr, "hms: ops serve: seed: %s\n", err.msg);
        return;
    }
    for (i = 0; i < json_array_size(rows); i++) {
        dash_seed_row(d, json_array_get(rows, i), ess_worker_mono_ms());
    }
    json_decref(rows);
}

/* heartbeat_sec of a connector first seen on the bus (0 when unknown). The
 * worker writes ess_heartbeats before it publishes, so the row is there. */
static double dash_lookup_hb_sec(struct dash *d, const char *id)
{
    const char *params[1] = {id};
    struct ess_err err;
    json_t *rows = NULL;
    double v = 0;

    if (d->store == NULL) {
        return 0;
    }
    ess_err_clear(&err);
    if (ess_store_query_json(d->store,
                             "SELECT heartbeat_sec FROM ess_heartbeats WHERE connector = $1"
                             " ORDER BY ts DESC LIMIT 1",
                             1, params, &rows, &err) == ESS_OK) {
        v = dash_num(json_array_get(rows, 0), "heartbeat_sec");
    }
    json_decref(rows);
    return v;
}

/* ---- the bus thread --------------------------------------------------------- */

/* 0 when r is a normal reply, else -1 with the reason on stderr. */
static int dash_reply(amqp_rpc_reply_t r, const char *what)
{
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        return 0;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        fprintf(stderr, "hms: ops serve: bus: %s: %s\n", what, amqp_error_string2(r.library_error));
    } else {
        fprintf(stderr, "hms: ops serve: bus: %s: refused by the broker\n", what);
    }
    return -1;
}

/* Socket, login, channel 1 (the URL was checked by the caller). */
static int dash_bus_connect(amqp_connection_state_t conn, struct amqp_connection_info *ci)
{
    struct timeval tv = {5, 0};
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);

    if (sock == NULL || amqp_socket_open_noblock(sock, ci->host, ci->port, &tv) != AMQP_STATUS_OK) {
        fprintf(stderr, "hms: ops serve: bus: cannot connect to %s:%d\n", ci->host, ci->port);
        return -1;
    }
    if (dash_reply(amqp_login(conn, ci->vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                              AMQP_SASL_METHOD_PLAIN, ci->user, ci->password),
                   "login") != 0) {
        return -1;
    }
    amqp_channel_open(conn, 1);
    return dash_reply(amqp_get_rpc_reply(conn), "open channel");
}

/* A private queue (exclusive, auto-delete) bound to the ops exchange with
 * ess.#, consumed without acks: it goes away with this process. */
static int dash_bus_subscribe(amqp_connection_state_t conn, const char *ops)
{
    amqp_queue_declare_ok_t *q;
    amqp_bytes_t name;
    int rc;

    amqp_exchange_declare(conn, 1, amqp_cstring_bytes(ops), amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                          amqp_empty_table);
    if (dash_reply(amqp_get_rpc_reply(conn), "declare the ops exchange") != 0) {
        return -1;
    }
    q = amqp_queue_declare(conn, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    if (dash_reply(amqp_get_rpc_reply(conn), "declare a queue") != 0) {
        return -1;
    }
    name = amqp_bytes_malloc_dup(q->queue);
    amqp_queue_bind(conn, 1, name, amqp_cstring_bytes(ops), amqp_cstring_bytes("ess.#"),
                    amqp_empty_table);
    rc = dash_reply(amqp_get_rpc_reply(conn), "bind to the ops exchange");
    if (rc == 0) {
        amqp_basic_consume(conn, 1, name, amqp_empty_bytes, 0, 1, 1, amqp_empty_table);
        rc = dash_reply(amqp_get_rpc_reply(conn), "consume");
    }
    amqp_bytes_free(name);
    return rc;
}

/* A heartbeat: find heartbeat_sec in the database first (outside the lock,
 * once per connector), then update under the lock. */
static void dash_on_heartbeat(struct dash *d, const char *rk, json_t *body)
{
    const char *id = dash_str(body, "connector");
    struct dash_conn *c;
    double hb_sec = 0;
    int ask;

    if (id == NULL || id[0] == '\0') {
        id = dash_rk_id(rk);
    }
    if (!json_is_object(body) || id[0] == '\0') {
        return;
    }
    pthread_mutex_lock(&d->mu);
    c = dash_conn_get(d, id, 0);
    ask = c == NULL || !c->hb_sec_looked_up;
    pthread_mutex_unlock(&d->mu);
    if (ask) {
        hb_sec = dash_lookup_hb_sec(d, id);
    }
    pthread_mutex_lock(&d->mu);
    c = dash_conn_get(d, id, 1);
    if (c != NULL) {
        c->hb_sec_looked_up = 1;
        dash_take_heartbeat(d, c, body, hb_sec);
    }
    pthread_mutex_unlock(&d->mu);
}

static void dash_on_message(struct dash *d, const amqp_envelope_t *env)
{
    char rk[256];
    char *raw = strndup(env->message.body.bytes, env->message.body.len);
    json_t *body = raw != NULL ? json_loads(raw, 0, NULL) : NULL;

    snprintf(rk, sizeof(rk), "%.*s", (int)env->routing_key.len,
             (const char *)env->routing_key.bytes);
    if (strncmp(rk, "ess.heartbeat.", 14) == 0) {
        dash_on_heartbeat(d, rk, body);
    } else if (strncmp(rk, "ess.", 4) == 0 && raw != NULL) {
        pthread_mutex_lock(&d->mu);
        dash_take_event(d, rk, json_is_object(body) ? body : NULL, raw);
        pthread_mutex_unlock(&d->mu);
    }
    json_decref(body);
    free(raw);
}

static int dash_quitting(struct dash *d)
{
    int q;

    pthread_mutex_lock(&d->mu);
    q = d->quit;
    pthread_mutex_unlock(&d->mu);
    return q;
}

static void dash_set_bus(struct dash *d, int up)
{
    pthread_mutex_lock(&d->mu);
    d->bus_up = up;
    dash_tick(d);
    pthread_mutex_unlock(&d->mu);
}

/* Sleep one tick, or less when quitting; the DOWN check runs meanwhile. */
static void dash_wait_tick(struct dash *d)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += DASH_TICK_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&d->mu);
    dash_tick(d);
    if (!d->quit) {
        pthread_cond_timedwait(&d->cond, &d->mu, &until);
    }
    pthread_mutex_unlock(&d->mu);
}

/* Take messages until the connection fails or the process quits. */
static void dash_bus_consume(struct dash *d, amqp_connection_state_t conn)
{
    struct timeval tv = {0, DASH_TICK_MS * 1000};
    long long next_tick = ess_worker_mono_ms() + DASH_TICK_MS;
    amqp_envelope_t env;
    amqp_rpc_reply_t r;

    while (!dash_quitting(d)) {
        amqp_maybe_release_buffers(conn);
        r = amqp_consume_message(conn, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            dash_on_message(d, &env);
            amqp_destroy_envelope(&env);
        } else if (!(r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                     r.library_error == AMQP_STATUS_TIMEOUT)) {
            dash_reply(r, "connection lost");
            return;
        }
        if (ess_worker_mono_ms() >= next_tick) {
            dash_set_bus(d, 1);
            next_tick = ess_worker_mono_ms() + DASH_TICK_MS;
        }
    }
}

/* One connection's life: connect, subscribe, consume; back off after it. */
static void dash_bus_session(struct dash *d, struct ess_worker_retry *retry)
{
    amqp_connection_state_t conn = amqp_new_connection();
    int ok = 0;

    if (conn == NULL) {
        goto done;
    }
    if (dash_bus_connect(conn, &d->ci) == 0 && dash_bus_subscribe(conn, d->ops_exchange) == 0) {
        ok = 1;
        fprintf(stderr, "hms: ops serve: consuming %s (ess.#)\n", d->ops_exchange);
        ess_worker_retry_ok(retry);
        dash_set_bus(d, 1);
        dash_bus_consume(d, conn);
        dash_set_bus(d, 0);
    }
    if (ok && dash_quitting(d)) {
        amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    }
done:
    if (conn != NULL) {
        amqp_destroy_connection(conn);
    }
    if (!dash_quitting(d)) {
        ess_worker_retry_failed(retry, ess_worker_mono_ms());
    }
}

static void *dash_bus_thread(void *arg)
{
    struct dash *d = arg;
    struct ess_worker_retry retry;

    ess_worker_retry_init(&retry);
    while (!dash_quitting(d)) {
        if (ess_worker_retry_due(&retry, ess_worker_mono_ms())) {
            dash_bus_session(d, &retry);
        } else {
            dash_wait_tick(d);
        }
    }
    return NULL;
}

/* ---- HTTP ------------------------------------------------------------------- */

/* Script and style come from this origin only; nothing inline runs. */
#define DASH_CSP                                                                                   \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';" \
    " object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"

struct dash_asset {
    const char *path;
    const char *type;
    const char *body;
    size_t len;
};

static const struct dash_asset dash_assets[] = {
    {"/", "text/html; charset=utf-8", dash_index_html, sizeof(dash_index_html) - 1},
    {"/app.js", "text/javascript; charset=utf-8", dash_app_js, sizeof(dash_app_js) - 1},
    {"/app.css", "text/css; charset=utf-8", dash_app_css, sizeof(dash_app_css) - 1},
};

static enum MHD_Result dash_queue(struct MHD_Connection *c, unsigned int status,
                                  struct MHD_Response *r, const char *type)
{
    enum MHD_Result ret;

    if (r == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Content-Security-Policy", DASH_CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result dash_text(struct MHD_Connection *c, unsigned int status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);

    return dash_queue(c, status, r, "text/plain; charset=utf-8");
}

/* Sends v (takes its reference) as JSON. */
static enum MHD_Result dash_json(struct MHD_Connection *c, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ESCAPE_SLASH);
    struct MHD_Response *r;

    json_decref(v);
    if (text == NULL) {
        return dash_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(text);
    }
    return dash_queue(c, MHD_HTTP_OK, r, "application/json");
}

static int dash_conn_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dash_conn *)a)->id, ((const struct dash_conn *)b)->id);
}

static json_t *dash_api_connectors(struct dash *d)
{
    json_t *out = json_array();
    long long now = ess_worker_mono_ms();
    size_t i;

    pthread_mutex_lock(&d->mu);
    if (d->n_conns > 1) { /* qsort(NULL, 0, ...) is undefined behaviour */
        qsort(d->conns, d->n_conns, sizeof(*d->conns), dash_conn_cmp);
    }
    for (i = 0; i < d->n_conns; i++) {
        json_array_append_new(out, dash_row(&d->conns[i], now));
    }
    pthread_mutex_unlock(&d->mu);
    return out;
}

/* The ring, oldest first. */
static json_t *dash_api_events(struct dash *d)
{
    json_t *out = json_array();
    unsigned long long seq;

    pthread_mutex_lock(&d->mu);
    seq = d->event_seq > DASH_EVENTS ? d->event_seq - DASH_EVENTS + 1 : 1;
    for (; seq <= d->event_seq; seq++) {
        json_array_append(out, d->events[seq % DASH_EVENTS]);
    }
    pthread_mutex_unlock(&d->mu);
    return out;
}

/* ---- Server-Sent Events ------------------------------------------------------ */

/* abs: the monotonic time ms as a timespec for pthread_cond_timedwait. */
static void dash_abs_time(long long ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ms / 1000);
    ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

/* The client's next message into cl->pending: the next feed message, or a
 * keep-alive comment after 15 s of silence. -1 when the server quits. */
static int dash_sse_next(struct dash_client *cl)
{
    struct dash *d = cl->d;
    unsigned long long oldest;
    struct timespec until;
    const char *text = NULL;

    pthread_mutex_lock(&d->mu);
    while (!d->quit && text == NULL) {
        if (cl->seq < d->feed_seq) {
            oldest = d->feed_seq > DASH_FEED ? d->feed_seq - DASH_FEED + 1 : 1;
            cl->seq = cl->seq + 1 < oldest ? oldest : cl->seq + 1; /* fell behind: skip */
            text = d->feed[cl->seq % DASH_FEED].text;
        } else if (ess_worker_mono_ms() - cl->last_send_ms >= DASH_KEEPALIVE_MS) {
            text = ": keep-alive\n\n";
        } else {
            dash_abs_time(cl->last_send_ms + DASH_KEEPALIVE_MS, &until);
            pthread_cond_timedwait(&d->cond, &d->mu, &until);
        }
    }
    cl->pending = text != NULL ? strdup(text) : NULL;
    pthread_mutex_unlock(&d->mu);
    if (cl->pending == NULL) {
        return -1;
    }
    cl->pending_len = strlen(cl->pending);
    cl->pending_off = 0;
    cl->last_send_ms = ess_worker_mono_ms();
    return 0;
}

/* MHD's reader (its own thread per connection, so blocking here is fine). */
static ssize_t dash_sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct dash_client *cl = cls;
    size_t n;

    (void)pos;
    if (cl->pending == NULL && dash_sse_next(cl) != 0) {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    n = cl->pending_len - cl->pending_off;
    if (n > max) {
        n = max;
    }
    memcpy(buf, cl->pending + cl->pending_off, n);
    cl->pending_off += n;
    if (cl->pending_off == cl->pending_len) {
        free(cl->pending);
        cl->pending = NULL;
    }
    return (ssize_t)n;
}

static void dash_sse_free(void *cls)
{
    struct dash_client *cl = cls;

    pthread_mutex_lock(&cl->d->mu);
    cl->d->sse_clients--;
    pthread_mutex_unlock(&cl->d->mu);
    free(cl->pending);
    free(cl);
}

/* A new client (NULL when DASH_MAX_SSE are connected): it starts at the
 * current feed position with a retry hint, the page loads the API on open. */
static struct dash_client *dash_sse_client(struct dash *d)
{
    struct dash_client *cl = calloc(1, sizeof(*cl));

    if (cl == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&d->mu);
    if (d->sse_clients >= DASH_MAX_SSE || d->quit) {
        pthread_mutex_unlock(&d->mu);
        free(cl);
        return NULL;
    }
    d->sse_clients++;
    cl->d = d;
    cl->seq = d->feed_seq;
    pthread_mutex_unlock(&d->mu);
    cl->pending = strdup("retry: 2000\n: connected\n\n");
    cl->pending_len = cl->pending != NULL ? strlen(cl->pending) : 0;
    cl->last_send_ms = ess_worker_mono_ms();
    return cl;
}

static enum MHD_Result dash_stream(struct MHD_Connection *c, struct dash *d)
{
    struct dash_client *cl = dash_sse_client(d);
    struct MHD_Response *r;

    if (cl == NULL) {
        return dash_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many stream clients\n");
    }
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, dash_sse_read, cl,
                                          dash_sse_free);
    if (r == NULL) {
        dash_sse_free(cl);
        return MHD_NO;
    }
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    return dash_queue(c, MHD_HTTP_OK, r, "text/event-stream");
}

/* ---- routing ------------------------------------------------------------------ */

/* A Host header naming this machine (127.x.y.z, localhost, [::1]) with any
 * port; none at all (HTTP/1.0) passes. */
static int dash_host_ok(const char *host)
{
    struct in_addr a;
    char name[256];
    const char *colon;

    if (host == NULL || strncmp(host, "[::1]", 5) == 0) {
        return 1;
    }
    colon = strrchr(host, ':');
    snprintf(name, sizeof(name), "%.*s", (int)(colon != NULL ? colon - host : (long)strlen(host)),
             host);
    if (strcmp(name, "localhost") == 0) {
        return 1;
    }
    return inet_pton(AF_INET, name, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

static enum MHD_Result dash_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                       const char *method, const char *version,
                                       const char *upload_data, size_t *upload_size, void **con_cls)
{
    struct dash *d = cls;
    size_t i;

    (void)version;
    (void)upload_data;
    (void)upload_size;
    (void)con_cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        return dash_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
    }
    if (!d->public && !dash_host_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host"))) {
        return dash_text(c, MHD_HTTP_MISDIRECTED_REQUEST,
                         "this dashboard answers to 127.0.0.1 and localhost only\n");
    }
    for (i = 0; i < sizeof(dash_assets) / sizeof(dash_assets[0]); i++) {
        if (strcmp(url, dash_assets[i].path) == 0) {
            return dash_queue(c, MHD_HTTP_OK,
                              MHD_create_response_from_buffer(dash_assets[i].len,
                                                              (void *)dash_assets[i].body,
                                                              MHD_RESPMEM_PERSISTENT),
                              dash_assets[i].type);
        }
    }
    if (strcmp(url, "/api/connectors") == 0) {
        return dash_json(c, dash_api_connectors(d));
    }
    if (strcmp(url, "/api/events") == 0) {
        return dash_json(c, dash_api_events(d));
    }
    if (strcmp(url, "/api/stream") == 0) {
        return dash_stream(c, d);
    }
    return dash_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* ---- the command ---------------------------------------------------------------- */

/* HOST:PORT (HOST an IPv4 address or localhost) into sin; -1 with a message. */
static int dash_parse_listen(const char *arg, struct sockaddr_in *sin)
{
    const char *colon = strrchr(arg, ':');
    char host[64];
    char *end = NULL;
    long port;

    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    if (colon == NULL || colon - arg >= (long)sizeof(host)) {
        fprintf(stderr, "hms: ops serve: --listen wants HOST:PORT, not %s\n", arg);
        return -1;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - arg), arg);
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port < 1 || port > 65535) {
        fprintf(stderr, "hms: ops serve: --listen %s: not a port number\n", arg);
        return -1;
    }
    sin->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        fprintf(stderr, "hms: ops serve: --listen %s: not an IPv4 address\n", arg);
        return -1;
    }
    return 0;
}

/* --listen HOST:PORT, --public; a non-loopback address needs --public. */
static int dash_args(int argc, char **argv, struct sockaddr_in *sin, int *public)
{
    const char *listen = DASH_DEFAULT_LISTEN;
    int i;

    *public = 0;
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--public") == 0) {
            *public = 1;
        } else {
            fprintf(stderr,
                    "hms: ops serve: unexpected %s\nusage: hms ops serve [--listen "
                    "HOST:PORT] [--public]\n",
                    argv[i]);
            return EX_USAGE;
        }
    }
    if (dash_parse_listen(listen, sin) != 0) {
        return EX_USAGE;
    }
    if (!*public && (ntohl(sin->sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr,
                "hms: ops serve: refusing to listen on %s: the dashboard has no login and"
                " shows partner-controlled error text, so it serves loopback only; pass"
                " --public to serve it anyway (behind an authenticating proxy)\n",
                listen);
        return EX_USAGE;
    }
    return EX_OK;
}

static int dash_init(struct dash *d)
{
    pthread_condattr_t ca;
    struct ess_worker_env env;

    memset(d, 0, sizeof(*d));
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->cond, &ca);
    pthread_condattr_destroy(&ca);
    ess_worker_env_load(&env);
    d->ops_exchange = env.ops_exchange;
    d->amqp_url = strdup(env.amqp_url);
    if (d->amqp_url == NULL) {
        return EX_OSERR;
    }
    amqp_default_connection_info(&d->ci);
    if (amqp_parse_url(d->amqp_url, &d->ci) != AMQP_STATUS_OK || d->ci.ssl) {
        fprintf(stderr, "hms: ops serve: ESS_AMQP_URL is not amqp://user:pass@host:port/vhost\n");
        return EX_CONFIG;
    }
    if (d->ci.vhost == NULL || d->ci.vhost[0] == '\0') {
        d->ci.vhost = "/";
    }
    return EX_OK;
}

static void dash_fini(struct dash *d)
{
    size_t i;

    for (i = 0; i < d->n_conns; i++) {
        json_decref(d->conns[i].body);
        json_decref(d->conns[i].prev);
    }
    free(d->conns);
    for (i = 0; i < DASH_EVENTS; i++) {
        json_decref(d->events[i]);
    }
    for (i = 0; i < DASH_FEED; i++) {
        free(d->feed[i].text);
    }
    ess_store_free(d->store);
    free(d->amqp_url);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->mu);
}

static struct MHD_Daemon *dash_listen(struct dash *d, struct sockaddr_in *sin)
{
    return MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
        ntohs(sin->sin_port), NULL, NULL, dash_on_request, d, MHD_OPTION_SOCK_ADDR, sin,
        MHD_OPTION_CONNECTION_LIMIT, 128U, MHD_OPTION_CONNECTION_TIMEOUT, 60U, MHD_OPTION_END);
}

/* Serve until SIGINT/SIGTERM, then stop the stream clients, the HTTP threads
 * and the bus thread, in that order. */
static int dash_run(struct dash *d, struct sockaddr_in *sin)
{
    struct MHD_Daemon *daemon;
    pthread_t bus;
    sigset_t set;
    char addr[INET_ADDRSTRLEN];
    int sig = 0;

    /* Blocked before any thread starts: threads inherit the mask, so only
     * sigwait() below sees the signals. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
    daemon = dash_listen(d, sin);
    if (daemon == NULL) {
        fprintf(stderr, "hms: ops serve: cannot listen on %s:%d (in use?)\n", addr,
                ntohs(sin->sin_port));
        return EX_UNAVAILABLE;
    }
    if (pthread_create(&bus, NULL, dash_bus_thread, d) != 0) {
        MHD_stop_daemon(daemon);
        return EX_OSERR;
    }
    printf("dashboard on http://%s:%d/\n", addr, ntohs(sin->sin_port));
    fflush(stdout);
    sigwait(&set, &sig);
    pthread_mutex_lock(&d->mu);
    d->quit = 1;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->mu);
    MHD_stop_daemon(daemon);
    pthread_join(bus, NULL);
    fprintf(stderr, "hms: ops serve: stopped (signal %d)\n", sig);
    return EX_OK;
}

int hms_cmd_ops_serve(int argc, char **argv, const struct hms_opts *o)
{
    struct sockaddr_in sin;
    struct dash *d;
    int public;
    int rc;

    (void)o;
    rc = dash_args(argc, argv, &sin, &public);
    if (rc != EX_OK) {
        return rc;
    }
    d = malloc(sizeof(*d)); /* large (the rings): not on the stack */
    if (d == NULL) {
        return EX_OSERR;
    }
    rc = dash_init(d);
    if (rc == EX_OK) {
        d->public = public;
        d->store = hms_store();
        dash_seed(d);
        rc = dash_run(d, &sin);
    }
    dash_fini(d);
    free(d);
    return rc;
}
