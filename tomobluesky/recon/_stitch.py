"""Half-acquisition (offset-axis 360°) scans turned into 180° sinograms.

With the rotation axis near one edge of the detector, a 360° scan sees each
half of the object in turn: the projection at θ + 180° is the mirror image
of the one at θ about the axis, so joining each row to the mirrored row half
a turn later gives a sinogram twice as wide over 180°. The two overlap by
twice the axis' distance from the detector edge; there they are blended
linearly, and, if no centre is given, the overlap where they agree best
fixes the axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._interp import interp_linear
from ._validate import check_theta


@dataclass(frozen=True)
class Stitched:
    sinograms: np.ndarray  # (slices, angles over 180°, columns) float32
    theta: np.ndarray  # radians, the first half-turn of the input's angles
    center: float  # the axis' column in ``sinograms`` (tomopy convention)
    input_center: float  # the axis' column in the input detector
    details: dict


def _pairs(theta: np.ndarray):
    """Indices (first half-turn, rows half a turn later)."""
    step = np.median(np.abs(np.diff(theta))) if len(theta) > 1 else np.pi
    first = np.flatnonzero(theta - theta[0] < np.pi - step / 2)
    later = np.array([np.argmin(np.abs(theta - (theta[i] + np.pi))) for i in first], dtype=np.intp)  # int when empty
    miss = np.abs(theta[later] - theta[first] - np.pi)
    if len(first) == 0 or miss.max() > step / 2 + 1e-9:
        raise ValueError("stitch_360 needs a scan over 360° with an angle opposite each angle of the first half-turn")
    return first, later


def _stitch_right(direct, opposite, center):
    """Axis near the right edge at ``center``; output column u ↔ t = u − center."""
    cols = direct.shape[-1]
    width = int(round(2 * center)) + 1
    u = np.arange(width)
    mirrored = interp_linear(opposite, 2 * center - u)  # p(θ+π, −t) = p(θ, t)
    out = np.zeros(direct.shape[:-1] + (width,), np.float32)
    out[..., :cols] = direct[..., :width] if width < cols else direct
    lo, hi = 2 * center - (cols - 1), cols - 1  # the overlap, in output columns
    ramp = np.clip((u - lo) / max(hi - lo, 1e-9), 0, 1).astype(np.float32)  # 0: direct only, 1: mirrored only
    ramp[u > cols - 1] = 1.0
    return out * (1 - ramp) + mirrored * ramp


def _overlap_mismatch(direct, opposite, center):
    cols = direct.shape[-1]
    u = np.arange(int(np.ceil(2 * center - (cols - 1))), cols)
    mirrored = interp_linear(opposite, 2 * center - u)
    a, b = direct[..., u], mirrored
    energy = np.mean(a ** 2) + np.mean(b ** 2)
    if energy < 1e-2 * 2 * np.mean(direct ** 2):  # an empty overlap agrees trivially: no evidence
        return np.inf
    return float(np.mean((a - b) ** 2) / energy)


def stitch_360(sinograms, theta, center=None, *, min_overlap: int = 8) -> Stitched:
    """(slices, angles over 360°, columns) half-acquisition sinograms → 180° ones.

    ``center``: the axis' detector column (tomopy convention), near either
    edge; None searches it by matching the overlap of opposite projections,
    in half-pixel steps refined by a parabola. Returns a ``Stitched`` with
    the wide sinograms, their angles and their centre, ready for
    ``reconstruct(s.sinograms, s.theta, s.center)``.
    """
    sino = np.asarray(sinograms, dtype=np.float32)
    two_d = sino.ndim == 2
    sino = sino[None] if two_d else sino
    if sino.ndim != 3:
        raise ValueError(f"sinograms must be (slices, angles, columns), got {sino.shape}")
    if not np.isfinite(sino).all():
        raise ValueError("sinograms contain NaN or infinite values")
    theta = check_theta(theta, sino.shape[1])
    first, later = _pairs(theta)
    cols = sino.shape[2]
    direct, opposite = sino[:, first], sino[:, later]
    details = {}
    if center is None:
        sample = slice(None, None, max(1, len(first) // 90))
        right = np.arange(cols / 2 + min_overlap / 2, cols - 1 - min_overlap / 2 + 1e-9, 0.5)
        scores_r = np.array([_overlap_mismatch(direct[:, sample], opposite[:, sample], c) for c in right])
        left_scores = np.array([_overlap_mismatch(direct[:, sample, ::-1], opposite[:, sample, ::-1], c)
                                for c in right])
        flip = left_scores.min() < scores_r.min()
        scores = left_scores if flip else scores_r
        best = int(np.argmin(scores))
        c = right[best]
        if not np.isfinite(scores[best]):
            raise ValueError("stitch_360 found no overlap with content at either edge; give the centre")
        if 0 < best < len(scores) - 1:
            a, b, d = scores[best - 1:best + 2]
            if np.isfinite(a - d) and a - 2 * b + d > 0:
                c += 0.25 * (a - d) / (a - 2 * b + d)
        center = cols - 1 - c if flip else c
        details = {"side": "left" if flip else "right", "mismatch": float(scores[best]),
                   "contrast": float(np.median(scores[np.isfinite(scores)]) / (scores[best] + 1e-30))}
    center = float(center)
    if not 0 <= center <= cols - 1:
        raise ValueError(f"center {center:.2f} lies outside the detector (columns 0..{cols - 1})")
    if center >= (cols - 1) / 2:
        out, new_center = _stitch_right(direct, opposite, center), center
    else:
        mirrored_center = cols - 1 - center
        out = _stitch_right(direct[..., ::-1], opposite[..., ::-1], mirrored_center)[..., ::-1]
        new_center = out.shape[-1] - 1 - mirrored_center
    out = np.ascontiguousarray(out, dtype=np.float32)
    return Stitched(out[0] if two_d else out, theta[first], float(new_center), center, details)
