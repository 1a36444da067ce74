"""Writing to the catalogue: raw runs through TiledWriter, reconstructions as
multiscale Zarr stores registered in ``processed``, live previews in ``live``."""

from __future__ import annotations

import logging
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np

from ._live import PACKED, pack_slices

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


#: events (and frames of StreamDatum) per request of the raw-run writer. Each request costs the Tiled
#: server far more than the writer: for a 420-frame step scan of 128 × 1280 frames the server spent
#: 8.7-11 CPU s at 10 per request, 2.9 s at 100 and 2.6 s at 1000 (the writer 0.4-0.7 s in every
#: case). On a small acquisition host that CPU is taken from the scan. Nothing reads raw frames from
#: Tiled during a scan (the live path reads the detector file), so a run shows in Tiled every 100
#: frames and whole at its stop.
RAW_BATCH_SIZE = 100

#: the viewer's live control request is read at most this often per scan (seconds): each read is a request
#: that costs the Tiled server as much as a preview's write, and a person steering the slices waits longer
#: than this anyway for the next preview
CONTROL_POLL_S = 1.0


def raw_run_writer(client, backup_directory: str | Path | None = None, *, batch_size: int = RAW_BATCH_SIZE):
    """A TiledWriter into ``raw``; a run Tiled cannot take goes to JSON lines
    in ``backup_directory`` instead of failing the scan.

    ``batch_size`` events are sent per request (see ``RAW_BATCH_SIZE``): 1 shows
    each frame in Tiled at once but costs two requests per frame.
    """
    from bluesky_tiled_plugins import TiledWriter

    return TiledWriter(ensure_layout(client)[RAW], batch_size=batch_size,
                       backup_directory=str(backup_directory) if backup_directory else None)


# A scan uid names a directory on the server's disk and comes from documents:
# accept nothing that could climb out of it or hide in it.
_UID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class VolumeExists(Exception):
    """``processed/<scan uid>`` is already complete: the volume is not made twice."""


def _chunks(shape, chunk_shape):
    """Tiled's explicit chunk sizes per axis for a Zarr array's regular chunks."""
    return tuple((c,) * (n // c) + ((n % c,) if n % c else ()) for n, c in zip(shape, chunk_shape))


def _external_array(container, key, array, uri):
    """Register one Zarr array as an external child: Tiled reads the files, no pixel is uploaded."""
    from tiled.structures.array import ArrayStructure, BuiltinDtype
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import Asset, DataSource, Management

    structure = ArrayStructure(data_type=BuiltinDtype.from_numpy_dtype(np.dtype(array.dtype)), shape=array.shape,
                               chunks=_chunks(array.shape, array.chunks), dims=("z", "y", "x"))
    source = DataSource(structure_family=StructureFamily.array, mimetype="application/x-zarr", structure=structure,
                        management=Management.external,
                        assets=[Asset(data_uri=uri, is_directory=True, parameter="data_uri", num=None)])
    return container.new(StructureFamily.array, [source], key=key)


def _upload_array(container, key, array):
    """An array uploaded over HTTP, one chunk per slice so that a slice reads alone."""
    from tiled.structures.array import ArrayStructure
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    structure = ArrayStructure.from_array(array, chunks=((1,) * array.shape[0], *((n,) for n in array.shape[1:])))
    node = container.new(StructureFamily.array, [DataSource(structure=structure, structure_family="array")], key=key)
    node.write(array)


class TiledSink:
    """Puts live reconstruction results into a Tiled catalogue.

    The volume of a scan is a multiscale Zarr store at
    ``volume_dir/<scan uid>.zarr`` (written by the stop path, slab by slab),
    registered as the container ``processed/<scan uid>`` whose children "0"
    (full resolution), "1", … are the pyramid's levels. ``volume_dir`` must
    be one of the Tiled server's readable roots (``-r``).

    The protocol: ``begin_volume`` marks the node ``status: "writing"`` and
    returns where to write; ``complete_volume`` registers the levels and flips
    it to ``"complete"``. A reader (or a restarted worker) thus tells a
    partial volume from a finished one. A complete volume is never written
    twice (``begin_volume`` raises ``VolumeExists``); a partial or failed one
    is replaced.
    """

    def __init__(self, client, volume_dir: str | Path | None = None, *, control_poll_s: float = CONTROL_POLL_S):
        self.client = ensure_layout(client)
        self.volume_dir = Path(volume_dir).resolve() if volume_dir is not None else None
        self.control_poll_s = float(control_poll_s)
        self._requests_seen: dict[str, int] = {}  # scan uid -> sequence number of the last live request handed on
        self._polled: dict[str, float] = {}  # scan uid -> when its control request was last read
        self._preview_nodes: dict[str, dict] = {}  # scan uid -> {"": its live node, slice name: array node}

    def write_preview(self, scan_uid, slices, metadata):
        """Live slices go to ``live/<scan uid>/slices``, one array overwritten in place (see
        :mod:`tomobluesky.catalog._live`), and ``metadata`` to ``live/<scan uid>``.

        Every request costs the server tens of milliseconds of CPU (the key's lookups, the catalogue's
        queries), whatever it carries: on a small acquisition host that CPU is taken from the scan. So
        the slices travel as one array, the nodes of the newest scans are kept here, and the metadata
        is updated without keeping the old one as a revision: an update is 2 requests (it was 8). A
        kept node that the server no longer has (the preview was deleted meanwhile) is looked up
        again, once."""
        packed, layout = pack_slices(slices)
        nodes = self._preview_nodes.pop(scan_uid, None)
        if nodes is not None:
            try:
                self._update_preview(nodes, packed, layout, metadata)
            except Exception as exc:
                if not _is_not_found(exc):
                    raise
                nodes = None  # kept nodes gone from the server: start again from the catalogue
        if nodes is None:
            nodes = {"": self._preview_node(scan_uid, metadata)}
            self._update_preview(nodes, packed, layout, metadata)
        self._preview_nodes[scan_uid] = nodes  # the newest last
        while len(self._preview_nodes) > PREVIEW_NODES_KEPT:
            self._preview_nodes.pop(next(iter(self._preview_nodes)))

    def prepare_preview(self, scan_uid, slices, metadata):
        """Make the scan's preview nodes (container, slices array, metadata) with the empty slices before
        the first projection: that takes 5-6 requests where an update takes 2 (0.65 s against 0.14-0.18 s
        here, docs/benchmarks.md, "Preview lag"), which would otherwise all land in the first preview."""
        self.write_preview(scan_uid, slices, metadata)

    def _preview_node(self, scan_uid, metadata):
        live = self.client[LIVE]
        if scan_uid not in live:
            return live.create_container(scan_uid, metadata=metadata)
        return live[scan_uid]

    def _update_preview(self, nodes: dict, packed, layout, metadata) -> None:
        node = nodes[""]
        array = nodes.get(PACKED)
        if array is None:  # node.get: one request, not a test and a lookup
            array = node.get(PACKED)
        if (array is not None and tuple(array.shape) == packed.shape
                and dict(array.metadata).get(PACKED) == layout):
            array.write(packed)
        else:  # new, or the slices changed shape (another binning): a new array with its layout
            if array is not None:
                self._delete(node, PACKED)
            array = node.write_array(packed, key=PACKED, metadata={PACKED: layout})
        nodes[PACKED] = array
        # a preview's metadata is replaced a few times a second: keeping each old one as a revision
        # would cost the server two queries and a row per update, for nobody
        node.update_metadata(metadata=metadata, drop_revision=True)

    def live_request(self, scan_uid) -> dict | None:
        """The newest request from the viewer to steer this scan's live slices (``{"row": int,
        "center": float}``, either key optional), or None when there is no request not yet handed on.

        The viewer keeps it as the metadata of ``live/<scan uid>/control`` with a sequence number;
        each request is handed on once per sink. A request that does not look like one is logged
        and skipped, and a catalogue that cannot be reached is logged: the live slices go on as
        they were rather than fail. It is read at most every ``control_poll_s`` seconds per scan
        (``CONTROL_POLL_S``): asked sooner, this answers None without a request."""
        from .._errors import is_transient

        now = time.monotonic()
        if now - self._polled.get(scan_uid, -math.inf) < self.control_poll_s:
            return None  # asked again within control_poll_s: a person's request can wait that long
        self._polled = {uid: t for uid, t in self._polled.items() if now - t < 3600}
        self._polled[scan_uid] = now
        try:
            metadata = self.client[(LIVE, scan_uid, "control")].metadata
        except KeyError:
            return None
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("could not read the live control request of %s: %s", scan_uid, exc)
            return None
        seq, request = metadata.get("seq"), _live_request(metadata)
        if not isinstance(seq, int) or seq <= self._requests_seen.get(scan_uid, 0):
            return None
        self._requests_seen[scan_uid] = seq
        if request is None:
            log.warning("skipping the malformed live control request %d of %s: %.200r", seq, scan_uid, dict(metadata))
        return request

    def volume_status(self, scan_uid) -> str | None:
        node = self.client[PROCESSED].get(scan_uid)
        return None if node is None else node.metadata.get("status")

    def volume_path(self, scan_uid) -> Path:
        """Where the store of ``scan_uid`` goes; refuses a uid that is not a plain key."""
        if self.volume_dir is None:
            raise ValueError("this TiledSink has no volume_dir: give it a directory the Tiled server can read")
        if not isinstance(scan_uid, str) or not _UID.fullmatch(scan_uid):
            raise ValueError(f"refusing scan uid {scan_uid!r}: only letters, digits, '-', '_' and '.' "
                             "(not first), at most 128 characters")
        return self._inside(self.volume_dir / f"{scan_uid}.zarr")

    def _inside(self, path) -> Path:
        path = Path(path).resolve()
        if self.volume_dir is not None and not path.is_relative_to(self.volume_dir):
            raise ValueError(f"{path} is outside the volume directory {self.volume_dir}")
        return path

    def begin_volume(self, scan_uid, metadata) -> Path:
        """Mark ``processed/<scan uid>`` as being written; return the (not yet created) store path."""
        self.volume_path(scan_uid)  # refuses a hostile uid before anything is looked up or written
        processed = self.client[PROCESSED]
        existing = processed.get(scan_uid)
        if existing is not None:
            status = existing.metadata.get("status")
            if status == "complete":
                raise VolumeExists(f"the volume of {scan_uid} is already complete")
            log.warning("replacing %s volume of %s", status, scan_uid)
            self._delete(processed, scan_uid)
        path = self.fresh_volume_path(scan_uid)
        processed.create_container(scan_uid, metadata={**metadata, "status": "writing"})
        return path

    def fresh_volume_path(self, scan_uid) -> Path:
        """The store path of ``scan_uid`` with any earlier, unfinished store removed."""
        path = self.volume_path(scan_uid)
        shutil.rmtree(path, ignore_errors=True)
        return path

    def complete_volume(self, scan_uid, store_path, metadata):
        """Register every level of the written store under ``processed/<scan uid>`` and mark it complete."""
        from tiled.utils import ensure_uri

        from ..store import open_multiscale

        store_path = self._inside(store_path)
        node = self.client[PROCESSED][scan_uid]
        levels = open_multiscale(store_path)
        for k, array in enumerate(levels):
            _external_array(node, str(k), array, ensure_uri(str(store_path / str(k))))
        multiscales = _group_attrs(store_path)["ome"]["multiscales"]
        node.update_metadata(metadata={**metadata, "status": "complete", "multiscales": multiscales,
                                       "levels": [list(a.shape) for a in levels], "zarr_store": str(store_path)})
        return node

    def register_volume(self, scan_uid, store_path, metadata):
        """Register a store written earlier (a spooled volume): replaces a partial or failed node,
        keeps a complete one. The store itself is never touched."""
        store_path = self._inside(store_path)
        self.volume_path(scan_uid)  # refuses a uid that is not a plain key
        processed = self.client[PROCESSED]
        existing = processed.get(scan_uid)
        if existing is not None:
            if existing.metadata.get("status") == "complete":
                raise VolumeExists(f"the volume of {scan_uid} is already complete")
            self._delete(processed, scan_uid)
        processed.create_container(scan_uid, metadata={**metadata, "status": "writing"})
        return self.complete_volume(scan_uid, store_path, metadata)

    def write_volume(self, scan_uid, volume, metadata):
        """A whole in-memory volume: begin, write chunk-aligned slabs, complete (small volumes, tests).

        A sink without ``volume_dir`` uploads the levels over HTTP instead,
        in the same layout: a stopgap for callers that have no directory the
        server reads, never for beamline-size volumes."""
        from ..store import MultiscaleWriter

        if self.volume_dir is None:
            return self._upload_volume(scan_uid, np.asarray(volume, dtype=np.float32), metadata)
        try:
            path = self.begin_volume(scan_uid, metadata)
        except VolumeExists:
            log.info("volume for %s is already complete; not writing it again", scan_uid)
            return self.client[PROCESSED][scan_uid]
        writer = MultiscaleWriter(path, np.shape(volume), pixel_size=metadata.get("pixel_size"))
        height = writer.slab_height(64)
        for z0 in range(0, writer.shape[0], height):
            writer.write_slab(z0, volume[z0:z0 + height])
        return self.complete_volume(scan_uid, path, metadata)

    def _upload_volume(self, scan_uid, volume, metadata):
        from ..store import downsample2, level_shapes, multiscales

        processed = self.client[PROCESSED]
        status = self.volume_status(scan_uid)
        if status == "complete":
            return processed[scan_uid]
        if scan_uid in processed:
            self._delete(processed, scan_uid)
        node = processed.create_container(scan_uid, metadata={**metadata, "status": "writing"})
        shapes = level_shapes(volume.shape)
        for k in range(len(shapes)):
            level = volume if k == 0 else downsample2(level)
            _upload_array(node, str(k), level)
        block = multiscales(shapes, pixel_size=metadata.get("pixel_size"))
        node.update_metadata(metadata={**metadata, "status": "complete", "multiscales": [block],
                                       "levels": [list(s) for s in shapes]})
        return node

    def steps_dir(self, scan_uid) -> Path:
        """Where the outputs of a scan's volume steps are written: ``<volume_dir>/<scan uid>.steps``."""
        return self._inside(self.volume_path(scan_uid).with_suffix(".steps"))

    def register_outputs(self, scan_uid, outputs: dict, metadata: dict, failure: str | None = None):
        """The outputs of a scan's volume steps (:func:`tomobluesky.steps.run_volume_steps`) under
        ``processed/<scan uid>/<step>[/<key>]``: arrays as containers of their levels, like the volume,
        tables as Tiled tables, other values in the step's metadata."""
        import pandas as pd
        from tiled.utils import ensure_uri

        from ..store import open_multiscale

        volume = self.client[PROCESSED][scan_uid]
        for name, store_path in sorted(outputs.get("arrays", {}).items()):
            store_path = self._inside(store_path)
            node = self._container_at(volume, name, metadata)
            levels = open_multiscale(store_path)
            for k, array in enumerate(levels):
                _external_array(node, str(k), array, ensure_uri(str(store_path / str(k))))
            node.update_metadata(metadata={**metadata, "status": "complete", "zarr_store": str(store_path),
                                           "levels": [list(a.shape) for a in levels],
                                           "multiscales": _group_attrs(store_path)["ome"]["multiscales"]})
        for name, columns in sorted(outputs.get("tables", {}).items()):
            parent, _, key = name.rpartition("/")
            container = self._container_at(volume, parent, metadata) if parent else volume
            container.write_dataframe(pd.DataFrame(columns), key=key, metadata={**metadata, "step": parent or key})
        values = outputs.get("values") or {}
        if values:
            volume.update_metadata(metadata={"step_values": {k: _plain(v) for k, v in values.items()}})
        if failure is not None:  # a step raised: the scan is failed, its volume and earlier outputs kept
            volume.update_metadata(metadata={"status": "failed", "reason": failure})
        return volume

    @staticmethod
    def _container_at(parent, name, metadata):
        node = parent
        for part in name.split("/"):
            node = node[part] if part in node else node.create_container(part, metadata=metadata)
        return node

    def record_failure(self, scan_uid, reason, metadata):
        processed = self.client[PROCESSED]
        if self.volume_status(scan_uid) == "complete":
            log.error("reconstruction of %s failed (%s) but a complete volume exists; keeping it", scan_uid, reason)
            return
        if scan_uid in processed:
            self._delete(processed, scan_uid)
        self._remove_store(scan_uid)
        processed.create_container(scan_uid, metadata={**metadata, "status": "failed", "reason": reason})

    def _remove_store(self, scan_uid):
        try:
            self.fresh_volume_path(scan_uid)
        except ValueError:
            pass  # no volume directory, or a uid that never had a store

    @staticmethod
    def _delete(container, key):
        container.delete_contents(key, recursive=True, external_only=False)


#: scans whose preview nodes a sink keeps (one scan is live at a time; a few more cost nothing)
PREVIEW_NODES_KEPT = 4


def _is_not_found(exc: Exception) -> bool:
    """A Tiled client error for a node the server does not have (HTTP 404)."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) == 404 or isinstance(exc, KeyError)


def _plain(value):
    """A value Tiled's metadata can hold (numbers from NumPy become Python numbers)."""
    return value.item() if isinstance(value, np.generic) else value


def _live_request(metadata) -> dict | None:
    """``{"row", "center"}`` from a stored live control request; None unless the row is a whole
    number from 0 and the centre a finite number (the viewer checks the detector's bounds)."""
    import math

    row, center = metadata.get("row"), metadata.get("center")
    request = {}
    if row is not None:
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            return None
        request["row"] = row
    if center is not None:
        if not isinstance(center, (int, float)) or isinstance(center, bool) or not math.isfinite(center):
            return None
        request["center"] = float(center)
    return request or None


def _group_attrs(path) -> dict:
    import zarr

    return dict(zarr.open_group(Path(path), mode="r").attrs)
