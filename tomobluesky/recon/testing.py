"""Test objects and quality metrics, shipped for users' and other packages' tests.

Phantoms (``shepp_logan``, ``shepp_logan_3d``), projectors (``project`` for
any volume, ``project_shepp_logan`` for the exact sinograms of the phantom,
``project_disk`` for those of a uniform disk)
and metrics inside the reconstruction circle after a least-squares gain fit
(``rmse_in_circle``, ``ssim_in_circle``).
"""

from ._metrics import circle_mask, rmse_in_circle, ssim_in_circle
from ._phantom import project, project_disk, project_shepp_logan, shepp_logan, shepp_logan_3d

__all__ = ["circle_mask", "project", "project_disk", "project_shepp_logan", "rmse_in_circle", "shepp_logan", "shepp_logan_3d",
           "ssim_in_circle"]
