"""Writes detector frames into a Data Exchange HDF5 file and describes them
with StreamResource/StreamDatum documents, so pixels never ride in documents."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from event_model import ComposeStreamResource, StreamRange

from .. import dxchange

# Data Exchange image_key values and the datasets they land in.
PROJECTION, FLAT, DARK = 0, 1, 2
DATASETS = {PROJECTION: dxchange.PROJECTIONS, FLAT: dxchange.FLATS, DARK: dxchange.DARKS}
THETA_DATASET = dxchange.THETA

#: pixel types the writer stores: float32 (the simulator's counts as they are)
#: or uint16, what real detectors write
FRAME_DTYPES = (np.dtype("<f4"), np.dtype("<u2"))
_UINT16_MAX = np.float32(np.iinfo(np.uint16).max)


def frame_dtype(dtype) -> np.dtype:
    """``dtype`` as one of FRAME_DTYPES, or a ValueError naming them."""
    try:
        dtype = np.dtype(dtype).newbyteorder("<")
    except TypeError:
        dtype = None
    if dtype not in FRAME_DTYPES:
        raise ValueError(f"frames can be written as float32 or uint16, not {dtype!r}")
    return dtype


class CameraKeys:
    """The names and frame shape that both simulated cameras (ophyd v1 and ophyd-async) describe
    their data with: ``<name>_image`` for frames, ``<name>_theta`` for a fly scan's angles."""

    name: str
    source: object

    @property
    def image_data_key(self) -> str:
        return f"{self.name}_image"

    @property
    def theta_data_key(self) -> str:
        return f"{self.name}_theta"

    @property
    def frame_shape(self) -> tuple[int, int]:
        return tuple(self.source.shape)


class DXchangeWriter:
    """Appends frames to one Data Exchange file in SWMR mode.

    Each dataset gets its own StreamResource the first time a frame lands in
    it; every frame (or group of frames) gets a StreamDatum pointing at its
    index range. Readers in other processes (Tiled, a reconstruction worker)
    open the file with ``swmr=True`` while frames are still arriving.
    """

    def __init__(self, path: Path, frame_shape: tuple[int, int], data_key: str, theta_key: str | None = None,
                 dtype="float32"):
        self.path = Path(path)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.dtype = frame_dtype(dtype)
        # uint16 conversion goes through this buffer, reused for every frame
        self._scratch = np.empty(self.frame_shape, np.float32) if self.dtype.kind == "u" else None
        self.data_key = data_key
        self.theta_key = theta_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w", libver="latest")
        self._datasets = {}
        for key, name in DATASETS.items():
            self._datasets[key] = self._file.create_dataset(
                name, shape=(0, *self.frame_shape), maxshape=(None, *self.frame_shape),
                chunks=(1, *self.frame_shape), dtype=self.dtype,
            )
        self._theta = self._file.create_dataset(THETA_DATASET, shape=(0,), maxshape=(None,), chunks=(1024,), dtype="<f8")
        self._theta.attrs["units"] = "degrees"
        self._file.swmr_mode = True
        self._composers = {}
        self._collected = {key: 0 for key in DATASETS}
        self._pending = []

    @property
    def uri(self) -> str:
        return f"file://localhost{self.path.resolve()}"

    def count(self, image_key: int) -> int:
        return self._datasets[image_key].shape[0]

    def append(self, image_key: int, frame: np.ndarray, theta_deg: float | None = None) -> int:
        """Write one frame; returns its index in its dataset."""
        frame = np.asarray(frame)
        if frame.shape != self.frame_shape:
            raise ValueError(
                f"{self.data_key}: frame of shape {frame.shape} does not fit the detector {self.frame_shape}"
            )
        ds = self._datasets[image_key]
        index = ds.shape[0]
        ds.resize(index + 1, axis=0)
        # one frame is one chunk, stored as is: hand HDF5 the chunk's bytes
        # without its selection and conversion machinery
        ds.id.write_direct_chunk((index, 0, 0), self._pixels(frame))
        ds.flush()  # SWMR readers see a frame only once it is flushed
        if image_key == PROJECTION and theta_deg is not None:
            self._theta.resize(index + 1, axis=0)
            self._theta[index] = theta_deg
            self._theta.flush()
        return index

    def _pixels(self, frame: np.ndarray) -> np.ndarray:
        """The frame in the file's pixel type, C-ordered; copies only to convert."""
        if frame.dtype == self.dtype:
            return np.ascontiguousarray(frame)
        if self._scratch is None:
            return np.ascontiguousarray(frame, dtype=self.dtype)
        # counts → uint16: clip into 0..65535 in float32, then round to nearest
        # (half to even) as the cast's last step: two passes over the frame
        np.clip(frame, 0, _UINT16_MAX, out=self._scratch, casting="unsafe")
        pixels = np.empty(self.frame_shape, self.dtype)
        np.rint(self._scratch, out=pixels, casting="unsafe")
        return pixels

    def _resource_docs(self, image_key: int, key: str, dataset: str, shape: tuple[int, ...]):
        """StreamResource for (image_key, data key), composed once."""
        if (image_key, key) not in self._composers:
            bundle = ComposeStreamResource()(
                mimetype="application/x-hdf5",
                uri=self.uri,
                data_key=key,
                parameters={"dataset": dataset, "chunk_shape": (1, *shape), "swmr": True},
            )
            self._composers[(image_key, key)] = bundle.compose_stream_datum
            self._pending.append(("stream_resource", bundle.stream_resource_doc))
        return self._composers[(image_key, key)]

    def collect_asset_docs(self, index: int | None = None):
        """Yield StreamResource/StreamDatum documents for frames not yet described."""
        for image_key, ds in self._datasets.items():
            stop = ds.shape[0] if index is None else min(index, ds.shape[0])
            start = self._collected[image_key]
            if stop <= start:
                continue
            rng = StreamRange(start=start, stop=stop)
            datums = [self._resource_docs(image_key, self.data_key, DATASETS[image_key], self.frame_shape)(rng)]
            if self.theta_key and image_key == PROJECTION:
                datums.append(self._resource_docs(image_key, self.theta_key, THETA_DATASET, ())(rng))
            self._collected[image_key] = stop
            yield from self._pending
            self._pending.clear()
            for datum in datums:
                yield "stream_datum", datum

    def close(self):
        if self._file:
            self._file.close()
            self._file = None


