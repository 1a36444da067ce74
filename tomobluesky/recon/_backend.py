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


def to_numpy(array) -> np.ndarray:
    return array.get() if hasattr(array, "get") else np.asarray(array)
