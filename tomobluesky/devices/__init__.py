"""Simulated tomography beamline devices (ophyd) and their frame sources."""

from ._camera import TomoCamera, make_sim_beamline
from ._hdf5 import DARK, DATASETS, FLAT, PROJECTION, DXchangeWriter
from ._motion import FastShutter, RotationStage, SampleStage
from .sim import PhantomSource, ReplaySource, SourceError, TOOTH_ATTRIBUTION, default_tooth_path

__all__ = [
    "DARK", "DATASETS", "FLAT", "PROJECTION", "DXchangeWriter", "FastShutter", "PhantomSource",
    "ReplaySource", "RotationStage", "SampleStage", "SourceError", "TOOTH_ATTRIBUTION", "TomoCamera",
    "default_tooth_path", "make_sim_beamline",
]
