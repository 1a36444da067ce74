"""The CuPy backend on a GPU, beside NumPy on the same machine's cores.

Three parts, each printed as JSON lines (and appended to ``--out`` when given):

    check   the phantom (Shepp-Logan, 4 slices of 256², 360 angles, a different
            off-centre axis per slice) reconstructed on both backends with the
            NUFFT and with direct FBP: CuPy against NumPy (relative L2), and each
            against the phantom (RMSE and SSIM in the circle after a gain fit);
            the FBP kernel against the array code it replaces on the GPU.
    engine  one slab of 1500 angles × 2048 columns, as the stop path hands it
            over (host in, host out): seconds per slice for the NUFFT on all
            cores, on the GPU at several batch sizes, the GPU's FBP kernel and
            its array code; the GPU's peak memory.
    stop    the stop path alone on a detector file (uint16, Data Exchange, one
            frame per chunk) written here, in a fresh process per backend:
            wall, stages and peak RSS; the two volumes compared.

    python benchmarks/gpu.py                      # everything (a CUDA GPU, CuPy, cufinufft)
    python benchmarks/gpu.py --only check,engine --rows 128

Without a GPU every part says so and stops; nothing here needs one to import.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = None


def emit(record: dict) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if OUT:
        with open(OUT, "a") as f:
            f.write(line + "\n")


def _sync():
    import cupy

    cupy.cuda.Device().synchronize()


def timed(call, repeats=1, gpu=False):
    """Best wall seconds of ``repeats`` calls (GPU work finished inside each), and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = call()
        if gpu:
            _sync()
        best = min(best, time.perf_counter() - t)
    return best, result


def environment() -> dict:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    out = {"part": "environment", "gpu": props["name"].decode(), "gpu_memory_gb": round(props["totalGlobalMem"] / 2**30, 1),
           "cupy": cupy.__version__, "cores": os.cpu_count(), "numpy": np.__version__}
    try:
        from tomobluesky.recon._backend import import_cufinufft

        out["cufinufft"] = import_cufinufft().__version__
    except Exception as err:  # noqa: BLE001 - reported, the other parts go on
        out["cufinufft"] = f"unavailable: {err}"
    return out


# -- check: physics and agreement ----------------------------------------------------------------------------------

def check() -> list:
    import cupy

    from tomobluesky import recon
    from tomobluesky.recon import _fbp
    from tomobluesky.recon.testing import project_shepp_logan

    n, slices = 256, 4
    theta = np.linspace(0, np.pi, 360, endpoint=False)
    offsets = np.array([-17.3, 0.0, 9.5, 40.25])  # one axis per slice: the kernel reads each slice's own
    centers = (n - 1) / 2 + offsets
    sinograms = np.stack([project_shepp_logan(slices, n, theta, center=c)[k] for k, c in enumerate(centers)])
    truth = recon.shepp_logan_3d(slices, n, supersample=4)
    records = []
    for algorithm in ("nufft", "fbp"):
        images = {}
        for backend in ("numpy", "cupy"):
            try:
                images[backend] = recon.reconstruct(sinograms, theta, centers, algorithm=algorithm, backend=backend,
                                                    sinogram_order=True)
            except Exception as err:  # noqa: BLE001
                records.append({"part": "check", "algorithm": algorithm, "backend": backend, "error": repr(err)[:400]})
                emit(records[-1])
        for backend, image in images.items():
            records.append({"part": "check", "algorithm": algorithm, "backend": backend,
                            "rmse": [round(recon.rmse_in_circle(image[k], truth[k]), 5) for k in range(slices)],
                            "ssim": [round(recon.ssim_in_circle(image[k], truth[k]), 4) for k in range(slices)]})
            emit(records[-1])
        if len(images) == 2:
            host, device = images["numpy"], images["cupy"]
            records.append({"part": "check", "algorithm": algorithm, "cupy_vs_numpy_rel_l2":
                            float(np.linalg.norm(device - host) / np.linalg.norm(host))})
            emit(records[-1])
    filtered = _fbp.filter_sinograms(cupy.asarray(sinograms), "cosine")
    kernel = _fbp.backproject(filtered, theta, centers).get()
    arrays = _fbp.backproject(filtered, theta, centers, kernel=False).get()
    host = _fbp.backproject(filtered.get(), theta, centers)
    records.append({"part": "check", "fbp_kernel_vs_array_code_on_gpu_rel_l2":
                    float(np.linalg.norm(kernel - arrays) / np.linalg.norm(arrays)),
                    "fbp_kernel_vs_numpy_rel_l2": float(np.linalg.norm(kernel - host) / np.linalg.norm(host)),
                    "fbp_kernel_max_abs_vs_numpy": float(np.abs(kernel - host).max())})
    emit(records[-1])
    return records


# -- engine: one slab, host in and host out --------------------------------------------------------------------------

def slab_sinograms(slices, angles, columns, center) -> np.ndarray:
    """(slices, angles, columns) of the phantom: 4 distinct slices repeated (the content does not change the time)."""
    from tomobluesky.recon.testing import project_shepp_logan

    theta = np.linspace(0, np.pi, angles, endpoint=False)
    distinct = project_shepp_logan(4, columns, theta, center=center, detector_samples=1)
    return np.ascontiguousarray(np.resize(distinct, (slices, angles, columns)))


OPTION_SWEEP = ({}, {"gpu_method": 1}, {"gpu_method": 2}, {"gpu_method": 3}, {"upsampfac": 1.25},
                {"upsampfac": 1.25, "gpu_method": 1}, {"gpu_kerevalmeth": 0})


def engine(slices=32, angles=1500, columns=2048) -> list:
    import cupy

    from tomobluesky import recon

    center = (columns - 1) / 2 + 21.25
    theta = np.linspace(0, np.pi, angles, endpoint=False)
    sino = slab_sinograms(slices, angles, columns, center)
    records = []

    def row(name, seconds, n_slices, **extra):
        rec = {"part": "engine", "case": name, "slab": f"{n_slices} × {angles} × {columns}",
               "s_per_slab": round(seconds, 3), "ms_per_slice": round(1e3 * seconds / n_slices, 2),
               "projected_2048_slices_s": round(2048 * seconds / n_slices, 1), **extra}
        records.append(rec)
        emit(rec)

    cpu = lambda: recon.reconstruct(sino, theta, center, sinogram_order=True)  # noqa: E731
    cpu()  # the plan's points sorted once, as the stop path's first slab does
    seconds, host = timed(cpu, repeats=2)
    row(f"nufft numpy ({os.cpu_count()} threads)", seconds, slices)
    pool = cupy.get_default_memory_pool()
    for batch_pairs in (8, 16):
        try:
            call = lambda: recon.reconstruct(sino, theta, center, sinogram_order=True, backend="cupy",  # noqa: E731
                                             batch_pairs=batch_pairs)
            call()
            pool.free_all_blocks()
            seconds, device = timed(call, repeats=3, gpu=True)
            row(f"nufft cupy batch_pairs={batch_pairs}", seconds, slices,
                rel_l2_vs_numpy=float(np.linalg.norm(device - host) / np.linalg.norm(host)),
                pool_peak_gb=round(pool.total_bytes() / 2**30, 2))
        except Exception as err:  # noqa: BLE001
            emit({"part": "engine", "case": f"nufft cupy batch_pairs={batch_pairs}", "error": repr(err)[:400]})
    try:  # the GPU part alone: sinograms already on the device, the images left there
        from tomobluesky.recon._nufft import nufft_fbp

        on_device = cupy.asarray(sino)
        centers = np.full(slices, center)
        seconds, _ = timed(lambda: nufft_fbp(on_device, theta, centers, filter_name="cosine", batch_pairs=16),
                           repeats=3, gpu=True)
        row("nufft cupy, device only (no transfers)", seconds, slices)
        del on_device
    except Exception as err:  # noqa: BLE001
        emit({"part": "engine", "case": "nufft cupy device only", "error": repr(err)[:400]})
    try:  # cufinufft's plan options, device only: speed and agreement with the CPU's NUFFT
        from tomobluesky.recon import _nufft

        on_device = cupy.asarray(sino)
        centers = np.full(slices, center)
        for options in OPTION_SWEEP:
            _nufft.GPU_OPTIONS.clear()
            _nufft.GPU_OPTIONS.update(options)
            _nufft.clear_plan_cache()
            try:
                call = lambda: nufft_fbp(on_device, theta, centers, filter_name="cosine", batch_pairs=16)  # noqa: E731
                call()
                seconds, images = timed(call, repeats=3, gpu=True)
                row(f"nufft cupy, device only, options {options}", seconds, slices,
                    rel_l2_vs_numpy=float(np.linalg.norm(images.get() - host) / np.linalg.norm(host)))
            except Exception as err:  # noqa: BLE001
                emit({"part": "engine", "case": f"nufft cupy options {options}", "error": repr(err)[:300]})
        _nufft.GPU_OPTIONS.clear()
        _nufft.clear_plan_cache()
        del on_device
    except Exception as err:  # noqa: BLE001
        emit({"part": "engine", "case": "nufft cupy options", "error": repr(err)[:400]})
    few = 8
    try:
        call = lambda: recon.reconstruct(sino[:few], theta, center, sinogram_order=True, backend="cupy",  # noqa: E731
                                         algorithm="fbp")
        call()
        seconds, device = timed(call, repeats=2, gpu=True)
        row("fbp cupy kernel", seconds, few, rel_l2_vs_nufft_numpy=float(
            np.linalg.norm(device - host[:few]) / np.linalg.norm(host[:few])))
    except Exception as err:  # noqa: BLE001
        emit({"part": "engine", "case": "fbp cupy kernel", "error": repr(err)[:400]})
    try:
        from tomobluesky.recon import _fbp

        filtered = _fbp.filter_sinograms(cupy.asarray(sino[:2]), "cosine")
        seconds, _ = timed(lambda: _fbp.backproject(filtered, theta, np.full(2, center), kernel=False), gpu=True)
        row("fbp cupy array code (backprojection only)", seconds, 2)
    except Exception as err:  # noqa: BLE001
        emit({"part": "engine", "case": "fbp cupy array code", "error": repr(err)[:400]})
    return records


# -- stop: the stop path alone, NumPy against CuPy ---------------------------------------------------------------

def write_detector_file(path: Path, rows: int, angles=1500, columns=2048) -> float:
    """A fly scan as the camera writes it: uint16 frames, 10 flats, 10 darks, angles in degrees."""
    import h5py

    center = (columns - 1) / 2 + 21.25
    theta = np.linspace(0, 180, angles, endpoint=False)
    sino = slab_sinograms(16, angles, columns, center)  # 16 distinct rows, repeated down the detector
    flat, dark = 40000.0, 100.0
    with h5py.File(path, "w") as f:
        data = f.create_dataset("/exchange/data", (angles, rows, columns), dtype="uint16", chunks=(1, rows, columns))
        f["/exchange/data_white"] = np.full((10, rows, columns), flat, dtype="uint16")
        f["/exchange/data_dark"] = np.full((10, rows, columns), dark, dtype="uint16")
        for a in range(angles):
            line = dark + (flat - dark) * np.exp(-sino[:, a, :] * (2.0 / columns))
            data[a] = np.resize(line, (rows, columns)).astype("uint16")
        f["/exchange/theta"] = theta
        f["/exchange/theta"].attrs["units"] = "degrees"
    return center


STOP_ONLY = r"""
import json, sys, time
import numpy as np
from tomobluesky.pipeline import HDF5Scan, peak_rss_mb, reconstruct_scan
from tomobluesky.schema import ReconSettings
path, center, algorithm, backend, output, budget, workers = sys.argv[1:8]
settings = ReconSettings(center=float(center), algorithm=algorithm, backend=backend)
client, started = None, 0.0
if int(workers):
    from distributed import Client, LocalCluster
    t = time.perf_counter()
    client = Client(LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None))
    client.run(lambda: __import__("tomobluesky.pipeline._stop"))
    started = time.perf_counter() - t
t = time.perf_counter()
with HDF5Scan.from_dxchange(path) as scan:
    info = reconstruct_scan(scan, settings, output, memory_budget=float(budget) * 1e9, dask=client)
wall = time.perf_counter() - t
gpu = None
if backend == "cupy":
    import cupy
    gpu = round(cupy.get_default_memory_pool().total_bytes() / 2**30, 2)
print(json.dumps({"stop_path_s": round(wall, 2), "cluster_start_s": round(started, 1), "workers": int(workers),
                  "worker_peak_rss_mb": info.get("dask", {}).get("worker_peak_rss_mb"),
                  "stages_s": info["timings"], "slabs": info["slabs"],
                  "slab_rows": info["slab_rows"], "peak_rss_mb": round(peak_rss_mb(), 1), "gpu_pool_gb": gpu}))
"""


PARTS = ("check", "engine", "write", "stop")
DEFAULT_STOP_RUNS = "nufft:numpy:0,nufft:cupy:0,fbp:cupy:0,nufft:cupy:4,nufft:numpy:8"


def stop_runs(spec: str, budget_gb: float) -> list:
    """(algorithm, backend, Dask workers (0: in this process), memory budget GB) of each stop-path run, from
    ``algorithm:backend:workers,…``; on Dask each worker gets 2 GB, so that the scan makes several slabs."""
    runs = []
    for item in spec.split(","):
        algorithm, backend, workers = item.split(":")
        runs.append((algorithm, backend, int(workers), 2.0 if int(workers) else budget_gb))
    return runs


def stop(rows: int, budget_gb: float, data_dir: Path, runs: str = DEFAULT_STOP_RUNS) -> list:
    import zarr

    path = data_dir / "scan.h5"
    t = time.perf_counter()
    center = write_detector_file(path, rows)
    emit({"part": "stop", "detector_file": f"1500 × {rows} × 2048 uint16", "gb": round(path.stat().st_size / 1e9, 2),
          "written_s": round(time.perf_counter() - t, 1)})
    records, volumes = [], {}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for algorithm, backend, workers, budget in stop_runs(runs, budget_gb):
        output = data_dir / f"{algorithm}-{backend}-{workers}.zarr"
        proc = subprocess.run([sys.executable, "-c", STOP_ONLY, str(path), str(center), algorithm, backend,
                               str(output), str(budget), str(workers)], capture_output=True, text=True, env=env)
        name = f"{algorithm} {backend}" + (f", {workers} Dask workers (budget {budget} GB)" if workers else "")
        rec = {"part": "stop", "engine": name}
        if proc.returncode:
            rec["error"] = proc.stderr.strip().splitlines()[-5:]
        else:
            rec.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            volumes[rec["engine"]] = zarr.open_group(str(output), mode="r")["0"][rows // 2]
        records.append(rec)
        emit(rec)
    reference = volumes.get("nufft numpy")
    for name, image in volumes.items():
        if reference is not None and name != "nufft numpy":
            emit({"part": "stop", "middle_slice_rel_l2_vs_nufft_numpy": name,
                  "value": float(np.linalg.norm(image - reference) / np.linalg.norm(reference))})
    return records


# -- write: what the stop path's writer costs once the GPU reconstructs faster than it writes -------------------

def write_stage(data_dir: Path, slices=64, n=2048) -> list:
    """One slab of the stop path's writer, its parts apart: the pyramid's means, plain file writes of the same
    bytes (one file, and one file per 2 MiB chunk), and ``MultiscaleWriter.write_slab`` into a fresh store of
    four slabs, slab after slab, as zarr is configured by default, without its empty-chunk check, and with
    level 0's chunks gathered into shards."""
    import zarr

    from tomobluesky.store import MultiscaleWriter
    from tomobluesky.store._pyramid import downsample2

    volume = np.random.default_rng(0).random((slices, n, n), dtype=np.float32)
    records = []

    def rec(case, seconds, **extra):
        seconds = seconds if isinstance(seconds, float) else min(seconds)
        r = {"part": "write", "case": case, "slab": f"{slices} × {n} × {n} float32", "s": round(seconds, 3),
             "gb_per_s": round(volume.nbytes / seconds / 1e9, 2), **extra}
        records.append(r)
        emit(r)

    def means():
        level = volume
        for _ in range(3):
            level = downsample2(level)

    rec("pyramid means (3 levels)", timed(means, repeats=2)[0])

    def plain():
        with open(data_dir / "plain.bin", "wb") as f:
            volume.tofile(f)

    rec("one file, tofile", timed(plain, repeats=2)[0])
    blocks = [volume[z:z + 32, y:y + 128, x:x + 128] for z in range(0, slices, 32) for y in range(0, n, 128)
              for x in range(0, n, 128)]

    def per_chunk(rename, folder=[0]):
        folder[0] += 1
        root = data_dir / f"chunks{folder[0]}"
        root.mkdir()
        for k, block in enumerate(blocks):
            path = root / str(k)
            with open(path.with_suffix(".part") if rename else path, "wb") as f:
                f.write(np.ascontiguousarray(block).data)
            if rename:
                os.replace(path.with_suffix(".part"), path)

    rec(f"one file per 2 MiB chunk ({len(blocks)} files)", timed(lambda: per_chunk(False), repeats=2)[0])
    rec("the same, each written aside and renamed (as zarr does)", timed(lambda: per_chunk(True), repeats=2)[0])
    for name, options in (("default", {}), ("write_empty_chunks", {"config": {"write_empty_chunks": True}}),
                          ("shards (32, 512, 512)", {"shards": (32, 512, 512)})):
        try:
            path = data_dir / f"store-{len(records)}.zarr"
            group = zarr.open_group(str(path), mode="w", zarr_format=3)
            array = group.create_array("0", shape=(4 * slices, n, n), dtype="float32", chunks=(32, 128, 128),
                                       compressors=None, fill_value=0, **options)
            times = []
            for z0 in range(0, 4 * slices, slices):
                t = time.perf_counter()
                array[z0:z0 + slices] = volume
                times.append(round(time.perf_counter() - t, 3))
            rec(f"zarr level 0 alone, {name}, slab after slab", times, each_s=times)
        except Exception as err:  # noqa: BLE001
            emit({"part": "write", "case": name, "error": repr(err)[:300]})
    writer = MultiscaleWriter(data_dir / "write.zarr", (4 * slices, n, n))
    times = []
    for z0 in range(0, 4 * slices, slices):
        t = time.perf_counter()
        writer.write_slab(z0, volume)
        times.append(round(time.perf_counter() - t, 3))
    rec("MultiscaleWriter.write_slab (all levels), slab after slab", times, each_s=times)
    return records


def main(argv=None) -> int:
    global OUT
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS), help="comma-separated parts, in the order given (default: all four)")
    p.add_argument("--rows", type=int, default=256, help="detector rows of the stop path's scan (default 256)")
    p.add_argument("--slab", type=int, default=32, help="slices in the engine's slab (default 32)")
    p.add_argument("--memory-budget", type=float, default=8.0, metavar="GB", help="the stop path's budget (default 8)")
    p.add_argument("--stop-runs", default=DEFAULT_STOP_RUNS, metavar="ALG:BACKEND:WORKERS,…",
                   help=f"the stop path's runs (default {DEFAULT_STOP_RUNS}; workers 0: in one process)")
    p.add_argument("--data-dir", help="where the detector file goes (default: a temporary folder)")
    p.add_argument("--out", help="also append every JSON line to this file")
    args = p.parse_args(argv)
    OUT = args.out
    chosen = args.only.split(",")
    unknown = set(chosen) - set(PARTS)
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() == 0:
            raise RuntimeError("no CUDA device")
    except Exception as err:  # noqa: BLE001
        emit({"part": "environment", "error": f"no GPU here: {err}"})
        return 1
    emit(environment())
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="tomobluesky-gpu-"))
    parts = {"check": check, "engine": lambda: engine(slices=args.slab), "write": lambda: write_stage(data_dir),
             "stop": lambda: stop(args.rows, args.memory_budget, data_dir, args.stop_runs)}
    try:
        for name in chosen:
            t = time.perf_counter()
            try:
                parts[name]()
            except Exception as err:  # noqa: BLE001 - reported; the next part goes on
                emit({"part": name, "error": repr(err)[:600]})
            emit({"part": name, "took_s": round(time.perf_counter() - t, 1)})
    finally:
        if not args.data_dir:  # the detector file and the volumes: several GB
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
