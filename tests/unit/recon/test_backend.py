"""The array-backend seam: the input picks the namespace; CuPy only when asked."""

import subprocess
import sys

import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon import _fbp, _nufft


def test_names_and_arrays_pick_numpy():
    assert recon.get_namespace("numpy") is np
    assert recon.get_namespace(np.zeros(3)) is np
    with pytest.raises(ValueError, match="backend"):
        recon.get_namespace("jax")


def test_cupy_asked_for_without_cupy_says_how_to_get_it():
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="CuPy"):
            recon.get_namespace("cupy")
    else:
        assert recon.get_namespace("cupy").__name__ == "cupy"


def test_importing_recon_loads_no_cupy_nor_finufft():
    code = ("import sys, tomobluesky.recon; "
            "print(sorted(m for m in ('cupy', 'cufinufft', 'finufft', 'tomopy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_algorithms_run_through_the_namespace_of_their_input(sinograms, theta):
    """The algorithm modules take ``xp`` from the input (here NumPy) and agree with the public call."""
    centers = np.full(2, (sinograms.shape[-1] - 1) / 2)
    direct = _nufft.nufft_fbp(sinograms[:2], theta, centers)
    assert type(direct) is np.ndarray and direct.dtype == np.float32
    np.testing.assert_array_equal(direct, recon.reconstruct(sinograms[:2], theta, filter_name="shepp",
                                                            sinogram_order=True))
    filtered = _fbp.filter_sinograms(sinograms[:1], "ramp", pad=2.0)
    length = 256
    response = recon.ramp_response(length, "ramp")
    expected = np.real(np.fft.ifft(np.fft.fft(sinograms[:1], n=length, axis=-1) * response, axis=-1))[..., :128]
    np.testing.assert_allclose(filtered, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_cupy_matches_numpy(sinograms, theta):
    cupy = pytest.importorskip("cupy")
    if cupy.cuda.runtime.getDeviceCount() == 0:
        pytest.skip("no CUDA device")
    for algorithm in ("nufft", "fbp"):
        host = recon.reconstruct(sinograms, theta, algorithm=algorithm, sinogram_order=True)
        device = recon.reconstruct(sinograms, theta, algorithm=algorithm, backend="cupy", sinogram_order=True)
        assert np.linalg.norm(device - host) / np.linalg.norm(host) <= 1e-3
