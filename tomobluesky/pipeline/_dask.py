"""The stop path's slabs as tasks on Dask distributed.

Each slab is one task (:func:`slab_task`): it reads its detector rows from
the detector file, normalises and reconstructs them, and writes its slices
and their pyramid blocks into the Zarr store. Nothing but timings travels
back: the pixels go from the file to the store on the worker. The client
creates the store (its metadata) before the tasks start, and the slab plan
keeps slabs on whole chunks at every level, so no two tasks ever write the
same chunk file.

So the workers must see the detector files and the store **at the same
paths as the client**: a filesystem they all share (GPFS, Lustre, NFS, CephFS).
A task checks that first and fails naming the path and the worker.

Where the cluster comes from (one setting, ``Settings.dask_scheduler``,
environment ``TOMOBLUESKY_DASK_SCHEDULER``):

- ``"local"``: a :class:`distributed.LocalCluster` made once per process and
  kept for the next scans: one worker *process* per core, one task thread
  each. Processes rather than threads: NumPy, the FFT and finufft release the
  GIL, but h5py holds one lock for every HDF5 call in a process, so threads
  would read one at a time.
- ``"tcp://host:8786"`` (any scheduler address): an existing cluster, e.g.
  from dask-jobqueue (SLURM, PBS) or dask-kubernetes. Its workers need
  tomobluesky installed.

Every task runs the engine on one thread (``ncore=1``): a worker with T
threads reconstructs T slabs at once, each within the slab plan's memory.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import socket
import threading
import uuid
from pathlib import Path

from ._resources import process_peak_rss_mb
from ._scan import DARKS, FLATS, PROJECTIONS, FrameRun, HDF5Scan

log = logging.getLogger(__name__)

LOCAL = "local"
#: seconds to wait for an existing scheduler before giving up with a clear message
CONNECT_TIMEOUT = 10

_clients: dict = {}
_lock = threading.Lock()


class WorkerPathError(FileNotFoundError):
    """A Dask worker cannot see a path the client gave it (no shared filesystem, or a different mount)."""


def get_client(scheduler):
    """A :class:`distributed.Client` for ``scheduler``: a Client (used as it is), ``"local"`` (this
    process's LocalCluster, made on first use) or a scheduler address. Kept for the next scans."""
    from distributed import Client

    if isinstance(scheduler, Client):
        return scheduler
    scheduler = str(scheduler).strip()
    if not scheduler:
        raise ValueError("the Dask scheduler setting is empty: give 'local' or an address such as tcp://host:8786")
    with _lock:
        client = _clients.get(scheduler)
        if client is None or client.status not in ("running", "connecting", "newly-created"):
            client = _clients[scheduler] = _local_client() if scheduler == LOCAL else _connect(scheduler)
    return client


def _local_client():
    from distributed import Client, LocalCluster

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # the scheduler and the nannies live in this process: their INFO lines (each worker joining, retiring,
    # closing) would fill the caller's log; warnings and errors still come through
    logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = LocalCluster(n_workers=cores, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.WARNING)
    log.info("stop path: a local Dask cluster of %d worker processes", cores)
    return Client(cluster)


def _connect(address):
    from distributed import Client

    try:
        return Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as err:
        raise ConnectionError(f"cannot reach the Dask scheduler at {address} ({err}); check "
                              "TOMOBLUESKY_DASK_SCHEDULER, or unset it to reconstruct in this process") from None


@atexit.register
def close_clients():
    """Close every client (and the local cluster) this process made."""
    with _lock:
        for client in _clients.values():
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
        _clients.clear()


def _detached(scan: HDF5Scan) -> HDF5Scan:
    """A copy of ``scan`` with no open file and absolute paths, to pickle to workers (their working
    directory is not the client's)."""
    def runs(kind):
        return [FrameRun(Path(os.path.abspath(r.path)), r.dataset, r.start, r.stop) for r in getattr(scan, kind)]

    return HDF5Scan(runs(PROJECTIONS), scan.theta_deg, runs(FLATS), runs(DARKS), tuple(scan.detector_shape),
                    scan.dtype)


def worker_name() -> str:
    """Who runs this task, for messages: the worker's address, name and host."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        return f"(not a Dask worker) on {socket.gethostname()}"
    return f"{worker.address} (name {worker.name!r}) on host {socket.gethostname()}"


def check_visible(scan: HDF5Scan, output) -> None:
    """Refuse, naming the path and the worker, when this worker cannot read a detector file or find the
    store the client created: every worker must see them at the same paths (a shared filesystem)."""
    paths = sorted({str(run.path) for kind in (PROJECTIONS, FLATS, DARKS) for run in getattr(scan, kind)})
    problem = next(((p, "read the detector file") for p in paths
                    if not (os.path.isfile(p) and os.access(p, os.R_OK))), None)
    store = Path(output)
    if problem is None and not ((store / "zarr.json").is_file() and os.access(store, os.W_OK)):
        problem = (str(store), "write the volume store")
    if problem:
        path, action = problem
        raise WorkerPathError(f"Dask worker {worker_name()} cannot {action} {path}: the workers must see the "
                              f"detector files and the volume store at the same paths as the client "
                              f"(a shared filesystem; see docs/stop-path.md)")


def slab_task(work, output: str, slab) -> dict:
    """One slab on a worker: check the paths, then read → normalise → reconstruct → write (``work.run``).
    Returns the slab's wall, process CPU and thread CPU seconds per stage, the bytes it read, its pixels without beam and the
    worker's peak RSS so far."""
    from ..store import MultiscaleWriter
    from ._stop import _StageClock

    check_visible(work.scan, output)
    clock, no_beam = _StageClock(), {}
    try:
        t = _StageClock.now()
        writer = MultiscaleWriter.open(output)
        clock("open", t)
        work.run(slab, writer, no_beam, clock)
    finally:
        work.scan.close()  # one task, one slab: no file stays open on the worker between tasks
    return {"slab": list(slab), "worker": worker_name(), "pid": os.getpid(),
            "stages": {k: [round(v, 4) for v in wc] for k, wc in clock.items()},
            "bytes_read": work.scan.bytes_read, "no_beam": no_beam,
            "worker_peak_rss_mb": round(process_peak_rss_mb("self") or 0.0, 1)}


def run_slabs(client, work, output, slabs, *, progress=None, rows: int) -> list[dict]:
    """Every slab as one task on ``client``'s cluster; the slabs' reports in the order they finished.
    A failed slab cancels the rest and raises its error here."""
    from distributed import as_completed

    from ..recon._nufft import clear_plan_cache

    remote = dataclasses.replace(work, scan=_detached(work.scan), ncore=1)
    output = os.path.abspath(output)
    run = uuid.uuid4().hex[:8]
    futures = [client.submit(slab_task, remote, output, tuple(slab), key=f"tomobluesky-slab-{run}-{slab[0]}",
                             pure=False) for slab in slabs]
    reports, done = [], 0
    try:
        for future in as_completed(futures):
            report = future.result()
            reports.append(report)
            done += report["slab"][1] - report["slab"][0]
            if progress:
                progress(done, rows)
    finally:
        client.cancel(futures)
        try:  # each worker kept the NUFFT plan (and its fine grid) for its next slab; the scan is over
            client.run(clear_plan_cache)
        except Exception as err:  # a lost worker must not hide the slab's own error
            log.warning("could not free the workers' NUFFT plans: %s", err)
    return reports
