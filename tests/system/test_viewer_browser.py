"""The web viewer in a real headless Chromium, over a real Tiled server.

A reader logs in with their key; a finished multiscale volume shows in three
orthogonal planes, each from the pyramid level that fits the canvas, with the
contrast window taken from the volume's histogram; zooming reaches level 0
and a click moves the other planes. Every check reads the canvas's pixels
back and compares them with the arrays stored in the Zarr store, rendered
here with the documented window, not with the viewer's code. During a scan
the page shows the live slices and the centre in use, and a request made on
the page reaches the reconstruction's sink. A scan whose metadata is markup is
shown as text and runs no script.

No scan runs here: the volume and the previews are written into Tiled the way
the stop path and the live reconstruction write them (viewer_data.py)."""

import json
import shutil
import threading
import time
from urllib.parse import quote

import numpy as np
import pytest
import uvicorn

from tests.system.viewer_data import live_scan, raw_scan, volume_scan
from tomobluesky.catalog import TiledSink, free_port
from tomobluesky.viewer import create_app

pytestmark = pytest.mark.system
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PX = 128  # the page's canvas size in device pixels (?px=128): small arrays, whole pixels at every zoom
SHAPE = (48, 256, 256)  # levels (48, 256, 256), (24, 128, 128), (12, 64, 64), (6, 32, 32)
PLANE_AXES = {"z": (1, 2), "y": (0, 2), "x": (0, 1)}


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("Chromium is not installed (Debian package 'chromium'; `make test` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def volume(tiled_server):
    return volume_scan(tiled_server, SHAPE, min_size=32)


def _wait_until(page, condition: str, timeout: float = 30.0):
    """Poll a JavaScript ``condition`` from here: Playwright's wait_for_function evaluates a string,
    which the page's Content-Security-Policy (rightly) forbids."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({condition})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout:.0f} s: {condition}")
        time.sleep(0.05)


def _canvas(page, axis: str) -> tuple[dict, np.ndarray]:
    """What the plane's canvas says it drew (level, level-0 region, where, window), and its grey pixels."""
    got = page.eval_on_selector(f"#plane-{axis}", """c => ({view: c.dataset.view,
        data: Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data)})""")
    pixels = np.asarray(got["data"], dtype=np.float64).reshape(PX, PX, 4)
    return json.loads(got["view"]), pixels


def _draws(page, axis: str) -> int:
    return int(page.eval_on_selector(f"#plane-{axis}", "c => Number(c.dataset.draws || 0)"))


def _wait_drawn(page, axis: str, after: int, condition: str = "true"):
    _wait_until(page, f"(() => {{ const c = document.getElementById('plane-{axis}');"
                      f" if (Number(c.dataset.draws || 0) <= {after}) return false;"
                      f" const view = JSON.parse(c.dataset.view); return {condition}; }})()")


def _grey(image: np.ndarray, window) -> np.ndarray:
    """The documented rendering: vmin -> 0, vmax -> 255, grey = floor(255 t), clipped."""
    lo, hi = window
    return np.floor(np.clip((np.asarray(image, np.float64) - lo) / (hi - lo), 0, 1) * 255)


def _expected_level(extent: int, size: int, levels) -> int:
    """The coarsest level at which ``extent`` level-0 pixels still span ``size`` pixels: computed here."""
    fits = [k for k in range(len(levels)) if extent / 2**k >= size]
    return fits[-1] if fits else 0


def _assert_plane(page, axis: str, levels, *, region=None, scale=None):
    """The canvas shows, pixel for pixel, the stored level it names, over the region it names; that
    level is the one that fits, and the region covers what the view asked for."""
    view, pixels = _canvas(page, axis)
    shape = levels[0].shape
    rows, cols = (shape[a] for a in PLANE_AXES[axis])
    r0, r1, c0, c1 = region or (0, rows, 0, cols)
    scale = scale or max(rows, cols) / PX
    k = _expected_level(max(r1 - r0, c1 - c0), int(np.floor(max(r1 - r0, c1 - c0) / scale + 1e-9)), levels)
    assert view["level"] == k, f"{axis}: drawn from level {view['level']}, the canvas fits level {k}"
    assert view["region"] == [r0, r1, c0, c1], f"{axis}: region {view['region']}, asked {[r0, r1, c0, c1]}"
    index = view["index"]
    cut = [slice(None)] * 3
    cut["zyx".index(axis)] = index >> k
    ra, ca = PLANE_AXES[axis]
    cut[ra], cut[ca] = slice(r0 >> k, -(-r1 >> k)), slice(c0 >> k, -(-c1 >> k))
    image = levels[k][tuple(cut)]
    assert view["image"] == list(image.shape)
    # the canvas pixel nearest each voxel's centre; a voxel cut by the canvas's edge may have none
    n_rows, n_cols = image.shape
    ys = np.floor(view["y"] + (np.arange(n_rows) + 0.5) * view["h"] / n_rows).astype(int)
    xs = np.floor(view["x"] + (np.arange(n_cols) + 0.5) * view["w"] / n_cols).astype(int)
    rows_in, cols_in = (ys >= 0) & (ys < PX), (xs >= 0) & (xs < PX)
    assert rows_in.sum() >= n_rows - 1 and cols_in.sum() >= n_cols - 1, f"{axis}: the image is not on the canvas"
    shown = pixels[np.ix_(ys[rows_in], xs[cols_in])]
    assert (shown[..., 0] == shown[..., 1]).all() and (shown[..., 3] == 255).all(), f"{axis}: not an opaque grey"
    expected = _grey(image, view["window"])[np.ix_(rows_in, cols_in)]
    worst = np.abs(shown[..., 0] - expected).max()
    assert worst == 0, f"{axis} = {index}: the canvas differs from level {k} of the store by up to {worst} grey levels"
    assert expected.std() > 20, f"{axis}: a (nearly) uniform plane would prove little"
    return view


def _histogram_window(volume: np.ndarray, bins: int = 256) -> tuple[float, float]:
    """The 1 % and 99.5 % points of the volume's histogram (linear within a bin), computed here."""
    counts, edges = np.histogram(volume, bins=bins, range=(volume.min(), volume.max()))
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    return tuple(float(np.interp(p / 100 * counts.sum(), cumulative, edges)) for p in (1, 99.5))


def test_three_planes_zoom_and_cross_hair_show_the_stored_pixels(tiled_server, viewer, browser, volume):
    uid, levels = volume
    url = viewer()  # protected: the reader logs in with their own key
    page = browser.new_page()
    page.goto(f"{url}/?px={PX}&scan={uid}")
    page.wait_for_selector("#login:not([hidden])", timeout=10_000)
    page.fill("#key", "0" * 64)
    page.click("#login button")
    _wait_until(page, "document.getElementById('login-error').textContent.includes('refused')")
    page.fill("#key", tiled_server.reader_key)
    page.click("#login button")
    page.wait_for_selector("#volume:not([hidden])", timeout=30_000)
    # the window comes from the histogram (level 0 has fewer than 4M voxels: all of it)
    window = _histogram_window(levels[0])
    for axis in "zyx":
        _wait_drawn(page, axis, 0, "view.window !== null")
    for axis in "zyx":
        view = _assert_plane(page, axis, levels)
        np.testing.assert_allclose(view["window"], window, rtol=1e-6)
        assert view["index"] == SHAPE["zyx".index(axis)] // 2  # the planes start in the middle
        assert view["level"] == 1  # 256 voxels on 128 canvas pixels

    # two wheel steps in at the axial canvas's centre: 4× zoom, a 64-voxel region from level 0
    box = page.locator("#overlay-z").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(2):
        before = _draws(page, "z")
        page.mouse.wheel(0, -100)
        _wait_drawn(page, "z", before)
    _wait_drawn(page, "z", 0, "view.level === 0")
    zoomed = _canvas(page, "z")[0]["region"]
    r0, r1, c0, c1 = zoomed  # 64 voxels (one more when the pointer sat between two) about the centre
    assert r1 - r0 in (64, 65) and c1 - c0 in (64, 65) and abs(r0 + r1 - 256) <= 4 and abs(c0 + c1 - 256) <= 4
    view = _assert_plane(page, "z", levels, region=zoomed, scale=0.5)
    assert abs(view["w"] / (c1 - c0) - 2) < 1e-9  # every level-0 voxel is 2 × 2 canvas pixels

    # a click on the axial plane moves the coronal and sagittal planes to that voxel
    before = {axis: _draws(page, axis) for axis in "yx"}
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.75)
    row = view["region"][0] + (0.75 * PX - view["y"]) / 2  # the voxel under the pointer at 2 pixels per voxel
    col = view["region"][2] + (0.25 * PX - view["x"]) / 2
    _wait_drawn(page, "y", before["y"], f"Math.abs(view.index - {row}) <= 1")
    _wait_drawn(page, "x", before["x"], f"Math.abs(view.index - {col}) <= 1")
    for axis, other in (("y", "x"), ("x", "y")):
        shown = _assert_plane(page, axis, levels)
        assert page.input_value(f"#index-{axis}") == str(shown["index"])

    # a window typed in by hand is used as given
    before = _draws(page, "x")
    page.fill("#vmin", "-1")
    page.fill("#vmax", "2.5")
    page.press("#vmax", "Enter")
    _wait_drawn(page, "x", before, "view.window[0] === -1 && view.window[1] === 2.5")
    _assert_plane(page, "x", levels)


def test_the_first_axial_plane_is_asked_for_with_the_page_and_drawn_from_that_answer(tiled_server, viewer, browser,
                                                                                       volume):
    """Opened on a scan, the page asks for its axial plane at once (the server's defaults: middle slice,
    whole plane), beside the session and the volume's description, and draws that answer: the first
    image costs one round trip. Later draws (the histogram's window) ask as usual."""
    uid, levels = volume
    page = browser.new_page()
    asked = []
    page.on("request", lambda request: asked.append(request.url) if "/plane/z.png" in request.url else None)
    page.goto(f"{viewer(public=True, api_key=tiled_server.reader_key)}/?px={PX}&scan={uid}")
    for axis in "zyx":
        _wait_drawn(page, axis, 0, "view.window !== null")
    first, *later = asked
    assert "index=" not in first and "region=" not in first and f"size={PX}" in first
    assert len(later) == 1 and f"index={SHAPE[0] // 2}" in later[0]  # only the windowed redraw followed
    assert _draws(page, "z") == 2
    _assert_plane(page, "z", levels)


def test_line_profile_drawn_on_a_plane_reads_the_stored_values(tiled_server, viewer, browser, volume):
    uid, levels = volume
    page = browser.new_page()
    page.goto(f"{viewer(public=True, api_key=tiled_server.reader_key)}/?px={PX}&scan={uid}")
    page.wait_for_selector("#volume:not([hidden])", timeout=30_000)
    _wait_drawn(page, "z", 0)
    page.check("input[name=mode][value=profile]")
    box = page.locator("#overlay-z").bounding_box()
    at = lambda fx, fy: (box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)  # noqa: E731
    page.mouse.move(*at(0.1, 0.2))
    page.mouse.down()
    page.mouse.move(*at(0.5, 0.6), steps=4)
    page.mouse.move(*at(0.9, 0.2), steps=4)
    page.mouse.up()
    _wait_until(page, "document.getElementById('profile').dataset.profile")
    profile = json.loads(page.eval_on_selector("#profile", "c => c.dataset.profile"))
    # the line spans ~0.8 of a canvas showing the level-1 plane: it is read from level 1
    assert profile["level"] == 1 and profile["index"] == SHAPE[0] // 2 >> 1
    points = np.asarray(profile["points"])
    np.testing.assert_array_equal(profile["values"], levels[1][profile["index"]][points[:, 0], points[:, 1]])
    # the samples run from the start to the end of the line drawn (rows 0.2 -> 0.2 of the plane, columns 0.1 -> 0.9)
    assert np.abs(points[0] - [0.2 * 128, 0.1 * 128]).max() <= 1.5
    assert np.abs(points[-1] - [0.2 * 128, 0.9 * 128]).max() <= 1.5
    assert len(points) >= 0.75 * 128 and np.abs(np.diff(points, axis=0)).max() <= 1
    assert f"{len(points)} values from level 1" in page.text_content("#profile-text")


def _live_pixels(page, name: str) -> np.ndarray:
    rgba = page.eval_on_selector(f"#live-{name}", """img => {
        const c = document.createElement("canvas");
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext("2d");
        g.drawImage(img, 0, 0);
        return {w: c.width, h: c.height, data: Array.from(g.getImageData(0, 0, c.width, c.height).data)};
    }""")
    return np.asarray(rgba["data"], dtype=np.float64).reshape(rgba["h"], rgba["w"], 4)[..., 0]


def _percentile_grey(image: np.ndarray, low: float = 1.0, high: float = 99.5) -> np.ndarray:
    lo, hi = np.percentile(np.asarray(image, np.float64), [low, high])
    return _grey(image, (lo, hi))


def test_live_slices_centre_and_steering_from_the_page(tiled_server, viewer, browser):
    uid, slices = live_scan(tiled_server, rows=12, columns=20, metadata={"center": 9.25, "center_source": "plan"})
    page = browser.new_page()
    page.goto(f"{viewer(public=True, api_key=tiled_server.reader_key, control_key=tiled_server.writer_key)}"
              f"/?scan={uid}")
    page.wait_for_selector("#live:not([hidden])", timeout=30_000)
    loaded = " && ".join(f"document.getElementById('live-{n}').complete && "
                         f"document.getElementById('live-{n}').naturalWidth > 0" for n in slices)
    _wait_until(page, loaded)
    for name, image in slices.items():
        assert np.abs(_live_pixels(page, name) - _percentile_grey(image)).max() <= 1, name
    assert page.text_content("#live-center") == "9.25 (plan)"
    assert "10 projections" in page.text_content("#status")

    # the reconstruction writes a newer preview: the page follows it
    sink = TiledSink(tiled_server.client(), control_poll_s=0)
    newer = {name: np.ascontiguousarray(image[::-1]) for name, image in slices.items()}
    sink.write_preview(uid, newer, {"projections": 30, "center": 11.5, "center_source": "opposite projections",
                                    "row": 3, "binning": 1})
    _wait_until(page, "document.getElementById('live-center').textContent === '11.50 (opposite projections)'")
    _wait_until(page, loaded + " && document.getElementById('live-axial').src.includes('t=')")
    deadline = time.monotonic() + 15
    while np.abs(_live_pixels(page, "axial") - _percentile_grey(newer["axial"])).max() > 1:
        assert time.monotonic() < deadline, "the page still shows the old live axial slice"
        time.sleep(0.1)

    # a request the viewer refuses says why on the page, and reaches nobody
    assert sink.live_request(uid) is None
    page.fill("#live-row", "12")  # the detector has rows 0..11
    page.click("#live-apply")
    _wait_until(page, "document.getElementById('control-status').textContent.includes('0 to 11')")
    assert sink.live_request(uid) is None
    # a good one reaches the sink, once
    page.fill("#live-row", "4")
    page.fill("#live-center-input", "10.5")
    page.click("#live-apply")
    _wait_until(page, "document.getElementById('control-status').textContent.includes('requested row 4')")
    assert sink.live_request(uid) == {"row": 4, "center": 10.5}
    assert sink.live_request(uid) is None


PAYLOAD = ('<img src=x onerror="window.__pwned=1;document.title=\'pwned\'">'
           '<script>window.__pwned=2</script><b id="injected">bold</b>')


def test_markup_in_scan_metadata_is_shown_as_text_and_runs_nothing(tiled_server, viewer, browser):
    uid, _ = volume_scan(tiled_server, (4, 16, 16), min_size=16, sample=PAYLOAD)
    raw_scan(tiled_server, uid, PAYLOAD)
    url = viewer(public=True, api_key=tiled_server.reader_key)
    page = browser.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(f"{url}/?px={PX}&scan={quote(PAYLOAD)}")  # markup in the address too
    _wait_until(page, f"document.getElementById('scans').textContent.includes({json.dumps(PAYLOAD)})")
    row = page.locator("#scans div", has_text=PAYLOAD)
    assert row.count() == 1
    assert page.locator("#scans img, #scans script, #injected, #title img").count() == 0
    assert page.text_content("#title") == f"scan {PAYLOAD}"
    _wait_until(page, "document.getElementById('status').textContent.includes('nothing to show')")
    row.click()  # the scan itself: its volume, fetched with the uid in the URL
    page.wait_for_selector("#volume:not([hidden])", timeout=30_000)
    _wait_drawn(page, "z", 0)
    assert _canvas(page, "z")[0]["image"] == [16, 16]
    # and the policy would stop a script that did get into the page
    page.evaluate("""() => { const s = document.createElement("script");
                             s.textContent = "window.__csp_failed = 1"; document.body.append(s); }""")
    time.sleep(0.5)
    assert page.evaluate("() => [window.__pwned, window.__csp_failed, document.title]") == \
        [None, None, "tomobluesky viewer"]
    blocked = [m for m in console if "Content Security Policy" in m]
    assert len(blocked) == 1 and "inline script" in blocked[0], console  # only the one this test inserted
