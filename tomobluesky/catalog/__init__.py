"""The Tiled catalogue: a real ``tiled serve`` process, raw runs and reconstructions."""

from ._analysis import export_volume, find_volumes, full_resolution, raw_run
from ._server import CatalogError, CatalogLayout, TiledServer, free_port, tiled_command
from ._confine import ConfinedDocuments
from ._live import live_slices, read_live_slice
from ._spool import ReplayReport, SpoolingSink, read_backup, replay
from ._writers import LIVE, PROCESSED, RAW, TiledSink, VolumeExists, ensure_layout, raw_run_writer

__all__ = ["ConfinedDocuments", "ReplayReport", "SpoolingSink", "read_backup", "replay", "CatalogError", "CatalogLayout", "LIVE", "PROCESSED", "RAW", "TiledServer", "TiledSink", "VolumeExists",
           "ensure_layout", "export_volume", "find_volumes", "free_port", "full_resolution", "live_slices", "raw_run",
           "read_live_slice",
           "raw_run_writer", "tiled_command"]
