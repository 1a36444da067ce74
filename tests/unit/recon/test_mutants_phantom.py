"""The phantom's building blocks against values worked out by hand: a centred disk's projection, the
half-disc integral, the ellipsoid-like shrinking of the 3-D phantom's slices (the mutants of
recon/_phantom.py, issue 16)."""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon._phantom import _half_disc_integral
from tomobluesky.recon.testing import project_disk, project_shepp_logan


def test_a_disk_on_the_axis_projects_the_same_at_every_angle():
    """x0 = y0 = 0 by default: the disk sits on the axis, so every angle sees the same profile, symmetric
    about the axis' column, holding the disk's whole mass μ·π·R²."""
    theta = np.linspace(0, np.pi, 7)
    sino = project_disk(41, theta, 20.0, mu=0.5, radius=6.0)
    assert sino.shape == (7, 41) and sino.dtype == np.float32  # float32 like every sinogram here
    np.testing.assert_allclose(sino, np.broadcast_to(sino[0], sino.shape), atol=1e-6)
    np.testing.assert_allclose(sino[0], sino[0, ::-1], atol=1e-6)
    np.testing.assert_allclose(sino.sum(axis=1), 0.5 * np.pi * 36, rtol=1e-5)
    # the column through the centre averages the chord 2·√(R² − s²) over s in [−½, ½]
    s = np.linspace(-0.5, 0.5, 20001)
    assert sino[0, 20] == pytest.approx(0.5 * np.mean(2 * np.sqrt(36 - s ** 2)), rel=1e-6)


@pytest.mark.parametrize("r", [1.0, 2.0, 7.5])
def test_half_disc_integral_by_hand(r):
    """∫_{−r}^{x} √(r² − s²) ds: 0 at −r, a quarter disc πr²/4 at 0, half a disc πr²/2 at r and beyond,
    and r²(√3/8 + π/12) + πr²/4 at x = r/2 (the area to the left of the chord x = r/2 in the upper half)."""
    x = np.array([-2 * r, -r, 0.0, r / 2, r, 3 * r])
    want = np.array([0, 0, np.pi * r * r / 4, r * r * (np.sqrt(3) / 8 + np.pi / 12) + np.pi * r * r / 4,
                     np.pi * r * r / 2, np.pi * r * r / 2])
    np.testing.assert_allclose(_half_disc_integral(x, r), want, rtol=1e-12, atol=1e-12 * r * r)


def test_the_3d_phantoms_slices_are_cuts_of_an_ellipsoid():
    """Slice k of n sits at z = (k − (n − 1)/2) / (n/2) of the half height; its ellipses are scaled by
    √(1 − (0.8·z)²), the cut of an ellipsoid 1.25 half heights tall. For 5 slices z = 0, ±0.4, ±0.8:
    scales 1, √(1 − 0.1024), √(1 − 0.4096)."""
    n = 32
    stack = recon.shepp_logan_3d(5, n)
    assert stack.shape == (5, n, n) and stack.dtype == np.float32
    for k, scale in enumerate([np.sqrt(1 - 0.4096), np.sqrt(1 - 0.1024), 1.0, np.sqrt(1 - 0.1024),
                               np.sqrt(1 - 0.4096)]):
        np.testing.assert_array_equal(stack[k], recon.shepp_logan(n, scale=scale))
    # one slice is the middle cut, the 2-D phantom itself; two are at z = ±0.5: √(1 − 0.16)
    np.testing.assert_array_equal(recon.shepp_logan_3d(1, n)[0], recon.shepp_logan(n))
    pair = recon.shepp_logan_3d(2, n)
    for k in range(2):
        np.testing.assert_array_equal(pair[k], recon.shepp_logan(n, scale=np.sqrt(0.84)))


def test_the_3d_phantom_passes_its_supersampling_on():
    stack = recon.shepp_logan_3d(3, 24, supersample=3)
    np.testing.assert_array_equal(stack[1], recon.shepp_logan(24, supersample=3))
    assert np.abs(stack[1] - recon.shepp_logan(24)).max() > 0.05  # edges are averaged, not point samples


def test_opposite_views_of_the_projector_are_mirror_images():
    """p(θ + π, t) = p(θ, −t): with the axis at the grid's centre (the default) and the samples along
    each ray placed symmetrically about it, the ray at θ + π through −t visits the same points as the
    ray at θ through t, so the two views agree to rounding, for any image, even a lopsided one."""
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 1, (33, 33)).astype(np.float32) * recon.circle_mask(33, fraction=0.9)
    for theta in (0.3, 1.1, 2.0):
        views = recon.project(image, np.array([theta, theta + np.pi]))
        assert views.shape == (1, 2, 33) and views.dtype == np.float32
        np.testing.assert_allclose(views[0, 1], views[0, 0, ::-1], rtol=1e-5, atol=1e-5)
    assert np.abs(views[0, 0] - views[0, 0, ::-1]).max() > 0.5  # the view itself is not symmetric


def test_the_projector_defaults_to_the_exact_phantoms_axis():
    """Without a centre both the bilinear projector and the exact line integrals put the axis at
    (n − 1)/2: the pixel-averaged phantom projected one way matches the other to 2 % of the peak."""
    n = 96
    theta = np.linspace(0, np.pi, 12, endpoint=False)
    approx = recon.project(recon.shepp_logan(n, supersample=4), theta)[0]
    exact = project_shepp_logan(None, n, theta)
    assert np.sqrt(np.mean((approx - exact) ** 2)) < 0.02 * exact.max()  # half a pixel off: 0.044


def test_bilinear_rays_never_go_negative_on_a_single_bright_pixel():
    """Bilinear interpolation weighs the four neighbours with non-negative weights, so a non-negative
    image has non-negative line integrals at every angle, and a lone pixel keeps about its mass (1).
    (A spline of higher order rings around the pixel: projections dip about 0.1 below zero.)"""
    image = np.zeros((21, 21), np.float32)
    image[7, 13] = 1.0
    sino = recon.project(image, np.array([0.3, 0.7, 1.2]))[0]
    assert sino.min() >= 0
    np.testing.assert_allclose(sino.sum(axis=1), 1.0, atol=0.03)


def test_the_phantoms_ellipses_are_closed_and_y_points_up():
    """Toft's fifth ellipse: value 0.1, semi-axes 0.21 × 0.25, centred at (0, 0.35). On a 100-pixel grid
    (pixel centres at ±0.01, ±0.03, …) its horizontal ends (±0.21, 0.35) fall exactly on pixel centres,
    row 32, columns 39 and 60; a closed ellipse counts them: 1 (skull) − 0.8 (brain) + 0.1 = 0.3, and one
    pixel farther out 0.2. y points up: the mirror row below the centre (y = −0.35) is brain only, 0.2."""
    image = recon.shepp_logan(100)
    assert image[32, 39] == pytest.approx(0.3) and image[32, 60] == pytest.approx(0.3)
    assert image[32, 38] == pytest.approx(0.2) and image[32, 61] == pytest.approx(0.2)
    assert image[67, 39] == pytest.approx(0.2) and image[67, 50] == pytest.approx(0.2)


def test_a_smaller_scale_is_the_same_phantom_magnified_down():
    """shepp_logan(2n, scale=0.5) holds shepp_logan(n) in its middle n × n pixels: both grids put pixel
    centres at the same points once the scale is undone (the off-centre, tilted ellipses included)."""
    n = 64
    half = recon.shepp_logan(2 * n, scale=0.5)
    np.testing.assert_array_equal(half[n // 2:n // 2 + n, n // 2:n // 2 + n], recon.shepp_logan(n))
    assert not half[:n // 2].any() and not half[:, :n // 2].any()  # nothing outside the shrunken skull


def test_supersampling_by_two_averages_two_by_two_blocks_into_float32():
    fine = recon.shepp_logan(80)
    coarse = recon.shepp_logan(40, supersample=2)
    assert coarse.dtype == np.float32
    np.testing.assert_allclose(coarse, fine.reshape(40, 2, 40, 2).mean(axis=(1, 3)), atol=1e-7)


@pytest.mark.parametrize("n_slices", [None, 3])
def test_exact_projections_are_float32_and_keep_the_phantoms_mass(n_slices):
    """The exact line integrals sum, over the detector, to the phantom's mass Σ value·π·A·B at every
    angle (A, B the semi-axes in pixels, each slice's scaled by its s²), as float32."""
    from tomobluesky.recon._phantom import _ELLIPSES, _slice_scales

    n = 64
    theta = np.array([0.0, 0.4, 1.3, 2.9])
    sino = project_shepp_logan(n_slices, n, theta)
    scales = np.ones(1) if n_slices is None else _slice_scales(n_slices)
    assert sino.dtype == np.float32
    assert sino.shape == ((4, n) if n_slices is None else (n_slices, 4, n))
    mass = sum(v * np.pi * a * b for v, a, b, *_ in _ELLIPSES) * (n / 2) ** 2
    np.testing.assert_allclose(np.reshape(sino, (-1, 4, n)).sum(axis=-1),
                               np.repeat(mass * scales[:, None] ** 2, 4, axis=1), rtol=2e-3)
