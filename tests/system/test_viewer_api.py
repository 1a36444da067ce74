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
                                                ReconSettings(preview_every=2)))
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
    assert http.get("/api/session").json() == {"public": True}
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
    for route in ("volume", "volume/0.png", "live/axial.png", "live/events"):
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
    with pytest.raises(SystemExit) as exit_:  # not even as an abbreviation of --api-key-file, nor echoed back
        main(["view", "--api-key", "0" * 64])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--api-key is not accepted" in err and "0" * 64 not in err
