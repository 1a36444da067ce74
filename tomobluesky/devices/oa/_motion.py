"""Simulated motion devices of the end station in ophyd-async (soft signals, ideal motors)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ophyd_async.core import AsyncStatus, StandardReadable, soft_signal_rw
from ophyd_async.core import StandardReadableFormat as Format

#: what the rotation stage calls at each angle of a fly trajectory (the camera's exposure)
PulseListener = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RotationTrajectory:
    """What ``bps.prepare(rotation, ...)`` arms for a fly scan: rotate through ``angles`` (deg) at
    ``velocity`` (deg/s), with a position-compare pulse at each angle."""

    angles: Sequence[float]
    velocity: float


class RotationStage(StandardReadable):
    """A rotary stage in degrees, with soft limits and a velocity for fly scans.

    Step moves (``set``) complete at once: the simulation's motor is ideal. A fly motion is armed by
    ``prepare(RotationTrajectory)``, started by ``kickoff`` and waited on by ``complete``; while it runs,
    the stage's position-compare output (``subscribe_pulses``) fires at each angle of the trajectory,
    as a PSO controller triggers a camera.
    """

    def __init__(self, name: str = "", *, low_limit: float = -720.0, high_limit: float = 720.0,
                 max_velocity: float = 1e6):
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.readback = soft_signal_rw(float, 0.0, units="deg")
        self.setpoint = soft_signal_rw(float, 0.0, units="deg")
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.velocity = soft_signal_rw(float, 0.0, units="deg/s")
            self.max_velocity = soft_signal_rw(float, max_velocity, units="deg/s")
            self.low_limit = soft_signal_rw(float, low_limit, units="deg")
            self.high_limit = soft_signal_rw(float, high_limit, units="deg")
        self._trajectory: RotationTrajectory | None = None
        self._motion: asyncio.Task | None = None
        self._halt: asyncio.Event | None = None
        self._halt_success = False
        self._listeners: list[PulseListener] = []
        super().__init__(name=name)

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator or "_")
        self.readback.set_name(name)  # the position is read as the stage's own name, as ophyd motors are

    async def _check_within_limits(self, angles: Sequence[float]) -> None:
        lo, hi = await self.low_limit.get_value(), await self.high_limit.get_value()
        for angle in angles:  # the whole path, before anything moves
            if not lo <= float(angle) <= hi:
                raise ValueError(f"{self.name}: {float(angle)} deg is outside the soft limits {lo}..{hi}")

    @AsyncStatus.wrap
    async def set(self, value: float) -> None:
        await self._check_within_limits([value])
        await self.setpoint.set(float(value))
        await self.readback.set(float(value))

    @AsyncStatus.wrap
    async def prepare(self, value: RotationTrajectory) -> None:
        """Check the trajectory against the limits, move to its first angle, set its velocity."""
        angles = [float(a) for a in value.angles]
        if not angles:
            raise ValueError(f"{self.name}: a fly trajectory needs at least one angle")
        top = await self.max_velocity.get_value()
        if not 0 < value.velocity <= top:
            raise ValueError(f"{self.name}: fly velocity must be in (0, {top}] deg/s, not {value.velocity!r}")
        await self._check_within_limits(angles)
        await self.set(angles[0])
        await self.velocity.set(float(value.velocity))
        self._trajectory = RotationTrajectory(angles, float(value.velocity))

    def subscribe_pulses(self, listener: PulseListener) -> Callable[[], None]:
        """Call ``listener(angle)`` at each position-compare pulse; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    @AsyncStatus.wrap
    async def kickoff(self) -> None:
        if self._trajectory is None:
            raise RuntimeError(f"{self.name}: prepare a RotationTrajectory before kickoff")
        if self._motion is not None and not self._motion.done():
            raise RuntimeError(f"{self.name}: kickoff() while a fly motion is running")
        trajectory, self._trajectory = self._trajectory, None
        self._halt, self._halt_success = asyncio.Event(), False
        self._motion = asyncio.create_task(self._fly(trajectory))

    async def _fly(self, trajectory: RotationTrajectory) -> bool:
        """Pass through the angles on time; False when stopped on the way."""
        loop = asyncio.get_running_loop()
        t0, a0 = loop.time(), trajectory.angles[0]
        for angle in trajectory.angles:
            delay = t0 + abs(angle - a0) / trajectory.velocity - loop.time()
            try:  # a stop() between two angles ends the wait at once
                await asyncio.wait_for(self._halt.wait(), max(delay, 0.0))
            except asyncio.TimeoutError:
                pass
            if self._halt.is_set():
                return False
            await self.readback.set(angle)
            for listener in list(self._listeners):
                await listener(angle)
        return True

    @AsyncStatus.wrap
    async def complete(self) -> None:
        if self._motion is None:
            raise RuntimeError(f"{self.name}: complete() without kickoff()")
        motion = self._motion  # kept until the next kickoff: stop() must find a motion that is being completed
        if not await motion and not self._halt_success:
            raise RuntimeError(f"{self.name}: stopped during a fly scan")

    async def stop(self, success: bool = False) -> None:
        """Halt a fly motion between two angles: no pulse (no frame) after this returns (a RunEngine
        pausing or aborting calls it). ``complete`` then fails, unless the stop was called a success."""
        motion = self._motion
        if motion is not None and not motion.done():
            self._halt_success = success
            self._halt.set()
            await asyncio.wait([motion])


class FastShutter(StandardReadable):
    """A fast shutter: ``set("open")`` / ``set("closed")``."""

    def __init__(self, name: str = ""):
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.state = soft_signal_rw(str, "closed")
        super().__init__(name=name)

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator or "_")
        self.state.set_name(name)

    @AsyncStatus.wrap
    async def set(self, value: str) -> None:
        if value not in ("open", "closed"):
            raise ValueError(f"{self.name}: shutter state must be 'open' or 'closed', not {value!r}")
        await self.state.set(value)

    async def is_open(self) -> bool:
        return await self.state.get_value() == "open"


class SampleStage(StandardReadable):
    """A linear stage (mm) that moves the sample into the beam or out of it (for flats)."""

    def __init__(self, name: str = "", *, in_position: float = 0.0, out_position: float = 10.0):
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.x = soft_signal_rw(float, in_position, units="mm")
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.in_position = soft_signal_rw(float, in_position, units="mm")
            self.out_position = soft_signal_rw(float, out_position, units="mm")
        super().__init__(name=name)

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator or "_")

    @AsyncStatus.wrap
    async def set(self, value) -> None:
        """Move to ``"in"``, ``"out"`` or a position in mm."""
        if value in ("in", "out"):
            value = await (self.in_position if value == "in" else self.out_position).get_value()
        elif isinstance(value, str) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.name}: position must be 'in', 'out' or a number, not {value!r}")
        await self.x.set(float(value))

    async def in_beam(self) -> bool:
        x, home = await self.x.get_value(), await self.in_position.get_value()
        return abs(x - home) < 1e-6
