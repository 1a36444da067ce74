"""Level-0 chunk shape and compression for reconstructed volumes in Zarr.

    .venv/bin/python benchmarks/chunks.py                  # 256 × 1024 × 1024 float32 (1 GiB)
    .venv/bin/python benchmarks/chunks.py --shape 128 512 512 --tiled

Writes one synthetic reconstruction (smooth ellipsoids plus 2 % noise, as
float32 reconstructions look to a compressor) in slabs of 64 slices with each
chunk shape, then times reading one slice of each orientation: axial
(z = const) and the two vertical ones (y = const, x = const). "cold" reads
first evict the store's files from the page cache (posix_fadvise DONTNEED, no
root needed); "warm" is the median of three repeats right after. ``--tiled``
also registers the default layout in a real Tiled server and reads the same
slices over HTTP.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

SHAPES = [(1, 1024, 1024), (16, 128, 128), (32, 128, 128), (64, 128, 128), (16, 256, 256), (32, 256, 256),
          (32, 64, 64), (64, 64, 64)]
CODECS = ["none", "lz4", "zstd"]
SLAB = 64


def synthetic_slab(z0, n, shape, rng):
    """Slices z0..z0+n of a volume of a few ellipsoids, plus noise."""
    nz, ny, nx = shape
    z = ((np.arange(z0, z0 + n, dtype=np.float32) - nz / 2) / nz)[:, None, None]
    y = ((np.arange(ny, dtype=np.float32) - ny / 2) / ny)[None, :, None]
    x = ((np.arange(nx, dtype=np.float32) - nx / 2) / nx)[None, None, :]
    vol = np.zeros((n, ny, nx), np.float32)
    for cz, cy, cx, r, value in ((0, 0, 0, 0.45, 1.0), (0.1, 0.1, -0.1, 0.15, 0.5), (-0.2, -0.1, 0.15, 0.1, -0.3)):
        vol += value * (((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) < r * r)
    vol += rng.standard_normal(vol.shape, dtype=np.float32) * 0.02
    return vol


def _compressors(name):
    from tomobluesky.store._writer import _codecs

    return _codecs(None if name == "none" else name)


def write(path, shape, chunks, codec):
    rng = np.random.default_rng(0)
    array = zarr.create_array(path, shape=shape, dtype="float32", chunks=chunks, compressors=_compressors(codec),
                              fill_value=0, overwrite=True)
    elapsed = 0.0
    for z0 in range(0, shape[0], SLAB):
        slab = synthetic_slab(z0, min(SLAB, shape[0] - z0), shape, rng)
        t = time.perf_counter()
        array[z0:z0 + len(slab)] = slab
        elapsed += time.perf_counter() - t
    return array, elapsed


def evict(path):
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def orientations(shape):
    nz, ny, nx = shape
    return {"axial": (nz // 2, slice(None), slice(None)), "y=const": (slice(None), ny // 2, slice(None)),
            "x=const": (slice(None), slice(None), nx // 2)}


def time_reads(read, path):
    """{orientation: (cold s, warm s)} for ``read(index)``."""
    out = {}
    for name, index in orientations(SHAPE).items():
        evict(path)
        t = time.perf_counter()
        read(index)
        cold = time.perf_counter() - t
        warm = []
        for _ in range(3):
            t = time.perf_counter()
            read(index)
            warm.append(time.perf_counter() - t)
        out[name] = (cold, statistics.median(warm))
    return out


def du(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def row(label, write_s, size, reads, raw):
    cells = "  ".join(f"{c * 1e3:7.1f}/{w * 1e3:6.1f}" for c, w in reads.values())
    rate = f"{raw / write_s / 1e6:6.0f}" if write_s else "     -"
    ratio = f"{raw / size:5.2f}" if size else "    -"
    print(f"{label:<28} {write_s:7.2f} {rate} {ratio}  {cells}", flush=True)


def tiled_reads(shape, work):
    from tomobluesky.catalog import TiledServer, TiledSink
    from tomobluesky.store import MultiscaleWriter

    with TiledServer(work / "catalog") as server:
        sink = TiledSink(server.client(), volume_dir=server.layout.volumes)
        path = sink.begin_volume("bench", {"scan_uid": "bench"})
        writer = MultiscaleWriter(path, shape)
        rng = np.random.default_rng(0)
        h = writer.slab_height(SLAB)
        pyramid_s = 0.0
        for z0 in range(0, shape[0], h):
            slab = synthetic_slab(z0, min(h, shape[0] - z0), shape, rng)
            t = time.perf_counter()  # the writer only, not the making of the data
            writer.write_slab(z0, slab)
            pyramid_s += time.perf_counter() - t
        t = time.perf_counter()
        sink.complete_volume("bench", path, {"scan_uid": "bench"})
        register_s = time.perf_counter() - t
        node = server.reader_client()["processed"]["bench"]["0"]
        reads = time_reads(lambda index: node[index], path / "0")
        return writer.chunks, pyramid_s, register_s, reads


def main():
    global SHAPE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 1024, 1024])
    parser.add_argument("--chunks", type=int, nargs=3, action="append", help="chunk shape (repeatable)")
    parser.add_argument("--codecs", nargs="+", default=["none"], choices=CODECS,
                        help="compressions for every chunk shape (default: none)")
    parser.add_argument("--codec-shape", type=int, nargs=3, default=[32, 128, 128],
                        help="the chunk shape on which every codec is compared (default: %(default)s)")
    parser.add_argument("--skip-codecs", action="store_true", help="no codec comparison on --codec-shape")
    parser.add_argument("--tiled", action="store_true", help="also read the default layout over Tiled HTTP")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temporary one)")
    args = parser.parse_args()
    SHAPE = tuple(args.shape)
    raw = 4 * np.prod(SHAPE)
    runs = [(tuple(c), codec) for c in (args.chunks or SHAPES) for codec in args.codecs]
    if not args.skip_codecs:
        runs += [(tuple(args.codec_shape), c) for c in CODECS if (tuple(args.codec_shape), c) not in runs]
    print(f"volume {SHAPE} float32, {raw / 2**30:.2f} GiB; load {os.getloadavg()[0]:.2f}")
    print(f"{'chunks, codec':<28} {'write s':>7} {'MB/s':>6} {'ratio':>5}  "
          + "  ".join(f"{name + ' cold/warm ms':>14}" for name in orientations(SHAPE)))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        for chunks, codec in runs:
            path = work / f"{'x'.join(map(str, chunks))}-{codec}.zarr"
            array, write_s = write(path, SHAPE, chunks, codec)
            reads = time_reads(lambda index: zarr.open_array(path, mode="r")[index], path)
            row(f"{chunks} {codec}", write_s, du(path), reads, raw)
            del array
            shutil.rmtree(path)
        if args.tiled:
            chunks, pyramid_s, register_s, reads = tiled_reads(SHAPE, work)
            print(f"Tiled, default {chunks}: slabs + pyramid written in {pyramid_s:.2f} s, registered in "
                  f"{register_s:.2f} s")
            row(f"{chunks} over HTTP", 0, 0, reads, raw)


if __name__ == "__main__":
    main()
