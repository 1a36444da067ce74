"""Compiled loops of the live slices (numba): one pass over the data where NumPy makes several.

The live slices' per-frame work is three memory-bound steps: bin and
normalise the raw frame, ramp-filter its rows (an FFT, left to scipy), and
smear the filtered rows back onto three slices. In NumPy each step walks
the frame five to eight times through temporaries (clip, cast, two gathers,
subtract, multiply, add); these kernels walk it once.

They run on one thread: on the shared 2-core machine, with the RunEngine and
other work beside them, numba's parallel loops were 8× slower than serial ones
(threads waiting for each other at every loop's end; docs/benchmarks.md).
The ramp filter's FFT still uses both cores.

Backprojection reads each filtered row over its whole zero-padded FFT
length, circularly: beyond the detector's columns it reads the ramp
filter's tails (negative, falling as 1/t²), not zeros. Where the raw row is
zero outside the detector (the object fits), that is the filtered row's
true value there, as the Fourier reconstruction of the final volume has it.
Reading zeros instead lifts every pixel whose rays pass beyond the detector,
which with the axis off the middle is a large part of the slice (a 40-column
offset on 160 columns: +7 % of the object's attenuation on the background).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from tomobluesky.recon import MIN_TRANSMISSION


@numba.njit(inline="always")
def _read(row, length, position):
    """A filtered row (its whole FFT ``length``) at fractional ``position``, linearly, circularly."""
    left = math.floor(position)
    w = position - left
    i = int(left)
    if i < 0 or i >= length:  # rare: only rays far beyond the detector; a division costs more than this test
        i %= length
    lo = row[i]
    hi = row[i + 1] if i + 1 < length else row[0]
    return lo + w * (hi - lo)


@numba.njit(cache=True, nogil=True)
def _transmission(frame, factor, dark, beam, out):
    """Block means of ``factor`` × ``factor`` raw pixels (fewer rows when the frame has fewer),
    flat-fielded with the binned ``dark`` and ``beam``, floored at MIN_TRANSMISSION, into ``out``.
    Returns False if a raw pixel is not finite (``out`` is then not to be used).

    Each loop is a plain run over contiguous memory without a branch, so LLVM turns it into
    vector code: the sums of raw rows, the column blocks, then the flat field (a select, not an
    ``if``, for the floor; the finiteness test is one running sum). With the test and the floor as
    branches inside one loop it took twice as long (0.45 against 0.21 ms for 512² uint16 → 256²)."""
    rows, cols = out.shape
    rf = min(factor, frame.shape[0])
    scale = np.float32(1.0 / (rf * factor))
    floor = np.float32(MIN_TRANSMISSION)
    check = np.float32(0.0)
    line = np.empty(cols * factor, np.float32)  # one output row's raw rows summed
    binned = np.empty(cols, np.float32)
    for i in range(rows):
        line[:] = 0
        for a in range(i * rf, i * rf + rf):
            src = frame[a]
            for b in range(cols * factor):
                line[b] += src[b]
        binned[:] = 0
        for k in range(factor):
            for j in range(cols):
                binned[j] += line[j * factor + k]
        d, bm, o = dark[i], beam[i], out[i]
        for j in range(cols):
            value = binned[j] * scale
            check += value * np.float32(0.0)  # becomes NaN, and stays so, at the first NaN or infinity
            transmission = (value - d[j]) / bm[j]
            o[j] = transmission if transmission >= floor else floor  # NaN from 0/inf takes the floor too
    return check == 0.0


def attenuation(frame, factor, dark, beam, out):
    """Binned, flat-fielded −ln transmission of a raw frame, divided by ``factor`` (attenuation per
    detector pixel), into ``out``; False if a raw pixel is not finite. The logarithm is NumPy's: its
    SIMD loop is about 9× numba's scalar one here (0.03 against 0.27 ms for 256² float32)."""
    finite = _transmission(frame, factor, dark, beam, out)
    np.log(out, out=out)
    out /= -factor
    return finite


@numba.njit(cache=True, nogil=True)  # runs on LiveSlices' helper thread beside the next view's work
def backproject_vertical(filtered, cos, sin, center, weight, vertical_x, vertical_y):
    """Add one view to the two vertical slices through the axis: row r of ``vertical_x`` is the line
    y = 0 of detector row r's axial slice (x to the right), of ``vertical_y`` the line x = 0 (y from
    top to bottom). ``filtered``: (rows, FFT length) ramp-filtered attenuation of n columns."""
    rows, length = filtered.shape
    n = vertical_x.shape[1]
    mid = (n - 1) / 2.0
    # every row is read at the same positions: both neighbours (wrapped) and the weight, once per view,
    # so the loops over the rows have no branch and vectorise
    x0, x1, wx = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float32)
    y0, y1, wy = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float32)
    for j in range(n):
        for lo, hi, frac, position in ((x0, x1, wx, (j - mid) * cos + center),
                                       (y0, y1, wy, -(j - mid) * sin + center)):
            left = math.floor(position)
            lo[j] = int(left) % length
            hi[j] = (lo[j] + 1) % length
            frac[j] = position - left
    w = np.float32(weight)
    for r in range(rows):
        q, vx, vy = filtered[r], vertical_x[r], vertical_y[r]
        for j in range(n):
            a = q[x0[j]]
            vx[j] += w * (a + wx[j] * (q[x1[j]] - a))
        for j in range(n):
            a = q[y0[j]]
            vy[j] += w * (a + wy[j] * (q[y1[j]] - a))


@numba.njit(cache=True, nogil=True)
def backproject_axial(sinogram, cos, sin, center, weights, image):
    """Add filtered views (angles, FFT length) of one detector row to ``image`` (n × n, x right, y up),
    each times its weight."""
    angles, length = sinogram.shape
    n = image.shape[0]
    mid = (n - 1) / 2.0
    # three periods of each row (and one more value): a position in [-length, 2 length) is read at
    # position + length without wrapping, so the inner loop has no branch and vectorises (about 2x)
    periods = np.empty((angles, 3 * length + 1), np.float32)
    for a in range(angles):
        for k in range(3):
            periods[a, k * length:(k + 1) * length] = sinogram[a]
        periods[a, 3 * length] = sinogram[a, 0]
    for i in range(n):
        y = mid - i
        row = image[i]
        for a in range(angles):
            c, w = cos[a], np.float32(weights[a])
            base = y * sin[a] + center - mid * c  # position of column j: j * c + base
            first, last = base, (n - 1) * c + base
            if min(first, last) >= -length and max(first, last) < 2 * length - 1:
                q = periods[a]
                for j in range(n):
                    p = j * c + base + length
                    k = int(p)  # p > 0: truncation is the floor
                    f = np.float32(p - k)
                    lo = q[k]
                    row[j] += w * (lo + f * (q[k + 1] - lo))
            else:  # an axis far outside the columns: the general circular read
                q = sinogram[a]
                for j in range(n):
                    row[j] += w * _read(q, length, j * c + base)


def warm_up():
    """Compile (or load from numba's cache) every kernel once, so the first frame of a scan pays nothing."""
    f = np.ones((2, 8), np.float32)
    attenuation(f, 1, np.zeros((2, 8), np.float32), np.ones((2, 8), np.float32), np.empty((2, 8), np.float32))
    v = np.zeros((2, 4), np.float32)
    backproject_vertical(f, 1.0, 0.0, 1.5, 1.0, v, v.copy())
    one = np.ones(1)
    backproject_axial(f[:1], one, one * 0, 1.5, one, np.zeros((4, 4), np.float32))
