"""Volume filters that reach across slices, so they declare a ``halo``.

tomobluesky hands a volume step one slab of slices at a time, with ``halo``
more slices on each side (fewer at the volume's ends) and cuts them off the
result again. The halo must cover the widest reach any allowed parameter
gives; the parameter annotations keep the parameters inside it.
"""

from typing import Annotated, Literal

from pydantic import Field

from ._backend import backend


def median3d(volume, *, size: Literal[3, 5] = 3):
    """3-D median filter: speckle noise down, edges kept (a common step before segmenting)."""
    _, ndimage = backend(volume)
    return ndimage.median_filter(volume, size=size, mode="nearest")


median3d.pattern = "volume"
median3d.halo = 2  # the reach of size 5


def unsharp_mask(volume, *, sigma: Annotated[float, Field(gt=0, le=2)] = 1.0,
                 amount: Annotated[float, Field(ge=0)] = 1.0):
    """Unsharp mask: volume + amount × (volume − Gaussian blur of width sigma voxels), sharper edges."""
    xp, ndimage = backend(volume)
    values = xp.asarray(volume, dtype=xp.float32)
    blurred = ndimage.gaussian_filter(values, sigma, mode="nearest", truncate=4.0)
    return values + amount * (values - blurred)


unsharp_mask.pattern = "volume"
unsharp_mask.halo = 8  # the Gaussian's reach is round(4 sigma) voxels: 8 at the largest sigma, 2
