"""Small plan stubs: darks, flats, projections at angles.

Each takes ``detectors``, a list whose first entry is the tomography camera (a single device is taken
as a list of one, so the older ``camera`` argument still works). The devices may be the ophyd-async
end station (``tomobluesky.devices.oa``) or the older ophyd one (``tomobluesky.devices``).
"""

from __future__ import annotations

from bluesky import plan_stubs as bps
from ophyd_async.core import DetectorTrigger, TriggerInfo
from ophyd_async.core import Device as AsyncDevice


def as_detectors(detectors) -> list:
    """``detectors`` as a list; one device alone is a list of one."""
    return list(detectors) if isinstance(detectors, (list, tuple)) else [detectors]


def take_darks(detectors, rotation, shutter, num: int):
    """Close the shutter and record ``num`` dark frames in the ``dark`` stream."""
    yield from bps.mv(shutter, "closed")
    for _ in range(num):
        yield from bps.trigger_and_read([*as_detectors(detectors), rotation], name="dark")


def take_flats(detectors, rotation, shutter, sample, num: int):
    """Move the sample out, open the shutter, record ``num`` flats in ``flat``, move the sample back."""
    yield from bps.mv(sample, "out")
    yield from bps.mv(shutter, "open")
    for _ in range(num):
        yield from bps.trigger_and_read([*as_detectors(detectors), rotation], name="flat")
    yield from bps.mv(sample, "in")


def step_projections(detectors, rotation, angles, per_step=None):
    """At each angle, ``per_step(detectors, rotation, angle)``: by default bluesky's ``one_1d_step``
    (move, then trigger and read detectors and stage into ``primary``)."""
    per_step = per_step or bps.one_1d_step
    detectors = as_detectors(detectors)
    for angle in angles:
        yield from per_step(detectors, rotation, float(angle))


def _arm_fly(camera, rotation, angles, velocity: float):
    """Arm the stage's trajectory and the camera's position-compare triggering, through ``bps.prepare``."""
    if isinstance(camera, AsyncDevice):
        from ..devices.oa import RotationTrajectory

        # moved by the plan first, so the RunEngine knows to stop the stage if the run is paused or aborted;
        # then the stage takes the trajectory and its velocity, and the camera waits for its pulses
        yield from bps.mv(rotation, float(angles[0]))
        yield from bps.prepare(rotation, RotationTrajectory([float(a) for a in angles], float(velocity)),
                               group="arm")
        yield from bps.prepare(camera, TriggerInfo(trigger=DetectorTrigger.EXTERNAL_EDGE,
                                                   number_of_events=len(angles)), group="arm")
        yield from bps.wait(group="arm")
        return [camera, rotation]
    # the ophyd (v1) end station: the camera drives the stage's motion itself
    yield from bps.mv(rotation.velocity, velocity)
    yield from bps.mv(rotation, float(angles[0]))
    yield from bps.prepare(camera, angles, group="arm", wait=True)
    return [camera]


def fly_projections(detectors, rotation, angles, velocity: float, *, flush_period: float = 0.2):
    """Rotate continuously at ``velocity`` while the camera captures a projection at each angle;
    frames are collected into ``primary`` as they land. Armed with ``bps.prepare``, run with
    ``kickoff``/``complete``."""
    camera, = as_detectors(detectors)
    flyers = yield from _arm_fly(camera, rotation, angles, velocity)
    yield from bps.declare_stream(camera, name="primary", collect=True)
    for flyer in flyers:  # the camera first: it must listen before the stage moves
        yield from bps.kickoff(flyer, wait=True)
    statuses = []
    for flyer in flyers:
        statuses.append((yield from bps.complete(flyer, wait=False, group="fly")))
    while not all(status.done for status in statuses):
        yield from bps.collect(camera, name="primary")
        yield from bps.sleep(flush_period)
    yield from bps.wait(group="fly")
    yield from bps.collect(camera, name="primary")
