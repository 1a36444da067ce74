"""A Zarr v3 multiscale volume written slab by slab.

Level 0 is the volume (z = slice index, y, x); level k is level k−1 averaged
over 2 × 2 × 2 blocks. A slab of whole slices yields the matching slices of
every level by itself, provided it starts on a multiple of 2^(levels−1): then
its blocks are the volume's blocks at every level.

Chunk rule, so that slabs can be written in any order and from several
processes at once: level k's chunks are ``chunks[0] >> k`` slices deep (at
least one) and as wide as level 0's. A slab whose start and height are
multiples of ``slab_alignment`` = max(``chunks[0]``, ``slab_multiple``) then
covers whole chunks at every level (the last slab of the volume excepted,
which may end anywhere), so no two such slabs ever touch the same chunk file.
Slabs that are multiples of ``slab_multiple`` only are still correct when
written one after another.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from ._ome import ome_attributes
from ._pyramid import downsample2, level_shapes, subsample2

_DOWNSAMPLE = {"mean": downsample2, "nearest": subsample2}

# Chosen with benchmarks/chunks.py (256 × 1024 × 1024 float32, 2 shared
# cores): a slice reads every chunk it crosses whole, so an axial slice costs
# depth × its bytes and a vertical one width × its bytes. 32 × 128 × 128 (2 MiB
# chunks) kept the slowest orientation near 0.1 s warm; (1, Y, X) slices read
# axially in 6 ms but vertically in 0.7–2 s, 256² tiles tripled vertical reads,
# 64³ slowed axial ones. Float32 reconstructions compress by only ~1.14× with
# LZ4 or zstd-1 while writes got no faster and reads up to 3× slower: no codec.
DEFAULT_CHUNKS = (32, 128, 128)
DEFAULT_COMPRESSION = None
_OWN = "tomobluesky"  # our bookkeeping in the group attributes, for reopening


def _codecs(compression):
    from zarr.codecs import BloscCodec, ZstdCodec

    choices = {None: None, "none": None,
               "lz4": [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")],
               "zstd": [ZstdCodec(level=1)]}
    if compression not in choices:
        raise ValueError(f"unknown compression {compression!r}; choose one of {sorted(map(str, choices))}")
    return choices[compression]


def write_empty_chunks(dtype) -> bool:
    """Whether chunks that hold only the fill value are written anyway: yes for floats, no for integers.

    By default zarr compares every chunk with the fill value to skip writing it. A reconstruction's chunks
    are never all zero, so the check only costs: on an H100 machine's 16 cores it halved level 0's write
    rate (1.0 against 2.25 GB/s for 64 × 2048² slabs; docs/benchmarks.md, "The GPU"). A label volume
    (integers) is mostly background, where skipping empty chunks saves the disk."""
    return np.dtype(dtype).kind == "f"


def _level_chunks(chunks, shape, k):
    depth = max(1, chunks[0] >> k)
    return tuple(min(c, n) for c, n in zip((depth, *chunks[1:]), shape))


class MultiscaleWriter:
    """Create an OME-Zarr 0.5 multiscale store at ``path`` (replacing any there).

    >>> w = MultiscaleWriter("vol.zarr", (512, 2048, 2048), pixel_size=0.65)
    >>> h = w.slab_height(48)                       # a valid slab height near 48
    >>> for z0 in range(0, 512, h):
    ...     w.write_slab(z0, reconstruct(z0, z0 + h))
    """

    def __init__(self, path, shape, *, dtype="float32", chunks=None, min_size=256, pixel_size=None,
                 unit="micrometer", attributes=None, compression=DEFAULT_COMPRESSION, downsample="mean"):
        shape = tuple(int(n) for n in shape)
        if downsample not in _DOWNSAMPLE:  # "nearest" for label volumes
            raise ValueError(f"downsample must be one of {', '.join(_DOWNSAMPLE)}, not {downsample!r}")
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"a volume needs three positive sizes (z, y, x), not {shape}")
        chunks = tuple(int(c) for c in (chunks or DEFAULT_CHUNKS))
        if len(chunks) != 3 or min(chunks) < 1 or chunks[0] & (chunks[0] - 1):
            raise ValueError(f"chunks must be three positive sizes with a power-of-two depth, not {chunks}")
        shapes = level_shapes(shape, min_size)
        attrs = {**(attributes or {}), **ome_attributes(shapes, pixel_size=pixel_size, unit=unit),
                 _OWN: {"chunk_depth": chunks[0], "downsample": downsample}}
        group = zarr.open_group(Path(path), mode="w", zarr_format=3, attributes=attrs)
        for k, level in enumerate(shapes):
            group.create_array(str(k), shape=level, dtype=dtype, chunks=_level_chunks(chunks, level, k),
                               compressors=_codecs(compression), fill_value=0, dimension_names=("z", "y", "x"))
        self._init(Path(path), chunks[0], downsample)

    @classmethod
    def open(cls, path) -> "MultiscaleWriter":
        """Reopen a store made by another MultiscaleWriter (say, in a worker process) to write slabs into it."""
        self = cls.__new__(cls)
        own = zarr.open_group(Path(path), mode="r").attrs[_OWN]
        self._init(Path(path), own["chunk_depth"], own.get("downsample", "mean"))
        return self

    def _init(self, path, chunk_depth, downsample="mean"):
        self.path = path
        self._downsample = _DOWNSAMPLE[downsample]
        # zarr keeps this setting with the open array, not in the store: set it on every opening
        self.arrays = [a.with_config({"write_empty_chunks": write_empty_chunks(a.dtype)})
                       for a in open_multiscale(path, mode="r+")]
        self._chunk_depth = chunk_depth

    @property
    def levels(self) -> list[tuple[int, ...]]:
        """The shape of every level, full resolution first."""
        return [a.shape for a in self.arrays]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.arrays[0].shape

    @property
    def chunks(self) -> tuple[int, ...]:
        """Level 0's chunk shape."""
        return self.arrays[0].chunks

    @property
    def slab_multiple(self) -> int:
        """Every slab starts on a multiple of this, and all but the last are that many slices high times n."""
        return 2 ** (len(self.arrays) - 1)

    @property
    def slab_alignment(self) -> int:
        """Slabs on multiples of this share no chunk at any level: safe to write in parallel."""
        return int(np.lcm(self._chunk_depth, self.slab_multiple))

    def slab_height(self, desired: int, *, parallel: bool = True) -> int:
        """``desired`` rounded down to a valid slab height (at least one unit, at most the volume).

        ``parallel``: a multiple of ``slab_alignment`` (slabs may be written
        concurrently); otherwise of ``slab_multiple`` (write them one at a time)."""
        unit = self.slab_alignment if parallel else self.slab_multiple
        height = max(unit, int(desired) // unit * unit)
        return min(height, -(-self.shape[0] // unit) * unit)

    def write_slab(self, z0: int, slab) -> None:
        """Write slices ``z0 .. z0 + len(slab)`` of level 0 and the matching slices of every coarser level."""
        slab = np.asarray(slab, dtype=self.arrays[0].dtype)
        self._check(z0, slab)
        for k, array in enumerate(self.arrays):
            if k:
                slab = self._downsample(slab)
            start = z0 >> k
            array[start:start + slab.shape[0]] = slab

    def _check(self, z0, slab):
        nz, m = self.shape[0], self.slab_multiple
        if slab.ndim != 3 or slab.shape[1:] != self.shape[1:]:
            raise ValueError(f"a slab must be whole slices (n, {self.shape[1]}, {self.shape[2]}), not {slab.shape}")
        end = z0 + slab.shape[0]
        if z0 < 0 or end > nz or not slab.shape[0]:
            raise ValueError(f"slab {z0}..{end} lies outside the volume's 0..{nz} slices")
        if z0 % m:
            raise ValueError(f"a slab must start on a multiple of {m} slices (the pyramid's block), not at {z0}")
        if slab.shape[0] % m and end != nz:
            raise ValueError(f"a slab must be a multiple of {m} slices high unless it ends the volume; "
                             f"{slab.shape[0]} slices at {z0} end at {end} of {nz}")


def open_multiscale(path, *, mode="r") -> list:
    """The level arrays of a multiscale store, full resolution first (lazy: nothing is read)."""
    group = zarr.open_group(Path(path), mode=mode)
    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    return [group[d["path"]] for d in datasets]


def read_level(path, k: int = 0) -> np.ndarray:
    """Level ``k`` of a multiscale store, read whole into memory."""
    return open_multiscale(path)[k][...]
