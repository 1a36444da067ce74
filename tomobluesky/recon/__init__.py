"""The reconstruction engine: normalisation, centre of rotation, Fourier FBP,
rings, phase, 360° stitching. NumPy by default, CuPy through the same code (``backend="cupy"``).

This package imports nothing else from tomobluesky.
"""

from ._api import ALGORITHMS, BACKENDS, reconstruct
from ._backend import get_namespace, to_numpy
from ._center import CenterResult, find_center, find_center_sharpness, find_center_vo
from ._filters import FILTERS, ramp_response
from ._interp import interp_linear
from ._metrics import circle_mask, rmse_in_circle, ssim_in_circle
from ._phantom import project, shepp_logan, shepp_logan_3d
from ._phase import alpha_from_delta_beta, paganin, retrieve_phase
from ._preprocess import (MIN_TRANSMISSION, FlatField, apply_flat_field, compact_ranges, flat_field, minus_log,
                          no_beam_columns, no_beam_message, normalize)
from ._rings import remove_rings
from ._stitch import Stitched, stitch_360

__all__ = [
    "ALGORITHMS", "BACKENDS", "MIN_TRANSMISSION", "CenterResult", "FILTERS", "circle_mask", "find_center", "find_center_sharpness",
    "find_center_vo", "get_namespace", "interp_linear", "apply_flat_field", "flat_field", "minus_log", "normalize", "project", "ramp_response",
    "reconstruct", "FlatField", "compact_ranges", "no_beam_columns", "no_beam_message",
    "remove_rings", "retrieve_phase", "paganin", "alpha_from_delta_beta", "rmse_in_circle", "shepp_logan", "shepp_logan_3d", "ssim_in_circle", "stitch_360", "Stitched",
    "to_numpy",
]
