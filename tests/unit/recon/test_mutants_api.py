"""``reconstruct``'s checks (``_api``, ``_validate``): the bounds are the detector's, the messages whole.

The axis may sit on the first or the last detector column (a half-acquisition's axis can be near
an edge) but not beyond; the errors name the problem and the valid range word for word.
"""

import re

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon.testing import project_disk


@pytest.mark.parametrize("center", [0.0, 15.0])
def test_an_axis_on_the_first_or_last_column_is_accepted(center):
    theta = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    sino = project_disk(16, theta, center, mu=0.01, radius=3.0)[None]
    volume = recon.reconstruct(sino, theta, center, sinogram_order=True)
    assert volume.shape == (1, 16, 16) and np.isfinite(volume).all()


@pytest.mark.parametrize("center, shown", [(-0.01, "-0.01..-0.01"), (15.01, "15.01..15.01"),
                                           ([3.0, 16.5], "3.00..16.50")])
def test_an_axis_off_the_detector_is_refused_with_the_detector_columns(center, shown):
    theta = np.linspace(0, np.pi, 8, endpoint=False)
    sino = np.zeros((2, 8, 16), np.float32)
    message = f"center {shown} lies outside the detector (columns 0..15)"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        recon.reconstruct(sino, theta, center, sinogram_order=True)


def test_a_non_finite_angle_is_refused_in_those_words():
    theta = np.linspace(0, np.pi, 8, endpoint=False)
    theta[3] = np.nan
    with pytest.raises(ValueError, match="^theta contains NaN or infinite values$"):
        recon.reconstruct(np.zeros((8, 16), np.float32), theta, sinogram_order=True)
