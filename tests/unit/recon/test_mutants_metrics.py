"""The yardsticks against values worked out by hand on tiny images: the circle, the least-squares gain,
the RMSE and the SSIM of constant images (the mutants of recon/_metrics.py, issue 16)."""

import re

import numpy as np
import pytest

from tomobluesky import recon


def test_circle_mask_counts_pixels_on_its_edge():
    """5 × 5, centre pixel (2, 2), radius 0.8·5/2 = 2: the 13 pixels with x² + y² ≤ 4, the four at
    distance exactly 2 included."""
    mask = recon.circle_mask(5, fraction=0.8)
    assert mask.shape == (5, 5) and mask.dtype == bool
    yy, xx = np.mgrid[-2:3, -2:3]
    np.testing.assert_array_equal(mask, xx ** 2 + yy ** 2 <= 4)
    assert mask.sum() == 13 and mask[2, 0] and mask[0, 2] and mask[2, 4] and mask[4, 2]


def test_circle_mask_of_an_even_size_is_centred_between_pixels():
    """4 × 4, fraction 1 (radius 2): pixel centres at ±0.5, ±1.5; the corners (1.5, 1.5) lie 2.12 out."""
    mask = recon.circle_mask(4, fraction=1.0)
    expected = np.ones((4, 4), bool)
    expected[[0, 0, 3, 3], [0, 3, 0, 3]] = False
    np.testing.assert_array_equal(mask, expected)


def test_circle_mask_default_fraction_is_95_percent():
    """20 × 20: radius 0.95·10 = 9.5. The middle row (y = 0.5) reaches x = √(9.5² − 0.5²) = 9.49, so it
    holds the 18 pixels |x| ≤ 8.5; the whole detector radius 10 would give all 20."""
    mask = recon.circle_mask(20)
    assert mask[10].sum() == 18 and mask[9].sum() == 18
    assert recon.circle_mask(20, fraction=1.0)[10].sum() == 20
    assert not mask[0].any()  # the top row (y = 9.5) holds only x = 0, which no pixel centre is


def _two_level_pair():
    """4 × 4 (12 pixels in the circle of fraction 0.95, radius 1.9): the image alternates 1 and 3 there,
    the truth is 2. Gain k = a·b / a·a = (6·2 + 6·6) / (6·1 + 6·9) = 0.8; residuals 0.8 − 2 = −1.2 and
    2.4 − 2 = 0.4, so the RMSE after the fit is √((1.44 + 0.16) / 2) = √0.8; without it √((1 + 1) / 2) = 1."""
    mask = recon.circle_mask(4)
    assert mask.sum() == 12
    image = np.zeros((4, 4))
    image[mask] = np.tile([1.0, 3.0], 6)
    image[~mask] = 50.0  # outside the circle: must not count
    truth = np.where(mask, 2.0, -7.0)
    return image, truth


def test_rmse_after_the_least_squares_gain():
    image, truth = _two_level_pair()
    assert recon.rmse_in_circle(image, truth) == pytest.approx(np.sqrt(0.8), rel=1e-12)
    assert recon.rmse_in_circle(image, truth, fit=False) == pytest.approx(1.0, rel=1e-12)


def test_rmse_takes_integer_and_float32_images_as_float64():
    image, truth = _two_level_pair()
    assert recon.rmse_in_circle(image.astype(np.uint8), truth.astype(np.int16)) == pytest.approx(np.sqrt(0.8))
    # uint8 7 − 9 must be −2, not 254
    a = np.full((4, 4), 7, np.uint8)
    b = np.full((4, 4), 9, np.uint8)
    assert recon.rmse_in_circle(a, b, fit=False) == pytest.approx(2.0)
    small = (image * 1e-3).astype(np.float32)
    assert recon.rmse_in_circle(small, truth) == pytest.approx(np.sqrt(0.8), rel=1e-6)


def test_an_empty_image_gets_no_gain():
    """a·a = 0 inside the circle: no gain can be fit, so the image is compared as it is (k = 1), in the
    RMSE (√(mean truth²) = 2) and in the SSIM, whose windows also see the pixels outside the circle."""
    image, truth = _two_level_pair()
    empty = np.where(recon.circle_mask(4), 0.0, image)
    assert recon.rmse_in_circle(empty, truth) == pytest.approx(2.0)
    big = recon.shepp_logan(32)
    ring = np.where(recon.circle_mask(32), 0.0, 1.0 + np.arange(32)[None, :] / 32)
    assert recon.ssim_in_circle(ring, big) == pytest.approx(recon.ssim_in_circle(ring, big, fit=False), abs=1e-12)
    assert recon.ssim_in_circle(ring, big) != pytest.approx(recon.ssim_in_circle(2 * ring, big, fit=False))


def _ssim_of_constants(x, y, data_range):
    """SSIM of two constant images: the contrast and structure terms are C2/C2 = 1, and the luminance term
    is (2xy + C1) / (x² + y² + C1) with C1 = (0.01·data_range)² (Wang et al. 2004)."""
    c1 = (0.01 * data_range) ** 2
    return (2 * x * y + c1) / (x ** 2 + y ** 2 + c1)


def test_ssim_of_constant_images_without_the_fit():
    """A constant truth has no range inside the circle: the data range falls back to 1."""
    image, truth = np.full((16, 16), 0.03), np.full((16, 16), 0.05)
    expected = _ssim_of_constants(0.03, 0.05, 1.0)
    assert expected == pytest.approx(0.0031 / 0.0035)  # (0.003 + 1e-4) / (0.0009 + 0.0025 + 1e-4): far from 1
    assert recon.ssim_in_circle(image, truth, fit=False) == pytest.approx(expected, rel=1e-9)
    # with the fit the gain 5/3 makes them equal
    assert recon.ssim_in_circle(image, truth) == pytest.approx(1.0, rel=1e-9)


def test_ssim_data_range_is_the_truths_inside_the_circle():
    """Constant inside a wide circle, a frame of another value outside: SSIM's data range is the truth's
    range inside the circle (0, so 1), not over the frame; pixels whose 7 × 7 window stays inside the
    constant part have the closed-form value, and only those are averaged when the circle holds no others."""
    n = 40
    truth = np.full((n, n), 0.05)
    image = np.full((n, n), 0.03)
    inner = recon.circle_mask(n, fraction=0.95)
    truth[~inner] = 0.05 + 30.0  # the frame reaches the windows of the circle's edge pixels only
    image[~inner] = 0.03 + 30.0
    got = recon.ssim_in_circle(image, truth, fit=False)
    # every pixel 3 or more away from the frame sees constants; the edge pixels see a part of the frame,
    # which both images share (same offset), so their SSIM is nearer 1 than the constant value
    deep = _ssim_of_constants(0.03, 0.05, 1.0)
    wide = _ssim_of_constants(0.03, 0.05, 30.0)
    assert abs(wide - deep) > 0.1  # the data range matters at these levels
    assert deep - 1e-9 <= got < deep + 0.1


def test_the_gain_fit_of_a_float32_image_is_done_in_float64():
    """A float32 reconstruction that is exactly a third of the truth: after the fit the RMSE is float64
    rounding (~1e-16), far below what a float32 reconstruction's own errors (~1e-7) could be; a fit
    computed in float32 would leave ~1e-8 and blur the yardstick."""
    image = np.random.default_rng(0).uniform(0.5, 1.0, (32, 32)).astype(np.float32)
    truth = 3 * image.astype(np.float64)
    assert recon.rmse_in_circle(image, truth) < 1e-12


@pytest.mark.parametrize("metric", [recon.rmse_in_circle, recon.ssim_in_circle])
@pytest.mark.parametrize("shapes", [((4, 6), (4, 6)), ((6, 4), (6, 4)), ((8, 8), (9, 9)), ((6, 6), (6,)),
                                    ((2, 6, 6), (2, 6, 6)), ((6, 6), (6, 6, 1))])
def test_a_rectangle_or_two_sizes_are_refused_by_name(metric, shapes):
    """The circle is an n×n reconstruction's: anything else gets one clear error, not numpy's IndexError
    from the mask (before, a 4×6 image failed with "boolean index did not match")."""
    image, truth = (np.ones(s) for s in shapes)
    got = re.escape(f"got {shapes[0]} and {shapes[1]}")
    message = rf"^image and truth must both be one square \(n, n\) image of the same n, {got}$"
    with pytest.raises(ValueError, match=message):
        metric(image, truth)
