"""Steps found by entry point, pipelines checked before they run, recorded as run."""

import numpy as np
import pytest

from tomobluesky import steps
from tomobluesky.steps import Pipeline, PipelineError, StepFailed, run_volume_steps
from tomobluesky.store import MultiscaleWriter, open_multiscale

PLUGIN = '''
import numpy as np

def invert(volume, *, scale: float = 1.0):
    """Negate the volume (times scale)."""
    return -scale * volume
invert.pattern = "volume"

def mean3(volume):
    """Mean over three neighbouring slices."""
    out = volume.astype("float32").copy()
    out[1:-1] = (volume[:-2] + volume[1:-1] + volume[2:]) / 3
    return out
mean3.halo = 1

def split(volume, *, level: float):
    """A mask and the values above a level."""
    return {"mask": (volume > level).astype("uint8"), "above": np.where(volume > level, volume, 0)}

def broken(volume):
    raise RuntimeError("detector on fire")

def sino_scale(sinograms, *, factor: float):
    return sinograms * factor
sino_scale.pattern = "sinograms"

def odd(volume):
    return volume
odd.pattern = "voxels"

def sino_halo(sinograms):
    return sinograms
sino_halo.pattern = "sinograms"
sino_halo.halo = 2
'''


@pytest.fixture
def plugin(install_step_plugin):
    install_step_plugin("myplugin", "1.2.3", PLUGIN, {
        "invert": "myplugin:invert", "mean3": "myplugin:mean3", "split": "myplugin:split",
        "broken": "myplugin:broken", "sino_scale": "myplugin:sino_scale", "odd": "myplugin:odd",
        "sino_halo": "myplugin:sino_halo",
        "missing": "myplugin:not_there"})


def test_builtin_steps_are_registered_through_the_entry_point_group():
    found = steps.available_steps()
    for name, pattern in [("normalize", "projections"), ("minus_log", "projections"), ("paganin", "projections"),
                          ("rings", "sinograms"), ("reconstruct", "sinograms"), ("segment", "volume")]:
        assert found[name].pattern == pattern and found[name].package == "tomobluesky"
    assert found["paganin"].halo > 0 and found["segment"].whole
    assert Pipeline.from_spec(None).names() == ["normalize", "minus_log", "reconstruct"]


def test_plugin_steps_are_found_with_their_declarations(plugin):
    found = steps.available_steps()
    invert, mean3 = found["invert"], found["mean3"]
    assert (invert.pattern, invert.halo, invert.package, invert.version) == ("volume", 0, "myplugin", "1.2.3")
    assert list(invert.parameters) == ["scale"] and invert.summary() == "Negate the volume (times scale)."
    assert (mean3.pattern, mean3.halo) == ("volume", 1)
    assert isinstance(found["odd"], steps.StepError) and "voxels" in str(found["odd"])
    # a halo on sinograms could not be honoured (a slab's sinograms have no neighbouring rows): refused
    assert isinstance(found["sino_halo"], steps.StepError) and "halo 2 on sinograms" in str(found["sino_halo"])
    assert isinstance(found["missing"], steps.StepError) and "cannot be loaded" in str(found["missing"])


@pytest.mark.parametrize("spec, message", [
    ([{"step": "reconstruct"}, {"step": "nope"}], "pipeline entry 2: unknown step 'nope'"),
    ([{"step": "reconstruct"}, {"step": "invert", "params": {"sacle": 2}}], "has no parameter 'sacle'"),
    ([{"step": "reconstruct"}, {"step": "invert", "params": {"scale": "big"}}], "parameter 'scale'='big'"),
    ([{"step": "reconstruct"}, {"step": "split"}], "step 'split' needs 'level'"),
    ([{"step": "reconstruct"}, {"stp": "invert"}], "pipeline entry 2"),
    ([{"step": "invert"}], "exactly one step that turns sinograms into a volume"),
    ([{"step": "reconstruct"}, {"step": "reconstruct"}], "found reconstruct, reconstruct"),
    ([{"step": "reconstruct"}, {"step": "sino_scale", "params": {"factor": 2}}],
     "step 'sino_scale' works on sinograms but comes after the data became volume"),
    ([{"step": "reconstruct"}, {"step": "odd"}], "declares pattern 'voxels'"),
    ([{"step": "reconstruct", "params": {"theta": [0, 1]}}], "has no parameter 'theta'"),
    ([], "empty"),
])
def test_bad_pipelines_are_refused_with_one_line_naming_the_entry(plugin, spec, message):
    with pytest.raises(PipelineError) as err:
        Pipeline.from_spec(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_params_are_validated_and_the_pipeline_is_recorded_as_run(plugin):
    pipeline = Pipeline.from_spec([{"step": "normalize"}, {"step": "rings", "params": {"size": 5}},
                                   {"step": "reconstruct", "params": {"filter_name": "cosine"}},
                                   {"step": "invert", "params": {"scale": "2.5"}}])
    assert [s.step.name for s in pipeline.stage("sinograms")] == ["rings"]
    assert pipeline.producer.step.name == "reconstruct"
    record = pipeline.record()
    assert record[3] == {"step": "invert", "params": {"scale": 2.5}, "package": "myplugin", "version": "1.2.3",
                         "entry_point": "myplugin:invert"}
    assert record[1]["params"] == {"size": 5} and record[1]["package"] == "tomobluesky"


def test_pipeline_from_yaml(tmp_path, plugin):
    path = tmp_path / "pipeline.yml"
    path.write_text("pipeline:\n  - step: reconstruct\n  - step: invert\n    params: {scale: 3}\n")
    assert Pipeline.from_yaml(path).record()[1]["params"] == {"scale": 3.0}
    path.write_text("step: reconstruct\n")
    with pytest.raises(PipelineError, match="holds a list of steps"):
        Pipeline.from_yaml(path)


def _volume(tmp_path, shape=(24, 16, 16)):
    rng = np.random.default_rng(0)
    data = rng.normal(size=shape).astype(np.float32)
    writer = MultiscaleWriter(tmp_path / "volume", shape, min_size=8)
    writer.write_slab(0, data)
    return data, tmp_path / "volume"


def test_volume_steps_run_slab_by_slab_with_their_halo_and_chain(tmp_path, plugin):
    data, store = _volume(tmp_path)
    pipeline = Pipeline.from_spec([{"step": "reconstruct"}, {"step": "mean3"},
                                   {"step": "invert", "params": {"scale": 2}},
                                   {"step": "split", "params": {"level": 0.0}}])
    out = run_volume_steps(pipeline, store, tmp_path / "processed", slab=4)
    expected = data.copy()
    expected[1:-1] = (data[:-2] + data[1:-1] + data[2:]) / 3  # exact across the 4-slice slab borders
    np.testing.assert_allclose(open_multiscale(out["arrays"]["mean3"])[0][...], expected, rtol=1e-6)
    inverted = open_multiscale(out["arrays"]["invert"])
    np.testing.assert_allclose(inverted[0][...], -2 * expected, rtol=1e-6)
    assert [a.shape for a in inverted] == [a.shape for a in open_multiscale(store)]  # the volume's levels
    mask = open_multiscale(out["arrays"]["split/mask"])
    np.testing.assert_array_equal(mask[0][...], (-2 * expected > 0).astype(np.uint8))
    np.testing.assert_array_equal(mask[1][...], mask[0][...][::2, ::2, ::2])


def test_a_failing_step_is_named_and_earlier_outputs_are_kept(tmp_path, plugin):
    _, store = _volume(tmp_path)
    pipeline = Pipeline.from_spec([{"step": "reconstruct"}, {"step": "invert"}, {"step": "broken"}])
    with pytest.raises(StepFailed) as err:
        run_volume_steps(pipeline, store, tmp_path / "processed", slab=8)
    assert str(err.value) == "step 'broken' failed: RuntimeError: detector on fire"
    assert (tmp_path / "processed" / "invert").exists() and open_multiscale(store)[0].shape == (24, 16, 16)


def test_builtin_steps_compute_what_the_engine_does():
    from tomobluesky import recon

    rng = np.random.default_rng(1)
    darks = rng.uniform(90, 110, (3, 8, 12)).astype(np.float32)
    flats = rng.uniform(900, 1100, (4, 8, 12)).astype(np.float32)
    projections = rng.uniform(300, 800, (5, 8, 12)).astype(np.float32)
    pipeline = Pipeline.from_spec([{"step": "normalize", "params": {"averaging": "mean"}}, {"step": "minus_log"},
                                   {"step": "reconstruct"}])
    got = pipeline.run("projections", projections, {"flats": flats, "darks": darks})
    want = recon.minus_log(recon.normalize(projections, flats, darks, averaging="mean"))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    paganin = Pipeline.from_spec([{"step": "paganin", "params": {"pixel_size_m": 1e-6, "distance_m": 0.1,
                                                                  "energy_kev": 20, "delta_beta": 100}},
                                  {"step": "reconstruct"}])
    transmission = np.exp(-rng.uniform(0, 1, (2, 16, 16))).astype(np.float32)
    np.testing.assert_allclose(paganin.run("projections", transmission),
                               recon.paganin(transmission, pixel_size_m=1e-6, distance_m=0.1, energy_kev=20,
                                             delta_beta=100), rtol=1e-6)


def test_a_start_document_with_a_bad_pipeline_is_refused_naming_the_entry(plugin):
    from pydantic import ValidationError

    from tomobluesky.schema import TomoScanMetadata

    base = dict(scan_type="step", theta=[0.0, 90.0], num_projections=2, num_darks=1, num_flats=1,
                detector_shape=(4, 8), camera="camera", rotation="rotation")
    ok = TomoScanMetadata(**base, pipeline=[{"step": "reconstruct"}, {"step": "invert", "params": {"scale": 2}}])
    assert ok.pipeline[1]["params"] == {"scale": 2}
    assert TomoScanMetadata(**base).pipeline is None
    with pytest.raises(ValidationError, match="pipeline entry 2: step 'invert' has no parameter 'size'"):
        TomoScanMetadata(**base, pipeline=[{"step": "reconstruct"}, {"step": "invert", "params": {"size": 2}}])


def test_a_pipeline_file_in_the_settings_is_every_scans_default(tmp_path, monkeypatch, plugin):
    from tomobluesky.config import Settings
    from tomobluesky.pipeline import scan_pipeline
    from tomobluesky.schema import ReconSettings

    path = tmp_path / "pipeline.yml"
    path.write_text("pipeline:\n  - step: normalize\n  - step: minus_log\n  - step: reconstruct\n"
                    "  - step: invert\n    params: {scale: 4}\n")
    monkeypatch.setenv("TOMOBLUESKY_PIPELINE_FILE", str(path))
    monkeypatch.setenv("TOMOBLUESKY_RECON__ALGORITHM", "fbp")
    settings = Settings(data_dir=tmp_path)
    assert settings.recon.algorithm == "fbp" and settings.recon.pipeline[3]["params"] == {"scale": 4}
    assert scan_pipeline(settings.recon).names()[-1] == "invert"
    # a scan's own pipeline wins over the settings'
    assert scan_pipeline(settings.recon, [{"step": "reconstruct"}]).names() == ["reconstruct"]
    path.write_text("- step: reconstruct\n- step: invrt\n")
    with pytest.raises(ValueError, match="pipeline entry 2: unknown step 'invrt'"):
        Settings(data_dir=tmp_path)
    path.unlink()
    with pytest.raises(ValueError, match="cannot read the pipeline file"):
        Settings(data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown step 'nope'"):
        ReconSettings(pipeline=[{"step": "reconstruct"}, {"step": "nope"}])
