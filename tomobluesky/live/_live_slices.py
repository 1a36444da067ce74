"""The live slices at detector rate: compiled folding, the axial slice kept as a sinogram.

Same three slices and the same definition as :class:`IncrementalSlices` (its
reference): the ramp-filtered rows of each view smeared back along the beam.
What differs is how the work is held, and one thing read differently:

* beyond the detector's columns the filtered rows are read with the ramp
  filter's tails, not zeros (see ``_kernels``): the slices then agree with the
  final volume's Fourier reconstruction when the axis is far off the middle;

* the axial slice is also kept in the sinogram domain: each view's filtered
  axial row is stored (O(columns) per frame), so a new centre redraws the
  axial slice exactly as if every view had been folded with it from the
  start, and a row is re-read only once;
* a few rows spread over the detector are kept as raw attenuation (the
  probe sinograms), for estimating the centre from the frames so far;
* the loops are numba kernels (``_kernels``): one pass over the frame;
* the vertical slices of one view (the ramp filter of every row, the larger
  share of the work, and their kernel) are made on a helper thread while the
  caller bins the next view and folds its axial row, filtered alone (the FFT
  and the kernels release the GIL): with two cores a view costs the longer of
  the two halves, not their sum. The helper never has more than one view in hand, so the
  slices are always read complete (``vertical_x``/``vertical_y`` wait for it).

The vertical slices cut through every detector row, so keeping their
sinograms would mean keeping every frame; after a centre change they
restart from the next view (``vertical_views`` says how many they hold).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _kernels
from ._slices import set_geometry

#: detector rows kept as raw sinograms for the centre estimate
PROBE_ROWS = 8
#: views kept for it at most (Vo's method resamples a half turn to 360 angles; this bounds memory on long scans)
PROBE_VIEWS = 4096

_helper: ThreadPoolExecutor | None = None


def _vertical_helper() -> ThreadPoolExecutor:
    """One thread, shared by every LiveSlices of the process, for the vertical slices' share of each view."""
    global _helper
    if _helper is None:
        _helper = ThreadPoolExecutor(1, thread_name_prefix="live-vertical")
    return _helper


class LiveSlices:
    """Axial slice at ``row`` and the two vertical slices through the axis, ``rows`` × ``columns``
    views (already binned, attenuation per pixel), the axis at column ``center``.

    ``num_angles`` over ``angular_range`` degrees sets each view's weight, as in IncrementalSlices.
    """

    def __init__(self, rows: int, columns: int, *, center: float | None = None, row: int | None = None,
                 num_angles: int = 180, angular_range: float = 180.0, window: str = "shepp",
                 overlap: bool | None = None):
        set_geometry(self, rows, columns, center, row, num_angles, angular_range, window)
        #: fold the vertical slices on the helper thread (default: when the machine has a second core)
        self.overlap = (os.cpu_count() or 1) > 1 if overlap is None else bool(overlap)
        self._pending = None  # the helper's view in hand
        self.probe_rows = np.unique(np.linspace(0, rows - 1, min(PROBE_ROWS, rows)).round().astype(int))
        self.angles_deg: list[float] = []
        self._probes: list[np.ndarray] = []  # per view: (probe rows, columns) attenuation
        self._probe_angles: list[float] = []
        self.reset_axial()
        self.reset_vertical()

    # --- state -----------------------------------------------------------------------------------
    def reset_axial(self):
        self.axial = np.zeros((self.columns, self.columns), np.float32)
        self._axial_rows: list[np.ndarray] = []  # filtered axial row of each view since the row was set
        self._axial_angles: list[float] = []

    def reset_vertical(self):
        self._settle()
        self._vertical_x = np.zeros((self.rows, self.columns), np.float32)
        self._vertical_y = np.zeros((self.rows, self.columns), np.float32)
        self.vertical_views = 0

    def _settle(self):
        """Wait for the helper's view (its error, if any, is raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    @property
    def vertical_x(self) -> np.ndarray:
        self._settle()
        return self._vertical_x

    @property
    def vertical_y(self) -> np.ndarray:
        self._settle()
        return self._vertical_y

    def set_row(self, row: int):
        """Move the axial slice; it restarts from the next view on."""
        if not 0 <= row < self.rows:
            raise ValueError(f"row {row} is outside the detector's {self.rows} rows")
        self.row = int(row)
        self.reset_axial()

    def set_center(self, center: float):
        """Use a new axis: the axial slice is redrawn from its stored rows, the vertical slices restart."""
        center = float(center)
        if not (math.isfinite(center) and 0 <= center <= self.columns - 1):
            raise ValueError(f"centre {center} lies outside the live columns 0..{self.columns - 1}")
        self.center = center
        self.axial[:] = 0
        if self._axial_rows:
            theta = np.radians(np.asarray(self._axial_angles))
            _kernels.backproject_axial(np.stack(self._axial_rows), np.cos(theta), np.sin(theta), center,
                                       np.full(len(theta), self.weight), self.axial)
        self.reset_vertical()

    def coverage_deg(self) -> float:
        return float(np.ptp(self.angles_deg)) if self.angles_deg else 0.0

    # --- folding ---------------------------------------------------------------------------------
    def _filtered(self, attenuation: np.ndarray, workers: int = -1) -> np.ndarray:
        from scipy import fft

        spectrum = fft.rfft(attenuation, n=self._length, axis=-1, workers=workers)
        spectrum *= self._filter
        return fft.irfft(spectrum, n=self._length, axis=-1, workers=workers)  # all of it: the tails are read too

    def _fold_vertical(self, attenuation, c, s, center):
        """The vertical slices' share of a view: every row filtered, then smeared onto both slices."""
        filtered = self._filtered(attenuation, workers=1 if self.overlap else -1)
        _kernels.backproject_vertical(filtered, c, s, center, self.weight, self._vertical_x, self._vertical_y)

    def add(self, attenuation: np.ndarray, angle_deg: float):
        """Fold one view (rows × columns attenuation, float32). With ``overlap`` the caller must not change
        ``attenuation`` afterwards: the helper thread filters it."""
        attenuation = np.asarray(attenuation, dtype=np.float32)
        if attenuation.shape != (self.rows, self.columns):
            raise ValueError(f"view of shape {attenuation.shape} does not match the live slices' "
                             f"{(self.rows, self.columns)}")
        theta = math.radians(angle_deg)
        c, s = math.cos(theta), math.sin(theta)
        self._settle()  # the previous view's vertical slices are done before this one adds to them
        if self.overlap:  # the helper filters every row and folds the vertical slices; here only the axial row
            self._pending = _vertical_helper().submit(self._fold_vertical, attenuation, c, s, self.center)
        else:
            self._fold_vertical(attenuation, c, s, self.center)
        axial_row = self._filtered(attenuation[self.row:self.row + 1], workers=1)[0].astype(np.float32, copy=False)
        _kernels.backproject_axial(axial_row[None], np.array([c]), np.array([s]), self.center,
                                   np.array([self.weight]), self.axial)
        self._axial_rows.append(axial_row)
        self._axial_angles.append(float(angle_deg))
        if len(self._probes) < PROBE_VIEWS:
            self._probes.append(attenuation[self.probe_rows].copy())
            self._probe_angles.append(float(angle_deg))
        self.angles_deg.append(float(angle_deg))
        self.vertical_views += 1

    # --- the centre from the views so far ----------------------------------------------------------
    def half_turn_covered(self, step_deg: float) -> bool:
        """Whether the views so far span a half turn (to within 1.5 angular steps): enough for Vo's method."""
        return self.coverage_deg() >= 180.0 - 1.5 * step_deg

    def estimate_center(self):
        """Vo's method on the probe rows' sinograms, resampled onto evenly spaced angles over the first
        half turn (views may have come in any order, with gaps); a :class:`~tomobluesky.recon.CenterResult`
        in live columns."""
        from tomobluesky import recon

        order = np.argsort(self._probe_angles)
        angles = np.radians(np.asarray(self._probe_angles)[order])
        sino = np.stack([self._probes[i] for i in order], axis=1)  # (probe rows, views, columns)
        count = min(len(angles), 360)
        grid = angles[0] + np.arange(count) * (np.pi / count)
        at = np.interp(grid, angles, np.arange(len(angles)))  # fractional view index, clamped at the ends
        lo = np.minimum(at.astype(int), len(angles) - 2)
        w = (at - lo).astype(np.float32)[None, :, None]
        even = sino[:, lo] * (1 - w) + sino[:, lo + 1] * w
        return recon.find_center(even, grid, method="vo")
