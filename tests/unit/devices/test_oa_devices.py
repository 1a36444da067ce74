"""The ophyd-async end station (``tomobluesky.devices.oa``) driven as a RunEngine drives it: the rotation
stage keeps to its soft limits, the shutter and the sample stage decide what the camera records, a fly
scan is armed with ``bps.prepare`` and run with kickoff/complete. Every check reads back a position, a
state, the frames in the camera's Data Exchange file or the documents that point at them."""

import h5py
import numpy as np
import pytest
from bluesky import plan_stubs as bps
from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.core import DetectorTrigger, TriggerInfo

from tomobluesky.devices import PhantomSource
from tomobluesky.devices.oa import RotationStage, RotationTrajectory, SampleStage, make_sim_beamline


def _frames(path):
    """(projections, flats, darks, theta) as written in the camera's Data Exchange file."""
    with h5py.File(path, "r") as f:
        return (f["/exchange/data"][:], f["/exchange/data_white"][:], f["/exchange/data_dark"][:],
                f["/exchange/theta"][:])


def _run(make):
    """Await ``make()`` in the RunEngine's event loop (the ``RE`` fixture makes one): statuses are
    made inside the loop, as the RunEngine makes them."""
    async def go():
        return await make()

    return call_in_bluesky_event_loop(go())


@pytest.fixture
def beamline(RE, tmp_path):
    source = PhantomSource(n_slices=4, n_columns=32, axis_offset=1.5, noise=False)
    return (source, *make_sim_beamline(source, tmp_path))


# --- rotation stage ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [720.5, -721.0, 1e9, float("nan"), float("inf")])
def test_a_move_outside_the_soft_limits_is_refused_and_the_stage_stays(RE, target):
    stage = RotationStage(name="rotation")
    _run(lambda: stage.set(30.0))
    with pytest.raises(ValueError, match=r"rotation: .* deg is outside the soft limits -720.0..720.0"):
        _run(lambda: stage.set(target))
    assert _run(lambda: stage.readback.get_value()) == 30.0 and _run(lambda: stage.setpoint.get_value()) == 30.0


def test_limits_are_inclusive_narrowable_and_recorded_with_the_run(RE):
    stage = RotationStage(name="rotation")
    _run(lambda: stage.high_limit.set(190.0))
    _run(lambda: stage.set(190.0))
    with pytest.raises(ValueError, match=r"190.5 deg is outside the soft limits -720.0..190.0"):
        _run(lambda: stage.set(190.5))
    assert _run(lambda: stage.read())["rotation"]["value"] == 190.0  # read under the stage's own name
    config = _run(lambda: stage.read_configuration())
    assert config["rotation_high_limit"]["value"] == 190.0 and config["rotation_velocity"]["value"] == 0.0


@pytest.mark.parametrize("velocity, message", [(0.0, "velocity must be in"), (-5.0, "velocity must be in"),
                                               (2e6, r"velocity must be in \(0, 1000000.0\]")])
def test_a_trajectory_with_a_bad_velocity_is_refused_and_nothing_moves(RE, velocity, message):
    stage = RotationStage(name="rotation")
    with pytest.raises(ValueError, match=message):
        _run(lambda: stage.prepare(RotationTrajectory([10.0, 20.0], velocity)))
    assert _run(lambda: stage.readback.get_value()) == 0.0
    with pytest.raises(RuntimeError, match="prepare a RotationTrajectory before kickoff"):
        _run(lambda: stage.kickoff())


def test_a_trajectory_past_a_limit_is_refused_before_the_stage_moves(RE):
    stage = RotationStage(name="rotation")
    _run(lambda: stage.high_limit.set(180.0))
    with pytest.raises(ValueError, match="210.0 deg is outside the soft limits"):
        _run(lambda: stage.prepare(RotationTrajectory([90.0, 150.0, 210.0], 100.0)))
    assert _run(lambda: stage.readback.get_value()) == 0.0


def test_a_fly_motion_pulses_at_each_angle_and_stop_halts_it(RE):
    stage = RotationStage(name="rotation")
    pulses = []

    async def listener(angle):
        pulses.append(angle)

    _run(lambda: stage.prepare(RotationTrajectory([0.0, 1.0, 2.0], 1e6)))
    unsubscribe = stage.subscribe_pulses(listener)
    _run(lambda: stage.kickoff())
    _run(lambda: stage.complete())
    assert pulses == [0.0, 1.0, 2.0] and _run(lambda: stage.readback.get_value()) == 2.0
    # slowly now (10 deg/s over 0..90): stopped early, the motion ends where it was and complete() fails
    _run(lambda: stage.prepare(RotationTrajectory(list(np.arange(0.0, 91.0, 1.0)), 10.0)))
    _run(lambda: stage.kickoff())
    _run(lambda: stage.stop())
    with pytest.raises(RuntimeError, match="rotation: stopped during a fly scan"):
        _run(lambda: stage.complete())
    assert len(pulses) < 3 + 91 and _run(lambda: stage.readback.get_value()) < 90.0
    unsubscribe()
    _run(lambda: stage.prepare(RotationTrajectory([5.0], 1e6)))
    _run(lambda: stage.kickoff())
    _run(lambda: stage.complete())
    assert pulses[-1] != 5.0  # no longer listening


# --- shutter and sample stage -----------------------------------------------------------------------------

def test_shutter_and_sample_refuse_unknown_positions(RE, beamline):
    _, _, _, shutter, sample = beamline
    with pytest.raises(ValueError, match="shutter state must be 'open' or 'closed', not 'ajar'"):
        _run(lambda: shutter.set("ajar"))
    with pytest.raises(ValueError, match="position must be 'in', 'out' or a number, not 'up'"):
        _run(lambda: sample.set("up"))
    _run(lambda: sample.set("out"))
    assert _run(lambda: sample.read())["sample_x"]["value"] == 10.0 and not _run(lambda: sample.in_beam())
    _run(lambda: sample.set(0.5))
    assert not _run(lambda: sample.in_beam())
    _run(lambda: sample.set("in"))
    assert _run(lambda: sample.in_beam()) and _run(lambda: shutter.read())["shutter"]["value"] == "closed"
    assert isinstance(sample, SampleStage)


# --- camera -----------------------------------------------------------------------------------------------

def test_what_the_camera_records_follows_the_shutter_and_the_sample(RE, beamline):
    source, camera, rotation, shutter, sample = beamline

    def plan():
        yield from bps.stage(camera)
        yield from bps.mv(rotation, 40.0)
        for shutter_state, sample_position in [("closed", "in"), ("open", "out"), ("open", "in"), ("closed", "out")]:
            yield from bps.mv(shutter, shutter_state, sample, sample_position)
            yield from bps.trigger(camera, wait=True)
        yield from bps.mv(rotation, 130.0, shutter, "open", sample, "in")
        yield from bps.trigger(camera, wait=True)
        yield from bps.unstage(camera)

    RE(plan())
    projections, flats, darks, theta = _frames(camera.last_file)
    assert darks.shape == (2, 4, 32) and flats.shape == (1, 4, 32) and projections.shape == (2, 4, 32)
    np.testing.assert_array_equal(darks, np.stack([source.dark()] * 2))
    np.testing.assert_array_equal(flats[0], source.flat())
    np.testing.assert_array_equal(projections[0], source.projection(40.0))
    np.testing.assert_array_equal(projections[1], source.projection(130.0))
    assert theta.tolist() == [40.0, 130.0]
    assert projections.min() < 0.9 * flats.min()  # the sample absorbs: these are not flats


def test_each_staging_writes_a_new_file_named_by_the_path_provider(RE, beamline, tmp_path):
    source, camera, *_ = beamline  # shutter closed: darks
    for n in (2, 1):
        RE(bps.stage(camera))
        for _ in range(n):
            RE(bps.trigger(camera, wait=True))
        RE(bps.unstage(camera))
        if n == 2:
            first = camera.last_file
    second = camera.last_file
    assert second != first and first.parent == second.parent == tmp_path.resolve()
    assert first.name.endswith(".h5") and len(first.stem.split("_")[1]) == 8
    assert len(_frames(first)[2]) == 2 and len(_frames(second)[2]) == 1
    np.testing.assert_array_equal(_frames(second)[2][0], source.dark())


def test_uint16_frames_are_written_as_uint16(RE, tmp_path):
    source = PhantomSource(n_slices=2, n_columns=8, noise=False)
    camera, *_ = make_sim_beamline(source, tmp_path, dtype="uint16")
    RE(bps.stage(camera))
    RE(bps.trigger(camera, wait=True))
    RE(bps.unstage(camera))
    with h5py.File(camera.last_file) as f:
        dark = f["/exchange/data_dark"][0]
    assert dark.dtype == np.uint16
    np.testing.assert_array_equal(dark, np.rint(np.clip(source.dark(), 0, 65535)).astype(np.uint16))
    with pytest.raises(ValueError, match="float32 or uint16"):
        make_sim_beamline(source, tmp_path, dtype="int8")


def test_a_fly_scan_is_armed_by_prepare_and_writes_one_projection_per_pulse(RE, beamline):
    source, camera, rotation, shutter, sample = beamline
    angles = [0.0, 22.5, 45.0, 67.5, 90.0]
    docs = []

    def plan():
        yield from bps.open_run()
        yield from bps.stage(camera)
        yield from bps.mv(shutter, "open")
        yield from bps.prepare(rotation, RotationTrajectory(angles, 1e5), wait=True)
        yield from bps.prepare(camera, TriggerInfo(trigger=DetectorTrigger.EXTERNAL_EDGE, number_of_events=5),
                               wait=True)
        yield from bps.declare_stream(camera, name="primary", collect=True)
        yield from bps.kickoff(camera, wait=True)
        yield from bps.kickoff(rotation, wait=True)
        yield from bps.complete(rotation, wait=True)
        yield from bps.complete(camera, wait=True)
        yield from bps.collect(camera, name="primary")
        yield from bps.unstage(camera)
        yield from bps.close_run()

    RE(plan(), lambda name, doc: docs.append((name, doc)))
    projections, flats, darks, theta = _frames(camera.last_file)
    assert theta.tolist() == angles and len(flats) == len(darks) == 0
    for frame, angle in zip(projections, angles):
        np.testing.assert_array_equal(frame, source.projection(angle))
    resources = {d["uid"]: d for name, d in docs if name == "stream_resource"}
    assert sorted((r["data_key"], r["parameters"]["dataset"]) for r in resources.values()) == [
        ("camera_image", "/exchange/data"), ("camera_theta", "/exchange/theta")]
    assert all(r["uri"] == f"file://localhost{camera.last_file}" for r in resources.values())
    datums = [d for name, d in docs if name == "stream_datum"]
    assert len(datums) == 2 and all(d["indices"] == {"start": 0, "stop": 5} for d in datums)
    assert docs[-1][1]["exit_status"] == "success"


def test_kickoff_without_prepare_is_refused_and_nothing_is_written(RE, beamline):
    _, camera, rotation, *_ = beamline

    _run(lambda: camera.stage())
    with pytest.raises(RuntimeError, match="Prepare not called"):
        _run(lambda: camera.kickoff())
    _run(lambda: camera.unstage())
    assert camera.last_file is None and _run(lambda: rotation.readback.get_value()) == 0.0


def test_a_failing_fly_scan_stops_the_stage_and_writes_nothing_after_its_file_closes(RE, beamline):
    """A callback fails at the first projection of a slow fly scan: the RunEngine ends the run, stops the
    stage it moved and unstages the camera; no pulse and no frame follow."""
    from tomobluesky.plans import tomo_fly_scan

    source, camera, rotation, shutter, sample = beamline
    docs = []

    def fail_at_first_projection(name, doc):
        docs.append((name, doc))
        if name == "stream_datum" and doc["indices"]["start"] == 0 and len(docs) > 2 and any(
                n == "descriptor" and d["name"] == "primary" and d["uid"] == doc["descriptor"] for n, d in docs):
            raise RuntimeError("analysis callback failed")

    # 0..180 deg at 20 deg/s: 9 s of rotation if nothing stopped it
    with pytest.raises(RuntimeError, match="analysis callback failed"):
        RE(tomo_fly_scan([camera], rotation, shutter, sample, num_projections=90, num_darks=1, num_flats=1,
                         velocity=20.0), fail_at_first_projection)
    assert docs[-1][0] == "stop" and docs[-1][1]["exit_status"] == "fail"
    projections, *_ = _frames(camera.last_file)  # closed by unstage: readable without SWMR
    angle = _run(lambda: rotation.readback.get_value())
    taken = len(projections)
    assert 0 < taken < 90 and angle < 178.0 and rotation._motion.done()
    call_in_bluesky_event_loop(__import__("asyncio").sleep(0.5))
    assert _run(lambda: rotation.readback.get_value()) == angle  # the stage stays where it stopped
    assert len(_frames(camera.last_file)[0]) == taken


def test_a_pulse_whose_file_closes_during_the_exposure_writes_nothing_and_raises_nothing(RE, beamline, tmp_path):
    """A failed fly scan unstages the camera (closing its file) before the RunEngine stops the stage, so
    an exposure under way can outlive its file: the frame is dropped with the run, not appended to a
    closed dataset (which failed the stage's status with an HDF5 error instead of the run's own)."""
    import asyncio

    source, camera, rotation, shutter, sample = beamline
    _run(lambda: shutter.set("open"))
    camera.open_file(tmp_path / "race.h5")
    _run(lambda: camera.expose(5.0))  # one frame written while the file is open
    _run(lambda: camera.exposure_time.set(0.2))

    async def close_during_exposure():
        exposure = asyncio.ensure_future(camera.expose(6.0))
        await asyncio.sleep(0.05)
        camera.close_file()
        await exposure

    _run(close_during_exposure)
    projections, _, _, theta = _frames(tmp_path / "race.h5")
    assert len(projections) == 1 and list(theta) == [5.0]
