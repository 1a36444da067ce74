"""Slab sizes from a memory budget, as nabu and HTTomo size their chunks: from
what the machine may spend, never from the scan's size.

A slab is a run of detector rows reconstructed together: its sinograms
(rows × angles × columns), its slices (rows × columns²) and the NUFFT's
working set. The stop path keeps two slabs in flight (one read ahead, one
being written) when the budget allows, one otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..recon._backend import usable_cores

F32, C64 = 4, 8
#: what the estimate leaves for allocator slack and the threads' own arenas
HEADROOM = 0.8
THREADS = 40e6
#: frames per HDF5 read: large enough to amortise the call, small next to a slab
FRAME_BLOCK = 32


@dataclass(frozen=True)
class SlabPlan:
    slab_rows: int
    batch_pairs: int  # slice pairs per NUFFT call
    frame_block: int  # frames read per HDF5 call
    overlap: bool  # read the next slab and write the last one while this one computes
    estimate_bytes: int  # working memory the plan expects at its peak
    slabs: tuple[tuple[int, int], ...]
    fits: bool = True  # False: even the smallest slab exceeds the budget

    def __repr__(self):
        return (f"SlabPlan({len(self.slabs)} slabs of {self.slab_rows} rows, {self.batch_pairs} pairs per NUFFT, "
                f"overlap={self.overlap}, ~{self.estimate_bytes / 1e6:.0f} MB)")


def nufft_bytes(angles: int, columns: int, pairs: int, pad: float = 1.5, plans: int = 1) -> int:
    """Working set of the NUFFT on ``pairs`` slice pairs in flight: packed spectra
    (and the FFT's copy), the upsampled fine grid, the complex images; and the
    polar points, shared, with each of ``plans`` kept plans' sort of them (one
    per thread of ``recon._nufft.nufft_fbp_threads``)."""
    length = int(math.ceil(columns * pad))
    grid = int(math.ceil(columns * 1.25)) + 16
    points = angles * length * (2 * F32 + plans * (8 + 8))
    return points + pairs * (2 * angles * length * C64 + grid * grid * C64 + columns * columns * C64)


def _per_row(angles, columns, flats_darks, ring_removal, copies, itemsize):
    sinogram = angles * columns * F32
    image = columns * columns * F32
    normalise = flats_darks * columns * F32 + FRAME_BLOCK * columns * (itemsize + 2 * F32)
    return copies * (sinogram + image) + (sinogram if ring_removal else 0) + normalise


def plan_slabs(rows: int, angles: int, columns: int, *, budget_bytes: float, multiple: int = 2,
               flats_darks: int = 20, ring_removal: bool = False, itemsize: int = 4,
               cores: int | None = None) -> SlabPlan:
    """Split ``rows`` detector rows into slabs whose working set fits ``budget_bytes``.

    ``cores``: the engine's threads (None: all this process may use), each keeping a NUFFT plan.

    ``multiple``: every slab but the last has a height that is a multiple of it
    (slice pairs for the NUFFT, 2^levels for the pyramid). When even one such
    slab does not fit, the smallest one is used and ``estimate_bytes`` says by how much the budget is exceeded.
    """
    multiple = max(2, int(multiple))
    budget = float(budget_bytes) * HEADROOM - THREADS
    pairs, cores = 8, usable_cores() if cores is None else cores
    while pairs > 1 and nufft_bytes(angles, columns, pairs, plans=min(cores, pairs)) > budget / 4:
        pairs //= 2
    fixed = nufft_bytes(angles, columns, pairs, plans=min(cores, pairs))
    for copies, overlap in ((2, True), (1, False)):
        per_row = _per_row(angles, columns, flats_darks, ring_removal, copies, itemsize)
        height = int((budget - fixed) // per_row) // multiple * multiple
        if height >= multiple:
            break
    fits = height >= multiple
    height = max(multiple, min(height, _round_up(rows, multiple)))
    slabs = tuple((r0, min(r0 + height, rows)) for r0 in range(0, rows, height))
    estimate = int(fixed + height * _per_row(angles, columns, flats_darks, ring_removal, 2 if overlap else 1,
                                             itemsize))
    return SlabPlan(height, pairs, FRAME_BLOCK, overlap, estimate, slabs, fits)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple
