"""Three orthogonal slices that sharpen as each projection arrives.

Filtered backprojection is a sum over angles, so a slice can be built one
projection at a time: filter the projection's rows with the ramp, smear them
back across the slice along the beam direction, add. After the last
projection the sum is the FBP of the whole scan (up to the angular weight,
which is known from the start document). This is what lets a viewer show the
sample a few frames into a scan.
"""

from __future__ import annotations

import math

import numpy as np

from tomobluesky.recon._interp import interp_padded, pad_rows


def ramp_filter(columns: int, window: str = "shepp") -> tuple[np.ndarray, int]:
    """The engine's windowed ramp for a real FFT of a row zero-padded to a power of two ≥ 2×columns."""
    from tomobluesky.recon import ramp_response

    length = 1 << int(math.ceil(math.log2(2 * columns)))
    return ramp_response(length, window)[: length // 2 + 1], length


def set_geometry(slices, rows: int, columns: int, center: float | None, row: int | None, num_angles: int,
                 angular_range: float, window: str) -> None:
    """What every live slice set starts from: its size, the axis (default the middle column), the axial
    row (default the middle), each view's weight, and the ramp filter. A full turn sees every ray twice,
    so its views weigh half."""
    slices.rows, slices.columns = rows, columns
    slices.center = (columns - 1) / 2 if center is None else float(center)
    slices.row = rows // 2 if row is None else int(row)
    slices.weight = math.radians(angular_range) / max(num_angles, 1) / (2 if angular_range >= 360 else 1)
    slices._filter, slices._length = ramp_filter(columns, window)


class IncrementalSlices:
    """Axial slice at detector row ``row`` plus two vertical slices through the
    rotation axis (along x and along y), accumulated one projection at a time.

    Coordinates follow the reconstruction grid: ``columns`` pixels across,
    the axis at detector column ``center``. ``num_angles`` over ``angular_range``
    degrees sets the weight of each projection.
    """

    def __init__(self, rows: int, columns: int, *, center: float | None = None, row: int | None = None,
                 num_angles: int = 180, angular_range: float = 180.0, window: str = "shepp"):
        set_geometry(self, rows, columns, center, row, num_angles, angular_range, window)
        coords = np.arange(columns, dtype=np.float32) - (columns - 1) / 2
        self._x, self._y = np.meshgrid(coords, coords[::-1])  # y points up in the image
        self._coords = coords
        self.reset()

    def reset(self):
        self.axial = np.zeros((self.columns, self.columns), np.float32)
        self.vertical_x = np.zeros((self.rows, self.columns), np.float32)
        self.vertical_y = np.zeros((self.rows, self.columns), np.float32)
        self.angles_deg: list[float] = []

    def set_row(self, row: int):
        """Move the axial slice; it restarts from the next projection on."""
        if not 0 <= row < self.rows:
            raise ValueError(f"row {row} is outside the detector's {self.rows} rows")
        self.row = int(row)
        self.axial[:] = 0

    def _filtered(self, attenuation: np.ndarray) -> np.ndarray:
        from scipy import fft

        spectrum = fft.rfft(attenuation, n=self._length, axis=-1, workers=-1)
        spectrum *= self._filter
        return fft.irfft(spectrum, n=self._length, axis=-1, workers=-1)[..., : self.columns]

    def add(self, attenuation: np.ndarray, angle_deg: float):
        """Add one projection (rows × columns, already −log of the normalised frame)."""
        theta = math.radians(angle_deg)
        c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
        # padded once, read three times: zeros beyond the detector's edges
        q = pad_rows(self._filtered(np.asarray(attenuation, dtype=np.float32)).astype(np.float32, copy=False))
        q *= np.float32(self.weight)
        t_axial = self._x * c + self._y * s + np.float32(self.center)
        self.axial += interp_padded(q[self.row], t_axial)
        self.vertical_x += interp_padded(q, self._coords * c + np.float32(self.center))
        self.vertical_y += interp_padded(q, self._coords[::-1] * s + np.float32(self.center))
        self.angles_deg.append(float(angle_deg))

    def coverage_deg(self) -> float:
        return float(np.ptp(self.angles_deg)) if self.angles_deg else 0.0
