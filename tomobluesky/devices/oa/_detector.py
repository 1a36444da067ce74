"""The simulated tomography camera as an ophyd-async ``StandardDetector``: a frame source behind the
beamline's state, an HDF5 writer that lays frames out as Data Exchange, and a path provider naming
one file per scan. Documents carry StreamResource/StreamDatum references, never pixels."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

from event_model import DataKey
from ophyd_async.core import (DetectorAcquireLogic, DetectorDataLogic, DetectorTriggerLogic, PathInfo,
                              PathProvider, Reference, StandardDetector, StaticPathProvider,
                              StreamableDataProvider, soft_signal_r_and_setter, soft_signal_rw)

from .._hdf5 import DARK, FLAT, PROJECTION, CameraKeys, DXchangeWriter, frame_dtype
from ._motion import FastShutter, RotationStage, SampleStage

logger = logging.getLogger(__name__)


class ScanFilenameProvider:
    """``<date>-<time>_<8 hex digits>``: sortable by time, unique across processes."""

    def __call__(self, datakey_name: str | None = None) -> str:
        return f"{time.strftime('%Y%m%d-%H%M%S')}_{uuid.uuid4().hex[:8]}"


def dxchange_path_provider(directory: str | Path) -> PathProvider:
    """One new Data Exchange file per scan in ``directory`` (made if missing)."""
    return StaticPathProvider(ScanFilenameProvider(), Path(directory).resolve(), create_dir_depth=-1)


class _DXchangeProvider(StreamableDataProvider):
    """Describes the camera's data keys and turns the frames its writer has written into
    StreamResource/StreamDatum documents: one resource per Data Exchange dataset a key lands in."""

    def __init__(self, camera: TomoDetector, writer: DXchangeWriter):
        self.camera, self.writer = camera, writer
        self.collections_written_signal = camera.frames_written

    async def make_datakeys(self, collections_per_event: int) -> dict[str, DataKey]:
        keys = {self.camera.image_data_key: DataKey(
            source=f"sim:{self.camera.name}", shape=list(self.camera.frame_shape), dtype="array",
            dtype_numpy=self.camera.dtype.str, external="STREAM:")}
        if self.camera.flying:  # the position-compare angles are a second stream only in a fly scan
            keys[self.camera.theta_data_key] = DataKey(
                source=f"sim:{self.camera.name}:position-compare", shape=[1], dtype="number",
                dtype_numpy="<f8", external="STREAM:", units="deg")
        return keys

    async def make_stream_docs(self, collections_written: int, collections_per_event: int):
        # every frame on disk that no document describes yet, dataset by dataset (a dark, a flat and a
        # projection are separate datasets of one file, so one running index cannot address them)
        for doc in self.writer.collect_asset_docs():
            yield doc


class _DXchangeDataLogic(DetectorDataLogic):
    """Opens the scan's file where the path provider says, at the detector's first prepare after staging."""

    def __init__(self, camera: TomoDetector, path_provider: PathProvider):
        self.camera, self.path_provider = camera, path_provider

    async def prepare_unbounded(self, datakey_name: str) -> StreamableDataProvider:
        info: PathInfo = self.path_provider(datakey_name)
        path = Path(info.directory_path) / f"{info.filename}.h5"
        writer = self.camera.open_file(path)
        return _DXchangeProvider(self.camera, writer)

    async def stop(self) -> None:
        self.camera.close_file()


class _PositionCompareTriggerLogic(DetectorTriggerLogic):
    """INTERNAL: one exposure per ``trigger`` (step scans). EXTERNAL_EDGE: one exposure at each pulse of
    the rotation stage's position-compare output (fly scans)."""

    def __init__(self, camera: TomoDetector):
        self.camera = camera

    def config_sigs(self):
        return {self.camera.exposure_time}

    async def prepare_internal(self, num: int, livetime: float, deadtime: float):
        self.camera.flying = False
        if livetime:
            await self.camera.exposure_time.set(livetime)

    async def prepare_edge(self, num: int, livetime: float):
        self.camera.flying = True
        if livetime:
            await self.camera.exposure_time.set(livetime)


class _SimAcquireLogic(DetectorAcquireLogic):
    def __init__(self, camera: TomoDetector):
        self.camera = camera
        self._disarm = None

    async def start_acquiring(self):
        if self.camera.flying:  # arm: the stage's pulses expose from now on
            self.camera.require_writer().theta_key = self.camera.theta_data_key
            self._disarm = self.camera.rotation.subscribe_pulses(self.camera.expose)
        else:
            await self.camera.expose()

    async def wait_for_idle(self):
        self._stop_listening()

    async def ensure_stopped(self):
        self._stop_listening()
        self.camera.flying = False

    def _stop_listening(self):
        if self._disarm is not None:
            self._disarm()
            self._disarm = None


class TomoDetector(CameraKeys, StandardDetector):
    """Camera looking through the sample on ``rotation`` at a frame source.

    What it records follows the beamline's state, as a real camera would: shutter closed gives a dark,
    sample out gives a flat, otherwise a projection at the stage's current angle. Step scans
    ``trigger`` it; fly scans ``prepare`` it with ``TriggerInfo(trigger=EXTERNAL_EDGE,
    number_of_events=N)`` and it exposes at each of the stage's position-compare pulses.

    ``dtype`` is the pixel type of the file: float32 (default) or uint16, as real detectors write.
    """

    def __init__(self, source, rotation: RotationStage, shutter: FastShutter, sample: SampleStage,
                 path_provider: PathProvider, *, name: str = "camera", dtype="float32"):
        self.dtype = frame_dtype(dtype)
        self.source = source
        # references, not children: the stages are devices of their own, read and named on their own
        self._stages = Reference((rotation, shutter, sample))
        self.flying = False
        self.last_file: Path | None = None
        self._writer: DXchangeWriter | None = None
        # exposure_time reaches read_configuration through the trigger logic's config_sigs
        self.exposure_time = soft_signal_rw(float, 0.0, units="s")
        self.frames_written, self._set_frames_written = soft_signal_r_and_setter(int, 0)
        super().__init__(name=name)
        self.add_detector_logics(_PositionCompareTriggerLogic(self), _SimAcquireLogic(self),
                                 _DXchangeDataLogic(self, path_provider))

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator or "_")

    @property
    def rotation(self) -> RotationStage:
        return self._stages()[0]

    @property
    def shutter(self) -> FastShutter:
        return self._stages()[1]

    @property
    def sample(self) -> SampleStage:
        return self._stages()[2]

    # --- the file of one scan --------------------------------------------------
    def open_file(self, path: Path) -> DXchangeWriter:
        self.close_file()
        self._writer = DXchangeWriter(path, self.frame_shape, self.image_data_key, dtype=self.dtype)
        self.last_file = path
        self._set_frames_written(0)
        return self._writer

    def close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def require_writer(self) -> DXchangeWriter:
        if self._writer is None:
            raise RuntimeError(f"{self.name} is not prepared: no HDF5 file is open to write frames into")
        return self._writer

    # --- one exposure ------------------------------------------------------------
    async def expose(self, angle: float | None = None) -> None:
        """Take one frame as the beamline's state dictates and write it (``angle``: the pulse's)."""
        writer = self.require_writer()
        exposure = await self.exposure_time.get_value()
        if exposure:
            await asyncio.sleep(exposure)
        if not await self.shutter.is_open():
            key, frame = DARK, self.source.dark()
        elif not await self.sample.in_beam():
            key, frame = FLAT, self.source.flat()
        else:
            angle = await self.rotation.readback.get_value() if angle is None else angle
            key, frame = PROJECTION, self.source.projection(angle)
        if self._writer is not writer:
            # the file closed while this exposure was under way (a failed run unstages the camera before the
            # RunEngine stops the stage): the run's documents are over, so the frame has no place to go
            logger.debug("%s: a pulse arrived after its file closed; frame not written", self.name)
            return
        writer.append(key, frame, theta_deg=angle if key == PROJECTION else None)
        self._set_frames_written(sum(writer.count(k) for k in (PROJECTION, FLAT, DARK)))
