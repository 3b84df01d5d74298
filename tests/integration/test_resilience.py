"""ess-it-resilience: nothing is lost when the partner is down, the worker is
killed -9, the broker restarts or Postgres restarts."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (Bus, Partner, Worker, audit_attempts, check, manifest, run,  # noqa: E402
                    sql, stack, unique_id, wait_for_queue, wait_until)


def delivered(partner):
    """(event id, body) of every 2xx the partner answered, in arrival order."""
    out = []
    for r in partner.received():
        if 200 <= r.get("status", 200) < 300:
            h = {k.lower(): v for k, v in r["headers"].items()}
            out.append((h.get("x-ess-event-id"), json.loads(r["body"])))
    return out


def publish_range(bus, topic, lo, hi, keys):
    for i in range(lo, hi):
        bus.publish(topic, {"permit_id": "K%d" % (i % keys), "n": i}, message_id="ev-%d" % i)


def all_delivered(partner, n):
    got = {eid for eid, _ in delivered(partner)}
    missing = n - len(got & {"ev-%d" % i for i in range(n)})
    return missing == 0 or None


def check_key_order(partner):
    """Per key, first deliveries of each event come in publish order."""
    seen = set()
    last = {}
    for eid, body in delivered(partner):
        if eid in seen:
            continue
        seen.add(eid)
        k = body["permit_id"]
        check(body["n"] > last.get(k, -1),
              "key %s: event %d delivered after %d" % (k, body["n"], last.get(k, -1)))
        last[k] = body["n"]


def connector(prefix, extra=""):
    cid = unique_id(prefix)
    partner = Partner()
    worker = Worker(manifest(cid, partner.url(), extra))
    return cid, "it.%s.changed" % cid, partner, worker


def test_partner_outage_drains_in_order_nothing_parked():
    cid, topic, partner, worker = connector("it-out", "max_retry: 2\n")
    bus = Bus()
    ops = bus.listen("hms.ops", "ess.heartbeat." + cid)
    worker.start()
    try:
        wait_for_queue(cid, worker=worker)
        partner.mode(mode="fail", status=503)
        outage_start = time.monotonic()
        publish_range(bus, topic, 0, 300, 30)

        def partner_down_seen():
            return any(json.loads(b)["state"] == "partner_down" for _, b in bus.drain(ops))
        wait_until(partner_down_seen, 20, "a heartbeat with state partner_down")
        # The outage itself lasts 15 s: that is the scenario, not a synchronisation.
        time.sleep(max(0.0, 15 - (time.monotonic() - outage_start)))
        check(len(delivered(partner)) == 0, "nothing delivered while the partner is down")
        partner.mode(mode="ok")
        wait_until(lambda: all_delivered(partner, 300), 60, "all 300 events after the outage")
        check_key_order(partner)
        parked = sql("SELECT count(*) FROM ess_dead_letters WHERE connector=%s", cid)[0][0]
        check(parked == 0, "%d events parked for an outage, want 0" % parked)
        attempts_during_outage = sum(1 for r in partner.received() if r.get("status") == 503)
        check(attempts_during_outage < 300,
              "the breaker probes one at a time: %d failed attempts for 300 events"
              % attempts_during_outage)
        check(worker.stop() == 0, "SIGTERM exits 0")
    except Exception:
        print("--- worker log (%s):\n%s" % (worker.log, worker.log_text()[-6000:]), file=sys.stderr)
        raise
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        partner.stop()


def test_sigkill_mid_stream_loses_nothing():
    cid, topic, partner, worker = connector("it-kill", "tickets: all\n")
    bus = Bus()
    worker.start()
    try:
        wait_for_queue(cid, worker=worker)
        publish_range(bus, topic, 0, 2000, 100)
        wait_until(lambda: len(delivered(partner)) >= 300, 60, "300 deliveries before the kill")
        worker.kill9()
        n_at_kill = len(delivered(partner))
        worker.start()
        wait_until(lambda: all_delivered(partner, 2000), 120,
                   "all 2000 events after kill -9 at %d" % n_at_kill)
        check_key_order(partner)
        last = sql("SELECT max(seq) FROM ess_journal WHERE connector=%s", cid)[0][0]
        wait_until(lambda: sql("SELECT delivered_seq FROM ess_offsets WHERE connector=%s",
                               cid)[0][0] == last, 20, "the offset to reach the last event")
        tickets = sql("SELECT count(DISTINCT seq) FROM ess_tickets WHERE connector=%s"
                      " AND outcome='delivered'", cid)[0][0]
        check(tickets == 2000, "a delivered ticket for each of 2000 events, got %d" % tickets)
        check(worker.stop() == 0, "SIGTERM exits 0")
    except Exception:
        print("--- worker log (%s):\n%s" % (worker.log, worker.log_text()[-6000:]), file=sys.stderr)
        raise
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        partner.stop()


def restart_mid_stream(prefix, what):
    cid, topic, partner, worker = connector(prefix)
    bus = Bus()
    worker.start()
    try:
        wait_for_queue(cid, worker=worker)
        publish_range(bus, topic, 0, 500, 50)
        wait_until(lambda: len(delivered(partner)) >= 50, 60, "deliveries before the restart")
        bus.close()
        stack(what)
        bus = Bus()
        publish_range(bus, topic, 500, 1000, 50)
        wait_until(lambda: all_delivered(partner, 1000), 120,
                   "all 1000 events across %s" % what)
        check(worker.alive(), "worker survived %s" % what)
        check("reconnect" in worker.log_text(), "the reconnect is logged")
        check(worker.stop() == 0, "SIGTERM exits 0")
    except Exception:
        print("--- worker log (%s):\n%s" % (worker.log, worker.log_text()[-6000:]), file=sys.stderr)
        raise
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        partner.stop()


def test_broker_restart_mid_stream():
    restart_mid_stream("it-rmq", "restart-rabbit")


def test_postgres_restart_mid_stream():
    restart_mid_stream("it-pg", "restart-pg")


def test_refused_records_hold_the_offset():
    """Audit rows, tickets and the offset commit together (one transaction on
    the worker's side session): while Postgres refuses the tickets, the offset
    stays behind the delivered events; once it takes them, all of it lands."""
    cid, topic, partner, worker = connector("it-side", "tickets: all\n")
    fn = "ess_it_refuse_" + cid.replace("-", "_")
    bus = Bus()
    worker.start()
    wait_until(lambda: sql("SELECT to_regclass('ess_tickets')")[0][0], 30, "the worker's migrations")
    sql("CREATE FUNCTION " + fn + "() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
        " IF NEW.connector = '" + cid + "' THEN RAISE EXCEPTION 'tickets refused (test)';"
        " END IF; RETURN NEW; END $f$")
    sql("CREATE TRIGGER " + fn + " BEFORE INSERT ON ess_tickets FOR EACH ROW"
        " EXECUTE FUNCTION " + fn + "()")
    try:
        wait_for_queue(cid, worker=worker)
        publish_range(bus, topic, 0, 20, 5)
        wait_until(lambda: all_delivered(partner, 20), 30, "20 events delivered")
        worker.wait_log("tickets refused (test)")
        first = sql("SELECT min(seq), max(seq) FROM ess_journal WHERE connector = %s", cid)[0]
        offset = sql("SELECT delivered_seq FROM ess_offsets WHERE connector = %s", cid)
        check(not offset or offset[0][0] < first[0],
              "offset %r passed events whose tickets were refused (seqs %r)" % (offset, first))
        check(sql("SELECT count(*) FROM ess_tickets WHERE connector = %s", cid)[0][0] == 0,
              "a ticket of the refused transaction landed")
        sql("DROP TRIGGER " + fn + " ON ess_tickets")
        wait_until(lambda: sql("SELECT delivered_seq FROM ess_offsets WHERE connector = %s",
                               cid) == [(first[1],)], 30, "offset at %d" % first[1], 0.1)
        tickets = sql("SELECT count(DISTINCT event_id) FROM ess_tickets WHERE connector = %s",
                      cid)[0][0]
        attempts = len(audit_attempts(cid))
        check(tickets == 20 and attempts >= 20,
              "after the refusal: %d tickets, %d audit attempts, want 20 and >= 20"
              % (tickets, attempts))
        code = worker.stop()
        check(code == 0, "SIGTERM exit code %r\n%s" % (code, worker.log_text()))
    finally:
        sql("DROP TRIGGER IF EXISTS " + fn + " ON ess_tickets")
        sql("DROP FUNCTION IF EXISTS " + fn + "()")
        if worker.alive():
            worker.kill9()
        bus.close()
        partner.stop()


if __name__ == "__main__":
    run([test_partner_outage_drains_in_order_nothing_parked, test_sigkill_mid_stream_loses_nothing,
         test_broker_restart_mid_stream, test_postgres_restart_mid_stream,
         test_refused_records_hold_the_offset])
