"""Scans through a real Kafka broker to worker processes and a real Tiled server."""

import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from bluesky import RunEngine

from tomobluesky.catalog import PROCESSED, ensure_layout
from tomobluesky.devices import PhantomSource, make_sim_beamline
from tomobluesky.live import MemorySink, live_reconstruction_router
from tomobluesky.plans import tomo_scan
from tomobluesky.transport import KafkaPublisher, WorkerPolicy, ensure_topics
from tomobluesky.workers import run_catalog_worker, run_reconstruction_worker
from tests.system.waiting import wait_for

pytestmark = pytest.mark.system


def _phantom():
    return PhantomSource(n_slices=4, n_columns=64, axis_offset=3.0, seed=5)





def test_scan_through_kafka_equals_the_in_process_result(kafka_config, tiled_server, tmp_path):
    ensure_topics(kafka_config)
    client = tiled_server.client()
    RE = RunEngine({})
    memory = MemorySink()
    RE.subscribe(live_reconstruction_router(memory))  # the in-process reference, same documents
    with KafkaPublisher(kafka_config) as publisher:
        RE.subscribe(publisher)
        uid, = RE(tomo_scan(*make_sim_beamline(_phantom(), tiled_server.layout.detector), num_projections=90,
                            num_darks=2, num_flats=2))
        assert publisher.flush(30) == 0
    run_catalog_worker(kafka_config, client, policy=WorkerPolicy(once=True))
    run_reconstruction_worker(kafka_config, client, policy=WorkerPolicy(once=True), volume_dir=tiled_server.layout.volumes)
    node = client[PROCESSED][uid]
    assert node.metadata["status"] == "complete"
    expected, meta = memory.volumes[uid]
    np.testing.assert_allclose(node["0"].read(), expected, rtol=1e-5, atol=1e-6)
    assert node.metadata["center"] == pytest.approx(meta["center"])
    assert client["raw"][uid]["primary"]["camera_image"].shape == (90, 4, 64)
    assert client["raw"][uid].metadata["stop"]["exit_status"] == "success"


@pytest.fixture
def processes():
    """Worker processes started by a test; none outlives it, whatever happens."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def _worker_process(kind, kafka_config, tiled_server, *extra, processes=None):
    # a killed member holds its partitions until its session times out (librdkafka: 45 s); 6 s, the
    # broker's minimum, lets the restarted worker take them over without the long wait
    config = kafka_config.journal_dir.parent / "worker-kafka.yml"
    config.write_text("consumer_config: {session.timeout.ms: 6000}\n")
    cmd = [sys.executable, "-m", "tomobluesky.workers", kind, "--config", str(config),
           "--bootstrap", kafka_config.bootstrap, "--beamline", kafka_config.beamline, "--tiled-uri", tiled_server.uri,
           "--api-key-file", str(tiled_server.layout.key_file),
           "--data-root", str(tiled_server.layout.detector),
           *(["--volume-dir", str(tiled_server.layout.volumes)] if kind == "reconstruction" else []), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if processes is not None:
        processes.append(proc)
    return proc


def test_killed_worker_restarts_and_writes_exactly_one_complete_volume(kafka_config, tiled_server, processes):
    ensure_topics(kafka_config)
    client = ensure_layout(tiled_server.client())
    camera, *rest = beamline = make_sim_beamline(_phantom(), tiled_server.layout.detector)
    camera.exposure_time.put(0.03)  # a few seconds of scan, to kill the worker in the middle
    started = []
    RE = RunEngine({}, context_managers=[])  # runs in a thread: no SIGINT handler
    RE.subscribe(lambda name, doc: started.append(doc) if name == "start" else None)
    worker = _worker_process("reconstruction", kafka_config, tiled_server, processes=processes)
    with KafkaPublisher(kafka_config) as publisher:
        RE.subscribe(publisher)
        scan = threading.Thread(target=RE, args=(tomo_scan(*beamline, num_projections=120, num_darks=2,
                                                           num_flats=2),))
        scan.start()
        wait_for(lambda: started and client["live"].get(started[0]["uid"]) is not None, 60,
                  "the worker's first preview")
        worker.send_signal(signal.SIGKILL)  # mid-scan, state in memory lost
        worker.wait(10)
        scan.join(60)
        assert publisher.flush(30) == 0
    uid = started[0]["uid"]
    assert uid not in client[PROCESSED] or client[PROCESSED][uid].metadata["status"] != "complete"
    restarted = _worker_process("reconstruction", kafka_config, tiled_server, "--once", processes=processes)
    assert restarted.wait(120) == 0, restarted.stderr.read()
    node = client[PROCESSED][uid]
    assert node.metadata["status"] == "complete" and node.metadata["num_projections"] == 120
    assert len([k for k in client[PROCESSED] if k == uid]) == 1
    again = _worker_process("reconstruction", kafka_config, tiled_server, "--once", "--group", "fresh-eyes",
                            processes=processes)
    assert again.wait(120) == 0  # a second pass over the whole topic skips the complete scan
    assert client[PROCESSED][uid].metadata["timings"] == node.metadata["timings"]
    assert abs(node.metadata["center"] - _phantom().center) < 0.5


def test_cli_demo_over_kafka(kafka_broker, tmp_path):
    import json

    out = subprocess.run([sys.executable, "-m", "tomobluesky.cli", "demo", "--data-dir", str(tmp_path),
                          "--kafka", kafka_broker.bootstrap, "--source", "phantom", "--phantom-size", "64",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["transport"].startswith("kafka")
    assert summary["volume_shape"] == [8, 64, 64]
    assert abs(summary["center"] - PhantomSource(n_columns=64, axis_offset=6.5).center) < 0.5
    assert set(summary["timings"]) >= {"acquisition", "reconstruction", "registration"}
    # its cost, as the in-process demo reports it: stop → volume, and the peak memory of every process
    assert 0 < summary["timings"]["reconstruction"] <= summary["stop_to_volume_s"]  # speed: benchmarks, not here
    peaks = summary["peak_rss_mb_by_process"]
    assert set(peaks) == {"demo", "tiled", "catalog_worker", "reconstruction_worker"}
    assert all(50 < v < 2000 for v in peaks.values()) and summary["peak_rss_mb"] == max(peaks.values())


def test_live_slices_stream_on_the_live_topic(kafka_config, tmp_path):
    from confluent_kafka import Consumer

    from tomobluesky.live import PublishingLiveSink
    from tomobluesky.schema import ReconSettings
    from tomobluesky.transport import LivePublisher, live_topic, unpack

    ensure_topics(kafka_config.replace(topic=live_topic(kafka_config.beamline)))
    memory = MemorySink()
    sink = PublishingLiveSink(LivePublisher(kafka_config), memory)
    RE = RunEngine({})
    RE.subscribe(live_reconstruction_router(sink, ReconSettings(preview_interval_s=0, preview_every=10)))
    uid, = RE(tomo_scan(*make_sim_beamline(_phantom(), tmp_path), num_projections=40, num_darks=1, num_flats=1))
    assert sink.flush(10) == 0 and not sink.errors
    consumer = Consumer({"bootstrap.servers": kafka_config.bootstrap, "group.id": "live-viewer",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([live_topic(kafka_config.beamline)])
    messages, deadline = [], time.monotonic() + 30
    while len(messages) < 4 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            messages.append(msg)
    consumer.close()
    assert [m.key().decode() for m in messages] == [uid] * 4
    name, doc = unpack(messages[-1].value())
    assert name == "live" and doc["metadata"]["projections"] == 40
    assert doc["slices"]["axial"].dtype == np.uint8 and doc["slices"]["axial"].shape == (64, 64)
    assert doc["slices"]["vertical_x"].shape == (4, 64)
    # the 8-bit image is the float preview, rescaled
    lo, hi = doc["range"]["axial"]
    preview = memory.previews[uid][-1][0]["axial"]
    restored = lo + doc["slices"]["axial"] / 255.0 * (hi - lo)
    inside = (preview > lo) & (preview < hi)
    assert np.abs(restored - preview)[inside].max() <= (hi - lo) / 255 + 1e-6
