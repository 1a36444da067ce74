"""Zingers: single pixels of single frames hit by a stray photon or particle.

A zinger is there in one frame and gone in the next, while the sample's own
features move smoothly from frame to frame as it turns. So a pixel is
compared with the same pixel in the neighbouring frames: in a sinogram
(angles × columns of one detector row), with its neighbours along the angle
axis. A median across the image instead would also "correct" the crests of
thin features. Left in, each zinger becomes a streak across the slice.
"""

from typing import Annotated, Literal

from pydantic import Field

from ._backend import backend

#: 1.4826 × the median absolute value of Gaussian noise is its standard deviation
_MAD_TO_SIGMA = 1.4826


def remove_zingers(sinograms, *, threshold: Annotated[float, Field(gt=0)] = 6.0, size: Literal[3, 5, 7] = 3):
    """Replace zingers (one-frame outliers) by the median of the same pixel in the ``size`` nearest frames.

    A pixel is a zinger when it differs from that median by more than ``threshold``
    times the noise, measured per sinogram (detector row) from the differences
    between consecutive frames. Every other pixel is returned unchanged.
    """
    xp, ndimage = backend(sinograms)
    values = xp.asarray(sinograms, dtype=xp.float32)
    local = ndimage.median_filter(values, size=(1, size, 1), mode="nearest")
    # frame-to-frame differences hold twice the noise variance and, unlike the distance to the median,
    # are not zero a third of the time; their median is untouched by the few big steps at edges
    steps = xp.abs(xp.diff(values, axis=1)).reshape(len(values), -1)
    noise = _MAD_TO_SIGMA / 2 ** 0.5 * xp.median(steps, axis=1)
    return xp.where(xp.abs(values - local) > threshold * noise[:, None, None], local, values)


# each sinogram on its own: no neighbouring rows needed, so no halo
remove_zingers.pattern = "sinograms"
remove_zingers.halo = 0
