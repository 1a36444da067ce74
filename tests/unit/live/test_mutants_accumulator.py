"""ScanDocuments (live/_accumulator.py) fed documents written by hand, a real HDF5 detector file behind them
(issue 16 mutants): frame references, angles from events or from an angle stream, the scan they make, and
one clear error for each kind of bad document."""

import h5py
import numpy as np
import pytest

from tomobluesky.live._accumulator import NewFrames, ScanDocuments, StreamFrames
from tomobluesky.pipeline import DataRoots, FrameRun

ROWS, COLS = 2, 3


def _file(tmp_path, frames=5, angles=None):
    path = tmp_path / "det.h5"
    with h5py.File(path, "w") as f:
        f["/entry/data"] = np.arange(frames * ROWS * COLS, dtype=np.uint16).reshape(frames, ROWS, COLS)
        if angles is not None:
            f["/entry/theta"] = np.asarray(angles, np.float64)
    return path


def _start(**extra):
    doc = {"uid": "start-1", "scan_type": "step", "theta": [0.0, 90.0, 180.0], "num_projections": 3,
           "num_darks": 1, "num_flats": 1, "detector_shape": [ROWS, COLS], "camera": "cam", "rotation": "rot"}
    return {**doc, **extra}


def _descriptor(name, uid=None, *, rotation=True, theta=False):
    keys = {"cam_image": {"external": "STREAM:", "shape": [1, ROWS, COLS], "dtype": "array"},
            "cam_stats": {"shape": [], "dtype": "number"}}  # not external: not the image, not the angles
    if rotation:
        keys["rot"] = {"shape": [], "dtype": "number"}
    if theta:
        keys["theta"] = {"external": "STREAM:", "shape": [], "dtype": "number"}
    return {"uid": uid or f"desc-{name}", "name": name, "data_keys": keys}


def _resource(path, uid="res-img", key="cam_image", dataset="/entry/data"):
    return {"uid": uid, "data_key": key, "uri": f"file://localhost{path}", "parameters": {"dataset": dataset}}


def _datum(uid, desc, res, start, stop, seq0):
    return {"uid": uid, "descriptor": desc, "stream_resource": res, "indices": {"start": start, "stop": stop},
            "seq_nums": {"start": seq0, "stop": seq0 + stop - start}}


def _event(desc, seq, angle):
    return {"descriptor": desc, "seq_num": seq, "data": {"rot": angle, "cam_stats": 1.0}}


def _step_scan(tmp_path, roots=None):
    path = _file(tmp_path)
    docs = ScanDocuments(roots)
    docs.start(_start())
    for name in ("dark", "flat", "primary"):
        docs.descriptor(_descriptor(name))
    docs.stream_resource(_resource(path))
    return docs, path


def test_a_step_scan_gives_the_projections_with_angles_and_the_flats_and_darks_as_runs(tmp_path):
    docs, path = _step_scan(tmp_path)
    assert docs.start_doc["uid"] == "start-1" and docs.meta.rotation == "rot"
    assert docs.event(_event("desc-dark", 1, 0.0)) == "dark"
    new = docs.stream_datum(_datum("sd-d", "desc-dark", "res-img", 0, 1, 1))
    assert new == NewFrames("dark", _resource(path), {"start": 0, "stop": 1}, range(1, 2))
    docs.stream_datum(_datum("sd-f", "desc-flat", "res-img", 1, 2, 1))
    # the primary frames come in two datums, their angles in events before and after them
    assert docs.event(_event("desc-primary", 2, 90.0)) == "primary"
    docs.stream_datum(_datum("sd-p1", "desc-primary", "res-img", 2, 4, 1))
    assert docs.streams["primary"].complete() == [2]  # seq 1 has a frame but no angle yet
    docs.event(_event("desc-primary", 1, 0.0))
    docs.stream_datum(_datum("sd-p2", "desc-primary", "res-img", 4, 5, 3))
    assert docs.streams["primary"].complete() == [1, 2]
    docs.event(_event("desc-primary", 3, 180.0))
    assert docs.streams["primary"].complete() == [1, 2, 3]
    real = path.resolve()
    assert docs.streams["primary"].locations == {1: (real, "/entry/data", 2), 2: (real, "/entry/data", 3),
                                                 3: (real, "/entry/data", 4)}
    scan = docs.scan()
    assert scan.projections == [FrameRun(real, "/entry/data", 2, 5)]
    np.testing.assert_array_equal(scan.theta_deg, [0.0, 90.0, 180.0])
    assert scan.flats == [FrameRun(real, "/entry/data", 1, 2)]
    assert scan.darks == [FrameRun(real, "/entry/data", 0, 1)]
    assert scan.detector_shape == (ROWS, COLS)


def test_a_fly_scan_reads_its_angles_from_the_angle_stream_beside_the_frames(tmp_path):
    path = _file(tmp_path, angles=[10.0, 55.5, 101.0, 146.5])
    docs = ScanDocuments(DataRoots([tmp_path]))
    docs.start(_start(scan_type="fly"))
    for name in ("dark", "flat"):
        docs.descriptor(_descriptor(name, rotation=False))
    docs.descriptor(_descriptor("primary", rotation=False, theta=True))
    docs.stream_resource(_resource(path))
    docs.stream_resource(_resource(path, "res-theta", "theta", "/entry/theta"))
    # the angles first (indices 1..3 of the angle dataset), then the frames: both by sequence number
    assert docs.stream_datum(_datum("sd-t", "desc-primary", "res-theta", 1, 4, 1)) is None
    assert docs.streams["primary"].angles == {1: 55.5, 2: 101.0, 3: 146.5}
    assert docs.streams["primary"].complete() == []
    assert docs.event(_event("desc-primary", 1, 999.0)) == "primary"  # no rotation key: the event's angle is not used
    assert docs.streams["primary"].angles[1] == 55.5
    docs.stream_datum(_datum("sd-p", "desc-primary", "res-img", 2, 5, 1))
    docs.stream_datum(_datum("sd-f", "desc-flat", "res-img", 1, 2, 1))
    docs.stream_datum(_datum("sd-d", "desc-dark", "res-img", 0, 1, 1))
    scan = docs.scan()
    np.testing.assert_array_equal(scan.theta_deg, [55.5, 101.0, 146.5])
    assert scan.projections == [FrameRun(path.resolve(), "/entry/data", 2, 5)]


def test_frames_out_of_order_make_several_runs_in_sequence_order(tmp_path):
    docs, path = _step_scan(tmp_path)
    for seq, angle in ((1, 0.0), (2, 60.0), (3, 120.0)):
        docs.event(_event("desc-primary", seq, angle))
    docs.stream_datum(_datum("sd-3", "desc-primary", "res-img", 4, 5, 3))
    docs.stream_datum(_datum("sd-1", "desc-primary", "res-img", 2, 4, 1))
    docs.stream_datum(_datum("sd-f", "desc-flat", "res-img", 1, 2, 1))
    docs.stream_datum(_datum("sd-d", "desc-dark", "res-img", 0, 1, 1))
    assert docs.streams["primary"].complete() == [1, 2, 3]
    assert docs.scan().projections == [FrameRun(path.resolve(), "/entry/data", 2, 5)]


def test_complete_is_kept_sorted_without_duplicates_whatever_the_order():
    stream = StreamFrames()
    for seq in (5, 2, 9, 2, 7):
        stream.locations[seq] = ("f", "d", seq)
        stream._mark(seq)
        stream.angles[seq] = float(seq)
        stream._mark(seq)
        stream._mark(seq)
    assert stream.complete() == [2, 5, 7, 9]
    stream.angles[11] = 1.0
    stream._mark(11)  # an angle without a frame is not complete
    stream.locations[12] = ("f", "d", 12)
    stream._mark(12)
    assert stream.complete() == [2, 5, 7, 9]


def test_documents_of_streams_not_followed_are_passed_over(tmp_path):
    docs, path = _step_scan(tmp_path)
    docs.descriptor(_descriptor("baseline", "desc-base"))
    assert "desc-base" not in docs._descriptors
    other = {"uid": "x", "descriptor": "desc-base", "stream_resource": "nope", "indices": {"start": 0, "stop": 1},
             "seq_nums": {"start": 1, "stop": 2}}
    assert docs.stream_datum(other) is None
    assert docs.event({"descriptor": "desc-base", "seq_num": 1, "data": {}}) is None
    assert docs.stream_of(other) is None
    assert docs.stream_of({"descriptor": "desc-flat"}) == "flat"
    # a resource of another key (a second camera) on a followed stream: no frames recorded
    docs.stream_resource(_resource(path, "res-other", "other_image"))
    assert docs.stream_datum(_datum("sd-o", "desc-primary", "res-other", 0, 2, 1)) is None
    assert docs.streams["primary"].locations == {}


def test_a_descriptor_needs_exactly_one_external_image_key(tmp_path):
    docs, _ = _step_scan(tmp_path)
    two = _descriptor("primary", "d2")
    two["data_keys"]["cam2_image"] = {"external": "STREAM:", "shape": [1, 4, 4], "dtype": "array"}
    with pytest.raises(ValueError, match="'primary' must describe exactly one image key, found"):
        docs.descriptor(two)
    none = _descriptor("flat", "d3")
    none["data_keys"]["cam_image"]["shape"] = [5]  # one-dimensional: not an image
    with pytest.raises(ValueError, match="'flat' must describe exactly one image key, found \\[\\]"):
        docs.descriptor(none)
    internal = _descriptor("dark", "d4")
    del internal["data_keys"]["cam_image"]["external"]
    with pytest.raises(ValueError, match="exactly one image key"):
        docs.descriptor(internal)


def test_a_datum_of_an_unknown_resource_or_with_miscounted_sequence_numbers_is_refused(tmp_path):
    docs, _ = _step_scan(tmp_path)
    with pytest.raises(ValueError, match="stream datum sd-x refers to unknown stream resource res-none"):
        docs.stream_datum(_datum("sd-x", "desc-primary", "res-none", 0, 1, 1))
    bad = _datum("sd-y", "desc-primary", "res-img", 1, 4, 1)
    bad["seq_nums"]["stop"] = 3
    with pytest.raises(ValueError, match="stream datum sd-y: 2 sequence numbers for 3 frames"):
        docs.stream_datum(bad)
    assert docs.streams["primary"].locations == {}


def test_a_resource_outside_the_data_roots_is_refused_when_it_arrives(tmp_path):
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir()
    outside.mkdir()
    docs = ScanDocuments([inside])
    docs.start(_start())
    with pytest.raises(Exception, match="res-img"):
        docs.stream_resource(_resource(_file(outside)))
    assert docs._resources == {}


def test_a_scan_needs_two_projections_with_angles_and_flats_and_darks(tmp_path):
    docs, _ = _step_scan(tmp_path)
    docs.event(_event("desc-primary", 1, 0.0))
    docs.stream_datum(_datum("sd-p", "desc-primary", "res-img", 2, 4, 1))  # seq 2 has no angle
    with pytest.raises(ValueError, match="run has 1 projections with angles; a reconstruction needs at least 2"):
        docs.scan()
    docs.event(_event("desc-primary", 2, 90.0))
    with pytest.raises(ValueError, match="run has 0 darks and 0 flats; both are needed"):
        docs.scan()
    docs.stream_datum(_datum("sd-f", "desc-flat", "res-img", 1, 2, 1))
    with pytest.raises(ValueError, match="run has 0 darks and 1 flats"):
        docs.scan()
    docs.stream_datum(_datum("sd-d", "desc-dark", "res-img", 0, 1, 1))
    assert len(docs.scan().projections[0]) == 2


def test_angles_arriving_after_their_frames_complete_them(tmp_path):
    path = _file(tmp_path, angles=[0.0, 60.0, 120.0])
    docs = ScanDocuments([tmp_path])
    docs.start(_start(scan_type="fly"))
    docs.descriptor(_descriptor("primary", rotation=False, theta=True))
    docs.stream_resource(_resource(path))
    docs.stream_resource(_resource(path, "res-theta", "theta", "/entry/theta"))
    docs.stream_datum(_datum("sd-p", "desc-primary", "res-img", 2, 5, 1))
    assert docs.streams["primary"].complete() == []
    docs.stream_datum(_datum("sd-t", "desc-primary", "res-theta", 0, 3, 1))
    assert docs.streams["primary"].complete() == [1, 2, 3]


@pytest.mark.parametrize("key, dataset", [("cam_image", "/entry/data"), ("theta", "/entry/theta")])
def test_a_file_swapped_for_a_link_out_of_the_roots_after_its_resource_arrived_is_not_read(tmp_path, key, dataset):
    """The roots are checked again when a datum reads or records a file, not only when its resource arrives:
    a detector file replaced meanwhile by a link to a file outside the roots is refused."""
    inside, outside = tmp_path / "in", tmp_path / "out"
    inside.mkdir()
    outside.mkdir()
    path = _file(inside, angles=[0.0, 1.0, 2.0])
    secret = _file(outside, angles=[5.0, 6.0, 7.0])
    docs = ScanDocuments([inside])
    docs.start(_start(scan_type="fly"))
    docs.descriptor(_descriptor("primary", rotation=False, theta=True))
    docs.stream_resource(_resource(path, "res", key, dataset))
    path.unlink()
    path.symlink_to(secret)
    with pytest.raises(Exception, match="res"):
        docs.stream_datum(_datum("sd", "desc-primary", "res", 0, 3, 1))
    assert docs.streams["primary"].locations == {} and docs.streams["primary"].angles == {}


def test_before_the_start_document_there_is_none_and_a_two_dimensional_shape_is_an_image(tmp_path):
    docs = ScanDocuments()
    assert docs.start_doc is None and docs.meta is None
    assert docs.roots.roots is None  # no roots given: any regular file
    docs.start(_start())
    flat = _descriptor("flat")
    flat["data_keys"]["cam_image"]["shape"] = [ROWS, COLS]  # no leading frame count: still the image
    docs.descriptor(flat)
    assert docs._descriptors["desc-flat"] == {"stream": "flat", "image": "cam_image", "theta": None,
                                              "rotation": "rot"}
