"""ess-ut-deploy-files: the committed deploy files, checked without services.

deploy/k8s/*.yaml (rendered by `hms ess deploy --target k8s`; ess-it-hms_deploy
checks they are current), deploy/systemd/ess-worker@.service, docker-compose.yml
and the Dockerfile keep the properties the operator docs promise.
Run: /usr/bin/python3 tests/deploy/test_deploy_files.py SRC_DIR
"""
import glob
import os
import sys

import yaml

SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def read(rel):
    with open(os.path.join(SRC, rel)) as f:
        return f.read()


def k8s():
    files = glob.glob(os.path.join(SRC, "deploy", "k8s", "*.yaml"))
    check(files, "no rendered example in deploy/k8s/")
    for path in files:
        docs = [d for d in yaml.safe_load_all(open(path)) if d]
        kinds = {d["kind"]: d for d in docs}
        check(set(kinds) == {"ConfigMap", "Deployment"}, "%s: kinds %r" % (path, list(kinds)))
        cm, dep = kinds.get("ConfigMap", {}), kinds.get("Deployment", {})
        cid = os.path.basename(path)[:-5]
        body = cm.get("data", {}).get(cid + ".yml", "")
        check(body == read("manifests/%s.yml" % cid), "%s: ConfigMap is not manifests/%s.yml"
              % (path, cid))
        spec = dep.get("spec", {})
        check(spec.get("strategy") == {"type": "Recreate"} and spec.get("replicas") == 1,
              "%s: 1 replica, Recreate" % path)
        pod = spec.get("template", {}).get("spec", {})
        c = pod.get("containers", [{}])[0]
        check(all("secretKeyRef" in e.get("valueFrom", {}) for e in c.get("env", [])),
              "%s: env not from secrets" % path)
        check("livenessProbe" in c and "resources" in c, "%s: probe/resources" % path)
        psc = pod.get("securityContext", {})
        csc = c.get("securityContext", {})
        check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0 and
              csc.get("readOnlyRootFilesystem") is True and
              csc.get("allowPrivilegeEscalation") is False and
              csc.get("capabilities", {}).get("drop") == ["ALL"] and
              csc.get("privileged", False) is False,
              "%s: securityContext (non-root, read-only, no escalation, no capabilities)" % path)


def systemd():
    lines = set(read("deploy/systemd/ess-worker@.service").splitlines())
    for want in ("DynamicUser=yes", "ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                 "Restart=on-failure", "KillSignal=SIGTERM", "TimeoutStopSec=30",
                 "EnvironmentFile=/etc/ess/%i.env",
                 "ExecStart=/usr/local/bin/ess-push --manifest /etc/ess/%i.yml",
                 # hardening (SECURITY.md): no capabilities, no new ones, no kernel knobs
                 "PrivateDevices=yes", "CapabilityBoundingSet=", "AmbientCapabilities=",
                 "RestrictNamespaces=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes",
                 "MemoryDenyWriteExecute=yes", "ProtectKernelTunables=yes",
                 "ProtectKernelModules=yes", "ProtectKernelLogs=yes", "ProtectControlGroups=yes",
                 "ProtectClock=yes", "SystemCallArchitectures=native",
                 "SystemCallFilter=@system-service", "UMask=0077"):
        check(want in lines, "ess-worker@.service lacks %r" % want)
    for bad in ("User=root", "DynamicUser=no", "NoNewPrivileges=no", "PrivateTmp=no"):
        check(bad not in lines, "ess-worker@.service has %r" % bad)


def reconcile_k8s():
    """deploy/k8s/reconcile/<id>.yaml: a nightly CronJob running ess-reconcile on
    the push worker's ConfigMap, one run at a time, within 1 GiB."""
    files = glob.glob(os.path.join(SRC, "deploy", "k8s", "reconcile", "*.yaml"))
    check(files, "no CronJob example in deploy/k8s/reconcile/")
    for path in files:
        cid = os.path.basename(path)[:-5]
        docs = {d["kind"]: d for d in yaml.safe_load_all(open(path)) if d}
        cj = docs.get("CronJob", {})
        check(cj.get("apiVersion") == "batch/v1", "%s: CronJob batch/v1" % path)
        spec = cj.get("spec", {})
        check(spec.get("concurrencyPolicy") == "Forbid" and len(spec.get("schedule", "").split())
              == 5, "%s: schedule / concurrencyPolicy" % path)
        pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
        check(pod.get("restartPolicy") in ("Never", "OnFailure"), "%s: restartPolicy" % path)
        c = (pod.get("containers") or [{}])[0]
        check(c.get("command") == ["/usr/local/bin/ess-reconcile"] and
              c.get("args", [])[:2] == ["--manifest", "/etc/ess/%s.yml" % cid],
              "%s: runs ess-reconcile on /etc/ess/%s.yml" % (path, cid))
        check(all("secretKeyRef" in e.get("valueFrom", {}) for e in c.get("env", [])),
              "%s: env not from secrets" % path)
        check(c.get("resources", {}).get("limits", {}).get("memory") == "1Gi",
              "%s: memory limit 1Gi (the 1,000,000-record target)" % path)
        check(pod.get("securityContext", {}).get("runAsNonRoot") is True and
              c.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
              "%s: securityContext" % path)
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        check(vols.get("manifest", {}).get("configMap", {}).get("name") == "ess-" + cid,
              "%s: mounts the push worker's ConfigMap ess-%s" % (path, cid))
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        report = c.get("args", [])[c.get("args", []).index("--report") + 1] \
            if "--report" in c.get("args", []) else ""
        check(any(report.startswith(m + "/") for m in mounts if m != "/etc/ess"),
              "%s: the report %r is not on a writable mount" % (path, report))
        check(os.path.exists(os.path.join(SRC, "manifests", cid + ".yml")) and
              "reconcile_url:" in read("manifests/%s.yml" % cid),
              "%s: manifests/%s.yml has no reconcile_url" % (path, cid))


def reconcile_systemd():
    svc = set(read("deploy/systemd/ess-reconcile@.service").splitlines())
    for want in ("Type=oneshot", "DynamicUser=yes", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "StateDirectory=ess-reconcile", "MemoryMax=1G",
                 "EnvironmentFile=/etc/ess/%i.env",
                 "ExecStart=/usr/local/bin/ess-reconcile --manifest /etc/ess/%i.yml "
                 "$ESS_RECONCILE_ARGS"):
        check(want in svc, "ess-reconcile@.service lacks %r" % want)
    timer = set(read("deploy/systemd/ess-reconcile@.timer").splitlines())
    for want in ("[Timer]", "Persistent=true", "WantedBy=timers.target"):
        check(want in timer, "ess-reconcile@.timer lacks %r" % want)
    check(any(ln.startswith("OnCalendar=") for ln in timer), "ess-reconcile@.timer: OnCalendar")


def compose():
    dc = yaml.safe_load(read("docker-compose.yml"))
    svcs = dc["services"]
    for name in ("rabbitmq", "postgres"):
        check("healthcheck" in svcs.get(name, {}), "%s has no healthcheck" % name)
    for name, svc in svcs.items():
        for port in svc.get("ports", []):
            check(str(port).startswith("127.0.0.1:"), "%s publishes %r beyond loopback"
                  % (name, port))
        if name.startswith("ess-"):
            check(str(svc.get("user", "0")).split(":")[0] not in ("0", "root") and
                  svc.get("read_only") is True and svc.get("cap_drop") == ["ALL"] and
                  "no-new-privileges:true" in svc.get("security_opt", []) and
                  not svc.get("privileged", False),
                  "%s: not unprivileged and read-only (user, read_only, cap_drop, "
                  "no-new-privileges)" % name)
    for m in sorted(glob.glob(os.path.join(SRC, "manifests", "*.yml"))):
        if m.endswith(".tests.yml"):
            continue  # mapping test cases (hms ess test), not connectors
        cid = os.path.basename(m)[:-4]
        kind = yaml.safe_load(read("manifests/%s.yml" % cid))["kind"]
        name = "ess-%s-%s" % (kind, cid)
        svc = svcs.get(name)
        check(svc is not None, "docker-compose.yml has no %s for manifests/%s.yml" % (name, cid))
        if svc is None:
            continue
        check("./manifests/%s.yml:/etc/ess/%s.yml:ro" % (cid, cid) in svc.get("volumes", []),
              "%s does not mount its manifest" % name)
        check(svc.get("command") == ["--manifest", "/etc/ess/%s.yml" % cid],
              "%s command" % name)
        if kind != "push":
            check(svc.get("entrypoint") == ["/usr/local/bin/ess-%s" % kind],
                  "%s runs ess-%s" % (name, kind))


def dockerfile():
    text = read("Dockerfile")
    check(text.count("\nFROM ") + text.startswith("FROM ") >= 2, "Dockerfile is not multi-stage")
    users = [ln.split()[1] for ln in text.splitlines() if ln.startswith("USER ")]
    check(users and not users[-1].startswith(("0", "root")), "Dockerfile runs as root")
    check("/build/deploy/hms" in text, "Dockerfile does not ship hms")
    check("/build/workers/reconcile/ess-reconcile" in text, "Dockerfile does not ship ess-reconcile")


for t in (k8s, systemd, reconcile_k8s, reconcile_systemd, compose, dockerfile):
    t()
for f in failures:
    print("FAIL " + f)
print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
