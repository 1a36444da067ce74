"""IncrementalSlices against its definition, term by term (issue 16, mutation testing of live/_slices.py).

The reference here is written from the definition of filtered backprojection, not from the module:
filter each row with the engine's ramp (a zero-padded real FFT of a power-of-two length >= 2 x columns),
then add weight * q(x cos(theta) + y sin(theta) + center) at every pixel (x right, y up, both measured from
the grid's middle), where q is the filtered row continued by zeros with a linear fade over one pixel
outside the detector (the documented convention of recon._interp), read here with ``np.interp``.
"""

import math

import numpy as np
import pytest

from tomobluesky.live._slices import IncrementalSlices, ramp_filter
from tomobluesky.recon import ramp_response


def _length(columns):
    """The smallest power of two >= 2 x columns, counted out by doubling."""
    length = 1
    while length < 2 * columns:
        length *= 2
    return length


def _filtered_rows(rows, window):
    n = rows.shape[-1]
    length = _length(n)
    response = ramp_response(length, window)[: length // 2 + 1]
    return np.fft.irfft(np.fft.rfft(rows.astype(np.float64), n=length, axis=-1) * response, n=length, axis=-1)[..., :n]


def _read(row, positions):
    """The row at fractional columns, zeros beyond, fading linearly to zero over one pixel outside."""
    n = row.shape[-1]
    xs = np.arange(-1, n + 1)
    padded = np.concatenate([[0.0], row, [0.0]])
    return np.interp(positions, xs, padded, left=0.0, right=0.0)


def _reference(projections, angles_deg, *, rows, n, center, row, weight, window):
    coords = np.arange(n) - (n - 1) / 2
    x, y = np.meshgrid(coords, -coords)  # y up: the image's row index grows downwards
    axial = np.zeros((n, n))
    vx = np.zeros((rows, n))
    vy = np.zeros((rows, n))
    for p, a in zip(projections, angles_deg):
        q = _filtered_rows(p, window) * weight
        c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
        axial += _read(q[row], x * c + y * s + center)
        for r in range(rows):
            vx[r] += _read(q[r], coords * c + center)       # the line y = 0, x to the right
            vy[r] += _read(q[r], -coords * s + center)      # the line x = 0, y from top (+) to bottom (−)
    return axial, vx, vy


@pytest.mark.parametrize("columns, length", [(1, 2), (2, 4), (32, 64), (33, 128), (48, 128), (64, 128), (65, 256)])
def test_ramp_filter_length_is_the_smallest_power_of_two_holding_twice_the_row(columns, length):
    response, got = ramp_filter(columns)
    assert got == length == _length(columns)
    # a real FFT of `length` samples has length // 2 + 1 frequencies; the default window is Shepp-Logan
    assert response.shape == (length // 2 + 1,)
    np.testing.assert_array_equal(response, ramp_response(length, "shepp")[: length // 2 + 1])


@pytest.mark.parametrize("window", ["ramp", "cosine", "hann"])
def test_ramp_filter_uses_the_window_asked_for(window):
    response, length = ramp_filter(40, window)
    assert length == 128
    np.testing.assert_array_equal(response, ramp_response(128, window)[:65])
    # the windows differ at high frequency: a filter that ignored the name would equal Shepp-Logan's
    assert not np.array_equal(response, ramp_filter(40)[0])


def test_defaults_axis_in_the_middle_middle_row_and_the_weight_of_180_views_over_180_degrees():
    s = IncrementalSlices(5, 32)
    assert s.center == 15.5 and isinstance(s.center, float)
    assert s.row == 2
    assert s.weight == pytest.approx(math.pi / 180, rel=1e-12)
    t = IncrementalSlices(4, 31, center=np.float32(12.25), row=np.int64(3))
    assert t.center == 12.25 and type(t.center) is float
    assert t.row == 3 and type(t.row) is int


@pytest.mark.parametrize("angular_range, num_angles, weight", [
    (180.0, 90, math.pi / 90),
    (359.0, 100, math.radians(359.0) / 100),          # below a full turn: every view counts once
    (360.0, 180, math.pi / 180),                      # a full turn sees each line twice: half weight
    (720.0, 100, math.radians(720.0) / 100 / 2),
    (180.0, 1, math.pi),                              # one view holds the whole range
    (180.0, 0, math.pi),                              # no count known: no division by zero
])
def test_weight_of_each_projection(angular_range, num_angles, weight):
    s = IncrementalSlices(2, 16, num_angles=num_angles, angular_range=angular_range)
    assert s.weight == pytest.approx(weight, rel=1e-12)


def test_fresh_and_reset_slices_are_float32_zeros_of_the_right_shape():
    s = IncrementalSlices(3, 20)
    for _ in range(2):
        assert s.axial.shape == (20, 20) and s.vertical_x.shape == (3, 20) and s.vertical_y.shape == (3, 20)
        for image in (s.axial, s.vertical_x, s.vertical_y):
            assert image.dtype == np.float32 and not image.any()
        assert s.angles_deg == [] and s.coverage_deg() == 0.0
        s.add(np.ones((3, 20)), 10.0)
        s.add(np.ones((3, 20)), 40.0)
        assert s.angles_deg == [10.0, 40.0] and s.coverage_deg() == 30.0
        for image in (s.axial, s.vertical_x, s.vertical_y):
            assert image.dtype == np.float32 and image.any()
        s.reset()


def test_coverage_is_the_span_of_the_angles_seen():
    s = IncrementalSlices(1, 8)
    assert s.coverage_deg() == 0.0
    s.add(np.zeros((1, 8)), 100.0)
    assert s.coverage_deg() == 0.0  # one angle spans nothing
    s.add(np.zeros((1, 8)), 250.0)
    s.add(np.zeros((1, 8)), -5.5)
    assert s.coverage_deg() == 255.5 and type(s.coverage_deg()) is float
    assert s.angles_deg == [100.0, 250.0, -5.5] and all(type(a) is float for a in s.angles_deg)


def test_set_row_accepts_every_detector_row_and_refuses_the_rest():
    s = IncrementalSlices(4, 16)
    for row in (0, 3):
        s.add(np.ones((4, 16)), 0.0)
        s.set_row(np.int64(row))
        assert s.row == row and type(s.row) is int
        assert not s.axial.any() and s.axial.dtype == np.float32
        assert s.vertical_x.any() and s.vertical_y.any()  # the vertical slices keep their sums
    for row in (-1, 4, 9):
        with pytest.raises(ValueError) as info:
            s.set_row(row)
        assert str(info.value) == f"row {row} is outside the detector's 4 rows"
        assert s.row == 3


def test_set_row_restarts_the_axial_slice_at_the_new_row():
    rng = np.random.default_rng(7)
    rows, n = 3, 24
    p = [rng.random((rows, n)).astype(np.float32) for _ in range(3)]
    s = IncrementalSlices(rows, n, row=0, num_angles=3)
    s.add(p[0], 0.0)
    s.set_row(2)
    s.add(p[1], 60.0)
    s.add(p[2], 120.0)
    axial, vx, vy = _reference(p[1:], [60.0, 120.0], rows=rows, n=n, center=(n - 1) / 2, row=2,
                               weight=math.pi / 3, window="shepp")
    np.testing.assert_allclose(s.axial, axial, rtol=0, atol=2e-5 * np.abs(axial).max())
    axial, vx, vy = _reference(p, [0.0, 60.0, 120.0], rows=rows, n=n, center=(n - 1) / 2, row=2,
                               weight=math.pi / 3, window="shepp")
    np.testing.assert_allclose(s.vertical_x, vx, rtol=0, atol=2e-5 * np.abs(vx).max())
    np.testing.assert_allclose(s.vertical_y, vy, rtol=0, atol=2e-5 * np.abs(vy).max())


@pytest.mark.parametrize("window", ["shepp", "hann"])
@pytest.mark.parametrize("n, center_offset", [(31, 2.7), (24, -3.2)])
def test_each_slice_is_the_sum_of_weighted_filtered_backprojections(window, n, center_offset):
    """Random (seeded) projections at uneven angles, an off-middle axis and row: all three slices equal
    the definition to float32 precision, after one projection and after several."""
    rng = np.random.default_rng(16)
    rows, row = 4, 1
    center = (n - 1) / 2 + center_offset
    angles = [0.0, 37.0, 90.0, 151.5, 212.0, 300.0]
    projections = [rng.random((rows, n)) for _ in angles]  # float64: the slices take it as float32
    s = IncrementalSlices(rows, n, center=center, row=row, num_angles=7, angular_range=180.0, window=window)
    weight = math.pi / 7
    for k, (p, a) in enumerate(zip(projections, angles), 1):
        s.add(p, a)
        if k in (1, 2, 3, len(angles)):
            axial, vx, vy = _reference(projections[:k], angles[:k], rows=rows, n=n, center=center, row=row,
                                       weight=weight, window=window)
            for name, image, ref in (("axial", s.axial, axial), ("vertical_x", s.vertical_x, vx),
                                     ("vertical_y", s.vertical_y, vy)):
                assert image.dtype == np.float32, name
                np.testing.assert_allclose(image, ref, rtol=0, atol=2e-5 * np.abs(ref).max(), err_msg=name)
    assert s.angles_deg == angles


def test_a_single_view_at_zero_degrees_smears_the_filtered_row_along_y():
    """At 0° the beam runs along y: every image row of the axial slice is the filtered detector row,
    and the vertical slice along x is the filtered projection itself; along y it is constant."""
    rng = np.random.default_rng(3)
    rows, n = 2, 33  # odd: the axis (column 16) and every pixel fall on whole detector columns
    p = rng.random((rows, n))
    s = IncrementalSlices(rows, n, row=1, num_angles=1, angular_range=180.0)
    s.add(p, 0.0)
    q = _filtered_rows(p, "shepp") * math.pi
    np.testing.assert_allclose(s.axial, np.repeat(q[1][None], n, axis=0), rtol=0, atol=1e-5 * np.abs(q).max())
    np.testing.assert_allclose(s.vertical_x, q, rtol=0, atol=1e-5 * np.abs(q).max())
    np.testing.assert_allclose(s.vertical_y, np.repeat(q[:, 16:17], n, axis=1), rtol=0, atol=1e-5 * np.abs(q).max())


def test_a_single_view_at_ninety_degrees_smears_along_x_with_y_up():
    """At 90° the detector column grows with y (up): image row i reads detector column n − 1 − i."""
    rng = np.random.default_rng(4)
    rows, n = 2, 33
    p = rng.random((rows, n))
    s = IncrementalSlices(rows, n, row=0, num_angles=1, angular_range=180.0)
    s.add(p, 90.0)
    q = _filtered_rows(p, "shepp") * math.pi
    tol = 1e-5 * np.abs(q).max()
    np.testing.assert_allclose(s.axial, np.repeat(q[0][::-1, None], n, axis=1), rtol=0, atol=tol)
    np.testing.assert_allclose(s.vertical_x, np.repeat(q[:, 16:17], n, axis=1), rtol=0, atol=tol)
    np.testing.assert_allclose(s.vertical_y, q[:, ::-1], rtol=0, atol=tol)


def test_beyond_the_detector_the_backprojection_reads_zero():
    """An axis 6 columns beyond the detector's right edge: at 0° most of the image lies more than a
    pixel beyond the last detector column, where nothing was measured."""
    n = 16
    t = IncrementalSlices(1, n, center=n + 6.0, num_angles=1)
    t.add(np.ones((1, n)), 0.0)
    # positions j − 7.5 + 22 ≥ 16 + 1 for every j ≥ 2: all beyond the fade
    assert not t.axial[:, 2:].any() and not t.vertical_x[:, 2:].any()
    assert not t.vertical_y.any()  # the line x = 0 is read at column 22 at every height
    assert t.axial[:, 0].any()     # position 14.5: inside
