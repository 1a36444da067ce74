"""What reading one frame by its StreamDatum costs the live path (issue 11).

    .venv/bin/python benchmarks/frame_reads.py [--frames 400] [--rows 128] [--columns 1280]

Writes a detector file as the simulated camera does (SWMR, one chunk per frame,
and a ``theta`` dataset beside the images), then reads every frame and its angle
the way the live path does per StreamDatum: with ``read_frames`` (the file
opened, its datasets checked and closed for each read, as before session 8) and
with one ``FrameReader`` per run (the file opened once, the resource's path
confined once). Printed: process CPU and wall time per frame (image and angle).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def write(path: Path, frames: int, rows: int, columns: int):
    with h5py.File(path, "w", libver="latest") as f:
        images = f.create_dataset("images", shape=(0, rows, columns), maxshape=(None, rows, columns),
                                  dtype="u2", chunks=(1, rows, columns))
        theta = f.create_dataset("theta", shape=(0,), maxshape=(None,), dtype="f8", chunks=(1024,))
        f.swmr_mode = True
        images.resize((frames, rows, columns))
        images[:] = np.random.default_rng(0).integers(0, 4000, (frames, rows, columns), dtype=np.uint16)
        theta.resize((frames,))
        theta[:] = np.linspace(0, 180, frames, endpoint=False)


def resource(path: Path, dataset: str, uid: str) -> dict:
    return {"uid": uid, "uri": f"file://localhost{path}", "data_key": dataset, "mimetype": "application/x-hdf5",
            "parameters": {"dataset": dataset, "chunk_shape": [1], "swmr": True}}


def measure(frames: int, rows: int, columns: int) -> dict:
    from tomobluesky.live import FrameReader, read_frames
    from tomobluesky.pipeline import DataRoots

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.h5"
        write(path, frames, rows, columns)
        roots = DataRoots([tmp])
        images, theta = resource(path, "images", "r-images"), resource(path, "theta", "r-theta")
        out = {}

        def each(read):
            c0, t0 = time.process_time(), time.perf_counter()
            total = 0.0
            for i in range(frames):
                indices = {"start": i, "stop": i + 1}
                total += float(read(images, indices)[0, 0, 0]) + float(read(theta, indices)[0])
            return {"cpu_ms_per_frame": round(1000 * (time.process_time() - c0) / frames, 3),
                    "wall_ms_per_frame": round(1000 * (time.perf_counter() - t0) / frames, 3)}, total

        out["read_frames (open per read)"], a = each(lambda r, ix: read_frames(r, ix, roots=roots))
        with FrameReader(roots) as reader:
            out["FrameReader (open once)"], b = each(reader.read)
        assert a == b  # the same pixels and angles either way
    return {"frames": frames, "frame": [rows, columns], **out}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--columns", type=int, default=1280)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.frames, args.rows, args.columns), indent=2))


if __name__ == "__main__":
    main()
