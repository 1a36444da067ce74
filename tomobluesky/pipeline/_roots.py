"""Which files documents may make us read: regular files under the data roots.

A StreamResource names a file by URI, and documents arrive from the network
(Kafka) or from plans anyone can write. Before anything opens such a file, its
real path (symlinks and ``..`` resolved) must lie under one of the configured
roots and be a regular file: a FIFO would block the reader forever, a device
or ``/proc`` file would leak. Every refusal gives the same reason, so a
document cannot probe whether a file exists outside the roots.

HDF5 can reach further than its own file (external links, external raw storage,
virtual datasets), so the links on the way to a dataset are checked before it is
opened, and the dataset once it is open.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

import h5py



class FrameReadError(RuntimeError):
    """A referenced frame could not be read (missing file, dataset, or index)."""


class RefusedPath(FrameReadError):
    """A document points at something that is not a regular file under the data roots."""


class DataRoots:
    """The directories detector files may come from; ``None`` allows any regular file
    (in-process use on one's own files; the services always configure roots)."""

    def __init__(self, roots: Iterable[str | Path] | None = None):
        self.roots = None if roots is None else tuple(_real(Path(r).expanduser()) for r in roots)
        if self.roots is not None and not self.roots:
            raise ValueError("no data roots given: name at least one directory")

    @classmethod
    def of(cls, roots) -> "DataRoots":
        """``roots`` as DataRoots (DataRoots, an iterable of directories, or None for unconfined)."""
        return roots if isinstance(roots, DataRoots) else cls(roots)

    def __repr__(self):
        return f"DataRoots({None if self.roots is None else [str(r) for r in self.roots]})"

    def _refuse(self, shown) -> RefusedPath:
        where = "anywhere" if self.roots is None else "under the data roots " + ", ".join(map(str, self.roots))
        return RefusedPath(f"refusing {str(shown)[:300]!r}: not a readable regular file {where}")

    def resolve(self, path: str | Path, *, must_exist: bool = True) -> Path:
        """The real path of ``path`` if it may be read; else :class:`RefusedPath`.

        ``must_exist=False`` accepts a path that does not exist yet (a detector
        file announced before its first frame) but never one that exists and is
        not a regular file."""
        path = Path(path)
        if not path.is_absolute() or "\x00" in str(path):
            raise self._refuse(path)
        real = _real(path)
        if self.roots is not None and not any(real.is_relative_to(root) for root in self.roots):
            raise self._refuse(path)
        if self.roots is None:  # trusted local use: say exactly what is wrong
            return regular_file(real) if must_exist or os.path.lexists(real) else real
        try:
            mode = os.stat(real).st_mode
        except OSError:
            if must_exist:
                raise self._refuse(path) from None
            return real
        if not stat.S_ISREG(mode):
            raise self._refuse(path)
        return real

    def resource_file(self, resource: dict, *, must_exist: bool = True) -> Path:
        """The file a StreamResource (``uri``) or an old-style Resource (``root`` + ``resource_path``) names."""
        return self.resolve(uri_path(resource), must_exist=must_exist)


def uri_path(resource: dict) -> str:
    """The local path a (Stream)Resource document points at; only ``file:`` URIs on this host."""
    if "uri" not in resource:  # an event-model Resource
        root, rel = str(resource.get("root", "")), str(resource.get("resource_path", ""))
        return os.path.join(root, rel) if root else rel
    uri = urlparse(str(resource["uri"]))
    if uri.scheme not in ("file", "") or uri.netloc not in ("", "localhost") or uri.query or uri.fragment:
        raise RefusedPath(f"refusing URI {str(resource['uri'])[:300]!r}: only file: URIs on this host are read")
    raw, decoded = uri.path, unquote(uri.path)
    if raw != decoded and ".." in decoded.split("/"):  # an encoded '..' must not slip past a check of the raw form
        raise RefusedPath(f"refusing URI {str(resource['uri'])[:300]!r}: encoded '..' in the path")
    return decoded


def check_dataset(ds, path: Path) -> None:
    """Refuse a dataset that reads bytes from anywhere but its own file (``path``)."""
    real_path = _real(Path(path))
    if ds.file.filename and _real(Path(ds.file.filename)) != real_path:
        raise RefusedPath(f"{real_path}:{ds.name}: an HDF5 external link to another file is not read")
    if ds.external:
        raise RefusedPath(f"{real_path}:{ds.name}: datasets stored in external raw files are not read")
    if ds.is_virtual:
        raise RefusedPath(f"{real_path}:{ds.name}: virtual datasets (mapped from other files) are not read")


def open_dataset(f, name, path: Path):
    """``f[name]``, checked. HDF5 opens (and reads) the file an external link names while it resolves
    the link, before the dataset can be looked at, so every link on the way to ``name`` is looked at
    first, without following it; then the dataset itself (:func:`check_dataset`)."""
    if isinstance(name, (str, bytes)):
        _refuse_external_links(f, name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name,
                               Path(path))
    ds = f[name]
    check_dataset(ds, path)
    return ds


def _refuse_external_links(f, name: str, path: Path, hops: int = 0) -> None:
    if hops > 32:
        raise RefusedPath(f"{_real(path)}:{name[:200]}: too many soft links")
    here = "/"
    for part in name.split("/"):
        if part in ("", "."):
            continue
        step = here.rstrip("/") + "/" + part
        try:
            link = f.get(step, getlink=True)  # the link itself; earlier steps are known to stay in the file
        except (KeyError, TypeError, ValueError):  # odd names or link classes: let f[name] say what is wrong
            link = None
        if link is None or isinstance(link, h5py.HardLink):
            here = step
        elif isinstance(link, h5py.SoftLink):
            target = link.path if link.path.startswith("/") else here.rstrip("/") + "/" + link.path
            _refuse_external_links(f, target, path, hops + 1)
            here = target
        else:
            raise RefusedPath(f"{_real(path)}:{step[:200]}: an HDF5 external link to another file is not read")
        if link is None:
            return  # missing: f[name] raises KeyError as before


def regular_file(path: Path) -> Path:
    """``path`` if it is a regular file (opening a FIFO would block forever)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FrameReadError(f"HDF5 file {path} does not exist") from None
    except OSError as err:
        raise FrameReadError(f"cannot read {path}: {err.strerror}") from None
    if not stat.S_ISREG(mode):
        raise FrameReadError(f"{path} is not a regular file")
    return path


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))
