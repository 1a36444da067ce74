"""tomobluesky's own processing steps, registered under ``tomobluesky.steps`` like any plugin's.

Each wraps the engine (:mod:`tomobluesky.recon`). Steps that need the
scan's context (flats and darks, angles, the centre) name it in ``needs``;
the pipeline hands those over as keywords, they are not parameters a
pipeline entry may set.
"""

from __future__ import annotations

import inspect

import numpy as np

from .. import recon


def _declare(pattern, *, halo=0, needs=(), produces=None):
    def mark(function):
        function.pattern = pattern
        function.halo = halo
        function.needs = tuple(needs)
        function.produces = produces or pattern
        return function
    return mark


@_declare("projections", needs=("flats", "darks"))
def normalize(projections, *, flats, darks, averaging: str = "median"):
    """Flat-field correction: (projections − dark) / (flat − dark), with the median (or mean) dark and flat."""
    dark, beam = recon.flat_field(flats, darks, averaging=averaging)
    return recon.apply_flat_field(np.asarray(projections, dtype=np.float32), dark, beam)


@_declare("projections")
def minus_log(projections):
    """−log of the transmission: the line integrals a reconstruction needs."""
    return recon.minus_log(np.asarray(projections, dtype=np.float32))


@_declare("projections", halo=32)
def paganin(projections, *, pixel_size_m: float, distance_m: float, energy_kev: float, delta_beta: float):
    """Paganin's single-material phase retrieval on transmission (before ``minus_log``), in SI units.

    See :func:`tomobluesky.recon.paganin`. Its filter reaches across detector
    rows, so slabs are read with a halo of 32 rows on each side."""
    return recon.paganin(np.asarray(projections, dtype=np.float32), pixel_size_m=pixel_size_m,
                         distance_m=distance_m, energy_kev=energy_kev, delta_beta=delta_beta)


@_declare("sinograms")
def rings(sinograms, *, method: str = "sort", size: int | None = None, sigma: float = 3.0):
    """Ring (stripe) removal on sinograms; see :func:`tomobluesky.recon.remove_rings`."""
    return recon.remove_rings(sinograms, method=method, size=size, sigma=sigma)


@_declare("sinograms", needs=("theta", "center"), produces="volume")
def reconstruct(sinograms, *, theta, center, algorithm: str | None = None, filter_name: str | None = None):
    """Filtered backprojection of sinograms into slices (the engine's default algorithm and filter unless named)."""
    chosen = {k: v for k, v in (("algorithm", algorithm), ("filter_name", filter_name)) if v is not None}
    return recon.reconstruct(sinograms, theta, center, **chosen, **_SINOGRAM_ORDER)


# tomopy's flag: recon.reconstruct takes projections by default, as tomopy.recon does
_SINOGRAM_ORDER = {"sinogram_order": True} if "sinogram_order" in inspect.signature(recon.reconstruct).parameters \
    else {}
