"""stitch_360 against exact sinograms of disks and a blend worked out by hand (the mutants of
recon/_stitch.py, issue 16).

A half-acquisition scan of disks is made with ``project_disk`` (line integrals averaged over each pixel,
exact): over 360° on a narrow detector whose axis lies near one edge. Stitched, it must be the sinogram
of the same disks on a detector twice as wide over the first half-turn. When twice the axis is a whole
column, the mirrored columns fall on pixel centres and the two agree to float32 rounding.
"""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon.testing import project_disk

DISKS = ((0.02, 9.5, 0.0, 0.0), (0.05, 6.0, 21.0, -8.0), (0.03, 4.0, -30.0, 14.0), (0.04, 3.0, 40.0, 25.0))


def _disks(columns, theta, center):
    """(angles, columns) sinogram of the disks about an axis at detector column ``center``."""
    return sum(project_disk(columns, theta, center, mu=mu, radius=r, x0=x, y0=y) for mu, r, x, y in DISKS)


def _turn(angles, start=0.0):
    return start + np.linspace(0, 2 * np.pi, angles, endpoint=False)


@pytest.mark.parametrize("start", [0.0, 0.7])
@pytest.mark.parametrize("center", [75.0, 76.5])
def test_a_right_edge_axis_gives_the_wide_sinogram_of_the_first_half_turn(start, center):
    theta = _turn(240, start)
    cols = 90
    half = np.stack([_disks(cols, theta, center), 2 * _disks(cols, theta, center)])
    out = recon.stitch_360(half, theta, center)
    width = int(round(2 * center)) + 1
    assert out.sinograms.shape == (2, 120, width) and out.sinograms.dtype == np.float32
    np.testing.assert_allclose(out.theta, theta[:120])
    assert out.center == center and out.input_center == center and out.details == {}
    wide = _disks(width, theta[:120], center)
    np.testing.assert_allclose(out.sinograms[0], wide, atol=2e-6)
    np.testing.assert_allclose(out.sinograms[1], 2 * wide, atol=4e-6)


@pytest.mark.parametrize("center", [14.0, 12.5])
def test_a_left_edge_axis_gives_the_wide_sinogram_with_its_centre_moved(center):
    """Axis at column c near the left edge of a detector of n columns: the mirrored half is added on the
    left, so the axis moves to width − 1 − (n − 1 − c) in the wide sinogram."""
    theta = _turn(180, 0.2)
    cols = 90
    half = _disks(cols, theta, center)
    out = recon.stitch_360(half, theta, center)  # one 2-D sinogram in, one out
    mirrored = cols - 1 - center
    width = int(round(2 * mirrored)) + 1
    assert out.sinograms.shape == (90, width)
    assert out.center == pytest.approx(width - 1 - mirrored) and out.input_center == center
    np.testing.assert_allclose(out.sinograms, _disks(width, theta[:90], out.center), atol=2e-6)


def test_the_overlap_is_blended_linearly():
    """Constant halves that disagree: 2 at every angle of the first half-turn, 5 half a turn later. With 10
    columns and the axis at 7 the wide row has 15 columns; the mirrored half covers columns 5..14 and the
    direct one 0..9, so columns 0-4 are 2, 10-14 are 5 and 5..9 go linearly 2, 2.75, 3.5, 4.25, 5."""
    theta = _turn(8)
    sino = np.concatenate([np.full((4, 10), 2.0), np.full((4, 10), 5.0)])
    expected = np.array([2, 2, 2, 2, 2, 2, 2.75, 3.5, 4.25, 5, 5, 5, 5, 5, 5], np.float32)
    right = recon.stitch_360(sino, theta, 7.0)
    np.testing.assert_allclose(right.sinograms, np.tile(expected, (4, 1)), atol=1e-6)
    left = recon.stitch_360(sino, theta, 2.0)  # the mirror image: axis 2 columns from the left edge
    np.testing.assert_allclose(left.sinograms, np.tile(expected[::-1], (4, 1)), atol=1e-6)
    assert left.center == 7.0


def test_a_fractional_axis_blends_up_to_its_own_edge():
    """Axis at 7.3 on 10 columns: 2·7.3 = 14.6 → 16 output columns (0..15); the overlap runs from
    14.6 − 9 = 5.6 to 9, and the last column (15) reads the mirrored row at 14.6 − 15 = −0.4, i.e. 0.6
    of the first value and 0.4 of the zero beyond it."""
    theta = _turn(8)
    sino = np.concatenate([np.full((4, 10), 2.0), np.full((4, 10), 5.0)])
    row = recon.stitch_360(sino, theta, 7.3).sinograms[0]
    u = np.arange(16)
    ramp = np.clip((u - 5.6) / 3.4, 0, 1)
    expected = 2 * (1 - ramp) + 5 * ramp
    expected[10:15] = 5
    expected[15] = 0.6 * 5
    np.testing.assert_allclose(row, expected, atol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("offset", [0.3, 0.8])
def test_the_axis_is_found_between_half_pixels(side, offset):
    """Noise-free disks: the overlap's mismatch is searched in half-pixel steps and refined by a parabola,
    so an axis off the half-pixel grid is found to a small fraction of a pixel; the mismatch at the
    found axis is small against the median of the others."""
    theta = _turn(360)
    cols = 96
    axis = 80 + offset if side == "right" else 15 - offset
    out = recon.stitch_360(_disks(cols, theta, axis), theta)
    assert abs(out.input_center - axis) < 0.03, out.input_center
    assert out.details["side"] == side
    # the mismatch is the best half-pixel step's, 0.2-0.3 px off the axis: small, not zero
    assert 0 < out.details["mismatch"] < 0.01
    assert out.details["contrast"] > 50
    wide_axis = out.input_center if side == "right" else out.sinograms.shape[-1] - 1 - (cols - 1 - out.input_center)
    assert out.center == pytest.approx(wide_axis)


def test_noise_sets_the_mismatch_and_the_contrast():
    """Independent noise of σ on every pixel: at the true axis (on the half-pixel grid) direct and mirrored
    differ by noise only, so the mismatch is mean((a − b)²) / (mean a² + mean b²) ≈ 2σ² / (2·mean p²)."""
    theta = _turn(360)
    cols, axis, sigma = 96, 80.5, 0.01
    clean = _disks(cols, theta, axis)
    noisy = clean + np.random.default_rng(4).normal(0, sigma, clean.shape).astype(np.float32)
    out = recon.stitch_360(noisy, theta)
    assert abs(out.input_center - axis) < 0.1
    overlap = clean[:, int(2 * axis - (cols - 1)):]
    expected = sigma ** 2 / np.mean(overlap ** 2)
    assert out.details["mismatch"] == pytest.approx(expected, rel=0.25)
    assert 3 < out.details["contrast"] < 1e6


def test_sinograms_without_content_ask_for_the_centre():
    theta = _turn(40)
    with pytest.raises(ValueError, match="^stitch_360 found no overlap with content at either edge; give the centre$"):
        recon.stitch_360(np.zeros((40, 32), np.float32), theta)
    # a given centre needs no content
    assert np.all(recon.stitch_360(np.zeros((40, 32), np.float32), theta, 25.0).sinograms == 0)


def test_bad_scans_are_named():
    theta = _turn(40)
    sino = np.ones((40, 32), np.float32)
    message = "^stitch_360 needs a scan over 360° with an angle opposite each angle of the first half-turn$"
    with pytest.raises(ValueError, match=message):
        recon.stitch_360(sino[:1], theta[:1], 25.0)  # one angle
    with pytest.raises(ValueError, match=message):
        recon.stitch_360(sino[:30], theta[:30], 25.0)  # 270°: the last quarter has no opposite
    gappy = theta.copy()
    gappy[25] += 0.05  # one angle of the second half-turn moved off its opposite by a third of a step
    recon.stitch_360(sino, gappy, 25.0)
    gappy[25] += 0.05  # two thirds of a step: no longer opposite
    with pytest.raises(ValueError, match=message):
        recon.stitch_360(sino, gappy, 25.0)
    with pytest.raises(ValueError, match=r"^sinograms must be \(slices, angles, columns\), got \(1, 1, 40, 32\)$"):
        recon.stitch_360(sino[None, None], theta, 25.0)
    bad = sino.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="^sinograms contain NaN or infinite values$"):
        recon.stitch_360(bad, theta, 25.0)
    for center in (-0.5, 31.5):
        with pytest.raises(ValueError, match=rf"^center {center:.2f} lies outside the detector \(columns 0..31\)$"):
            recon.stitch_360(sino, theta, center)
    for center in (0.0, 31.0):  # the detector's own edges are valid
        recon.stitch_360(sino, theta, center)


def test_two_angles_half_a_turn_apart_are_the_smallest_scan():
    """[0, π]: one row and its opposite, stitched into one wide row; [0, 2] has no opposite for 0."""
    theta = np.array([0.0, np.pi])
    sino = np.stack([_disks(40, theta[:1], 30.0)[0], _disks(40, theta[1:], 30.0)[0]])
    out = recon.stitch_360(sino, theta, 30.0)
    assert out.sinograms.shape == (1, 61)
    np.testing.assert_allclose(out.sinograms, _disks(61, theta[:1], 30.0), atol=2e-6)
    message = "^stitch_360 needs a scan over 360° with an angle opposite each angle of the first half-turn$"
    with pytest.raises(ValueError, match=message):
        recon.stitch_360(sino, np.array([0.0, 2.0]), 30.0)
    with pytest.raises(ValueError, match=message):  # a step of over a turn leaves no first half-turn at all
        recon.stitch_360(sino, np.array([0.0, 2 * np.pi + 0.05]), 30.0)


def test_an_angle_half_a_step_short_of_half_a_turn_belongs_to_the_second_half():
    """The first half-turn is the angles less than π − step/2 past the first one: with a median step of
    1 rad, the angle π − 0.5 is the first of the second half, not the last of the first."""
    theta = np.array([0, 1, 2, np.pi - 0.5, np.pi, np.pi + 1, np.pi + 2, 2 * np.pi - 0.5])
    sino = np.ones((8, 20), np.float32)
    out = recon.stitch_360(sino, theta, 15.0)
    np.testing.assert_array_equal(out.theta, theta[:3])


@pytest.mark.parametrize("angles", [41, 181])
def test_an_odd_number_of_angles_is_accepted(angles):
    """An odd count over 360° has no angle exactly opposite another: each opposite lies half a step
    away, which the pairing accepts (one half-step is the most two neighbours can be apart). The mirrored
    columns are then the object's projection half a step before or after the row's own angle."""
    theta = _turn(angles)
    step = 2 * np.pi / angles
    out = recon.stitch_360(_disks(96, theta, 80.5), theta, 80.5)
    rows = (angles - 1) // 2
    assert out.sinograms.shape == (rows, 162)
    np.testing.assert_allclose(out.theta, theta[:rows])
    beyond = out.sinograms[:, 96:]  # mirrored only
    before = _disks(162, theta[:rows] - step / 2, 80.5)[:, 96:]
    after = _disks(162, theta[:rows] + step / 2, 80.5)[:, 96:]
    err = np.minimum(np.abs(beyond - before).max(axis=1), np.abs(beyond - after).max(axis=1))
    assert err.max() < 2e-6


def test_an_axis_a_quarter_pixel_inside_the_last_column_blends_over_half_a_pixel():
    """Axis at 8.75 on 10 columns: the overlap runs from 17.5 − 9 = 8.5 to 9, half a pixel, so column 8 is
    direct only, column 9 (the overlap's end) mirrored only, and 19 columns in all; the last reads the
    mirrored row at 17.5 − 18 = −0.5, half the first value."""
    theta = _turn(8)
    sino = np.concatenate([np.full((4, 10), 2.0), np.full((4, 10), 5.0)])
    row = recon.stitch_360(sino, theta, 8.75).sinograms[0]
    np.testing.assert_allclose(row, [2.0] * 9 + [5.0] * 9 + [2.5], atol=1e-6)


def test_an_axis_min_overlap_half_columns_from_the_edge_is_found():
    """The search reaches the axis whose overlap is exactly ``min_overlap`` columns: 96 columns, axis at
    91 (overlap 2·(95 − 91) = 8, the default)."""
    theta = _turn(360)
    out = recon.stitch_360(_disks(96, theta, 91.0), theta)
    assert abs(out.input_center - 91.0) < 0.05
    wide = recon.stitch_360(_disks(96, theta, 93.0), theta, min_overlap=4)
    assert abs(wide.input_center - 93.0) < 0.05


def test_integer_sinograms_are_stitched_as_floats():
    """Counts in uint16: the same centre and sinogram as the float32 values (no integer wraparound in the
    overlap's differences and squares)."""
    theta = _turn(360)
    counts = np.round(2000 * _disks(96, theta, 80.3)).astype(np.uint16)
    assert counts.max() > 300  # squares overflow 16 bits
    as_int = recon.stitch_360(counts, theta)
    as_float = recon.stitch_360(counts.astype(np.float32), theta)
    assert as_int.input_center == pytest.approx(as_float.input_center, abs=1e-9)
    np.testing.assert_allclose(as_int.sinograms, as_float.sinograms, rtol=1e-6)
    assert as_int.sinograms.dtype == np.float32


def test_the_overlap_mismatch_by_hand():
    """Six columns, axis at 4: the overlap is output columns 3, 4, 5, where the mirrored row reads the
    opposite projection at 5, 4, 3 (the last column included). Direct 2 there; opposite 5, but 8 in the
    last column: mismatch = mean((2 − [8, 5, 5])²) / (mean 2² + mean [64, 25, 25]) = 18 / 42."""
    from tomobluesky.recon._stitch import _overlap_mismatch

    direct = np.full((1, 1, 6), 2.0)
    opposite = np.full((1, 1, 6), 5.0)
    opposite[..., 5] = 8.0
    assert _overlap_mismatch(direct, opposite, 4.0) == pytest.approx(18 / 42, rel=1e-12)


def test_an_overlap_with_almost_nothing_in_it_is_no_evidence():
    """An overlap is scored only if its mean energy per side, (mean a² + mean b²) / 2, reaches 1 % of the
    direct sinogram's mean energy; below, it would agree trivially and is given an infinite mismatch.
    Direct: 10 in columns 0-5, 0 in 6-9, so mean direct² = 60 and the bar is 0.6 per side (1.2 in all).
    Axis at 8: the overlap is columns 7-9 of the direct row (0) and columns 9, 8, 7 of the opposite one."""
    from tomobluesky.recon._stitch import _overlap_mismatch

    direct = np.zeros((1, 1, 10))
    direct[..., :6] = 10.0
    for level, scored in ((1.5 ** 0.5, True), (0.9 ** 0.5, False)):  # b² = 1.5 or 0.9 against the bar 1.2
        opposite = np.zeros((1, 1, 10))
        opposite[..., 7:] = level
        score = _overlap_mismatch(direct, opposite, 8.0)
        if scored:
            assert score == pytest.approx(1.0)  # a = 0: the whole energy is mismatch
        else:
            assert score == np.inf


def test_the_search_reports_no_axis_with_less_overlap_than_asked():
    """``min_overlap`` columns of overlap are the least evidence the search accepts: with 96 columns and
    the default 8 it looks at axes up to 95 − 4 = 91, so a true axis at 93 (overlap 4) is reported no
    farther out than 91; asked for 4, it is found."""
    theta = _turn(360)
    sino = _disks(96, theta, 93.0)
    assert 90.0 <= recon.stitch_360(sino, theta).input_center <= 91.0
    assert abs(recon.stitch_360(sino, theta, min_overlap=4).input_center - 93.0) < 0.05


@pytest.mark.parametrize("axis", [52.0, 52.7, 90.7, 91.0])
def test_the_axis_is_found_at_both_ends_of_the_search(axis):
    """96 columns, default min_overlap: the search runs over 52, 52.5, …, 91. At its ends the parabola has
    no neighbour on one side and the step itself is the answer (52, 91: on the grid, so exact); one step
    in (52.5, 90.5) it still refines an axis off the grid. An axis on the grid (twice it a whole column)
    matches its mirror to rounding: mismatch ~0, contrast huge and positive."""
    theta = _turn(360)
    out = recon.stitch_360(_disks(96, theta, axis), theta)
    assert abs(out.input_center - axis) < 0.05, out.input_center
    if axis in (52.0, 91.0):
        assert out.input_center == axis
        assert out.details["mismatch"] < 1e-20 and out.details["contrast"] > 1e10


@pytest.mark.parametrize("axis", [80.2, 80.3])
def test_in_heavy_noise_the_parabola_still_finds_the_axis(axis):
    """Noise of σ = 0.1 (a fifth of the thickest disk's projection) puts a floor under the overlap's
    mismatch; the vertex of the parabola through the three best half-pixel steps does not depend on that
    floor, so the axis is still found well inside one step."""
    theta = _turn(360)
    clean = _disks(96, theta, axis)
    noisy = clean + np.random.default_rng(4).normal(0, 0.1, clean.shape).astype(np.float32)
    assert abs(recon.stitch_360(noisy, theta).input_center - axis) < 0.1


def test_an_axis_at_the_detectors_middle_counts_as_a_right_edge_axis():
    """Ten columns, axis 4.5: the overlap is the whole row, and the first half-turn's rows stay on the
    left as for any axis right of the middle: 2 (direct) fading linearly into 5 (mirrored) left to right."""
    theta = _turn(8)
    sino = np.concatenate([np.full((4, 10), 2.0), np.full((4, 10), 5.0)])
    out = recon.stitch_360(sino, theta, 4.5)
    np.testing.assert_allclose(out.sinograms[0], 2 + 3 * np.arange(10) / 9, atol=1e-6)
    assert out.center == 4.5


def test_an_axis_half_a_pixel_left_of_the_middle_is_a_left_edge_axis():
    """Ten columns, axis 4 (the middle is 4.5): mirrored, it is an axis at 5, so 11 columns; the blend of
    that right-edge case (overlap 1..9: 2 + 3·(u − 1)/8) comes back reversed, and the axis sits at 5."""
    theta = _turn(8)
    sino = np.concatenate([np.full((4, 10), 2.0), np.full((4, 10), 5.0)])
    out = recon.stitch_360(sino, theta, 4.0)
    right = np.concatenate([[2.0], 2 + 3 * np.arange(9) / 8, [5.0]])
    np.testing.assert_allclose(out.sinograms[0], right[::-1], atol=1e-6)
    assert out.center == 5.0 and out.input_center == 4.0


def test_an_axis_on_the_last_column_keeps_the_direct_row_up_to_it():
    """Axis 9 on 10 columns: the overlap shrinks to the axis column itself, where both rows measure the
    same ray; the blend starts there with the direct row (ramp 0), and the mirrored row takes over after."""
    theta = _turn(8)
    sino = np.concatenate([np.full((4, 10), 2.0), np.full((4, 10), 5.0)])
    out = recon.stitch_360(sino, theta, 9.0)
    np.testing.assert_allclose(out.sinograms[0], [2.0] * 10 + [5.0] * 9, atol=1e-6)
