"""Small plan stubs: darks, flats, projections at angles."""

from __future__ import annotations

from bluesky import plan_stubs as bps


def take_darks(camera, rotation, shutter, num: int):
    """Close the shutter and record ``num`` dark frames in the ``dark`` stream."""
    yield from bps.mv(shutter, "closed")
    for _ in range(num):
        yield from bps.trigger_and_read([camera, rotation], name="dark")


def take_flats(camera, rotation, shutter, sample, num: int):
    """Move the sample out, open the shutter, record ``num`` flats in ``flat``."""
    yield from bps.mv(sample, "out")
    yield from bps.mv(shutter, "open")
    for _ in range(num):
        yield from bps.trigger_and_read([camera, rotation], name="flat")
    yield from bps.mv(sample, "in")


def step_projections(camera, rotation, angles):
    """Stop at each angle and record a projection in ``primary``."""
    for angle in angles:
        yield from bps.mv(rotation, float(angle))
        yield from bps.trigger_and_read([camera, rotation], name="primary")


def fly_projections(camera, rotation, angles, velocity: float, *, flush_period: float = 0.2):
    """Rotate continuously at ``velocity`` while the camera captures a
    projection at each angle; frames are collected into ``primary`` as they land."""
    yield from bps.mv(rotation.velocity, velocity)
    yield from bps.mv(rotation, float(angles[0]))
    camera.prepare_fly(angles)
    yield from bps.declare_stream(camera, name="primary", collect=True)
    yield from bps.kickoff(camera, wait=True)
    status = yield from bps.complete(camera, wait=False, group="fly")
    while not status.done:
        yield from bps.collect(camera, name="primary")
        yield from bps.sleep(flush_period)
    yield from bps.wait(group="fly")
    yield from bps.collect(camera, name="primary")
