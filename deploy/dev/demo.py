"""The ESS demo: city permits flow from HMS's bus to a demo DMV partner, the
way an operator runs it -- all through `hms`.

  hms dev up                          a private RabbitMQ + Postgres on loopback
  hms dev partner --port 18080        the DMV (manifests/city2dmv.yml targets it)
  hms ess deploy manifests/city2dmv.yml
  ... HMS publishes permits.changed events (here: pika, like HMS does) ...
  hms ess ps
  hms ess stop city2dmv; hms dev down  (unless --keep)

run-demo.sh installs, builds and calls this with HMS_STATE_DIR set:
  demo.py --hms build/deploy/hms --state DIR [--created] [--keep]
--created: the state dir is the demo's own temp dir, removed at the end.
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MANIFEST = os.path.join(SRC, "manifests", "city2dmv.yml")
PARTNER_PORT = 18080
TOPIC = "permits.changed"

# Realistic changes as HMS publishes them: plain JSON and one CloudEvent.
# owner_ssn must never reach the DMV (drop), statuses become DMV codes
# (values), permit_id becomes PERMIT_NUM (rename), dates become MM/DD/YYYY.
EVENTS = [
    ("hms-permit-1", {"permit_id": "P-1001", "street": "Main St", "truck_limit": 12,
                      "status": "PENDING", "issued_on": "2026-11-26",
                      "owner_ssn": "123-45-6789", "inspector": "J. Alvarez"}),
    ("hms-permit-2", {"permit_id": "P-1002", "street": "Elm St", "truck_limit": 8,
                      "status": "CONFIRMED", "issued_on": "2026-11-25",
                      "owner_ssn": "987-65-4321"}),
    ("hms-permit-3", {"permit_id": "P-1001", "street": "Main St", "truck_limit": 10,
                      "status": "CONFIRMED", "issued_on": "2026-11-26",
                      "owner_ssn": "123-45-6789"}),
    (None, {"specversion": "1.0", "id": "ce-hms-7731", "source": "/hms/permits",
            "type": "permits.changed", "time": "2026-11-26T15:04:05Z",
            "data": {"permit_id": "P-1003", "street": "Oak Ave", "truck_limit": 20,
                     "status": "PENDING", "issued_on": "2026-11-27",
                     "owner_ssn": "555-12-3434"}}),
    ("hms-permit-4", {"permit_id": "P-1002", "street": "Elm St", "truck_limit": 8,
                      "status": "CANCELLED", "issued_on": "2026-11-25",
                      "owner_ssn": "987-65-4321"}),
]


def say(msg):
    print("\n== " + msg, flush=True)


class Demo:
    def __init__(self, args):
        self.hms_bin = args.hms
        self.state = args.state
        self.partner = None
        self.partner_out = os.path.join(self.state, "partner.out")
        self.deployed = False
        self.up = False

    def hms(self, *args, check=True, show=True, timeout=180):
        """Run hms; echo what an operator would see."""
        print("$ hms " + " ".join(args), flush=True)
        r = subprocess.run([self.hms_bin] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        if show and r.stdout:
            print(r.stdout.rstrip("\n"), flush=True)
        if check and r.returncode != 0:
            raise SystemExit("demo: `hms %s` exited %d" % (" ".join(args), r.returncode))
        return r

    def load_stack_env(self):
        """`. <state>/dev/env`: esslib (pika, psycopg2) reads ESS_AMQP_URL / ESS_PG_URL."""
        with open(os.path.join(self.state, "dev", "env")) as f:
            for line in f:
                if "=" in line and not line.startswith("#"):
                    k, v = line.rstrip("\n").split("=", 1)
                    os.environ[k] = shlex.split(v)[0] if v else ""

    def start_partner(self):
        out = open(self.partner_out, "w")
        print("$ hms dev partner --port %d &" % PARTNER_PORT, flush=True)
        self.partner = subprocess.Popen(
            [self.hms_bin, "dev", "partner", "--port", str(PARTNER_PORT)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + 10
        while "partner listening" not in self.partner_text():
            if self.partner.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("demo: the partner did not start on 127.0.0.1:%d:\n%s"
                                 % (PARTNER_PORT, self.partner_text()))
            time.sleep(0.05)
        print(self.partner_text().strip(), flush=True)

    def partner_text(self):
        try:
            with open(self.partner_out) as f:
                return f.read()
        except OSError:
            return ""

    def partner_bodies(self):
        out = []
        for line in self.partner_text().splitlines():
            if line.startswith("  {"):
                out.append(json.loads(line.strip()))
        return out

    def publish(self):
        import esslib
        bus = esslib.Bus()
        try:
            for mid, body in EVENTS:
                bus.publish(TOPIC, body, message_id=mid)
                data = body.get("data", body)
                print("  published %-14s %s %-9s truck_limit=%s%s" % (
                    mid or "(CloudEvent)", data["permit_id"], data["status"],
                    data["truck_limit"], " (owner_ssn included)" if "owner_ssn" in data else ""))
        finally:
            bus.close()

    def wait_delivered(self):
        """city2dmv has debounce_sec: 2, so a permit's rapid changes reach the DMV
        as one request with its latest state: one request per permit."""
        import esslib
        keys = {body.get("data", body)["permit_id"] for _, body in EVENTS}
        esslib.wait_until(lambda: len(self.partner_bodies()) >= len(keys), 30,
                          "the DMV partner to receive one request per permit (%d)" % len(keys))
        # `hms ess ps` reads heartbeats: wait for one that counts them (heartbeat_sec 5).
        esslib.wait_until(lambda: esslib.sql(
            "SELECT 1 FROM ess_heartbeats WHERE connector = 'city2dmv'"
            " AND (body::json->>'delivered')::int >= %s", len(keys)), 20,
            "a heartbeat counting the deliveries")

    def run(self):
        say("hms dev up: RabbitMQ + Postgres for this demo, loopback only")
        self.up = True
        self.hms("dev", "up")
        self.load_stack_env()
        say("the demo DMV partner on 127.0.0.1:%d (prints every request)" % PARTNER_PORT)
        self.start_partner()
        say("validate, record, declare, start the worker")
        self.hms("ess", "validate", MANIFEST)
        self.deployed = True
        self.hms("ess", "deploy", MANIFEST)
        say("HMS publishes %d permit changes on hms.events (%s)" % (len(EVENTS), TOPIC))
        self.publish()
        self.wait_delivered()
        say("what the DMV partner received (hms dev partner's output)")
        print(self.partner_text().split("\n", 1)[1].rstrip("\n"))
        leaked = [b for b in self.partner_bodies() if "owner_ssn" in b]
        print("\n%d changes published, %d requests (debounce_sec: 2 merged each permit's"
              " rapid changes); owner_ssn reached the DMV in %d of them"
              % (len(EVENTS), len(self.partner_bodies()), len(leaked)))
        say("hms ess ps")
        self.hms("ess", "ps", check=False)
        return 1 if leaked else 0

    def stop(self, keep):
        if keep:
            say("--keep: left running (HMS_STATE_DIR=%s)" % self.state)
            print("  worker:  hms ess stop city2dmv   (log %s/workers/city2dmv/worker.log)\n"
                  "  partner: kill %d   (output %s)\n"
                  "  stack:   hms dev down\n"
                  "  with:    export HMS_STATE_DIR=%s"
                  % (self.state, self.partner.pid if self.partner else 0, self.partner_out,
                     self.state))
            return
        say("stopping what the demo started")
        if self.deployed:
            self.hms("ess", "stop", "city2dmv", check=False)
        if self.partner is not None and self.partner.poll() is None:
            self.partner.terminate()
            try:
                self.partner.wait(10)
            except subprocess.TimeoutExpired:
                self.partner.kill()
                self.partner.wait()
        if self.up:
            self.hms("dev", "down", check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hms", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--created", action="store_true")
    args = ap.parse_args()
    os.environ["HMS_STATE_DIR"] = args.state
    for k in ("ESS_AMQP_URL", "ESS_PG_URL"):  # the local stack, not whatever is configured
        os.environ.pop(k, None)
    sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
    demo = Demo(args)
    rc = 1
    try:
        rc = demo.run()
    finally:
        demo.stop(args.keep)
        if args.created and not args.keep:
            shutil.rmtree(args.state, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
