"""The Tiled catalogue: a real ``tiled serve`` process, raw runs and reconstructions."""

from ._server import CatalogError, CatalogLayout, TiledServer, free_port, tiled_command
from ._writers import LIVE, PROCESSED, RAW, TiledSink, ensure_layout, raw_run_writer

__all__ = ["CatalogError", "CatalogLayout", "LIVE", "PROCESSED", "RAW", "TiledServer", "TiledSink",
           "ensure_layout", "free_port", "raw_run_writer", "tiled_command"]
