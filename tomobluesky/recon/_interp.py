"""Linear interpolation along detector rows, for NumPy and CuPy alike.

Backprojection (``fbp``), the live slices and ``stitch_360`` all read a row
at fractional columns. They share one convention: the row is continued by
zeros on both sides, so a position within one pixel outside the row fades
linearly to zero and anything further out reads exactly zero (no wrap, no
edge extension: outside the detector nothing was measured).

The row is stored with one zero column before it and two after. Clipping the
positions into that padded range then lands every outside position on zeros,
which is cheaper on the hot path than masking afterwards. Hot loops that read
the same rows many times pad once with ``pad_rows`` and call
``interp_padded``; everyone else calls ``interp_linear``.
"""

from __future__ import annotations

from ._backend import get_namespace

#: zero columns before and after a row in the padded layout ``interp_padded`` reads
PAD_BEFORE, PAD_AFTER = 1, 2


def pad_rows(rows, out=None):
    """(..., n) → (..., n + 3) with the row at columns 1..n and zeros around it."""
    xp = get_namespace(rows)
    n = rows.shape[-1]
    if out is None:
        out = xp.zeros(rows.shape[:-1] + (n + PAD_BEFORE + PAD_AFTER,), dtype=rows.dtype)
    out[..., PAD_BEFORE:PAD_BEFORE + n] = rows
    return out


def interp_padded(padded, positions, *, per_row: bool = False):
    """Rows laid out by ``pad_rows``, read at fractional ``positions`` (columns of the unpadded row).

    ``per_row=False``: the same ``positions`` (any shape) for every row; the
    result is ``padded.shape[:-1] + positions.shape``.
    ``per_row=True``: ``positions`` has the rows' leading shape first and each
    row is read at its own positions (as in ``take_along_axis``); the result
    has ``positions``' shape.
    """
    xp = get_namespace(padded)
    t = xp.clip(positions + PAD_BEFORE, 0, padded.shape[-1] - 2)
    left = t.astype(xp.int32)  # t >= 0, so truncation is floor
    w = (t - left).astype(padded.dtype, copy=False)
    if per_row:
        lead = padded.shape[:-1]
        idx = left.reshape(lead + (-1,))
        lo = xp.take_along_axis(padded, idx, axis=-1).reshape(left.shape)
        hi = xp.take_along_axis(padded, idx + 1, axis=-1).reshape(left.shape)
    else:
        lo = xp.take(padded, left, axis=-1)
        hi = xp.take(padded, left + 1, axis=-1)
    return lo + w * (hi - lo)


def interp_linear(rows, positions, *, per_row: bool = False):
    """Linear interpolation of each row (last axis) at fractional column
    ``positions``, the row continued by zeros on both sides.

    Works on NumPy and CuPy arrays. ``per_row`` as in ``interp_padded``.
    For example ``interp_linear(row, [-0.5, 0.25, len(row) + 4])`` reads half
    the first value, a quarter of the way to the second, and zero.
    """
    xp = get_namespace(rows)
    return interp_padded(pad_rows(rows), xp.asarray(positions), per_row=per_row)


__all__ = ["interp_linear", "interp_padded", "pad_rows"]
