"""Shared inputs for the reconstruction tests: a small phantom and the tooth scan.

The tooth scan (shared/data/tooth.h5 beside the checkout, override with
TOMOBLUESKY_TOOTH) is located by the ``tooth_path`` fixture of
tests/conftest.py, which fails when it is missing. It comes from the tomopy
project (APS, BSD-3-Clause, Copyright (c) 2013-2019 UChicago Argonne LLC).
"""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon.testing import project_shepp_logan

N = 128
ANGLES = 200
SLICES = 4


@pytest.fixture(scope="session")
def theta():
    return np.linspace(0, np.pi, ANGLES, endpoint=False)


@pytest.fixture(scope="session")
def truth():
    """Area-averaged phantom slices (what a pixel-integrating detector can recover)."""
    return recon.shepp_logan_3d(SLICES, N, supersample=4)


@pytest.fixture(scope="session")
def sinograms(theta):
    return project_shepp_logan(SLICES, N, theta)


@pytest.fixture(scope="session")
def tooth(tooth_path):
    """(sinograms (2, 181, 640), theta in radians) of the tooth, normalised and −log'd."""
    import h5py

    with h5py.File(tooth_path, "r") as f:
        data = f["/exchange/data"][...]
        flats = f["/exchange/data_white"][...]
        darks = f["/exchange/data_dark"][...]
        theta = np.radians(f["/exchange/theta"][...])
    attenuation = recon.minus_log(recon.normalize(data, flats, darks))
    return np.ascontiguousarray(np.swapaxes(attenuation, 0, 1)), theta
