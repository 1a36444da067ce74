"""``reconstruct``: one entry point with tomopy's conventions.

The data are (angles, slices, columns) projections as in ``tomopy.recon``,
or (slices, angles, columns) sinograms with ``sinogram_order=True``; ``theta`` in radians;
``center`` is the detector column of the rotation axis ((columns − 1)/2 is
centred), one value or one per slice; the result is (slices, columns,
columns) float32 in attenuation per pixel.
"""

from __future__ import annotations

import numpy as np

from ._backend import copy_to_host, get_namespace, to_numpy, usable_cores
from ._fbp import fbp
from ._filters import FILTERS, padded_length
from ._nufft import DEFAULT_EPS, nufft_fbp, nufft_fbp_threads
from ._validate import check_theta as _check_theta

ALGORITHMS = ("nufft", "fbp", "gridrec")
BACKENDS = ("numpy", "cupy", "tomopy")
_NOT_FINITE = "sinograms contain NaN or infinite values (check flats/darks and the −log step)"


def _check_centers(center, slices, columns):
    if center is None:
        centers = np.full(slices, (columns - 1) / 2)
    else:
        centers = np.broadcast_to(np.asarray(center, dtype=np.float64), (slices,)).copy() \
            if np.ndim(center) == 0 else np.asarray(center, dtype=np.float64)
    if centers.shape != (slices,):
        raise ValueError(f"center must be one value or one per slice ({slices}), got shape {centers.shape}")
    if not np.isfinite(centers).all() or (centers < 0).any() or (centers > columns - 1).any():
        raise ValueError(f"center {centers.min():.2f}..{centers.max():.2f} lies outside the detector "
                         f"(columns 0..{columns - 1})")
    return centers


def reconstruct(tomo, theta, center=None, *, sinogram_order: bool = False, algorithm: str = "nufft",
                filter_name: str = "cosine",
                backend: str = "numpy", pad=True, ncore: int | None = None, max_memory: float | None = None,
                progress=None, eps: float = DEFAULT_EPS, batch_pairs: int = 8):
    """Reconstruct parallel-beam data slice by slice.

    ``tomo``: (angles, slices, columns) projections, as tomopy.recon takes
    them, or with ``sinogram_order=True`` (slices, angles, columns) sinograms
    (no transpose then); a 2-D array is one (angles, columns) sinogram either way.

    ``algorithm``: ``"nufft"`` (Fourier: FBP as a non-uniform FFT, fast),
    ``"fbp"`` (direct filtered backprojection, the reference) or ``"gridrec"``
    (tomopy's, when tomopy is importable). ``backend``: ``"numpy"``,
    ``"cupy"`` (the same code on the GPU) or ``"tomopy"`` (hand the work to
    ``tomopy.recon``: gridrec for ``"nufft"``/``"gridrec"``, its own ``"fbp"``). ``pad``: zero padding of each row
    against wraparound (True: 1.5×, a number: that factor, False: none), gridrec's rows padded alike.
    ``filter_name``: the ramp's window, ``"cosine"`` by default: on the tooth
    it is nearer the object than ``"shepp"`` in RMSE and SSIM at the same cost
    (benchmarks/tooth_windows.py, docs/benchmarks.md). gridrec gets the same window under tomopy's
    name and parameter (``"ramp"`` is its ``"ramlak"``).
    ``max_memory``: bytes of working memory to stay under; slabs of slices
    are sized for it (on the tomopy route by ``tomopy_bytes_per_slice``). ``progress(done, total)`` is
    called per slab.
    ``batch_pairs``: slice pairs per NUFFT call (the NUFFT's working memory grows with it).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if filter_name not in FILTERS:
        raise ValueError(f"unknown filter {filter_name!r}; choose one of {FILTERS}")
    if backend == "tomopy" and algorithm == "nufft":
        algorithm = "gridrec"
    xp = get_namespace("numpy" if backend == "tomopy" or algorithm == "gridrec" else backend)
    host = np.asarray(to_numpy(tomo), dtype=np.float32)
    if host.ndim == 2:
        host = host[None]
    elif host.ndim == 3 and not sinogram_order:
        host = np.ascontiguousarray(np.swapaxes(host, 0, 1))
    if host.ndim != 3:
        layout = "(slices, angles, columns)" if sinogram_order else "(angles, slices, columns)"
        raise ValueError(f"tomo must be {layout} (sinogram_order={sinogram_order}), got shape {host.shape}")
    slices, angles, columns = host.shape
    if angles < 2 or columns < 2:
        raise ValueError(f"need at least 2 angles and 2 columns, got {angles} × {columns}")
    if xp is np and not np.isfinite(host).all():  # on a GPU each slab is checked there, where it is fast
        raise ValueError(_NOT_FINITE)
    if np.size(theta) != angles and np.size(theta) == slices and not sinogram_order \
            and np.ndim(tomo) == 3:
        raise ValueError(f"{np.size(theta)} angles match axis 1 of the data, not axis 0: pass sinograms with "
                         f"sinogram_order=True, or projections (angles, slices, columns) with the default False")
    theta = _check_theta(theta, angles)
    centers = _check_centers(center, slices, columns)
    padded_length(columns, pad)  # validates pad before any work
    on_tomopy = algorithm == "gridrec" or backend == "tomopy"
    if on_tomopy:  # tomopy's working set grows with what it is handed: slabs keep it within max_memory as ours
        slab = slices if not max_memory else max(1, int(max_memory // tomopy_bytes_per_slice(angles, columns, pad)))
    else:
        per_slice = 4 * (angles * columns * 4 + columns * columns * 2)  # sinogram spectra + image, bytes
        # slabs hold whole slice pairs, so the NUFFT packs the same pairs whatever the slab size
        slab = slices if not max_memory else max(2, int(max_memory // per_slice) // 2 * 2)
        if xp is not np:  # the GPU's memory is not the host's: a slab must fit the device too
            slab = min(slab, device_slab(xp, algorithm, angles, columns, padded_length(columns, pad), batch_pairs))
    out = np.empty((slices, columns, columns), dtype=np.float32)
    cores = ncore or usable_cores()
    for start in range(0, slices, slab):
        stop = min(start + slab, slices)
        target = out[start:stop]  # one view: a fresh out[start:stop] is another object, never `is` this one
        if on_tomopy:
            image = _tomopy(host[start:stop], theta, centers[start:stop], algorithm, filter_name, ncore, pad)
        else:
            sinograms = xp.asarray(host[start:stop])
            if xp is not np and not bool(xp.isfinite(sinograms).all()):
                raise ValueError(_NOT_FINITE)
            if algorithm == "nufft" and xp is np:
                image = nufft_fbp_threads(sinograms, theta, centers[start:stop], threads=cores, out=target,
                                          filter_name=filter_name, pad=pad, eps=eps, batch_pairs=batch_pairs)
            elif algorithm == "nufft":
                image = nufft_fbp(sinograms, theta, centers[start:stop], filter_name=filter_name, pad=pad, eps=eps,
                                  batch_pairs=batch_pairs)
            else:
                image = fbp(sinograms, theta, centers[start:stop], filter_name=filter_name, pad=pad)
            del sinograms
        if image is not target:  # the NUFFT on NumPy wrote into it already
            copy_to_host(image, target)
        if progress:
            progress(stop, slices)
    return out


#: of the GPU's free memory (CuPy's pool's free blocks counted in), what one slab may take
DEVICE_SHARE = 0.5


def device_bytes(algorithm: str, angles: int, columns: int, length: int, batch_pairs: int) -> tuple[int, int]:
    """(per slice, fixed) bytes a slab takes on the GPU: the sinograms in and the images out, float32, and
    for the NUFFT one batch of pairs in flight (packed spectra and the FFT's copy, complex64; cufinufft's fine
    grid, 2× upsampled; the complex images), for FBP the filtering's spectra (complex128: the ramp is float64)
    and the padded rows. An estimate from the code's arrays; the H100 runs' pools (3.0 GB NUFFT, 9.0 GB FBP for
    64 × 1500 × 2048) lie under it."""
    slab_arrays = 4 * angles * columns + 4 * columns * columns
    if algorithm == "nufft":
        grid = 2 * columns
        return slab_arrays, batch_pairs * (2 * 8 * angles * length + 8 * grid * grid + 8 * columns * columns)
    return slab_arrays + 2 * 16 * angles * length + 4 * angles * (columns + 3), 0


def device_slab(xp, algorithm, angles, columns, length, batch_pairs) -> int:
    """Slices per slab (whole pairs, at least one) that fit ``DEVICE_SHARE`` of the GPU's free memory."""
    free = xp.cuda.Device().mem_info[0] + xp.get_default_memory_pool().free_bytes()
    per_slice, fixed = device_bytes(algorithm, angles, columns, length, batch_pairs)
    return max(2, int((free * DEVICE_SHARE - fixed) // per_slice) // 2 * 2)


# our window names → tomopy gridrec's: tomopy calls the bare ramp "ramlak" and reconstructs an unknown name
# with Shepp-Logan's window without a word, so every name is translated, never handed on as it is
_TOMOPY_FILTERS = {"ramp": "ramlak", "shepp": "shepp", "cosine": "cosine", "hann": "hann"}
# tomopy's Hann is 0.5 (1 + cos(2π f / par[0])), f in cycles per pixel; par[0] = 1 is ours (zero at Nyquist),
# tomopy's default 0.5 would rise again above f = 0.25. The other three windows read no parameter.
_TOMOPY_FILTER_PAR = (1.0,)


def _tomopy_filter(filter_name):
    if filter_name not in _TOMOPY_FILTERS:
        raise ValueError(f"filter {filter_name!r} has no counterpart in tomopy's gridrec; "
                         f"choose one of {tuple(_TOMOPY_FILTERS)}")
    return {"filter_name": _TOMOPY_FILTERS[filter_name], "filter_par": np.array(_TOMOPY_FILTER_PAR, np.float32)}


def _pad_columns(sinograms, centers, pad):
    """Zero columns on both sides up to our engine's padded length, the axis moved with them: gridrec pads
    only to the next power of two (none at 64 columns), so an object filling the detector wraps around."""
    extra = padded_length(sinograms.shape[-1], pad) - sinograms.shape[-1]
    left = extra // 2
    return np.pad(sinograms, ((0, 0), (0, 0), (left, extra - left))), centers + left


def tomopy_bytes_per_slice(angles: int, columns: int, pad=True) -> int:
    """What one slice costs on the tomopy route, in bytes: our padded copy of its sinogram and tomopy's own
    (angles × padded columns, float32, each), gridrec's complex grid of padded columns squared (8 bytes a
    cell) and the image, ours and tomopy's (columns², float32, each)."""
    padded = padded_length(columns, pad)
    return 4 * (2 * angles * padded + 2 * padded * padded + 2 * columns * columns)


def _tomopy(sinograms, theta, centers, algorithm, filter_name, ncore, pad):
    try:
        import tomopy
    except ImportError as err:
        raise RuntimeError(f"algorithm {algorithm!r} on backend 'tomopy' needs tomopy, which is not on PyPI: "
                           "conda install -c conda-forge tomopy (see docs/recon.md)") from err
    import os

    columns = sinograms.shape[-1]
    kwargs = {}
    if algorithm == "gridrec":
        # gridrec centres its columns × columns grid on the axis whatever the row length: the crop is its own
        sinograms, centers = _pad_columns(sinograms, centers, pad)
        kwargs = {**_tomopy_filter(filter_name), "num_gridx": columns, "num_gridy": columns}
    tomo = np.swapaxes(sinograms, 0, 1)  # tomopy wants (angles, slices, columns)
    if algorithm == "fbp":  # unfiltered (its C code reads no filter), so nothing to pad against
        centers = centers + 0.5  # tomopy's ray-driven algorithms put the centre at n/2, gridrec at (n−1)/2
    rec = tomopy.recon(tomo, theta, center=centers, algorithm=algorithm, sinogram_order=False,
                       ncore=ncore or os.cpu_count(), **kwargs)
    return np.ascontiguousarray(rec, dtype=np.float32)
