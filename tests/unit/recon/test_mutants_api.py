"""``reconstruct``'s checks (``_api``, ``_validate``): the bounds are the detector's, the messages whole.

The axis may sit on the first or the last detector column (a half-acquisition's axis can be near
an edge) but not beyond; the errors name the problem and the valid range word for word.
"""

import re
import sys

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon.testing import project_disk


@pytest.mark.parametrize("center", [0.0, 15.0])
def test_an_axis_on_the_first_or_last_column_is_accepted(center):
    theta = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    sino = project_disk(16, theta, center, mu=0.01, radius=3.0)[None]
    volume = recon.reconstruct(sino, theta, center, sinogram_order=True)
    assert volume.shape == (1, 16, 16) and np.isfinite(volume).all()


@pytest.mark.parametrize("center, shown", [(-0.01, "-0.01..-0.01"), (15.01, "15.01..15.01"),
                                           ([3.0, 16.5], "3.00..16.50")])
def test_an_axis_off_the_detector_is_refused_with_the_detector_columns(center, shown):
    theta = np.linspace(0, np.pi, 8, endpoint=False)
    sino = np.zeros((2, 8, 16), np.float32)
    message = f"center {shown} lies outside the detector (columns 0..15)"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        recon.reconstruct(sino, theta, center, sinogram_order=True)


def test_a_non_finite_angle_is_refused_in_those_words():
    theta = np.linspace(0, np.pi, 8, endpoint=False)
    theta[3] = np.nan
    with pytest.raises(ValueError, match="^theta contains NaN or infinite values$"):
        recon.reconstruct(np.zeros((8, 16), np.float32), theta, sinogram_order=True)


@pytest.mark.parametrize("first, last", [(0.0, 7.0), (-4.0, 4.0), (13.0, 13.5)])
def test_angles_that_look_like_degrees_are_refused(first, last):
    """More than a turn (and a margin) of span, or angles beyond two turns: degrees, most likely."""
    theta = np.linspace(first, last, 8)
    message = f"theta spans {first:.1f}..{last:.1f}: these look like degrees; pass radians (numpy.radians(theta))"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        recon.reconstruct(np.zeros((8, 16), np.float32), theta, sinogram_order=True)


@pytest.mark.parametrize("theta", [np.linspace(0, 2 * np.pi, 8), np.linspace(-2 * np.pi, 0, 8),
                                   np.linspace(3 * np.pi, 4 * np.pi - 0.01, 8)])
def test_a_full_turn_with_its_endpoint_and_offset_turns_are_radians(theta):
    volume = recon.reconstruct(np.ones((8, 16), np.float32), theta, sinogram_order=True)
    assert volume.shape == (1, 16, 16) and np.isfinite(volume).all()


def test_backend_cupy_without_cupy_is_refused_not_run_on_the_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as where CuPy is not installed
    for algorithm in ("nufft", "fbp"):
        with pytest.raises(RuntimeError, match=r"^backend 'cupy' needs CuPy and a CUDA GPU"):
            recon.reconstruct(np.ones((8, 16), np.float32), np.linspace(0, np.pi, 8, endpoint=False),
                              algorithm=algorithm, backend="cupy", sinogram_order=True)


@pytest.mark.parametrize("algorithm, backend, named", [("nufft", "tomopy", "gridrec"), ("fbp", "tomopy", "fbp"),
                                                       ("gridrec", "numpy", "gridrec")])
def test_tomopy_work_without_tomopy_names_the_algorithm_it_would_run(monkeypatch, algorithm, backend, named):
    """tomopy's backend runs gridrec for "nufft"; without tomopy the error says which algorithm it needed."""
    monkeypatch.setitem(sys.modules, "tomopy", None)  # as where tomopy is not installed (it is not on PyPI)
    with pytest.raises(RuntimeError, match=f"^algorithm '{named}' on backend 'tomopy' needs tomopy, which is not on PyPI"):
        recon.reconstruct(np.ones((8, 16), np.float32), np.linspace(0, np.pi, 8, endpoint=False),
                          algorithm=algorithm, backend=backend, sinogram_order=True)


def test_a_bad_padding_is_refused_before_the_algorithm_is_even_looked_for(monkeypatch):
    monkeypatch.setitem(sys.modules, "tomopy", None)
    with pytest.raises(ValueError, match=r"^pad factor must be >= 1, not 0.5$"):
        recon.reconstruct(np.ones((8, 16), np.float32), np.linspace(0, np.pi, 8, endpoint=False),
                          algorithm="gridrec", pad=0.5, sinogram_order=True)


@pytest.mark.parametrize("sinogram_order, layout", [(True, "(slices, angles, columns)"),
                                                    (False, "(angles, slices, columns)")])
def test_the_wrong_rank_is_told_with_the_layout_expected(sinogram_order, layout):
    message = f"tomo must be {layout} (sinogram_order={sinogram_order}), got shape (2, 2, 8, 8)"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        recon.reconstruct(np.zeros((2, 2, 8, 8), np.float32), np.linspace(0, np.pi, 8, endpoint=False),
                          sinogram_order=sinogram_order)


@pytest.mark.parametrize("angles, columns", [(1, 16), (8, 1)])
def test_one_angle_or_one_column_is_too_few(angles, columns):
    with pytest.raises(ValueError, match=f"^need at least 2 angles and 2 columns, got {angles} × {columns}$"):
        recon.reconstruct(np.ones((angles, columns), np.float32), np.linspace(0, 0.5, angles), sinogram_order=True)


@pytest.mark.parametrize("algorithm", ["nufft", "fbp"])
def test_two_angles_and_two_columns_are_enough(algorithm):
    """Two views 90° apart of a column pair: each pixel sums the two filtered rows it sees, by definition."""
    volume = recon.reconstruct(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), np.array([0.0, np.pi / 2]),
                               algorithm=algorithm, filter_name="ramp", sinogram_order=True)
    assert volume.shape == (1, 2, 2) and np.isfinite(volume).all() and np.abs(volume).max() > 0


def test_non_finite_sinograms_message_points_at_the_preprocessing():
    sino = np.ones((8, 16), np.float32)
    sino[2, 3] = np.nan
    message = "sinograms contain NaN or infinite values (check flats/darks and the −log step)"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        recon.reconstruct(sino, np.linspace(0, np.pi, 8, endpoint=False), sinogram_order=True)


def test_sinograms_passed_as_projections_are_told_with_the_angle_count():
    """(slices, angles, columns) passed in the default projection order: the angles are its axis 1 (the
    message had the axes the wrong way round before issue 16)."""
    theta = np.linspace(0, np.pi, 6, endpoint=False)
    with pytest.raises(ValueError, match="^6 angles match axis 1 of the data, not axis 0: pass sinograms with "
                                         "sinogram_order=True"):
        recon.reconstruct(np.zeros((5, 6, 16), np.float32), theta)


def test_the_namespace_is_numpy_unless_asked_otherwise():
    assert recon.get_namespace() is np


def test_a_memory_budget_of_several_slices_gives_the_same_volume_in_slabs_of_whole_pairs():
    rng = np.random.default_rng(2)
    sino = rng.random((14, 8, 16)).astype(np.float32)
    theta = np.linspace(0, np.pi, 8, endpoint=False)
    whole = recon.reconstruct(sino, theta, sinogram_order=True)
    seen = []
    slabs = recon.reconstruct(sino, theta, sinogram_order=True, max_memory=51_200,
                              progress=lambda done, total: seen.append(done))
    np.testing.assert_allclose(slabs, whole, rtol=0, atol=1e-5 * np.abs(whole).max())
    assert 1 < len(seen) < 7 and seen[-1] == 14 and all(done % 2 == 0 for done in seen)
