"""Where a live reconstruction puts its results: the protocol and an in-memory sink."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ReconstructionSink(Protocol):
    """Receives previews during a scan, then one volume (or a failure) per scan."""

    def write_preview(self, scan_uid: str, image: np.ndarray, metadata: dict) -> None: ...

    def write_volume(self, scan_uid: str, volume: np.ndarray, metadata: dict) -> None: ...

    def record_failure(self, scan_uid: str, reason: str, metadata: dict) -> None: ...


class MemorySink:
    """Keeps results in dictionaries: for in-process use, notebooks and tests."""

    def __init__(self):
        self.previews: dict[str, list[tuple[np.ndarray, dict]]] = {}
        self.volumes: dict[str, tuple[np.ndarray, dict]] = {}
        self.failures: dict[str, tuple[str, dict]] = {}

    def write_preview(self, scan_uid, image, metadata):
        self.previews.setdefault(scan_uid, []).append((np.array(image), dict(metadata)))

    def write_volume(self, scan_uid, volume, metadata):
        self.volumes[scan_uid] = (np.asarray(volume), dict(metadata))

    def record_failure(self, scan_uid, reason, metadata):
        self.failures[scan_uid] = (reason, dict(metadata))
