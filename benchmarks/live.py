"""Live-slice throughput and lag, and stop-document-to-volume time.

    .venv/bin/python benchmarks/live.py            # 512² frames; a 256³-class scan into a real Tiled

1. IncrementalSlices alone: frames per second the three live slices keep up
   with for 512×512 frames (filter + backproject into axial and two vertical slices).
1b. The options side by side (``--options``): the NumPy reference against the
   compiled LiveSlices at several live widths, each folding raw uint16 frames
   (binning, flat field, −log, filter, three slices) of an exact disk phantom
   whose axis is 40 columns off the middle, 512² and 2048²; the gain inside
   the big disk against its analytic attenuation and the SSIM of the axial
   slice against the engine's NUFFT reconstruction of the same sinogram (the
   final volume's way); and what redrawing the axial slice by NUFFT from an
   accumulated sinogram costs (the "every 0.2 s" option).
2. The whole live path in-process (RunEngine → camera HDF5 → LiveReconstruction
   → Tiled): the previews' lag behind acquisition, and the time from the stop
   document to the final volume being readable from Tiled, for 256 projections
   of 256 rows × 256 columns (a 256³ volume).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np


class StackedPhantomSource:
    """A fast frame source for big scans: one Shepp-Logan sinogram, every
    detector row a scaled copy (projected once, so frames cost nothing)."""

    def __init__(self, rows, columns, angles_deg):
        from tomobluesky.recon import project, shepp_logan

        self.shape = (rows, columns)
        self._angles = np.asarray(angles_deg)
        sino = project(shepp_logan(columns) * 0.02, np.radians(self._angles))[0]
        scale = np.linspace(0.6, 1.0, rows, dtype=np.float32)[:, None]
        self._frames = {a: 100 + 20000 * np.exp(-scale * sino[i]) for i, a in enumerate(self._angles)}

    def dark(self):
        return np.full(self.shape, 100, np.float32)

    def flat(self):
        return np.full(self.shape, 20100, np.float32)

    def projection(self, angle):
        return self._frames[min(self._frames, key=lambda a: abs(a - angle))].astype(np.float32)

    def metadata(self):
        return {"sample_name": "stacked phantom", "source": "benchmark"}


def bench_slices(n=512, frames=200):
    from tomobluesky.live import IncrementalSlices

    rng = np.random.default_rng(0)
    data = rng.random((8, n, n), dtype=np.float32)
    s = IncrementalSlices(n, n, num_angles=frames)
    s.add(data[0], 0.0)  # warm up FFT plans
    t = time.perf_counter()
    for i in range(frames):
        s.add(data[i % 8], i * 180 / frames)
    dt = time.perf_counter() - t
    return {"frame": f"{n}x{n}", "frames": frames, "frames_per_s": round(frames / dt, 1),
            "ms_per_frame": round(1e3 * dt / frames, 2)}


DISKS = [(0.02, 0.3, 0.0, 0.0), (0.05, 0.07, 0.14, -0.08), (0.03, 0.05, -0.12, 0.15)]  # mu, r, x0, y0 (× n)


def _disk_sinogram(n, theta, center):
    from tomobluesky.recon.testing import project_disk

    # attenuation per pixel scaled with the size, so the thickest chord stays near 3 (about 5 % transmission)
    return sum(project_disk(n, theta, center, mu=mu * 256 / n, radius=r * n, x0=x * n, y0=y * n)
               for mu, r, x, y in DISKS)


def bench_option(n, live_columns, angles=180, reference=False, offset=40.0, overlap=None):
    """Fold ``angles`` raw uint16 n×n frames of the disk phantom (axis ``offset`` columns right of the
    middle) the way LiveReconstruction does, binned to at most ``live_columns``; time only the folding."""
    import math

    from tomobluesky import recon
    from tomobluesky.live import IncrementalSlices, _kernels
    from tomobluesky.live._live_slices import LiveSlices
    from tomobluesky.live._reconstruction import bin_frame

    b = max(1, math.ceil(n / live_columns))
    center = (n - 1) / 2 + offset
    theta = np.linspace(0, 180, angles, endpoint=False)
    sino = _disk_sinogram(n, np.radians(theta), center)  # (angles, n), the same in every detector row
    dark, flat = np.full((n, n), 100, np.float32), np.full((n, n), 20100, np.float32)
    d, beam = (np.ascontiguousarray(a) for a in recon.flat_field(bin_frame(flat, b)[None], bin_frame(dark, b)[None]))
    m = n // b
    live_center = (center + 0.5) / b - 0.5
    kind = IncrementalSlices if reference else LiveSlices
    slices = kind(m, m, center=live_center, num_angles=angles, **({} if reference else {"overlap": overlap}))
    _kernels.warm_up()
    # the raw frames first (every detector row alike), so that the timed loop is the folding alone: the
    # helper thread's vertical slices then overlap only the next view's folding, as behind a detector
    frames = [np.ascontiguousarray(np.broadcast_to((100 + 20000 * np.exp(-sino[i])).astype(np.uint16), (n, n)))
              for i in range(angles)]
    t, c = time.perf_counter(), time.process_time()
    for frame, angle in zip(frames, theta):
        if reference:  # the NumPy path as it was: bin, flat field, −log, then IncrementalSlices
            a = recon.minus_log(recon.apply_flat_field(bin_frame(frame, b), d, beam)) / b
        else:
            a = np.empty((m, m), np.float32)
            _kernels.attenuation(frame, b, d, beam, a)
        slices.add(a, angle)
    slices.vertical_x  # the last view's vertical slices have landed (with the helper thread)
    spent, cpu = time.perf_counter() - t, time.process_time() - c
    del frames
    # correctness: the gain inside the big disk (away from the small ones) and the NUFFT of the same views
    coords = (np.arange(m) - (m - 1) / 2) * b
    x, y = np.meshgrid(coords, -coords)
    inside = (x**2 + y**2 <= (0.2 * n) ** 2) & ((x - 0.14 * n) ** 2 + (y + 0.08 * n) ** 2 > (0.1 * n) ** 2) \
        & ((x + 0.12 * n) ** 2 + (y - 0.15 * n) ** 2 > (0.08 * n) ** 2)
    binned = sino[:, : m * b].reshape(angles, m, b).mean(axis=-1) / b  # attenuation per live pixel
    volume_way = recon.reconstruct(binned[None].astype(np.float32), np.radians(theta), live_center,
                                   sinogram_order=True)[0]
    mu = 0.02 * 256 / n  # the big disk's attenuation per detector pixel (the live slices' unit)
    path = "numpy reference" if reference else "numba LiveSlices" + (", vertical on a helper thread"
                                                                     if slices.overlap else ", one thread")
    return {"frame": f"{n}x{n}", "live": f"{m}x{m}", "path": path,
            "angles": angles, "frames_per_s": round(angles / spent, 1), "ms_per_frame": round(1e3 * spent / angles, 2),
            "cpu_ms_per_frame": round(1e3 * cpu / angles, 2),
            "gain_in_disk": round(float(slices.axial[inside].mean() / mu), 4),
            "rmse_vs_nufft_pct_of_mu": round(100 * recon.rmse_in_circle(slices.axial, volume_way, fit=False) / mu, 2),
            "ssim_vs_nufft": round(recon.ssim_in_circle(slices.axial, volume_way), 4)}


def bench_nufft_redraw(columns=256, angles=900, repeats=5):
    """The sinogram-domain option: the axial slice redrawn by the engine's NUFFT from ``angles`` stored rows."""
    from tomobluesky import recon

    theta = np.linspace(0, np.pi, angles, endpoint=False)
    sino = _disk_sinogram(columns, theta, (columns - 1) / 2)[None].astype(np.float32)
    times = []
    for k in range(repeats):
        t = time.perf_counter()
        recon.reconstruct(sino[:, : angles - k], theta[: angles - k], sinogram_order=True)  # new angles: new plan
        times.append(time.perf_counter() - t)
    return {"live": f"{columns}x{columns}", "angles": angles, "ms_per_redraw_median": round(1e3 * float(np.median(times)), 1)}


def bench_options():
    from tomobluesky.live import _kernels

    t = time.perf_counter()
    _kernels.warm_up()
    rows = [{"kernels_warm_up_s": round(time.perf_counter() - t, 2)}]
    rows.append(bench_option(512, 640, angles=400, reference=True))
    for live in (640, 256):
        rows.append(bench_option(512, live, angles=400))
    rows.append(bench_option(512, 256, angles=400, overlap=False))
    rows.append(bench_option(2048, 640, angles=200, reference=True))
    for live in (640, 384, 256):
        rows.append(bench_option(2048, live, angles=200))
    rows.append(bench_option(2048, 256, angles=200, overlap=False))
    rows.append(bench_nufft_redraw())
    return rows


def bench_scan(n=256, angles=256, preview_every=16):
    from bluesky import RunEngine

    from tomobluesky.catalog import PROCESSED, TiledServer, TiledSink
    from tomobluesky.live import ForwardingSink
    from tomobluesky.devices import make_sim_beamline
    from tomobluesky.live import live_reconstruction_router
    from tomobluesky.plans import scan_angles, tomo_scan
    from tomobluesky.schema import ReconSettings

    source = StackedPhantomSource(n, n, scan_angles(0, angles))
    lags, stop_time, runs = [], {}, []
    with TiledServer(tempfile.mkdtemp(prefix="bench-live-")) as server:
        client = server.client()
        sink = TiledSink(client, volume_dir=server.layout.volumes)

        class Timed(ForwardingSink):
            inner = sink

            def write_preview(self, uid, slices, md):
                lags.append(md["lag_s"])
                sink.write_preview(uid, slices, md)

        RE = RunEngine({})
        RE.subscribe(lambda name, doc: stop_time.setdefault("t", time.perf_counter()) if name == "stop" else None)
        RE.subscribe(live_reconstruction_router(Timed(), ReconSettings(preview_every=preview_every, center=(n - 1) / 2),
                                                on_start=runs.append))
        t0 = time.perf_counter()
        uid, = RE(tomo_scan(*make_sim_beamline(source, server.layout.detector), num_projections=angles,
                            num_darks=4, num_flats=4))
        reader = server.reader_client()
        node = reader[PROCESSED][uid]
        assert node.metadata["status"] == "complete"
        node["0"][n // 2]  # one slice readable over HTTP
        t_ready = time.perf_counter()
        timings = runs[0].result["timings"]
    return {"scan": f"{angles} projections of {n}x{n}", "scan_s": round(stop_time["t"] - t0, 2),
            "frames_per_s_with_live_slices": round(angles / (stop_time["t"] - t0), 1),
            "preview_lag_s_median": round(float(np.median(lags)), 4), "preview_lag_s_max": round(max(lags), 4),
            "stop_to_volume_readable_s": round(t_ready - stop_time["t"], 2),
            "of_which": {k: round(v, 3) for k, v in timings.items()}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512, help="frame size for the slice throughput (default 512)")
    p.add_argument("--scan-size", type=int, default=256, help="rows = columns = projections of the scan (default 256)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--options", action="store_true", help="only the side-by-side options (1b), no Tiled scan")
    args = p.parse_args()
    if args.options:
        results = {"options": bench_options()}
    else:
        results = {"incremental_slices": bench_slices(args.size), "options": bench_options(),
                   "live_scan": bench_scan(args.scan_size, args.scan_size)}
    print(json.dumps(results, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
