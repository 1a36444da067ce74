"""Single-distance phase retrieval (Paganin et al. 2002)."""

from __future__ import annotations

import numpy as np

PLANCK_EV_S = 4.135667696e-15
LIGHT_M_S = 299_792_458.0


def wavelength_m(energy_kev: float) -> float:
    return PLANCK_EV_S * LIGHT_M_S / (energy_kev * 1e3)


def retrieve_phase(projections, *, pixel_size: float, distance: float, energy: float, delta_beta: float,
                   pad: bool = True):
    """Paganin's filter on normalised projections (transmission, not −log).

    ``pixel_size`` in metres, ``distance`` (sample to detector) in metres,
    ``energy`` in keV, ``delta_beta`` the ratio δ/β of the material. Returns
    the filtered transmission; take −log of it as usual (the result is then
    proportional to the projected thickness).
    """
    proj = np.asarray(projections, dtype=np.float32)
    if proj.ndim == 2:
        proj = proj[None]
    for name, v in (("pixel_size", pixel_size), ("distance", distance), ("energy", energy),
                    ("delta_beta", delta_beta)):
        if not v > 0:
            raise ValueError(f"{name} must be positive, got {v}")
    rows, cols = proj.shape[1:]
    pr, pc = (rows, cols) if pad else (0, 0)
    shape = (rows + 2 * pr // 2, cols + 2 * pc // 2)
    ky = 2 * np.pi * np.fft.fftfreq(shape[0], d=pixel_size)
    kx = 2 * np.pi * np.fft.fftfreq(shape[1], d=pixel_size)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    # 1 / (1 + (z δ / μ) k²) with μ = 4πβ/λ: z δ/μ = z λ (δ/β) / (4π)
    filt = 1.0 / (1.0 + distance * wavelength_m(energy) * delta_beta / (4 * np.pi) * k2)
    out = np.empty_like(proj)
    for i, p in enumerate(proj):
        padded = np.pad(p, ((pr // 2, pr // 2), (pc // 2, pc // 2)), mode="edge") if pad else p
        filtered = np.real(np.fft.ifft2(np.fft.fft2(padded) * filt))
        out[i] = filtered[pr // 2:pr // 2 + rows, pc // 2:pc // 2 + cols]
    return out if np.ndim(projections) == 3 else out[0]
