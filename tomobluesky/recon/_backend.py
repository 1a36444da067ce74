"""The array-backend seam: one algorithm, NumPy or CuPy chosen by the input.

CuPy is imported only when asked for, never at import time.
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("numpy", "cupy")


def get_namespace(backend_or_array="numpy"):
    """``numpy`` or ``cupy`` from a backend name or from an array."""
    if isinstance(backend_or_array, str):
        if backend_or_array == "numpy":
            return np
        if backend_or_array == "cupy":
            try:
                import cupy
            except ImportError as err:
                raise RuntimeError("backend 'cupy' needs CuPy and a CUDA GPU: pip install 'tomobluesky[gpu]'") from err
            return cupy
        raise ValueError(f"unknown backend {backend_or_array!r}; choose one of {BACKENDS}")
    module = type(backend_or_array).__module__.split(".")[0]
    return get_namespace("cupy") if module == "cupy" else np


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as a container or ``taskset`` sets it)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def to_numpy(array) -> np.ndarray:
    return array.get() if hasattr(array, "get") else np.asarray(array)


def copy_to_host(array, out: np.ndarray) -> None:
    """``array`` (NumPy or CuPy) into ``out``: a device array straight into it, with no host copy between
    (``get(out=)`` wants a C-contiguous ``out``; anything else takes the copy)."""
    if hasattr(array, "get") and out.flags.c_contiguous:
        array.get(out=out)
    else:
        out[...] = to_numpy(array)


# cufinufft's wheels are built against CUDA 12 and link its runtime and cuFFT by soname without shipping them;
# pip's nvidia-*-cu12 packages hold both, but where the loader does not look. Loaded first by their paths,
# the loader then finds them by soname when cufinufft's library asks (as PyTorch does with its own).
CUFINUFFT_LIBRARIES = (("cuda_runtime", "libcudart.so.12"), ("cufft", "libcufft.so.11"))
_CUFINUFFT_MISSING = ("algorithm 'nufft' on backend 'cupy' needs cufinufft and the CUDA 12 libraries its wheel links "
                      "(libcudart.so.12, libcufft.so.11): pip install 'tomobluesky[gpu]', "
                      "or reconstruct with algorithm='fbp' (CuPy alone)")


def cufinufft_libraries(paths=None) -> list:
    """Where pip's nvidia-*-cu12 packages put the libraries cufinufft needs, the first of each found on
    ``paths`` (default ``sys.path``); none where they are not installed that way."""
    import sys
    from pathlib import Path

    found = []
    for package, name in CUFINUFFT_LIBRARIES:
        for entry in sys.path if paths is None else paths:
            candidate = Path(entry or ".") / "nvidia" / package / "lib" / name
            if candidate.is_file():
                found.append(candidate)
                break
    return found


def import_cufinufft():
    """cufinufft, its CUDA 12 libraries loaded first from pip's packages where they are installed."""
    import ctypes

    for path in cufinufft_libraries():
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    try:
        import cufinufft
    except (ImportError, OSError) as err:
        raise RuntimeError(f"{_CUFINUFFT_MISSING} ({err})") from err
    return cufinufft
