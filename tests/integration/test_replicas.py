"""ess-it-replicas: `replicas: 3` -- three ess-push processes of one connector
share its queue and journal. 10,000 events over 500 keys; one replica is
SIGKILLed half-way. Its key partitions are taken over within 2 x
heartbeat_sec (plus one stamp period), every event is delivered, and per key
the first deliveries keep the publish order. Replicas joining mid-stream take
their keys over from the running one without a key ever being in flight from
two replicas at once. `hms ess deploy --replicas 2`
starts two replicas locally and `hms ess stop` stops both. `hms ess replay
--from --to` with two replicas re-sends exactly the window's events once more
(same idempotency keys, per-key order kept), applied once for both."""
import json
import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import (AMQP_URL, Bus, Partner, Worker, check, hms, manifest, pid_alive,  # noqa: E402
                    run, sql, state_dir, unique_id, wait_until)

import pika  # noqa: E402


def consumers(queue):
    c = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return c.channel().queue_declare(queue, passive=True).method.consumer_count
    except Exception:
        return 0
    finally:
        c.close()


def instance_of(worker):
    m = wait_until(lambda: re.search(r"one of \d+ replicas \(replica ([^)]+)\)",
                                     worker.log_text()), 30, "the replica's instance in its log")
    return m.group(1)


def owners(cid):
    return dict(sql("SELECT part, owner FROM ess_partitions WHERE connector = %s", cid))


def all_first_deliveries(partner, n, timeout, what):
    """Wait for the first deliveries of events 0..n-1; fail naming what is missing."""
    try:
        return wait_until(lambda: (lambda d: d if len(d) == n else None)(first_deliveries(partner)),
                          timeout, what, 0.5)
    except AssertionError:
        got = {num for num, _ in first_deliveries(partner)}
        missing = sorted(set(range(n)) - got)
        raise AssertionError("%s: %d missing, first: %r" % (what, len(missing), missing[:20]))


def first_deliveries(partner):
    """(n, key) of each event's first 2xx delivery, in arrival order."""
    seen = set()
    out = []
    for r in partner.received():
        if not 200 <= (r.get("status") or 0) < 300:
            continue
        body = json.loads(r["body"])
        if body["n"] in seen:
            continue
        seen.add(body["n"])
        out.append((body["n"], body["permit_id"]))
    return out


def test_three_replicas_one_killed_all_delivered_in_order():
    cid = unique_id("it-repl")
    topic = "it.%s.changed" % cid
    n, keys = 10000, 500
    partner = Partner()
    text = manifest(cid, partner.url(), "replicas: 3\nheartbeat_sec: 1\nmax_in_flight: 16\n")
    workers = [Worker(text) for _ in range(3)]
    bus = Bus()
    try:
        for w in workers:
            w.start()
        names = [instance_of(w) for w in workers]
        wait_until(lambda: consumers("ess." + cid) == 3, 30, "three consumers on ess." + cid)
        wait_until(lambda: set(owners(cid).values()) == set(names) and
                   None not in owners(cid).values(), 30,
                   "the 64 partitions shared by the three replicas")
        start = time.monotonic()
        victim = names[1]
        for i in range(n):
            bus.publish(topic, {"permit_id": "K%d" % (i % keys), "n": i}, message_id="r-%d" % i)
            if i == n // 2:
                wait_until(lambda: partner.count() >= n // 4, 60, "deliveries under way")
                workers[1].kill9()
                killed_at = time.monotonic()
                wait_until(lambda: victim not in owners(cid).values() and
                           None not in owners(cid).values(), 10,
                           "the killed replica's partitions taken over", 0.1)
                takeover = time.monotonic() - killed_at
                check(takeover < 2 * 1 + 2, "takeover took %.1f s (heartbeat_sec 1)" % takeover)
        got = all_first_deliveries(partner, n, 180, "all %d events delivered" % n)
        elapsed = time.monotonic() - start
        last = {}
        for num, key in got:
            check(num > last.get(key, -1), "key %s: event %d delivered after %d"
                  % (key, num, last.get(key, -1)))
            last[key] = num
        survivors = set(owners(cid).values())
        check(survivors == {names[0], names[2]},
              "partitions should be shared by the survivors, got %r" % survivors)
        total = partner.count()
        print("%d events in %.1f s, takeover %.1f s after SIGKILL, %d requests (%d repeats)"
              % (n, elapsed, takeover, total, total - n), flush=True)
        for w in (workers[0], workers[2]):
            check(w.stop() == 0, "a surviving replica did not stop cleanly:\n" + w.log_text())
        left = sql("SELECT count(*) FROM ess_partitions WHERE connector = %s AND owner IS NOT NULL",
                   cid)[0][0]
        check(left == 0, "stopped replicas should release their partitions, %d still owned" % left)
    finally:
        for w in workers:
            w.stop()
        partner.stop()
        bus.close()


def test_replicas_join_mid_stream_no_key_twice_at_once():
    cid = unique_id("it-jrepl")
    topic = "it.%s.changed" % cid
    n, keys, delay = 1500, 50, 0.02
    partner = Partner()
    partner.mode(mode="ok", delay_ms=int(delay * 1000))
    text = manifest(cid, partner.url(), "replicas: 3\nheartbeat_sec: 1\nmax_in_flight: 16\n")
    workers = [Worker(text) for _ in range(3)]
    bus = Bus()
    try:
        workers[0].start()
        first = instance_of(workers[0])
        wait_until(lambda: set(owners(cid).values()) == {first}, 30,
                   "the first replica owning every partition")
        for i in range(n):
            bus.publish(topic, {"permit_id": "K%d" % (i % keys), "n": i}, message_id="j-%d" % i)
            if i == n // 2:
                wait_until(lambda: partner.count() >= n // 6, 60, "deliveries under way")
                workers[1].start()
                workers[2].start()
        names = {first, instance_of(workers[1]), instance_of(workers[2])}
        got = all_first_deliveries(partner, n, 120, "all %d events delivered" % n)
        last = {}
        for num, key in got:
            check(num > last.get(key, -1), "key %s: %d after %d" % (key, num, last.get(key, -1)))
            last[key] = num
        check(set(owners(cid).values()) == names,
              "the partitions should end up shared by all three: %r" % set(owners(cid).values()))
        # each request is answered delay s after it arrived; a key's next request
        # may only arrive after that answer -- from whichever replica.
        arrivals = {}
        for r in partner.received():
            arrivals.setdefault(json.loads(r["body"])["permit_id"], []).append(r["ts"])
        for key, ts in arrivals.items():
            for a, b in zip(ts, ts[1:]):
                check(b - a >= delay * 0.9, "key %s: two requests %.1f ms apart (in flight at "
                      "once from two replicas?)" % (key, (b - a) * 1000))
    finally:
        for w in workers:
            w.stop()
        partner.stop()
        bus.close()



def idem_key(rec):
    return {k.lower(): v for k, v in (rec.get("headers") or {}).items()}.get("idempotency-key")


def deliveries_by_n(partner):
    """n -> [idempotency keys of its 2xx deliveries]; and per key the n's in arrival order."""
    by_n, order = {}, {}
    for r in partner.received():
        if not 200 <= (r.get("status") or 0) < 300:
            continue
        body = json.loads(r["body"])
        by_n.setdefault(body["n"], []).append(idem_key(r))
        order.setdefault(body["permit_id"], []).append(body["n"])
    return by_n, order


def test_replay_with_two_replicas_resends_the_window_once():
    cid = unique_id("it-rrepl")
    topic = "it.%s.changed" % cid
    phase, keys = 150, 30
    partner = Partner()
    text = manifest(cid, partner.url(), "replicas: 2\nheartbeat_sec: 1\nmax_in_flight: 16\n")
    workers = [Worker(text) for _ in range(2)]
    bus = Bus()
    state = state_dir()

    def settled(total):
        top = sql("SELECT max(seq) FROM ess_journal WHERE connector = %s", cid)[0][0]
        low = sql("SELECT min(delivered_seq) FROM ess_partitions WHERE connector = %s", cid)[0][0]
        return top is not None and low is not None and low >= top and partner.count() >= total

    try:
        for w in workers:
            w.start()
        names = {instance_of(w) for w in workers}
        for w in workers:
            w.wait_log("journal store connected", 30)
        wait_until(lambda: set(owners(cid).values()) == names, 30,
                   "the 64 partitions shared by the two replicas")
        for p in range(3):  # before, inside and after the replay's window
            for i in range(p * phase, (p + 1) * phase):
                bus.publish(topic, {"permit_id": "K%d" % (i % keys), "n": i},
                            message_id="rr-%d" % i)
            all_first_deliveries(partner, (p + 1) * phase, 60, "phase %d delivered" % p)
            wait_until(lambda: settled((p + 1) * phase), 30, "phase %d offsets saved" % p)
        first = partner.count()
        check(first == 3 * phase, "%d deliveries before the replay, want %d" % (first, 3 * phase))
        ids = ["rr-%d" % i for i in range(phase, 2 * phase)]
        frm, to = sql("SELECT to_char(min(journaled_at), 'YYYY-MM-DD\"T\"HH24:MI:SS.USOF'),"
                      " to_char(max(journaled_at), 'YYYY-MM-DD\"T\"HH24:MI:SS.USOF')"
                      " FROM ess_journal WHERE connector = %s AND event_id = ANY(%s)", cid, ids)[0]
        r = hms(state, "ess", "replay", cid, "--from", frm, "--to", to, check_rc=0)
        check("%d events" % phase in r.stdout, "replay request: %r" % r.stdout)
        wait_until(lambda: partner.count() >= first + phase, 60,
                   "the window's %d events re-sent" % phase)
        wait_until(lambda: sql("SELECT replay_done_id FROM ess_controls WHERE connector = %s",
                               cid)[0][0] == 1, 10, "the replay marked applied")
        for w in workers:
            w.wait_log("replay #1: replica", 30)
        wait_until(lambda: settled(first + phase), 30, "offsets saved after the replay")
        by_n, order = deliveries_by_n(partner)
        for n in range(3 * phase):
            want = 2 if phase <= n < 2 * phase else 1
            check(len(by_n.get(n, [])) == want, "event %d delivered %d times, want %d"
                  % (n, len(by_n.get(n, [])), want))
            check(len(set(by_n[n])) == 1, "event %d: idempotency keys differ: %r" % (n, by_n[n]))
        # per key, the re-sends follow the journal's order (two consumers on
        # one queue may journal a key's events in another order than published)
        seq = {int(e.split("-")[1]): q for q, e in
               sql("SELECT seq, event_id FROM ess_journal WHERE connector = %s", cid)}
        for key, ns in order.items():
            again = [n for n in ns if phase <= n < 2 * phase]
            resent = again[len(again) // 2:]
            check(resent == sorted(resent, key=seq.get),
                  "key %s: replayed out of journal order: %r" % (key, resent))
        check(partner.count() == first + phase, "%d deliveries, want %d"
              % (partner.count(), first + phase))
        print("replay with 2 replicas: %d events re-sent once each" % phase, flush=True)
        for w in workers:
            check(w.stop() == 0, "a replica did not stop cleanly:\n" + w.log_text())
    finally:
        for w in workers:
            w.stop()
        partner.stop()
        bus.close()
        shutil.rmtree(state, ignore_errors=True)


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def test_hms_deploy_replicas():
    cid = unique_id("it-drepl")
    partner = Partner()
    state = state_dir()
    bus = Bus()
    pids = []
    try:
        path = os.path.join(state, "m.yml")
        with open(path, "w") as f:
            f.write(manifest(cid, partner.url(), "heartbeat_sec: 1\n"))
        r = hms(state, "ess", "deploy", path, "--replicas", "2", check_rc=0)
        base = os.path.join(state, "workers", cid)
        pids = [read_pid(os.path.join(base, "worker.pid")),
                read_pid(os.path.join(base, "replica-2", "worker.pid"))]
        check(all(p is not None and pid_alive(p) for p in pids),
              "expected two running replicas, pids %r:\n%s" % (pids, r.stdout))
        wait_until(lambda: sql("SELECT count(DISTINCT owner) FROM ess_partitions WHERE"
                               " connector = %s AND owner IS NOT NULL", cid)[0][0] == 2, 30,
                   "both replicas owning partitions")
        for i in range(200):
            bus.publish("it.%s.changed" % cid, {"permit_id": "K%d" % (i % 20), "n": i},
                        message_id="d-%d" % i)
        got = all_first_deliveries(partner, 200, 60, "200 deliveries from two replicas")
        last = {}
        for num, key in got:
            check(num > last.get(key, -1), "key %s: %d after %d" % (key, num, last.get(key, -1)))
            last[key] = num
        hms(state, "ess", "stop", cid, check_rc=0)
        check(not any(pid_alive(p) for p in pids), "hms ess stop left a replica running")
    finally:
        for p in pids:
            if p is not None and pid_alive(p):
                os.kill(p, 15)
        partner.stop()
        bus.close()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    run([test_three_replicas_one_killed_all_delivered_in_order,
         test_replicas_join_mid_stream_no_key_twice_at_once,
         test_replay_with_two_replicas_resends_the_window_once, test_hms_deploy_replicas])
