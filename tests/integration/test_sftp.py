"""ess-it-sftp: file drops over SFTP against Debian's OpenSSH sshd, run
unprivileged on a loopback port with its own host key (as the invoking user,
or `nobody` when the tests run as root), key login only -- whole files
(uploaded as NAME.part and renamed), every event once, in order per key; a
server whose host key differs from ssh.host_key_sha256 gets nothing."""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (Bus, Worker, check, manifest, run, sql, stop_process,  # noqa: E402
                    unique_id, wait_for_queue, wait_listening, wait_until)
from test_ftp import FIXED, by_seq, check_files, free_port, publish_25  # noqa: E402

SSHD = "/usr/sbin/sshd"


def ensure_sshd():
    if os.path.exists(SSHD):
        return
    subprocess.run([os.path.join(os.environ.get("ESS_SRC_DIR", "."), "deploy", "dev",
                                 "install-deps.sh")], check=True, timeout=600)


def keygen(path, kind="ecdsa"):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-m", "PEM", "-f", path],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60)


def fingerprint(pub):
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", pub], check=True,
                         stdout=subprocess.PIPE, text=True, timeout=60).stdout
    return out.split()[1]  # "256 SHA256:... comment (ECDSA)"


class Sftp:
    """sshd -D on 127.0.0.1:<free port> with internal-sftp only, as an
    unprivileged user; the inbox is <dir>/inbox (absolute in the URL)."""

    def __init__(self):
        ensure_sshd()
        self.user = "nobody" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
        pw = pwd.getpwnam(self.user)
        self.dir = tempfile.mkdtemp(prefix="ess-sftp-")
        os.chmod(self.dir, 0o755)
        self.inbox = os.path.join(self.dir, "inbox")
        os.makedirs(self.inbox)
        self.host_key = os.path.join(self.dir, "host_key")
        self.client_key = os.path.join(self.dir, "client_key")
        self.other_key = os.path.join(self.dir, "other_host_key")
        keygen(self.host_key)
        keygen(self.client_key)
        keygen(self.other_key)
        shutil.copy(self.client_key + ".pub", os.path.join(self.dir, "authorized_keys"))
        self.port = free_port()
        self.conf = os.path.join(self.dir, "sshd_config")
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "ListenAddress 127.0.0.1", "Port %d" % self.port, "HostKey %s" % self.host_key,
                "PidFile %s/sshd.pid" % self.dir,
                "AuthorizedKeysFile %s/authorized_keys" % self.dir,
                # UsePAM: without it this sshd (not root: /etc/shadow unreadable)
                # refuses the login as a locked account. Keys only, all the same.
                "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM yes",
                "StrictModes no", "AllowUsers %s" % self.user, "PermitRootLogin no",
                "Subsystem sftp internal-sftp", "ForceCommand internal-sftp",
                "AllowTcpForwarding no", "X11Forwarding no", "LogLevel VERBOSE", ""]))
        for name in os.listdir(self.dir):  # sshd reads them as the unprivileged user
            shutil.chown(os.path.join(self.dir, name), pw.pw_uid, pw.pw_gid)
        shutil.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.host_key, 0o600)
        self.log = os.path.join(self.dir, "sshd.log")
        self.proc = None

    def url(self):
        return "sftp://%s@127.0.0.1:%d%s/" % (self.user, self.port, self.inbox)

    def start(self):
        cmd = [SSHD, "-D", "-e", "-f", self.conf]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"))

        wait_listening(self.proc, self.port, "sshd", banner=b"SSH-2.0", log=self.log)
        return self

    def files(self):
        return sorted(os.listdir(self.inbox))

    def cleanup(self):
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def with_sftp(extra_of, body):
    cid = unique_id("it-sftp")
    srv = Sftp().start()
    worker = Worker(manifest(cid, srv.url(), FIXED + extra_of(srv))).start()
    bus = Bus()
    try:
        wait_for_queue(cid, worker=worker)
        body(cid, "it.%s.changed" % cid, srv, bus, worker)
        check(worker.stop() == 0, "SIGTERM exits 0")
    except Exception:
        print("--- worker log:\n%s" % worker.log_text()[-4000:], file=sys.stderr)
        print("--- sshd log:\n%s" % open(srv.log).read()[-3000:], file=sys.stderr)
        raise
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        srv.cleanup()


def test_sftp_key_login_delivers_whole_files():
    def extra(srv):
        return "ssh: {key_file: %s, host_key_sha256: \"%s\"}\n" % (
            srv.client_key, fingerprint(srv.host_key + ".pub"))

    def body(cid, topic, srv, bus, worker):
        publish_25(bus, topic, 25)
        finals = lambda: [n for n in srv.files() if not n.endswith(".part")]  # noqa: E731
        wait_until(lambda: len(finals()) == 3, 30, "three whole files over SFTP")
        check_files(srv, by_seq(finals()), 25)
        check(sql("SELECT count(*) FROM ess_dead_letters WHERE connector=%s", cid)[0][0] == 0,
              "nothing parked")
        check("identity is not checked" not in worker.log_text(), "no host-key warning")
    with_sftp(extra, body)


def test_sftp_wrong_host_key_delivers_nothing():
    def extra(srv):
        return "max_retry: 8\nssh: {key_file: %s, host_key_sha256: \"%s\"}\n" % (
            srv.client_key, fingerprint(srv.other_key + ".pub"))

    def body(cid, topic, srv, bus, worker):
        publish_25(bus, topic, 25)
        worker.wait_log("mismatch sha256 fingerprint", 30)  # curl refuses the server
        check(srv.files() == [], "nothing uploaded to a server with another host key: %r"
              % srv.files())
        check(sql("SELECT count(*) FROM ess_dead_letters WHERE connector=%s", cid)[0][0] == 0,
              "nothing parked for it")
    with_sftp(extra, body)


if __name__ == "__main__":
    run([test_sftp_key_login_delivers_whole_files, test_sftp_wrong_host_key_delivers_nothing])
