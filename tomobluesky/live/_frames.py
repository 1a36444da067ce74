"""Resolve StreamResource/StreamDatum references into arrays from HDF5."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..pipeline import DataRoots, FrameReadError, OpenFiles


def resource_path(stream_resource: dict, roots: DataRoots | None = None, *, must_exist: bool = False) -> Path:
    """The real path of the file a StreamResource names, refused unless it is a regular file under ``roots``."""
    roots = roots if roots is not None else DataRoots()
    try:
        return roots.resource_file(stream_resource, must_exist=must_exist)
    except FrameReadError as err:
        raise type(err)(f"stream resource {str(stream_resource.get('uid'))[:80]}: {err}") from None


class FrameReader:
    """Reads frames by StreamResource and StreamDatum indices, each file opened once (``OpenFiles``,
    shared with the stop path's readers in this process) until ``close()``.

    The writer may still be flushing when the datum arrives (another process,
    SWMR), so a short read is retried briefly before it becomes an error.
    """

    def __init__(self, roots: DataRoots | None = None, *, retries: int = 20, wait: float = 0.05):
        self.roots, self.retries, self.wait = roots, retries, wait
        self._files = OpenFiles()
        self._paths: dict[tuple[str, str], Path] = {}  # (resource uid, uri) -> its confined path

    def read(self, stream_resource: dict, indices: dict) -> np.ndarray:
        """Frames ``indices`` (a StreamRange) of the dataset ``stream_resource`` names."""
        path = self._path(stream_resource)
        dataset = stream_resource["parameters"]["dataset"]
        start, stop = int(indices["start"]), int(indices["stop"])
        for attempt in range(self.retries + 1):
            try:
                got = self._files.read(path, dataset, start, stop)
            except FileNotFoundError:
                raise FrameReadError(f"HDF5 file {path} referenced by stream resource {stream_resource['uid']} "
                                     "does not exist") from None
            except KeyError:
                raise FrameReadError(f"HDF5 file {path} has no dataset {dataset!r}") from None
            except OSError as err:
                raise FrameReadError(f"cannot read HDF5 file {path}: {err}") from None
            if not isinstance(got, int):
                return got
            if attempt < self.retries:
                time.sleep(self.wait)
        raise FrameReadError(f"{path}:{dataset} holds {got} frames; a stream datum asks for {start}..{stop}")

    def _path(self, stream_resource: dict) -> Path:
        """The resource's file, confined once per (uid, uri): a document that reuses a uid for another
        file is checked again, never read from the first one's."""
        key = (str(stream_resource.get("uid")), str(stream_resource.get("uri")))
        path = self._paths.get(key)
        if path is None:
            path = resource_path(stream_resource, self.roots, must_exist=True)
            self._paths[key] = path
        return path

    def close(self):
        self._files.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_frames(stream_resource: dict, indices: dict, *, roots: DataRoots | None = None, retries: int = 20,
                wait: float = 0.05) -> np.ndarray:
    """Read ``indices`` (a StreamRange) of the dataset a StreamResource names, opening its file for this
    read alone (a run's reader keeps it open: :class:`FrameReader`)."""
    with FrameReader(roots, retries=retries, wait=wait) as reader:
        return reader.read(stream_resource, indices)
