"""Compiled loops of the live slices (numba): one pass over the data where NumPy makes several.

The live slices' per-frame work is three memory-bound steps: bin and
normalise the raw frame, ramp-filter its rows (an FFT, left to scipy), and
smear the filtered rows back onto three slices. In NumPy each step walks
the frame five to eight times through temporaries (clip, cast, two gathers,
subtract, multiply, add); these kernels walk it once, on every core.

Interpolation follows ``tomobluesky.recon._interp``: a row is continued by
zeros on both sides, a position within one pixel outside fades linearly to
zero, anything further out reads zero.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from tomobluesky.recon import MIN_TRANSMISSION


@numba.njit(inline="always", fastmath=False)
def _read(row, n, position):
    """``row`` (n values) at fractional ``position``; zeros beyond the detector."""
    t = position + 1.0  # position in the row padded by one zero before and two after
    if t < 0.0:
        t = 0.0
    elif t > n + 1.0:
        t = n + 1.0
    left = int(t)
    w = t - left
    lo = row[left - 1] if 1 <= left <= n else 0.0
    hi = row[left] if 0 <= left < n else 0.0  # padded index left + 1 is row index left
    return lo + w * (hi - lo)


@numba.njit(parallel=True, cache=True)
def attenuation(frame, factor, dark, beam, out):
    """Block means of ``factor`` × ``factor`` raw pixels (fewer rows when the frame has fewer),
    flat-fielded with the binned ``dark`` and ``beam``, −ln (transmission floored at MIN_TRANSMISSION),
    divided by ``factor`` (attenuation per detector pixel). Returns False if a raw pixel is not finite."""
    rows, cols = out.shape
    rf = min(factor, frame.shape[0])
    scale = 1.0 / (rf * factor)
    finite = np.ones(rows, np.bool_)
    for i in numba.prange(rows):
        block = np.zeros(cols, np.float64)  # the sums of this output row's blocks, read row by row in order
        for a in range(i * rf, i * rf + rf):
            for b in range(cols * factor):
                block[b // factor] += frame[a, b]
        for j in range(cols):
            value = block[j] * scale
            if not math.isfinite(value):
                finite[i] = False
                value = 0.0
            transmission = (value - dark[i, j]) / beam[i, j]
            if not transmission >= MIN_TRANSMISSION:  # NaN from 0/inf lands here too
                transmission = MIN_TRANSMISSION
            out[i, j] = -math.log(transmission) / factor
    return finite.all()


@numba.njit(parallel=True, cache=True)
def backproject_vertical(filtered, cos, sin, center, weight, vertical_x, vertical_y):
    """Add one view to the two vertical slices through the axis: row r of ``vertical_x`` is the line
    y = 0 of detector row r's axial slice (x to the right), of ``vertical_y`` the line x = 0 (y from
    top to bottom). ``filtered``: (rows, n) ramp-filtered attenuation."""
    rows, n = filtered.shape
    mid = (n - 1) / 2.0
    for r in numba.prange(rows):
        q = filtered[r]
        for j in range(n):
            x = j - mid
            vertical_x[r, j] += weight * _read(q, n, x * cos + center)
            vertical_y[r, j] += weight * _read(q, n, -x * sin + center)


@numba.njit(parallel=True, cache=True)
def backproject_axial(sinogram, cos, sin, center, weights, image):
    """Add views (angles, n) of one detector row to ``image`` (n × n, x right, y up), each times its weight."""
    angles, n = sinogram.shape
    mid = (n - 1) / 2.0
    for i in numba.prange(n):
        y = mid - i
        for a in range(angles):
            q = sinogram[a]
            base = y * sin[a] + center
            c, w = cos[a], weights[a]
            for j in range(n):
                image[i, j] += w * _read(q, n, (j - mid) * c + base)


def warm_up():
    """Compile (or load from numba's cache) every kernel once, so the first frame of a scan pays nothing."""
    f = np.ones((2, 4), np.float32)
    attenuation(f, 1, np.zeros((2, 4), np.float32), np.ones((2, 4), np.float32), np.empty((2, 4), np.float32))
    v = np.zeros((2, 4), np.float32)
    backproject_vertical(f, 1.0, 0.0, 1.5, 1.0, v, v.copy())
    one = np.ones(1)
    backproject_axial(f[:1], one, one * 0, 1.5, one, np.zeros((4, 4), np.float32))
