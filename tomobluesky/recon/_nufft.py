"""Filtered backprojection as one type-1 2-D non-uniform FFT per slice pair.

By the Fourier slice theorem, FBP of a slice is an inverse 2-D Fourier
transform of its projections' spectra laid on polar lines, weighted by the
(windowed) ramp. The polar samples are non-uniform, so one type-1 NUFFT
(finufft on the CPU, cufinufft on the GPU) sums them straight onto the n×n
pixel grid: O(n² log n) per slice instead of backprojection's O(angles·n²).
Two real slices ride as the real and imaginary parts of one complex
transform, since each one's output is real.
"""

from __future__ import annotations

import numpy as np

from ._backend import get_namespace, to_numpy
from ._filters import padded_length, ramp_response


def _nufft_plan(xp, n, n_trans, eps, ncore):
    if xp is np:
        import finufft

        opts = {"upsampfac": 1.25} if eps >= 1e-3 else {}
        return finufft.Plan(1, (n, n), n_trans=n_trans, eps=eps, isign=1, dtype="complex64",
                            nthreads=ncore or 0, **opts)
    import cufinufft

    return cufinufft.Plan(1, (n, n), n_trans=n_trans, eps=eps, isign=1, dtype="complex64")


def polar_points(theta, length, xp=np):
    """NUFFT points (radians per pixel) of every FFT frequency of every angle."""
    freq = np.fft.fftfreq(length)  # cycles per pixel
    th = np.asarray(theta, dtype=np.float64)[:, None]
    # image rows grow downwards, so the y axis of the transform is −y
    x = (2 * np.pi * freq[None, :] * np.cos(th)).astype(np.float32).ravel()
    y = (-2 * np.pi * freq[None, :] * np.sin(th)).astype(np.float32).ravel()
    return xp.asarray(x), xp.asarray(y)


def weighted_spectra(sinograms, theta, centers, length, filter_name):
    """Ramp-weighted projection spectra with the axis moved to the origin.

    Returns complex64 (slices, angles·length). The phase puts detector column
    ``center`` at t = 0 and, for even n, the half-pixel between the middle
    pixels at the grid's origin.
    """
    xp = get_namespace(sinograms)
    slices, angles, n = sinograms.shape
    freq = xp.asarray(np.fft.fftfreq(length), dtype=xp.float32)
    delta = 0.5 if n % 2 == 0 else 0.0
    th = xp.asarray(np.asarray(theta, dtype=np.float64), dtype=xp.float32)[:, None]
    centers = xp.asarray(centers, dtype=xp.float32)[:, None, None]
    # t = column − center; pixel x = k + delta
    phase = 2 * np.pi * freq[None, None, :] * (centers + delta * (xp.cos(th) - xp.sin(th))[None])
    weight = xp.asarray(ramp_response(length, filter_name)) * np.float32(np.pi / angles / length)
    spectrum = xp.fft.fft(sinograms, n=length, axis=-1)
    spectrum *= weight * xp.exp(1j * phase).astype(xp.complex64)
    return spectrum.reshape(slices, angles * length).astype(xp.complex64)


def nufft_fbp(sinograms, theta, centers, *, filter_name="shepp", pad=True, eps=1e-3, ncore=None,
              batch_pairs=8, progress=None):
    """FBP of (slices, angles, columns) sinograms → (slices, columns, columns)."""
    xp = get_namespace(sinograms)
    slices, angles, n = sinograms.shape
    length = padded_length(n, pad)
    x, y = polar_points(theta, length, xp)
    out = xp.empty((slices, n, n), dtype=xp.float32)
    step = 2 * batch_pairs
    plan, plan_trans = None, None
    for start in range(0, slices, step):
        stop = min(start + step, slices)
        spectra = weighted_spectra(sinograms[start:stop], theta, centers[start:stop], length, filter_name)
        if spectra.shape[0] % 2:
            spectra = xp.concatenate([spectra, xp.zeros_like(spectra[:1])])
        packed = spectra[0::2] + 1j * spectra[1::2]
        if plan is None or plan_trans != packed.shape[0]:
            plan, plan_trans = _nufft_plan(xp, n, packed.shape[0], eps, ncore), packed.shape[0]
            plan.setpts(x, y)
        images = plan.execute(xp.ascontiguousarray(packed.astype(xp.complex64)))
        images = images.reshape(packed.shape[0], n, n)
        # finufft's first output axis is x; the image's first axis is rows (y)
        pair = xp.stack([images.real, images.imag], axis=1).reshape(-1, n, n)[: stop - start]
        out[start:stop] = xp.swapaxes(pair, 1, 2)
        if progress:
            progress(stop, slices)
    return out


__all__ = ["nufft_fbp", "polar_points", "weighted_spectra", "to_numpy"]
