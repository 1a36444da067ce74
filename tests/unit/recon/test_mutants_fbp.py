"""The reference algorithm (``_fbp``) and the interpolation under it (``_interp``), against definitions.

``fbp`` is filtered backprojection as the textbook writes it: each row zero-padded, multiplied by the
windowed ramp in the Fourier domain, read back at the integer columns; each pixel then sums over the
views the filtered row at the column where its ray meets the detector (linear interpolation, zero
beyond the detector), weighted π / views. Written here with ``np.fft`` and ``np.interp`` in float64.
"""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon._fbp import backproject, fbp, filter_sinograms
from tomobluesky.recon._filters import padded_length, ramp_response
from tomobluesky.recon._interp import interp_padded, pad_rows


def filtered_by_definition(sinogram, filter_name, pad):
    length = padded_length(sinogram.shape[-1], pad)
    spectrum = np.fft.fft(sinogram.astype(np.float64), n=length, axis=-1) * ramp_response(length, filter_name)
    return np.real(np.fft.ifft(spectrum, axis=-1))[..., : sinogram.shape[-1]]


def fbp_by_definition(sinogram, theta, center, filter_name, pad):
    angles, n = sinogram.shape
    rows = filtered_by_definition(sinogram, filter_name, pad)
    columns = np.arange(-1, n + 1)  # the row continued by one zero each side, then zero beyond
    coords = np.arange(n) - (n - 1) / 2
    x, y = coords[None, :], -coords[:, None]
    image = np.zeros((n, n))
    for th, row in zip(theta, rows):
        u = center + x * np.cos(th) + y * np.sin(th)
        image += np.interp(u, columns, np.r_[0.0, row, 0.0], left=0.0, right=0.0)
    return image * np.pi / angles


def _case(seed, slices, angles, n, turn=np.pi):
    rng = np.random.default_rng(seed)
    return rng.random((slices, angles, n)).astype(np.float32), np.sort(rng.uniform(0, turn, angles))


@pytest.mark.parametrize("pad", [True, False, 2.0])
@pytest.mark.parametrize("filter_name", recon.FILTERS)
def test_filtered_rows_are_the_windowed_ramp_applied_to_the_padded_row(filter_name, pad):
    sinograms, _ = _case(1, 2, 5, 13)
    got = filter_sinograms(sinograms, filter_name, pad)
    assert got.shape == sinograms.shape and got.dtype == np.float32
    want = filtered_by_definition(sinograms, filter_name, pad)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("pad", [True, 2.0])
@pytest.mark.parametrize("n", [16, 17])
def test_fbp_is_the_textbook_sum_for_every_slice_and_centre(n, pad):
    """Per-slice axes off the middle (also by more than a pixel), uneven angles over 360°."""
    sinograms, theta = _case(n, 3, 9, n, turn=2 * np.pi)
    centers = (n - 1) / 2 + np.array([-2.6, 0.3, 1.75])
    volume = fbp(sinograms, theta, centers, filter_name="hann", pad=pad)
    assert volume.shape == (3, n, n) and volume.dtype == np.float32
    for image, sino, c in zip(volume, sinograms, centers):
        want = fbp_by_definition(sino, theta, c, "hann", pad)
        np.testing.assert_allclose(image, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_reconstruct_fbp_passes_window_padding_and_centres():
    sinograms, theta = _case(4, 2, 7, 12)
    centers = np.array([5.0, 6.4])
    volume = recon.reconstruct(sinograms, theta, centers, algorithm="fbp", filter_name="ramp", pad=2.5,
                               sinogram_order=True)
    for image, sino, c in zip(volume, sinograms, centers):
        want = fbp_by_definition(sino, theta, c, "ramp", 2.5)
        np.testing.assert_allclose(image, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_backprojection_reports_progress_per_view():
    filtered = np.ones((1, 4, 6), np.float32)
    seen = []
    backproject(filtered, np.linspace(0, np.pi, 4, endpoint=False), [2.5],
                progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_per_row_positions_over_more_than_one_leading_axis():
    """``per_row``: rows of any leading shape, each read at its own positions."""
    rng = np.random.default_rng(8)
    rows = rng.random((2, 3, 5)).astype(np.float32)
    positions = rng.uniform(-2, 7, (2, 3, 4)).astype(np.float32)
    got = interp_padded(pad_rows(rows), positions, per_row=True)
    assert got.shape == positions.shape
    columns = np.arange(-1, 6)
    for i in range(2):
        for j in range(3):
            want = np.interp(positions[i, j], columns, np.r_[0.0, rows[i, j], 0.0], left=0, right=0)
            np.testing.assert_allclose(got[i, j], want, atol=1e-6)
