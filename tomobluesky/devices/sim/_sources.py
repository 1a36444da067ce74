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

from tomobluesky.dxchange import theta_degrees

from ._analytic import PhantomProjector, thread_pool

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
    (which is what makes rings), ``noise`` adds counting noise.

    Frames are exact line integrals of the phantom's ellipses averaged over
    each detector pixel (see ``_analytic``), computed per frame without any
    voxel volume; ``volume`` builds the voxel truth only when a test asks.
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
        self._noise_bank: NoiseBank | None = None
        self._projector: PhantomProjector | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_slices, self.n_columns)

    @property
    def volume(self) -> np.ndarray:
        """The true attenuation per pixel, (slices, n, n), for checking
        reconstructions: each voxel's mean over its area (4 × 4 sub-samples),
        the truth that projections averaged over detector pixels reconstruct
        to. Built on first use only; frames never need it."""
        if self._volume is None:
            from tomobluesky.recon import shepp_logan_3d

            vol = shepp_logan_3d(self.n_slices, self.n_columns, supersample=4)
            self._volume = (vol * self.attenuation_scale).astype(np.float32)
        return self._volume

    @property
    def center(self) -> float:
        """The detector column of the rotation axis (tomopy convention)."""
        return (self.n_columns - 1) / 2 + self.axis_offset

    def _geometry(self) -> PhantomProjector:
        """The projector for the current size and axis (rebuilt if a field changed)."""
        p = self._projector
        if p is None or (p.n_slices, p.n_columns, p.center) != (self.n_slices, self.n_columns, self.center):
            self._projector = p = PhantomProjector(self.n_slices, self.n_columns, self.center)
        return p

    def _noise(self) -> np.ndarray | None:
        """Unit-variance noise for one frame, or None when noise is off."""
        if not self.noise:
            return None
        if self._noise_bank is None or self._noise_bank.shape != self.shape:
            self._noise_bank = NoiseBank(self._rng, self.shape)
        return self._noise_bank.frame()

    def _uniform(self, mean: float) -> np.ndarray:
        """A frame of constant expected counts, with counting noise."""
        noise = self._noise()
        if noise is None:
            return np.full(self.shape, mean, np.float32)
        return add_counting_noise(np.float32(mean), noise, np.empty(self.shape, np.float32))

    def dark(self) -> np.ndarray:
        return self._uniform(self.dark_counts)

    def flat(self) -> np.ndarray:
        return self._uniform(self.dark_counts + self.flat_counts)

    def projection(self, angle_deg: float) -> np.ndarray:
        projector = self._geometry()
        table = projector.table(math.radians(angle_deg))
        noise = self._noise()
        beam = (self.flat_counts * self._gain).astype(np.float32)
        out = np.empty(self.shape, np.float32)

        def fill(block):
            mean = self._expected_counts(projector, table, block, beam)
            spread = None if noise is None else np.sqrt(mean)  # shared by the block and its mirror
            for target, rows in self._mirrored(block.rows):
                if noise is None:
                    out[target] = mean[rows]
                else:
                    add_counting_noise(mean[rows], noise[target], out[target], spread[rows])

        if len(projector.blocks) == 1:
            fill(projector.blocks[0])
        else:
            list(thread_pool().map(fill, projector.blocks))
        return out

    def _expected_counts(self, projector, table, block, beam: np.ndarray) -> np.ndarray:
        """dark + flat · gain · exp(−μ) for one block of unique rows, float32."""
        mean = projector.line_integrals(table, block, scale=-self.attenuation_scale)
        np.exp(mean, out=mean)
        mean *= beam
        mean += np.float32(self.dark_counts)
        return mean

    def _mirrored(self, rows: slice):
        """(frame rows, block rows) pairs: the block itself and its mirror image
        below the middle (rows z and n_slices − 1 − z see the same ellipses)."""
        n, unique = self.n_slices, (self.n_slices + 1) // 2
        yield rows, slice(None)
        stop = min(rows.stop, n - unique)  # the middle row of an odd count has no twin
        if stop > rows.start:
            # frame rows n − stop … n − 1 − start, top down, are block rows stop − 1 − start … 0
            yield slice(n - stop, n - rows.start), slice(stop - rows.start - 1, None, -1)

    def metadata(self) -> dict:
        return {
            "sample_name": self.sample_name,
            "pixel_size": self.pixel_size_um,
            "energy": self.energy_kev,
            "source": "phantom",
            "true_center": self.center,
        }


def add_counting_noise(mean, noise: np.ndarray, out: np.ndarray, spread=None) -> np.ndarray:
    """mean + sqrt(mean) · noise into ``out``: Poisson counting noise in its
    Gaussian form (variance = mean), accurate at the hundreds to tens of
    thousands of counts simulated here and far cheaper than a Poisson draw.
    ``spread`` is sqrt(mean) when the caller already has it."""
    np.multiply(noise, np.sqrt(mean) if spread is None else spread, out=out)
    out += mean
    return out


class NoiseBank:
    """Standard-normal numbers drawn once and read at a random offset per frame.

    Drawing 4 million normals takes about 60 ms, more than the rest of a
    2048² frame, so frames reuse one bank of twice the frame size: a speed
    trick, not physics. Two frames share noise only as a shifted copy, which
    neither a reconstruction nor a mean/variance check can tell from fresh
    noise. The offsets come from the source's seeded generator, so frames stay
    reproducible.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int]):
        self.shape = tuple(shape)
        self._rng = rng
        self._size = self.shape[0] * self.shape[1]
        self._bank = rng.standard_normal(2 * self._size, dtype=np.float32)

    def frame(self) -> np.ndarray:
        start = int(self._rng.integers(0, self._size + 1))
        return self._bank[start:start + self._size].reshape(self.shape)


class ReplaySource:
    """Replays a real Data Exchange scan: its darks, flats and the projection
    nearest each requested angle.

    Frames are read from the file one at a time, when asked for, so a scan
    larger than memory replays in the memory of one frame. The file stays
    open between frames (``close()`` releases it; the next frame reopens it).

    Angles in the file may be stored in degrees (as in tooth.h5) or radians;
    values larger than 2π are taken as degrees.
    """

    def __init__(self, path: str | Path | None = None, *, sample_name: str | None = None):
        self.path = Path(path) if path is not None else default_tooth_path()
        self._file: h5py.File | None = None
        self.sample_name = sample_name or self.path.stem
        self._next_dark = 0
        self._next_flat = 0
        try:
            self._read_layout()
        except BaseException:
            self.close()  # a file that failed a check is not kept open
            raise

    def _read_layout(self) -> None:
        """Shapes and angles only: no frame is read here."""
        data, flats, darks = (self._dataset(name) for name in ("data", "data_white", "data_dark"))
        theta = theta_degrees(self._dataset("theta"))
        if data.ndim != 3:
            raise SourceError(f"{self.path}: projections must be (angles, rows, columns), got shape {data.shape}")
        if theta.size != data.shape[0]:
            raise SourceError(f"{self.path}: {theta.size} angles for {data.shape[0]} projections")
        if flats.shape[1:] != data.shape[1:] or darks.shape[1:] != data.shape[1:]:
            raise SourceError(f"{self.path}: flats/darks shape does not match projections")
        if len(flats) == 0 or len(darks) == 0:
            raise SourceError(f"{self.path}: the scan has no flat or no dark frames")
        self._counts = {"data_white": len(flats), "data_dark": len(darks)}
        self._shape = tuple(int(n) for n in data.shape[1:])
        self.theta_deg = theta
        self._step = float(np.median(np.diff(np.sort(theta)))) if theta.size > 1 else 0.0

    # --- the file -------------------------------------------------------------
    def _open(self) -> h5py.File:
        if self._file is None:
            try:
                self._file = h5py.File(self.path, "r")
            except FileNotFoundError:
                raise SourceError(f"Data Exchange file not found: {self.path}") from None
            except OSError as err:
                raise SourceError(f"cannot read HDF5 file {self.path}: {err}") from None
        return self._file

    def _dataset(self, name: str) -> h5py.Dataset:
        try:
            return self._open()["/exchange/" + name]
        except KeyError:
            raise SourceError(f"{self.path} is not a Data Exchange scan: missing '/exchange/{name}'") from None

    def _frame(self, name: str, index: int) -> np.ndarray:
        """One frame, read now, as float32 (uint16 files are converted here)."""
        try:
            return np.asarray(self._dataset(name)[index], dtype=np.float32)
        except OSError as err:
            raise SourceError(f"cannot read frame {index} of /exchange/{name} in {self.path}: {err}") from None

    def close(self) -> None:
        """Release the file handle; a later frame reopens the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- what the camera asks -------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def angle_range_deg(self) -> tuple[float, float]:
        half = self._step / 2
        return (float(self.theta_deg.min()) - half, float(self.theta_deg.max()) + half)

    def dark(self) -> np.ndarray:
        frame = self._frame("data_dark", self._next_dark % self._counts["data_dark"])
        self._next_dark += 1
        return frame

    def flat(self) -> np.ndarray:
        frame = self._frame("data_white", self._next_flat % self._counts["data_white"])
        self._next_flat += 1
        return frame

    def nearest_index(self, angle_deg: float) -> int:
        """Index of the stored projection whose angle is nearest ``angle_deg``."""
        lo, hi = self.angle_range_deg
        if not lo <= angle_deg <= hi:
            raise SourceError(
                f"{self.path.name} covers {lo:.3f}..{hi:.3f} deg; cannot serve a projection at {angle_deg:.3f} deg"
            )
        return int(np.argmin(np.abs(self.theta_deg - angle_deg)))

    def projection(self, angle_deg: float) -> np.ndarray:
        return self._frame("data", self.nearest_index(angle_deg))

    def metadata(self) -> dict:
        return {
            "sample_name": self.sample_name,
            "pixel_size": None,
            "energy": None,
            "source": f"replay:{self.path}",
            "attribution": TOOTH_ATTRIBUTION if self.path.name == "tooth.h5" else None,
        }
