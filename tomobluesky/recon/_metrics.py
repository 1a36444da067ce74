"""Quality of a reconstruction against the truth, inside the reconstruction circle."""

from __future__ import annotations

import numpy as np


def circle_mask(n: int, fraction: float = 0.95) -> np.ndarray:
    coords = np.arange(n) - (n - 1) / 2
    return np.hypot(*np.meshgrid(coords, coords)) <= fraction * n / 2


def _fit_scale(image, truth, mask):
    a, b = image[mask].astype(np.float64), truth[mask].astype(np.float64)
    denom = float(a @ a)
    return (float(a @ b) / denom) if denom > 0 else 1.0


def _square_pair(image, truth):
    """Both as float64, and the circle of their size; they must be one n×n image each (the circle is the
    reconstruction's, so a rectangle or two sizes has none), else numpy's bare IndexError would say so."""
    image, truth = np.asarray(image, np.float64), np.asarray(truth, np.float64)
    if image.ndim != 2 or image.shape[0] != image.shape[1] or truth.shape != image.shape:
        raise ValueError(f"image and truth must both be one square (n, n) image of the same n, got {image.shape} "
                         f"and {truth.shape}")
    return image, truth, circle_mask(image.shape[0])


def rmse_in_circle(image, truth, *, fit=True) -> float:
    """RMSE inside the circle after a least-squares gain fit (if ``fit``)."""
    image, truth, mask = _square_pair(image, truth)
    k = _fit_scale(image, truth, mask) if fit else 1.0
    return float(np.sqrt(np.mean((k * image[mask] - truth[mask]) ** 2)))


def ssim_in_circle(image, truth, *, fit=True) -> float:
    """Mean SSIM over the circle after a least-squares gain fit (if ``fit``)."""
    from skimage.metrics import structural_similarity

    image, truth, mask = _square_pair(image, truth)
    k = _fit_scale(image, truth, mask) if fit else 1.0
    data_range = float(truth[mask].max() - truth[mask].min()) or 1.0
    _, ssim_map = structural_similarity(k * image, truth, data_range=data_range, full=True)
    return float(ssim_map[mask].mean())
