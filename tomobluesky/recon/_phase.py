"""Single-distance phase retrieval (Paganin et al. 2002).

Two doors to one filter. ``retrieve_phase`` is tomopy's: centimetres and
tomopy's ``alpha``. ``paganin`` takes SI units and the material's δ/β, the
numbers a beamline log holds; it converts them and calls ``retrieve_phase``.

The filter, with w the spatial frequency in cycles per cm and λ the
wavelength, is tomopy's 1 / (1 + λ·dist·w² / (4π·alpha)). Paganin's own
1 / (1 + (dist·δ/μ)·k²), with k = 2πw and μ = 4πβ/λ, is 1 / (1 + π·λ·dist·(δ/β)·w²):
the same filter when alpha = 1 / (4π²·δ/β).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

PLANCK_EV_S = 4.135667696e-15
LIGHT_CM_S = 299_792_458.0e2


def wavelength_cm(energy_kev: float) -> float:
    return PLANCK_EV_S * LIGHT_CM_S / (energy_kev * 1e3)


def alpha_from_delta_beta(delta_beta: float) -> float:
    """tomopy's ``alpha`` that makes its filter Paganin's for a material of this δ/β."""
    if not delta_beta > 0:
        raise ValueError(f"delta_beta must be positive, got {delta_beta}")
    return 1.0 / (4 * np.pi ** 2 * delta_beta)


def _pad_width(size: int, pixel_size: float, wavelength: float, dist: float) -> int:
    """tomopy's: each side, so the padded length nears the power of two above size + π·λ·dist/pixel²
    (the filter's reach, in pixels), which keeps the FFT's wraparound away from the image."""
    reach = np.ceil(np.pi * wavelength * dist / pixel_size ** 2)
    return int((2 ** np.ceil(np.log2(size + reach)) - size) // 2)


def retrieve_phase(tomo, pixel_size=1e-4, dist=50, energy=20, alpha=1e-3, pad=True, ncore=None, nchunk=None):
    """Paganin's filter on normalised projections (transmission, before −log), as ``tomopy.retrieve_phase``.

    ``tomo``: (angles, rows, columns) or one (rows, columns) image.
    ``pixel_size``: detector pixel in **cm**; ``dist``: sample to detector in
    **cm**; ``energy`` in keV; ``alpha``: tomopy's regularisation, which is
    Paganin's filter for ``alpha = alpha_from_delta_beta(δ/β)``; ``pad``:
    extend each image by its edge values to tomopy's padded size first.
    ``ncore``: FFT threads; ``nchunk``: accepted for tomopy's signature, unused.
    Returns a new float32 array; take ``minus_log`` of it as usual.
    """
    for name, value in (("pixel_size", pixel_size), ("dist", dist), ("energy", energy), ("alpha", alpha)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive, got {value}")
    proj = np.asarray(tomo, dtype=np.float32)
    images = proj[None] if proj.ndim == 2 else proj
    if images.ndim != 3:
        raise ValueError(f"tomo must be (angles, rows, columns) or (rows, columns), got shape {proj.shape}")
    rows, cols = images.shape[1:]
    wavelength = wavelength_cm(energy)
    pr, pc = (_pad_width(n, pixel_size, wavelength, dist) for n in (rows, cols)) if pad else (0, 0)
    shape = (rows + 2 * pr, cols + 2 * pc)
    w2 = sfft.fftfreq(shape[0], d=pixel_size)[:, None] ** 2 + sfft.rfftfreq(shape[1], d=pixel_size)[None, :] ** 2
    filt = (1.0 / (1.0 + wavelength * dist * w2 / (4 * np.pi * alpha))).astype(np.float32)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        padded = np.pad(image, ((pr, pr), (pc, pc)), mode="edge")
        spectrum = sfft.rfft2(padded, workers=ncore)
        spectrum *= filt
        out[i] = sfft.irfft2(spectrum, s=shape, workers=ncore)[pr:pr + rows, pc:pc + cols]
    return out if proj.ndim == 3 else out[0]


def paganin(projections, *, pixel_size_m: float, distance_m: float, energy_kev: float, delta_beta: float,
            pad: bool = True, ncore=None):
    """Paganin's filter in SI units: ``retrieve_phase`` with metres turned to cm and δ/β to tomopy's alpha.

    ``projections``: normalised transmission (before −log); ``pixel_size_m``
    and ``distance_m`` in metres, ``energy_kev`` in keV, ``delta_beta`` the
    material's δ/β. −ln of the result, divided by μ, is the projected thickness.
    """
    for name, value in (("pixel_size_m", pixel_size_m), ("distance_m", distance_m), ("energy_kev", energy_kev)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive, got {value}")
    return retrieve_phase(projections, pixel_size=pixel_size_m * 100, dist=distance_m * 100, energy=energy_kev,
                          alpha=alpha_from_delta_beta(delta_beta), pad=pad, ncore=ncore)
