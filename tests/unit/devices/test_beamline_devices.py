"""The simulated end station as a beamline scientist drives it: the rotation stage keeps to its soft
limits, the shutter and the sample stage decide what the camera records, and the fly-scan camera
refuses to start unless it was armed. Every check reads back a position, a state or the frames in
the camera's file."""

import h5py
import numpy as np
import pytest
from bluesky import plan_stubs as bps

from tomobluesky.devices import (DARK, FLAT, PROJECTION, FastShutter, PhantomSource, RotationStage, SampleStage,
                                 make_sim_beamline)


def _frames(path):
    """(projections, flats, darks, theta) as written in the camera's Data Exchange file."""
    with h5py.File(path, "r") as f:
        return (f["/exchange/data"][:], f["/exchange/data_white"][:], f["/exchange/data_dark"][:],
                f["/exchange/theta"][:])


@pytest.fixture
def beamline(tmp_path):
    source = PhantomSource(n_slices=4, n_columns=32, axis_offset=1.5, noise=False)
    camera, rotation, shutter, sample = make_sim_beamline(source, tmp_path)
    return source, camera, rotation, shutter, sample


# --- rotation stage: soft limits ---------------------------------------------------------------------------

@pytest.mark.parametrize("target", [720.5, -721.0, 1e9, float("nan"), float("inf")])
def test_a_move_outside_the_soft_limits_is_refused_and_the_stage_stays(target):
    stage = RotationStage(name="rotation")
    stage.set(30.0).wait(1)
    with pytest.raises(ValueError, match=r"rotation: .* deg is outside the soft limits -720.0..720.0"):
        stage.set(target)
    assert stage.position == 30.0 and stage.setpoint.get() == 30.0


def test_the_limits_are_inclusive_and_can_be_narrowed():
    stage = RotationStage(name="rotation")
    for edge in (-720.0, 720.0):
        assert stage.set(edge).success and stage.position == edge
    stage.set(0.0).wait(1)
    stage.low_limit.put(-10.0)
    stage.high_limit.put(190.0)
    with pytest.raises(ValueError, match=r"200.0 deg is outside the soft limits -10.0..190.0"):
        stage.set(200.0)
    with pytest.raises(ValueError, match="outside the soft limits"):
        stage.set(-10.5)
    assert stage.position == 0.0
    assert stage.set(190.0).success and stage.position == 190.0 and stage.read()["rotation"]["value"] == 190.0
    assert stage.read_configuration()["rotation_high_limit"]["value"] == 190.0  # recorded with each run


def test_a_plan_moving_past_a_limit_fails_and_the_stage_does_not_move(RE):
    stage = RotationStage(name="rotation")
    stage.high_limit.put(180.0)

    def plan():
        yield from bps.mv(stage, 90.0)
        yield from bps.mv(stage, 181.0)
        yield from bps.mv(stage, 0.0)  # never reached

    with pytest.raises(ValueError, match="181.0 deg is outside the soft limits"):
        RE(plan())
    assert stage.position == 90.0


def test_a_fly_motion_through_angles_past_a_limit_is_refused_before_it_starts():
    stage = RotationStage(name="rotation")
    stage.velocity.put(1e6)
    stage.high_limit.put(360.0)
    seen = []
    with pytest.raises(ValueError, match=r"370.0 deg is outside the soft limits -720.0..360.0"):
        stage.move_through([300.0, 330.0, 370.0], seen.append)
    assert seen == [] and stage.position == 0.0
    stage.move_through([300.0, 330.0, 360.0], seen.append).wait(5)  # the edge itself is allowed
    assert seen == [300.0, 330.0, 360.0] and stage.position == 360.0


def test_a_fly_motion_needs_a_positive_velocity():
    stage = RotationStage(name="rotation")
    with pytest.raises(ValueError, match="positive velocity"):
        stage.move_through([0.0, 1.0], lambda angle: None)
    assert stage.position == 0.0


# --- shutter and sample stage ----------------------------------------------------------------------------

def test_the_shutter_starts_closed_and_reads_back_what_was_set():
    shutter = FastShutter(name="shutter")
    assert not shutter.is_open and shutter.read()["shutter"]["value"] == "closed"
    assert shutter.set("open").success
    assert shutter.is_open and shutter.read()["shutter"]["value"] == "open"
    assert shutter.set("closed").success
    assert not shutter.is_open and shutter.state.get() == "closed"


@pytest.mark.parametrize("value", ["Open", "half", "", None, 1, True])
def test_the_shutter_refuses_other_states_and_keeps_its_own(value):
    shutter = FastShutter(name="shutter")
    shutter.set("open").wait(1)
    with pytest.raises(ValueError, match="shutter state must be 'open' or 'closed'"):
        shutter.set(value)
    assert shutter.is_open and shutter.state.get() == "open"


def test_the_sample_stage_moves_in_out_or_to_a_position():
    sample = SampleStage(name="sample")
    assert sample.in_beam and sample.x.get() == 0.0
    sample.set("out").wait(1)
    assert sample.x.get() == 10.0 and not sample.in_beam
    sample.set(0.0).wait(1)
    assert sample.in_beam
    sample.set(0.5).wait(1)  # half a millimetre off is not in the beam
    assert sample.x.get() == 0.5 and not sample.in_beam
    with pytest.raises(ValueError, match="position must be 'in', 'out' or a number"):
        sample.set("sideways")
    assert sample.x.get() == 0.5
    sample.set("in").wait(1)
    assert sample.in_beam and sample.read()["sample_x"]["value"] == 0.0


def test_what_the_camera_records_follows_the_shutter_and_the_sample(beamline):
    source, camera, rotation, shutter, sample = beamline
    camera.stage()
    try:
        rotation.set(40.0).wait(1)
        taken = []
        for shutter_state, sample_position in [("closed", "in"), ("open", "out"), ("open", "in"), ("closed", "out")]:
            shutter.set(shutter_state).wait(1)
            sample.set(sample_position).wait(1)
            camera.trigger().wait(5)
            taken.append(camera.image_key.get())
        rotation.set(130.0).wait(1)
        shutter.set("open").wait(1)
        sample.set("in").wait(1)
        camera.trigger().wait(5)
        taken.append(camera.image_key.get())
    finally:
        camera.unstage()
    assert taken == [DARK, FLAT, PROJECTION, DARK, PROJECTION]
    projections, flats, darks, theta = _frames(camera.last_file)
    assert darks.shape == (2, 4, 32) and flats.shape == (1, 4, 32) and projections.shape == (2, 4, 32)
    np.testing.assert_array_equal(darks, np.stack([source.dark()] * 2))
    np.testing.assert_array_equal(flats[0], source.flat())
    # each projection is the view at the angle the stage was at, and the file says which angle
    np.testing.assert_array_equal(projections[0], source.projection(40.0))
    np.testing.assert_array_equal(projections[1], source.projection(130.0))
    assert theta.tolist() == [40.0, 130.0]
    assert projections.min() < 0.9 * flats.min()  # the sample absorbs: these are not flats


def test_a_camera_that_is_not_staged_reports_a_failed_trigger(beamline):
    _, camera, *_ = beamline
    status = camera.trigger()
    with pytest.raises(RuntimeError, match="camera is not staged: no HDF5 file is open"):
        status.wait(1)
    assert status.done and not status.success
    assert camera.last_file is None and camera.get_index() == 0


def test_each_staging_writes_a_new_file_and_unstaging_closes_it(beamline):
    source, camera, *_ = beamline  # shutter closed: darks
    camera.stage()
    for _ in range(2):
        camera.trigger().wait(5)
    camera.unstage()
    first = camera.last_file
    with pytest.raises(RuntimeError, match="not staged"):
        camera.trigger().wait(1)  # no frame goes into a closed file
    camera.stage()
    camera.trigger().wait(5)
    camera.unstage()
    second = camera.last_file
    assert second != first and first.parent == second.parent == camera.write_dir
    assert len(_frames(first)[2]) == 2 and len(_frames(second)[2]) == 1
    np.testing.assert_array_equal(_frames(second)[2][0], source.dark())


# --- fly-scan camera -------------------------------------------------------------------------------------

def test_kickoff_without_prepare_fly_is_refused_and_nothing_moves_or_is_written(beamline):
    _, camera, rotation, shutter, sample = beamline
    rotation.velocity.put(1e6)
    shutter.set("open").wait(1)
    camera.stage()
    try:
        with pytest.raises(RuntimeError, match=r"camera: call prepare_fly\(angles\) before kickoff"):
            camera.kickoff()
        with pytest.raises(RuntimeError, match=r"camera: complete\(\) without kickoff\(\)"):
            camera.complete()
        assert rotation.position == 0.0 and camera.get_index() == 0
    finally:
        camera.unstage()
    projections, flats, darks, theta = _frames(camera.last_file)
    assert len(projections) == len(flats) == len(darks) == len(theta) == 0


def test_a_fly_scan_writes_one_projection_per_armed_angle_and_disarms(beamline):
    source, camera, rotation, shutter, sample = beamline
    rotation.velocity.put(1e6)
    shutter.set("open").wait(1)
    angles = [0.0, 22.5, 45.0, 67.5, 90.0]
    camera.stage()
    try:
        camera.prepare_fly(angles)
        assert camera.kickoff().success
        camera.complete().wait(10)
        assert rotation.position == 90.0 and camera.get_index() == 5
        # complete() disarms: a second kickoff needs a new prepare_fly
        with pytest.raises(RuntimeError, match="prepare_fly"):
            camera.kickoff()
        docs = list(camera.collect_asset_docs())
    finally:
        camera.unstage()
    projections, flats, darks, theta = _frames(camera.last_file)
    assert theta.tolist() == angles and len(flats) == len(darks) == 0
    for frame, angle in zip(projections, angles):
        np.testing.assert_array_equal(frame, source.projection(angle))
    # the documents point at the five frames and their five angles, not at pixels
    datums = {d["stream_resource"]: d for name, d in docs if name == "stream_datum"}
    resources = {d["uid"]: d["data_key"] for name, d in docs if name == "stream_resource"}
    assert sorted(resources.values()) == ["camera_image", "camera_theta"]
    assert all(d["indices"] == {"start": 0, "stop": 5} for d in datums.values())


def test_a_fly_scan_past_the_soft_limit_is_refused_at_kickoff(beamline):
    _, camera, rotation, shutter, _ = beamline
    rotation.velocity.put(1e6)
    rotation.high_limit.put(180.0)
    shutter.set("open").wait(1)
    camera.stage()
    try:
        camera.prepare_fly([90.0, 150.0, 210.0])
        with pytest.raises(ValueError, match="210.0 deg is outside the soft limits"):
            camera.kickoff()
        assert rotation.position == 0.0 and camera.get_index() == 0
    finally:
        camera.unstage()
