"""ess-it-ftp: file drops over FTP against Debian's vsftpd on loopback -- events
batched into files of batch_max records (the rest after batch_sec), each written
as NAME.part and renamed, so a partner polling the inbox only ever sees whole
files; records in journal order per key; a server that is down is retried and
delivered once it is back, nothing parked."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (Bus, Worker, check, manifest, run, sql, stop_process,  # noqa: E402
                    unique_id, wait_for_queue, wait_listening, wait_until)

VSFTPD = "/usr/sbin/vsftpd"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ensure_vsftpd():
    if os.path.exists(VSFTPD):
        return
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "vsftpd"],
                   check=True, stdout=sys.stderr, stderr=sys.stderr, timeout=300,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


class Ftp:
    """vsftpd in the foreground on 127.0.0.1, anonymous uploads (with rename)
    into <dir>/root/inbox; stopped by pid."""

    def __init__(self, port=None):
        ensure_vsftpd()
        self.dir = tempfile.mkdtemp(prefix="ess-ftp-")
        os.chmod(self.dir, 0o755)
        self.root = os.path.join(self.dir, "root")  # the chroot: not writable (vsftpd insists)
        self.inbox = os.path.join(self.root, "inbox")
        empty = os.path.join(self.dir, "empty")
        for d in (self.root, self.inbox, empty):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.root, 0o755)
        shutil.chown(self.inbox, "ftp", "ftp")
        self.port = port or free_port()
        pasv = free_port()
        self.conf = os.path.join(self.dir, "vsftpd.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "listen=YES", "listen_ipv6=NO", "background=NO",
                "listen_address=127.0.0.1", "listen_port=%d" % self.port,
                "pasv_enable=YES", "pasv_address=127.0.0.1",
                "pasv_min_port=%d" % pasv, "pasv_max_port=%d" % pasv,
                "anonymous_enable=YES", "no_anon_password=YES", "anon_root=%s" % self.root,
                "write_enable=YES", "anon_upload_enable=YES", "anon_mkdir_write_enable=YES",
                "anon_other_write_enable=YES", "anon_umask=022", "local_enable=NO",
                "ftp_username=ftp", "secure_chroot_dir=%s" % empty, "seccomp_sandbox=NO",
                "isolate=NO", "isolate_network=NO", "use_localtime=NO",
                "xferlog_enable=NO", "vsftpd_log_file=%s/vsftpd.log" % self.dir, ""]))
        self.proc = None
        self.banner = b"220"  # vsftpd's greeting (implicit FTPS: TLS first, no banner)

    def url(self, path="/inbox/"):
        return "ftp://127.0.0.1:%d%s" % (self.port, path)

    def start(self):
        self.proc = subprocess.Popen([VSFTPD, self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_listening(self.proc, self.port, "vsftpd", banner=self.banner)
        return self

    def files(self):
        return sorted(os.listdir(self.inbox))

    def stop(self):
        stop_process(self.proc)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Poller(threading.Thread):
    """A partner polling its inbox: reads every final (not .part) file the
    moment it appears, as a partner's cron would, and keeps what it read."""

    def __init__(self, inbox):
        super().__init__(daemon=True)
        self.inbox = inbox
        self.seen = {}  # name -> [contents read]
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            for name in os.listdir(self.inbox):
                if name.endswith(".part"):
                    continue
                try:
                    with open(os.path.join(self.inbox, name)) as f:
                        self.seen.setdefault(name, []).append(f.read())
                except OSError:
                    pass
            time.sleep(0.002)

    def stop(self):
        self.stopping.set()
        self.join(5)


FIXED = """format: fixed
fields: [permit_id, n]
columns:
  - {field: permit_id, width: 6}
  - {field: n, width: 4, align: right, pad: "0"}
batch_max: 10
batch_sec: 2
max_in_flight: 4
"""


def publish_25(bus, topic, keys=11):
    """25 events over `keys` keys: key K<i % keys> gets its changes `keys` events apart."""
    for i in range(25):
        bus.publish(topic, {"permit_id": "K%d" % (i % keys), "n": i}, message_id="e-%d" % i)


def parse_fixed(text):
    check(text.endswith("\n"), "a whole file ends in a line end: %r" % text[-20:])
    out = []
    for line in text.splitlines():
        check(len(line) == 10, "fixed-width line of 10: %r" % line)
        out.append((line[:6].strip(), int(line[6:])))
    return out


def check_files(ftp, names, keys=11):
    """Every file whole, no .part left; at most one record per key per file (a
    later change merged into it); each key's records in journal order across
    files, ending with its last change. With 25 keys: each event exactly once."""
    check(not [n for n in ftp.files() if n.endswith(".part")], "no .part left: %r" % ftp.files())
    records = []
    for name in names:
        with open(os.path.join(ftp.inbox, name)) as f:
            in_file = parse_fixed(f.read())
        file_keys = [k for k, _ in in_file]
        check(len(file_keys) == len(set(file_keys)), "one record per key in %s: %r"
              % (name, in_file))
        records.extend(in_file)
    per_key = {}
    for key, n in records:
        check(n % keys == int(key[1:]), "record %s=%d belongs to its key" % (key, n))
        per_key.setdefault(key, []).append(n)
    for key, ns in per_key.items():
        check(ns == sorted(set(ns)), "key %s in journal order: %r" % (key, ns))
        check(ns[-1] == max(i for i in range(25) if i % keys == int(key[1:])),
              "key %s ends with its last change: %r" % (key, ns))
    check(len(per_key) == min(keys, 25), "every key delivered: %r" % sorted(per_key))
    if keys == 25:
        check(sorted(n for _, n in records) == list(range(25)),
              "each event exactly once: %r" % records)
    return records


def by_seq(names):
    """{id}-{seq}-{ts}.txt sorted by the first seq in each file."""
    return sorted(names, key=lambda n: int(n.rsplit("-", 2)[1]))


def with_ftp(body, ftp_up=True, extra=""):
    cid = unique_id("it-ftp")
    ftp = Ftp()
    if ftp_up:
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


def test_batches_of_batch_max_renamed_whole():
    def body(cid, topic, ftp, bus, worker):
        poller = Poller(ftp.inbox)
        poller.start()
        start = time.monotonic()
        publish_25(bus, topic, 25)
        finals = lambda: [n for n in ftp.files() if not n.endswith(".part")]  # noqa: E731
        wait_until(lambda: len(finals()) >= 2, 20, "the two full files")
        check(len(finals()) == 2 or time.monotonic() - start >= 2,
              "the third (5 events) waits for batch_sec: %r" % finals())
        wait_until(lambda: len(finals()) == 3, 20, "the last file after batch_sec")
        time.sleep(0.3)  # the poller reads what is there
        poller.stop()
        names = by_seq(finals())
        check(all(n.startswith(cid + "-") and n.endswith("Z.txt") for n in names),
              "names follow {id}-{seq}-{ts}.txt: %r" % names)
        sizes = []
        for name in names:
            with open(os.path.join(ftp.inbox, name)) as f:
                sizes.append(len(parse_fixed(f.read())))
        check(sizes == [10, 10, 5], "10, 10, then 5 after batch_sec: %r" % sizes)
        check_files(ftp, names, 25)
        for name, reads in poller.seen.items():
            final = open(os.path.join(ftp.inbox, name)).read()
            check(all(r == final for r in reads),
                  "the poller only ever saw %s whole (%d reads)" % (name, len(reads)))
        check(set(poller.seen) == set(names), "the poller saw every file: %r" % poller.seen)
        wait_until(lambda: sql("SELECT delivered_seq FROM ess_offsets WHERE connector=%s", cid)
                   == [(max_seq(cid),)], 10, "the offset past every event")
    with_ftp(body)


def max_seq(cid):
    return sql("SELECT max(seq) FROM ess_journal WHERE connector=%s", cid)[0][0]


def test_server_down_then_back_delivers_all():
    def body(cid, topic, ftp, bus, worker):
        publish_25(bus, topic)
        wait_until(lambda: sql("SELECT count(*) FROM ess_journal WHERE connector=%s", cid)[0][0]
                   == 25, 20, "25 events journaled")
        time.sleep(4)  # several failed uploads while it is down
        check(ftp.files() == [], "nothing uploaded while down")
        ftp.start()
        finals = lambda: [n for n in ftp.files() if not n.endswith(".part")]  # noqa: E731
        def last_changes_in():
            text = "".join(open(os.path.join(ftp.inbox, n)).read() for n in finals())
            return all(("K%d" % (i % 11)).ljust(6) + "%04d" % i in text for i in range(14, 25))
        wait_until(last_changes_in, 40, "every key's last change in files")
        wait_until(lambda: sql("SELECT delivered_seq FROM ess_offsets WHERE connector=%s", cid)
                   == [(max_seq(cid),)], 10, "the offset past every event")
        check_files(ftp, by_seq(finals()))
        check(sql("SELECT count(*) FROM ess_dead_letters WHERE connector=%s", cid)[0][0] == 0,
              "nothing parked")
    # max_retry above the breaker's threshold (5, as the default 8 is): an
    # outage opens the breaker, and failures while it is open count nothing.
    with_ftp(body, ftp_up=False, extra="max_retry: 8\n")


def test_later_change_replaces_the_key_in_the_file():
    def body(cid, topic, ftp, bus, worker):
        for i, key in enumerate(["K0", "K1", "K2", "K3", "K4", "K0", "K2", "K0"]):
            bus.publish(topic, {"permit_id": key, "n": i}, message_id="r-%d" % i)
        finals = lambda: [n for n in ftp.files() if not n.endswith(".part")]  # noqa: E731
        wait_until(lambda: len(finals()) == 1, 20, "the file after batch_sec")
        with open(os.path.join(ftp.inbox, finals()[0])) as f:
            got = parse_fixed(f.read())
        check(got == [("K0", 7), ("K1", 1), ("K2", 6), ("K3", 3), ("K4", 4)],
              "one line per key, the latest change, in order of first appearance: %r" % got)
        wait_until(lambda: sql("SELECT delivered_seq FROM ess_offsets WHERE connector=%s", cid)
                   == [(max_seq(cid),)], 10, "the offset past every event, merged ones too")
        check(ftp.files() == finals(), "no second file: %r" % ftp.files())
    with_ftp(body)


if __name__ == "__main__":
    run([test_batches_of_batch_max_renamed_whole, test_server_down_then_back_delivers_all,
         test_later_change_replaces_the_key_in_the_file])
