"""remove_rings (Vo's sorting/filtering), paganin / retrieve_phase (analytic case, tomopy's units),
stitch_360 (round trip)."""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon.testing import project_shepp_logan, ssim_in_circle

N = 128


@pytest.fixture(scope="module")
def striped():
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    clean = project_shepp_logan(2, N, theta)
    rng = np.random.default_rng(3)
    offsets = np.zeros(N, np.float32)
    columns = rng.choice(np.arange(20, N - 20), 6, replace=False)
    offsets[columns] = rng.choice([-1, 1], 6) * 1.5
    return theta, clean, clean + offsets, columns  # a gain error per column is an offset after −log


@pytest.mark.parametrize("method", ["sort", "filter"])
def test_rings_are_reduced_and_the_image_improves(striped, method):
    theta, clean, dirty, columns = striped
    fixed = recon.remove_rings(dirty, method=method)
    assert fixed.shape == dirty.shape and fixed.dtype == np.float32
    residual = np.abs((fixed - clean)[..., columns].mean(axis=-2)).max()
    assert residual < 0.4 * 1.5  # measured 0.26 of the stripes' 1.5 left
    truth = recon.shepp_logan_3d(2, N, supersample=4)[0]
    # measured with the Shepp–Logan window, which shows rings more plainly than the smoother cosine default
    before = ssim_in_circle(recon.reconstruct(dirty[0], theta, filter_name="shepp", sinogram_order=True)[0], truth)
    after = ssim_in_circle(recon.reconstruct(fixed[0], theta, filter_name="shepp", sinogram_order=True)[0], truth)
    assert after > before + 0.05, (before, after)


def test_ring_removal_leaves_a_clean_sinogram_nearly_alone(striped):
    _, clean, _, _ = striped
    fixed = recon.remove_rings(clean[0])
    assert np.abs(fixed - clean[0]).mean() < 0.01 * np.abs(clean[0]).mean()


def test_ring_removal_bad_input():
    with pytest.raises(ValueError, match="method"):
        recon.remove_rings(np.zeros((10, 10)), method="wavelet")
    with pytest.raises(ValueError, match="odd"):
        recon.remove_rings(np.zeros((10, 10)), size=4)
    with pytest.raises(ValueError, match="NaN"):
        recon.remove_rings(np.full((10, 10), np.nan))


def test_paganin_recovers_thickness_of_a_homogeneous_object():
    """Analytic case: a Gaussian bump of thickness T, propagated in Paganin's own model
    I_z = (1 − (zδ/μ) ∇²) exp(−μT) with ∇² worked out by hand; −ln(retrieved)/μ must give T back."""
    pixel, distance, energy, delta_beta = 1e-6, 0.1, 20.0, 300.0
    wavelength = 4.135667696e-15 * 299_792_458.0 / (energy * 1e3)
    beta = 1e-9
    mu = 4 * np.pi * beta / wavelength
    n, sigma, peak = 128, 6e-6, 200e-6
    coords = (np.arange(n) - n / 2) * pixel
    r2 = coords[:, None] ** 2 + coords[None, :] ** 2
    thickness = peak * np.exp(-r2 / (2 * sigma ** 2))
    contact = np.exp(-mu * thickness)
    grad2 = thickness ** 2 * r2 / sigma ** 4  # |∇T|²
    lap = thickness * (r2 / sigma ** 4 - 2 / sigma ** 2)  # ∇²T
    laplacian = contact * (mu ** 2 * grad2 - mu * lap)  # ∇² exp(−μT)
    intensity = contact - distance * delta_beta * beta / mu * laplacian
    assert np.abs(intensity - contact).max() > 0.05  # the propagation matters here
    retrieved = recon.paganin(intensity.astype(np.float32), pixel_size_m=pixel, distance_m=distance,
                              energy_kev=energy, delta_beta=delta_beta)
    assert retrieved.shape == (n, n) and retrieved.dtype == np.float32
    found = -np.log(retrieved) / mu
    assert np.abs(found - thickness).max() < 0.01 * peak
    naive = -np.log(np.clip(intensity, 1e-6, None)) / mu
    assert np.abs(naive - thickness).max() > 0.1 * peak


def test_retrieve_phase_takes_tomopys_centimetres():
    """tomopy's retrieve_phase: pixel_size and dist in cm, alpha. The same physics in cm gives paganin's
    result in metres; metres passed where cm are meant (the 100× trap) act as a 100× longer distance."""
    image = np.random.default_rng(3).uniform(0.5, 1.0, (1, 64, 48)).astype(np.float32)
    si = recon.paganin(image, pixel_size_m=1e-6, distance_m=0.1, energy_kev=20, delta_beta=300)
    alpha = recon.alpha_from_delta_beta(300)
    assert alpha == pytest.approx(1 / (4 * np.pi ** 2 * 300))
    np.testing.assert_array_equal(recon.retrieve_phase(image, pixel_size=1e-4, dist=10, energy=20, alpha=alpha), si)
    trap = recon.retrieve_phase(image, pixel_size=1e-6, dist=0.1, energy=20, alpha=alpha)
    np.testing.assert_allclose(trap, recon.paganin(image, pixel_size_m=1e-6, distance_m=10, energy_kev=20,
                                                   delta_beta=300), rtol=1e-5)
    assert np.abs(trap - si).max() > 0.02  # visibly another image, not a rounding difference


def test_paganin_keeps_a_flat_field_flat_and_rejects_bad_parameters():
    flat = np.full((2, 16, 16), 0.7, np.float32)
    np.testing.assert_allclose(recon.paganin(flat, pixel_size_m=1e-6, distance_m=0.1, energy_kev=20,
                                             delta_beta=100), 0.7, rtol=1e-5)
    np.testing.assert_allclose(recon.retrieve_phase(flat), 0.7, rtol=1e-5)  # tomopy's defaults
    with pytest.raises(ValueError, match="distance_m"):
        recon.paganin(flat, pixel_size_m=1e-6, distance_m=0, energy_kev=20, delta_beta=100)
    with pytest.raises(ValueError, match="delta_beta"):
        recon.paganin(flat, pixel_size_m=1e-6, distance_m=0.1, energy_kev=20, delta_beta=-1)
    with pytest.raises(ValueError, match="alpha"):
        recon.retrieve_phase(flat, alpha=0)
    with pytest.raises(ValueError, match="rows, columns"):
        recon.retrieve_phase(flat[0, 0])


@pytest.fixture(scope="module")
def full_360():
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    return theta, project_shepp_logan(2, N, theta)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("given", [True, False])
def test_stitch_360_round_trip(full_360, side, given):
    theta, full = full_360
    half, axis = (full[..., :80], 63.5) if side == "right" else (full[..., 40:], 23.5)
    stitched = recon.stitch_360(half, theta, axis if given else None)
    assert stitched.sinograms.shape == (2, 180, N)
    assert abs(stitched.input_center - axis) < 0.05 and abs(stitched.center - 63.5) < 0.05
    np.testing.assert_allclose(stitched.theta, theta[:180])
    assert np.abs(stitched.sinograms - full[:, :180]).max() < 0.01 * full.max()
    if not given:
        assert stitched.details["side"] == side
        volume = recon.reconstruct(stitched.sinograms, stitched.theta, stitched.center, sinogram_order=True)
        assert ssim_in_circle(volume[0], recon.shepp_logan_3d(2, N, supersample=4)[0]) > 0.9


def test_stitch_360_finds_a_fractional_axis_in_noise(full_360):
    theta, _ = full_360
    axis = 63.5 + 0.3
    half = project_shepp_logan(1, N, theta, center=axis)[..., :80]
    half += np.random.default_rng(0).normal(0, 0.3, half.shape).astype(np.float32)
    assert abs(recon.stitch_360(half, theta).input_center - axis) < 0.25


def test_stitch_360_bad_input(full_360):
    theta, full = full_360
    with pytest.raises(ValueError, match="360"):
        recon.stitch_360(full[:, :180], theta[:180])
    with pytest.raises(ValueError, match="center"):
        recon.stitch_360(full, theta, center=200.0)
