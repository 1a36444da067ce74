"""The broker goes away for 10+ s in the middle of a scan: the RunEngine never waits,
every document arrives once and in order after the broker comes back."""

from __future__ import annotations

import threading
import time

import pytest

from tomobluesky.transport import KafkaPublisher, pack

pytestmark = pytest.mark.system

OUTAGE_S = 11.0


def test_broker_outage_mid_scan(RE, kafka_broker, kafka_config, kafka_collect):
    from bluesky.plans import count
    from ophyd.sim import det  # the simulated point detector

    pub = KafkaPublisher(kafka_config, stall_s=0.5)
    emitted, call_s = [], []
    RE.subscribe(lambda name, doc: emitted.append((name, doc)))

    def timed_publish(name, doc):
        t = time.perf_counter()
        pub(name, doc)
        call_s.append(time.perf_counter() - t)

    RE.subscribe(timed_publish)
    RE(count([det], 5))  # the topic exists and the producer is connected before the outage
    assert pub.flush(30) == 0

    events_seen = threading.Semaphore(0)
    RE.subscribe(lambda name, doc: events_seen.release() if name == "event" else None)
    outage = {}

    def take_the_broker_away():
        for _ in range(30):
            events_seen.acquire()
        outage["down"] = time.monotonic()
        kafka_broker.stop()
        time.sleep(OUTAGE_S)
        outage["restarting"] = time.monotonic()
        kafka_broker.start()
        outage["up"] = time.monotonic()

    saboteur = threading.Thread(target=take_the_broker_away)
    saboteur.start()
    n, delay = 320, 0.05
    t0 = time.monotonic()
    try:
        RE(count([det], n, delay=delay))
        plan_s = time.monotonic() - t0
    finally:
        saboteur.join()
    assert outage["up"] - outage["down"] >= 10.0
    assert outage["down"] < t0 + plan_s < outage["up"] + 10  # the outage happened during the scan
    assert plan_s < n * delay + 3.0, f"the scan took {plan_s:.1f} s"
    # never waiting for the broker, robust to a busy machine: a call that waited would take the broker's
    # timeouts (seconds); on a busy machine (two test workers on two cores, the broker's JVM restarting)
    # scheduling alone costs calls tens of ms, so the 99th percentile is bounded at 50 ms and the worst call
    # loosely. The speed target itself (p99 <= 15 ms, no call over 10 ms) is measured by benchmarks/transport.py.
    slow = sorted(call_s)[int(0.99 * len(call_s))]
    assert slow < 0.050, f"99th percentile publish call {slow * 1e3:.2f} ms"
    assert max(call_s) < 0.5, f"slowest publish call {max(call_s) * 1e3:.2f} ms"
    print(f"outage {outage['up'] - outage['down']:.1f} s, scan {plan_s:.1f} s, {len(call_s)} publish calls, "
          f"slowest {max(call_s) * 1e3:.2f} ms, {pub.stats}")
    assert pub.close(60) == 0
    assert pub.stats["journaled"] > 0 and pub.stats["replayed"] == pub.stats["journaled"]
    got, stats = kafka_collect()
    assert [pack(n, d) for n, d in got] == [pack(n, d) for n, d in emitted]  # once each, in order
    assert stats.runs_finished == 2
