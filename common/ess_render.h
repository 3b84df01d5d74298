/*
 * ess_render -- one shaped record (a JSON object) to the partner's body, in the
 * manifest's `format`, plus what a request needs beside the body (SOAPAction,
 * static headers) and the check of a SOAP reply for a Fault.
 *
 * Formats (content type in parentheses):
 *   json  the object, compact (application/json)
 *   form  k=v&k=v, RFC 3986 unreserved kept, space as '+', the rest %XX
 *         (application/x-www-form-urlencoded)
 *   xml   <?xml ...?><ROOT><FIELD>v</FIELD>...</ROOT>, ROOT = xml.root, default
 *         "record" (application/xml; charset=utf-8)
 *   soap  a SOAP 1.1 envelope: <soap:Envelope xmlns:soap="http://schemas.xmlsoap.org
 *         /soap/envelope/"><soap:Body><ns:OPERATION xmlns:ns="NAMESPACE"><FIELD>v
 *         </FIELD>...</ns:OPERATION></soap:Body></soap:Envelope>; OPERATION is
 *         soap.operation, default soap.action; without a namespace the operation
 *         element is unprefixed (text/xml; charset=utf-8)
 *   csv   RFC 4180: one record line ending CRLF, a field quoted when it holds the
 *         delimiter, a quote, CR or LF (quotes doubled); with csv.header a header
 *         line first (text/csv; charset=utf-8; header=present|absent)
 *   fixed one line ending LF: each of `columns` in order, padded to its width
 *         (characters, i.e. UTF-8 code points) on the side `align` says, a wider
 *         value cut or refused per `truncate`; fields not in columns are not sent;
 *         a value holding a line break is refused (text/plain; charset=utf-8)
 * Values: strings as is, integers in decimal, reals as JSON writes them, booleans
 * true/false, null empty (an empty element <F/> in xml/soap). In xml/soap an
 * object becomes nested elements and an array repeats its element; in csv, fixed
 * and form an object or array is written as compact JSON text. Every xml/soap text
 * is escaped (& < > " ' and CR); element names must be XML names (no ':'), checked
 * here, so a bad field or rename target parks the event naming the field.
 *
 * Element, column and form order: the `fields` list (through `rename`) first,
 * then the record's other keys in their order. List `fields` when the partner
 * needs a fixed order (SOAP services with xsd:sequence do). json keeps jansson's
 * object order.
 *
 * All functions are pure (no I/O) and take the manifest borrowed.
 */
#ifndef ESS_RENDER_H
#define ESS_RENDER_H

#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ess_err.h"
#include "ess_manifest.h"

/* Render record (borrowed object) as m->format says. *body is malloc'd (caller
 * frees; NUL-terminated), *len its length, *content_type a static string. On
 * failure *body is NULL: ESS_ESHAPE with a reason naming the field (the event
 * is parked with it), ESS_EINVAL for bad arguments, ESS_ENOMEM. */
int ess_render_body(const struct ess_manifest *m, json_t *record, char **body, size_t *len,
                    const char **content_type, struct ess_err *err);

/* A JSON text (len bytes) that ess_render_body would write back byte for byte
 * -- format json and the text compact and canonical (ess_jsoncanon.h) -- as
 * the body without parsing it: *body a malloc'd NUL-terminated copy, *len and
 * *content_type as ess_render_body sets them. ESS_ENOTFOUND when that is not
 * known (parse and render the record), ESS_ENOMEM. */
int ess_render_json_text(const struct ess_manifest *m, const char *text, size_t len, char **body,
                         size_t *blen, const char **content_type);

/* The SOAPAction header value for a soap manifest, quotes included (SOAP 1.1):
 * an action holding ':' is absolute and used as given ("urn:x:Do" ->
 * "\"urn:x:Do\""); otherwise NAMESPACE "/" ACTION ("urn:dmv" + "UpdateAppt" ->
 * "\"urn:dmv/UpdateAppt\"", no doubled '/'), or the bare action without a
 * namespace. Returns ESS_OK, or ESS_ENOTFOUND (buf "") when m is not soap. */
int ess_render_soap_action(const struct ess_manifest *m, char *buf, size_t len);

/* Append the manifest's request headers to *h: "SOAPAction: ..." for soap,
 * then every `headers:` entry (validated at load: token names, no CR/LF, no
 * Authorization / Idempotency-Key / X-ESS-* / Content-Type overrides). On
 * ESS_ENOMEM *h keeps what was appended (the caller frees the list as usual). */
int ess_render_headers(const struct ess_manifest *m, struct curl_slist **h, struct ess_err *err);

/* Every header of one request, appended to *h: Content-Type,
 * Idempotency-Key "<connector>:<event id>" (IETF draft, a quoted string),
 * X-ESS-Connector, X-ESS-Event-Id, then ess_render_headers, then the auth
 * (ess_sign_headers at now_s). On failure *h is still the caller's to free. */
int ess_render_request_headers(const struct ess_manifest *m, const char *event_id,
                               const char *content_type, const char *body, size_t len,
                               long long now_s, struct curl_slist **h, struct ess_err *err);

/* 1 when body (len bytes, need not be NUL-terminated) holds a SOAP Fault element
 * (SOAP 1.1 or 1.2, any prefix); fault gets its faultstring (1.2: Reason/Text,
 * else faultcode, else "SOAP Fault"), entities decoded, on one line, truncated to
 * faultlen. 0 otherwise (fault ""). A scan, not a validating XML parser. */
int ess_render_soap_fault(const char *body, size_t len, char *fault, size_t faultlen);

#endif
