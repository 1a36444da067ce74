"""The CuPy backend on a CUDA device: the FBP kernel, the NUFFT through cufinufft, and the stop path.

Every test here needs CuPy and a GPU and skips without them (CI has none). They ran on an H100
(docs/benchmarks.md, "The GPU"). On the device machine, without the top-level conftest's services:
``python -m pytest -c /dev/null --confcutdir tests/unit/recon -p no:cacheprovider tests/unit/recon/test_gpu.py``
"""

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon import _fbp
from tomobluesky.recon.testing import project_shepp_logan

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cupy():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError:
        pytest.skip("no CUDA device")
    return cupy


N, SLICES = 128, 4
THETA = np.linspace(0, np.pi, 180, endpoint=False)
# one axis per slice, one of them far enough off the middle that some rays leave the detector
CENTERS = (N - 1) / 2 + np.array([-11.3, 0.0, 6.5, 30.25])


@pytest.fixture(scope="module")
def off_centre():
    sinograms = np.stack([project_shepp_logan(SLICES, N, THETA, center=c)[k] for k, c in enumerate(CENTERS)])
    return sinograms, recon.shepp_logan_3d(SLICES, N, supersample=4)


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_the_fbp_kernel_computes_what_the_array_code_computes(cupy, off_centre):
    """Per-slice centres, rays outside the detector, the π/angles scale: the kernel against the array code it
    replaces, on the same device, and against NumPy."""
    sinograms, _ = off_centre
    filtered = _fbp.filter_sinograms(cupy.asarray(sinograms), "cosine")
    kernel = _fbp.backproject(filtered, THETA, CENTERS)
    assert isinstance(kernel, cupy.ndarray) and kernel.dtype == cupy.float32 and kernel.shape == (SLICES, N, N)
    arrays = _fbp.backproject(filtered, THETA, CENTERS, kernel=False)
    host = _fbp.backproject(filtered.get(), THETA, CENTERS)
    assert _rel(kernel.get(), arrays.get()) < 1e-5
    assert _rel(kernel.get(), host) < 1e-5
    assert np.abs(kernel.get() - host).max() < 1e-4 * np.abs(host).max()


def test_both_gpu_algorithms_reconstruct_the_phantom_as_numpy_does(cupy, off_centre):
    """As near the phantom as NumPy, slice by slice (the last one's object leaves the detector, on both)."""
    sinograms, truth = off_centre
    for algorithm, tolerance in (("fbp", 1e-5), ("nufft", 1e-2)):  # see test_backend.py::test_cupy_matches_numpy
        host = recon.reconstruct(sinograms, THETA, CENTERS, algorithm=algorithm, sinogram_order=True)
        device = recon.reconstruct(sinograms, THETA, CENTERS, algorithm=algorithm, backend="cupy",
                                   sinogram_order=True)
        assert type(device) is np.ndarray and device.dtype == np.float32
        assert _rel(device, host) <= tolerance, algorithm
        for k in range(SLICES):
            ssim = recon.ssim_in_circle(host[k], truth[k])
            assert recon.ssim_in_circle(device[k], truth[k]) == pytest.approx(ssim, abs=0.01), (algorithm, k)
            assert recon.rmse_in_circle(device[k], truth[k]) <= 1.02 * recon.rmse_in_circle(host[k], truth[k])
        assert min(recon.ssim_in_circle(device[k], truth[k]) for k in range(3)) > 0.8, algorithm


def test_the_stop_path_on_the_gpu_writes_the_volume_numpy_writes(cupy, tmp_path):
    import h5py
    import zarr

    from tomobluesky.pipeline import HDF5Scan, reconstruct_scan
    from tomobluesky.schema import ReconSettings

    rows, columns, center = 8, 96, 47.5 + 9.25
    degrees = np.linspace(0, 180, 120, endpoint=False)
    sino = project_shepp_logan(rows, columns, np.radians(degrees), center=center)
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["/exchange/data"] = (100 + 4000 * np.exp(-0.02 * sino.transpose(1, 0, 2))).astype("uint16")
        f["/exchange/data_white"] = np.full((3, rows, columns), 4100, "uint16")
        f["/exchange/data_dark"] = np.full((3, rows, columns), 100, "uint16")
        f["/exchange/theta"] = degrees
        f["/exchange/theta"].attrs["units"] = "degrees"
    volumes = {}
    for backend in ("numpy", "cupy"):
        with HDF5Scan.from_dxchange(str(tmp_path / "scan.h5")) as scan:
            info = reconstruct_scan(scan, ReconSettings(center=center, backend=backend), tmp_path / f"{backend}.zarr",
                                    memory_budget=1e9)
        assert info["center"] == pytest.approx(center)
        volumes[backend] = zarr.open_group(str(tmp_path / f"{backend}.zarr"), mode="r")["0"][:]
    assert volumes["cupy"].shape == (rows, columns, columns)
    assert _rel(volumes["cupy"], volumes["numpy"]) <= 1e-2  # the NUFFT's eps (test_backend.py)
