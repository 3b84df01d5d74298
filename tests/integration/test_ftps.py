"""ess-it-ftps: file drops over TLS against Debian's vsftpd on loopback, with a
test CA made at test time by the openssl CLI -- explicit FTPS (ftp:// with a
`tls:` block: AUTH TLS, never plain) and implicit FTPS (ftps://) deliver whole
files; a server certificate from a CA the manifest does not trust delivers
nothing (retried, nothing parked, the error says why); a plain-only server is
refused rather than used without TLS."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (Bus, Worker, check, manifest, run, sql, unique_id,  # noqa: E402
                    wait_for_queue, wait_until)
from test_ftp import Ftp, check_files, by_seq, publish_25, FIXED  # noqa: E402
from test_tls_auth import pki  # noqa: E402


class Ftps(Ftp):
    """vsftpd as in test_ftp, with TLS on control and data connections
    (anonymous logins over TLS only); implicit: TLS from the first byte."""

    def __init__(self, implicit=False, tls=True):
        super().__init__()
        self.implicit = implicit
        if implicit:
            self.banner = None  # TLS from the first byte: a connection is enough
        if not tls:
            return
        p = pki()
        with open(self.conf, "a") as f:
            f.write("\n".join([
                "ssl_enable=YES", "rsa_cert_file=%s" % p.path("server.pem"),
                "rsa_private_key_file=%s" % p.path("server.key"), "allow_anon_ssl=YES",
                "force_anon_logins_ssl=YES", "force_anon_data_ssl=YES",
                "require_ssl_reuse=NO", "implicit_ssl=%s" % ("YES" if implicit else "NO"), ""]))

    def url(self, path="/inbox/"):
        return "%s://127.0.0.1:%d%s" % ("ftps" if self.implicit else "ftp", self.port, path)


def tls_extra(ca="ca.pem"):
    return "tls: {ca_file: %s}\n" % pki().path(ca)


def with_ftps(ftp, extra, body):
    cid = unique_id("it-ftps")
    ftp.start()
    worker = Worker(manifest(cid, ftp.url(), FIXED + extra)).start()
    bus = Bus()
    try:
        wait_for_queue(cid, worker=worker)
        body(cid, "it.%s.changed" % cid, ftp, bus, worker)
        check(worker.stop() == 0, "SIGTERM exits 0")
    except Exception:
        print("--- worker log:\n%s" % worker.log_text()[-4000:], file=sys.stderr)
        raise
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        ftp.cleanup()


def delivers_all(cid, topic, ftp, bus, worker):
    publish_25(bus, topic, 25)
    finals = lambda: [n for n in ftp.files() if not n.endswith(".part")]  # noqa: E731
    wait_until(lambda: len(finals()) == 3, 30, "three whole files over TLS")
    check_files(ftp, by_seq(finals()), 25)
    check(sql("SELECT count(*) FROM ess_dead_letters WHERE connector=%s", cid)[0][0] == 0,
          "nothing parked")


def test_explicit_ftps_delivers():
    with_ftps(Ftps(), tls_extra(), delivers_all)


def test_implicit_ftps_delivers():
    with_ftps(Ftps(implicit=True), tls_extra(), delivers_all)


def test_untrusted_certificate_delivers_nothing():
    def body(cid, topic, ftp, bus, worker):
        publish_25(bus, topic, 25)
        worker.wait_log("certificate", 20)
        check(ftp.files() == [], "nothing uploaded to a server it cannot verify: %r"
              % ftp.files())
        check(sql("SELECT count(*) FROM ess_dead_letters WHERE connector=%s", cid)[0][0] == 0,
              "nothing parked for it")
    # rogue.pem: a CA that did not sign the server's certificate.
    with_ftps(Ftps(), tls_extra("rogue.pem") + "max_retry: 8\n", body)


def test_plain_server_refused_when_tls_is_required():
    def body(cid, topic, ftp, bus, worker):
        publish_25(bus, topic, 25)
        worker.wait_log("Requested SSL level failed", 20)  # curl: the server offers no AUTH TLS
        check(ftp.files() == [], "no plain-text upload: %r" % ftp.files())
    with_ftps(Ftps(tls=False), tls_extra() + "max_retry: 8\n", body)


if __name__ == "__main__":
    run([test_explicit_ftps_delivers, test_implicit_ftps_delivers,
         test_untrusted_certificate_delivers_nothing,
         test_plain_server_refused_when_tls_is_required])
