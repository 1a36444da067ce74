"""Flat/dark normalisation and the negative logarithm."""

from __future__ import annotations

import logging

import numpy as np

from ._backend import get_namespace, to_numpy

log = logging.getLogger(__name__)

#: transmission floor before the logarithm: dead pixels and over-dark frames
#: would otherwise give infinities
MIN_TRANSMISSION = 1e-6


class FlatField(tuple):
    """``(dark, beam)``, unpacked as before, with ``no_beam``: the boolean mask (shape of ``beam``) of the
    pixels whose flat is not brighter than their dark, or None when every pixel has beam."""

    def __new__(cls, dark, beam, no_beam=None):
        field = super().__new__(cls, (dark, beam))
        field.no_beam = no_beam
        return field


def compact_ranges(numbers, limit: int = 20) -> str:
    """Distinct integers as ranges, ``[12, 13, 14, 15, 300]`` → ``"12-15, 300"``; past ``limit`` ranges
    only their count (a noisy detector could otherwise make a warning of thousands of numbers)."""
    values = np.unique(np.asarray(numbers, dtype=np.int64))
    if values.size == 0:
        return ""
    gaps = np.flatnonzero(np.diff(values) > 1)
    starts, ends = np.r_[values[0], values[gaps + 1]], np.r_[values[gaps], values[-1]]
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in zip(starts.tolist(), ends.tolist())]
    if len(parts) > limit:
        parts = parts[:limit] + [f"and {len(parts) - limit} more ranges"]
    return ", ".join(parts)


def no_beam_message(pixels: int, columns, where: str = "") -> str:
    """The warning for pixels without beam: how many, and in which detector columns."""
    return (f"flats are not brighter than darks in {pixels} pixel{'' if pixels == 1 else 's'}{where}, "
            f"in columns {compact_ranges(columns)}: their transmission is taken as 0 (check the flats)")


def no_beam_columns(mask) -> np.ndarray:
    """The columns (last axis) of a ``FlatField.no_beam`` mask in which any pixel lacks beam."""
    mask = np.asarray(mask)
    return np.flatnonzero(mask.reshape(-1, mask.shape[-1]).any(axis=0))


def _check_finite(xp, name, array):
    if not bool(xp.isfinite(array).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def _may_hold_nan(array) -> bool:
    """False only for arrays of an integer or boolean type (lists and floats may)."""
    kind = getattr(getattr(array, "dtype", None), "kind", "f")
    return kind not in "biu"


#: how normalize combines the flat and dark frames, as tomopy.normalize's ``averaging``
AVERAGING = ("mean", "median")


def normalize(projections, flats, darks, *, averaging: str = "mean", out=None):
    """(projections − dark) / (flat − dark), float32, shape of ``projections``: tomopy's ``normalize``.

    ``averaging``: how the flats and the darks are combined over their first
    axis, ``"mean"`` (tomopy's default) or ``"median"``, which ignores the odd
    zinger that a mean smears into every projection. Flats and darks may be
    one 2-D frame or a stack.

    Any real pixel type is accepted (detectors write uint16); the arithmetic
    and the result are float32. Integer frames skip the NaN/inf check, which
    they cannot fail. Unlike tomopy, a pixel whose flat is not brighter than
    its dark gets transmission 0 (and a warning), not a clipped denominator.
    """
    xp = get_namespace(projections)
    if flats is None or darks is None or len(flats) == 0 or len(darks) == 0:
        raise ValueError("normalisation needs at least one flat and one dark frame")
    arrays = {"projections": projections, "flats": flats, "darks": darks}
    may_be_nan = {name: _may_hold_nan(array) for name, array in arrays.items()}
    projections, flats, darks = (xp.asarray(array, dtype=xp.float32) for array in arrays.values())
    if projections.ndim != 3:
        raise ValueError(f"projections must be (angles, rows, columns), got shape {projections.shape}")
    flats, darks = (frames[None] if frames.ndim == 2 else frames for frames in (flats, darks))
    for name, frames in (("flats", flats), ("darks", darks)):
        if frames.ndim != 3 or frames.shape[1:] != projections.shape[1:]:
            raise ValueError(f"{name} of shape {frames.shape} do not match projections of shape {projections.shape}")
    for name, array in (("projections", projections), ("flats", flats), ("darks", darks)):
        if may_be_nan[name]:
            _check_finite(xp, name, array)
    return apply_flat_field(projections, *flat_field(flats, darks, averaging=averaging), out=out)


def flat_field(flats, darks, *, averaging: str = "median", where: str = "", warn: bool = True) -> FlatField:
    """``(dark, beam)``: the averaged dark and the averaged flat minus it, float32, for ``apply_flat_field``.

    ``averaging``: ``"median"`` (the default here: robust to zingers) or ``"mean"``.
    Work that does not depend on the projections, done once: per slab of rows
    by the stop path, once per scan by the live slices. Pixels without beam
    (a dead flat pixel) get an infinite beam, so their transmission is 0, not inf.
    They are not passed over in silence: the result's ``no_beam`` holds their mask,
    and a warning names their columns (unless ``warn`` is False, for a caller
    that reports a whole scan at once). ``where`` names the part of the detector
    in the warning and the error.
    """
    if averaging not in AVERAGING:
        raise ValueError(f"averaging must be one of {AVERAGING}, got {averaging!r}")
    xp = get_namespace(flats)
    combine = xp.mean if averaging == "mean" else xp.median
    dark = combine(xp.asarray(darks, dtype=xp.float32), axis=0).astype(xp.float32, copy=False)
    beam = combine(xp.asarray(flats, dtype=xp.float32), axis=0) - dark
    has_beam = beam > 0
    if not bool(has_beam.any()):
        raise ValueError(f"flats are not brighter than darks anywhere{where}: no beam in the flat fields")
    beam = xp.where(has_beam, beam, xp.float32(np.inf)).astype(xp.float32, copy=False)
    if bool(has_beam.all()):
        return FlatField(dark, beam)
    no_beam = ~to_numpy(has_beam)
    if warn:
        log.warning("%s", no_beam_message(int(no_beam.sum()), no_beam_columns(no_beam), where))
    return FlatField(dark, beam, no_beam)


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
