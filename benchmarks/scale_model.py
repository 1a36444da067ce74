"""How long 100 GB and 1 TB scans take on N nodes: a model fed by ``scale.py --dask`` measurements.

Reads the JSON lines of ``benchmarks/scale.py --dask M --json``, takes the
per-slab CPU seconds of the 1-worker and 2-worker runs (CPU seconds, not wall:
the machine is shared), turns them into per-core rates, and prints for each
scan and node count the time of the three resources the slabs share (and how
many slabs can run at once: a slab is at least the pyramid's 2^(levels−1)
rows, and its task's memory limits how many fit on a node):

- compute: every slab's read + normalise + reconstruct + write CPU seconds,
  over N nodes × cores × the parallel efficiency measured from 1 to 2 workers;
- read: the raw bytes over the read bandwidth, min(N × node link, filesystem);
- write: the volume and its pyramid (8/7 of it) over the write bandwidth.

The slabs overlap on different workers, so the slowest of the three is the
bottleneck and the time is close to it (the sum is the bound with no overlap).
The bandwidths and node sizes are assumptions, named on the command line.

    python benchmarks/scale_model.py /tmp/dask-M.jsonl
    python benchmarks/scale_model.py /tmp/dask-M.jsonl --cores 64 --link-gbs 12.5 --fs-read-gbs 40 --fs-write-gbs 20
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys

#: M, as benchmarks/scale.py makes it: projections, rows, columns, bytes per pixel (float32)
M = (1440, 128, 1280, 4)
#: tomocupy's published figure (Nikitin et al. 2023, tomocupy paper): a 2048³ volume in about 7 s on one
#: A100 including I/O, i.e. at least 2048³ / 7 voxels per second per GPU. Not measured here (no GPU lent).
GPU_VOXELS_PER_S = 2048**3 / 7


def nyquist_scan(raw_bytes: float, itemsize: int = 2):
    """A square detector of n columns and n rows, 1.5 n projections (about π/2 n: sampled at Nyquist),
    uint16, whose frames weigh ``raw_bytes``: (projections, rows, columns)."""
    n = round((raw_bytes / (1.5 * itemsize)) ** (1 / 3))
    return round(1.5 * n), n, n


def per_core_rates(results) -> dict:
    """CPU seconds per unit from the Dask runs: read per raw byte, reconstruct per voxel (at M's log2 n),
    write per written byte (volume + pyramid), and the 2-worker efficiency (1-worker CPU / 2-worker CPU)."""
    angles, rows, columns, itemsize = M
    raw = angles * rows * columns * itemsize
    voxels = rows * columns**2
    written = voxels * 4 * 8 / 7
    by_workers = {}
    for r in results:
        if r.get("workers") in (1, 2) and "per_slab_stages" in r:
            by_workers.setdefault(r["workers"], []).append(r["per_slab_stages"])

    def cpu(workers, stage):
        """The task thread's CPU where the stage's work stays in it (read, reconstruct at ncore=1): the worker
        process's adds Dask's own threads (heartbeats, memory monitor). zarr writes from its own threads, so
        write takes the process's CPU less that background, at the rate seen while reconstructing."""
        def one(s):
            if "thread_cpu_sum" not in s[stage]:  # an older run: process CPU only
                return s[stage]["cpu_sum"]
            if stage in ("read", "reconstruct"):
                return s[stage]["thread_cpu_sum"]
            rec = s["reconstruct"]
            background = (rec["cpu_sum"] - rec["thread_cpu_sum"]) / rec["wall_sum"]
            return max(s[stage]["thread_cpu_sum"], s[stage]["cpu_sum"] - background * s[stage]["wall_sum"])
        return statistics.median(one(s) for s in by_workers[workers])

    rates = {w: {"read": cpu(w, "read") / raw, "reconstruct": cpu(w, "reconstruct") / voxels,
                 "write": (cpu(w, "write") + cpu(w, "open")) / written} for w in by_workers}
    total = {w: sum(cpu(w, s) for s in ("read", "reconstruct", "write", "open")) for w in by_workers}
    efficiency = total[1] / total[2] if 1 in total and 2 in total else 1.0
    return {"per_core": rates[min(rates)], "efficiency_2": efficiency, "cpu_s": total}


def slab_limits(angles, rows, columns, node_memory):
    """The most slabs a scan splits into (slabs start on the pyramid's 2^(levels−1) rows, see stop-path.md),
    and the memory of one such slab's task (the slab plan's estimate, one copy: a task does not overlap)."""
    from tomobluesky.pipeline._plan import _per_row, nufft_bytes
    from tomobluesky.store import level_shapes

    multiple = 2 ** (len(level_shapes((rows, columns, columns), 256)) - 1)
    memory = nufft_bytes(angles, columns, 8) + multiple * _per_row(angles, columns, 20, False, 1, 2)
    return math.ceil(rows / multiple), multiple, memory


def model(raw_bytes, nodes, *, rates, cores, link, fs_read, fs_write, node_memory, gpus=0):
    angles, rows, columns = nyquist_scan(raw_bytes)
    voxels = rows * columns**2
    written = voxels * 4 * 8 / 7
    log_growth = math.log2(columns) / math.log2(M[2])  # the FFTs' n log n, per voxel
    r = rates["per_core"]
    efficiency = min(1.0, rates["efficiency_2"])
    io_cpu = r["read"] * raw_bytes + r["write"] * written
    recon_cpu = r["reconstruct"] * voxels * log_growth
    slabs, multiple, task_memory = slab_limits(angles, rows, columns, node_memory)
    per_node = max(1, min(cores, int(node_memory // task_memory)))
    tasks = min(nodes * per_node, slabs)  # slabs running at once, one core each (ncore=1, as built)
    if gpus:  # the GPU reconstructs; normalising and writing stay on the node's cores
        gpu_tasks = min(nodes * gpus, slabs)
        compute = io_cpu / (tasks * efficiency) + voxels / (GPU_VOXELS_PER_S * gpu_tasks)
        shared = io_cpu / (min(nodes * cores, slabs * cores) * efficiency) + voxels / (GPU_VOXELS_PER_S * gpu_tasks)
    else:
        compute = (io_cpu + recon_cpu) / (tasks * efficiency)
        shared = (io_cpu + recon_cpu) / (nodes * cores * efficiency)  # if a slab's task used several cores
    read = raw_bytes / min(nodes * link, fs_read)
    write = written / min(nodes * link, fs_write)
    times = {"compute": compute, "read": read, "write": write}
    return {"scan": f"{angles} × {rows} × {columns} u16", "nodes": nodes, **times, "shared": shared,
            "slabs": slabs, "multiple": multiple, "task_gb": task_memory / 1e9, "tasks": tasks,
            "bottleneck": max(times, key=times.get), "estimate": max(times.values()), "no_overlap": sum(times.values())}


def _fmt(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min" if seconds >= 90 \
        else f"{seconds:.0f} s"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("measurements", help="JSON lines from `benchmarks/scale.py --dask M --json`")
    p.add_argument("--cores", type=int, default=64, help="cores per CPU node (default 64)")
    p.add_argument("--gpus", type=int, default=4, help="GPUs per GPU node (default 4)")
    p.add_argument("--link-gbs", type=float, default=12.5, help="network per node, GB/s (default 12.5: 100 GbE)")
    p.add_argument("--fs-read-gbs", type=float, default=40.0, help="filesystem read, GB/s, all nodes (default 40)")
    p.add_argument("--fs-write-gbs", type=float, default=20.0, help="filesystem write, GB/s, all nodes (default 20)")
    p.add_argument("--node-memory-gb", type=float, default=512, help="memory per node, GB (default 512)")
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 4, 16, 64])
    args = p.parse_args(argv)
    with open(args.measurements) as f:
        rates = per_core_rates([json.loads(line) for line in f if line.strip()])
    r = rates["per_core"]
    print(f"per core: read + normalise {r['read'] * 1e9:.2f} CPU-s/GB, reconstruct {r['reconstruct'] * 1e9:.1f} "
          f"CPU-s per 10^9 voxels (at n = {M[2]}), write {r['write'] * 1e9:.2f} CPU-s/GB; "
          f"1 → 2 workers: {rates['efficiency_2']:.2f} of the CPU per slab (CPU-s {rates['cpu_s']})")
    print("| scan | raw | nodes | slabs × rows (GB per task) | slabs at once | compute | read | write | bottleneck "
          "| estimate (no overlap) | compute if a slab's task used several cores |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for raw in (100e9, 1e12):
        for kind, gpus in (("CPU", 0), ("GPU", args.gpus)):
            for n in args.nodes:
                m = model(raw, n, rates=rates, cores=args.cores, link=args.link_gbs * 1e9,
                          fs_read=args.fs_read_gbs * 1e9, fs_write=args.fs_write_gbs * 1e9,
                          node_memory=args.node_memory_gb * 1e9, gpus=gpus)
                print(f"| {m['scan']} | {raw / 1e9:.0f} GB | {n} {kind} | {m['slabs']} × {m['multiple']} "
                      f"({m['task_gb']:.1f}) | {m['tasks']} | {_fmt(m['compute'])} | {_fmt(m['read'])} | "
                      f"{_fmt(m['write'])} | {m['bottleneck']} | {_fmt(m['estimate'])} ({_fmt(m['no_overlap'])}) | "
                      f"{_fmt(m['shared'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
