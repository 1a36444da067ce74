"""Where a scan's frames live: runs of frames in HDF5 datasets, never the pixels.

A scan on disk is a list of :class:`FrameRun` per kind (projections, flats,
darks) and one angle per projection. The stop path reads it by *detector
rows* (sinogram slabs). The detector files are chunked one frame per chunk and
uncompressed, so a row slab is read with HDF5's chunk cache switched off:
HDF5 then reads only the selected rows of every chunk instead of whole
chunks, and reading the scan slab by slab costs about one pass over the file
(measured: 16 of 512 rows read 1/32 of the bytes). A compressed file must
decompress whole chunks, so each slab reads the file again; ``bytes_read``
counts what was really read so the caller can report the amplification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .. import dxchange
from ._resources import bytes_read
from ._roots import FrameReadError, open_dataset, regular_file

PROJECTIONS, FLATS, DARKS = "projections", "flats", "darks"
DXCHANGE = {PROJECTIONS: dxchange.PROJECTIONS, FLATS: dxchange.FLATS, DARKS: dxchange.DARKS}


def _dxchange_dataset(f, name: str, path: Path):
    """One dataset of a Data Exchange file, checked like every detector dataset (links looked at unfollowed)."""
    try:
        return open_dataset(f, name, path)
    except KeyError:
        raise FrameReadError(f"{path} is not a Data Exchange scan: missing {name!r}") from None


@dataclass(frozen=True)
class FrameRun:
    """Frames ``start``..``stop`` (exclusive) of ``dataset`` in ``path``, in scan order."""

    path: Path
    dataset: str
    start: int
    stop: int

    def __len__(self):
        return self.stop - self.start


def runs_from_indices(locations) -> list[FrameRun]:
    """Group ``(path, dataset, index)`` in scan order into runs of consecutive indices."""
    runs: list[FrameRun] = []
    for path, dataset, index in locations:
        last = runs[-1] if runs else None
        if last and last.path == Path(path) and last.dataset == dataset and last.stop == index:
            runs[-1] = FrameRun(last.path, dataset, last.start, index + 1)
        else:
            runs.append(FrameRun(Path(path), dataset, index, index + 1))
    return runs


@dataclass
class HDF5Scan:
    """A tomography scan as references into HDF5 files (the detector file is the frame store)."""

    projections: list[FrameRun]
    theta_deg: np.ndarray
    flats: list[FrameRun]
    darks: list[FrameRun]
    detector_shape: tuple[int, int]
    dtype: np.dtype | None = None  # as stored; None reads it from the first projections dataset
    bytes_read: int = 0
    _files: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.theta_deg = np.asarray(self.theta_deg, dtype=np.float64)
        if len(self.theta_deg) != self.num_projections:
            raise ValueError(f"{len(self.theta_deg)} angles for {self.num_projections} projections")
        for kind in (PROJECTIONS, FLATS, DARKS):
            if not getattr(self, kind):
                raise ValueError(f"the scan has no {kind}; a reconstruction needs projections, flats and darks")
        if self.dtype is None:
            self.dtype = self._dataset(self.projections[0]).dtype
        self.dtype = np.dtype(self.dtype)

    @classmethod
    def from_dxchange(cls, path: str | Path) -> "HDF5Scan":
        """A Data Exchange file (``/exchange/data``, ``data_white``, ``data_dark``, ``theta``)."""
        path = Path(path)
        if not path.exists():
            raise FrameReadError(f"Data Exchange file not found: {path}")
        regular_file(path)
        try:
            f = h5py.File(path, "r")
        except OSError as err:
            raise FrameReadError(f"{path} is not an HDF5 file ({err})") from None
        with f:
            ds = {name: _dxchange_dataset(f, name, path) for name in (*DXCHANGE.values(), dxchange.THETA)}
            counts = {kind: ds[name].shape[0] for kind, name in DXCHANGE.items()}
            shape = tuple(ds[DXCHANGE[PROJECTIONS]].shape[1:])
            dtype = ds[DXCHANGE[PROJECTIONS]].dtype
            theta = dxchange.theta_degrees(ds[dxchange.THETA])
        runs = {kind: [FrameRun(path, DXCHANGE[kind], 0, n)] for kind, n in counts.items()}
        return cls(runs[PROJECTIONS], theta, runs[FLATS], runs[DARKS], shape, np.dtype(dtype))

    @property
    def num_projections(self) -> int:
        return sum(len(r) for r in self.projections)

    @property
    def raw_bytes(self) -> int:
        """Bytes of every frame as stored (projections, flats and darks)."""
        frames = sum(len(r) for kind in (PROJECTIONS, FLATS, DARKS) for r in getattr(self, kind))
        return frames * self.detector_shape[0] * self.detector_shape[1] * self.dtype.itemsize

    # --- reading --------------------------------------------------------------
    def _dataset(self, run: FrameRun):
        f = self._files.get(run.path)
        if f is None:
            f = self._files[run.path] = _open(run.path)
        try:
            ds = open_dataset(f, run.dataset, run.path)
        except KeyError:
            raise FrameReadError(f"HDF5 file {run.path} has no dataset {run.dataset!r}") from None
        if f.swmr_mode:
            ds.refresh()
        if ds.shape[0] < run.stop:
            raise FrameReadError(f"{run.path}:{run.dataset} holds {ds.shape[0]} frames; the scan needs "
                                 f"{run.start}..{run.stop}")
        if tuple(ds.shape[1:]) != tuple(self.detector_shape):
            raise FrameReadError(f"{run.path}:{run.dataset} holds frames of shape {tuple(ds.shape[1:])}, "
                                 f"not the detector's {tuple(self.detector_shape)}")
        return ds

    def iter_rows(self, kind: str, rows: slice | list[int], *, frame_block: int = 64):
        """Yield ``(first frame, block)`` with ``block`` (frames, len(rows), columns) as stored,
        ``frame_block`` frames at a time, in scan order."""
        first = 0
        for run in getattr(self, kind):
            ds = self._dataset(run)
            for a0 in range(run.start, run.stop, frame_block):
                a1 = min(a0 + frame_block, run.stop)
                before = bytes_read()
                block = ds[a0:a1, rows, :]
                after = bytes_read()
                # the kernel's count when it has one: it sees whole chunks read for a few rows
                self.bytes_read += after - before if before >= 0 else block.nbytes
                yield first + (a0 - run.start), block
            first += len(run)

    def read_rows(self, kind: str, rows: slice | list[int]) -> np.ndarray:
        """All frames of ``kind``, restricted to detector ``rows``: (frames, rows, columns) as stored."""
        blocks = [b for _, b in self.iter_rows(kind, rows)]
        return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]

    def close(self):
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _open(path: Path):
    """Open read-only with no chunk cache (partial chunk reads, see the module doc);
    SWMR when the writer is still appending (the file of a running scan)."""
    regular_file(path)
    try:
        return h5py.File(path, "r", swmr=True, rdcc_nbytes=0)
    except OSError:
        try:  # a file not written in SWMR mode (an old Data Exchange file) opens the plain way
            return h5py.File(path, "r", rdcc_nbytes=0)
        except OSError as err:
            raise FrameReadError(f"cannot read HDF5 file {path}: {err}") from None
