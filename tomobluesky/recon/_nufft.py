"""Filtered backprojection as one type-1 2-D non-uniform FFT per slice pair.

By the Fourier slice theorem, FBP of a slice is an inverse 2-D Fourier
transform of its projections' spectra laid on polar lines, weighted by the
(windowed) ramp. The polar samples are non-uniform, so one type-1 NUFFT
(finufft on the CPU, cufinufft on the GPU) sums them straight onto the n×n
pixel grid: O(n² log n) per slice instead of backprojection's O(angles·n²).
It equals FBP with band-limited (sinc) interpolation along the detector.

Two real slices ride as the real and imaginary parts of one complex
sinogram: one FFT and one NUFFT serve both, since each slice's weighted
spectrum is Hermitian and so its image is real.
"""

from __future__ import annotations

import numpy as np

from ._backend import get_namespace, import_cufinufft
from ._filters import padded_length, ramp_response

#: finufft settings that measured best for this use (see docs/recon.md)
DEFAULT_EPS = 1e-2
UPSAMPFAC = 1.25
#: cufinufft's plan options (its defaults: see benchmarks/gpu.py, which measures the alternatives)
GPU_OPTIONS: dict = {}


def make_plan(xp, n: int, n_trans: int, eps: float = DEFAULT_EPS, ncore: int | None = None):
    """A type-1 2-D NUFFT plan onto the n×n grid: finufft on NumPy, cufinufft on CuPy."""
    if xp is np:
        import finufft

        opts = {"upsampfac": UPSAMPFAC} if eps >= 1e-3 else {}
        return finufft.Plan(1, (n, n), n_trans=n_trans, eps=eps, isign=1, dtype="complex64",
                            nthreads=ncore or 0, **opts)
    cufinufft = import_cufinufft()
    return cufinufft.Plan(1, (n, n), n_trans=n_trans, eps=eps, isign=1, dtype="complex64", **GPU_OPTIONS)


_PLAN_CACHE: dict = {}


def cached_plan(xp, n, n_trans, eps, ncore, theta, length):
    """A plan with its points set, kept for the next call with the same geometry.

    The stop path calls the NUFFT once per slab with the same angles and
    sizes; sorting the polar points (``setpts``) costs ~0.15 s at 1500 angles
    × 2048 columns, which a scan in 100 slabs would otherwise pay 100 times.
    One plan is kept (it holds the fine grid); ``clear_plan_cache`` frees it.
    """
    key = (xp.__name__, n, n_trans, eps, ncore, length, np.asarray(theta, dtype=np.float64).tobytes())
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        _PLAN_CACHE.clear()
        plan = make_plan(xp, n, n_trans, eps, ncore)
        plan.setpts(*polar_points(theta, length, xp))
        _PLAN_CACHE[key] = plan
    return plan


def clear_plan_cache():
    """Free the kept NUFFT plan (and its fine grid)."""
    _PLAN_CACHE.clear()


def polar_points(theta, length, xp=np):
    """NUFFT points (radians per pixel) of every FFT frequency of every angle,
    ordered (row, column) so that the NUFFT's first output axis is the image's rows."""
    freq = np.fft.fftfreq(length)  # cycles per pixel
    th = np.asarray(theta, dtype=np.float64)[:, None]
    rows = (-2 * np.pi * freq[None, :] * np.sin(th)).astype(np.float32).ravel()  # rows grow downwards: −y
    cols = (2 * np.pi * freq[None, :] * np.cos(th)).astype(np.float32).ravel()
    return xp.asarray(rows), xp.asarray(cols)


def _weights(xp, theta, n, length, filter_name):
    """(angles, length) complex64: ramp × window × 1/angles, and for even n the
    half-pixel phase that puts the grid's origin between the middle pixels."""
    freq = np.fft.fftfreq(length)
    th = np.asarray(theta, dtype=np.float64)[:, None]
    delta = 0.5 if n % 2 == 0 else 0.0
    phase = 2 * np.pi * freq[None, :] * delta * (np.cos(th) - np.sin(th))
    weight = ramp_response(length, filter_name).astype(np.float64) * (np.pi / len(theta) / length)
    if length % 2 == 0:
        # the Nyquist bin (−½ only, no +½ partner) would make each slice's image complex, and a packed pair's
        # imaginary part is the other slice: left in, it leaked one slice into its partner (ramp, shepp)
        weight[length // 2] = 0.0
    return xp.asarray((weight[None, :] * np.exp(1j * phase)).astype(np.complex64))


def _centre_phase(xp, centers, length):
    """(slices, 1, length) complex64 phase moving detector column ``center`` to t = 0."""
    freq = np.fft.fftfreq(length)
    c = np.asarray(centers, dtype=np.float64)[:, None]
    return xp.asarray(np.exp(2j * np.pi * freq[None, :] * c).astype(np.complex64)[:, None, :])


def _fft_rows(xp, z, ncore):
    """In-place FFT along the last axis; scipy's on the CPU for its threads."""
    if xp is np:
        import scipy.fft

        return scipy.fft.fft(z, axis=-1, overwrite_x=True, workers=ncore or -1)
    return xp.fft.fft(z, axis=-1)


def packed_spectra(sinograms, centers, weights, length, *, ncore=None, shared=None):
    """Weighted spectra of slice pairs packed as a + i·b: (pairs, angles·length) complex64.

    ``shared``: ``weights`` already multiplied by the phase of a centre that
    every slice shares (the common case), to skip the per-pair phases.
    """
    xp = get_namespace(sinograms)
    slices, angles, n = sinograms.shape
    pairs = (slices + 1) // 2
    if slices % 2:
        centers = np.append(centers, centers[-1])
    z = xp.zeros((pairs, angles, length), dtype=xp.complex64)
    z.real[..., :n] = sinograms[0::2]
    z.imag[: slices // 2, :, :n] = sinograms[1::2]
    z = _fft_rows(xp, z, ncore)
    ca, cb = centers[0::2], centers[1::2]
    if shared is not None:
        z *= shared
    elif np.array_equal(ca, cb):  # both slices share the phase: weight the packed spectrum as it is
        z *= weights[None] * _centre_phase(xp, ca, length)
    else:  # split Z into A and B (Hermitian parts), weight each with its own centre, repack
        flipped = xp.conj(xp.roll(z[..., ::-1], 1, axis=-1))  # conj Z(−f)
        spec_a, spec_b = (z + flipped) * 0.5, (z - flipped) * -0.5j
        z = weights[None] * (spec_a * _centre_phase(xp, ca, length) + 1j * spec_b * _centre_phase(xp, cb, length))
    return z.reshape(pairs, angles * length).astype(xp.complex64, copy=False)


def nufft_fbp(sinograms, theta, centers, *, filter_name="shepp", pad=True, eps=DEFAULT_EPS, ncore=None,
              batch_pairs=8, progress=None, out=None):
    """FBP of (slices, angles, columns) sinograms → (slices, columns, columns) float32."""
    xp = get_namespace(sinograms)
    slices, angles, n = sinograms.shape
    centers = np.asarray(centers, dtype=np.float64)
    length = padded_length(n, pad)
    weights = _weights(xp, theta, n, length, filter_name)
    shared = weights * _centre_phase(xp, centers[:1], length)[0] if np.all(centers == centers[0]) else None
    if out is None:
        out = xp.empty((slices, n, n), dtype=xp.float32)
    plan, plan_trans = None, None
    step = 2 * batch_pairs
    for start in range(0, slices, step):
        stop = min(start + step, slices)
        packed = packed_spectra(sinograms[start:stop], centers[start:stop], weights, length, ncore=ncore,
                                shared=shared)
        if plan_trans != packed.shape[0]:
            plan, plan_trans = cached_plan(xp, n, packed.shape[0], eps, ncore, theta, length), packed.shape[0]
        images = plan.execute(packed).reshape(-1, n, n)
        out[start:stop:2] = images.real
        out[start + 1:stop:2] = images.imag[: (stop - start) // 2]
        if progress:
            progress(stop, slices)
    return out


__all__ = ["cached_plan", "clear_plan_cache", "make_plan", "nufft_fbp", "packed_spectra", "polar_points"]
