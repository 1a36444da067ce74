"""Resolve StreamResource/StreamDatum references into arrays from HDF5."""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np

from ..pipeline import DataRoots, FrameReadError, open_dataset


def resource_path(stream_resource: dict, roots: DataRoots | None = None, *, must_exist: bool = False) -> Path:
    """The real path of the file a StreamResource names, refused unless it is a regular file under ``roots``."""
    roots = roots if roots is not None else DataRoots()
    try:
        return roots.resource_file(stream_resource, must_exist=must_exist)
    except FrameReadError as err:
        raise type(err)(f"stream resource {str(stream_resource.get('uid'))[:80]}: {err}") from None


def read_frames(stream_resource: dict, indices: dict, *, roots: DataRoots | None = None, retries: int = 20,
                wait: float = 0.05) -> np.ndarray:
    """Read ``indices`` (a StreamRange) of the dataset a StreamResource names.

    The writer may still be flushing when the datum arrives (another process,
    SWMR), so a short read is retried briefly before it becomes an error.
    """
    path = resource_path(stream_resource, roots, must_exist=True)
    dataset = stream_resource["parameters"]["dataset"]
    start, stop = int(indices["start"]), int(indices["stop"])
    for attempt in range(retries + 1):
        try:
            with h5py.File(path, "r", swmr=True) as f:
                ds = open_dataset(f, dataset, path)
                ds.refresh()
                if ds.shape[0] >= stop:
                    return np.asarray(ds[start:stop])
                have = ds.shape[0]
        except FileNotFoundError:
            raise FrameReadError(f"HDF5 file {path} referenced by stream resource {stream_resource['uid']} "
                                 "does not exist") from None
        except KeyError:
            raise FrameReadError(f"HDF5 file {path} has no dataset {dataset!r}") from None
        except OSError as err:
            raise FrameReadError(f"cannot read HDF5 file {path}: {err}") from None
        if attempt < retries:
            time.sleep(wait)
    raise FrameReadError(f"{path}:{dataset} holds {have} frames; a stream datum asks for {start}..{stop}")
