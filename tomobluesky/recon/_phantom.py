"""Test objects and a parallel-beam forward projector (same geometry as ``_fbp``)."""

from __future__ import annotations

import numpy as np

# Modified Shepp-Logan (Toft's higher-contrast values): value, semi-axes a, b,
# centre x0, y0 (fractions of the half-width), rotation in degrees.
_ELLIPSES = [
    (1.0, 0.69, 0.92, 0.0, 0.0, 0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0),
]


def shepp_logan(n: int, scale: float = 1.0, *, supersample: int = 1) -> np.ndarray:
    """The modified Shepp-Logan head phantom on an n×n grid (y up), float32.

    ``supersample`` > 1 averages that many sub-samples per pixel in x and y
    (the mean attenuation over each pixel's area, the truth that a detector
    which integrates over its pixels can recover); 1 samples pixel centres.
    """
    if supersample > 1:
        fine = shepp_logan(n * supersample, scale)
        return fine.reshape(n, supersample, n, supersample).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    coords = (np.arange(n) - (n - 1) / 2) / (n / 2)
    x, y = np.meshgrid(coords, -coords)
    image = np.zeros((n, n))
    for value, a, b, x0, y0, phi in _ELLIPSES:
        a, b = a * scale, b * scale
        c, s = np.cos(np.radians(phi)), np.sin(np.radians(phi))
        xr, yr = (x - x0 * scale) * c + (y - y0 * scale) * s, -(x - x0 * scale) * s + (y - y0 * scale) * c
        image[(xr / a) ** 2 + (yr / b) ** 2 <= 1] += value
    return image.astype(np.float32)


def _slice_scales(n_slices: int) -> np.ndarray:
    z = (np.arange(n_slices) - (n_slices - 1) / 2) / max(n_slices / 2, 1)
    return np.sqrt(np.maximum(1 - (0.8 * z) ** 2, 0.05))


def shepp_logan_3d(n_slices: int, n: int, *, supersample: int = 1) -> np.ndarray:
    """A stack of Shepp-Logan slices whose ellipses shrink towards the ends, like an ellipsoid's cuts."""
    return np.stack([shepp_logan(n, scale=float(s), supersample=supersample) for s in _slice_scales(n_slices)])


def project_shepp_logan(n_slices: int | None, n: int, theta, center=None, *, detector_samples: int = 4) -> np.ndarray:
    """Exact line integrals of the phantom's ellipses (pixel units): the
    sinograms of ``shepp_logan_3d(n_slices, n)`` (or of ``shepp_logan(n)``
    when ``n_slices`` is None) without any projector's discretisation error.

    Each detector column averages ``detector_samples`` rays across its width,
    as a real detector integrates over its pixel (1: point samples at the
    column centres, which alias the phantom's sharp edges into streaks).
    Returns (slices, angles, n) float32 ((angles, n) for a 2-D phantom).
    """
    scales = np.ones(1) if n_slices is None else _slice_scales(n_slices)
    theta = np.atleast_1d(np.asarray(theta, dtype=np.float64))
    center = (n - 1) / 2 if center is None else float(center)
    half = n / 2
    offsets = (np.arange(detector_samples) - (detector_samples - 1) / 2) / detector_samples
    t = (np.arange(n)[:, None] - center + offsets[None, :]).ravel()[None, :]
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    out = np.zeros((len(scales), len(theta), n))
    for k, scale in enumerate(scales):
        for value, a, b, x0, y0, phi in _ELLIPSES:
            big_a, big_b = a * scale * half, b * scale * half
            shift = (x0 * cos + y0 * sin) * scale * half
            rel = theta[:, None] - np.radians(phi)
            s2 = (big_a * np.cos(rel)) ** 2 + (big_b * np.sin(rel)) ** 2
            inside = np.clip(s2 - (t - shift) ** 2, 0, None)
            rays = value * 2 * big_a * big_b / s2 * np.sqrt(inside)
            out[k] += rays.reshape(len(theta), n, detector_samples).mean(axis=2)
    out = out.astype(np.float32)
    return out[0] if n_slices is None else out


def cumulative_projection(u, theta: float, n: int, scale: float = 1.0) -> np.ndarray:
    """The running integral ∫_{-∞}^{u} p(t) dt of the phantom's projection p at
    angle ``theta`` (radians), for ``shepp_logan(n, scale)``; ``u`` in pixels
    from the rotation axis, float64.

    Differences of it give the exact mean over any detector interval, which is
    what a pixel of finite width records: no sub-sampling, no aliasing. Each
    ellipse contributes (2AB/r²)·∫ sqrt(r² − x²) dx, r² being its squared half
    width along the detector, and only the grid points inside its shadow need
    the arcsine; beyond it the ellipse adds its whole area times its value.
    """
    u = np.asarray(u, dtype=np.float64)
    half = n / 2 * scale
    out = np.zeros(u.shape)
    cos, sin = np.cos(theta), np.sin(theta)
    for value, a, b, x0, y0, phi in _ELLIPSES:
        big_a, big_b = a * half, b * half
        rel = theta - np.radians(phi)
        r2 = (big_a * np.cos(rel)) ** 2 + (big_b * np.sin(rel)) ** 2
        r, centre = np.sqrt(r2), (x0 * cos + y0 * sin) * half
        weight = value * 2 * big_a * big_b / r2
        if u.ndim == 1:  # a sorted grid: evaluate the arcsine only inside the shadow
            lo, hi = np.searchsorted(u, [centre - r, centre + r])
            x = u[lo:hi] - centre
            out[lo:hi] += weight * _half_disc_integral(x, r)
            out[hi:] += value * np.pi * big_a * big_b
        else:
            x = np.clip(u - centre, -r, r)
            out += weight * _half_disc_integral(x, r)
    return out


def _half_disc_integral(x, r):
    """∫_{-r}^{x} sqrt(r² − s²) ds for −r ≤ x ≤ r."""
    x = np.clip(x, -r, r)
    return 0.5 * (x * np.sqrt(np.maximum(r * r - x * x, 0.0)) + r * r * np.arcsin(x / r)) + np.pi * r * r / 4


def project(volume, theta, center=None, *, oversample: int = 2) -> np.ndarray:
    """Line integrals of ``volume`` (slices, n, n) in pixel units: (slices, angles, n).

    ``center``: the detector column where the rotation axis projects
    (default (n−1)/2). Rays are sampled every 1/``oversample`` pixel with
    bilinear interpolation.
    """
    from scipy.ndimage import map_coordinates

    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim == 2:
        volume = volume[None]
    slices, n, _ = volume.shape
    center = (n - 1) / 2 if center is None else float(center)
    t = np.arange(n) - center
    s = (np.arange(n * oversample) - (n * oversample - 1) / 2) / oversample
    out = np.empty((slices, len(np.atleast_1d(theta)), n), np.float32)
    for a, th in enumerate(np.atleast_1d(theta)):
        c, si = np.cos(th), np.sin(th)
        x = t[:, None] * c - s[None, :] * si
        y = t[:, None] * si + s[None, :] * c
        cols, rows = x + (n - 1) / 2, (n - 1) / 2 - y
        for k in range(slices):
            samples = map_coordinates(volume[k], [rows.ravel(), cols.ravel()], order=1, mode="constant")
            out[k, a] = samples.reshape(n, -1).sum(axis=1) / oversample
    return out


def project_disk(columns: int, theta, center: float, *, mu: float, radius: float, x0: float = 0.0,
                 y0: float = 0.0) -> np.ndarray:
    """Exact sinogram (angles, columns) of a uniform disk of attenuation ``mu`` per pixel, centred at
    (``x0``, ``y0``) pixels from the rotation axis: its line integrals averaged over each detector pixel's
    width, so no aliasing and a gain check to a fraction of a percent."""
    theta = np.asarray(theta, dtype=np.float64)

    def area_to(u):  # ∫_{-R}^{u} 2·sqrt(R² − s²) ds, up to a constant
        u = np.clip(u, -radius, radius)
        return u * np.sqrt(np.maximum(radius**2 - u**2, 0)) + radius**2 * np.arcsin(u / radius)

    u = (np.arange(columns) - center)[None] - (x0 * np.cos(theta) + y0 * np.sin(theta))[:, None]
    return (mu * (area_to(u + 0.5) - area_to(u - 0.5))).astype(np.float32)
