"""``reconstruct``'s hand-over to tomopy (``backend="tomopy"`` and ``algorithm="gridrec"``), run against tomopy
itself where it is importable: tomopy is not on PyPI, so CI skips these. Built from source beside the project
(``build-tomopy.sh GIT_DIR VENV`` in the shared tools) it runs in the project's venv, numpy 2 included, with
``PYTHONPATH`` on a folder holding only a link to VENV's ``tomopy`` package and ``LD_LIBRARY_PATH=VENV/lib``
(tomopy finds its C libraries through ``ctypes.util.find_library``, not beside the package).

The objects are disks with exact sinograms (``project_disk``), so where each one must appear is known:
- tomopy's ``fbp`` is an unfiltered backprojection (its C code never reads the filter name), the same
  operator as our ``backproject`` up to the ``π / angles`` weight: it must match ours where the axis is ours.
- tomopy's gridrec lays its image grid half a pixel from ours, whatever the axis (measured on this object:
  −0.46..−0.54 row, +0.46..+0.56 column for axes 26.25, 31.5 and 35 and four disk positions): the disk must
  show up there, no further.
- each of our window names must mean our window in gridrec, and gridrec's rows are padded as ours: a phantom
  filling the detector must come out as well as from our engine.
"""

import re
import sys

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon import _api, _fbp
from tomobluesky.recon._filters import padded_length
from tomobluesky.recon.testing import circle_mask, project_disk, project_shepp_logan, rmse_in_circle, shepp_logan

N = 64
THETA = np.linspace(0, np.pi, 180, endpoint=False)
AXIS = (N - 1) / 2 + 3.5  # off the middle column, so an axis lost on the way is seen
DISKS = [(10.0, 6.0), (-12.0, 4.0)]  # one disk per slice (x right, y up, pixels from the axis): slices kept apart
MU = 0.02
GRIDREC_SHIFT = (-0.5, 0.5)  # (rows, columns) of tomopy's gridrec image against ours


@pytest.fixture
def tomopy():
    return pytest.importorskip("tomopy")


def _projections(center=AXIS):
    """(angles, slices, columns), tomopy's own order, one disk of radius 3 per slice."""
    sinograms = np.stack([project_disk(N, THETA, center, mu=MU, radius=3.0, x0=x, y0=y) for x, y in DISKS])
    return np.ascontiguousarray(np.swapaxes(sinograms, 0, 1))


def _offset(image, x0, y0):
    """Where the disk's mass sits (rows, columns) against where the disk is, from the pixels near it."""
    rows, cols = np.mgrid[:N, :N].astype(float)
    row0, col0 = (N - 1) / 2 - y0, (N - 1) / 2 + x0
    weight = np.clip(image, 0, None) * (np.hypot(rows - row0, cols - col0) < 6)
    return (weight * rows).sum() / weight.sum() - row0, (weight * cols).sum() / weight.sum() - col0


@pytest.mark.parametrize("algorithm, backend", [("nufft", "tomopy"), ("gridrec", "tomopy"), ("gridrec", "numpy")])
def test_gridrec_puts_each_slices_disk_where_it_is_on_tomopys_grid(tomopy, algorithm, backend):
    """Projections in tomopy's order, an axis off the middle: each slice's disk at its place on gridrec's grid
    (a centre half a pixel off moves it 0.3-0.6 pixel), at about the disk's attenuation."""
    volume = recon.reconstruct(_projections(), THETA, AXIS, algorithm=algorithm, backend=backend, ncore=1)
    assert volume.shape == (len(DISKS), N, N) and volume.dtype == np.float32 and volume.flags.c_contiguous
    for image, (x0, y0) in zip(volume, DISKS):
        np.testing.assert_allclose(_offset(image, x0, y0), GRIDREC_SHIFT, atol=0.15)
        row, col = round((N - 1) / 2 - y0 + GRIDREC_SHIFT[0]), round((N - 1) / 2 + x0 + GRIDREC_SHIFT[1])
        assert 0.8 * MU < image[row, col] < 1.5 * MU  # gridrec overshoots a 3-pixel disk (measured 1.1-1.4)


def test_the_window_reaches_gridrec(tomopy):
    """The cosine window takes more of the high frequencies than Shepp-Logan's, in tomopy as in ours: the
    image's edges (its summed gradient) shrink by about the same factor in both."""
    projections = _projections()

    def edges(filter_name, **where):
        volume = recon.reconstruct(projections, THETA, AXIS, filter_name=filter_name, ncore=1, **where)
        return sum(np.abs(np.diff(volume, axis=axis)).sum() for axis in (1, 2))

    theirs = edges("cosine", backend="tomopy") / edges("shepp", backend="tomopy")
    ours = edges("cosine") / edges("shepp")
    assert theirs < 0.95 and abs(theirs - ours) < 0.05, (theirs, ours)


def test_tomopys_fbp_is_our_unfiltered_backprojection_around_the_same_axis(tomopy):
    """tomopy puts a ray-driven algorithm's axis at ``center`` + ½ of ours: handed over right, its backprojection
    is ours (weighted by angles / π) to 5 % (measured 2.5 %; half a pixel off: 11 %) and the disks stay put."""
    projections = _projections()
    volume = recon.reconstruct(projections, THETA, AXIS, algorithm="fbp", backend="tomopy", ncore=1)
    assert volume.shape == (len(DISKS), N, N) and volume.dtype == np.float32
    ours = _fbp.backproject(np.swapaxes(projections, 0, 1), THETA, np.full(len(DISKS), AXIS)) * (len(THETA) / np.pi)
    assert np.linalg.norm(volume - ours) / np.linalg.norm(ours) < 0.05
    for image, (x0, y0) in zip(volume, DISKS):
        np.testing.assert_allclose(_offset(image, x0, y0), (0.0, 0.0), atol=0.1)


def test_tomopy_missing_says_how_to_install_it(monkeypatch):
    """Without tomopy (as in CI) the whole advice is given: where to get it and where it is written up."""
    monkeypatch.setitem(sys.modules, "tomopy", None)  # as where tomopy is not installed, whatever this machine has
    message = ("algorithm 'gridrec' on backend 'tomopy' needs tomopy, which is not on PyPI: "
               "conda install -c conda-forge tomopy (see docs/recon.md)")
    with pytest.raises(RuntimeError, match="^" + re.escape(message) + "$"):
        recon.reconstruct(_projections(), THETA, AXIS, backend="tomopy")


def test_gridrec_asked_on_the_cupy_backend_needs_tomopy_not_cupy(monkeypatch):
    """gridrec is tomopy's whatever the backend: asked with ``backend="cupy"`` it never looks for CuPy, so
    where neither is installed the error is tomopy's."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setitem(sys.modules, "tomopy", None)
    with pytest.raises(RuntimeError, match="^algorithm 'gridrec' on backend 'tomopy' needs tomopy"):
        recon.reconstruct(_projections(), THETA, AXIS, algorithm="gridrec", backend="cupy")


# three disks of radii 3, 5, 2: edges of several sizes, so every spatial frequency band carries signal
SPREAD = [(10.0, 6.0, 3.0), (-12.0, -4.0, 5.0), (0.0, -14.0, 2.0)]
BANDS = np.arange(0.05, 0.45, 0.05)  # radial frequency bands (cycles per pixel), up to 0.45 (Nyquist 0.5)


def _spread(shift=(0.0, 0.0)):
    """One (1, angles, columns) sinogram of SPREAD, its disks moved by ``shift`` (rows, columns)."""
    rows, cols = shift
    return sum(project_disk(N, THETA, AXIS, mu=MU, radius=r, x0=x + cols, y0=y - rows) for x, y, r in SPREAD)[None]


def _band_spectrum(image):
    """|FFT| summed over each band of BANDS, inside the circle the detector covers around the axis."""
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(N), np.fft.fftfreq(N), indexing="ij"))
    spectrum = np.abs(np.fft.fft2(image * _inner()))
    return np.array([spectrum[(k >= b) & (k < b + 0.05)].sum() for b in BANDS])


def _inner():
    rows, cols = np.mgrid[:N, :N]
    return np.hypot(rows - (N - 1) / 2, cols - (N - 1) / 2) < 24  # the axis is 3.5 px off: 28 px to the edge


def _gain_fit_error(image, reference):
    a, b = image[_inner()], reference[_inner()]
    return np.linalg.norm(a - (a @ b) / (b @ b) * b) / np.linalg.norm(a)


@pytest.mark.parametrize("filter_name", ["ramp", "shepp", "cosine", "hann"])
def test_each_window_name_means_our_window_in_gridrec(tomopy, filter_name):
    """Any FBP multiplies the image's 2-D spectrum by its window along the radius, so the ratio of two
    windows' spectra, both from one engine, is W_name / W_cosine whatever that engine's own interpolation: tomopy's
    ratio must be ours to 5 % in every band (measured ≤ 1.6 %; ours differ from each other by 7-40 % above
    0.2 cycles/pixel; "ramp" handed on as is (Shepp-Logan there) is 27 % off, tomopy's default Hann ×14).
    And the image itself is ours (disks placed on gridrec's grid) to 10 % after a gain fit (measured 3-8 %,
    the rest gridrec's own kernel; the default Hann 23 %)."""
    def both(name):
        ours = recon.reconstruct(_spread(GRIDREC_SHIFT), THETA, AXIS, sinogram_order=True, filter_name=name)[0]
        theirs = recon.reconstruct(_spread(), THETA, AXIS, sinogram_order=True, filter_name=name,
                                   backend="tomopy", ncore=1)[0]
        return ours, theirs

    ours, theirs = both(filter_name)
    ours_cos, theirs_cos = both("cosine")
    ratio_ours = _band_spectrum(ours) / _band_spectrum(ours_cos)
    ratio_theirs = _band_spectrum(theirs) / _band_spectrum(theirs_cos)
    np.testing.assert_allclose(ratio_theirs, ratio_ours, rtol=0.05)
    assert _gain_fit_error(theirs, ours) < 0.10


def test_a_window_without_a_tomopy_counterpart_is_refused():
    """tomopy reconstructs an unknown window name with Shepp-Logan's without a word: a name with no
    translation is refused before tomopy sees it."""
    with pytest.raises(ValueError, match="^filter 'parzen' has no counterpart in tomopy's gridrec; choose one of "
                                         + re.escape("('ramp', 'shepp', 'cosine', 'hann')") + "$"):
        _api._tomopy_filter("parzen")


def _truth_on_gridrecs_grid():
    """The phantom averaged over gridrec's pixels (GRIDREC_SHIFT from ours): twice as fine, moved one fine
    pixel per half pixel, 2×2 blocks averaged."""
    shift = (round(2 * GRIDREC_SHIFT[0]), round(2 * GRIDREC_SHIFT[1]))  # fine pixels, gridrec's to ours
    fine = np.roll(shepp_logan(2 * N, supersample=2).astype(np.float64), shift, axis=(0, 1))
    return fine.reshape(N, 2, N, 2).mean(axis=(1, 3))


def test_gridrec_pads_the_rows_like_our_engine(tomopy):
    """The phantom fills the detector: unpadded, gridrec's rows of 64 (already a power of two, so tomopy adds
    nothing) wrap around. With our padding its error against the phantom (on its own grid, relative to the
    phantom's RMS in the circle) is ours to 0.05 (measured 0.238 against our 0.246); pad=False stays
    tomopy's unpadded (measured 0.547)."""
    theta = np.linspace(0, np.pi, 90, endpoint=False)
    sinogram = project_shepp_logan(None, N, theta)
    truth, ours_truth = _truth_on_gridrecs_grid(), shepp_logan(N, supersample=4)
    scale = np.sqrt(np.mean(truth[circle_mask(N)] ** 2))

    def error(volume, against):
        return rmse_in_circle(volume[0], against) / scale

    ours = error(recon.reconstruct(sinogram, theta), ours_truth)
    padded = error(recon.reconstruct(sinogram, theta, backend="tomopy", ncore=1), truth)
    unpadded = error(recon.reconstruct(sinogram, theta, backend="tomopy", pad=False, ncore=1), truth)
    assert padded < ours + 0.05 and unpadded > 1.5 * padded, (padded, ours, unpadded)


def test_gridrec_gets_rows_padded_to_our_length_and_no_longer(tomopy):
    """``pad`` means the same row length for gridrec as for our engine, no more: gridrec on the row zero-padded
    by hand to ``padded_length`` (zeros all on the right, the axis left where it is) is the hand-over's image
    (measured 1e-6 of the peak; where the zeros go does not matter, gridrec's row is periodic). At 80 columns
    1.5× is 120, under gridrec's power of two (128): a longer row doubles its grid to 256 and changes the
    image by about 19 % of its peak. gridrec centres its grid on the axis, so our 80 are the middle of its 120.
    This pins what ``pad`` asks for (and costs), not image quality: the doubled grid is no worse (error against
    the phantom as in the test above: 0.230 against 0.249)."""
    n, theta = 80, np.linspace(0, np.pi, 90, endpoint=False)
    sinogram = project_shepp_logan(None, n, theta)  # axis in the middle
    for pad in (True, 1.37):
        length = padded_length(n, pad)
        assert length <= 128  # still one gridrec grid (128) for the row as we pad it
        by_hand = recon.reconstruct(np.pad(sinogram, ((0, 0), (0, length - n))), theta, (n - 1) / 2,
                                    backend="tomopy", pad=False, ncore=1)
        crop = (length - n) // 2
        expected = by_hand[:, crop:crop + n, crop:crop + n]
        handed = recon.reconstruct(sinogram, theta, backend="tomopy", pad=pad, ncore=1)
        np.testing.assert_allclose(handed, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("per_slab", [1, 2, 3])
def test_gridrec_keeps_to_max_memory_in_slabs_and_gives_the_same_volume(tomopy, monkeypatch, per_slab):
    """A budget of ``per_slab`` slices' working set (``tomopy_bytes_per_slice``, and half a slice more) hands
    tomopy at most that many slices per call, reports each slab, and changes no pixel beyond rounding
    (gridrec reconstructs two slices in one complex FFT, so a slab's pairing may differ)."""
    slices = 5
    sinograms = np.stack([project_disk(N, THETA, AXIS, mu=MU, radius=2.0 + i, x0=3.0 * i - 6, y0=2.0 - i)
                          for i in range(slices)])
    whole = recon.reconstruct(sinograms, THETA, AXIS, sinogram_order=True, algorithm="gridrec", ncore=1)
    handed, calls = [], []
    real = tomopy.recon

    def recording(tomo, *args, **kwargs):
        handed.append(tomo.shape[1])  # (angles, slices, columns)
        return real(tomo, *args, **kwargs)

    monkeypatch.setattr(tomopy, "recon", recording)
    per_slice = _api.tomopy_bytes_per_slice(len(THETA), N)
    assert per_slice == 4 * (2 * len(THETA) * padded_length(N, True) + 2 * padded_length(N, True) ** 2 + 2 * N * N)
    volume = recon.reconstruct(sinograms, THETA, AXIS, sinogram_order=True, algorithm="gridrec", ncore=1,
                               max_memory=per_slab * per_slice + per_slice // 2,
                               progress=lambda done, total: calls.append((done, total)))
    expected = [min(per_slab, slices - start) for start in range(0, slices, per_slab)]
    assert handed == expected
    assert calls == [(min(start + per_slab, slices), slices) for start in range(0, slices, per_slab)]
    np.testing.assert_allclose(volume, whole, rtol=0, atol=1e-6 * np.abs(whole).max())
