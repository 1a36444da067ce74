"""The stop path's parts (tomobluesky/pipeline/_stop.py) on scans of a few rows: what reconstruct_scan returns,
the slab conveyor with and without overlap, the centre's rows, chunk shapes, the flat-field warning, stage
clocks. Fast (well under a second each), so that mutation runs need not wait on the big scans of
test_stop_path.py. Written against mutmut's survivors (docs/testing.md)."""

from __future__ import annotations

import logging
import time

import h5py
import numpy as np
import pytest

from tests.unit.pipeline.test_stop_path import in_memory_reference, write_scan
from tomobluesky import recon
from tomobluesky.pipeline import HDF5Scan, current_rss_bytes, read_sinograms, reconstruct_scan
from tomobluesky.pipeline import _stop
from tomobluesky.pipeline._plan import SlabPlan
from tomobluesky.schema import ReconSettings
from tomobluesky.store import read_level


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return write_scan(tmp_path_factory.mktemp("small") / "s.h5", rows=16, columns=32, angles=40, center=15.7)


def test_center_rows():
    assert _stop.center_rows(3) == [0, 1, 2] and _stop.center_rows(5) == [0, 1, 2, 3, 4]
    assert _stop.center_rows(6) == [1, 2, 3, 4]  # 1, 1.75, 2.5, 3.25, 4 rounded, each once
    assert _stop.center_rows(101) == [20, 35, 50, 65, 80]
    assert _stop.center_rows(101, count=3) == [20, 50, 80] and _stop.center_rows(3, count=2) == [0, 2]
    assert _stop.CENTER_ROWS == 5 and _stop.DEFAULT_BUDGET == 2e9


def test_chunk_depth_and_chunk_shapes():
    assert [_stop._chunk_depth(n, 32) for n in (24, 64, 7, 32, 48, 2)] == [8, 32, 1, 32, 16, 2]
    default = (32, 128, 128)
    assert _stop._chunks_for(32, default) == (32, 128, 128) and _stop._chunks_for(64, default) == (64, 128, 128)
    assert _stop._chunks_for(16, default) == (16, 256, 256) and _stop._chunks_for(8, default) == (8, 256, 256)
    assert _stop._chunks_for(7, default) == (7, 512, 512) and _stop._chunks_for(1, default) == (1, 512, 512)


def test_slab_heights_keep_the_pyramid_blocks_whole():
    assert _stop._pipeline_multiple((40, 96, 96), 16) == 8  # 4 levels: 2**3
    assert _stop._pipeline_multiple((40, 96, 96), 256) == 2  # one level: NUFFT pairs only
    assert _stop._pipeline_multiple((40, 96, 96), 48) == 2  # two levels: lcm(2, 2)
    assert _stop._pipeline_multiple((40, 96, 96), 24) == 4


def test_the_timer_sums_per_stage():
    timer = _stop._Timer()
    t0 = time.perf_counter()
    t1 = timer.add("read", t0)
    assert t1 >= t0 and timer["read"] == pytest.approx(t1 - t0)
    t2 = timer.add("read", t1)
    assert timer["read"] == pytest.approx(t2 - t0) and list(timer) == ["read"]


def test_the_stage_clock_sums_wall_and_cpu_per_stage():
    clock = _stop._StageClock()
    since = (1.0, 2.0, 3.0)
    now = clock("read", since)
    assert len(now) == 3 and all(n >= s for n, s in zip(now, (0, 0, 0)))
    assert clock["read"] == [pytest.approx(n - s) for n, s in zip(now, since)]
    later = clock("read", now)
    assert clock["read"] == [pytest.approx(b - a) for a, b in zip(since, later)]


def test_what_reconstruct_scan_returns_and_the_volume(small, tmp_path):
    progress = []
    with HDF5Scan.from_dxchange(small) as scan:
        info = reconstruct_scan(scan, ReconSettings(center=15.7), tmp_path / "v.zarr", memory_budget=3e9,
                                progress=lambda done, total: progress.append((done, total)),
                                writer_options={"min_size": 8, "chunks": (16, 64, 64)})
    assert (info["center"], info["center_method"], info["center_confidence"]) == (15.7, "given", 1.0)
    assert info["volume_shape"] == [16, 32, 32] and info["levels"] == [[16, 32, 32], [8, 16, 16], [4, 8, 8]]
    assert info["chunks"] == [16, 32, 32]  # tiles no wider than the volume
    assert info["slabs"] == 1 and info["slab_rows"] == 16
    assert info["memory_budget_mb"] == 3000 and info["overlap"] in (True, False)
    assert info["plan_estimate_mb"] >= 0 and info["flat_field_warnings"] == []
    assert 0.9 <= info["read_amplification"] <= 3 and info["peak_rss_mb"] >= current_rss_bytes() / 1e6 * 0.5
    assert set(info["timings"]) == {"center", "read", "reconstruct", "write", "total"}
    assert info["timings"]["total"] >= info["timings"]["reconstruct"] > 0
    assert "pipeline" not in info and "dask" not in info
    assert progress == [(16, 16)]
    reference = in_memory_reference(small, 15.7)
    np.testing.assert_allclose(read_level(tmp_path / "v.zarr", 0), reference, rtol=0,
                               atol=1e-5 * np.abs(reference).max())


@pytest.mark.parametrize("budget_above_rss", [0.0, 4e5])
def test_many_slabs_with_and_without_overlap_give_the_whole_volume(small, tmp_path, budget_above_rss):
    progress = []
    with HDF5Scan.from_dxchange(small) as scan:
        info = reconstruct_scan(scan, ReconSettings(center=15.7), tmp_path / "v.zarr",
                                memory_budget=current_rss_bytes() + budget_above_rss,
                                progress=lambda done, total: progress.append((done, total)),
                                writer_options={"min_size": 8})
    assert info["slabs"] > 1 and info["slab_rows"] * info["slabs"] >= 16
    assert progress == [(min(info["slab_rows"] * (i + 1), 16), 16) for i in range(info["slabs"])]
    assert info["chunks"][0] == info["slab_rows"] & -info["slab_rows"]  # slab boundaries never cut a chunk
    reference = in_memory_reference(small, 15.7)
    np.testing.assert_allclose(read_level(tmp_path / "v.zarr", 0), reference, rtol=0,
                               atol=1e-5 * np.abs(reference).max())


def test_the_conveyor_overlaps_or_not_as_planned(small, tmp_path):
    """_run_slabs on a plan of 3 slabs, overlapped and not: every slab written once, in order, same volume."""
    from tomobluesky.store import MultiscaleWriter

    volumes = []
    for overlap in (False, True):
        with HDF5Scan.from_dxchange(small) as scan:
            work = _stop.SlabWork(scan, ReconSettings(center=15.7), np.radians(scan.theta_deg), 15.7, 1, 8)
            plan = SlabPlan(4, 1, 8, overlap, 0, ((0, 4), (4, 12), (12, 16)))
            writer = MultiscaleWriter(tmp_path / f"v{overlap}.zarr", (16, 32, 32), chunks=(2, 32, 32), min_size=8)
            written, progress, timer = [], [], _stop._Timer()
            write = writer.write_slab
            writer.write_slab = lambda first, volume: (written.append((first, volume.shape)), write(first, volume))
            _stop._run_slabs(work, writer, plan, timer, lambda d, t: progress.append((d, t)))
        assert written == [(0, (4, 32, 32)), (4, (8, 32, 32)), (12, (4, 32, 32))]
        assert progress == [(4, 16), (12, 16), (16, 16)] and set(timer) == {"read", "reconstruct", "write"}
        volumes.append(read_level(tmp_path / f"v{overlap}.zarr", 0))
    # not bit for bit: with overlap the reconstruction runs beside the reading, and the FFTs' threads may sum
    # in another order (seen in CI: 158 of 16,384 voxels 1e-9 apart, on values of 1e-5 to 1e-4)
    np.testing.assert_allclose(volumes[0], volumes[1], rtol=0, atol=1e-8)
    np.testing.assert_allclose(volumes[0], in_memory_reference(small, 15.7), rtol=0, atol=1e-5)


def test_a_slab_already_read_for_the_centre_is_not_read_again(tmp_path):
    path = write_scan(tmp_path / "four.h5", rows=4, columns=32, angles=30, center=15.5)
    with HDF5Scan.from_dxchange(path) as scan:
        seen = {}
        center, info = _stop.find_scan_center(scan, ReconSettings(), seen)
        assert info["center_rows"] == [0, 1, 2, 3] and info["center_method"] == "auto"
        assert 0 <= info["center_confidence"] <= 1 and abs(center - 15.5) <= 1
        assert list(seen) == [(0, 4)]
        np.testing.assert_array_equal(seen[(0, 4)], read_sinograms(scan, slice(0, 4)))
        before = scan.bytes_read
        work = _stop.SlabWork(scan, ReconSettings(), np.radians(scan.theta_deg), center, 1, 8)
        got = work.read((0, 4), seen=seen)
        assert scan.bytes_read == before and seen == {}
        np.testing.assert_array_equal(got, read_sinograms(scan, slice(0, 4)))
    big = write_scan(tmp_path / "tall.h5", rows=12, columns=32, angles=30, center=15.5)
    with HDF5Scan.from_dxchange(big) as scan:
        seen = {}
        _, info = _stop.find_scan_center(scan, ReconSettings(), seen)
        assert info["center_rows"] == [2, 4, 6, 7, 9] and seen == {}  # not one run of rows: nothing to reuse


def test_a_given_centre_reads_nothing(small):
    with HDF5Scan.from_dxchange(small) as scan:
        seen, before = {}, scan.bytes_read
        assert _stop.find_scan_center(scan, ReconSettings(center=12), seen) == (
            12.0, {"center_method": "given", "center_confidence": 1.0})
        assert scan.bytes_read == before and seen == {}


def test_a_scan_of_one_projection_is_refused(tmp_path):
    path = write_scan(tmp_path / "one.h5", rows=4, columns=16, angles=2, center=7.5)
    with h5py.File(path, "r+") as f:
        data, theta = f["/exchange/data"][:1], f["/exchange/theta"][:1]
        del f["/exchange/data"], f["/exchange/theta"]
        f["/exchange/data"], f["/exchange/theta"] = data, theta
    with HDF5Scan.from_dxchange(path) as scan, pytest.raises(ValueError) as err:
        reconstruct_scan(scan, ReconSettings(center=7.5), tmp_path / "v.zarr")
    assert str(err.value) == "scan has 1 projections; a reconstruction needs at least 2"
    assert not (tmp_path / "v.zarr").exists()


def test_non_finite_float_frames_name_the_projections(tmp_path):
    path = write_scan(tmp_path / "nan.h5", rows=4, columns=16, angles=10, center=7.5)
    with h5py.File(path, "r+") as f:
        f["/exchange/data"][7, 1, 3] = np.inf
    with HDF5Scan.from_dxchange(path) as scan:
        with pytest.raises(ValueError) as err:
            read_sinograms(scan, slice(0, 4), frame_block=4)
        assert str(err.value) == "projections 4..8 contain NaN or infinite values"
        with pytest.raises(ValueError, match="projections 0..10 contain"):
            read_sinograms(scan, [1, 2])


def test_pixels_without_beam_are_collected_by_detector_row(tmp_path, caplog):
    path = write_scan(tmp_path / "dead.h5", rows=8, columns=16, angles=10, center=7.5)
    with h5py.File(path, "r+") as f:
        flats = f["/exchange/data_white"][:]
        flats[:, 5, 3] = 0.0
        flats[:, 6, [4, 9]] = 0.0
        f["/exchange/data_white"][...] = flats
    with HDF5Scan.from_dxchange(path) as scan, caplog.at_level(logging.WARNING):
        no_beam = {}
        read_sinograms(scan, slice(4, 8), no_beam=no_beam)
        assert {row: list(cols) for row, cols in no_beam.items()} == {5: [3], 6: [4, 9]}
        no_beam = {}
        read_sinograms(scan, [1, 6], no_beam=no_beam)
        assert {row: list(cols) for row, cols in no_beam.items()} == {6: [4, 9]}
        no_beam = {}
        read_sinograms(scan, slice(None, 2), no_beam=no_beam)
        assert no_beam == {}
        assert caplog.records == []  # collected, not warned per call
        read_sinograms(scan, slice(4, 8))
        assert len(caplog.records) == 1  # without a collector: warned at once
        caplog.clear()
        message = _stop._flat_field_warnings({5: np.array([3]), 6: np.array([4, 9])})
    assert message == [recon.no_beam_message(3, [3, 4, 9], where=" (detector rows 5-6)")]
    assert [r.getMessage() for r in caplog.records] == message
    assert _stop._flat_field_warnings({}) == []


def test_a_slab_runs_its_stages_in_order_with_a_clock(small, tmp_path):
    from tomobluesky.store import MultiscaleWriter

    with HDF5Scan.from_dxchange(small) as scan:
        work = _stop.SlabWork(scan, ReconSettings(center=15.7), np.radians(scan.theta_deg), 15.7, 1, 8, ncore=1)
        writer = MultiscaleWriter(tmp_path / "v.zarr", (16, 32, 32), chunks=(4, 32, 32), min_size=8)
        clock = _stop._StageClock()
        no_beam = {}
        work.run((4, 8), writer, no_beam, clock=clock)
        # a fresh clock is an empty dict: it was taken for "no clock" and the stages went untimed
        assert list(clock) == ["read", "reconstruct", "write"] and all(len(v) == 3 for v in clock.values())
        work.run((8, 12), writer)  # no clock: fine
    volume = read_level(tmp_path / "v.zarr", 0)
    reference = in_memory_reference(small, 15.7)
    np.testing.assert_allclose(volume[4:12], reference[4:12], rtol=0, atol=1e-5 * np.abs(reference).max())
    assert not volume[:4].any() and not volume[12:].any()


def test_ring_removal_in_the_slab_reader(small):
    with HDF5Scan.from_dxchange(small) as scan:
        plain = _stop.SlabWork(scan, ReconSettings(center=15.7), np.radians(scan.theta_deg), 15.7, 1, 8)
        rings = _stop.SlabWork(scan, ReconSettings(center=15.7, ring_removal=True), np.radians(scan.theta_deg),
                               15.7, 1, 8)
        raw = read_sinograms(scan, slice(2, 6))
        np.testing.assert_array_equal(plain.read((2, 6)), raw)
        np.testing.assert_array_equal(rings.read((2, 6)), recon.remove_rings(raw))


def test_the_plan_uses_the_budget_left_and_deep_chunks_when_they_fit(small):
    with HDF5Scan.from_dxchange(small) as scan:
        roomy = _stop._plan(scan, ReconSettings(), (16, 32, 32), current_rss_bytes() + 1e9, 8, 16)
        assert roomy.fits and roomy.slab_rows % 16 == 0 and roomy.slabs == ((0, 16),)
        tight = _stop._plan(scan, ReconSettings(), (16, 32, 32), 0, 8, 16)
        assert not tight.fits and tight.slab_rows % 4 == 0 and tight.slab_rows < 16
        assert _stop._frame_count(scan) == 3 + 2


def test_the_store_gets_the_pixel_size_attributes_and_chunk_depth_asked_for(small, tmp_path, caplog):
    import zarr

    with HDF5Scan.from_dxchange(small) as scan, caplog.at_level(logging.INFO, logger=_stop.__name__):
        info = reconstruct_scan(scan, ReconSettings(center=15.7), tmp_path / "v.zarr", pixel_size=0.65,
                                attributes={"scan_id": 42}, writer_options={"min_size": 8, "chunks": (4, 64, 64)})
    assert info["chunks"] == [4, 32, 32]  # the depth asked for, tiles no wider than the volume
    attrs = zarr.open_group(tmp_path / "v.zarr", mode="r").attrs.asdict()
    assert attrs["scan_id"] == 42
    scales = [t for d in attrs["ome"]["multiscales"][0]["datasets"] for t in d["coordinateTransformations"]
              if t["type"] == "scale"]
    assert scales[0]["scale"] == [0.65, 0.65, 0.65]
    (message,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stop path:")]
    assert message.startswith("stop path: 16 rows × 40 angles × 32 columns in SlabPlan(1 slabs of ")


def test_two_projections_are_enough(tmp_path):
    path = write_scan(tmp_path / "two.h5", rows=4, columns=16, angles=2, center=7.5)
    with HDF5Scan.from_dxchange(path) as scan:
        info = reconstruct_scan(scan, ReconSettings(center=7.5), tmp_path / "v.zarr")
    assert info["volume_shape"] == [4, 16, 16] and np.isfinite(read_level(tmp_path / "v.zarr", 0)).all()


def test_a_scan_of_a_few_rows_is_read_once_with_its_centre(tmp_path):
    path = write_scan(tmp_path / "few.h5", rows=4, columns=32, angles=30, center=15.5)
    with HDF5Scan.from_dxchange(path) as scan:
        info = reconstruct_scan(scan, ReconSettings(), tmp_path / "v.zarr")
    # read again for the slab, it would be about 2.5
    assert info["center_rows"] == [0, 1, 2, 3] and info["read_amplification"] < 2.0, info["read_amplification"]


def test_tiles_widen_from_each_default_width():
    assert _stop._chunks_for(8, (32, 64, 128)) == (8, 128, 256) and _stop._chunks_for(4, (32, 64, 128)) == (4, 256, 512)


def test_a_slab_run_collects_pixels_without_beam(tmp_path):
    from tomobluesky.store import MultiscaleWriter

    path = write_scan(tmp_path / "dead.h5", rows=8, columns=16, angles=10, center=7.5)
    with h5py.File(path, "r+") as f:
        flats = f["/exchange/data_white"][:]
        flats[:, 5, 3] = 0.0
        f["/exchange/data_white"][...] = flats
    with HDF5Scan.from_dxchange(path) as scan:
        work = _stop.SlabWork(scan, ReconSettings(center=7.5), np.radians(scan.theta_deg), 7.5, 1, 8)
        writer = MultiscaleWriter(tmp_path / "v.zarr", (8, 16, 16), chunks=(4, 16, 16), min_size=8)
        no_beam = {}
        work.run((4, 8), writer, no_beam)
    assert {row: list(cols) for row, cols in no_beam.items()} == {5: [3]}


def test_slabs_follow_the_writers_default_pyramid(tmp_path):
    """514 columns: levels 514 -> 257 -> 129 with the writer's default min_size of 256, so slabs must be whole
    blocks of 4 rows; the plan must count the same levels as the writer."""
    path = write_scan(tmp_path / "wide.h5", rows=8, columns=514, angles=6, center=256.5)
    with HDF5Scan.from_dxchange(path) as scan:
        info = reconstruct_scan(scan, ReconSettings(center=256.5), tmp_path / "v.zarr", memory_budget=0)
    assert len(info["levels"]) == 3 and info["slab_rows"] == 4 and info["slabs"] == 2  # the smallest slab: one block


def test_sinogram_details(tmp_path, caplog):
    path = write_scan(tmp_path / "tall.h5", rows=16, columns=8, angles=6, center=3.5)  # more rows than columns
    with h5py.File(path, "r+") as f:
        flats = f["/exchange/data_white"][:]
        flats[:, 12, 2] = 0.0
        f["/exchange/data_white"][...] = flats
    with HDF5Scan.from_dxchange(path) as scan, caplog.at_level(logging.WARNING):
        no_beam = {}
        got = read_sinograms(scan, slice(8, None), no_beam=no_beam)
        assert got.dtype == np.float32 and got.shape == (8, 6, 8)
        assert {row: list(cols) for row, cols in no_beam.items()} == {12: [2]}
        read_sinograms(scan, slice(10, 14))
    (message,) = [r.getMessage() for r in caplog.records]
    assert " in detector rows slice(10, 14, None)" in message


def test_the_centre_rows_of_a_short_detector_are_kept_for_the_slab(tmp_path):
    path = write_scan(tmp_path / "six.h5", rows=6, columns=32, angles=20, center=15.5)
    with HDF5Scan.from_dxchange(path) as scan:
        seen = {}
        _, info = _stop.find_scan_center(scan, ReconSettings(), seen)
        assert info["center_rows"] == [1, 2, 3, 4] and list(seen) == [(1, 5)]


def test_the_plan_counts_flats_darks_itemsize_and_ring_removal(small):
    from tomobluesky.pipeline import plan_slabs

    with HDF5Scan.from_dxchange(small) as scan:
        plain = _stop._plan(scan, ReconSettings(), (16, 32, 32), 0, 8, 16)
        assert plain == plan_slabs(16, 40, 32, budget_bytes=0, multiple=4, flats_darks=5, ring_removal=False,
                                   itemsize=4)
        for rings in (_stop._plan(scan, ReconSettings(), (16, 32, 32), 0, 8, 16, sinogram_steps=True),
                      _stop._plan(scan, ReconSettings(ring_removal=True), (16, 32, 32), 0, 8, 16)):
            assert rings == plan_slabs(16, 40, 32, budget_bytes=0, multiple=4, flats_darks=5, ring_removal=True,
                                       itemsize=4)
            assert rings.estimate_bytes > plain.estimate_bytes


# --- the report's numbers against what they count, the plan's inputs, the volume steps' outputs ------------------

def test_the_reports_numbers_are_what_was_read_spent_and_planned(small, tmp_path):
    """read_amplification from the scan's own byte count (bytes read before the call not counted), the peak RSS
    and timings as rounded, the budget and plan estimate in MB (10^6 bytes)."""
    from tomobluesky.pipeline import _resources

    with HDF5Scan.from_dxchange(small) as scan:
        read_sinograms(scan, slice(0, 16))  # a whole pass before the call: not the call's reading
        before = scan.bytes_read
        assert before > 0
        called = time.perf_counter()
        info = reconstruct_scan(scan, ReconSettings(), tmp_path / "v.zarr", memory_budget=2500.501e6,
                                writer_options={"min_size": 8})
        elapsed = time.perf_counter() - called
        peak = _resources.peak_rss_mb()
        read, raw = scan.bytes_read - before, scan.raw_bytes
        plan = _stop._plan(scan, ReconSettings(), (16, 32, 32), 2500.501e6, 8, 32)  # as planned: default chunks
    assert raw == (40 + 3 + 2) * 16 * 32 * 4
    # the centre's five spread rows, then every row once for the one slab: 21 of 16 rows' bytes, plus HDF5's own
    # metadata (a fifth of this tiny file); a second pass over the scan would make it 37 of 16
    assert info["center_rows"] == _stop.center_rows(16) and len(info["center_rows"]) == 5 and info["slabs"] == 1
    assert info["read_amplification"] == round(read / raw, 3)
    assert 21 / 16 <= info["read_amplification"] < 2, info["read_amplification"]
    assert info["peak_rss_mb"] == round(peak, 1) and info["peak_rss_mb"] >= current_rss_bytes() / 1e6 - 0.1
    assert info["memory_budget_mb"] == 2501  # 2500.501 MB rounds up
    assert plan.slabs == ((0, 16),) and info["plan_estimate_mb"] == round(plan.estimate_bytes / 1e6) >= 1
    assert set(info["timings"]) == {"center", "read", "reconstruct", "write", "total"}
    assert all(v == round(v, 4) and v > 0 for v in info["timings"].values())
    # the call's own seconds: at least its stages that never overlap, at most the time the call took
    assert info["timings"]["center"] + info["timings"]["reconstruct"] <= info["timings"]["total"] <= elapsed + 1e-4


def test_the_dask_key_only_with_dask(small, tmp_path):
    with HDF5Scan.from_dxchange(small) as scan:
        info = reconstruct_scan(scan, ReconSettings(center=15.7), tmp_path / "v.zarr", dask=None,
                                memory_budget=current_rss_bytes(), writer_options={"min_size": 8})
    assert info["slabs"] == 4 and "dask" not in info and "pipeline" not in info and "step_outputs" not in info


def _planning_scan(dtype="float32"):
    """A scan's layout without its file: _plan reads only counts and the dtype."""
    from pathlib import Path

    from tomobluesky.pipeline import FrameRun

    def run(n):
        return [FrameRun(Path("not-read.h5"), "/exchange/data", 0, n)]

    return HDF5Scan(run(90), np.linspace(0, 180, 90, endpoint=False), run(3), run(2), (64, 128), dtype)


def _budget_for(rows, multiple, itemsize=4):
    """Bytes above this process's RSS for which plan_slabs gives slabs of ``rows`` at ``multiple``."""
    from tomobluesky.pipeline import plan_slabs

    budget = 1e6
    while plan_slabs(64, 90, 128, budget_bytes=budget, multiple=multiple, flats_darks=5,
                     itemsize=itemsize).slab_rows < rows:
        budget += 2e5
    return budget


def test_deep_slabs_are_whole_chunks_and_whole_pyramid_blocks():
    """The budget fits 24 rows at the pyramid's multiple (4); whole 16-deep chunks take 16. With chunks of 4 and a
    pyramid of 4 levels (blocks of 8), a budget of 12 rows takes 8: a slab must end on both."""
    scan = _planning_scan()
    shape = (64, 128, 128)
    deep = _stop._plan(scan, ReconSettings(), shape, current_rss_bytes() + _budget_for(24, 4), 32, 16)
    assert deep.fits and deep.slab_rows == 16 and deep.slabs[:2] == ((0, 16), (16, 32))
    both = _stop._plan(scan, ReconSettings(), shape, current_rss_bytes() + _budget_for(12, 4), 16, 4)
    assert both.fits and both.slab_rows == 8


def test_the_plan_counts_the_frames_bytes_as_stored():
    from tomobluesky.pipeline import plan_slabs

    shape = (64, 128, 128)
    for dtype, itemsize in (("uint16", 2), ("float32", 4)):
        got = _stop._plan(_planning_scan(dtype), ReconSettings(), shape, 0, 32, 16)
        assert got == plan_slabs(64, 90, 128, budget_bytes=0, multiple=4, flats_darks=5, itemsize=itemsize)
    assert _stop._plan(_planning_scan("uint16"), ReconSettings(), shape, 0, 32, 16).estimate_bytes < \
        _stop._plan(_planning_scan("float32"), ReconSettings(), shape, 0, 32, 16).estimate_bytes


def _segmenting(settings):
    from tomobluesky.pipeline._steps import scan_pipeline

    return scan_pipeline(settings, [{"step": "normalize"}, {"step": "minus_log"}, {"step": "reconstruct"},
                                    {"step": "segment", "params": {"sigma": 1.0, "voxel_size_um": 2.0}}])


def test_volume_steps_write_where_asked_with_the_scans_attributes(small, tmp_path):
    import zarr

    settings = ReconSettings(center=15.7)
    with HDF5Scan.from_dxchange(small) as scan:
        info = reconstruct_scan(scan, settings, tmp_path / "v.zarr", pipeline=_segmenting(settings),
                                steps_output=tmp_path / "elsewhere", attributes={"scan_id": 42},
                                writer_options={"min_size": 8})
    labels = info["step_outputs"]["arrays"]["segment/labels"]
    assert labels == str(tmp_path / "elsewhere" / "segment" / "labels") and not (tmp_path / "v.steps").exists()
    attrs = zarr.open_group(labels, mode="r").attrs.asdict()
    assert attrs["scan_id"] == 42 and attrs["step"] == "segment"
    assert info["timings"]["volume_steps"] > 0 and [e["step"] for e in info["pipeline"]][-1] == "segment"


def test_volume_steps_left_to_the_caller_do_not_run(small, tmp_path):
    settings = ReconSettings(center=15.7)
    with HDF5Scan.from_dxchange(small) as scan:
        info = reconstruct_scan(scan, settings, tmp_path / "v.zarr", pipeline=_segmenting(settings),
                                volume_steps=False, writer_options={"min_size": 8})
        default = reconstruct_scan(scan, settings, tmp_path / "w.zarr", pipeline=_segmenting(settings),
                                   writer_options={"min_size": 8})
    assert info["step_outputs"] is None and "volume_steps" not in info["timings"]
    assert not (tmp_path / "v.steps").exists() and [e["step"] for e in info["pipeline"]][-1] == "segment"
    assert default["step_outputs"]["arrays"]["segment/labels"] == str(tmp_path / "w.steps" / "segment" / "labels")


def _mean_flats():
    """A pipeline whose projection steps are not the stop path's own reading (mean flats, not median)."""
    from tomobluesky.pipeline._steps import scan_pipeline

    return scan_pipeline(ReconSettings(), [{"step": "normalize", "params": {"averaging": "mean"}},
                                           {"step": "minus_log"}, {"step": "reconstruct"}])


def test_a_scan_whose_steps_read_otherwise_is_read_and_centred_through_them(small, tmp_path):
    """Mean flats: the slabs are read through the steps (not the median reading), and the centre is searched on
    adjacent middle rows read through them too; the volume is the batch reconstruction of mean-normalised data."""
    with h5py.File(small) as f:
        frames, flats, darks = f["/exchange/data"][:], f["/exchange/data_white"][:], f["/exchange/data_dark"][:]
        theta = np.radians(f["/exchange/theta"][:])
    normalised = recon.minus_log(recon.normalize(frames, flats, darks, averaging="mean"))
    with HDF5Scan.from_dxchange(small) as scan:
        work = _stop.SlabWork(scan, ReconSettings(), np.radians(scan.theta_deg), 15.7, 1, 8, pipeline=_mean_flats())
        got = work.read((4, 8))
        np.testing.assert_allclose(got, normalised[:, 4:8].transpose(1, 0, 2), rtol=1e-5, atol=1e-6)
        assert np.abs(got - read_sinograms(scan, slice(4, 8))).max() > 1e-3  # the median reading differs
        info = reconstruct_scan(scan, ReconSettings(), tmp_path / "v.zarr", pipeline=_mean_flats(),
                                memory_budget=current_rss_bytes(), writer_options={"min_size": 8})
    assert info["center_rows"] == [6, 7, 8, 9, 10] and info["slabs"] > 1 and abs(info["center"] - 15.7) < 1
    reference = recon.reconstruct(np.ascontiguousarray(normalised.transpose(1, 0, 2)), theta, info["center"],
                                  sinogram_order=True, filter_name=ReconSettings().filter_name)
    np.testing.assert_allclose(read_level(tmp_path / "v.zarr", 0), reference, rtol=0,
                               atol=1e-5 * np.abs(reference).max())


def test_sinogram_steps_are_planned_for(tmp_path):
    """A sinogram step (rings) may need a second slab-sized array: the plan counts it (here 1.5 MB more)."""
    from tomobluesky.pipeline._steps import scan_pipeline

    path = write_scan(tmp_path / "s.h5", rows=32, columns=64, angles=180, center=31.5)
    settings = ReconSettings(center=31.5)
    rings = scan_pipeline(settings, [{"step": "normalize"}, {"step": "minus_log"}, {"step": "rings"},
                                     {"step": "reconstruct"}])
    with HDF5Scan.from_dxchange(path) as scan:
        plain = reconstruct_scan(scan, settings, tmp_path / "plain.zarr", pipeline=scan_pipeline(settings))
        ringed = reconstruct_scan(scan, settings, tmp_path / "rings.zarr", pipeline=rings)
        planned = {flag: _stop._plan(scan, settings, (32, 64, 64), 2e9, 256, 32, sinogram_steps=flag)
                   for flag in (False, True)}
    assert plain["slabs"] == ringed["slabs"] == 1
    assert plain["plan_estimate_mb"] == round(planned[False].estimate_bytes / 1e6)
    assert ringed["plan_estimate_mb"] == round(planned[True].estimate_bytes / 1e6) > plain["plan_estimate_mb"]


def test_two_scans_of_one_file_read_side_by_side_in_one_process(small):
    """Two slabs of one file read at once in one process (a Dask worker of two threads does this), here
    interleaved block by block: each gets its own rows. Two open handles of one dataset broke each other's reads
    in SWMR mode ("can't insert duplicate key") and then crashed the process; a scan now holds none between blocks."""
    with h5py.File(small) as f:
        frames = f["/exchange/data"][:]
    with HDF5Scan.from_dxchange(small) as first, HDF5Scan.from_dxchange(small) as second:
        a = first.iter_rows("projections", slice(0, 4), frame_block=8)
        b = second.iter_rows("projections", slice(4, 8), frame_block=8)
        blocks = [(next(a), next(b)) for _ in range(3)]
        first.close()  # one scan done (a slab's task closes its files) while the other still reads
        rest = list(b)
    got_a = np.concatenate([x[1] for x, _ in blocks])
    got_b = np.concatenate([y[1] for _, y in blocks] + [block for _, block in rest])
    np.testing.assert_array_equal(got_a, frames[:24, 0:4])
    np.testing.assert_array_equal(got_b, frames[:, 4:8])


def _recording_pipeline(seen_shapes):
    """Mean flats (read through the steps), then a sinogram step that notes the shape of what it is given."""
    from tomobluesky.steps import Pipeline, Stage, Step

    def note(sinograms):
        seen_shapes.append(sinograms.shape)
        return sinograms

    default = _mean_flats().stages  # normalize (mean), minus_log, reconstruct
    step = Step("note", note, "sinograms", 0, False, "myplugin", "1.0", "myplugin:note")
    return Pipeline([default[0], default[1], Stage(step, {}), default[2]])


@pytest.mark.parametrize("rows, expected", [(16, [6, 7, 8, 9, 10]), (4, [0, 1, 2, 3])])
def test_the_centre_searched_through_the_steps_sees_every_middle_row(tmp_path, rows, expected):
    path = write_scan(tmp_path / "s.h5", rows=rows, columns=32, angles=30, center=15.5)
    shapes = []
    with HDF5Scan.from_dxchange(path) as scan:
        center, info = _stop.find_scan_center(scan, ReconSettings(), pipeline=_recording_pipeline(shapes))
    assert info["center_rows"] == expected and shapes == [(len(expected), 30, 32)] and abs(center - 15.5) < 1
