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

import threading
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .. import dxchange
from ._resources import bytes_read
from ._roots import FrameReadError, open_dataset, regular_file

PROJECTIONS, FLATS, DARKS = "projections", "flats", "darks"
DXCHANGE = {PROJECTIONS: dxchange.PROJECTIONS, FLATS: dxchange.FLATS, DARKS: dxchange.DARKS}


@dataclass
class _SharedFile:
    """A detector file open in this process, with its datasets: one handle each, for every HDF5Scan that reads it.
    Two handles of one dataset in one process break each other in SWMR mode (HDF5 2.0): refreshing one made reads
    through the other fail ("can't insert duplicate key") and then crashed the process. That happened as soon as two
    slabs of one file were read at once in one process: a Dask worker of two threads. Closed with its last user."""

    file: h5py.File
    datasets: dict = field(default_factory=dict)
    users: int = 0


#: the open detector files, by path; read and changed only under _HDF5_LOCK, which every open, refresh, read and
#: close of a detector file holds (h5py runs one call at a time in a process anyway)
_SHARED: dict[Path, _SharedFile] = {}
_HDF5_LOCK = threading.RLock()


class OpenFiles:
    """The detector files one reader holds open, each shared with every other reader of this process.

    A file is opened at its first use (``_open``: SWMR while it is being written, no chunk cache) and kept
    until ``close()``, so reading frame after frame costs a read, not an open: on a 128 × 1280 frame an
    open, the dataset's checks and a read took 1.23 ms of CPU, a read through the kept handle 0.40 ms.
    Call ``dataset`` and read through what it returns under ``_HDF5_LOCK``; ``read`` does both."""

    def __init__(self):
        self._held: dict[Path, _SharedFile] = {}

    def dataset(self, path: Path, name: str):
        """``name`` in ``path``, refreshed when the file is still being written; under ``_HDF5_LOCK``."""
        shared = self._held.get(path)
        if shared is None:
            shared = _SHARED.get(path)
            if shared is None:
                shared = _SharedFile(_open(path))
                _SHARED[path] = shared
            shared.users += 1
            self._held[path] = shared
        ds = shared.datasets.get(name)
        if ds is None:
            try:
                ds = open_dataset(shared.file, name, path)
            except KeyError:
                raise FrameReadError(f"HDF5 file {path} has no dataset {name!r}") from None
            shared.datasets[name] = ds
        if shared.file.swmr_mode:
            ds.refresh()
        return ds

    def read(self, path: Path, name: str, start: int, stop: int) -> np.ndarray | int:
        """Frames ``start``..``stop`` of ``name``, or how many it holds when that is fewer (still being written)."""
        with _HDF5_LOCK:
            ds = self.dataset(path, name)
            if ds.shape[0] < stop:
                return int(ds.shape[0])
            return np.asarray(ds[start:stop])

    def close(self):
        """Let go of the files; each closes when no other reader of this process holds it."""
        with _HDF5_LOCK:
            for path, shared in self._held.items():
                shared.users -= 1
                if shared.users == 0:
                    shared.datasets.clear()
                    shared.file.close()
                    del _SHARED[path]
            self._held.clear()


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
    _files: OpenFiles = field(default_factory=OpenFiles, repr=False)

    def __post_init__(self):
        self.theta_deg = np.asarray(self.theta_deg, dtype=np.float64)
        if len(self.theta_deg) != self.num_projections:
            raise ValueError(f"{len(self.theta_deg)} angles for {self.num_projections} projections")
        for kind in (PROJECTIONS, FLATS, DARKS):
            if not getattr(self, kind):
                raise ValueError(f"the scan has no {kind}; a reconstruction needs projections, flats and darks")
        if self.dtype is None:
            with _HDF5_LOCK:
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
            with _HDF5_LOCK:
                f = h5py.File(path, "r")
        except OSError as err:
            raise FrameReadError(f"{path} is not an HDF5 file ({err})") from None
        with _HDF5_LOCK, f:  # this handle and its datasets are gone before another thread's read
            ds = {name: _dxchange_dataset(f, name, path) for name in (*DXCHANGE.values(), dxchange.THETA)}
            counts = {kind: ds[name].shape[0] for kind, name in DXCHANGE.items()}
            shape = tuple(ds[DXCHANGE[PROJECTIONS]].shape[1:])
            dtype = ds[DXCHANGE[PROJECTIONS]].dtype
            theta = dxchange.theta_degrees(ds[dxchange.THETA])
            del ds
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
        """The run's dataset, refreshed (SWMR); call it, and read through what it returns, under _HDF5_LOCK."""
        ds = self._files.dataset(run.path, run.dataset)
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
            with _HDF5_LOCK:
                ds = self._dataset(run)
            for a0 in range(run.start, run.stop, frame_block):
                a1 = min(a0 + frame_block, run.stop)
                with _HDF5_LOCK:
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
        """Let go of the files; each closes when no other scan of this process reads it."""
        self._files.close()

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
