"""Tiled stops just before a scan's stop document, with the Kafka workers running as the CLI runs
them (dead-lettering bad documents). After Tiled returns, the raw run and its volume are in the
catalogue exactly once, and nothing was dead-lettered (issue 12)."""

from __future__ import annotations

import threading
import time

import pytest
import stamina
from bluesky import RunEngine

from tomobluesky.catalog import PROCESSED, RAW, TiledServer, ensure_layout
from tomobluesky.devices import PhantomSource, make_sim_beamline
from tomobluesky.plans import tomo_scan
from tomobluesky.recon import ssim_in_circle
from tomobluesky.transport import KafkaPublisher, WorkerPolicy, ensure_topics
from tomobluesky.workers import run_catalog_worker, run_reconstruction_worker
from tests.system.waiting import wait_for

pytestmark = pytest.mark.system
N = 60


def test_workers_wait_out_a_tiled_outage_and_lose_nothing(kafka_config, tmp_path):
    ensure_topics(kafka_config)
    with TiledServer(tmp_path / "catalog") as server:
        _outage_through_kafka(kafka_config, server)


def _outage_through_kafka(kafka_config, server):
    ensure_layout(server.client())
    stop, stats, threads = threading.Event(), {}, []
    # the Tiled client retries a refused request for 45 s in the caller's thread; the workers' own
    # backoff is what is tested here, so each request is tried once
    stamina.set_testing(True, attempts=1)
    common = dict(policy=WorkerPolicy(on_error="deadletter", retry_backoff=(0.2, 1.0)), stop=stop)
    for kind, run in (("catalog", run_catalog_worker), ("reconstruction", run_reconstruction_worker)):
        kwargs = dict(common, data_roots=[server.layout.detector])
        if kind == "reconstruction":
            kwargs["volume_dir"] = server.layout.volumes
        # the client is made here, while Tiled is surely up: made in the thread, on a busy machine, it
        # could meet the outage first (a thread died so once, its ConnectError outside the worker's loop)
        t = threading.Thread(target=lambda k=kind, r=run, kw=kwargs, c=server.client(): stats.__setitem__(
            k, r(kafka_config, c, **kw)), daemon=True)
        t.start()
        threads.append(t)
    try:
        source = PhantomSource(n_slices=4, n_columns=48, axis_offset=2.0, noise=False)
        RE = RunEngine({})
        # subscribed before the publisher: Tiled is down before the stop document is sent
        RE.subscribe(lambda name, doc: server.stop(), "stop")
        with KafkaPublisher(kafka_config) as publisher:
            RE.subscribe(publisher)
            uid, = RE(tomo_scan(*make_sim_beamline(source, server.layout.detector), num_projections=N,
                                num_darks=2, num_flats=2))
            assert publisher.flush(30) == 0
        time.sleep(3)  # the workers meet the outage and back off
        assert not server.running
        server.start()
        client = server.client()
        starting = (Exception,)  # Tiled may still be starting
        wait_for(lambda: client[PROCESSED][uid].metadata["status"] == "complete", 180, "the volume",
                 interval=0.3, tolerate=starting)
        wait_for(lambda: client[RAW][uid].metadata.get("stop"), 60, "the raw run's stop", interval=0.3, tolerate=starting)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        stamina.set_testing(False)
    assert list(client[RAW]).count(uid) == 1 and list(client[PROCESSED]).count(uid) == 1
    run = client[RAW][uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    assert run["primary"]["camera_image"].shape[0] == N
    node = client[PROCESSED][uid]
    assert ssim_in_circle(node["0"].read()[2], source.volume[2]) > 0.8
    for kind in ("catalog", "reconstruction"):
        assert stats[kind].deadlettered == 0, (kind, stats[kind])
        assert stats[kind].runs_finished >= 1
    assert stats["catalog"].outages + stats["reconstruction"].outages >= 1
