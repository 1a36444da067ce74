"""The publisher with no broker at all: the RunEngine never waits, nothing is lost."""

import socket
import time

import numpy as np
import pytest

from tomobluesky.transport import DocumentTooLarge, KafkaConfig, KafkaPublisher, unpack
from tomobluesky.transport._journal import Journal

pytest.importorskip("confluent_kafka")


@pytest.fixture
def dead_bootstrap():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_no_broker_publish_is_fast_and_everything_is_journaled(RE, dead_bootstrap, tmp_path):
    from bluesky.plans import count
    from ophyd.sim import det  # the simulated point detector

    pub = KafkaPublisher(KafkaConfig(bootstrap=dead_bootstrap, beamline="offline"), journal_dir=tmp_path,
                         stall_s=0.2)
    times, sent = [], []

    def timed(name, doc):
        t = time.perf_counter()
        pub(name, doc)
        times.append(time.perf_counter() - t)
        sent.append((name, doc["uid"] if "uid" in doc else doc.get("datum_id")))

    RE.subscribe(timed)
    RE(count([det], 200, delay=0.002))
    # robust to a busy machine: waiting for the absent broker would cost at least stall_s (0.2 s), a hiccup tens of ms
    # (two test workers on two cores)
    slow = sorted(times)[int(0.99 * len(times))]
    assert slow < 0.050, f"99th percentile publish call {slow * 1e3:.2f} ms"
    assert max(times) < 0.15, f"slowest publish call {max(times) * 1e3:.2f} ms"
    assert pub.flush(0.5) > 0  # nothing can be acknowledged
    left = pub.close(timeout=0.5)
    assert left == len(sent)
    # a later publisher (or process) finds every document, in order, in the journal
    records = Journal(tmp_path).take(10_000)
    assert [(n, d["uid"]) for n, d in (unpack(r.value) for r in records)] == sent
    assert {r.key for r in records} == {sent[0][1].encode()}


def big_camera():
    """A device whose image (1.28 MB) is read at every event but not in its configuration."""
    from ophyd import Component, Device, Signal

    class Camera(Device):
        image = Component(Signal, value=np.zeros((400, 400)), kind="hinted")

    return Camera(name="big")


def test_too_large_names_the_document_and_keeps_it(RE, dead_bootstrap, tmp_path):
    from bluesky.plans import count
    from ophyd.sim import det

    big = big_camera()
    pub = KafkaPublisher(KafkaConfig(bootstrap=dead_bootstrap), journal_dir=tmp_path)
    RE.subscribe(pub)
    with pytest.raises(DocumentTooLarge, match=r"the event document [0-9a-f-]+, seq_num 1 is 1,28\d,\d+ bytes"):
        RE(count([det, big], 2))
    assert len(pub.errors) == 1
    kept = list((tmp_path / "rejected").glob("*-event-*.msgpack"))
    assert len(kept) == 1
    name, doc = unpack(kept[0].read_bytes())
    assert name == "event" and doc["data"]["big_image"].shape == (400, 400)
    pub.close(timeout=0.1)


def test_too_large_report_mode_lets_the_scan_finish(RE, dead_bootstrap, tmp_path):
    from bluesky.plans import count

    big = big_camera()
    seen = []
    pub = KafkaPublisher(KafkaConfig(bootstrap=dead_bootstrap), journal_dir=tmp_path, on_too_large="report",
                         on_error=seen.append)
    RE.subscribe(pub)
    RE(count([big], 3))
    assert len(seen) == 3 and all(isinstance(e, DocumentTooLarge) for e in seen)
    assert len(list((tmp_path / "rejected").iterdir())) == 3
    assert pub.close(timeout=0.1) == 3  # start, descriptor, stop: journaled for later
