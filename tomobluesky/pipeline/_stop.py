"""The stop path: a scan's detector file in, a multiscale Zarr volume out, slab by slab.

One plain function, :func:`reconstruct_scan`, serves every route: the
in-process live reconstruction, the Kafka worker and a re-reconstruction of
a file. It never holds the scan: each slab of detector rows is read,
normalised, reconstructed and written before the next but one is read
(tomocupy's conveyor: the next slab is read and the last one written while
this one computes), so its memory follows the budget, not the scan.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import recon
from ..schema import ReconSettings
from ._plan import SlabPlan, plan_slabs
from ._resources import current_rss_bytes, peak_rss_mb
from ._scan import DARKS, FLATS, PROJECTIONS, HDF5Scan

log = logging.getLogger(__name__)

#: the stop path's default memory budget (peak resident memory of the process)
DEFAULT_BUDGET = 2e9
#: detector rows the centre finder looks at
CENTER_ROWS = 5


#: recon.reconstruct is moving to tomopy's (angles, slices, columns) default with ``sinogram_order=True`` for
#: sinograms (another change in flight); the stop path hands it sinograms, so it says so where the option exists
_SINOGRAM_ORDER = ({"sinogram_order": True} if "sinogram_order" in inspect.signature(recon.reconstruct).parameters
                   else {})


class _Timer(dict):
    """Seconds per stage, summed over slabs (stages overlap, so they may add up to more than the wall time)."""

    def add(self, stage, since):
        now = time.perf_counter()
        self[stage] = self.get(stage, 0.0) + now - since
        return now


def read_sinograms(scan: HDF5Scan, rows, *, frame_block: int = 32, no_beam: dict | None = None) -> np.ndarray:
    """−log of the normalised projections of detector ``rows`` as sinograms (rows, angles, columns) float32.

    Equal to ``minus_log(normalize(projections, flats, darks))`` restricted to
    those rows: the same medians, the same floor, the same order of operations.
    ``no_beam``: where given, collects {detector row: columns whose flat is not
    brighter than the dark} instead of a warning per call (see ``_flat_field_warnings``).
    """
    field = recon.flat_field(scan.read_rows(FLATS, rows), scan.read_rows(DARKS, rows),
                             where=f" in detector rows {rows}", warn=no_beam is None)
    dark, beam = field
    if no_beam is not None and field.no_beam is not None:
        numbers = range(*rows.indices(scan.detector_shape[0])) if isinstance(rows, slice) else rows
        no_beam.update({row: np.flatnonzero(mask) for row, mask in zip(numbers, field.no_beam) if mask.any()})
    height = dark.shape[0]
    out = np.empty((height, scan.num_projections, scan.detector_shape[1]), dtype=np.float32)
    for first, block in scan.iter_rows(PROJECTIONS, rows, frame_block=frame_block):
        # integer counts cannot be NaN or infinite, and the floor before the log keeps them finite: only
        # float frames need the check (a pass over the data)
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise ValueError(f"projections {first}..{first + len(block)} contain NaN or infinite values")
        block = block.astype(np.float32)  # a copy: normalised in place below
        recon.minus_log(recon.apply_flat_field(block, dark, beam, out=block), out=block)
        out[:, first:first + len(block), :] = block.transpose(1, 0, 2)
    return out


def center_rows(rows: int, count: int = CENTER_ROWS) -> list[int]:
    """A few detector rows spread over the middle of the detector (the ends often see only the holder)."""
    if rows <= count:
        return list(range(rows))
    return sorted(set(np.linspace(0.2 * (rows - 1), 0.8 * (rows - 1), count).round().astype(int).tolist()))


def find_scan_center(scan: HDF5Scan, settings: ReconSettings, seen: dict | None = None,
                     no_beam: dict | None = None, pipeline=None) -> tuple[float, dict]:
    """The axis from a few rows, or the one the settings give. The sinograms read go into
    ``seen`` (keyed by their rows), for a slab of the same rows to reuse (a scan of a few rows);
    pixels without beam into ``no_beam`` (see ``read_sinograms``). With a ``pipeline``, the rows go
    through its projection and sinogram steps first, as the slabs will: the axis is searched on what
    is reconstructed (a zinger or stripe filter changes where the search lands)."""
    if settings.center is not None:
        return float(settings.center), {"center_method": "given", "center_confidence": 1.0}
    from ._steps import read_sinograms_through, reads_as_standard

    rows = center_rows(scan.detector_shape[0])
    if pipeline is not None and not reads_as_standard(pipeline):
        # adjacent rows in the middle, read in one pass with the steps' halo: spread rows would each bring
        # their own (8 × 65 rows for Paganin's halo of 32, a quarter of a 2048-row scan read again)
        first = max(0, scan.detector_shape[0] // 2 - len(rows) // 2)
        rows = list(range(first, first + len(rows)))
        sinograms = read_sinograms_through(scan, (rows[0], rows[-1] + 1), pipeline)
    else:
        sinograms = read_sinograms(scan, rows, no_beam=no_beam)
        if seen is not None and rows == list(range(rows[0], rows[-1] + 1)):
            seen[(rows[0], rows[-1] + 1)] = sinograms  # as read: the slab runs its sinogram steps itself
    if pipeline is not None and pipeline.stage("sinograms"):
        sinograms = pipeline.run("sinograms", sinograms.copy())
    found = recon.find_center(sinograms, np.radians(scan.theta_deg), method=settings.center_method)
    return float(found.center), {"center_method": found.method, "center_confidence": float(found.confidence),
                                 "center_rows": rows}


def _pipeline_multiple(shape, min_size) -> int:
    """Slab heights keep NUFFT slice pairs and the pyramid's 2× blocks whole."""
    from ..store import level_shapes

    return math.lcm(2, 2 ** (len(level_shapes(shape, min_size)) - 1))


def _chunk_depth(slab_rows: int, deepest: int) -> int:
    """The deepest power-of-two chunk (≤ ``deepest``) that slab boundaries never cut:
    a slab that wrote part of a chunk would make the next one read and rewrite it."""
    depth = slab_rows & -slab_rows  # the largest power of two dividing slab_rows
    return max(1, min(depth, deepest))


def reconstruct_scan(scan: HDF5Scan, settings: ReconSettings | None, output: str | Path, *,
                     memory_budget: float = DEFAULT_BUDGET, pixel_size: float | None = None,
                     attributes: dict | None = None, progress=None, writer_options: dict | None = None,
                     dask=None, pipeline=None, steps_output: str | Path | None = None,
                     volume_steps: bool = True) -> dict:
    """Reconstruct ``scan`` into a multiscale Zarr store at ``output``; return what it did.

    ``memory_budget``: bytes of resident memory the process may reach (what
    it already uses counts against it); slabs are sized to fit.
    ``progress(rows_done, rows_total)`` is called after every slab.
    ``dask``: None reconstructs in this process (a conveyor of three threads);
    ``"local"`` (a LocalCluster of this machine), a scheduler address or a
    ``distributed.Client`` runs each slab as a Dask task (see ``_dask.py``;
    the workers must share the filesystem). A scan of one slab stays here.
    The returned dict has the centre, the slab plan, per-stage timings,
    ``read_amplification`` (bytes read from the file / bytes of the scan) and
    ``peak_rss_mb``; with Dask also ``dask``: the workers, their peak RSS and
    every slab's wall and CPU seconds per stage.
    ``pipeline``: the scan's processing steps (:func:`scan_pipeline`; None: the
    settings' chain, as before steps existed). Its volume steps run on the
    finished store and write under ``steps_output`` (default: ``<output>.steps``);
    the dict then has ``pipeline`` (as run) and ``step_outputs``. ``volume_steps=False``
    leaves them to the caller (who registers the volume first, so a failing step cannot cost it).
    """
    from ..recon._nufft import clear_plan_cache
    from ..store import DEFAULT_CHUNKS, MultiscaleWriter

    _import_engines()  # before the budget is measured: the libraries' own memory is not the slabs'
    settings = settings or ReconSettings()
    t_start = time.perf_counter()
    timer = _Timer()
    rows, columns = scan.detector_shape
    theta = np.radians(scan.theta_deg)
    if scan.num_projections < 2:
        raise ValueError(f"scan has {scan.num_projections} projections; a reconstruction needs at least 2")
    read_before = scan.bytes_read
    t = time.perf_counter()
    seen, no_beam = {}, {}
    center, center_info = find_scan_center(scan, settings, seen, no_beam, pipeline)
    timer.add("center", t)
    shape = (rows, columns, columns)
    options = {**(writer_options or {})}
    chunks = tuple(options.pop("chunks", DEFAULT_CHUNKS))
    plan = _plan(scan, settings, shape, memory_budget, options.get("min_size", 256), chunks[0],
                 sinogram_steps=bool(pipeline is not None and pipeline.stage("sinograms")),
                 cores=1 if dask is not None else None)  # a Dask task's engine runs on one thread
    chunks = _chunks_for(_chunk_depth(plan.slab_rows, chunks[0]), chunks)
    writer = MultiscaleWriter(output, shape, pixel_size=pixel_size, attributes=attributes, chunks=chunks, **options)
    log.info("stop path: %s rows × %s angles × %s columns in %r", rows, scan.num_projections, columns, plan)
    work = SlabWork(scan, settings, theta, center, plan.batch_pairs, plan.frame_block, pipeline=pipeline)
    distributed = None
    try:
        if dask is not None and len(plan.slabs) > 1:
            distributed = _run_on_dask(dask, work, writer, plan, timer, progress, no_beam)
        else:
            _run_slabs(work, writer, plan, timer, progress, seen, no_beam)
    finally:
        clear_plan_cache()
    step_outputs = _volume_steps(pipeline if volume_steps else None, output, steps_output,
                                 writer.slab_height(64, parallel=False), attributes, timer)
    timer["total"] = time.perf_counter() - t_start
    read = scan.bytes_read - read_before + (distributed or {}).get("bytes_read", 0)
    return {
        "center": center, **center_info, "volume_shape": list(shape), "levels": [list(s) for s in writer.levels],
        "chunks": list(writer.chunks), "slab_rows": min(plan.slab_rows, rows), "slabs": len(plan.slabs),
        "overlap": plan.overlap, "memory_budget_mb": round(memory_budget / 1e6),
        "plan_estimate_mb": round(plan.estimate_bytes / 1e6),
        "read_amplification": round(read / max(scan.raw_bytes, 1), 3),
        "timings": {k: round(v, 4) for k, v in timer.items()},
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "flat_field_warnings": _flat_field_warnings(no_beam),
        **({"dask": distributed} if distributed else {}),
        **({"pipeline": pipeline.record(), "step_outputs": step_outputs} if pipeline is not None else {}),
    }


def _volume_steps(pipeline, output, steps_output, slab, attributes, timer) -> dict | None:
    """The pipeline's volume steps on the finished store (each slab by slab); None when it has none."""
    if pipeline is None or not pipeline.stage("volume"):
        return None
    from ..steps import run_volume_steps

    t = time.perf_counter()
    root = Path(steps_output) if steps_output is not None else Path(output).with_suffix(".steps")
    outputs = run_volume_steps(pipeline, output, root, slab=slab, attributes=attributes)
    timer.add("volume_steps", t)
    return outputs


def _run_on_dask(dask, work, writer, plan, timer, progress, no_beam) -> dict:
    """The slabs as Dask tasks; what the workers did, summed into ``timer`` and ``no_beam``."""
    from . import _dask

    if plan.slab_rows % writer.slab_alignment:  # _plan keeps slabs on whole chunks; parallel writes rely on it
        raise RuntimeError(f"slabs of {plan.slab_rows} rows cut the store's chunks "
                             f"(alignment {writer.slab_alignment}): they cannot be written in parallel")
    client = _dask.get_client(dask)
    t0 = time.perf_counter()
    reports = _dask.run_slabs(client, work, writer.path, plan.slabs, progress=progress,
                              rows=work.scan.detector_shape[0])
    timer["slabs_wall"] = time.perf_counter() - t0
    for report in reports:
        no_beam.update(report.pop("no_beam"))
        for stage, (wall, *_cpu) in report["stages"].items():
            timer[stage] = timer.get(stage, 0.0) + wall
    workers = sorted({r["worker"] for r in reports})
    peaks = {}
    for r in reports:
        peaks[r["worker"]] = max(peaks.get(r["worker"], 0.0), r["worker_peak_rss_mb"])
    return {"scheduler": client.scheduler.address, "workers": len(client.scheduler_info()["workers"]),
            "workers_used": workers, "worker_peak_rss_mb": peaks,
            "bytes_read": sum(r["bytes_read"] for r in reports),
            "per_slab": sorted(reports, key=lambda r: r["slab"][0])}


def _flat_field_warnings(no_beam: dict) -> list[str]:
    """One warning for the whole scan, logged and returned, naming the columns whose flats are not brighter
    than the darks (every slab would repeat it otherwise); empty when every pixel had beam."""
    if not no_beam:
        return []
    columns = np.unique(np.concatenate(list(no_beam.values())))
    pixels = sum(len(c) for c in no_beam.values())
    message = recon.no_beam_message(pixels, columns, where=f" (detector rows {recon.compact_ranges(list(no_beam))})")
    log.warning("%s", message)
    return [message]


def _chunks_for(depth: int, default) -> tuple[int, int, int]:
    """Shallower chunks get wider tiles, so a chunk stays around 2 MB: zarr's cost per chunk, not per
    byte, dominates below that (8 × 128² chunks wrote 200 MB/s, 8 × 256² 320 MB/s, at 2048 wide),
    and an axial slice then reads fewer, fuller chunks."""
    widen = 1 if depth >= default[0] else 2 if depth * 4 >= default[0] else 4
    return (depth, default[1] * widen, default[2] * widen)


def _plan(scan, settings, shape, memory_budget, min_size, chunk_depth, sinogram_steps=False,
          cores=None) -> SlabPlan:
    """Slabs that fit the budget; whole level-0 chunks deep when the budget allows (a slab that ends inside
    a chunk makes the next one read and rewrite it, and shallow chunks make many small files)."""
    available = max(memory_budget - current_rss_bytes(), 0)
    base = _pipeline_multiple(shape, min_size)
    # a sinogram step (ring removal among them) may need a second slab-sized array
    kwargs = dict(budget_bytes=available, flats_darks=_frame_count(scan),
                  ring_removal=settings.ring_removal or sinogram_steps,
                  itemsize=scan.dtype.itemsize, cores=cores)
    rows, angles, columns = shape[0], scan.num_projections, shape[2]
    deep = plan_slabs(rows, angles, columns, multiple=math.lcm(base, chunk_depth), **kwargs)
    if deep.fits:
        return deep
    return plan_slabs(rows, angles, columns, multiple=base, **kwargs)


def _import_engines():
    import scipy.fft  # noqa: F401
    import zarr  # noqa: F401

    try:
        import finufft  # noqa: F401
    except ImportError:  # another engine (tomopy's gridrec) may be in use
        pass


def _frame_count(scan):
    return sum(len(r) for kind in (FLATS, DARKS) for r in getattr(scan, kind))


@dataclass
class SlabWork:
    """What every slab of one scan needs, and the slab's stages: read (+ normalise, −log, rings) →
    reconstruct → write. :meth:`run` does them one after another (a Dask task); the single-process
    conveyor calls the stages itself so that they overlap. Steps added to the stop path go here,
    between :meth:`read` and :meth:`reconstruct` (sinograms) or after it (slices).

    Holds no open file: pickled whole to Dask workers (``scan`` must have none open either)."""

    scan: HDF5Scan
    settings: ReconSettings
    theta: np.ndarray  # radians
    center: float
    batch_pairs: int
    frame_block: int
    ncore: int | None = None  # the engine's threads; None: all this process may use
    pipeline: object = None  # tomobluesky.steps.Pipeline; None: the settings' chain (median flat field, −log, rings)

    def read(self, slab, no_beam: dict | None = None, seen: dict | None = None) -> np.ndarray:
        """Sinograms of detector rows ``slab`` = (first, end), normalised, −log (and rings removed)."""
        from ._steps import read_sinograms_through, reads_as_standard

        if self.pipeline is not None and not reads_as_standard(self.pipeline):
            sinograms = read_sinograms_through(self.scan, slab, self.pipeline, frame_block=self.frame_block)
        else:
            sinograms = (seen or {}).pop(tuple(slab), None)
            if sinograms is None:
                sinograms = read_sinograms(self.scan, slice(*slab), frame_block=self.frame_block, no_beam=no_beam)
        if self.pipeline is not None:
            return self.pipeline.run("sinograms", sinograms)
        if self.settings.ring_removal:
            sinograms = recon.remove_rings(sinograms)
        return sinograms

    def reconstruct(self, sinograms: np.ndarray) -> np.ndarray:
        from ._steps import engine_options, own_engine

        if self.pipeline is not None and not own_engine(self.pipeline):  # a plugin's reconstruction step
            return self.pipeline.producer(sinograms, {"theta": self.theta, "center": self.center})
        return recon.reconstruct(sinograms, self.theta, self.center, **engine_options(self.pipeline, self.settings),
                                 backend=self.settings.backend, batch_pairs=self.batch_pairs, ncore=self.ncore,
                                 **_SINOGRAM_ORDER)

    @staticmethod
    def write(writer, slab, volume) -> None:
        writer.write_slab(slab[0], volume)

    def run(self, slab, writer, no_beam: dict | None = None, clock=None) -> None:
        """The whole slab, one stage after another; ``clock(stage, since)`` (see ``_StageClock``) times each."""
        if clock is None:  # not `clock or`: a fresh _StageClock is an empty dict, falsy, and would be dropped
            clock = lambda stage, since: None  # noqa: E731
        t = _StageClock.now()
        sinograms = self.read(slab, no_beam)
        t = clock("read", t)
        volume = self.reconstruct(sinograms)
        del sinograms
        t = clock("reconstruct", t)
        self.write(writer, slab, volume)
        clock("write", t)


class _StageClock(dict):
    """Seconds per stage: {stage: [wall, process CPU, thread CPU]}. The process's CPU counts all its threads:
    zarr encodes and writes in its own, but so do a Dask worker's heartbeats and memory monitor (a few % of a
    core, which a long wall on a loaded machine inflates). The calling thread's CPU is the stage's own where
    the work stays in the thread: HDF5 reads, normalising, the engine at ``ncore=1``."""

    @staticmethod
    def now():
        return time.perf_counter(), time.process_time(), time.thread_time()

    def __call__(self, stage, since):
        now = self.now()
        totals = self.setdefault(stage, [0.0, 0.0, 0.0])
        self[stage] = [total + b - a for total, a, b in zip(totals, since, now)]
        return now


def _run_slabs(work: SlabWork, writer, plan: SlabPlan, timer, progress, seen=None, no_beam=None):
    """Read → (rings) → reconstruct → write, with reading and writing beside the compute when the plan allows
    (one process: a reader thread, this thread, a writer thread).
    ``seen``: sinograms already read, by (first row, end row); ``no_beam`` collects pixels without beam."""

    def load(slab):
        t0 = time.perf_counter()
        sinograms = work.read(slab, no_beam, seen)
        timer.add("read", t0)
        return sinograms

    def write(slab, volume):
        t0 = time.perf_counter()
        work.write(writer, slab, volume)
        timer.add("write", t0)

    overlap = plan.overlap
    with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writing:
        pending_read = reader.submit(load, plan.slabs[0]) if overlap else None
        pending_write = None
        for i, slab in enumerate(plan.slabs):
            sinograms = pending_read.result() if overlap else load(slab)
            if overlap and i + 1 < len(plan.slabs):
                pending_read = reader.submit(load, plan.slabs[i + 1])
            t0 = time.perf_counter()
            volume = work.reconstruct(sinograms)
            del sinograms
            timer.add("reconstruct", t0)
            if pending_write is not None:
                pending_write.result()  # one slab being written at a time bounds the memory
            if overlap:
                pending_write = writing.submit(write, slab, volume)
            else:
                write(slab, volume)
            del volume
            if progress:
                progress(slab[1], work.scan.detector_shape[0])
        if pending_write is not None:
            pending_write.result()
