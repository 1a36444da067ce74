"""interp_linear: the one linear interpolation behind fbp, the live slices and stitch_360."""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon._interp import interp_padded, pad_rows


def zero_continued(row, positions):
    """The reference: np.interp on the row with a zero column appended at each end."""
    xs = np.arange(-1, len(row) + 1)
    ys = np.concatenate([[0.0], row, [0.0]])
    return np.interp(positions, xs, ys, left=0.0, right=0.0)


def test_matches_the_zero_continued_row():
    rng = np.random.default_rng(0)
    row = rng.random(17).astype(np.float32)
    positions = np.linspace(-3, 20, 401).astype(np.float32)
    got = recon.interp_linear(row, positions)
    assert got.dtype == np.float32 and got.shape == positions.shape
    np.testing.assert_allclose(got, zero_continued(row, positions), atol=1e-6)


def test_edges_fade_over_one_pixel_then_read_zero():
    row = np.array([2.0, 4.0, 6.0], np.float32)
    got = recon.interp_linear(row, np.array([-5.0, -1.0, -0.5, 0.0, 1.5, 2.0, 2.5, 3.0, 40.0]))
    np.testing.assert_allclose(got, [0, 0, 1, 2, 5, 6, 3, 0, 0])


def test_shared_positions_broadcast_over_rows():
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    positions = np.array([[0.5, 1.0], [2.25, -0.5]], np.float32)
    got = recon.interp_linear(rows, positions)
    assert got.shape == (3, 2, 2)
    for r in range(3):
        np.testing.assert_allclose(got[r], zero_continued(rows[r], positions), atol=1e-6)


def test_per_row_positions():
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    positions = np.array([[0.5, 3.5], [1.25, 9.0], [-0.25, 2.0]], np.float32)
    got = recon.interp_linear(rows, positions, per_row=True)
    want = [zero_continued(rows[r], positions[r]) for r in range(3)]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_padded_form_is_the_same():
    rng = np.random.default_rng(2)
    rows = rng.random((2, 9)).astype(np.float32)
    positions = rng.uniform(-2, 11, (5, 5)).astype(np.float32)
    padded = pad_rows(rows)
    assert padded.shape == (2, 12) and (padded[:, 0] == 0).all() and (padded[:, -2:] == 0).all()
    np.testing.assert_array_equal(interp_padded(padded, positions), recon.interp_linear(rows, positions))


@pytest.mark.parametrize("offset", [-5.3, 0.0, 2.75])
def test_fbp_still_reads_zero_beyond_the_detector(offset):
    """A single bright detector pixel backprojects into a thin line; nothing wraps around."""
    n = 32
    filtered = np.zeros((1, 1, n), np.float32)
    filtered[0, 0, 3] = 1.0
    from tomobluesky.recon._fbp import backproject

    image = backproject(filtered, np.array([0.0]), [(n - 1) / 2 + offset])[0]
    column = 3 - offset  # at θ = 0 image column j reads detector column j + offset
    far = np.abs(np.arange(n) - column) >= 1
    assert np.allclose(image.sum(axis=0)[far], 0)
    assert image.sum() == pytest.approx(n * np.pi, rel=1e-5)
