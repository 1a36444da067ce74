"""The pyramid's arithmetic: level shapes and 2× block means."""

from __future__ import annotations

import numpy as np


def level_shapes(shape, min_size: int = 256) -> list[tuple[int, ...]]:
    """Shapes of levels 0, 1, …: each halves every axis (rounding up) until
    the largest axis is at most ``min_size``. Level 0 is always there."""
    if min_size < 1:
        raise ValueError(f"min_size must be at least 1, not {min_size}")
    shapes = [tuple(int(n) for n in shape)]
    while max(shapes[-1]) > min_size:
        shapes.append(tuple((n + 1) // 2 for n in shapes[-1]))
    return shapes


def downsample2(a: np.ndarray) -> np.ndarray:
    """Means of 2 × 2 × … blocks; an edge block cut short by an odd size is the
    mean of the elements it has. Floats keep their dtype; integers are rounded.

    ``np.add.reduceat`` sums each block along one axis at a time, so no copy
    of the input is made and the partial edge block needs no padding."""
    out = np.asarray(a)
    work = out.dtype if out.dtype.kind == "f" else np.float64
    for axis, n in enumerate(out.shape):
        starts = np.arange(0, n, 2)
        counts = np.minimum(2, n - starts).astype(work)
        sums = np.add.reduceat(out, starts, axis=axis, dtype=work)
        sums /= counts.reshape((-1,) + (1,) * (out.ndim - axis - 1))
        out = sums
    if np.dtype(a.dtype).kind in "iu":
        return np.rint(out).astype(a.dtype)
    return out.astype(a.dtype, copy=False)
