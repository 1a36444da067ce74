"""The document side of a tomography run: where every frame is, and at which angle.

``ScanDocuments`` follows StreamResource/StreamDatum documents and events.
It keeps *references* to frames (file, dataset, index), never the frames:
the detector file is the frame store, and the stop path reads it slab by
slab. Angles come from events (a step scan's rotation readback) or from an
angle stream written beside the frames (a fly scan's position compare).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from ..pipeline import DataRoots, FrameRun, HDF5Scan, runs_from_indices
from ..schema import TomoScanMetadata
from ._frames import FrameReader, resource_path

STREAMS = ("dark", "flat", "primary")


@dataclass
class StreamFrames:
    """One stream's frame locations and angles, by event sequence number."""

    locations: dict[int, tuple] = field(default_factory=dict)  # seq → (path, dataset, index)
    angles: dict[int, float] = field(default_factory=dict)
    _complete: list[int] = field(default_factory=list)

    def complete(self) -> list[int]:
        """Sequence numbers with both a frame and an angle, in order."""
        return self._complete

    def _mark(self, seq):
        """Keep ``complete()`` sorted as pieces arrive (O(1) when they come in order, as they do)."""
        if seq not in self.locations or seq not in self.angles:
            return
        position = bisect.bisect_left(self._complete, seq)
        if position == len(self._complete) or self._complete[position] != seq:
            self._complete.insert(position, seq)


@dataclass(frozen=True)
class NewFrames:
    """What one StreamDatum brought: the stream, its resource, the index range and the sequence numbers."""

    stream: str
    resource: dict
    indices: dict
    seqs: range


class ScanDocuments:
    """Frame references and angles of one run, built from its documents.

    Files are read only under ``roots`` (see :class:`~tomobluesky.pipeline.DataRoots`;
    None reads any regular file)."""

    def __init__(self, roots: DataRoots | None = None):
        self.roots = DataRoots.of(roots)
        self.start_doc: dict | None = None
        self.meta: TomoScanMetadata | None = None
        self._descriptors: dict[str, dict] = {}
        self._resources: dict[str, dict] = {}
        self.streams = {name: StreamFrames() for name in STREAMS}
        self.reader = FrameReader(self.roots)  # the run's files, each opened once: close() lets go

    def close(self):
        """Let go of the run's files (a closed reader opens them again if asked)."""
        self.reader.close()

    def start(self, doc):
        self.start_doc = doc
        self.meta = TomoScanMetadata.model_validate(doc)

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
        resource_path(doc, self.roots)  # refused here, before any datum asks to read it
        self._resources[doc["uid"]] = doc

    def stream_datum(self, doc) -> NewFrames | None:
        """Record the frames (or angles) a datum points at; returns the new image frames, if any."""
        desc = self._descriptors.get(doc["descriptor"])
        if desc is None:
            return None
        resource = self._resources.get(doc["stream_resource"])
        if resource is None:
            raise ValueError(f"stream datum {doc['uid']} refers to unknown stream resource {doc['stream_resource']}")
        start, stop = int(doc["indices"]["start"]), int(doc["indices"]["stop"])
        seqs = range(doc["seq_nums"]["start"], doc["seq_nums"]["stop"])
        if len(seqs) != stop - start:
            raise ValueError(f"stream datum {doc['uid']}: {len(seqs)} sequence numbers for {stop - start} frames")
        stream = self.streams[desc["stream"]]
        if resource["data_key"] == desc["theta"]:  # a few numbers: read them now
            values = self.reader.read(resource, doc["indices"])
            for seq, angle in zip(seqs, values):
                stream.angles[seq] = float(angle)
                stream._mark(seq)
            return None
        if resource["data_key"] != desc["image"]:
            return None
        path, dataset = resource_path(resource, self.roots), resource["parameters"]["dataset"]
        for seq, index in zip(seqs, range(start, stop)):
            stream.locations[seq] = (path, dataset, index)
            stream._mark(seq)
        return NewFrames(desc["stream"], resource, doc["indices"], seqs)

    def stream_of(self, doc) -> str | None:
        """The stream (dark, flat, primary) of an event or datum, None for streams this run does not follow."""
        desc = self._descriptors.get(doc["descriptor"])
        return desc["stream"] if desc else None

    def event(self, doc) -> str | None:
        """Record the rotation angle an event carries; returns the stream's name."""
        desc = self._descriptors.get(doc["descriptor"])
        if desc is None:
            return None
        if desc["rotation"] is not None:
            stream = self.streams[desc["stream"]]
            stream.angles[doc["seq_num"]] = float(doc["data"][desc["rotation"]])
            stream._mark(doc["seq_num"])
        return desc["stream"]

    # --- the scan on disk ----------------------------------------------------
    def _runs(self, name, seqs) -> list[FrameRun]:
        locations = self.streams[name].locations
        return runs_from_indices(locations[s] for s in seqs)

    def scan(self) -> HDF5Scan:
        """The run's projections (those with an angle), flats and darks as references into the detector files."""
        primary = self.streams["primary"]
        seqs = primary.complete()
        if len(seqs) < 2:
            raise ValueError(f"run has {len(seqs)} projections with angles; a reconstruction needs at least 2")
        flats, darks = (sorted(self.streams[s].locations) for s in ("flat", "dark"))
        if not flats or not darks:
            raise ValueError(f"run has {len(darks)} darks and {len(flats)} flats; both are needed")
        return HDF5Scan(self._runs("primary", seqs), np.array([primary.angles[s] for s in seqs]),
                        self._runs("flat", flats), self._runs("dark", darks), tuple(self.meta.detector_shape))
