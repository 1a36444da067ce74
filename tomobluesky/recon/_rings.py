"""Ring artefact removal in the sinogram (Vo, Atwood & Drakopoulos 2018, sorting-based)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter


def remove_rings(sinograms, *, size: int = 21):
    """Stripe removal by sorting: sort each detector column over the angles,
    median-filter across columns (a stripe is a column that disagrees with its
    neighbours at every intensity level), then put the values back in angle
    order. Works on (angles, columns) or (slices, angles, columns)."""
    sino = np.asarray(sinograms, dtype=np.float32)
    if sino.ndim == 2:
        return remove_rings(sino[None], size=size)[0]
    if sino.ndim != 3:
        raise ValueError(f"sinograms must be (slices, angles, columns), got {sino.shape}")
    if size < 3 or size % 2 == 0:
        raise ValueError("size must be an odd number >= 3")
    out = np.empty_like(sino)
    for k, s in enumerate(sino):
        order = np.argsort(s, axis=0)
        sorted_ = np.take_along_axis(s, order, axis=0)
        smoothed = median_filter(sorted_, size=(1, size), mode="reflect")
        restored = np.empty_like(s)
        np.put_along_axis(restored, order, smoothed, axis=0)
        out[k] = restored
    return out
