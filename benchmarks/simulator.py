"""Simulated beamline throughput: PhantomSource frames/s alone, and through the
camera into its HDF5 file (float32 and uint16), at detector sizes up to 2048².

    .venv/bin/python benchmarks/simulator.py [--sizes 512 1024 2048] [--frames 100] [--json out.json]

Each size is a square detector (rows = columns = n) with the demo's settings:
axis 6.5 px off centre, counting noise on, 1 % ring gain. "source" times
``PhantomSource.projection`` alone at angles spread over 180°; "camera f32" and
"camera u16" time ``rotation.set(angle)`` + ``camera.trigger()`` of a staged
``TomoCamera`` (source frame, conversion, one chunk written and flushed per
frame for SWMR readers) into a file under --dir. The first frame of each case
(projector set-up, noise bank) is outside the timing and reported apart.
``cpu/frame`` is this process's CPU time per frame over all its threads: on a
shared machine frames/s moves with the load, CPU per frame much less.
Peak RSS is the process's high-water mark after each case, so it only grows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tomobluesky.devices import PhantomSource, make_sim_beamline


def _source(n: int) -> PhantomSource:
    return PhantomSource(n_slices=n, n_columns=n, axis_offset=6.5, ring_strength=0.01, noise=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def _timed(step, angles) -> dict:
    """Run ``step(angle)`` for the first angle untimed, then time the rest."""
    t0 = time.perf_counter()
    step(angles[0])
    first = time.perf_counter() - t0
    wall, cpu = time.perf_counter(), time.process_time()
    for angle in angles[1:]:
        step(angle)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    frames = len(angles) - 1
    return {"frames": frames, "frames_per_s": frames / wall, "ms_per_frame": 1e3 * wall / frames,
            "cpu_ms_per_frame": 1e3 * cpu / frames, "first_frame_s": first, "peak_rss_mb": _peak_rss_mb()}


def bench_source(n: int, angles) -> dict:
    source = _source(n)
    return _timed(source.projection, angles)


def bench_camera(n: int, angles, dtype: str, directory: Path) -> dict:
    camera, rotation, shutter, sample = make_sim_beamline(_source(n), directory, dtype=dtype)
    shutter.set("open")
    sample.set("in")
    camera.stage()
    try:
        def step(angle):
            rotation.set(float(angle))
            status = camera.trigger()
            if status.exception() is not None:
                raise status.exception()

        result = _timed(step, angles)
        path = camera.last_file
    finally:
        camera.unstage()
    result["file_mb"] = path.stat().st_size / 2**20
    path.unlink()
    return result


def run(sizes, frames: int, directory: Path) -> list[dict]:
    rows = []
    for n in sizes:
        angles = np.linspace(0.0, 180.0, frames + 1, endpoint=False)
        cases = [("source", lambda: bench_source(n, angles)),
                 ("camera f32", lambda: bench_camera(n, angles, "float32", directory)),
                 ("camera u16", lambda: bench_camera(n, angles, "uint16", directory))]
        for case, fn in cases:
            result = {"size": f"{n}x{n}", "case": case, **fn()}
            rows.append(result)
            print(f"  {result['size']:>9} {case:<11} {result['frames_per_s']:8.1f} frames/s "
                  f"({result['cpu_ms_per_frame']:.1f} cpu-ms/frame)", flush=True)
    return rows


def table(rows) -> str:
    lines = ["| size | case | frames/s | ms/frame | cpu-ms/frame | first frame (s) | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['case']} | {r['frames_per_s']:.1f} | {r['ms_per_frame']:.1f} | "
                     f"{r['cpu_ms_per_frame']:.1f} | {r['first_frame_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--frames", type=int, default=100, help="timed frames per case (plus one untimed)")
    parser.add_argument("--dir", type=Path, default=None, help="where the camera writes (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="simbench-", dir=args.dir))
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start", flush=True)
    try:
        rows = run(args.sizes, args.frames, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    end_load = os.getloadavg()
    print(table(rows))
    print(f"load average at end: {end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "load_start": load, "load_end": end_load, "frames": args.frames, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
