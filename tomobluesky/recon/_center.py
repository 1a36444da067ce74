"""Finding the centre of rotation: Vo's Fourier-space method and an independent
reconstruction-sharpness search, with a confidence from how they agree."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import shift as nd_shift

from ._validate import check_theta


@dataclass(frozen=True)
class CenterResult:
    center: float  # detector column of the axis ((columns − 1)/2 means centred)
    confidence: float  # 0..1
    method: str
    details: dict = field(default_factory=dict)


def _as_stack(sinogram) -> np.ndarray:
    sino = np.asarray(sinogram, dtype=np.float32)
    if sino.ndim == 2:
        sino = sino[None]
    if sino.ndim != 3:
        raise ValueError(f"sinogram must be (angles, columns) or (slices, angles, columns), got {sino.shape}")
    if not np.isfinite(sino).all():
        raise ValueError("sinogram contains NaN or infinite values")
    return sino


def _coverage_180(sino, theta):
    """The rows that cover [θ0, θ0 + 180°); Vo's method pairs them with their mirror."""
    theta = np.asarray(theta, dtype=np.float64)
    keep = theta - theta[0] < np.pi - 1e-6
    return sino[:, keep]


def _double_wedge_mask(rows: int, cols: int, ratio: float) -> np.ndarray:
    """Where a correct 360° sinogram has (almost) no energy: angular
    frequency larger than the object's radius allows at that column frequency."""
    nu = np.abs(np.fft.fftfreq(rows) * rows)[:, None]  # cycles per 360°
    k = np.abs(np.fft.fftfreq(cols))[None, :]  # cycles per pixel
    radius = ratio * cols / 2
    mask = nu > 2 * np.pi * radius * k + 2
    return mask


def _vo_metric(sino_stack, shifts, ratio):
    """Energy outside the double wedge of [sinogram; shifted mirror] per shift."""
    rows = 2 * sino_stack.shape[1]
    mask = _double_wedge_mask(rows, sino_stack.shape[2], ratio)
    mirrored = sino_stack[:, :, ::-1]
    metric = np.empty(len(shifts))
    for i, s in enumerate(shifts):
        if float(s).is_integer():
            moved = np.roll(mirrored, int(s), axis=2)
            if s > 0:
                moved[:, :, :int(s)] = mirrored[:, :, :1]
            elif s < 0:
                moved[:, :, int(s):] = mirrored[:, :, -1:]
        else:
            moved = nd_shift(mirrored, (0, 0, s), order=1, mode="nearest")
        both = np.concatenate([sino_stack, moved], axis=1)
        spectrum = np.abs(np.fft.fft2(both - both.mean(axis=(1, 2), keepdims=True)))
        metric[i] = spectrum[:, mask].mean()
    return metric


def find_center_vo(sinogram, theta, *, search=None, ratio=0.6, fine_step=0.25) -> CenterResult:
    """Vo, Drakopoulos, Atwood & Reinhard (2014): a 180° sinogram joined to its
    mirror is a valid 360° sinogram only for the right axis; any other shift
    puts energy outside the double wedge in its 2-D spectrum."""
    sino = _coverage_180(_as_stack(sinogram), theta)
    sino = sino[np.unique(np.linspace(0, len(sino) - 1, min(3, len(sino))).round().astype(int))]
    cols = sino.shape[2]
    mid = (cols - 1) / 2
    search = search if search is not None else cols // 4
    # coarse: whole-pixel shifts of a 2×-binned sinogram (4 detector pixels a step)
    binned = sino[:, :, : cols // 2 * 2].reshape(len(sino), sino.shape[1], -1, 2).mean(axis=3)
    coarse = np.arange(-search, search + 1, 1.0)  # binned shift ↔ full shift 2·s
    metric = _vo_metric(binned, coarse, ratio)
    best = 2 * coarse[np.argmin(metric)] + (cols % 2 == 0) * 0.0
    fine = np.arange(best - 4, best + 4 + 1e-9, 2 * fine_step)
    fine_metric = _vo_metric(sino, fine, ratio)
    s = fine[np.argmin(fine_metric)]
    depth = float((np.median(metric) - metric.min()) / (np.median(metric) + 1e-30))
    return CenterResult(mid + s / 2, float(np.clip(depth * 4, 0, 1)), "vo",
                        {"metric_depth": depth, "coarse_shifts": coarse.tolist(), "coarse_metric": metric.tolist()})


def _sharpness(image, mask):
    """Minus the fraction of the image's mass that is negative: a wrong axis
    paints negative crescents beside every edge (attenuation is never negative)."""
    values = image[mask]
    total = float(np.abs(values).sum()) or 1.0
    return -float(np.abs(values[values < 0]).sum()) / total


def find_center_sharpness(sinogram, theta, *, candidates=None, slices=3) -> CenterResult:
    """Reconstruct a few slices at each candidate centre; the image with the
    least negative mass marks the axis. Independent of Vo's method."""
    from ._metrics import circle_mask
    from ._nufft import nufft_fbp

    sino = _as_stack(sinogram)
    n_sl, _, cols = sino.shape
    picks = sino[np.unique(np.linspace(0, n_sl - 1, min(slices, n_sl)).round().astype(int))]
    mid = (cols - 1) / 2
    if candidates is None:
        candidates = np.arange(mid - cols / 8, mid + cols / 8 + 1e-9, 1.0)
    candidates = np.asarray(candidates, dtype=np.float64)
    mask = circle_mask(cols, 0.9)
    scores = np.zeros(len(candidates))
    for sl in picks:
        stack = np.repeat(sl[None], len(candidates), axis=0)
        images = nufft_fbp(stack, theta, candidates, filter_name="shepp")
        scores += [_sharpness(img, mask) for img in images]
    best = int(np.argmax(scores))
    # refine between neighbours with a parabola through the three best scores
    center = candidates[best]
    if 0 < best < len(candidates) - 1:
        a, b, c = scores[best - 1:best + 2]
        denom = a - 2 * b + c
        if denom < 0:
            center += 0.5 * (a - c) / denom * (candidates[1] - candidates[0])
    spread = float(np.ptp(scores)) or 1.0
    peak = float((scores[best] - np.median(scores)) / spread)
    return CenterResult(float(center), float(np.clip(peak, 0, 1)), "sharpness",
                        {"candidates": candidates.tolist(), "scores": scores.tolist()})


def find_center(sinogram, theta, *, method: str = "vo", **kwargs) -> CenterResult:
    """Detector column of the rotation axis from (slices, angles, columns) or (angles, columns)
    sinograms (normalised, −log), ``theta`` in radians.

    ``method``: ``"vo"`` (default), ``"sharpness"``, or ``"auto"`` (both; the
    answer is Vo's, refined by sharpness, and the confidence falls as they disagree).
    """
    if method not in ("vo", "sharpness", "auto"):
        raise ValueError(f"unknown centre method {method!r}; choose 'vo', 'sharpness' or 'auto'")
    theta = check_theta(theta, _as_stack(sinogram).shape[1])
    if method == "vo":
        return find_center_vo(sinogram, theta, **kwargs)
    if method == "sharpness":
        return find_center_sharpness(sinogram, theta, **kwargs)
    if method != "auto":
        raise ValueError(f"unknown centre method {method!r}; choose 'vo', 'sharpness' or 'auto'")
    vo = find_center_vo(sinogram, theta)
    around = np.arange(vo.center - 4, vo.center + 4 + 1e-9, 0.5)
    sharp = find_center_sharpness(sinogram, theta, candidates=around)
    gap = abs(vo.center - sharp.center)
    confidence = float(np.clip(1 - gap / 3, 0, 1) * max(vo.confidence, 0.5))
    return CenterResult(vo.center, confidence, "auto", {"vo": vo.center, "sharpness": sharp.center, "gap": gap})
