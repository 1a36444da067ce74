"""On-the-fly segmentation: threshold a smoothed volume, then 3-D connected components, slab by slab.

SciPy labels each slab and scikit-image finds the threshold; what neither of
them does for a volume that never fits in memory is join the labels of
objects that cross a slab border. That is bookkeeping: the labels on the two
planes either side of each border are paired, the pairs become a graph, and
SciPy's connected components of that graph give each object one label.

Passes over the volume, each one slab (plus the smoothing halo) at a time:
1. histogram of the smoothed volume → Otsu (or multi-Otsu) threshold;
2. label each slab with SciPy (provisional labels, offset to be unique), store them,
   and accumulate per-label voxel counts, bounding boxes and centroid sums;
3. relabel: a lazy map over the stored slabs, written by the caller.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

BINS = 1024
SLAB_VOXELS = 2 ** 24


def _slabs(depth: int, height: int):
    for z0 in range(0, depth, height):
        yield z0, min(z0 + height, depth)


def _smoothed(volume, z0, z1, sigma):
    """Slices z0..z1 of the Gaussian-smoothed volume, exact at slab borders (a halo of 4σ slices)."""
    from scipy import ndimage

    if sigma <= 0:
        return np.asarray(volume[z0:z1], dtype=np.float32)
    halo = math.ceil(4 * sigma)
    a, b = max(z0 - halo, 0), min(z1 + halo, volume.shape[0])
    block = np.asarray(volume[a:b], dtype=np.float32)
    return ndimage.gaussian_filter(block, sigma, mode="nearest", truncate=4.0)[z0 - a:z0 - a + (z1 - z0)]


def _sample_planes(depth: int, plane: int, budget: int = 2 ** 25) -> np.ndarray:
    """Evenly spaced slices holding about ``budget`` voxels (every slice of a small volume): the threshold
    comes from their histogram, an estimate whose error is far below a bin for volumes of millions of
    voxels. Chosen by index alone, so the result does not depend on the slab height."""
    count = min(depth, max(1, budget // plane))
    return np.unique(np.linspace(0, depth - 1, count).round().astype(int))


def _threshold(volume, height, sigma, method, classes, level):
    from skimage.filters import threshold_multiotsu, threshold_otsu

    # the sampled slices, smoothed (each with its own halo), stay in memory (at most the budget: 128 MB) for
    # the range, then the histogram; runs of consecutive slices are smoothed a slab at a time
    planes = _sample_planes(volume.shape[0], volume.shape[1] * volume.shape[2])
    smoothed = [_smoothed(volume, int(z), int(z) + 1, sigma) for z in planes] if len(planes) < volume.shape[0] \
        else [_smoothed(volume, z0, z1, sigma) for z0, z1 in _slabs(volume.shape[0], height)]
    low = min(float(block.min()) for block in smoothed)
    high = max(float(block.max()) for block in smoothed)
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        raise ValueError(f"the volume holds no contrast to threshold (values {low}..{high})")
    counts = np.zeros(BINS, dtype=np.int64)
    for block in smoothed:
        counts += np.histogram(block, bins=BINS, range=(low, high))[0]
    centres = low + (np.arange(BINS) + 0.5) * (high - low) / BINS
    if method == "otsu":
        return float(threshold_otsu(hist=(counts, centres)))
    if method == "multiotsu":
        thresholds = threshold_multiotsu(hist=(counts, centres), classes=classes)
        return float(thresholds[len(thresholds) - 1 if level is None else level])
    raise ValueError(f"method must be 'otsu' or 'multiotsu', not {method!r}")


class _Objects:
    """Per provisional label: voxel count, bounding box, centroid sums (bincounts: no sort of the slab)."""

    def __init__(self):
        self.parts = []

    def add(self, local, count, offset, z0):
        """``local``: one slab's labels 0..count as SciPy numbered them; provisional = local + offset."""
        from scipy import ndimage

        if not count:
            return
        depth, rows, columns = local.shape
        ys = np.broadcast_to(np.arange(rows, dtype=np.float64)[:, None], (rows, columns)).ravel()
        xs = np.broadcast_to(np.arange(columns, dtype=np.float64)[None, :], (rows, columns)).ravel()
        voxels, sums = np.zeros(count + 1, dtype=np.int64), np.zeros((count + 1, 3))
        for i in range(depth):  # one plane at a time keeps the weights small
            flat = local[i].ravel()
            plane = np.bincount(flat, minlength=count + 1)
            voxels += plane
            sums[:, 0] += plane * (z0 + i)
            sums[:, 1] += np.bincount(flat, weights=ys, minlength=count + 1)
            sums[:, 2] += np.bincount(flat, weights=xs, minlength=count + 1)
        boxes = ndimage.find_objects(local, max_label=count)
        found = np.array([i + 1 for i, box in enumerate(boxes) if box is not None])
        if not len(found):
            return
        lo = np.array([[b.start for b in boxes[i - 1]] for i in found]) + (z0, 0, 0)
        hi = np.array([[b.stop for b in boxes[i - 1]] for i in found]) + (z0, 0, 0)
        self.parts.append((found + offset, voxels[found], sums[found], lo, hi))

    def table(self, mapping, count, voxel_volume_um3):
        voxels = np.zeros(count + 1, dtype=np.int64)
        sums = np.zeros((count + 1, 3))
        lo = np.full((count + 1, 3), np.iinfo(np.int64).max)
        hi = np.zeros((count + 1, 3), dtype=np.int64)
        for found, counts, weighted, a, b in self.parts:
            final = mapping[found]
            np.add.at(voxels, final, counts.astype(np.int64))
            np.add.at(sums, final, weighted)
            np.minimum.at(lo, final, a)
            np.maximum.at(hi, final, b)
        table = {"label": np.arange(1, count + 1), "voxels": voxels[1:]}
        if voxel_volume_um3 is not None:
            table["volume_um3"] = voxels[1:] * voxel_volume_um3
        centroid = sums[1:] / np.maximum(voxels[1:, None], 1)
        for axis, name in enumerate("zyx"):
            table[f"centroid_{name}"] = centroid[:, axis]
            table[f"bbox_min_{name}"] = lo[1:, axis]
            table[f"bbox_max_{name}"] = hi[1:, axis]
        return table


def segment(volume, *, sigma: float = 1.0, method: str = "otsu", classes: int = 3, level: int | None = None,
            min_voxels: int = 1, voxel_size_um: float | None = None, slab: int | None = None, workdir=None):
    """Threshold (Otsu or multi-Otsu) the Gaussian-smoothed volume and label its 3-D connected components.

    ``sigma``: smoothing in voxels (0: none); ``method``: "otsu" or
    "multiotsu" with ``classes`` classes, keeping voxels above threshold
    ``level`` (default: the highest); objects smaller than ``min_voxels``
    are dropped; ``voxel_size_um``: edge of a voxel in µm, for the table's
    volumes. Returns ``{"labels": lazy label volume, "objects": table}``;
    labels are unique across the whole volume (objects crossing slab
    borders keep one label), numbered 1.. by first appearance.
    """
    import dask.array as da
    import zarr
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy import ndimage

    if sigma < 0 or not np.isfinite(sigma):
        raise ValueError(f"sigma must be ≥ 0, not {sigma}")
    # slices per slab: about 16 M voxels (a 2048² detector: 4 slices), so that the slab, its smoothing,
    # mask and labels stay a few hundred MB whatever the volume's size
    height = max(int(slab), 1) if slab else max(1, SLAB_VOXELS // (volume.shape[1] * volume.shape[2]))
    threshold = _threshold(volume, height, sigma, method, classes, level)
    workdir = Path(workdir) if workdir is not None else None
    store = zarr.create_array(store=str(workdir / "provisional.zarr") if workdir else zarr.storage.MemoryStore(),
                              shape=volume.shape, chunks=(height, *volume.shape[1:]), dtype="uint32",
                              fill_value=0, overwrite=True)
    objects, pairs, offset, previous = _Objects(), [], 0, None
    for z0, z1 in _slabs(volume.shape[0], height):
        # faces touching (6-connectivity: SciPy's default structure), int32 labels
        local, count = ndimage.label(_smoothed(volume, z0, z1, sigma) > threshold, output=np.int32)
        if offset + count >= 2 ** 32:
            raise ValueError(f"more than {2 ** 32 - 1} provisional objects by slice {z1}: raise sigma or the "
                             "threshold (is the volume mostly noise?)")
        objects.add(local, count, offset, z0)
        labels = np.where(local > 0, local + offset, 0).astype(np.uint32)
        del local
        offset += count
        if previous is not None:  # objects touching across the border (6-connectivity: the same pixel)
            touching = (previous > 0) & (labels[0] > 0)
            pairs.append(np.stack([previous[touching], labels[0][touching]]))
        store[z0:z1] = labels
        previous = labels[-1]
    edges = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), dtype=np.uint64)
    graph = coo_matrix((np.ones(edges.shape[1]), (edges[0], edges[1])), shape=(offset + 1, offset + 1))
    _, component = connected_components(graph, directed=False)
    mapping = _consecutive(component, objects, min_voxels)
    count = int(mapping.max())
    table = objects.table(mapping, count, None if voxel_size_um is None else float(voxel_size_um) ** 3)
    lazy = da.from_zarr(store).map_blocks(lambda block: mapping[block].astype(np.uint32), dtype=np.uint32)
    return {"labels": lazy, "objects": table, "threshold": threshold}


def _consecutive(component, objects: _Objects, min_voxels: int) -> np.ndarray:
    """Provisional label → final label 1..n in order of first appearance; background and small objects → 0."""
    voxels = np.zeros(len(component), dtype=np.int64)
    for found, counts, *_ in objects.parts:
        np.add.at(voxels, component[found], counts.astype(np.int64))
    keep = voxels >= max(min_voxels, 1)
    keep[component[0]] = False  # label 0 is the background's component
    final = np.zeros(len(component), dtype=np.int64)
    final[keep] = np.arange(1, keep.sum() + 1)
    return final[component].astype(np.uint32)


segment.pattern = "volume"
segment.whole_volume = True
segment.needs = ("workdir",)
