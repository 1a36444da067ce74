"""Filtered backprojection, written once over an array namespace (NumPy or CuPy).

This is the reference algorithm: direct, slow (angles × pixels work per
slice), and easy to check. The Fourier route in ``_nufft`` is the fast one.
Geometry: pixel (row i, column j) sits at x = j − (n−1)/2, y = (n−1)/2 − i
(y up); a ray at angle θ through it meets the detector at column
center + x cos θ + y sin θ.
"""

from __future__ import annotations

import numpy as np

from ._backend import get_namespace
from ._filters import padded_length, ramp_response
from ._interp import interp_padded, pad_rows


def filter_sinograms(sinograms, filter_name="shepp", pad=True):
    """Ramp-filter every detector row (last axis), zero-padded against wraparound."""
    xp = get_namespace(sinograms)
    columns = sinograms.shape[-1]
    length = padded_length(columns, pad)
    response = xp.asarray(ramp_response(length, filter_name))
    spectrum = xp.fft.fft(sinograms, n=length, axis=-1)
    return xp.real(xp.fft.ifft(spectrum * response, axis=-1))[..., :columns].astype(xp.float32)


def backproject(filtered, theta, centers, *, progress=None, kernel: bool = True):
    """Sum filtered rows back over an n×n grid per slice, linear interpolation.

    On CuPy with ``kernel`` (the default) one CUDA kernel sums every angle (``_cuda``; the same arithmetic,
    ``progress`` called once at the end); ``kernel=False`` runs the array code below on the GPU too."""
    xp = get_namespace(filtered)
    slices, angles, n = filtered.shape
    if kernel and xp is not np:
        from ._cuda import backproject_padded

        out = backproject_padded(pad_rows(filtered.astype(xp.float32, copy=False)), theta, centers)
        if progress:
            progress(angles, angles)
        return out
    coords = xp.arange(n, dtype=xp.float32) - (n - 1) / 2
    x, y = coords[None, :], -coords[:, None]
    out = xp.zeros((slices, n, n), dtype=xp.float32)
    padded = pad_rows(filtered.astype(xp.float32, copy=False))  # zeros outside the detector
    centers = xp.asarray(centers, dtype=xp.float32)[:, None, None]
    for a, th in enumerate(np.asarray(theta, dtype=np.float64)):
        t = x * np.float32(np.cos(th)) + y * np.float32(np.sin(th))
        out += interp_padded(padded[:, a, :], t[None] + centers, per_row=True)
        if progress:
            progress(a + 1, angles)
    return out * np.float32(np.pi / angles)


def fbp(sinograms, theta, centers, *, filter_name="shepp", pad=True):
    return backproject(filter_sinograms(sinograms, filter_name, pad), theta, centers)
