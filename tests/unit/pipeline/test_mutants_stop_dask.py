"""The stop path's Dask branch (``_run_on_dask`` and what ``reconstruct_scan`` reports from it) on a LocalCluster of
two single-threaded worker processes and scans of a few rows (a few seconds in all, for mutation runs). The Dask
volume is checked against the in-process conveyor's, the report's numbers against the per-slab reports they are
summed from and the scan's own byte count. Written against mutmut's survivors (docs/testing.md)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.unit.pipeline.test_stop_path import write_scan
from tomobluesky.pipeline import HDF5Scan, current_rss_bytes, reconstruct_scan
from tomobluesky.pipeline import _stop
from tomobluesky.pipeline._plan import SlabPlan
from tomobluesky.schema import ReconSettings
from tomobluesky.store import MultiscaleWriter, read_level

distributed = pytest.importorskip("distributed")

CENTER = 15.7
STAGES = ("open", "read", "reconstruct", "write")


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each, as the embedded default makes on a 2-core machine."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as c:
        yield c


def _dead_strip(path, rows, columns):
    """Flats below the dark (100) in detector rows ``rows``, columns ``columns``: pixels without beam."""
    with h5py.File(path, "r+") as f:
        flats = f["/exchange/data_white"][...]
        flats[:, rows, columns] = 50.0
        f["/exchange/data_white"][...] = flats
    return path


@pytest.fixture(scope="module")
def two_slabs(tmp_path_factory):
    """8 rows: at the smallest slab (4 rows, a pyramid block of 3 levels) exactly two slabs."""
    path = write_scan(tmp_path_factory.mktemp("two") / "s.h5", rows=8, columns=32, angles=40, center=CENTER)
    return _dead_strip(path, slice(5, 7), slice(3, 5))


@pytest.fixture(scope="module")
def four_slabs(tmp_path_factory):
    path = write_scan(tmp_path_factory.mktemp("four") / "s.h5", rows=16, columns=32, angles=40, center=CENTER)
    return _dead_strip(path, slice(9, 11), slice(20, 22))


def _reconstruct(path, output, **kwargs):
    progress = []
    with HDF5Scan.from_dxchange(path) as scan:
        info = reconstruct_scan(scan, ReconSettings(center=CENTER), output, memory_budget=current_rss_bytes(),
                                writer_options={"min_size": 8}, progress=lambda d, t: progress.append((d, t)),
                                **kwargs)
        raw = scan.raw_bytes
    return info, progress, raw


def test_two_slabs_go_to_dask_and_give_the_in_process_volume(client, two_slabs, tmp_path):
    here, _, _ = _reconstruct(two_slabs, tmp_path / "here.zarr")
    info, progress, raw = _reconstruct(two_slabs, tmp_path / "dask.zarr", dask=client)
    assert info["slabs"] == here["slabs"] == 2 and info["slab_rows"] == 4 and "dask" not in here
    report = info["dask"]
    # the same slabs through the same engine: the same voxels, at every level, up to the NUFFT's own precision
    # (the tasks run it on one thread, this process on all: its sums come in another order)
    for level in range(3):
        here_level = read_level(tmp_path / "here.zarr", level)
        np.testing.assert_allclose(read_level(tmp_path / "dask.zarr", level), here_level, rtol=0,
                                   atol=1e-5 * np.abs(here_level).max())
    assert np.abs(read_level(tmp_path / "dask.zarr", 0)).max() > 0.01
    # who ran what
    assert report["scheduler"] == client.scheduler.address
    assert report["workers"] == len(client.scheduler_info()["workers"]) == 2
    per_slab = report["per_slab"]
    assert [r["slab"] for r in per_slab] == [[0, 4], [4, 8]]
    assert report["workers_used"] == sorted({r["worker"] for r in per_slab})
    assert {r["worker"].split(" ")[0] for r in per_slab} <= set(client.scheduler_info()["workers"])
    assert report["worker_peak_rss_mb"] == {w: max(r["worker_peak_rss_mb"] for r in per_slab if r["worker"] == w)
                                            for w in report["workers_used"]}
    assert all(mb > 10 for mb in report["worker_peak_rss_mb"].values())  # a real process's peak, not a default
    # the pixels without beam travel back once, into the scan's one warning, and out of the slab reports
    assert all("no_beam" not in r for r in per_slab)
    assert info["flat_field_warnings"] == here["flat_field_warnings"] and len(here["flat_field_warnings"]) == 1
    assert "4 pixels (detector rows 5-6), in columns 3-4" in info["flat_field_warnings"][0]
    # progress in detector rows (8), not columns (32), slab by slab
    assert sorted(progress) == [(4, 8), (8, 8)]
    assert report["bytes_read"] == sum(r["bytes_read"] for r in per_slab) > 0
    # a given centre reads nothing here: every byte was read by the workers, about one pass over the file
    assert info["read_amplification"] == round(report["bytes_read"] / raw, 3)
    assert 0.95 <= info["read_amplification"] <= 1.5


def test_a_scan_of_one_slab_stays_in_this_process(client, two_slabs, tmp_path):
    with HDF5Scan.from_dxchange(two_slabs) as scan:
        info = reconstruct_scan(scan, ReconSettings(center=CENTER), tmp_path / "v.zarr", memory_budget=3e9,
                                writer_options={"min_size": 8}, dask=client)
    assert info["slabs"] == 1 and "dask" not in info and "slabs_wall" not in info["timings"]
    assert set(info["timings"]) == {"center", "read", "reconstruct", "write", "total"}


def test_the_report_sums_the_workers_stage_times(client, two_slabs, tmp_path):
    info, _, _ = _reconstruct(two_slabs, tmp_path / "dask.zarr", dask=client)
    timings, per_slab = info["timings"], info["dask"]["per_slab"]
    assert set(timings) == {"center", *STAGES, "slabs_wall", "total"}
    for stage in STAGES:  # each stage's wall seconds, summed over the slabs (rounded to 4 decimals twice)
        assert timings[stage] == pytest.approx(sum(r["stages"][stage][0] for r in per_slab), abs=2e-4)
        assert timings[stage] > 0
    # the slabs' wall time on the client: at most the whole call, at least the longest slab's own stages
    assert max(sum(w for w, *_ in r["stages"].values()) for r in per_slab) - 1e-3 <= timings["slabs_wall"]
    assert timings["slabs_wall"] <= timings["total"]
    assert all(v == round(v, 4) for v in timings.values())


def test_slabs_are_reported_in_row_order_whatever_order_they_finish_in(client, four_slabs, tmp_path):
    """Slabs submitted last row first: with two workers, the slab of row 0 cannot finish first."""
    with HDF5Scan.from_dxchange(four_slabs) as scan:
        work = _stop.SlabWork(scan, ReconSettings(center=CENTER), np.radians(scan.theta_deg), CENTER, 1, 8)
        writer = MultiscaleWriter(tmp_path / "v.zarr", (16, 32, 32), chunks=(4, 32, 32), min_size=8)
        plan = SlabPlan(4, 1, 8, False, 0, ((12, 16), (8, 12), (4, 8), (0, 4)))
        timer, no_beam, progress = _stop._Timer(), {}, []
        report = _stop._run_on_dask(client, work, writer, plan, timer, lambda d, t: progress.append((d, t)), no_beam)
    assert [r["slab"] for r in report["per_slab"]] == [[0, 4], [4, 8], [8, 12], [12, 16]]
    assert [d for d, _ in progress] == [4, 8, 12, 16] and {t for _, t in progress} == {16}
    assert {row: list(cols) for row, cols in no_beam.items()} == {9: [20, 21], 10: [20, 21]}
    assert set(timer) == {*STAGES, "slabs_wall"}
    reference = read_level(tmp_path / "v.zarr", 0)
    with HDF5Scan.from_dxchange(four_slabs) as scan:
        here = _stop.SlabWork(scan, ReconSettings(center=CENTER), np.radians(scan.theta_deg), CENTER, 1, 8)
        expected = here.reconstruct(here.read((0, 16)))
    np.testing.assert_allclose(reference, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_slabs_that_cut_the_stores_chunks_are_refused_before_any_task(client, four_slabs, tmp_path):
    with HDF5Scan.from_dxchange(four_slabs) as scan:
        work = _stop.SlabWork(scan, ReconSettings(center=CENTER), np.radians(scan.theta_deg), CENTER, 1, 8)
        writer = MultiscaleWriter(tmp_path / "v.zarr", (16, 32, 32), chunks=(4, 32, 32), min_size=8)
        assert writer.slab_alignment == 4
        plan = SlabPlan(2, 1, 8, False, 0, tuple((r, r + 2) for r in range(0, 16, 2)))
        with pytest.raises(RuntimeError) as err:
            _stop._run_on_dask(client, work, writer, plan, _stop._Timer(), None, {})
    assert str(err.value) == ("slabs of 2 rows cut the store's chunks (alignment 4): they cannot be written in "
                              "parallel")
    assert not read_level(tmp_path / "v.zarr", 0).any()  # nothing was written


def test_a_worker_of_two_threads_runs_two_slabs_of_one_file_at_once(four_slabs, tmp_path):
    """_dask.py's promise: a worker with T threads reconstructs T slabs at once. Both threads read the same
    detector file; that crashed the worker (HDF5Scan: two handles of one dataset in one process)."""
    here, _, _ = _reconstruct(four_slabs, tmp_path / "here.zarr")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as two_threads:
        info, _, _ = _reconstruct(four_slabs, tmp_path / "dask.zarr", dask=two_threads)
    assert info["slabs"] == 4 and len(info["dask"]["workers_used"]) == 1
    expected = read_level(tmp_path / "here.zarr", 0)
    np.testing.assert_allclose(read_level(tmp_path / "dask.zarr", 0), expected, rtol=0,
                               atol=1e-5 * np.abs(expected).max())
    assert info["flat_field_warnings"] == here["flat_field_warnings"]
