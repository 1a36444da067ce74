"""Where a live reconstruction puts its results: the protocol and an in-memory sink."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ReconstructionSink(Protocol):
    """Receives previews during a scan, then one volume (or a failure) per scan."""

    def write_preview(self, scan_uid: str, slices: dict[str, np.ndarray], metadata: dict) -> None:
        """Live slices by name (``axial``, ``vertical_x``, ``vertical_y``); replaces the previous ones."""

    def write_volume(self, scan_uid: str, volume: np.ndarray, metadata: dict) -> None: ...

    def record_failure(self, scan_uid: str, reason: str, metadata: dict) -> None: ...


class MemorySink:
    """Keeps results in dictionaries: for in-process use, notebooks and tests."""

    def __init__(self):
        self.previews: dict[str, list[tuple[dict[str, np.ndarray], dict]]] = {}
        self.volumes: dict[str, tuple[np.ndarray, dict]] = {}
        self.failures: dict[str, tuple[str, dict]] = {}

    def write_preview(self, scan_uid, slices, metadata):
        copies = {name: np.array(image) for name, image in slices.items()}
        self.previews.setdefault(scan_uid, []).append((copies, dict(metadata)))

    def write_volume(self, scan_uid, volume, metadata):
        self.volumes[scan_uid] = (np.asarray(volume), dict(metadata))

    def record_failure(self, scan_uid, reason, metadata):
        self.failures[scan_uid] = (reason, dict(metadata))
