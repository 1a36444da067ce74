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
