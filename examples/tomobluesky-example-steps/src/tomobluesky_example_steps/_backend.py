"""NumPy and SciPy for NumPy arrays, CuPy and cupyx for CuPy arrays.

The step interface allows either array type. CuPy is imported only when a
CuPy array arrives, so the package needs no GPU and no CuPy to install.
"""

import numpy as np


def backend(array):
    """(array module, ndimage module) matching ``array``."""
    if type(array).__module__.partition(".")[0] == "cupy":
        import cupy
        import cupyx.scipy.ndimage as ndimage

        return cupy, ndimage
    import scipy.ndimage as ndimage

    return np, ndimage
