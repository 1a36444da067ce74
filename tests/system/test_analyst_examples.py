"""The runnable examples in docs/examples run against a real Tiled server."""

import os
import subprocess
import sys
from pathlib import Path

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
    RE.subscribe(live_reconstruction_router(TiledSink(client)))
    source = PhantomSource(n_slices=4, n_columns=32, noise=False, sample_name="example-bone")
    uid, = RE(tomo_scan(*make_sim_beamline(source, tiled_server.layout.detector), num_projections=30,
                        num_darks=1, num_flats=1))
    return uid


def _run(script, tiled_server, **env):
    full = {**os.environ, "TILED_URI": tiled_server.uri, "TILED_API_KEY": tiled_server.api_key, **env}
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
    assert "tomo_step_scan" in out and "flats: (1, 4, 32)" in out


def test_export(scanned, tiled_server, tmp_path):
    out = _run("export_volume.py", tiled_server, OUT=str(tmp_path))
    assert out.strip().endswith(".nxs") and len(list(tmp_path.glob("*/slice_*.tiff"))) >= 4
