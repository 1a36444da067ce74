"""Bluesky plans for tomography: step and fly scans and their stubs."""

from ._stubs import fly_projections, step_projections, take_darks, take_flats
from ._tomo import PlanArgumentError, check_frame_counts, scan_angles, tomo_fly_scan, tomo_scan

__all__ = ["PlanArgumentError", "check_frame_counts", "fly_projections", "scan_angles", "step_projections",
           "take_darks", "take_flats", "tomo_fly_scan", "tomo_scan"]
