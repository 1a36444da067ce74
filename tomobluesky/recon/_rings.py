"""Ring artefact removal in the sinogram (Vo, Atwood & Drakopoulos 2018, Opt. Express 26:28396).

A ring in the image is a stripe in the sinogram: a detector column whose
response differs from its neighbours' at every angle. Two of Vo's family:

* ``"sort"`` (his algorithm 3): sort each column over the angles, median
  filter across columns, put the values back in angle order. In the sorted
  image a stripe is a column that disagrees with its neighbours at every
  intensity level, while real features have been spread out by the sort.
* ``"filter"`` (algorithm 2): split each column into its smooth part along
  the angles (a Gaussian) and the rest, remove stripes from the smooth part
  by sorting, and add the rest back, so fine angular detail is untouched.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

METHODS = ("sort", "filter")


def _sorting(sino: np.ndarray, size: int) -> np.ndarray:
    order = np.argsort(sino, axis=0, kind="stable")
    smoothed = median_filter(np.take_along_axis(sino, order, axis=0), size=(1, size), mode="reflect")
    restored = np.empty_like(sino)
    np.put_along_axis(restored, order, smoothed, axis=0)
    return restored


def default_size(columns: int) -> int:
    """Vo's 21–31 columns suit 2k–3k detectors; on narrow ones a wide median
    blurs the object itself, so scale it: an odd number near columns/100, 5..31."""
    size = int(np.clip(round(columns / 100), 5, 31))
    return size + 1 - size % 2


def remove_rings(sinograms, *, method: str = "sort", size: int | None = None, sigma: float = 3.0):
    """Remove stripes from (angles, columns) or (slices, angles, columns) sinograms.

    ``size``: width (columns, odd) of the median filter across columns; make
    it larger than the widest stripe (default: ``default_size(columns)``).
    ``sigma``: for ``method="filter"``, the Gaussian's width along the
    angles. Returns float32 of the input shape.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ring-removal method {method!r}; choose one of {METHODS}")
    sino = np.asarray(sinograms, dtype=np.float32)
    size = default_size(sino.shape[-1]) if size is None else size
    if size < 3 or size % 2 == 0:
        raise ValueError("size must be an odd number >= 3")
    if sino.ndim == 2:
        return remove_rings(sino[None], method=method, size=size, sigma=sigma)[0]
    if sino.ndim != 3:
        raise ValueError(f"sinograms must be (slices, angles, columns), got {sino.shape}")
    if not np.isfinite(sino).all():
        raise ValueError("sinograms contain NaN or infinite values")
    out = np.empty_like(sino)
    for k, s in enumerate(sino):
        if method == "sort":
            out[k] = _sorting(s, size)
        else:
            smooth = gaussian_filter1d(s, sigma, axis=0, mode="wrap")
            out[k] = _sorting(smooth, size) + (s - smooth)
    return out
