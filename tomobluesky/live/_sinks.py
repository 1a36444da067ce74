"""Where a live reconstruction puts its results: the protocol and an in-memory sink.

A volume is never handed over as one array. The stop path asks the sink
where to write (``begin_volume`` → a path for a Zarr store), writes the
store slab by slab, then hands the finished store back (``complete_volume``),
which registers it (Tiled) or keeps it (memory).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ReconstructionSink(Protocol):
    """Receives previews during a scan, then one volume (or a failure) per scan."""

    def write_preview(self, scan_uid: str, slices: dict[str, np.ndarray], metadata: dict) -> None:
        """Live slices by name (``axial``, ``vertical_x``, ``vertical_y``); replaces the previous ones."""

    def volume_status(self, scan_uid: str) -> str | None:
        """``"writing"``, ``"complete"``, ``"failed"`` or None when the scan has no volume yet."""

    def begin_volume(self, scan_uid: str, metadata: dict) -> Path:
        """Mark the volume as being written; return where its multiscale Zarr store goes."""

    def complete_volume(self, scan_uid: str, store: Path, metadata: dict) -> None:
        """Take the finished store: the volume is now complete."""

    def record_failure(self, scan_uid: str, reason: str, metadata: dict) -> None: ...

    # Optional, looked up with getattr: ``prepare_preview(scan_uid, slices, metadata)``, called once the
    # live slices exist and before any projection is folded, with the empty slices, so that a sink whose
    # first write costs more than the later ones (creating nodes in a catalogue) pays that before the
    # projections come rather than in the first preview's lag.


class ForwardingSink:
    """Base for sinks that add something (a figure, a Kafka topic) and pass everything on to ``inner``."""

    inner = None

    def write_preview(self, scan_uid, slices, metadata):
        if self.inner is not None:
            self.inner.write_preview(scan_uid, slices, metadata)

    def volume_status(self, scan_uid):
        return self.inner.volume_status(scan_uid) if self.inner is not None else None

    def begin_volume(self, scan_uid, metadata):
        if self.inner is None:
            raise RuntimeError(f"{type(self).__name__} has no inner sink to write the volume of {scan_uid} into")
        return self.inner.begin_volume(scan_uid, metadata)

    def complete_volume(self, scan_uid, store, metadata):
        if self.inner is not None:
            self.inner.complete_volume(scan_uid, store, metadata)

    def record_failure(self, scan_uid, reason, metadata):
        if self.inner is not None:
            self.inner.record_failure(scan_uid, reason, metadata)

    def prepare_preview(self, scan_uid, slices, metadata):
        """Passed on to the inner sink when it has it (see :class:`ReconstructionSink`)."""
        prepare = getattr(self.inner, "prepare_preview", None)
        if prepare is not None:
            prepare(scan_uid, slices, metadata)

    def live_request(self, scan_uid):
        """The viewer's request for the live slices (row, centre), from the inner sink when it has them."""
        request = getattr(self.inner, "live_request", None)
        return request(scan_uid) if request is not None else None

    def register_outputs(self, scan_uid, outputs, metadata, failure=None):
        register = getattr(self.inner, "register_outputs", None)
        if register is not None:
            register(scan_uid, outputs, metadata, failure=failure)


class MemorySink:
    """Keeps results in dictionaries: for in-process use, notebooks and tests.

    Stores are written under ``volume_dir`` (a temporary directory by
    default); ``volumes[uid]`` holds level 0 read back into memory, so keep
    this sink for volumes that fit in memory.
    """

    def __init__(self, volume_dir: str | Path | None = None):
        self.previews: dict[str, list[tuple[dict[str, np.ndarray], dict]]] = {}
        self.volumes: dict[str, tuple[np.ndarray, dict]] = {}
        self.stores: dict[str, Path] = {}
        self.failures: dict[str, tuple[str, dict]] = {}
        self.outputs: dict[str, tuple[dict, dict]] = {}
        self._status: dict[str, str] = {}
        self.volume_dir = Path(volume_dir) if volume_dir else Path(tempfile.mkdtemp(prefix="tomobluesky-volumes-"))

    def write_preview(self, scan_uid, slices, metadata):
        copies = {name: np.array(image) for name, image in slices.items()}
        self.previews.setdefault(scan_uid, []).append((copies, dict(metadata)))

    def volume_status(self, scan_uid):
        return self._status.get(scan_uid)

    def begin_volume(self, scan_uid, metadata):
        path = self.volume_dir / f"{_plain_key(scan_uid)}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        self._status[scan_uid] = "writing"
        return path

    def complete_volume(self, scan_uid, store, metadata):
        from ..store import read_level

        self.stores[scan_uid] = Path(store)
        self.volumes[scan_uid] = (read_level(store, 0), dict(metadata))
        self._status[scan_uid] = "complete"

    def register_outputs(self, scan_uid, outputs, metadata, failure=None):
        """Volume steps' outputs (see ``tomobluesky.steps.run_volume_steps``); a failed step fails the scan."""
        self.outputs[scan_uid] = (outputs, dict(metadata))
        if failure is not None:
            self.record_failure(scan_uid, failure, metadata)
            self._status[scan_uid] = "failed"

    def record_failure(self, scan_uid, reason, metadata):
        self.failures[scan_uid] = (reason, dict(metadata))
        if self._status.get(scan_uid) != "complete":  # a complete volume stays complete
            self._status[scan_uid] = "failed"


def _plain_key(scan_uid: str) -> str:
    """A file name for ``scan_uid`` that cannot leave the volume directory (uids come from documents)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(scan_uid))[:128]
    return safe or "_"
