"""Zarr stores for volumes: the multiscale (OME-Zarr 0.5) writer and readers."""

from ._ome import multiscales, ome_attributes
from ._pyramid import downsample2, level_shapes, subsample2
from ._writer import DEFAULT_CHUNKS, MultiscaleWriter, open_multiscale, read_level

__all__ = ["DEFAULT_CHUNKS", "MultiscaleWriter", "downsample2", "level_shapes", "multiscales",
           "ome_attributes", "open_multiscale", "read_level", "subsample2"]
