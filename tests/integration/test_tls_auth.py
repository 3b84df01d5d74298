"""ess-it-tls_auth: partner authentication end to end, against real servers on
loopback: mutual TLS with a CA made at test time by the openssl CLI (partner:
tls_stub.py, which requires a client certificate), Standard Webhooks
signatures checked by the reference `standardwebhooks` npm package
(verify_webhook.js), bearer and basic auth, and no secret in the worker log."""
import base64
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (HERE, Bus, Failure, Partner, Worker, check, manifest, run,  # noqa: E402
                    sql, unique_id, wait_for_queue, wait_until)

VERIFY_OFF_WARNING = "tls.verify is off: the partner's identity is not checked"
NON_ASCII = "Stra\u00dfe \u2013 \u00c6r\u00f8 \u6771\u4eac \U0001F69A \"q\" \\ end"
EX_DATAERR = 65


# ---------------------------------------------------------------- test PKI --

def openssl(cwd, *args):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    if r.returncode != 0:
        raise Failure("openssl %s failed:\n%s" % (" ".join(args), r.stdout))


def make_ca(d, name, cn):
    openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
            "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_leaf(d, ca, name, cn, ext):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    openssl(d, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)
    openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-set_serial", "0x" + secrets.token_hex(8), "-days", "2", "-out", name + ".pem",
            "-extfile", name + ".ext")


class Pki:
    """A test CA with a server certificate for 127.0.0.1 and a client
    certificate, plus a second ("rogue") CA with its own client certificate."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ess-it-pki-")
        make_ca(self.dir, "ca", "ESS IT test CA")
        make_leaf(self.dir, "ca", "server", "127.0.0.1",
                  "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                  "basicConstraints=CA:FALSE\n")
        make_leaf(self.dir, "ca", "client", "ess-it-client",
                  "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
        make_ca(self.dir, "rogue", "ESS IT rogue CA")
        make_leaf(self.dir, "rogue", "rogue-client", "ess-it-rogue-client",
                  "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")

    def path(self, name):
        return os.path.join(self.dir, name)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


PKI = None


def pki():
    global PKI
    if PKI is None:
        PKI = Pki()
    return PKI


# ------------------------------------------------------------- TLS partner --

class TlsPartner(Partner):
    """tests/integration/tls_stub.py: HTTPS, client certificate required. The
    control API is reached with the test's own client certificate."""

    def __init__(self, p):
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "tls_stub.py"), "--port", "0",
             "--bind", "127.0.0.1", "--cert", p.path("server.pem"), "--key",
             p.path("server.key"), "--client-ca", p.path("ca.pem")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        check(line.startswith("PORT "), "tls stub did not announce its port: %r" % line)
        self.port = int(line.split()[1])
        self.base = "https://127.0.0.1:%d" % self.port
        self.ctx = ssl.create_default_context(cafile=p.path("ca.pem"))
        self.ctx.load_cert_chain(p.path("client.pem"), p.path("client.key"))

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10, context=self.ctx) as r:
            return json.loads(r.read() or b"null")

    def handshakes(self):
        return self._call("GET", "/_handshakes")


# ----------------------------------------------------------------- helpers --

def tls_block(p, ca="ca.pem", cert="client.pem", key="client.key", verify=None):
    lines = ["tls:"]
    if ca:
        lines.append("  ca_file: %s" % p.path(ca))
    if cert:
        lines.append("  cert_file: %s" % p.path(cert))
    if key:
        lines.append("  key_file: %s" % p.path(key))
    if verify is not None:
        lines.append("  verify: %s" % verify)
    return "\n".join(lines) + "\n"


def with_worker(partner, extra, body, env=None, path="/partner"):
    """Run body(cid, topic, bus, worker) with a fresh connector against partner
    (stopped afterwards); the worker must stop cleanly on SIGTERM."""
    cid = unique_id("it-tls")
    worker = Worker(manifest(cid, partner.url(path), extra), env=env).start()
    bus = Bus()
    try:
        wait_for_queue(cid, worker=worker)
        try:
            body(cid, "it.%s.changed" % cid, bus, worker)
        except Exception:
            print("--- worker log (%s):\n%s" % (worker.log, worker.log_text()), file=sys.stderr)
            raise
        code = worker.stop()
        check(code == 0, "SIGTERM exit code %r, want 0\n%s" % (code, worker.log_text()))
        return worker
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        partner.stop()


def heartbeat(cid):
    rows = sql("SELECT body FROM ess_heartbeats WHERE connector = %s", cid)
    return json.loads(rows[0][0]) if rows else None


def check_absent(text, needle, what):
    check(needle not in text, "%s appears in the worker log" % what)


# ---------------------------------------------------------------- mutual TLS --

def test_mutual_tls_delivers():
    p = pki()
    partner = TlsPartner(p)

    def body(cid, topic, bus, worker):
        for i in range(3):
            bus.publish(topic, {"permit_id": "T%d" % i, "street": "Main"}, message_id="t-%d" % i)
        wait_until(lambda: partner.count() >= 3, 30, "three deliveries over mutual TLS")
        recs = partner.received()
        check({r["client_cert"] for r in recs} == {"ess-it-client"},
              "client certificate presented: %r" % [r["client_cert"] for r in recs])
        check(sorted(json.loads(r["body"])["permit_id"] for r in recs) == ["T0", "T1", "T2"],
              "bodies: %r" % [r["body"] for r in recs])
        check(VERIFY_OFF_WARNING not in worker.log_text(), "no verify-off warning when verify on")
    with_worker(partner, "max_retry: 8\n" + tls_block(p), body)


def refused_case(tls, want_in_error):
    """The partner refuses the TLS session: nothing is delivered, the event is
    retried (not parked), and last_error says why."""
    p = pki()
    partner = TlsPartner(p)

    def body(cid, topic, bus, worker):
        bus.publish(topic, {"permit_id": "R1", "street": "Elm"}, message_id="r-1")

        def failing():
            hb = heartbeat(cid)
            return hb if hb and hb.get("failed", 0) >= 2 and hb.get("retried", 0) >= 1 else None
        hb = wait_until(failing, 30, "two failed, retried attempts in the heartbeat")
        err = hb.get("last_error") or ""
        print("  last_error: %s" % err, flush=True)
        check(any(w in err.lower() for w in want_in_error),
              "last_error %r should name the TLS problem (%s)" % (err, " or ".join(want_in_error)))
        check(hb.get("delivered") == 0 and hb.get("parked") == 0,
              "not delivered, not parked: %r" % hb)
        check(partner.count() == 0, "the partner recorded no request")
        parked = sql("SELECT count(*) FROM ess_dead_letters WHERE connector = %s", cid)
        check(parked[0][0] == 0, "nothing parked for a TLS failure within max_retry")
        return hb
    with_worker(partner, "max_retry: 50\n" + tls, body)
    return partner


def test_without_client_cert_is_retried_not_delivered():
    p = pki()
    refused_case(tls_block(p, cert=None, key=None), ["certificate"])


def test_client_cert_from_other_ca_is_retried_not_delivered():
    p = pki()
    refused_case(tls_block(p, cert="rogue-client.pem", key="rogue-client.key"),
                 ["unknown ca", "certificate", "alert"])


def test_untrusted_partner_ca_is_retried_not_delivered():
    p = pki()
    refused_case(tls_block(p, ca="rogue.pem"), ["certificate", "issuer"])


def test_verify_off_warns_at_every_start():
    p = pki()
    partner = TlsPartner(p)

    def body(cid, topic, bus, worker):
        worker.wait_log(VERIFY_OFF_WARNING)
        bus.publish(topic, {"permit_id": "V1"}, message_id="v-1")
        wait_until(lambda: partner.count() >= 1, 30, "delivery with verify off (rogue CA file)")
        check("level=warn" in [ln for ln in worker.log_text().splitlines()
                               if VERIFY_OFF_WARNING in ln][0], "logged as a warning")
        check(worker.stop() == 0, "first run stops cleanly")
        worker.start()  # same manifest, same log file: a second start warns again
        wait_until(lambda: worker.log_text().count(VERIFY_OFF_WARNING) >= 2, 30,
                   "the warning at the second start")
        wait_for_queue(cid, worker=worker)
    with_worker(partner, tls_block(p, ca="rogue.pem", verify="false"), body)


def test_unreadable_tls_file_is_a_positioned_error():
    p = pki()
    cid = unique_id("it-tls")
    text = manifest(cid, "https://127.0.0.1:9/x",
                    "tls:\n  ca_file: %s\n  cert_file: %s\n" % (p.path("missing.pem"),
                                                             p.path("client.pem")))
    w = Worker(text)
    r = subprocess.run([w.binary, "--check", "--manifest", w.manifest], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    line_no = text.splitlines().index("tls:") + 2
    want = "%s:%d:12: tls.ca_file: cannot read '" % (w.manifest, line_no)
    check(r.returncode == EX_DATAERR, "exit %d, want %d: %s" % (r.returncode, EX_DATAERR, r.stderr))
    check(want in r.stderr and "No such file or directory" in r.stderr,
          "stderr %r should hold %r" % (r.stderr, want))


# ------------------------------------------------------ Standard Webhooks --

def npm_standardwebhooks():
    """`npm install --prefix TMP standardwebhooks`; a failure fails the test."""
    d = tempfile.mkdtemp(prefix="ess-it-npm-")
    npm = shutil.which("npm")
    check(npm is not None, "npm is not installed: the Standard Webhooks interop test needs "
          "node + npm (apt-get install npm)")
    try:
        r = subprocess.run([npm, "install", "--prefix", d, "--no-audit", "--no-fund",
                            "standardwebhooks"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise Failure("npm install standardwebhooks timed out after 300 s (registry reachable?)")
    check(r.returncode == 0, "npm install --prefix %s standardwebhooks failed (exit %d); the "
          "interop test needs the npm registry:\n%s" % (d, r.returncode, r.stdout[-3000:]))
    return d


def node_verify(npm_dir, secret, records):
    env = dict(os.environ, WEBHOOK_SECRET=secret)
    r = subprocess.run(["node", os.path.join(HERE, "verify_webhook.js"), npm_dir],
                       input=json.dumps(records), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    check(r.returncode == 0, "verify_webhook.js exit %d: %s" % (r.returncode, r.stderr))
    return json.loads(r.stdout)


def test_hmac_verified_by_standardwebhooks_and_secret_not_logged():
    npm_dir = npm_standardwebhooks()
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    partner = Partner()
    events = [{"permit_id": "H1", "street": "Main St"},
              {"permit_id": "H2", "street": NON_ASCII},
              {"permit_id": "H3", "street": "x" * 3000},
              {"permit_id": "H4", "nested": {"a": [1, 2.5, None, True]}}]

    def body(cid, topic, bus, worker):
        for i, ev in enumerate(events):
            bus.publish(topic, ev, message_id="wh-%d" % i)
        wait_until(lambda: partner.count() >= len(events), 30, "four signed deliveries")
        recs = partner.received()
        raw = {json.loads(base64.b64decode(r["body_b64"]))["permit_id"]: r for r in recs}
        got = json.loads(base64.b64decode(raw["H2"]["body_b64"]).decode("utf-8"))
        check(got["street"] == NON_ASCII, "non-ASCII text survives: %r" % got)
        for r in recs:
            check(r["headers"].get("webhook-signature", "").startswith("v1,"),
                  "webhook-signature header: %r" % r["headers"])
        verdicts = node_verify(npm_dir, secret, recs)
        check(verdicts == [{"ok": True}] * len(recs),
              "standardwebhooks rejects ESS's signatures: %r" % verdicts)
        tampered = dict(raw["H2"])
        tampered["body_b64"] = base64.b64encode(
            base64.b64decode(tampered["body_b64"]).replace(b"H2", b"H9")).decode()
        other_id = dict(raw["H1"], headers=dict(raw["H1"]["headers"], **{"webhook-id": "forged"}))
        wrong_key = node_verify(npm_dir, "whsec_" + base64.b64encode(os.urandom(24)).decode(),
                                [raw["H1"]])
        bad = node_verify(npm_dir, secret, [tampered, other_id])
        check(not any(v["ok"] for v in bad + wrong_key),
              "tampered body / id / wrong secret must be rejected: %r" % (bad + wrong_key))
    try:
        worker = with_worker(partner, "auth: {type: hmac, secret_env: ESS_IT_WH_SECRET}\n", body,
                             env={"ESS_IT_WH_SECRET": secret, "ESS_LOG_LEVEL": "debug"})
    finally:
        shutil.rmtree(npm_dir, ignore_errors=True)
    log = worker.log_text()
    check("starting ess-push" in log, "the worker log was captured")
    check_absent(log, secret, "the hmac secret")
    check_absent(log, secret[len("whsec_"):], "the hmac key (base64)")


# ---------------------------------------------------------- bearer, basic --

def test_bearer_token_sent_and_not_logged():
    token = "tok-" + secrets.token_urlsafe(24)
    partner = Partner()

    def body(cid, topic, bus, worker):
        partner.mode(mode="fail", status=503)  # failures are logged: none may carry the token
        bus.publish(topic, {"permit_id": "B1"}, message_id="b-1")
        wait_until(lambda: partner.count() >= 2, 30, "two attempts against a failing partner")
        partner.mode(mode="ok")
        wait_until(lambda: any(r["status"] == 200 for r in partner.received()), 30,
                   "the retried delivery")
        auth = {r["headers"].get("authorization") for r in partner.received()}
        check(auth == {"Bearer " + token}, "Authorization headers: %r" % auth)
    worker = with_worker(partner, "max_retry: 20\nauth: {type: bearer, token_env: ESS_IT_TOKEN}\n",
                         body,
                         env={"ESS_IT_TOKEN": token, "ESS_LOG_LEVEL": "debug"})
    check_absent(worker.log_text(), token, "the bearer token")


def test_basic_auth_header_and_password_not_logged():
    user, password = "ess-it-user", "pw-" + secrets.token_urlsafe(18)
    partner = Partner()
    want = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()

    def body(cid, topic, bus, worker):
        bus.publish(topic, {"permit_id": "A1"}, message_id="a-1")
        wait_until(lambda: partner.count() >= 1, 30, "the basic-auth delivery")
        got = partner.received()[0]["headers"].get("authorization")
        check(got == want, "Authorization %r, want Basic base64(user:pass)" % got)
    worker = with_worker(partner, "auth: {type: basic, user_env: ESS_IT_USER, "
                                  "password_env: ESS_IT_PW}\n", body,
                         env={"ESS_IT_USER": user, "ESS_IT_PW": password,
                              "ESS_LOG_LEVEL": "debug"})
    log = worker.log_text()
    check_absent(log, password, "the basic-auth password")
    check_absent(log, want.split()[1], "the basic-auth credentials (base64)")


def main():
    try:
        run([test_mutual_tls_delivers,
             test_without_client_cert_is_retried_not_delivered,
             test_client_cert_from_other_ca_is_retried_not_delivered,
             test_untrusted_partner_ca_is_retried_not_delivered,
             test_verify_off_warns_at_every_start,
             test_unreadable_tls_file_is_a_positioned_error,
             test_hmac_verified_by_standardwebhooks_and_secret_not_logged,
             test_bearer_token_sent_and_not_logged,
             test_basic_auth_header_and_password_not_logged])
    finally:
        if PKI is not None:
            PKI.cleanup()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda s, f: sys.exit(1))
    main()
