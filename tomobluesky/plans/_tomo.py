"""Tomography scans: darks, flats, then projections over 180° or 360°."""

from __future__ import annotations

import numpy as np
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp

from ..limits import MAX_DARKS_FLATS, MAX_PROJECTIONS
from ..schema import ReconSettings, TomoScanMetadata
from ._stubs import as_detectors, fly_projections, step_projections, take_darks, take_flats


class PlanArgumentError(ValueError):
    """A scan was asked for with arguments that cannot make a tomogram."""


def scan_angles(start: float, num_projections: int, angular_range: float = 180.0, *, endpoint: bool = False):
    """The rotation angles in degrees. A 180° scan stops one step short of
    180° by default (the last view would repeat the first, mirrored)."""
    if angular_range not in (180.0, 360.0):
        raise PlanArgumentError(f"angular_range must be 180 or 360 degrees, not {angular_range}")
    check_frame_counts(num_projections)
    return start + np.linspace(0.0, angular_range, int(num_projections), endpoint=endpoint)


def _is_integer(n) -> bool:
    try:
        return int(n) == n
    except (TypeError, ValueError, OverflowError):
        return False


def _check_count(label, n, low, high):
    if not _is_integer(n) or not low <= n <= high:
        raise PlanArgumentError(f"{label} must be an integer in {low}..{high}, not {n!r}")


def check_frame_counts(num_projections: int, num_darks: int = 1, num_flats: int = 1):
    """Refuse frame counts that cannot make a tomogram (fewer than 2 projections, no dark or flat to
    normalise with) or that are surely typos, whose scan would fill the disk before anyone noticed
    (see ``tomobluesky.limits``). Plans call it before the run opens: nothing moves, nothing is written."""
    _check_count("num_projections", num_projections, 2, MAX_PROJECTIONS)
    for label, n in (("num_darks", num_darks), ("num_flats", num_flats)):
        _check_count(label, n, 1, MAX_DARKS_FLATS)


def _start_metadata(plan_name, scan_type, detectors, rotation, angles, num_darks, num_flats, plan_args, recon,
                    md):
    camera = detectors[0]
    source_md = camera.source.metadata() if hasattr(camera.source, "metadata") else {}
    meta = TomoScanMetadata(
        scan_type=scan_type,
        theta=[float(a) for a in angles],
        num_projections=len(angles),
        num_darks=num_darks,
        num_flats=num_flats,
        detector_shape=camera.frame_shape,
        pixel_size=source_md.get("pixel_size"),
        energy=source_md.get("energy"),
        sample_name=source_md.get("sample_name", ""),
        camera=camera.name,
        rotation=rotation.name,
        recon=ReconSettings(**recon) if isinstance(recon, dict) else recon,
        pipeline=(md or {}).get("pipeline"),  # checked against the installed steps before anything moves
    ).model_dump(mode="json", exclude_none=True)
    meta.update(
        plan_name=plan_name,
        plan_args=plan_args,
        detectors=[d.name for d in detectors],
        motors=[rotation.name],
        num_points=len(angles) + num_darks + num_flats,
        data_source=source_md.get("source"),
        hints={"dimensions": [([rotation.name], "primary")]},
    )
    if source_md.get("attribution"):
        meta["data_attribution"] = source_md["attribution"]
    meta.update(md or {})
    return meta


def _check_source_range(camera, angles):
    lo, hi = getattr(camera.source, "angle_range_deg", (-np.inf, np.inf))
    if angles.min() < lo or angles.max() > hi:
        raise PlanArgumentError(
            f"angles {angles.min():.2f}..{angles.max():.2f} deg are outside what the frame source covers "
            f"({lo:.2f}..{hi:.2f} deg)"
        )


def _check_detectors(detectors) -> list:
    """The detectors as a list whose first entry is a tomography camera (it has a frame source)."""
    detectors = as_detectors(detectors)
    if not detectors or not all(hasattr(detectors[0], name) for name in ("source", "frame_shape")):
        raise PlanArgumentError("detectors must be a list whose first entry is the tomography camera "
                                f"(a device with a frame source), not {detectors!r}")
    return detectors


def _check_rotation_limits(rotation, angles):
    """Refuse a scan the stage cannot finish before its run opens, rather than after darks and flats
    (a plan: the limits are read through the RunEngine, as ophyd-async signals must be)."""
    limits = [getattr(rotation, name, None) for name in ("low_limit", "high_limit")]
    if any(signal is None for signal in limits):
        return  # a stage without soft limits
    lo = float((yield from bps.rd(limits[0])))
    hi = float((yield from bps.rd(limits[1])))
    if angles.min() < lo or angles.max() > hi:
        raise PlanArgumentError(
            f"angles {angles.min():.2f}..{angles.max():.2f} deg are outside the soft limits of {rotation.name} "
            f"({lo:.2f}..{hi:.2f} deg)"
        )


def _tomography(plan_name, scan_type, detectors, rotation, shutter, sample, projections, *, num_projections,
                start, angular_range, num_darks, num_flats, recon, md, **extra_args):
    """Validate, describe, then darks → flats → ``projections(angles)`` → shutter closed,
    in one run that stages the detectors. The scan types differ only in how projections are taken."""
    detectors = _check_detectors(detectors)
    check_frame_counts(num_projections, num_darks, num_flats)
    angles = scan_angles(start, num_projections, angular_range)
    _check_source_range(detectors[0], angles)
    yield from _check_rotation_limits(rotation, angles)
    plan_args = dict(detectors=[repr(d) for d in detectors], rotation=repr(rotation), shutter=repr(shutter),
                     sample=repr(sample), num_projections=num_projections, start=start,
                     angular_range=angular_range, num_darks=num_darks, num_flats=num_flats, **extra_args)
    meta = _start_metadata(plan_name, scan_type, detectors, rotation, angles, num_darks, num_flats, plan_args,
                           recon, md)

    # staged inside the run: unstage closes the detector file before the stop document, so whoever
    # reconstructs at the stop reads a finished file (and, in this process, reads only the rows it asks for:
    # HDF5 caches whole chunks of a file open for SWMR writing)
    @bpp.run_decorator(md=meta)
    @bpp.stage_decorator(detectors)
    def inner():
        yield from take_darks(detectors, rotation, shutter, num_darks)
        yield from take_flats(detectors, rotation, shutter, sample, num_flats)
        yield from projections(detectors, angles)
        yield from bps.mv(shutter, "closed")

    return (yield from inner())


def tomo_scan(detectors, rotation, shutter, sample, *, num_projections: int = 181, start: float = 0.0,
              angular_range: float = 180.0, num_darks: int = 10, num_flats: int = 10, per_step=None,
              recon: dict | None = None, md: dict | None = None):
    """Step scan: darks, flats, then stop at each angle for a projection.

    ``detectors``: a list whose first entry is the tomography camera; the others (a beam monitor, say)
    are read beside it at every frame. A camera alone is taken as a list of one.
    ``per_step(detectors, rotation, angle)``: what happens at each angle, by default bluesky's
    ``one_1d_step`` (move, then trigger and read detectors and stage).
    Streams: ``dark``, ``flat``, ``primary`` (projections, with the angle).
    ``recon`` carries per-scan reconstruction settings (see ``ReconSettings``).
    """
    return (yield from _tomography(
        "tomo_scan", "step", detectors, rotation, shutter, sample,
        lambda dets, angles: step_projections(dets, rotation, angles, per_step),
        num_projections=num_projections, start=start, angular_range=angular_range, num_darks=num_darks,
        num_flats=num_flats, recon=recon, md=md, **({"per_step": repr(per_step)} if per_step else {})))


def tomo_fly_scan(detectors, rotation, shutter, sample, *, num_projections: int = 181, start: float = 0.0,
                  angular_range: float = 180.0, velocity: float = 90.0, num_darks: int = 10,
                  num_flats: int = 10, recon: dict | None = None, md: dict | None = None):
    """Fly scan: darks, flats, then one continuous rotation at ``velocity``
    (deg/s) with a projection captured at each angle.

    ``detectors``: a list of one camera (or the camera alone); flying more than one is not supported.
    The stage's trajectory and the camera's position-compare triggering are armed with ``bps.prepare``,
    run with ``kickoff``/``complete``. The angles of the projections are recorded by the camera in the
    same HDF5 file (data key ``<camera>_theta``).
    """
    if not velocity > 0:
        raise PlanArgumentError(f"velocity must be positive (deg/s), not {velocity!r}")
    detectors = _check_detectors(detectors)
    if len(detectors) != 1:
        raise PlanArgumentError(f"tomo_fly_scan flies one camera, not {len(detectors)} detectors")
    return (yield from _tomography(
        "tomo_fly_scan", "fly", detectors, rotation, shutter, sample,
        lambda dets, angles: fly_projections(dets, rotation, angles, velocity),
        num_projections=num_projections, start=start, angular_range=angular_range, num_darks=num_darks,
        num_flats=num_flats, recon=recon, md=md, velocity=velocity))
