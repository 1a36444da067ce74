"""The stop path's slabs as Dask tasks on a real LocalCluster of two worker processes: the same volume as the
single-process conveyor, voxel for voxel, and a clear refusal when a worker cannot see the detector file."""

import os

import h5py
import numpy as np
import pytest

from tomobluesky.pipeline import HDF5Scan, current_rss_bytes, reconstruct_scan
from tomobluesky.pipeline._dask import WorkerPathError, check_visible
from tomobluesky.schema import ReconSettings
from tomobluesky.store import open_multiscale

from tests.unit.pipeline.test_stop_path import write_scan

distributed = pytest.importorskip("distributed")

ROWS, COLUMNS, ANGLES, CENTER = 48, 96, 120, 50.3


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes, as the embedded default makes on a 2-core machine."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    """The phantom, with a dead strip in the flats (columns 10..12 of rows 20..) that every route must report."""
    path = write_scan(tmp_path_factory.mktemp("dask") / "scan.h5", rows=ROWS, columns=COLUMNS, angles=ANGLES,
                      center=CENTER)
    with h5py.File(path, "r+") as f:
        flats = f["/exchange/data_white"][...]
        flats[:, 20:, 10:13] = 50.0  # below the dark (100): no beam
        f["/exchange/data_white"][...] = flats
    return path


def _levels(path):
    return [a[...] for a in open_multiscale(path)]


def _reconstruct(path, output, budget, **kwargs):
    with HDF5Scan.from_dxchange(path) as scan:
        return reconstruct_scan(scan, ReconSettings(center=CENTER), output, memory_budget=budget,
                                writer_options={"min_size": 16}, **kwargs)


def test_dask_slabs_give_the_single_process_volume_voxel_for_voxel(client, scan_file, tmp_path):
    budget = current_rss_bytes() + 2.5e6  # a few rows per slab: many tasks, spread over both workers
    local = _reconstruct(scan_file, tmp_path / "local.zarr", budget)
    done = []
    on_dask = _reconstruct(scan_file, tmp_path / "dask.zarr", budget, dask=client,
                           progress=lambda rows, total: done.append((rows, total)))
    assert on_dask["slabs"] == local["slabs"] >= 4 and on_dask["slab_rows"] == local["slab_rows"]
    # every voxel of every level: the same slabs pack the same slice pairs into the same NUFFTs. Here (and in
    # every run so far) they are bit for bit equal; the bound allows what finufft may do with more threads in
    # one process than in a task (ncore=1): add its spreading sub-grids in another order, a float32 rounding
    # (~1e-7 of the largest value per term). Any real slip (a slab off by a row, a normalisation missed) is
    # 1e-2 of it or more.
    for a, b in zip(_levels(tmp_path / "local.zarr"), _levels(tmp_path / "dask.zarr"), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-6 * np.abs(a).max())
    assert np.abs(_levels(tmp_path / "dask.zarr")[0]).max() > 0.01  # the phantom is there, not zeros on both sides
    report = on_dask["dask"]
    slabs = sorted(tuple(r["slab"]) for r in report["per_slab"])
    assert slabs[0][0] == 0 and slabs[-1][1] == ROWS and all(a[1] == b[0] for a, b in zip(slabs, slabs[1:]))
    assert len(report["workers_used"]) == 2 and report["workers"] == 2
    assert len({r["pid"] for r in report["per_slab"]}) == 2 and os.getpid() not in {r["pid"] for r in report["per_slab"]}
    for r in report["per_slab"]:
        assert set(r["stages"]) == {"open", "read", "reconstruct", "write"}
        # each value is rounded to 0.1 ms on its own: the process's CPU may show 0.1 ms less than the thread's
        assert all(wall > 0 and cpu >= thread_cpu - 1e-4 and thread_cpu >= 0
                   for wall, cpu, thread_cpu in r["stages"].values())
    # the workers read about one pass over the file between them, as the conveyor does
    assert 0.95 <= on_dask["read_amplification"] <= 1.5, on_dask["read_amplification"]
    assert all(0 < mb < 2000 for mb in report["worker_peak_rss_mb"].values())
    # the pixels without beam, found by the workers slab by slab, are named once for the scan as in-process
    assert on_dask["flat_field_warnings"] == local["flat_field_warnings"]
    assert f"{(ROWS - 20) * 3} pixels (detector rows 20-{ROWS - 1}), in columns 10-12" in local["flat_field_warnings"][0]
    assert done[-1] == (ROWS, ROWS) and [d[0] for d in done] == sorted(d[0] for d in done) and len(done) == len(slabs)


def test_a_detector_file_the_workers_cannot_see_fails_naming_the_path_and_the_worker(client, scan_file, tmp_path):
    moved = tmp_path / "scan.h5"
    moved.write_bytes(scan_file.read_bytes())
    scan = HDF5Scan.from_dxchange(moved)  # the client has read the file's layout...
    hidden = tmp_path / "elsewhere.h5"
    moved.rename(hidden)  # ...and the workers then do not find it where the client saw it
    try:
        with pytest.raises(WorkerPathError) as err:
            reconstruct_scan(scan, ReconSettings(center=CENTER), tmp_path / "v.zarr",
                             memory_budget=current_rss_bytes() + 2.5e6, dask=client)
    finally:
        scan.close()
    message = str(err.value)
    assert str(moved) in message and "Dask worker tcp://127.0.0.1:" in message and "shared filesystem" in message
    assert "cannot read the detector file" in message


def test_a_store_the_worker_cannot_see_is_named(scan_file, tmp_path):
    with HDF5Scan.from_dxchange(scan_file) as scan:
        check_visible(scan, _store(tmp_path / "ok.zarr"))  # both visible: no complaint
        with pytest.raises(WorkerPathError, match=f"cannot write the volume store {tmp_path / 'missing.zarr'}"):
            check_visible(scan, tmp_path / "missing.zarr")


def test_a_scan_of_one_slab_stays_in_this_process(client, scan_file, tmp_path):
    info = _reconstruct(scan_file, tmp_path / "v.zarr", 2e9, dask=client)
    assert info["slabs"] == 1 and "dask" not in info


def _store(path):
    from tomobluesky.store import MultiscaleWriter

    MultiscaleWriter(path, (4, 8, 8))
    return path
