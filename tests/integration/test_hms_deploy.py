"""ess-it-hms_deploy: `hms ess deploy|diff|rollback|stop` and `hms dev` against
the real stack, the real ess-push, and real partner stubs.

Every test runs hms with its own HMS_STATE_DIR (a temp dir), so nothing
touches the operator's state dir. Renders (systemd, compose, k8s) are parsed
and checked field by field; the k8s example committed in deploy/k8s/ must be
what hms renders today.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import esslib  # noqa: E402
from esslib import (Bus, Failure, Partner, check, hms, manifest, pid_alive, sql,  # noqa: E402
                    state_dir, unique_id, wait_for_queue, wait_until)

SRC = esslib.SRC


def write(dirname, name, text):
    path = os.path.join(dirname, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def worker_pid(state, cid):
    try:
        with open(os.path.join(state, "workers", cid, "worker.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def worker_log(state, cid):
    try:
        with open(os.path.join(state, "workers", cid, "worker.log"), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def deploys(cid):
    return sql("SELECT sha, target, coalesce(note, '') FROM ess_deploys WHERE connector = %s"
               " ORDER BY id", cid)


def sha_of(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Deployed:
    """A connector deployed locally by hms in its own state dir, with a
    partner stub; stop() stops the worker and the partner, whatever happened."""

    def __init__(self, extra=""):
        self.cid = unique_id("dep")
        self.state = state_dir()
        self.tmp = tempfile.mkdtemp(prefix="hms-deploy-")
        self.partner = Partner()
        self.extra = extra

    def manifest(self, extra=None):
        return manifest(self.cid, self.partner.url("/dmv/permits"),
                        self.extra if extra is None else extra)

    def file(self, name, extra=None):
        return write(self.tmp, name, self.manifest(extra))

    def deploy(self, path, *args, rc=0, env=None, timeout=120):
        return hms(self.state, "ess", "deploy", path, *args, env=env, timeout=timeout,
                   check_rc=rc)

    def pid(self):
        return worker_pid(self.state, self.cid)

    def log(self):
        return worker_log(self.state, self.cid)

    def stop(self):
        pid = self.pid()
        if pid is not None and pid_alive(pid):
            hms(self.state, "ess", "stop", self.cid)
        self.partner.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)


def publish(bus, cid, n, start=0, prefix="P"):
    for i in range(start, start + n):
        bus.publish("it.%s.changed" % cid, {"permit_id": "%s%d" % (prefix, i), "n": i},
                    message_id="%s-ev-%d" % (cid, i))


def received_ids(partner):
    return {r["headers"].get("x-ess-event-id") for r in partner.received()}


# ------------------------------------------------------------------ local --

def test_deploy_local_delivers():
    d = Deployed()
    bus = Bus()
    try:
        path = d.file("m.yml")
        r = d.deploy(path)
        sha = sha_of(path)
        check(re.search(r"deployed %s version %s: pid \d+, log " % (d.cid, sha[:12]), r.stdout),
              "unexpected deploy output: %r" % r.stdout)
        pid = d.pid()
        check(pid is not None and pid_alive(pid), "no running worker after deploy")
        inst = sql("SELECT instance FROM ess_heartbeats WHERE connector = %s", d.cid)
        check(inst and inst[0][0].endswith(":%d" % pid), "heartbeat instance %r, pid %d"
              % (inst, pid))
        check(deploys(d.cid) == [(sha, "local", "")], "ess_deploys: %r" % deploys(d.cid))
        body = sql("SELECT body, version FROM ess_manifests WHERE connector = %s AND sha = %s",
                   d.cid, sha)
        with open(path) as f:
            check(body == [(f.read(), sha[:12])], "ess_manifests row: %r" % body)
        with open(os.path.join(d.state, "workers", d.cid, "manifest.yml")) as f, open(path) as g:
            check(f.read() == g.read(), "worker dir manifest differs from the deployed file")
        publish(bus, d.cid, 1)
        wait_until(lambda: d.partner.count() >= 1, 20, "the partner to receive the event")
        check(d.partner.bodies()[0]["permit_id"] == "P0", "body: %r" % d.partner.bodies())
    finally:
        bus.close()
        d.stop()


def test_deploy_again_replaces_without_loss():
    n = 300
    d = Deployed()
    bus = Bus()
    try:
        d.deploy(d.file("v1.yml"))
        old = d.pid()
        publish(bus, d.cid, n // 2)
        v2 = d.file("v2.yml", "timeout_ms: 3000\n")
        e = dict(os.environ, HMS_STATE_DIR=d.state)
        proc = subprocess.Popen([esslib.HMS, "ess", "deploy", v2], env=e, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        publish(bus, d.cid, n // 2, start=n // 2)  # across the switch
        out, err = proc.communicate(timeout=120)
        check(proc.returncode == 0, "second deploy exited %d:\n%s%s" % (proc.returncode, out, err))
        check("stopping %s (pid %d)" % (d.cid, old) in out, "old worker not stopped: %r" % out)
        new = d.pid()
        check(new != old and pid_alive(new) and not pid_alive(old),
              "pids: old %d (alive %s), new %r" % (old, pid_alive(old), new))
        want = {"%s-ev-%d" % (d.cid, i) for i in range(n)}
        wait_until(lambda: want <= received_ids(d.partner), 60,
                   "all %d events at the partner (missing %d)" % (n, len(want - received_ids(d.partner))))
        check(re.search(r"stopped; delivered offset \d+", d.log()),
              "the old worker did not log a graceful stop:\n" + d.log())
        check([t[0] for t in deploys(d.cid)] == [sha_of(d.tmp + "/v1.yml"), sha_of(v2)],
              "ess_deploys: %r" % deploys(d.cid))
    finally:
        bus.close()
        d.stop()


def test_stop():
    d = Deployed()
    try:
        d.deploy(d.file("m.yml"))
        pid = d.pid()
        r = hms(d.state, "ess", "stop", d.cid, check_rc=0)
        check("stopped %s" % d.cid in r.stdout, "stop output: %r" % r.stdout)
        check(not pid_alive(pid), "worker %d still runs after stop" % pid)
        check(d.pid() is None, "pid file left behind")
        check("stopped; delivered offset" in d.log(), "no graceful stop in the log:\n" + d.log())
        r = hms(d.state, "ess", "stop", d.cid, check_rc=65)
        check("no local worker" in r.stderr, "second stop: %r" % r.stderr)
        hms(d.state, "ess", "stop", "no-such-connector", check_rc=65)
        hms(d.state, "ess", "stop", "../etc", check_rc=64)
    finally:
        d.stop()


def test_deploy_refuses_bad_manifest_and_missing_service():
    d = Deployed()
    try:
        bad = write(d.tmp, "bad.yml", d.manifest() + "max_retry: lots\n")
        r = d.deploy(bad, rc=65)
        check(re.search(r"bad\.yml:\d+:\d+: max_retry", r.stderr), "stderr: %r" % r.stderr)
        hms(d.state, "ess", "deploy", os.path.join(d.tmp, "missing.yml"), check_rc=78)
        hms(d.state, "ess", "deploy", d.file("m.yml"), "--target", "mars", check_rc=64)
        r = hms(d.state, "ess", "deploy", d.file("m.yml"), check_rc=69,
                env={"ESS_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"})
        check("RabbitMQ" in r.stderr, "stderr: %r" % r.stderr)
        check(d.pid() is None, "a worker was started without a bus")
    finally:
        d.stop()


def test_deploy_worker_that_cannot_start():
    d = Deployed()
    try:
        # A secret the environment lacks: hms refuses before starting anything.
        path = d.file("m.yml", "auth: {type: bearer, token_env: HMS_IT_NO_SUCH_TOKEN}\n")
        r = d.deploy(path, rc=78)
        check("HMS_IT_NO_SUCH_TOKEN" in r.stderr, "stderr: %r" % r.stderr)
        # A worker that exits at once (ess-push replaced by `false`): log tail, 69.
        fake = write(d.tmp, "ess-push", "#!/bin/sh\necho 'ess-push: cannot start (test)' >&2\n"
                     "exit 69\n")
        os.chmod(fake, 0o755)
        hmsdir = os.path.join(d.tmp, "bin")
        os.makedirs(hmsdir)
        shutil.copy(esslib.HMS, hmsdir)
        shutil.copy(fake, hmsdir)
        e = dict(os.environ, HMS_STATE_DIR=d.state)
        r = subprocess.run([os.path.join(hmsdir, "hms"), "ess", "deploy", d.file("ok.yml")],
                           env=e, text=True, capture_output=True, timeout=60)
        check(r.returncode == 69, "exit %d: %s" % (r.returncode, r.stderr))
        check("cannot start (test)" in r.stderr and "exited before its first heartbeat"
              in r.stderr, "stderr: %r" % r.stderr)
        check(deploys(d.cid)[-1][2].startswith("failed:"), "ess_deploys: %r" % deploys(d.cid))
    finally:
        d.stop()


# ------------------------------------------------------- diff / rollback --

def test_diff():
    d = Deployed()
    try:
        v1 = d.file("v1.yml")
        r = hms(d.state, "ess", "diff", v1, check_rc=1)
        check("not deployed yet" in r.stdout and "+id: %s" % d.cid in r.stdout,
              "diff before deploy: %r" % r.stdout)
        d.deploy(v1)
        r = hms(d.state, "ess", "diff", v1, check_rc=0)
        check("no changes" in r.stdout, "diff same: %r" % r.stdout)
        v2 = d.file("v2.yml", "max_retry: 5\nheartbeat_sec: 2\n")
        r = hms(d.state, "ess", "diff", v2, check_rc=1)
        lines = r.stdout.splitlines()
        check(lines[0].startswith("--- deployed %s (version %s)" % (d.cid, sha_of(v1)[:12])),
              "header: %r" % lines[:2])
        check(lines[1].startswith("+++ %s (version %s)" % (v2, sha_of(v2)[:12])),
              "header: %r" % lines[:2])
        for want in ("-heartbeat_sec: 1", "-max_retry: 3", "+max_retry: 5", "+heartbeat_sec: 2",
                     " key: permit_id"):
            check(want in lines, "%r missing from the diff:\n%s" % (want, r.stdout))
        check(any(ln.startswith("@@ -") for ln in lines), "no hunk header:\n" + r.stdout)
        bad = write(d.tmp, "bad.yml", "id: %s\nkind: push\nnonsense: 1\n" % d.cid)
        hms(d.state, "ess", "diff", bad, check_rc=65)
    finally:
        d.stop()


def test_rollback():
    d = Deployed()
    try:
        hms(d.state, "ess", "rollback", d.cid, check_rc=65)  # nothing recorded
        v1 = d.file("v1.yml")
        d.deploy(v1)
        hms(d.state, "ess", "rollback", d.cid, check_rc=65)  # nothing earlier
        v2 = d.file("v2.yml", "timeout_ms: 3000\n")
        d.deploy(v2)
        pid2 = d.pid()
        r = hms(d.state, "ess", "rollback", d.cid, check_rc=0)
        check("deployed %s version %s" % (d.cid, sha_of(v1)[:12]) in r.stdout,
              "rollback output: %r" % r.stdout)
        check(deploys(d.cid)[-1] == (sha_of(v1), "local", "rollback"),
              "ess_deploys: %r" % deploys(d.cid))
        with open(os.path.join(d.state, "workers", d.cid, "manifest.yml")) as f, open(v1) as g:
            check(f.read() == g.read(), "the running worker's manifest is not v1")
        check(d.pid() != pid2 and pid_alive(d.pid()) and not pid_alive(pid2), "no new worker")
        # Rolling back again goes forward to v2 (the latest other version).
        hms(d.state, "ess", "rollback", d.cid, check_rc=0)
        check(deploys(d.cid)[-1][0] == sha_of(v2), "ess_deploys: %r" % deploys(d.cid))
    finally:
        d.stop()


def test_auto_rollback():
    d = Deployed()
    bus = Bus()
    alerts = bus.listen(esslib.OPS, "ess.alert.%s" % d.cid)
    try:
        v1 = d.file("v1.yml")
        d.deploy(v1)
        publish(bus, d.cid, 25, prefix="OK")
        wait_until(lambda: sql("SELECT 1 FROM ess_heartbeats WHERE connector = %s AND"
                               " (body::json->>'delivered')::int >= 25", d.cid), 30,
                   "a heartbeat counting 25 deliveries")
        # v2 renames the key field, and the partner refuses exactly that shape.
        keys = ["BAD%d" % i for i in range(30)]
        d.partner.mode(mode="ok", for_key=[{"field": "PERMIT_NUM", "value": k, "status": 400}
                                           for k in keys])
        v2 = d.file("v2.yml", "rename: {permit_id: PERMIT_NUM}\n")
        old = d.pid()
        e = dict(os.environ, HMS_STATE_DIR=d.state, ESS_AUTOROLLBACK_SEC="60")
        proc = subprocess.Popen([esslib.HMS, "ess", "deploy", v2, "--auto-rollback"], env=e,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until(lambda: d.pid() not in (None, old) and sql(
            "SELECT 1 FROM ess_heartbeats WHERE connector = %s AND instance LIKE %s",
            d.cid, "%%:%d" % d.pid()), 60, "the v2 worker's first heartbeat")
        for i, k in enumerate(keys):
            bus.publish("it.%s.changed" % d.cid, {"permit_id": k}, message_id="bad-%d" % i)
        out, err = proc.communicate(timeout=120)
        check(proc.returncode == 65, "deploy --auto-rollback exited %d:\n%s%s"
              % (proc.returncode, out, err))
        check("rolling back to %s" % sha_of(v1)[:12] in out, "output: %r" % out)
        rows = deploys(d.cid)
        check(rows[-1][0] == sha_of(v1) and rows[-1][2].startswith("auto-rollback: "),
              "ess_deploys: %r" % rows)
        check(rows[-2][0] == sha_of(v2) and rows[-2][2].startswith("failed: "),
              "ess_deploys: %r" % rows)
        # the worker's own rule alerts (failures, parked) share the routing key
        seen = []
        alert = wait_until(lambda: next((m for m in (seen.extend(
            json.loads(b) for _, b in bus.drain(alerts)) or seen)
            if m.get("event") == "auto_rollback"), None), 10,
            "the auto_rollback alert on hms.ops")
        check("failure rate" in alert["detail"] and alert.get("state") == "fired",
              "alert: %r" % alert)
        with open(os.path.join(d.state, "workers", d.cid, "manifest.yml")) as f, open(v1) as g:
            check(f.read() == g.read(), "the running worker's manifest is not v1")
    finally:
        bus.close()
        d.stop()


# ---------------------------------------------------------------- renders --

def test_render_k8s():
    d = Deployed()
    try:
        path = d.file("m.yml", "auth: {type: basic, user_env: P_USER, password_env: P_PASS}\n")
        r = d.deploy(path, "--target", "k8s")
        docs = list(yaml.safe_load_all(r.stdout))
        check([x["kind"] for x in docs] == ["ConfigMap", "Deployment"], "kinds: %r" % docs)
        cm, dep = docs
        with open(path) as f:
            check(cm["data"] == {"%s.yml" % d.cid: f.read()}, "ConfigMap data: %r" % cm["data"])
        spec = dep["spec"]
        check(spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, "spec: %r" % spec)
        pod = spec["template"]["spec"]
        check(pod["terminationGracePeriodSeconds"] == 30, "grace: %r" % pod)
        check(pod["securityContext"]["runAsNonRoot"] is True, "pod securityContext")
        c = pod["containers"][0]
        check(c["args"] == ["--manifest", "/etc/ess/%s.yml" % d.cid], "args: %r" % c["args"])
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
        check(set(env) == {"ESS_AMQP_URL", "ESS_PG_URL", "P_USER", "P_PASS"}, "env: %r" % env)
        check(env["P_PASS"] == {"name": "ess-%s" % d.cid, "key": "P_PASS"}, "env: %r" % env)
        check(c["resources"] == {"requests": {"cpu": "50m", "memory": "32Mi"},
                                 "limits": {"cpu": "500m", "memory": "64Mi"}},
              "resources: %r" % c["resources"])
        probe = c["livenessProbe"]["exec"]["command"]
        check(probe[-3:] == ["ess", "status", d.cid], "liveness: %r" % probe)
        check(c["securityContext"]["readOnlyRootFilesystem"] is True, "container securityContext")
        vol = pod["volumes"][0]["configMap"]["name"]
        check(vol == cm["metadata"]["name"], "volume %r vs ConfigMap %r" % (vol, cm["metadata"]))
        check(deploys(d.cid)[-1][1] == "k8s", "ess_deploys: %r" % deploys(d.cid))
        check(d.pid() is None, "a k8s deploy started a local worker")
    finally:
        d.stop()


def test_k8s_example_is_current():
    state = state_dir()
    path = os.path.join(SRC, "manifests", "city2dmv.yml")
    r = hms(state, "ess", "deploy", path, "--target", "k8s", check_rc=0)
    with open(os.path.join(SRC, "deploy", "k8s", "city2dmv.yaml")) as f:
        committed = f.read()
    # The committed file was rendered from the repo root with a relative path.
    rendered = r.stdout.replace(path, "manifests/city2dmv.yml")
    check(committed == rendered, "deploy/k8s/city2dmv.yaml is stale: regenerate it with\n"
          "  build/deploy/hms ess deploy manifests/city2dmv.yml --target k8s"
          " > deploy/k8s/city2dmv.yaml")
    docs = list(yaml.safe_load_all(committed))
    check(docs[1]["spec"]["strategy"]["type"] == "Recreate", "example strategy")
    shutil.rmtree(state, ignore_errors=True)


def test_render_systemd():
    d = Deployed()
    try:
        out = os.path.join(d.tmp, "units")
        path = d.file("m.yml", "auth: {type: hmac, secret_env: P_HMAC}\n")
        r = d.deploy(path, "--target", "systemd", "--out", out)
        check("systemctl enable --now ess-worker@%s.service" % d.cid in r.stdout,
              "instructions: %r" % r.stdout)
        with open(os.path.join(out, "ess-worker@.service")) as f:
            unit = f.read()
        with open(os.path.join(SRC, "deploy", "systemd", "ess-worker@.service")) as f:
            check(unit == f.read(), "the written unit is not deploy/systemd/ess-worker@.service")
        lines = set(unit.splitlines())
        for want in ("DynamicUser=yes", "ProtectSystem=strict", "ProtectHome=yes",
                     "NoNewPrivileges=yes", "PrivateTmp=yes",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "Restart=on-failure",
                     "RestartSec=2", "KillSignal=SIGTERM", "TimeoutStopSec=30",
                     "ExecStart=/usr/local/bin/ess-push --manifest /etc/ess/%i.yml",
                     "ExecReload=/bin/kill -HUP $MAINPID", "EnvironmentFile=/etc/ess/%i.env"):
            check(want in lines, "unit lacks %r" % want)
        with open(os.path.join(out, d.cid + ".yml")) as f, open(path) as g:
            check(f.read() == g.read(), "<id>.yml is not the manifest")
        envf = os.path.join(out, d.cid + ".env")
        check(os.stat(envf).st_mode & 0o077 == 0, "env file is readable by others")
        with open(envf) as f:
            env = [ln for ln in f.read().splitlines() if ln and not ln.startswith("#")]
        check([ln.split("=")[0] for ln in env] == ["ESS_AMQP_URL", "ESS_PG_URL", "P_HMAC"],
              "env file: %r" % env)
        check(env[2] == "P_HMAC=", "a secret got a value: %r" % env)
        if shutil.which("systemd-analyze"):
            v = subprocess.run(["systemd-analyze", "verify", os.path.join(out, "ess-worker@.service")],
                               capture_output=True, text=True, timeout=60)
            noise = [ln for ln in (v.stdout + v.stderr).splitlines()
                     if ln and "is not executable" not in ln and "No such file" not in ln]
            check(not noise, "systemd-analyze verify: %s" % noise)
    finally:
        d.stop()


def test_render_compose():
    d = Deployed()
    try:
        path = d.file("m.yml", "auth: {type: bearer, token_env: P_TOKEN}\n")
        r = d.deploy(path, "--target", "compose")
        block = write(d.tmp, "override.yml", r.stdout)
        svc = yaml.safe_load(r.stdout)["services"]["ess-push-" + d.cid]
        check(svc["command"] == ["--manifest", "/etc/ess/%s.yml" % d.cid], "svc: %r" % svc)
        check(svc["volumes"] == ["%s:/etc/ess/%s.yml:ro" % (path, d.cid)], "svc: %r" % svc)
        check(svc["depends_on"] == {"rabbitmq": {"condition": "service_healthy"},
                                    "postgres": {"condition": "service_healthy"}}, "depends_on")
        check(svc["restart"] == "on-failure" and svc["stop_grace_period"] == "30s", "svc: %r" % svc)
        check(svc.get("user") == "65534:65534" and svc.get("read_only") is True and
              svc.get("cap_drop") == ["ALL"] and
              svc.get("security_opt") == ["no-new-privileges:true"], "hardening: %r" % svc)
        check(set(svc["environment"]) == {"ESS_AMQP_URL", "ESS_PG_URL", "P_TOKEN"},
              "environment: %r" % svc["environment"])
        dc = shutil.which("docker-compose")
        if dc is None:
            print("docker-compose not installed: config check skipped")
            return
        c = subprocess.run([dc, "-f", os.path.join(SRC, "docker-compose.yml"), "-f", block,
                            "config", "--services"], capture_output=True, text=True, timeout=60,
                           cwd=SRC)
        check(c.returncode == 0, "docker-compose config: %s" % c.stderr)
        services = c.stdout.split()
        check("ess-push-" + d.cid in services and "rabbitmq" in services, "services: %r"
              % services)
        # One worker per example manifest: checked by tests/deploy/test_deploy_files.py.
    finally:
        d.stop()


# -------------------------------------------------------------------- dev --

def test_dev_up_status_down():
    state = state_dir("hms-dev-")
    env = {"ESS_AMQP_URL": "", "ESS_PG_URL": "", "ESS_STACK_FAST": "1"}
    up = False
    try:
        r = hms(state, "dev", "status", env=env, check_rc=69)
        check("down" in r.stdout, "status before up: %r" % r.stdout)
        r = hms(state, "dev", "up", env=env, timeout=200, check_rc=0)
        up = True
        urls = re.findall(r"(amqp://\S+|postgresql://\S+)", r.stdout)
        check(len(urls) == 2, "up should print both URLs: %r" % r.stdout)
        r = hms(state, "dev", "status", env=env, check_rc=0)
        check(re.search(r"rabbitmq\s+up", r.stdout) and re.search(r"postgres\s+up", r.stdout),
              "status: %r" % r.stdout)
        r = hms(state, "dev", "up", env=env, timeout=200, check_rc=0)  # idempotent
        check(re.findall(r"(amqp://\S+|postgresql://\S+)", r.stdout) == urls, "new URLs on re-up")
        # With no ESS_*_URL set, hms finds the local stack by itself.
        m = write(state, "m.yml", manifest(unique_id("devup"), "http://127.0.0.1:9/"))
        r = hms(state, "ess", "diff", m, env=env, check_rc=1)
        check("not deployed yet" in r.stdout, "diff via the local stack: %r" % r.stdout)
        pidfiles = [os.path.join(state, "dev", "rabbit", "rabbit.pid"),
                    os.path.join(state, "dev", "pg", "postmaster.pid")]
        pids = []
        for p in pidfiles:
            with open(p) as f:
                pids.append(int(f.readline().strip()))
        hms(state, "dev", "down", env=env, timeout=200, check_rc=0)
        up = False
        check(not any(pid_alive(p) for p in pids), "servers left running: %r" % pids)
        hms(state, "dev", "status", env=env, check_rc=69)
        hms(state, "dev", "down", env=env, timeout=200, check_rc=0)  # twice is fine
    finally:
        if up:
            hms(state, "dev", "down", env=env, timeout=200)
        shutil.rmtree(state, ignore_errors=True)


def test_dev_partner():
    import socket
    import urllib.request
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen([esslib.HMS, "dev", "partner", "--port", str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline().strip()
        check(first == "partner listening on http://127.0.0.1:%d/" % port, "first line %r" % first)
        req = urllib.request.Request("http://127.0.0.1:%d/dmv/permits" % port, method="POST",
                                     data=b'{"PERMIT_NUM":"P-1"}',
                                     headers={"Content-Type": "application/json",
                                              "Idempotency-Key": '"c:1"', "X-Other": "no"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            check(resp.status == 200 and json.loads(resp.read()) == {"ok": True}, "answer")
        lines = [p.stdout.readline().rstrip("\n") for _ in range(4)]
        check(lines[0] == "POST /dmv/permits", "request line: %r" % lines)
        check('  Idempotency-Key: "c:1"' in lines and '  {"PERMIT_NUM":"P-1"}' in lines,
              "printed: %r" % lines)
        check(not any("X-Other" in ln for ln in lines), "uninteresting header printed")
        p.send_signal(signal.SIGTERM)
        check(p.wait(10) == 0, "partner exit code %r" % p.returncode)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


if __name__ == "__main__":
    esslib.check(esslib.PG_URL, "ESS_PG_URL is not set: run under with_stack.sh")
    esslib.run([test_deploy_local_delivers, test_deploy_again_replaces_without_loss, test_stop,
                test_deploy_refuses_bad_manifest_and_missing_service,
                test_deploy_worker_that_cannot_start, test_diff, test_rollback,
                test_auto_rollback, test_render_k8s, test_k8s_example_is_current,
                test_render_systemd, test_render_compose, test_dev_partner,
                test_dev_up_status_down])
