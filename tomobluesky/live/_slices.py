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


def ramp_filter(columns: int, window: str = "shepp") -> tuple[np.ndarray, int]:
    """Frequency response of the ramp filter on a zero-padded row, and the padded length."""
    length = 1 << int(math.ceil(math.log2(2 * columns)))
    freq = np.fft.rfftfreq(length)  # cycles per pixel
    response = np.abs(freq)
    if window == "shepp":
        response = response * np.sinc(freq)
    elif window not in ("ramp", "ram-lak"):
        raise ValueError(f"unknown filter window {window!r}; use 'shepp' or 'ramp'")
    return response.astype(np.float32), length


class IncrementalSlices:
    """Axial slice at detector row ``row`` plus two vertical slices through the
    rotation axis (along x and along y), accumulated one projection at a time.

    Coordinates follow the reconstruction grid: ``columns`` pixels across,
    the axis at detector column ``center``. ``num_angles`` over ``angular_range``
    degrees sets the weight of each projection.
    """

    def __init__(self, rows: int, columns: int, *, center: float | None = None, row: int | None = None,
                 num_angles: int = 180, angular_range: float = 180.0, window: str = "shepp"):
        self.rows, self.columns = rows, columns
        self.center = (columns - 1) / 2 if center is None else float(center)
        self.row = rows // 2 if row is None else int(row)
        self.weight = math.radians(angular_range) / max(num_angles, 1) / (2 if angular_range >= 360 else 1)
        self._filter, self._length = ramp_filter(columns, window)
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
        spectrum = np.fft.rfft(attenuation, n=self._length, axis=-1)
        return np.fft.irfft(spectrum * self._filter, n=self._length, axis=-1)[..., : self.columns].astype(np.float32)

    @staticmethod
    def _sample(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Linear interpolation of each row at ``positions`` (columns), zero outside."""
        left = np.floor(positions).astype(np.intp)
        w = (positions - left).astype(np.float32)
        n = rows.shape[-1]
        valid = (left >= 0) & (left < n - 1)
        left = np.clip(left, 0, n - 2)
        out = rows[..., left] * (1 - w) + rows[..., left + 1] * w
        return np.where(valid, out, 0)

    def add(self, attenuation: np.ndarray, angle_deg: float):
        """Add one projection (rows × columns, already −log of the normalised frame)."""
        theta = math.radians(angle_deg)
        c, s = math.cos(theta), math.sin(theta)
        q = self._filtered(np.asarray(attenuation, dtype=np.float32))
        t_axial = self._x * c + self._y * s + self.center
        self.axial += self.weight * self._sample(q[self.row], t_axial)
        self.vertical_x += self.weight * self._sample(q, self._coords * c + self.center)
        self.vertical_y += self.weight * self._sample(q, self._coords[::-1] * s + self.center)
        self.angles_deg.append(float(angle_deg))

    def coverage_deg(self) -> float:
        return float(np.ptp(self.angles_deg)) if self.angles_deg else 0.0
