"""A simulated tomography camera that behaves like an area detector with an
HDF5 file writer: frames go to a Data Exchange file, documents carry only
references to them."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus, Status

from ._hdf5 import DARK, FLAT, PROJECTION, CameraKeys, DXchangeWriter, frame_dtype
from ._motion import FastShutter, RotationStage, SampleStage


class TomoCamera(CameraKeys, Device):
    """Camera looking through the sample on ``rotation`` at a frame source.

    What it records follows the beamline's state, as a real camera would:
    shutter closed gives a dark, sample out gives a flat, otherwise a
    projection at the stage's current angle. Step scans ``trigger`` it; fly
    scans ``kickoff`` it with the angles to capture while the stage rotates.

    ``dtype`` is the pixel type of the file: float32 (default) or uint16, as
    real detectors write; sources give float32 counts and the writer converts.
    """

    exposure_time = Cpt(Signal, value=0.0, kind="config")
    image_key = Cpt(Signal, value=PROJECTION, kind="normal")

    def __init__(self, source, rotation: RotationStage, shutter: FastShutter, sample: SampleStage,
                 write_dir: str | Path, *, name: str = "camera", dtype="float32", **kwargs):
        super().__init__(name=name, **kwargs)
        self.dtype = frame_dtype(dtype)
        self.source = source
        self.rotation = rotation
        self.shutter = shutter
        self.sample = sample
        self.write_dir = Path(write_dir)
        self._writer: DXchangeWriter | None = None
        self._fly_status: DeviceStatus | None = None
        self._fly_angles = None
        self.last_file: Path | None = None

    # --- staging: one file per scan -----------------------------------------
    def stage(self):
        path = self.write_dir / f"{time.strftime('%Y%m%d-%H%M%S')}_{uuid.uuid4().hex[:8]}.h5"
        # angles are described as a stream only when a fly scan records them
        self._writer = DXchangeWriter(path, self.frame_shape, self.image_data_key, dtype=self.dtype)
        self.last_file = path
        return super().stage()

    def unstage(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return super().unstage()

    def _require_writer(self) -> DXchangeWriter:
        if self._writer is None:
            raise RuntimeError(f"{self.name} is not staged: no HDF5 file is open to write frames into")
        return self._writer

    # --- one exposure ---------------------------------------------------------
    def _expose(self, angle: float | None = None) -> None:
        writer = self._require_writer()
        exposure = self.exposure_time.get()
        if exposure:
            time.sleep(exposure)
        if not self.shutter.is_open:
            key, frame = DARK, self.source.dark()
        elif not self.sample.in_beam:
            key, frame = FLAT, self.source.flat()
        else:
            angle = self.rotation.position if angle is None else angle
            key, frame = PROJECTION, self.source.projection(angle)
        self.image_key.put(key)
        writer.append(key, frame, theta_deg=angle if key == PROJECTION else None)

    def trigger(self) -> Status:
        status = DeviceStatus(self)
        try:
            self._expose()
        except Exception as err:
            status.set_exception(err)
        else:
            status.set_finished()
        return status

    def describe(self):
        desc = super().describe()
        desc[self.image_data_key] = {
            "source": f"sim:{self.name}",
            "shape": list(self.frame_shape),
            "dtype": "array",
            "dtype_numpy": self.dtype.str,
            "external": "STREAM:",
        }
        return desc

    def collect_asset_docs(self, index: int | None = None):
        if self._writer is not None:
            yield from self._writer.collect_asset_docs(index)

    def get_index(self) -> int:
        return self._writer.count(PROJECTION) if self._writer else 0

    # --- fly scanning ---------------------------------------------------------
    def prepare_fly(self, angles_deg) -> None:
        """Arm the position-compare trigger: one projection at each angle."""
        self._fly_angles = np.asarray(angles_deg, dtype=float)

    def prepare(self, value) -> Status:
        """``bps.prepare(camera, angles)``: arm the position-compare trigger (as ``prepare_fly``)."""
        status = DeviceStatus(self)
        try:
            self.prepare_fly(value)
        except Exception as err:
            status.set_exception(err)
        else:
            status.set_finished()
        return status

    def kickoff(self) -> Status:
        if self._fly_angles is None:
            raise RuntimeError(f"{self.name}: call prepare_fly(angles) before kickoff")
        self._require_writer().theta_key = self.theta_data_key
        self._fly_status = self.rotation.move_through(self._fly_angles, self._expose)
        status = DeviceStatus(self)
        status.set_finished()
        return status

    def complete(self) -> Status:
        if self._fly_status is None:
            raise RuntimeError(f"{self.name}: complete() without kickoff()")
        status, self._fly_status, self._fly_angles = self._fly_status, None, None
        return status

    def describe_collect(self):
        image = self.describe()[self.image_data_key]
        theta = {"source": f"sim:{self.name}:position-compare", "shape": [1], "dtype": "number",
                 "dtype_numpy": "<f8", "external": "STREAM:", "units": "deg"}
        return {self.image_data_key: image, self.theta_data_key: theta}


def make_sim_beamline(source, write_dir: str | Path, *, dtype="float32"):
    """The four devices of a simulated tomography end station, wired together
    (``dtype``: the camera's pixel type in the file, float32 or uint16)."""
    rotation = RotationStage(name="rotation")
    shutter = FastShutter(name="shutter")
    sample = SampleStage(name="sample")
    camera = TomoCamera(source, rotation, shutter, sample, write_dir, name="camera", dtype=dtype)
    return camera, rotation, shutter, sample
