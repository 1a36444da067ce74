"""Live-slice throughput and lag, and stop-document-to-volume time.

    .venv/bin/python benchmarks/live.py            # 512² frames; a 256³-class scan into a real Tiled

1. IncrementalSlices alone: frames per second the three live slices keep up
   with for 512×512 frames (filter + backproject into axial and two vertical slices).
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
    args = p.parse_args()
    results = {"incremental_slices": bench_slices(args.size), "live_scan": bench_scan(args.scan_size, args.scan_size)}
    print(json.dumps(results, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
