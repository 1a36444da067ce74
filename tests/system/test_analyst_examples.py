"""The runnable examples in docs/examples run against a real Tiled server."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bluesky import RunEngine

from tomobluesky.catalog import TiledSink, raw_run_writer
from tomobluesky.devices import PhantomSource, make_sim_beamline
from tomobluesky.live import live_reconstruction_router
from tomobluesky.plans import tomo_scan

pytestmark = pytest.mark.system
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.fixture(scope="module")
def scanned(tiled_server):
    client = tiled_server.client()
    RE = RunEngine({})
    RE.subscribe(raw_run_writer(client))
    RE.subscribe(live_reconstruction_router(TiledSink(client, volume_dir=tiled_server.layout.volumes)))
    source = PhantomSource(n_slices=4, n_columns=32, noise=False, sample_name="example-bone")
    uid, = RE(tomo_scan(*make_sim_beamline(source, tiled_server.layout.detector), num_projections=30,
                        num_darks=1, num_flats=1))
    return uid


def _run(script, tiled_server, **env):
    full = {**os.environ, "TILED_URI": tiled_server.uri, "TILED_API_KEY": tiled_server.reader_key, **env}
    out = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, env=full,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_find_and_slice(scanned, tiled_server):
    out = _run("find_and_slice.py", tiled_server, SAMPLE="example-bone")
    assert "1 complete volume(s) of sample 'example-bone'" in out
    assert scanned in out and "30 projections" in out and "streams ['dark', 'flat', 'primary']" in out


def test_databroker_v2(scanned, tiled_server):
    out = _run("databroker_v2.py", tiled_server)
    assert "tomo_scan" in out and "flats: (1, 4, 32)" in out


def test_export(scanned, tiled_server, tmp_path):
    out = _run("export_volume.py", tiled_server, OUT=str(tmp_path), SCAN_UID=scanned)
    assert out.strip().endswith(".nxs") and len(list(tmp_path.glob("*/slice_*.tiff"))) == 4


def test_multiscale(tiled_server):
    """Big enough for a second level: 300 px halves once to 150."""
    volume = np.random.default_rng(5).random((8, 300, 260), dtype=np.float32)
    TiledSink(tiled_server.client(), volume_dir=tiled_server.layout.volumes).write_volume(
        "pyramid-example", volume, {"scan_uid": "pyramid-example"})
    out = _run("multiscale.py", tiled_server, SCAN_UID="pyramid-example")
    assert "levels [[8, 300, 260], [4, 150, 130]]" in out
    assert "axial slice (300, 260), vertical slice (8, 260)" in out
    assert f"level 1 (4, 150, 130): mean {volume.mean():.4g}" in out
    assert f"slice sum {float(volume[0].sum()):.4g}" in out
    assert "dask from pyramid-example.zarr: (8, 300, 260)" in out and "same slice: True" in out
