"""LiveSlices (live/_live_slices.py) at its edges and against the batch reconstruction (issue 16 mutants):
the row and centre bounds, the probe rows, the probe views' cap, and the slices at the end of a scan of an
off-axis, asymmetric object compared with ``recon.reconstruct`` of the same sinogram."""

import math

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.live import _live_slices
from tomobluesky.live._live_slices import LiveSlices
from tomobluesky.recon.testing import project_disk


def test_every_detector_row_may_carry_the_axial_slice_and_no_other():
    live = LiveSlices(4, 16, num_angles=4)
    for row in (0, 3):
        live.set_row(row)
        assert live.row == row
    for row in (-1, 4):
        with pytest.raises(ValueError, match=f"row {row} is outside the detector's 4 rows"):
            live.set_row(row)
    assert live.row == 3


def test_the_centre_may_lie_on_any_column_from_the_first_to_the_last():
    live = LiveSlices(2, 16, num_angles=4)
    for center in (0.0, 0.5, 14.5, 15.0):
        live.set_center(center)
        assert live.center == center
    for bad in (-0.01, 15.01, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"centre .* lies outside the live columns 0\.\.15$"):
            live.set_center(bad)
    assert live.center == 15.0


@pytest.mark.parametrize("rows, expected", [(1, [0]), (3, [0, 1, 2]), (8, list(range(8))),
                                            (100, [0, 14, 28, 42, 57, 71, 85, 99])])
def test_probe_rows_are_up_to_eight_spread_from_the_first_row_to_the_last(rows, expected):
    live = LiveSlices(rows, 8, num_angles=2)
    assert live.probe_rows.tolist() == expected
    view = np.arange(rows * 8, dtype=np.float32).reshape(rows, 8)
    live.add(view, 0.0)
    np.testing.assert_array_equal(live._probes[0], view[expected])


def test_probe_views_stop_at_the_cap_while_the_slices_go_on(monkeypatch):
    monkeypatch.setattr(_live_slices, "PROBE_VIEWS", 5)
    live = LiveSlices(2, 8, num_angles=7, overlap=False)
    for i in range(7):
        live.add(np.full((2, 8), i, np.float32), 10.0 * i)
    assert len(live._probes) == len(live._probe_angles) == 5
    assert live._probe_angles == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert [p[0, 0] for p in live._probes] == [0, 1, 2, 3, 4]
    assert live.vertical_views == 7 and len(live.angles_deg) == 7 and live.coverage_deg() == 60.0



def _object(n, theta, center):
    """Exact sinogram (angles, n): three disks of different attenuation, off the axis, all inside the field."""
    disks = [(0.02, 16.0, 6.0, 0.0), (0.05, 5.0, 14.0, -8.0), (0.03, 4.0, -12.0, 10.0)]
    return sum(project_disk(n, theta, center, mu=mu, radius=r, x0=x0, y0=y0) for mu, r, x0, y0 in disks)


@pytest.mark.parametrize("angular_range, offset", [(180, 7.0), (360, -9.5)])
def test_at_the_end_of_a_scan_the_slices_equal_the_batch_reconstruction(angular_range, offset):
    """After the last view the live slices are the scan's FBP: the axial slice matches the Fourier
    reconstruction ``recon.reconstruct`` (same window, the axis off the middle) to 0.3 % in gain over the
    field and pixel by pixel to a tenth of the densest spot (disk edges), and the vertical slices match its
    line y = 0 (x to the right) and column x = 0 (top to bottom) of each row to 1 %. Each detector row is
    the same object at another density, so each row's vertical slices scale with it, and only row 2 is
    in the axial slice."""
    n, rows, count = 65, 3, 180  # odd: the lines through the axis are pixel rows and columns of the volume
    center = (n - 1) / 2 + offset
    theta = np.radians(np.linspace(0, angular_range, count, endpoint=False))
    scale = np.array([1.0, 0.5, 2.0], np.float32)
    views = _object(n, theta, center).astype(np.float32)[:, None, :] * scale[None, :, None]
    live = LiveSlices(rows, n, center=center, row=2, num_angles=count, angular_range=angular_range)
    for view, angle in zip(views, np.degrees(theta)):
        live.add(view, angle)
    batch = recon.reconstruct(views, theta, center, filter_name="shepp")
    field = recon.circle_mask(n, 0.8)
    peak = batch[2].max()
    assert peak > 0.1  # row 2: the big disk and the dense one overlap, (0.02 + 0.05) x 2
    assert abs(live.axial[field].sum() / batch[2][field].sum() - 1) <= 0.003
    assert np.abs(live.axial - batch[2])[field].max() <= 0.1 * peak
    mid = n // 2
    for r in range(rows):
        for got, line in ((live.vertical_x[r], batch[r][mid]), (live.vertical_y[r], batch[r][:, mid])):
            assert abs(got.sum() / line.sum() - 1) <= 0.01, r
            assert np.abs(got - line).max() <= 0.1 * peak * scale[r] / 2, r
    for name in ("vertical_x", "vertical_y"):  # row r: row 0's slices times scale[r], rounding aside
        got = getattr(live, name)
        np.testing.assert_allclose(got / scale[:, None], np.repeat(got[:1], rows, axis=0),
                                   atol=1e-5 * np.abs(got[0]).max())


def test_a_half_turn_is_covered_from_180_degrees_less_one_and_a_half_steps_in_any_order():
    live = LiveSlices(1, 8, num_angles=90)
    assert live.coverage_deg() == 0.0 and not live.half_turn_covered(2.0)
    for angle in (100.0, 3.0, 180.0, 50.0):
        live.add(np.zeros((1, 8), np.float32), angle)
    assert live.coverage_deg() == 177.0
    assert live.half_turn_covered(2.0)  # 180 - 1.5 x 2 = 177: exactly at the bound counts
    assert not live.half_turn_covered(1.0)  # 178.5


def test_fresh_and_restarted_slices_are_float32_zeros_of_the_right_shape():
    live = LiveSlices(3, 10, num_angles=4)
    shapes = {"axial": (10, 10), "vertical_x": (3, 10), "vertical_y": (3, 10)}
    for step in ("fresh", "folded", "new centre", "new row"):
        if step == "folded":
            live.add(np.ones((3, 10), np.float32), 30.0)
            assert all(getattr(live, name).any() for name in shapes)
            continue
        if step == "new centre":
            live.set_center(4.0)
            assert live.axial.any() and live.vertical_views == 0  # the axial slice redrawn, the others restart
            names = ("vertical_x", "vertical_y")
        elif step == "new row":
            live.set_row(0)
            names = ("axial",)
            assert live._axial_rows == [] and live._axial_angles == []
        else:
            names = tuple(shapes)
        for name in names:
            got = getattr(live, name)
            assert got.dtype == np.float32 and got.shape == shapes[name] and not got.any(), (step, name)


def test_the_centre_estimate_sees_the_probe_rows_resampled_onto_a_half_turn(monkeypatch):
    """Views out of order with gaps are put in angular order and linearly resampled onto min(views, 360)
    even steps over the half turn from the first angle: that is what Vo's method gets, and it is close to
    the exact sinogram at those angles (the object is smooth at this sampling)."""
    n, rows = 48, 20
    center = 27.0
    angles = np.array([170.0, 10.0, 5.0, 95.0, 182.0, 40.0, 130.0, 60.0, 100.0])
    angles = np.concatenate([angles, np.arange(0.0, 186.0, 1.0)[::-1] + 0.25])  # the newest first
    sino = _object(n, np.radians(angles), center).astype(np.float32)
    live = LiveSlices(rows, n, center=center, num_angles=len(angles), overlap=False)
    for i, angle in enumerate(angles):
        live.add(np.repeat(sino[i][None], rows, axis=0) * (1 + np.arange(rows, dtype=np.float32)[:, None]),
                 angle)
    seen = {}

    def capture(even, grid, method):
        seen.update(even=even, grid=grid, method=method)
        return "result"

    monkeypatch.setattr(recon, "find_center", capture)
    assert live.estimate_center() == "result"
    count = len(angles)
    assert seen["method"] == "vo"
    np.testing.assert_allclose(seen["grid"], np.radians(0.25) + np.arange(count) * np.pi / count, rtol=1e-12)
    even = seen["even"]
    assert even.shape == (len(live.probe_rows), count, n)
    exact = _object(n, seen["grid"], center)
    for k, row in enumerate(live.probe_rows):
        np.testing.assert_allclose(even[k] / (1 + row), exact, atol=0.01 * exact.max())


def test_views_on_the_grid_reach_vo_unchanged_and_at_most_360_angles_do(monkeypatch):
    """Views already on even steps over a half turn (any order) are passed on as they are, the last one
    included; a scan with more views than 360 in its half turn is resampled onto 360 angles."""
    seen = {}
    monkeypatch.setattr(recon, "find_center", lambda even, grid, method: seen.update(even=even, grid=grid))
    rng = np.random.default_rng(4)
    views = rng.random((10, 3, 12), dtype=np.float32)
    live = LiveSlices(3, 12, num_angles=10, overlap=False)
    order = rng.permutation(10)
    for i in order:
        live.add(views[i], 18.0 * i)
    live.estimate_center()
    np.testing.assert_allclose(seen["grid"], np.arange(10) * np.pi / 10, rtol=1e-12)
    np.testing.assert_allclose(seen["even"], views[:, live.probe_rows].transpose(1, 0, 2), rtol=1e-5, atol=1e-6)

    live = LiveSlices(1, 4, num_angles=400, overlap=False)
    for i in range(400):
        live.add(np.full((1, 4), i, np.float32), 0.45 * i)
    live.estimate_center()
    np.testing.assert_allclose(seen["grid"], np.arange(360) * np.pi / 360, rtol=1e-12, atol=1e-15)
    # 400 views over 180° onto 360 angles: view index 400/360 per step, linear in between
    np.testing.assert_allclose(seen["even"][0, :, 0], np.arange(360) * 400 / 360, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_views_of_any_real_dtype_fold_as_their_float32_values_and_are_stored_in_float32(dtype):
    """What a view leaves behind (its filtered axial row, its probe rows) is float32 whatever it came in:
    4 bytes a value, as the memory bound of the probes (PROBE_VIEWS views) assumes; the slices are those
    of the same view cast to float32."""
    rng = np.random.default_rng(6)
    views = (rng.random((5, 4, 16)) * 1000).astype(dtype)
    angles = [0.0, 35.0, 70.0, 105.0, 140.0]
    ref = LiveSlices(4, 16, num_angles=5, overlap=False)
    live = LiveSlices(4, 16, num_angles=5, overlap=False)
    for view, angle in zip(views, angles):
        ref.add(view.astype(np.float32), angle)
        live.add(view, angle)
    assert all(r.dtype == np.float32 for r in live._axial_rows)
    assert all(p.dtype == np.float32 for p in live._probes)
    for name in ("axial", "vertical_x", "vertical_y"):
        np.testing.assert_array_equal(getattr(live, name), getattr(ref, name))


def test_defaults_and_the_helper_thread_is_used_when_overlap_is_on():
    import os

    live = LiveSlices(5, 32)
    assert live.center == 15.5 and live.row == 2
    assert live.weight == pytest.approx(math.pi / 180, rel=1e-12)  # 180 views over 180°
    assert live.overlap == ((os.cpu_count() or 1) > 1)
    assert LiveSlices(2, 8, overlap=0).overlap is False
    live = LiveSlices(2, 8, num_angles=2, overlap=1)
    assert live.overlap is True
    live.add(np.ones((2, 8), np.float32), 0.0)
    assert live._pending is not None  # the vertical slices' share went to the helper
    assert live.vertical_x.any() and live._pending is None  # reading them waits for it


@pytest.mark.parametrize("cores, overlap", [(1, False), (None, False), (2, True), (16, True)])
def test_by_default_the_helper_thread_is_used_from_two_cores_on(monkeypatch, cores, overlap):
    monkeypatch.setattr(_live_slices.os, "cpu_count", lambda: cores)  # None: the count is unknown
    assert LiveSlices(2, 8).overlap is overlap
