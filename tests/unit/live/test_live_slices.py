"""LiveSlices (the compiled live slices with the axial slice kept as filtered rows) against the
reference IncrementalSlices, the numba frame kernel against NumPy, and the centre from partial frames."""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.live import _kernels
from tomobluesky.live._live_slices import LiveSlices
from tomobluesky.live._reconstruction import bin_frame
from tomobluesky.live._slices import IncrementalSlices
from tomobluesky.recon.testing import project_disk


def _views(rows, n, count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((count, rows, n), dtype=np.float32) * 0.05


def _fold(slices, views, angles):
    for view, angle in zip(views, angles):
        slices.add(view, angle)
    return slices


def _definition(views, angles_deg, *, n, center, row, weight):
    """FBP written out in float64: each row zero-padded to the smallest power of two >= 2n, filtered with
    the engine's ramp, then read at x cos θ + y sin θ + center linearly and circularly over the padded
    length (so beyond the detector it reads the filter's tails), times ``weight``."""
    length = 1 << int(np.ceil(np.log2(2 * n)))
    response = recon.ramp_response(length, "shepp").astype(np.float64)
    coords = np.arange(n) - (n - 1) / 2
    x, y = np.meshgrid(coords, -coords)
    axial, vx, vy = np.zeros((n, n)), np.zeros((views.shape[1], n)), np.zeros((views.shape[1], n))

    def read(q, t):
        return np.interp(np.mod(t, length), np.arange(length + 1), np.append(q, q[0]))

    for view, angle in zip(views, angles_deg):
        q = np.real(np.fft.ifft(np.fft.fft(view.astype(np.float64), n=length, axis=-1) * response, axis=-1))
        c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        axial += weight * read(q[row], x * c + y * s + center)
        for r in range(len(q)):
            vx[r] += weight * read(q[r], coords * c + center)
            vy[r] += weight * read(q[r], -coords * s + center)
    return {"axial": axial, "vertical_x": vx, "vertical_y": vy}


@pytest.mark.parametrize("n, center_offset, angular_range", [(65, 4.3, 180), (48, -6.0, 360)])
def test_live_slices_are_filtered_backprojections_reading_the_filter_tails_beyond_the_detector(
        n, center_offset, angular_range):
    rows, count = 5, 40
    angles = np.linspace(0, angular_range, count, endpoint=False)
    views = _views(rows, n, count)
    center = (n - 1) / 2 + center_offset
    live = _fold(LiveSlices(rows, n, center=center, row=3, num_angles=count, angular_range=angular_range),
                 views, angles)
    weight = np.radians(angular_range) / count / (2 if angular_range == 360 else 1)
    expected = _definition(views, angles, n=n, center=center, row=3, weight=weight)
    for name, reference in expected.items():
        assert np.abs(getattr(live, name) - reference).max() <= 2e-5 * np.abs(reference).max(), name
    assert live.vertical_views == count and live.coverage_deg() == pytest.approx(angles[-1])


def test_where_no_ray_leaves_the_detector_live_and_reference_slices_agree():
    """The reference IncrementalSlices (checked term by term in test_mutants_slices) reads zeros beyond
    the detector; with the axis in the middle, the vertical slices and the axial slice's inscribed circle
    never read there, so both must agree to float32 rounding."""
    rows, n, count = 4, 64, 60
    angles = np.linspace(0, 180, count, endpoint=False)
    views = _views(rows, n, count, seed=3)
    live = _fold(LiveSlices(rows, n, num_angles=count), views, angles)
    ref = _fold(IncrementalSlices(rows, n, num_angles=count), views, angles)
    inside = recon.circle_mask(n, (n / 2 - 2) / (n / 2))
    scale = np.abs(ref.axial).max()
    assert np.abs(live.axial - ref.axial)[inside].max() <= 1e-5 * scale
    assert np.abs(live.axial - ref.axial)[~inside].max() > 1e-3 * scale  # the tails do count outside it
    for name in ("vertical_x", "vertical_y"):
        assert np.abs(getattr(live, name) - getattr(ref, name)).max() <= 1e-5 * np.abs(getattr(ref, name)).max()


def test_a_new_centre_redraws_the_axial_slice_as_if_folded_with_it_from_the_start():
    rows, n, count = 4, 64, 50
    angles = np.linspace(0, 180, count, endpoint=False)
    views = _views(rows, n, count, seed=1)
    live = _fold(LiveSlices(rows, n, center=31.5, row=1, num_angles=count), views[:30], angles[:30])
    live.set_center(36.25)
    _fold(live, views[30:], angles[30:])
    weight = np.pi / count
    ref = _definition(views, angles, n=n, center=36.25, row=1, weight=weight)["axial"]
    assert np.abs(live.axial - ref).max() <= 2e-5 * np.abs(ref).max()
    # the vertical slices hold every row, not kept per view: they restart at the new centre
    restarted = _definition(views[30:], angles[30:], n=n, center=36.25, row=1, weight=weight)["vertical_x"]
    assert live.vertical_views == 20
    assert np.abs(live.vertical_x - restarted).max() <= 2e-5 * np.abs(restarted).max()
    with pytest.raises(ValueError, match="outside the live columns"):
        live.set_center(64.0)
    live.set_row(2)
    assert live.row == 2 and not live.axial.any()
    with pytest.raises(ValueError, match="does not match"):
        live.add(np.zeros((rows, n + 1), np.float32), 0.0)


@pytest.mark.parametrize("dtype, factor, shape", [(np.uint16, 1, (6, 10)), (np.uint16, 3, (7, 20)),
                                                  (np.float32, 2, (5, 9)), (np.float64, 4, (2, 17))])
def test_frame_kernel_equals_binning_flat_field_and_minus_log_in_numpy(dtype, factor, shape):
    rng = np.random.default_rng(2)
    frame = (100 + 4000 * rng.random(shape)).astype(dtype)
    frame.flat[3] = 50  # darker than the dark: the transmission floor
    dark = bin_frame(np.full(shape, 100, np.float32), factor)
    beam = bin_frame(3000 + 100 * rng.random(shape).astype(np.float32), factor) - dark
    beam[0, 1] = np.inf  # a pixel without beam reads transmission 0: the floor too
    out = np.empty_like(dark)
    assert _kernels.attenuation(frame, factor, dark, beam, out)
    expected = recon.minus_log((bin_frame(frame, factor) - dark) / beam) / factor
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert out[0, 1] == pytest.approx(-np.log(recon.MIN_TRANSMISSION) / factor)
    if dtype != np.uint16:
        frame.flat[5] = np.nan
        assert not _kernels.attenuation(frame, factor, dark, beam, out)


def test_folding_the_vertical_slices_on_the_helper_thread_gives_the_same_slices_bit_for_bit():
    """With overlap the vertical slices of a view are folded on a helper thread beside the next view's
    work; the order of the additions is the same, so the slices are identical, also across a centre change."""
    rng = np.random.default_rng(8)
    rows, n, angles = 6, 40, 30
    views = rng.random((angles, rows, n)).astype(np.float32)
    theta = np.linspace(0, 180, angles, endpoint=False)
    out = []
    for overlap in (False, True):
        live = LiveSlices(rows, n, center=20.5, num_angles=angles, overlap=overlap)
        for view, angle in zip(views[:20], theta[:20]):
            live.add(view, angle)
        live.set_center(21.0)  # restarts the vertical slices: the helper's view must have landed first
        for view, angle in zip(views[20:], theta[20:]):
            live.add(view, angle)
        out.append((live.axial.copy(), live.vertical_x.copy(), live.vertical_y.copy(), live.vertical_views))
    (a0, x0, y0, v0), (a1, x1, y1, v1) = out
    assert v0 == v1 == 10 and x0.any() and y0.any()
    np.testing.assert_array_equal(x1, x0)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(a1, a0)


def test_axial_kernel_reads_rows_circularly_on_its_fast_path_and_off_it():
    """The kernel reads each filtered row circularly (period: the FFT length). An axis inside the
    columns takes the branch-free path over three periods; one shifted by whole periods reads the same
    values but falls outside them, so the general path runs: the slices must agree."""
    rng = np.random.default_rng(5)
    n, length, angles = 24, 64, 7
    sino = rng.standard_normal((angles, length)).astype(np.float32)
    theta = rng.uniform(0, np.pi, angles)
    weights = rng.uniform(0.5, 1.5, angles)
    images = {}
    for shift in (0, length, 3 * length, -2 * length):
        image = np.zeros((n, n), np.float32)
        _kernels.backproject_axial(sino, np.cos(theta), np.sin(theta), 9.3 + shift, weights, image)
        images[shift] = image
    # the reference: the definition, one pixel at a time, in float64
    mid = (n - 1) / 2
    expected = np.zeros((n, n))
    for a in range(angles):
        for i in range(n):
            for j in range(n):
                p = (j - mid) * np.cos(theta[a]) + (mid - i) * np.sin(theta[a]) + 9.3
                k = int(np.floor(p))
                f = p - k
                expected[i, j] += weights[a] * ((1 - f) * sino[a, k % length] + f * sino[a, (k + 1) % length])
    for shift, image in images.items():
        np.testing.assert_allclose(image, expected, atol=2e-5 * np.abs(expected).max(), err_msg=f"shift {shift}")


def _asymmetric_object(n, theta, center):
    """Exact sinogram (angles, n) of three disks off the axis, all inside the detector."""
    disks = [(0.02, 18.0, 0.0, 0.0), (0.05, 5.0, 14.0, -6.0), (0.03, 4.0, -10.0, 12.0)]
    return sum(project_disk(n, theta, center, mu=mu, radius=r, x0=x0, y0=y0) for mu, r, x0, y0 in disks)


@pytest.mark.parametrize("order", ["in order", "newest first with gaps"])
def test_the_centre_from_the_first_half_turn_lands_on_the_axis_40_columns_off_the_middle(order):
    """A 360° scan, axis 40 columns right of the middle, the slices started at the middle (wrong by 40):
    as soon as the views span a half turn, Vo's method on the probe rows finds the axis to a column.
    Out of order and with every third view missing (what skipping when behind leaves) it still does."""
    n, rows, count = 160, 3, 240
    center = (n - 1) / 2 + 40
    angles = np.linspace(0, 360, count, endpoint=False)
    sino = _asymmetric_object(n, np.radians(angles), center).astype(np.float32)
    live = LiveSlices(rows, n, num_angles=count, angular_range=360)
    step = 360 / count
    picks = list(range(count // 2 + 1))
    if order != "in order":
        picks = [i for i in picks[::-1] if i % 3 != 1]
    folded = 0
    while not live.half_turn_covered(step):
        i = picks[folded]
        live.add(np.repeat(sino[i][None], rows, axis=0), angles[i])
        folded += 1
    # covered at 178.5° (180° less 1.5 steps of 1.5°), not before: in order views 0..119, else all picks
    assert folded == (120 if order == "in order" else len(picks))
    found = live.estimate_center()
    assert abs(found.center - center) <= 1.0, found
    assert abs(found.center - (n - 1) / 2) > 30  # not the middle it started from
