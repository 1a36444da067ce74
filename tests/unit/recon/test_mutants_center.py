"""The centre search's reduced problem and scores (``_center``), against what they are defined to be.

The first half-turn from the first angle, resampled linearly in angle onto an even grid when there are
more than ``MAX_ANGLES`` views; the sharpness score as minus the negative fraction of the mass; the
parabola through the best score. Then the axis of a phantom found through the resampled branch on a
small detector (the wide-detector test, 2.5 s, is too slow to run for every mutant).

Further down (the issue-16 run of Vo's functions): ``find_center_vo`` against tomopy's contract (its rows,
defaults, window, step and srad in full columns), ``find_center``'s Vo window, Vo's phase-only metric against
the joined sinogram's 2-D spectrum, its details and confidence, "auto" on a binned detector, the short repr.
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


@pytest.mark.parametrize("method", ["vo", "sharpness", "auto"])
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


# -- find_center_vo: tomopy's signature and its row choice ------------------------------------------

def _projections(rows, n, offset, *, noise=0.002, seed=0, angles=180):
    """(angles, rows, columns) projections of the phantom with its axis ``offset`` columns from the middle."""
    theta = np.linspace(0, np.pi, angles, endpoint=False)
    center = (n - 1) / 2 + offset
    sino = project_shepp_logan(rows, n, theta, center=center, detector_samples=4)
    rng = np.random.default_rng(seed)
    sino = sino + rng.normal(0, noise * float(sino.max()), sino.shape).astype(np.float32)
    return np.ascontiguousarray(np.swapaxes(sino, 0, 1)), center


def test_find_center_vo_has_tomopys_defaults():
    """A drop-in for tomopy.recon.rotation.find_center_vo: the same keywords with the same defaults
    (tomopy's documentation: smin=-50, smax=50, srad=6, step=0.25, ratio=0.5, drop=20)."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(recon.find_center_vo).parameters.items()}
    assert defaults == {"tomo": inspect.Parameter.empty, "ind": None, "smin": -50, "smax": 50, "srad": 6,
                        "step": 0.25, "ratio": 0.5, "drop": 20, "ncore": None}


def test_find_center_vo_uses_the_ten_middle_rows_exactly():
    """With a fine step the answer moves with every row's noise, so the mean of rows 3..12 of 16 (tomopy's
    default) gives the answer bit for bit, and a window one row off on either side does not."""
    projections, center = _projections(16, 96, 3.3, noise=0.02)
    fine = dict(step=1e-4)
    answer = recon.find_center_vo(projections, **fine)
    assert answer == recon.find_center_vo(projections[:, 3:13].mean(axis=1), **fine)
    for lo, hi in ((2, 13), (3, 14), (4, 13), (3, 12), (2, 12), (4, 14)):
        assert answer != recon.find_center_vo(projections[:, lo:hi].mean(axis=1), **fine), (lo, hi)
    assert abs(answer - center) < 0.25


def test_find_center_vo_averages_only_more_than_ten_rows():
    """Ten rows or fewer: the middle row alone (rows // 2); eleven: the mean of rows 0..9."""
    fine = dict(step=1e-4)
    ten, _ = _projections(10, 64, -2.6, noise=0.02, seed=1)
    assert recon.find_center_vo(ten, **fine) == recon.find_center_vo(ten[:, 5], **fine)
    eleven, _ = _projections(11, 64, -2.6, noise=0.02, seed=2)
    assert recon.find_center_vo(eleven, **fine) == recon.find_center_vo(eleven[:, 0:10].mean(axis=1), **fine)


def test_find_center_vo_takes_every_row_index_numpy_does_and_names_the_range_otherwise():
    projections, _ = _projections(4, 64, 1.7, noise=0.02, seed=3)
    fine = dict(step=1e-4)
    assert recon.find_center_vo(projections, ind=-4, **fine) == recon.find_center_vo(projections[:, 0], **fine)
    assert recon.find_center_vo(projections, ind=3, **fine) == recon.find_center_vo(projections[:, 3], **fine)
    for bad in (4, -5):
        with pytest.raises(ValueError, match=rf"ind {bad} is not a row of the projections \(0\.\.3\)"):
            recon.find_center_vo(projections, ind=bad)
    with pytest.raises(ValueError, match=r"smin \(5\) must be below smax \(5\)"):
        recon.find_center_vo(projections, smin=5, smax=5)


def test_find_center_vo_defaults_are_tomopys_values():
    """Called without keywords it answers exactly as with tomopy's defaults spelt out (smin=-50, smax=50,
    srad=6, ratio=0.5, drop=20; a fine step, so that every change of the metric moves the answer); 360
    views, so that ``drop`` is not capped at 5 % of them. (``step``: the test below.)"""
    theta = np.linspace(0, np.pi, 360, endpoint=False)
    tomopy = dict(smin=-50, smax=50, srad=6, ratio=0.5, drop=20)
    for offset in (3.9, -1.6):
        center = (96 - 1) / 2 + offset
        sino = project_shepp_logan(1, 96, theta, center=center)[0]
        sino = sino + np.random.default_rng(6).normal(0, 0.002 * float(sino.max()), sino.shape).astype(np.float32)
        assert recon.find_center_vo(sino, step=1e-4) == recon.find_center_vo(sino, step=1e-4, **tomopy), offset


@pytest.mark.parametrize("offset", [2.13, 0.37, -5.38])
def test_find_center_vo_is_within_half_its_step(offset):
    """``step`` (0.25 by default) is the answer's precision: off the quarter-pixel grid, within half of it
    (measured 0.002-0.03 px; a search that stopped after one step of five times that is 0.18 px off)."""
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    center = (128 - 1) / 2 + offset
    sino = project_shepp_logan(1, 128, theta, center=center)[0]
    sino = sino + np.random.default_rng(0).normal(0, 0.002 * float(sino.max()), sino.shape).astype(np.float32)
    assert abs(recon.find_center_vo(sino) - center) <= 0.125


def _wide_detector_with_the_axis_at(offset):
    """A 128-wide phantom on a 255-wide detector (zeros beside it), its axis ``offset`` columns right of
    columns // 2 = 127 (left when negative, by mirroring the detector)."""
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    obj = project_shepp_logan(1, 128, theta, center=63.7)[0]
    obj = obj + np.random.default_rng(0).normal(0, 0.01 * float(obj.max()), obj.shape).astype(np.float32)
    sino = np.zeros((180, 255), np.float32)
    sino[:, 120:248] = obj  # axis at 120 + 63.7 = 183.7 = 127 + 56.7
    assert abs(offset) == pytest.approx(56.7)
    return sino if offset > 0 else np.ascontiguousarray(sino[:, ::-1])


def test_find_center_vo_looks_no_further_than_smax_plus_srad():
    """The axis 56.7 columns right of the middle: the coarse search stops at columns // 2 + smax = 177 and the
    fine one srad = 6 further, so the default answer is pinned at the window's end (182.75..183); a window of
    60 finds the axis. Mirrored, the same on the left (71..71.25). An odd width, so that // is not /."""
    right = _wide_detector_with_the_axis_at(56.7)
    assert 182.75 - 1e-9 <= recon.find_center_vo(right) <= 183.0 + 1e-9
    assert abs(recon.find_center_vo(right, smax=60) - 183.7) <= 0.125
    left = _wide_detector_with_the_axis_at(-56.7)
    assert 71.0 - 1e-9 <= recon.find_center_vo(left) <= 71.25 + 1e-9
    assert abs(recon.find_center_vo(left, smin=-60) - 70.3) <= 0.125


def test_find_center_vo_cuts_a_window_past_the_detector_at_its_edge():
    """smin/smax beyond the detector are clipped to its first and last column (as tomopy clips them): a
    window wholly left of it searches column 0 only, one wholly right column 127, each within srad."""
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    sino = project_shepp_logan(1, 128, theta, center=66.1)[0]
    sino = sino + np.random.default_rng(0).normal(0, 0.01 * float(sino.max()), sino.shape).astype(np.float32)
    assert abs(recon.find_center_vo(sino, smin=-1000, smax=-70) - 0) <= 6
    assert abs(recon.find_center_vo(sino, smin=70, smax=1000) - 127) <= 6
    # drop reaches the metric: with a fine step any change of it moves the answer
    assert recon.find_center_vo(sino, step=1e-4, drop=0) != recon.find_center_vo(sino, step=1e-4)


@pytest.mark.parametrize("offset", [2.13, 3.9])
def test_find_center_vo_counts_every_view_of_a_short_scan(offset):
    """30 noiseless views over [0°, 180°): each is taken to be 6° from the last, the last one 6° short of
    the first's mirror. Measured within 0.006 px with a fine step; with the views spread over [0°, 180°]
    instead, the last is dropped as the first's mirror and the answer moves by 0.15 px."""
    n = 128
    theta = np.linspace(0, np.pi, 30, endpoint=False)
    center = (n - 1) / 2 + offset
    sino = project_shepp_logan(1, n, theta, center=center)[0]
    assert abs(recon.find_center_vo(sino, step=1e-3) - center) <= 0.05


# -- find_center(method="vo"): its search window ----------------------------------------------------

def test_vo_search_window_is_a_quarter_of_the_width_or_search_columns_either_side():
    """The axis 56.7 columns off the middle of a 255-wide detector (a quarter is 63.75): found by default. With
    ``search=20`` the window is (columns − 1)/2 ± 20 = 107..147 and the fine search reaches one column past
    it, so the answer is pinned at its end: the metric falls towards the axis, so Brent's method runs to the
    last grid point, 148 on the right and 106 on the left (to its tolerance of 0.01 column)."""
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    right = _wide_detector_with_the_axis_at(56.7)
    left = _wide_detector_with_the_axis_at(-56.7)
    assert abs(recon.find_center(right, theta).center - 183.7) <= 0.1
    assert abs(recon.find_center(left, theta).center - 70.3) <= 0.1
    assert 147.97 <= recon.find_center(right, theta, search=20).center <= 148.0 + 1e-9
    assert 106.0 - 1e-9 <= recon.find_center(left, theta, search=20).center <= 106.03


def test_drop_is_capped_at_five_percent_of_the_angular_frequencies():
    """180 views joined to their mirrors make 360 angular frequencies: at most 18 are dropped (tomopy's cap),
    so drop=18, 20 and 100 are one search, and drop=17 another (a fine step shows any change of the metric)."""
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    sino = project_shepp_logan(1, 128, theta, center=66.1)[0]
    sino = sino + np.random.default_rng(0).normal(0, 0.01 * float(sino.max()), sino.shape).astype(np.float32)
    answers = {drop: recon.find_center_vo(sino, step=1e-4, drop=drop) for drop in (17, 18, 20, 100)}
    assert answers[18] == answers[20] == answers[100] != answers[17], answers
    assert abs(answers[18] - 66.1) <= 0.05


def test_find_center_vo_srad_is_in_full_columns_on_a_binned_detector():
    """1100 columns are binned 2-fold; the axis at 610.3, 60.3 right of columns // 2. The coarse window ends at
    600 (600.5 on the binned grid) and the fine one ``srad`` full columns further: pinned at 606..606.5 with
    srad=6, 601..601.5 with srad=1; srad=20 reaches the axis."""
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    sino = np.zeros((180, 1100), np.float32)
    sino[:, 410:810] = project_shepp_logan(1, 400, theta, center=200.3, detector_samples=2)[0]
    assert 606.0 - 1e-9 <= recon.find_center_vo(sino) <= 606.5 + 1e-9
    assert 601.0 - 1e-9 <= recon.find_center_vo(sino, srad=1) <= 601.5 + 1e-9
    assert abs(recon.find_center_vo(sino, srad=20) - 610.3) <= 0.125


@pytest.mark.parametrize("offset", [2.13, -5.38])
def test_find_center_vo_step_is_in_full_columns_on_a_binned_detector(offset):
    """1100 columns, binned 2-fold: ``step`` is the precision in full columns, so Brent's tolerance on the
    binned grid is step / bin. With step=0.5: measured within 0.02 px; a tolerance of step × bin stops at
    the first golden-section point, 0.22-0.25 px off."""
    n = 1100
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    center = (n - 1) / 2 + offset
    sino = project_shepp_logan(1, n, theta, center=center, detector_samples=2)[0]
    sino = sino + np.random.default_rng(0).normal(0, 0.002 * float(sino.max()), sino.shape).astype(np.float32)
    assert abs(recon.find_center_vo(sino, step=0.5) - center) <= 0.1


# -- Vo's spectra against the joined sinogram they stand for ----------------------------------------

@pytest.mark.parametrize("drop", [0, 3])
def test_vos_metric_is_the_joined_sinograms_spectrum_outside_the_double_wedge(drop):
    """Vo's definition, computed the slow way: the padded sinogram on top of its padded mirror rolled by s
    columns (2·angles rows), a full 2-D FFT, and the magnitudes summed over the points outside the double
    wedge: angular frequency |ν| (cycles per turn) above 2π·(ratio·cols/2)·|k| + 2 (k cycles per pixel,
    both signs) and above ``drop``. The phase-only spectra must give the same sum at every whole shift."""
    from tomobluesky.recon._center import _periodic_pad, _vo_spectra

    rng = np.random.default_rng(11)
    rows, angles, cols, ratio = 2, 24, 20, 0.6
    sino = rng.random((rows, angles, cols)).astype(np.float32)
    spectra = _vo_spectra(sino, ratio, drop)
    length = spectra.length
    assert length >= 2 * cols  # room for shifts of ±cols/2 without the mirror meeting itself
    top = _periodic_pad(sino, length).astype(np.float64)
    mirror = _periodic_pad(sino[..., ::-1], length).astype(np.float64)
    nu = np.abs(np.fft.fftfreq(2 * angles) * 2 * angles)[:, None]
    k = np.abs(np.fft.fftfreq(length))[None, :]
    outside = (nu > 2 * np.pi * (ratio * cols / 2) * k + 2) & (nu > drop)
    for s in (-7, -1, 0, 2, 5, 10):
        joined = np.concatenate([top, np.roll(mirror, s, axis=-1)], axis=1)
        want = np.abs(np.fft.fft2(joined, axes=(1, 2))[:, outside]).sum()
        assert spectra.metric(float(s)) == pytest.approx(want, rel=1e-4), s


# -- the result's short repr ------------------------------------------------------------------------

def test_the_details_summary_keeps_scalars_and_strings_and_counts_sequences():
    from tomobluesky.recon._center import _summary

    details = {"depth": 0.123456, "method": "vo", "curve": [1.0, 2.0, 3.0], "shifts": np.arange(5),
               "z": 1j, "bin": np.int64(2), "gap": np.float32(0.5), "rows": 7}
    assert _summary(details) == "{depth=0.123, method=vo, curve=<3>, shifts=<5>, z=<complex>, bin=2, gap=0.5, rows=7}"
    result = recon.CenterResult(295.754, 0.987, "auto", {"bin": 1, "scores": [0.1, 0.2]})
    assert repr(result) == "CenterResult(center=295.75, confidence=0.99, method='auto', details={bin=1, scores=<2>})"


def test_a_long_summary_is_cut_to_a_hundred_characters():
    """A hundred characters are kept whole; one more and the text is cut to 96 and closed with '...}'."""
    from tomobluesky.recon._center import _summary

    exactly = {"k": "x" * 96}  # "{k=" + 96 + "}" = 100 characters
    assert _summary(exactly) == "{k=" + "x" * 96 + "}"
    longer = {"k": "x" * 97}
    assert _summary(longer) == ("{k=" + "x" * 97 + "}")[:96] + "...}"
    assert len(_summary(longer)) == 100


def test_auto_checks_vo_with_the_sharpness_of_three_rows_by_default():
    """Eight rows: Vo's search uses them all, the sharpness check three of them spread over the detector
    (rows 0, 4, 7 of 8: their sharpness differs from any other choice), as ``slices=3`` spelt out."""
    theta = np.linspace(0, np.pi, 90, endpoint=False)
    sino = project_shepp_logan(8, 64, theta, center=33.3)
    sino = sino + np.random.default_rng(8).normal(0, 0.02 * float(sino.max()), sino.shape).astype(np.float32)
    default = recon.find_center(sino, theta, method="auto")
    assert default.details["rows"] == 8
    assert default.details["sharpness"] == recon.find_center(sino, theta, method="auto", slices=3).details["sharpness"]
    assert default.details["sharpness"] != recon.find_center(sino, theta, method="auto", slices=4).details["sharpness"]


def test_vos_details_hold_its_curves_in_full_columns():
    """On a 2-fold binned detector: the coarse curve at every whole binned shift (2 full columns apart), the
    fine one at half of that; a mirror shift s (full columns) stands for the axis at (columns − 1)/2 + s/2,
    so the curves' minima point at the axis. The depth is the confidence; bin, views and rows as used."""
    n = 1100
    theta = np.linspace(0, np.pi, 120, endpoint=False)
    center = (n - 1) / 2 - 13.4
    found = recon.find_center(project_shepp_logan(1, n, theta, center=center, detector_samples=2), theta)
    d = found.details
    assert set(d) == {"metric_depth", "bin", "angles", "rows", "coarse_shifts", "coarse_metric", "fine_shifts",
                      "fine_metric"}
    assert (d["bin"], d["angles"], d["rows"]) == (2, 120, 1)
    assert d["metric_depth"] == found.confidence and 0.5 < found.confidence <= 1
    assert len(d["coarse_shifts"]) == len(d["coarse_metric"]) and len(d["fine_shifts"]) == len(d["fine_metric"])
    np.testing.assert_array_equal(np.diff(d["coarse_shifts"]), 2.0)
    np.testing.assert_array_equal(np.diff(d["fine_shifts"]), 1.0)
    coarse = d["coarse_shifts"][int(np.argmin(d["coarse_metric"]))]
    fine = d["fine_shifts"][int(np.argmin(d["fine_metric"]))]
    assert abs((n - 1) / 2 + coarse / 2 - center) <= 1.0
    assert abs((n - 1) / 2 + fine / 2 - center) <= 0.5


def test_vos_confidence_does_not_depend_on_the_units_of_the_sinogram():
    """The depth of the valley is a ratio: the same scan in other units (×1e-6) is as sure."""
    theta = np.linspace(0, np.pi, 180, endpoint=False)
    sino = project_shepp_logan(2, 128, theta, center=66.1)
    sino = sino + np.random.default_rng(0).normal(0, 0.01 * float(sino.max()), sino.shape).astype(np.float32)
    found = recon.find_center(sino, theta)
    small = recon.find_center(sino * np.float32(1e-6), theta)
    assert found.confidence > 0.8
    assert small.confidence == pytest.approx(found.confidence, abs=0.01)


# -- the sharpness search on its own: its input, its grids, its confidence --------------------------

def test_find_center_sharpness_refuses_degrees_and_a_wrong_angle_count():
    """``find_center_sharpness`` is public on its own: angles in degrees (the phantom's axis is 33.3; searched
    as radians they gave 39.6) and an angle list that does not match the views are refused with
    ``find_center``'s messages, not searched."""
    theta = np.linspace(0, np.pi, 90, endpoint=False)
    sino = project_shepp_logan(1, 64, theta, center=33.3)
    with pytest.raises(ValueError, match="look like degrees"):
        recon.find_center_sharpness(sino, np.degrees(theta))
    for count in (45, 120):
        with pytest.raises(ValueError, match=f"{count} angles for 90 projections"):
            recon.find_center_sharpness(sino, np.linspace(0, np.pi, count, endpoint=False))
    assert abs(recon.find_center_sharpness(sino, list(theta)).center - 33.3) <= 0.2


def _negative_fraction(image, radius):
    """Minus the negative share of the absolute mass inside the disk of ``radius`` pixels about the centre."""
    coords = np.arange(image.shape[-1]) - (image.shape[-1] - 1) / 2
    inside = image[np.hypot(*np.meshgrid(coords, coords)) <= radius]
    return -float(-inside[inside < 0].sum()) / float(np.abs(inside).sum())


@pytest.mark.parametrize("b", [1, 2])
def test_sharpness_scores_are_the_negative_mass_of_shepp_filtered_slices_inside_nine_tenths(b):
    """Each score, from its definition: every row binned b-fold, reconstructed alone at the candidate (full
    columns, moved onto the binned grid) with the Shepp-Logan filter, minus its negative share of the mass
    inside the disk of 0.9 of the half-width (the rim and the corners, outside the object, are left out);
    summed over the rows. A wrong axis scores lower than the right one."""
    from tomobluesky.recon._center import _sharpness_scores
    from tomobluesky.recon._nufft import nufft_fbp

    theta = np.linspace(0, np.pi, 60, endpoint=False)
    n = 48 * b
    axis = (n - 1) / 2 + 1.3 * b
    sino = project_shepp_logan(2, n, theta, center=axis)
    candidates = [axis - 3 * b, axis - b, axis, axis + 0.5 * b]
    scores = _sharpness_scores(sino, theta, candidates, b)
    binned = sino.reshape(2, 60, n // b, b).mean(axis=-1)
    want = np.zeros(len(candidates))
    for row in binned:
        for i, c in enumerate(candidates):
            image = nufft_fbp(row[None], theta, [(c - (b - 1) / 2) / b], filter_name="shepp")[0]
            want[i] += _negative_fraction(image, 0.9 * (n // b) / 2)
    # to the NUFFT's precision (a slice alone or packed with another: 6e-4 measured); the disk of 0.95 or
    # the whole square scores 12-65 % more negative mass
    np.testing.assert_allclose(scores, want, rtol=5e-3)
    assert int(np.argmax(scores)) == 2


@pytest.mark.parametrize("n, coarse_bin", [(64, 1), (256, 2), (640, 4)])
def test_the_sharpness_search_looks_coarsely_an_eighth_either_side_then_in_half_columns(n, coarse_bin):
    """Without candidates: a first look binned to about 128 columns (n // 128, at least 1, at most 4-fold),
    at every coarse column from the middle − n/8 up to the middle + n/8; then half-column steps 1.5 coarse
    columns either side of the best one. The answer is the phantom's axis, off the half-column grid."""
    theta = np.linspace(0, np.pi, 60, endpoint=False)
    axis = (n - 1) / 2 + 2.13
    found = recon.find_center(project_shepp_logan(1, n, theta, center=axis), theta, method="sharpness")
    d = found.details
    assert (found.method, d["bin"]) == ("sharpness", 1)
    coarse = np.array(d["coarse_candidates"])
    assert len(d["coarse_scores"]) == len(coarse)
    np.testing.assert_allclose(np.diff(coarse), coarse_bin)
    assert coarse[0] == (n - 1) / 2 - n / 8
    assert coarse[-1] <= (n - 1) / 2 + n / 8 < coarse[-1] + coarse_bin
    best = coarse[int(np.argmax(d["coarse_scores"]))]
    assert abs(best - axis) <= coarse_bin
    np.testing.assert_allclose(d["candidates"], best + np.arange(-3 * coarse_bin, 3 * coarse_bin + 1) / 2)
    assert len(d["scores"]) == len(d["candidates"])
    assert abs(found.center - axis) <= 0.15, found


@pytest.mark.parametrize("route", ["find_center", "find_center_sharpness"])
def test_candidates_are_scored_as_given_and_the_peak_stands_out_of_them(route):
    """Candidates (full columns) reach the search by either route and are scored exactly, in their order.
    Seventeen of them one column apart around the axis: the parabola through the best three lands on the
    axis; the confidence is how far the best score stands above the median, as a share of the scores'
    range (0.29 here: it tells a peak from a flat curve, not an object from noise, whose ragged scores
    measured 0.47)."""
    n = 64
    theta = np.linspace(0, np.pi, 90, endpoint=False)
    axis = (n - 1) / 2 - 3.4
    sino = project_shepp_logan(1, n, theta, center=axis)
    candidates = list(np.round(axis) + np.arange(-8.0, 9.0))
    if route == "find_center":
        found = recon.find_center(sino, theta, method="sharpness", candidates=candidates)
    else:
        found = recon.find_center_sharpness(sino, theta, candidates=candidates)
    assert found.method == "sharpness"
    assert found.details["candidates"] == candidates
    assert "coarse_candidates" not in found.details
    scores = np.array(found.details["scores"])
    assert len(scores) == len(candidates)
    assert abs(found.center - axis) <= 0.15, found
    assert found.confidence == pytest.approx((scores.max() - np.median(scores)) / np.ptp(scores), rel=1e-12)
    assert 0 < found.confidence < 1


def test_the_sharpness_search_reads_three_rows_by_default():
    """Eight rows: three spread over them (rows 0, 4, 7) are scored by default, as ``slices=3`` spelt out; four
    give other scores and another answer."""
    theta = np.linspace(0, np.pi, 60, endpoint=False)
    sino = project_shepp_logan(8, 64, theta, center=33.3)
    sino = sino + np.random.default_rng(9).normal(0, 0.02 * float(sino.max()), sino.shape).astype(np.float32)
    near = [31.0, 32.0, 33.0, 34.0, 35.0]
    default = recon.find_center_sharpness(sino, theta, candidates=near)
    assert default.details["scores"] == recon.find_center_sharpness(sino, theta, candidates=near, slices=3).details["scores"]
    assert default.center != recon.find_center_sharpness(sino, theta, candidates=near, slices=4).center
    assert abs(default.center - 33.3) <= 0.2


# -- "auto": Vo's answer, checked by the sharpness search around it ---------------------------------

def _phantom_at(columns, offset, repeat=1):
    """One row, 90 views: a 96-column phantom on a ``columns``-wide detector (zeros beside it), its axis
    ``offset`` columns from the middle; each column then read ``repeat`` times (a detector of finer pixels:
    binned ``repeat``-fold it is the coarse one again). Returns (sinogram, theta, axis in fine columns)."""
    theta = np.linspace(0, np.pi, 90, endpoint=False)
    axis = (columns - 1) / 2 + offset
    start = int(np.floor(axis - 47.5))
    sino = np.zeros((1, 90, columns), np.float32)
    sino[..., start:start + 96] = project_shepp_logan(1, 96, theta, center=axis - start)
    return np.repeat(sino, repeat, axis=-1), theta, repeat * axis + (repeat - 1) / 2


@pytest.mark.parametrize("repeat", [1, 2])
@pytest.mark.parametrize("side", [1, -1])
def test_auto_gives_no_confidence_to_a_vo_answer_pinned_at_its_windows_end(side, repeat):
    """The axis 11.3 binned columns past Vo's window (a quarter of the width either side of the middle), on
    a 256-column detector and on a 1024-column one binned 2-fold: Vo stops at the window's end, within the
    fine search's reach (one binned column past it), and is sure of it (its valley is deep there). The
    sharpness search, run at Vo and 1 and 2 binned columns either side, leans towards the true axis: its
    best is the last candidate on that side, 2 binned columns from Vo, the tolerance (unbinned) or twice
    it (binned), so the confidence is 0. The answer is Vo's, as ``method="vo"`` gives it."""
    base = 256 if repeat == 1 else 512
    sino, theta, axis = _phantom_at(base, side * (base / 4 + 11.3), repeat)
    full = base * repeat
    edge = (full - 1) / 2 + side * full / 4
    found = recon.find_center(sino, theta, method="auto")
    d = found.details
    assert (found.method, d["bin"]) == ("auto", repeat)
    assert found.center == d["vo"] == recon.find_center(sino, theta, method="vo").center
    assert 0 <= side * (found.center - edge) <= repeat + 1e-6  # pinned: within the reach past the edge
    assert d["vo_confidence"] > 0.5
    assert d["sharpness"] == found.center + side * 2 * repeat  # the last candidate towards the axis
    assert d["gap"] == 2 * repeat
    assert abs(d["sharpness"] - axis) < abs(found.center - axis)
    assert found.confidence == 0.0
    assert 0 <= d["sharpness_confidence"] <= 1


@pytest.mark.parametrize("repeat", [1, 3])
def test_auto_scales_vos_confidence_by_how_close_the_sharpness_check_lands(repeat):
    """An axis well inside the window (256 columns, and 1536 binned 3-fold): the answer is Vo's and on the
    axis; the check is the sharpness search itself, run at Vo + (−2, −1, 0, 1, 2) binned columns on three
    rows; the confidence is Vo's times 1 − gap / tolerance, where the tolerance is what the sharpness
    search can tell apart at its bin: two full columns unbinned, one binned column (3 full ones) at a
    3-fold bin."""
    sino, theta, axis = _phantom_at(256 if repeat == 1 else 512, 19.3, repeat)
    found = recon.find_center(sino, theta, method="auto")
    d = found.details
    assert (found.method, d["bin"], d["rows"]) == ("auto", repeat, 1)
    vo = recon.find_center(sino, theta, method="vo")
    assert found.center == d["vo"] == vo.center and d["vo_confidence"] == vo.confidence
    assert abs(found.center - axis) <= 0.1 * repeat
    near = found.center + repeat * np.arange(-2.0, 3.0)
    check = recon.find_center(sino, theta, method="sharpness", candidates=near)
    assert (d["sharpness"], d["sharpness_confidence"]) == (check.center, check.confidence)
    assert d["gap"] == abs(found.center - check.center) > 0
    tolerance = {1: 2.0, 3: 3.0}[repeat]
    assert found.confidence == pytest.approx((1 - d["gap"] / tolerance) * vo.confidence, rel=1e-12)


# -- the reduced problem's input --------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e39 → inf, then refused
@pytest.mark.parametrize("method", ["vo", "sharpness", "auto"])
def test_a_value_past_float32_is_refused_like_nan_not_searched_as_infinity(method):
    """The search runs in float32: a float64 sinogram with one value of 1e39 (past float32's 3.4e38) would
    become infinite there, so it is refused with the NaN message, as a NaN is, before any search."""
    theta = np.linspace(0, np.pi, 30, endpoint=False)
    sino = project_shepp_logan(1, 32, theta, center=16.2).astype(np.float64)
    for bad in (1e39, np.nan):
        spoilt = sino.copy()
        spoilt[0, 7, 20] = bad
        with pytest.raises(ValueError, match=r"^sinogram contains NaN or infinite values$"):
            recon.find_center(spoilt, theta, method=method)
