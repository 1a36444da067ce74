"""stop() halts a fly motion at once and for good: no frame after it returns (the camera's file may close next)."""

import time

import pytest

from tomobluesky.devices._motion import RotationStage


@pytest.mark.parametrize("success", [True, False])
def test_stop_ends_a_fly_motion_between_two_angles(success):
    stage = RotationStage(name="rotation")
    stage.velocity.put(100.0)  # 0.01 s per degree: 10,000 degrees would take 100 s
    stage.high_limit.put(10_000.0)  # a stage without a cable to wind up (the default limit is 720)
    seen = []
    status = stage.move_through(list(range(10_000)), seen.append)
    time.sleep(0.2)
    stage.stop(success=success)
    taken = len(seen)
    time.sleep(0.2)
    assert 0 < taken < 10_000 and len(seen) == taken  # nothing after stop() returned
    assert status.done and status.success is success


def test_a_finished_motion_can_be_stopped_and_flown_again():
    stage = RotationStage(name="rotation")
    stage.velocity.put(1e6)
    first = stage.move_through([0.0, 1.0, 2.0], lambda angle: None)
    first.wait(5)
    stage.stop(success=True)  # the RunEngine stops every moved device at the end of a run
    seen = []
    stage.move_through([0.0, 1.0, 2.0], seen.append).wait(5)
    assert seen == [0.0, 1.0, 2.0]
