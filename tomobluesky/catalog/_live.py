"""How the live slices of a scan are kept in Tiled: one array for all of them.

Every request costs the Tiled server tens of milliseconds of CPU whatever it
carries (the key's lookup in the authentication database, the catalogue's
queries), and on a small acquisition host that CPU is taken from the scan. The
three live slices are small (256 × 256 and two 26 × 256 at the default live
width), so they travel as one array, ``live/<scan uid>/slices``: the slices
stacked on their first axis, in the order given, all as wide as the axial one.
The array's metadata says which rows hold which slice::

    {"slices": {"axial": [0, 256], "vertical_x": [256, 282], "vertical_y": [282, 308]}}

A preview update is then one array write and one metadata update, not three
and one. Readers use :func:`live_slices` (or :func:`read_live_slice`), which
also read the one-array-per-slice layout of older writers.
"""

from __future__ import annotations

import numpy as np

#: the child of ``live/<scan uid>`` that holds the slices, stacked
PACKED = "slices"


def pack_slices(slices: dict) -> tuple[np.ndarray, dict[str, list[int]]]:
    """The slices stacked into one float32 array, and which rows hold which slice."""
    if not slices:
        raise ValueError("no live slices to write")
    images = {str(name): np.asarray(image, dtype=np.float32) for name, image in slices.items()}
    shapes = {name: image.shape for name, image in images.items()}
    if any(len(shape) != 2 for shape in shapes.values()) or len({s[1] for s in shapes.values()}) != 1:
        raise ValueError(f"live slices must be 2-D and equally wide to be kept together, got {shapes}")
    layout, start = {}, 0
    for name, image in images.items():
        layout[name] = [start, start + image.shape[0]]
        start += image.shape[0]
    return np.concatenate(list(images.values()), axis=0), layout


def layout_of(packed_node) -> dict[str, tuple[int, int]]:
    """Which rows of a packed array hold which slice, checked against the array's height: a layout that
    does not fit is refused rather than cut into wrong images."""
    layout = dict(packed_node.metadata).get(PACKED)
    height = packed_node.shape[0]
    if not isinstance(layout, dict):
        raise ValueError(f"the live array has no {PACKED!r} layout in its metadata")
    checked = {}
    for name, rows in layout.items():
        if (not isinstance(rows, (list, tuple)) or len(rows) != 2
                or not all(isinstance(r, int) and not isinstance(r, bool) for r in rows)
                or not 0 <= rows[0] < rows[1] <= height):
            raise ValueError(f"the live slice {str(name)[:40]!r} has rows {str(rows)[:40]}, "
                             f"not a range inside the array's {height}")
        checked[str(name)] = (rows[0], rows[1])
    return checked


def _node(client, scan_uid: str, *below: str):
    """``live/<scan uid>/...`` in one request, or None where the catalogue has no such node."""
    from ._writers import LIVE

    try:
        return client[(LIVE, scan_uid, *below)]
    except KeyError:
        return None


def read_live_slice(client, scan_uid: str, name: str):
    """One live slice of a scan, or None when it has none such. Two requests: the packed array's
    node (its metadata holds the layout), then only that slice's rows."""
    packed = _node(client, scan_uid, PACKED)
    if packed is None:  # a writer from before the slices were packed: one array each
        node = _node(client, scan_uid, name)
        return None if node is None else node.read()
    rows = layout_of(packed).get(name)
    return None if rows is None else packed[rows[0]:rows[1]]


def live_slices(client, scan_uid: str) -> dict[str, np.ndarray]:
    """Every live slice of ``scan_uid`` by name (``{}`` before the first preview), in two requests.

    >>> from tomobluesky.catalog import live_slices
    >>> live_slices(client, uid)["axial"].shape
    (256, 256)
    """
    packed = _node(client, scan_uid, PACKED)
    if packed is None:  # a writer from before the slices were packed: one array each
        live = _node(client, scan_uid)
        return {} if live is None else {name: live[name].read() for name in live if name != "control"}
    layout = layout_of(packed)
    whole = packed.read()
    return {name: whole[a:b] for name, (a, b) in layout.items()}


def live_shapes(live_node) -> dict[str, tuple[int, int]]:
    """The shape of each live slice, from the packed array's layout (no pixels read)."""
    packed = live_node.get(PACKED)
    if packed is None:
        shapes = {}
        for name in ("axial", "vertical_x"):
            node = live_node.get(name)
            if node is not None:
                shapes[name] = tuple(node.shape)
        return shapes
    width = packed.shape[1]
    return {name: (b - a, width) for name, (a, b) in layout_of(packed).items()}
