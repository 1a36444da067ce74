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
"""

import re
import sys

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon import _fbp
from tomobluesky.recon.testing import project_disk

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
