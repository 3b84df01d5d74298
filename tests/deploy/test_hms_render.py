"""ess-ut-hms-render: `hms ess render` and `hms ess test`, offline (no broker, no database).

Render prints the request ESS would send (method + URL, every header with secrets
masked, the body); test runs <manifest-name>.tests.yml. Both go through the
worker's own shaping and header code, so a signature printed with --show-secrets
is checked here against an independent Standard Webhooks computation.
Run: /usr/bin/python3 tests/deploy/test_hms_render.py SRC_DIR HMS_BINARY
"""
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile

SRC, HMS = sys.argv[1], sys.argv[2]
MANIFESTS = os.path.join(SRC, "manifests")
failures = []
AUTH_VARS = ("DMV_SOAP_USER", "DMV_SOAP_PASSWORD", "T_HMAC_SECRET", "T_TOKEN")


def check(cond, msg):
    if not cond:
        failures.append(msg)


def hms(*args, stdin=None, env=None):
    e = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    e.update(env or {})
    p = subprocess.run([HMS, *args], input=stdin, capture_output=True, text=True, env=e,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr


def split_request(out):
    head, _, body = out.partition("\n\n")
    lines = head.split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name] = value
    return lines[0], headers, body.rstrip("\n")


def city2dmv_variant(tmp, auth):
    """city2dmv.yml with another auth block, as <tmp>/c2d.yml."""
    text = open(os.path.join(MANIFESTS, "city2dmv.yml")).read()
    text = re.sub(r"^auth: .*$", "auth: " + auth, text, flags=re.M)
    path = os.path.join(tmp, "c2d.yml")
    with open(path, "w") as f:
        f.write(text)
    return path


PERMIT = {"permit_id": "P-7", "street": "Main & 1st", "truck_limit": 40, "status": "PENDING",
          "issued_on": "2026-03-01", "owner_ssn": "123-45-6789"}


def render_json_hmac(tmp):
    m = city2dmv_variant(tmp, "{type: hmac, secret_env: T_HMAC_SECRET}")
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    ev = os.path.join(tmp, "permit.json")
    with open(ev, "w") as f:
        json.dump(PERMIT, f)
    rc, out, err = hms("ess", "render", m, ev, env={"T_HMAC_SECRET": secret})
    check(rc == 0, "render json: rc %d (%s)" % (rc, err))
    start, h, body = split_request(out)
    check(start == "POST http://127.0.0.1:18080/dmv/permits", "render json: start %r" % start)
    check(h.get("Content-Type") == "application/json", "render json: content type %r" % h)
    check(h.get("X-ESS-Connector") == "city2dmv", "render json: connector %r" % h)
    check(h.get("Idempotency-Key", "").startswith('"city2dmv:'), "render json: idem %r" % h)
    check(h.get("webhook-signature") == "v1,***", "render json: signature not masked %r" % h)
    check(secret not in out + err and "T_HMAC_SECRET" in err, "render json: secret note %r" % err)
    check(json.loads(body) == {"PERMIT_NUM": "P-7", "street": "Main & 1st", "truck_limit": 40,
                               "status": "07", "issued_on": "03/01/2026"},
          "render json: body %r" % body)
    # --show-secrets --at: the exact signature, which Standard Webhooks verifies.
    rc, out, _ = hms("ess", "render", m, ev, "--show-secrets", "--at", "1767225600",
                     env={"T_HMAC_SECRET": secret})
    _, h, body = split_request(out)
    signed = "%s.%s.%s" % (h.get("webhook-id"), "1767225600", body)
    want = "v1," + base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest()).decode()
    check(rc == 0 and h.get("webhook-timestamp") == "1767225600" and
          h.get("webhook-signature") == want, "render json: signature %r, want %r" % (h, want))


def render_bearer_stdin(tmp):
    m = city2dmv_variant(tmp, "{type: bearer, token_env: T_TOKEN}")
    ce = {"specversion": "1.0", "id": "evt-9", "source": "/t", "type": "permits.changed",
          "data": {"permit_id": "P-9", "status": "CANCELLED"}}
    rc, out, err = hms("ess", "render", m, stdin=json.dumps(ce), env={"T_TOKEN": "tok-SECRET"})
    _, h, body = split_request(out)
    check(rc == 0 and h.get("Authorization") == "Bearer ***" and "tok-SECRET" not in out + err,
          "render bearer: %d %r %r" % (rc, h, err))
    check(h.get("X-ESS-Event-Id") == "evt-9" and json.loads(body) == {"PERMIT_NUM": "P-9",
                                                                       "status": "09"},
          "render cloudevent: %r %r" % (h, body))


def render_soap(tmp):
    m = os.path.join(MANIFESTS, "dmv-appointments.yml")
    ev = {"appointment_id": "A-1", "applicant": {"last_name": " o'brien "}, "office": "D<12>",
          "slot": "2026-03-02T09:15:00", "status": "CONFIRMED"}
    rc, out, err = hms("ess", "render", m, "-", stdin=json.dumps(ev))
    check(rc == 0, "render soap: rc %d (%s)" % (rc, err))
    start, h, body = split_request(out)
    check(start == "POST https://127.0.0.1:18443/dmv/soap/appointments", "soap start %r" % start)
    check(h.get("SOAPAction") == '"urn:dmv/UpdateAppt"', "render soap: SOAPAction %r" % h)
    check(h.get("Content-Type", "").startswith("text/xml"), "render soap: content type %r" % h)
    check(h.get("Authorization") == "Basic ***", "render soap: auth %r" % h)
    check("DMV_SOAP_USER" in err and "placeholder" in err, "render soap: unset note %r" % err)
    check(body.startswith('<?xml version="1.0" encoding="utf-8"?><soap:Envelope') and
          '<ns:UpdateAppt xmlns:ns="urn:dmv"><ApptId>A-1</ApptId><LastName>O&apos;BRIEN'
          in body.replace("&#39;", "&apos;") and "<OfficeCode>D&lt;12&gt;</OfficeCode>" in body
          and "<StatusCode>08</StatusCode>" in body and "<SlotTime>202603020915</SlotTime>" in body,
          "render soap: body %r" % body)


def render_errors(tmp):
    m = os.path.join(MANIFESTS, "city2dmv.yml")
    rc, out, err = hms("ess", "render", m, stdin='{"street": "x"}')
    check(rc == 65 and "key 'permit_id' missing" in err and out == "",
          "render no key: %d %r %r" % (rc, out, err))
    rc, _, err = hms("ess", "render", m, stdin="not json")
    check(rc == 65 and "not JSON" in err, "render not json: %d %r" % (rc, err))
    rc, out, _ = hms("ess", "render", m, stdin='{"permit_id": "P", "issued_on": "2026-13-45"}')
    check(rc == 65 and out.startswith("would park: transforms.issued_on: '2026-13-45'"),
          "render park: %d %r" % (rc, out))
    bad = os.path.join(tmp, "bad.yml")
    with open(bad, "w") as f:
        f.write("id: x\nkind: push\nformat: jsn\n")
    rc, _, err = hms("ess", "render", bad, stdin="{}")
    check(rc == 65 and re.search(r"bad\.yml:3:\d+: format", err), "render bad manifest %r" % err)
    rc, _, _ = hms("ess", "render")
    check(rc == 64, "render usage: %d" % rc)


def test_shipped():
    for name in ("city2dmv", "dmv-appointments"):
        rc, out, err = hms("ess", "test", os.path.join(MANIFESTS, name + ".yml"))
        check(rc == 0 and re.search(r"^[3-9]\d* passed, 0 failed$", out, re.M) and "PARK" not in out,
              "test %s: %d %r %r" % (name, rc, out, err))
    rc, out, _ = hms("--json", "ess", "test", os.path.join(MANIFESTS, "city2dmv.yml"))
    rows = json.loads(out)
    check(rc == 0 and rows and all(r["result"] == "PASS" for r in rows), "test --json %r" % out)


def test_wrong(tmp):
    m = city2dmv_variant(tmp, "{type: none}")
    with open(os.path.join(tmp, "c2d.tests.yml"), "w") as f:
        f.write("- name: right\n  event: {permit_id: P-1}\n  expect: {json: {PERMIT_NUM: P-1}}\n"
                "- name: wrong code\n  event: {permit_id: P-1, status: CONFIRMED}\n"
                "  expect: {json: {PERMIT_NUM: P-1, status: '07'}}\n"
                "- name: wrong park\n  event: {permit_id: P-1, issued_on: '2026-02-30'}\n"
                "  expect: {park: nope}\n")
    rc, out, _ = hms("ess", "test", m)
    check(rc == 1 and "PASS  right" in out and "FAIL  wrong code" in out and '"08"' in out and
          "FAIL  wrong park" in out and "1 passed, 2 failed" in out, "test wrong: %d %r" % (rc, out))


def test_malformed(tmp):
    m = os.path.join(MANIFESTS, "city2dmv.yml")
    bad = os.path.join(tmp, "bad.tests.yml")
    with open(bad, "w") as f:
        f.write("- name: typo\n  event: {permit_id: 1}\n  expect: {bdy: x}\n")
    rc, out, err = hms("ess", "test", m, "--tests", bad)
    check(rc == 65 and re.search(r"bad\.tests\.yml:3:\d+: cases\[0\]\.expect: unknown key 'bdy'",
                                 err) and out == "", "test malformed: %d %r" % (rc, err))
    with open(bad, "w") as f:
        f.write("- name: x\n  event: {permit_id: [1, 2}\n")
    rc, _, err = hms("ess", "test", m, "--tests", bad)
    check(rc == 65 and re.search(r"bad\.tests\.yml:2:\d+: ", err), "test syntax: %d %r" % (rc, err))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        render_json_hmac(tmp)
        render_bearer_stdin(tmp)
        render_soap(tmp)
        render_errors(tmp)
        test_shipped()
        test_wrong(tmp)
        test_malformed(tmp)
    for f in failures:
        print("FAIL", f)
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
