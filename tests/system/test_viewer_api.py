"""The viewer's HTTP API over a real Tiled server: whose key it reads with,
what it answers for unknown scans and malformed input, its event streams and
its security headers. (The page itself, in Chromium: test_viewer_browser.py.)"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import warnings
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from bluesky import RunEngine
from PIL import Image

from tests.system.waiting import wait_for
from tomobluesky.catalog import TiledSink, free_port, raw_run_writer
from tomobluesky.devices import PhantomSource, make_sim_beamline
from tomobluesky.live import live_reconstruction_router
from tomobluesky.plans import tomo_scan
from tomobluesky.schema import ReconSettings
from tomobluesky.viewer import COOKIE, ClientCache, create_app
from tomobluesky.viewer._auth import Unauthorized

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.system
PAYLOAD = '<img src=x onerror="window.__pwned=1">'
STATIC = os.path.join(os.path.dirname(__file__), "..", "..", "tomobluesky", "viewer", "static")


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _scan(server, *, reconstruct: bool, sample: str) -> str:
    client = server.client()
    RE = RunEngine({})
    RE.subscribe(raw_run_writer(client))
    if reconstruct:
        RE.subscribe(live_reconstruction_router(TiledSink(client, volume_dir=server.layout.volumes),
                                                ReconSettings(preview_interval_s=0, preview_every=2)))
    uid, = RE(tomo_scan(*make_sim_beamline(PhantomSource(n_slices=2, n_columns=16, noise=False),
                                           server.layout.detector),
                        num_projections=4, num_darks=1, num_flats=1, md={"sample_name": sample}))
    return uid


@pytest.fixture(scope="module")
def scans(tiled_server):
    """A reconstructed scan whose sample name is markup, and a raw run with no volume ever."""
    return {"done": _scan(tiled_server, reconstruct=True, sample=PAYLOAD),
            "raw_only": _scan(tiled_server, reconstruct=False, sample="raw only")}


@pytest.fixture(scope="module")
def http(tiled_server):
    """The protected viewer (the default): it holds no key. Its event streams end after 30 s at most,
    so a stream that wrongly waits fails its test instead of holding the suite for 600 s."""
    return TestClient(create_app(tiled_server.uri, poll_interval=0.05, max_stream_s=30))


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)


def test_reads_need_the_readers_own_key(tiled_server, scans, http):
    key = tiled_server.reader_key
    missing = http.get("/api/scans")
    assert missing.status_code == 401 and "API key" in missing.json()["error"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert http.get("/api/scans", headers=bearer("0" * 64)).status_code == 401
    refused = http.get(f"/api/scans/{scans['done']}/volume/0.png", headers=bearer("f" * 64))
    assert refused.status_code == 401 and "refused" in refused.json()["error"]
    for odd in ("two words", "é" * 40, "x" * 600):  # never passed on to Tiled as a header
        assert http.get("/api/scans", headers={"Authorization": f"Bearer {odd}".encode()}).status_code == 401
    rows = http.get("/api/scans", headers=bearer(key))
    assert rows.status_code == 200 and scans["done"] in {r["uid"] for r in rows.json()}
    assert http.get("/api/scans", headers={"Authorization": f"Apikey {key}"}).status_code == 200  # Tiled's scheme
    assert http.get(f"/api/scans/{scans['done']}/volume/1.png", headers=bearer(key)).status_code == 200
    # the live-event stream and the slices are behind the key too
    assert http.get(f"/api/scans/{scans['done']}/live/events").status_code == 401
    assert http.get(f"/api/scans/{scans['done']}/live/axial.png").status_code == 401


def test_login_keeps_the_key_in_an_httponly_strict_cookie(tiled_server, scans):
    http = TestClient(create_app(tiled_server.uri))
    key = tiled_server.reader_key
    wrong = http.post("/login", json={"key": "0" * 64})
    assert wrong.status_code == 401 and COOKIE not in http.cookies
    assert http.post("/login", data={"key": key}).status_code == 415  # a plain form: what another site could post
    assert http.post("/login", json={"key": key}, headers={"Origin": "http://evil.example"}).status_code == 403
    assert http.post("/login", json=["not", "an", "object"]).status_code == 400
    ok = http.post("/login", json={"key": key})
    assert ok.status_code == 200
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert http.get("/api/scans").status_code == 200  # the cookie alone is enough now
    assert http.get(f"/api/scans/{scans['done']}/live/axial.png").status_code == 200
    http.post("/logout")
    assert http.get("/api/scans").status_code == 401


def test_public_viewer_reads_with_its_own_key_for_anyone(tiled_server, scans):
    http = TestClient(create_app(tiled_server.uri, public=True, api_key=tiled_server.reader_key))
    assert http.get("/api/session").json() == {"public": True, "control": False}
    assert scans["done"] in {r["uid"] for r in http.get("/api/scans").json()}
    assert http.get(f"/api/scans/{scans['done']}/volume/0.png").status_code == 200
    assert http.post("/login", json={"key": "x"}).status_code == 400
    with pytest.raises(Unauthorized):  # a refused key fails at start, not on every request
        create_app(tiled_server.uri, public=True, api_key="0" * 64)
    with pytest.raises(Unauthorized, match="anonymous"):  # no key for a Tiled that wants one: no login prompt
        create_app(tiled_server.uri, public=True)
    with pytest.raises(ValueError, match="holds no key"):
        create_app(tiled_server.uri, api_key=tiled_server.reader_key)


def test_api_lists_scans_and_draws_their_slices(tiled_server, scans, http):
    h = bearer(tiled_server.reader_key)
    mine = next(r for r in http.get("/api/scans", headers=h).json() if r["uid"] == scans["done"])
    assert mine["volume_status"] == "complete" and mine["live"] is True and mine["sample"] == PAYLOAD
    raw = next(r for r in http.get("/api/scans", headers=h).json() if r["uid"] == scans["raw_only"])
    assert raw["volume_status"] is None and raw["live"] is False
    png = http.get(f"/api/scans/{scans['done']}/volume/1.png", headers=h)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    volume = tiled_server.client()["processed"][scans["done"]]["0"].read()
    from tomobluesky.viewer import to_png

    np.testing.assert_array_equal(_pixels(png.content), _pixels(to_png(volume[1])))
    assert _pixels(png.content).std() > 10, "the slice is blank"
    info = http.get(f"/api/scans/{scans['done']}/volume", headers=h).json()
    assert info["shape"] == [2, 16, 16] and info["metadata"]["sample_name"] == PAYLOAD


UNKNOWN = ["nope", "00000000-0000-0000-0000-000000000000", "<img src=x onerror=alert(1)>", "a b", "x" * 300]


@pytest.mark.parametrize("uid", UNKNOWN)
def test_an_unknown_scan_is_404_naming_it_on_every_route(tiled_server, scans, http, uid):
    h = bearer(tiled_server.reader_key)
    for route in ("volume", "volume/0.png", "live/axial.png", "live/events", "plane/z.png?index=0", "histogram",
                  "profile?axis=z&index=0&start=0,0&end=1,1", "live/control"):
        r = http.get(f"/api/scans/{quote(uid, safe='')}/{route}", headers=h)
        assert r.status_code == 404, (route, r.status_code, r.text)
        assert r.headers["content-type"] == "application/json"
        assert uid[:20] in r.json()["error"], r.json()


def test_a_partial_uid_is_not_a_scan(tiled_server, scans, http):
    """The raw catalogue's own lookup would take a uid prefix for the whole uid."""
    h = bearer(tiled_server.reader_key)
    prefix = scans["done"][:8]
    assert http.get(f"/api/scans/{prefix}/live/events", headers=h).status_code == 404
    assert http.get(f"/api/scans/{prefix}/volume", headers=h).status_code == 404


def test_malformed_input_is_400_and_nothing_is_500(tiled_server, scans, http):
    h, uid = bearer(tiled_server.reader_key), scans["done"]
    bad = {
        f"/api/scans/{uid}/volume/abc.png": "whole number",
        f"/api/scans/{uid}/volume/-1.png": "whole number",
        f"/api/scans/{uid}/volume/1e3.png": "whole number",
        f"/api/scans/{uid}/volume/0.png?low=90&high=10": "contrast",
        f"/api/scans/{uid}/volume/0.png?low=nan": "contrast",
        f"/api/scans/{uid}/volume/0.png?low=abc": "contrast",
        f"/api/scans/{uid}/volume/0.png?high=inf": "contrast",
        f"/api/scans/{uid}/volume/0.png?size=-5": "size",
        f"/api/scans/{uid}/volume/0.png?size=99999999999": "size",
        f"/api/scans/{uid}/live/axial.png?low=x": "contrast",
    }
    for url, word in bad.items():
        r = http.get(url, headers=h)
        assert r.status_code == 400 and word in r.json()["error"], (url, r.status_code, r.text)
    missing = {f"/api/scans/{uid}/volume/2.png": "outside 0..1", f"/api/scans/{uid}/volume/999999999.png": "outside",
               f"/api/scans/{uid}/live/sideways.png": "no live slice named",
               f"/api/scans/{scans['raw_only']}/volume/0.png": "no volume",
               f"/api/scans/{scans['raw_only']}/live/axial.png": "no live axial slice"}
    for url, words in missing.items():
        r = http.get(url, headers=h)
        assert r.status_code == 404 and words in r.json()["error"], (url, r.status_code, r.text)
    odd = ["%00", "%2e%2e", "..", "%ff", "'", '"', "\\", "a;b", "%0d%0aSet-Cookie:x=1", "😀", "0x10", " 1"]
    for text in odd:
        for url in (f"/api/scans/{text}/volume", f"/api/scans/{uid}/volume/{text}.png",
                    f"/api/scans/{uid}/volume/0.png?low={text}", f"/api/scans/{uid}/live/{text}.png",
                    f"/api/scans/{text}/live/events"):
            r = http.get(url, headers=h)
            assert r.status_code < 500, (url, r.status_code, r.text)


def test_the_event_stream_of_an_unknown_scan_ends_at_once(tiled_server, http):
    h = bearer(tiled_server.reader_key)
    start = time.monotonic()
    r = http.get("/api/scans/no-such-scan/live/events", headers=h)
    assert time.monotonic() - start < 5.0  # at once: a stream that waited would run for max_stream_s (30 s here)
    assert r.status_code == 404 and "no-such-scan" in r.json()["error"]


def test_an_event_stream_ends_when_the_volume_is_done_or_after_its_time(tiled_server, scans):
    h = bearer(tiled_server.reader_key)
    http = TestClient(create_app(tiled_server.uri, poll_interval=0.05, max_stream_s=0.5))
    done = http.get(f"/api/scans/{scans['done']}/live/events", headers=h)
    assert done.status_code == 200 and done.headers["content-type"].startswith("text/event-stream")
    events = re.findall(r"^event: (\w+)$", done.text, re.M)
    assert events == ["update", "done"]
    start = time.monotonic()
    forever = http.get(f"/api/scans/{scans['raw_only']}/live/events", headers=h)  # no volume will ever come
    assert 0.4 < time.monotonic() - start < 15.0
    assert re.findall(r"^event: (\w+)$", forever.text, re.M) == ["timeout"]


def test_an_event_stream_reads_the_preview_each_poll_and_looks_for_the_volume_every_fourth(tiled_server, scans):
    """Each read costs Tiled a request on the host that may be acquiring: the volume, which comes once, is
    looked for every VOLUME_EVERY polls, the preview every poll."""
    from tomobluesky.viewer._app import VOLUME_EVERY

    uid = scans["raw_only"]
    h, log = bearer(tiled_server.reader_key), tiled_server.layout.log_file
    http = TestClient(create_app(tiled_server.uri, poll_interval=0.05, max_stream_s=1.5))
    http.get("/api/scans", headers=h)  # the viewer's client for this key is made
    before = len(log.read_text().splitlines())
    assert re.findall(r"^event: (\w+)$", http.get(f"/api/scans/{uid}/live/events", headers=h).text, re.M) == ["timeout"]
    time.sleep(0.5)  # the last access lines
    lines = log.read_text().splitlines()[before:]
    live = sum(f"GET /api/v1/metadata/live/{uid} " in line for line in lines)
    volume = sum(f"GET /api/v1/metadata/processed/{uid} " in line for line in lines)
    assert VOLUME_EVERY == 4 and live >= 8, (live, volume)
    # the first poll and every fourth after it (the raw run tells the stream the scan is known)
    assert volume == -(-live // VOLUME_EVERY), (live, volume)


def test_every_response_carries_the_security_headers(tiled_server, scans, http):
    h = bearer(tiled_server.reader_key)
    for url, headers in [("/", {}), ("/static/viewer.js", {}), ("/static/viewer.css", {}), ("/api/scans", {}),
                         ("/api/scans", h), (f"/api/scans/{scans['done']}/volume/0.png", h),
                         ("/api/scans/nope/volume", h), ("/no/such/page", {})]:
        r = http.get(url, headers=headers)
        csp = r.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "'unsafe-inline'" not in csp, url
        assert r.headers["x-content-type-options"] == "nosniff", url
        assert r.headers["x-frame-options"] == "DENY", url
        if url.startswith("/api/"):
            assert r.headers["cache-control"] == "no-store", url
    assert "javascript" in http.get("/static/viewer.js").headers["content-type"]


def test_the_page_has_no_inline_script_and_builds_no_markup_from_data():
    html = open(os.path.join(STATIC, "index.html")).read()
    assert all(re.search(r"\bsrc=", tag) for tag in re.findall(r"<script[^>]*>", html))
    assert not re.search(r"<script[^>]*>\s*[^<\s]", html), "inline script"
    assert "<style" not in html and " style=" not in html and not re.search(r"\son\w+=", html)
    js = open(os.path.join(STATIC, "viewer.js")).read()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    # each API URL made from a scan uid goes through encodeURIComponent
    assert "`/api/scans/${encodeURIComponent(uid)}/" in js and "/api/scans/${uid" not in js


def test_client_cache_keeps_only_accepted_keys_and_a_bounded_number():
    made = []

    def connect(key):
        if key.startswith("bad"):
            raise Unauthorized("refused")
        made.append(key)
        return object()

    cache = ClientCache(connect, size=2)
    a = cache.get("key-a")
    assert cache.get("key-a") is a and made == ["key-a"]
    with pytest.raises(Unauthorized):
        cache.get("bad-key")
    assert len(cache) == 1
    cache.get("key-b"), cache.get("key-c")
    assert len(cache) == 2
    cache.get("key-a")  # the oldest was dropped: connected again
    assert made == ["key-a", "key-b", "key-c", "key-a"]
    with pytest.raises(Unauthorized):
        cache.get(None)


def _view(args, env_key=None, port=None):
    env = {k: v for k, v in os.environ.items() if k != "TOMOBLUESKY_TILED_API_KEY"}
    if env_key:
        env["TOMOBLUESKY_TILED_API_KEY"] = env_key
    return subprocess.Popen([sys.executable, "-m", "tomobluesky.cli", "view", "--port", str(port), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_up(url, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the viewer exited: {proc.stdout.read()}")
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("the viewer did not start")


def test_view_command_protected_by_default_and_public_with_a_key_file(tiled_server, scans, tmp_path):
    key = tiled_server.reader_key
    key_file = tmp_path / "reader.key"
    key_file.write_text(key + "\n")
    ports = free_port(), free_port()
    protected = _view(["--uri", tiled_server.uri], env_key=key, port=ports[0])  # the env key is not used
    public = _view(["--uri", tiled_server.uri, "--public", "--api-key-file", str(key_file)], port=ports[1])
    try:
        assert _wait_up(f"http://127.0.0.1:{ports[0]}/api/scans", protected).status_code == 401
        # the first read makes a Tiled client for the key: slow on a busy machine
        r = httpx.get(f"http://127.0.0.1:{ports[0]}/api/scans", headers=bearer(key), timeout=60)
        assert r.status_code == 200 and scans["done"] in {row["uid"] for row in r.json()}
        r = _wait_up(f"http://127.0.0.1:{ports[1]}/api/scans", public)
        assert r.status_code == 200 and scans["done"] in {row["uid"] for row in r.json()}
        assert r.headers["x-content-type-options"] == "nosniff"
    finally:
        for proc in (protected, public):
            proc.terminate()
            proc.wait(10)


def test_view_command_takes_no_key_on_its_command_line(capsys):
    from tomobluesky.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["view", "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "--public" in help_text and "--api-key-file" in help_text and "--api-key " not in help_text
    assert "read-only key" in help_text and "Authorization: Bearer" in help_text
    assert "--control-key-file" in help_text and "writer key" in help_text  # steering takes a key file only
    with pytest.raises(SystemExit) as exit_:  # not even as an abbreviation of --api-key-file, nor echoed back
        main(["view", "--api-key", "0" * 64])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--api-key is not accepted" in err and "0" * 64 not in err


# --- three planes, histogram, profiles, live control (issue 11) -------------------------------------------------

SHAPE = (20, 40, 36)  # levels (20, 40, 36), (10, 20, 18), (5, 10, 9), (3, 5, 5): odd sizes, cut short blocks


@pytest.fixture(scope="module")
def volume(tiled_server):
    from tests.system.viewer_data import volume_scan

    return volume_scan(tiled_server, SHAPE, min_size=8, seed=3)


def _grey(image, lo, hi):
    """The documented rendering of a window: lo -> 0, hi -> 255, grey = floor(255 t), clipped; computed here."""
    return np.floor(np.clip((np.asarray(image, np.float64) - lo) / (hi - lo), 0, 1) * 255)


def _cut(levels, k, axis, index, r0, r1, c0, c1):
    """Rows r0:r1 and columns c0:c1 (level-k pixels) of level k's plane through level-0 ``index``, indexed here."""
    level = levels[k]
    if axis == "z":
        return level[index >> k, r0:r1, c0:c1]
    if axis == "y":
        return level[r0:r1, index >> k, c0:c1]
    return level[r0:r1, c0:c1, index >> k]


@pytest.mark.parametrize("axis, index, region, size, level, covered", [
    ("z", 7, None, 40, 0, (0, 40, 0, 36)),           # a canvas as large as the plane: full resolution
    ("z", 7, None, 20, 1, (0, 40, 0, 36)),           # half as large: level 1
    ("z", 19, None, 1, 3, (0, 40, 0, 36)),           # tiny: the coarsest level; the last slice is in its last pixel
    ("y", 33, None, 10, 1, (0, 20, 0, 36)),          # coronal: rows are z; 36 columns need level 1 for 10
    ("x", 35, None, 9, 2, (0, 20, 0, 40)),           # sagittal: rows z, columns y
    ("z", 4, (3, 17, 5, 30), 12, 1, (2, 18, 4, 30)),  # a region, widened to whole level-1 pixels
    ("x", 0, (10, 20, 30, 40), 10, 0, (10, 20, 30, 40)),  # zoomed in: level 0 even with a coarse canvas
])
def test_a_plane_comes_from_the_level_that_fits_with_the_stored_pixels(tiled_server, http, volume, axis, index,
                                                                       region, size, level, covered):
    uid, levels = volume
    query = {"index": index, "size": size, "vmin": -1.5, "vmax": 4.25}
    if region:
        query["region"] = ",".join(map(str, region))
    r = http.get(f"/api/scans/{uid}/plane/{axis}.png", params=query, headers=bearer(tiled_server.reader_key))
    assert r.status_code == 200, r.text
    assert int(r.headers["x-level"]) == level and tuple(map(int, r.headers["x-region"].split(","))) == covered
    k, (r0, r1, c0, c1) = level, covered
    expected = _grey(_cut(levels, k, axis, index, r0 >> k, -(-r1 >> k), c0 >> k, -(-c1 >> k)), -1.5, 4.25)
    np.testing.assert_array_equal(_pixels(r.content), expected)
    assert expected.std() > 5


def test_a_plane_without_a_window_is_stretched_over_its_own_percentiles(tiled_server, http, volume):
    from tomobluesky.viewer import to_png

    uid, levels = volume
    r = http.get(f"/api/scans/{uid}/plane/y.png?index=5&size=36", headers=bearer(tiled_server.reader_key))
    np.testing.assert_array_equal(_pixels(r.content), _pixels(to_png(levels[0][:, 5, :])))


@pytest.mark.parametrize("axis, middle", [("z", 10), ("y", 20), ("x", 18)])
def test_a_plane_asked_for_without_index_or_region_is_the_whole_middle_one(tiled_server, http, volume, axis, middle):
    """What the page asks for before it knows the volume's shape (the first image, prefetched with the page)."""
    from tomobluesky.viewer import to_png

    uid, levels = volume
    r = http.get(f"/api/scans/{uid}/plane/{axis}.png?size=64", headers=bearer(tiled_server.reader_key))
    assert r.status_code == 200, r.text
    assert int(r.headers["x-index"]) == middle and int(r.headers["x-level"]) == 0
    np.testing.assert_array_equal(_pixels(r.content), _pixels(to_png(_cut(levels, 0, axis, middle, 0, None, 0, None))))


def test_the_histogram_counts_the_stored_voxels(tiled_server, http, volume):
    uid, levels = volume
    got = http.get(f"/api/scans/{uid}/histogram?bins=16", headers=bearer(tiled_server.reader_key)).json()
    voxels = levels[0]  # 14,400 voxels: all of level 0
    counts, edges = np.histogram(voxels, bins=16, range=(voxels.min(), voxels.max()))
    assert got["level"] == 0 and got["slice_step"] == 1 and got["voxels"] == voxels.size
    assert got["counts"] == counts.tolist()
    np.testing.assert_allclose(got["edges"], edges, rtol=1e-6)  # float32 extremes, float64 edges
    assert (got["min"], got["max"]) == (float(voxels.min()), float(voxels.max()))


def test_a_line_profile_reads_the_stored_values_at_the_level_that_fits(tiled_server, http, volume):
    uid, levels = volume
    h = bearer(tiled_server.reader_key)
    for axis, index, start, end, size, level in [("z", 9, (0, 0), (39, 35), 60, 0), ("z", 9, (0, 0), (39, 35), 20, 1),
                                                 ("x", 20, (2, 39), (19, 0), 200, 0), ("y", 3, (5, 5), (5, 6), 2, 0)]:
        query = {"axis": axis, "index": index, "start": "%d,%d" % start, "end": "%d,%d" % end, "size": size}
        got = http.get(f"/api/scans/{uid}/profile", params=query, headers=h).json()
        assert got["level"] == level and got["index"] == index >> level
        points = np.asarray(got["points"])
        rows, cols = points[:, 0], points[:, 1]
        np.testing.assert_array_equal(got["values"], [_cut(levels, level, axis, index, r, r + 1, c, c + 1)[0, 0]
                                                      for r, c in zip(rows, cols)])
        # one sample per level pixel along the line, from one end to the other, no gaps
        scale = 2 ** level
        a, b = ((np.asarray(p) + 0.5) / scale - 0.5 for p in (start, end))  # pixel centres at level k
        assert np.abs(points[0] - a).max() <= 0.5 and np.abs(points[-1] - b).max() <= 0.5
        assert len(points) >= np.hypot(*(b - a)) and np.abs(np.diff(points, axis=0)).max(initial=0) <= 1


def test_bad_plane_histogram_and_profile_requests_are_refused_naming_the_problem(tiled_server, http, volume):
    uid, _ = volume
    h = bearer(tiled_server.reader_key)
    bad = {
        "plane/z.png?index=": "index must be a whole number",
        "plane/z.png?index=-1": "index must be a whole number",
        "plane/z.png?index=20": "outside the volume's 0..19",
        "plane/x.png?index=36": "outside the volume's 0..35",
        "plane/z.png?index=1&region=0,41,0,36": "outside the plane's 40 rows and 36 columns",
        "plane/z.png?index=1&region=5,5,0,36": "empty",
        "plane/z.png?index=1&region=0,1.5,0,36": "whole level-0 pixels",
        "plane/z.png?index=1&region=0,1,0": "4 finite numbers",
        "plane/z.png?index=1&region=0,nan,0,3": "4 finite numbers",
        "plane/z.png?index=1&vmin=3&vmax=1": "vmin < vmax",
        "plane/z.png?index=1&vmin=3": "vmin and vmax",
        "plane/z.png?index=1&vmin=-inf&vmax=1": "finite",
        "plane/z.png?index=1&size=-3": "size",
        "histogram?bins=0": "bins must be from 1 to 4096",
        "histogram?bins=x": "bins must be a whole number",
        "profile?axis=z&index=1&start=0,0": "start=row,column and end=row,column",
        "profile?axis=q&index=1&start=0,0&end=1,1": "axis must be z, y or x",
        "profile?axis=z&index=1&start=0,0&end=40,0": "outside the plane's 40 rows",
        "profile?axis=z&index=99&start=0,0&end=1,1": "outside the volume's 0..19",
        "profile?axis=y&index=1&start=0,inf&end=1,1": "finite numbers",
    }
    for route, words in bad.items():
        r = http.get(f"/api/scans/{uid}/{route}", headers=h)
        assert r.status_code == 400 and words in r.json()["error"], (route, r.status_code, r.text)
    r = http.get(f"/api/scans/{uid}/plane/w.png?index=0", headers=h)
    assert r.status_code == 404 and "z (axial), y (coronal) or x (sagittal)" in r.json()["error"]
    assert http.get(f"/api/scans/{uid}/plane/z.png?index=0").status_code == 401  # behind the key like the rest


def test_a_live_request_goes_from_the_page_to_the_reconstructions_sink(tiled_server):
    from tests.system.viewer_data import live_scan
    from tomobluesky.catalog import TiledSink

    uid, _ = live_scan(tiled_server, rows=12, columns=20, binning=2)  # slices 6 rows × 10 columns
    h = bearer(tiled_server.reader_key)
    url = f"/api/scans/{uid}/live/control"
    steering = TestClient(create_app(tiled_server.uri, control_key=tiled_server.writer_key))
    sink = TiledSink(tiled_server.client(), control_poll_s=0)  # as the live reconstruction holds it, asked at will
    assert steering.get(url, headers=h).json() == {"enabled": True, "request": None}
    assert sink.live_request(uid) is None

    r = steering.post(url, json={"row": 11, "center": 3.25}, headers=h)
    assert r.status_code == 200 and r.json()["request"]["seq"] == 1
    assert sink.live_request(uid) == {"row": 11, "center": 3.25}
    assert sink.live_request(uid) is None  # handed on once
    assert steering.post(url, json={"center": 19}, headers=h).json()["request"]["seq"] == 2
    assert sink.live_request(uid) == {"center": 19.0}  # replaces the request: the row is not asked for again
    assert TiledSink(tiled_server.client()).live_request(uid) == {"center": 19.0}  # a restarted worker sees it
    assert steering.get(url, headers=h).json()["request"]["center"] == 19
    # a sink that reads the request at most every 60 s answers None sooner, without asking Tiled
    slow = TiledSink(tiled_server.client(), control_poll_s=60)
    assert slow.live_request(uid) == {"center": 19.0}
    assert steering.post(url, json={"row": 3}, headers=h).json()["request"]["seq"] == 3
    assert slow.live_request(uid) is None
    slow._polled[uid] -= 61  # as if a minute had passed
    assert slow.live_request(uid) == {"row": 3}
    assert sink.live_request(uid) == {"row": 3}

    refused = {
        '{"row": 12}': "row must be a whole number from 0 to 11",  # detector rows: 6 binned rows × 2
        '{"row": -1}': "from 0 to 11", '{"row": 2.5}': "whole number", '{"row": true}': "whole number",
        '{"row": "3"}': "whole number", '{"center": NaN}': "finite number", '{"center": Infinity}': "finite",
        '{"center": 20}': "from -0.5 to 19.5", '{"center": "<b>1</b>"}': "finite number",
        '{"rows": 1}': "unknown field 'rows'", "{}": "nothing to do", '{"row": null}': "nothing to do",
        "[1, 2]": "JSON object", "not json": "JSON object", " " * 5000: "JSON object",
    }
    for body, words in refused.items():
        r = steering.post(url, content=body, headers={**h, "Content-Type": "application/json"})
        assert r.status_code == 400 and words in r.json()["error"], (body, r.status_code, r.text)
    assert steering.post(url, data={"row": "1"}, headers=h).status_code == 415  # what a form on another site sends
    assert steering.post(url, json={"row": 1}, headers={**h, "Origin": "http://evil.example"}).status_code == 403
    assert steering.post(url, json={"row": 1}).status_code == 401  # a reader's key is needed to ask
    assert steering.post(url, json={"row": 1}, headers=bearer("f" * 64)).status_code == 401
    assert steering.post("/api/scans/no-such-scan/live/control", json={"row": 1}, headers=h).status_code == 404
    assert sink.live_request(uid) is None  # none of those reached the sink

    # without a control key the viewer cannot steer, and says how to make it; the reader key alone may not write
    plain = TestClient(create_app(tiled_server.uri))
    r = plain.post(url, json={"row": 1}, headers=h)
    assert r.status_code == 403 and "--control-key-file" in r.json()["error"]
    assert plain.get(url, headers=h).json()["enabled"] is False
    from tiled.client import from_uri

    with pytest.raises(httpx.HTTPStatusError) as write:
        from_uri(tiled_server.uri, api_key=tiled_server.reader_key)["live"][uid]["control"].replace_metadata({"row": 1})
    assert write.value.response.status_code in (401, 403)
    assert sink.live_request(uid) is None


def test_a_malformed_stored_request_is_skipped_and_logged(tiled_server, caplog):
    from tests.system.viewer_data import live_scan
    from tomobluesky.catalog import TiledSink

    uid, _ = live_scan(tiled_server)
    live = tiled_server.client()["live"][uid]
    live.create_container("control", metadata={"row": -4, "seq": 1})  # written by something other than the viewer
    sink = TiledSink(tiled_server.client(), control_poll_s=0)
    assert sink.live_request(uid) is None
    assert "malformed live control request 1" in caplog.text
    live["control"].replace_metadata({"row": 2, "center": "1e3", "seq": 2})
    assert sink.live_request(uid) is None
    live["control"].replace_metadata({"row": 2, "seq": 3})
    assert sink.live_request(uid) == {"row": 2}


def test_the_scan_list_costs_tiled_as_many_requests_for_eleven_scans_as_for_two(tiled_server, http):
    """Each row's volume and live preview come from one search per container, not a lookup per scan:
    a full list of 50 once cost Tiled 100 requests (seconds of its CPU, the page's planes waiting)."""
    import uuid

    from tests.system.viewer_data import raw_scan

    h, log = bearer(tiled_server.reader_key), tiled_server.layout.log_file
    sink = TiledSink(tiled_server.client(), volume_dir=tiled_server.layout.volumes)

    def lines():
        return len(log.read_text().splitlines())

    def listed():
        before = lines()
        rows = http.get("/api/scans", headers=h).json()
        wait_for(lambda: lines() > before, 5, "the server's access log")
        time.sleep(0.3)  # the last lines of this request
        return lines() - before, {r["uid"]: r for r in rows}

    uids = [str(uuid.uuid4()) for _ in range(11)]
    for uid in uids[:2]:
        raw_scan(tiled_server, uid, "first two")
    listed()  # the viewer's client for this key is made
    few, _ = listed()
    for i, uid in enumerate(uids[2:]):
        raw_scan(tiled_server, uid, f"sample {i}")
    for uid in uids[1:4]:  # live previews for three, one of them one of the first two
        sink.write_preview(uid, {"axial": np.ones((4, 4), np.float32)}, {"projections": 2})
    sink.record_failure(uids[4], "no flats", {"scan_uid": uids[4]})
    many, rows = listed()
    assert many == few and few <= 8, (few, many)
    assert [rows[uid]["live"] for uid in uids] == [False, True, True, True] + [False] * 7
    assert [rows[uid]["volume_status"] for uid in uids] == [None] * 4 + ["failed"] + [None] * 6
    assert rows[uids[4]]["reason"] == "no flats" and rows[uids[5]]["sample"] == "sample 3"


def test_the_three_live_images_of_one_refresh_cost_tiled_one_read_and_show_their_own_slice(tiled_server, http):
    """The page asks for the three live slices with the same ``t``: the first reads the packed array, the
    other two get the same read (2 requests to Tiled for the three, not 6). A new ``t`` reads again, and an
    image asked alone (no ``t``) reads only its rows; every image is its own slice, pixel for pixel."""
    from tests.system.viewer_data import live_scan
    from tomobluesky.viewer import to_png

    uid, slices = live_scan(tiled_server, rows=12, columns=20)
    h, log = bearer(tiled_server.reader_key), tiled_server.layout.log_file

    def lines():
        return len(log.read_text().splitlines())

    def images(query):
        before = lines()
        got = {name: http.get(f"/api/scans/{uid}/live/{name}.png{query}", headers=h) for name in slices}
        wait_for(lambda: lines() > before, 5, "the server's access log")
        time.sleep(0.3)  # the last lines of these requests
        return lines() - before, got

    http.get("/api/scans", headers=h)  # the viewer's client for this key is made
    for query, requests in (("?t=1", 2), ("?t=1", 0), ("?t=2", 2), ("", 6)):
        if requests == 0:  # all three kept from the read before: no request at all
            before = lines()
            got = {name: http.get(f"/api/scans/{uid}/live/{name}.png{query}", headers=h) for name in slices}
            time.sleep(0.5)
            assert lines() == before
        else:
            n, got = images(query)
            assert n == requests, (query, n)
        for name, image in slices.items():
            assert got[name].status_code == 200
            np.testing.assert_array_equal(_pixels(got[name].content), _pixels(to_png(image)), err_msg=name)
