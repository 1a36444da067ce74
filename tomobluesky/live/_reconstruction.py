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
from pathlib import Path
from typing import Callable

import numpy as np
from event_model import DocumentRouter, RunRouter

from .. import __version__
from .._errors import NO_STOP_PREFIX, is_transient
from ..pipeline import DEFAULT_BUDGET, DataRoots, reconstruct_scan, scan_pipeline
from ..schema import ReconSettings
from . import _kernels
from ._accumulator import ScanDocuments
from ._centers import CenterMemory, setup_key
from ._live_slices import LiveSlices
from ._sinks import ReconstructionSink

log = logging.getLogger(__name__)

#: live slices are previews: frames wider than this are binned to at most this many columns, so folding a
#: projection costs about the same on a 2048-wide detector as on a 512-wide one (the volume keeps every pixel;
#: docs/benchmarks.md has the rates at 256, 384 and 640)
LIVE_MAX_COLUMNS = 256
#: frames skipped while behind that one caught-up call folds at most (newest first): bounded work per document
CATCH_UP_FRAMES = 2


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

    ``backlog()``: how many documents wait to be handed to this callback (a
    dispatcher's queue). While it is above 0, projections are only recorded,
    not read; once caught up, the newest unread ones are folded first, a few
    per document, and previews say how many were ``skipped``. The final volume
    reads every frame from the detector file all the same. None: fold every frame.
    Behind for ``BEHIND_REFRESH_S`` or more, the newest frames are folded and shown anyway.

    The live slices use the best axis known: ``recon.center`` (given, kept),
    else the start document's ``center_hint``, else the last centre found for
    the same set-up in ``center_memory`` (a :class:`CenterMemory` or the path of
    its JSON file, which the stop path updates), else the detector's middle;
    once the frames span a half turn, the axis found from them (Vo's method).
    ``set_center`` and ``set_live_row`` (or the sink's ``live_request``) move them.

    ``dask``: run the stop path's slabs on Dask (see ``reconstruct_scan``): None in this process,
    ``"local"``, a scheduler address or a ``distributed.Client``; the workers must see the files.
    """

    #: while behind, the newest frames are still folded and shown this often (seconds): the preview's lag
    BEHIND_REFRESH_S = 0.5
    #: what ``preview_interval_s`` is measured with
    clock = staticmethod(time.monotonic)

    def __init__(self, sink: ReconstructionSink, settings: ReconSettings | None = None, *,
                 on_projection=None, on_volume_rows=None, memory_budget: float = DEFAULT_BUDGET,
                 data_roots: DataRoots | None = None, raise_unavailable: bool = False,
                 backlog: Callable[[], int] | None = None, center_memory: CenterMemory | str | Path | None = None,
                 dask=None):
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
        self.slices: LiveSlices | None = None
        self.live_binning = 1
        self._folded = 0
        self.backlog = backlog
        self.dask = dask  # the stop path's slabs on Dask: None (here), "local", a scheduler address or a Client
        self._unread: dict[int, tuple[dict, int]] = {}  # primary seq → (resource, index): skipped while behind
        self.center_memory = CenterMemory(center_memory) if isinstance(center_memory, (str, Path)) else center_memory
        self.center_source = "middle"
        self.center_confidence: float | None = None
        self._user_center: float | None = None  # set before the slices started
        self._estimated_at: int | None = None  # views folded when the axis was last found from the frames
        self.request_errors: list[str] = []
        self.preview_updates = 0
        self.preview_errors: list[str] = []
        self._last_preview_n: int | None = None
        self._last_frame_time = time.time()
        self._last_refresh = 0.0  # when a preview was last drawn while behind
        self._last_preview_at = -math.inf  # clock() after the last preview's write
        self._held_back = False  # a preview was due but came too soon after the last
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
        if doc.get("name") == "primary" and self.slices is None and self._frames["dark"] and self._frames["flat"]:
            self._prepare_preview()

    def _prepare_preview(self):
        """The projections are next and the darks and flats are in: start the live slices and let the sink
        make its preview's place now, so the first preview is an update (see ``ReconstructionSink``).
        Anything wrong is left for the first projection to meet, as it would without this."""
        prepare = getattr(self.sink, "prepare_preview", None)
        try:
            if not self._start_slices() or prepare is None:
                return
            prepare(self.scan_uid, self._preview_images(), self._preview_metadata(0))
        except Exception as err:  # a preview's place, not data: the scan goes on without it
            self.preview_errors.append(f"preparing the preview: {type(err).__name__}: {err}")
            log.warning("preparing the preview of %s failed: %s", self.scan_uid, err)

    def stream_resource(self, doc):
        self.documents.stream_resource(doc)

    def stream_datum(self, doc):
        new = self.documents.stream_datum(doc)
        if new is not None and new.stream == "primary" and self._behind():
            start = int(new.indices["start"])  # only where the frames are: read them once caught up
            self._unread.update((seq, (new.resource, start + i)) for i, seq in enumerate(new.seqs))
        elif new is not None:
            frames = self.documents.reader.read(new.resource, new.indices)
            self._check_shape(frames)
            store = self._waiting if new.stream == "primary" else self._frames[new.stream]
            store.update(zip(new.seqs, frames))
        if self.documents.stream_of(doc) == "primary":
            self._after_projection()

    def event(self, doc):
        if self.documents.event(doc) == "primary":
            self._after_projection()

    def stop(self, doc):
        # the live reads are over: let go of their files before the stop path opens them again. A handle
        # opened while this process's camera still wrote the file would serve the stop path from the
        # writer's side of HDF5 (whole chunks, not the rows it asks for)
        try:
            self.documents.close()
        except Exception as err:  # the volume matters more than a handle: the stop path shares it then
            log.warning("closing the live reads' files of %s failed: %s", self.scan_uid, err)
        if str(doc.get("reason") or "").startswith(NO_STOP_PREFIX):  # the worker closed a run whose stop never came
            self._errors.append(doc["reason"])
        if self._errors:
            self._record_failure("; ".join(self._errors))
            return
        if doc.get("exit_status") != "success":
            log.warning("scan %s ended with %s; reconstructing the projections it has", self.scan_uid,
                        doc.get("exit_status"))
        self._last_look()
        self.result = self.finish(doc)

    # --- live slices -------------------------------------------------------------
    def _check_shape(self, data):
        expected = tuple(self.meta.detector_shape)
        if tuple(data.shape[1:]) != expected:
            raise ValueError(f"frame of shape {tuple(data.shape[1:])} does not match detector_shape {expected}")

    def _behind(self) -> bool:
        """Whether documents wait behind this one (a failing ``backlog`` counts as not behind, once reported)."""
        if self.backlog is None:
            return False
        try:
            return self.backlog() > 0
        except Exception as err:
            self.backlog = None
            self.preview_errors.append(f"backlog() failed, every frame is folded from now: {type(err).__name__}: {err}")
            return False

    def _after_projection(self):
        primary = self.documents.streams["primary"]
        for seq in [s for s in self._waiting if s in primary.angles]:
            self._fold(seq, self._waiting.pop(seq), primary.angles[seq])
        behind = self._behind()
        # behind for long, the preview would show the past: show the present every BEHIND_REFRESH_S anyway
        stale = behind and time.time() - max(self._last_frame_time, self._last_refresh) >= self.BEHIND_REFRESH_S
        if self._unread and (not behind or stale):
            self._catch_up(primary)
        self._maybe_estimate_center()
        n = len(primary.complete())
        if self.on_projection:
            self.on_projection(n, self.meta.num_projections)
        if behind and not stale:  # nothing new to show, and the time is better spent catching up
            return
        if self._preview_due(n, stale):
            self._show(n)
            if stale:  # counted from the end of the write: a slow sink must not make every document refresh
                self._last_refresh = time.time()

    def _preview_due(self, n: int, stale: bool) -> bool:
        """Every ``preview_every`` projections, but not sooner than ``preview_interval_s`` after the last
        preview; one held back by the interval comes as soon as it may. A stale view: at once."""
        # nothing folded, nothing due: the slices exist from the primary descriptor on. Decided here, not in
        # _write_preview, so that _show's clocks (the stale refresh above all) count only previews written
        if n == self._last_preview_n or not self._folded:
            return False
        if stale:
            return True
        if not (self._held_back or (n >= 2 and n % self.settings.preview_every == 0)):
            return False
        self._held_back = self.clock() - self._last_preview_at < self.settings.preview_interval_s
        return not self._held_back

    def _show(self, n: int):
        self._last_preview_n = n
        try:
            self._write_preview(n)
        except Exception as err:  # a missed preview must not cost the volume
            self.preview_errors.append(f"{type(err).__name__}: {err}")
            log.warning("preview of %s after %d projections failed: %s", self.scan_uid, n, err)
        self._last_preview_at = self.clock()

    def _last_look(self):
        """At the stop, the live slices as they end, if the last preview (held back by the interval, or
        between two of ``preview_every``) did not show every projection folded."""
        primary = self.documents.streams.get("primary")
        n = len(primary.complete()) if primary is not None else 0
        if self._folded and n >= 2 and n != self._last_preview_n:
            self._show(n)

    def _fold(self, seq, frame, angle):
        """Fold one projection into the live slices (needs darks and flats first); the frame is then dropped."""
        if self.slices is None and not self._start_slices():
            return
        if not frame.dtype.isnative:  # the kernel reads native byte order (HDF5 may hand big-endian)
            frame = frame.astype(frame.dtype.newbyteorder("="))
        # binned, flat-fielded, −log and per detector pixel in one compiled pass
        attenuation = np.empty((self.slices.rows, self.slices.columns), np.float32)
        if not _kernels.attenuation(frame, self.live_binning, self._dark, self._beam, attenuation):
            raise ValueError("projections contains NaN or infinite values")
        self.slices.add(attenuation, angle)
        self._folded += 1
        self._last_frame_time = time.time()

    def _catch_up(self, primary):
        """Fold a few frames skipped while behind, newest first (the preview shows the scan's present)."""
        done = 0
        for seq in reversed(list(self._unread)):
            if done == CATCH_UP_FRAMES:
                break
            if seq not in primary.angles:
                continue
            resource, index = self._unread.pop(seq)
            frame, = self.documents.reader.read(resource, {"start": index, "stop": index + 1})
            self._fold(seq, frame, primary.angles[seq])
            done += 1

    def _start_slices(self) -> bool:
        from tomobluesky import recon

        _kernels.warm_up()
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
        self._dark, self._beam = (np.ascontiguousarray(a, np.float32) for a in recon.flat_field(flat[None], dark[None]))
        theta = np.asarray(self.meta.theta)
        self._step = self._angular_range(theta) / max(len(theta), 1)  # degrees between planned views
        self.slices = LiveSlices(*self._dark.shape, center=self._to_live(self._known_center(columns)),
                                 num_angles=len(theta), angular_range=self._angular_range(theta), window="shepp")
        return True

    def _to_live(self, center: float) -> float:
        """A detector column in the binned live columns (the same axis)."""
        return (center + 0.5) / self.live_binning - 0.5

    def _from_live(self, center: float) -> float:
        return (center + 0.5) * self.live_binning - 0.5

    def set_center(self, value: float):
        """Use detector column ``value`` as the live slices' axis from now on: the axial slice is redrawn
        with it at once, the vertical slices restart; no estimate from the frames replaces it."""
        columns = self.meta.detector_shape[1] if self.meta else None
        value = float(value)
        if not math.isfinite(value) or (columns is not None and not 0 <= value <= columns - 1):
            raise ValueError(f"centre {value} is not a detector column (0..{columns - 1 if columns else '?'})")
        self._user_center, self.center_source, self.center_confidence = value, "user", None
        if self.slices is not None:
            self.slices.set_center(self._to_live(value))

    def _maybe_estimate_center(self):
        """Find the axis from the frames once they span a half turn (again after another quarter turn of
        views), unless it was given or set by hand; a different answer redraws the slices."""
        s = self.slices
        if s is None or self.center_source in ("given", "user"):
            return
        step = self._step
        if not s.half_turn_covered(step):
            return
        if self._estimated_at is not None and len(s.angles_deg) < self._estimated_at + 90 / step:
            return
        self._estimated_at = len(s.angles_deg)
        try:
            found = s.estimate_center()
            if not 0 <= found.center <= s.columns - 1:
                raise ValueError(f"found centre {found.center:.2f} lies outside the live columns")
        except Exception as err:  # the slices go on with the axis they have
            self.preview_errors.append(f"centre from the frames: {type(err).__name__}: {err}")
            return
        self.center_source, self.center_confidence = "frames", round(float(found.confidence), 3)
        if abs(found.center - s.center) > 0.05:
            s.set_center(found.center)

    def set_live_row(self, row: int):
        """Move the live axial slice to detector row ``row`` (it restarts from the next projection)."""
        if self.slices is None:
            raise RuntimeError("no live slices yet: they start with the projections, once darks and flats are in")
        rows = self.meta.detector_shape[0]
        if not 0 <= row < rows:
            raise ValueError(f"row {row} is outside the detector's {rows} rows")
        self.slices.set_row(min(int(row) * self.slices.rows // rows, self.slices.rows - 1))

    @staticmethod
    def _angular_range(theta_deg) -> float:
        span = float(np.ptp(theta_deg)) if len(theta_deg) > 1 else 180.0
        return 360.0 if span > 270 else 180.0

    def _apply_request(self):
        """What the viewer asks through the sink's ``live_request(scan_uid)``: None or {"row": .., "center": ..}.
        Applied when it differs from what is shown; a bad request is reported, never raised."""
        ask = getattr(self.sink, "live_request", None)
        if not callable(ask):
            return
        try:
            request = ask(self.scan_uid)
            if request is None:
                return
            if not isinstance(request, dict) or set(request) - {"row", "center"}:
                raise ValueError(f"a live request is a dict with 'row' and/or 'center', got {request!r}")
            rows = self.meta.detector_shape[0]
            row = request.get("row")
            if row is not None and int(row) * self.slices.rows // rows != self.slices.row:
                self.set_live_row(int(row))
            center = request.get("center")
            if center is not None and abs(self._to_live(float(center)) - self.slices.center) > 1e-6:
                self.set_center(float(center))
        except Exception as err:
            self.request_errors.append(f"{type(err).__name__}: {err}")

    def _write_preview(self, n):
        if self.slices is None:
            return
        self._apply_request()
        self.sink.write_preview(self.scan_uid, self._preview_images(), self._preview_metadata(n))
        self.preview_updates += 1

    def _preview_images(self) -> dict:
        s = self.slices
        return {"axial": s.axial, "vertical_x": s.vertical_x, "vertical_y": s.vertical_y}

    def _preview_metadata(self, n: int) -> dict:
        s = self.slices
        return {
            "scan_uid": self.scan_uid, "row": s.row * self.live_binning, "binning": self.live_binning,
            "detector_shape": [int(v) for v in self.meta.detector_shape],
            "projections": int(n), "folded": self._folded, "skipped": len(self._unread),
            "vertical_views": s.vertical_views,
            "angle_coverage_deg": s.coverage_deg(), "center": self._from_live(s.center),
            "center_source": self.center_source, "center_confidence": self.center_confidence,
            "request_errors": self.request_errors[-3:],
            "lag_s": round(time.time() - self._last_frame_time, 4),
        }

    def _known_center(self, columns: int) -> float:
        """The best axis before any frame: given, set by hand, hinted, remembered for the set-up, or the middle."""
        candidates = (("given", self.settings.center), ("user", self._user_center),
                      ("hint", self.meta.center_hint), ("last", self._remembered_center()))
        for source, value in candidates:
            if value is not None:
                self.center_source = source
                return float(value)
        self.center_source = "middle"
        return (columns - 1) / 2

    def _remembered_center(self) -> float | None:
        if self.center_memory is None:
            return None
        try:
            value = self.center_memory.recall(setup_key(self.start_doc))
            columns = self.meta.detector_shape[1]
            return value if value is not None and 0 <= value <= columns - 1 else None
        except Exception as err:  # a damaged memory file costs the guess, not the scan
            self.preview_errors.append(f"centre memory: {type(err).__name__}: {err}")
            return None

    def _remember_center(self, info: dict):
        if self.center_memory is None or info.get("center") is None:
            return
        try:
            self.center_memory.remember(setup_key(self.start_doc), float(info["center"]), scan_uid=self.scan_uid,
                                        method=info.get("center_method"))
        except Exception as err:
            log.warning("could not remember the centre of %s: %s: %s", self.scan_uid, type(err).__name__, err)

    # --- the stop path -----------------------------------------------------------
    def finish(self, stop_doc=None) -> dict:
        """Reconstruct the run from its detector file into the sink; returns what was done."""
        uid = self.scan_uid
        if self.sink.volume_status(uid) == "complete":
            log.info("volume of %s is already complete; not reconstructing it again", uid)
            return {"skipped": "complete"}
        scan = self.documents.scan()
        self._waiting.clear()
        skipped, self._unread = len(self._unread), {}
        metadata = self._volume_metadata(scan.theta_deg, stop_doc)
        pipeline = scan_pipeline(self.settings, self.meta.pipeline, pixel_size_um=self.start_doc.get("pixel_size"),
                                 energy_kev=self.start_doc.get("energy"))
        with scan:
            store = self.sink.begin_volume(uid, {**metadata, "status": "writing"})
            info = reconstruct_scan(scan, self.settings, store, memory_budget=self.memory_budget,
                                    pixel_size=self.start_doc.get("pixel_size"), attributes={"scan_uid": uid},
                                    progress=self.on_volume_rows, pipeline=pipeline, volume_steps=False,
                                    dask=self.dask)
        metadata.update(self._result_metadata(info), status="complete", live_skipped=skipped,
                        pipeline=info["pipeline"])
        self._remember_center(info)
        t0 = time.perf_counter()
        self.sink.complete_volume(uid, store, metadata)
        info["timings"]["register"] = round(time.perf_counter() - t0, 4)
        metadata["timings"] = info["timings"]
        if pipeline.stage("volume"):
            info.update(self._volume_steps(uid, store, pipeline))
        return {**info, "store": str(store), "metadata": metadata}

    def _volume_steps(self, uid, store, pipeline) -> dict:
        """The scan's volume steps on its registered volume; a step that raises fails the scan (named in the
        reason) and keeps the volume and what earlier steps wrote."""
        from ..steps import StepFailed, run_volume_steps

        steps_dir = getattr(self.sink, "steps_dir", None)
        root = steps_dir(uid) if steps_dir is not None else Path(store).with_suffix(".steps")
        t0 = time.perf_counter()
        failure = None
        try:
            outputs = run_volume_steps(pipeline, store, root, attributes={"scan_uid": uid})
        except StepFailed as err:
            outputs, failure = getattr(err, "outputs", {}), str(err)
            log.error("scan %s: %s", uid, failure)
        register = getattr(self.sink, "register_outputs", None)
        if register is not None:
            register(uid, outputs, {"scan_uid": uid, "pipeline": pipeline.record()}, failure=failure)
        done = {"step_outputs": outputs, "volume_steps_s": round(time.perf_counter() - t0, 3)}
        return {**done, "error": failure} if failure else done

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
                               raise_unavailable: bool = False, backlog: Callable[[], int] | None = None,
                               center_memory: CenterMemory | str | Path | None = None, dask=None) -> RunRouter:
    """A RunRouter that follows every tomography run with a ``LiveReconstruction``.

    Subscribe it to a RunEngine (``RE.subscribe(router)``) or feed it documents
    from any transport. ``on_start(callback)`` sees each new per-run callback;
    ``on_projection(n, total)`` and ``on_volume_rows(done, total)`` report progress.
    ``data_roots``, ``raise_unavailable``, ``backlog``, ``center_memory`` and ``dask``: see
    :class:`LiveReconstruction`.
    """
    roots = DataRoots.of(data_roots)
    memory = CenterMemory(center_memory) if isinstance(center_memory, (str, Path)) else center_memory

    def factory(name, start_doc):
        if not is_tomography_run(start_doc):
            return [], []
        cb = LiveReconstruction(sink, settings, on_projection=on_projection, on_volume_rows=on_volume_rows,
                                memory_budget=memory_budget, data_roots=roots, raise_unavailable=raise_unavailable,
                                backlog=backlog, center_memory=memory, dask=dask)
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
