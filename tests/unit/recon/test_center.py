"""find_center(): Vo's method, the sharpness search and "auto", on the tooth and on phantoms."""

import dataclasses

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon.testing import project_shepp_logan

TOOTH_CENTER = 295.0  # tooth scan: tomopy project, APS, BSD-3-Clause, (c) 2013-2019 UChicago Argonne LLC


@pytest.mark.parametrize("method", ["vo", "sharpness", "auto"])
def test_tooth_axis(tooth, method):
    sinograms, theta = tooth
    found = recon.find_center(sinograms, theta, method=method)
    assert abs(found.center - TOOTH_CENTER) <= 1.5, found
    assert found.method == method
    assert 0.0 <= found.confidence <= 1.0


def test_tooth_single_sinogram(tooth):
    sinograms, theta = tooth
    found = recon.find_center(sinograms[0], theta)
    assert abs(found.center - TOOTH_CENTER) <= 1.5


@pytest.mark.parametrize("offset", [-7.25, 0.0, 4.5])
def test_phantom_axis_to_a_third_of_a_pixel(offset):
    n = 128
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    center = (n - 1) / 2 + offset
    sino = project_shepp_logan(2, n, theta, center=center)
    vo = recon.find_center(sino, theta)
    auto = recon.find_center(sino, theta, method="auto")
    assert abs(vo.center - center) <= 0.34, vo
    assert abs(auto.center - center) <= 0.34, auto
    assert auto.confidence > 0.6


def test_confidence_drops_on_structureless_noise():
    rng = np.random.default_rng(1)
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    noise = rng.random((180, 128)).astype(np.float32)
    phantom = project_shepp_logan(None, 128, theta)
    assert recon.find_center(noise, theta, method="auto").confidence < \
        recon.find_center(phantom, theta, method="auto").confidence - 0.3


def test_result_is_frozen():
    result = recon.CenterResult(10.0, 0.9, "vo", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.center = 11.0


def test_bad_input():
    theta = np.linspace(0, np.pi, 90, endpoint=False)
    sino = np.ones((90, 64), np.float32)
    with pytest.raises(ValueError, match="method"):
        recon.find_center(sino, theta, method="guess")
    with pytest.raises(ValueError, match="NaN"):
        recon.find_center(np.full_like(sino, np.nan), theta)
    with pytest.raises(ValueError, match="one angle per projection"):
        recon.find_center(sino, theta[:-3])
    with pytest.raises(ValueError, match="degrees"):
        recon.find_center(sino, np.degrees(theta))
