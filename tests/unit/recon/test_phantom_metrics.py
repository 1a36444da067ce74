"""Phantom, projectors and metrics: the yardsticks the other tests rely on."""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon.testing import project_shepp_logan


def test_general_projector_matches_exact_phantom_sinogram():
    n = 128
    theta = np.linspace(0, np.pi, 45, endpoint=False)
    volume = recon.shepp_logan_3d(2, n, supersample=4)
    approx = recon.project(volume, theta, center=66.25)
    exact = project_shepp_logan(2, n, theta, center=66.25)
    assert approx.shape == exact.shape == (2, 45, n)
    assert np.sqrt(np.mean((approx - exact) ** 2)) / exact.max() < 0.01


def test_single_angle_is_a_row_of_many():
    volume = recon.shepp_logan_3d(3, 64)
    theta = np.linspace(0, np.pi, 7)
    many = recon.project(volume, theta)
    one = recon.project(volume, np.array([theta[4]]))
    assert one.shape == (3, 1, 64)
    np.testing.assert_allclose(one[:, 0], many[:, 4], rtol=1e-6, atol=1e-6)


def test_projection_preserves_mass():
    image = recon.shepp_logan(96)
    sino = recon.project(image, np.linspace(0, np.pi, 6, endpoint=False))
    np.testing.assert_allclose(sino[0].sum(axis=-1), image.sum(), rtol=2e-3)


def test_metrics_fit_the_gain_and_see_errors():
    truth = recon.shepp_logan(64)
    assert recon.ssim_in_circle(3 * truth, truth) == pytest.approx(1.0)
    assert recon.rmse_in_circle(3 * truth, truth) == pytest.approx(0.0, abs=1e-6)
    assert recon.rmse_in_circle(3 * truth, truth, fit=False) > 0.1
    blurred = np.roll(truth, 2, axis=1)
    assert recon.ssim_in_circle(blurred, truth) < 0.8


def test_supersampled_phantom_is_the_pixel_average():
    fine = recon.shepp_logan(128)
    coarse = recon.shepp_logan(32, supersample=4)
    np.testing.assert_allclose(coarse, fine.reshape(32, 4, 32, 4).mean(axis=(1, 3)), atol=1e-6)


def test_disk_projection_keeps_the_disks_mass_at_every_angle_and_moves_with_it():
    from tomobluesky.recon.testing import project_disk

    theta = np.linspace(0, np.pi, 37)
    sino = project_disk(96, theta, 47.5, mu=0.02, radius=12.5, x0=9.0, y0=-4.0)
    np.testing.assert_allclose(sino.sum(axis=1), 0.02 * np.pi * 12.5**2, rtol=1e-5)  # whole disk on the detector
    centroid = (sino * np.arange(96)).sum(axis=1) / sino.sum(axis=1)
    np.testing.assert_allclose(centroid, 47.5 + 9.0 * np.cos(theta) - 4.0 * np.sin(theta), atol=1e-3)
