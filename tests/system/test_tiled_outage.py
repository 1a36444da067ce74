"""Tiled stops in the middle of an in-process scan: the scan goes on, nothing is lost,
and `replay` puts the run and its volume into the catalogue exactly once (issue 12)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tomobluesky.catalog import PROCESSED, RAW, SpoolingSink, TiledServer, raw_run_writer, read_backup, replay
from tomobluesky.cli import main as cli_main
from tomobluesky.devices import PhantomSource, make_sim_beamline
from tomobluesky.live import live_reconstruction_router
from tomobluesky.plans import tomo_scan
from tomobluesky.recon import ssim_in_circle
from tomobluesky.store import read_level

N = 40


@pytest.fixture
def no_client_retries():
    """The Tiled client retries a refused connection for up to 45 s before giving up; that only adds
    waiting here (the spool takes over either way), so each request is tried once."""
    import stamina

    stamina.set_testing(True, attempts=1)
    yield
    stamina.set_testing(False)


@pytest.fixture
def outage_scan(RE, tmp_path, no_client_retries):
    """A scan during which Tiled is stopped after the 10th projection; Tiled is back afterwards."""
    with TiledServer(tmp_path / "catalog") as server:  # stopped whatever happens, also after the restart
        layout = server.layout
        source = PhantomSource(n_slices=4, n_columns=48, axis_offset=2.0, noise=False)
        runs = []

        def on_projection(n, total):
            if n == 10 and server.running:
                server.stop()

        sink = SpoolingSink(server.sink(), layout.backup)
        RE.subscribe(raw_run_writer(server.client(), layout.backup))
        RE.subscribe(live_reconstruction_router(sink, on_projection=on_projection, on_start=runs.append,
                                                data_roots=[layout.detector]))
        uid, = RE(tomo_scan(*make_sim_beamline(source, layout.detector), num_projections=N, num_darks=2, num_flats=2))
        assert not server.running
        server.start()  # the same data directory and port
        yield server, uid, source, sink, runs[0]


def test_the_scan_survives_everything_is_spooled_and_replayed_exactly_once(outage_scan, capsys):
    server, uid, source, sink, run = outage_scan
    backups = list(server.layout.backup.glob("*.jsonl"))
    assert len(backups) == 1
    docs = read_backup(backups[0])
    names = [name for name, _ in docs]
    assert names[0] == "start" and names[-1] == "stop" and docs[0][1]["uid"] == uid
    assert sum(d["seq_nums"]["stop"] - d["seq_nums"]["start"] for name, d in docs
               if name == "stream_datum" and d["descriptor"] in {d2["uid"] for n2, d2 in docs
                                                                  if n2 == "descriptor" and d2["name"] == "primary"}
               ) == N
    record = json.loads((server.layout.backup / "volumes" / f"{uid}.json").read_text())
    assert record["kind"] == "volume" and record["metadata"]["num_projections"] == N
    volume = read_level(record["store"], 0)
    assert volume.shape == (4, 48, 48) and ssim_in_circle(volume[2], source.volume[2]) > 0.8
    assert run.result["store"] == record["store"] and sink.previews_dropped > 0
    assert (server.layout.backup / "volumes" / f"{uid}.json").stat().st_mode & 0o077 == 0

    # after Tiled is back, replay puts the run and the volume in, exactly once
    client = server.client()
    assert uid not in client[PROCESSED] or client[PROCESSED][uid].metadata.get("status") != "complete"
    report = replay(server.layout.backup, client, volume_dir=server.layout.volumes,
                    data_roots=[server.layout.detector])
    assert report.errors == {}
    assert report.runs_written + report.runs_completed == [uid] and report.volumes_registered == [uid]
    run = client[RAW][uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    frames = run["primary"]["camera_image"].read()
    assert frames.shape[0] == N
    node = client[PROCESSED][uid]
    assert node.metadata["status"] == "complete" and node.metadata["scan_uid"] == uid
    np.testing.assert_array_equal(node["0"].read(), read_level(node.metadata["zarr_store"], 0))

    # replaying again finds nothing; replaying the same files again changes nothing
    assert not any(replay(server.layout.backup, client, volume_dir=server.layout.volumes).as_dict().values())
    replayed = server.layout.backup / "replayed"
    for path in replayed.rglob("*.json*"):
        target = server.layout.backup / path.relative_to(replayed)
        shutil.copy(path, target)
    # ... also through the command, which names a bad file, keeps it for later and exits 1
    garbage = server.layout.backup / "garbage.jsonl"
    garbage.write_text('{"name": "event", "doc": {}}\n')
    code = cli_main(["replay", str(server.layout.backup), "--uri", server.uri, "--data-dir", str(server.layout.root),
                     "--json"])
    again = json.loads(capsys.readouterr().out)
    assert code == 1 and again["runs_skipped"] == [uid] and again["volumes_skipped"] == [uid]
    assert list(again["errors"]) == [str(garbage)] and garbage.exists()
    assert "must begin with its start document" in again["errors"][str(garbage)]
    assert list(client[RAW]).count(uid) == 1 and list(client[PROCESSED]).count(uid) == 1


def test_a_failure_met_during_an_outage_is_spooled_and_replayed(tmp_path, no_client_retries):
    server = TiledServer(tmp_path / "catalog").start()
    try:
        sink = SpoolingSink(server.sink(), server.layout.backup, probe_interval=3600)
        server.stop()
        sink.record_failure("scan-1", "darks missing", {"scan_uid": "scan-1", "status": "failed"})
        assert not sink.online  # the next call does not wait for Tiled again
        sink.prepare_preview("scan-1", {"axial": np.zeros((2, 2), np.float32)}, {})  # offline: left to the first
        sink.write_preview("scan-1", {"axial": np.zeros((2, 2), np.float32)}, {})
        assert sink.previews_dropped == 1
        record = json.loads((server.layout.backup / "volumes" / "scan-1.json").read_text())
        assert record == {"kind": "failure", "scan_uid": "scan-1", "reason": "darks missing",
                          "metadata": {"scan_uid": "scan-1", "status": "failed"}}
        server.start()
        client = server.client()
        report = replay(server.layout.backup, client, volume_dir=server.layout.volumes)
        assert report.failures_recorded == ["scan-1"] and report.errors == {}
        md = client[PROCESSED]["scan-1"].metadata
        assert md["status"] == "failed" and md["reason"] == "darks missing"
    finally:
        server.stop()
