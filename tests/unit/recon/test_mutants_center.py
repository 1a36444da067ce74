"""The centre search's reduced problem and scores (``_center``), against what they are defined to be.

The first half-turn from the first angle, resampled linearly in angle onto an even grid when there are
more than ``MAX_ANGLES`` views; the sharpness score as minus the negative fraction of the mass; the
parabola through the best score. Then the axis of a phantom found through the resampled branch on a
small detector (the wide-detector test, 2.5 s, is too slow to run for every mutant).
"""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon._center import MAX_ANGLES, _half_turn, _peak, _sharpness
from tomobluesky.recon.testing import project_shepp_logan


def test_the_half_turn_starts_at_the_first_angle_and_stops_before_its_mirror():
    theta = 0.4 + np.linspace(0, 2 * np.pi, 40, endpoint=False)
    sino = np.arange(40, dtype=np.float32)[None, :, None] * np.ones((2, 1, 3), np.float32)
    kept, angles = _half_turn(sino, theta, MAX_ANGLES)
    np.testing.assert_array_equal(angles, theta[:20])
    np.testing.assert_array_equal(kept, sino[:, :20])
    with_end = np.linspace(0.4, 0.4 + np.pi, 21)  # a half-turn scan that includes 180°: its last view is the first's mirror
    assert len(_half_turn(sino[:, :21], with_end, MAX_ANGLES)[1]) == 20


@pytest.mark.parametrize("first", [0.0, 0.3])
def test_more_views_than_kept_are_resampled_linearly_onto_an_even_half_turn(first):
    """Each detector pixel's values, interpolated linearly in angle (np.interp) at the even grid's angles."""
    rng = np.random.default_rng(1)
    theta = first + np.sort(rng.uniform(0, np.pi, 500))
    theta[0] = first
    sino = rng.random((2, 500, 3)).astype(np.float32)
    kept, grid = _half_turn(sino, theta, 50)
    np.testing.assert_allclose(grid, first + np.arange(50) * np.pi / 50, atol=1e-12)
    for r in range(2):
        for c in range(3):
            np.testing.assert_allclose(kept[r, :, c], np.interp(grid, theta, sino[r, :, c]), atol=1e-5)


def test_views_up_to_the_limit_are_kept_as_they_are_and_past_the_last_view_it_is_repeated():
    rng = np.random.default_rng(2)
    theta = np.sort(rng.uniform(0, np.pi, 50))
    sino = rng.random((1, 50, 2)).astype(np.float32)
    kept, angles = _half_turn(sino, theta, 50)  # exactly the limit, unevenly spaced: not resampled
    np.testing.assert_array_equal(angles, theta)
    np.testing.assert_array_equal(kept, sino)
    short = np.linspace(0, 0.8 * np.pi, 60)  # more views than kept, but the even grid runs past the last one
    views = rng.random((1, 60, 2)).astype(np.float32)
    kept, grid = _half_turn(views, short, 50)
    past = grid > short[-1]
    assert past.sum() == 9
    np.testing.assert_allclose(kept[:, past], np.broadcast_to(views[:, -1:], kept[:, past].shape), atol=1e-6)


def test_an_axis_is_found_through_the_resampled_branch():
    """540 views over 180°, from 0.3 rad on: resampled to 360, the axis still to a tenth of a pixel."""
    n = 64
    theta = 0.3 + np.linspace(0, np.pi, 540, endpoint=False)
    center = (n - 1) / 2 + 3.3
    sino = project_shepp_logan(2, n, theta, center=center)
    found = recon.find_center(sino, theta)
    assert abs(found.center - center) < 0.1, found
    assert found.details["angles"] == MAX_ANGLES


def test_sharpness_is_minus_the_negative_fraction_of_the_mass():
    image = np.array([[1.0, -1.0], [2.0, 0.0]])
    mask = np.ones((2, 2), bool)
    assert _sharpness(image, mask) == pytest.approx(-0.25)
    assert _sharpness(np.abs(image), mask) == 0.0


def test_the_parabola_is_used_next_to_the_last_candidate():
    candidates = np.array([0.0, 1.0, 2.0, 3.0])
    assert _peak(candidates, -(candidates - 2.3) ** 2) == pytest.approx(2.3)


def test_binned_columns_are_means_placed_at_their_centres():
    """A ramp over the columns, binned b-fold: binned column u holds the mean of full columns b·u … b·u + b − 1,
    which is the full column its centre sits at, b·u + (b − 1)/2; columns left over at the end are dropped."""
    from tomobluesky.recon._center import _bin_columns, _to_binned, _to_full

    sino = np.broadcast_to(np.arange(11, dtype=np.float32), (2, 5, 11))
    for b in (1, 2, 3):
        binned = _bin_columns(sino, b)
        assert binned.shape == (2, 5, 11 // b)
        u = np.arange(11 // b)
        np.testing.assert_allclose(binned, np.broadcast_to([_to_full(k, b) for k in u], binned.shape), atol=1e-6)
        np.testing.assert_allclose([_to_binned(_to_full(k, b), b) for k in u], u)
    np.testing.assert_allclose([_to_full(k, 4) for k in (0, 1)], [1.5, 5.5])


@pytest.mark.parametrize("method", ["vo", "sharpness"])
def test_an_axis_is_found_on_a_binned_detector(method):
    """1100 columns are binned 2-fold (and 4-fold for the sharpness search's first look); the answer is in
    full columns, to a tenth of a pixel (measured: 0.007 vo, 0.015 sharpness)."""
    n = 1100
    theta = np.linspace(0, np.pi, 120, endpoint=False)
    center = (n - 1) / 2 - 13.4
    sino = project_shepp_logan(None, n, theta, center=center, detector_samples=2)
    found = recon.find_center(sino, theta, method=method)
    assert found.details["bin"] == 2
    assert abs(found.center - center) < 0.1, found


def test_vos_energy_curve_is_the_energy_outside_the_wedge_at_every_whole_shift():
    """The coarse curve, evaluated for all shifts by one inverse FFT, equals the definition
    Σ weight · |A + e^{−2πi j s / L} B|² summed point by point, and Vo's metric the same sum of magnitudes."""
    from tomobluesky.recon._center import _vo_spectra

    rng = np.random.default_rng(4)
    spectra = _vo_spectra(rng.random((2, 200, 16)).astype(np.float32), 0.6)  # many angles: every column frequency
    shifts = np.arange(-20, 21)
    phases = np.exp(-2j * np.pi * np.outer(shifts, spectra.bins) / spectra.length)
    terms = np.abs(spectra.a.astype(np.complex128) + spectra.b * phases)
    want = (terms ** 2) @ spectra.weight
    curve = spectra.energy_curve(shifts)
    np.testing.assert_allclose(curve, want, rtol=1e-4)
    # the constant dominates: the shape, from shift to shift, to a thousandth of its range
    np.testing.assert_allclose(np.diff(curve), np.diff(want), rtol=0, atol=1e-3 * np.ptp(want))
    for k in (0, 7, 31):
        assert spectra.metric(float(shifts[k])) == pytest.approx(float(terms[k] @ spectra.weight), rel=1e-4)
    assert spectra.bins.max() == spectra.length // 2  # the Nyquist column frequency is among the points


def test_periodic_padding_walks_from_the_last_value_back_to_the_first_in_equal_steps():
    """Read cyclically, the padded row has no jump: from the last measured value to the first one again
    (through the wrap-around) it moves in equal steps."""
    from tomobluesky.recon._center import _periodic_pad

    rows = np.array([[[2.0, 5.0, 3.0, 7.0]], [[1.0, 0.0, 0.0, -4.0]]], np.float32)
    out = _periodic_pad(rows, 10)
    np.testing.assert_array_equal(out[..., :4], rows)
    walk = np.concatenate([out[..., 3:], out[..., :1]], axis=-1)  # last value, the pad, the first value
    steps = np.diff(walk, axis=-1)
    np.testing.assert_allclose(steps, np.broadcast_to((rows[..., :1] - rows[..., 3:]) / 7, steps.shape), atol=1e-6)
