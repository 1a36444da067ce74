"""The simulated end station in ophyd-async: rotation stage, shutter, sample stage and a
StandardDetector camera writing Data Exchange files (StreamResource/StreamDatum documents)."""

from __future__ import annotations

from pathlib import Path

from ._detector import ScanFilenameProvider, TomoDetector, dxchange_path_provider
from ._motion import FastShutter, RotationStage, RotationTrajectory, SampleStage

__all__ = ["FastShutter", "RotationStage", "RotationTrajectory", "SampleStage", "ScanFilenameProvider",
           "TomoDetector", "dxchange_path_provider", "make_sim_beamline"]


def make_sim_beamline(source, write_dir: str | Path, *, dtype="float32"):
    """The four ophyd-async devices of a simulated tomography end station, wired together: camera,
    rotation, shutter, sample (``dtype``: the camera's pixel type in the file, float32 or uint16).
    Soft signals need no connection: the devices work as soon as they are made."""
    rotation = RotationStage(name="rotation")
    shutter = FastShutter(name="shutter")
    sample = SampleStage(name="sample")
    camera = TomoDetector(source, rotation, shutter, sample, dxchange_path_provider(write_dir), name="camera",
                          dtype=dtype)
    return camera, rotation, shutter, sample
