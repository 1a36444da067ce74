"""Checks shared by the public functions, so that each error reads the same everywhere."""

from __future__ import annotations

import numpy as np


def check_theta(theta, angles):
    """``theta`` as float64 radians, one per projection; rejects NaN/inf and angles in degrees."""
    theta = np.asarray(theta, dtype=np.float64).ravel()
    if theta.size != angles:
        raise ValueError(f"{theta.size} angles for {angles} projections: give one angle per projection")
    if not np.isfinite(theta).all():
        raise ValueError("theta contains NaN or infinite values")
    if np.ptp(theta) > 2 * np.pi + 0.1 or np.abs(theta).max() > 4 * np.pi:
        raise ValueError(f"theta spans {theta.min():.1f}..{theta.max():.1f}: these look like degrees; "
                         "pass radians (numpy.radians(theta))")
    return theta
