#!/usr/bin/python3
"""tls_stub -- an HTTPS partner requiring client certificates (mutual TLS) for
ESS integration tests (stdlib only).

Run:  /usr/bin/python3 tls_stub.py --cert server.pem --key server.key \
          --client-ca ca.pem [--port 0] [--bind 127.0.0.1]
The first stdout line is "PORT <n>" (flushed), like partner_stub.py.

It is partner_stub.py behind an ssl.SSLContext with verify_mode CERT_REQUIRED
and --client-ca as the only trusted issuer: a client without a certificate,
or with one from another CA, fails the handshake and never gets to HTTP.
Records, modes and the control API are partner_stub's (the control API needs
a client certificate too), plus:
  each record's "client_cert": the subject CN of the certificate presented;
  GET /_handshakes -> [{"ok": bool, "error": str, "ts": epoch s}, ...], every
  TLS handshake attempted, so a test can see a refused client was refused.

The handshake runs in the connection's own thread with a timeout, never in
the accept loop, so a silent client cannot stall the server.
"""

import argparse
import os
import signal
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import partner_stub  # noqa: E402

HANDSHAKE_TIMEOUT_S = 10.0

HANDSHAKES = []
HANDSHAKES_LOCK = threading.Lock()


def note_handshake(ok, error=""):
    with HANDSHAKES_LOCK:
        HANDSHAKES.append({"ok": ok, "error": error, "ts": time.time()})


def subject_cn(cert):
    for rdn in (cert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return value
    return None


class TlsHandler(partner_stub.Handler):
    """partner_stub's handler after a TLS handshake done in this thread."""

    def setup(self):
        self.client_cn = None
        self.request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError) as e:
            note_handshake(False, str(e))
            raise
        note_handshake(True)
        self.client_cn = subject_cn(self.request.getpeercert())
        self.request.settimeout(None)
        super().setup()

    def do_GET(self):
        if self.path == "/_handshakes":
            with HANDSHAKES_LOCK:
                out = list(HANDSHAKES)
            return self.send_json(200, out)
        return super().do_GET()

    def answer(self, mode, body, record, release):
        with partner_stub.STATE.lock:
            record["client_cert"] = self.client_cn
        return super().answer(mode, body, record, release)


class TlsServer(partner_stub.Server):
    def __init__(self, addr, handler, context):
        self.context = context
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):
        pass  # refused handshakes are expected; /_handshakes has them


def make_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(cafile=args.client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def main():
    ap = argparse.ArgumentParser(description="HTTPS partner stub requiring client certificates")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--cert", required=True, help="server certificate (PEM)")
    ap.add_argument("--key", required=True, help="its private key (PEM)")
    ap.add_argument("--client-ca", required=True, help="the only CA trusted for clients")
    ap.add_argument("--lifetime", type=float, default=3600.0,
                    help="exit after this many seconds (safety net)")
    args = ap.parse_args()

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(max(1, int(args.lifetime)))
    server = TlsServer((args.bind, args.port), TlsHandler, make_context(args))
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        partner_stub.STATE.release.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
