"""Reading a multiscale volume for the page: planes, regions, histograms, line profiles.

Every function takes the volume's levels (level 0 first, each 2× coarser on
every axis, as ``tomobluesky.store`` writes them) as array-likes that slice
lazily: a Tiled array client in the viewer, plain NumPy arrays in tests. Only
the part of a level that is asked for is sliced, so Tiled reads only the
chunks under it.

Coordinates given by the page are always level-0 voxel indices; a level-k
pixel j covers level-0 indices ``j·2^k .. (j+1)·2^k − 1``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

# A plane is named by the axis it cuts: z (axial: rows y, columns x), y (coronal: rows z, columns x),
# x (sagittal: rows z, columns y).
PLANE_AXES = {"z": (1, 2), "y": (0, 2), "x": (0, 1)}
HISTOGRAM_VOXELS = 1 << 22  # at most this many voxels of the coarsest level go into a histogram


class BadRequest(ValueError):
    """A request the page (or a script) got wrong: the message says what."""


@dataclass(frozen=True)
class Plane:
    """What to show: the plane cutting ``axis`` at level-0 ``index``, the level-0 rows ``r0:r1`` and
    columns ``c0:c1`` of it, for an image about ``size`` pixels along its longer side."""
    axis: str
    index: int
    r0: int
    r1: int
    c0: int
    c1: int
    size: int


def plane_shape(shape, axis: str) -> tuple[int, int]:
    """(rows, columns) of a plane cutting ``axis`` of a volume of ``shape`` (z, y, x)."""
    rows, cols = PLANE_AXES[axis]
    return int(shape[rows]), int(shape[cols])


def _down(n: int, k: int) -> int:
    return n >> k


def _up(n: int, k: int) -> int:
    return -(-n >> k) if n >= 0 else 0


def level_for_extent(shapes, extent: int, size: int) -> int:
    """The coarsest level at which ``extent`` level-0 pixels still span at least ``size`` pixels
    (extent / 2^k >= size; level 0 when none does, or ``size`` is 0): no finer data is read than
    the screen can show, and a level's pixel is never larger than a screen pixel."""
    best = 0
    for k in range(len(shapes)):
        if size and extent >= size << k:
            best = k
    return best


def check_plane(shape, plane: Plane) -> None:
    if plane.axis not in PLANE_AXES:
        raise BadRequest(f"a plane is cut along z, y or x, not {plane.axis!r}")
    depth = int(shape["zyx".index(plane.axis)])
    if not 0 <= plane.index < depth:
        raise BadRequest(f"{plane.axis} = {plane.index} is outside the volume's 0..{depth - 1}")
    rows, cols = plane_shape(shape, plane.axis)
    if not (0 <= plane.r0 < plane.r1 <= rows and 0 <= plane.c0 < plane.c1 <= cols):
        raise BadRequest(f"region rows {plane.r0}..{plane.r1}, columns {plane.c0}..{plane.c1} is empty or "
                         f"outside the plane's {rows} rows and {cols} columns")


def read_plane(levels, plane: Plane) -> tuple[np.ndarray, int, tuple[int, int, int, int]]:
    """The region of ``plane`` from the level that fits ``plane.size``.

    Returns the image, the level it came from, and the level-0 region it
    covers (rows r0..r1, columns c0..c1: the asked region widened to whole
    pixels of that level, clipped to the volume)."""
    shape = levels[0].shape
    check_plane(shape, plane)
    k = level_for_extent([a.shape for a in levels], max(plane.r1 - plane.r0, plane.c1 - plane.c0), plane.size)
    level = levels[k]
    rows, cols = PLANE_AXES[plane.axis]
    a, b = _down(plane.r0, k), min(_up(plane.r1, k), level.shape[rows])
    c, d = _down(plane.c0, k), min(_up(plane.c1, k), level.shape[cols])
    index = [slice(None)] * 3
    index["zyx".index(plane.axis)] = min(plane.index >> k, level.shape["zyx".index(plane.axis)] - 1)
    index[rows], index[cols] = slice(a, b), slice(c, d)
    image = np.asarray(level[tuple(index)], dtype=np.float32)
    covered = (a << k, min(b << k, shape[rows]), c << k, min(d << k, shape[cols]))
    return image, k, covered


def window_png(image: np.ndarray, vmin: float, vmax: float) -> bytes:
    """Grey-scale PNG: ``vmin`` → 0, ``vmax`` → 255, linear between, clipped; grey = floor(255·t).
    NaN is drawn black."""
    from PIL import Image

    image = np.asarray(image, dtype=np.float64)
    span = vmax - vmin if vmax > vmin else 1.0
    scaled = np.clip((np.nan_to_num(image, nan=vmin) - vmin) / span, 0.0, 1.0)
    buf = io.BytesIO()
    Image.fromarray(np.floor(scaled * 255).astype(np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def histogram_sample(levels) -> tuple[np.ndarray, int, int]:
    """Voxels for the volume's histogram: the finest level of at most HISTOGRAM_VOXELS voxels, or,
    when even the coarsest has more, every ``step``-th slice of the coarsest. Returns (voxels,
    level, step)."""
    counts = [int(np.prod(a.shape)) for a in levels]
    small = [k for k, n in enumerate(counts) if n <= HISTOGRAM_VOXELS]
    k = small[0] if small else len(levels) - 1
    step = max(1, math.ceil(counts[k] / HISTOGRAM_VOXELS))
    sample = levels[k][::step, :, :]
    return np.asarray(sample, dtype=np.float32), k, step


def histogram(voxels: np.ndarray, bins: int) -> dict:
    """Counts of the finite voxels in ``bins`` equal bins from their minimum to their maximum."""
    finite = voxels[np.isfinite(voxels)]
    if not finite.size:
        return {"edges": [], "counts": [], "min": None, "max": None, "voxels": 0}
    lo, hi = float(finite.min()), float(finite.max())
    counts, edges = np.histogram(finite, bins=bins, range=(lo, hi if hi > lo else lo + 1.0))
    return {"edges": edges.tolist(), "counts": counts.tolist(), "min": lo, "max": hi, "voxels": int(finite.size)}


def profile_points(start, end, k: int, level_plane_shape) -> np.ndarray:
    """Level-k pixel indices (row, col) along the line from ``start`` to ``end`` (level-0
    coordinates, pixel centres at integers): one sample per level-k pixel of length, nearest
    neighbour, both ends included."""
    scale = float(1 << k)
    # level-0 coordinate p lies at level-k coordinate (p + 0.5) / 2^k - 0.5 (pixel centres)
    a = (np.asarray(start, float) + 0.5) / scale - 0.5
    b = (np.asarray(end, float) + 0.5) / scale - 0.5
    n = max(2, int(math.ceil(np.hypot(*(b - a)))) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    points = np.rint(a + t * (b - a)).astype(int)
    return np.clip(points, 0, np.asarray(level_plane_shape) - 1)


def read_profile(levels, axis: str, index: int, start, end, size: int) -> dict:
    """Values along a line in the plane cutting ``axis`` at ``index``, from the level at which the
    line is still ``size`` pixels long; only the line's bounding box is read."""
    shape = levels[0].shape
    rows, cols = plane_shape(shape, axis)
    for name, (r, c) in (("start", start), ("end", end)):
        if not (np.isfinite(r) and np.isfinite(c) and 0 <= r <= rows - 1 and 0 <= c <= cols - 1):
            raise BadRequest(f"the line's {name} ({r}, {c}) is outside the plane's {rows} rows and {cols} columns")
    check_plane(shape, Plane(axis, index, 0, rows, 0, cols, 0))
    length = int(math.ceil(math.hypot(end[0] - start[0], end[1] - start[1])))
    k = level_for_extent([a.shape for a in levels], max(length, 1), size)
    level = levels[k]
    ra, ca = PLANE_AXES[axis]
    points = profile_points(start, end, k, (level.shape[ra], level.shape[ca]))
    (r0, c0), (r1, c1) = points.min(axis=0), points.max(axis=0) + 1
    index_k = min(index >> k, level.shape["zyx".index(axis)] - 1)
    cut = [slice(None)] * 3
    cut["zyx".index(axis)] = index_k
    cut[ra], cut[ca] = slice(int(r0), int(r1)), slice(int(c0), int(c1))
    box = np.asarray(level[tuple(cut)], dtype=np.float32)
    values = box[points[:, 0] - r0, points[:, 1] - c0]
    return {"level": k, "index": int(index_k), "points": points.tolist(),
            "values": [float(v) if np.isfinite(v) else None for v in values]}
