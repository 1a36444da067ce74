"""Documents may make us read only regular files under the data roots (issue 12)."""

from __future__ import annotations

import os
import threading

import h5py
import numpy as np
import pytest

from tests.fuzz_documents import Canaries
from tomobluesky.catalog import ConfinedDocuments
from tomobluesky.devices import PhantomSource, make_sim_beamline
from tomobluesky.live import MemorySink, read_frames, reconstruct_documents
from tomobluesky.pipeline import DataRoots, FrameRun, HDF5Scan, RefusedPath, uri_path
from tomobluesky.plans import tomo_scan


@pytest.fixture
def layout(tmp_path):
    root, outside = tmp_path / "detector", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    frames = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    for folder in (root, outside):
        with h5py.File(folder / "x.h5", "w") as f:
            f["data"] = frames
    return root, outside, frames


def _resource(path, uid="r1"):
    return {"uid": uid, "uri": f"file://localhost{path}", "data_key": "img", "mimetype": "application/x-hdf5",
            "parameters": {"dataset": "data"}, "run_start": "s"}


def test_a_file_inside_the_roots_is_read(layout):
    root, _, frames = layout
    out = read_frames(_resource(root / "x.h5"), {"start": 0, "stop": 2}, roots=DataRoots([root]))
    np.testing.assert_array_equal(out, frames)


@pytest.mark.parametrize("escape", ["dotdot", "symlink", "absolute", "dir-symlink"])
def test_every_way_out_of_the_roots_is_refused(layout, escape):
    root, outside, _ = layout
    if escape == "dotdot":
        path = f"{root}/../secret/x.h5"
    elif escape == "symlink":
        os.symlink(outside / "x.h5", root / "link.h5")
        path = root / "link.h5"
    elif escape == "dir-symlink":
        os.symlink(outside, root / "sub")
        path = root / "sub" / "x.h5"
    else:
        path = outside / "x.h5"
    with pytest.raises(RefusedPath, match="not a readable regular file under the data roots"):
        read_frames(_resource(path), {"start": 0, "stop": 1}, roots=DataRoots([root]))


def test_the_reason_does_not_tell_whether_a_file_exists(layout, tmp_path):
    root, _, _ = layout
    roots = DataRoots([root])
    reasons = []
    for path in ("/etc/passwd", "/etc/no-such-file-here"):
        with pytest.raises(RefusedPath) as err:
            roots.resolve(path)
        reasons.append(str(err.value).replace(path, "PATH"))
    assert reasons[0] == reasons[1]


def test_a_fifo_is_refused_without_blocking(layout):
    root, _, _ = layout
    fifo = root / "pipe.h5"
    os.mkfifo(fifo)
    outcome = []

    def read():
        try:
            read_frames(_resource(fifo), {"start": 0, "stop": 1}, roots=DataRoots([root]))
        except RefusedPath as err:
            outcome.append(str(err))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert outcome and "not a readable regular file" in outcome[0]
    with pytest.raises(Exception, match="not a regular file"):  # unconfined use refuses it too
        HDF5Scan([FrameRun(fifo, "data", 0, 1)], [0.0], [FrameRun(fifo, "data", 0, 1)],
                 [FrameRun(fifo, "data", 0, 1)], (4, 6))


@pytest.mark.parametrize("uri", ["http://example.org/x.h5", "file://otherhost/data/x.h5", "relative/x.h5",
                                 "file:///data/x.h5?q=1", "file:///data/%2e%2e/etc/passwd"])
def test_odd_uris_are_refused(uri):
    with pytest.raises(RefusedPath):
        DataRoots(["/data"]).resource_file({"uid": "r", "uri": uri})


def test_an_old_style_resource_is_checked_too(layout):
    root, outside, _ = layout
    assert uri_path({"root": str(root), "resource_path": "x.h5"}) == str(root / "x.h5")
    with pytest.raises(RefusedPath):
        DataRoots([root]).resource_file({"root": str(root), "resource_path": "../secret/x.h5"})


@pytest.mark.parametrize("kind", ["external-link", "external-storage", "virtual"])
def test_hdf5_that_reads_other_files_is_refused(layout, kind):
    root, outside, _ = layout
    path = root / "hostile.h5"
    with h5py.File(path, "w") as f:
        if kind == "external-link":
            f["data"] = h5py.ExternalLink(str(outside / "x.h5"), "data")
        elif kind == "external-storage":
            (outside / "raw.bin").write_bytes(np.arange(48, dtype=np.float32).tobytes())
            f.create_dataset("data", shape=(2, 4, 6), dtype=np.float32, external=[(str(outside / "raw.bin"), 0, 192)])
        else:
            layout_ = h5py.VirtualLayout(shape=(2, 4, 6), dtype=np.float32)
            layout_[:] = h5py.VirtualSource(str(outside / "x.h5"), "data", shape=(2, 4, 6))
            f.create_virtual_dataset("data", layout_)
    with pytest.raises(RefusedPath):
        read_frames(_resource(path), {"start": 0, "stop": 1}, roots=DataRoots([root]))
    with pytest.raises(RefusedPath):
        HDF5Scan([FrameRun(path, "data", 0, 2)], [0.0, 90.0], [FrameRun(path, "data", 0, 1)],
                 [FrameRun(path, "data", 0, 1)], (4, 6), dtype=np.float32).read_rows("projections", slice(0, 1))


@pytest.mark.parametrize("kind", ["dataset", "group", "soft-to-external"])
@pytest.mark.parametrize("reader", ["live", "stop-path", "dxchange"])
def test_an_external_link_is_refused_before_hdf5_opens_its_target(layout, kind, reader):
    """Found by the document fuzz test: HDF5 opens (and reads) the file an external link names while it
    resolves the link, so checking the dataset afterwards came too late. inotify on the folder outside
    the root sees any open there, whoever makes it."""
    root, outside, _ = layout
    target = str(outside / "x.h5")
    path = root / "linked.h5"
    with h5py.File(path, "w") as f:
        if kind == "dataset":
            f["data"] = h5py.ExternalLink(target, "data")
        elif kind == "group":
            f["g"] = h5py.ExternalLink(target, "/")
        else:
            f["elsewhere"] = h5py.ExternalLink(target, "/")
            f["data"] = h5py.SoftLink("/elsewhere/data")
    dataset = "g/data" if kind == "group" else "data"
    watch = Canaries(outside)
    try:
        with pytest.raises(RefusedPath, match="external link"):
            if reader == "live":
                read_frames(_resource(path) | {"parameters": {"dataset": dataset}}, {"start": 0, "stop": 1},
                            roots=DataRoots([root]))
            elif reader == "stop-path":
                run = FrameRun(path, dataset, 0, 1)
                HDF5Scan([run, run], [0.0, 90.0], [run], [run], (4, 6), dtype=np.float32).read_rows("flats", [0])
            else:  # `tomobluesky reconstruct FILE`: the Data Exchange names, the projections linked out
                with h5py.File(path, "a") as f:
                    f["exchange/data"] = h5py.SoftLink(f"/{dataset}")
                HDF5Scan.from_dxchange(path)
        assert watch.touched() == []
    finally:
        watch.close()


def test_a_scan_pointing_outside_the_roots_fails_with_the_reason_and_reads_nothing(RE, documents, tmp_path):
    source = PhantomSource(n_slices=2, n_columns=32, noise=False)
    RE(tomo_scan(*make_sim_beamline(source, tmp_path / "elsewhere"), num_projections=10, num_darks=1, num_flats=1))
    sink = MemorySink()
    results = reconstruct_documents(documents, sink, data_roots=[tmp_path / "detector"])
    assert "not a readable regular file under the data roots" in results[0]["error"]
    (reason, meta), = sink.failures.values()
    assert meta["status"] == "failed" and not sink.volumes and not sink.previews
    # the same documents, with the camera's folder as the root, reconstruct
    sink = MemorySink()
    results = reconstruct_documents(documents, sink, data_roots=[tmp_path / "elsewhere"])
    assert "error" not in results[0] and len(sink.volumes) == 1


def test_the_catalogue_guard_registers_the_checked_real_path(layout):
    root, outside, _ = layout
    os.symlink(root / "x.h5", root / "alias.h5")
    seen = []
    guard = ConfinedDocuments(lambda name, doc: seen.append((name, doc)), [root])
    guard("stream_resource", _resource(root / "alias.h5", uid="ok"))
    assert seen[-1][1]["uri"] == (root / "x.h5").resolve().as_uri()
    with pytest.raises(RefusedPath):
        guard("stream_resource", _resource(f"{root}/../secret/x.h5", uid="bad"))
    with pytest.raises(RefusedPath, match="refused resource"):
        guard("stream_datum", {"uid": "d", "stream_resource": "bad", "descriptor": "x"})
    guard("stream_datum", {"uid": "d2", "stream_resource": "ok", "descriptor": "x"})
    assert [name for name, _ in seen] == ["stream_resource", "stream_datum"]


def test_the_catalogue_guard_refuses_event_values_a_table_cannot_hold():
    """Found by the fuzz test: Tiled answers 500 to a table with a list or map column, and the worker
    would wait that out forever (tests/system/test_fuzz_catalog.py shows it against a real server)."""
    from tomobluesky.catalog._confine import UnstorableValue

    seen = []
    guard = ConfinedDocuments(lambda name, doc: seen.append(name), ["/data"])
    guard("descriptor", {"uid": "d", "data_keys": {"x": {"dtype": "number", "shape": []},
                                                   "wave": {"dtype": "array", "shape": [3]},
                                                   "img": {"dtype": "array", "shape": [2, 2], "external": "STREAM:"}}})
    guard("event", {"uid": "e1", "descriptor": "d", "data": {"x": 1.0, "wave": [1, 2, 3], "img": "datum-id"}})
    for bad in ({"x": [1.0]}, {"x": {"a": 1}}, {"wave": {"a": 1}}):
        with pytest.raises(UnstorableValue, match="cannot store"):
            guard("event", {"uid": "e2", "descriptor": "d", "data": bad})
    with pytest.raises(UnstorableValue):
        guard("event_page", {"uid": ["e3"], "descriptor": "d", "data": {"x": [[1.0, 2.0]]}})
    guard("event_page", {"uid": ["e4"], "descriptor": "d", "data": {"x": [1.0], "wave": [[1, 2, 3]]}})
    assert seen == ["descriptor", "event", "event_page"]
