"""esslib -- the integration tests' toolbox: a real partner stub, the real
ess-push binary, real RabbitMQ (pika, publisher confirms) and real Postgres
(psycopg2), with bounded waits that fail with a clear message.

Runs under Debian's /usr/bin/python3 (python3-pika, python3-psycopg2).
Environment (set by with_stack.sh and ctest): ESS_AMQP_URL, ESS_PG_URL,
ESS_BIN_DIR, ESS_SRC_DIR, ESS_STACK_DIR.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid

import pika
import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("ESS_SRC_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
BIN = os.environ.get("ESS_BIN_DIR", os.path.join(SRC, "build"))
AMQP_URL = os.environ.get("ESS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get("ESS_PG_URL", "")
STACK_DIR = os.environ.get("ESS_STACK_DIR", "")
EVENTS = "hms.events"
OPS = "hms.ops"


class Failure(AssertionError):
    pass


def wait_until(cond, timeout, what, interval=0.05):
    """Poll cond() until it is truthy; fail naming `what` after timeout s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise Failure("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))


def stop_process(proc, timeout=10):
    """SIGTERM a server this test started, SIGKILL when it does not go."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_listening(proc, port, what, banner=None, log=None, timeout=20):
    """Wait until the server proc accepts on 127.0.0.1:port (and greets with
    banner, when given); its early exit fails at once, with its log."""
    def up():
        if proc.poll() is not None:
            text = open(log, errors="replace").read() if log else ""
            raise Failure("%s exited with %r\n%s" % (what, proc.returncode, text))
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                return banner is None or s.recv(64).startswith(banner)
        except OSError:
            return False
    wait_until(up, timeout, "%s listening on %d" % (what, port), 0.1)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def unique_id(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


# ---------------------------------------------------------------- partner --

class Partner:
    """tests/integration/partner_stub.py on a free loopback port."""

    def __init__(self):
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "partner_stub.py"), "--port", "0",
             "--bind", "127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        check(line.startswith("PORT "), "partner stub did not announce its port: %r" % line)
        self.port = int(line.split()[1])
        self.base = "http://127.0.0.1:%d" % self.port

    def url(self, path="/partner"):
        return self.base + path

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def received(self):
        return self._call("GET", "/_received")

    def count(self):
        return self._call("GET", "/_count")["count"]

    def mode(self, **kw):
        return self._call("POST", "/_mode", kw)

    def reset(self):
        return self._call("POST", "/_reset", {})

    def bodies(self):
        return [json.loads(r["body"]) for r in self.received()]

    def store(self, key):
        """Keep what is sent, by key field, stamped updated_at (GET /_listing)."""
        return self._call("POST", "/_store", {"key": key})

    def listing(self):
        return self._call("GET", "/_listing")

    def edit(self, record=None, delete=None):
        """A change made on the partner side: upsert record, or delete a key."""
        return self._call("POST", "/_edit", {"delete": delete} if delete is not None
                          else {"set": record})

    def stop(self):
        stop_process(self.proc)


# ----------------------------------------------------------------- worker --

class Worker:
    """The real ess-push binary with a manifest written to a temp file."""

    def __init__(self, manifest_text, env=None, binary="ess-push"):
        self.dir = tempfile.mkdtemp(prefix="ess-it-")
        self.manifest = os.path.join(self.dir, "manifest.yml")
        self.log = os.path.join(self.dir, "worker.log")
        self.write_manifest(manifest_text)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.binary = os.path.join(BIN, "workers", "push", binary)
        self.proc = None

    def write_manifest(self, text):
        with open(self.manifest, "w") as f:
            f.write(text)

    def start(self):
        logf = open(self.log, "ab")
        cmd = [self.binary, "--manifest", self.manifest]
        if os.environ.get("ESS_TEST_VALGRIND"):
            # ess-it-valgrind: memcheck under the real workload; any error or
            # definite leak makes the worker exit 99 (tests check stop() == 0).
            cmd = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
                   "--show-leak-kinds=definite", "--errors-for-leak-kinds=definite",
                   "--log-file=" + os.path.join(self.dir, "valgrind.%p.log")] + cmd
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, env=self.env)
        logf.close()
        return self

    def signal(self, sig):
        self.proc.send_signal(sig)

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("ess-push did not exit within %d s of SIGTERM" % timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_comm(self):
        """The process name (comm: ps -C, pgrep -x, journald's _COMM) is the
        binary's own, also after its lean re-exec (not "exe")."""
        if os.environ.get("ESS_TEST_VALGRIND"):
            return  # the process is valgrind's tool
        with open("/proc/%d/comm" % self.proc.pid) as f:
            comm = f.read().strip()
        want = os.path.basename(self.binary)[:15]
        check(comm == want, "/proc/%d/comm is %r, want %r" % (self.proc.pid, comm, want))

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, needle, timeout=30):
        return wait_until(lambda: needle in self.log_text(), timeout,
                          "worker log line containing %r" % needle)


def manifest(cid, target_url, extra=""):
    """A minimal push manifest for connector cid. extra: YAML lines appended;
    a top-level key in extra replaces the default line for that key."""
    base = ("id: %s\nkind: push\nlisten_topic: it.%s.changed\nkey: permit_id\n"
            "target_url: %s\nheartbeat_sec: 1\nmax_retry: 3\ntimeout_ms: 2000\n"
            % (cid, cid, target_url))
    overridden = {ln.split(":")[0] for ln in extra.splitlines() if ln and ln[0].isalpha()}
    kept = [ln for ln in base.splitlines() if ln.split(":")[0] not in overridden]
    return "\n".join(kept) + "\n" + extra


# -------------------------------------------------------------------- bus --

class Bus:
    """A pika connection with publisher confirms, for publishing test events
    and listening on hms.ops / dead-letter queues."""

    def __init__(self):
        self.conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.ch = self.conn.channel()
        self.ch.exchange_declare(EVENTS, "topic", durable=True)
        self.ch.exchange_declare(OPS, "topic", durable=True)
        self.ch.confirm_delivery()

    def publish(self, topic, body, message_id=None, headers=None):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                     message_id=message_id, headers=headers)
        self.ch.basic_publish(EVENTS, topic, body, props, mandatory=False)

    def listen(self, exchange, pattern):
        q = self.ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self.ch.queue_bind(q, exchange, pattern)
        return q

    def drain(self, queue, limit=10000):
        """Every message waiting in queue now, as (routing_key, body) pairs."""
        out = []
        while len(out) < limit:
            m, props, body = self.ch.basic_get(queue, auto_ack=True)
            if m is None:
                break
            out.append((m.routing_key, body))
        return out

    def queue_count(self, queue):
        return self.ch.queue_declare(queue, passive=True).method.message_count

    def close(self):
        try:
            self.conn.close()
        except Exception:
            pass


def wait_for_queue(cid, timeout=30, worker=None):
    """Wait until the worker consumes ess.<cid>. It binds the queue before it
    starts consuming, so a consumer on the queue means events published from
    now on are routed to it (the queue merely existing does not). With worker
    given, fail at once (with its log) if it exits meanwhile."""
    def consuming():
        if worker is not None and not worker.alive():
            raise Failure("ess-push exited with %r before consuming its queue:\n%s"
                          % (worker.proc.returncode, worker.log_text()))
        try:
            c = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        except Exception:
            return False
        try:
            q = c.channel().queue_declare("ess." + cid, passive=True)
            return q.method.consumer_count > 0
        except Exception:
            return False
        finally:
            try:
                c.close()
            except Exception:
                pass
    return wait_until(consuming, timeout, "a consumer on queue ess.%s" % cid, 0.1)


# --------------------------------------------------------------------- db --

def sql(query, *args):
    with psycopg2.connect(PG_URL) as conn:
        with conn.cursor() as cur:
            cur.execute(query, args)
            try:
                return cur.fetchall()
            except psycopg2.ProgrammingError:
                return None


def audit_attempts(chain):
    """Every delivery attempt on a connector's audit chain, oldest first, as
    (row n, the attempt's object): rows of kind "attempts" carry a JSON array
    of them (each with its own at_ms), rows of kind "attempt" (chains written
    before) one object each."""
    out = []
    for n, kind, content in sql("SELECT n, kind, content FROM ess_audit WHERE chain = %s AND"
                                " kind IN ('attempt', 'attempts') ORDER BY n", chain):
        value = json.loads(content)
        out.extend((n, v) for v in (value if kind == "attempts" else [value]))
    return out


def stack(cmd):
    """stack.sh restart-rabbit / restart-pg / ... on the test stack."""
    subprocess.run([os.path.join(SRC, "deploy", "dev", "stack.sh"), cmd, STACK_DIR], check=True,
                   stdout=sys.stderr, stderr=sys.stderr, timeout=180)


# ----------------------------------------------------------------- runner --

def run(tests):
    """Run test functions in order; print a ctest-readable summary."""
    passed = failed = 0
    only = sys.argv[1:]  # run some tests by name: test_x.py test_a test_b
    for t in tests:
        if only and t.__name__ not in only:
            continue
        start = time.monotonic()
        try:
            t()
            passed += 1
            print("PASS %s (%.1f s)" % (t.__name__, time.monotonic() - start), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s (%.1f s)" % (t.__name__, time.monotonic() - start), flush=True)
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


# -------------------------------------------------------------------- hms --

HMS = os.path.join(BIN, "deploy", "hms")


def state_dir(prefix="hms-state-"):
    """A fresh HMS_STATE_DIR. Mode 0711: as root, `hms dev up` runs RabbitMQ
    and Postgres as their own users, who must pass through it."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o711)
    return d


def hms(state, *args, env=None, timeout=120, check_rc=None):
    """Run `hms ARGS...` with HMS_STATE_DIR=state; a CompletedProcess (text).
    check_rc: fail unless it exits with that code (printing its output)."""
    e = dict(os.environ)
    e["HMS_STATE_DIR"] = state
    e.update(env or {})
    r = subprocess.run([HMS] + [str(a) for a in args], env=e, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout)
    if check_rc is not None and r.returncode != check_rc:
        raise Failure("hms %s exited %d, expected %d\nstdout:\n%s\nstderr:\n%s"
                      % (" ".join(map(str, args)), r.returncode, check_rc, r.stdout, r.stderr))
    return r


def pid_alive(pid):
    """1 while pid runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
