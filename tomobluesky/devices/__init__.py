"""Simulated tomography beamline devices and their frame sources.

``tomobluesky.devices.oa`` is the end station in ophyd-async (what the profile uses); the classes here
are the older ophyd (v1) end station, kept for callers of ``make_sim_beamline``.
"""

from ._camera import TomoCamera, make_sim_beamline
from ._hdf5 import DARK, DATASETS, FLAT, PROJECTION, DXchangeWriter
from ._motion import FastShutter, RotationStage, SampleStage
from . import oa
from .sim import PhantomSource, ReplaySource, SourceError, TOOTH_ATTRIBUTION, default_tooth_path

__all__ = [
    "DARK", "DATASETS", "FLAT", "PROJECTION", "DXchangeWriter", "FastShutter", "PhantomSource",
    "ReplaySource", "RotationStage", "SampleStage", "SourceError", "TOOTH_ATTRIBUTION", "TomoCamera",
    "default_tooth_path", "make_sim_beamline", "oa",
]
