"""ReplaySource reads one frame per call from its file, never the whole scan."""

import tracemalloc

import h5py
import numpy as np
import pytest

from tomobluesky.devices import ReplaySource, SourceError

ROWS, COLUMNS = 64, 96


def _scan(path, n_angles=400, *, dtype=np.float32, radians=False, units=True, n_flats=3, n_darks=2):
    """A Data Exchange file whose every frame says which it is: projection i is
    filled with 10·i plus a per-pixel ramp, flat k with 50000 + k, dark k with k."""
    ramp = np.arange(ROWS * COLUMNS, dtype=np.float64).reshape(ROWS, COLUMNS) % 7
    theta = np.linspace(0.0, 180.0, n_angles, endpoint=False)
    with h5py.File(path, "w") as f:
        data = f.create_dataset("/exchange/data", (n_angles, ROWS, COLUMNS), dtype=dtype, chunks=(1, ROWS, COLUMNS))
        for i in range(n_angles):
            data[i] = 10 * i + ramp
        f["/exchange/data_white"] = 50000 + np.arange(n_flats, dtype=dtype)[:, None, None] * np.ones((ROWS, COLUMNS), dtype)
        f["/exchange/data_dark"] = np.arange(n_darks, dtype=dtype)[:, None, None] * np.ones((ROWS, COLUMNS), dtype)
        f["/exchange/theta"] = np.radians(theta) if radians else theta
        if units:
            f["/exchange/theta"].attrs["units"] = "radians" if radians else "degrees"
    return theta, ramp


def test_nearest_angle_frame_with_its_exact_pixels(tmp_path):
    theta, ramp = _scan(tmp_path / "scan.h5")  # 0.45° steps
    source = ReplaySource(tmp_path / "scan.h5")
    assert source.shape == (ROWS, COLUMNS) and len(source.theta_deg) == 400
    assert source.angle_range_deg == pytest.approx((-0.225, 179.775))
    for angle, index in [(0.0, 0), (0.2, 0), (0.23, 1), (90.0, 200), (133.1, 296), (179.7, 399)]:
        frame = source.projection(angle)
        assert frame.dtype == np.float32 and frame.shape == (ROWS, COLUMNS)
        np.testing.assert_array_equal(frame, 10 * index + ramp)
    assert source.nearest_index(133.1) == 296
    with pytest.raises(SourceError, match="covers"):
        source.projection(180.0)
    source.close()


def test_replay_does_not_load_the_scan(tmp_path):
    _scan(tmp_path / "big.h5", n_angles=1000)  # 24.6 MB of projections
    frame_bytes = ROWS * COLUMNS * 4
    tracemalloc.start()
    try:
        source = ReplaySource(tmp_path / "big.h5")
        opened = tracemalloc.get_traced_memory()[1]
        frames = [source.projection(angle) for angle in (3.0, 97.2, 150.0)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert opened < 100_000  # angles and shapes only: 8 kB of theta and some Python objects
    assert peak < 5 * frame_bytes  # three frames kept and one in flight, not 1000
    assert [f[0, 0] for f in frames] == [10 * 17, 10 * 540, 10 * 833]
    source.close()


def test_radians_uint16_files_replay_as_float32_counts(tmp_path):
    theta, ramp = _scan(tmp_path / "u16.h5", n_angles=30, dtype=np.uint16, radians=True, units=False)
    source = ReplaySource(tmp_path / "u16.h5")
    np.testing.assert_allclose(source.theta_deg, theta)
    frame = source.projection(theta[7] + 1.0)
    assert frame.dtype == np.float32
    np.testing.assert_array_equal(frame, 70 + ramp)


def test_darks_and_flats_are_read_in_turn(tmp_path):
    _scan(tmp_path / "scan.h5", n_angles=5)
    source = ReplaySource(tmp_path / "scan.h5")
    assert [source.flat()[0, 0] for _ in range(4)] == [50000, 50001, 50002, 50000]
    assert [source.dark()[5, 5] for _ in range(3)] == [0, 1, 0]


def test_close_releases_the_file_and_a_later_frame_reopens_it(tmp_path):
    _scan(tmp_path / "scan.h5", n_angles=5)
    with ReplaySource(tmp_path / "scan.h5") as source:
        source.projection(36.0)
    with h5py.File(tmp_path / "scan.h5", "a") as f:  # HDF5 refuses this while a reader holds the file
        f["/exchange/data"][1] = -1.0
    np.testing.assert_array_equal(source.projection(36.0), np.full((ROWS, COLUMNS), -1.0))
    source.close()


def test_inconsistent_files_get_clear_errors(tmp_path):
    _scan(tmp_path / "scan.h5", n_angles=5)
    with h5py.File(tmp_path / "scan.h5", "a") as f:
        del f["/exchange/theta"]
        f["/exchange/theta"] = np.arange(4.0)
    with pytest.raises(SourceError, match="4 angles for 5 projections"):
        ReplaySource(tmp_path / "scan.h5")
    # a failed check leaves no handle open: the file can be rewritten at once
    _scan(tmp_path / "scan.h5", n_angles=5, n_flats=0)
    with pytest.raises(SourceError, match="no flat or no dark"):
        ReplaySource(tmp_path / "scan.h5")
    with h5py.File(tmp_path / "scan.h5", "a") as f:
        del f["/exchange/data_dark"]
    with pytest.raises(SourceError, match="missing '/exchange/data_dark'"):
        ReplaySource(tmp_path / "scan.h5")
