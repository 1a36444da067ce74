"""What analysts do with the catalogue: find volumes, export them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._writers import PROCESSED, RAW


def find_volumes(client, *, scan_uid=None, sample=None, scan_id=None, status=None):
    """Volumes in ``processed`` matching every given field, newest scan first."""
    from tiled.queries import Key

    node = client[PROCESSED]
    for key, value in (("scan_uid", scan_uid), ("sample_name", sample), ("scan_id", scan_id), ("status", status)):
        if value is not None:
            node = node.search(Key(key) == value)
    return list(node.items())


def raw_run(client, volume_node):
    """The raw Bluesky run a volume was reconstructed from."""
    return client[RAW][volume_node.metadata["scan_uid"]]


def full_resolution(node):
    """Level "0" of a volume container (an array node is taken as it is)."""
    return node["0"] if node.structure_family == "container" else node


# Slabs read per request: whole level-0 chunks when they are small, else fewer
# slices, so that one response stays well inside Tiled's size limit.
_SLAB_BYTES = 64 * 2**20


def export_volume(node, path: str | Path, fmt: str = "tiff", *, progress=None) -> Path:
    """Write a volume read slab by slab from Tiled to ``path``.

    ``node`` is ``processed/<scan uid>``; its full-resolution level "0" is
    exported, one chunk-deep slab per request, so memory stays one slab.
    ``fmt``: ``tiff`` (a folder of one float32 TIFF per slice), ``nxtomoproc``
    (NeXus's application definition for reconstructed volumes) or ``dxchange``
    (Data Exchange ``/exchange/data``). ``progress(done, n)`` is called per slab.
    NXtomo is for raw scans (projections, flats, darks), not volumes: see
    ``tomobluesky.dxchange.export_nxtomo``.
    """
    path = Path(path)
    writers = {"tiff": _TiffStack, "nxtomoproc": _NXtomoproc, "dxchange": _DXchange}
    if fmt == "nxtomo":
        raise ValueError("a volume is exported as 'nxtomoproc' (NeXus's definition for reconstructions); "
                         "NXtomo holds a raw scan's frames: tomobluesky.dxchange.export_nxtomo writes that")
    if fmt not in writers:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {sorted(writers)}")
    level = full_resolution(node)
    shape = tuple(level.shape)
    height = _slab_height(level)
    with writers[fmt](path, shape, dict(node.metadata)) as out:
        for z0 in range(0, shape[0], height):
            slab = np.asarray(level[z0:z0 + height], dtype=np.float32)
            for i, image in enumerate(slab, start=z0):
                out.write(i, image)
            if progress:
                progress(z0 + len(slab), shape[0])
    return path


def _slab_height(level) -> int:
    depth = level.structure().chunks[0][0]
    per_slice = 4 * int(np.prod(level.shape[1:]))
    return max(1, min(depth, _SLAB_BYTES // per_slice))


class _TiffStack:
    def __init__(self, path, shape, metadata):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.width = len(str(shape[0] - 1))

    def write(self, i, image):
        import tifffile

        tifffile.imwrite(self.path / f"slice_{i:0{self.width}d}.tiff", image)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class _HDF5Export:
    dataset = ""

    def __init__(self, path, shape, metadata):
        import h5py

        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(path, "w")
        self.data = self._layout(self.file, shape, metadata)

    def write(self, i, image):
        self.data[i] = image

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


class _DXchange(_HDF5Export):
    def _layout(self, f, shape, md):
        f.attrs["implements"] = "exchange"
        data = f.create_dataset("/exchange/data", shape=shape, dtype="<f4", chunks=(1, *shape[1:]))
        data.attrs["units"] = "attenuation per pixel"
        f["/process/reconstruction/center"] = md.get("center", np.nan)
        f["/process/reconstruction/algorithm"] = str(md.get("algorithm", ""))
        f["/process/reconstruction/scan_uid"] = str(md.get("scan_uid", ""))
        return data


class _NXtomoproc(_HDF5Export):
    """NeXus NXtomoproc: ``/entry/data`` (NXdata: ``data`` with ``z``, ``y``, ``x`` in pixels) and the
    ``reconstruction`` NXprocess. The volume also sits at ``reconstruction/results/data`` (a hard link
    to the same dataset), where nabu writes its reconstructions and tomwer looks for them."""

    def _layout(self, f, shape, md):
        entry = _group(f, "entry", "NXentry", default="data")
        entry["definition"] = "NXtomoproc"
        entry["title"] = str(md.get("sample_name", ""))
        entry["experiment_identifier"] = str(md.get("scan_uid", ""))
        source = _group(_group(entry, "instrument", "NXinstrument"), "source", "NXsource")
        source["type"], source["name"], source["probe"] = "Synchrotron X-ray Source", "", "x-ray"
        _group(entry, "sample", "NXsample")["name"] = str(md.get("sample_name", ""))
        process = _group(entry, "reconstruction", "NXprocess")
        process["program"] = "tomobluesky"
        process["version"] = str(md.get("tomobluesky_version", ""))
        process["date"] = str(md.get("time_finished", md.get("created", "")))
        parameters = _group(process, "parameters", "NXparameters")
        parameters["raw_file"] = str(md.get("scan_uid", ""))  # the raw run's key in the catalogue
        parameters["center_of_rotation"] = md.get("center", np.nan)
        parameters["algorithm"] = str(md.get("algorithm", ""))
        results = _group(process, "results", "NXdata", signal="data")
        data = results.create_dataset("data", shape=shape, dtype="<f4", chunks=(1, *shape[1:]))
        data.attrs["units"] = "attenuation per pixel"
        nxdata = _group(entry, "data", "NXdata", signal="data", axes=["z", "y", "x"])
        nxdata["data"] = data  # a hard link: one dataset, two NeXus paths
        for name, length in zip("zyx", shape):
            nxdata[name] = np.arange(length, dtype=np.float64)
            nxdata[name].attrs["units"] = "pixel"
        return data


def _group(parent, name, nx_class, **attrs):
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    for key, value in attrs.items():
        group.attrs[key] = value
    return group
