"""Time to the first image of a 17 GB volume in the viewer, over HTTP and in Chromium.

    .venv/bin/python benchmarks/viewer.py                      # coarse levels whole, level 0 in part (~3.5 GB)
    .venv/bin/python benchmarks/viewer.py --full               # every level whole: 17 GB + 2.4 GB of disk
    .venv/bin/python benchmarks/viewer.py --browser            # also Playwright's time to first paint
    .venv/bin/python benchmarks/viewer.py --data-dir D         # keep D: run again to measure without building

Builds the XL scan's volume shape (1024 × 2048 × 2048 float32, 17.2 GB at
level 0; benchmarks/scale.py XL) as an OME-Zarr store with the project's
MultiscaleWriter layout (levels 0-3, 32 × 128 × 128 chunks), registers it in
a real `tiled serve` as the sink does, starts `tomobluesky view` (public,
reader key from its file) and asks it for what the page asks for.

What is written: without --full, levels 1-3 whole (a synthetic volume of
ellipsoids and noise computed at level-1 resolution, the coarser levels its
2× block means) and of level 0 only the 64 slices around the middle
(computed at full resolution); the rest of level 0 is missing chunks, which
Zarr reads as zeros. The first image (the middle axial plane on a 512-pixel
canvas) and the zoomed region come from written chunks either way. With
--full every level-0 slab is written by MultiscaleWriter.write_slab, which
makes the coarser levels from it.

"cold" requests follow evicting the store's files from the page cache
(posix_fadvise DONTNEED; no root needed); "warm" is the median of 3 repeats.
The first image is timed three ways: the page's old sequence (volume info,
then the middle axial plane), the one request the page now sends (the axial
plane without index: the server answers the middle slice) and that request
sent beside the session and volume info, as the page sends them; for the
last two (and the browser's first "cold, levels expired" visit) cold also
waits out the viewer's level cache, so the plane looks the volume up itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from chunks import evict, synthetic_slab

SHAPE = (1024, 2048, 2048)
CANVAS = 512


def build(path: Path, shape, full: bool) -> str:
    from tomobluesky.store import MultiscaleWriter, downsample2

    writer = MultiscaleWriter(path, shape)
    rng = np.random.default_rng(0)
    mid = writer.slab_height(shape[0] // 2)
    if full:
        height = writer.slab_height(64)
        for z0 in range(0, shape[0], height):
            writer.write_slab(z0, synthetic_slab(z0, min(height, shape[0] - z0), shape, rng))
        return "all levels whole (level 0 by write_slab)"
    levels = writer.arrays
    coarse = levels[1].shape
    for z0 in range(0, coarse[0], 64):
        slab = synthetic_slab(z0, min(64, coarse[0] - z0), coarse, rng)
        for k in range(1, len(levels)):
            levels[k][z0 >> (k - 1):(z0 >> (k - 1)) + slab.shape[0]] = slab
            slab = downsample2(slab)
    z0 = mid - 32
    levels[0][z0:z0 + 64] = synthetic_slab(z0, 64, shape, rng)
    return f"levels 1-{len(levels) - 1} whole, level 0 slices {z0}..{z0 + 63} only"


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def expire_levels():
    """Wait until the viewer has forgotten the volume's levels (it keeps them per client for a while), so
    that the next request looks the volume up in Tiled again, as a page opened for the first time does."""
    from tomobluesky.viewer._levels import LevelCache

    time.sleep(LevelCache().ttl + 1)


def timed(call, store: Path, repeats: int = 3, expire: bool = False) -> list[float]:
    """(cold seconds, warm median seconds) of ``call``; a call that returns a float timed itself.
    ``expire``: the cold call also finds the viewer's level cache empty."""
    def once():
        start = time.perf_counter()
        seconds = call()
        return seconds if isinstance(seconds, float) else time.perf_counter() - start

    if expire:
        expire_levels()
    evict(store)
    cold = once()
    warm = [once() for _ in range(repeats)]
    return [round(cold, 3), round(statistics.median(warm), 3)]


def get(http: httpx.Client, url: str, **params):
    r = http.get(url, params=params)
    r.raise_for_status()
    return r


def page_start(http: httpx.Client, base: str, scan: str):
    """The three requests the page sends at once when opened on a scan: seconds until the plane is in
    (the other two may still be on their way then, as in the page; they are waited for before the next)."""
    with ThreadPoolExecutor(3) as pool:
        start = time.perf_counter()
        pool.submit(get, http, f"{base}/api/session")
        pool.submit(get, http, f"{scan}/volume")
        pool.submit(get, http, f"{scan}/plane/z.png", size=CANVAS).result()
        return time.perf_counter() - start


def http_timings(base: str, uid: str, shape, store: Path) -> dict:
    nz, ny, nx = shape
    scan = f"{base}/api/scans/{uid}"
    out = {}
    with httpx.Client(timeout=120) as http:
        get(http, f"{base}/api/scans")  # the page lists the scans first; the viewer's Tiled client is warm

        def first_image():
            get(http, f"{scan}/volume")
            return get(http, f"{scan}/plane/z.png", index=nz // 2, size=CANVAS)

        out["first image (volume info + axial plane, 512 px)"] = timed(first_image, store)
        level = get(http, f"{scan}/plane/z.png", index=nz // 2, size=CANVAS).headers["x-level"]
        out["  (its level)"] = level
        # what the page does now: the axial plane without an index (the server answers the middle
        # slice and names it in x-index), sent beside the session and the volume description
        middle = get(http, f"{scan}/plane/z.png", size=CANVAS).headers["x-index"]
        if middle != str(nz // 2):
            raise RuntimeError(f"a plane without index came back as slice {middle}, not the middle {nz // 2}")
        # cold here also means the viewer's level cache expired: the plane looks the volume up itself
        out["first image, one request (axial plane without index, 512 px)"] = timed(
            lambda: get(http, f"{scan}/plane/z.png", size=CANVAS), store, expire=True)
        out["first image, as the page asks (that plane beside session + volume info)"] = timed(
            lambda: page_start(http, base, scan), store, expire=True)
        out["coronal plane, 512 px"] = timed(lambda: get(http, f"{scan}/plane/y.png", index=ny // 2, size=CANVAS),
                                             store)
        out["sagittal plane, 512 px"] = timed(lambda: get(http, f"{scan}/plane/x.png", index=nx // 2, size=CANVAS),
                                              store)
        out["histogram (256 bins)"] = timed(lambda: get(http, f"{scan}/histogram", bins=256), store)
        region = f"{ny // 2 - 256},{ny // 2 + 256},{nx // 2 - 256},{nx // 2 + 256}"
        out["zoomed axial region 512² at level 0"] = timed(
            lambda: get(http, f"{scan}/plane/z.png", index=nz // 2, size=CANVAS, region=region), store)
        out["line profile across the middle"] = timed(lambda: get(
            http, f"{scan}/profile", axis="z", index=nz // 2, start="0,0", end=f"{ny - 1},{nx - 1}", size=CANVAS),
            store)
    return out


def browser_first_paint(base: str, uid: str, store: Path, args_trace: bool = False) -> dict:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        # "cold, levels expired" is a first visit: nothing of the volume in the page cache or the viewer;
        # "cold" (as in earlier runs) finds the viewer's levels kept from the request before
        for label in ("cold, levels expired", "cold", "warm", "warm, 3 s after the last page"):
            if label == "cold, levels expired":
                expire_levels()
            if label.startswith("cold"):
                evict(store)
            if label.startswith("warm,"):  # the page before may still have requests in flight at the servers
                time.sleep(3)
            page = browser.new_page()
            requests = []
            page.on("requestfinished", lambda r: requests.append(
                (round(r.timing["startTime"]), round(r.timing["responseEnd"]), r.url.split("/", 3)[-1][:60])))
            page.goto(f"{base}/?scan={uid}&px={CANVAS}")
            deadline = time.monotonic() + 120
            while not page.evaluate("() => window.firstPaint") and time.monotonic() < deadline:
                time.sleep(0.01)
            first = page.evaluate("() => window.firstPaint")
            while time.monotonic() < deadline and not page.evaluate(
                    "() => ['z', 'y', 'x'].every(a => { const v = document.getElementById('plane-' + a).dataset.view;"
                    " return v && JSON.parse(v).window !== null; })"):
                time.sleep(0.01)
            all_three = page.evaluate("() => performance.now()")
            out[label] = {"first paint after navigation (ms)": round(first), "three planes with the histogram's "
                          "window, upper bound (ms)": round(all_three)}
            if args_trace:
                start0 = min(t[0] for t in requests)
                out[label]["requests (start, end ms after the first)"] = [
                    (t0 - start0, t0 - start0 + t1, url) for t0, t1, url in sorted(requests)]
            page.close()
        browser.close()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE, metavar=("Z", "Y", "X"))
    parser.add_argument("--full", action="store_true", help="write every level whole (17 GB at the default shape)")
    parser.add_argument("--browser", action="store_true", help="also time the page's first paint in Chromium")
    parser.add_argument("--trace", action="store_true", help="with --browser: list the page's requests and times")
    parser.add_argument("--data-dir", help="catalogue directory, kept; a second run over it measures the volume "
                                           "the first built (default: a temporary one, removed afterwards)")
    args = parser.parse_args(argv)

    from tomobluesky.catalog import TiledServer, TiledSink, free_port

    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="viewer-bench-"))
    try:
        with TiledServer(data_dir, startup_timeout=600) as server:
            sink = TiledSink(server.client(), volume_dir=server.layout.volumes)
            earlier = dict(server.client()["processed"].items()) if args.data_dir else {}
            start = time.perf_counter()
            if earlier:  # a kept --data-dir: measure the volume built by an earlier run again
                uid, node = next(iter(earlier.items()))
                store, written = sink.volume_path(uid), node.metadata["written"]
            else:
                uid = str(uuid.uuid4())
                store = sink.volume_path(uid)
                written = build(store, tuple(args.shape), args.full)
                sink.register_volume(uid, store, {"sample_name": "viewer benchmark", "written": written})
            build_s = time.perf_counter() - start
            port = free_port()
            env = {k: v for k, v in os.environ.items() if k != "TOMOBLUESKY_TILED_API_KEY"}
            viewer = subprocess.Popen([sys.executable, "-m", "tomobluesky.cli", "view", "--uri", server.uri, "--public",
                                       "--api-key-file", str(server.layout.reader_key_file), "--port", str(port)],
                                      env=env, stdout=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 300
                while True:
                    try:
                        httpx.get(f"{base}/api/session", timeout=5)
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline or viewer.poll() is not None:
                            raise RuntimeError("the viewer did not start") from None
                        time.sleep(0.2)
                result = {"shape": list(args.shape), "written": written, "store_bytes_on_disk": du(store),
                          "build_s": round(build_s, 1), "http (cold s, warm s)": http_timings(
                              base, uid, args.shape, store)}
                if args.browser:
                    result["chromium"] = browser_first_paint(base, uid, store, args.trace)
            finally:
                viewer.terminate()
                viewer.wait(10)
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    result["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
