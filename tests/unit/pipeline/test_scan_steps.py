"""A scan's processing steps on the stop path (docs/steps.md)."""

import numpy as np
import pytest

from tests.unit.pipeline.test_stop_path import write_scan
from tomobluesky import recon
from tomobluesky.pipeline import HDF5Scan, read_sinograms
from tomobluesky.pipeline._steps import engine_options, reads_as_standard, read_sinograms_through, scan_pipeline
from tomobluesky.schema import ReconSettings
from tomobluesky.steps import Pipeline


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    return write_scan(tmp_path_factory.mktemp("scan") / "scan.h5", rows=24, columns=64, angles=60, center=32.4)


def test_the_settings_choose_the_default_chain():
    assert scan_pipeline(ReconSettings()).names() == ["normalize", "minus_log", "reconstruct"]
    assert scan_pipeline(ReconSettings(ring_removal=True)).names() == ["normalize", "minus_log", "rings",
                                                                        "reconstruct"]
    phase = ReconSettings(phase_retrieval={"distance": 0.1, "delta_beta": 200})
    paganin = scan_pipeline(phase, pixel_size_um=0.65, energy_kev=25).stages[1]
    assert paganin.step.name == "paganin"
    assert paganin.params == {"pixel_size_m": pytest.approx(0.65e-6), "distance_m": 0.1, "energy_kev": 25.0,
                              "delta_beta": 200.0}
    with pytest.raises(ValueError, match="needs the scan's pixel_size and energy"):
        scan_pipeline(phase)
    with pytest.raises(ValueError, match="phase_retrieval needs delta_beta"):
        scan_pipeline(ReconSettings(phase_retrieval={"distance": 0.1}), pixel_size_um=1, energy_kev=20)
    spec = [{"step": "normalize"}, {"step": "minus_log"}, {"step": "reconstruct", "params": {"filter_name": "hann"}}]
    assert scan_pipeline(ReconSettings(ring_removal=True), spec).names() == ["normalize", "minus_log", "reconstruct"]
    assert engine_options(Pipeline.from_spec(spec), ReconSettings())["filter_name"] == "hann"
    assert engine_options(None, ReconSettings(filter_name="hann"))["filter_name"] == "hann"


def test_reading_through_the_steps_equals_the_stop_paths_own_reading(scan_file):
    pipeline = scan_pipeline(ReconSettings())
    assert reads_as_standard(pipeline)
    assert not reads_as_standard(Pipeline.from_spec([{"step": "normalize", "params": {"averaging": "mean"}},
                                                     {"step": "minus_log"}, {"step": "reconstruct"}]))
    with HDF5Scan.from_dxchange(scan_file) as scan:
        fast = read_sinograms(scan, slice(5, 13))
        through = read_sinograms_through(scan, (5, 13), pipeline, frame_block=7)
    np.testing.assert_allclose(through, fast, rtol=1e-6, atol=1e-6)


def test_projection_steps_with_a_halo_see_the_rows_beside_the_slab(scan_file):
    settings = ReconSettings(phase_retrieval={"distance": 0.05, "delta_beta": 50})
    pipeline = scan_pipeline(settings, pixel_size_um=1.0, energy_kev=20)
    with HDF5Scan.from_dxchange(scan_file) as scan:
        slab = read_sinograms_through(scan, (8, 16), pipeline)
        frames = scan.read_rows("projections", slice(0, 24)).astype(np.float32)
        flats, darks = scan.read_rows("flats", slice(0, 24)), scan.read_rows("darks", slice(0, 24))
    # the whole detector at once: the halo (32 rows) covers the 24-row detector, so the slab is exact
    whole = recon.minus_log(recon.paganin(recon.normalize(frames, flats, darks, averaging="median"),
                                          pixel_size_m=1e-6, distance_m=0.05, energy_kev=20, delta_beta=50))
    np.testing.assert_allclose(slab, whole[:, 8:16].transpose(1, 0, 2), rtol=1e-4, atol=1e-5)
    with HDF5Scan.from_dxchange(scan_file) as scan:
        plain = read_sinograms_through(scan, (8, 16), scan_pipeline(ReconSettings()))
    assert np.abs(slab - plain).max() > 1e-3  # phase retrieval did something


def test_the_stop_path_runs_a_scans_pipeline_and_records_it(scan_file, tmp_path):
    from tomobluesky.pipeline import reconstruct_scan
    from tomobluesky.store import open_multiscale, read_level

    settings = ReconSettings(center=32.4)
    budget = dict(memory_budget=3e9)
    with HDF5Scan.from_dxchange(scan_file) as scan:
        plain = reconstruct_scan(scan, ReconSettings(center=32.4, ring_removal=True, filter_name="hann"),
                                 tmp_path / "plain.zarr", **budget)
        spec = [{"step": "normalize"}, {"step": "minus_log"}, {"step": "rings"},
                {"step": "reconstruct", "params": {"filter_name": "hann"}},
                {"step": "segment", "params": {"sigma": 1.0, "voxel_size_um": 2.0}}]
        info = reconstruct_scan(scan, settings, tmp_path / "v.zarr", pipeline=scan_pipeline(settings, spec),
                                **budget)
    # the same chain as the settings' ring removal and filter: the same volume
    np.testing.assert_array_equal(read_level(tmp_path / "v.zarr"), read_level(tmp_path / "plain.zarr"))
    assert "pipeline" not in plain
    assert [e["step"] for e in info["pipeline"]] == ["normalize", "minus_log", "rings", "reconstruct", "segment"]
    assert info["pipeline"][3]["params"] == {"filter_name": "hann"}
    outputs = info["step_outputs"]
    labels = open_multiscale(outputs["arrays"]["segment/labels"])[0][...]
    assert outputs["arrays"]["segment/labels"] == str(tmp_path / "v.steps" / "segment" / "labels")
    table = outputs["tables"]["segment/objects"]
    assert len(table["label"]) == labels.max() >= 1 and table["voxels"].sum() == (labels > 0).sum()
    assert info["timings"]["volume_steps"] > 0


def _backprojection_only(sinograms, *, theta, center, scale: float = 1.0):
    """A plugin's own volume-producing step: a ramp-filtered backprojection, scaled."""
    from tomobluesky import recon as engine

    return scale * engine.reconstruct(sinograms, theta, center, filter_name="ramp", sinogram_order=True)


_backprojection_only.pattern = "sinograms"
_backprojection_only.needs = ("theta", "center")
_backprojection_only.produces = "volume"


def test_a_plugins_reconstruction_step_is_called_by_the_stop_path(scan_file, tmp_path):
    from tomobluesky.pipeline import reconstruct_scan
    from tomobluesky.steps import Stage, Step
    from tomobluesky.store import read_level

    step = Step("bp", _backprojection_only, "sinograms", 0, False, "myplugin", "1.0", "myplugin:bp")
    default = Pipeline.from_spec(None).stages
    pipeline = Pipeline([default[0], default[1], Stage(step, {"scale": 2.0})])
    settings = ReconSettings(center=32.4)
    with HDF5Scan.from_dxchange(scan_file) as scan:
        reconstruct_scan(scan, settings, tmp_path / "bp.zarr", pipeline=pipeline, memory_budget=3e9)
        sinograms = read_sinograms(scan, slice(0, 24))
        theta = np.radians(scan.theta_deg)
    expected = _backprojection_only(sinograms, theta=theta, center=32.4, scale=2.0)
    np.testing.assert_allclose(read_level(tmp_path / "bp.zarr"), expected, rtol=1e-5, atol=1e-6)


def test_the_pipelines_slab_steps_run_inside_dask_tasks(scan_file, tmp_path):
    distributed = pytest.importorskip("distributed")
    from tomobluesky.pipeline import current_rss_bytes, reconstruct_scan
    from tomobluesky.store import read_level

    settings = ReconSettings(center=32.4)
    pipeline = scan_pipeline(settings, [{"step": "normalize"}, {"step": "minus_log"},
                                        {"step": "rings", "params": {"size": 5}},
                                        {"step": "reconstruct", "params": {"filter_name": "cosine"}}])
    budget = current_rss_bytes() + 1.5e6  # several slabs, so the Dask route is taken
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client, HDF5Scan.from_dxchange(scan_file) as scan:
        on_dask = reconstruct_scan(scan, settings, tmp_path / "dask.zarr", pipeline=pipeline, dask=client,
                                   memory_budget=budget, writer_options={"min_size": 16})
        here = reconstruct_scan(scan, settings, tmp_path / "here.zarr", pipeline=pipeline,
                                writer_options={"min_size": 16}, memory_budget=3e9)
    assert on_dask["slabs"] > 1 and "dask" in on_dask
    np.testing.assert_allclose(read_level(tmp_path / "dask.zarr"), read_level(tmp_path / "here.zarr"),
                               rtol=1e-5, atol=1e-6)
    rings_only = read_level(tmp_path / "here.zarr")
    with HDF5Scan.from_dxchange(scan_file) as scan:
        reconstruct_scan(scan, settings, tmp_path / "plain.zarr", writer_options={"min_size": 16},
                         memory_budget=3e9)
    assert np.abs(rings_only - read_level(tmp_path / "plain.zarr")).max() > 1e-4  # the steps did run


def _shift_columns(frames, *, by: int):
    """Move the image ``by`` columns to the right (edge values fill in): the axis moves with it."""
    out = np.roll(frames, by, axis=-1)
    out[..., :by] = frames[..., :1]
    return out


@pytest.mark.parametrize("pattern", ["projections", "sinograms"])
def test_the_centre_is_searched_after_the_pipelines_projection_and_sinogram_steps(scan_file, pattern):
    """The axis is searched on what the slabs will reconstruct: a step that moves the image moves it."""
    from tomobluesky.pipeline._stop import center_rows, find_scan_center
    from tomobluesky.steps import Stage, Step

    shift = Step("shift", _shift_columns, pattern, 0, False, "myplugin", "1.0", "myplugin:shift")
    default = Pipeline.from_spec(None).stages  # normalize, minus_log, reconstruct
    stages = [default[0], default[1], Stage(shift, {"by": 3}), default[2]] if pattern == "sinograms" else \
        [default[0], Stage(shift, {"by": 3}), default[1], default[2]]
    with HDF5Scan.from_dxchange(scan_file) as scan:
        plain, _ = find_scan_center(scan, ReconSettings())
        moved, info = find_scan_center(scan, ReconSettings(), pipeline=Pipeline(stages))
    assert plain == pytest.approx(32.4, abs=0.3)
    assert moved - plain == pytest.approx(3.0, abs=0.1)
    rows = info["center_rows"]
    if pattern == "projections":  # read through the steps: as many rows, adjacent, around the middle, in one pass
        assert rows == list(range(10, 15)) and len(rows) == len(center_rows(24))
    else:  # the standard reading: spread over the detector
        assert rows == center_rows(24) and rows != list(range(rows[0], rows[0] + len(rows)))
