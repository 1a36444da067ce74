"""Writing to the catalogue: raw runs through TiledWriter, reconstructions as
per-slice chunked arrays in ``processed``, live previews in ``live``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

RAW, PROCESSED, LIVE = "raw", "processed", "live"


def ensure_layout(client):
    """Create the three top-level containers if they are missing."""
    from tiled.structures.core import Spec

    specs = {RAW: [Spec("CatalogOfBlueskyRuns", version="3.0")], PROCESSED: [], LIVE: []}
    descriptions = {
        RAW: "Bluesky runs as acquired (documents and references to detector files)",
        PROCESSED: "Reconstructed volumes, one per scan, keyed by the scan's start uid",
        LIVE: "Preview slices refreshed during acquisition",
    }
    for key, spec in specs.items():
        if key not in client:
            client.create_container(key, specs=spec, metadata={"description": descriptions[key]})
    return client


def raw_run_writer(client, backup_directory: str | Path | None = None, *, batch_size: int = 10):
    """A TiledWriter into ``raw``; a run Tiled cannot take goes to JSON lines
    in ``backup_directory`` instead of failing the scan.

    ``batch_size`` events are sent per request: 1 shows each frame in Tiled at
    once but costs two requests per frame in the RunEngine's thread.
    """
    from bluesky_tiled_plugins import TiledWriter

    return TiledWriter(ensure_layout(client)[RAW], batch_size=batch_size,
                       backup_directory=str(backup_directory) if backup_directory else None)


def _slice_chunks(shape):
    return ((1,) * shape[0], *((n,) for n in shape[1:]))


def _new_array(container, key, array, metadata):
    from tiled.structures.array import ArrayStructure
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    structure = ArrayStructure.from_array(array)
    structure.chunks = _slice_chunks(array.shape)
    node = container.new(StructureFamily.array, [DataSource(structure=structure, structure_family="array")],
                         key=key, metadata=metadata)
    node.write(array)
    return node


class TiledSink:
    """Puts live reconstruction results into a Tiled catalogue.

    The volume of a scan lives at ``processed/<scan uid>``; it is written with
    ``status: "writing"`` and flipped to ``"complete"`` only after every slice
    has landed, so a reader (or a restarted worker) can tell a partial volume
    from a finished one. A complete volume is never written twice; a partial
    one is replaced.
    """

    def __init__(self, client):
        self.client = ensure_layout(client)

    def write_preview(self, scan_uid, slices, metadata):
        """Live slices go to ``live/<scan uid>/<name>``, overwritten in place."""
        live = self.client[LIVE]
        if scan_uid not in live:
            live.create_container(scan_uid, metadata=metadata)
        node = live[scan_uid]
        for name, image in slices.items():
            image = np.ascontiguousarray(image, dtype=np.float32)
            existing = node.get(name)  # one request, not a membership test and a lookup
            if existing is not None and tuple(existing.shape) == image.shape:
                existing.write(image)
                continue
            if existing is not None:
                self._delete(node, name)
            node.write_array(image, key=name)
        node.update_metadata(metadata=metadata)

    def volume_status(self, scan_uid) -> str | None:
        processed = self.client[PROCESSED]
        if scan_uid not in processed:
            return None
        return processed[scan_uid].metadata.get("status")

    def write_volume(self, scan_uid, volume, metadata):
        processed = self.client[PROCESSED]
        status = self.volume_status(scan_uid)
        if status == "complete":
            log.info("volume for %s is already complete; not writing it again", scan_uid)
            return processed[scan_uid]
        if status is not None:
            log.warning("replacing %s volume of %s", status, scan_uid)
            self._delete(processed, scan_uid)
        volume = np.ascontiguousarray(volume, dtype=np.float32)
        node = _new_array(processed, scan_uid, volume, {**metadata, "status": "writing"})
        node.update_metadata(metadata={**metadata, "status": "complete"})
        return node

    def record_failure(self, scan_uid, reason, metadata):
        processed = self.client[PROCESSED]
        if self.volume_status(scan_uid) == "complete":
            log.error("reconstruction of %s failed (%s) but a complete volume exists; keeping it", scan_uid, reason)
            return
        if scan_uid in processed:
            self._delete(processed, scan_uid)
        processed.create_container(scan_uid, metadata={**metadata, "status": "failed", "reason": reason})

    @staticmethod
    def _delete(container, key):
        container.delete_contents(key, recursive=True, external_only=False)
