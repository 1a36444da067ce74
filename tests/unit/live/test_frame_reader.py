"""``FrameReader``: a run's frames read by StreamDatum through one open handle per file, confined all the same."""

import h5py
import numpy as np
import pytest

from tomobluesky.live import FrameReader, FrameReadError, read_frames
from tomobluesky.pipeline import DataRoots
from tomobluesky.pipeline import _scan


def _file(path, frames):
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("images", data=frames, maxshape=(None, *frames.shape[1:]), chunks=(1, *frames.shape[1:]))
        f.create_dataset("theta", data=np.arange(len(frames), dtype=float) * 1.5)
    return path


def _resource(path, dataset="images", uid="res-1"):
    return {"uid": uid, "uri": f"file://localhost{path}", "data_key": dataset, "parameters": {"dataset": dataset}}


def test_frames_come_through_one_handle_held_until_close(tmp_path):
    frames = np.random.default_rng(0).random((6, 3, 4)).astype(np.float32)
    path = _file(tmp_path / "scan.h5", frames).resolve()
    reader = FrameReader(DataRoots([tmp_path]))
    for i in range(6):
        np.testing.assert_array_equal(reader.read(_resource(path), {"start": i, "stop": i + 1}), frames[i:i + 1])
        handle = _scan._SHARED[path].file
        assert i == 0 or handle is first  # the same open file for every read
        first = handle
    np.testing.assert_array_equal(reader.read(_resource(path, "theta", "res-2"), {"start": 2, "stop": 5}),
                                  [3.0, 4.5, 6.0])
    assert set(_scan._SHARED[path].datasets) == {"images", "theta"}
    reader.close()
    assert path not in _scan._SHARED and not first.id.valid  # closed with its last reader
    # read_frames opens and lets go for each read, as before
    np.testing.assert_array_equal(read_frames(_resource(path), {"start": 4, "stop": 6}, roots=DataRoots([tmp_path])),
                                  frames[4:6])
    assert path not in _scan._SHARED


def test_a_short_file_is_waited_for_then_named_and_a_reused_uid_is_confined_again(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    inside = _file(root / "a.h5", np.zeros((2, 2, 2), np.float32))
    elsewhere = _file(outside / "b.h5", np.ones((2, 2, 2), np.float32))
    with FrameReader(DataRoots([root]), retries=2, wait=0.01) as reader:
        with pytest.raises(FrameReadError, match=r"a.h5:images holds 2 frames; a stream datum asks for 1..3"):
            reader.read(_resource(inside), {"start": 1, "stop": 3})
        with pytest.raises(FrameReadError, match="has no dataset 'nope'"):
            reader.read(_resource(inside, "nope", "res-9"), {"start": 0, "stop": 1})
        assert reader.read(_resource(inside), {"start": 0, "stop": 1}).sum() == 0
        # the same resource uid naming a file outside the roots is refused, not read from the first file
        with pytest.raises(FrameReadError):
            reader.read(_resource(elsewhere), {"start": 0, "stop": 1})
