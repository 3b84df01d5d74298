"""ess-it-delivery: shaping, headers, dedupe, dead-lettering, parking and
heartbeats, end to end through real RabbitMQ, Postgres and an HTTP partner."""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (Bus, Partner, Worker, check, manifest, run, sql, unique_id,  # noqa: E402
                    wait_for_queue, wait_until)

SHAPING = """fields: [permit_id, street, truck_limit, status, owner.name]
drop: [owner_ssn]
rename: {permit_id: PERMIT_NUM, owner.name: OWNER}
values: {status: {PENDING: "07", CONFIRMED: "08", CANCELLED: "09"}}
"""


def with_worker(extra, body):
    """Run body(cid, topic, partner, bus, worker) with a fresh connector."""
    cid = unique_id("it-del")
    partner = Partner()
    worker = Worker(manifest(cid, partner.url("/dmv/permits"), extra)).start()
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


def test_shaped_delivery_with_headers():
    def body(cid, topic, partner, bus, worker):
        bus.publish(topic, {"permit_id": "P1", "street": "Main St", "truck_limit": 12,
                            "status": "CONFIRMED", "owner_ssn": "123-45-6789",
                            "owner": {"name": "Ada", "phone": "555"}, "extra": 1},
                    message_id="m-1")
        wait_until(lambda: partner.count() >= 1, 20, "the partner to receive one POST")
        rec = partner.received()[0]
        got = json.loads(rec["body"])
        want = {"PERMIT_NUM": "P1", "street": "Main St", "truck_limit": 12, "status": "08",
                "OWNER": "Ada"}
        check(got == want, "shaped body %r, want %r" % (got, want))
        h = {k.lower(): v for k, v in rec["headers"].items()}
        check(rec["path"] == "/dmv/permits", "path %r" % rec["path"])
        check(h.get("x-ess-connector") == cid, "X-ESS-Connector %r" % h.get("x-ess-connector"))
        check(h.get("x-ess-event-id") == "m-1", "X-ESS-Event-Id %r" % h.get("x-ess-event-id"))
        check(h.get("idempotency-key") == '"%s:m-1"' % cid,
              "Idempotency-Key %r" % h.get("idempotency-key"))
        check(h.get("content-type") == "application/json", "Content-Type %r" % h)
        worker.check_comm()
    with_worker(SHAPING, body)


def test_cloudevent_shapes_data_and_uses_its_id():
    def body(cid, topic, partner, bus, worker):
        bus.publish(topic, {"specversion": "1.0", "id": "ce-42", "source": "/hms",
                            "type": "permits.changed", "time": "2026-11-26T10:00:00Z",
                            "data": {"permit_id": "P9", "street": "Elm", "status": "PENDING"}},
                    message_id="amqp-id-ignored")
        wait_until(lambda: partner.count() >= 1, 20, "the CloudEvent delivery")
        rec = partner.received()[0]
        check(json.loads(rec["body"]) == {"PERMIT_NUM": "P9", "street": "Elm", "status": "07"},
              "CloudEvent data shaped: %r" % rec["body"])
        h = {k.lower(): v for k, v in rec["headers"].items()}
        check(h.get("x-ess-event-id") == "ce-42", "event id from CloudEvents id: %r" % h)
    with_worker(SHAPING, body)


def test_same_message_id_delivered_once():
    def body(cid, topic, partner, bus, worker):
        for _ in range(2):
            bus.publish(topic, {"permit_id": "P2", "street": "A"}, message_id="dup-1")
        bus.publish(topic, {"permit_id": "P3", "street": "B"}, message_id="after-dup")
        wait_until(lambda: any(json.loads(r["body"]).get("permit_id") == "P3"
                               for r in partner.received()), 20, "the event after the dup")
        n = sum(1 for r in partner.received() if json.loads(r["body"]).get("permit_id") == "P2")
        check(n == 1, "message_id dup-1 delivered %d times, want 1" % n)
        rows = sql("SELECT count(*) FROM ess_journal WHERE connector=%s AND event_id='dup-1'", cid)
        check(rows[0][0] == 1, "journal rows for dup-1: %r" % rows)
    with_worker("", body)


def test_bad_messages_dead_lettered_and_next_delivered():
    def body(cid, topic, partner, bus, worker):
        bus.publish(topic, b"this is not json {", message_id="bad-1")
        bus.publish(topic, b"[1, 2, 3]", message_id="bad-2")
        bus.publish(topic, {"no_key_here": 1}, message_id="bad-3")
        bus.publish(topic, {"permit_id": "P4", "street": "C"}, message_id="good-1")
        wait_until(lambda: partner.count() >= 1, 20, "the good event after three bad ones")
        check(partner.bodies() == [{"permit_id": "P4", "street": "C"}],
              "only the good event delivered: %r" % partner.bodies())
        dead = "ess.%s.dead" % cid
        wait_until(lambda: bus.queue_count(dead) == 3, 20, "3 messages in %s" % dead)
        bodies = sorted(b for _, b in bus.drain(dead))
        check(bodies == sorted([b"this is not json {", b"[1, 2, 3]", b'{"no_key_here": 1}']),
              "dead-lettered bodies intact: %r" % bodies)
        check(worker.alive(), "worker still running after bad input")
        check("dead-lettered" in worker.log_text(), "dead-lettering is logged")
    with_worker("", body)


def test_400_parks_that_event_rest_delivered():
    def body(cid, topic, partner, bus, worker):
        partner.mode(mode="ok", for_key={"field": "permit_id", "value": "BAD", "status": 400})
        for i, k in enumerate(["K1", "BAD", "K2", "K3"]):
            bus.publish(topic, {"permit_id": k, "n": i}, message_id="e-%d" % i)
        wait_until(lambda: len([b for b in partner.bodies() if b["permit_id"] != "BAD"]) >= 3,
                   20, "the three good events")
        parked = wait_until(lambda: sql(
            "SELECT event_id, reason FROM ess_dead_letters WHERE connector=%s", cid), 20,
            "the 400 event parked")
        check(len(parked) == 1 and parked[0][0] == "e-1", "parked: %r" % parked)
        check("400" in parked[0][1], "park reason names the status: %r" % parked[0][1])
        n_bad = sum(1 for b in partner.bodies() if b["permit_id"] == "BAD")
        check(n_bad == 1, "a 400 is final: tried %d times, want 1" % n_bad)
        off = wait_until(lambda: sql("SELECT delivered_seq FROM ess_offsets WHERE connector=%s",
                                     cid), 10, "an offset row")
        last = sql("SELECT max(seq) FROM ess_journal WHERE connector=%s", cid)[0][0]
        wait_until(lambda: sql("SELECT delivered_seq FROM ess_offsets WHERE connector=%s",
                               cid)[0][0] == last, 10,
                   "offset to pass delivered and parked events (was %r, max %r)" % (off, last))
    with_worker("", body)


def test_max_retry_exhausted_parks():
    """A key the partner keeps refusing (503) while other keys go through is
    parked after max_retry attempts; the partner is evidently up."""
    def body(cid, topic, partner, bus, worker):
        partner.mode(mode="ok", for_key={"field": "permit_id", "value": "FLAKY", "status": 503})
        bus.publish(topic, {"permit_id": "FLAKY", "n": 1}, message_id="f-1")
        deadline = time.monotonic() + 20
        i = 0
        # Other keys keep flowing meanwhile (bounded: 20 s, one event per 50 ms).
        while not sql("SELECT 1 FROM ess_dead_letters WHERE connector=%s", cid):
            check(time.monotonic() < deadline, "FLAKY not parked within 20 s: %r"
                  % partner.bodies()[-5:])
            bus.publish(topic, {"permit_id": "FINE-%d" % i, "n": i}, message_id="g-%d" % i)
            i += 1
            time.sleep(0.05)
        parked = sql("SELECT event_id, reason, attempts FROM ess_dead_letters"
                     " WHERE connector=%s", cid)
        check(parked[0][0] == "f-1" and "503" in parked[0][1], "parked: %r" % parked)
        # max_retry counts failures while the partner is evidently up (others got
        # through in between); a retry that raced no other delivery is not counted.
        tries = sum(1 for b in partner.bodies() if b["permit_id"] == "FLAKY")
        check(3 <= tries <= 8, "max_retry: 3 counted attempts, %d tries" % tries)
        check(parked[0][2] == 3, "attempts recorded: %r" % parked)
        check(any(b["permit_id"].startswith("FINE") for b in partner.bodies()),
              "other keys delivered")
    with_worker("max_retry: 3\n", body)


def test_lone_failing_key_is_an_outage_not_parked():
    """Every delivery failing (one key, 503, nothing else flowing) looks like an
    outage: the breaker opens, nothing is parked, and it goes once the partner
    answers again."""
    def body(cid, topic, partner, bus, worker):
        partner.mode(mode="fail", status=503)
        bus.publish(topic, {"permit_id": "L1"}, message_id="l-1")
        wait_until(lambda: len(partner.received()) >= 6, 20, "six failed attempts")
        check(not sql("SELECT 1 FROM ess_dead_letters WHERE connector=%s", cid),
              "nothing parked for an outage")
        partner.mode(mode="ok")
        wait_until(lambda: any(r.get("status") == 200 for r in partner.received()), 20,
                   "delivered once the partner is back")
    with_worker("max_retry: 3\n", body)


def test_debounce_merges_rapid_changes_per_key():
    def body(cid, topic, partner, bus, worker):
        for i in range(5):
            bus.publish(topic, {"permit_id": "D", "step": i, "field%d" % i: True},
                        message_id="d-%d" % i)
        bus.publish(topic, {"permit_id": "E", "step": 0}, message_id="e-0")
        wait_until(lambda: partner.count() >= 2, 20, "one merged delivery per key")
        n_journal = sql("SELECT count(*) FROM ess_journal WHERE connector=%s", cid)[0][0]
        check(n_journal == 6, "the journal keeps every change: %d" % n_journal)
        # Quiet for the debounce period: nothing more comes (bounded wait for a 3rd POST).
        try:
            wait_until(lambda: partner.count() > 2, 2.5, "a third POST")
            check(False, "more than one delivery per key: %r" % partner.bodies())
        except AssertionError as e:
            if "more than one" in str(e):
                raise
        d = [b for b in partner.bodies() if b["permit_id"] == "D"]
        check(len(d) == 1, "key D delivered once: %r" % d)
        want = {"permit_id": "D", "step": 4, "field0": True, "field1": True, "field2": True,
                "field3": True, "field4": True}
        check(d[0] == want, "later fields win, earlier ones kept: %r" % d[0])
        ids = [{k.lower(): v for k, v in r["headers"].items()}.get("x-ess-event-id")
               for r in partner.received()]
        check("d-4" in ids, "the merged delivery carries the newest event id: %r" % ids)
        last = sql("SELECT max(seq) FROM ess_journal WHERE connector=%s", cid)[0][0]
        wait_until(lambda: sql("SELECT delivered_seq FROM ess_offsets WHERE connector=%s",
                               cid)[0][0] == last, 10, "the offset past the merged changes")
    with_worker("debounce_sec: 1\n", body)


def test_paired_origin_not_sent_back():
    def body(cid, topic, partner, bus, worker):
        # What the paired reverse connector published (header ess-origin) must
        # not travel back to the partner it came from.
        bus.publish(topic, {"permit_id": "O1"}, message_id="o-1",
                    headers={"ess-origin": "dmv-webhook"})
        bus.publish(topic, {"permit_id": "O2"}, message_id="o-2",
                    headers={"ess-origin": "someone-else"})
        bus.publish(topic, {"permit_id": "O3"}, message_id="o-3")
        wait_until(lambda: partner.count() >= 2, 20, "the two events of other origins")
        got = sorted(b["permit_id"] for b in partner.bodies())
        check(got == ["O2", "O3"], "delivered: %r" % got)
        rows = sql("SELECT event_id FROM ess_journal WHERE connector=%s ORDER BY seq", cid)
        check([r[0] for r in rows] == ["o-2", "o-3"], "skipped event not journaled: %r" % rows)
        check(bus.queue_count("ess." + cid) == 0, "the skipped message was acked")
    with_worker("skip_origins: [dmv-webhook]\n", body)


def test_heartbeats_and_lifecycle():
    cid = unique_id("it-hb")
    partner = Partner()
    bus = Bus()
    ops = bus.listen("hms.ops", "ess.*.%s" % cid)
    worker = Worker(manifest(cid, partner.url())).start()
    try:
        wait_for_queue(cid, worker=worker)
        bus.publish("it.%s.changed" % cid, {"permit_id": "H1"}, message_id="hb-1")
        wait_until(lambda: partner.count() >= 1, 20, "one delivery")
        seen = []

        def heartbeat_with_delivery():
            seen.extend(bus.drain(ops))
            for rk, b in seen:
                if rk == "ess.heartbeat." + cid and json.loads(b)["delivered"] >= 1:
                    return json.loads(b)
            return None
        hb = wait_until(heartbeat_with_delivery, 20, "a heartbeat counting the delivery")
        for f in ["connector", "instance", "host", "pid", "version", "ts", "uptime_s", "state",
                  "consumed", "delivered", "failed", "retried", "parked", "backlog",
                  "lag_ms_p50", "lag_ms_p99", "last_error"]:
            check(f in hb, "heartbeat field %s missing: %r" % (f, hb))
        check(hb["connector"] == cid and hb["state"] == "ok", "heartbeat %r" % hb)
        check(hb["pid"] == worker.proc.pid, "heartbeat pid %r" % hb["pid"])
        check(hb["consumed"] >= 1 and hb["backlog"] == 0, "counters %r" % hb)
        lifecycle = [json.loads(b)["event"] for rk, b in seen if rk == "ess.lifecycle." + cid]
        check("started" in lifecycle, "lifecycle started: %r" % lifecycle)
        check(worker.stop() == 0, "SIGTERM exits 0")
        seen.extend(bus.drain(ops))
        lifecycle = [json.loads(b)["event"] for rk, b in seen if rk == "ess.lifecycle." + cid]
        check(lifecycle[-2:] == ["stopping", "stopped"], "lifecycle at stop: %r" % lifecycle)
    finally:
        if worker.alive():
            worker.kill9()
        bus.close()
        partner.stop()


def test_sighup_reloads_mapping():
    def body(cid, topic, partner, bus, worker):
        bus.publish(topic, {"permit_id": "R1", "street": "X"}, message_id="r-1")
        wait_until(lambda: partner.count() >= 1, 20, "first delivery")
        worker.write_manifest(manifest(cid, partner.url("/dmv/permits"),
                                       "rename: {permit_id: PERMIT_NUM}\n"))
        worker.signal(signal.SIGHUP)
        worker.wait_log("manifest reloaded")
        bus.publish(topic, {"permit_id": "R2", "street": "Y"}, message_id="r-2")
        wait_until(lambda: partner.count() >= 2, 20, "second delivery")
        check(partner.bodies()[1] == {"PERMIT_NUM": "R2", "street": "Y"},
              "new mapping applied: %r" % partner.bodies())
        worker.write_manifest("id: Broken!\n")
        worker.signal(signal.SIGHUP)
        worker.wait_log("reload refused")
        bus.publish(topic, {"permit_id": "R3"}, message_id="r-3")
        wait_until(lambda: partner.count() >= 3, 20, "delivery after a refused reload")
        check(worker.alive(), "a bad reload keeps the worker running")
    with_worker("", body)


if __name__ == "__main__":
    run([test_shaped_delivery_with_headers, test_cloudevent_shapes_data_and_uses_its_id,
         test_same_message_id_delivered_once, test_bad_messages_dead_lettered_and_next_delivered,
         test_400_parks_that_event_rest_delivered, test_max_retry_exhausted_parks,
         test_lone_failing_key_is_an_outage_not_parked,
         test_debounce_merges_rapid_changes_per_key, test_paired_origin_not_sent_back,
         test_heartbeats_and_lifecycle,
         test_sighup_reloads_mapping])
