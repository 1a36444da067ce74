"""The viewer's reading of a multiscale volume, on NumPy levels (no server): which level a
request gets, what region, histogram sampling, line-profile sampling, live request checks."""

import numpy as np
import pytest

from tomobluesky.store import downsample2, level_shapes
from tomobluesky.viewer import _volume
from tomobluesky.viewer._control import BadControl, check_request, detector_shape, stored
from tomobluesky.viewer._volume import BadRequest, Plane, histogram_sample, read_plane, read_profile


@pytest.fixture(scope="module")
def levels():
    volume = np.random.default_rng(0).random((9, 40, 23), dtype=np.float32)
    out = [volume]
    for _ in level_shapes(volume.shape, 6)[1:]:
        out.append(downsample2(out[-1]))
    return out  # (9, 40, 23), (5, 20, 12), (3, 10, 6), (2, 5, 3)


def test_the_plane_comes_from_the_coarsest_level_still_as_large_as_the_screen(levels):
    for size, k in [(0, 0), (40, 0), (39, 0), (21, 0), (20, 1), (11, 1), (10, 2), (6, 2), (5, 3), (1, 3)]:
        image, level, covered = read_plane(levels, Plane("z", 8, 0, 40, 0, 23, size))
        assert level == k, size
        np.testing.assert_array_equal(image, levels[k][8 >> k])
        assert covered == (0, 40, 0, 23)


def test_a_region_is_widened_to_whole_pixels_of_its_level_and_read_alone(levels):
    image, k, covered = read_plane(levels, Plane("x", 22, 1, 8, 3, 39, 18))  # sagittal: rows z, columns y
    assert k == 1 and covered == (0, 8, 2, 40)  # level-1 rows 0..3, columns 1..19
    np.testing.assert_array_equal(image, levels[1][0:4, 1:20, 11])
    image, k, covered = read_plane(levels, Plane("y", 39, 2, 3, 4, 5, 1))
    assert k == 0 and covered == (2, 3, 4, 5) and image.tolist() == [[levels[0][2, 39, 4]]]


@pytest.mark.parametrize("plane, words", [
    (Plane("w", 0, 0, 1, 0, 1, 0), "z, y or x"), (Plane("z", 9, 0, 40, 0, 23, 0), "outside the volume's 0..8"),
    (Plane("z", -1, 0, 40, 0, 23, 0), "outside"), (Plane("y", 0, 0, 10, 0, 24, 0), "outside the plane's 9 rows"),
    (Plane("z", 0, 4, 4, 0, 23, 0), "empty"), (Plane("z", 0, -1, 4, 0, 23, 0), "outside"),
])
def test_a_plane_outside_the_volume_is_refused(levels, plane, words):
    with pytest.raises(BadRequest, match=words):
        read_plane(levels, plane)


def test_the_histogram_reads_the_finest_level_that_fits_else_strides_the_coarsest(levels, monkeypatch):
    voxels, k, step = histogram_sample(levels)
    assert (k, step) == (0, 1) and voxels.shape == levels[0].shape
    monkeypatch.setattr(_volume, "HISTOGRAM_VOXELS", 1000)  # level 1 has 1200 voxels, level 2 180
    voxels, k, step = histogram_sample(levels)
    assert (k, step) == (2, 1)
    monkeypatch.setattr(_volume, "HISTOGRAM_VOXELS", 10)  # even level 3 (30 voxels) is too big: every 3rd slice
    voxels, k, step = histogram_sample(levels)
    assert (k, step) == (3, 3)
    np.testing.assert_array_equal(voxels, levels[3][::3])


def test_a_profile_samples_every_pixel_of_its_level_along_the_line(levels):
    got = read_profile(levels, "z", 4, (0, 0), (39, 22), 200)
    points = np.asarray(got["points"])
    assert got["level"] == 0 and len(points) == 46  # ceil(hypot(39, 22)) + 1
    assert points[0].tolist() == [0, 0] and points[-1].tolist() == [39, 22]
    assert np.abs(np.diff(points, axis=0)).max() == 1
    np.testing.assert_array_equal(got["values"], levels[0][4][points[:, 0], points[:, 1]])
    coarse = read_profile(levels, "z", 4, (0, 0), (39, 22), 11)  # 45 pixels long: 11.25 at level 2
    assert coarse["level"] == 2 and coarse["index"] == 1
    pts = np.asarray(coarse["points"])
    np.testing.assert_array_equal(coarse["values"], levels[2][1][pts[:, 0], pts[:, 1]])
    with pytest.raises(BadRequest, match="end"):
        read_profile(levels, "z", 4, (0, 0), (40, 0), 1)


def test_a_live_request_is_checked_against_the_detector():
    assert check_request({"row": 0, "center": 9}, 12, 20) == {"row": 0, "center": 9.0}
    assert check_request({"center": -0.5, "row": None}, 12, 20) == {"center": -0.5}
    for body, words in [({"row": 12}, "0 to 11"), ({"row": True}, "whole"), ({"center": float("nan")}, "finite"),
                        ({"center": 19.6}, "-0.5 to 19.5"), ({"x": 1}, "unknown field 'x'"), ({}, "nothing"),
                        ("row=1", "JSON object")]:
        with pytest.raises(BadControl, match=words):
            check_request(body, 12, 20)
    assert detector_shape({"detector_shape": [12, 20]}, {}) == (12, 20)
    assert detector_shape({"binning": 4}, {"vertical_x": (3, 5), "axial": (5, 5)}) == (12, 20)
    assert stored({"row": 1}, {"seq": 4, "center": 2.0})["seq"] == 5
    first = stored({"row": 1}, None)
    assert first["seq"] == 1 and first["row"] == 1 and set(first) == {"row", "seq", "time"}
