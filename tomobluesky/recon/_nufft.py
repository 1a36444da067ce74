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

import threading
from concurrent.futures import ThreadPoolExecutor

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
_PLAN_LOCK = threading.Lock()


def cached_plan(xp, n, n_trans, eps, ncore, theta, length, slot: int = 0):
    """A plan with its points set, kept for the next call with the same geometry.

    The stop path calls the NUFFT once per slab with the same angles and
    sizes; sorting the polar points (``setpts``) costs ~0.15 s at 1500 angles
    × 2048 columns, which a scan in 100 slabs would otherwise pay 100 times.
    Plans are kept for one geometry (array module, grid, eps, padded length,
    angles), one per ``slot``, batch size and threads: the threads of
    ``nufft_fbp_threads`` each use their own slot, since a plan serves one
    transform at a time (and calls that share a slot take turns). Their points
    are one shared copy; each plan adds its sort of them (~16 bytes a point).
    Another geometry, or ``clear_plan_cache``, frees them.
    """
    geometry = (xp.__name__, n, eps, length, np.asarray(theta, dtype=np.float64).tobytes())
    with _PLAN_LOCK:
        if _PLAN_CACHE.get("geometry") != geometry:
            _PLAN_CACHE.clear()
            _PLAN_CACHE["geometry"] = geometry
            _PLAN_CACHE["points"] = polar_points(theta, length, xp)
        plan = _PLAN_CACHE.get((slot, n_trans, ncore))
        if plan is None:
            plan = _PLAN_CACHE[slot, n_trans, ncore] = make_plan(xp, n, n_trans, eps, ncore)
            plan.setpts(*_PLAN_CACHE["points"])
            plan.in_use = threading.Lock()  # held for each execute: a plan's fine grid serves one at a time
    return plan


def clear_plan_cache():
    """Free the kept NUFFT plans."""
    with _PLAN_LOCK:
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
              batch_pairs=8, progress=None, out=None, slot: int = 0):
    """FBP of (slices, angles, columns) sinograms → (slices, columns, columns) float32.

    ``slot``: which kept plan to use (see ``cached_plan``); one per concurrent caller."""
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
            plan, plan_trans = cached_plan(xp, n, packed.shape[0], eps, ncore, theta, length, slot), packed.shape[0]
        with plan.in_use:  # two calls of one geometry from two threads on the same slot take turns
            images = plan.execute(packed).reshape(-1, n, n)
        out[start:stop:2] = images.real
        out[start + 1:stop:2] = images.imag[: (stop - start) // 2]
        if progress:
            progress(stop, slices)
    return out


def nufft_fbp_threads(sinograms, theta, centers, *, threads: int, out, batch_pairs=8, **options):
    """``nufft_fbp`` of a NumPy slab on ``threads`` cores: in as many parts at once (at most one per slice
    pair, and ``batch_pairs`` of them), each with its own plan and ``threads // parts`` of the cores.

    One call on T threads parallelises finufft's spreading and FFT only; the NumPy steps around them
    (packing the pairs, the spectra's phases, unpacking the images) run on one. On an H100 machine's
    16 cores that made one call 3× one thread where eight single-threaded processes made 8×
    (docs/benchmarks.md, "The GPU"). Parts hold whole slice pairs, so every slice is packed with the
    partner it has in one call; each part gets ``batch_pairs // parts`` pairs per transform, so that the
    transforms in flight hold no more memory than one call's. Each part's plan adds its sort of the points
    (``pipeline._plan.nufft_bytes`` counts them).
    """
    slices = sinograms.shape[0]
    pairs = (slices + 1) // 2
    parts = max(1, min(int(threads), pairs, batch_pairs))  # no more pairs in flight than one call's batch
    bounds = [2 * (pairs * k // parts) for k in range(parts)] + [slices]
    per_part = max(1, batch_pairs // parts)
    cores = max(1, int(threads) // parts)
    centers = np.asarray(centers, dtype=np.float64)

    def part(k):
        a, b = bounds[k], bounds[k + 1]
        nufft_fbp(sinograms[a:b], theta, centers[a:b], ncore=cores, batch_pairs=per_part, out=out[a:b], slot=k,
                  **options)

    if parts == 1:
        part(0)
        return out
    with ThreadPoolExecutor(parts, thread_name_prefix="nufft") as pool:
        list(pool.map(part, range(parts)))  # waits for all, and re-raises a part's error here
    return out


__all__ = ["cached_plan", "clear_plan_cache", "make_plan", "nufft_fbp", "nufft_fbp_threads", "packed_spectra",
           "polar_points"]
