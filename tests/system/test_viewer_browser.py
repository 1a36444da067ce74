"""The web viewer in a real headless Chromium: live slices change during a
scan, the finished volume gets a slice slider."""

import io
import shutil
import threading
import time

import numpy as np
import pytest
import uvicorn
from bluesky import RunEngine
from PIL import Image

from tomobluesky.catalog import TiledSink, free_port, raw_run_writer
from tomobluesky.devices import PhantomSource, make_sim_beamline
from tomobluesky.live import live_reconstruction_router
from tomobluesky.plans import tomo_scan
from tomobluesky.schema import ReconSettings
from tomobluesky.viewer import create_app

pytestmark = pytest.mark.system
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _import_anyio_now():
    """anyio imports its parts lazily, on first use: here, in the server's thread. Under pytest those
    imports go through assertion rewriting (anyio is a pytest plugin), i.e. ``ast.parse``, and CPython 3.11
    can fail compiling in two threads at once ("AST constructor recursion depth mismatch"). Import them
    in this thread first."""
    import anyio
    import anyio._backends._asyncio  # noqa: F401  (the backend, also loaded on first use)

    for name in dir(anyio):
        getattr(anyio, name)


@pytest.fixture
def viewer(tiled_server):
    _import_anyio_now()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(tiled_server.client(), poll_interval=0.1), port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


def test_live_slices_change_during_the_scan_then_the_volume_shows(tiled_server, viewer):
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (Debian package 'chromium'; `make test` installs it)")
    from playwright.sync_api import sync_playwright

    client = tiled_server.client()
    camera, *others = beamline = make_sim_beamline(PhantomSource(n_slices=8, n_columns=96, noise=False),
                                                   tiled_server.layout.detector)
    camera.exposure_time.put(0.06)  # ~8 s of acquisition: time to watch
    started = []
    RE = RunEngine({}, context_managers=[])  # runs in a thread: no SIGINT handler
    RE.subscribe(lambda name, doc: started.append(doc["uid"]) if name == "start" else None)
    RE.subscribe(raw_run_writer(client))
    RE.subscribe(live_reconstruction_router(TiledSink(client, volume_dir=tiled_server.layout.volumes),
                                            ReconSettings(preview_every=5)))
    scan = threading.Thread(target=RE, args=(tomo_scan(*beamline, num_projections=120, num_darks=2,
                                                       num_flats=2),))
    scan.start()
    try:
        while not started:
            time.sleep(0.05)
        uid = started[0]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"{viewer}/?scan={uid}")
            page.wait_for_selector("#live:not([hidden])", timeout=30_000)
            page.wait_for_function("document.getElementById('live-axial').complete && "
                                   "document.getElementById('live-axial').naturalWidth > 0")
            first_status = page.text_content("#status")
            first = _pixels(page.locator("#live-axial").screenshot())
            time.sleep(2.0)
            page.wait_for_function(f"document.getElementById('status').textContent != {first_status!r}")
            page.wait_for_function("document.getElementById('live-axial').complete")
            second = _pixels(page.locator("#live-axial").screenshot())
            assert scan.is_alive(), "the scan ended before the second look: the test saw no live update"
            assert np.abs(first - second).mean() > 1.0, "the live slice did not change during the scan"
            scan.join(120)
            page.wait_for_selector("#volume:not([hidden])", timeout=60_000)
            page.wait_for_function("document.getElementById('volume-slice').naturalWidth > 0")
            middle = _pixels(page.locator("#volume-slice").screenshot())
            page.locator("#slice").fill("0")
            page.wait_for_function("document.getElementById('volume-slice').src.includes('/volume/0.png')")
            page.wait_for_function("document.getElementById('volume-slice').complete")
            time.sleep(0.3)
            top = _pixels(page.locator("#volume-slice").screenshot())
            assert np.abs(middle - top).mean() > 1.0, "moving the slider did not change the slice"
            assert "scan" in page.text_content("#scans")
            browser.close()
    finally:
        scan.join(120)


def test_viewer_api_lists_scans_and_names_problems(tiled_server):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    client = tiled_server.client()
    RE = RunEngine({})
    RE.subscribe(raw_run_writer(client))
    RE.subscribe(live_reconstruction_router(TiledSink(client, volume_dir=tiled_server.layout.volumes),
                                            ReconSettings(preview_every=2)))
    uid, = RE(tomo_scan(*make_sim_beamline(PhantomSource(n_slices=2, n_columns=16, noise=False),
                                           tiled_server.layout.detector), num_projections=4, num_darks=1, num_flats=1))
    http = TestClient(create_app(client))
    rows = http.get("/api/scans").json()
    mine = next(r for r in rows if r["uid"] == uid)
    assert mine["volume_status"] == "complete" and mine["live"] is True
    png = http.get(f"/api/scans/{uid}/volume/1.png")
    assert png.status_code == 200 and _pixels(png.content).shape == (16, 16)
    assert http.get(f"/api/scans/{uid}/live/axial.png").status_code == 200
    assert http.get(f"/api/scans/{uid}/volume/5.png").status_code == 404
    assert "no volume for scan nope" in http.get("/api/scans/nope/volume").json()["error"]
    bad = http.get(f"/api/scans/{uid}/volume/0.png?low=90&high=10")
    assert bad.status_code == 400 and "contrast" in bad.json()["error"]
