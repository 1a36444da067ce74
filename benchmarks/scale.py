"""Real-size scans through the whole in-process pipeline: acquisition → live slices → stop path → Tiled.

Each case runs in its own process (so its peak memory is its own) against its
own `tiled serve` process:

    S   the tooth (181 × 2 × 640, float32), replayed
    M   1440 projections × 128 rows × 1280 columns, float32 (0.94 GB)
    L   1500 × 512 × 2048, uint16 (3.1 GB)
    XL  3000 × 1024 × 2048, uint16 (12.6 GB raw; a 17 GB float32 volume)

The phantom cases are fly scans of the closed-form Shepp-Logan phantom with
the axis 21.25 px off the middle. For each case it reports acquisition
frames/s, the time from the stop document to a volume marked complete in
Tiled, the peak RSS of the scan process and of the Tiled server, the stop
path's read amplification, and reads one slice of every pyramid level back
over HTTP. For M, with ``--gridrec-python``, it also runs the stop path alone
on M's detector file twice: with our engine, and with tomopy's gridrec as the
engine under an interpreter that has tomopy.

    python benchmarks/scale.py                 # S M L
    python benchmarks/scale.py S M L XL --json # everything (XL needs ~35 GB of disk and ~15 min)

With ``--dask``, it measures the stop path alone on the case's detector file
(written straight from the phantom, one frame per chunk, as the camera does):
in this process (the three-thread conveyor) and as Dask tasks on a
LocalCluster of 1 and 2 single-threaded worker processes, each in a fresh
process, ``--repeat`` times in turn. Per slab it reports the wall and CPU
seconds of reading + normalising, reconstructing and writing, and the
workers' peak RSS; the load average is printed beside every run, since CPU
seconds are what stays meaningful on a shared machine.

    python benchmarks/scale.py --dask M --repeat 2 --json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {  # name: (projections, rows, columns, dtype)
    "S": (None, None, None, "float32"),
    "M": (1440, 128, 1280, "float32"),
    "L": (1500, 512, 2048, "uint16"),
    "XL": (3000, 1024, 2048, "uint16"),
}
AXIS_OFFSET = 21.25


def _source(case):
    from tomobluesky.devices import PhantomSource, ReplaySource

    if case == "S":
        return ReplaySource(), 181
    projections, rows, columns, _ = CASES[case]
    return PhantomSource(n_slices=rows, n_columns=columns, axis_offset=AXIS_OFFSET, seed=1), projections


def _read_levels(server, uid) -> dict:
    """One middle slice of every level, over HTTP, through a fresh client (as an analyst reads)."""
    node = server.reader_client()["processed"][uid]
    times = []
    for key in sorted(node, key=int):
        t = time.perf_counter()
        level = node[key]
        image = level[level.shape[0] // 2]
        times.append(round(time.perf_counter() - t, 3))
        assert image.shape == tuple(level.shape[1:]) and float(abs(image).max()) > 0, f"level {key} is empty"
    return {"status": node.metadata["status"], "levels": node.metadata["levels"], "level_read_s": times}


def run_case(case: str, data_dir: Path, budget_gb: float) -> dict:
    """One case, in this process."""
    from bluesky import RunEngine

    from tomobluesky.catalog import TiledServer, raw_run_writer
    from tomobluesky.devices import make_sim_beamline
    from tomobluesky.live import live_reconstruction_router
    from tomobluesky.pipeline import peak_rss_mb, process_peak_rss_mb
    from tomobluesky.plans import tomo_fly_scan, tomo_scan

    source, projections = _source(case)
    dtype = CASES[case][3]
    with TiledServer(data_dir) as server:
        RE = RunEngine({})
        runs, marks = [], {}
        RE.subscribe(lambda name, doc: marks.setdefault("stop", time.perf_counter()), "stop")
        RE.subscribe(raw_run_writer(server.client(), server.layout.backup, batch_size=50))
        RE.subscribe(live_reconstruction_router(server.sink(), on_start=runs.append, memory_budget=budget_gb * 1e9))
        devices = make_sim_beamline(source, server.layout.detector, dtype=dtype)
        plan = tomo_scan(*devices, num_projections=projections) if case == "S" else \
            tomo_fly_scan(*devices, num_projections=projections, velocity=1e6)
        t0 = time.perf_counter()
        uid, = RE(plan)
        t_done = time.perf_counter()
        result = runs[0].result
        if not result or "error" in result:
            raise RuntimeError(f"case {case}: reconstruction failed: {result}")
        frames = projections + 20
        shape = devices[0].frame_shape
        out = {
            "case": case, "scan": f"{projections} × {shape[0]} × {shape[1]} {dtype}",
            "raw_gb": round(frames * shape[0] * shape[1] * (2 if dtype == "uint16" else 4) / 1e9, 2),
            "acquisition_frames_per_s": round(frames / (marks["stop"] - t0), 1),
            "stop_to_volume_s": round(t_done - marks["stop"], 2),
            "center": round(result["center"], 2),
            "true_center": getattr(source, "center", None),
            "read_amplification": result["read_amplification"],
            "slabs": result["slabs"], "slab_rows": result["slab_rows"], "chunks": result["chunks"],
            "stop_path_s": result["timings"],
            **_read_levels(server, uid),
            "detector_file": str(devices[0].last_file),
        }
        out["peak_rss_mb"] = {"scan process": round(peak_rss_mb(), 1),
                              "tiled server": round(process_peak_rss_mb(server.pid) or 0, 1)}
    return out


STOP_ONLY = """
import json, sys, time
from tomobluesky.pipeline import HDF5Scan, peak_rss_mb, reconstruct_scan
from tomobluesky.schema import ReconSettings
settings = ReconSettings(center=float(sys.argv[2]), algorithm=sys.argv[3], backend=sys.argv[4])
t = time.perf_counter()
with HDF5Scan.from_dxchange(sys.argv[1]) as scan:
    info = reconstruct_scan(scan, settings, sys.argv[5], memory_budget=float(sys.argv[6]) * 1e9)
print(json.dumps({"engine": sys.argv[3], "stop_path_s": round(time.perf_counter() - t, 2),
                  "stages_s": info["timings"], "peak_rss_mb": round(peak_rss_mb(), 1)}))
"""


def _side_by_side(result, budget_gb, gridrec_python) -> list:
    """The stop path alone on the case's detector file, ours and then with tomopy's gridrec as the engine
    (tomopy lives in its own venv: it needs numpy < 2; see ../shared/tools/build-tomopy.sh)."""
    import os

    runs = []
    out_dir = Path(result["detector_file"]).parent
    root = Path(__file__).resolve().parents[1]
    for python, algorithm, backend in ((sys.executable, "nufft", "numpy"), (gridrec_python, "gridrec", "tomopy")):
        env = dict(os.environ, PYTHONPATH=str(root),
                   LD_LIBRARY_PATH=str(Path(python).parents[1] / "lib") if backend == "tomopy" else "")
        proc = subprocess.run([python, "-c", STOP_ONLY, result["detector_file"], str(result["center"]), algorithm,
                               backend, str(out_dir / f"{algorithm}.zarr"), str(budget_gb)],
                              capture_output=True, text=True, env=env)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else
                    {"engine": algorithm, "error": proc.stderr.strip().splitlines()[-1:]})
    return runs


def _child(case, budget_gb, keep, gridrec_python=None) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix=f"tomobluesky-scale-{case}-"))
    cmd = [sys.executable, __file__, "--one", case, "--data-dir", str(data_dir), "--memory-budget", str(budget_gb)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            return {"case": case, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if case == "M":
            result["gridrec"] = (_side_by_side(result, budget_gb, gridrec_python) if gridrec_python else
                                 "skipped: give --gridrec-python (a venv with tomopy; it is not on PyPI)")
        return result
    finally:
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def _table(results) -> str:
    lines = ["| case | scan | raw GB | acquisition frames/s | stop → volume complete (s) | peak RSS scan / Tiled (MB) "
             "| read amplification | slabs × rows | centre (true) |", "|" + "---|" * 9]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | failed: {r['error']} |" + " |" * 7)
            continue
        rss = r["peak_rss_mb"]
        lines.append(f"| {r['case']} | {r['scan']} | {r['raw_gb']} | {r['acquisition_frames_per_s']} | "
                     f"{r['stop_to_volume_s']} | {rss['scan process']:.0f} / {rss['tiled server']:.0f} | "
                     f"{r['read_amplification']} | {r['slabs']} × {r['slab_rows']} | {r['center']} "
                     f"({r['true_center'] if r['true_center'] is not None else '295.75 published'}) |")
    return "\n".join(lines)


def write_detector_file(case: str, path: Path) -> float:
    """Case ``case``'s fly scan as the camera writes it (Data Exchange, one frame per chunk), straight from the
    phantom without the RunEngine; returns the true centre."""
    import h5py
    import numpy as np

    source, projections = _source(case)
    theta = np.linspace(0, 180, projections, endpoint=False)
    rows, columns = source.shape
    dtype = CASES[case][3]
    with h5py.File(path, "w") as f:
        frames = {name: f.create_dataset(f"/exchange/{name}", shape=(n, rows, columns), dtype=dtype,
                                         chunks=(1, rows, columns))
                  for name, n in (("data", projections), ("data_white", 10), ("data_dark", 10))}
        for i in range(10):
            frames["data_white"][i] = source.flat()
            frames["data_dark"][i] = source.dark()
        for i, angle in enumerate(theta):
            frames["data"][i] = source.projection(angle)
        f["/exchange/theta"] = theta
        f["/exchange/theta"].attrs["units"] = "degrees"
    return source.center


def _uptime() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def stop_path_alone(path: str, center: float, workers: int, budget_gb: float) -> dict:
    """The stop path on ``path`` in this (fresh) process: ``workers`` = 0 in-process, else a LocalCluster of that
    many single-threaded worker processes (its start-up timed apart, its workers warmed by one import)."""
    from tomobluesky.pipeline import HDF5Scan, peak_rss_mb, reconstruct_scan
    from tomobluesky.schema import ReconSettings

    client, startup, load = None, 0.0, _uptime()
    if workers:
        from distributed import Client, LocalCluster

        t = time.perf_counter()
        client = Client(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     dashboard_address=None))
        client.run(lambda: __import__("tomobluesky.pipeline._stop"))
        startup = time.perf_counter() - t
    output = Path(path).with_name(f"volume-{workers}.zarr")
    t, cpu = time.perf_counter(), time.process_time()
    with HDF5Scan.from_dxchange(path) as scan:
        info = reconstruct_scan(scan, ReconSettings(center=center), output, memory_budget=budget_gb * 1e9,
                                dask=client)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu  # cpu: this process's threads (not the workers')
    shutil.rmtree(output, ignore_errors=True)
    if client is not None:
        cluster = client.cluster
        client.close()
        cluster.close()
    out = {"workers": workers, "load_before": load, "load_after": _uptime(), "cluster_start_s": round(startup, 2),
           "stop_path_s": round(wall, 2), "this_process_cpu_s": round(cpu, 2), "slabs": info["slabs"], "slab_rows": info["slab_rows"],
           "stages_s": info["timings"], "peak_rss_mb": round(peak_rss_mb(), 1),
           "read_amplification": info["read_amplification"]}
    if "dask" in info:
        out.update(_per_slab_summary(info["dask"]["per_slab"]), worker_peak_rss_mb=info["dask"]["worker_peak_rss_mb"])
    return out


def _per_slab_summary(per_slab) -> dict:
    """Sums and medians over slabs of each stage's wall and CPU seconds (the worker process's, and the task
    thread's alone), and the CPU seconds per detector row."""
    import numpy as np

    rows = sum(r["slab"][1] - r["slab"][0] for r in per_slab)
    stages = {}
    for stage in per_slab[0]["stages"]:
        wall, cpu, thread = ([r["stages"][stage][i] for r in per_slab] for i in range(3))
        stages[stage] = {"wall_sum": round(sum(wall), 2), "cpu_sum": round(sum(cpu), 2),
                         "thread_cpu_sum": round(sum(thread), 2),
                         "wall_median": round(float(np.median(wall)), 3), "cpu_median": round(float(np.median(cpu)), 3),
                         "cpu_per_row": round(sum(cpu) / rows, 4)}
    return {"per_slab_stages": stages}


def dask_scaling(cases, budget_gb: float, repeat: int, keep: bool):
    """For each case: its detector file once, then in-process, 1 and 2 workers, ``repeat`` rounds, each run in a
    fresh process so that its peak RSS is its own."""
    for case in cases:
        data_dir = Path(tempfile.mkdtemp(prefix=f"tomobluesky-dask-{case}-"))
        try:
            path = data_dir / "scan.h5"
            t = time.perf_counter()
            center = write_detector_file(case, path)
            yield {"case": case, "detector_file_written_s": round(time.perf_counter() - t, 1),
                   "bytes": path.stat().st_size}
            for _ in range(repeat):
                for workers in (0, 1, 2):
                    cmd = [sys.executable, __file__, "--stop-only", str(path), str(center), str(workers),
                           "--memory-budget", str(budget_gb)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    yield ({"case": case, **json.loads(proc.stdout.strip().splitlines()[-1])} if proc.returncode == 0
                           else {"case": case, "workers": workers, "error": proc.stderr.strip().splitlines()[-3:]})
        finally:
            if not keep:
                shutil.rmtree(data_dir, ignore_errors=True)


def _dask_line(r) -> str:
    if "workers" not in r or "error" in r:
        return json.dumps(r)
    where = "in-process" if not r["workers"] else f"{r['workers']} Dask worker(s)"
    line = (f"{r['case']} {where}: {r['stop_path_s']} s (cluster start {r['cluster_start_s']} s), "
            f"{r['slabs']} × {r['slab_rows']} rows, load {r['load_before']} → {r['load_after']}")
    for stage, s in r.get("per_slab_stages", {}).items():
        line += (f"\n    {stage}: CPU {s['cpu_sum']} s (task thread {s['thread_cpu_sum']} s; median {s['cpu_median']} "
                 f"per slab), wall {s['wall_sum']} s")
    return line


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", nargs="*", help=f"cases to run, of {' '.join(CASES)} (default: S M L)")
    p.add_argument("--memory-budget", type=float, default=2.0, metavar="GB", help="stop path budget (default 2)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.add_argument("--keep", action="store_true", help="keep each case's data directory")
    p.add_argument("--gridrec-python", metavar="PYTHON",
                   help="for M, also run the stop path alone with tomopy's gridrec under this interpreter "
                        "(a venv with tomopy, e.g. from ../shared/tools/build-tomopy.sh), beside ours")
    p.add_argument("--dask", action="store_true",
                   help="measure the stop path alone, in this process and on 1 and 2 Dask workers (default case M)")
    p.add_argument("--repeat", type=int, default=1, help="with --dask: rounds of the three runs (default 1)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--stop-only", nargs=3, metavar=("FILE", "CENTER", "WORKERS"), help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.cases) - set(CASES)
    if unknown:
        p.error(f"unknown cases {sorted(unknown)}; choose from {' '.join(CASES)}")
    if args.one:
        print(json.dumps(run_case(args.one, Path(args.data_dir), args.memory_budget)))
        return 0
    if args.stop_only:
        path, center, workers = args.stop_only
        print(json.dumps(stop_path_alone(path, float(center), int(workers), args.memory_budget)))
        return 0
    if args.dask and "S" in args.cases:
        p.error("--dask runs the phantom cases (M, L, XL): S replays the tooth, whose file is too small to split")
    if args.dask:
        for result in dask_scaling(args.cases or ["M"], args.memory_budget, args.repeat, args.keep):
            print(json.dumps(result) if args.json else _dask_line(result), flush=True)
        return 0
    results = []
    for case in args.cases or ["S", "M", "L"]:
        results.append(_child(case, args.memory_budget, args.keep, args.gridrec_python))
        print(json.dumps(results[-1]) if args.json else f"{case} done", file=sys.stdout if args.json else sys.stderr,
              flush=True)
    if not args.json:
        print(_table(results))
        for r in results:
            if "stop_path_s" in r:
                print(f"{r['case']}: stop path stages (s) {r['stop_path_s']}; level reads (s) {r['level_read_s']}"
                      + (f"; gridrec {r['gridrec']}" if "gridrec" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
