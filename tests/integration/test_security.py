"""ess-it-security: the tamper-evident audit chain (hms ess audit verify finds
an edited and a removed row), a planted secret that appears nowhere (logs,
heartbeats on the bus and in Postgres, a pg_dump of the whole database), and
hostile keys and fields (quotes, backslashes, NUL, SQL fragments) that flow
through the journal, tickets and dead letters byte for byte."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (AMQP_URL, PG_URL, Bus, Partner, Worker, audit_attempts,  # noqa: E402
                    check, hms, manifest, run, sql, state_dir, unique_id, wait_for_queue,
                    wait_until)

import psycopg2  # noqa: E402


def with_worker(extra, body, env=None):
    """Run body(cid, topic, partner, bus, worker) with a fresh connector."""
    cid = unique_id("it-sec")
    partner = Partner()
    worker = Worker(manifest(cid, partner.url("/in"), extra), env=env).start()
    bus = Bus()
    try:
        wait_for_queue(cid, worker=worker)
        try:
            body(cid, "it.%s.changed" % cid, partner, bus, worker)
        except Exception:
            print("--- worker log (%s):\n%s" % (worker.log, worker.log_text()), file=sys.stderr)
            raise
        code = worker.stop()
        check(code == 0, "SIGTERM exit code %r, want 0\n%s" % (code, worker.log_text()))
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        partner.stop()


def tamper(statement, *args):
    """Change ess_audit as the table's owner can: past the append-only trigger."""
    conn = psycopg2.connect(PG_URL)
    try:
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE ess_audit DISABLE TRIGGER ess_audit_no_change")
            cur.execute(statement, args)
            cur.execute("ALTER TABLE ess_audit ENABLE TRIGGER ess_audit_no_change")
        conn.commit()
    finally:
        conn.close()


def verify(state, cid):
    return hms(state, "ess", "audit", "verify", cid)


# ------------------------------------------------------------------ audit --

def test_audit_chain_names_altered_and_removed_rows():
    state = state_dir()
    tmp = tempfile.mkdtemp(prefix="it-sec-")

    def body(cid, topic, partner, bus, worker):
        # the manifest version first, as `hms ess deploy` records it
        path = os.path.join(tmp, "m.yml")
        with open(worker.manifest) as f, open(path, "w") as g:
            g.write(f.read())
        hms(state, "ess", "deploy", path, "--target", "systemd", "--out", tmp, check_rc=0)
        partner.mode(mode="fail", status=503)
        bus.publish(topic, {"permit_id": "A"}, message_id="a-1")
        wait_until(lambda: partner.count() >= 2, 30, "two failed attempts")
        partner.mode(mode="ok")
        for i in range(2, 6):
            bus.publish(topic, {"permit_id": "K%d" % i}, message_id="a-%d" % i)
        wait_until(lambda: len({r["headers"].get("x-ess-event-id") for r in partner.received()
                                if r["status"] == 200}) == 5, 30, "five deliveries")
        attempts0 = partner.count()
        wait_until(lambda: len(audit_attempts(cid)) == partner.count(), 15,
                   "an audited attempt per request")
        # a second version recorded while the worker holds the chain head: its
        # next append collides, re-reads the head and chains after the manifest
        with open(path, "a") as g:
            g.write("# version 2\n")
        hms(state, "ess", "deploy", path, "--target", "systemd", "--out", tmp, check_rc=0)
        for i in range(6, 8):
            bus.publish(topic, {"permit_id": "K%d" % i}, message_id="a-%d" % i)
        wait_until(lambda: partner.count() >= attempts0 + 2, 30, "two more deliveries")
        attempts = partner.count()
        wait_until(lambda: len(audit_attempts(cid)) == attempts, 15,
                   "%d attempts in ess_audit" % attempts)
        check(sql("SELECT count(*) FROM ess_audit WHERE chain = %s AND kind = 'manifest'",
                  cid)[0][0] == 2, "two manifest versions on the chain")
        kinds = [r[0] for r in sql("SELECT kind FROM ess_audit WHERE chain = %s ORDER BY n", cid)]
        check(kinds[0] == "manifest", "the manifest version is row 1: %r" % kinds)
        check(set(kinds) == {"manifest", "attempts"}, "row kinds: %r" % kinds)
        got = audit_attempts(cid)
        first = got[0][1]
        check(first["event_id"] == "a-1" and first["status"] == 503 and "error" in first,
              "first attempt: %r" % first)
        check(all(isinstance(a.get("at_ms"), int) for _, a in got)
              and [a["at_ms"] for _, a in got] == sorted(a["at_ms"] for _, a in got),
              "every attempt carries its own time, in order: %r" % got)
        # the rows tampered with below: an attempts row, and a later row
        edit_n = got[-1][0]
        check(edit_n > 1 and len(kinds) >= edit_n, "rows: %r" % kinds)
        r = verify(state, cid)
        check(r.returncode == 0 and "chain intact" in r.stdout,
              "verify of an intact chain: %d %r %r" % (r.returncode, r.stdout, r.stderr))

        # the trigger refuses edits from anyone who does not disable it
        try:
            sql("UPDATE ess_audit SET content = '{}' WHERE chain = %s AND n = 2", cid)
            raise AssertionError("an UPDATE of ess_audit was allowed")
        except psycopg2.Error as e:
            check("append-only" in str(e), "trigger message: %s" % e)

        # edit one attempt of an attempts row past the trigger: its row is named
        (orig,) = sql("SELECT content FROM ess_audit WHERE chain = %s AND n = %s", cid, edit_n)[0]
        tamper("UPDATE ess_audit SET content = regexp_replace(content, '\"status\":',"
               " '\"status\":1') WHERE chain = %s AND n = %s", cid, edit_n)
        r = verify(state, cid)
        check(r.returncode == 65 and ("row %d altered" % edit_n) in r.stderr,
              "verify after an edit of row %d: %d %r" % (edit_n, r.returncode, r.stderr))
        tamper("UPDATE ess_audit SET content = %s WHERE chain = %s AND n = %s", orig, cid, edit_n)
        check(verify(state, cid).returncode == 0, "verify after undoing the edit")

        # the recorded manifest body edited (ess_manifests is not chained itself,
        # but its SHA-256 is)
        (sha, body) = sql("SELECT sha, body FROM ess_manifests WHERE connector = %s"
                          " ORDER BY deployed_at LIMIT 1", cid)[0]
        sql("UPDATE ess_manifests SET body = body || '# x' WHERE connector = %s AND sha = %s",
            cid, sha)
        r = verify(state, cid)
        check(r.returncode == 65 and "manifest version" in r.stderr and "altered" in r.stderr,
              "verify after a manifest edit: %d %r" % (r.returncode, r.stderr))
        sql("UPDATE ess_manifests SET body = %s WHERE connector = %s AND sha = %s", body, cid,
            sha)
        check(verify(state, cid).returncode == 0, "verify after undoing the manifest edit")

        # remove row 2 (an attempts row; the chain has at least 4): named
        tamper("DELETE FROM ess_audit WHERE chain = %s AND n = 2", cid)
        r = verify(state, cid)
        check(r.returncode == 65 and "row 2 removed" in r.stderr,
              "verify after a delete: %d %r" % (r.returncode, r.stderr))
        r = hms(state, "ess", "audit", "verify", "no-such-connector")
        check(r.returncode == 66, "verify of an unknown chain: %d" % r.returncode)
    try:
        with_worker("", body)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


# ---------------------------------------------------------------- secrets --

def pg_dump_text():
    exe = shutil.which("pg_dump") or "/usr/lib/postgresql/15/bin/pg_dump"
    r = subprocess.run([exe, "--data-only", "--no-owner", PG_URL], capture_output=True,
                       timeout=120)
    check(r.returncode == 0, "pg_dump failed: %s" % r.stderr.decode(errors="replace"))
    return r.stdout


def test_planted_secret_appears_nowhere():
    secret_key = os.urandom(24)
    hmac_secret = "whsec_" + base64.b64encode(secret_key).decode()
    password = "pw-" + os.urandom(12).hex()
    token = "tok-" + os.urandom(12).hex()
    env = {"IT_SEC_HMAC": hmac_secret, "IT_SEC_PASSWORD": password, "IT_SEC_TOKEN": token}
    forms = [hmac_secret, base64.b64encode(secret_key).decode(), password, token,
             base64.b64encode(("u:" + password).encode()).decode()]

    def body(cid, topic, partner, bus, worker):
        ops = bus.listen("hms.ops", "ess.#.%s" % cid)
        partner.mode(mode="fail", status=503)
        bus.publish(topic, {"permit_id": "S1"}, message_id="s-1")
        wait_until(lambda: partner.count() >= 2, 30, "failed attempts (error paths logged)")
        partner.mode(mode="fail", status=400)  # parked: a dead letter row
        wait_until(lambda: sql("SELECT count(*) FROM ess_dead_letters WHERE connector = %s",
                               cid)[0][0] == 1, 30, "the event parked")
        partner.mode(mode="ok")
        bus.publish(topic, {"permit_id": "S2"}, message_id="s-2")
        wait_until(lambda: any(r["status"] == 200 for r in partner.received()), 30,
                   "a delivery")
        got = partner.received()[-1]["headers"]
        check(got.get("webhook-signature", "").startswith("v1,"), "signed: %r" % got)
        wait_until(lambda: sql("SELECT count(*) FROM ess_heartbeats WHERE connector = %s",
                               cid)[0][0] >= 1, 15, "a heartbeat row")
        heartbeats = wait_until(lambda: bus.drain(ops), 15, "heartbeats on hms.ops")
        worker.signal(1)  # SIGHUP: the reload path logs too
        worker.wait_log("reload")
        places = {"worker log": worker.log_text().encode(),
                  "hms.ops messages": b"\n".join(b for _, b in heartbeats),
                  "pg_dump": pg_dump_text()}
        for where, text in places.items():
            for f in forms:
                check(f.encode() not in text, "the secret (%s...) is in the %s" % (f[:8], where))
        check(cid.encode() in places["pg_dump"], "the dump holds the connector's rows")
    with_worker("auth: {type: hmac, secret_env: IT_SEC_HMAC}\n", body, env=env)


# ---------------------------------------------------------------- hostile --

HOSTILE_KEYS = [
    "O'Brien", "a\\b\\\\c", "\"quoted\"", "x'); DROP TABLE ess_journal; --",
    "$1 $$ $q$", "%s %d %n", "\u00e9\u4e2d\U0001F600", "tab\there", "line\nbreak",
    "' OR '1'='1", "\\x00", "E'\\\\'",
]


def test_hostile_keys_and_fields_intact():
    def body(cid, topic, partner, bus, worker):
        park_key = HOSTILE_KEYS[3]
        partner.mode(mode="ok", for_key={"field": "permit_id", "value": park_key,
                                         "status": 400})
        sent = {}
        for i, k in enumerate(HOSTILE_KEYS):
            ev = {"permit_id": k, "note": "v%d %s" % (i, k), k: "field named by the key"}
            sent[k] = ev
            bus.publish(topic, ev, message_id="h-%d-%s" % (i, k))
        # a NUL cannot be in JSON text jansson reads: the whole message goes
        # to the dead-letter queue unchanged
        raw = b'{"permit_id": "nul\\u0000key", "x": 1}'
        bus.publish(topic, raw, message_id="h-nul")
        n = len(HOSTILE_KEYS)
        wait_until(lambda: len(partner.received()) >= n, 30, "every hostile event sent")
        for rec in partner.received():
            got = json.loads(rec["body"])
            k = got["permit_id"]
            check(k in sent and got == sent[k], "delivered %r, sent %r" % (got, sent.get(k)))
        journal = dict(sql("SELECT key, body FROM ess_journal WHERE connector = %s", cid))
        check(set(journal) == set(HOSTILE_KEYS), "journal keys %r" % sorted(journal))
        for k, b in journal.items():
            check(json.loads(b) == sent[k], "journal body of %r: %r" % (k, b))
        wait_until(lambda: sql("SELECT count(*) FROM ess_tickets WHERE connector = %s", cid)[0][0]
                   >= n, 15, "a ticket per event")
        tickets = {r[0]: r[1] for r in sql("SELECT key, outcome FROM ess_tickets"
                                           " WHERE connector = %s", cid)}
        check(set(tickets) == set(HOSTILE_KEYS), "ticket keys %r" % sorted(tickets))
        check(tickets[park_key] == "parked", "the 400 was parked: %r" % tickets[park_key])
        dl = sql("SELECT key, body FROM ess_dead_letters WHERE connector = %s", cid)
        check(len(dl) == 1 and dl[0][0] == park_key and json.loads(dl[0][1]) == sent[park_key],
              "dead letter %r" % dl)
        r = hms(state_dir(), "ess", "tickets", cid, "--key", park_key, "--json")
        rows = json.loads(r.stdout or "[]")
        check(r.returncode == 0 and len(rows) == 1 and rows[0]["key"] == park_key,
              "hms ess tickets --key with a hostile key: %r %r" % (r.stdout, r.stderr))
        q = "ess.%s.dead" % cid
        msgs = wait_until(lambda: bus.drain(q), 15, "the NUL event on %s" % q)
        check([b for _, b in msgs] == [raw], "dead-lettered bytes %r, sent %r" % (msgs, raw))
        check(sql("SELECT count(*) FROM ess_journal")[0][0] > 0, "ess_journal still exists")
        # the audit chain carries the keys (quoted and escaped in its array
        # parameters, and inside an attempts row's JSON) intact, and verifies
        wait_until(lambda: len(audit_attempts(cid)) >= n, 15, "an audited attempt per event")
        audited = {a["key"] for _, a in audit_attempts(cid)}
        check(audited == set(HOSTILE_KEYS), "audited keys %r" % sorted(audited))
        r = verify(state_dir(), cid)
        check(r.returncode == 0 and "chain intact" in r.stdout,
              "verify with hostile keys: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    with_worker("tickets: all\n", body)


# ------------------------------------------------------------------ amqps --

def test_amqps_verifies_the_broker_certificate():
    """The stack's RabbitMQ has a TLS listener (stack.sh: ESS_AMQPS_URL, its CA
    in ESS_STACK_CA_FILE): rabbitmq-c's OpenSSL socket against Erlang's TLS."""
    from test_tls_auth import make_ca
    url = os.environ.get("ESS_AMQPS_URL")
    ca = os.environ.get("ESS_STACK_CA_FILE")
    check(url and ca, "the stack has no TLS listener (ESS_AMQPS_URL): stack.sh up again")
    tmp = tempfile.mkdtemp(prefix="it-sec-ca-")
    try:
        env = {"ESS_AMQP_URL": url, "ESS_AMQP_CA_FILE": ca}

        def body(cid, topic, partner, bus, worker):
            bus.publish(topic, {"permit_id": "T1"}, message_id="t-1")
            wait_until(lambda: partner.count() >= 1, 30, "a delivery consumed over amqps")
            check("bus connected" in worker.log_text(), "connected over amqps")
        with_worker("", body, env=env)

        # a broker whose certificate the CA file does not vouch for: no connection
        make_ca(tmp, "rogue", "ESS IT rogue CA")
        cid = unique_id("it-sec")
        env["ESS_AMQP_CA_FILE"] = os.path.join(tmp, "rogue.pem")
        w = Worker(manifest(cid, "http://127.0.0.1:9/x"), env=env).start()
        try:
            w.wait_log("SSL peer cert verification failed", 30)
            check("consuming" not in w.log_text(), "consumed over an untrusted TLS connection")
        finally:
            w.kill9()
        # a plain-text port behind an amqps:// URL: refused, not spoken to in clear
        plain = AMQP_URL.replace("amqp://", "amqps://").replace("127.0.0.1", "localhost")
        env.update({"ESS_AMQP_URL": plain, "ESS_AMQP_CA_FILE": ca})
        w = Worker(manifest(cid, "http://127.0.0.1:9/x"), env=env).start()
        try:
            w.wait_log("SSL handshake failed", 30)
            check("consuming" not in w.log_text(), "amqps:// fell back to plain AMQP")
        finally:
            w.kill9()
        # a CA file that is not there: a configuration error naming it
        env["ESS_AMQP_URL"] = url
        env["ESS_AMQP_CA_FILE"] = "/nonexistent/ca.pem"
        w = Worker(manifest(cid, "http://127.0.0.1:9/x"), env=env).start()
        try:
            w.wait_log("/nonexistent/ca.pem", 30)
        finally:
            w.kill9()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run([test_audit_chain_names_altered_and_removed_rows, test_planted_secret_appears_nowhere,
         test_hostile_keys_and_fields_intact, test_amqps_verifies_the_broker_certificate])
