"""Frame sources for the simulated camera: what the sample looks like at an angle.

A source answers three questions the detector asks: a dark frame (shutter
closed), a flat frame (sample out of the beam) and a projection at a rotation
angle. Physics of the simulated camera lives in ``_camera``; a source only
supplies the sample's transmission and the beam's intensity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

DEFAULT_TOOTH = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "tooth.h5"
TOOTH_ATTRIBUTION = (
    "tooth.h5: parallel-beam micro-CT scan of a tooth measured at the Advanced Photon "
    "Source, from the tomopy project. BSD-3-Clause, Copyright (c) 2013-2019, "
    "UChicago Argonne, LLC."
)


class SourceError(ValueError):
    """The frame source cannot give what was asked (bad file, angle out of range)."""


def default_tooth_path() -> Path:
    """Where the shared tooth scan lives (override with TOMOBLUESKY_TOOTH)."""
    import os

    return Path(os.environ.get("TOMOBLUESKY_TOOTH", DEFAULT_TOOTH))


@dataclass
class PhantomSource:
    """A 3-D Shepp-Logan phantom seen by a parallel beam.

    ``axis_offset`` shifts the rotation axis from the detector centre (in
    columns), ``ring_strength`` adds a per-column gain the flats do not capture
    (which is what makes rings), ``noise`` scales Poisson counting noise.
    """

    n_slices: int = 16
    n_columns: int = 128
    axis_offset: float = 0.0
    noise: bool = True
    ring_strength: float = 0.0
    flat_counts: float = 20000.0
    dark_counts: float = 100.0
    attenuation_scale: float = 0.02  # attenuation per pixel at phantom value 1
    seed: int = 0
    pixel_size_um: float = 1.0
    energy_kev: float = 25.0
    sample_name: str = "shepp-logan phantom"
    angle_range_deg: tuple[float, float] = (-1e9, 1e9)
    _volume: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        self._rng = np.random.default_rng(self.seed)
        self._gain = 1.0 + self.ring_strength * self._rng.standard_normal(self.n_columns)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_slices, self.n_columns)

    @property
    def volume(self) -> np.ndarray:
        """The true attenuation per pixel, (slices, n, n), for checking reconstructions."""
        if self._volume is None:
            from tomobluesky.recon import shepp_logan_3d

            vol = shepp_logan_3d(self.n_slices, self.n_columns)
            self._volume = (vol * self.attenuation_scale).astype(np.float32)
        return self._volume

    @property
    def center(self) -> float:
        """The detector column of the rotation axis (tomopy convention)."""
        return (self.n_columns - 1) / 2 + self.axis_offset

    def _counts(self, mean: np.ndarray) -> np.ndarray:
        if not self.noise:
            return mean.astype(np.float32)
        return self._rng.poisson(mean).astype(np.float32)

    def dark(self) -> np.ndarray:
        return self._counts(np.full(self.shape, self.dark_counts))

    def flat(self) -> np.ndarray:
        return self._counts(np.full(self.shape, self.dark_counts + self.flat_counts))

    def projection(self, angle_deg: float) -> np.ndarray:
        from tomobluesky.recon import project

        line_integrals = project(self.volume, np.array([math.radians(angle_deg)]), center=self.center)[:, 0, :]
        beam = self.flat_counts * self._gain[None, :] * np.exp(-line_integrals)
        return self._counts(self.dark_counts + beam)

    def metadata(self) -> dict:
        return {
            "sample_name": self.sample_name,
            "pixel_size": self.pixel_size_um,
            "energy": self.energy_kev,
            "source": "phantom",
            "true_center": self.center,
        }


class ReplaySource:
    """Replays a real Data Exchange scan: its darks, flats and the projection
    nearest each requested angle.

    Angles in the file may be stored in degrees (as in tooth.h5) or radians;
    values larger than 2π are taken as degrees.
    """

    def __init__(self, path: str | Path | None = None, *, sample_name: str | None = None):
        self.path = Path(path) if path is not None else default_tooth_path()
        try:
            with h5py.File(self.path, "r") as f:
                self._projections = np.asarray(f["/exchange/data"], dtype=np.float32)
                self._flats = np.asarray(f["/exchange/data_white"], dtype=np.float32)
                self._darks = np.asarray(f["/exchange/data_dark"], dtype=np.float32)
                theta = np.asarray(f["/exchange/theta"], dtype=np.float64)
                units = f["/exchange/theta"].attrs.get("units", b"")
        except FileNotFoundError:
            raise SourceError(f"Data Exchange file not found: {self.path}") from None
        except KeyError as err:
            raise SourceError(f"{self.path} is not a Data Exchange scan: missing {err}") from None
        except OSError as err:
            raise SourceError(f"cannot read HDF5 file {self.path}: {err}") from None
        units = units.decode() if isinstance(units, bytes) else str(units)
        if units.lower().startswith("rad") or (not units and np.ptp(theta) <= 2 * math.pi + 1e-6):
            theta = np.degrees(theta)
        if theta.size != self._projections.shape[0]:
            raise SourceError(
                f"{self.path}: {theta.size} angles for {self._projections.shape[0]} projections"
            )
        if self._flats.shape[1:] != self._projections.shape[1:] or self._darks.shape[1:] != self._projections.shape[1:]:
            raise SourceError(f"{self.path}: flats/darks shape does not match projections")
        self.theta_deg = theta
        self._step = float(np.median(np.diff(np.sort(theta)))) if theta.size > 1 else 0.0
        self._next_dark = 0
        self._next_flat = 0
        self.sample_name = sample_name or self.path.stem

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self._projections.shape[1:])

    @property
    def angle_range_deg(self) -> tuple[float, float]:
        half = self._step / 2
        return (float(self.theta_deg.min()) - half, float(self.theta_deg.max()) + half)

    def dark(self) -> np.ndarray:
        frame = self._darks[self._next_dark % len(self._darks)]
        self._next_dark += 1
        return frame.copy()

    def flat(self) -> np.ndarray:
        frame = self._flats[self._next_flat % len(self._flats)]
        self._next_flat += 1
        return frame.copy()

    def projection(self, angle_deg: float) -> np.ndarray:
        lo, hi = self.angle_range_deg
        if not lo <= angle_deg <= hi:
            raise SourceError(
                f"{self.path.name} covers {lo:.3f}..{hi:.3f} deg; cannot serve a projection at {angle_deg:.3f} deg"
            )
        return self._projections[int(np.argmin(np.abs(self.theta_deg - angle_deg)))].copy()

    def metadata(self) -> dict:
        return {
            "sample_name": self.sample_name,
            "pixel_size": None,
            "energy": None,
            "source": f"replay:{self.path}",
            "attribution": TOOTH_ATTRIBUTION if self.path.name == "tooth.h5" else None,
        }
