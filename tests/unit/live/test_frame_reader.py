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


def test_a_live_reconstruction_lets_go_of_the_detector_file_by_its_end(RE, tmp_path):
    """The live path reads every frame through one handle and closes it at the stop document, before the stop
    path reads (which closes its own): after the run no detector file is left open in this process."""
    from tomobluesky.devices import PhantomSource, make_sim_beamline
    from tomobluesky.live import MemorySink, live_reconstruction_router
    from tomobluesky.plans import tomo_scan
    from tomobluesky.schema import ReconSettings

    held, runs = [], []

    def mine():  # the files of this test held open (another test of this process may hold its own)
        return sorted(str(p) for p in _scan._SHARED if str(p).startswith(str(tmp_path.resolve())))

    class Watching(MemorySink):
        def write_preview(self, scan_uid, slices, metadata):  # during the scan: the file is held open
            held.append(mine())
            super().write_preview(scan_uid, slices, metadata)

    RE.subscribe(live_reconstruction_router(Watching(), ReconSettings(preview_interval_s=0, preview_every=6),
                                            on_start=runs.append))
    RE(tomo_scan(*make_sim_beamline(PhantomSource(n_slices=2, n_columns=16), tmp_path), num_projections=20,
                 num_darks=1, num_flats=1))
    assert "error" not in runs[0].result and runs[0].result["volume_shape"][0] == 2, runs[0].result
    # previews at 6, 12, 18 while frames come: the camera's file held (one handle); 20, the stop's: let go
    assert [len(h) for h in held] == [1, 1, 1, 0] and held[0][0].endswith(".h5")
    assert mine() == []
