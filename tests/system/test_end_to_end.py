"""The spine end to end against real processes: RunEngine → live reconstruction
→ real Tiled server; the CLI demo; serving the catalogue again."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import httpx
import pytest
from bluesky import RunEngine
from tiled.queries import Key

from tomobluesky.catalog import TiledServer, TiledSink, free_port, raw_run_writer
from tomobluesky.devices import make_sim_beamline, PhantomSource
from tomobluesky.live import live_reconstruction_router
from tomobluesky.plans import tomo_scan
from tomobluesky.recon import ssim_in_circle

pytestmark = pytest.mark.system


def test_phantom_scan_lands_in_tiled_raw_and_processed(tiled_server, tiled_client):
    source = PhantomSource(n_slices=4, n_columns=64, axis_offset=4.0)
    RE = RunEngine({})
    RE.subscribe(raw_run_writer(tiled_client))
    RE.subscribe(live_reconstruction_router(TiledSink(tiled_client, volume_dir=tiled_server.layout.volumes)))
    uid, = RE(tomo_scan(*make_sim_beamline(source, tiled_server.layout.detector), num_projections=90,
                        num_darks=3, num_flats=3))
    reader = tiled_server.reader_client()
    run = reader["raw"][uid]
    assert run["primary"]["camera_image"].shape == (90, 4, 64)
    assert run["dark"]["camera_image"].shape == (3, 4, 64)
    node = reader["processed"].search(Key("scan_uid") == uid).values().first()
    assert node.metadata["status"] == "complete"
    assert abs(node.metadata["center"] - source.center) < 0.5
    # Poisson noise at 20k counts caps SSIM near 0.65 at this size; a wrong centre gives < 0.3
    assert ssim_in_circle(node["0"][2], source.volume[2]) > 0.55
    assert reader["live"][uid].metadata["projections"] == 90


def test_tiled_down_keeps_the_scan_and_its_documents(tmp_path):
    server = TiledServer(tmp_path).start()
    try:
        writer = raw_run_writer(server.client(), server.layout.backup)
    finally:
        server.stop()  # Tiled goes down before the scan starts
    RE = RunEngine({})
    RE.subscribe(writer)
    source = PhantomSource(n_slices=2, n_columns=32, noise=False)
    uid, = RE(tomo_scan(*make_sim_beamline(source, tmp_path / "det"), num_projections=10, num_darks=1, num_flats=1))
    backups = list(server.layout.backup.iterdir())
    assert len(backups) == 1
    records = [json.loads(line) for line in backups[0].read_text().splitlines()]
    names = [r["name"] for r in records]
    assert names[0] == "start" and names[-1] == "stop" and records[0]["doc"]["uid"] == uid
    events = sum(len(r["doc"]["seq_num"]) for r in records if r["name"] == "event_page")
    datums = sum(1 for r in records if r["name"] == "stream_datum")
    assert events == 12 and datums == 12  # 1 dark + 1 flat + 10 projections, none lost


def _cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "tomobluesky.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, **kwargs)


def test_demo_on_the_tooth_then_serve_again(tmp_path):
    data_dir = tmp_path / "demo"
    out = _cli("demo", "--data-dir", str(data_dir), "--json", timeout=600)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert abs(summary["center"] - 295) <= 1.5
    assert summary["volume_shape"] == [2, 640, 640]
    # previews during the scan: every 10 projections while the off-thread live path keeps up, every 0.5 s
    # while it is behind; how many depends on the machine, that there were some does not
    assert summary["preview_updates"] >= 1
    assert set(summary["timings"]) == {"acquisition", "reconstruction", "registration", "stop_to_volume"}
    # the cost of the stop: from the stop document to a complete volume, and the process's peak memory
    assert 0 < summary["stop_to_volume_s"] == summary["timings"]["stop_to_volume"] < 60
    assert summary["timings"]["reconstruction"] <= summary["stop_to_volume_s"]
    assert 100 < summary["peak_rss_mb"] < 2000 and summary["peak_rss_mb_by_process"]["tiled"] > 50
    assert summary["levels"] == [[2, 640, 640], [1, 320, 320], [1, 160, 160]]
    assert os.path.getsize(summary["png"]) > 10_000
    # the server is gone after the demo
    with pytest.raises(httpx.HTTPError):
        httpx.get(summary["tiled_uri"] + "/healthz", timeout=2)

    port = free_port()
    # started as a background job of a non-interactive shell would be (CI): SIGINT inherited as ignored;
    # Ctrl-C must still stop it, and its Tiled child with it
    serve = subprocess.Popen([sys.executable, "-m", "tomobluesky.cli", "serve", "--data-dir", str(data_dir),
                              "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert "Tiled serving" in serve.stdout.readline()
        code = textwrap.dedent(f"""
            import os
            from tiled.client import from_uri
            from tiled.queries import Key
            c = from_uri("http://127.0.0.1:{port}", api_key=open(os.environ["KEY_FILE"]).read().strip())
            vol = c["processed"].search(Key("scan_uid") == "{summary['scan_uid']}").values().first()
            s = vol["0"][1]
            print(vol.metadata["center"], s.shape, float(s.std()))
        """)
        read = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "KEY_FILE": summary["reader_key_file"]})  # the analysts' key
        assert read.returncode == 0, read.stderr
        center, *_ = read.stdout.split()
        assert float(center) == pytest.approx(summary["center"], abs=1e-3)
        r = httpx.put(f"http://127.0.0.1:{port}/api/v1/metadata/processed/{summary['scan_uid']}",
                      json={"metadata": {"vandal": True}})
        assert r.status_code == 401
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            assert serve.wait(30) == 0
        finally:
            if serve.poll() is None:
                serve.terminate()
                serve.wait(30)
    with pytest.raises(httpx.HTTPError):  # the Tiled child went with it
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_demo_refuses_a_missing_replay_file(tmp_path):
    out = _cli("demo", "--data-dir", str(tmp_path), "--tooth-file", str(tmp_path / "missing.h5"), timeout=120)
    assert out.returncode == 1
    assert "not found" in out.stderr and "missing.h5" in out.stderr
