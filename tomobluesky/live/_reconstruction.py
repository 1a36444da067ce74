"""Live reconstruction: a pure document consumer.

``LiveReconstruction`` follows one run. It reads frames through the
StreamResource/StreamDatum references as they arrive, refreshes a preview of
the central axial slice every few projections, and on the stop document
normalises, finds the centre of rotation, reconstructs and hands the volume to
a sink. It does not care whether documents come straight from a RunEngine or
from Kafka.
"""

from __future__ import annotations

import logging
import time
import traceback

import numpy as np
from event_model import DocumentRouter, RunRouter

from .. import __version__
from ..schema import ReconSettings, TomoScanMetadata
from ._frames import read_frames
from ._sinks import ReconstructionSink
from ._slices import IncrementalSlices

log = logging.getLogger(__name__)

STREAMS = ("dark", "flat", "primary")


def is_tomography_run(start: dict) -> bool:
    return "theta" in start and start.get("scan_type") in ("step", "fly") and "detector_shape" in start


class _Stream:
    """Frames and angles of one stream, keyed by event sequence number."""

    def __init__(self):
        self.frames: dict[int, np.ndarray] = {}
        self.angles: dict[int, float] = {}

    def complete_seq_nums(self):
        """Sequence numbers that have both their frame and their angle, in order."""
        return [s for s in sorted(self.frames) if s in self.angles]

    def stack(self, seqs) -> np.ndarray:
        return np.stack([self.frames[s] for s in seqs]).astype(np.float32, copy=False)


class LiveReconstruction(DocumentRouter):
    """Reconstruct one tomography run from its documents into ``sink``.

    Errors never escape into the caller (a RunEngine would abort the scan):
    the first one is logged and, at the stop document, recorded in the sink
    as a failed reconstruction with its reason.
    """

    def __init__(self, sink: ReconstructionSink, settings: ReconSettings | None = None, *,
                 on_projection=None):
        super().__init__()
        self.sink = sink
        self.base_settings = settings or ReconSettings()
        self.on_projection = on_projection
        self.start_doc: dict | None = None
        self.meta: TomoScanMetadata | None = None
        self.settings = self.base_settings
        self._descriptors: dict[str, dict] = {}
        self._resources: dict[str, dict] = {}
        self._streams = {name: _Stream() for name in STREAMS}
        self._errors: list[str] = []
        self.preview_updates = 0
        self.preview_errors: list[str] = []
        self._last_preview_n: int | None = None
        self.slices: IncrementalSlices | None = None
        self._in_slices: set[int] = set()
        self._attenuation: dict[int, np.ndarray] = {}
        self._normalised_with: tuple[int, int] | None = None
        self._last_frame_time = time.time()
        self.result: dict | None = None

    # --- error containment ---------------------------------------------------
    def __call__(self, name, doc, validate=False):
        try:
            return super().__call__(name, doc, validate=validate)
        except Exception as err:
            reason = f"{name} document: {type(err).__name__}: {err}"
            log.error("live reconstruction of %s: %s", self.scan_uid, reason)
            log.debug("%s", traceback.format_exc())
            self._errors.append(reason)
            if name == "stop":
                self._record_failure(reason)
            return None

    @property
    def scan_uid(self) -> str | None:
        return self.start_doc["uid"] if self.start_doc else None

    # --- documents -------------------------------------------------------------
    def start(self, doc):
        self.start_doc = doc
        self.meta = TomoScanMetadata.model_validate(doc)
        overrides = self.meta.recon.model_dump(exclude_unset=True) if self.meta.recon else {}
        self.settings = self.base_settings.model_copy(update=overrides)

    def descriptor(self, doc):
        if doc["name"] not in STREAMS:
            return
        keys = doc["data_keys"]
        external = {k for k, v in keys.items() if v.get("external") == "STREAM:"}
        images = [k for k in external if len(keys[k].get("shape", [])) >= 2]
        if len(images) != 1:
            raise ValueError(f"stream {doc['name']!r} must describe exactly one image key, found {images}")
        self._descriptors[doc["uid"]] = {
            "stream": doc["name"],
            "image": images[0],
            "theta": next((k for k in external if keys[k].get("dtype") == "number"), None),
            "rotation": self.meta.rotation if self.meta.rotation in keys else None,
        }

    def stream_resource(self, doc):
        self._resources[doc["uid"]] = doc

    def stream_datum(self, doc):
        desc = self._descriptors.get(doc["descriptor"])
        if desc is None:
            return
        resource = self._resources.get(doc["stream_resource"])
        if resource is None:
            raise ValueError(f"stream datum {doc['uid']} refers to unknown stream resource {doc['stream_resource']}")
        data = read_frames(resource, doc["indices"])
        stream = self._streams[desc["stream"]]
        seqs = range(doc["seq_nums"]["start"], doc["seq_nums"]["stop"])
        if len(seqs) != len(data):
            raise ValueError(f"stream datum {doc['uid']}: {len(seqs)} sequence numbers for {len(data)} frames")
        if resource["data_key"] == desc["image"]:
            self._check_shape(data)
            stream.frames.update(zip(seqs, data))
        elif resource["data_key"] == desc["theta"]:
            stream.angles.update(zip(seqs, (float(a) for a in data)))
        if desc["stream"] == "primary":
            self._after_projection()

    def event(self, doc):
        desc = self._descriptors.get(doc["descriptor"])
        if desc is None or desc["rotation"] is None:
            return
        stream = self._streams[desc["stream"]]
        stream.angles[doc["seq_num"]] = float(doc["data"][desc["rotation"]])
        if desc["stream"] == "primary":
            self._after_projection()

    def stop(self, doc):
        if self._errors:
            self._record_failure("; ".join(self._errors))
            return
        if doc.get("exit_status") != "success":
            log.warning("scan %s ended with %s; reconstructing the projections it has", self.scan_uid,
                        doc.get("exit_status"))
        self.result = self.finish(doc)

    # --- work ----------------------------------------------------------------
    def _check_shape(self, data):
        expected = tuple(self.meta.detector_shape)
        if tuple(data.shape[1:]) != expected:
            raise ValueError(f"frame of shape {tuple(data.shape[1:])} does not match detector_shape {expected}")

    def _flat_dark(self):
        darks, flats = self._streams["dark"], self._streams["flat"]
        if not darks.frames or not flats.frames:
            raise ValueError(f"run has {len(darks.frames)} darks and {len(flats.frames)} flats; both are needed")
        return flats.stack(sorted(flats.frames)), darks.stack(sorted(darks.frames))

    def _after_projection(self):
        primary = self._streams["primary"]
        ready = primary.complete_seq_nums()
        for seq in ready:
            if seq not in self._in_slices:
                self._add_to_slices(seq)
        n = len(ready)
        if self.on_projection:
            self.on_projection(n, self.meta.num_projections)
        if n >= 2 and n % self.settings.preview_every == 0 and n != self._last_preview_n:
            self._last_preview_n = n
            try:
                self._write_preview(n)
            except Exception as err:  # a missed preview must not cost the volume
                self.preview_errors.append(f"{type(err).__name__}: {err}")
                log.warning("preview of %s after %d projections failed: %s", self.scan_uid, n, err)

    def _add_to_slices(self, seq):
        """Fold one projection into the live slices (needs darks and flats first)."""
        from tomobluesky import recon

        self._in_slices.add(seq)
        if self.slices is None:
            try:
                flats, darks = self._flat_dark()
            except ValueError as err:
                self.preview_errors.append(str(err))
                return
            # medians, as recon.normalize takes them, so these frames can be reused at the stop
            self._flat, self._dark = np.median(flats, axis=0), np.median(darks, axis=0)
            self._normalised_with = self._flat_dark_counts()
            rows, columns = self.meta.detector_shape
            theta = np.asarray(self.meta.theta)
            self.slices = IncrementalSlices(rows, columns, center=self._known_center(columns),
                                            num_angles=len(theta), angular_range=self._angular_range(theta),
                                            window="shepp")
        primary = self._streams["primary"]
        frame = primary.frames[seq][None]
        attenuation = recon.minus_log(recon.normalize(frame, self._flat[None], self._dark[None]))[0]
        self._attenuation[seq] = attenuation
        self.slices.add(attenuation, primary.angles[seq])
        self._last_frame_time = time.time()

    def _flat_dark_counts(self):
        return len(self._streams["flat"].frames), len(self._streams["dark"].frames)

    def _normalised(self, seqs) -> np.ndarray:
        """−log of the normalised projections ``seqs``. The live slices already
        normalised each frame as it came; those are reused unless flats or darks
        arrived since (then everything is normalised again, the same way)."""
        from tomobluesky import recon

        if self._normalised_with == self._flat_dark_counts() and all(s in self._attenuation for s in seqs):
            return np.stack([self._attenuation[s] for s in seqs])
        flats, darks = self._flat_dark()
        return recon.minus_log(recon.normalize(self._streams["primary"].stack(seqs), flats, darks))

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
            "scan_uid": self.scan_uid, "row": s.row, "projections": int(n),
            "angle_coverage_deg": s.coverage_deg(), "center": s.center,
            "lag_s": round(time.time() - self._last_frame_time, 4),
        })
        self.preview_updates += 1

    def _known_center(self, columns: int) -> float:
        for candidate in (self.settings.center, self.meta.center_hint):
            if candidate is not None:
                return float(candidate)
        return (columns - 1) / 2

    def finish(self, stop_doc=None) -> dict:
        from tomobluesky import recon

        timings = {}
        t0 = time.perf_counter()
        primary = self._streams["primary"]
        seqs = primary.complete_seq_nums()
        if len(seqs) < 2:
            raise ValueError(f"run has {len(seqs)} projections with angles; a reconstruction needs at least 2")
        angles = np.array([primary.angles[s] for s in seqs])
        data = self._normalised(seqs)
        sinograms = np.ascontiguousarray(np.swapaxes(data, 0, 1))
        theta = np.radians(angles)
        if self.settings.ring_removal:
            sinograms = recon.remove_rings(sinograms)
        timings["preprocess"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        if self.settings.center is not None:
            center = float(self.settings.center)
            center_info = {"center_method": "given", "center_confidence": 1.0}
        else:
            found = recon.find_center(sinograms, theta, method=self.settings.center_method)
            center = float(found.center)
            center_info = {"center_method": found.method, "center_confidence": float(found.confidence)}
        timings["center"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        volume = recon.reconstruct(sinograms, theta, center, algorithm=self.settings.algorithm,
                                   filter_name=self.settings.filter_name, backend=self.settings.backend)
        timings["reconstruct"] = time.perf_counter() - t2
        metadata = self._volume_metadata(angles, center, center_info, timings, stop_doc)
        t3 = time.perf_counter()
        self.sink.write_volume(self.scan_uid, volume, metadata)
        timings["register"] = time.perf_counter() - t3
        return {"volume": volume, "center": center, **center_info, "timings": timings, "metadata": metadata}

    def _volume_metadata(self, angles, center, center_info, timings, stop_doc) -> dict:
        start = self.start_doc
        return {
            "scan_uid": start["uid"],
            "scan_id": start.get("scan_id"),
            "sample_name": start.get("sample_name", ""),
            "plan_name": start.get("plan_name"),
            "algorithm": self.settings.algorithm,
            "recon_settings": self.settings.model_dump(),
            "center": center,
            **center_info,
            "theta": [float(a) for a in angles],
            "theta_units": "deg",
            "num_projections": int(len(angles)),
            "pixel_size": start.get("pixel_size"),
            "pixel_size_units": start.get("pixel_size_units", "um"),
            "energy": start.get("energy"),
            "scan_exit_status": (stop_doc or {}).get("exit_status"),
            "tomobluesky_version": __version__,
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "preview_updates": self.preview_updates,
            "preview_errors": self.preview_errors[:10],
            "status": "complete",
        }

    def _record_failure(self, reason: str):
        start = self.start_doc or {}
        self.result = {"error": reason}
        self.sink.record_failure(start.get("uid", "unknown"), reason, {
            "scan_uid": start.get("uid"), "scan_id": start.get("scan_id"),
            "sample_name": start.get("sample_name", ""), "status": "failed", "reason": reason,
            "tomobluesky_version": __version__,
        })


def live_reconstruction_router(sink: ReconstructionSink, settings: ReconSettings | None = None, *,
                               on_projection=None, on_start=None) -> RunRouter:
    """A RunRouter that follows every tomography run with a ``LiveReconstruction``.

    Subscribe it to a RunEngine (``RE.subscribe(router)``) or feed it documents
    from any transport. ``on_start(callback)`` sees each new per-run callback.
    """

    def factory(name, start_doc):
        if not is_tomography_run(start_doc):
            return [], []
        cb = LiveReconstruction(sink, settings, on_projection=on_projection)
        if on_start:
            on_start(cb)
        return [cb], []

    return RunRouter([factory])


def reconstruct_documents(documents, sink: ReconstructionSink | None = None,
                          settings: ReconSettings | None = None) -> list[dict]:
    """Plain-function form: reconstruct every tomography run in ``documents``
    (an iterable of ``(name, doc)``). Returns each run's result dict."""
    from ._sinks import MemorySink

    sink = sink if sink is not None else MemorySink()
    runs = []
    router = live_reconstruction_router(sink, settings, on_start=runs.append)
    for name, doc in documents:
        router(name, doc)
    return [cb.result for cb in runs]
