"""The catalogue against a real ``tiled serve`` process."""

import os
import subprocess
import sys
import textwrap

import httpx
import numpy as np
import pytest
from tiled.client import from_uri
from tiled.client.context import CannotPrompt
from tiled.queries import Key

from tomobluesky.catalog import (PROCESSED, CatalogError, SpoolingSink, TiledServer, TiledSink, VolumeExists,
                                 live_slices, read_live_slice)
from tomobluesky.store import MultiscaleWriter

pytestmark = pytest.mark.system


def block_mean(a):
    z, y, x = (n // 2 for n in a.shape)  # even sizes only here
    return a.reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))


@pytest.fixture
def sink(tiled_server, tiled_client):
    return TiledSink(tiled_client, volume_dir=tiled_server.layout.volumes)


def test_store_written_slab_by_slab_is_read_over_http_at_every_level(tiled_server, sink):
    volume = np.random.default_rng(1).random((16, 300, 260), dtype=np.float32)
    md = {"scan_uid": "scan-a", "center": 9.5, "pixel_size": 0.65}
    path = sink.begin_volume("scan-a", md)
    assert path == tiled_server.layout.volumes / "scan-a.zarr" and not path.exists()
    reader = tiled_server.reader_client()
    assert reader[PROCESSED]["scan-a"].metadata["status"] == "writing"
    writer = MultiscaleWriter(path, volume.shape, pixel_size=0.65, chunks=(4, 128, 128))
    for z0 in (8, 0, 12, 4):  # any order
        writer.write_slab(z0, volume[z0:z0 + 4])
    sink.complete_volume("scan-a", path, md)

    node = tiled_server.reader_client()[PROCESSED]["scan-a"]
    assert node.metadata["status"] == "complete" and node.metadata["center"] == 9.5
    assert node.metadata["levels"] == [[16, 300, 260], [8, 150, 130]] and list(node) == ["0", "1"]
    assert node.metadata["multiscales"][0]["axes"][0] == {"name": "z", "type": "space", "unit": "micrometer"}
    assert node["0"].structure().chunks[1] == (128, 128, 44)  # the store's own chunks, served as they are
    np.testing.assert_array_equal(node["0"][5], volume[5])
    np.testing.assert_array_equal(node["0"][:, 200, :], volume[:, 200, :])
    np.testing.assert_allclose(node["1"].read(), block_mean(volume), rtol=1e-6)
    assert node.metadata["zarr_store"] == str(path)
    import dask.array as da  # a Dask user on the same file system opens the store lazily

    np.testing.assert_array_equal(da.from_zarr(str(path), component="1")[3].compute(), node["1"][3])


def test_found_by_scan_uid_with_the_convenience_writer(tiled_server, sink):
    volume = np.random.default_rng(2).random((6, 20, 20), dtype=np.float32)
    sink.write_volume("scan-f", volume, {"scan_uid": "scan-f"})
    node = tiled_server.reader_client()[PROCESSED].search(
        Key("scan_uid") == "scan-f").values().first()
    assert node.metadata["status"] == "complete" and node.metadata["levels"] == [[6, 20, 20]]
    np.testing.assert_array_equal(node["0"][4], volume[4])


def test_complete_volume_is_not_rewritten_partial_is_replaced_failure_recorded(tiled_client, sink):
    first = np.ones((2, 4, 4), np.float32)
    sink.write_volume("scan-b", first, {"scan_uid": "scan-b"})
    sink.write_volume("scan-b", 2 * first, {"scan_uid": "scan-b"})
    np.testing.assert_array_equal(tiled_client[PROCESSED]["scan-b"]["0"].read(), first)
    with pytest.raises(VolumeExists):
        sink.begin_volume("scan-b", {"scan_uid": "scan-b"})
    # a partial volume (left by a worker killed mid-write) is replaced, store and all
    tiled_client[PROCESSED]["scan-b"].update_metadata(metadata={"status": "writing"})
    stale = sink.volume_path("scan-b") / "stale-file"
    stale.write_text("left by the killed worker")
    sink.write_volume("scan-b", 3 * first, {"scan_uid": "scan-b"})
    np.testing.assert_array_equal(tiled_client[PROCESSED]["scan-b"]["0"].read(), 3 * first)
    assert not stale.exists()
    # a failure keeps a complete volume ...
    sink.record_failure("scan-b", "late error", {"scan_uid": "scan-b"})
    assert tiled_client[PROCESSED]["scan-b"].metadata["status"] == "complete"
    # ... and otherwise replaces the node (and its store) with a failed container
    sink.begin_volume("scan-c", {"scan_uid": "scan-c"})
    MultiscaleWriter(sink.volume_path("scan-c"), (2, 4, 4))
    sink.record_failure("scan-c", "no flats", {"scan_uid": "scan-c"})
    failed = tiled_client[PROCESSED].search(Key("scan_uid") == "scan-c").values().first()
    assert failed.metadata["status"] == "failed" and failed.metadata["reason"] == "no flats"
    assert not sink.volume_path("scan-c").exists()


@pytest.mark.parametrize("uid", ["../x", "/etc", ".hidden", "a/b", "x" * 129, "", "a b", "..", 7])
def test_hostile_scan_uid_is_refused_before_anything_is_written(tiled_client, sink, uid):
    stores, volumes = set(sink.volume_dir.iterdir()), len(tiled_client[PROCESSED])
    with pytest.raises(ValueError, match="refusing scan uid"):
        sink.begin_volume(uid, {"scan_uid": uid})
    assert set(sink.volume_dir.iterdir()) == stores and len(tiled_client[PROCESSED]) == volumes


def test_a_store_path_that_resolves_outside_the_volume_directory_is_refused(tmp_path, sink):
    (sink.volume_dir / "scan-link.zarr").symlink_to(tmp_path)
    try:
        with pytest.raises(ValueError, match="outside the volume directory"):
            sink.begin_volume("scan-link", {})
    finally:
        (sink.volume_dir / "scan-link.zarr").unlink()


def test_a_store_outside_the_volume_directory_is_not_registered(tmp_path, sink):
    sink.begin_volume("scan-g", {})
    MultiscaleWriter(tmp_path / "elsewhere.zarr", (2, 4, 4))
    with pytest.raises(ValueError, match="outside the volume directory"):
        sink.complete_volume("scan-g", tmp_path / "elsewhere.zarr", {})


def test_sink_without_volume_dir_uploads_the_same_layout(tiled_client):
    volume = np.arange(4 * 6 * 6, dtype=np.float32).reshape(4, 6, 6)
    TiledSink(tiled_client).write_volume("scan-h", volume, {"scan_uid": "scan-h"})
    node = tiled_client[PROCESSED]["scan-h"]
    assert node.metadata["status"] == "complete" and node.metadata["levels"] == [[4, 6, 6]]
    np.testing.assert_array_equal(node["0"][1], volume[1])


def test_preview_is_overwritten_in_place(tiled_client):
    sink = TiledSink(tiled_client)
    for i in range(3):
        sink.write_preview("scan-d", {"axial": np.full((8, 8), i, np.float32), "vertical_x": np.ones((2, 8)) * -i},
                           {"projections": 10 * i})
    node = tiled_client["live"]["scan-d"]
    assert node.metadata["projections"] == 20
    assert list(node) == ["slices"]  # one array holds them all: one write per update
    assert node["slices"].metadata["slices"] == {"axial": [0, 8], "vertical_x": [8, 10]}
    slices = live_slices(tiled_client, "scan-d")
    assert sorted(slices) == ["axial", "vertical_x"] and slices["vertical_x"].shape == (2, 8)
    assert slices["axial"].mean() == 2 and slices["vertical_x"].mean() == -2
    np.testing.assert_array_equal(read_live_slice(tiled_client, "scan-d", "vertical_x"), np.full((2, 8), -2))
    assert read_live_slice(tiled_client, "scan-d", "vertical_y") is None
    assert read_live_slice(tiled_client, "scan-none", "axial") is None and live_slices(tiled_client, "scan-none") == {}
    # a preview's metadata is replaced in place, without a revision per update
    assert len(node.metadata_revisions[:]) == 0


def test_live_slices_of_an_older_writer_one_array_each_are_still_read(tiled_client):
    live = tiled_client["live"].create_container("scan-old", metadata={"projections": 4})
    live.write_array(np.full((4, 4), 7, np.float32), key="axial")
    live.write_array(np.full((1, 4), 3, np.float32), key="vertical_x")
    assert read_live_slice(tiled_client, "scan-old", "axial").sum() == 112
    assert read_live_slice(tiled_client, "scan-old", "vertical_y") is None
    slices = live_slices(tiled_client, "scan-old")
    assert sorted(slices) == ["axial", "vertical_x"] and slices["vertical_x"].sum() == 12


def test_a_live_layout_that_does_not_fit_its_array_is_refused(tiled_client):
    live = tiled_client["live"].create_container("scan-bad")
    live.write_array(np.zeros((4, 4), np.float32), key="slices", metadata={"slices": {"axial": [0, 5]}})
    with pytest.raises(ValueError, match="rows \\[0, 5\\], not a range inside the array's 4"):
        read_live_slice(tiled_client, "scan-bad", "axial")


def test_kept_preview_nodes_follow_a_new_shape_and_a_deleted_preview(tiled_client):
    """The sink keeps the live nodes between updates (fewer requests): slices whose shape changes are
    written anew, and a preview deleted on the server meanwhile is created again, not an error."""
    sink = TiledSink(tiled_client)

    def axial(uid):
        return live_slices(tiled_client, uid)["axial"]

    sink.write_preview("scan-k", {"axial": np.full((8, 8), 1, np.float32)}, {"projections": 1})
    sink.write_preview("scan-k", {"axial": np.full((4, 6), 2, np.float32)}, {"projections": 2})
    node = tiled_client["live"]["scan-k"]
    assert axial("scan-k").shape == (4, 6) and axial("scan-k").sum() == 48 and node.metadata["projections"] == 2
    sink.write_preview("scan-k", {"vertical_x": np.full((4, 6), 9, np.float32)}, {"projections": 3})
    assert list(live_slices(tiled_client, "scan-k")) == ["vertical_x"]  # same shape, other layout: rewritten
    tiled_client["live"].delete_contents("scan-k", recursive=True, external_only=False)
    sink.write_preview("scan-k", {"axial": np.full((4, 6), 3, np.float32)}, {"projections": 3})
    node = tiled_client["live"]["scan-k"]
    assert axial("scan-k").sum() == 72 and node.metadata["projections"] == 3
    for i in range(6):  # more scans than are kept: the oldest is forgotten, and still written correctly
        sink.write_preview(f"scan-k{i}", {"axial": np.full((2, 2), i, np.float32)}, {"projections": i})
    sink.write_preview("scan-k", {"axial": np.full((4, 6), 5, np.float32)}, {"projections": 5})
    assert axial("scan-k").sum() == 120
    assert [axial(f"scan-k{i}").sum() for i in range(6)] == [4 * i for i in range(6)]


def test_slices_of_different_widths_are_refused_before_any_request(tiled_client):
    with pytest.raises(ValueError, match="2-D and equally wide"):
        TiledSink(tiled_client).write_preview("scan-w", {"axial": np.zeros((4, 4)), "vertical_x": np.zeros((1, 5))},
                                              {})
    assert tiled_client["live"].get("scan-w") is None


def test_reads_and_writes_without_the_key_are_refused(tiled_server):
    r = httpx.get(f"{tiled_server.uri}/api/v1/metadata/")
    assert r.status_code == 401
    r = httpx.post(f"{tiled_server.uri}/api/v1/metadata/", json={})
    assert r.status_code == 401
    with pytest.raises(CannotPrompt):  # no key and no login: the client has nothing to fall back to
        from_uri(tiled_server.uri)


def test_public_server_reads_without_key_but_refuses_anonymous_writes(tmp_path):
    with TiledServer(tmp_path, public=True) as server:
        server.sink().write_volume("s", np.zeros((1, 2, 2), np.float32), {"scan_uid": "s"})
        anonymous = from_uri(server.uri)
        assert anonymous[PROCESSED]["s"]["0"].read().shape == (1, 2, 2)
        with pytest.raises(Exception) as err:
            anonymous[PROCESSED].create_container("intruder")
        assert "401" in str(err.value) or "403" in str(err.value) or "scope" in str(err.value).lower()


def test_a_niced_server_serves_below_our_priority(tmp_path):
    """On an acquisition host the server is niced after its start-up, every thread of it and, since it
    leads its own session, its autogroup: with autogroup scheduling the niceness alone would not count."""
    from tomobluesky._priority import autogroup_nice

    with pytest.raises(ValueError, match="between 0 and 19"):
        TiledServer(tmp_path / "bad", nice=20)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    with TiledServer(tmp_path / "cat", nice=7) as server:
        server.sink().write_volume("s", np.ones((1, 2, 2), np.float32), {"scan_uid": "s"})
        assert float(server.reader_client()[PROCESSED]["s"]["0"].read().sum()) == 4.0
        tasks = os.listdir(f"/proc/{server.pid}/task")
        assert len(tasks) > 1 and {os.getpriority(os.PRIO_PROCESS, int(t)) for t in tasks} == {min(own + 7, 19)}
        if autogroup_nice() is not None:
            assert autogroup_nice(server.pid) == min(autogroup_nice() + 7, 19)


def test_an_idle_server_stays_in_our_session_under_sched_idle(tmp_path):
    """SCHED_IDLE only ranks threads of one session against each other: an idle server is kept in the
    caller's session (its own process group, out of Ctrl-C's reach), every thread of it idle, and serves."""
    with TiledServer(tmp_path / "cat", idle=True) as server:
        server.sink().write_volume("s", np.full((1, 2, 2), 2, np.float32), {"scan_uid": "s"})
        assert float(server.reader_client()[PROCESSED]["s"]["0"].read().sum()) == 8.0
        tasks = os.listdir(f"/proc/{server.pid}/task")
        assert len(tasks) > 1 and {os.sched_getscheduler(int(t)) for t in tasks} == {os.SCHED_IDLE}
        assert os.getsid(server.pid) == os.getsid(0) and os.getpgid(server.pid) == server.pid != os.getpgid(0)


def test_a_separate_process_reads_a_slice(tiled_server, sink):
    sink.write_volume("scan-e", np.arange(3 * 4 * 4, dtype=np.float32).reshape(3, 4, 4),
                                         {"scan_uid": "scan-e"})
    code = textwrap.dedent(f"""
        from tiled.client import from_uri
        from tiled.queries import Key
        import os
        c = from_uri("{tiled_server.uri}", api_key=os.environ["READER_KEY"])
        print(float(c["processed"].search(Key("scan_uid") == "scan-e").values().first()["0"][2].sum()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "READER_KEY": tiled_server.reader_key})  # a key never goes in argv
    assert float(out.stdout) == float(np.arange(32, 48).sum())


def test_server_that_cannot_start_names_the_problem(tmp_path, tiled_server):
    with pytest.raises(CatalogError, match="already listening"):
        TiledServer(tmp_path, port=tiled_server.port, startup_timeout=20).start()


def test_ls_and_export_cli(tiled_server, sink, tmp_path):
    import h5py
    import tifffile

    volume = np.random.default_rng(2).random((70, 6, 6), dtype=np.float32)  # several export slabs
    sink.write_volume("scan-x", volume, {"scan_uid": "scan-x", "sample_name": "bone",
                                                            "scan_id": 7, "center": 2.5})
    base = [sys.executable, "-m", "tomobluesky.cli"]
    opts = ["--uri", tiled_server.uri, "--api-key-file", str(tiled_server.layout.reader_key_file)]
    out = subprocess.run(base + ["ls", "--sample", "bone", "--json", *opts], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = [__import__("json").loads(line) for line in out.stdout.splitlines()]
    assert [r["scan_uid"] for r in rows] == ["scan-x"] and rows[0]["shape"] == [70, 6, 6]
    for fmt, target in (("tiff", tmp_path / "tiffs"), ("nxtomoproc", tmp_path / "v.nxs"), ("dxchange", tmp_path / "v.h5")):
        out = subprocess.run(base + ["export", "scan-x", str(target), "--format", fmt, *opts],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tiffs" / "slice_69.tiff"), volume[69])
    with h5py.File(tmp_path / "v.nxs") as f:
        assert f["/entry/definition"][()] == b"NXtomoproc" and f["/entry"].attrs["default"] == "data"
        np.testing.assert_array_equal(f["/entry/data/data"][:], volume)
        np.testing.assert_array_equal(f["/entry/reconstruction/results/data"][:], volume)
        assert list(f["/entry/data"].attrs["axes"]) == ["z", "y", "x"] and len(f["/entry/data/x"]) == 6
        assert f["/entry/reconstruction/parameters/center_of_rotation"][()] == 2.5
        assert f["/entry/sample/name"][()] == b"bone"
    with h5py.File(tmp_path / "v.h5") as f:
        np.testing.assert_array_equal(f["/exchange/data"][2], volume[2])
    out = subprocess.run(base + ["export", "no-such-scan", str(tmp_path / "x"), *opts], capture_output=True, text=True)
    assert out.returncode == 1 and "no volume for scan no-such-scan" in out.stderr


def test_a_prepared_preview_is_then_updated_in_two_requests(tiled_client, tmp_path):
    """``prepare_preview`` makes the nodes with the empty slices before the first projection, so the first
    real preview costs what every later one does: the slices' write and the metadata's."""
    sink = TiledSink(tiled_client)
    empty = {"axial": np.zeros((8, 8), np.float32), "vertical_x": np.zeros((2, 8), np.float32)}
    sink.prepare_preview("scan-p", empty, {"projections": 0})
    assert tiled_client["live"]["scan-p"].metadata["projections"] == 0
    assert not live_slices(tiled_client, "scan-p")["axial"].any()
    requests = []
    hooks = tiled_client.context.http_client.event_hooks["request"]
    hooks.append(requests.append)
    try:
        sink.write_preview("scan-p", {"axial": np.full((8, 8), 3, np.float32),
                                      "vertical_x": np.full((2, 8), 4, np.float32)}, {"projections": 5})
    finally:
        hooks.remove(requests.append)
    assert [r.method for r in requests] == ["PUT", "PATCH"], [(r.method, r.url.path) for r in requests]
    slices = live_slices(tiled_client, "scan-p")
    assert slices["axial"].sum() == 192 and slices["vertical_x"].sum() == 64
    assert tiled_client["live"]["scan-p"].metadata["projections"] == 5
    # through the spooling sink the demo and the workers use, while Tiled is up
    SpoolingSink(TiledSink(tiled_client), tmp_path).prepare_preview("scan-q", empty, {"projections": 0})
    assert tiled_client["live"]["scan-q"].metadata["projections"] == 0
