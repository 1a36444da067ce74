"""Ring removal: planted stripes, the order-keeping property of Vo's sorting, the angle axis of a full turn,
the default median width and the error messages (the mutants of recon/_rings.py that
test_rings_phase_stitch.py let through, issue 16)."""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon._rings import default_size


def _object_sinogram(angles, columns, full_turn=True, seed=0):
    """A smooth off-centre object (three Gaussian blobs) plus a little noise: no two values tie."""
    theta = np.linspace(0, 2 * np.pi if full_turn else np.pi, angles, endpoint=False)
    x = np.arange(columns) - (columns - 1) / 2
    sino = np.zeros((angles, columns))
    for r, phase, width, height in ((0.25, 0.3, 3.0, 1.0), (0.1, 2.0, 5.0, 0.6), (0.35, 4.0, 2.0, 0.8)):
        track = r * columns * np.cos(theta + phase)
        sino += height * np.exp(-((x[None, :] - track[:, None]) ** 2) / (2 * width ** 2))
    sino += np.random.default_rng(seed).normal(0, 0.01, sino.shape)
    return sino


def test_a_one_column_stripe_is_removed_with_the_smallest_median():
    """size=3 is the smallest valid median width, and it is enough for a stripe one column wide."""
    clean = _object_sinogram(120, 40)
    dirty = clean.copy()
    dirty[:, 17] += 0.5  # one detector column reads high at every angle
    fixed = recon.remove_rings(dirty, size=3)
    assert np.abs((fixed - clean)[:, 17].mean()) < 0.1 * 0.5
    for bad in (1, 2, 4, -3):
        with pytest.raises(ValueError, match=r"^size must be an odd number >= 3$"):
            recon.remove_rings(dirty, size=bad)


def test_sorting_keeps_each_columns_order_with_ties_broken_by_angle():
    """Vo's sorting smooths each column's *sorted* values and puts them back where they came from, so a
    column's order is kept: where the input has a ≤ b at two angles, so has the output, and a run of equal
    values (air around the object reads exactly 0) comes back in angle order, not scrambled."""
    rng = np.random.default_rng(1)
    angles, columns, airy = 200, 12, 5
    sino = rng.uniform(0.5, 2.0, (angles, columns)).astype(np.float32)
    sino[rng.random((angles, columns)) < 0.1] = 0  # air, exactly 0, at about 10 % of each column's angles
    sino[rng.random(angles) < 0.6, airy] = 0  # and at about 60 % of one column's: a long run of ties
    out = recon.remove_rings(sino, size=3)
    for j in range(columns):
        order = np.lexsort((np.arange(angles), sino[:, j]))  # by value, ties by angle
        assert (np.diff(out[order, j]) >= 0).all(), j
    # the tied zeros of that column meet its neighbours' non-zero values of the same rank, so they get
    # different smoothed values: which angle gets which is what the order of the ties decides
    assert np.ptp(out[sino[:, airy] == 0, airy]) > 0.1


@pytest.mark.parametrize("method", ["sort", "filter"])
def test_a_full_turn_is_periodic_in_angle(method):
    """Over 360° the angle axis wraps: starting the scan k angles later only rolls the sinogram, and the
    stripe removal must roll with it (the Gaussian along the angles wraps around, it is not reflected)."""
    sino = _object_sinogram(90, 48).astype(np.float32)
    sino[:, [11, 30]] += [0.3, -0.2]
    out = recon.remove_rings(sino, method=method)
    for k in (7, 45):
        rolled = recon.remove_rings(np.roll(sino, k, axis=0), method=method)
        np.testing.assert_allclose(rolled, np.roll(out, k, axis=0), atol=1e-6)


@pytest.mark.parametrize("method", ["sort", "filter"])
def test_one_sinogram_is_treated_as_a_stack_of_one(method):
    """A 2-D sinogram gets the method and sigma it is given, as the same sinogram in a stack would."""
    sino = _object_sinogram(64, 40, full_turn=False).astype(np.float32)
    sino[:, 20] += 0.4
    for sigma in (1.5, 6.0):
        alone = recon.remove_rings(sino, method=method, size=7, sigma=sigma)
        stacked = recon.remove_rings(sino[None], method=method, size=7, sigma=sigma)[0]
        np.testing.assert_array_equal(alone, stacked)
    other = "sort" if method == "filter" else "filter"
    mine = recon.remove_rings(sino, method=method, size=7)
    assert np.abs(recon.remove_rings(sino, method=other, size=7) - mine).max() > 1e-3
    if method == "filter":  # sigma is used, and the default is 3 angles (Vo's)
        wide = recon.remove_rings(sino, method=method, size=7, sigma=6.0)
        assert np.abs(wide - recon.remove_rings(sino, method=method, size=7, sigma=1.5)).max() > 1e-3
        np.testing.assert_array_equal(recon.remove_rings(sino, method=method, size=7),
                                      recon.remove_rings(sino, method=method, size=7, sigma=3.0))
        assert np.abs(recon.remove_rings(sino, method=method, size=7, sigma=4.0)
                      - recon.remove_rings(sino, method=method, size=7)).max() > 1e-4


@pytest.mark.parametrize("columns, expected", [
    (128, 5),     # 1.28 → 1, below the smallest width 5
    (700, 7),     # 7 → 7, odd already
    (2048, 21),   # 20.48 → 20 → the odd 21 (Vo's width for a 2k detector)
    (2148, 21),   # 21.48 → 21, odd already
    (2560, 27),   # 25.6 → 26 → 27
    (3000, 31),   # 30 → 31, the largest
    (4096, 31),   # 40.96 → 41, clipped to 31
])
def test_default_size_is_the_odd_width_near_a_hundredth_of_the_detector(columns, expected):
    assert default_size(columns) == expected


def test_the_default_width_follows_the_columns_not_the_angles():
    """(slices, angles, columns) and (angles, columns): the default median width is the columns' (5 for 64
    columns), even when the angles alone would give another (9 for 900)."""
    sino = _object_sinogram(900, 64, full_turn=False).astype(np.float32)
    sino[:, 30] += 0.3
    assert default_size(64) == 5 and default_size(900) == 9
    want = recon.remove_rings(sino, size=5)
    np.testing.assert_array_equal(recon.remove_rings(sino), want)
    np.testing.assert_array_equal(recon.remove_rings(sino[None])[0], want)
    assert np.abs(recon.remove_rings(sino, size=9) - want).max() > 1e-3


@pytest.mark.parametrize("dtype", [np.float64, np.uint16])
def test_the_result_is_float32_whatever_comes_in(dtype):
    """Raw counts (uint16) or float64 sinograms: float32 out, not truncated to integers."""
    sino = (1000 * _object_sinogram(60, 30)).astype(dtype)
    out = recon.remove_rings(sino)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, recon.remove_rings(sino.astype(np.float32)), rtol=1e-6)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"^sinograms must be \(slices, angles, columns\), got \(1, 2, 8, 8\)$"):
        recon.remove_rings(np.zeros((1, 2, 8, 8)))
    bad = np.zeros((8, 8))
    bad[3, 3] = np.inf
    with pytest.raises(ValueError, match="^sinograms contain NaN or infinite values$"):
        recon.remove_rings(bad)
