"""Flat/dark normalisation and the negative logarithm."""

from __future__ import annotations

import numpy as np

from ._backend import get_namespace

#: transmission floor before the logarithm: dead pixels and over-dark frames
#: would otherwise give infinities
MIN_TRANSMISSION = 1e-6


def _check_finite(xp, name, array):
    if not bool(xp.isfinite(array).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def _may_hold_nan(array) -> bool:
    """False only for arrays of an integer or boolean type (lists and floats may)."""
    kind = getattr(getattr(array, "dtype", None), "kind", "f")
    return kind not in "biu"


def normalize(projections, flats, darks, *, out=None):
    """(projections − dark) / (flat − dark), float32, shape of ``projections``.

    Flats and darks are averaged with the median over their first axis, which
    ignores the odd zinger a mean would smear into every projection.

    Any real pixel type is accepted (detectors write uint16); the arithmetic
    and the result are float32. Integer frames skip the NaN/inf check, which
    they cannot fail.
    """
    xp = get_namespace(projections)
    if flats is None or darks is None or len(flats) == 0 or len(darks) == 0:
        raise ValueError("normalisation needs at least one flat and one dark frame")
    arrays = {"projections": projections, "flats": flats, "darks": darks}
    may_be_nan = {name: _may_hold_nan(array) for name, array in arrays.items()}
    projections, flats, darks = (xp.asarray(array, dtype=xp.float32) for array in arrays.values())
    if projections.ndim != 3:
        raise ValueError(f"projections must be (angles, rows, columns), got shape {projections.shape}")
    for name, frames in (("flats", flats), ("darks", darks)):
        if frames.ndim != 3 or frames.shape[1:] != projections.shape[1:]:
            raise ValueError(f"{name} of shape {frames.shape} do not match projections of shape {projections.shape}")
    for name, array in (("projections", projections), ("flats", flats), ("darks", darks)):
        if may_be_nan[name]:
            _check_finite(xp, name, array)
    return apply_flat_field(projections, *flat_field(flats, darks), out=out)


def flat_field(flats, darks, *, where: str = ""):
    """``(dark, beam)``: the median dark and the median flat minus it, float32, for ``apply_flat_field``.

    Work that does not depend on the projections, done once: per slab of rows
    by the stop path, once per scan by the live slices. Pixels without beam
    (a dead flat pixel) get an infinite beam, so their transmission is 0, not inf.
    ``where`` names the part of the detector in the error.
    """
    xp = get_namespace(flats)
    dark = xp.median(xp.asarray(darks, dtype=xp.float32), axis=0)
    beam = xp.median(xp.asarray(flats, dtype=xp.float32), axis=0) - dark
    if not bool((beam > 0).any()):
        raise ValueError(f"flats are not brighter than darks anywhere{where}: no beam in the flat fields")
    return dark, xp.where(beam > 0, beam, xp.float32(np.inf)).astype(xp.float32, copy=False)


def apply_flat_field(projections, dark, beam, *, out=None):
    """(projections − dark) / beam in float32; ``out`` may be ``projections`` itself when it is float32."""
    xp = get_namespace(projections)
    projections = xp.asarray(projections, dtype=xp.float32)
    if out is None:
        out = xp.empty_like(projections)
    xp.subtract(projections, dark, out=out)
    xp.divide(out, beam, out=out)
    return out


def minus_log(transmission, *, out=None):
    """−ln(transmission), with transmission clipped to ``MIN_TRANSMISSION``."""
    xp = get_namespace(transmission)
    transmission = xp.asarray(transmission, dtype=xp.float32)
    if out is None:
        out = xp.empty_like(transmission)
    xp.maximum(transmission, xp.float32(MIN_TRANSMISSION), out=out)
    xp.log(out, out=out)
    xp.negative(out, out=out)
    return out
