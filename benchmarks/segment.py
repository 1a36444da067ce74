"""Segmentation (the `segment` step) on volumes of the real-size cases, slab by slab: time and peak RSS.

The volume is written first, slab by slab, as the stop path writes it (a
multiscale Zarr store): ellipsoidal grains of random size on a noisy
background, the kind of volume segmentation sees after a reconstruction.
Then `run_volume_steps` runs `segment` on it in a fresh process, whose peak
RSS is the step's own. Cases (volume shapes of the real-size scans issue):
M = 128 × 1280 × 1280 float32 (0.84 GB), L = 512 × 2048 × 2048 (8.6 GB).

    .venv/bin/python benchmarks/segment.py M [L] [--grains 400] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = {"S": (64, 512, 512), "M": (128, 1280, 1280), "L": (512, 2048, 2048)}


def grains(shape, count, rng):
    """(centre, semi-axes) of ``count`` ellipsoids inside the volume."""
    depth, rows, columns = shape
    out = []
    for _ in range(count):
        axes = rng.uniform(4, 20, 3) * np.array([min(1, depth / 128), 1, 1])
        centre = [rng.uniform(a + 1, n - a - 1) for a, n in zip(axes, shape)]
        out.append((np.array(centre), np.maximum(axes, 2)))
    return out


def write_volume(path, shape, count, seed=0, slab=64):
    from tomobluesky.store import MultiscaleWriter

    rng = np.random.default_rng(seed)
    objects = grains(shape, count, rng)
    writer = MultiscaleWriter(path, shape)
    height = writer.slab_height(slab, parallel=False)
    for z0 in range(0, shape[0], height):
        z1 = min(z0 + height, shape[0])
        block = rng.normal(0, 0.2, (z1 - z0, *shape[1:])).astype(np.float32)
        for centre, axes in objects:
            lo = np.maximum(np.floor(centre - axes).astype(int), [z0, 0, 0])
            hi = np.minimum(np.ceil(centre + axes).astype(int) + 1, [z1, *shape[1:]])
            if np.any(hi <= lo):
                continue
            z, y, x = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi)), indexing="ij")
            inside = ((z - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + \
                ((x - centre[2]) / axes[2]) ** 2 <= 1
            block[lo[0] - z0:hi[0] - z0, lo[1]:hi[1], lo[2]:hi[2]] += inside
        writer.write_slab(z0, block)


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's resident size across
    fork + exec into the child's ru_maxrss, so there it would report the volume writer's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def segment_store(store, out) -> dict:
    from tomobluesky.steps import Pipeline, run_volume_steps

    pipeline = Pipeline.from_spec([{"step": "reconstruct"},
                                   {"step": "segment", "params": {"sigma": 1.0, "voxel_size_um": 1.0}}])
    t0 = time.perf_counter()
    result = run_volume_steps(pipeline, store, out, slab=64)
    seconds = time.perf_counter() - t0
    return {"segment_s": round(seconds, 1), "objects": int(len(result["tables"]["segment/objects"]["label"])),
            "peak_rss_mb": peak_rss_mb()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="*", help=f"of {sorted(CASES)} (default: M)")
    parser.add_argument("--grains", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--_segment", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    if args._segment:
        print(json.dumps(segment_store(*args._segment)))
        return
    rows = []
    for case in args.cases or ["M"]:
        shape = CASES[case]
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
            store = Path(tmp) / "volume"
            t0 = time.perf_counter()
            write_volume(store, shape, args.grains)
            written = time.perf_counter() - t0
            # a fresh process: its peak RSS is the segmentation's
            out = subprocess.run([sys.executable, __file__, "--_segment", str(store), str(Path(tmp) / "steps")],
                                 capture_output=True, text=True, check=True)
            row = {"case": case, "shape": list(shape), "volume_gb": round(np.prod(shape) * 4 / 1e9, 2),
                   "grains": args.grains, "write_volume_s": round(written, 1), **json.loads(out.stdout)}
        rows.append(row)
        print(json.dumps(row) if args.json else
              f"{case} {shape}: {row['volume_gb']} GB, segment {row['segment_s']} s, {row['objects']} objects "
              f"(of {args.grains} grains; touching grains join), peak RSS {row['peak_rss_mb']} MB", flush=True)


if __name__ == "__main__":
    main()
