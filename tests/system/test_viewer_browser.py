"""The web viewer in a real headless Chromium: a reader logs in with their
key, live slices change during a scan, the finished volume gets a slice slider
and shows the very pixels of the slice; a scan whose metadata is markup is
shown as text and runs no script.

What the page shows is compared, pixel by pixel, with the arrays in Tiled
rendered here independently of the viewer's own PNG code, and with the
phantom the camera looked at."""

import io
import json
import shutil
import threading
import time
from urllib.parse import quote

import httpx
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
from tomobluesky.viewer import create_app, to_png

pytestmark = pytest.mark.system
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def viewer(tiled_server):
    """``viewer(**create_app_options)``: the URL of a viewer served by uvicorn on a free port."""
    servers = []

    def start(**options) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(tiled_server.uri, poll_interval=0.1, **options), port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        while not server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (Debian package 'chromium'; `make test` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


def _shown_pixels(page, selector: str) -> np.ndarray:
    """The grey values of the image the page shows, read back through a canvas at its natural size
    (not a screenshot: no scaling, no neighbours)."""
    rgba = page.eval_on_selector(selector, """img => {
        const c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext("2d");
        g.drawImage(img, 0, 0);
        return {w: c.width, h: c.height, data: Array.from(g.getImageData(0, 0, c.width, c.height).data)};
    }""")
    return np.asarray(rgba["data"], dtype=np.float32).reshape(rgba["h"], rgba["w"], 4)[..., 0]


def _grey(image: np.ndarray, low: float = 1.0, high: float = 99.5) -> np.ndarray:
    """The grey levels the page should show for ``image``: its ``low``..``high`` percentiles stretched over
    0..255 (the viewer's documented contrast), computed here, not with the viewer's code."""
    image = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(image, [low, high])
    return np.floor(np.clip((image - lo) / (hi - lo), 0, 1) * 255 + 1e-6)


def _assert_shows(shown: np.ndarray, image: np.ndarray, what: str):
    """``shown`` (grey levels read back from the page) is ``image`` as the viewer should draw it: same shape,
    same orientation, every pixel within one grey level (float rounding of the percentiles)."""
    expected = _grey(image)
    assert shown.shape == expected.shape, f"{what}: the page shows {shown.shape}, the array is {expected.shape}"
    worst = np.abs(shown - expected).max()
    assert worst <= 1, f"{what}: the page's pixels differ from the array's by up to {worst:.0f} grey levels"


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _wait_until(page, condition: str, timeout: float = 30.0):
    """Poll a JavaScript ``condition`` from here: Playwright's wait_for_function evaluates a string,
    which the page's Content-Security-Policy (rightly) forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({condition})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout:.0f} s: {condition}")
        time.sleep(0.05)


def _in_catalogue(client, *path) -> bool:
    try:
        client[path]
    except KeyError:
        return False
    return True


def test_live_slices_change_during_the_scan_then_the_volume_shows(tiled_server, viewer, browser):
    client = tiled_server.client()
    phantom = PhantomSource(n_slices=8, n_columns=96, noise=False)
    camera, *others = beamline = make_sim_beamline(phantom, tiled_server.layout.detector)
    camera.exposure_time.put(0.1)  # ~12 s of acquisition: time to watch, even on a busy machine
    started = []
    RE = RunEngine({}, context_managers=[])  # runs in a thread: no SIGINT handler
    RE.subscribe(lambda name, doc: started.append(doc["uid"]) if name == "start" else None)
    RE.subscribe(raw_run_writer(client))
    RE.subscribe(live_reconstruction_router(TiledSink(client, volume_dir=tiled_server.layout.volumes),
                                            ReconSettings(preview_every=5)))
    scan = threading.Thread(target=RE, args=(tomo_scan(*beamline, num_projections=120, num_darks=2,
                                                       num_flats=2),))
    url = viewer()  # protected: the reader logs in with their own key
    scan.start()
    try:
        while not started or not _in_catalogue(client, "raw", started[0]):
            time.sleep(0.05)
        uid = started[0]
        page = browser.new_page()
        page.goto(f"{url}/?scan={uid}")
        page.wait_for_selector("#login:not([hidden])", timeout=10_000)
        page.fill("#key", "0" * 64)
        page.click("#login button")
        _wait_until(page, "document.getElementById('login-error').textContent.includes('refused')")
        page.fill("#key", tiled_server.reader_key)
        page.click("#login button")
        page.wait_for_selector("#live:not([hidden])", timeout=30_000)
        assert page.is_hidden("#login")
        _wait_until(page, "document.getElementById('live-axial').complete && "
                               "document.getElementById('live-axial').naturalWidth > 0")
        first_status = page.text_content("#status")
        first = _pixels(page.locator("#live-axial").screenshot())
        time.sleep(2.0)
        _wait_until(page, f"document.getElementById('status').textContent != {json.dumps(first_status)}")
        # the status can change before the new image is drawn: look again until it differs (a busy
        # machine draws late), as long as the scan still runs
        deadline = time.monotonic() + 15
        while True:
            _wait_until(page, "document.getElementById('live-axial').complete")
            second = _pixels(page.locator("#live-axial").screenshot())
            if np.abs(first - second).mean() > 1.0 or not scan.is_alive() or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert np.abs(first - second).mean() > 1.0, "the live slice did not change during the scan"
        scan.join(120)
        page.wait_for_selector("#volume:not([hidden])", timeout=60_000)
        _wait_until(page, "document.getElementById('volume-slice').complete && "
                               "document.getElementById('volume-slice').naturalWidth > 0")
        middle = _shown_pixels(page, "#volume-slice")
        page.locator("#slice").fill("0")
        _wait_until(page, "document.getElementById('volume-slice').src.includes('/volume/0.png')")
        _wait_until(page, "document.getElementById('volume-slice').complete && "
                               "document.getElementById('volume-slice').naturalWidth > 0")
        top = _shown_pixels(page, "#volume-slice")
        assert np.abs(middle - top).mean() > 1.0, "moving the slider did not change the slice"

        # the page shows exactly the slice the API serves, and that is the volume's slice 0 in Tiled
        src = page.eval_on_selector("#volume-slice", "img => img.src")
        served = _pixels(httpx.get(src, headers={"Authorization": f"Bearer {tiled_server.reader_key}"}).content)
        volume = client["processed"][uid]["0"].read()
        assert top.shape == served.shape == volume.shape[1:]
        assert np.abs(top - served).max() <= 1, "the page does not show the PNG the API serves"
        np.testing.assert_array_equal(served, _pixels(to_png(volume[0])))
        assert top.std() > 20 and len(np.unique(top)) > 32, "the slice shown is (nearly) uniform"
        assert f"scan {uid}" == page.text_content("#title")
        assert "complete" in page.text_content("#status")

        # the pixels, against the arrays themselves: the page first shows the middle slice, then slice 0,
        # each the right way up and with the documented contrast
        _assert_shows(middle, volume[len(volume) // 2], "the first volume slice shown")
        _assert_shows(top, volume[0], "volume slice 0")
        # and that is the phantom: the slice matches its own cut, not the middle one or a mirror image
        truth = phantom.volume
        assert _correlation(top, truth[0]) > 0.9
        for wrong in (truth[len(truth) // 2], truth[0][::-1], truth[0].T):
            assert _correlation(top, truth[0]) > _correlation(top, wrong) + 0.05
        assert _correlation(middle, truth[len(truth) // 2]) > 0.9

        # opened again after the scan, the page shows the final live slices: each the one it is named for
        page.reload()
        page.wait_for_selector("#volume:not([hidden])", timeout=60_000)
        names = ("axial", "vertical_x", "vertical_y")
        _wait_until(page, " && ".join(f"document.getElementById('live-{name}').complete && "
                                      f"document.getElementById('live-{name}').naturalWidth > 0" for name in names))
        for name in names:
            _assert_shows(_shown_pixels(page, f"#live-{name}"), client["live"][uid][name].read(),
                          f"the live {name} slice")
        # the live axial slice is the middle detector row, and after 180 degrees it is the phantom's cut there
        assert _correlation(_shown_pixels(page, "#live-axial"), truth[len(truth) // 2]) > 0.9
    finally:
        scan.join(120)


PAYLOAD = ('<img src=x onerror="window.__pwned=1;document.title=\'pwned\'">'
           '<script>window.__pwned=2</script><b id="injected">bold</b>')


def test_markup_in_scan_metadata_is_shown_as_text_and_runs_nothing(tiled_server, viewer, browser):
    client = tiled_server.client()
    RE = RunEngine({})
    RE.subscribe(raw_run_writer(client))
    RE.subscribe(live_reconstruction_router(TiledSink(client, volume_dir=tiled_server.layout.volumes),
                                            ReconSettings(preview_every=2)))
    uid, = RE(tomo_scan(*make_sim_beamline(PhantomSource(n_slices=2, n_columns=16, noise=False),
                                           tiled_server.layout.detector),
                        num_projections=4, num_darks=1, num_flats=1, md={"sample_name": PAYLOAD}))
    url = viewer(public=True, api_key=tiled_server.reader_key)
    page = browser.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(f"{url}/?scan={quote(PAYLOAD)}")  # markup in the address too
    _wait_until(page, f"document.getElementById('scans').textContent.includes({json.dumps(PAYLOAD)})")
    row = page.locator("#scans div", has_text=PAYLOAD)
    assert row.count() == 1
    assert page.locator("#scans img, #scans script, #injected, #title img").count() == 0
    assert page.text_content("#title") == f"scan {PAYLOAD}"
    _wait_until(page, "document.getElementById('status').textContent.includes('nothing to show')")
    row.click()  # the scan itself: its volume, fetched with the uid in the URL
    page.wait_for_selector("#volume:not([hidden])", timeout=30_000)
    _wait_until(page, "document.getElementById('volume-slice').complete && "
                           "document.getElementById('volume-slice').naturalWidth > 0")
    assert _shown_pixels(page, "#volume-slice").shape == (16, 16)
    # and the policy would stop a script that did get into the page
    page.evaluate("""() => { const s = document.createElement("script");
                             s.textContent = "window.__csp_failed = 1"; document.body.append(s); }""")
    time.sleep(0.5)
    assert page.evaluate("() => [window.__pwned, window.__csp_failed, document.title]") == \
        [None, None, "tomobluesky viewer"]
    blocked = [m for m in console if "Content Security Policy" in m]
    assert len(blocked) == 1 and "inline script" in blocked[0], console  # only the one this test inserted
