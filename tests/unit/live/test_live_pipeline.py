"""A scan's pipeline (md['pipeline']) through the live reconstruction: volume steps after the volume,
outputs handed to the sink, a failing step failing the scan by name while the volume is kept."""

import numpy as np
import pytest

from tomobluesky.devices import PhantomSource, make_sim_beamline
from tomobluesky.live import MemorySink, live_reconstruction_router
from tomobluesky.plans import tomo_scan

PLUGIN = '''
def double(volume):
    """Twice the volume."""
    return 2 * volume

def explode(volume):
    raise RuntimeError("out of coffee")
'''


@pytest.fixture
def plugin(install_step_plugin):
    install_step_plugin("liveplugin", "0.3", PLUGIN, {"double": "liveplugin:double", "explode": "liveplugin:explode"})


def _scan(RE, tmp_path, pipeline):
    sink, runs = MemorySink(tmp_path / "volumes"), []
    RE.subscribe(live_reconstruction_router(sink, on_start=runs.append))
    source = PhantomSource(n_slices=8, n_columns=48, axis_offset=0.0, noise=False)
    RE(tomo_scan(*make_sim_beamline(source, tmp_path / "detector"), num_projections=60, num_darks=2, num_flats=2,
                 md={"pipeline": pipeline}))
    return sink, runs[0]


def test_volume_steps_run_after_the_volume_and_their_outputs_reach_the_sink(RE, tmp_path, plugin):
    from tomobluesky.store import open_multiscale

    pipeline = [{"step": "normalize"}, {"step": "minus_log"}, {"step": "reconstruct"}, {"step": "double"},
                {"step": "segment", "params": {"sigma": 0.5, "voxel_size_um": 1.5}}]
    sink, run = _scan(RE, tmp_path, pipeline)
    (uid, (volume, meta)), = sink.volumes.items()
    assert sink.volume_status(uid) == "complete" and not sink.failures
    assert [e["step"] for e in meta["pipeline"]] == ["normalize", "minus_log", "reconstruct", "double", "segment"]
    assert meta["pipeline"][3]["package"] == "liveplugin" and meta["pipeline"][3]["version"] == "0.3"
    outputs, out_meta = sink.outputs[uid]
    assert out_meta["pipeline"] == meta["pipeline"]
    doubled = open_multiscale(outputs["arrays"]["double"])[0][...]
    np.testing.assert_allclose(doubled, 2 * volume, rtol=1e-6)
    assert outputs["arrays"]["double"].startswith(str(tmp_path / "volumes"))
    labels = open_multiscale(outputs["arrays"]["segment/labels"])[0][...]
    table = outputs["tables"]["segment/objects"]
    assert labels.max() == len(table["label"]) >= 1
    np.testing.assert_allclose(table["volume_um3"], table["voxels"] * 1.5 ** 3)
    assert run.result["volume_steps_s"] >= 0 and "error" not in run.result


def test_a_failing_step_fails_the_scan_by_name_and_keeps_the_volume_and_earlier_outputs(RE, tmp_path, plugin):
    pipeline = [{"step": "normalize"}, {"step": "minus_log"}, {"step": "reconstruct"}, {"step": "double"},
                {"step": "explode"}]
    sink, run = _scan(RE, tmp_path, pipeline)
    (uid, (volume, _)), = sink.volumes.items()
    assert sink.volume_status(uid) == "failed"
    reason, _ = sink.failures[uid]
    assert reason == "step 'explode' failed: RuntimeError: out of coffee" == run.result["error"]
    outputs, _ = sink.outputs[uid]
    assert list(outputs["arrays"]) == ["double"] and volume.shape == (8, 48, 48)


def test_an_unknown_step_is_refused_before_the_scan_starts(RE, tmp_path, documents):
    with pytest.raises(ValueError, match="pipeline entry 3: unknown step 'denoise'"):
        _scan(RE, tmp_path, [{"step": "reconstruct"}, {"step": "segment"}, {"step": "denoise"}])
    assert not documents


def test_the_live_stop_path_runs_its_slabs_on_dask_when_asked(RE, tmp_path):
    distributed = pytest.importorskip("distributed")
    from tomobluesky.pipeline import current_rss_bytes

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        sinks = {}
        for route, dask in (("here", None), ("dask", client)):
            sink, runs = MemorySink(tmp_path / route), []
            token = RE.subscribe(live_reconstruction_router(sink, on_start=runs.append, dask=dask,
                                                            memory_budget=current_rss_bytes() + 1.5e6))
            source = PhantomSource(n_slices=16, n_columns=48, axis_offset=0.0, noise=False)
            RE(tomo_scan(*make_sim_beamline(source, tmp_path / route / "detector"), num_projections=60,
                         num_darks=2, num_flats=2))
            RE.unsubscribe(token)
            sinks[route] = (sink, runs[0])
    (here, _), = sinks["here"][0].volumes.values()
    (there, _), = sinks["dask"][0].volumes.values()
    assert "dask" in sinks["dask"][1].result and "dask" not in sinks["here"][1].result
    assert sinks["dask"][1].result["slabs"] > 1
    np.testing.assert_allclose(there, here, rtol=1e-5, atol=1e-6)
