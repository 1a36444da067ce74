"""Live reconstruction: a pure document consumer.

``LiveReconstruction`` follows one run. Its document side
(:class:`ScanDocuments`) keeps where every frame is; each projection is read
once as it arrives, normalised and folded into three live slices, then
dropped, so only darks, flats and the slices stay in memory. On the stop
document the stop path (:func:`tomobluesky.pipeline.reconstruct_scan`) reads
the detector file slab by slab into a multiscale volume that the sink
registers. It does not care whether documents come straight from a RunEngine
or from Kafka.
"""

from __future__ import annotations

import logging
import math
import time
import traceback

import numpy as np
from event_model import DocumentRouter, RunRouter

from .. import __version__
from .._errors import NO_STOP_PREFIX, is_transient
from ..pipeline import DEFAULT_BUDGET, DataRoots, reconstruct_scan
from ..schema import ReconSettings
from ._accumulator import ScanDocuments
from ._frames import read_frames
from ._sinks import ReconstructionSink
from ._slices import IncrementalSlices

log = logging.getLogger(__name__)

#: live slices are previews: frames wider than this are binned to at most this many columns, so folding a
#: projection costs about the same on a 2048-wide detector as on a 512-wide one (the volume keeps every pixel)
LIVE_MAX_COLUMNS = 640


def live_binning(columns: int) -> int:
    return max(1, math.ceil(columns / LIVE_MAX_COLUMNS))


def bin_frame(frame: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``factor`` × ``factor`` pixels (rows binned by fewer when the frame has fewer rows);
    the ragged right and bottom edges are dropped."""
    frame = np.asarray(frame, dtype=np.float32)
    if factor == 1:
        return frame
    rf = min(factor, frame.shape[-2])
    rows, cols = frame.shape[-2] // rf, frame.shape[-1] // factor
    cropped = frame[..., : rows * rf, : cols * factor]
    return cropped.reshape(*frame.shape[:-2], rows, rf, cols, factor).mean(axis=(-3, -1), dtype=np.float32)


def is_tomography_run(start: dict) -> bool:
    return "theta" in start and start.get("scan_type") in ("step", "fly") and "detector_shape" in start


class LiveReconstruction(DocumentRouter):
    """Reconstruct one tomography run from its documents into ``sink``.

    Errors never escape into the caller (a RunEngine would abort the scan):
    the first one is logged and, at the stop document, recorded in the sink
    as a failed reconstruction with its reason. ``memory_budget`` bounds the
    stop path's resident memory (bytes). Detector files are read only under
    ``data_roots`` (None: any regular file).

    An unreachable service (Tiled down: :func:`tomobluesky._errors.is_transient`)
    is not the scan's fault. With ``raise_unavailable`` (the Kafka worker) such
    an error escapes, so the worker retries the run later instead of
    committing it; otherwise (in-process) it is logged and the scan goes on,
    and a spooling sink (:class:`tomobluesky.catalog.SpoolingSink`) keeps
    the volume for ``tomobluesky replay``.
    """

    def __init__(self, sink: ReconstructionSink, settings: ReconSettings | None = None, *,
                 on_projection=None, on_volume_rows=None, memory_budget: float = DEFAULT_BUDGET,
                 data_roots: DataRoots | None = None, raise_unavailable: bool = False):
        super().__init__()
        self.sink = sink
        self.base_settings = settings or ReconSettings()
        self.settings = self.base_settings
        self.on_projection = on_projection
        self.on_volume_rows = on_volume_rows  # (rows done, rows in all) as the stop path's slabs land
        self.memory_budget = memory_budget
        self.raise_unavailable = raise_unavailable
        self.documents = ScanDocuments(data_roots)
        self._errors: list[str] = []
        self._frames: dict[str, dict[int, np.ndarray]] = {"dark": {}, "flat": {}}  # kept for the live slices
        self._waiting: dict[int, np.ndarray] = {}  # projections read, waiting for their angle
        self.slices: IncrementalSlices | None = None
        self.live_binning = 1
        self._folded = 0
        self.preview_updates = 0
        self.preview_errors: list[str] = []
        self._last_preview_n: int | None = None
        self._last_frame_time = time.time()
        self.result: dict | None = None

    # --- error containment ---------------------------------------------------
    def __call__(self, name, doc, validate=False):
        try:
            return super().__call__(name, doc, validate=validate)
        except Exception as err:
            if self.raise_unavailable and is_transient(err):
                raise
            reason = f"{name} document: {type(err).__name__}: {err}"
            log.error("live reconstruction of %s: %s", self.scan_uid, reason)
            log.debug("%s", traceback.format_exc())
            self._errors.append(reason)
            if name == "stop":
                self._record_failure(reason)
            return None

    @property
    def start_doc(self) -> dict | None:
        return self.documents.start_doc

    @property
    def meta(self):
        return self.documents.meta

    @property
    def scan_uid(self) -> str | None:
        return self.start_doc["uid"] if self.start_doc else None

    # --- documents -------------------------------------------------------------
    def start(self, doc):
        self.documents.start(doc)
        overrides = self.meta.recon.model_dump(exclude_unset=True) if self.meta.recon else {}
        self.settings = self.base_settings.model_copy(update=overrides)

    def descriptor(self, doc):
        self.documents.descriptor(doc)

    def stream_resource(self, doc):
        self.documents.stream_resource(doc)

    def stream_datum(self, doc):
        new = self.documents.stream_datum(doc)
        if new is not None:
            frames = read_frames(new.resource, new.indices, roots=self.documents.roots)
            self._check_shape(frames)
            store = self._waiting if new.stream == "primary" else self._frames[new.stream]
            store.update(zip(new.seqs, frames))
        if self.documents.stream_of(doc) == "primary":
            self._after_projection()

    def event(self, doc):
        if self.documents.event(doc) == "primary":
            self._after_projection()

    def stop(self, doc):
        if str(doc.get("reason") or "").startswith(NO_STOP_PREFIX):  # the worker closed a run whose stop never came
            self._errors.append(doc["reason"])
        if self._errors:
            self._record_failure("; ".join(self._errors))
            return
        if doc.get("exit_status") != "success":
            log.warning("scan %s ended with %s; reconstructing the projections it has", self.scan_uid,
                        doc.get("exit_status"))
        self.result = self.finish(doc)

    # --- live slices -------------------------------------------------------------
    def _check_shape(self, data):
        expected = tuple(self.meta.detector_shape)
        if tuple(data.shape[1:]) != expected:
            raise ValueError(f"frame of shape {tuple(data.shape[1:])} does not match detector_shape {expected}")

    def _after_projection(self):
        primary = self.documents.streams["primary"]
        for seq in [s for s in self._waiting if s in primary.angles]:
            self._fold(seq, self._waiting.pop(seq), primary.angles[seq])
        n = len(primary.complete())
        if self.on_projection:
            self.on_projection(n, self.meta.num_projections)
        if n >= 2 and n % self.settings.preview_every == 0 and n != self._last_preview_n:
            self._last_preview_n = n
            try:
                self._write_preview(n)
            except Exception as err:  # a missed preview must not cost the volume
                self.preview_errors.append(f"{type(err).__name__}: {err}")
                log.warning("preview of %s after %d projections failed: %s", self.scan_uid, n, err)

    def _fold(self, seq, frame, angle):
        """Fold one projection into the live slices (needs darks and flats first); the frame is then dropped."""
        from tomobluesky import recon

        if self.slices is None and not self._start_slices():
            return
        if frame.dtype.kind == "f" and not np.isfinite(frame).all():
            raise ValueError("projections contains NaN or infinite values")
        frame = bin_frame(frame, self.live_binning)
        attenuation = recon.minus_log(recon.apply_flat_field(frame, self._dark, self._beam, out=frame))
        if self.live_binning > 1:  # attenuation per detector pixel, as without binning
            attenuation /= self.live_binning
        self.slices.add(attenuation, angle)
        self._folded += 1
        self._last_frame_time = time.time()

    def _start_slices(self) -> bool:
        from tomobluesky import recon

        darks, flats = self._frames["dark"], self._frames["flat"]
        if not darks or not flats:
            if not self.preview_errors:
                self.preview_errors.append(f"no live slices: {len(darks)} darks and {len(flats)} flats "
                                           "arrived before the first projection")
            return False
        rows, columns = self.meta.detector_shape
        self.live_binning = b = live_binning(columns)
        # medians, as recon.normalize takes them, binned as the projections will be; computed once per scan
        dark, flat = (bin_frame(np.median(np.stack(list(frames.values())).astype(np.float32), axis=0), b)
                      for frames in (darks, flats))
        for name, image in (("darks", dark), ("flats", flat)):
            if not np.isfinite(image).all():
                raise ValueError(f"{name} contains NaN or infinite values")
        self._dark, self._beam = recon.flat_field(flat[None], dark[None])
        theta = np.asarray(self.meta.theta)
        center = (self._known_center(columns) + 0.5) / b - 0.5  # the same axis in binned columns
        self.slices = IncrementalSlices(*self._dark.shape, center=center, num_angles=len(theta),
                                        angular_range=self._angular_range(theta), window="shepp")
        return True

    def set_live_row(self, row: int):
        """Move the live axial slice to detector row ``row`` (it restarts from the next projection)."""
        if self.slices is None:
            raise RuntimeError("no live slices yet: they start with the first projection after darks and flats")
        rows = self.meta.detector_shape[0]
        if not 0 <= row < rows:
            raise ValueError(f"row {row} is outside the detector's {rows} rows")
        self.slices.set_row(min(int(row) * self.slices.rows // rows, self.slices.rows - 1))

    @staticmethod
    def _angular_range(theta_deg) -> float:
        span = float(np.ptp(theta_deg)) if len(theta_deg) > 1 else 180.0
        return 360.0 if span > 270 else 180.0

    def _write_preview(self, n):
        if self.slices is None:
            return
        s = self.slices
        images = {"axial": s.axial, "vertical_x": s.vertical_x, "vertical_y": s.vertical_y}
        self.sink.write_preview(self.scan_uid, images, {
            "scan_uid": self.scan_uid, "row": s.row * self.live_binning, "binning": self.live_binning,
            "projections": int(n),
            "angle_coverage_deg": s.coverage_deg(), "center": (s.center + 0.5) * self.live_binning - 0.5,
            "lag_s": round(time.time() - self._last_frame_time, 4),
        })
        self.preview_updates += 1

    def _known_center(self, columns: int) -> float:
        for candidate in (self.settings.center, self.meta.center_hint):
            if candidate is not None:
                return float(candidate)
        return (columns - 1) / 2

    # --- the stop path -----------------------------------------------------------
    def finish(self, stop_doc=None) -> dict:
        """Reconstruct the run from its detector file into the sink; returns what was done."""
        uid = self.scan_uid
        if self.sink.volume_status(uid) == "complete":
            log.info("volume of %s is already complete; not reconstructing it again", uid)
            return {"skipped": "complete"}
        scan = self.documents.scan()
        self._waiting.clear()
        metadata = self._volume_metadata(scan.theta_deg, stop_doc)
        with scan:
            store = self.sink.begin_volume(uid, {**metadata, "status": "writing"})
            info = reconstruct_scan(scan, self.settings, store, memory_budget=self.memory_budget,
                                    pixel_size=self.start_doc.get("pixel_size"), attributes={"scan_uid": uid},
                                    progress=self.on_volume_rows)
        metadata.update(self._result_metadata(info), status="complete")
        t0 = time.perf_counter()
        self.sink.complete_volume(uid, store, metadata)
        info["timings"]["register"] = round(time.perf_counter() - t0, 4)
        metadata["timings"] = info["timings"]
        return {**info, "store": str(store), "metadata": metadata}

    def _volume_metadata(self, angles, stop_doc) -> dict:
        start = self.start_doc
        return {
            "scan_uid": start["uid"],
            "scan_id": start.get("scan_id"),
            "sample_name": start.get("sample_name", ""),
            "plan_name": start.get("plan_name"),
            "algorithm": self.settings.algorithm,
            "recon_settings": self.settings.model_dump(),
            "theta": [float(a) for a in angles],
            "theta_units": "deg",
            "num_projections": int(len(angles)),
            "pixel_size": start.get("pixel_size"),
            "pixel_size_units": start.get("pixel_size_units", "um"),
            "energy": start.get("energy"),
            "scan_exit_status": (stop_doc or {}).get("exit_status"),
            "tomobluesky_version": __version__,
            "preview_updates": self.preview_updates,
            "preview_errors": self.preview_errors[:10],
        }

    @staticmethod
    def _result_metadata(info) -> dict:
        keep = ("center", "center_method", "center_confidence", "volume_shape", "levels", "chunks", "slab_rows",
                "slabs", "read_amplification", "peak_rss_mb", "memory_budget_mb", "timings", "flat_field_warnings")
        return {k: info[k] for k in keep if k in info}

    def _record_failure(self, reason: str):
        start = self.start_doc or {}
        self.result = {"error": reason}
        try:
            self.sink.record_failure(start.get("uid", "unknown"), reason, {
                "scan_uid": start.get("uid"), "scan_id": start.get("scan_id"),
                "sample_name": start.get("sample_name", ""), "status": "failed", "reason": reason,
                "tomobluesky_version": __version__,
            })
        except Exception as err:  # never into the RunEngine; the worker retries an outage
            if self.raise_unavailable and is_transient(err):
                raise
            log.error("could not record the failure of %s (%s): %s: %s", start.get("uid"), reason,
                      type(err).__name__, err)
            self.result["record_error"] = f"{type(err).__name__}: {err}"


def live_reconstruction_router(sink: ReconstructionSink, settings: ReconSettings | None = None, *,
                               on_projection=None, on_start=None, on_volume_rows=None,
                               memory_budget: float = DEFAULT_BUDGET, data_roots: DataRoots | None = None,
                               raise_unavailable: bool = False) -> RunRouter:
    """A RunRouter that follows every tomography run with a ``LiveReconstruction``.

    Subscribe it to a RunEngine (``RE.subscribe(router)``) or feed it documents
    from any transport. ``on_start(callback)`` sees each new per-run callback;
    ``on_projection(n, total)`` and ``on_volume_rows(done, total)`` report progress.
    ``data_roots`` and ``raise_unavailable``: see :class:`LiveReconstruction`.
    """
    roots = DataRoots.of(data_roots)

    def factory(name, start_doc):
        if not is_tomography_run(start_doc):
            return [], []
        cb = LiveReconstruction(sink, settings, on_projection=on_projection, on_volume_rows=on_volume_rows,
                                memory_budget=memory_budget, data_roots=roots, raise_unavailable=raise_unavailable)
        if on_start:
            on_start(cb)
        return [cb], []

    return RunRouter([factory])


def reconstruct_documents(documents, sink: ReconstructionSink | None = None,
                          settings: ReconSettings | None = None, *, data_roots=None) -> list[dict]:
    """Plain-function form: reconstruct every tomography run in ``documents``
    (an iterable of ``(name, doc)``), reading detector files only under ``data_roots``.
    Returns each run's result dict."""
    from ._sinks import MemorySink

    sink = sink if sink is not None else MemorySink()
    runs = []
    router = live_reconstruction_router(sink, settings, on_start=runs.append, data_roots=data_roots)
    for name, doc in documents:
        router(name, doc)
    return [cb.result for cb in runs]
