"""Simulated motion devices of a tomography end station (ophyd, soft signals)."""

from __future__ import annotations

import threading
import time

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus


class RotationStage(Device):
    """A rotary stage in degrees.

    ``velocity`` (deg/s) is used by fly scans; with ``velocity`` 0 a step move
    completes at once (the simulation's motors are ideal).
    """

    readback = Cpt(Signal, value=0.0, kind="hinted")
    setpoint = Cpt(Signal, value=0.0)
    velocity = Cpt(Signal, value=0.0, kind="config")
    low_limit = Cpt(Signal, value=-720.0, kind="config")
    high_limit = Cpt(Signal, value=720.0, kind="config")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.readback.name = self.name
        self._halt = threading.Event()
        self._halt_success = True
        self._motion: threading.Thread | None = None

    @property
    def position(self) -> float:
        return self.readback.get()

    def set(self, value: float) -> DeviceStatus:
        lo, hi = self.low_limit.get(), self.high_limit.get()
        if not lo <= value <= hi:
            raise ValueError(f"{self.name}: {value} deg is outside the soft limits {lo}..{hi}")
        self.setpoint.put(value)
        self.readback.put(value)
        status = DeviceStatus(self)
        status.set_finished()
        return status

    def move_through(self, angles, on_angle) -> DeviceStatus:
        """Rotate continuously through ``angles`` at ``velocity``, calling
        ``on_angle(angle)`` as the stage passes each one (a position-compare
        trigger, as a PSO controller gives a camera)."""
        velocity = float(self.velocity.get())
        if velocity <= 0:
            raise ValueError(f"{self.name}: set a positive velocity (deg/s) before a fly scan")
        lo, hi = self.low_limit.get(), self.high_limit.get()
        for angle in angles:  # the whole path, before the stage moves: as set() checks its target
            if not lo <= float(angle) <= hi:
                raise ValueError(f"{self.name}: {float(angle)} deg is outside the soft limits {lo}..{hi}")
        status = DeviceStatus(self)
        self._halt.clear()

        def run():
            try:
                t0, a0 = time.monotonic(), float(angles[0])
                for angle in angles:
                    delay = t0 + abs(float(angle) - a0) / velocity - time.monotonic()
                    if self._halt.wait(max(delay, 0.0)):  # stop() between two angles
                        break
                    self.readback.put(float(angle))
                    on_angle(float(angle))
                if self._halt.is_set() and not self._halt_success:
                    raise RuntimeError(f"{self.name}: stopped during a fly scan")
                status.set_finished()
            except Exception as err:  # the status carries the error to the plan
                status.set_exception(err)

        self._motion = threading.Thread(target=run, name=f"{self.name}-fly", daemon=True)
        self._motion.start()
        return status

    def stop(self, *, success: bool = False):
        """Halt a fly motion between two angles and wait for it to end, so no frame is taken afterwards
        (a RunEngine pausing or aborting calls this before the camera closes its file)."""
        self._halt_success = success
        self._halt.set()
        motion = self._motion
        if motion is not None and motion is not threading.current_thread():
            motion.join(timeout=10)
        super().stop(success=success)


class FastShutter(Device):
    """A fast shutter: ``set("open")`` / ``set("closed")``."""

    state = Cpt(Signal, value="closed", kind="normal")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.state.name = self.name

    @property
    def is_open(self) -> bool:
        return self.state.get() == "open"

    def set(self, value: str) -> DeviceStatus:
        if value not in ("open", "closed"):
            raise ValueError(f"{self.name}: shutter state must be 'open' or 'closed', not {value!r}")
        self.state.put(value)
        status = DeviceStatus(self)
        status.set_finished()
        return status


class SampleStage(Device):
    """A linear stage that moves the sample into the beam or out of it (for flats)."""

    x = Cpt(Signal, value=0.0, kind="hinted")
    in_position = Cpt(Signal, value=0.0, kind="config")
    out_position = Cpt(Signal, value=10.0, kind="config")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.x.name = f"{self.name}_x"

    @property
    def in_beam(self) -> bool:
        return abs(self.x.get() - self.in_position.get()) < 1e-6

    def set(self, value) -> DeviceStatus:
        """Move to ``"in"``, ``"out"`` or a position in mm."""
        target = {"in": self.in_position.get(), "out": self.out_position.get()}.get(value, value)
        if isinstance(target, str):
            raise ValueError(f"{self.name}: position must be 'in', 'out' or a number, not {value!r}")
        self.x.put(float(target))
        status = DeviceStatus(self)
        status.set_finished()
        return status
