"""PhantomSource frames: exact line integrals, counting noise, reproducibility."""

import math

import numpy as np
import pytest

from tomobluesky.devices import PhantomSource
from tomobluesky.recon._phantom import _ELLIPSES, _slice_scales, cumulative_projection
from tomobluesky.recon.testing import project_shepp_logan

# (rows, columns, axis offset): square, rows != columns with an odd row count, an axis left of centre
GEOMETRIES = [(6, 64, 0.0), (5, 48, 3.5), (12, 40, -2.25)]
ANGLES = [0.0, 37.5, 123.0, 290.0]


def _line_integrals(source, frame):
    """Invert a noise-free frame back to line integrals (pixel units × phantom value)."""
    beam = source.flat_counts * source._gain
    return -np.log((frame.astype(np.float64) - source.dark_counts) / beam) / source.attenuation_scale


@pytest.mark.parametrize("rows, columns, offset", GEOMETRIES)
def test_frames_are_the_exact_pixel_averaged_line_integrals(rows, columns, offset):
    source = PhantomSource(n_slices=rows, n_columns=columns, axis_offset=offset, noise=False, ring_strength=0.05)
    assert source.shape == (rows, columns)
    for angle in ANGLES:
        frame = source.projection(angle)
        assert frame.shape == (rows, columns) and frame.dtype == np.float32
        # 64 rays per pixel approximate the pixel average to ~1e-3; the simulator's
        # interpolation of the running integral is good to ~0.03 at these sizes
        # (the line integrals reach 0.23 × columns), far below a shift of the axis or a row
        reference = project_shepp_logan(rows, columns, math.radians(angle), center=source.center,
                                        detector_samples=64)[:, 0]
        np.testing.assert_allclose(_line_integrals(source, frame), reference, atol=0.04)
        assert reference.max() > 0.2 * columns  # the phantom is in view: a real comparison


def test_a_wrong_centre_would_fail_the_comparison():
    """The tolerance above is tight enough to see a quarter-pixel axis error."""
    source = PhantomSource(n_slices=4, n_columns=64, axis_offset=0.0, noise=False)
    shifted = project_shepp_logan(4, 64, math.radians(37.5), center=source.center + 0.25, detector_samples=64)[:, 0]
    assert np.abs(_line_integrals(source, source.projection(37.5)) - shifted).max() > 0.5


def test_opposite_views_mirror_about_the_axis_column():
    # centre = 23.5 + 3.5 = 27: column j at θ sees what column 54 − j sees at θ + 180°
    source = PhantomSource(n_slices=7, n_columns=48, axis_offset=3.5, noise=False)
    assert source.center == 27.0
    front, back = source.projection(30.0), source.projection(210.0)
    columns = np.arange(7, 48)
    np.testing.assert_allclose(back[:, columns], front[:, 54 - columns], rtol=2e-5)
    assert np.abs(front[:, columns] - front[:, columns[::-1]]).max() > 100  # and the view itself is not symmetric


def test_running_integral_is_closed_form_ellipse_areas_and_projections():
    n, theta = 96, 0.6
    total = sum(value * np.pi * a * b for value, a, b, *_ in _ELLIPSES) * (n / 2) ** 2
    grid = np.linspace(-60, 60, 4801)
    running = cumulative_projection(grid, theta, n)
    assert running[0] == 0.0 and running[-1] == pytest.approx(total, rel=1e-12)
    # its derivative is the point-sampled projection
    t = np.arange(n) - (n - 1) / 2
    slope = (cumulative_projection(t + 1e-4, theta, n) - cumulative_projection(t - 1e-4, theta, n)) / 2e-4
    point = project_shepp_logan(None, n, theta, detector_samples=1)[0]
    np.testing.assert_allclose(slope, point, atol=2e-3)
    # the grid path and the elementwise path agree
    np.testing.assert_allclose(cumulative_projection(grid[None, ::7], theta, n)[0], running[::7], atol=1e-9)
    # the identity the simulator rests on: a row scaled by s has running integral s² C(u / s)
    np.testing.assert_allclose(cumulative_projection(grid, theta, n, scale=0.7),
                               0.49 * cumulative_projection(grid / 0.7, theta, n), rtol=1e-12, atol=1e-9)


def test_counting_noise_has_mean_and_variance_of_the_counts():
    # a strong attenuation spreads the counts from ~20000 down to ~5000
    quiet = PhantomSource(n_slices=32, n_columns=64, axis_offset=1.5, noise=False, attenuation_scale=0.15)
    noisy = PhantomSource(n_slices=32, n_columns=64, axis_offset=1.5, noise=True, seed=3, attenuation_scale=0.15)
    expected = quiet.projection(45.0).astype(np.float64)
    z = np.stack([(noisy.projection(45.0) - expected) / np.sqrt(expected) for _ in range(20)])
    # 41k samples: the mean's standard error is 0.005, the variance's 0.7 %
    assert abs(z.mean()) < 0.02
    assert z.var() == pytest.approx(1.0, abs=0.03)
    # noise scales with sqrt(counts): bright and dark pixels both have unit z-variance
    open_beam, dim = expected == expected.max(), expected < np.percentile(expected, 20)
    assert open_beam.sum() > 400 and expected[dim].max() < 0.5 * expected.max()
    assert z[:, open_beam].var() == pytest.approx(1.0, abs=0.06) and z[:, dim].var() == pytest.approx(1.0, abs=0.06)
    # successive frames do not repeat each other's noise (one pair's correlation has σ = 0.022)
    pairs = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(z[:-1], z[1:])]
    assert max(np.abs(pairs)) < 0.1 and abs(np.mean(pairs)) < 0.02
    flats = np.stack([noisy.flat() for _ in range(10)])
    assert flats.mean() == pytest.approx(20100, abs=2) and flats.var() == pytest.approx(20100, rel=0.05)
    darks = np.stack([noisy.dark() for _ in range(10)])
    assert darks.mean() == pytest.approx(100, abs=0.2) and darks.var() == pytest.approx(100, rel=0.05)


def test_same_seed_same_frames_other_seed_other_noise():
    def run(seed):
        source = PhantomSource(n_slices=6, n_columns=32, seed=seed, ring_strength=0.02)
        return [source.dark(), source.flat(), source.projection(10.0), source.projection(20.0)]

    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert all(not np.array_equal(a, c) for a, c in zip(first, other))


def test_volume_is_built_only_when_asked():
    source = PhantomSource(n_slices=4, n_columns=32, noise=False)
    source.projection(0.0)
    assert source._volume is None
    volume = source.volume
    assert volume.shape == (4, 32, 32) and volume.dtype == np.float32
    assert volume.max() == pytest.approx(0.02, rel=1e-6)  # the skull (value 1) times attenuation_scale


def test_changing_the_axis_after_creation_moves_the_frames():
    source = PhantomSource(n_slices=2, n_columns=32, noise=False)
    before = source.projection(90.0)
    source.axis_offset = 2.0
    after = source.projection(90.0)
    reference = project_shepp_logan(2, 32, math.pi / 2, center=17.5, detector_samples=64)[:, 0]
    np.testing.assert_allclose(_line_integrals(source, after), reference, atol=0.04)
    assert not np.allclose(before, after)


def _exact_pixel_means(source, angle_deg, rows):
    """s² (C(b / s) − C(a / s)) per pixel [a, b], evaluated in closed form at every edge."""
    edges = np.arange(source.n_columns + 1) - 0.5 - source.center
    scales = _slice_scales(source.n_slices)[rows]
    return np.stack([s * s * np.diff(cumulative_projection(edges / s, math.radians(angle_deg), source.n_columns))
                     for s in scales])


def test_large_frames_use_the_threaded_path():
    # 1024 columns → several row blocks in the pool; the halves still mirror
    source = PhantomSource(n_slices=300, n_columns=1024, axis_offset=6.5, noise=False)
    assert len(source._geometry().blocks) > 1
    frame = source.projection(12.0)
    np.testing.assert_array_equal(frame, frame[::-1])
    rows = [0, 77, 149, 150, 299]
    exact = _exact_pixel_means(source, 12.0, rows)
    assert exact.max() > 200
    error = np.abs(_line_integrals(source, frame[rows]) - exact)
    # the table interpolation's worst pixel (an ellipse's edge) grows as sqrt(columns): ~0.1 here
    assert error.max() < 0.2 and np.median(error) < 1e-3
