"""The stop path: slab by slab from the detector file, the same volume as the whole scan in memory."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tomobluesky import recon
from tomobluesky.recon._phantom import project_shepp_logan
from tomobluesky.pipeline import (FrameReadError, FrameRun, HDF5Scan, current_rss_bytes, plan_slabs,
                                  read_sinograms, reconstruct_scan, runs_from_indices)
from tomobluesky.schema import ReconSettings
from tomobluesky.store import open_multiscale, read_level


def write_scan(path, rows, columns, angles, *, center=None, dtype="float32", flats=3, darks=2, seed=0):
    """A frame-chunked Data Exchange file of the phantom with counts, flats and darks, as the camera writes."""
    rng = np.random.default_rng(seed)
    theta = np.linspace(0, np.pi, angles, endpoint=False)
    if rows * angles * columns <= 2e6:
        sino = project_shepp_logan(rows, columns, theta, center=center) * 0.02
    else:  # big scans for memory tests: one slice's exact sinogram, scaled per row (cheap to make)
        sino = (project_shepp_logan(None, columns, theta, center=center) * 0.02)[None] \
            * np.linspace(0.5, 1, rows, dtype=np.float32)[:, None, None]
    flat, dark = 20000.0, 100.0
    counts = dark + flat * np.exp(-np.swapaxes(sino, 0, 1))  # (angles, rows, columns)
    with h5py.File(path, "w") as f:
        chunks = (1, rows, columns)
        f.create_dataset("/exchange/data", data=counts.astype(dtype), chunks=chunks)
        f.create_dataset("/exchange/data_white",
                         data=(dark + flat + rng.normal(0, 30, (flats, rows, columns))).astype(dtype), chunks=chunks)
        f.create_dataset("/exchange/data_dark",
                         data=(dark + rng.normal(0, 3, (darks, rows, columns))).astype(dtype), chunks=chunks)
        f.create_dataset("/exchange/theta", data=np.degrees(theta))
        f["/exchange/theta"].attrs["units"] = "degrees"
    return path


def in_memory_reference(path, center):
    """The whole scan in memory: normalise, −log, transpose, reconstruct."""
    with h5py.File(path) as f:
        data = recon.minus_log(recon.normalize(f["/exchange/data"][:], f["/exchange/data_white"][:],
                                               f["/exchange/data_dark"][:], averaging="median"))
        theta = np.radians(f["/exchange/theta"][:])
    return recon.reconstruct(np.ascontiguousarray(np.swapaxes(data, 0, 1)), theta, center, sinogram_order=True,
                             filter_name=ReconSettings().filter_name)  # the stop path's default window


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    return write_scan(tmp_path_factory.mktemp("scan") / "scan.h5", rows=40, columns=96, angles=120, center=50.3)


def test_a_scan_larger_than_the_budget_equals_the_whole_scan_in_memory(scan_file, tmp_path):
    # budget: what the process uses now plus 2.5 MB; the scan alone is 4.4 MB of frames and 1.5 MB of volume
    settings = ReconSettings(center=50.3)
    with HDF5Scan.from_dxchange(scan_file) as scan:
        info = reconstruct_scan(scan, settings, tmp_path / "v.zarr", memory_budget=current_rss_bytes() + 2.5e6)
    assert info["slabs"] >= 4 and info["slab_rows"] * info["slabs"] >= 40
    volume = read_level(tmp_path / "v.zarr", 0)
    reference = in_memory_reference(scan_file, 50.3)
    assert volume.shape == reference.shape == (40, 96, 96)
    assert np.abs(volume - reference).max() <= 1e-5 * np.abs(reference).max()


def test_the_volume_matches_the_phantom_and_the_centre_is_found(scan_file, tmp_path):
    with HDF5Scan.from_dxchange(scan_file) as scan:
        info = reconstruct_scan(scan, ReconSettings(), tmp_path / "v.zarr")
    assert abs(info["center"] - 50.3) <= 0.5, info["center"]
    volume = read_level(tmp_path / "v.zarr", 0)
    truth = recon.shepp_logan_3d(40, 96, supersample=4)[20] * 0.02
    assert recon.ssim_in_circle(volume[20], truth) > 0.75
    assert recon.rmse_in_circle(volume[20], truth) < 0.2 * truth.max()


def test_pyramid_levels_of_the_written_volume_are_block_means(scan_file, tmp_path):
    with HDF5Scan.from_dxchange(scan_file) as scan:
        reconstruct_scan(scan, ReconSettings(center=50.3), tmp_path / "v.zarr",
                         memory_budget=current_rss_bytes() + 6e6, writer_options={"min_size": 16})
    levels = [a[...] for a in open_multiscale(tmp_path / "v.zarr")]
    assert [lv.shape for lv in levels] == [(40, 96, 96), (20, 48, 48), (10, 24, 24), (5, 12, 12)]
    for fine, coarse in zip(levels, levels[1:]):
        means = fine.reshape(coarse.shape[0], 2, coarse.shape[1], 2, coarse.shape[2], 2).mean(axis=(1, 3, 5))
        np.testing.assert_allclose(coarse, means, rtol=1e-5, atol=1e-7)


def test_uint16_frames_read_once_however_many_slabs(tmp_path):
    path = write_scan(tmp_path / "u16.h5", rows=64, columns=128, angles=90, dtype="uint16")
    with HDF5Scan.from_dxchange(path) as scan:
        assert scan.dtype == np.uint16
        info = reconstruct_scan(scan, ReconSettings(center=63.5), tmp_path / "v.zarr",
                                memory_budget=current_rss_bytes() + 3e6)
    assert info["slabs"] >= 8
    # HDF5 reads only the selected rows of each frame chunk: about one pass over the file in all (plus the
    # chunk index, which weighs a lot in a file this small), where whole-chunk reads would cost one pass per slab
    assert 0.95 <= info["read_amplification"] <= 1.5, info["read_amplification"]
    reference = in_memory_reference(path, 63.5)
    np.testing.assert_allclose(read_level(tmp_path / "v.zarr", 0), reference, rtol=0,
                               atol=1e-5 * np.abs(reference).max())


def test_sinograms_of_some_rows_equal_the_whole_normalisation(scan_file):
    with h5py.File(scan_file) as f:
        whole = recon.minus_log(recon.normalize(f["/exchange/data"][:], f["/exchange/data_white"][:],
                                                f["/exchange/data_dark"][:], averaging="median"))
    with HDF5Scan.from_dxchange(scan_file) as scan:
        part = read_sinograms(scan, slice(7, 19), frame_block=16)
        picked = read_sinograms(scan, [3, 20, 33])
    np.testing.assert_array_equal(part, np.swapaxes(whole[:, 7:19], 0, 1))
    np.testing.assert_array_equal(picked, np.swapaxes(whole[:, [3, 20, 33]], 0, 1))


def test_slab_plans_follow_the_budget_not_the_scan():
    small = plan_slabs(512, 1500, 2048, budget_bytes=1.5e9, multiple=8)
    large = plan_slabs(512, 1500, 2048, budget_bytes=6e9, multiple=8)
    assert small.slab_rows % 8 == 0 and large.slab_rows % 8 == 0
    assert small.slab_rows < large.slab_rows and small.estimate_bytes <= 1.5e9 < large.estimate_bytes
    assert small.slabs[0] == (0, small.slab_rows) and small.slabs[-1][1] == 512
    assert all(b[0] == a[1] for a, b in zip(small.slabs, small.slabs[1:]))
    doubled = plan_slabs(1024, 1500, 2048, budget_bytes=1.5e9, multiple=8)
    assert doubled.slab_rows == small.slab_rows and len(doubled.slabs) == 2 * len(small.slabs)
    tiny = plan_slabs(64, 1500, 2048, budget_bytes=1e6, multiple=4)
    assert tiny.slab_rows == 4 and not tiny.overlap and tiny.batch_pairs == 1 and not tiny.fits
    assert small.fits and large.fits


def test_every_core_s_plan_is_counted_against_the_budget():
    """The CPU engine keeps a NUFFT plan per thread (recon._nufft.nufft_fbp_threads), each with its sort of the
    polar points (16 bytes a point): one more plan, 16 × 1500 × 3072 bytes less for the slabs."""
    from tomobluesky.pipeline._plan import nufft_bytes

    points = 1500 * 3072
    assert nufft_bytes(1500, 2048, 8, plans=3) - nufft_bytes(1500, 2048, 8, plans=2) == 16 * points
    assert nufft_bytes(1500, 2048, 8) == nufft_bytes(1500, 2048, 8, plans=1)
    one = plan_slabs(512, 1500, 2048, budget_bytes=20e9, multiple=2, cores=1)
    many = plan_slabs(512, 1500, 2048, budget_bytes=20e9, multiple=2, cores=16)
    capped = plan_slabs(512, 1500, 2048, budget_bytes=20e9, multiple=2, cores=64)  # no more plans than pairs
    assert one.batch_pairs == many.batch_pairs == capped.batch_pairs == 8
    # 7 more plans (516 MB) leave 10 fewer rows of 51 MB each; more cores than pairs add none
    assert (one.slab_rows, many.slab_rows, capped.slab_rows) == (246, 236, 236)
    assert max(one.estimate_bytes, many.estimate_bytes) <= 20e9


def test_frame_runs_group_consecutive_indices():
    locations = [("a.h5", "/d", 0), ("a.h5", "/d", 1), ("a.h5", "/d", 2), ("a.h5", "/d", 5), ("b.h5", "/d", 6)]
    assert runs_from_indices(locations) == [FrameRun(Path("a.h5"), "/d", 0, 3), FrameRun(Path("a.h5"), "/d", 5, 6),
                                            FrameRun(Path("b.h5"), "/d", 6, 7)]


def test_missing_file_and_short_dataset_name_the_problem(scan_file, tmp_path):
    with pytest.raises(FrameReadError, match="does not exist|not found"):
        HDF5Scan.from_dxchange(tmp_path / "nope.h5")
    run = FrameRun(scan_file, "/exchange/data", 0, 500)
    with pytest.raises(FrameReadError, match="holds 120 frames; the scan needs 0..500"):
        HDF5Scan([run], np.zeros(500), [FrameRun(scan_file, "/exchange/data_white", 0, 3)],
                 [FrameRun(scan_file, "/exchange/data_dark", 0, 2)], (40, 96))


PEAK_SCRIPT = """
import json, sys
from tomobluesky.pipeline import HDF5Scan, reconstruct_scan, current_rss_bytes
from tomobluesky.schema import ReconSettings
budget = current_rss_bytes() + float(sys.argv[3])
with HDF5Scan.from_dxchange(sys.argv[1]) as scan:
    info = reconstruct_scan(scan, ReconSettings(center=255.5), sys.argv[2], memory_budget=budget)
print(json.dumps({"budget_mb": budget / 1e6, **info}))
"""


def test_peak_memory_stays_within_the_budget_for_a_scan_larger_than_it(tmp_path):
    # 118 MB of uint16 frames, 236 MB as float32 sinograms, 134 MB of volume; the budget allows 150 MB more
    # than the process holds before the stop path imports its engines
    path = write_scan(tmp_path / "big.h5", rows=128, columns=512, angles=900, dtype="uint16")
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path), str(tmp_path / "v.zarr"), "150e6"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["slabs"] >= 4
    assert info["peak_rss_mb"] <= info["budget_mb"], info


def test_the_tooth_from_its_file(tooth_path, tmp_path):
    """The real APS scan: the published centre, and a file of two rows read once (the centre's rows are the slab)."""
    with HDF5Scan.from_dxchange(tooth_path) as scan:
        info = reconstruct_scan(scan, ReconSettings(), tmp_path / "tooth.zarr")
    assert abs(info["center"] - 295.75) <= 0.5, info["center"]
    assert info["center_method"] == "auto" and info["center_confidence"] > 0.8
    assert info["slabs"] == 1 and 0.99 <= info["read_amplification"] <= 1.02, info["read_amplification"]
    assert info["levels"] == [[2, 640, 640], [1, 320, 320], [1, 160, 160]]
    tooth = read_level(tmp_path / "tooth.zarr", 0)
    # enamel and dentine attenuate; the air around the tooth does not
    assert tooth[:, 300:340, 250:290].mean() > 10 * abs(tooth[:, 20:60, 20:60].mean())
