"""The catalogue against a real ``tiled serve`` process."""

import subprocess
import sys
import textwrap

import httpx
import numpy as np
import pytest
from tiled.client import from_uri
from tiled.queries import Key

from tomobluesky.catalog import PROCESSED, CatalogError, TiledServer, TiledSink

pytestmark = pytest.mark.system


def test_volume_is_found_by_scan_uid_and_read_one_slice_at_a_time(tiled_server, tiled_client):
    sink = TiledSink(tiled_client)
    volume = np.random.default_rng(1).random((6, 20, 20), dtype=np.float32)
    sink.write_volume("scan-a", volume, {"scan_uid": "scan-a", "center": 9.5})
    reader = from_uri(tiled_server.uri, api_key=tiled_server.api_key)
    node = reader[PROCESSED].search(Key("scan_uid") == "scan-a").values().first()
    assert node.metadata["status"] == "complete" and node.metadata["center"] == 9.5
    assert node.structure().chunks[0] == (1,) * 6  # one chunk per slice: a slice reads alone
    np.testing.assert_array_equal(node[4], volume[4])


def test_complete_volume_is_not_rewritten_partial_is_replaced_failure_recorded(tiled_client):
    sink = TiledSink(tiled_client)
    first = np.ones((2, 4, 4), np.float32)
    sink.write_volume("scan-b", first, {"scan_uid": "scan-b"})
    sink.write_volume("scan-b", 2 * first, {"scan_uid": "scan-b"})
    np.testing.assert_array_equal(tiled_client[PROCESSED]["scan-b"].read(), first)
    # a partial volume (left by a worker killed mid-write) is replaced
    tiled_client[PROCESSED]["scan-b"].update_metadata(metadata={"status": "writing"})
    sink.write_volume("scan-b", 3 * first, {"scan_uid": "scan-b"})
    np.testing.assert_array_equal(tiled_client[PROCESSED]["scan-b"].read(), 3 * first)
    sink.record_failure("scan-c", "no flats", {"scan_uid": "scan-c"})
    failed = tiled_client[PROCESSED].search(Key("scan_uid") == "scan-c").values().first()
    assert failed.metadata["status"] == "failed" and failed.metadata["reason"] == "no flats"


def test_preview_is_overwritten_in_place(tiled_client):
    sink = TiledSink(tiled_client)
    for i in range(3):
        sink.write_preview("scan-d", {"axial": np.full((8, 8), i, np.float32), "vertical_x": np.zeros((2, 8))},
                           {"projections": 10 * i})
    node = tiled_client["live"]["scan-d"]
    assert node.metadata["projections"] == 20
    assert node["axial"].read().mean() == 2 and node["vertical_x"].shape == (2, 8)


def test_reads_and_writes_without_the_key_are_refused(tiled_server):
    r = httpx.get(f"{tiled_server.uri}/api/v1/metadata/")
    assert r.status_code == 401
    r = httpx.post(f"{tiled_server.uri}/api/v1/metadata/", json={})
    assert r.status_code == 401
    with pytest.raises(RuntimeError, match="API key"):
        from_uri(tiled_server.uri)


def test_public_server_reads_without_key_but_refuses_anonymous_writes(tmp_path):
    with TiledServer(tmp_path, public=True) as server:
        TiledSink(server.client()).write_volume("s", np.zeros((1, 2, 2), np.float32), {"scan_uid": "s"})
        anonymous = from_uri(server.uri)
        assert anonymous[PROCESSED]["s"].read().shape == (1, 2, 2)
        with pytest.raises(Exception) as err:
            anonymous[PROCESSED].create_container("intruder")
        assert "401" in str(err.value) or "403" in str(err.value) or "scope" in str(err.value).lower()


def test_a_separate_process_reads_a_slice(tiled_server, tiled_client):
    TiledSink(tiled_client).write_volume("scan-e", np.arange(3 * 4 * 4, dtype=np.float32).reshape(3, 4, 4),
                                         {"scan_uid": "scan-e"})
    code = textwrap.dedent(f"""
        from tiled.client import from_uri
        from tiled.queries import Key
        c = from_uri("{tiled_server.uri}", api_key="{tiled_server.api_key}")
        print(float(c["processed"].search(Key("scan_uid") == "scan-e").values().first()[2].sum()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == float(np.arange(32, 48).sum())


def test_server_that_cannot_start_names_the_problem(tmp_path, tiled_server):
    with pytest.raises(CatalogError, match="already listening"):
        TiledServer(tmp_path, port=tiled_server.port, startup_timeout=20).start()


def test_ls_and_export_cli(tiled_server, tiled_client, tmp_path):
    import h5py
    import tifffile

    volume = np.random.default_rng(2).random((3, 6, 6), dtype=np.float32)
    TiledSink(tiled_client).write_volume("scan-x", volume, {"scan_uid": "scan-x", "sample_name": "bone",
                                                            "scan_id": 7, "center": 2.5})
    base = [sys.executable, "-m", "tomobluesky.cli"]
    opts = ["--uri", tiled_server.uri, "--api-key", tiled_server.api_key]
    out = subprocess.run(base + ["ls", "--sample", "bone", "--json", *opts], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = [__import__("json").loads(line) for line in out.stdout.splitlines()]
    assert [r["scan_uid"] for r in rows] == ["scan-x"] and rows[0]["shape"] == [3, 6, 6]
    for fmt, target in (("tiff", tmp_path / "tiffs"), ("nxtomo", tmp_path / "v.nxs"), ("dxchange", tmp_path / "v.h5")):
        out = subprocess.run(base + ["export", "scan-x", str(target), "--format", fmt, *opts],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tiffs" / "slice_1.tiff"), volume[1])
    with h5py.File(tmp_path / "v.nxs") as f:
        np.testing.assert_array_equal(f["/entry/reconstruction/data"][:], volume)
        assert f["/entry/process/center_of_rotation"][()] == 2.5
    with h5py.File(tmp_path / "v.h5") as f:
        np.testing.assert_array_equal(f["/exchange/data"][2], volume[2])
    out = subprocess.run(base + ["export", "no-such-scan", str(tmp_path / "x"), *opts], capture_output=True, text=True)
    assert out.returncode == 1 and "no volume for scan no-such-scan" in out.stderr
