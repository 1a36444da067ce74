"""OME-NGFF 0.5 ``multiscales`` metadata for a z, y, x pyramid."""

from __future__ import annotations

NGFF_VERSION = "0.5"


def multiscales(shapes, *, pixel_size=None, unit="micrometer", name="") -> dict:
    """The ``multiscales`` block for levels "0", "1", … of ``shapes``.

    Level k's voxel spans 2^k voxels of level 0 on every axis (the last one
    may be cut short by an odd size); its translation puts the centre of its
    first voxel at the centre of the level-0 block it averages.
    """
    size = float(pixel_size) if pixel_size else 1.0
    axes = [{"name": ax, "type": "space", **({"unit": unit} if pixel_size else {})} for ax in "zyx"]
    datasets = []
    for k, shape in enumerate(shapes):
        scale = [size * 2**k] * len(shape)
        translation = [size * (2**k - 1) / 2] * len(shape)
        transforms = [{"type": "scale", "scale": scale}]
        if any(translation):
            transforms.append({"type": "translation", "translation": translation})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    block = {"axes": axes, "datasets": datasets}
    if name:
        block["name"] = name
    return block


def ome_attributes(shapes, **kwargs) -> dict:
    """Group attributes as OME-NGFF 0.5 puts them in Zarr v3: under "ome"."""
    return {"ome": {"version": NGFF_VERSION, "multiscales": [multiscales(shapes, **kwargs)]}}
