"""The array-backend seam: the input picks the namespace; CuPy only when asked."""

import re
import subprocess
import sys
from types import SimpleNamespace

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
    # equal up to the order of finufft's threaded sums (bit for bit on 2 cores, not on 16)
    public = recon.reconstruct(sinograms[:2], theta, filter_name="shepp", sinogram_order=True)
    np.testing.assert_allclose(direct, public, rtol=0, atol=1e-5 * np.abs(public).max())
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
    # the FBP kernel does NumPy's arithmetic; the two NUFFTs each stay within eps = 1e-2 of the exact sum with
    # different kernels (finufft 2.5's PSWF on the CPU, cufinufft's exponential of semicircle): 0.4 % apart on an H100
    for algorithm, tolerance in (("nufft", 1e-2), ("fbp", 1e-5)):
        host = recon.reconstruct(sinograms, theta, algorithm=algorithm, sinogram_order=True)
        device = recon.reconstruct(sinograms, theta, algorithm=algorithm, backend="cupy", sinogram_order=True)
        assert np.linalg.norm(device - host) / np.linalg.norm(host) <= tolerance, algorithm


# -- the CuPy branch where CuPy is missing (issue 16: get_namespace's mutants, testable without a GPU) ----

_CUPY_MISSING = "backend 'cupy' needs CuPy and a CUDA GPU: pip install 'tomobluesky[gpu]'"


def _module_typed(module: str):
    """An instance of a class defined, as far as Python can tell, in ``module`` (only its name is read)."""
    return type("ndarray", (), {"__module__": module})()


def test_cupy_by_name_without_cupy_names_the_install_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as where CuPy is not installed, whatever this machine has
    with pytest.raises(RuntimeError) as caught:
        recon.get_namespace("cupy")
    assert str(caught.value) == _CUPY_MISSING
    assert isinstance(caught.value.__cause__, ImportError)  # the reason is kept for the traceback


@pytest.mark.parametrize("module", ["cupy", "cupy._core.core"])
def test_an_array_of_cupys_own_module_is_sent_to_cupy(monkeypatch, module):
    """CuPy arrays are told by their type's top-level module: without CuPy that route ends in its error,
    so the array is never read as if it were a NumPy one."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(RuntimeError, match="^" + re.escape(_CUPY_MISSING) + "$"):
        recon.get_namespace(_module_typed(module))


@pytest.mark.parametrize("module", ["cupyx.scipy", "mylib.cupy", "numpy", "builtins"])
def test_arrays_of_other_modules_are_numpys(monkeypatch, module):
    """Only the top-level package name counts: cupyx or a package's own ``cupy`` submodule are not CuPy."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert recon.get_namespace(_module_typed(module)) is np


def test_the_default_backend_is_numpy_and_an_unknown_one_lists_the_choices():
    assert recon.get_namespace() is np
    with pytest.raises(ValueError) as caught:
        recon.get_namespace("jax")
    assert str(caught.value) == "unknown backend 'jax'; choose one of ('numpy', 'cupy')"


def test_to_numpy_fetches_what_has_a_get_and_wraps_the_rest():
    """A device array is copied to the host by its ``get()`` (CuPy's); anything else goes through asarray."""

    class OnDevice:
        def __init__(self, host):
            self.host = host

        def get(self):
            return self.host.copy()

    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    fetched = recon.to_numpy(OnDevice(host))
    assert type(fetched) is np.ndarray and fetched is not host
    np.testing.assert_array_equal(fetched, host)
    listed = recon.to_numpy([[1.0, 2.0], [3.0, 4.0]])
    assert type(listed) is np.ndarray and listed.shape == (2, 2) and listed[1, 0] == 3.0
    assert recon.to_numpy(host) is host  # a NumPy array is not copied


# -- cufinufft's CUDA 12 libraries (its wheel links them and ships neither; pip's nvidia-*-cu12 packages hold them) --

def _lay_out(root, *packages):
    for package, name in packages:
        path = root / "nvidia" / package / "lib" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


def test_cufinufft_libraries_are_found_where_pip_puts_them_first_entry_first(tmp_path):
    from tomobluesky.recon import _backend

    both = _lay_out(tmp_path / "a", *_backend.CUFINUFFT_LIBRARIES)
    runtime_only = _lay_out(tmp_path / "b", _backend.CUFINUFFT_LIBRARIES[0])
    found = _backend.cufinufft_libraries([str(tmp_path / "missing"), str(runtime_only), str(both)])
    assert found == [runtime_only / "nvidia/cuda_runtime/lib/libcudart.so.12", both / "nvidia/cufft/lib/libcufft.so.11"]
    assert _backend.cufinufft_libraries([str(tmp_path / "missing")]) == []
    (tmp_path / "c/nvidia/cufft/lib/libcufft.so.11").mkdir(parents=True)  # a folder of that name is no library
    assert _backend.cufinufft_libraries([str(tmp_path / "c")]) == []


def test_an_empty_path_entry_is_the_working_directory_as_for_imports(tmp_path, monkeypatch):
    from pathlib import Path

    from tomobluesky.recon import _backend

    monkeypatch.chdir(_lay_out(tmp_path, *_backend.CUFINUFFT_LIBRARIES))
    assert _backend.cufinufft_libraries([""]) == [Path(".") / "nvidia/cuda_runtime/lib/libcudart.so.12",
                                                  Path(".") / "nvidia/cufft/lib/libcufft.so.11"]


def test_import_cufinufft_loads_the_libraries_globally_before_importing(tmp_path, monkeypatch):
    import ctypes
    import types

    from tomobluesky.recon import _backend

    site = _lay_out(tmp_path, *_backend.CUFINUFFT_LIBRARIES)
    monkeypatch.setattr(sys, "path", [str(site)] + sys.path)
    events = []
    monkeypatch.setattr(ctypes, "CDLL", lambda path, mode=0: events.append(("load", path, mode)))
    fake = types.ModuleType("cufinufft")
    monkeypatch.setitem(sys.modules, "cufinufft", fake)
    assert _backend.import_cufinufft() is fake
    assert events == [("load", str(site / "nvidia/cuda_runtime/lib/libcudart.so.12"), ctypes.RTLD_GLOBAL),
                      ("load", str(site / "nvidia/cufft/lib/libcufft.so.11"), ctypes.RTLD_GLOBAL)]


def test_import_cufinufft_says_what_is_missing_and_the_way_round_it(monkeypatch):
    from tomobluesky.recon import _backend, _nufft

    monkeypatch.setitem(sys.modules, "cufinufft", None)
    with pytest.raises(RuntimeError) as caught:
        _nufft.make_plan(SimpleNamespace(__name__="cupy"), 8, 1)  # any namespace but NumPy's asks for cufinufft
    message = str(caught.value)
    assert message.startswith(_backend._CUFINUFFT_MISSING)
    assert "libcudart.so.12" in message and "libcufft.so.11" in message and "algorithm='fbp'" in message
    assert isinstance(caught.value.__cause__, ImportError)


def test_copy_to_host_writes_a_device_array_straight_into_the_output():
    from tomobluesky.recon._backend import copy_to_host

    class OnDevice:
        def __init__(self, host):
            self.host, self.calls = host, []

        def get(self, out=None):
            self.calls.append(out)
            if out is None:
                return self.host.copy()
            out[...] = self.host
            return out

    host = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    out = np.zeros_like(host)
    device = OnDevice(host)
    copy_to_host(device, out)
    np.testing.assert_array_equal(out, host)
    assert len(device.calls) == 1 and device.calls[0] is out  # no host copy in between
    strided = np.zeros((2, 3, 8), dtype=np.float32)[..., ::2]  # not C-contiguous: get(out=) would refuse it
    device.calls.clear()
    copy_to_host(device, strided)
    np.testing.assert_array_equal(strided, host)
    assert device.calls == [None]
    plain = np.zeros_like(host)
    copy_to_host(host, plain)
    np.testing.assert_array_equal(plain, host)


class _DeviceLike:
    """An array namespace that is not NumPy but computes with it: the GPU's route through ``reconstruct``
    (slabs checked where they are, images copied out, slabs sized for the device), run on the CPU.
    Its device has 80 GB free unless a test says otherwise."""

    cuda = SimpleNamespace(Device=lambda: SimpleNamespace(mem_info=(80e9, 80e9)))

    def get_default_memory_pool(self):
        return SimpleNamespace(free_bytes=lambda: 0)

    def __getattr__(self, name):
        return getattr(np, name)


def test_the_device_route_checks_each_slab_for_nan_where_it_lies(monkeypatch, sinograms, theta):
    from tomobluesky.recon import _api

    checked = []
    device = _DeviceLike()
    monkeypatch.setattr(_api, "get_namespace", lambda name: device if name == "cupy" else np)
    monkeypatch.setattr(_DeviceLike, "isfinite", lambda self, a: checked.append(a.shape) or np.isfinite(a),
                        raising=False)
    host = recon.reconstruct(sinograms, theta, sinogram_order=True)
    routed = recon.reconstruct(sinograms, theta, sinogram_order=True, backend="cupy", max_memory=1)
    np.testing.assert_allclose(routed, host, rtol=0, atol=1e-5 * np.abs(host).max())  # finufft: threads, sum order
    assert checked == [(2,) + sinograms.shape[1:]] * (len(sinograms) // 2)  # every slab of 2, on the "device"
    bad = sinograms.copy()
    bad[-1, 3, 5] = np.nan  # in the last slab: the ones before it went through
    checked.clear()
    with pytest.raises(ValueError, match="NaN or infinite"):
        recon.reconstruct(bad, theta, sinogram_order=True, backend="cupy", max_memory=1)
    assert len(checked) == len(sinograms) // 2  # no check on the host first: the device's found it
    with pytest.raises(ValueError, match="NaN or infinite"):
        recon.reconstruct(bad, theta, sinogram_order=True)  # on NumPy, before any work


def test_the_cpu_nufft_gets_the_cores_asked_for_or_all_this_process_may_use(monkeypatch, sinograms, theta):
    import os

    from tomobluesky.recon import _api

    seen = []
    real = _api.nufft_fbp_threads
    monkeypatch.setattr(_api, "nufft_fbp_threads", lambda *a, threads, **kw: seen.append(threads) or real(
        *a, threads=threads, **kw))
    recon.reconstruct(sinograms, theta, sinogram_order=True, ncore=3)
    recon.reconstruct(sinograms, theta, sinogram_order=True)
    assert seen == [3, len(os.sched_getaffinity(0))]


@pytest.mark.parametrize("algorithm", ["nufft", "fbp"])
def test_on_the_device_a_slab_fits_half_the_gpus_free_memory(monkeypatch, sinograms, theta, algorithm):
    """The host's budget says nothing of the GPU's: slabs shrink to whole pairs within DEVICE_SHARE of what the
    device has free (CuPy's pool's free blocks counted in), never below one pair."""
    from tomobluesky.recon import _api
    from tomobluesky.recon._filters import padded_length

    slices, angles, columns = sinograms.shape  # 4 slices
    per_slice, fixed = _api.device_bytes(algorithm, angles, columns, padded_length(columns, True), 8)
    device = _DeviceLike()
    memory = {}
    monkeypatch.setattr(_DeviceLike, "cuda", SimpleNamespace(Device=lambda: SimpleNamespace(
        mem_info=(memory["free"], 80e9))))
    monkeypatch.setattr(_DeviceLike, "get_default_memory_pool", lambda self: SimpleNamespace(
        free_bytes=lambda: memory["pool"]))
    monkeypatch.setattr(_api, "get_namespace", lambda name: device if name == "cupy" else np)

    def slabs(free, pool=0, **kw):
        memory.update(free=free, pool=pool)
        calls = []
        recon.reconstruct(sinograms, theta, sinogram_order=True, backend="cupy", algorithm=algorithm,
                          progress=lambda done, total: calls.append(done), **kw)
        return calls

    room = lambda n: (fixed + n * per_slice) / _api.DEVICE_SHARE  # noqa: E731 - free bytes for n slices
    assert slabs(room(4)) == [4]
    assert slabs(room(4) - 1) == [2, 4]  # 3 slices' room: one pair
    assert slabs(room(4) * 3 / 4, pool=room(4) / 4) == [4]  # the pool's free blocks count
    assert slabs(0) == [2, 4]  # at least one pair, whatever the device says
    assert slabs(room(4), max_memory=1) == [2, 4]  # and never more than the host's budget
